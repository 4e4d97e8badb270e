"""``index build``'s options of quantised indexes (``--vectors``, ``--rescore``,
``--rescore-with``) and of the index choice under a budget (``--max-memory``,
``--max-query-ms``, ``--min-recall``), shared by the text and the ``--embeddings`` builds; the
work is :mod:`embedkit.retrieval.quantized` and :mod:`embedkit.retrieval.budget`'s.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from embedkit.cli.common import int_at_least
from embedkit.errors import ConfigError

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.retrieval.budget import IndexCodes

__all__ = ["add_index_codes", "index_codes", "memory_size", "print_choice"]


def memory_size(text: str) -> int:
    """argparse type of ``--max-memory``: ``300MB``, ``2GB``, ``512MiB`` -> bytes."""
    from embedkit.io.sizes import parse_size

    try:
        return parse_size(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def add_index_codes(b: argparse.ArgumentParser) -> None:
    """``index build``'s options of quantised indexes and of the index choice."""
    from embedkit.retrieval.choices import DEFAULT_RESCORE, INDEX_CODES, RESCORE_WITH

    b.add_argument("--vectors", choices=INDEX_CODES, default="float",
                   help="what the index keeps of each vector: float32, int8 (FAISS SQ8), "
                        "binary (sign bits: BFlat, BHNSW<M>, BIVF<n> from the --factory) or "
                        "factory (the --factory's own codes, e.g. IVF4096,PQ256 or SQ4, "
                        "rescored like the others)")
    b.add_argument("--rescore", type=int_at_least(0, "0 (no rescoring) or more"), default=DEFAULT_RESCORE, metavar="K",
                   help="int8/binary/factory: search K x k candidates and rescore them exactly from "
                        "vectors kept on disk, memory-mapped (0: no rescoring, no file; "
                        f"default: {DEFAULT_RESCORE})")
    b.add_argument("--rescore-with", choices=RESCORE_WITH, default="float",
                   help="the vectors rescoring reads: float32, or int8 (4x smaller file)")
    b.add_argument("--max-memory", type=memory_size, metavar="SIZE",
                   help="choose the index (Flat, SQ8, SQ4, HNSW, IVF-Flat, IVF-PQ sized to the "
                        "budget, binary; the compressed ones also rescored) that fits this "
                        "much RAM, e.g. 300MB or 2GB, by measuring each on a seeded held-out "
                        "sample of the vectors")
    b.add_argument("--max-query-ms", type=_positive_float, metavar="MS",
                   help="with --max-memory: milliseconds a query may take (estimated at the "
                        "full size from the sample)")
    b.add_argument("--min-recall", type=_positive_float, metavar="R",
                   help="with --max-memory: recall@10 against exact float search, e.g. 0.95")


def index_codes(args: argparse.Namespace) -> IndexCodes:
    """The builders' :class:`~embedkit.retrieval.budget.IndexCodes` of the flags."""
    from embedkit.retrieval.budget import Budget, IndexCodes

    budget = None
    if args.max_memory is None:
        for flag, value in (("--max-query-ms", args.max_query_ms),
                            ("--min-recall", args.min_recall)):
            if value is not None:
                raise ConfigError(f"{flag} goes with --max-memory SIZE (the budget it limits)")
    else:
        if args.factory != "Flat" or args.vectors != "float":
            raise ConfigError("--max-memory chooses the factory and the vectors itself: drop "
                              "--factory and --vectors (or drop --max-memory)")
        if args.min_recall is not None and args.min_recall > 1:
            raise ConfigError(f"--min-recall is a recall@10 between 0 and 1, not "
                              f"{args.min_recall:g}")
        budget = Budget(args.max_memory, args.max_query_ms, args.min_recall)
    if args.vectors == "float" and budget is None and args.rescore_with != "float":
        raise ConfigError("--rescore-with goes with --vectors int8, binary or factory")
    return IndexCodes(args.vectors, args.rescore, args.rescore_with, budget)


def print_choice(index: Any) -> None:
    """The measured candidates and why one was kept (a --max-memory build)."""
    from embedkit.io.tables import text_table

    choice = index.recipe.get("index_choice")
    if not choice:
        return
    s = choice["sample"]
    print(f"index choice ({s['rows']} sampled vectors, {s['queries']} held-out queries, seed "
          f"{s['seed']}; sizes and times for {s['total']} vectors):")
    rows = [[r["candidate"], f"{r['memory_bytes'] / 1e6:.1f}", f"{r['bytes_per_vector']:g}",
             f"{r['recall@10']:.3f}", f"{r['query_ms']:.2f}",
             " ".join(f"{k}={v}" for k, v in r["setting"].items())]
            for r in choice["candidates"]]
    print(text_table(["candidate", "memory MB", "bytes/vector", "recall@10", "ms/query",
                      "setting"], rows))
    print(f"chosen {choice['why']}")
