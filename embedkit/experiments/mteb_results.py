"""Results in mteb's format: per task a ``TaskResult`` JSON file, in mteb's folder layout.

``write_mteb_results(record, DIR)`` turns an ``embedkit bench`` record into what
``mteb.evaluate`` would have written for the same model (mteb 2.x, schema of
:data:`MTEB_SCHEMA_VERSION`)::

    DIR/<org>__<model>/<revision>/experiments/<experiment>/<Task>.json
    DIR/<org>__<model>/<revision>/experiments/<experiment>/model_meta.json
    DIR/<org>__<model>/<revision>/experiments/<experiment>/run_settings.jsonl

``DIR`` plays the part of mteb's ``results`` folder: ``mteb.ResultCache(cache_path=P)`` reads
``P/results``, so write to ``P/results`` to load with the cache, or read one file with
``mteb.TaskResult.from_disk``. Task names and dataset revisions are C-MTEB's (``STS-B`` is
``STSB``, ``valid`` is ``validation``); the model's name and revision name the base model; the
experiment (mteb's ``experiment_kwargs``) names pooling, max length and postprocessor, so each
row of a bench record lands in its own experiment folder. ``run_settings.jsonl`` carries, besides
mteb's own keys, an ``embedkit`` entry per task: protocol, data checksums and the record's
settings, which :mod:`embedkit.experiments.compare` uses to flag cells that are not comparable.

Scores are embedkit's: ``cosine_spearman`` (= ``main_score``, ``spearman``) and
``cosine_pearson`` (= ``pearson``), cosine in float64 with ties ranked as
:mod:`embedkit.evaluation.metrics` says; mteb computes cosine in float32, so the two differ in
the 5th decimal at most on real tasks (ties among near-equal cosines fall differently). mteb's
Manhattan and Euclidean correlations are not computed, so they are absent.

>>> mteb_task_name("STS-B"), mteb_split_name("valid")
('STSB', 'validation')
>>> experiment_name({"pooling": "cls", "max_length": 512, "post": "whiten:k=256"})
'max_length_512__pooling_cls__post_whiten_k=256'
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedkit.data.registry import get_task
from embedkit.encoders.models import ALIASES
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_write_text
from embedkit.provenance import sha256_file

#: the mteb release whose TaskResult / ModelMeta schema the files follow (checked by the tests)
MTEB_SCHEMA_VERSION = "2.26.24"

#: embedkit task -> (C-MTEB task name, dataset revision), from mteb/tasks/sts/zho/cmtebsts.py
CMTEB_TASKS: dict[str, tuple[str, str]] = {
    "ATEC": ("ATEC", "0f319b1142f28d00e055a6770f3f726ae9b7d865"),
    "BQ": ("BQ", "e3dda5e115e487b39ec7e618c0c6a29137052a55"),
    "LCQMC": ("LCQMC", "17f9b096f80380fce5ed12a9be8be7784b337daf"),
    "PAWSX": ("PAWSX", "bd129d4230ee0551b5469c566bced8da75abae0a"),
    "STS-B": ("STSB", "e036defee8f190911de6fc825a944b928c8cda53"),
    "AFQMC": ("AFQMC", "b44c3b011063adb25877c13823db83bb193913c4"),
    "QBQTC": ("QBQTC", "790b0510dc52b1553e8c49f3d2afb48c0e5c48b7"),
}
#: embedkit split -> the hub's split name
SPLIT_NAMES = {"valid": "validation", "dev": "validation"}
LANGUAGES = ["cmn-Hans"]
_INVALID = set('<>:"|?*\\/\0')


def mteb_task_name(task: str) -> str:
    """The C-MTEB name of an embedkit task (``STS-B`` -> ``STSB``); other names unchanged."""
    return CMTEB_TASKS.get(task, (task, ""))[0]


def mteb_split_name(split: str) -> str:
    """The hub's name of an embedkit split (``valid`` -> ``validation``)."""
    return SPLIT_NAMES.get(split, split)


def dataset_revision(task: str, data: Mapping[str, Any] | None = None) -> str:
    """C-MTEB's dataset revision; else the task spec's hub revision; else ``sha256:<hex>`` of the
    data the record scored (its first split's checksum).

    >>> dataset_revision("ATEC")[:8], dataset_revision("mine", {"test": {"sha256": "ab"}})
    ('0f319b11', 'sha256:ab')
    """
    if task in CMTEB_TASKS:
        return CMTEB_TASKS[task][1]
    try:
        spec = get_task(task)
        if spec.hub is not None and spec.hub.revision:
            return str(spec.hub.revision)
    except Exception:  # noqa: BLE001 - a user's task that is not registered here
        pass
    shas = [d.get("sha256") for s, d in (data or {}).items() if s != "fit" and isinstance(d, dict)]
    return f"sha256:{shas[0]}" if shas and shas[0] else "unknown"


def mteb_model_name(model: Mapping[str, Any]) -> tuple[str, str]:
    """``(name, revision)`` for mteb from an encoder's ``describe()``: the hub id of an alias or
    of a hub model (``moka-ai/m3e-small``), else ``embedkit/<folder name>``; the revision is the
    hub commit, else the first 40 hex digits of the weights' sha256.

    >>> mteb_model_name({"name": "m3e-small", "identity": "sha256:" + "ab" * 32})
    ('moka-ai/m3e-small', 'abababababababababababababababababababab')
    >>> mteb_model_name({"name": "/tmp/tiny", "identity": "sha256:0123"})
    ('embedkit/tiny', '0123')
    """
    raw = str(model.get("name") or "model")
    identity = str(model.get("identity") or "")
    if raw in ALIASES:
        name = ALIASES[raw][2]
    elif "/" in raw and not Path(raw).expanduser().exists() and not raw.startswith((".", "/")):
        name = raw
    else:
        name = "embedkit/" + (Path(raw.rstrip("/")).name or "model")
    if identity.startswith("sha256:"):
        revision = identity[len("sha256:"):][:40]
    elif "@" in identity:
        revision = identity.rsplit("@", 1)[1]
    else:
        revision = hashlib.sha256(identity.encode()).hexdigest()[:40]
    return name, revision or "no_revision_available"


def experiment_kwargs(model: Mapping[str, Any], pooling: str, max_length: int | None,
                      post: str | None = None, **extra: Any) -> dict[str, Any]:
    """mteb's ``experiment_kwargs`` for an embedkit configuration: pooling, max length, the
    postprocessor (and whatever identifies it: ``extra``, e.g. ``post_sha256``), plus dtype and
    lowercasing when they are not the defaults.

    >>> experiment_kwargs({"dtype": "float32"}, "cls", 512)
    {'pooling': 'cls', 'max_length': 512}
    """
    kw: dict[str, Any] = {"pooling": str(pooling), "max_length": max_length}
    if post:
        kw["post"] = post
    kw.update({k: v for k, v in extra.items() if v is not None})
    if model.get("dtype") not in (None, "float32"):
        kw["dtype"] = model["dtype"]
    if model.get("lowercase"):
        kw["lowercase"] = True
    return kw


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    s = str(v)
    return "".join("_" if c in _INVALID else c for c in s)


def experiment_name(kwargs: Mapping[str, Any] | None) -> str | None:
    """The folder name mteb gives these ``experiment_kwargs`` (``ModelMeta.experiment_name``:
    sorted ``key_value`` joined by ``__``; over 200 characters, ``exp_<16 hex>``). Values are
    strings, numbers, booleans, None or lists of them."""
    if not kwargs:
        return None
    text = "__".join(f"{k}_{_value(v)}" for k, v in sorted(kwargs.items()))
    if len(text) > 200 or any(c in _INVALID for c in text):
        return "exp_" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return text


def result_folder(root: str | os.PathLike, name: str, revision: str,
                  kwargs: Mapping[str, Any] | None = None) -> Path:
    """``root/<name with / -> __>/<revision>[/experiments/<experiment>]``, as mteb lays it out.

    >>> result_folder("r", "moka-ai/m3e-small", "abc", {"pooling": "cls"}).as_posix()
    'r/moka-ai__m3e-small/abc/experiments/pooling_cls'
    """
    folder = Path(root) / name.replace("/", "__").replace(" ", "_") / revision
    exp = experiment_name(kwargs)
    return folder / "experiments" / exp if exp else folder


def model_meta_json(name: str, revision: str, *, kwargs: Mapping[str, Any] | None = None,
                    max_tokens: int | None = None, embed_dim: int | None = None
                    ) -> dict[str, Any]:
    """``model_meta.json`` as ``ModelMeta.to_dict()`` writes it (mteb 2.26 fields)."""
    return {
        "loader_kwargs": {}, "name": name, "revision": revision, "release_date": None,
        "languages": list(LANGUAGES), "n_parameters": None, "n_active_parameters_override": None,
        "n_embedding_parameters": None, "memory_usage_mb": None, "max_tokens": max_tokens,
        "embed_dim": embed_dim, "license": None, "open_weights": None,
        "public_training_code": None, "public_training_data": None, "framework": [],
        "reference": None, "similarity_fn_name": "cosine", "use_instructions": False,
        "training_datasets": None, "adapted_from": None, "superseded_by": None,
        "modalities": ["text"], "model_type": ["dense"], "citation": None, "contacts": None,
        "experiment_kwargs": dict(kwargs) if kwargs else None, "output_dtypes": None,
        "extra_requirements_groups": None, "loader": None, "is_cross_encoder": False,
    }


def _r6(x: Any) -> Any:
    return round(float(x), 6) if isinstance(x, float) and x == x else x


def split_scores(scores: Mapping[str, Any]) -> dict[str, Any]:
    """mteb's STS score entry from embedkit's ``{"spearman", "pearson"}`` of one split.

    >>> split_scores({"spearman": 0.5, "pearson": 0.25, "n_pairs": 3})["main_score"]
    0.5
    """
    sp, pe = _r6(scores["spearman"]), _r6(scores["pearson"])
    return {"pearson": pe, "spearman": sp, "cosine_pearson": pe, "cosine_spearman": sp,
            "main_score": sp, "hf_subset": "default", "languages": list(LANGUAGES),
            "mteb_version": MTEB_SCHEMA_VERSION}


def task_result_json(task: str, by_split: Mapping[str, Mapping[str, Any]], *,
                     data: Mapping[str, Any] | None = None,
                     evaluation_time: float | None = None, date: float | None = None
                     ) -> dict[str, Any]:
    """One ``TaskResult`` (the key order of ``TaskResult.to_disk``) from embedkit's per-split
    scores of ``task``.

    >>> r = task_result_json("STS-B", {"test": {"spearman": 0.7, "pearson": 0.6}})
    >>> r["task_name"], list(r["scores"]), r["scores"]["test"][0]["cosine_spearman"]
    ('STSB', ['test'], 0.7)
    """
    scores = {mteb_split_name(s): [split_scores(v)] for s, v in by_split.items()
              if isinstance(v, Mapping) and "spearman" in v and s not in ("avg", "w-avg")}
    return {"dataset_revision": dataset_revision(task, data), "task_name": mteb_task_name(task),
            "mteb_version": MTEB_SCHEMA_VERSION, "scores": scores,
            "evaluation_time": evaluation_time, "kg_co2_emissions": None, "date": date,
            "evaluation_phases": None}


def _row_extra(record: Mapping[str, Any], post: str | None) -> dict[str, Any]:
    """What identifies a bench row's postprocessor beyond its spec: what a learning chain was
    fitted on, and the sha256 of the ``file:`` maps it reads."""
    if not post:
        return {}
    settings = record.get("settings") or {}
    extra: dict[str, Any] = {}
    if settings.get("fit_on"):
        extra["fit_on"] = settings["fit_on"]
    files = [p for p in (settings.get("post_files") or {}) if f"file:{p}" in post]
    shas = [sha256_file(p) for p in files if Path(p).is_file()]
    if shas:
        extra["post_sha256"] = shas[0] if len(shas) == 1 else shas
    return extra


def _embedkit_settings(record: Mapping[str, Any], task: str, row: str) -> dict[str, Any]:
    settings = record.get("settings") or {}
    data = (record.get("data") or {}).get(task) or {}
    return {"kind": record.get("kind"), "row": row, "protocol": settings.get("protocol"),
            "embedkit": record.get("embedkit"), "command": record.get("command"),
            "model": record.get("model"),
            "data": {s: {k: d.get(k) for k in ("source", "sha256", "n_pairs", "skipped")}
                     for s, d in data.items() if s != "fit" and isinstance(d, Mapping)},
            "settings": {k: v for k, v in settings.items() if k not in ("task_specs",)}}


def write_mteb_results(record: Mapping[str, Any], out_dir: str | os.PathLike, *,
                       rows: list[str] | None = None) -> list[Path]:
    """Write every (row, task) of a bench record as mteb ``TaskResult`` files under ``out_dir``
    (see the module docstring); returns the task files written. ``rows`` picks rows by label
    (default: all).

    >>> write_mteb_results({"kind": "sweep"}, "out")
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: write_mteb_results takes a bench record (with 'results' per row and 'model'), not kind 'sweep'
    """
    if record.get("kind") != "bench" or not record.get("model"):
        raise ConfigError("write_mteb_results takes a bench record (with 'results' per row and "
                          f"'model'), not kind {record.get('kind')!r}", param="record")
    model = record["model"]
    name, revision = mteb_model_name(model)
    settings = record.get("settings") or {}
    lengths = settings.get("max_length") or {}
    written: list[Path] = []
    for label, row in record["results"].items():
        if rows is not None and label not in rows:
            continue
        for task in (t for t in row if isinstance(row[t], Mapping) and t != "avg"):
            max_len = lengths.get(task) if isinstance(lengths, Mapping) else lengths
            kw = experiment_kwargs(model, row.get("pooling") or label, max_len, row.get("post"),
                                   **_row_extra(record, row.get("post")))
            folder = result_folder(out_dir, name, revision, kw)
            folder.mkdir(parents=True, exist_ok=True)
            data = (record.get("data") or {}).get(task)
            result = task_result_json(task, row[task], data=data)
            path = folder / f"{result['task_name']}.json"
            atomic_write_text(path, json.dumps(result, indent=2))
            meta = model_meta_json(name, revision, kwargs=kw, max_tokens=max_len,
                                   embed_dim=model.get("hidden_size"))
            atomic_write_text(folder / "model_meta.json", json.dumps(meta, indent=4))
            _merge_run_settings(folder / "run_settings.jsonl", result,
                                _embedkit_settings(record, task, label))
            written.append(path)
    return written


def _merge_run_settings(path: Path, result: Mapping[str, Any],
                        embedkit: Mapping[str, Any]) -> None:
    """One line per task in ``run_settings.jsonl`` (mteb's keys plus ``embedkit``); a task
    written again replaces its line."""
    lines = [line for line, e in _run_settings_lines(path)
             if e is not None and e.get("task") != result["task_name"]]
    entry = {"task": result["task_name"], "splits": sorted(result["scores"]),
             "version": {"embedkit": embedkit.get("embedkit")}, "encode_kwargs": {},
             "subsets": ["default"], "embedkit": embedkit}
    lines.append(json.dumps(entry, ensure_ascii=False, default=str))
    atomic_write_text(path, "\n".join(lines) + "\n")


def annotate_run_settings(folder: str | os.PathLike, task_name: str,
                          embedkit: Mapping[str, Any]) -> None:
    """Add an ``embedkit`` entry (protocol, local data checksums ...) to the lines of
    ``task_name`` in ``folder/run_settings.jsonl`` (mteb's own lines are kept; a line is added
    when the task has none).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> annotate_run_settings(d, "STSB", {"protocol": "mteb"})
    >>> read_run_settings(d)["STSB"]["embedkit"]
    {'protocol': 'mteb'}
    """
    path = Path(folder) / "run_settings.jsonl"
    lines, found = [], False
    for line, entry in _run_settings_lines(path):
        if entry is not None and entry.get("task") == task_name:
            entry["embedkit"], found = dict(embedkit), True
            line = json.dumps(entry, ensure_ascii=False, default=str)
        lines.append(line)
    if not found:
        lines.append(json.dumps({"task": task_name, "embedkit": dict(embedkit)},
                                ensure_ascii=False, default=str))
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_run_settings(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{mteb task name: entry}`` from a folder's ``run_settings.jsonl`` (empty if none)."""
    return {str(e["task"]): e for _, e in _run_settings_lines(Path(folder) / "run_settings.jsonl")
            if e is not None and e.get("task")}


def _run_settings_lines(path: Path) -> list[tuple[str, dict[str, Any] | None]]:
    """Each line of a ``run_settings.jsonl`` with its JSON object (None where the line is not
    one); no lines when the file is missing."""
    if not path.is_file():
        return []
    out: list[tuple[str, dict[str, Any] | None]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        out.append((line, entry if isinstance(entry, dict) else None))
    return out
