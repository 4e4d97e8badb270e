"""What the scripts of ``benchmarks/`` share: their parser, the command line they record (the
"Regenerate with" line of each report), error handling as ``embedkit``'s own (one line, exit
status 2, no traceback unless ``--debug``) and the report writer.

The scripts are the project's own benchmark drivers (they write ``eval/``); they are not part
of the installed package, which never imports them. Run each from the repository root, e.g.
``python benchmarks/bench_speed.py --help``.

>>> command_line("bench_scale.py", ["--out", "eval/scale.md"])
'python benchmarks/bench_scale.py --out eval/scale.md'
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedkit.cli.main import OneLineParser, error_message, format_warning, setup_logging
from embedkit.errors import EmbedkitError
from embedkit.io.atomic import atomic_write_json, atomic_write_text
from embedkit.io.notices import quiet_libraries


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command as a user would retype it from the repository root (recorded in reports)."""
    return shlex.join(["python", f"benchmarks/{script}", *argv])


def make_parser(script: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``benchmarks/SCRIPT`` (defaults shown in ``--help``, ``--debug``)."""
    p = OneLineParser(prog=f"python benchmarks/{script}", description=description,
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def run(parser: argparse.ArgumentParser, script: str, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, record the command line in ``args.command_line`` and run
    ``args.func(args)``; an embedkit error is one line on stderr and its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = command_line(script, argv)
    setup_logging(args.debug)
    quiet_libraries()
    formatwarning = warnings.formatwarning
    if not args.debug:
        warnings.formatwarning = format_warning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", UserWarning)
            return int(args.func(args) or 0)
    except EmbedkitError as e:
        if args.debug:
            raise
        print(error_message(parser, argv, e, args), file=sys.stderr)
        return e.exit_code
    finally:
        warnings.formatwarning = formatwarning


def write_report(out: Path, record: dict[str, Any], md: str) -> None:
    """The JSON record beside ``out`` and the Markdown at ``out`` (both atomic); the Markdown
    printed."""
    atomic_write_json(out.with_suffix(".json"), record)
    atomic_write_text(out, md)
    print(md)
