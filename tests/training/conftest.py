"""Fixtures of the training tests: a tiny random BERT (hidden 32) with a vocabulary made of the
characters of the sentences below, a corpus file and labelled pairs."""

from __future__ import annotations

import pytest

#: 20 paraphrase pairs: (a, b) mean the same; a[i] and a[j] do not.
PARAPHRASES = [
    ("我喜欢北京", "我爱北京"),
    ("今天天气很好", "今天的天气不错"),
    ("你吃饭了吗", "你吃过饭没有"),
    ("这本书很有意思", "这本书非常有趣"),
    ("他明天去上海", "他明天要去上海"),
    ("怎么修改密码", "密码怎么改"),
    ("花呗怎么还款", "花呗如何还钱"),
    ("借呗额度为什么降低了", "为什么借呗额度变少了"),
    ("我想开通信用卡", "我要办一张信用卡"),
    ("火车站在哪里", "请问火车站怎么走"),
    ("这个手机多少钱", "这部手机什么价格"),
    ("猫在沙发上睡觉", "沙发上有只猫在睡觉"),
    ("我们下午开会", "下午我们有会议"),
    ("孩子们在公园玩", "小朋友在公园里玩耍"),
    ("外面下雨了", "外边在下雨"),
    ("银行几点关门", "银行什么时候下班"),
    ("他学习很努力", "他读书非常用功"),
    ("飞机晚点了", "航班延误了"),
    ("请把门关上", "麻烦关一下门"),
    ("我的快递到了吗", "快递送到了没有"),
]
SENTENCES = [s for pair in PARAPHRASES for s in pair]


@pytest.fixture(scope="session")
def simcse_base_dir(make_tiny_bert):
    """A tiny random BERT model folder (hidden 32, 2 layers, 2 heads) with a real vocabulary."""
    return make_tiny_bert("simcse-tiny-bert", SENTENCES, ascii_tokens=False)


@pytest.fixture(scope="session")
def simcse_corpus(tmp_path_factory):
    """40 sentences, one a line."""
    p = tmp_path_factory.mktemp("simcse-data") / "corpus.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def simcse_pairs(tmp_path_factory):
    """A TSV of 20 positive pairs (label 1) and 20 negative pairs (label 0) sharing anchors."""
    rows = [f"{a}\t{b}\t1" for a, b in PARAPHRASES]
    n = len(PARAPHRASES)
    rows += [f"{PARAPHRASES[i][0]}\t{PARAPHRASES[(i + 7) % n][1]}\t0" for i in range(n)]
    p = tmp_path_factory.mktemp("simcse-pairs") / "pairs.tsv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def simcse_sentences():
    """The 40 sentences of the corpus."""
    return list(SENTENCES)


@pytest.fixture(scope="session")
def simcse_paraphrases():
    """The 20 (sentence, paraphrase) pairs."""
    return list(PARAPHRASES)


@pytest.fixture(autouse=True)
def _simcse_no_env_data(monkeypatch):
    """Keep these tests off any real data folder named by $EMBEDKIT_DATA (overlap check)."""
    monkeypatch.delenv("EMBEDKIT_DATA", raising=False)
