"""Every command's --help: a description, the defaults, one example that parses; one name per
option across commands (old spellings kept as aliases)."""

from __future__ import annotations

import argparse
import shlex

import pytest

from embedkit.cli.help import EXAMPLES
from embedkit.cli.main import build_parser, main


def _commands(parser, path=""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for name, sub in (subs[0].choices.items() if subs else ()):
        yield from _commands(sub, f"{path} {name}".strip())


COMMANDS = [path for path, _ in _commands(build_parser())]


def test_every_command_has_an_example():
    assert len(COMMANDS) >= 13 and set(COMMANDS) == set(EXAMPLES)


@pytest.mark.parametrize("path", COMMANDS)
def test_help_has_description_defaults_and_example(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path.split(), "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    parser = dict(_commands(build_parser()))[path]
    assert parser.description and parser.description.split()[0] in text  # a description
    assert f"Example:\n  {EXAMPLES[path]}" in text
    for action in parser._actions:
        d = action.default
        if (action.option_strings and action.help != argparse.SUPPRESS
                and d not in (None, False, argparse.SUPPRESS) and d != []
                and not isinstance(action, argparse._HelpAction)):
            assert "(default" in action.help, (path, action.option_strings)
    # the example is a valid command line of this command
    args = build_parser().parse_args(shlex.split(EXAMPLES[path])[1:])
    assert args.func is not None


@pytest.mark.parametrize("command,old,new,dest,value", [
    (["bench"], "--split", "--splits", "splits", "valid,test"),
    (["diagnose"], "--split", "--splits", "splits", "test"),
    (["index", "eval"], "--split", "--splits", "split", "test"),
    (["index", "eval"], "--queries", "--num-queries", "queries", "50"),
])
def test_both_spellings_one_dest(command, old, new, dest, value):
    a = build_parser().parse_args([*command, old, value])
    b = build_parser().parse_args([*command, new, value])
    assert getattr(a, dest) == getattr(b, dest) and str(getattr(a, dest)) == value


def test_data_dir_help_states_the_lookup_order():
    """Every --data-dir says what the README and find_data_dir do (issue 18: it said the hub
    came right after $EMBEDKIT_DATA), and says it the same way on every command."""
    helps = {path: a.help for path, p in _commands(build_parser()) for a in p._actions
             if "--data-dir" in a.option_strings}
    assert {"bench", "datasets", "train simcse"} <= set(helps)
    order = ("folder holding senteval_cn/ and AFQMC/, or the task folders (LCQMC/, ...) "
             "directly (default: $EMBEDKIT_DATA, else shared/data beside a source checkout, "
             "else ../shared/data from the current folder; when none exists, built-in tasks "
             "load from the Hugging Face hub)")
    assert set(helps.values()) == {order, f"{order}; also used for the train/test overlap check"}
    assert helps["train simcse"].endswith("overlap check")
