"""Results in mteb's format: per task a ``TaskResult`` JSON file, in mteb's cache layout.

``write_mteb_results(record, P)`` turns an ``embedkit bench`` record into what
``mteb.evaluate(model, tasks, cache=mteb.ResultCache(P))`` would have written for the same
configurations (mteb 2.x, schema of :data:`MTEB_SCHEMA_VERSION`)::

    P/results/<org>__<model>[_(<settings>)]/<revision>/<Task>.json
    P/results/<org>__<model>[_(<settings>)]/<revision>/model_meta.json
    P/results/<org>__<model>[_(<settings>)]/<revision>/run_settings.jsonl

so that mteb's defaults read every row: ``mteb.ResultCache(cache_path=P).load_results()`` (no
experiment folders: with its default ``load_experiments="match_kwargs"`` mteb skips them), and
``to_dataframe()`` shows each configuration in its own column.

**Model names.** A configuration is named as mteb names a variant of a model
(``openai/text-embedding-3-small (embed_dim=512)`` in mteb's registry): the model as it is by
itself (its default pooling, its own max length, no postprocessor, float32) keeps the base
name (``moka-ai/m3e-small``); any other configuration is ``<base> (<setting>=<value>, ...)``
with the settings that differ (``moka-ai/m3e-small (pooling=cls, post=whiten_k=256,
fit_on=task)``; characters that cannot be in a file name become ``_``, a file map adds its
sha256's first 12 digits, a list over 150 characters becomes ``exp_<16 hex>``), its
``model_meta.json`` has ``adapted_from`` the base name and every setting in ``loader_kwargs``.
mteb's ``experiment_kwargs`` are not used: ``to_dataframe()`` averages the experiments of one
model name into one cell, whatever their poolings. The revision is the base model's.

**Task names and dataset revisions.** C-MTEB's task name and dataset revision (``STS-B`` is
``STSB``, ``valid`` is ``validation``) only for C-MTEB's data: every split scored has the
sha256 of the published file (the built-in task specs' ``sha256``, the shared data folder's
``SHA256SUMS``), or was read from the hub at mteb's own dataset and revision. Any other data
(a subset, a file of one's own under the task's name, a user's task) is
``<name>-local-<8 hex>`` with revision ``local-sha256-<hex>``: the hex is the sha256 of the one
split's file, or of the ``split:sha256`` lines of several; it can never be taken for mteb's task.
``run_settings.jsonl`` carries, besides mteb's own keys, an ``embedkit`` entry per task:
protocol, data checksums and the record's settings, which :mod:`embedkit.runs.compare`
uses to flag cells that are not comparable.

Scores are embedkit's: ``cosine_spearman`` (= ``main_score``, ``spearman``) and
``cosine_pearson`` (= ``pearson``), cosine in float64 with ties ranked as
:mod:`embedkit.evaluation.metrics` says; mteb computes cosine in float32, so the two differ in
the 5th decimal at most on real tasks (ties among near-equal cosines fall differently). mteb's
Manhattan and Euclidean correlations are not computed, so they are absent.

>>> mteb_task_name("STS-B"), mteb_split_name("valid")
('STSB', 'validation')
>>> model = {"default_pooling": "last-avg", "dtype": "float32"}
>>> variant_name("moka-ai/m3e-small", variant_settings(model, model_settings(
...     model, "last-avg", 512), model_max_length=512))
'moka-ai/m3e-small'
>>> variant_name("moka-ai/m3e-small", variant_settings(model, model_settings(
...     model, "cls", 64, "whiten:k=256"), model_max_length=512))
'moka-ai/m3e-small (pooling=cls, max_length=64, post=whiten_k=256)'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedkit.data.registry import builtin_tasks
from embedkit.encoders.models import ALIASES
from embedkit.errors import ConfigError
from embedkit.io.atomic import atomic_write_text
from embedkit.provenance import sha256_file, sha256_text

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
#: C-MTEB task name -> the hub dataset mteb loads it from (same file)
CMTEB_DATASETS: dict[str, str] = {
    "ATEC": "C-MTEB/ATEC", "BQ": "C-MTEB/BQ", "LCQMC": "C-MTEB/LCQMC", "PAWSX": "mteb/PAWSX",
    "STSB": "mteb/STSB", "AFQMC": "C-MTEB/AFQMC", "QBQTC": "C-MTEB/QBQTC",
}
#: embedkit split -> the hub's split name
SPLIT_NAMES = {"valid": "validation", "dev": "validation"}
LANGUAGES = ["cmn-Hans"]
#: what marks a task name whose data is not the official one
LOCAL_MARK = "-local"
_INVALID = set('<>:"|?*\\/\0')
_MAX_SETTINGS = 150  # characters of a name's "(...)" before it is hashed


def mteb_task_name(task: str) -> str:
    """The C-MTEB name of an embedkit task (``STS-B`` -> ``STSB``); other names unchanged."""
    return CMTEB_TASKS.get(task, (task, ""))[0]


def mteb_split_name(split: str) -> str:
    """The hub's name of an embedkit split (``valid`` -> ``validation``)."""
    return SPLIT_NAMES.get(split, split)


def official_task_name(name: str) -> str:
    """The task a local task name stands for (``STSB-local-1a2b3c4d`` -> ``STSB``).

    >>> official_task_name("STSB-local-1a2b3c4d"), official_task_name("STSB")
    ('STSB', 'STSB')
    """
    head, mark, tail = name.rpartition(LOCAL_MARK)
    if mark and head and (not tail or (tail.startswith("-") and len(tail) == 9)):
        return head
    return name


def _official_sha256(mteb_name: str) -> dict[str, str]:
    """The published files' sha256 by embedkit split for a C-MTEB task (from the built-in task
    spec whose C-MTEB name it is; none for a task embedkit has no spec for)."""
    specs = builtin_tasks()
    for task, (name, _) in CMTEB_TASKS.items():
        if name == mteb_name and task in specs:
            return dict(specs[task].sha256)
    return {}


def is_official_data(mteb_name: str, data: Mapping[str, Mapping[str, Any]]) -> bool:
    """True when every split of ``data`` (``{split: {"sha256", "source"}}``, embedkit split
    names) is the data of C-MTEB's task ``mteb_name``: the published file's sha256, or read
    from the hub at mteb's dataset and revision.

    >>> sha = builtin_tasks()["STS-B"].sha256["test"]
    >>> is_official_data("STSB", {"test": {"sha256": sha}}), is_official_data("STSB", {})
    (True, False)
    >>> is_official_data("STSB", {"test": {"sha256": "0" * 64}})
    False
    """
    revision = next((r for n, r in CMTEB_TASKS.values() if n == mteb_name), None)
    if revision is None or not data:
        return False
    official = _official_sha256(mteb_name)
    hub = f"hub:{CMTEB_DATASETS.get(mteb_name)}@{revision}/"
    for split, d in data.items():
        sha = str(d.get("sha256") or "").lower()
        from_hub = str(d.get("source") or "").startswith(hub)
        if not from_hub and (not sha or official.get(_embedkit_split(split)) != sha):
            return False
    return True


def _embedkit_split(split: str) -> str:
    return {"validation": "valid", "dev": "valid"}.get(split, split)


def local_revision(data: Mapping[str, Mapping[str, Any]]) -> str:
    """``local-sha256-<hex>``: the one split's sha256, or the sha256 of the ``split:sha256``
    lines (sorted) of several; ``local-unknown`` when a checksum is missing.

    >>> local_revision({"test": {"sha256": "ab"}})
    'local-sha256-ab'
    """
    shas = {s: d.get("sha256") for s, d in data.items()}
    if not shas or not all(shas.values()):
        return "local-unknown"
    if len(shas) == 1:
        return f"local-sha256-{next(iter(shas.values()))}"
    return "local-sha256-" + sha256_text("\n".join(f"{s}:{v}" for s, v in sorted(shas.items())))


def dataset_identity(mteb_name: str, data: Mapping[str, Mapping[str, Any]] | None
                     ) -> tuple[str, str]:
    """``(task name, dataset revision)`` a TaskResult of ``data`` carries (see the module
    docstring): C-MTEB's for its own data, else ``<name>-local-<8 hex>`` and a local revision.

    >>> dataset_identity("STSB", {"test": {"sha256": "c" * 64}})
    ('STSB-local-cccccccc', 'local-sha256-cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc')
    """
    data = {s: d for s, d in (data or {}).items() if s != "fit" and isinstance(d, Mapping)}
    if is_official_data(mteb_name, data):
        return mteb_name, next(r for n, r in CMTEB_TASKS.values() if n == mteb_name)
    revision = local_revision(data)
    digest = revision.removeprefix("local-sha256-")
    suffix = f"-{digest[:8]}" if revision.startswith("local-sha256-") else ""
    return f"{mteb_name}{LOCAL_MARK}{suffix}", revision


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
        revision = sha256_text(identity)[:40]
    return name, revision or "no_revision_available"


def model_settings(model: Mapping[str, Any], pooling: str, max_length: int | None,
                   post: str | None = None, **extra: Any) -> dict[str, Any]:
    """Every setting of a configuration that changes its vectors: pooling, max length, the
    postprocessor (and what identifies it: ``extra``, e.g. ``fit_on``, ``post_sha256``), plus
    the model's dtype, casing, prompt, backend and quantisation when not the defaults.

    >>> model_settings({"dtype": "float32", "backend": "torch"}, "cls", 512)
    {'pooling': 'cls', 'max_length': 512}
    """
    kw: dict[str, Any] = {"pooling": str(pooling), "max_length": max_length}
    if post:
        kw["post"] = post
        kw.update({k: v for k, v in extra.items() if v is not None})
    defaults = {"dtype": "float32", "lowercase": False, "prompt": "", "backend": "torch",
                "quantize": "none"}
    for key, default in defaults.items():
        if model.get(key) not in (None, default):
            kw[key] = model[key]
    return kw


def variant_settings(model: Mapping[str, Any], settings: Mapping[str, Any], *,
                     model_max_length: int | None = None, default_pooling: str | None = None
                     ) -> dict[str, Any]:
    """The settings that differ from the model as it is by itself: the pooling unless it is
    ``default_pooling`` (default: the model's ``default_pooling``), the max length unless it
    is ``model_max_length``, and every other setting (an unknown default counts as
    different)."""
    out = dict(settings)
    if out.get("pooling") == (default_pooling or model.get("default_pooling")):
        out.pop("pooling")
    if model_max_length is not None and out.get("max_length") == model_max_length:
        out.pop("max_length")
    return out


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    s = str(v)
    return "".join("_" if c in _INVALID else c for c in s)


def variant_name(base: str, variant: Mapping[str, Any] | None) -> str:
    """``base`` for the model by itself, else ``base (key=value, ...)`` (mteb's naming of a
    model's variants); a ``post_sha256`` shows its first 12 digits, a list over 150 characters
    becomes ``exp_<16 hex>`` of the settings."""
    if not variant:
        return base
    shown = {k: (str(v)[:12] if k == "post_sha256" and isinstance(v, str) else v)
             for k, v in variant.items()}
    text = ", ".join(f"{k}={_value(v)}" for k, v in shown.items())
    if len(text) > _MAX_SETTINGS:
        text = "exp_" + sha256_text(json.dumps(variant, sort_keys=True, default=str))[:16]
    return f"{base} ({text})"


def base_model_name(name: str) -> str:
    """The base model of a variant name (``a/b (pooling=cls)`` -> ``a/b``)."""
    return name.split(" (", 1)[0]


def result_folder(root: str | os.PathLike, name: str, revision: str) -> Path:
    """``root/<name, / -> __ and space -> _>/<revision>``, as ``ModelMeta.model_name_as_path``
    and ``ResultCache`` lay it out.

    >>> result_folder("r", "moka-ai/m3e-small (pooling=cls)", "abc").as_posix()
    'r/moka-ai__m3e-small_(pooling=cls)/abc'
    """
    return Path(root) / name.replace("/", "__").replace(" ", "_") / revision


def result_root(cache_path: str | os.PathLike) -> Path:
    """Where ``mteb.ResultCache(cache_path)`` keeps model folders (``cache_path/results``).

    >>> result_root("c").as_posix()
    'c/results'
    """
    return Path(cache_path) / "results"


def model_meta_json(name: str, revision: str, *, settings: Mapping[str, Any] | None = None,
                    max_tokens: int | None = None, embed_dim: int | None = None
                    ) -> dict[str, Any]:
    """``model_meta.json`` as ``ModelMeta.to_dict()`` writes it (mteb 2.26 fields): the
    settings in ``loader_kwargs``, a variant ``adapted_from`` its base model."""
    base = base_model_name(name)
    return {
        "loader_kwargs": dict(settings or {}), "name": name, "revision": revision,
        "release_date": None, "languages": list(LANGUAGES), "n_parameters": None,
        "n_active_parameters_override": None, "n_embedding_parameters": None,
        "memory_usage_mb": None, "max_tokens": max_tokens, "embed_dim": embed_dim,
        "license": None, "open_weights": None, "public_training_code": None,
        "public_training_data": None, "framework": [], "reference": None,
        "similarity_fn_name": "cosine", "use_instructions": False, "training_datasets": None,
        "adapted_from": base if base != name else None, "superseded_by": None,
        "modalities": ["text"], "model_type": ["dense"], "citation": None, "contacts": None,
        "experiment_kwargs": None, "output_dtypes": None, "extra_requirements_groups": None,
        "loader": None, "is_cross_encoder": False,
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
    scores of ``task``; ``data`` (``{split: {"source", "sha256", ...}}``, the record's) decides
    the task name and dataset revision (:func:`dataset_identity`, of the splits scored).

    >>> r = task_result_json("STS-B", {"test": {"spearman": 0.7, "pearson": 0.6}})
    >>> r["task_name"], r["dataset_revision"], list(r["scores"])
    ('STSB-local', 'local-unknown', ['test'])
    >>> r["scores"]["test"][0]["cosine_spearman"]
    0.7
    """
    scored = [s for s, v in by_split.items()
              if isinstance(v, Mapping) and "spearman" in v and s not in ("avg", "w-avg")]
    scores = {mteb_split_name(s): [split_scores(by_split[s])] for s in scored}
    name, revision = dataset_identity(mteb_task_name(task),
                                      {s: (data or {}).get(s) or {} for s in scored})
    return {"dataset_revision": revision, "task_name": name,
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


def write_mteb_results(record: Mapping[str, Any], cache_path: str | os.PathLike, *,
                       rows: list[str] | None = None) -> list[Path]:
    """Write every (row, task) of a bench record as mteb ``TaskResult`` files under
    ``cache_path/results`` (mteb's ``ResultCache(cache_path)`` layout; see the module
    docstring); returns the task files written. ``rows`` picks rows by label (default: all).

    >>> write_mteb_results({"kind": "sweep"}, "out")
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: write_mteb_results takes a bench record (with 'results' per row and 'model'), not kind 'sweep'
    """
    if record.get("kind") != "bench" or not record.get("model"):
        raise ConfigError("write_mteb_results takes a bench record (with 'results' per row and "
                          f"'model'), not kind {record.get('kind')!r}", param="record")
    model = record["model"]
    base, revision = mteb_model_name(model)
    settings = record.get("settings") or {}
    lengths = settings.get("max_length") or {}
    written: list[Path] = []
    for label, row in record["results"].items():
        if rows is not None and label not in rows:
            continue
        for task in (t for t in row if isinstance(row[t], Mapping) and t != "avg"):
            max_len = lengths.get(task) if isinstance(lengths, Mapping) else lengths
            kw = model_settings(model, row.get("pooling") or label, max_len, row.get("post"),
                                **_row_extra(record, row.get("post")))
            name = variant_name(base, variant_settings(
                model, kw, model_max_length=settings.get("model_max_length")))
            folder = result_folder(result_root(cache_path), name, revision)
            folder.mkdir(parents=True, exist_ok=True)
            result = task_result_json(task, row[task], data=(record.get("data") or {}).get(task))
            path = folder / f"{result['task_name']}.json"
            atomic_write_text(path, json.dumps(result, indent=2))
            meta = model_meta_json(name, revision, settings=kw, max_tokens=max_len,
                                   embed_dim=None if row.get("post") else model.get("hidden_size"))
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
