"""``embedkit distill``: a static (attention-free) encoder distilled from any model."""

from __future__ import annotations

import json
from pathlib import Path

from embedkit.cli.common import (
    add_model_options,
    add_out,
    add_pooling,
    add_post,
    check_output_dir,
    encoder_config,
    positive_int,
    write_json,
)
from embedkit.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "distill", help="distil a static (attention-free) encoder from a model",
        description="The model2vec method: run every vocabulary token alone through the model, "
                    "reduce the vectors with embedkit's PCA (or any --post chain) to --dim, "
                    "weight them by estimated token frequency (SIF over Zipf ranks) and write "
                    "a sentence-transformers folder (StaticEmbedding + Normalize) that "
                    "SentenceTransformer(DIR) and every embedkit command (--model DIR) load.")
    add_model_options(p)
    p.add_argument("--dim", type=positive_int, required=True, metavar="K",
                   help="dimensions of the static vectors (at most the model's)")
    add_out(p, "the model folder to write", metavar="DIR")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_pooling(p, default="last-avg, model2vec's mean, of each token's output")
    add_post(p, default="pca:k=DIM; a chain ending at --dim dimensions")
    p.add_argument("--sif", type=float, default=1e-4, metavar="A",
                   help="SIF coefficient of the frequency weights a/(a+p); 0: no weighting "
                        "(default: 1e-4, model2vec's)")
    p.add_argument("--json", metavar="FILE", help="also write the recipe as JSON ('-': stdout)")
    p.set_defaults(func=run)


def run(args) -> int:
    from embedkit.runs.distill import distill

    out = Path(args.out)
    check_output_dir(out, "out")
    if out.exists() and not args.force and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists; choose another folder or add --force to "
                          "replace it", param="out")
    config = encoder_config(args)
    recipe = distill(config, args.dim, out, post=args.post, pooling=args.pooling or "last-avg",
                     batch_size=args.batch_size, sif_coefficient=args.sif or None)
    if args.json:
        write_json(args.json, recipe)
        if args.json == "-":
            return 0
    print(f"distilled {recipe['teacher']} into {out}: {recipe['vocab_size']} tokens x "
          f"{recipe['dim']} ({recipe['post']}, pooling {recipe['pooling']}) in "
          f"{recipe['seconds']:.1f}s")
    print(f"load it with --model {out} or SentenceTransformer({json.dumps(str(out))})")
    return 0
