r"""A loaded split of sentence pairs, and the reader that validates pair files line by line.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "t.tsv")
>>> _ = open(p, "w", encoding="utf-8").write("我爱你\t我喜欢你\t1\n你好\t再见\t0\n")
>>> spec = TaskSpec.from_dict({"name": "t", "files": {"test": p}, "label_range": [0, 1]})
>>> s = read_pair_file(spec, "test", p)
>>> s.n_pairs, s.labels.tolist()
(2, [1.0, 0.0])
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedkit.aliases import JSONDict
from embedkit.data.spec import TaskSpec
from embedkit.errors import DataError
from embedkit.io.textfile import decoded_lines, json_objects, read_bytes
from embedkit.provenance import sha256_text

#: How many skipped-row messages are kept for the report (the count is always exact).
_MAX_SKIP_MESSAGES = 20


@dataclass
class PairSplit:
    """The pairs of one split: parallel lists of sentences and float64 labels.

    ``source`` is the file path (or ``hub:ID@REVISION/SPLIT``); ``sha256`` the file's bytes (for
    hub data: of the rows written as ``s1<TAB>s2<TAB>label`` lines, so identical content hashes
    alike). ``skipped`` counts invalid rows left out under ``skip_invalid``.
    """

    task: str
    split: str
    source: str
    sha256: str
    sentences1: list[str]
    sentences2: list[str]
    labels: np.ndarray
    skipped: int = 0
    skip_messages: list[str] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return len(self.labels)

    def unique_sentences(self) -> list[str]:
        """Both sides' sentences, each once, in first-seen order."""
        return list(dict.fromkeys([*self.sentences1, *self.sentences2]))

    def sample(self, n: int, seed: int) -> PairSplit:
        """A seeded sample of ``n`` pairs in file order (all pairs when ``n`` is 0 or larger
        than the split); its ``sha256`` names the parent and the rows taken.

        >>> s = PairSplit("T", "test", "-", "abc", ["a", "b", "c"], ["x", "y", "z"],
        ...               np.array([0.0, 1.0, 2.0]))
        >>> s.sample(2, seed=0).sentences1, s.sample(0, seed=0).n_pairs
        (['b', 'c'], 3)
        """
        if not n or n >= self.n_pairs:
            return self
        idx = np.sort(np.random.default_rng(seed).choice(self.n_pairs, n, replace=False))
        tag = sha256_text(f"{self.sha256}:{idx.tolist()}")
        return PairSplit(self.task, self.split, f"{self.source}#sample(n={n},seed={seed})", tag,
                         [self.sentences1[i] for i in idx], [self.sentences2[i] for i in idx],
                         self.labels[idx])

    def label_distribution(self) -> dict[str, int]:
        """Counts per label value (integers printed without a decimal point)."""
        c = Counter(_fmt_label(x) for x in self.labels.tolist())
        return dict(sorted(c.items(), key=lambda kv: float(kv[0])))


def _fmt_label(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class _RowChecker:
    """Validates one row's fields; raises DataError or records a skip."""

    def __init__(self, spec: TaskSpec, path: str, skip_invalid: bool):
        self.spec, self.path, self.skip_invalid = spec, path, skip_invalid
        self.s1: list[str] = []
        self.s2: list[str] = []
        self.labels: list[float] = []
        self.skipped = 0
        self.messages: list[str] = []

    def fail(self, line: int | None, problem: str) -> None:
        err = DataError(problem, path=self.path, line=line)
        if not self.skip_invalid:
            raise err
        self.skipped += 1
        if len(self.messages) < _MAX_SKIP_MESSAGES:
            self.messages.append(str(err))

    def add(self, line: int, row: JSONDict) -> None:
        f = self.spec.fields
        s1, s2, raw = row.get(f["sentence1"]), row.get(f["sentence2"]), row.get(f["label"])
        for name, s in (("sentence1", s1), ("sentence2", s2)):
            if not isinstance(s, str):
                return self.fail(line, f"{name} ({f[name]!r}) is missing or not a string")
            if not s.strip():
                return self.fail(line, f"{name} is empty")
        assert isinstance(s1, str) and isinstance(s2, str)
        label = _parse_label(raw)
        if label is None:
            return self.fail(line, f"label {raw!r} is not a number")
        if self.spec.label_type == "int" and not label.is_integer():
            return self.fail(line, f"label {raw!r} is not an integer")
        lr = self.spec.label_range
        if lr is not None and not (lr[0] <= label <= lr[1]):
            return self.fail(line, f"label {raw!r} is outside the range [{lr[0]}, {lr[1]}]")
        self.s1.append(s1)
        self.s2.append(s2)
        self.labels.append(label)

    def result(self, split: str, source: str, sha: str) -> PairSplit:
        return PairSplit(
            task=self.spec.name,
            split=split,
            source=source,
            sha256=sha,
            sentences1=self.s1,
            sentences2=self.s2,
            labels=np.asarray(self.labels, dtype=np.float64),
            skipped=self.skipped,
            skip_messages=self.messages,
        )


def _parse_label(raw: Any) -> float | None:
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        x = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_pair_file(spec: TaskSpec, split: str, path: str, skip_invalid: bool = False) -> PairSplit:
    """Read and validate one pair file (TSV, CSV or JSON lines) described by ``spec``.

    Every problem raises :class:`DataError` naming the file, the line and what is wrong, unless
    ``skip_invalid`` is set, in which case the row is left out and counted.
    """
    data = read_bytes(path)
    checker = _RowChecker(spec, path, skip_invalid)
    lines = decoded_lines(data, path, spec.encoding, on_error=checker.fail)
    if spec.format == "jsonl":
        _read_jsonl(lines, checker)
    else:
        _read_delimited(lines, checker, spec)
    if not checker.labels:
        raise DataError(_why_no_pairs(data, spec, checker), path=path)
    return checker.result(split, path, hashlib.sha256(data).hexdigest())


def _why_no_pairs(data: bytes, spec: TaskSpec, checker: _RowChecker) -> str:
    """Why a file gave no pairs: a split without pairs has no score, so it is an error, never
    a ``-`` in a table."""
    if checker.skipped:
        first = f" (first: {checker.messages[0]})" if checker.messages else ""
        return (f"no valid sentence pairs: all {checker.skipped} rows were skipped as "
                f"invalid{first}")
    body = data.removeprefix(b"\xef\xbb\xbf")
    if not body:
        return "no sentence pairs (the file is empty)"
    if not body.strip():
        return "no sentence pairs (the file holds only blank lines)"
    if spec.header and spec.format != "jsonl":
        return "no sentence pairs (the file holds only its header)"
    return "no sentence pairs"


def _read_jsonl(lines: Iterable[tuple[int, str]], checker: _RowChecker) -> None:
    for i, obj in json_objects(lines, checker.path, checker.fail):
        checker.add(i, obj)


def _read_delimited(lines: Iterable[tuple[int, str]], checker: _RowChecker, spec: TaskSpec) -> None:
    delim = "\t" if spec.format == "tsv" else ","
    it = iter(lines)
    columns = list(spec.columns)
    if spec.header:
        first = next(it, None)
        if first is None:
            return
        columns = _split(first[1], spec.format, delim)
        missing = [c for c in spec.fields.values() if c not in columns]
        if missing:
            raise DataError(f"the header has no column {', '.join(map(repr, missing))}; "
                            f"it has {columns}; fix 'fields' in the task spec", path=checker.path, line=1)
    names = ", ".join(columns)
    for i, text in it:
        if not text.strip():
            checker.fail(i, f"empty line (expected {len(columns)} fields: {names})")
            continue
        parts = _split(text, spec.format, delim)
        if len(parts) != len(columns):
            sep = "tab-separated " if delim == "\t" else "comma-separated "
            checker.fail(i, f"expected {len(columns)} {sep}fields ({names}), found {len(parts)}")
            continue
        checker.add(i, dict(zip(columns, parts, strict=True)))


def _split(text: str, fmt: str, delim: str) -> list[str]:
    # TSV is split on tabs only, with no quote handling: the public STS files contain literal
    # quote characters (PAWSX) that a CSV parser would swallow. CSV follows RFC 4180 quoting.
    if fmt == "tsv":
        return text.split("\t")
    return next(csv.reader([text], delimiter=delim))


def rows_to_split(spec: TaskSpec, split: str, source: str, rows: Iterable[JSONDict],
                  skip_invalid: bool = False) -> PairSplit:
    """Validate in-memory rows (e.g. from ``datasets``); 'line' in messages is the row number."""
    checker = _RowChecker(spec, source, skip_invalid)
    h = hashlib.sha256()
    for i, row in enumerate(rows, start=1):
        checker.add(i, row)
        f = spec.fields
        h.update(f"{row.get(f['sentence1'])}\t{row.get(f['sentence2'])}\t{row.get(f['label'])}\n"
                 .encode())
    if not checker.labels:
        raise DataError(_why_no_pairs(b"", spec, checker).replace("the file is", "the split is"),
                        path=source)
    return checker.result(split, source, h.hexdigest())
