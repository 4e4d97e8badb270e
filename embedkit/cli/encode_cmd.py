"""``embedkit encode``: a corpus to Parquet embedding shards and a manifest, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from embedkit.cli.common import (
    add_max_length,
    add_model_options,
    add_out,
    add_pooling,
    add_post,
    check_output_dir,
    encoder_config,
    positive_int,
)
from embedkit.encoders.choices import VECTOR_DTYPES
from embedkit.runs.choices import ENGINES


def add_parser(sub) -> None:
    p = sub.add_parser(
        "encode", help="encode a corpus into Parquet embedding shards",
        description="Encode a corpus (text one sentence a line, JSON lines, CSV/TSV or "
                    "Parquet; a file or a folder of them) into Parquet shards (id, text, "
                    "embedding) and manifest.json, on this machine or on Ray. A rerun resumes "
                    "a killed run (only missing or damaged shards are encoded); a finished "
                    "folder is left alone unless --overwrite.")
    add_model_options(p)
    add_pooling(p)
    add_post(p, default="none; only a saved transform file (or file: and norm steps), recorded "
                        "in the recipe and baked into indexes built from the shards")
    p.add_argument("--corpus", required=True, metavar="FILE|DIR", help="the input")
    p.add_argument("--text-column", metavar="C", help="text column (default: text)")
    p.add_argument("--id-column", metavar="I",
                   help="id column (default: none; ids are row numbers)")
    add_out(p, "the encode folder", metavar="DIR")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (this process) or ray (Ray Data actors; pip install "
                        "'embedkit[ray]')")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="Ray actors, each holding the model (default: 1)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="a running Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--shard-size", type=positive_int, default=10000, metavar="N",
                   help="rows per shard (default: 10000)")
    add_max_length(p, 64)
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
    from embedkit.runs.encode import EncodeSettings, run_encode

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
