"""``embedkit whiten``: fit a BERT-whitening map on an encoder's vectors and export it."""

from __future__ import annotations

import sys

from embedkit.cli.common import add_data_options, add_model_options, make_cache


def add_parser(sub) -> None:
    p = sub.add_parser(
        "whiten", help="fit a whitening map and export it",
        description="Encode the --fit-on sentences, fit generalised BERT-whitening "
                    "x~ = (x - beta*mu) U Lambda^(-gamma/2), first k dimensions, and write it "
                    "as safetensors/npz (for bench --post file:PATH), a sentence-transformers "
                    "model folder or a FAISS LinearTransform.",
        )
    add_model_options(p)
    p.add_argument("--pooling", metavar="P",
                   help="cls, pooler, pooler-tanh, last-avg (mean), first-last-avg, "
                        "layers-avg:I,J (default: the model's own)")
    p.add_argument("--fit-on", required=True, metavar="WHAT",
                   help="TASK (every split, both sentences of every pair: the published "
                        "protocol), TASK:SPLIT, several comma-separated, or a FILE with one "
                        "sentence a line")
    p.add_argument("--fit-unique", action="store_true",
                   help="fit on unique sentences instead of every occurrence")
    p.add_argument("--beta", type=float, default=1.0, help="centring weight")
    p.add_argument("--gamma", type=float, default=1.0, help="scaling exponent")
    p.add_argument("--k", default="all", metavar="K|all", help="dimensions kept")
    p.add_argument("--max-length", type=int,
                   help="tokens, counting [CLS] and [SEP] (default: the task's own, 64 (PAWSX "
                        "128); 64 for files; the largest of them for several)")
    p.add_argument("--out", required=True, metavar="PATH", help="where to write the map")
    p.add_argument("--format", choices=("safetensors", "npz", "sentence-transformers", "faiss"),
                   help="output format (default: by the --out suffix: .npz, .faiss, else "
                        "safetensors)")
    p.add_argument("--normalize", action="store_true",
                   help="L2-normalise the output (a Normalize module in the "
                        "sentence-transformers folder; recorded in the metadata otherwise)")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from embedkit.encoders import Encoder, parse_pooling
    from embedkit.errors import ConfigError
    from embedkit.postprocess import describe_post
    from embedkit.postprocess.fitting import (
        collect_fit_sentences,
        export_format,
        export_whitening,
        fit_whitening,
        st_pooling_mode,
        whitening_metadata,
    )

    fmt = export_format(args.out, args.format)
    if args.max_length is not None and args.max_length < 3:
        raise ConfigError("--max-length must be at least 3 ([CLS], one token, [SEP])")
    if args.pooling is not None:
        parse_pooling(args.pooling)
        if fmt == "sentence-transformers":  # fail before loading anything
            st_pooling_mode(args.pooling)
    fit = collect_fit_sentences(args.fit_on, data_dir=args.data_dir, source=args.source,
                                skip_invalid=args.skip_invalid, unique=args.fit_unique)
    encoder = Encoder(args.model, args.pooling, device=args.device, dtype=args.dtype,
                      lowercase=args.lowercase, cache=make_cache(args),
                      batch_size=args.batch_size)
    pooling = encoder.default_pooling
    if fmt == "sentence-transformers":
        st_pooling_mode(pooling)
    max_length = min(int(args.max_length or fit.max_length), encoder.max_positions)
    w = fit_whitening(encoder, pooling, fit.sentences, beta=args.beta, gamma=args.gamma,
                      k=args.k, max_length=max_length, batch_size=args.batch_size)
    meta = whitening_metadata(w, encoder, pooling, max_length, fit, normalize=args.normalize,
                              k=args.k)
    meta["command"] = args.command_line
    out = export_whitening(args.out, w, fmt, metadata=meta, encoder=encoder, pooling=pooling,
                           max_length=max_length, normalize=args.normalize)
    d, k = w.kernel_.shape
    print(f"wrote {out} ({fmt}): {describe_post(w)}{',norm' if args.normalize else ''} "
          f"d={d} -> k={k}; {encoder.name} {pooling}, max length {max_length}; fitted on "
          f"{fit.description} ({len(fit.sentences)} sentences, sha256 {fit.sha256[:12]})")
    if fmt in ("safetensors", "npz"):
        print(f"use it with: embedkit bench --model {args.model} --pooling {pooling} "
              f"--post file:{out}", file=sys.stderr)
    return 0
