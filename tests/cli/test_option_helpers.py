"""Each shared option is declared once (cli/common.py), with one help text, in every command that
takes it; ``--threads`` is the encoder's and ``index eval --faiss-threads`` FAISS's."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

import embedkit.cli as cli_pkg
from embedkit.cli import common
from embedkit.cli.main import build_parser
from embedkit.postprocess.spec import PostOptions

CLI_DIR = Path(cli_pkg.__file__).parent


def _commands(parser, path=""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for name, sub in (subs[0].choices.items() if subs else ()):
        yield from _commands(sub, f"{path} {name}".strip())


def _helps(flag: str) -> dict[str, str]:
    """Command path -> the help of ``flag`` in it, for every command that takes it."""
    return {path: a.help for path, p in _commands(build_parser()) for a in p._actions
            if flag in a.option_strings}


def _declarations() -> dict[str, set[tuple[str, str]]]:
    """``--flag`` -> the (file, function) of every ``add_argument("--flag", ...)`` under cli/."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(CLI_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for call in ast.walk(fn):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "add_argument"):
                    for arg in call.args:
                        if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                            found.setdefault(arg.value, set()).add((path.name, fn.name))
    return found


@pytest.mark.parametrize("flag, helper", [
    ("--max-length", "add_max_length"), ("--pooling", "add_pooling"), ("--post", "add_post"),
    ("--fit-on", "add_fit_on"), ("--fit-unique", "add_fit_unique"), ("--seed", "add_seed"),
    ("--out", "add_out"), ("--faiss-threads", "add_faiss_threads"),
    ("--protocol", "add_protocol"), ("--splits", "add_splits"), ("--progress", "add_progress"),
])
def test_each_flag_is_declared_in_one_helper(flag, helper):
    assert _declarations()[flag] == {("common.py", helper)}


def test_model_is_declared_only_in_common():
    """An encoder's --model comes with add_model_options, any other with add_model_name."""
    places = _declarations()["--model"]
    assert {f for f, _ in places} == {"common.py"}
    assert ("common.py", "add_model_name") in places


@pytest.mark.parametrize("flag, text", [
    ("--max-length", common.MAX_LENGTH_HELP), ("--pooling", common.POOLING_HELP),
    ("--post", common.POST_HELP), ("--fit-on", "what the postprocessors are fitted on: "),
    ("--fit-unique", common.FIT_UNIQUE_HELP), ("--seed", "seed of "),
])
def test_one_help_text_everywhere(flag, text):
    helps = _helps(flag)
    assert len(helps) >= 2  # a shared flag
    assert all(h.startswith(text) for h in helps.values()), helps


def test_max_length_commands_and_defaults():
    """The same commands take --max-length, with the same defaults, as before the helper."""
    parser = build_parser()
    defaults = {path: a.default for path, p in _commands(parser) for a in p._actions
                if "--max-length" in a.option_strings}
    assert defaults == {"bench": None, "sweep": None, "diagnose": None, "whiten": None,
                        "encode": 64, "index build": 64, "index search": None,
                        "index eval": None,
                        "train simcse": None}  # train: the config holds the default
    assert "64 (PAWSX 128)" in _helps("--max-length")["bench"]
    assert _helps("--max-length")["encode"].endswith("(default: %(default)s)")  # 64


def test_fit_on_defaults():
    defaults = {path: a.default for path, p in _commands(build_parser()) for a in p._actions
                if "--fit-on" in a.option_strings}
    assert defaults == {"bench": "task", "sweep": "task", "diagnose": "task",
                        "index eval": "task", "index build": "corpus", "whiten": None}


def test_post_options_from_the_command_line():
    args = build_parser().parse_args(["bench", "--post", "pca:k=4", "--post", "rp:k=2",
                                      "--fit-on", "train", "--fit-unique", "--force"])
    assert common.post_options(args) == PostOptions(("pca:k=4", "rp:k=2"), "train", True, True)
    args = build_parser().parse_args(["sweep"])
    assert common.post_options(args) == PostOptions((), "task", False, False)
    args = build_parser().parse_args(["whiten", "--out", "w.npz", "--fit-unique"])
    assert common.post_options(args) == PostOptions((), "task", True, False)


def test_index_eval_threads_are_the_encoders_and_faiss_threads_faiss(monkeypatch):
    from embedkit.cli.index_cmd import _eval_options

    monkeypatch.setattr(common, "available_cores", lambda: 8)
    args = build_parser().parse_args(["index", "eval", "--threads", "2", "--post", "pca:k=4"])
    opts = _eval_options(args)
    assert opts.faiss_threads is None and common.encoder_config(args).threads == 2
    assert opts.post == PostOptions(("pca:k=4",), "task", False, False)
    args = build_parser().parse_args(["index", "eval", "--faiss-threads", "3"])
    assert _eval_options(args).faiss_threads == 3 and common.encoder_config(args).threads is None


def test_token_budget_flag(capsys):
    """--token-budget N reaches the encoder's settings; 0 is by sentence count; left out, the
    backend's default (None); a negative count is refused in one line."""
    args = build_parser().parse_args(["encode", "--corpus", "c.txt", "--out", "o",
                                      "--token-budget", "2048"])
    assert common.encoder_config(args).token_budget == 2048
    args = build_parser().parse_args(["encode", "--corpus", "c.txt", "--out", "o",
                                      "--token-budget", "0"])
    assert common.encoder_config(args).token_budget == 0
    args = build_parser().parse_args(["bench"])
    assert common.encoder_config(args).token_budget is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--token-budget", "-1"])
    assert "--token-budget: must be 0 (batches of --batch-size sentences) or more, not -1" in (
        capsys.readouterr().err)
