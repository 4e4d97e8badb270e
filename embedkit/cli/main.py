"""The ``embedkit`` command: one sub-command per module in this package.

Errors caused by input (bad data, unknown task, missing file) print one line,
``embedkit: error: ...``, and exit with status 2; there is no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import warnings

from embedkit import __version__
from embedkit.errors import EmbedkitError

#: sub-command name -> module (each has ``add_parser(subparsers)`` and ``run(args) -> int``)
COMMANDS = {
    "bench": "embedkit.cli.bench_cmd",
    "datasets": "embedkit.cli.datasets_cmd",
    "cache": "embedkit.cli.cache_cmd",
    "whiten": "embedkit.cli.whiten_cmd",
    "sweep": "embedkit.cli.sweep_cmd",
    "train": "embedkit.cli.train_cmd",
    "index": "embedkit.cli.index_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedkit", description="Evaluate and post-process sentence embeddings.")
    parser.add_argument("--version", action="version", version=f"embedkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def command_line(argv: list[str]) -> str:
    """The command as a user would retype it (recorded in results)."""
    return shlex.join(["embedkit", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = command_line(argv)
    warnings.simplefilter("default", UserWarning)
    try:
        return int(args.func(args) or 0)
    except EmbedkitError as e:
        if args.debug:
            raise
        print(f"embedkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("embedkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
