"""The README's mteb snippets (the ```python blocks of "### mteb: ...") run as written, on the
tiny model and a miniature data folder at ``../shared/data`` from the working directory.

Only the model name is replaced (``"m3e-small"`` -> the tiny model's folder); what they write
is then read back with mteb's own loader.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

mteb = pytest.importorskip("mteb")

README = Path(__file__).resolve().parents[2] / "README.md"
TASKS = ("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")


def mteb_blocks(text: str) -> list[str]:
    """The ```python blocks of the README's "### mteb: ..." section."""
    section = text.split("\n### mteb: ", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def mini_data(root: Path, lines: list[str]) -> Path:
    """The five tasks' valid and test files in the senteval_cn layout, from the real STS-B lines
    the tiny model's vocabulary was built from (binary labels for all but STS-B)."""
    binary = [f"{a}\t{b}\t{int(int(label) >= 3)}" for a, b, label in
              (line.split("\t") for line in lines)]
    for task in TASKS:
        rows = lines if task == "STS-B" else binary
        for split, part in (("valid", rows[:20]), ("test", rows[20:])):
            path = root / "senteval_cn" / task / f"{task}.{split}.data"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(part) + "\n", encoding="utf-8")
    return root


def test_the_section_has_both_snippets():
    blocks = mteb_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 2
    assert "evaluate_local" in blocks[0] and "TaskResult.from_disk(path)" in blocks[1]


def test_mteb_snippets_run_as_written(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    mini_data(tmp_path / "shared" / "data", pairs_file.read_text(encoding="utf-8").splitlines())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # ../shared/data is the miniature folder; runs/ is written here
    scope: dict = {}
    for i, code in enumerate(mteb_blocks(README.read_text(encoding="utf-8"))):
        code = code.replace('"m3e-small"', repr(str(tiny_model_dir)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, f"README.md#mteb-{i}", "exec"), scope)

    # block 1: the local STS-B test file is not C-MTEB's: a local task at its own revision
    sha = scope["task"].metadata.revision.removeprefix("local-sha256-")
    assert scope["result"].task_results[0].task_name == f"STSB-local-{sha[:8]}"
    on_disk = mteb.ResultCache(cache_path="runs/mteb").load_results(include_remote=False)
    assert len(on_disk.model_results) == 1
    assert {t.task_name.split("-local-")[0] for t in on_disk.model_results[0].task_results} == {
        "ATEC", "BQ", "LCQMC", "PAWSX", "STSB"}

    # block 2: both bench rows load with mteb's defaults, each in its own column
    record, table, one = scope["record"], scope["table"], scope["one"]
    base = scope["results"].model_results[0].model_name.split(" (")[0]
    columns = {c for c in table.columns if c not in ("task_name", "is_public")}
    default = str(record["model"]["default_pooling"])
    assert len(columns) == 2 and base in columns
    row = table.set_index("task_name").loc[one.task_name]
    for pooling in ("last-avg", "cls"):
        column = base if pooling == default else f"{base} (pooling={pooling})"
        want = record["results"][pooling]["STS-B"]["test"]["spearman"]
        assert row[column] == pytest.approx(want, abs=1e-6)
    assert one.task_name == f"STSB-local-{sha[:8]}" and one.dataset_revision == f"local-sha256-{sha}"
    assert isinstance(scope["path"], Path)
