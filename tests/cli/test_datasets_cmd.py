"""``embedkit datasets``."""

from __future__ import annotations

import hashlib
import json

import pytest

from embedkit.cli.main import main


def test_lists_rows_and_sha256(spec_file, pairs_file, capsys):
    assert main(["datasets", "--tasks", str(spec_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["task", "split", "rows", "unique", "labels", "max_len", "sha256"]
    assert len(lines) == 3 and lines[2] == f"[data: local {pairs_file.parent}]"
    row = lines[1].split()
    sha = hashlib.sha256(pairs_file.read_bytes()).hexdigest()
    assert row[:3] == ["tiny-sts", "test", "40"]
    assert row[-2:] == ["64", sha[:16]]
    assert all(x.split(":")[0] in "012345" for x in row[4:-2])


def test_json_listing(spec_file, pairs_file, capsys):
    assert main(["datasets", "--tasks", str(spec_file), "--json", "-"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(listing) == 1
    r = listing[0]
    assert (r["task"], r["split"], r["rows"], r["skipped"], r["max_length"]) == (
        "tiny-sts", "test", 40, 0, 64)
    assert r["sha256"] == hashlib.sha256(pairs_file.read_bytes()).hexdigest()
    assert sum(r["labels"].values()) == 40 and r["hub"] == "" and r["source"] == str(pairs_file)
    lines = pairs_file.read_text(encoding="utf-8").splitlines()
    assert r["unique_sentences"] == len({s for x in lines for s in x.split("\t")[:2]})


def test_json_file_and_table(spec_file, tmp_path, capsys):
    out = tmp_path / "listing.json"
    assert main(["datasets", "--tasks", str(spec_file), "--json", str(out)]) == 0
    assert "tiny-sts" in capsys.readouterr().out
    assert json.loads(out.read_text())[0]["rows"] == 40


def test_builtin_task_from_the_hub_when_no_data_dir(monkeypatch, capsys):
    import sys
    import types

    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda *a, **k: [{"sentence1": "一个", "sentence2": "两个", "score": 1}]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert main(["datasets", "--tasks", "stsb", "--json", "-"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in listing] == ["train", "valid", "test"]
    assert listing[0]["hub"].startswith("C-MTEB/STSB@") and listing[0]["source"].startswith(
        "hub:C-MTEB/STSB@")


@pytest.mark.shared_data
def test_real_data_dir(shared_data_dir, capsys):
    assert main(["datasets", "--tasks", "PAWSX", "--data-dir", str(shared_data_dir), "--json",
                 "-"]) == 0
    listing = {r["split"]: r for r in json.loads(capsys.readouterr().out)}
    assert listing["test"]["rows"] == 2000 and listing["valid"]["rows"] == 2000
    assert listing["test"]["labels"] == {"0": 1106, "1": 894}


def _mini_data(root):
    """A miniature senteval_cn/ layout holding ATEC's test split (two pairs)."""
    (root / "senteval_cn" / "ATEC").mkdir(parents=True)
    (root / "senteval_cn" / "ATEC" / "ATEC.test.data").write_text("一个\t两个\t1\n三\t四\t0\n",
                                                                 encoding="utf-8")
    (root / "senteval_cn" / "ATEC" / "ATEC.valid.data").write_text("五\t六\t0\n",
                                                                  encoding="utf-8")
    return root


def test_default_data_folder_is_used_and_said(tmp_path, monkeypatch, capsys):
    """Without --data-dir or $EMBEDKIT_DATA: the default folder (shared/data beside the
    checkout; here a stand-in), said on stderr and in the table's footer."""
    import embedkit.data.loading as loading
    root = _mini_data(tmp_path / "shared" / "data")
    monkeypatch.setattr(loading, "default_data_dirs", lambda: [root])
    monkeypatch.setattr(loading, "_announced", set())
    assert main(["datasets", "--tasks", "ATEC"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[:3] for line in out.splitlines()[1:3]] == [
        ["ATEC", "valid", "1"], ["ATEC", "test", "2"]]
    footer = f"[data: local {root} (the default: shared/data beside the checkout)]"
    assert out.splitlines()[-1] == footer
    assert f"embedkit: data: local data folder {root} (the default: shared/data beside the " \
           "checkout)" in err.splitlines()
    monkeypatch.setenv("EMBEDKIT_DATA", str(root))
    assert main(["datasets", "--tasks", "ATEC"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"[data: local {root} ($EMBEDKIT_DATA)]"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_missing_data_folder_is_refused_not_the_hub(tmp_path, monkeypatch, capsys, how):
    missing = tmp_path / "nope"
    if how == "env":
        monkeypatch.setenv("EMBEDKIT_DATA", str(missing))
    args = ["datasets", "--tasks", "ATEC"] + (["--data-dir", str(missing)] if how == "flag" else [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = (f"embedkit: error: --data-dir: data folder {missing} does not exist; give the "
                "folder holding senteval_cn/ (or the task folders), or load from the hub "
                "(source hub)" if how == "flag" else
                f"embedkit: error: $EMBEDKIT_DATA is {missing}, which does not exist; point it "
                "at the folder holding senteval_cn/ (or the task folders), or unset it")
    assert err == [expected]


def test_source_local_without_local_data_is_refused(capsys):
    assert main(["datasets", "--tasks", "ATEC", "--source", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("embedkit: error: --data-dir: task ATEC: no data directory; give "
                          "data_dir or set EMBEDKIT_DATA to the folder holding senteval_cn/ ")
