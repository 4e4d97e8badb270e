"""``embedkit train simcse`` end to end on the tiny model, its generated options, and its
argument errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from embedkit.cli.main import build_parser, main
from embedkit.training import SimCSEConfig

#: 40 sentences: 20 paraphrase pairs
SENTENCES = [
    "我喜欢北京", "我爱北京", "今天天气很好", "今天的天气不错", "你吃饭了吗", "你吃过饭没有",
    "这本书很有意思", "这本书非常有趣", "他明天去上海", "他明天要去上海", "怎么修改密码",
    "密码怎么改", "花呗怎么还款", "花呗如何还钱", "借呗额度为什么降低了", "为什么借呗额度变少了",
    "我想开通信用卡", "我要办一张信用卡", "火车站在哪里", "请问火车站怎么走", "这个手机多少钱",
    "这部手机什么价格", "猫在沙发上睡觉", "沙发上有只猫在睡觉", "我们下午开会", "下午我们有会议",
    "孩子们在公园玩", "小朋友在公园里玩耍", "外面下雨了", "外边在下雨", "银行几点关门",
    "银行什么时候下班", "他学习很努力", "他读书非常用功", "飞机晚点了", "航班延误了", "请把门关上",
    "麻烦关一下门", "我的快递到了吗", "快递送到了没有",
]


@pytest.fixture(scope="module")
def simcse_base_dir(make_tiny_bert):
    return make_tiny_bert("train-cmd-bert", SENTENCES, ascii_tokens=False)


@pytest.fixture(scope="module")
def simcse_corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("train-cmd-data") / "corpus.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return p


@pytest.fixture(autouse=True)
def _no_env_data(monkeypatch):
    """Keep these tests off any real data folder named by $EMBEDKIT_DATA (overlap check)."""
    monkeypatch.delenv("EMBEDKIT_DATA", raising=False)


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
    (["--tasks", "LCQMC"], "--tasks: give exactly one of tasks and corpus"),
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


def _simcse_parser():
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    return next(a for a in train._actions if a.dest == "method").choices["simcse"]


def test_options_generated_from_the_config():
    p = _simcse_parser()
    by_dest = {a.dest: a for a in p._actions if a.option_strings}
    assert set(by_dest) - {"help", "resume"} == {f.name for f in dataclasses.fields(SimCSEConfig)}
    assert by_dest["out_dir"].option_strings == ["--out"]
    assert by_dest["batch_size"].type is int and by_dest["lr"].type is float
    assert all(a.default is None for d, a in by_dest.items() if d != "help")
    args = p.parse_args(["--tasks", "LCQMC, BQ", "--pairs", "a.tsv", "--pairs", "B:train",
                         "--no-progress", "--supervised", "--max-grad-norm", "0"])
    assert args.tasks == ["LCQMC", "BQ"] and args.pairs == ["a.tsv", "B:train"]
    assert args.progress is False and args.supervised is True and args.max_grad_norm == 0.0
    help_text = p.format_help()
    for flag in ("--model", "--pooling", "--tasks", "--corpus", "--out", "--pairs", "--triplets",
                 "--loss", "--threshold", "--negative-max", "--dropout", "--batch-size", "--lr",
                 "--epochs", "--max-sentences", "--temperature", "--cosent-scale",
                 "--max-length", "--seed", "--device", "--dtype", "--grad-accum",
                 "--warmup-steps", "--weight-decay", "--max-grad-norm", "--save-every",
                 "--keep-checkpoints", "--checkpoint-dir", "--log-every", "--stop-at",
                 "--data-dir", "--source", "--supervised", "--hard-negatives",
                 "--skip-invalid", "--resume", "--progress", "--no-progress", "--overwrite"):
        assert flag in help_text, flag
    squashed = " ".join(help_text.split())
    assert "(default: 64)" in squashed and "(default: 1e-5)" in squashed
    assert squashed.count("(default: m3e-small)") == 1


def test_cli_renders_training_warnings_as_lines(simcse_base_dir, tmp_path, capsys):
    atec = tmp_path / "data" / "senteval_cn" / "ATEC"
    atec.mkdir(parents=True)
    (atec / "ATEC.test.data").write_text("我爱北京\t我喜欢北京\t1\n外面下雨了\t飞机晚点了\t0\n",
                                         encoding="utf-8")
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{SENTENCES[i]}\t{SENTENCES[i + 1]}\t1\n" for i in range(0, 8, 2)),
                     encoding="utf-8")
    assert main(["train", "simcse", "--model", str(simcse_base_dir), "--supervised",
                 "--pairs", str(train), "--data-dir", str(tmp_path / "data"), "--out",
                 str(tmp_path / "m"), "--batch-size", "4", "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warned = [e for e in err if e.startswith("embedkit: warning: training pairs overlap")]
    assert len(warned) == 1 and "ATEC/test 1 of 2 pairs" in warned[0]


def test_trained_folder_has_a_model_card(simcse_base_dir, simcse_corpus, tmp_path, capsys):
    """A SimCSE output folder carries README.md: base model, its licence (front matter of the
    base's README here), method, data, pooling, embedkit version."""
    import shutil

    import yaml

    base = tmp_path / "base"
    shutil.copytree(simcse_base_dir, base)
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# base\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(_args(base, simcse_corpus, out, "--pooling", "cls", "--epochs", "1",
                      "--seed", "3")) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n", 2)[1])
    assert meta["license"] == "apache-2.0" and "simcse-unsupervised" in meta["tags"]
    assert "base_model" not in meta  # a local folder has no hub id
    assert "| Method | unsupervised SimCSE" in card and "| Pooling | cls |" in card
    # a file of this machine by its name only (issue 18)
    assert f"the corpus file {simcse_corpus.name} (40 examples, sampled with seed 3" in card
    assert str(tmp_path) not in card and str(simcse_corpus.parent) not in card
    assert "| Seed | 3 |" in card and "| embedkit | 0.1.0 |" in card
    assert "License: Unknown" not in card
