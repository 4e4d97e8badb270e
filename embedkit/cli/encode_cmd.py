"""``embedkit encode``: a corpus to Parquet embedding shards and a manifest, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from embedkit.cli.common import (
    add_model_options,
    check_output_dir,
    defaults_line,
    encoder_config,
    locked_error,
    positive_int,
)
from embedkit.encoders.choices import VECTOR_DTYPES
from embedkit.experiments.choices import ENGINES


def add_parser(sub) -> None:
    p = sub.add_parser(
        "encode", help="encode a corpus into Parquet embedding shards",
        description="Encode a corpus (text one sentence a line, JSON lines, CSV/TSV or "
                    "Parquet; a file or a folder of them) into Parquet shards (id, text, "
                    "embedding) and manifest.json, on this machine or on Ray. A rerun resumes "
                    "a killed run (only missing or damaged shards are encoded); a finished "
                    "folder is left alone unless --overwrite.")
    add_model_options(p)
    p.add_argument("--pooling", metavar="P", help="pooling (default: the model's own)")
    p.add_argument("--post", metavar="CHAIN|FILE",
                   help="a saved transform file (or file: and norm steps) recorded in the "
                        "recipe and baked into indexes built from the shards")
    p.add_argument("--corpus", required=True, metavar="FILE|DIR", help="the input")
    p.add_argument("--text-column", metavar="C", help="text column (default: text)")
    p.add_argument("--id-column", metavar="I",
                   help="id column (default: none; ids are row numbers)")
    p.add_argument("--out", required=True, metavar="DIR", help="the encode folder")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (this process) or ray (Ray Data actors; pip install "
                        "'embedkit[ray]')")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="Ray actors, each holding the model (default: 1)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="a running Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--shard-size", type=positive_int, default=10000, metavar="N",
                   help="rows per shard (default: 10000)")
    p.add_argument("--max-length", type=int, default=64, metavar="N",
                   help="tokens, counting [CLS] and [SEP] (default: 64)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a folder encoded with other settings or inputs")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=False,
                   help="store L2-normalised vectors (default: --no-normalize, the raw pooled "
                        "vectors); recorded in manifest.json")
    p.add_argument("--precision", choices=VECTOR_DTYPES, default="float32",
                   help="how the vectors are stored: float32 (default) or float16 (half the "
                        "bytes; readers upcast to float32); recorded in manifest.json")
    p.set_defaults(func=run)


def _progress_bar() -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(unit="row", desc="encoding", unit_scale=True)
    return bar.update, bar.close


def run(args) -> int:
    from embedkit.experiments.encode import EncodeSettings, run_encode

    check_output_dir(args.out, "out")
    settings = EncodeSettings(shard_size=args.shard_size, max_length=args.max_length,
                              engine=args.engine, workers=args.workers,
                              ray_address=args.ray_address, overwrite=args.overwrite,
                              normalize=args.normalize, precision=args.precision)
    update, close = _progress_bar()
    try:
        rec = run_encode(encoder_config(args), args.corpus, args.out, settings,
                         pooling=args.pooling, post=args.post, text_column=args.text_column,
                         id_column=args.id_column, progress=update, command=args.command_line)
    finally:
        close()
    man = rec["manifest"]
    if rec["status"] == "complete":
        print(f"{args.out}: already complete ({man['total_rows']} rows in "
              f"{len(man['shards'])} shards); nothing to do")
        return 0
    t = man["timings"]
    print(f"wrote {args.out}: {man['total_rows']} rows in {len(man['shards'])} shards "
          f"({len(rec['shards_encoded'])} encoded this run, {t['rows_encoded']} rows, "
          f"{t['rows_per_second']} rows/s, engine {settings.engine}); "
          f"{man['recipe']['model']} {man['recipe']['pooling']}, max length "
          f"{man['recipe']['max_length']}, d={man['dim']}; vectors "
          f"{man['vectors']['dtype']}{', L2-normalised' if man['vectors']['normalized'] else ''}")
    print(f"build an index with: embedkit index build --embeddings {args.out} --out IDX",
          file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# the encode-folder options of `index build` and `whiten` (registered by those commands)


def add_embeddings_source(src, build) -> None:
    """``index build --embeddings DIR [--on-disk]``: ``src`` is the corpus source group."""
    src.add_argument("--embeddings", metavar="DIR",
                     help="an encode folder (embedkit encode): index its shards without "
                          "re-encoding; the recipe comes from its manifest (--post: a transform "
                          "file fitted on them, e.g. by whiten --embeddings DIR)")
    build.add_argument("--on-disk", action="store_true",
                       help="with --embeddings and an IVF factory: keep the inverted lists on "
                            "disk (lists.ivfdata in the folder, memory-mapped when searched)")


def run_build_from_embeddings(args) -> int:
    """``index build --embeddings DIR``."""
    from embedkit.cli.index_codes import index_codes, print_choice
    from embedkit.errors import ConfigError
    from embedkit.io.atomic import FolderLockedError
    from embedkit.retrieval.shards import build_index_from_shards

    if args.embeddings is None:
        raise ConfigError("--on-disk goes with --embeddings DIR")
    if args.pooling or args.ids:
        raise ConfigError("with --embeddings the pooling comes from the encode folder's "
                          "manifest (and the ids from its shards): drop --pooling and --ids")
    try:
        index = build_index_from_shards(
            args.out, args.embeddings, factory=args.factory, metric=args.metric,
            train_size=args.train_size, seed=args.seed, on_disk=args.on_disk,
            lock_timeout=args.lock_timeout, post=args.post, force=args.force,
            index_codes=index_codes(args))  # hook: --vectors / --rescore / --max-memory
    except FolderLockedError as err:
        raise locked_error(err) from None
    print_choice(index)
    post = f", post {index.recipe['post']}" if index.recipe.get("post") else ""
    print(f"indexed {index.ntotal} texts from {args.embeddings} into {args.out}: "
          f"{index.factory}, {index.metric}, {index.dim_in} -> {index.dim} dims{post}"
          f"{', lists on disk' if args.on_disk else ''}; built in {index.build_seconds:.2f} s")
    if defaults_line(index.recipe):
        print(defaults_line(index.recipe))
    return 0


def add_whiten_embeddings(p) -> None:
    """``whiten --embeddings DIR`` (instead of ``--fit-on``)."""
    p.add_argument("--embeddings", metavar="DIR",
                   help="instead of --fit-on: fit on the vectors of an encode folder (embedkit "
                        "encode), a shard at a time; model, pooling and max length come from "
                        "its manifest")


def run_whiten_embeddings(args, settings) -> int:
    """``whiten --embeddings DIR``; ``settings`` as ``whiten`` parsed them."""
    from embedkit.errors import ConfigError
    from embedkit.experiments.shards_whiten import run_whiten_shards

    if (args.fit_on is None) == (args.embeddings is None):
        raise ConfigError("give one of --fit-on WHAT or --embeddings DIR")
    if args.pooling is not None:
        raise ConfigError("with --embeddings the pooling comes from the encode folder's "
                          "manifest: drop --pooling", param="pooling")
    res = run_whiten_shards(args.embeddings, args.out, settings, format=args.format,
                            command=args.command_line)
    d, k = res.whitening.kernel_.shape
    m = res.metadata
    print(f"wrote {res.path} ({res.format}): d={d} -> k={k}; {m['model_name']} {m['pooling']}, "
          f"max length {m['max_length']}; fitted on {m['n_samples']} vectors of "
          f"{args.embeddings}")
    return 0
