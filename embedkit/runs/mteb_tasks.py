"""mteb's own tasks with an embedkit encoder (what ``embedkit bench`` runs for mteb tasks).

Any text task mteb has (classification, clustering, pair classification, reranking, retrieval,
STS ...) is run by mteb's own evaluator through :class:`~embedkit.integrations.mteb.MtebEncoder`
and :func:`~embedkit.integrations.mteb.evaluate_local`, once per bench row (a pooling, or a
pooling and a postprocessor chain fitted before mteb encodes anything, so that queries and
documents, or the two sides of a pair, go through the same map). :func:`run_mteb_tasks` puts
the results in a bench record under ``mteb``: per row and task mteb's main score (0 to 1) and
every split's scores as mteb reports them.

**Names.** A name is looked up among the tasks registered here first
(:func:`register_mteb_task`: a task of one's own, an ``AbsTask`` subclass whose ``load_data``
builds its data), then, as ``module:Class``, imported (a task of one's own on the command
line), then among mteb's (``mteb.get_task``); an unknown name is a one-line
:class:`ConfigError` with the close matches. Task objects can also be passed directly.

**Data.** mteb loads a task's data from the Hugging Face hub, or from the ``datasets`` cache
(``HF_DATASETS_CACHE``, ``HF_HOME``) where a run with network access left it. Before loading,
the hub is probed (a TCP connection, :data:`_PROBE_SECONDS`); when it cannot be reached,
``datasets`` and ``huggingface_hub`` are put in offline mode for the load (cached data still
loads, at once) instead of retrying for half a minute, and a task whose data is not cached is
a one-line :class:`DataError` naming the task and what to do.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

import numpy as np

from embedkit.aliases import JSONDict, StrPath
from embedkit.data import DataOptions
from embedkit.data.selection import FitSentences, collect_fit_sentences
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.errors import ConfigError, DataError
from embedkit.integrations.mteb import MtebEncoder, evaluate_local
from embedkit.postprocess import check_chain_files, describe_post, pipeline_learns, resolve_post
from embedkit.postprocess.spec import PostOptions

if TYPE_CHECKING:
    from embedkit.runs.record import BenchRecord

try:
    import mteb
    from mteb.abstasks import AbsTask
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("embedkit.runs.mteb_tasks needs mteb 2.x: "
                      "pip install 'embedkit[mteb]'") from exc

__all__ = ["get_mteb_tasks", "load_task_data", "register_mteb_task",
           "run_mteb_tasks", "task_texts"]

log = logging.getLogger(__name__)

#: how long the hub probe waits for a connection before the load runs offline
_PROBE_SECONDS = 3.0
#: tasks of one's own by name (see :func:`register_mteb_task`)
REGISTERED: dict[str, Callable[[], Any]] = {}
#: the columns whose strings are a task's texts (what ``fit_on="task"`` fits on)
_TEXT_COLUMNS = ("text", "sentence1", "sentence2", "sentences", "query", "positive", "negative")


def register_mteb_task(task: Any) -> str:
    """Make a task of one's own findable by name (the command line's task names): an mteb ``AbsTask``
    subclass (built anew for each run) or instance; returns its ``metadata.name``."""
    name = str(task.metadata.name)
    REGISTERED[name] = task if isinstance(task, type) else (lambda: task)
    return name


def _known_names() -> list[str]:
    return [*REGISTERED, *(str(t.metadata.name)
                           for t in mteb.get_tasks(exclude_superseded=False))]


def get_mteb_tasks(tasks: Sequence[str | Any]) -> list[Any]:
    """Task objects for names (registered, then mteb's) or task objects; every name is checked
    before any is loaded. Non-text tasks are refused (embedkit encodes text)."""
    found: list[Any] = []
    for item in tasks:
        if isinstance(item, AbsTask):
            found.append(item)
        elif str(item) in REGISTERED:
            found.append(REGISTERED[str(item)]())
        elif ":" in str(item):
            found.append(_imported_task(str(item)))
        else:
            found.append(_mteb_task(str(item)))
    for task in found:
        modalities = set(getattr(task.metadata, "modalities", None) or ["text"])
        if modalities - {"text"}:
            raise ConfigError(f"mteb task {task.metadata.name!r} takes {', '.join(sorted(modalities))}"
                              "; embedkit encoders take text only", param="mteb_tasks")
    return found


def _imported_task(ref: str) -> Any:
    """``module:Class``: a task class of one's own, imported and built (the command line's way
    to name a task that mteb does not have)."""
    import importlib

    module, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"mteb task {ref!r}: cannot import it ({type(e).__name__}: {e}); give "
                          "module:Class with the module on the Python path", param="mteb_tasks"
                          ) from None
    task = obj() if isinstance(obj, type) else obj
    if not isinstance(task, AbsTask):
        raise ConfigError(f"mteb task {ref!r}: {type(task).__name__} is not an mteb AbsTask",
                          param="mteb_tasks")
    return task


def _mteb_task(name: str) -> Any:
    try:
        return mteb.get_task(name)
    except (KeyError, ValueError):
        pass
    names = _known_names()
    by_lower = {n.lower(): n for n in names}
    low = name.lower()
    close = [n for n in by_lower if len(n) > 3 and (n in low or low in n)][:3]
    close += [c for c in difflib.get_close_matches(low, list(by_lower), n=5, cutoff=0.6)
              if c not in close][:5 - len(close)]
    hint = (f"close matches: {', '.join(by_lower[c] for c in close)}" if close else
            "list them with python -c 'import mteb; print([t.metadata.name for t in "
            "mteb.get_tasks()])'")
    raise ConfigError(f"no mteb task {name!r} ({len(names)} known); {hint}", param="mteb_tasks")


def hub_reachable(timeout: float = _PROBE_SECONDS) -> bool:
    """True when the Hugging Face endpoint (``HF_ENDPOINT``) accepts a TCP connection within
    ``timeout`` seconds; False at once when ``HF_HUB_OFFLINE`` is set."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_mode() -> Iterator[None]:
    """``datasets`` and ``huggingface_hub`` in offline mode (their flags, read at import time,
    set for the block and restored)."""
    import datasets.config
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars (mteb's ``map`` calls over a task's rows) for the block."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def load_task_data(task: Any, *, online: bool | None = None) -> None:
    """Load a task's data as mteb does (``task.load_data()``; nothing when already loaded),
    offline when the hub cannot be reached (``online``: default :func:`hub_reachable`). A
    failed load is one :class:`DataError` line naming the task and what to do."""
    if getattr(task, "data_loaded", False):
        return
    name = task.metadata.name
    online = hub_reachable() if online is None else online
    t0 = time.perf_counter()
    try:
        with contextlib.nullcontext() if online else _offline_mode():
            task.load_data()
    except (OSError, ValueError) as e:  # ConnectionError, hub and datasets errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not online:
            cache = os.environ.get("HF_DATASETS_CACHE") or os.environ.get("HF_HOME") or \
                "~/.cache/huggingface"
            raise DataError(f"mteb task {name!r}: its data ({task.metadata.dataset.get('path')}) "
                            f"is not in the local datasets cache ({cache}) and the hub cannot be "
                            "reached (offline); run it once with network access to cache it, or "
                            "set HF_HOME / HF_DATASETS_CACHE to a cache that has it",
                            param="mteb_tasks") from None
        raise DataError(f"mteb task {name!r}: its data could not be loaded: {first}",
                        param="mteb_tasks") from None
    log.info("mteb task %s: data loaded in %.1f s", name, time.perf_counter() - t0)


def task_texts(task: Any) -> list[str]:
    """Every text of a loaded task (its :data:`_TEXT_COLUMNS`, every subset and split, a
    retrieval task's queries and corpus, titles joined as mteb joins them), first occurrence
    order: what ``fit_on="task"`` fits a chain on."""
    texts: dict[str, None] = {}

    def walk(node: Any) -> None:
        columns = None if isinstance(node, Mapping) else getattr(node, "column_names", None)
        if columns is not None:  # a datasets.Dataset
            for col in (c for c in _TEXT_COLUMNS if c in columns):
                if col == "text" and "title" in columns:
                    values = [f"{t} {x}".strip()
                              for t, x in zip(node["title"], node["text"], strict=True)]
                else:
                    values = node[col]
                for v in values:
                    for s in (v if isinstance(v, list) else [v]):
                        if isinstance(s, str) and s:
                            texts[s] = None
        elif isinstance(node, Mapping):
            for value in node.values():
                walk(value)

    walk(task.dataset)
    return list(texts)


def _task_summary(result: Any, task: Any) -> dict[str, Any]:
    """A TaskResult as the bench record keeps it: ``main_score`` (mteb's ``get_score()``),
    ``main_metric``, ``type``, ``dataset_revision``, ``splits`` (per split, per subset, every
    score mteb reports) and ``main_score_by_split``."""
    splits = {split: {str(s.get("hf_subset", "default")): {
        k: v for k, v in s.items() if k not in ("hf_subset", "languages")} for s in entries}
        for split, entries in result.scores.items()}
    by_split = {split: float(np.mean([s["main_score"] for s in subsets.values()]))
                for split, subsets in splits.items()}
    return {"main_score": float(result.get_score()),
            "main_metric": str(task.metadata.main_score),
            "type": str(task.metadata.type), "dataset_revision": result.dataset_revision,
            "main_score_by_split": by_split, "splits": splits,
            "evaluation_time": result.evaluation_time}


def _fit_sentences(task: Any, fit_on: str, data: DataOptions, unique: bool) -> FitSentences:
    """What a learning chain is fitted on for ``task``: ``task``, every text of the mteb task;
    otherwise embedkit's absolute forms (a file, ``TASK``, ``TASK:SPLIT``)."""
    if fit_on == "task":
        texts = task_texts(task)
        if not texts:
            raise ConfigError(f"mteb task {task.metadata.name!r}: no texts to fit the chain on; "
                              "give fit_on a file", param="fit_on")
        return FitSentences(texts, f"mteb:{task.metadata.name}", unique=True)
    return collect_fit_sentences(fit_on, data_dir=data.data_dir, source=data.source,
                                 skip_invalid=data.skip_invalid, unique=unique)


def _row_models(enc: SentenceEncoder, pools: list[Pooling], pipes: list[tuple[str, Any]],
                fit: FitSentences | None, max_length: int) -> dict[str, MtebEncoder]:
    """One :class:`MtebEncoder` per bench row (label as the bench labels it), each chain fitted
    on ``fit`` (a fixed chain on a few of them: it only checks the dimension)."""
    from sklearn.base import clone

    models: dict[str, MtebEncoder] = {}
    for pooling in pools:
        models[str(pooling)] = MtebEncoder(enc, pooling=str(pooling), max_length=max_length)
        if not pipes or fit is None:
            continue
        vecs = enc.encode(fit.sentences, pooling, max_length=max_length)
        for label, pipe in pipes:
            fitted = clone(pipe).fit(vecs if pipeline_learns(pipe) else vecs[:16])
            models[f"{pooling} + {label}"] = MtebEncoder(enc, fitted, pooling=str(pooling),
                                                         max_length=max_length)
    return models


def run_mteb_tasks(encoder: SentenceEncoder | EncoderConfig | str,
                   poolings: Sequence[str] | None, tasks: Sequence[str | Any], *,
                   record: BenchRecord | None = None,
                   post: Sequence[str] | PostOptions = (),
                   max_length: int | None = None, data: DataOptions | None = None,
                   cache_path: StrPath | None = None,
                   command: str | None = None) -> BenchRecord:
    """mteb's evaluation of every row (pooling x ``post`` chain) on every task; the results go
    into ``record`` (a bench record, e.g. :func:`~embedkit.runs.bench.run_bench`'s) under
    ``mteb``, or into a new bench record with no STS task. ``tasks``: names or task objects
    (:func:`get_mteb_tasks`); ``max_length`` default the model's own (as mteb runs a model);
    ``post``: chains, or a :class:`~embedkit.postprocess.spec.PostOptions` whose ``fit_on`` is
    ``task`` (the mteb task's texts) or a file / ``TASK[:SPLIT]`` of embedkit's;
    ``cache_path``: mteb's ``ResultCache`` folder, where mteb writes its TaskResult files."""
    t_start = time.perf_counter()
    data = data or DataOptions()
    mteb_tasks = get_mteb_tasks(tasks)
    posts = post if isinstance(post, PostOptions) else PostOptions(chains=tuple(post))
    fit_on = posts.fit_on
    pipes = [(describe_post(p), p) for p in (resolve_post(c) for c in posts.chains)]
    enc = as_encoder(encoder)
    pools = list(dict.fromkeys(Pooling(p) for p in (poolings or ()))) or [enc.default_pooling]
    post_files = check_chain_files(pipes, model=enc.identity, dim=enc.dim, poolings=pools,
                                   force=posts.force)
    length = int(max_length or enc.model_max_length())
    section: dict[str, Any] = {"tasks": {}, "results": {}, "fit": {}, "model_names": {},
                               "max_length": length, "fit_on": fit_on if pipes else None}
    for task in mteb_tasks:
        load_task_data(task)
        name = str(task.metadata.name)
        fit = _fit_sentences(task, fit_on, data, posts.fit_unique) if pipes else None
        if fit is not None:
            section["fit"][name] = fit.record()
        section["tasks"][name] = {"type": str(task.metadata.type),
                                  "main_metric": str(task.metadata.main_score),
                                  "eval_splits": list(task.metadata.eval_splits),
                                  "dataset": dict(task.metadata.dataset)}
        for label, model in _row_models(enc, pools, pipes, fit, length).items():
            with _quiet_datasets():
                result = evaluate_local(model, [task], cache_path=cache_path,
                                        overwrite_strategy="always").task_results[0]
            section["results"].setdefault(label, {})[name] = _task_summary(result, task)
            section["model_names"][label] = str(model.mteb_model_meta.name)
    return _with_section(record, section, enc, pools, pipes, post_files, command, t_start)


def _with_section(record: BenchRecord | None, section: dict[str, Any], enc: SentenceEncoder,
                  pools: list[Pooling], pipes: list[tuple[str, Any]], post_files: JSONDict,
                  command: str | None, t_start: float) -> BenchRecord:
    """``section`` as ``record["mteb"]``; without a record, a bench record of its own."""
    from embedkit.runs.record import run_record, timings

    if record is None:
        settings = {"poolings": [str(p) for p in pools], "tasks": [], "protocol": "mteb",
                    "post": [label for label, _ in pipes], "post_files": post_files,
                    "max_length": {}, "model_max_length": enc.model_max_length()}
        record = cast("BenchRecord", run_record("bench", command=command, encoder=enc,
                                                settings=settings, data={}))
        record["results"] = {label: {"pooling": label.split(" + ")[0],
                                     "post": label.split(" + ", 1)[1] if " + " in label else None}
                             for label in section["results"]}
        record["timings"] = timings(enc, t_start)
    record["mteb"] = section
    record["settings"]["mteb_tasks"] = list(section["tasks"])
    return record
