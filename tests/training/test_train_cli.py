"""``embedkit train simcse`` end to end on the tiny model, and its argument errors."""

from __future__ import annotations

import json

import pytest

from embedkit.cli.main import main


def _args(base, corpus, out, *extra):
    return ["train", "simcse", "--model", str(base), "--corpus", str(corpus), "--out", str(out),
            "--batch-size", "8", "--max-length", "32", "--lr", "1e-3", "--no-progress", *extra]


def test_cli_trains_resumes_and_benches(simcse_base_dir, simcse_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(_args(simcse_base_dir, simcse_corpus, out, "--pooling", "last-avg", "--epochs", "2",
                    "--save-every", "3", "--stop-at", "3", "--seed", "5"))
    assert rc == 0
    assert not out.exists() and (tmp_path / "run.checkpoints" / "step-000003").is_dir()
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "simcse", "--resume", str(out), "--no-progress"]) == 0
    assert "saved" in capsys.readouterr().out
    rec = json.loads((out / "embedkit.json").read_text(encoding="utf-8"))
    assert rec["complete"] and rec["steps"] == 10 and rec["pooling"] == "last-avg"
    assert rec["config"]["seed"] == 5 and rec["command"].startswith("embedkit train simcse")
    assert (out / "modules.json").is_file() and (out / "1_Pooling" / "config.json").is_file()

    (tmp_path / "mini.tsv").write_text("".join(
        f"{a}\t{b}\t{y}\n" for a, b, y in [("我喜欢北京", "我爱北京", 1), ("外面下雨了", "外边在下雨", 1),
                                           ("飞机晚点了", "请把门关上", 0),
                                           ("你吃饭了吗", "银行几点关门", 0)]), encoding="utf-8")
    spec = tmp_path / "mini.json"
    spec.write_text(json.dumps({"name": "mini", "files": {"test": "mini.tsv"},
                                "label_range": [0, 1]}), encoding="utf-8")
    assert main(["bench", "--model", str(out), "--tasks", str(spec), "--no-cache",
                 "--output", str(tmp_path / "bench.json")]) == 0
    bench = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert bench["settings"]["poolings"] == ["last-avg"]  # the trained pooling, declared


@pytest.mark.parametrize("extra, match", [
    (["--batch-size", "1"], "at least 2"),
    (["--tasks", "LCQMC"], "exactly one of --tasks and --corpus"),
    (["--dropout", "1.5"], "--dropout"),
    (["--supervised"], "--supervised"),
])
def test_cli_bad_arguments_one_line(extra, match, simcse_corpus, tmp_path, capsys):
    argv = _args("unused-model", simcse_corpus, tmp_path / "o")
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embedkit: error:") and match in err[0]


def test_cli_no_data_and_parse_errors(tmp_path, capsys):
    assert main(["train", "simcse", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no training data" in err[0]
    with pytest.raises(SystemExit) as e:
        main(["train", "simcse", "--batch-size", "many"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embedkit: error:") and "many" in err[0]
