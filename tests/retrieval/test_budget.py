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
    (["--rescore-with", "int8"], "--rescore-with goes with --vectors int8, binary or factory"),
    (["--vectors", "binary", "--factory", "IVF8,PQ4"], "factory 'IVF8,PQ4' has no binary"),
    (["--max-memory", "1kB"], "--max-memory: no index fits memory <= 1.0 kB: the closest is BFlat+rescore4x"),
])
def test_flag_errors_are_one_line(tmp_path, capsys, extra, line):
    from embedkit.store.encode_folder import synthetic_folder

    src = synthetic_folder(tmp_path / "s", 600, 16, shard_size=600)
    got = cli_error(capsys, ["index", "build", "--embeddings", str(src), "--out",
                             str(tmp_path / "i"), *extra], before=None)
    assert line in got


def test_candidates_are_sized_to_the_budget():
    from embedkit.retrieval.budget import candidates, pq_m

    names = [c.name for c in candidates(1_000_000, 512, 300_000_000)]
    # 300 MB over 1M vectors: 291 B a vector after the centroids and codebooks, less the
    # IVF's 8-byte id: PQ256 (256 | 512), not the 64 of the unsized rule
    assert "IVF4096,PQ256" in names and "IVF4096,PQ256+rescore4x" in names
    assert {"SQ4", "SQ4+rescore4x", "SQ8+rescore4x", "BFlat+rescore4x"} <= set(names)
    assert pq_m(512, None) == 64 and pq_m(512, 100) == 64 and pq_m(96, 50) == 48


def test_the_budget_keeps_a_rescored_compressed_index(x):
    # 200 kB for 3000 x 64: Flat (768 kB), SQ8 (192 kB + ...) and HNSW do not fit; SQ4
    # (32 B) and IVF-PQ16 do, and rescored from the floats on disk they beat binary
    choice = choose_index(matrix_sampler(x), 3000, Budget(parse_size("200kB")))
    rows = {r["candidate"]: r for r in choice.rows}
    assert rows["Flat"]["memory_bytes"] > 200_000
    assert choice.row["memory_bytes"] <= 200_000
    assert choice.candidate.rescore == 4 and choice.candidate.codes in ("factory", "int8")
    assert choice.row["recall@10"] >= 0.9
    assert choice.row["recall@10"] > rows["BFlat+rescore4x"]["recall@10"]


def test_factory_codes_rescored_round_trip(x, tmp_path):
    from embedkit.retrieval.index import EmbeddingIndex

    texts = [str(i) for i in range(len(x))]
    pq = EmbeddingIndex.build(x, texts, factory="IVF16,PQ8", tune=False)
    rescored = EmbeddingIndex.build(x, texts, factory="IVF16,PQ8", codes="factory",
                                    rescore=4, tune=False)
    exact = EmbeddingIndex.build(x, texts)
    q = x[:50]

    def recall(index):
        got = [{h.id for h in row} for row in index.search(q, 10, nprobe=16)] \
            if index is not exact else [{h.id for h in row} for row in index.search(q, 10)]
        truth = [{h.id for h in row} for row in exact.search(q, 10)]
        return np.mean([len(a & b) / 10 for a, b in zip(truth, got, strict=True)])

    assert rescored.factory == "IVF16,PQ8"
    assert rescored.recipe["vectors"]["vectors"] == "factory"
    assert recall(rescored) > recall(pq) + 0.3 and recall(rescored) >= 0.75  # 0.79, 0.42
    rescored.save(tmp_path / "ix")
    loaded = EmbeddingIndex.load(tmp_path / "ix")
    assert sorted(loaded.extra_files) == ["rescore.f32"]
    assert [[h.id for h in r] for r in loaded.search(q, 10, nprobe=16)] == \
        [[h.id for h in r] for r in rescored.search(q, 10, nprobe=16)]
