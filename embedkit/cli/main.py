"""The ``embedkit`` command: one sub-command per module in this package.

Errors caused by input (bad data, unknown task, missing file) print one line,
``embedkit: error: ...``, and exit with status 2; there is no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import shlex
import sys
import typing
import warnings

from embedkit import __version__
from embedkit.aliases import StrPath
from embedkit.cli.help import finish_help
from embedkit.errors import EmbedkitError, WorkKept
from embedkit.io.atomic import DiskFullError, disk_full_error, is_disk_full
from embedkit.io.notices import quiet_libraries, warning_line

#: sub-command name -> module (each has ``add_parser(subparsers)`` and ``run(args) -> int``)
COMMANDS = {
    "bench": "embedkit.cli.bench_cmd",
    "datasets": "embedkit.cli.datasets_cmd",
    "cache": "embedkit.cli.cache_cmd",
    "whiten": "embedkit.cli.whiten_cmd",
    "sweep": "embedkit.cli.sweep_cmd",
    "train": "embedkit.cli.train_cmd",
    "index": "embedkit.cli.index_cmd",
    "encode": "embedkit.cli.encode_cmd",
    "compare": "embedkit.cli.compare_cmd",
    "diagnose": "embedkit.cli.diagnose_cmd",
    "distill": "embedkit.cli.distill_cmd",
}


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line, ``embedkit: error: ... (see: PROG --help)``, exit status 2,
    as every other error on bad input (argparse would print the usage first). Sub-command
    parsers inherit the class (``add_subparsers`` makes parsers of the parent's type)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"embedkit: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="embedkit", description="Evaluate and post-process sentence embeddings.")
    parser.add_argument("--version", action="version", version=f"embedkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    finish_help(parser)
    return parser


def command_line(argv: list[str]) -> str:
    """The command as a user would retype it (recorded in results)."""
    return shlex.join(["embedkit", *argv])


def _command_parsers(parser: argparse.ArgumentParser, argv: list[str]
                     ) -> list[argparse.ArgumentParser]:
    """The parser and the sub-command parsers named on the command line, outermost first."""
    parsers = [parser]
    while True:
        subs = [a for a in parsers[-1]._actions if isinstance(a, argparse._SubParsersAction)]
        nxt = next((subs[0].choices[w] for w in argv if subs and w in subs[0].choices), None)
        if nxt is None:
            return parsers
        parsers.append(nxt)


def _flags(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, str]:
    """Library parameter (an option's dest) -> its longest option string, innermost first."""
    flags: dict[str, str] = {}
    for p in reversed(_command_parsers(parser, argv)):
        for action in p._actions:
            if action.option_strings and action.dest not in flags:
                flags[action.dest] = max(action.option_strings, key=len)
    return flags


#: the options that name what a command writes: a full device names the one to change
_OUTPUT_DESTS = ("out", "output", "markdown", "html", "json", "plots", "work_dir", "runs_dir",
                "checkpoint_dir", "cache_dir")


def _holds(root: str, path: str) -> bool:
    """``path`` is ``root``, inside it, or a file an atomic write keeps beside it
    (``.NAME.*``: its temporary file or folder, its lock)."""
    root, path = os.path.abspath(os.path.expanduser(root)), os.path.abspath(path)
    parent, name = os.path.split(root)
    return (path == root or path.startswith(root.rstrip(os.sep) + os.sep)
            or (os.path.dirname(path) == parent
                and os.path.basename(path).startswith(f".{name}.")))


def _output_flag(parser: argparse.ArgumentParser, argv: list[str], args: argparse.Namespace,
                path: StrPath | None) -> str | None:
    """The output option of the invoked command whose value holds ``path`` (the most specific
    one), None when no option names it (the embedding cache's default folder, say)."""
    if path is None:
        return None
    flags = _flags(parser, argv)
    hits = [(len(str(v)), flags[d]) for d in _OUTPUT_DESTS
            if d in flags and isinstance(v := getattr(args, d, None), str) and v != "-"
            and _holds(v, os.fspath(path))]
    return max(hits)[1] if hits else None


def error_message(parser: argparse.ArgumentParser, argv: list[str], e: EmbedkitError,
                  args: argparse.Namespace | None = None) -> str:
    """``embedkit: error: [--flag: ]message`` for a library error; a hint such as
    ``force=True`` in the message becomes the option that sets it (``--force``); a full
    device names the output option to change (``args``: the parsed command line)."""
    flags = _flags(parser, argv)
    text = str(e)
    if isinstance(e, DiskFullError):
        flag = _output_flag(parser, argv, args, e.path) if args is not None else None
        text = e.message(f"free space or choose another {flag}") if flag else text
    text = re.sub(r"\b([a-z_]+)=True\b",
                  lambda m: flags.get(m.group(1), m.group(0)), text)
    flag = flags.get(e.param) if e.param else None
    if flag and not text.startswith(flag):
        return f"embedkit: error: {flag}: {text}"
    return f"embedkit: error: {text}"


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"embedkit: {record.getMessage()}"


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (not the stream of the
    first call: a long-lived process, or a test harness, may swap stderr between commands)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def format_warning(message, category, filename, lineno, line=None) -> str:
    """A Python warning as one line, ``embedkit: warning: ...`` (embedkit's own) or
    ``embedkit: notice: Category: ...`` (another library's), without file or line. Installed
    as ``warnings.formatwarning`` (not ``showwarning``), so whoever records warnings
    (``catch_warnings(record=True)``, ``pytest.warns``) still gets them."""
    w = warnings.WarningMessage(message, category, filename, lineno, None, line)
    return f"embedkit: {warning_line(w)}\n"


def setup_logging(debug: bool) -> None:
    """The library logs; the command line shows INFO and above on stderr, one line each."""
    handler = _Stderr()
    handler.setFormatter(_OneLine())
    root = logging.getLogger("embedkit")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = command_line(argv)
    return run_parsed(parser, argv, args)


def run_parsed(parser: argparse.ArgumentParser, argv: list[str], args: argparse.Namespace
               ) -> int:
    """Run ``args.func(args)`` as the command line runs it (logging, one-line warnings and
    errors, a full disk and an interrupt as one line; ``--debug`` keeps tracebacks); its exit
    status. The project's benchmark drivers run through it too."""
    setup_logging(args.debug)
    quiet_libraries()
    formatwarning = warnings.formatwarning
    if not args.debug:  # --debug keeps Python's own rendering (file and line)
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
    except Exception as e:  # a full device, wherever a library hit it: one line too
        if args.debug or not is_disk_full(e):
            raise
        full = disk_full_error(e)
        print(error_message(parser, argv, full, args), file=sys.stderr)
        return full.exit_code
    except KeyboardInterrupt as e:  # WorkKept: what was kept and how to resume, in one line
        print(f"embedkit: interrupted{f': {e}' if isinstance(e, WorkKept) else ''}",
              file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
