"""What the scripts of ``benchmarks/`` share: their parser, the command line they record (the
"Regenerate with" line of each report), error handling as ``embedkit``'s own (one line, exit
status 2, no traceback unless ``--debug``) and the report writer.

The scripts are the project's own benchmark drivers (they write ``eval/``); they are not part
of the installed package, which never imports them. Run each from the repository root, e.g.
``python benchmarks/bench_speed.py --help``.

Each script also re-renders its report from the JSON record it wrote (``--from-record``),
measuring nothing, so that a change to a report's text, or to its command line, does not mean
re-running an hour of benchmarks (:func:`read_record`).

>>> command_line("bench_scale.py", ["--out", "eval/scale.md"])
'python benchmarks/bench_scale.py --out eval/scale.md'
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from embedkit.cli.main import OneLineParser, run_parsed
from embedkit.errors import ConfigError, DataError, MissingFileError
from embedkit.io.atomic import atomic_write_json, atomic_write_text
from embedkit.io.textfile import read_bytes


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command as a user would retype it from the repository root (recorded in reports)."""
    return shlex.join(["python", f"benchmarks/{script}", *argv])


def make_parser(script: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``benchmarks/SCRIPT`` (defaults shown in ``--help``, ``--debug``)."""
    p = OneLineParser(prog=f"python benchmarks/{script}", description=description,
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def add_run_options(p: argparse.ArgumentParser, model: str, tasks: Sequence[str],
                    runs_dir: str | None = None) -> None:
    """``--model``, ``--tasks`` (comma-separated), ``--runs-dir`` (where a report keeps what it
    trains or writes, when it has one) and ``--data-dir``: the options every report takes."""
    from embedkit.cli.common import add_data_dir

    p.add_argument("--model", default=model)
    p.add_argument("--tasks", default=",".join(tasks))
    if runs_dir is not None:
        p.add_argument("--runs-dir", default=runs_dir)
    add_data_dir(p)


def run(parser: argparse.ArgumentParser, script: str, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, record the command line in ``args.command_line`` and run
    ``args.func(args)``; an embedkit error is one line on stderr and its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = command_line(script, argv)
    return run_parsed(parser, argv, args)


def write_report(out: Path, record: dict[str, Any], md: str) -> None:
    """The JSON record beside ``out`` and the Markdown at ``out`` (both atomic); the Markdown
    printed."""
    atomic_write_json(out.with_suffix(".json"), record)
    atomic_write_text(out, md)
    print(md)


# --------------------------------------------------------------------------------------------
# re-rendering a report from its record (--from-record)


def add_from_record(parser: argparse.ArgumentParser, example: str) -> None:
    """``--from-record JSON``: re-render instead of measuring (:func:`read_record`)."""
    parser.add_argument("--from-record", metavar="JSON",
                        help=f"measure nothing: re-render the report from a record this script "
                             f"wrote (e.g. {example}) to --out, the record beside it; its "
                             "command becomes this script's with the same options (a record "
                             "made by 'embedkit report' before the scripts left the package "
                             "included); the other options are ignored")


def add_report_files(parser: argparse.ArgumentParser, report: str) -> None:
    """``--out REPORT.md`` and ``--from-record`` (e.g. ``REPORT.json``): the options of every
    report script (``report``: its path without the suffix, e.g. ``eval/speed``)."""
    parser.add_argument("--out", default=f"{report}.md")
    add_from_record(parser, f"{report}.json")


def recorded(args: argparse.Namespace, script: str, parser: Callable[[], argparse.ArgumentParser],
             kind: str, accepts: Callable[[dict[str, Any]], bool] | None = None
             ) -> dict[str, Any] | None:
    """``--out`` checked; the record ``--from-record`` names (:func:`read_record`: to
    re-render, measuring nothing), else None (measure)."""
    from embedkit.cli.common import check_output_path

    check_output_path(args.out, "out")
    if not args.from_record:
        return None
    return read_record(args.from_record, script, parser(), kind, accepts)


def _recorded_options(recorded: str, script: str) -> list[str] | None:
    """The options of a recorded command: this script's (``python benchmarks/SCRIPT ...``), or
    the same driver's before it left the package (``embedkit report NAME ...``,
    ``python -m embedkit.benchmarks.NAME ...``); None for any other command."""
    try:
        words = shlex.split(recorded)
    except ValueError:  # unbalanced quotes: no command line of ours
        return None
    if words[:2] == ["python", f"benchmarks/{script}"]:
        return words[2:]
    if words[:2] == ["embedkit", "report"] and len(words) > 2:
        return words[3:]
    if words[:2] == ["python", "-m"] and len(words) > 2 \
            and words[2].startswith("embedkit.benchmarks."):
        return words[3:]
    return None


def regenerate_command(recorded: str | None, script: str, parser: argparse.ArgumentParser,
                       path: str) -> str | None:
    """The command that regenerates the record at ``path`` (its command ``recorded``), as
    this script's command line: the recorded options, checked by this script's ``parser``
    (None stays None: a record made through the Python API).

    >>> p = make_parser("bench_scale.py", "")
    >>> _ = p.add_argument("--out")
    >>> regenerate_command("embedkit report scale --out eval/scale.md", "bench_scale.py", p, "r")
    'python benchmarks/bench_scale.py --out eval/scale.md'
    """
    if recorded is None:
        return None
    argv = _recorded_options(recorded, script)
    if argv is None:
        raise ConfigError(f"{path}: its command {recorded!r} is not one of "
                          f"benchmarks/{script}'s; give a record this script wrote",
                          param="from_record")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(argv)
    except SystemExit:
        why = err.getvalue().strip().removeprefix("embedkit: error: ").split(" (see: ")[0]
        raise ConfigError(f"{path}: its command {recorded!r} does not run as "
                          f"benchmarks/{script} ({why}); rerun the benchmark",
                          param="from_record") from None
    return command_line(script, argv)


def read_record(path: str, script: str, parser: argparse.ArgumentParser, kind: str,
                accepts: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The record at ``path``, one that ``script`` writes (its ``kind``; ``accepts``, when
    given, also takes older layouts), its ``command`` replaced by :func:`regenerate_command`'s;
    nothing else changes."""
    try:
        record = json.loads(read_bytes(path, "record"))
    except MissingFileError as e:
        raise MissingFileError(e.problem, path=path, param="from_record") from None
    except ValueError as e:
        raise DataError(f"not readable JSON ({e})", path=path, param="from_record") from None
    mine = isinstance(record, dict) and (accepts(record) if accepts else
                                         record.get("kind") == kind)
    if not mine:
        have = record.get("kind") if isinstance(record, dict) else None
        raise ConfigError(f"{path}: a {have or 'JSON'} record; benchmarks/{script} re-renders "
                          f"its own ({kind})", param="from_record")
    record["command"] = regenerate_command(record.get("command"), script, parser, path)
    return record
