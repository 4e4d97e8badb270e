"""Progress by batch (``on_batch``) on every backend, MeteredEncoder's one call for an encoder
that reports its batches, and the tokenising pipeline (a background thread, chunk by chunk):
same vectors, errors raised in the caller, no thread left behind."""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest

import embedkit.encoders.base as base
from embedkit.encoders import EncoderConfig
from embedkit.encoders.batching import Prefetch
from embedkit.encoders.wrappers import CachedEncoder, MeteredEncoder, encode_stats, takes_on_batch

HAVE_OV = importlib.util.find_spec("openvino") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


@pytest.fixture(scope="module")
def texts(sentences) -> list[str]:
    """70 sentences of varied lengths (duplicates made distinct)."""
    return [f"{s}{i}" for i, s in enumerate((sentences * 2)[:70])]


@pytest.fixture(scope="module")
def torch_encoder(tiny_model_dir):
    return EncoderConfig(str(tiny_model_dir)).build_model()


@pytest.fixture(scope="module", params=[
    pytest.param("onnx", marks=pytest.mark.skipif(not HAVE_ORT, reason="no onnxruntime")),
    pytest.param("openvino", marks=pytest.mark.skipif(not HAVE_OV, reason="no openvino"))])
def two_streams(request, tiny_model_dir, tmp_path_factory):
    from embedkit.encoders.runtime import ExportedEncoder

    cfg = EncoderConfig(str(tiny_model_dir), backend=request.param, threads=2, token_budget=0,
                        cache_dir=str(tmp_path_factory.mktemp("exports")))
    enc = ExportedEncoder(cfg, streams=2)
    assert enc.session.streams == 2
    return enc


def _sizes_by_batch(enc, texts, **kw) -> tuple[list[int], dict[str, np.ndarray]]:
    sizes: list[int] = []
    out = enc.encode_multi(texts, ["cls", "last-avg"], batch_size=4, on_batch=sizes.append, **kw)
    return sizes, out


def test_on_batch_once_per_batch_on_torch(torch_encoder, texts, monkeypatch):
    monkeypatch.setattr(torch_encoder, "pipeline_chunk", None)
    sizes, out = _sizes_by_batch(torch_encoder, texts)
    assert sizes == [4] * 17 + [2] and sum(sizes) == len(texts)  # batches of 4, longest first
    ref = torch_encoder.encode_multi(texts, ["cls", "last-avg"], batch_size=4)
    for p in ref:
        np.testing.assert_array_equal(out[p], ref[p])  # the callback changes nothing


def test_on_batch_from_two_streams(two_streams, texts):
    """Two streams run batches at once; the callback is called once per batch, never from two
    threads at the same time, and the vectors are those of one stream."""
    inside, overlaps, sizes = [0], [0], []

    def report(n: int) -> None:
        inside[0] += 1
        overlaps[0] += inside[0] > 1
        time.sleep(0.001)
        sizes.append(n)
        inside[0] -= 1

    out = two_streams.encode_multi(texts, ["cls", "last-avg"], batch_size=4, on_batch=report)
    assert sorted(sizes) == [2] + [4] * 17 and overlaps[0] == 0
    two_streams.session.streams = 1
    try:
        one = two_streams.encode_multi(texts, ["cls", "last-avg"], batch_size=4)
    finally:
        two_streams.session.streams = 2
    for p in one:
        np.testing.assert_array_equal(out[p], one[p])


def test_metered_makes_one_call_for_an_encoder_with_on_batch(torch_encoder, texts):
    calls: list[int] = []
    real = torch_encoder.encode_multi

    class Spy:
        name, identity, default_pooling, dim, batch_size = "spy", "spy@1", "cls", 32, 2

        def encode_multi(self, sentences, poolings, *, max_length=64, batch_size=None,
                         on_batch=None):
            calls.append(len(sentences))
            return real(sentences, poolings, max_length=max_length, batch_size=batch_size,
                        on_batch=on_batch)

    metered = MeteredEncoder(Spy(), progress=False)
    seen: list[int] = []
    metered.begin(len(texts))
    metered._display.update = seen.append  # type: ignore[union-attr]
    metered.encode_multi(texts, ["cls"], batch_size=2)
    metered.end()
    assert calls == [70]  # 35 batches: once, not in steps of 16 batches
    assert seen == [2] * 35
    assert metered.stats.encoded == 70 and metered.stats.seconds > 0


def test_metered_keeps_steps_for_an_encoder_without_on_batch():
    calls: list[int] = []

    class Plain:  # the protocol alone, as a user's own encoder may be
        name, identity, default_pooling, dim, batch_size = "plain", "plain@1", "cls", 1, 2

        def encode_multi(self, sentences, poolings, *, max_length=64, **options):
            calls.append(len(sentences))
            return {str(p): np.array([[len(s)] for s in sentences], np.float32)
                    for p in poolings}

    assert not takes_on_batch(Plain())
    texts = [f"{i}" + "x" * (i % 7) for i in range(70)]
    out = CachedEncoder(MeteredEncoder(Plain(), progress=False), cache=None).encode(texts, "cls")
    assert calls == [32, 32, 6]  # steps of 16 batches of 2
    assert out.ravel().tolist() == [len(t) for t in texts]


def test_no_cache_is_one_model_call(torch_encoder, texts, tmp_path):
    """Without a cache nothing is committed between pieces: one call of the model, whatever the
    cache chunk; with a cache, a first piece of two batches (it times the pieces after it)."""
    from embedkit.encoders.cache import EmbeddingCache

    calls: list[int] = []
    real = torch_encoder.encode_multi

    class Spy:
        name, identity, default_pooling, dim, batch_size = "spy", "spy@1", "cls", 32, 4

        def describe(self):
            return {"dtype": "float32"}

        def encode_multi(self, sentences, poolings, *, max_length=64, on_batch=None,
                         **options):
            calls.append(len(sentences))
            return real(sentences, poolings, max_length=max_length, on_batch=on_batch,
                        **options)

    CachedEncoder(MeteredEncoder(Spy(), progress=False), cache=None, chunk=8).encode(texts)
    assert calls == [70]
    calls.clear()
    CachedEncoder(MeteredEncoder(Spy(), progress=False), EmbeddingCache(tmp_path / "c"),
                  chunk=64).encode(texts)
    assert calls[0] == 8 and sum(calls) == 70


def test_stats_are_unchanged_by_the_callback(tiny_model_dir, texts):
    enc = EncoderConfig(str(tiny_model_dir), cache=False, progress=False,
                        token_budget=0).build()
    mine: list[int] = []
    enc.encode(texts + texts[:5], "cls", batch_size=4, on_batch=mine.append)
    s = encode_stats(enc)
    assert (s["sentences"], s["unique_sentences"], s["encoded"]) == (75, 70, 70)
    assert mine == [4] * 17 + [2]  # a caller's callback goes through the stack, with progress


# -- the pipeline -----------------------------------------------------------------------------

def test_pipelined_equals_each_chunk_encoded_alone(torch_encoder, texts, monkeypatch):
    """Chunks of 16: the sentences ordered longest first by characters, each chunk planned on
    its own. Bit for bit what the same chunks give unpipelined; within float tolerance of one
    plan over all."""
    monkeypatch.setattr(torch_encoder, "pipeline_chunk", None)
    whole = torch_encoder.encode(texts, "last-avg", batch_size=4)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    by_chunk = np.empty_like(whole)
    for i in range(0, len(texts), 16):
        rows = order[i:i + 16]
        by_chunk[rows] = torch_encoder.encode([texts[j] for j in rows], "last-avg", batch_size=4)
    monkeypatch.setattr(torch_encoder, "pipeline_chunk", 16)
    sizes: list[int] = []
    piped = torch_encoder.encode_multi(texts, ["last-avg"], batch_size=4,
                                       on_batch=sizes.append)["last-avg"]
    assert sizes == [4, 4, 4, 4] * 4 + [4, 2] and not _threads("embedkit-tokenize")
    np.testing.assert_array_equal(piped, by_chunk)
    np.testing.assert_allclose(piped, whole, atol=1e-5)


def test_pipelined_on_two_streams(two_streams, texts, monkeypatch):
    monkeypatch.setattr(two_streams, "pipeline_chunk", None)
    whole = two_streams.encode(texts, "cls", batch_size=4)
    monkeypatch.setattr(two_streams, "pipeline_chunk", 8)
    sizes: list[int] = []
    piped = two_streams.encode_multi(texts, ["cls"], batch_size=4, on_batch=sizes.append)["cls"]
    assert sum(sizes) == 70 and len(sizes) == 18 and not _threads("embedkit-tokenize")
    np.testing.assert_allclose(piped, whole, atol=1e-5)


def test_a_small_call_is_not_pipelined(torch_encoder, texts, monkeypatch):
    started: list[object] = []
    monkeypatch.setattr(base, "Prefetch", lambda *a, **k: started.append(a) or Prefetch(*a, **k))
    torch_encoder.encode(texts, "cls")  # 70 <= PIPELINE_CHUNK
    assert started == []


def test_a_tokenizer_error_reaches_the_caller(torch_encoder, texts, monkeypatch):
    """The producer thread's error is raised by the call, after the batches before it ran;
    the thread is gone."""
    monkeypatch.setattr(torch_encoder, "pipeline_chunk", 16)
    real = base.tokenize_ids
    calls = [0]

    def failing(*a, **k):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("tokenizer broke")
        return real(*a, **k)

    monkeypatch.setattr(base, "tokenize_ids", failing)
    ran: list[int] = []
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        torch_encoder.encode_multi(texts, ["cls"], batch_size=4, on_batch=ran.append)
    assert sum(ran) == 32  # the first two chunks ran
    assert not _threads("embedkit-tokenize")


def test_a_stream_error_and_an_interrupt_leave_no_thread(two_streams, texts, monkeypatch):
    monkeypatch.setattr(two_streams, "pipeline_chunk", 8)
    real = two_streams._pooled  # every batch's outputs pass here, on either runtime
    done = [0]

    def pooled(*a, **k):
        done[0] += 1
        if done[0] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(two_streams, "_pooled", pooled)
    with pytest.raises(KeyboardInterrupt):
        two_streams.encode(texts, "cls", batch_size=4)
    assert done[0] < 8  # the other stream stopped after its batch
    assert not _threads("embedkit-tokenize") and not _threads("embedkit-stream")


def test_an_interrupt_in_the_caller_stops_the_producer(torch_encoder, texts, monkeypatch):
    monkeypatch.setattr(torch_encoder, "pipeline_chunk", 8)

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        torch_encoder.encode_multi(texts, ["cls"], batch_size=4, on_batch=interrupt)
    assert not _threads("embedkit-tokenize")


def test_prefetch_several_consumers_and_errors():
    def items():
        yield from range(3)
        raise ValueError("third")

    with Prefetch(items(), depth=1) as got:
        assert [next(got), next(got), next(got)] == [0, 1, 2]
        for _ in range(2):  # every later next raises it too
            with pytest.raises(ValueError, match="third"):
                next(got)
    with Prefetch(iter(range(100)), depth=2) as got:
        seen: list[int] = []
        workers = [threading.Thread(target=lambda: seen.extend(got)) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert sorted(seen) == list(range(100))


def test_prefetch_closed_early_stops_its_thread():
    with Prefetch(iter(range(10**6)), depth=2, name="embedkit-test-prefetch") as got:
        assert next(got) == 0
    assert not _threads("embedkit-test-prefetch")


def test_openvino_streams_are_driven_from_one_thread(tiny_model_dir, tmp_path, texts):
    """OpenVINO's requests are started and collected from the calling thread alone (two Python
    threads each running ``infer`` deadlocked inside OpenVINO's input copy)."""
    pytest.importorskip("openvino")
    enc = EncoderConfig(str(tiny_model_dir), backend="openvino", threads=2, token_budget=0,
                        cache_dir=str(tmp_path)).build_model()
    assert enc.session.streams == 2
    callers: set[str] = set()
    real = enc.session.start

    def start(*a, **k):
        callers.add(threading.current_thread().name)
        return real(*a, **k)

    enc.session.start = start
    one = EncoderConfig(str(tiny_model_dir), backend="openvino", threads=1, token_budget=0,
                        cache_dir=str(tmp_path)).build_model()
    got = enc.encode_multi(texts, ["last-avg", "first-last-avg"], batch_size=4)
    ref = one.encode_multi(texts, ["last-avg", "first-last-avg"], batch_size=4)
    assert callers == {threading.current_thread().name}
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], atol=1e-5)
