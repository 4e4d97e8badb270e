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

from embedkit.aliases import JSONDict, StrPath
from embedkit.cli.parsing import split_models
from embedkit.encoders.choices import SIMILARITIES, available_cores
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_write_json

if TYPE_CHECKING:  # the library is imported where the work is, not to parse arguments
    from embedkit.data import DataOptions
    from embedkit.encoders import EncoderConfig
    from embedkit.encoders.cache import EmbeddingCache
    from embedkit.postprocess.options import PostOptions


def _writable_ancestor(path: Path, what: str, param: str) -> None:
    """The nearest existing folder above ``path`` must be a folder we may write in."""
    for above in path.parents:
        if above.exists() or above == Path(above.anchor or "."):
            break
    if not above.is_dir():
        raise ConfigError(f"cannot write {what}: {above} is not a folder", param=param)
    if not os.access(above, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {what}: no permission to write in {above}", param=param)


def check_output_path(path: StrPath | None, param: str, *,
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


def check_output_dir(path: StrPath | None, param: str) -> None:
    """Refuse, before any work starts, an output FOLDER that cannot be made or written: an
    existing file, a path below a file, a folder without write permission."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{path} is a file; give a folder", param=param)
    _writable_ancestor(p / "x", str(path), param)


def int_at_least(minimum: int, said: str | None = None) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum`` (``said``: how the bound reads in the error,
    e.g. ``"0 (no rescoring) or more"``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be {said or f'at least {minimum}'}, not {value}")
        return value

    return parse


#: argparse type: an integer >= 1
positive_int = int_at_least(1)


#: ``--threads`` above this many times the usable cores is refused (see :func:`thread_count`)
_THREADS_PER_CORE_LIMIT = 4


def thread_count(text: str) -> int:
    """argparse type of every ``--threads``: a :func:`positive_int` checked against the cores
    this process may use (``os.sched_getaffinity``, :func:`available_cores`), so that no count
    reaches the thread pools of torch / OpenMP, ONNX Runtime or OpenVINO unchecked.

    More intra-op threads than cores never makes one process faster: they only wait on each
    other (tests/conftest.py saw a 3 ms forward pass take 150 ms). A count up to
    :data:`_THREADS_PER_CORE_LIMIT` x the cores is most likely one copied from a larger machine
    (the speed report's records, a script): it is capped to the cores, with a notice. A larger
    one is a mistake, and a count in the thousands makes libgomp abort the whole process when
    it cannot create the threads: it is refused.
    """
    value = positive_int(text)
    cores = available_cores()
    if value > _THREADS_PER_CORE_LIMIT * cores:
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
    "batch_size": positive_int, "threads": thread_count, "truncate_dim": positive_int,
    "token_budget": int_at_least(0, "0 (batches of --batch-size sentences) or more")}


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
                       help=f"{_MODEL_HELP}; repeat or comma-separate for "
                            "several models (default: m3e-small)")
    else:
        p.add_argument("--model", action=_Once, default="m3e-small",
                       help=f"{_MODEL_HELP} (default: m3e-small)")
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


#: The one help of every ``--pooling``: the poolings a value may name.
POOLING_HELP = ("cls, pooler, pooler-tanh, last-avg (mean), first-last-avg, layers-avg:I,J, "
                "last-token")
#: The one help of every ``--max-length``: what the number counts.
MAX_LENGTH_HELP = "tokens per text, counting [CLS] and [SEP]"
#: ``--max-length``'s default where the protocol decides (bench, sweep, diagnose, index eval).
PROTOCOL_MAX_LENGTH = "the protocol's: the task's own, 64 (PAWSX 128)"
#: The one help of every ``--post``: what a value may be.
POST_HELP = ("postprocessor chain (whiten:beta=1,gamma=1,k=256, pca:k=128, rp:k=64, ...) or a "
             "saved transform file (file:W.safetensors, W.npz)")
#: ``--fit-on``'s values where the fit sentences come from STS tasks, and where from a corpus.
_FIT_ON_TASK = "task (every split of the task), train, valid, test, or a file with one sentence a line"
_FIT_ON_CORPUS = "corpus, or a file with one sentence a line"
FIT_UNIQUE_HELP = "fit on unique sentences instead of every occurrence"


def add_pooling(p: argparse.ArgumentParser, *, several: bool = False,
                default: str = "the model's own") -> None:
    """``--pooling``, the one declaration every command uses; ``several``: repeated or
    comma-separated (``args.pooling`` is then a list, or None); ``default`` says in words what
    none means."""
    if several:
        p.add_argument("--pooling", action="append", metavar="P",
                       help=f"{POOLING_HELP}; comma-separated or repeated (default: {default})")
    else:
        p.add_argument("--pooling", metavar="P", help=f"{POOLING_HELP} (default: {default})")


def add_max_length(p: argparse.ArgumentParser, default: int | None = None, *,
                   default_text: str | None = None, type=int) -> None:
    """``--max-length``, the one declaration every command uses: ``default`` tokens (None: what
    ``default_text`` says, by default the protocol's). ``type`` checks the text (the library
    checks the value, so its error names the setting)."""
    said = default_text or ("%(default)s" if default is not None else PROTOCOL_MAX_LENGTH)
    p.add_argument("--max-length", type=type, default=default, metavar="N",
                   help=f"{MAX_LENGTH_HELP} (default: {said})")


def add_post(p: argparse.ArgumentParser, *, several: bool = False,
             default: str = "none") -> None:
    """``--post``: one chain or file (``args.post`` a string or None), or ``several`` (repeat
    the flag; ``args.post`` a list, one row each)."""
    if several:
        p.add_argument("--post", action="append", default=[], metavar="CHAIN",
                       help=f"{POST_HELP}; repeat for several rows (default: {default})")
    else:
        p.add_argument("--post", metavar="CHAIN|FILE", help=f"{POST_HELP} (default: {default})")


def add_fit_on(p: argparse.ArgumentParser, default: str | None = "task", *,
               unique: bool = True, values: str | None = None,
               default_text: str | None = None) -> None:
    """``--fit-on`` (what a chain is fitted on: ``values``, by default the ``task``-like ones,
    or the ``corpus``-like ones where ``default`` is ``corpus``) and, with ``unique``,
    ``--fit-unique``."""
    values = values or (_FIT_ON_CORPUS if default == "corpus" else _FIT_ON_TASK)
    p.add_argument("--fit-on", default=default, metavar="WHAT",
                   help=f"what the postprocessors are fitted on: {values} (default: "
                        f"{default_text or default})")
    if unique:
        add_fit_unique(p)


def add_fit_unique(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fit-unique", action="store_true", help=FIT_UNIQUE_HELP)


def add_post_options(p: argparse.ArgumentParser, *, several: bool = True,
                     fit_on: str = "task", unique: bool = True,
                     force: str | None = None, default: str = "none") -> None:
    """``--post`` (:func:`add_post`; ``default`` says what none means), ``--fit-on`` /
    ``--fit-unique`` (:func:`add_fit_on`) and, when ``force`` says what it allows, ``--force``:
    what :func:`post_options` reads."""
    add_post(p, several=several, default=default)
    add_fit_on(p, fit_on, unique=unique)
    if force is not None:
        add_force(p, force)


def add_force(p: argparse.ArgumentParser, allows: str) -> None:
    """``--force``: ``allows`` says what it lets through (each command its own check)."""
    p.add_argument("--force", action="store_true", help=allows)


#: the default of a setting that ``index search`` checks against the index's recipe
RECIPE_CHECK = "the index's recipe; another value is refused unless --force"

#: ``--force`` of the commands that take a saved transform file in ``--post``
FORCE_POST_FILE = ("use a --post transform file even if it was fitted for another model, "
                   "pooling or dimension (a warning instead of an error)")


#: What every ``--model`` value may be (:func:`add_model_options`' too).
_MODEL_HELP = "hub id, local folder or alias"


def add_model_name(p: argparse.ArgumentParser, default: str | None = None, *,
                   default_text: str | None = None, what: str = _MODEL_HELP) -> None:
    """``--model`` where a command names a model without building an encoder from the encoder
    options (the reports' drivers, ``index search``'s recipe check, ``cache clear``'s filter);
    an encoder's ``--model`` comes with :func:`add_model_options`."""
    p.add_argument("--model", default=default, metavar="MODEL",
                   help=f"{what} (default: {default_text or '%(default)s'})")


def add_seed(p: argparse.ArgumentParser, of: str, default: int = 0) -> None:
    """``--seed``: ``of`` says what it seeds."""
    p.add_argument("--seed", type=int, default=default, help=f"seed of {of} (default: %(default)s)")


def add_out(p: argparse.ArgumentParser, what: str, *, default: str | None = None,
            metavar: str = "PATH") -> None:
    """``--out``: where ``what`` is written (required unless there is a ``default``)."""
    said = " (default: %(default)s)" if default is not None else ""
    p.add_argument("--out", required=default is None, default=default, metavar=metavar,
                   help=f"{what}{said}")


def add_faiss_threads(p: argparse.ArgumentParser) -> None:
    """``--faiss-threads``: FAISS's own thread count (``--threads`` is the encoder's)."""
    p.add_argument("--faiss-threads", type=thread_count, metavar="N",
                   help="threads FAISS searches and trains with (default: FAISS's own, the "
                        "cores available)")


def add_protocol(p: argparse.ArgumentParser) -> None:
    """``--protocol``: the splits and max lengths of the published tables."""
    p.add_argument("--protocol", default="whitening", choices=("whitening", "cmteb"),
                   help="splits and max lengths of the published tables (default: whitening)")


def add_splits(p: argparse.ArgumentParser, *, dest: str = "splits", what: str = "") -> None:
    """``--splits`` (``--split``, the older spelling): comma-separated split names."""
    p.add_argument("--splits", "--split", dest=dest, metavar="SPLITS",
                   help=f"comma-separated splits{what} (default: the protocol's; test)")


def add_progress(p: argparse.ArgumentParser, *, bars: str = "progress bar (default: on a "
                                                            "terminal)") -> None:
    """``--progress`` / ``--no-progress`` (None: decided by the terminal)."""
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help=bars)


def add_record_outputs(p: argparse.ArgumentParser, *, stdout_ok: bool = False) -> None:
    """``--output`` (the JSON record; ``stdout_ok``: ``-`` for standard output) and
    ``--markdown`` (a Markdown report), as the runners' commands take them."""
    p.add_argument("--output", metavar="FILE.json",
                   help="write the JSON record here" + (" (- for standard output)" if stdout_ok
                                                        else ""))
    p.add_argument("--markdown", metavar="FILE.md", help="write a Markdown report here")


def add_poolings_and_tasks(p: argparse.ArgumentParser) -> None:
    """``--pooling`` (several) and ``--tasks``, as bench and sweep take them."""
    add_pooling(p, several=True)
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


def post_options(args: argparse.Namespace) -> PostOptions:
    """The chains and how they are fitted, as :func:`add_post_options` declared them (a
    command without ``--post`` or ``--force`` gets none and False)."""
    from embedkit.postprocess.options import PostOptions

    post = getattr(args, "post", None) or ()
    return PostOptions(chains=(post,) if isinstance(post, str) else tuple(post),
                       fit_on=getattr(args, "fit_on", None) or "task",
                       fit_unique=bool(getattr(args, "fit_unique", False)),
                       force=bool(getattr(args, "force", False)))


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


def defaults_line(recipe: JSONDict) -> str | None:
    """What an index build chose as its default search setting, for the build's output line;
    None when the index has nothing to tune."""
    d = recipe.get("search_defaults")
    if not isinstance(d, dict):
        return None
    key = "nprobe" if "nprobe" in d else "ef_search"
    flag = "--nprobe" if key == "nprobe" else "--ef-search"
    recall = d.get(f"recall_at_{d.get('k', 10)}")
    short = "" if d.get("reached", True) else f" (below the {d.get('target')} target: the smallest setting at the best recall tried)"
    return (f"searches use {flag} {d.get(key)} unless given: recall@{d.get('k', 10)} {recall} "
            f"against exact search on {d.get('queries')} sampled vectors{short}")
