"""``embedkit train simcse``: fine-tune an encoder with SimCSE (a thin layer over
:func:`embedkit.training.train_simcse`). Its options are generated from
:class:`~embedkit.training.SimCSEConfig`'s fields (name, type, default, help).

    embedkit train simcse --model m3e-small --pooling cls --tasks LCQMC --out runs/lcqmc-cls
    embedkit train simcse --resume runs/lcqmc-cls          # continue from the latest checkpoint
    embedkit train simcse --supervised --pairs LCQMC:train --hard-negatives --out runs/sup
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
import warnings
from typing import Any

from embedkit.cli.common import DATA_DIR_HELP, MAX_LENGTH_HELP, POOLING_HELP
from embedkit.cli.parsing import split_list

#: how list-valued fields are typed: --tasks takes a comma list, --pairs repeats
_LIST_ACTIONS = {"tasks": "comma", "pairs": "append"}
#: options not named after their field
_FLAGS = {"out_dir": ("--out", "OUT")}


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (``embedkit: error: ...``), exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"embedkit: error: {message} (see: {self.prog} --help)\n")


def _flag(f: dataclasses.Field) -> str:
    return _FLAGS[f.name][0] if f.name in _FLAGS else "--" + f.name.replace("_", "-")


def _default_text(f: dataclasses.Field) -> str | None:
    text = f.metadata.get("default_text")
    if text is not None or f.default is None or isinstance(f.default, bool):
        return text
    if isinstance(f.default, float):
        return f"{f.default:g}".replace("e-0", "e-")  # 1e-5, 0.05, 20
    return str(f.default)


#: config fields whose option every command declares with one help (cli/common.py)
_SHARED_HELP = {"max_length": MAX_LENGTH_HELP, "pooling": POOLING_HELP}


def _add_option(p: argparse.ArgumentParser, f: dataclasses.Field, typ: Any) -> None:
    """One option for config field ``f``. Every default is None so that what was typed can be
    told from what was not (resuming takes the rest from the checkpoint); the real defaults
    live in the config and are shown in the help."""
    default = _default_text(f)
    help_ = f.metadata.get("help", "") + (f" (default: {default})" if default else "")
    if f.name == "data_dir":  # the one --data-dir help, and what training also uses it for
        help_ = f"{DATA_DIR_HELP}; {help_}"
    elif f.name in _SHARED_HELP:  # the help every command gives these options
        help_ = _SHARED_HELP[f.name] + (f" (default: {default})" if default else "")
    kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help_}
    if f.name in _FLAGS:
        kw["metavar"] = _FLAGS[f.name][1]
    args = typing.get_args(typ)
    base = next((a for a in args if a is not type(None)), typ) if args else typ
    if base is bool:
        kw["action"] = argparse.BooleanOptionalAction if f.default is None else "store_true"
    elif _LIST_ACTIONS.get(f.name) == "append":
        kw["action"] = "append"
    elif _LIST_ACTIONS.get(f.name) == "comma":
        kw["type"] = split_list
    else:
        kw["type"] = base
    p.add_argument(_flag(f), **kw)


def add_parser(sub: Any) -> None:
    from embedkit.training import SimCSEConfig

    p = sub.add_parser("train", help="fine-tune an encoder (SimCSE, CoSENT)",
                       description="Fine-tune an encoder and write a model folder that embedkit "
                                   "bench, transformers and sentence-transformers load.")
    methods = p.add_subparsers(dest="method", metavar="METHOD", parser_class=_OneLineParser)
    methods.required = True
    s = methods.add_parser(
        "simcse", help="unsupervised or supervised SimCSE (InfoNCE), or CoSENT",
        description="Unsupervised SimCSE: every sentence twice per batch, dropout the only "
                    "augmentation, InfoNCE over in-batch cosines / temperature. Supervised "
                    "(--supervised): anchors vs positives with in-batch (and optional hard) "
                    "negatives, or --loss cosent. Writes OUT with embedkit.json; --save-every "
                    "writes checkpoints that --resume continues exactly (same device, dtype, "
                    "library versions and thread count).")
    hints = typing.get_type_hints(SimCSEConfig)
    for f in dataclasses.fields(SimCSEConfig):
        _add_option(s, f, hints[f.name])
    s.add_argument("--resume", metavar="DIR",
                   help="continue from a checkpoint (a step-NNNNNN folder, the checkpoints "
                        "folder or OUT); other settings default to the checkpoint's")
    s.set_defaults(func=run)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    print(f"embedkit: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from embedkit.training import SimCSEConfig, TrainingWarning, train_simcse

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SimCSEConfig)
             if getattr(args, f.name) is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("always", TrainingWarning)
        default_show = warnings.showwarning
        warnings.showwarning = lambda m, c, *a, **k: (
            _show_warning(m, c, *a, **k) if issubclass(c, TrainingWarning)
            else default_show(m, c, *a, **k))
        if args.resume:
            result = train_simcse(resume=args.resume, command=args.command_line, **given)
        else:
            result = train_simcse(SimCSEConfig(**given), command=args.command_line)
    rec = result.record
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    where = result.out_dir if result.complete else result.checkpoint
    print(f"{rec['method']}: {result.steps}/{result.total_steps} steps on {rec['examples']} "
          f"examples, pooling {rec['pooling']}, final loss {loss}, "
          f"{result.seconds_per_step:.3f} s/step")
    if result.complete:
        print(f"saved {where} (embedkit bench --model {where})")
    else:
        print(f"stopped at step {result.steps}; checkpoint {where} "
              f"(continue: embedkit train simcse --resume {where})", file=sys.stderr)
    return 0
