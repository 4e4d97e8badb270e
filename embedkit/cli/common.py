"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedkit.cli.parsing import split_models
from embedkit.encoders.choices import SIMILARITIES, available_cores
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_write_json

if TYPE_CHECKING:  # the library is imported where the work is, not to parse arguments
    from embedkit.data import DataOptions
    from embedkit.encoders import EncoderConfig
    from embedkit.encoders.cache import EmbeddingCache


def _writable_ancestor(path: Path, what: str, param: str) -> None:
    """The nearest existing folder above ``path`` must be a folder we may write in."""
    for above in path.parents:
        if above.exists() or above == Path(above.anchor or "."):
            break
    if not above.is_dir():
        raise ConfigError(f"cannot write {what}: {above} is not a folder", param=param)
    if not os.access(above, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {what}: no permission to write in {above}", param=param)


def check_output_path(path: str | os.PathLike | None, param: str, *,
                      stdout_ok: bool = False) -> None:
    """Refuse, before any work starts, an output FILE that cannot be written: an existing
    folder, a path below a file, a folder without write permission. ``param`` is the option's
    dest (``output`` -> ``--output`` in the error line); ``stdout_ok``: ``-`` means stdout.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> check_output_path(f"{d}/new/r.json", "output"), check_output_path("-", "output", stdout_ok=True)
    (None, None)
    >>> check_output_path(d, "output")
    Traceback (most recent call last):
    embedkit.errors.ConfigError: ... is a folder; give a file path
    """
    if path is None or (stdout_ok and str(path) == "-"):
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{path} is a folder; give a file path", param=param)
    _writable_ancestor(p, str(path), param)


def check_output_dir(path: str | os.PathLike | None, param: str) -> None:
    """Refuse, before any work starts, an output FOLDER that cannot be made or written: an
    existing file, a path below a file, a folder without write permission."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{path} is a file; give a folder", param=param)
    _writable_ancestor(p / "x", str(path), param)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


#: ``--threads`` above this many times the usable cores is refused (see :func:`thread_count`)
THREADS_PER_CORE_LIMIT = 4


def thread_count(text: str) -> int:
    """argparse type of every ``--threads``: a :func:`positive_int` checked against the cores
    this process may use (``os.sched_getaffinity``, :func:`available_cores`), so that no count
    reaches the thread pools of torch / OpenMP, ONNX Runtime or OpenVINO unchecked.

    More intra-op threads than cores never makes one process faster: they only wait on each
    other (tests/conftest.py saw a 3 ms forward pass take 150 ms). A count up to
    :data:`THREADS_PER_CORE_LIMIT` x the cores is most likely one copied from a larger machine
    (the speed report's records, a script): it is capped to the cores, with a notice. A larger
    one is a mistake, and a count in the thousands makes libgomp abort the whole process when
    it cannot create the threads: it is refused.
    """
    value = positive_int(text)
    cores = available_cores()
    if value > THREADS_PER_CORE_LIMIT * cores:
        raise argparse.ArgumentTypeError(
            f"{value} threads for the {cores} core(s) this process may use; give at most "
            f"{cores} (more threads than cores only wait on each other)")
    if value > cores:
        print(f"embedkit: notice: --threads {value} is more than the {cores} core(s) this "
              f"process may use; using {cores}", file=sys.stderr)
        return cores
    return value


#: ``--data-dir``'s help: the lookup order of ``data.loading.find_data_dir`` (and the README)
DATA_DIR_HELP = ("folder holding senteval_cn/ and AFQMC/, or the task folders (LCQMC/, ...) "
                 "directly (default: $EMBEDKIT_DATA, else shared/data beside a source "
                 "checkout, else ../shared/data from the current folder; when none exists, "
                 "built-in tasks load from the Hugging Face hub)")


def add_data_dir(p: argparse.ArgumentParser) -> None:
    """``--data-dir``, the one declaration every command uses."""
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)


def add_data_options(p: argparse.ArgumentParser) -> None:
    add_data_dir(p)
    p.add_argument("--source", choices=("auto", "local", "hub"), default="auto",
                   help="where task data comes from (default: local when a data dir is known)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip malformed rows (and report how many) instead of stopping")


class _Once(argparse.Action):
    """An option that may be given once: a second value is an error, never silently the winner."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, f"_{self.dest}_seen", False):
            parser.error(f"{option_string} was given twice ({getattr(namespace, self.dest)!r} and "
                         f"{values!r}); this command takes one (embedkit bench takes several)")
        setattr(namespace, f"_{self.dest}_seen", True)
        setattr(namespace, self.dest, values)




#: the parsers of the model options whose values are not plain strings (by field name)
_MODEL_OPTION_TYPES: dict[str, Callable[[str], Any]] = {
    "batch_size": positive_int, "threads": thread_count, "truncate_dim": positive_int}


def add_model_options(p: argparse.ArgumentParser, *, several: bool = False,
                      retrieval_prompts: bool = False) -> None:
    """The options that build an encoder (:func:`encoder_config`): one per
    :class:`~embedkit.encoders.config.EncoderConfig` field that its metadata marks as a flag,
    with the field's help text and default. ``several``: ``--model`` may be repeated or
    comma-separated (``args.model`` is then a list, or None for the default);
    ``retrieval_prompts``: also ``--query-prompt`` / ``--passage-prompt``."""
    from embedkit.encoders.config import EncoderConfig  # light: no backend is imported

    if several:
        p.add_argument("--model", action="append", metavar="MODEL",
                       help="hub id, local folder or alias; repeat or comma-separate for "
                            "several models (default: m3e-small)")
    else:
        p.add_argument("--model", action=_Once, default="m3e-small",
                       help="hub id, local folder or alias (default: m3e-small)")
    for f in dataclasses.fields(EncoderConfig):
        meta = f.metadata
        if not meta.get("flag"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.default is False:
            p.add_argument(flag, action="store_true", help=meta["help"])
            continue
        p.add_argument(flag, default=f.default, type=_MODEL_OPTION_TYPES.get(f.name, str),
                       choices=meta["choices"], metavar=meta["metavar"], help=meta["help"])
    if retrieval_prompts:
        p.add_argument("--query-prompt", metavar="TEXT",
                       help="prompt before queries only (default: --prompt)")
        p.add_argument("--passage-prompt", metavar="TEXT",
                       help="prompt before corpus passages only (default: --prompt)")
    add_cache_options(p)


def add_cache_options(p: argparse.ArgumentParser) -> None:
    """``--cache-dir`` and ``--no-cache``, as every command that encodes takes them."""
    p.add_argument("--cache-dir", metavar="DIR",
                   help="embedding cache (default: $EMBEDKIT_CACHE or the user cache dir)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")


def add_poolings_and_tasks(p: argparse.ArgumentParser) -> None:
    """``--pooling`` (several) and ``--tasks``, as bench and sweep take them."""
    p.add_argument("--pooling", action="append", metavar="P",
                   help="cls, pooler, pooler-tanh, last-avg (mean), first-last-avg, "
                        "layers-avg:I,J, last-token; comma-separated or repeated (default: the model's own)")
    p.add_argument("--tasks", help="comma-separated task names or spec .json files "
                                   "(default: ATEC,BQ,LCQMC,PAWSX,STS-B)")


def add_classify_option(p: argparse.ArgumentParser, chosen_on: str, reported_on: str) -> None:
    """``--classify``, as bench and sweep take it: pair-classification metrics on binary tasks
    with thresholds chosen on one split (``chosen_on``) and reported on another."""
    p.add_argument("--classify", action="store_true",
                   help=f"binary tasks: also best accuracy / F1 thresholds chosen on {chosen_on} "
                        f"reported on {reported_on}, and average precision")


def add_similarity_option(p: argparse.ArgumentParser) -> None:
    """``--similarity``: how pairs are compared (default: what the model folder declares)."""
    p.add_argument("--similarity", choices=SIMILARITIES, metavar="FN",
                   help=f"compare pairs by {', '.join(SIMILARITIES)} (default: the "
                        "similarity_fn_name the model folder declares, else cosine)")


def make_cache(args: argparse.Namespace) -> EmbeddingCache | None:
    from embedkit.encoders.cache import EmbeddingCache

    return None if args.no_cache else EmbeddingCache(args.cache_dir)


def encoder_config(args: argparse.Namespace, model: str | None = None,
                   pooling: str | None = None) -> EncoderConfig:
    """The encoder settings the model options (:func:`add_model_options`) describe: every
    flagged field the command declares, plus the cache and progress options."""
    from embedkit.encoders import EncoderConfig

    name = model or (split_models(args.model)[0] if isinstance(args.model, list)
                     else args.model)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(EncoderConfig)
             if f.metadata.get("flag") and hasattr(args, f.name)}
    return EncoderConfig(model=name, cache=not args.no_cache, cache_dir=args.cache_dir,
                         progress=getattr(args, "progress", None), pooling=pooling, **given)


def data_options(args: argparse.Namespace) -> DataOptions:
    """Where task data comes from, as the data options (:func:`add_data_options`) say."""
    from embedkit.data import DataOptions

    return DataOptions(data_dir=args.data_dir, source=args.source, skip_invalid=args.skip_invalid)


def write_json(path: str, obj) -> None:
    """Write JSON atomically to ``path``, or to standard output for ``-``."""
    if path == "-":
        json.dump(obj, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        atomic_write_json(path, obj)


def locked_error(err: Exception) -> ConfigError:
    """A folder lock not taken in time, as the one-line error that names the option to wait
    longer."""
    return ConfigError(f"{err} (or wait longer: --lock-timeout SECONDS)")


def defaults_line(recipe: dict) -> str | None:
    """What an index build chose as its default search setting, for the build's output line;
    None when the index has nothing to tune."""
    d = recipe.get("search_defaults")
    if not isinstance(d, dict):
        return None
    key = "nprobe" if "nprobe" in d else "ef_search"
    flag = "--nprobe" if key == "nprobe" else "--ef-search"
    recall = d.get(f"recall_at_{d.get('k', 10)}")
    short = "" if d.get("reached", True) else f" (below the {d.get('target')} target: the most tried)"
    return (f"searches use {flag} {d.get(key)} unless given: recall@{d.get('k', 10)} {recall} "
            f"against exact search on {d.get('queries')} sampled vectors{short}")
