"""Issue 18, work kept: the cache commits by time as well as by size, an interrupt commits what
was encoded (and the command line says how much, exit 130), and a model folder is one cache
namespace however its path is spelt. A fake clock, advanced by the tiny model's forward pass,
stands for a slow model: no test sleeps."""

from __future__ import annotations

import os

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.encoders import Encoder
from embedkit.encoders.cache import EmbeddingCache
from embedkit.encoders.transformer import TransformerEncoder
from embedkit.errors import WorkKept


class FakeClock:
    """``time.monotonic`` for a :class:`CachedEncoder`: moved only by :func:`slow_model`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow_model(enc: Encoder, clock: FakeClock, seconds_per_sentence: float,
               interrupt_at_batch: int | None = None) -> list[int]:
    """Each forward pass moves ``clock`` on by its rows' share (and the batch numbered
    ``interrupt_at_batch``, from 1, raises KeyboardInterrupt as Ctrl-C would); the batch sizes."""
    rows: list[int] = []

    def hook(module, args, kwargs):
        if interrupt_at_batch is not None and len(rows) + 1 == interrupt_at_batch:
            raise KeyboardInterrupt
        n = int(kwargs["input_ids"].shape[0])
        rows.append(n)
        clock.now += seconds_per_sentence * n

    enc.model.register_forward_pre_hook(hook, with_kwargs=True)
    return rows


def slow_encoder(model_dir, root, **options) -> tuple[Encoder, FakeClock, list[int]]:
    interrupt = options.pop("interrupt_at_batch", None)
    enc = Encoder(str(model_dir), cache=EmbeddingCache(root), batch_size=4)
    clock = FakeClock()
    enc.clock = clock
    return enc, clock, slow_model(enc, clock, 0.5, interrupt)  # 2 sentences/s




def test_commits_by_time_not_only_by_size(tiny_model_dir, tmp_path, unique, reference):
    enc, clock, _ = slow_encoder(tiny_model_dir, tmp_path / "c")
    commits: list[tuple[float, int]] = []
    put = enc.cache.put

    def timed_put(ns, texts, vectors):
        commits.append((clock.now, len(texts)))
        return put(ns, texts, vectors)

    enc.cache.put = timed_put
    got = enc.encode(unique, pooling="cls")
    # 40 sentences at 2/s take 20 s: far below the 4,096 of a size commit, yet committed at
    # most every 10 s (pieces of 8 sentences, 4 s each; a commit once 5 s have passed)
    assert commits == [(8.0, 16), (16.0, 16), (20.0, 8)]
    assert enc.stats.stored == len(unique)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    again, _, rows = slow_encoder(tiny_model_dir, tmp_path / "c")
    np.testing.assert_allclose(again.encode(unique, pooling="cls"), reference, atol=1e-5)
    assert rows == [] and again.stats.cache_hits == len(unique)


def test_interrupt_commits_what_was_encoded(tiny_model_dir, tmp_path, unique, reference):
    # the 7th batch is the first of the 4th piece: 3 pieces (24 sentences) were encoded, 16 of
    # them committed by time at 8 s, 8 still pending when Ctrl-C comes at 12 s
    enc, clock, _ = slow_encoder(tiny_model_dir, tmp_path / "c", interrupt_at_batch=7)
    with pytest.raises(WorkKept) as caught:
        enc.encode(unique, pooling="cls")
    assert isinstance(caught.value, KeyboardInterrupt)
    assert caught.value.kept == 24 and clock.now == 12.0
    assert str(caught.value) == (
        f"kept the 24 sentences encoded so far in the embedding cache {tmp_path / 'c'}; rerun "
        "the same command to resume (they are not encoded again)")
    enc.cache.close()
    again, _, rows = slow_encoder(tiny_model_dir, tmp_path / "c")
    np.testing.assert_allclose(again.encode(unique, pooling="cls"), reference, atol=1e-5)
    assert again.stats.cache_hits == 24 and sum(rows) == len(unique) - 24


def test_interrupt_without_a_cache_is_a_plain_interrupt(tiny_model_dir, unique):
    enc = Encoder(str(tiny_model_dir), cache=None, batch_size=4)
    slow_model(enc, FakeClock(), 0.5, interrupt_at_batch=2)
    with pytest.raises(KeyboardInterrupt) as caught:
        enc.encode(unique, pooling="cls")
    assert not isinstance(caught.value, WorkKept)


def test_cli_interrupt_says_what_was_kept_and_exits_130(tiny_model_dir, spec_file, capsys,
                                                        monkeypatch):
    forward = TransformerEncoder._forward
    calls: list[int] = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first batch of the second piece (pieces of 2 batches, then
            raise KeyboardInterrupt  # as many as the fast tiny model encodes in 5 s: the rest)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(TransformerEncoder, "_forward", interrupted)
    argv = ["bench", "--model", str(tiny_model_dir), "--tasks", str(spec_file), "--batch-size",
            "8"]
    assert main(argv) == 130
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        f"embedkit: interrupted: kept the 16 sentences encoded so far in the embedding cache "
        f"{os.environ['EMBEDKIT_CACHE']}; rerun the same command to resume (they are not "
        "encoded again)"]
    monkeypatch.setattr(TransformerEncoder, "_forward", forward)
    assert main(argv) == 0
    assert "68 unique sentences, 16 cached, 52 encoded" in capsys.readouterr().out


def test_one_namespace_however_the_model_folder_is_spelt(tiny_model_dir, spec_file, tmp_path,
                                                         capsys, monkeypatch):
    link = tmp_path / "linked-model"
    link.symlink_to(tiny_model_dir, target_is_directory=True)
    work = tmp_path / "work"
    work.mkdir()
    spellings = [  # (the folder to run in, the model as given)
        (work, os.path.relpath(tiny_model_dir, work)),      # ../../tiny-bert0
        (tiny_model_dir.parent, f"./{tiny_model_dir.name}"),
        (work, str(tiny_model_dir)),
        (work, str(link)),
    ]
    summaries = []
    for folder, model in spellings:
        monkeypatch.chdir(folder)
        assert main(["bench", "--model", model, "--tasks", str(spec_file)]) == 0
        summaries += [line for line in capsys.readouterr().out.splitlines()
                      if "unique sentences" in line]
    assert spellings[0][1].startswith("..")
    assert [s.split(" in ")[0] for s in summaries] == (
        ["[68 unique sentences, 0 cached, 68 encoded"]
        + ["[68 unique sentences, 68 cached, 0 encoded"] * 3)
    (entry,) = EmbeddingCache().namespaces()
    assert entry["rows"] == 68 and entry["settings"]["model"] == spellings[0][1]
