import json
import warnings

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.postprocess.affine import AffineMap
from embedkit.retrieval.index import EmbeddingIndex, Hit
from embedkit.store.recipe import RecipeConflict, RecipeConflictError

N, D = 2000, 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # OpenMP spin-waiting on a busy 2-core machine makes FAISS training 10x slower; restored after.
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D)).astype(np.float32)
    q = rng.standard_normal((50, D)).astype(np.float32)
    texts = [f"t{i}" for i in range(N)]
    return x, q, texts


@pytest.fixture(scope="module")
def transform():
    rng = np.random.default_rng(1)
    return rng.standard_normal((D, 16)).astype(np.float32), rng.standard_normal(D).astype(
        np.float32
    )


def _normalise(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ids(hits):
    return np.array([[h.id for h in row] for row in hits])


def _scores(hits):
    return np.array([[h.score for h in row] for row in hits])


def _overlap(a, b, k):
    return np.mean([len(set(r[:k]) & set(s[:k])) / k for r, s in zip(a, b, strict=True)])


def test_flat_cosine_is_exact(data):
    x, q, texts = data
    index = EmbeddingIndex.build(x, texts)
    hits = index.search(q, k=10)
    sims = _normalise(q) @ _normalise(x).T
    expected = np.argsort(-sims, axis=1)[:, :10]
    np.testing.assert_array_equal(_ids(hits), expected)
    np.testing.assert_allclose(_scores(hits), np.take_along_axis(sims, expected, axis=1), atol=1e-5)
    assert hits[0][0].text == texts[expected[0, 0]] and hits[0][0].user_id is None


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW16", "IVF16,PQ8"])
def test_cosine_equals_ip_on_normalised(data, factory):
    x, q, texts = data
    cos = EmbeddingIndex.build(x, texts, factory=factory, metric="cosine")
    ip = EmbeddingIndex.build(_normalise(x), texts, factory=factory, metric="ip")
    kw = {"nprobe": 4} if factory.startswith("IVF") else {}
    a = _ids(cos.search(q, k=10, **kw))
    b = _ids(ip.search(_normalise(q), k=10, **kw))
    if factory == "Flat":
        np.testing.assert_array_equal(a, b)
    else:
        assert _overlap(a, b, 10) >= 0.9


def test_l2_metric_flat(data):
    x, q, texts = data
    index = EmbeddingIndex.build(x, texts, metric="l2")
    d2 = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(_ids(index.search(q, 5)), np.argsort(d2, axis=1)[:, :5])


def test_transform_is_baked_in(data, transform):
    x, q, texts = data
    kernel, bias = transform
    index = EmbeddingIndex.build(x, texts, transform=transform)
    assert (index.dim_in, index.dim) == (D, 16)
    baked = index.affine_map()
    np.testing.assert_allclose(baked.kernel, kernel, rtol=1e-6)
    np.testing.assert_allclose(baked.apply(x[:5]), (x[:5] + bias) @ kernel, atol=1e-4)
    # raw queries on the index == manually transformed + normalised on a plain flat IP index
    manual = EmbeddingIndex.build(_normalise((x + bias) @ kernel), texts, metric="ip")
    got = index.search(q, 10)
    want = manual.search(_normalise((q + bias) @ kernel), 10)
    np.testing.assert_array_equal(_ids(got), _ids(want))
    np.testing.assert_allclose(_scores(got), _scores(want), atol=1e-5)
    assert EmbeddingIndex.build(x[:3], texts[:3]).affine_map() is None
    # an AffineMap is the same transform as its (kernel, bias) pair
    same = EmbeddingIndex.build(x, texts, transform=AffineMap(kernel, bias))
    np.testing.assert_array_equal(_ids(same.search(q, 10)), _ids(got))


def test_normalizing_map_needs_cosine(data, transform):
    x, _, texts = data
    with pytest.raises(ConfigError, match="metric='cosine'"):
        EmbeddingIndex.build(x, texts, metric="ip", transform=AffineMap(*transform, True))
    index = EmbeddingIndex.build(x[:50], texts[:50], transform=AffineMap(*transform, True))
    assert index.affine_map().normalize is False  # the metric's normalisation is not the map's


def test_bad_transform_shape(data):
    x, _, texts = data
    with pytest.raises(ConfigError, match="kernel"):
        EmbeddingIndex.build(x, texts, transform=(np.ones((8, 4)), np.zeros(8)))


def test_add_skips_duplicates():
    x = np.eye(4, dtype=np.float32)
    index = EmbeddingIndex.build(x[:2], ["a", "b"], ids=["A", "B"])
    assert index.add(x[1:4], ["b", "c", "c"], ids=["B2", "C", "C2"]) == 1
    assert index.texts == ["a", "b", "c"] and index.ntotal == 3
    assert index.user_ids == ["A", "B", "C"]
    assert index.add(x[:1], ["a"]) == 0
    hit = index.search(x[2], k=1)[0][0]
    assert (hit.id, hit.text, hit.user_id) == (2, "c", "C")
    # duplicates inside the build batch are indexed once
    assert EmbeddingIndex.build(x, ["a", "a", "b", "a"]).ntotal == 2


def test_empty_and_tiny_corpus():
    empty = EmbeddingIndex.build(np.zeros((0, 4), np.float32), [])
    assert empty.search(np.ones((2, 4), np.float32), k=5) == [[], []]
    one = EmbeddingIndex.build(np.ones((1, 4), np.float32), ["only"])
    hits = one.search(np.ones((3, 4), np.float32), k=10)
    assert [len(h) for h in hits] == [1, 1, 1]
    assert hits[0][0] == Hit(0, "only", pytest.approx(1.0), None)
    assert hits[0][0].to_dict()["text"] == "only"


def test_ivf_too_few_vectors():
    x = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match=r"needs at least 1024 training vectors.*smaller nlist"):
        EmbeddingIndex.build(x, [str(i) for i in range(100)], factory="IVF1024,Flat")
    with pytest.raises(ConfigError, match=r"needs at least 256"):
        EmbeddingIndex.build(x, [str(i) for i in range(100)], factory="PQ4")
    with pytest.raises(ConfigError, match="cannot build factory"):
        EmbeddingIndex.build(x, [str(i) for i in range(100)], factory="NoSuchThing")


def test_search_params(data):
    x, q, texts = data
    ivf = EmbeddingIndex.build(x, texts, factory="IVF16,Flat")
    exact = _ids(EmbeddingIndex.build(x, texts).search(q, 10))
    full = _ids(ivf.search(q, 10, nprobe=16))
    np.testing.assert_array_equal(full, exact)  # every list probed: exact
    from faiss import extract_index_ivf

    assert extract_index_ivf(ivf.faiss_index).nprobe == 1  # per-call: the index is unchanged
    with pytest.raises(ConfigError, match="HNSW"):
        ivf.search(q, 10, ef_search=32)
    hnsw = EmbeddingIndex.build(x, texts, factory="HNSW16")
    assert _overlap(_ids(hnsw.search(q, 10, ef_search=128)), exact, 10) >= 0.95
    with pytest.raises(ConfigError, match="IVF"):
        hnsw.search(q, 10, nprobe=4)


def test_search_texts(data):
    x, _, texts = data
    index = EmbeddingIndex.build(x, texts)
    lookup = dict(zip(texts, x, strict=True))

    def encode(ts):
        return np.stack([lookup[t] for t in ts])

    hits = index.search_texts(["t5", "t7"], encode, k=1)
    assert [h[0].text for h in hits] == ["t5", "t7"]


def test_save_load_round_trip(tmp_path, data, transform):
    x, q, texts = data
    recipe = {"model": "m3e-small", "pooling": "cls", "max_length": 128, "post": None}
    index = EmbeddingIndex.build(
        x,
        texts,
        factory="IVF16,Flat",
        transform=transform,
        recipe=recipe,
        ids=[f"u{i}" for i in range(N)],
    )
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    stored = dict(meta["recipe"])
    assert stored.pop("search_defaults")["nprobe"] >= 1  # chosen at build time (IVF)
    assert meta["format"] == 1 and meta["ntotal"] == N and stored == recipe
    assert (meta["dim_in"], meta["dim"], meta["metric"]) == (D, 16, "cosine")
    assert set(meta["files"]) == {"index.faiss", "texts.jsonl"} and "faiss-cpu" in meta["versions"]
    first = json.loads((tmp_path / "idx" / "texts.jsonl").read_text().splitlines()[0])
    assert first == {"id": 0, "text": "t0", "user_id": "u0"}
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    assert loaded.recipe == meta["recipe"] and loaded.factory == "IVF16,Flat"
    a, b = index.search(q, 10, nprobe=4), loaded.search(q, 10, nprobe=4)
    assert a == b
    np.testing.assert_allclose(loaded.affine_map().kernel, transform[0])
    assert loaded.memory_bytes() > 0
    # saving again replaces the folder
    loaded.add(x[:1] + 1, ["new"])
    loaded.save(tmp_path / "idx")
    assert EmbeddingIndex.load(tmp_path / "idx").ntotal == N + 1


@pytest.mark.parametrize("name", ["texts.jsonl", "index.faiss"])
def test_load_refuses_tampered_files(tmp_path, name):
    x = np.eye(3, dtype=np.float32)
    EmbeddingIndex.build(x, ["a", "b", "c"]).save(tmp_path / "idx")
    path = tmp_path / "idx" / name
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(ConfigError, match=rf"{name}.*changed.*rebuild"):
        EmbeddingIndex.load(tmp_path / "idx")
    path.unlink()
    with pytest.raises(ConfigError, match=rf"{name}: missing"):
        EmbeddingIndex.load(tmp_path / "idx")


def test_load_refuses_count_mismatch(tmp_path):
    from embedkit.io.seal import value_checksums
    from embedkit.provenance import sha256_file

    EmbeddingIndex.build(np.eye(3, dtype=np.float32), ["a", "b", "c"]).save(tmp_path / "idx")
    texts = tmp_path / "idx" / "texts.jsonl"
    texts.write_text("".join(texts.read_text().splitlines(keepends=True)[:2]))
    meta_path = tmp_path / "idx" / "index.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["texts.jsonl"] = sha256_file(texts)  # checksum updated, count not
    meta["values_sha256"] = value_checksums(meta)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="ntotal=3.*2 texts"):
        EmbeddingIndex.load(tmp_path / "idx")


def test_check_recipe():
    index = EmbeddingIndex.build(
        np.eye(2, dtype=np.float32),
        ["a", "b"],
        recipe={"model": "m3e-small", "pooling": "cls", "max_length": 128, "post": None},
    )
    assert index.check_recipe({"pooling": "cls", "max_length": "128", "model": None}) == []
    (conflict,) = index.check_recipe({"pooling": "last-avg"})
    assert conflict == RecipeConflict("pooling", "cls", "last-avg")
    assert conflict.describe() == "index was built with pooling=cls but pooling=last-avg was given"
    assert conflict.describe(given="--pooling last-avg") == (
        "index was built with pooling=cls but --pooling last-avg was given")
    (post,) = index.check_recipe({"post": "w.npz"})
    assert "post=none but post=w.npz" in post.describe()
    assert len(index.check_recipe({"pooling": "last-avg", "max_length": 64})) == 2
    with pytest.warns(UserWarning, match="does not record dtype"):
        assert index.check_recipe({"dtype": "fp16"}) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index.check_recipe({})
    err = RecipeConflictError(index.check_recipe({"pooling": "last-avg"}))
    assert str(err) == ("index was built with pooling=cls but pooling=last-avg was given; "
                        "use the index's recipe or force=True")
    assert err.param == "force" and isinstance(err, ConfigError)


def test_bad_inputs(data):
    x, q, texts = data
    with pytest.raises(ConfigError, match="texts"):
        EmbeddingIndex.build(x, texts[:-1])
    with pytest.raises(ConfigError, match="metric"):
        EmbeddingIndex.build(x, texts, metric="dot")
    index = EmbeddingIndex.build(x[:10], texts[:10])
    with pytest.raises(ConfigError, match="dimension"):
        index.search(q[:, :8], 3)
    with pytest.raises(ConfigError, match="k must"):
        index.search(q, 0)
