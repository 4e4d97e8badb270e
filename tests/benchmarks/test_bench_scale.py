"""``python benchmarks/bench_scale.py`` at tiny sizes: every phase, the Markdown and the record,
the command it records, and the old ``--queries`` spelling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scale import build_parser, main

from tests.conftest import source_lines, source_sentences

pytest.importorskip("pyarrow")


@pytest.fixture(scope="session")
def spread_model_dir(make_tiny_bert) -> Path:
    """A tiny BERT whose [CLS] vectors differ between texts (as tests/cli/test_encode_cmd.py's)."""
    return make_tiny_bert("encode-bert", source_sentences(), initializer_range=0.5)


def test_both_spellings_of_queries_one_dest():
    a = build_parser().parse_args(["--queries", "50"])
    b = build_parser().parse_args(["--num-queries", "50"])
    assert a.queries == b.queries == 50


def fake_sts_data(folder: Path) -> Path:
    """The five STS test splits the scale report reads, a few real pairs each."""
    lines = source_lines()
    for i, task in enumerate(("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")):
        rows = lines[8 * i:8 * i + 8]
        if task != "STS-B":  # binary sets
            rows = ["\t".join([*r.split("\t")[:2], str(int(int(r.split("\t")[2]) >= 3))])
                    for r in rows]
        (folder / task).mkdir(parents=True)
        (folder / task / f"{task}.test.data").write_text("\n".join(rows) + "\n",
                                                         encoding="utf-8")
    return folder


@pytest.mark.slow
def test_report_scale_tiny(tmp_path, spread_model_dir, capsys):
    data = fake_sts_data(tmp_path / "data")
    out, work = tmp_path / "eval" / "scale.md", tmp_path / "work"
    work.mkdir()
    argv = ["--model", str(spread_model_dir), "--data-dir", str(data),
            "--out", str(out), "--sentences", "60", "--ray-workers", "", "--shard-size", "25",
            "--max-length", "32", "--whiten-rows", "3000", "--whiten-dim", "16",
            "--ivf-rows", "800", "--ivf-dim", "16", "--factory", "IVF4,Flat", "--queries", "20",
            "--nprobe", "4", "--work-dir", str(work)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "encode local x1: 60 rows" in printed and "whiten 3000 x 16: fit" in printed
    assert "recall@10 between 1.0" in printed and f"wrote {out} and" in printed
    md = out.read_text(encoding="utf-8")
    for heading in ("# Scale report", "## 1. Encoding 60 unique STS test sentences",
                    "## 2. Streaming whitening fit: 3,000 x 16 synthetic vectors",
                    "## 3. IVF4,Flat over 800 x 16 synthetic vectors",
                    "## 4. Projection: 100 million sentences"):
        assert heading in md.splitlines(), heading
    assert "Ray: not run" in md
    assert f"Command: `python benchmarks/bench_scale.py --model {spread_model_dir}" in md
    rec = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert [r["engine"] for r in rec["encode"]["runs"]] == ["local"]
    assert rec["encode"]["runs"][0]["rows"] == 60 and rec["encode"]["ray_start"] == []
    assert rec["whiten"]["rows"] == 3000 and rec["ivf"]["rows"] == 800
    assert [b["ntotal"] for b in rec["ivf"]["builds"]] == [800, 800]
    assert rec["ivf"]["recall_at_10_between"] == 1.0  # nprobe = nlist: both exact
    assert rec["settings"]["ray_workers"] == [] and rec["projection"]["ray_efficiency"] == 1.0
    assert list(work.iterdir()) == []  # the working files are gone
    # re-rendered from the record the run wrote: the same report and record, nothing run
    again = tmp_path / "again" / "scale.md"
    assert main(["--from-record", str(out.with_suffix(".json")), "--out", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == md
    assert json.loads(again.with_suffix(".json").read_text(encoding="utf-8")) == rec
