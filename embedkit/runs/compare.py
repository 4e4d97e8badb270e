"""Many models side by side: embedkit records and mteb result folders, one models x tasks table.

:func:`compare` reads ``embedkit bench`` records (one entry per row), ``embedkit sweep``
records (per pooling: raw, classic whitening, the valid-selected whitening) and mteb result
folders (written by ``mteb.evaluate`` or by
:func:`~embedkit.integrations.mteb_results.write_mteb_results`; one entry per model, revision
and experiment). Every cell keeps the protocol, settings (how the encoder ran: backend,
precision, prompt, revision), data checksum and file that produced it. A cell is **flagged**
when its protocol or its data differ from the column's reference (the most common protocol
and data of that task): such scores are shown, marked and explained, never ranked or averaged
with the comparable ones. ``cmteb`` (embedkit's C-MTEB protocol) and ``mteb`` (scored by
mteb's evaluator) count as one protocol; their data must still match. Only entries with a
comparable score on every task are ranked.

Scores are checked as they are read: a score that is not a number, not finite, or outside
[-1, 1] (files keep correlations as fractions; x 100 is only how they are shown) is a
:class:`~embedkit.errors.DataError` naming the file; an input without a score on the split is
left out by name (a log warning, and :attr:`Comparison.skipped`).

The tables, Markdown and HTML pages and the PNG heatmap are drawn by
:mod:`embedkit.reports.compare`.

>>> rec = {"kind": "bench", "model": {"name": "m"}, "settings": {"protocol": "cmteb",
...        "max_length": {"T": 512}}, "data": {"T": {"test": {"sha256": "ab"}}},
...        "results": {"cls": {"T": {"test": {"spearman": 0.5}}, "pooling": "cls"}}}
>>> other = {**rec, "settings": {"protocol": "whitening", "max_length": {"T": 64}}}
>>> cmp = compare_records([("a.json", rec), ("b.json", rec), ("c.json", other)])
>>> [e.label for e in cmp.entries], cmp.flagged_cells()
(['m · cls', 'm · cls [b.json]', 'm · cls [c.json]'], [('m · cls [c.json]', 'T', 'protocol whitening (column: cmteb)')])
>>> cmp.ranks()
{'m · cls': 1, 'm · cls [b.json]': 2}
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from embedkit.aliases import StrPath
from embedkit.data import canonical_split
from embedkit.errors import ConfigError, DataError, MissingFileError
from embedkit.integrations.mteb_results import (
    CMTEB_TASKS,
    base_model_name,
    mteb_model_name,
    official_task_name,
    read_run_settings,
)
from embedkit.runs.choices import METRICS
from embedkit.runs.record import BenchRecord, SweepRecord, run_revision

logger = logging.getLogger(__name__)

#: protocols that compute the same thing (C-MTEB's splits and max length)
_PROTOCOL_FAMILY = {"mteb": "cmteb"}
#: what a stored score may be: a correlation as a fraction (records and mteb files alike)
_SCORE_RANGE = (-1.0, 1.0)
#: how an encoder ran, kept in every cell's settings (shown by :func:`run_description`)
_RUN_KEYS = ("backend", "quantize", "dtype", "prompt", "query_prompt", "revision")
_FROM_MTEB = {name: task for task, (name, _) in CMTEB_TASKS.items()}


@dataclass
class Cell:
    """One score with what produced it."""

    score: float
    protocol: str
    data: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    evaluator: str = "embedkit"
    source: str = ""
    flags: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str | None]:
        """What must match for two cells to be comparable: protocol family and data."""
        return _PROTOCOL_FAMILY.get(self.protocol, self.protocol), self.data


@dataclass
class Entry:
    """One model configuration (a row of the table): its cells by task."""

    label: str
    source: str
    kind: str
    cells: dict[str, Cell] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    model: str = ""  # the base model as mteb names it (moka-ai/m3e-small)
    speed: Any = None  # the record's speed block (SpeedBlock); None for older records and mteb


@dataclass(frozen=True)
class Average:
    """An entry's mean: its ``value`` over ``tasks`` of the comparison's ``of`` tasks;
    ``flagged`` when it is over flagged cells (the entry has no comparable one)."""

    value: float
    tasks: tuple[str, ...]
    of: int
    flagged: bool

    @property
    def complete(self) -> bool:
        return len(self.tasks) == self.of


@dataclass
class Comparison:
    """Entries x tasks for one metric and split, with flags set (:func:`_flag_cells`);
    ``skipped``: ``(input, why)`` for each input that gave no score."""

    metric: str
    split: str
    tasks: list[str]
    entries: list[Entry]
    reference: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def average_of(self, entry: Entry) -> Average:
        """The mean over the entry's comparable cells: a flagged cell is never averaged with
        them. An entry whose every cell is flagged: the mean of those, marked ``flagged``."""
        cells = [(t, entry.cells[t]) for t in self.tasks if t in entry.cells]
        comparable = [(t, c) for t, c in cells if not c.flags]
        used = comparable or cells
        vals = [c.score for _, c in used]
        return Average(sum(vals) / len(vals) if vals else math.nan, tuple(t for t, _ in used),
                       len(self.tasks), bool(used) and not comparable)

    def average(self, entry: Entry) -> float:
        """:meth:`average_of`'s value (NaN scores make it NaN)."""
        return self.average_of(entry).value

    def complete(self, entry: Entry) -> bool:
        return all(t in entry.cells for t in self.tasks)

    def rankable(self, entry: Entry) -> bool:
        """A comparable score on every task (none missing, none flagged, none undefined)."""
        avg = self.average_of(entry)
        return avg.complete and not avg.flagged and not math.isnan(avg.value)

    def ranks(self) -> dict[str, int]:
        """Rank by average among the :meth:`rankable` entries (1 = best)."""
        scored = [(self.average(e), e.label) for e in self.entries if self.rankable(e)]
        return {label: i + 1 for i, (_, label) in enumerate(sorted(scored, key=lambda x: -x[0]))}

    def ordered(self) -> list[Entry]:
        """Entries by rank, then the unranked ones in input order."""
        ranks = self.ranks()
        return sorted(self.entries, key=lambda e: ranks.get(e.label, len(self.entries) + 1))

    def flagged_cells(self) -> list[tuple[str, str, str]]:
        """``(entry, task, reason)`` for every flagged cell."""
        return [(e.label, t, f) for e in self.entries for t, c in e.cells.items()
                for f in c.flags]


# -- reading ------------------------------------------------------------------------------------

def _canonical_task(name: str) -> str:
    """embedkit's task name for a C-MTEB one (``STSB`` -> ``STS-B``), local data's included
    (``STSB-local-1a2b3c4d`` -> ``STS-B``: the cell's data checksum tells them apart).

    >>> _canonical_task("STSB"), _canonical_task("ATEC"), _canonical_task("mine-local-0123abcd")
    ('STS-B', 'ATEC', 'mine')
    """
    name = official_task_name(name)
    return _FROM_MTEB.get(name, name)


def _shown(value: Any) -> str:
    """A stored value as JSON, one line, at most 40 characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _check_score(value: Any, path: str, where: str, *, undefined: bool = False) -> float:
    """``value`` as a score, or a :class:`DataError` naming ``path`` and the key ``where``: a
    number (not a string, not a boolean), finite, within :data:`_SCORE_RANGE`. ``undefined``:
    the record declares this score undefined (constant labels), so NaN or null are allowed
    (and read as NaN).

    >>> _check_score(0.5, "a.json", "x")
    0.5
    >>> _check_score(1e300, "a.json", "results.cls.T.test.spearman")
    Traceback (most recent call last):
    ...
    embedkit.errors.DataError: a.json: results.cls.T.test.spearman is 1e+300: impossible for a correlation (files keep it as a fraction in [-1, 1], x 100 only when shown); fix or regenerate the file
    """
    lo, hi = _SCORE_RANGE
    if undefined and (value is None or (isinstance(value, float) and math.isnan(value))):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where} is {_shown(value)}, not a number; a score must be a JSON "
                        "number: fix or regenerate the file", path=path, param="inputs")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise DataError(f"{where} is {_shown(value)}: impossible for a correlation (files keep "
                        f"it as a fraction in [{lo:g}, {hi:g}], x 100 only when shown); fix or "
                        "regenerate the file", path=path, param="inputs")
    return float(value)


def _mapping(value: Any, path: str, where: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object (None: an empty one), else a :class:`DataError`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DataError(f"{where} is {_shown(value)}, not a JSON object; fix or regenerate the "
                        "file", path=path, param="inputs")
    return value


def run_settings(settings: Mapping[str, Any], model: Mapping[str, Any] | None) -> dict[str, Any]:
    """How a record's encoder ran, for its cells: backend, quantisation, dtype and prompt as
    the record states them (records before backends existed ran torch), and the revision
    (:func:`~embedkit.runs.record.run_revision`). Empty values are left out.

    >>> run_settings({"backend": "onnx", "quantize": "int8", "prompt": ""}, None)
    {'backend': 'onnx', 'quantize': 'int8'}
    """
    out = {k: settings.get(k) for k in _RUN_KEYS if k != "revision"}
    out["backend"] = out["backend"] or "torch"
    out["revision"] = run_revision(settings, model)
    return {k: v for k, v in out.items() if v not in (None, "", "none")}


def _bench_entries(path: str, rec: BenchRecord, metric: str, split: str) -> list[Entry]:
    settings = _mapping(rec.get("settings"), path, "settings")
    model = _mapping(rec.get("model"), path, "model")
    protocol = str(settings.get("protocol") or "unknown")
    lengths = settings.get("max_length") or {}
    run = run_settings(settings, model)
    undefined = {(u.get("row"), u.get("task"), u.get("split")) for u in rec.get("undefined") or ()
                 if isinstance(u, Mapping)}
    out = []
    base = mteb_model_name(model)[0]
    for label, row in _mapping(rec.get("results"), path, "results").items():
        row = _mapping(row, path, f"results.{label}")
        entry = Entry(f"{model.get('name', '?')} · {label}", path, "bench", model=base,
                      speed=rec.get("speed"))
        for task, by_split in row.items():
            if not isinstance(by_split, Mapping) or not isinstance(by_split.get(split), Mapping):
                continue
            s = by_split[split]
            if metric not in s:
                continue
            score = _check_score(s[metric], path, f"results.{label}.{task}.{split}.{metric}",
                                undefined=(label, task, split) in undefined)
            data = ((rec.get("data") or {}).get(task) or {}).get(split) or {}
            cfg = {"split": split, "max_length": lengths.get(task) if isinstance(
                lengths, Mapping) else lengths, "pooling": row.get("pooling")}
            if row.get("post"):
                cfg.update(post=row["post"], fit_on=settings.get("fit_on"))
            entry.cells[task] = Cell(score, protocol, data.get("sha256"), {**cfg, **run},
                                     "embedkit", path)
        out.append(entry)
    return out


def _sweep_entries(path: str, rec: SweepRecord, metric: str, split: str) -> list[Entry]:
    settings = _mapping(rec.get("settings"), path, "settings")
    if metric != "spearman":
        return []  # a sweep records Spearman only
    which = {settings.get("report_on", "test"): "report", settings.get("select_on", "valid"):
             "select"}.get(split)
    if which is None:
        return []
    model = _mapping(rec.get("model"), path, "model")
    protocol = str(settings.get("protocol") or "unknown")
    lengths = settings.get("max_length") or {}
    run = run_settings(settings, model)
    entries: dict[str, Entry] = {}
    kinds = {"raw": "", "classic": " + whiten (classic)",
             "best": f" + whiten (best on {settings.get('select_on', 'valid')})"}
    for task, by_pool in _mapping(rec.get("results"), path, "results").items():
        data = ((rec.get("data") or {}).get(task) or {}).get(split) or {}
        for pooling, res in _mapping(by_pool, path, f"results.{task}").items():
            for kind, suffix in kinds.items():
                if not isinstance(res.get(kind), Mapping) or which not in res[kind]:
                    continue
                score = _check_score(res[kind][which], path,
                                    f"results.{task}.{pooling}.{kind}.{which}")
                label = f"{model.get('name', '?')} · {pooling}{suffix}"
                entry = entries.setdefault(label, Entry(
                    label, path, "sweep", model=mteb_model_name(model)[0],
                    speed=rec.get("speed")))
                cfg = {"split": split, "max_length": lengths.get(task), "pooling": pooling,
                       "post": res[kind].get("post"),
                       "fit_on": settings.get("fit_on") if kind != "raw" else None, **run}
                entry.cells[task] = Cell(score, protocol, data.get("sha256"),
                                         {k: v for k, v in cfg.items() if v is not None},
                                         "embedkit", path)
    return list(entries.values())


#: the SimCSE report's whitening rows when its record does not name them (records before
#: ``settings.whiten``)
_SIMCSE_WHITEN = ("whiten:beta=1,gamma=1,k=all", "whiten:beta=1,gamma=1,k=256")


def is_simcse_report(rec: Mapping[str, Any]) -> bool:
    """A SimCSE report's record: kind ``simcse-report``, or (records written before it had a
    kind) no kind and an ``unsupervised`` list.

    >>> is_simcse_report({"kind": "simcse-report"}), is_simcse_report({"unsupervised": []})
    (True, True)
    """
    return rec.get("kind") == "simcse-report" or (
        rec.get("kind") is None and isinstance(rec.get("unsupervised"), list))


def _simcse_entries(path: str, rec: Mapping[str, Any], metric: str, split: str) -> list[Entry]:
    """A SimCSE report (Spearman on the test split, whitening protocol): per unsupervised row
    the base model raw, whitened (two chains, fitted on the task) and after SimCSE on the task;
    each supervised run on its task. The report keeps no checksum of the test files: its cells'
    data is unknown, so they are flagged against a column that has one. A score left null
    (not run) is absent; any other value is checked (:func:`_check_score`)."""
    if metric != "spearman" or split != "test":
        return []  # the report scores Spearman on test only
    settings = _mapping(rec.get("settings"), path, "settings")
    model = _mapping(rec.get("model"), path, "model")
    name = model.get("name", "?")
    base = mteb_model_name(model)[0]
    pooling = str(settings.get("pooling") or rec.get("pooling") or "?")
    whiten = tuple(settings.get("whiten") or _SIMCSE_WHITEN)
    run = run_settings(settings, model)
    entries: dict[str, Entry] = {}

    def add(label: str, task: str, score: Any, where: str, **cfg: Any) -> None:
        if score is None:
            return
        value = _check_score(score, path, where)
        entry = entries.setdefault(label, Entry(label, path, "simcse", model=base))
        cfg = {"split": split, "pooling": pooling, **{k: v for k, v in cfg.items() if v}, **run}
        entry.cells[task] = Cell(value, "whitening", None, cfg, "embedkit", path)

    for i, r in enumerate(rec.get("unsupervised") or ()):
        task, at = str(r.get("task")), f"unsupervised[{i}]"
        add(f"{name} · {pooling}", task, r.get("raw"), f"{at}.raw")
        for key, chain in zip(("whiten", "whiten256"), whiten, strict=False):
            add(f"{name} · {pooling} + {chain}", task, r.get(key), f"{at}.{key}", post=chain,
                fit_on="task")
        add(f"{name} · {pooling} + SimCSE (unsupervised, on the task)", task, r.get("simcse"),
            f"{at}.simcse", trained=r.get("out_dir"))
    for i, r in enumerate(rec.get("supervised") or ()):
        task = str(r.get("task"))
        add(f"{name} · {pooling} + SimCSE {r.get('run')} ({task} train)", task,
            r.get("simcse"), f"supervised[{i}].simcse", trained=r.get("out_dir"))
    return list(entries.values())


def _record_entries(path: str, rec: Mapping[str, Any], metric: str = "spearman",
                   split: str = "test") -> list[Entry]:
    """The entries of an embedkit record (bench: one per row; sweep: raw, classic and best
    whitening per pooling; SimCSE report: see :func:`_simcse_entries`); other kinds are a
    :class:`ConfigError`, impossible scores a :class:`DataError` (:func:`_check_score`)."""
    kind = rec.get("kind") if isinstance(rec, Mapping) else None
    if kind == "bench":
        entries = _bench_entries(path, cast(BenchRecord, rec), metric, split)
    elif kind == "bench-models":  # several models in one bench: each model's rows
        entries = [e for block in rec.get("models") or ()
                   for e in _bench_entries(path, block, metric, split)]
    elif kind == "sweep":
        entries = _sweep_entries(path, cast(SweepRecord, rec), metric, split)
    elif isinstance(rec, Mapping) and is_simcse_report(rec):
        entries = _simcse_entries(path, rec, metric, split)
    else:
        raise ConfigError(f"{path}: a {kind or 'JSON'} record; compare reads bench, sweep and "
                          "SimCSE report records and mteb result folders", param="inputs")
    plots = [p for p in rec.get("plots") or () if isinstance(p, str)]
    if entries:
        entries[0].plots = plots
    return entries


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not readable JSON ({e})", param="inputs") from None


def _experiment_label(kwargs: Mapping[str, Any] | None) -> str:
    if not kwargs:
        return ""
    kw = dict(kwargs)
    parts = [str(kw.pop("pooling"))] if "pooling" in kw else []
    if kw.get("post"):
        parts.append(f"+ {kw.pop('post')}")
    kw.pop("post_sha256", None)
    parts += [f"{k}={v}" for k, v in sorted(kw.items()) if k != "max_length"]
    return " ".join(parts)


def _mteb_cell(result: Mapping[str, Any], metric: str, split: str, meta: Mapping[str, Any],
               run: Mapping[str, Any] | None, path: Path) -> Cell | None:
    """The cell of one TaskResult file, or None if it lacks the split or the metric."""
    mteb_split = {"valid": "validation"}.get(split, split)
    all_scores = _mapping(result.get("scores"), str(path), "scores")
    key = mteb_split if all_scores.get(mteb_split) else split
    entries = all_scores.get(key)
    if not entries or not isinstance(entries, list):
        return None
    i, scores = next(((i, e) for i, e in enumerate(entries) if isinstance(e, Mapping)
                      and e.get("hf_subset") == "default"), (0, entries[0]))
    scores = _mapping(scores, str(path), f"scores.{key}[{i}]")
    name = f"cosine_{metric}" if f"cosine_{metric}" in scores else metric
    if scores.get(name) is None:
        return None
    value = _check_score(scores[name], str(path), f"scores.{key}[{i}].{name}")
    ek = (run or {}).get("embedkit") or {}
    kwargs = meta.get("experiment_kwargs") or meta.get("loader_kwargs") or {}
    data = (ek.get("data") or {}).get(split, {}).get("sha256") if ek else None
    how = run_settings(ek.get("settings") or {}, ek.get("model")) if ek.get("settings") else {
        "revision": str(meta.get("revision") or "")[:12]}
    cfg = {"split": split, "max_length": kwargs.get("max_length", meta.get("max_tokens")),
           "pooling": kwargs.get("pooling"), "post": kwargs.get("post"),
           "fit_on": kwargs.get("fit_on"), "dataset_revision": result.get("dataset_revision"),
           "mteb_version": result.get("mteb_version"), **how}
    evaluator = "embedkit" if ek.get("kind") == "bench" else "mteb"
    revision = str(result.get("dataset_revision"))
    if not data:  # a local revision carries the data's checksum; C-MTEB's names the hub's data
        data = (revision.removeprefix("local-sha256-") if revision.startswith("local-sha256-")
                else f"hub:{revision}")
    return Cell(value, str(ek.get("protocol") or "mteb"), data,
                {k: v for k, v in cfg.items() if v not in (None, "")}, evaluator, str(path))


def read_mteb_folder(root: StrPath, metric: str = "spearman", split: str = "test",
                     skipped: list[tuple[str, str]] | None = None) -> list[Entry]:
    """Entries from an mteb results folder (``<model>/<revision>/[experiments/<x>/]<Task>.json``
    beside ``model_meta.json``; ``root`` may also be a cache folder holding ``results/``).
    Result files without ``metric`` on ``split`` are appended to ``skipped`` (when given)."""
    root = Path(root)
    if (root / "results").is_dir():
        root = root / "results"
    entries: dict[Path, Entry] = {}
    for path in sorted(root.rglob("*.json")):
        if path.name == "model_meta.json" or not (path.parent / "model_meta.json").is_file():
            continue
        result = _load_json(path)
        if not isinstance(result, dict) or "task_name" not in result:
            continue
        meta = _load_json(path.parent / "model_meta.json")
        runs = read_run_settings(path.parent)
        cell = _mteb_cell(result, metric, split, meta, runs.get(result["task_name"]), path)
        if cell is None:
            if skipped is not None:
                skipped.append((str(path), f"no {metric} on the {split} split"))
            continue
        if path.parent not in entries:
            exp = _experiment_label(meta.get("experiment_kwargs"))
            label = f"{meta.get('name', '?')}{' · ' + exp if exp else ''} [{cell.evaluator}]"
            entries[path.parent] = Entry(label, str(path.parent), "mteb",
                                         model=base_model_name(str(meta.get("name", ""))))
        entries[path.parent].cells[_canonical_task(str(result["task_name"]))] = cell
    return list(entries.values())


def _flag_cells(entries: Sequence[Entry], tasks: Sequence[str]
               ) -> dict[str, tuple[str, str | None]]:
    """Flag every cell whose protocol or data differ from its column's reference (the most
    common ``(protocol, data)``; ties: the first entry's). Returns the references."""
    refs: dict[str, tuple[str, str | None]] = {}
    for task in tasks:
        cells = [e.cells[task] for e in entries if task in e.cells]
        if not cells:
            continue
        counts = Counter(c.key for c in cells)
        best = max(counts.values())
        ref = next(c.key for c in cells if counts[c.key] == best)
        refs[task] = ref
        for c in cells:
            c.flags = []
            if c.key[0] != ref[0]:
                c.flags.append(f"protocol {c.protocol} (column: {ref[0]})")
            if c.key[1] != ref[1]:
                c.flags.append(f"data {short_data(c.key[1])} (column: {short_data(ref[1])})")
    return refs


def short_data(data: str | None) -> str:
    """A data checksum as tables show it (12 digits; ``hub@`` and 8 for a hub revision)."""
    if not data:
        return "unknown"
    return data[:12] if not data.startswith("hub:") else "hub@" + data[4:12]


def _unique_labels(entries: list[Entry]) -> None:
    """A label seen before gets its file's name, then a count, appended."""
    seen: Counter[str] = Counter()
    for e in entries:
        if e.label in seen:
            e.label = f"{e.label} [{Path(e.source).name}]"
        while e.label in seen:
            e.label = f"{e.label} ({seen[e.label] + 1})"
        seen[e.label] += 1


def compare_records(items: Iterable[tuple[str, Mapping[str, Any]]], metric: str = "spearman",
                    split: str = "test", *, extra: Sequence[Entry] = (),
                    skipped: Sequence[tuple[str, str]] = ()) -> Comparison:
    """A :class:`Comparison` of records already read (``(path, record)`` pairs) and entries
    read otherwise (``extra``). A record without a score on the split is left out, named in
    :attr:`Comparison.skipped` (with the ``skipped`` given) and in a log warning."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}",
                          param="metric")
    split = canonical_split(split)
    entries: list[Entry] = []
    left_out = list(skipped)
    for path, rec in items:
        found = [e for e in _record_entries(path, rec, metric, split) if e.cells]
        if not found:
            left_out.append((path, f"no {metric} scores on the {split} split"))
        entries += found
    entries += [e for e in extra if e.cells]
    for path, why in left_out:
        logger.warning("%s: %s; left out of the comparison", path, why)
    _unique_labels(entries)
    tasks = list(dict.fromkeys(t for e in entries for t in e.cells))
    cmp = Comparison(metric, split, tasks, entries, skipped=left_out)
    cmp.reference = _flag_cells(entries, tasks)
    return cmp


def _folder_skips(root: Path, files: list[tuple[str, str]], metric: str, split: str,
                  had_entries: bool) -> list[tuple[str, str]]:
    """One line for a folder's result files left out (or for the folder, when it gave none)."""
    if not files:
        return [] if had_entries else [(str(root), f"no mteb result files with {metric} on the "
                                                   f"{split} split")]
    names = sorted({Path(p).name for p, _ in files})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return [(str(root), f"{len(files)} result file(s) without {metric} on the {split} split "
                        f"({shown})")]


def compare(inputs: Sequence[StrPath], metric: str = "spearman",
            split: str = "test") -> Comparison:
    """Read every input (an embedkit JSON record, or a folder of mteb results) and compare.

    A folder's JSON files that are embedkit records are read as records too."""
    if not inputs:
        raise ConfigError("give at least one record or mteb results folder", param="inputs")
    records: list[tuple[str, Mapping[str, Any]]] = []
    extra: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files: list[tuple[str, str]] = []
            found = read_mteb_folder(path, metric, canonical_split(split), files)
            skipped += _folder_skips(path, files, metric, canonical_split(split), bool(found))
            extra += found
        elif path.is_file():
            records.append((str(path), _load_json(path)))
        else:
            raise MissingFileError("no such record or folder", path=str(path))
    cmp = compare_records(records, metric, split, extra=extra, skipped=skipped)
    if not cmp.entries:
        raise ConfigError(f"no {metric} scores on split {cmp.split} in the inputs",
                          param="split")
    return cmp
