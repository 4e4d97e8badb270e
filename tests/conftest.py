"""Shared fixtures: a tiny random BERT with a real Chinese vocabulary, a small pair file and its
task spec, and an isolated embedding cache for every test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# The models here are tiny: several threads only spin against each other (and against whatever
# else runs on the machine), making a 3 ms forward pass take 150 ms.
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: fixtures every folder shares beside these: the whitening tests' ``wt_`` model and task, the
#: index tests' ``rx_`` model, corpus and task (one build each per test run)
pytest_plugins = ["tests.fixtures.whitening", "tests.fixtures.retrieval"]

#: /work/shared/data beside the checkout (the public STS sets), wherever the checkout lies.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STSB_TEST = SHARED_DATA / "senteval_cn" / "STS-B" / "STS-B.test.data"

#: The first 40 lines of STS-B.test.data, used when the shared data is absent.
FALLBACK_LINES = [
    '一个女孩在给她的头发做发型。\t一个女孩在梳头。\t2',
    '一群男人在海滩上踢足球。\t一群男孩在海滩上踢足球。\t3',
    '一个女人在测量另一个女人的脚踝。\t女人测量另一个女人的脚踝。\t5',
    '一个人正在切黄瓜。\t一个人在切黄瓜。\t4',
    '一个人在弹竖琴。\t一个男人在玩键盘。\t1',
    '一个女人在切洋葱。\t一个女人在切豆腐。\t1',
    '一个男人在骑电动自行车。\t一个男人在骑自行车。\t3',
    '一个人在打鼓。\t一个人在弹吉他。\t2',
    '一个人在弹吉他。\t一位女士正在弹吉他。\t2',
    '一个男人在弹吉他。\t一个人在吹小号。\t1',
    '一个人在切洋葱。\t男人切洋葱。\t5',
    '一个男人在骑自行车。\t一个男人在说话。\t0',
    '一个男人正在切开一条鱼。\t一个人正在切一条鱼。\t4',
    '一个男人在弹吉他。\t一个男人在玩键盘。\t1',
    '一只熊猫宝宝滑下滑梯。\t熊猫从滑梯上滑下来。\t4',
    '一个男人袭击了一个女人。\t男人扇女人耳光。\t3',
    '这位妇女正在给她的头发做发型。\t那个女人在切药草。\t0',
    '一个人在切洋葱。\t一个女人在切南瓜。\t2',
    '一个男人在跳舞。\t一男一女在跳舞。\t2',
    '一个女人在切漱口。\t一个女人在切洋葱。\t2',
    '一个男人在说话。\t一个人在做饭。\t0',
    '一个小男孩一边唱歌一边弹吉他。\t一个人一边唱歌一边弹吉他。\t2',
    '海龟在水中游泳。\t一只海龟在水下行走。\t3',
    '一个年轻的女人在她的脸上贴满了标签。\t一个女人正在用贴纸贴她的脸。\t4',
    '一只猫正在吃玉米。\t一只猫正在吃棒子上的玉米。\t4',
    '一个男人在吃东西。\t一个男人正在吃一片面包。\t3',
    '一个男人在弹吉他。\t一个男人在吃意大利面。\t0',
    '一个男人在踢水壶。\t一个男人正在采花。\t0',
    '一个人正在用剪刀剪管子。\t一个男人正在用刀割地毯。\t1',
    '一个女人在雨中跳舞。\t一个女人在外面的雨中跳舞。\t5',
    '一个女人正在洗澡。\t一个女人在骑马。\t0',
    '一个男人在锅里搅拌蔬菜。\t一个人在锅里搅拌蔬菜。\t3',
    '一个女人在打电话。\t一男一女在通电话。\t3',
    '一个男人在弹吉他。\t一个人一边弹吉他一边唱歌。\t3',
    '一个男人在弹吉他。\t一个男人在开车。\t0',
    '一个男人正在用手割苹果。\t一个男人正在用刀割地毯。\t1',
    '一个男人在开门。\t一个人在切洋葱。\t0',
    '一个男人正在切西红柿。\t一个人在骑马。\t0',
    '一个人在用剑割纸。\t一个女人在切西红柿。\t0',
    '男孩学习日历。\t一个男孩正在看日历。\t4',
]
N_PAIRS = 40
ASCII = "abcdefghijklmnopqrstuvwxyz0123456789"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def source_lines() -> list[str]:
    """Real STS-B pair lines (s1<TAB>s2<TAB>label)."""
    if STSB_TEST.is_file():
        with open(STSB_TEST, encoding="utf-8") as fh:
            lines = [next(fh).rstrip("\n") for _ in range(N_PAIRS)]
        return lines
    return list(FALLBACK_LINES)


def source_sentences() -> list[str]:
    return [s for line in source_lines() for s in line.split("\t")[:2]]


def build_tiny_bert(folder: Path, sentences: list[str], *, pooler: bool = True, seed: int = 0,
                    initializer_range: float = 0.02, ascii_tokens: bool = True) -> Path:
    """A random-initialised 2-layer BERT (hidden 32, 2 heads, intermediate 64) whose vocabulary
    holds the characters of ``sentences`` (plus ASCII letters and digits unless told not to).

    The one builder of every test model: the test folders ask for theirs through the
    ``make_tiny_bert`` fixture.
    """
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for s in sentences for c in s})
    extra = list(ASCII) + ["##" + c for c in ASCII] if ascii_tokens else []
    vocab = SPECIALS + chars + [t for t in extra if t not in chars]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 takes the vocabulary as ``vocab`` (``vocab_file=`` is silently ignored and
    # gives a tokenizer that maps every character to [UNK]).
    tok = transformers.BertTokenizerFast(vocab=str(vocab_file), do_lower_case=False,
                                         tokenize_chinese_chars=True)
    assert tok.convert_tokens_to_ids(chars[0]) == len(SPECIALS)
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=64,
                                     initializer_range=initializer_range)
    model = transformers.BertModel(config, add_pooling_layer=pooler)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _st_modules():
    from sentence_transformers.sentence_transformer import modules as m

    return m


def save_st(folder: Path, model_dir: Path, mode: str = "mean", tail: str = "",
            include_prompt: bool = True, config: dict | None = None) -> Path:
    """A sentence-transformers folder built with its own modules: Transformer + Pooling(mode)
    + the tail ("dense-tanh-norm": Dense(32->16, tanh) -> Normalize; "dense-nobias-ln":
    Dense(32->16, no bias, identity) -> LayerNorm with random weights)."""
    import torch
    from sentence_transformers import SentenceTransformer

    m = _st_modules()
    torch.manual_seed(1)
    mods = [m.Transformer(str(model_dir), max_seq_length=32),
            m.Pooling(32, pooling_mode=mode, include_prompt=include_prompt)]
    if tail == "dense-tanh-norm":
        mods += [m.Dense(32, 16, activation_function=torch.nn.Tanh()), m.Normalize()]
    elif tail == "dense-nobias-ln":
        ln = m.LayerNorm(16)
        with torch.no_grad():
            ln.norm.weight.normal_()
            ln.norm.bias.normal_()
        mods += [m.Dense(32, 16, bias=False, activation_function=torch.nn.Identity()), ln]
    SentenceTransformer(modules=mods, device="cpu").save(str(folder))
    if config:
        path = folder / "config_sentence_transformers.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


def st_vectors(folder: Path, texts: list[str], **kw):
    """``SentenceTransformer(folder).encode(texts)``: the reference for embedkit's vectors."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(list(texts),
                                                                 convert_to_numpy=True, **kw)


def build_tiny_model(folder: Path, pooler: bool = True) -> Path:
    """The core suite's tiny model: real STS-B characters."""
    return build_tiny_bert(folder, source_sentences(), pooler=pooler)


#: English sentences beside the Chinese ones, for the decoders' byte-level BPE
ENGLISH = ["A man is slicing an onion.", "The panda slides down the slide.",
           "Retrieve semantically similar text.", "Given a web search query, retrieve passages."]
EOS = "<|endoftext|>"


def build_tiny_decoder(folder: Path, sentences: list[str], *, family: str = "qwen2",
                       padding_side: str = "left", append_eos: bool = True,
                       seed: int = 0) -> Path:
    """A random-initialised 2-layer decoder (``qwen2`` / ``qwen3`` / ``llama``: rotary positions,
    grouped query attention; ``gpt2``: GPT2Model, absolute positions) with a byte-level BPE trained on
    ``sentences`` (plus :data:`ENGLISH`), hidden 32. ``qwen2``: ``<|endoftext|>`` is EOS and
    pad, appended by the tokenizer's post-processor when ``append_eos`` (as Qwen3-Embedding's
    tokenizer does; the same for ``qwen3`` and ``llama``); ``gpt2``: EOS, no pad token, nothing appended (as GPT-2's).
    ``padding_side`` goes into tokenizer_config.json."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(sentences + ENGLISH, trainers.BpeTrainer(
        vocab_size=320, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    rotary = family in ("qwen2", "qwen3", "llama")
    if rotary and append_eos:
        bpe.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, 0)])
    specials = {"eos_token": EOS, "pad_token": EOS} if rotary else {
        "eos_token": EOS, "bos_token": EOS, "unk_token": EOS}
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, padding_side=padding_side,
                                               model_max_length=128, **specials)
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    vocab = bpe.get_vocab_size()
    if rotary:
        name = {"qwen2": "Qwen2", "qwen3": "Qwen3", "llama": "Llama"}[family]
        config = getattr(transformers, f"{name}Config")(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
            eos_token_id=0, pad_token_id=0, bos_token_id=0, initializer_range=0.2)
        model = getattr(transformers, f"{name}Model")(config)
    else:
        config = transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2,
                                         n_positions=128, bos_token_id=0, eos_token_id=0,
                                         initializer_range=0.2)
        model = transformers.GPT2Model(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def save_st_decoder(hf_folder: Path, out: Path) -> Path:
    """``hf_folder`` as a sentence-transformers folder: Transformer, Pooling(lasttoken),
    Normalize (its modules.json and 1_Pooling/config.json)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    word = Transformer(str(hf_folder))
    pool = Pooling(word.get_embedding_dimension(), pooling_mode="lasttoken")
    SentenceTransformer(modules=[word, pool, Normalize()], device="cpu").save(str(out))
    return out


@pytest.fixture(scope="session")
def make_tiny_decoder(tmp_path_factory):
    """Factory: ``make_tiny_decoder(family, padding_side, st=False, **options) -> folder`` (see
    build_tiny_decoder); ``st=True`` saves it as a sentence-transformers folder. Each is built
    once per session."""
    made: dict = {}

    def make(family: str = "qwen2", padding_side: str = "left", st: bool = False,
             **options) -> Path:
        key = (family, padding_side, st, tuple(sorted(options.items())))
        if key not in made:
            name = f"tiny-{family}-{padding_side}" + ("-st" if st else "")
            hf = build_tiny_decoder(tmp_path_factory.mktemp(name), source_sentences(),
                                    family=family, padding_side=padding_side, **options)
            made[key] = save_st_decoder(hf, tmp_path_factory.mktemp(name + "-st")) if st else hf
        return made[key]

    return make


@pytest.fixture(scope="session")
def make_tiny_bert(tmp_path_factory):
    """Factory: ``make_tiny_bert(name, sentences, **options) -> folder`` (see build_tiny_bert)."""

    def make(name: str, sentences: list[str], **options) -> Path:
        return build_tiny_bert(tmp_path_factory.mktemp(name), sentences, **options)

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_model_no_pooler_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-nopooler"), pooler=False)


@pytest.fixture(scope="session")
def spread_model_dir(make_tiny_bert, sentences) -> Path:
    """A tiny BERT with larger weights: its cosines spread over 0.84..0.99 (the default tiny
    model's all lie within 1e-5 of 1, where float32 cannot order them)."""
    return make_tiny_bert("tiny-spread", sentences, initializer_range=0.2)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    """One shared cache-less encoder on the tiny model; tests must not change its settings."""
    from embedkit.encoders import Encoder

    return Encoder(str(tiny_model_dir), cache=None)


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    path.write_text("\n".join(source_lines()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def spec_file(pairs_file) -> Path:
    path = pairs_file.parent / "tiny-sts.json"
    spec = {"name": "tiny-sts", "format": "tsv", "base": "spec", "files": {"test": pairs_file.name},
            "label_range": [0, 5], "label_type": "int", "max_length": 64}
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The public STS data folder (holding senteval_cn/); skips the test when it is absent."""
    if not (SHARED_DATA / "senteval_cn").is_dir():
        pytest.skip(f"the shared STS data is not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _single_thread_torch():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Every test gets its own embedding cache and no EMBEDKIT_DATA from the user's shell."""
    monkeypatch.setenv("EMBEDKIT_CACHE", str(tmp_path / "embedkit-cache"))
    monkeypatch.delenv("EMBEDKIT_DATA", raising=False)
    # ... nor the default data folder (shared/data beside the checkout): a test reads the data
    # it names. tests/data/test_loading.py tests the defaults themselves.
    import embedkit.data.loading

    monkeypatch.setattr(embedkit.data.loading, "default_data_dirs", lambda: [])
    # The CLI configures the "embedkit" logger (main.setup_logging); undo it after each test so
    # that a library call in a later test logs as a library does, to no handler.
    import logging

    log, root = logging.getLogger("embedkit"), logging.getLogger()
    saved = (list(log.handlers), log.level, log.propagate, root.level, logging.root.manager.disable)
    # every test starts from a library's logging: no handler, no level, propagating (whatever
    # a module-level or session-scoped call of the CLI left), under the root logger's default
    # WARNING with nothing disabled (a library that raised the root level or called
    # logging.disable in an earlier test must not hide this test's warnings from caplog)
    log.handlers[:], log.level, log.propagate = [], logging.NOTSET, True
    root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("embedkit.")]:
        child = logging.getLogger(name)
        child.disabled, child.propagate = False, True
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]
    root.setLevel(saved[3])
    logging.disable(saved[4])


def cli_error(capsys, argv: list[str], *, before: tuple[str, ...] | None = ()) -> str:
    """The one error line of a command that must fail: status 2 (argparse's errors exit through
    ``SystemExit``), no traceback, stderr ending in exactly one ``embedkit: error:`` line, which
    is returned without that prefix. ``before``: the lines expected ahead of it (``None``: any
    lines that are not errors, such as progress)."""
    from embedkit.cli.main import main

    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("embedkit: error: ")]
    assert len(errors) == 1 and lines and lines[-1] == errors[0], err
    if before is not None:
        assert tuple(lines[:-1]) == before, err
    return errors[0].removeprefix("embedkit: error: ")


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """The real Chinese sentences the tiny model's vocabulary was built from (80, with repeats)."""
    return source_sentences()


@pytest.fixture(scope="session")
def fallback_lines() -> list[str]:
    return list(FALLBACK_LINES)


# -- the reliability report (eval/reliability.md, made by `make eval-reliability`) -------------
# A reliability test is marked @pytest.mark.reliability("9.N", "what the case is"): the issue
# item it reproduces and the case in a few words. With --reliability-report FILE the run writes
# each marked test's case and outcome to FILE as JSON (works under xdist: the case travels in
# the report's user_properties).

def pytest_addoption(parser):
    parser.addoption("--reliability-report", metavar="JSON",
                     help="write the outcome of every @pytest.mark.reliability test to JSON")


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability(item, case): a reliability case (issue item, "
                                       "description) listed in eval/reliability.md")
    config._reliability = []


def pytest_collection_modifyitems(config, items):
    for item in items:
        for m in item.iter_markers("reliability"):
            item.user_properties.append(("reliability", list(m.args)))


def pytest_runtest_logreport(report):
    cases = [v for k, v in report.user_properties if k == "reliability"]
    if not cases or not (report.when == "call" or report.outcome != "passed"):
        return
    config = _CONFIG.get("config")
    if config is not None:
        for item, case in cases:
            config._reliability.append({"item": item, "case": case, "test": report.nodeid,
                                        "outcome": report.outcome, "when": report.when})


_CONFIG: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _CONFIG["config"] = session.config


def pytest_sessionfinish(session):
    path = session.config.getoption("--reliability-report")
    if path and not hasattr(session.config, "workerinput"):
        Path(path).write_text(json.dumps(session.config._reliability, ensure_ascii=False,
                                         indent=1), encoding="utf-8")


def write_beir_task(folder: Path, lines: list[str]) -> Path:
    """A retrieval task in the BEIR layout from pair lines (s1, s2, label 0-5): queries the
    distinct first sentences of pairs labelled >= 3, corpus every second sentence (one entry
    repeated under a second id), qrels graded 1 (label 3) / 2 (label 4) / 3 (label 5), one
    judged 0; returns the spec file."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    pairs = [ln.split("\t") for ln in lines]
    corpus = {f"d{i}": s2 for i, (_, s2, _) in enumerate(pairs)}
    first = next(iter(corpus))
    corpus["dup"] = corpus[first]
    queries: dict[str, str] = {}
    qrels = []
    for i, (s1, _, label) in enumerate(pairs):
        if float(label) >= 3:
            qid = next((q for q, t in queries.items() if t == s1), f"q{len(queries)}")
            queries[qid] = s1
            qrels.append((qid, f"d{i}", int(float(label)) - 2))
    qrels.append((next(iter(queries)), "dup", 0))
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for cid, text in corpus.items():
            fh.write(json.dumps({"_id": cid, "title": "", "text": text}, ensure_ascii=False) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels),
        encoding="utf-8")
    spec = folder / "beir-task.json"
    spec.write_text(json.dumps({"name": "beir-task", "kind": "retrieval",
                                "corpus": "corpus.jsonl", "queries": "queries.jsonl",
                                "files": {"test": "qrels/test.tsv"}}), encoding="utf-8")
    return spec


@pytest.fixture(scope="session")
def beir_spec_file(tmp_path_factory) -> Path:
    """A small retrieval task read from files (see :func:`write_beir_task`)."""
    return write_beir_task(tmp_path_factory.mktemp("beir"), source_lines())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The random order's seed at the end of the run too (``-q`` hides the header that names
    it), so a failure that depends on the order can be repeated."""
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None and getattr(config.option, "randomly_reorganize", True):
        terminalreporter.write_line(f"random order seed: {seed} (repeat the order with "
                                    f"make test PYTEST_ARGS=--randomly-seed={seed})")
