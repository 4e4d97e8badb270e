"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
import json
import sys

from embedkit.data import DataOptions
from embedkit.encoders import EncoderConfig
from embedkit.encoders.cache import EmbeddingCache
from embedkit.io.atomic import atomic_write_json


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding senteval_cn/ and AFQMC/ (default: $EMBEDKIT_DATA; "
                        "without either, tasks load from the Hugging Face hub)")
    p.add_argument("--source", choices=("auto", "local", "hub"), default="auto",
                   help="where task data comes from (default: local when a data dir is known)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip malformed rows (and report how many) instead of stopping")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="m3e-small",
                   help="hub id, local folder or alias (default: m3e-small)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                   help="sentences per forward pass (default: 64)")
    p.add_argument("--lowercase", action="store_true",
                   help="lower-case text before tokenising (the published Keras code does)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="embedding cache (default: $EMBEDKIT_CACHE or the user cache dir)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")


def add_poolings_and_tasks(p: argparse.ArgumentParser) -> None:
    """``--pooling`` (several) and ``--tasks``, as bench and sweep take them."""
    p.add_argument("--pooling", action="append", metavar="P",
                   help="cls, pooler, pooler-tanh, last-avg (mean), first-last-avg, "
                        "layers-avg:I,J; comma-separated or repeated (default: the model's own)")
    p.add_argument("--tasks", help="comma-separated task names or spec .json files "
                                   "(default: ATEC,BQ,LCQMC,PAWSX,STS-B)")


def make_cache(args: argparse.Namespace) -> EmbeddingCache | None:
    return None if args.no_cache else EmbeddingCache(args.cache_dir)


def encoder_config(args: argparse.Namespace, model: str | None = None,
                   pooling: str | None = None) -> EncoderConfig:
    """The encoder settings the model options (:func:`add_model_options`) describe."""
    return EncoderConfig(model=model or args.model, revision=getattr(args, "revision", None),
                         device=args.device, dtype=args.dtype, lowercase=args.lowercase,
                         batch_size=args.batch_size, cache=not args.no_cache,
                         cache_dir=args.cache_dir, progress=getattr(args, "progress", None),
                         pooling=pooling)


def data_options(args: argparse.Namespace) -> DataOptions:
    """Where task data comes from, as the data options (:func:`add_data_options`) say."""
    return DataOptions(data_dir=args.data_dir, source=args.source, skip_invalid=args.skip_invalid)


def write_json(path: str, obj) -> None:
    """Write JSON atomically to ``path``, or to standard output for ``-``."""
    if path == "-":
        json.dump(obj, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        atomic_write_json(path, obj)
