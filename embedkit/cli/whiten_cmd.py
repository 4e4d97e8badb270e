"""``embedkit whiten``: fit a BERT-whitening map on an encoder's vectors and export it."""

from __future__ import annotations

import sys

from embedkit.cli.common import (
    PROTOCOL_MAX_LENGTH,
    add_data_options,
    add_fit_on,
    add_max_length,
    add_model_options,
    add_out,
    add_pooling,
    check_output_dir,
    check_output_path,
    data_options,
    encoder_config,
    post_options,
)
from embedkit.cli.parsing import parse_k
from embedkit.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "whiten", help="fit a whitening map and export it",
        description="Encode the --fit-on sentences (or read the vectors of an encode folder, "
                    "--embeddings DIR), fit generalised BERT-whitening "
                    "x~ = (x - beta*mu) U Lambda^(-gamma/2), first k dimensions, and write it "
                    "as safetensors/npz (for bench --post file:PATH), a sentence-transformers "
                    "model folder or a FAISS LinearTransform.",
        )
    add_model_options(p)
    add_pooling(p)
    add_fit_on(p, None, values="TASK (every split, both sentences of every pair: the published "
                               "protocol), TASK:SPLIT, several comma-separated, or a FILE with "
                               "one sentence a line", default_text="--embeddings DIR")
    p.add_argument("--embeddings", metavar="DIR",
                   help="instead of --fit-on: fit on the vectors of an encode folder (embedkit "
                        "encode), a shard at a time; model, pooling and max length come from "
                        "its manifest")
    p.add_argument("--beta", type=float, default=1.0, help="centring weight")
    p.add_argument("--gamma", type=float, default=1.0, help="scaling exponent")
    p.add_argument("--k", default="all", metavar="K|all", help="dimensions kept")
    add_max_length(p, default_text=PROTOCOL_MAX_LENGTH + "; 64 for files; the largest of "
                                                         "them for several")
    add_out(p, "where to write the map")
    p.add_argument("--format", choices=("safetensors", "npz", "sentence-transformers", "faiss"),
                   help="output format (default: by the --out suffix: .npz, .faiss, else "
                        "safetensors)")
    p.add_argument("--normalize", action="store_true",
                   help="L2-normalise the output (a Normalize module in the "
                        "sentence-transformers folder; recorded in the metadata otherwise)")
    p.add_argument("--calibrate", metavar="TASK",
                   help="a binary task (LCQMC, BQ, ...): choose the cosine threshold of the "
                        "whitened vectors on its valid split, report its test accuracy, and "
                        "write both into the model card and embedkit_threshold.json "
                        "(sentence-transformers format)")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from embedkit.runs.whiten import WhitenSettings, export_format, run_whiten

    if export_format(args.out, args.format) == "sentence-transformers":
        check_output_dir(args.out, "out")  # a model folder
    else:
        check_output_path(args.out, "out")
    if args.max_length is not None and args.max_length < 3:
        raise ConfigError("--max-length must be at least 3 ([CLS], one token, [SEP])")
    settings = WhitenSettings(beta=args.beta, gamma=args.gamma, k=parse_k(args.k),
                              post=post_options(args), max_length=args.max_length,
                              normalize=args.normalize)
    if (args.fit_on is None) == (args.embeddings is None):
        raise ConfigError("give one of --fit-on WHAT or --embeddings DIR")
    if args.embeddings is not None and args.pooling is not None:
        raise ConfigError("with --embeddings the pooling comes from the encode folder's "
                          "manifest: drop --pooling", param="pooling")
    result = run_whiten(encoder_config(args) if args.fit_on is not None else None, args.fit_on,
                        args.out, settings, pooling=args.pooling, format=args.format,
                        data=data_options(args), command=args.command_line,
                        calibrate=args.calibrate, embeddings=args.embeddings)
    _report(args, result)
    return 0


def _report(args, result) -> None:
    d, k = result.whitening.kernel_.shape
    fit = result.fit
    if fit is None:  # an encode folder's vectors
        m = result.metadata
        print(f"wrote {result.path} ({result.format}): d={d} -> k={k}; {m['model_name']} "
              f"{m['pooling']}, max length {m['max_length']}; fitted on {m['n_samples']} "
              f"vectors of {args.embeddings}")
        return
    print(f"wrote {result.path} ({result.format}): {result.spec} d={d} -> k={k}; "
          f"{result.encoder_name} {result.pooling}, max length {result.max_length}; fitted on "
          f"{fit.description} ({len(fit.sentences)} sentences, sha256 {fit.sha256[:12]})")
    t = result.metadata.get("threshold")
    if t:
        print(f"threshold: cosine > {t['threshold']:.4f} (chosen on {t['task']}/"
              f"{t['selected_on']}); accuracy on {t['task']}/{t['evaluated_on']}: "
              f"{100 * t['accuracy']:.2f}")
    if result.format in ("safetensors", "npz"):
        print(f"use it with: embedkit bench --model {args.model} --pooling {result.pooling} "
              f"--post file:{result.path}", file=sys.stderr)
