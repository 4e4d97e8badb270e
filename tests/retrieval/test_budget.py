"""Index choice under a budget: measured candidates, the choice and its reason, the one-line
refusal, and the command line's flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.io.sizes import parse_size
from embedkit.retrieval.budget import (
    Budget,
    BudgetError,
    Candidate,
    choose_index,
    ivf_lists,
    matrix_sampler,
)
from tests.conftest import cli_error

ONLY = [Candidate("Flat"), Candidate("Flat", "int8"), Candidate("Flat", "binary", 4)]


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 64))
    return (centres[rng.integers(0, 20, 3000)]
            + 0.6 * rng.standard_normal((3000, 64))).astype("float32")


def test_picks_the_best_candidate_that_fits(x):
    # Flat: 256 B a vector (768 kB), SQ8 64 B (192 kB), binary 8 B (24 kB)
    choice = choose_index(matrix_sampler(x), 3000, Budget(parse_size("300kB")), only=ONLY)
    rows = {r["candidate"]: r for r in choice.rows}
    assert rows["Flat"]["bytes_per_vector"] == 256.0
    assert rows["SQ8"]["bytes_per_vector"] == 64.0
    assert rows["BFlat+rescore4x"]["bytes_per_vector"] == 8.0
    assert rows["Flat"]["memory_bytes"] > parse_size("300kB") > rows["SQ8"]["memory_bytes"]
    assert rows["Flat"]["recall@10"] == 1.0
    assert choice.candidate == Candidate("Flat", "int8")  # better recall than binary here
    assert rows["SQ8"]["recall@10"] > rows["BFlat+rescore4x"]["recall@10"]
    assert choice.why.startswith("SQ8: recall@10 ") and "over budget: Flat" in choice.why
    record = choice.record()
    assert record["chosen"] == "SQ8" and record["sample"]["queries"] == 200
    assert record["sample"]["rows"] == 2800  # the queries are held out of the indexed sample
    # a recall floor the binary index misses leaves SQ8; a tight budget leaves binary
    tight = choose_index(matrix_sampler(x), 3000, Budget(parse_size("50kB")), only=ONLY)
    assert tight.candidate.codes == "binary"


def test_refuses_in_one_line_naming_the_closest(x):
    with pytest.raises(BudgetError) as err:
        choose_index(matrix_sampler(x), 3000, Budget(parse_size("10kB"), min_recall=0.99),
                     only=ONLY)
    msg = str(err.value)
    assert "\n" not in msg and err.value.param == "max_memory"
    assert msg.startswith("no index fits memory <= 10 kB, recall@10 >= 0.99: the closest is "
                          "BFlat+rescore4x (needs 24 kB > 10 kB, recall@10 0.")
    assert err.value.closest["candidate"] == "BFlat+rescore4x"


def test_budget_checks_and_sizes():
    assert parse_size("300MB") == 300_000_000 and parse_size("2GB") == 2_000_000_000
    assert parse_size("512MiB") == 512 * 2**20
    with pytest.raises(ConfigError, match="cannot read '3XB' as a size"):
        parse_size("3XB")
    with pytest.raises(ConfigError, match="min_recall must be in"):
        Budget(100, min_recall=1.5)
    assert ivf_lists(1_000_000) == 4096 and ivf_lists(3000) == 64


def test_index_build_max_memory_records_why(tmp_path, capsys):
    from embedkit.cli.main import main
    from embedkit.retrieval.index import EmbeddingIndex
    from embedkit.store.encode_folder import synthetic_folder

    src = synthetic_folder(tmp_path / "s", 3000, 32, shard_size=1000)
    assert main(["index", "build", "--embeddings", str(src), "--out", str(tmp_path / "i"),
                 "--max-memory", "60kB"]) == 0
    out = capsys.readouterr().out
    assert "index choice (2800 sampled vectors, 200 held-out queries" in out
    assert "chosen " in out and "recall@10" in out
    index = EmbeddingIndex.load(tmp_path / "i")
    choice = index.recipe["index_choice"]
    assert choice["budget"]["max_memory"] == 60_000
    assert {r["candidate"] for r in choice["candidates"]} >= {"Flat", "SQ8", "HNSW32"}
    chosen = next(r for r in choice["candidates"] if r["candidate"] == choice["chosen"])
    assert chosen["memory_bytes"] <= 60_000
    assert index.memory_bytes() <= 60_000
    meta = json.loads((tmp_path / "i" / "index.json").read_text())
    assert meta["recipe"]["index_choice"]["why"] == choice["why"]


@pytest.mark.parametrize(("extra", "line"), [
    (["--max-memory", "3XB"], "argument --max-memory: cannot read '3XB' as a size"),
    (["--max-memory", "0MB"], "argument --max-memory: a size must be positive"),
    (["--min-recall", "0.9"], "--min-recall goes with --max-memory SIZE"),
    (["--max-query-ms", "5"], "--max-query-ms goes with --max-memory SIZE"),
    (["--max-memory", "2GB", "--factory", "HNSW32"], "--max-memory chooses the factory"),
    (["--max-memory", "2GB", "--min-recall", "95"], "--min-recall is a recall@10 between"),
    (["--rescore", "-1", "--vectors", "binary"], "argument --rescore: must be 0"),
    (["--vectors", "int4"], "argument --vectors: invalid choice: 'int4'"),
    (["--rescore-with", "int8"], "--rescore-with goes with --vectors int8 or binary"),
    (["--vectors", "binary", "--factory", "IVF8,PQ4"], "factory 'IVF8,PQ4' has no binary"),
    (["--max-memory", "1kB"], "--max-memory: no index fits memory <= 1.0 kB: the closest is BFlat+rescore4x"),
])
def test_flag_errors_are_one_line(tmp_path, capsys, extra, line):
    from embedkit.store.encode_folder import synthetic_folder

    src = synthetic_folder(tmp_path / "s", 600, 16, shard_size=600)
    got = cli_error(capsys, ["index", "build", "--embeddings", str(src), "--out",
                             str(tmp_path / "i"), *extra], before=None)
    assert line in got
