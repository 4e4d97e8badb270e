"""``--help`` for every command: a description, each option's default, and one example.

:func:`finish_help` walks the parser tree once it is built: a sub-command without a description
takes its one-line help; an option with a default that its help does not state gets
``(default: X)``; every command gets ``Example:`` with the line from :data:`EXAMPLES`.
"""

from __future__ import annotations

import argparse

#: one example per command (the path of sub-command names, space-separated)
EXAMPLES = {
    "bench": "embedkit bench --model m3e-small --tasks STS-B,LCQMC --pooling cls,last-avg "
             "--post whiten:beta=1,gamma=1,k=256",
    "datasets": "embedkit datasets --data-dir ../shared/data",
    "cache": "embedkit cache info --model m3e-small",
    "whiten": "embedkit whiten --model m3e-small --fit-on STS-B:train --k 256 "
              "--out stsb-whiten-256.safetensors",
    "sweep": "embedkit sweep --model m3e-small --tasks STS-B --k 64,128,256,all "
             "--select-on valid --report-on test",
    "train simcse": "embedkit train simcse --model bert-base-chinese --tasks STS-B "
                    "--out runs/simcse-stsb",
    "index build": "embedkit index build --model m3e-small --corpus-task LCQMC:test "
                   "--post whiten:k=256 --out lcqmc-index",
    "index add": "embedkit index add --index lcqmc-index --corpus more.txt",
    "index search": 'embedkit index search --index lcqmc-index --query "怎么修改密码" -k 5',
    "index eval": "embedkit index eval --model m3e-small --tasks LCQMC --split test "
                  "--post whiten:k=256",
    "encode": "embedkit encode --model m3e-small --corpus corpus.txt --out shards/",
    "compare": "embedkit compare eval/*.json --markdown compare.md",
    "diagnose": "embedkit diagnose --model m3e-small --tasks STS-B --post whiten:k=256",
    "distill": "embedkit distill --model m3e-small --dim 256 --out m3e-small-static",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and the example as written (line breaks kept); option help wrapped."""


def _states_default(action: argparse.Action) -> bool:
    """Whether ``(default: X)`` belongs after this option's help: it has a default worth
    saying (not None, False, an empty list or suppressed) that the help does not state."""
    if not action.option_strings or action.help == argparse.SUPPRESS:
        return False
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return False
    d = action.default
    if d is None or d is False or d == argparse.SUPPRESS or (isinstance(d, list) and not d):
        return False
    return "(default" not in (action.help or "")


def _one_line_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {c.dest: c.help or "" for s in subs for c in s._choices_actions}


def finish_help(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Complete the help of ``parser`` and every sub-command below it (see the module)."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if _states_default(action):
            action.help = ((action.help or "").rstrip() + " (default: %(default)s)").lstrip()
    if path in EXAMPLES and not parser.epilog:
        parser.epilog = f"Example:\n  {EXAMPLES[path]}"
    helps = _one_line_helps(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if not sub.description and helps.get(name):
                    text = helps[name]
                    sub.description = text[0].upper() + text[1:] + "."
                finish_help(sub, f"{path} {name}".strip())
