"""Index choice under a budget: memory (and optionally query time and recall) decide among
Flat, SQ8, SQ4, HNSW, IVF-Flat, IVF-PQ and binary (sign bits), the compressed
ones sized to the budget and also rescored from float vectors on disk, by measuring each
candidate on a seeded held-out sample of the data.

Each candidate is built on ``sample_rows`` vectors of the data (the IVF lists scaled to the
sample by the same rule as the full index: about ``4 sqrt(n)``), searched with held-out query
rows (not indexed), and its recall@10 measured against exact float search over the same sample
(its ``nprobe`` / ``efSearch`` the smallest reaching the recall asked for). Its memory at the
full size is extrapolated from sizes measured, not from a formula alone: the serialised index
trained and empty, then with half and all of the sample added, gives the fixed part and the
exact bytes per vector (plus the full index's extra IVF centroids); query time is the measured
time of one query scaled to the full size (exhaustive scans by ``n``, IVF by ``sqrt(n)``, HNSW
by ``log n``). The candidate that fits with the highest recall is kept (ties: the smaller one);
when none fits, :class:`BudgetError` names the closest.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((2000, 16)).astype("float32")
>>> choice = choose_index(matrix_sampler(x), 2000, Budget(parse_size("100kB")),
...                       only=[Candidate("Flat"), Candidate("Flat", "int8")])
>>> choice.candidate.name, choice.row["bytes_per_vector"]
('SQ8', 16.0)
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.io.atomic import _human_size
from embedkit.io.sizes import parse_size
from embedkit.postprocess.affine import AffineMap
from embedkit.retrieval.choices import DEFAULT_RESCORE
from embedkit.retrieval.faiss_ops import (
    make_faiss_index,
    search_parameters,
    serialized_bytes,
    train_index,
)
from embedkit.retrieval.quantized import quantized_factory
from embedkit.retrieval.shards import build_quantized
from embedkit.store.encode_folder import draw_rows

__all__ = ["Budget", "BudgetError", "Candidate", "Choice", "candidates", "choose_index",
           "IndexCodes", "ivf_lists", "matrix_sampler", "pq_m",
           "parse_size", "show_bytes"]

logger = logging.getLogger(__name__)

#: vectors of the data each candidate is built on, and held-out queries measuring it
SAMPLE_ROWS = 50_000
SAMPLE_QUERIES = 200
K = 10
#: recall the search settings are tuned to when no --min-recall is given
DEFAULT_TARGET = 0.95


def show_bytes(n: float) -> str:
    """A size as messages show it (``312 MB``).

    >>> show_bytes(312_500_000)
    '312 MB'
    """
    return _human_size(int(n))


@dataclass(frozen=True)
class Budget:
    """What the index must fit: RAM bytes, and optionally ms per query and recall@10."""

    max_memory: int
    max_query_ms: float | None = None
    min_recall: float | None = None

    def __post_init__(self) -> None:
        if self.max_memory <= 0:
            raise ConfigError("max_memory must be positive", param="max_memory")
        if self.max_query_ms is not None and self.max_query_ms <= 0:
            raise ConfigError(f"max_query_ms must be positive, got {self.max_query_ms}",
                              param="max_query_ms")
        if self.min_recall is not None and not 0 < self.min_recall <= 1:
            raise ConfigError(f"min_recall must be in (0, 1], got {self.min_recall}",
                              param="min_recall")

    def describe(self) -> str:
        parts = [f"memory <= {show_bytes(self.max_memory)}"]
        if self.max_query_ms is not None:
            parts.append(f"query <= {self.max_query_ms:g} ms")
        if self.min_recall is not None:
            parts.append(f"recall@10 >= {self.min_recall:g}")
        return ", ".join(parts)


class BudgetError(ConfigError):
    """No candidate fits; :attr:`closest` is the measured row of the nearest one."""

    def __init__(self, message: str, closest: dict[str, Any]):
        self.closest = closest
        super().__init__(message, param="max_memory")


@dataclass(frozen=True)
class Candidate:
    """One index to try: a float factory, the codes it keeps and its rescoring."""

    factory: str
    codes: str = "float"
    rescore: int = 0

    @property
    def name(self) -> str:
        """The spelling :func:`~embedkit.retrieval.quantized.parse_spec` reads back (index
        eval's cost factories take it)."""
        if self.codes == "float":
            return self.factory
        base = quantized_factory(self.factory, self.codes)
        return f"{base}+rescore{self.rescore}x" if self.rescore else base


def ivf_lists(n: int) -> int:
    """The IVF list count for ``n`` vectors: the power of two nearest ``4 sqrt(n)``, at least
    16 and at most ``n / 39`` (FAISS's points per centroid).

    >>> ivf_lists(1_000_000), ivf_lists(50_000)
    (4096, 1024)
    """
    target = 4 * math.sqrt(max(n, 1))
    nlist = 1 << max(4, round(math.log2(target)))
    while nlist > 16 and nlist * 39 > n:
        nlist //= 2
    return nlist


def pq_m(dim: int, max_bytes: float | None) -> int:
    """PQ sub-quantizers (one byte each, ``nbits=8``; FAISS needs ``m | dim``): the most
    that ``max_bytes`` a vector allows (up to ``dim / 2``: two dimensions a byte), else 8
    dimensions each, at most 64.

    >>> pq_m(512, 292), pq_m(512, None), pq_m(96, 50)
    (256, 64, 48)
    """
    divisors = [m for m in range(1, dim + 1) if dim % m == 0]
    if max_bytes is None:
        return max([m for m in divisors if m <= min(64, max(1, dim // 8))] or [1])
    return max([m for m in divisors if m <= min(max_bytes, max(1, dim // 2))] or [1])


def candidates(n: int, dim: int, max_memory: int | None = None,
               rescore: int = DEFAULT_RESCORE) -> list[Candidate]:
    """The candidates for ``n`` vectors of dimension ``dim`` (IVF lists for ``n``), the
    compressed ones sized to ``max_memory`` (a user's expectation, as autofaiss does): IVF-PQ
    with the largest PQ that the bytes a vector may take allow (less the IVF's 8-byte id and
    the centroids and codebooks), ``SQ4`` (``dim / 2`` bytes), binary; each of them also
    rescored from the float vectors on disk.

    >>> [c.name for c in candidates(1_000_000, 512, 300_000_000)][5:9]
    ['IVF4096,PQ256', 'IVF4096,PQ256+rescore4x', 'SQ4', 'SQ4+rescore4x']
    """
    nlist = ivf_lists(n)
    # bytes a vector may take, net of the IVF centroids and a PQ's codebooks (256 x dim floats)
    per = (max_memory - (nlist + 256) * dim * 4) / n if max_memory else None
    m = pq_m(dim, None if per is None else per - 8)
    out = [Candidate("Flat"), Candidate("Flat", "int8"), Candidate("Flat", "int8", rescore),
           Candidate("HNSW32"), Candidate(f"IVF{nlist},Flat"),
           Candidate(f"IVF{nlist},PQ{m}"), Candidate(f"IVF{nlist},PQ{m}", "factory", rescore)]
    if dim % 2 == 0:
        out += [Candidate("SQ4"), Candidate("SQ4", "factory", rescore)]
    if dim % 8 == 0:
        out += [Candidate("Flat", "binary", rescore),
                Candidate(f"IVF{nlist},Flat", "binary", rescore)]
    return out


@dataclass
class Choice:
    """The chosen candidate and every measured row (why)."""

    candidate: Candidate
    row: dict[str, Any]
    rows: list[dict[str, Any]]
    why: str
    budget: Budget
    sample: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """What the recipe keeps as ``index_choice``."""
        return {"budget": asdict(self.budget), "chosen": self.candidate.name,
                "factory": self.candidate.factory, "codes": self.candidate.codes,
                "rescore": self.candidate.rescore, "why": self.why, "sample": self.sample,
                "candidates": self.rows}


def _scaled(c: Candidate, n_full: int, n_sample: int) -> Candidate:
    """The candidate as measured on a sample of ``n_sample`` rows (IVF lists for it)."""
    if "IVF" not in c.factory:
        return c
    small = ivf_lists(n_sample)
    return Candidate(re.sub(r"IVF\d+", f"IVF{small}", c.factory), c.codes, c.rescore)


def _nlist(factory: str) -> int:
    m = re.search(r"IVF(\d+)", factory)
    return int(m.group(1)) if m else 0


class _Measure:
    """A held-out sample: indexed rows, query rows and their exact neighbours."""

    def __init__(self, x: np.ndarray, q: np.ndarray, metric: str, amap: AffineMap | None,
                 seed: int, target: float):
        self.x, self.q, self.metric, self.amap = x, q, metric, amap
        self.seed, self.target = seed, target
        flat = make_faiss_index(x.shape[1], "Flat", metric, amap)
        flat.add(x)
        self.truth = flat.search(q, K)[1]

    def recall(self, labels: np.ndarray) -> float:
        hits = [len(set(t) & set(f[f >= 0])) / len(t) for t, f in zip(self.truth, labels,
                                                                        strict=True)]
        return float(np.mean(hits))

    def _search(self, index: Any, c: Candidate, setting: dict[str, int], q: np.ndarray
                ) -> np.ndarray:
        if c.codes == "float":
            params = search_parameters(index, c.factory, nprobe=setting.get("nprobe"),
                                       ef_search=setting.get("ef_search"))
            return index.search(q, K, params=params)[1]
        return index.search_with(q, K, **setting)[1]

    def _tuned(self, index: Any, c: Candidate) -> tuple[dict[str, int], float]:
        if "IVF" in c.factory:
            nlist, values, key = _nlist(c.factory), [], "nprobe"
            v = 1
            while v < nlist:
                values.append(v)
                v *= 2
            values.append(nlist)
        elif "HNSW" in c.factory:
            key, values = "ef_search", [16, 32, 64, 128, 256, 512]
        else:
            return {}, self.recall(self._search(index, c, {}, self.q))
        got = 0.0
        for value in values:
            got = self.recall(self._search(index, c, {key: value}, self.q))
            if got >= self.target:
                break
        return {key: value}, got

    def _build(self, c: Candidate) -> tuple[Any, int, float]:
        """Build ``c`` on the sample in two halves: the index, and (measured on the way) the
        fixed bytes of the trained empty index and the bytes each added vector takes."""
        n = self.x.shape[0]
        half = n // 2
        if c.codes == "float":
            index = make_faiss_index(self.x.shape[1], c.factory, self.metric, self.amap)
            train_index(index, self.x, c.factory, None, self.seed)
            index.add(self.x[:half])
            first = serialized_bytes(index)
            index.add(self.x[half:])
            last = serialized_bytes(index)
        else:
            index = build_quantized(self.x[:half], c.factory, self.metric, self.amap,
                                    vectors=c.codes, rescore=c.rescore, seed=self.seed)
            first = index.memory_bytes()
            index.add(self.x[half:])
            last = index.memory_bytes()
        per = (last - first) / max(1, n - half)
        return index, int(last - per * n), per

    def row(self, c: Candidate, full: Candidate, n_full: int) -> dict[str, Any]:
        """Build ``c`` on the sample, tune and time it; its row at ``n_full`` vectors."""
        start = time.perf_counter()
        index, fixed, per = self._build(c)
        build_s = time.perf_counter() - start
        setting, recall = self._tuned(index, c)
        n_single = min(50, self.q.shape[0])
        start = time.perf_counter()
        for i in range(n_single):
            self._search(index, c, setting, self.q[i:i + 1])
        ms = 1000 * (time.perf_counter() - start) / max(1, n_single)
        dim = self.amap.k if self.amap is not None else self.x.shape[1]
        extra_lists = max(0, _nlist(full.factory) - _nlist(c.factory)) * dim * 4
        memory = int(fixed + extra_lists + per * n_full)
        n = self.x.shape[0]
        scale = (n_full / n if "IVF" not in c.factory and "HNSW" not in c.factory else
                 math.sqrt(n_full / n) if "IVF" in c.factory else
                 math.log(max(n_full, 2)) / math.log(max(n, 2)))
        return {"candidate": full.name, "factory": full.factory, "codes": full.codes,
                "rescore": full.rescore, "measured_as": c.name, "setting": setting,
                "recall@10": round(recall, 4), "query_ms_sample": round(ms, 3),
                "query_ms": round(ms * scale, 3), "memory_bytes": memory,
                "bytes_per_vector": round(per, 2),
                "disk_bytes": memory + (n_full * dim * 4 if full.rescore else 0),
                "build_seconds_sample": round(build_s, 3)}


def _violation(row: dict[str, Any], budget: Budget) -> float:
    """How far a row is from fitting (0: it fits), as the sum of relative excesses."""
    v = max(0.0, row["memory_bytes"] / budget.max_memory - 1)
    if budget.max_query_ms is not None:
        v += max(0.0, row["query_ms"] / budget.max_query_ms - 1)
    if budget.min_recall is not None:
        v += max(0.0, (budget.min_recall - row["recall@10"]) / budget.min_recall)
    return v


def _misses(row: dict[str, Any], budget: Budget) -> str:
    out = []
    if row["memory_bytes"] > budget.max_memory:
        out.append(f"needs {show_bytes(row['memory_bytes'])} > {show_bytes(budget.max_memory)}")
    if budget.max_query_ms is not None and row["query_ms"] > budget.max_query_ms:
        out.append(f"{row['query_ms']:.2f} ms a query > {budget.max_query_ms:g} ms")
    if budget.min_recall is not None and row["recall@10"] < budget.min_recall:
        out.append(f"recall@10 {row['recall@10']:.3f} < {budget.min_recall:g}")
    return ", ".join(out)


def _decide(rows: list[dict[str, Any]], budget: Budget) -> tuple[dict[str, Any], str]:
    fits = [r for r in rows if _violation(r, budget) == 0]
    if not fits:
        closest = min(rows, key=lambda r: _violation(r, budget))
        raise BudgetError(
            f"no index fits {budget.describe()}: the closest is {closest['candidate']} "
            f"({_misses(closest, budget)}); raise the budget or reduce the dimension "
            "with a post-processor (pca:k=..., whiten:k=...)", closest)
    best = max(fits, key=lambda r: (round(r["recall@10"], 2), -r["memory_bytes"]))
    others = [r["candidate"] for r in rows if r not in fits]
    why = (f"{best['candidate']}: recall@10 {best['recall@10']:.3f} (highest of {len(fits)} "
           f"fitting {budget.describe()}; ties go to the smaller), "
           f"{show_bytes(best['memory_bytes'])}, {best['query_ms']:.2f} ms a query"
           + (f"; over budget: {', '.join(others)}" if others else ""))
    return best, why


def choose_index(sample: Callable[[int, int], np.ndarray], total: int, budget: Budget, *,
                 metric: str = "cosine", transform: AffineMap | None = None, seed: int = 0,
                 sample_rows: int = SAMPLE_ROWS, queries: int = SAMPLE_QUERIES,
                 only: list[Candidate] | None = None) -> Choice:
    """Measure every candidate for ``total`` vectors on a held-out sample and keep the one
    that fits ``budget``. ``sample(n, seed)`` draws ``n`` rows of the data with ``seed``
    (:meth:`EncodeFolder.sample`, or rows of a matrix); the first ``queries`` drawn rows are
    held out as queries, the rest indexed. :class:`BudgetError` when nothing fits."""
    n_q = min(queries, max(1, total // 10))
    drawn = sample(min(total, sample_rows + n_q), seed)
    rng = np.random.default_rng(seed + 7)
    order = rng.permutation(drawn.shape[0])
    q, x = drawn[order[:n_q]], np.ascontiguousarray(drawn[order[n_q:]])
    if x.shape[0] < 100:
        raise ConfigError(f"choosing an index needs at least 100 vectors, got {total}",
                          param="max_memory")
    measure = _Measure(x, np.ascontiguousarray(q), metric, transform, seed,
                       budget.min_recall or DEFAULT_TARGET)
    dim = transform.k if transform is not None else x.shape[1]
    tried = only or candidates(total, dim, budget.max_memory)
    rows = []
    for full in tried:
        c = _scaled(full, total, x.shape[0])
        logger.info("measuring %s on %d sampled vectors (%d held-out queries)", full.name,
                    x.shape[0], n_q)
        rows.append(measure.row(c, full, total))
        logger.info("%s: recall@10 %.3f, %s at %d vectors, %.2f ms a query", full.name,
                    rows[-1]["recall@10"], show_bytes(rows[-1]["memory_bytes"]), total,
                    rows[-1]["query_ms"])
    best, why = _decide(rows, budget)
    chosen = next(c for c in tried if c.name == best["candidate"])
    return Choice(chosen, best, rows, why, budget,
                  {"rows": int(x.shape[0]), "queries": int(n_q), "seed": int(seed),
                   "total": int(total)})


def matrix_sampler(x: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """``sample(n, seed)`` over the rows of ``x`` (:func:`draw_rows`, the one row sampler)."""
    def sample(n: int, seed: int) -> np.ndarray:
        return np.ascontiguousarray(x[draw_rows(x.shape[0], n, seed)])
    return sample



@dataclass(frozen=True)
class IndexCodes:
    """The builders' one hook argument: what an index keeps of each vector (``float``,
    ``int8``: SQ8, ``binary``), its rescoring (``rescore`` x k candidates, 0: none, from
    ``rescore_with`` vectors on disk), or the ``budget`` that chooses the factory and codes."""

    codes: str = "float"
    rescore: int = DEFAULT_RESCORE
    rescore_with: str = "float"
    budget: Budget | None = None

    def check(self, factory: str) -> None:
        """Before any encoding: the factory has the codes' form."""
        if self.codes != "float":
            quantized_factory(factory, self.codes)

    def build_kwargs(self) -> dict[str, Any]:
        """What :meth:`EmbeddingIndex.build` takes."""
        return {"codes": self.codes, "rescore": self.rescore, "rescore_with": self.rescore_with}

    def choose(self, sample: Callable[[int, int], np.ndarray], total: int, *, metric: str,
               transform: AffineMap | None, seed: int, factory: str
               ) -> tuple[str, IndexCodes, dict[str, Any]]:
        """``(factory, codes, recipe keys)``: as given without a budget, else the chosen
        candidate's and ``{"index_choice": ...}``."""
        if self.budget is None:
            return factory, self, {}
        choice = choose_index(sample, total, self.budget, metric=metric, transform=transform,
                              seed=seed)
        logger.debug("chose %s", choice.why)
        c = choice.candidate
        return c.factory, replace(self, codes=c.codes, rescore=c.rescore), {
            "index_choice": choice.record()}
