"""``embedkit diagnose``: anisotropy, spectrum, hubness, sparsity and JL of an encoder's space,
raw and after each postprocessor, beside Spearman and recall@10."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from embedkit.cli.common import (
    PROTOCOL_MAX_LENGTH,
    add_data_options,
    add_max_length,
    add_model_options,
    add_poolings_and_tasks,
    add_post_options,
    add_progress,
    add_protocol,
    add_record_outputs,
    add_seed,
    add_splits,
    data_options,
    encoder_config,
    post_options,
    write_json,
)
from embedkit.cli.parsing import parse_int_list, split_list, split_poolings
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_write_text

if TYPE_CHECKING:  # the library is imported where the work is
    from embedkit.runs.diagnose import DiagnoseOptions


def add_parser(sub) -> None:
    p = sub.add_parser(
        "diagnose", help="anisotropy, spectrum, hubness, sparsity and JL of an embedding space",
        description="Encode STS tasks (or a corpus file) once per pooling and measure each row "
                    "(a pooling, raw or followed by a --post chain fitted like bench): "
                    "anisotropy, covariance spectrum (effective rank, IsoScore, dimensions for "
                    "90/95/99%% of the variance), hubness of the k-NN graph, sparsity, and the "
                    "Johnson-Lindenstrauss distortion of random projections; beside them the "
                    "row's Spearman and, with --retrieval, recall@10 plain and with CSLS "
                    "re-ranking. --embeddings DIR diagnoses the vectors of an encode folder "
                    "(embedkit encode) without running a model. Example: embedkit diagnose "
                    "--model m3e-small --tasks LCQMC --post whiten:beta=1,gamma=1,k=all "
                    "--retrieval --markdown diag.md",
    )
    add_model_options(p)
    add_poolings_and_tasks(p)
    p.add_argument("--corpus", metavar="FILE",
                   help="diagnose the texts of FILE (one a line) instead of STS tasks; no "
                        "scores, --post chains are fitted on the corpus")
    p.add_argument("--embeddings", metavar="DIR",
                   help="diagnose the vectors of an encode folder (embedkit encode): its "
                        "model and pooling, --post chains fitted on the vectors read, no "
                        "scores; with --sample only N rows are read")
    add_splits(p, what=" to score")
    add_protocol(p)
    add_max_length(p, default_text=PROTOCOL_MAX_LENGTH + "; 64 for a corpus file")
    add_data_options(p)
    add_post_options(p)
    p.add_argument("--k", type=int, default=10, help="neighbours of the hubness k-NN graph "
                                                     "(default: 10)")
    p.add_argument("--sample", type=int, metavar="N",
                   help="diagnose a seeded sample of N vectors per row (JL uses all); keeps "
                        "large corpora fast (default: all vectors)")
    add_seed(p, "the samples")
    p.add_argument("--pairs", dest="n_pairs", type=int, default=10000, metavar="N",
                   help="random pairs for anisotropy and JL (default: 10000)")
    p.add_argument("--jl-dims", default="32,64,128,256", metavar="M,M,...",
                   help="target dimensions of the measured JL distortion (8.33 ln N is added; "
                        "default: 32,64,128,256)")
    p.add_argument("--retrieval", nargs="?", const="all", metavar="TASKS",
                   help="also recall@10, plain and with CSLS, with each task's positive pairs "
                        "as retrieval (all tasks, or the comma-separated TASKS)")
    p.add_argument("--csls-k", type=int, default=10,
                   help="corpus neighbours in the CSLS hub penalty (default: 10)")
    p.add_argument("--csls-candidates", type=int, default=100,
                   help="top hits re-ranked by CSLS (default: 100)")
    p.add_argument("--sweep", metavar="FILE.json",
                   help="a sweep record (embedkit sweep --output): set its Spearman against k "
                        "beside the JL estimate 8.33 ln N")
    add_record_outputs(p)
    p.add_argument("--plots", metavar="DIR",
                   help="write the spectrum, N_k histogram and JL plots here (matplotlib)")
    add_progress(p)
    p.set_defaults(func=run)


def options_from(args) -> DiagnoseOptions:
    """The library's options from the parsed command line."""
    from embedkit.runs.diagnose import DiagnoseOptions

    if args.corpus and args.tasks:
        raise ConfigError("give --tasks or --corpus, not both", param="corpus")
    retrieval = args.retrieval is not None
    wanted = [] if args.retrieval in (None, "all") else split_list(args.retrieval)
    return DiagnoseOptions(
        tasks=tuple(split_list(args.tasks)), corpus=args.corpus, embeddings=args.embeddings,
        splits=tuple(split_list(args.splits)), post=post_options(args), k=args.k, sample=args.sample, seed=args.seed,
        n_pairs=args.n_pairs, jl_dims=tuple(parse_int_list(args.jl_dims, "--jl-dims")),
        retrieval=retrieval, retrieval_tasks=tuple(wanted), csls_k=args.csls_k,
        csls_candidates=args.csls_candidates, protocol=args.protocol,
        max_length=args.max_length, sweep=args.sweep, data=data_options(args))


def run(args) -> int:
    from embedkit.reports.bench import data_line, run_title
    from embedkit.reports.diagnose import (
        conclusions,
        diagnose_markdown,
        format_diagnose_table,
        write_diagnose_plots,
    )
    from embedkit.runs.diagnose import run_diagnose

    options = options_from(args)
    options.check()  # fail before loading a model
    if args.embeddings and args.pooling:
        raise ConfigError("with --embeddings the pooling comes from the encode folder's "
                          "manifest: drop --pooling", param="pooling")
    try:
        poolings = split_poolings(args.pooling)
    except ConfigError as e:
        raise ConfigError(str(e), param="pooling") from None
    if args.plots:
        from embedkit.diagnostics.plots import require_matplotlib

        require_matplotlib()  # fail before encoding when matplotlib is missing
    encoder = None if args.embeddings else encoder_config(args)
    record = run_diagnose(encoder, options, poolings, command=args.command_line)
    plots = write_diagnose_plots(record, args.plots) if args.plots else []
    record["plots"] = [str(p) for p in plots]
    if args.output:
        write_json(args.output, record)
    if args.markdown:
        atomic_write_text(args.markdown, diagnose_markdown(record, plots, args.markdown))
    t = record["timings"]
    print(f"{run_title(record)}: diagnostics (k = {options.k}"
          + (f", sample {options.sample}" if options.sample else "") + ")")
    print(format_diagnose_table(record))
    for line in conclusions(record):
        print(f"- {line}")
    print(f"[{t['encoded']} sentences encoded, {t['cache_hits']} cached; diagnostics "
          f"{t['seconds_diagnostics']:.1f} s; total {t['seconds_total']:.1f} s]",
          file=sys.stderr)
    if data_line(record):
        print(f"[{data_line(record)}]", file=sys.stderr)
    return 0
