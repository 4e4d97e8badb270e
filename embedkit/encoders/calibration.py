"""The declared sample static int8 is calibrated on (``EncoderConfig.calibration``), and the
held-out sample its quality gate scores it on, drawn from the same source and disjoint from it.

``calibration`` is ``None`` (the default: :data:`CALIBRATION_SIZE` sentences drawn with
:data:`SEED` from the built-in tasks, each task's train split or, where it has none, its valid
split: never a test split; tasks whose data is missing are skipped, each task gives an equal
share), ``TASK`` (its train split, else its valid split), ``TASK:SPLIT``, or a FILE of sentences,
one a line (all of them calibrate, but the held-out share). The held-out sample is
:data:`HELDOUT_SIZE` sentences (a quarter of a smaller source) set aside before the calibration
sentences are drawn. The set's sha256, size and source are part of the export key and of the
encoder's identity (``quantize=int8-static;calibration=<12 hex>``:
:func:`~embedkit.encoders.quantize_static.static_digest`).

>>> s = CalibrationSet(("a", "b"), ("c",), "file:x.txt")
>>> s.digest == s.sha256[:12], s.record()["n_sentences"], s.record()["n_heldout"]
(True, 2, 1)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedkit.errors import ConfigError, DataError, EmbedkitError
from embedkit.provenance import sha256_text

#: calibration sentences drawn from a task source (the default, or TASK[:SPLIT])
CALIBRATION_SIZE = 300
#: held-out sentences the quality gate scores (a quarter of a smaller source)
HELDOUT_SIZE = 200
#: the seed of every draw
SEED = 0
#: tokens per calibration sentence, counting [CLS] and [SEP] (the protocols' 64)
CALIBRATION_MAX_LENGTH = 64
#: fewer sentences than this cannot both calibrate and be held out
MIN_SENTENCES = 8
#: the quality gate of :mod:`embedkit.encoders.quantize_static` (its thresholds are part of the
#: export key and of the identity's digest): the exclusion search keeps the first candidate whose mean agreement reaches this (measured on
#: m3e-small: ONNX Runtime's dynamic int8 agrees at 0.9975 and loses 0.6 Spearman points on 500
#: BQ test pairs, over the issue's 0.3 budget)
TARGET_MEAN = 0.999
#: the gate refuses an export whose mean agreement with float32 on the held-out sentences is
#: below this (dynamic int8's quality) ...
GATE_MEAN = 0.995
#: ... or whose worst sentence's agreement is below this
GATE_MIN = 0.98
#: ONNX Runtime's activation type: uint8 activations with int8 weights (U8S8), the pair VNNI's
#: ``vpdpbusd`` multiplies natively (measured on m3e-small: the same agreement as int8
#: activations, 0.9821, and 3.3x faster: 0.88 s against 2.90 s for 200 sentences)
ACTIVATIONS = "QUInt8"
#: the splits a task lends to calibration, the first it has (never its test split by default)
_SPLITS = ("train", "valid")


@dataclass(frozen=True)
class CalibrationSet:
    """The calibration sentences, the held-out sentences and what they were drawn from."""

    sentences: tuple[str, ...]
    heldout: tuple[str, ...]
    source: str

    @property
    def sha256(self) -> str:
        """sha256 of the calibration sentences joined by newlines."""
        return sha256_text("\n".join(self.sentences))

    @property
    def digest(self) -> str:
        """The calibration sentences' sha256, short (the export's steps name it)."""
        return self.sha256[:12]

    def record(self) -> dict[str, Any]:
        """JSON-ready: source, sizes, the sha256 of both samples, seed and max length (the
        export key holds it, ``describe()`` and the manifest show it)."""
        return {"source": self.source, "n_sentences": len(self.sentences),
                "sha256": self.sha256, "n_heldout": len(self.heldout),
                "heldout_sha256": sha256_text("\n".join(self.heldout)), "seed": SEED,
                "max_length": CALIBRATION_MAX_LENGTH}


def gate_thresholds() -> dict[str, Any]:
    """The thresholds an export was made under (part of its key and manifest)."""
    return {"target_mean": TARGET_MEAN, "gate_mean": GATE_MEAN, "gate_min": GATE_MIN,
            "onnx_activations": ACTIVATIONS}


def static_part(quantize: str, calibration: CalibrationSet | None
                ) -> tuple[CalibrationSet | None, dict[str, Any] | None]:
    """For ``int8-static``: the calibration set (the default one when None is given) and what
    it adds to the export key (its record and the gate's thresholds); else ``(None, None)``."""
    if quantize != "int8-static":
        return None, None
    if calibration is None:
        calibration = resolve_calibration(None)
    return calibration, {**calibration.record(), **gate_thresholds()}


def static_digest(calibration: CalibrationSet) -> str:
    """The 12 hex digits the encoder's identity shows (``calibration=<digest>``): of what the
    calibration adds to the export key (the set's sha256, size, source and held-out sample, and
    the gate's thresholds), so that vectors change namespace whenever the export would change.

    >>> len(static_digest(CalibrationSet(("a",), ("b",), "file:x")))
    12
    """
    return sha256_text(json.dumps(static_part("int8-static", calibration)[1], sort_keys=True))[:12]


def resolve_calibration(calibration: str | None) -> CalibrationSet:
    """The calibration set ``calibration`` declares (see the module docstring); task data is
    read from the data folder (``$EMBEDKIT_DATA`` or the default), never the hub."""
    if calibration is None:
        return _default_set()
    item = calibration.strip()
    if not item:
        raise ConfigError("calibration is empty; give TASK, TASK:SPLIT or a file of sentences "
                          "(one a line), or none for the built-in tasks' sample",
                          param="calibration")
    if Path(item).is_file() and not item.lower().endswith(".json"):
        return _file_set(item)
    return _task_set(item)


def _file_set(path: str) -> CalibrationSet:
    from embedkit.io.textfile import read_sentences

    pool = list(dict.fromkeys(read_sentences(path, "calibration sentence")))
    if len(pool) < MIN_SENTENCES:
        raise DataError(f"the calibration file holds {len(pool)} distinct sentence(s); give at "
                        f"least {MIN_SENTENCES}, one a line (a few hundred calibrate well)",
                        path=path, param="calibration")
    return _draw([pool], f"file:{Path(path).resolve()}", size=None)


def _task_set(item: str) -> CalibrationSet:
    from embedkit.data.loading import load_split
    from embedkit.data.selection import parse_task_split

    if Path(item).is_dir():
        raise ConfigError(f"calibration {item!r} is a folder; give a file with one sentence a "
                          "line, TASK or TASK:SPLIT", param="calibration")
    try:
        spec, split = parse_task_split(item, param="calibration")
    except ConfigError as e:
        if "has no" in str(e):
            raise ConfigError(f"calibration {e}", param="calibration") from None
        raise ConfigError(f"calibration {item!r}: not a task name, TASK:SPLIT or an existing "
                          f"file of sentences (one a line) ({e})", param="calibration") from None
    split = split or next((s for s in _SPLITS if s in spec.splits), spec.splits[0])
    data = load_split(spec, split, source="local")
    pool = data.unique_sentences()
    if len(pool) < MIN_SENTENCES:
        raise DataError(f"calibration {item}: {len(pool)} distinct sentence(s); give a larger "
                        "split or a file", path=data.source, param="calibration")
    return _draw([pool], f"task:{spec.name}:{data.split}", size=CALIBRATION_SIZE)


def _default_set() -> CalibrationSet:
    """An equal share of each built-in task's train (else valid) split whose data is here."""
    from embedkit.data.loading import load_split
    from embedkit.data.registry import DEFAULT_TASKS, get_task

    pools, names = [], []
    for name in DEFAULT_TASKS:
        spec = get_task(name)
        split = next((s for s in _SPLITS if s in spec.splits), None)
        if split is None:
            continue
        try:
            data = load_split(spec, split, source="local")
        except EmbedkitError:  # the task's data is not here: skipped
            continue
        pools.append(data.unique_sentences())
        names.append(f"{spec.name}:{data.split}")
    if sum(len(p) for p in pools) < MIN_SENTENCES:
        raise ConfigError("no built-in task data to calibrate int8-static on (the train or "
                          f"valid splits of {', '.join(DEFAULT_TASKS)}); set the data folder "
                          "(EMBEDKIT_DATA), or give calibration a file of sentences (one a "
                          "line) or TASK:SPLIT", param="calibration")
    return _draw(pools, "tasks:" + "+".join(names), size=CALIBRATION_SIZE)


def _draw(pools: list[list[str]], source: str, size: int | None) -> CalibrationSet:
    """Held-out sentences first, then up to ``size`` calibration sentences (None: the rest),
    each pool shuffled with :data:`SEED` and the pools taken in turn (an equal share each)."""
    rng = random.Random(SEED)
    shuffled = []
    for pool in pools:
        p = list(pool)
        rng.shuffle(p)
        shuffled.append(p)
    merged = list(dict.fromkeys(t for row in _round_robin(shuffled) for t in row))
    n_held = min(HELDOUT_SIZE, len(merged) // 4)
    held, rest = merged[:n_held], merged[n_held:]
    return CalibrationSet(tuple(rest if size is None else rest[:size]), tuple(held), source)


def _round_robin(pools: list[list[str]]) -> list[list[str]]:
    """Rows of one sentence from each pool in turn.

    >>> _round_robin([["a", "b", "c"], ["x"]])
    [['a', 'x'], ['b'], ['c']]
    """
    width = max((len(p) for p in pools), default=0)
    return [[p[i] for p in pools if i < len(p)] for i in range(width)]
