"""Fixtures of the index pipeline tests: a tiny random BERT with a real vocabulary, a corpus file
and a small pair task (spec + TSV). Names start with ``rx_`` to stay clear of the shared ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: 20 pairs (label 1: paraphrase, 0: not); 40 sentences, all different.
RX_PAIRS = [
    ("今天天气很好", "今天的天气不错", 1),
    ("我想去北京旅游", "我打算去北京玩", 1),
    ("这本书很有意思", "这本书非常有趣", 1),
    ("他在学校学习英语", "他在学校读英文", 1),
    ("请问火车站怎么走", "去火车站的路怎么走", 1),
    ("我喜欢吃苹果", "我爱吃苹果", 1),
    ("明天会下雨吗", "明天有雨吗", 1),
    ("手机屏幕坏了", "手机的屏幕碎了", 1),
    ("晚上一起看电影吧", "今晚一起去看电影", 1),
    ("这个问题怎么解决", "怎样解决这个问题", 1),
    ("小猫在沙发上睡觉", "银行几点开门", 0),
    ("我的电脑很慢", "她唱歌很好听", 0),
    ("妈妈在厨房做饭", "股票今天涨了", 0),
    ("孩子们在公园玩", "这辆车是红色的", 0),
    ("老师布置了作业", "海边的风很大", 0),
    ("咖啡太烫了", "他每天跑步五公里", 0),
    ("飞机晚点了两个小时", "花园里开满了花", 0),
    ("信用卡怎么还款", "冬天要多穿衣服", 0),
    ("周末去爬山", "医生让我多喝水", 0),
    ("快递什么时候到", "弟弟考试得了满分", 0),
]


def rx_sentences() -> list[str]:
    return [s for a, b, _ in RX_PAIRS for s in (a, b)]


@pytest.fixture(autouse=True)
def _rx_cache_env(tmp_path, monkeypatch):
    """Each test its own embedding cache, no data dir from the shell, offline hub."""
    monkeypatch.setenv("EMBEDKIT_CACHE", str(tmp_path / "rx-cache"))
    monkeypatch.delenv("EMBEDKIT_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _rx_threads():
    # Tiny models and indexes: extra threads only spin on a busy machine.
    import faiss
    import torch

    before = (faiss.omp_get_max_threads(), torch.get_num_threads())
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before[0])
    torch.set_num_threads(before[1])


@pytest.fixture(scope="session")
def rx_model_dir(make_tiny_bert) -> Path:
    """A random 2-layer BERT (hidden 32) whose vocabulary holds the characters of RX_PAIRS."""
    return make_tiny_bert("rx-bert", rx_sentences())


@pytest.fixture(scope="session")
def rx_encoder(rx_model_dir):
    from embedkit.encoders import Encoder

    return Encoder(str(rx_model_dir), "cls", cache=None)


@pytest.fixture(scope="session")
def rx_texts() -> list[str]:
    return rx_sentences()


@pytest.fixture
def rx_corpus_file(tmp_path, rx_texts) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(rx_texts) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def rx_spec_file(tmp_path_factory) -> Path:
    """A binary pair task: ``rx-pairs`` with a test split (TSV beside the spec)."""
    folder = tmp_path_factory.mktemp("rx-task")
    (folder / "pairs.tsv").write_text(
        "".join(f"{a}\t{b}\t{y}\n" for a, b, y in RX_PAIRS), encoding="utf-8")
    spec = {"name": "rx-pairs", "format": "tsv", "files": {"test": "pairs.tsv"},
            "label_range": [0, 1], "label_type": "int"}
    path = folder / "rx-pairs.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path
