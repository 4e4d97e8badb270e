"""Prompts: prepended before tokenising, part of the identity, the cache namespace and the record;
declared prompts of a sentence-transformers folder; per-side prompts of retrieval."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.encoders import EncoderConfig
from embedkit.encoders.config import with_prompt
from embedkit.encoders.prompts import (
    declared_prompts,
    instruction_prompt,
    instruction_template,
    resolve_prompt,
    side_prompts,
)
from embedkit.errors import ConfigError

S = ["一个人在切洋葱。", "男人切洋葱。"]


@pytest.fixture
def prompted_dir(tiny_model_dir, tmp_path):
    """The tiny model with prompts declared the sentence-transformers way."""
    d = tmp_path / "prompted"
    shutil.copytree(tiny_model_dir, d)
    (d / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "问：", "passage": "答："}, "default_prompt_name": "query"}))
    return d


def test_prompt_is_prepended_before_tokenising(tiny_model_dir):
    plain = EncoderConfig(str(tiny_model_dir)).build_model()
    prompted = EncoderConfig(str(tiny_model_dir), prompt="男人").build_model()
    np.testing.assert_allclose(prompted.encode(["切洋葱。"], "cls"),
                               plain.encode(["男人切洋葱。"], "cls"), atol=1e-6)
    assert prompted.identity == plain.identity + ';prompt="男人"'
    assert prompted.describe()["prompt"] == "男人"


def test_prompt_counts_in_truncation(tiny_model_dir):
    enc = EncoderConfig(str(tiny_model_dir), prompt="男人男人").build_model()
    assert EncoderConfig(str(tiny_model_dir)).build_model().count_truncated(["切洋葱"], 6) == 0
    assert enc.count_truncated(["切洋葱"], 6) == 1  # [CLS] 男人男人切洋葱 [SEP] > 6


def test_declared_prompts_are_the_defaults(prompted_dir):
    assert declared_prompts(prompted_dir) == {"query": "问：", "passage": "答："}
    assert resolve_prompt(None, str(prompted_dir)) == "问："     # default_prompt_name
    assert resolve_prompt("", str(prompted_dir)) == ""           # explicitly none
    assert EncoderConfig(str(prompted_dir)).build_model().prompt == "问："
    assert side_prompts(str(prompted_dir), query=None, passage=None, prompt=None) == (
        "问：", "答：")
    assert side_prompts(str(prompted_dir), query=None, passage="p: ", prompt="x") == ("x", "p: ")


def test_broken_prompt_config_is_one_line(prompted_dir):
    (prompted_dir / "config_sentence_transformers.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        declared_prompts(prompted_dir)


def test_with_prompt_shares_the_model_and_cache(tiny_model_dir, tmp_path):
    enc = EncoderConfig(str(tiny_model_dir), cache_dir=str(tmp_path / "c"), progress=False).build()
    q = with_prompt(enc, "男人")
    assert q.inner.inner.model is enc.inner.inner.model and q.cache is enc.cache
    assert q.identity != enc.identity and enc.prompt == "" and q.prompt == "男人"
    np.testing.assert_allclose(q.encode(["切洋葱。"], "cls"), enc.encode(["男人切洋葱。"], "cls"),
                               atol=1e-6)
    assert with_prompt(enc, "") is enc


def test_bench_records_prompt_and_cache_keeps_them_apart(tiny_model_dir, spec_file, tmp_path):
    outs = []
    for i, extra in enumerate([[], ["--prompt", "男人"]]):
        out = tmp_path / f"r{i}.json"
        assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                     "--pooling", "cls", "--output", str(out), *extra]) == 0
        outs.append(json.loads(out.read_text(encoding="utf-8")))
    assert outs[0]["settings"]["prompt"] == "" and outs[1]["settings"]["prompt"] == "男人"
    assert outs[1]["timings"]["cache_hits"] == 0  # another namespace: nothing reused
    assert outs[0]["results"] != outs[1]["results"]


def test_index_build_and_search_use_their_own_prompts(prompted_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["男人切洋葱。", "一只熊猫宝宝滑下滑梯。", "猫"]) + "\n",
                      encoding="utf-8")
    out = tmp_path / "idx"
    assert main(["index", "build", "--model", str(prompted_dir), "--pooling", "cls",
                 "--corpus", str(corpus), "--out", str(out)]) == 0
    recipe = json.loads((out / "index.json").read_text(encoding="utf-8"))["recipe"]
    assert recipe["prompt"] == "答：" and recipe["query_prompt"] == "问："
    capsys.readouterr()
    assert main(["index", "search", "--index", str(out), "--query", "男人切洋葱。", "-k", "1"]) == 0
    hit = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    # the query is encoded with 问：, the passages were with 答：, so the score is not 1
    enc = EncoderConfig(str(prompted_dir), prompt="问：").build_model()
    p = EncoderConfig(str(prompted_dir), prompt="答：").build_model()
    q, d = enc.encode(["男人切洋葱。"], "cls"), p.encode(["男人切洋葱。"], "cls")
    expected = float((q @ d.T)[0, 0] / np.linalg.norm(q) / np.linalg.norm(d))
    assert hit["hits"][0]["score"] == pytest.approx(expected, abs=1e-4)


def test_index_eval_records_the_query_prompt(tiny_model_dir, spec_file, tmp_path):
    out = tmp_path / "e.json"
    assert main(["index", "eval", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--splits", "test", "--query-prompt", "男人", "--passage-prompt", "",
                 "--output", str(out)]) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["settings"]["query_prompt"] == "男人" and rec["settings"]["prompt"] == ""
    assert main(["index", "eval", "--model", str(tiny_model_dir), "--tasks", str(spec_file),
                 "--splits", "test", "--output", str(tmp_path / "f.json")]) == 0
    plain = json.loads((tmp_path / "f.json").read_text(encoding="utf-8"))
    # the queries are encoded again, with their prompt (the plain run reuses the corpus's)
    assert rec["timings"]["encoded"] > plain["timings"]["encoded"]


def test_revision_is_recorded():
    """A hub model's revision is a setting of the run (a local folder refuses one:
    tests/encoders/test_models.py)."""
    assert EncoderConfig("org/some-model", revision="v1").record()["revision"] == "v1"


# -- a prompt that leaves no room for the sentence (issue 18) ----------------------------------

def test_prompt_that_fills_the_max_length_is_refused(tiny_model_dir):
    enc = EncoderConfig(str(tiny_model_dir), prompt="男人" * 5).build_model()  # 10 tokens + [CLS] + [SEP]
    with pytest.raises(ConfigError) as err:
        enc.encode(S, "cls", max_length=12)
    assert str(err.value) == (
        "the prompt '男人男人男人男人男人' takes 12 tokens with [CLS] and [SEP], and the max "
        "length is 12: no token of any sentence is left (every vector would be the prompt's); "
        "shorten the prompt or raise the max length")
    assert enc.encode(S, "cls", max_length=13).shape == (2, 32)  # one token left: allowed


def test_prompt_that_leaves_little_room_warns_once(tiny_model_dir, caplog):
    enc = EncoderConfig(str(tiny_model_dir), prompt="男人" * 5).build_model()
    with caplog.at_level("WARNING", logger="embedkit"):
        enc.encode(S, "cls", max_length=15)
        enc.encode(S, "cls", max_length=15)
        enc.encode(S, "cls", max_length=64)  # room enough: no warning
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["the prompt '男人男人男人男人男人' takes 12 tokens with [CLS] and [SEP], "
                      "and the max length is 15: only 3 token(s) of each sentence are kept; "
                      "shorten the prompt or raise the max length"]


def test_prompt_longer_than_max_length_is_one_line_at_the_cli(tiny_model_dir, tmp_path,
                                                              capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(S) + "\n", encoding="utf-8")
    out = tmp_path / "idx"
    rc = main(["index", "build", "--model", str(tiny_model_dir), "--pooling", "cls",
               "--corpus", str(corpus), "--out", str(out), "--no-cache", "--max-length", "8",
               "--prompt", "一个男人在切洋葱。"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and not out.exists()
    assert err.strip().splitlines()[-1] == (
        "embedkit: error: the prompt '一个男人在切洋葱。' takes 11 tokens with [CLS] and [SEP], "
        "and the max length is 8: no token of any sentence is left (every vector would be the "
        "prompt's); shorten the prompt or raise the max length")


# -- instructions (decoder embedders) -----------------------------------------------------------

QWEN3_QUERY = "Instruct: Given a web search query, retrieve relevant passages\nQuery:"


@pytest.fixture
def instructed_dir(make_tiny_decoder, tmp_path):
    """A tiny Qwen2 sentence-transformers folder declaring Qwen3-Embedding's prompts (its
    template has no space after ``Query:``)."""
    d = tmp_path / "instructed"
    shutil.copytree(make_tiny_decoder("qwen2", "left", st=True), d)
    (d / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": QWEN3_QUERY, "document": ""}, "default_prompt_name": None}))
    return d


@pytest.fixture
def instructed_spec(spec_file, tmp_path):
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    spec["files"]["test"] = str(spec_file.parent / spec["files"]["test"])
    path = tmp_path / "instructed-sts.json"
    path.write_text(json.dumps({**spec, "instruction": "Retrieve semantically similar text."}))
    return path


def test_instruction_template_from_the_folder_or_the_default(instructed_dir, tiny_model_dir):
    assert instruction_template(instructed_dir) == "Instruct: {instruction}\nQuery:"
    assert instruction_prompt("Find it.", instructed_dir) == "Instruct: Find it.\nQuery:"
    assert instruction_template(tiny_model_dir) is None
    assert instruction_prompt("Find it.", tiny_model_dir) == "Instruct: Find it.\nQuery: "
    assert side_prompts(str(instructed_dir), query=None, passage=None, prompt=None,
                        instruction="Find it.") == ("Instruct: Find it.\nQuery:", "")
    with pytest.raises(ConfigError, match="not both"):
        side_prompts(None, query=None, passage=None, prompt="x", instruction="Find it.")
    with pytest.raises(ConfigError, match="instruction is empty"):
        instruction_prompt("  ", None)


def test_instruction_is_the_prompt_identity_and_namespace(instructed_dir):
    plain = EncoderConfig(str(instructed_dir)).build_model()
    told = EncoderConfig(str(instructed_dir), instruction="Find it.").build_model()
    assert plain.instruction is None and told.instruction == "Find it."
    assert told.prompt == "Instruct: Find it.\nQuery:"
    assert told.identity == plain.identity + ';prompt="Instruct: Find it.\\nQuery:"'
    np.testing.assert_allclose(told.encode(["猫"]),
                               plain.encode(["Instruct: Find it.\nQuery:猫"]), atol=1e-6)
    assert told.describe()["instruction"] == "Find it."
    with pytest.raises(ConfigError, match="not both"):
        EncoderConfig(str(instructed_dir), prompt="x", instruction="y")
    assert EncoderConfig(str(instructed_dir), prompt="").build_model().instruction == ""


def test_bench_uses_each_tasks_instruction_and_records_it(instructed_dir, instructed_spec,
                                                          tiny_model_dir, tmp_path):
    cache = str(tmp_path / "cache")
    outs = []
    for i, extra in enumerate([["--instruction", ""], [], ["--instruction", "Find it."]]):
        out = tmp_path / f"r{i}.json"
        assert main(["bench", "--model", str(instructed_dir), "--tasks", str(instructed_spec),
                     "--cache-dir", cache, "--output", str(out), *extra]) == 0
        outs.append(json.loads(out.read_text(encoding="utf-8")))
    name = outs[0]["settings"]["tasks"][0]
    assert [o["settings"]["instructions"][name] for o in outs] == [
        "", "Retrieve semantically similar text.", "Find it."]
    assert outs[2]["settings"]["instruction"] == "Find it."
    # three prompts, three namespaces: nothing reused
    assert [o["timings"]["cache_hits"] for o in outs] == [0, 0, 0]
    assert len({json.dumps(o["results"]) for o in outs}) == 3
    assert main(["bench", "--model", str(instructed_dir), "--tasks", str(instructed_spec),
                 "--cache-dir", cache, "--output", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))
    assert again["timings"]["encoded"] == 0 and again["results"] == outs[1]["results"]
    from embedkit.reports.bench import markdown_report

    assert markdown_report(outs[1]).splitlines()[0].endswith(
        '[torch float32, instruction "Retrieve semantically similar text."]')
    # a model without an instruction template ignores the task's instruction
    plain = tmp_path / "plain.json"
    assert main(["bench", "--model", str(tiny_model_dir), "--tasks", str(instructed_spec),
                 "--pooling", "cls", "--output", str(plain)]) == 0
    assert json.loads(plain.read_text())["settings"]["instructions"][name] is None


def test_instruction_and_prompt_together_is_one_line(instructed_dir, spec_file, capsys):
    assert main(["bench", "--model", str(instructed_dir), "--tasks", str(spec_file),
                 "--prompt", "x", "--instruction", "y"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not both" in err[0]


def test_index_eval_instruction_goes_to_queries_only(instructed_dir, spec_file, tmp_path):
    out = tmp_path / "e.json"
    assert main(["index", "eval", "--model", str(instructed_dir), "--tasks", str(spec_file),
                 "--splits", "test", "--instruction", "Find it.", "--output", str(out)]) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["settings"]["query_prompt"] == "Instruct: Find it.\nQuery:"
    assert rec["settings"]["prompt"] == ""
