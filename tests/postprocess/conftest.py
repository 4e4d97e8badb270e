"""Fixtures of the whiten, sweep and bench --post tests (names start with ``wt_``; the tests in
tests/experiments and tests/cli load this file by path):
a tiny random BERT (hidden 32) whose vocabulary is the characters of the sentences below, a
second one with other weights, and a task with valid and test splits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

#: (sentence1, sentence2, label 0..5): 20 pairs for the valid split, 20 for the test split.
WT_PAIRS = [
    ("今天的天气非常好", "今天天气很不错", 5),
    ("我想去北京旅游", "我打算去北京玩", 4),
    ("这家饭店的菜很好吃", "这家餐馆的菜味道不错", 4),
    ("他每天早上跑步", "他每天晚上看书", 1),
    ("猫在沙发上睡觉", "一只猫睡在沙发上", 5),
    ("孩子们在公园里玩", "小朋友在公园玩耍", 4),
    ("我的手机没电了", "手机的电用完了", 4),
    ("火车晚点了两个小时", "飞机准时起飞了", 1),
    ("她喜欢唱歌和跳舞", "她爱好唱歌跳舞", 5),
    ("这本书很有意思", "这部电影很无聊", 1),
    ("明天会下雨吗", "明天的天气怎么样", 3),
    ("银行几点开门", "银行什么时候营业", 4),
    ("我忘记带钥匙了", "钥匙被我忘在家里", 4),
    ("他在学习中文", "他正在学汉语", 5),
    ("超市里人很多", "商店里没有人", 1),
    ("请把门关上", "请关一下门", 5),
    ("这个问题很难", "这道题不简单", 4),
    ("我们一起吃午饭吧", "一起去吃午饭好吗", 4),
    ("狗在院子里叫", "鸟在树上唱歌", 0),
    ("他开车去上班", "他坐地铁去学校", 2),
    ("妈妈在厨房做饭", "母亲正在厨房里做菜", 5),
    ("我喜欢喝咖啡", "我不喜欢喝茶", 1),
    ("这件衣服太贵了", "这件衣服价格很高", 4),
    ("学生们在教室里上课", "学生在操场上跑步", 1),
    ("他的电脑坏了", "他的电脑出问题了", 4),
    ("周末我们去爬山", "周末一起去登山吧", 4),
    ("外面下着大雪", "外面正在下雪", 5),
    ("医生建议多喝水", "医生让我多喝水", 5),
    ("这条路很安静", "这条街非常吵闹", 0),
    ("我在等公共汽车", "我在车站等车", 4),
    ("她买了一束花", "她送给我一束花", 2),
    ("电影八点开始", "电影几点开始", 3),
    ("这个城市很大", "这座城市很小", 1),
    ("弟弟在玩游戏", "弟弟正在玩电脑游戏", 4),
    ("水果很新鲜", "蔬菜很便宜", 1),
    ("老师在黑板上写字", "老师正在写黑板", 4),
    ("我明天要考试", "明天我有一场考试", 5),
    ("窗外的风很大", "外面刮着大风", 4),
    ("他把杯子打碎了", "杯子被他打破了", 5),
    ("图书馆里很安静", "图书馆非常吵", 0),
]


def wt_sentences() -> list[str]:
    """Every sentence of the pairs, each once, in order."""
    return list(dict.fromkeys(s for a, b, _ in WT_PAIRS for s in (a, b)))


# With the default initializer_range 0.02 the random model's [CLS] hardly varies between
# sentences (top variance 1e-4), and float32 rounding, amplified by whitening, would swamp the
# comparisons: these models use 0.2.
WT_MODEL = {"initializer_range": 0.2, "ascii_tokens": False}


@pytest.fixture(scope="session")
def wt_model_dir(make_tiny_bert) -> Path:
    return make_tiny_bert("wt-bert", wt_sentences(), seed=0, **WT_MODEL)


@pytest.fixture(scope="session")
def wt_other_model_dir(make_tiny_bert) -> Path:
    """Same architecture and vocabulary, other weights (so another model identity)."""
    return make_tiny_bert("wt-bert-other", wt_sentences(), seed=1, **WT_MODEL)


@pytest.fixture(scope="session")
def wt_spec_file(tmp_path_factory) -> Path:
    """Task ``wt-sts``: valid.tsv (first 20 pairs) and test.tsv (last 20), spec beside them."""
    folder = tmp_path_factory.mktemp("wt-task")
    for name, rows in (("valid.tsv", WT_PAIRS[:20]), ("test.tsv", WT_PAIRS[20:])):
        (folder / name).write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows),
                                   encoding="utf-8")
    spec = {"name": "wt-sts", "format": "tsv", "base": "spec",
            "files": {"valid": "valid.tsv", "test": "test.tsv"},
            "label_range": [0, 5], "label_type": "int", "max_length": 64,
            "default_splits": ["test"]}
    path = folder / "wt-sts.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def wt_sentence_file(tmp_path_factory) -> Path:
    """A file of sentences, one a line (with a blank line and a repeat)."""
    path = tmp_path_factory.mktemp("wt-fit") / "fit.txt"
    sents = wt_sentences()
    path.write_text("\n".join(sents[:30]) + "\n\n" + sents[0] + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def wt_encoder(wt_model_dir):
    """A cache-less encoder on the tiny model (tests must not change its settings)."""
    from embedkit.encoders import Encoder

    return Encoder(str(wt_model_dir), cache=None)


@pytest.fixture(autouse=True)
def wt_isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own embedding cache."""
    monkeypatch.setenv("EMBEDKIT_CACHE", str(tmp_path / "wt-cache"))
    monkeypatch.delenv("EMBEDKIT_DATA", raising=False)
