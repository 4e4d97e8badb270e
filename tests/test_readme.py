"""The README's "## Python API" example runs as written, on the tiny model and a miniature
copy of the data folder found where a checkout finds it (the default data folder).

Only what the tiny model cannot take is replaced: the model name (``"m3e-small"`` -> the tiny
model's folder) and the kept dimensions (k=256 / 128 of m3e-small's 512 -> 16 / 8 of the tiny
model's 32).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"
SUBSTITUTIONS = (("n_components=256", "n_components=16"), ("k=256", "k=16"), ("k=128", "k=8"))


def python_api_blocks(text: str) -> list[str]:
    """The ```python blocks of the README's "## Python API" section."""
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def mini_data(root: Path, pairs_file: Path) -> Path:
    """STS-B (train, valid, test) and LCQMC (valid, test) in the senteval_cn layout, from the
    real STS-B lines the tiny model's vocabulary was built from (``pairs_file``)."""
    lines = pairs_file.read_text(encoding="utf-8").splitlines()
    binary = [f"{a}\t{b}\t{int(int(label) >= 3)}" for a, b, label in
              (line.split("\t") for line in lines)]
    files = {"STS-B/STS-B.train.data": lines[:30], "STS-B/STS-B.valid.data": lines[30:],
             "STS-B/STS-B.test.data": lines, "LCQMC/LCQMC.valid.data": binary[:20],
             "LCQMC/LCQMC.test.data": binary[20:]}
    for rel, rows in files.items():
        path = root / "senteval_cn" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_the_section_has_the_example():
    blocks = python_api_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 1 and "run_bench" in blocks[0] and "train_simcse" in blocks[0]


def test_python_api_example_runs(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    import embedkit.data.loading as loading

    data = mini_data(tmp_path / "shared" / "data", pairs_file)
    monkeypatch.setattr(loading, "default_data_dirs", lambda: [data])
    monkeypatch.chdir(tmp_path)  # runs/lcqmc is written here
    code = python_api_blocks(README.read_text(encoding="utf-8"))[0]
    code = code.replace('"m3e-small"', repr(str(tiny_model_dir)))
    for old, new in SUBSTITUTIONS:
        code = code.replace(old, new)
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficient fits on 60 sentences
        exec(compile(code, "README.md#python-api", "exec"), scope)
    assert scope["vecs"].shape == (2, 32) and scope["vecs"].dtype == np.float32
    assert set(scope["both"]) == {"cls", "first-last-avg"}
    assert -1 <= scope["metrics"]["avg/spearman"] <= 1
    record = scope["record"]
    assert record["data_source"] == {"kind": "local", "local": [str(data)],
                                     "found_by": "default", "hub": []}
    assert record["results"]["last-avg + whiten:beta=1,gamma=1,k=16"]["STS-B"]["test"]
    assert scope["z"].shape == (2, 16) and scope["amap"].k == 8
    assert len(scope["hits"]) == 10
    assert (tmp_path / "runs" / "lcqmc").is_dir()
