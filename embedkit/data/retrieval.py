r"""Retrieval tasks from files, in the BEIR / mteb layout.

A retrieval task spec (``"kind": "retrieval"``) names a ``corpus`` JSON lines file (``_id``,
``title``, ``text``), a ``queries`` JSON lines file (``_id``, ``text``) and, per split, a qrels
TSV (``query-id``, ``corpus-id``, ``score``; an optional header line; graded scores are integers,
0 meaning judged not relevant). Every problem is a :class:`DataError` naming the file and line,
as pair files' are. A corpus entry's text is ``title + " " + text`` (stripped), as mteb joins them.

>>> import json, os, tempfile
>>> d = tempfile.mkdtemp(); os.mkdir(os.path.join(d, "qrels"))
>>> w = lambda name, text: open(os.path.join(d, name), "w", encoding="utf-8").write(text)
>>> _ = w("corpus.jsonl", '{"_id": "d1", "title": "", "text": "猫"}\n{"_id": "d2", "text": "狗"}\n')
>>> _ = w("queries.jsonl", '{"_id": "q1", "text": "小猫"}\n')
>>> _ = w("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\n")
>>> spec = TaskSpec.from_dict({"name": "r", "kind": "retrieval", "corpus": "corpus.jsonl",
...     "queries": "queries.jsonl", "files": {"test": "qrels/test.tsv"}}, spec_dir=d)
>>> r = load_retrieval_split(spec, "test")
>>> r.corpus_ids, r.corpus_texts, r.qrels
(['d1', 'd2'], ['猫', '狗'], {'q1': {'d1': 2}})
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from embedkit.aliases import StrPath
from embedkit.data.loading import find_data_dir, resolve_path
from embedkit.data.pairs import PairSplit
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.errors import ConfigError, DataError
from embedkit.io.textfile import decoded_lines, json_objects, read_bytes
from embedkit.provenance import sha256_text

__all__ = ["RetrievalSplit", "load_retrieval_split",
           "write_pairs_as_retrieval"]


@dataclass
class RetrievalSplit:
    """One split of a retrieval task: the corpus and the queries (ids and texts, file order;
    only the queries judged in this split), and ``qrels[query_id][corpus_id] = score``."""

    task: str
    split: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    source: str
    sha256: str

    @property
    def n_judgements(self) -> int:
        return sum(len(d) for d in self.qrels.values())

    def score_distribution(self) -> dict[str, int]:
        """Judgements per relevance score."""
        c = Counter(str(s) for d in self.qrels.values() for s in d.values())
        return dict(sorted(c.items(), key=lambda kv: int(kv[0])))


def _read_jsonl_texts(path: str, *, with_title: bool, encoding: str = "utf-8"
                     ) -> tuple[list[str], list[str], str]:
    """``(ids, texts, sha256)`` of a corpus or queries file; ids must be unique strings (an
    integer id is read as its digits), texts non-empty."""
    data = read_bytes(path, "corpus" if with_title else "queries")
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for line, obj in json_objects(decoded_lines(data, path, encoding), path,
                                  what="a JSON object with _id and text"):
        _id = obj.get("_id")
        if isinstance(_id, int) and not isinstance(_id, bool):
            _id = str(_id)
        if not isinstance(_id, str) or not _id:
            raise DataError("'_id' is missing or not a string", path=path, line=line)
        if _id in seen:
            raise DataError(f"_id {_id!r} repeats line {seen[_id]}", path=path, line=line)
        body = obj.get("text")
        title = obj.get("title", "") if with_title else ""
        if not isinstance(body, str) or (title is not None and not isinstance(title, str)):
            raise DataError("'text' (and 'title') must be strings", path=path, line=line)
        joined = f"{title or ''} {body}".strip()
        if not joined:
            raise DataError(f"{_id!r} has an empty text", path=path, line=line)
        seen[_id] = line
        ids.append(_id)
        texts.append(joined)
    if not ids:
        raise DataError("no entries (the file is empty)", path=path)
    return ids, texts, hashlib.sha256(data).hexdigest()


def _read_qrels(path: str, query_ids: set[str], corpus_ids: set[str], encoding: str = "utf-8"
               ) -> tuple[dict[str, dict[str, int]], str]:
    """``(qrels, sha256)`` of a qrels TSV; every id must be in the queries / corpus files."""
    data = read_bytes(path, "qrels")
    qrels: dict[str, dict[str, int]] = {}
    for line, text in decoded_lines(data, path, encoding):
        if not text.strip():
            continue
        parts = text.split("\t")
        if line == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue  # the header
        if len(parts) == 4:  # TREC qrels: query-id, iteration, corpus-id, score
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise DataError(f"expected 3 tab-separated fields (query-id, corpus-id, score), "
                            f"found {len(parts)}", path=path, line=line)
        qid, did, raw = (p.strip() for p in parts)
        try:
            score = int(raw)
        except ValueError:
            raise DataError(f"score {raw!r} is not an integer", path=path, line=line) from None
        if qid not in query_ids:
            raise DataError(f"query-id {qid!r} is not in the queries file", path=path, line=line)
        if did not in corpus_ids:
            raise DataError(f"corpus-id {did!r} is not in the corpus file", path=path, line=line)
        if did in qrels.get(qid, {}):
            raise DataError(f"the pair ({qid!r}, {did!r}) is judged twice", path=path, line=line)
        qrels.setdefault(qid, {})[did] = score
    if not any(s > 0 for d in qrels.values() for s in d.values()):
        raise DataError("no relevant judgement (score > 0)", path=path)
    return qrels, hashlib.sha256(data).hexdigest()


def load_retrieval_split(spec: TaskSpec, split: str, *,
                         data_dir: StrPath | None = None) -> RetrievalSplit:
    """Read and validate one split of a retrieval task spec."""
    if not spec.is_retrieval:
        raise ConfigError(f"task {spec.name} holds sentence pairs, not a retrieval task",
                          param="tasks")
    name = canonical_split(split)
    if name not in spec.files:
        raise ConfigError(f"task {spec.name} has no split {name!r}; its splits: "
                          f"{', '.join(spec.files)}", param="splits")
    ddir: Path | None = find_data_dir(data_dir).path if spec.base == "data-dir" else None
    paths = [str(resolve_path(spec, p, ddir)) for p in (spec.corpus, spec.queries,
                                                         spec.files[name])]
    cids, ctexts, csha = _read_jsonl_texts(paths[0], with_title=True, encoding=spec.encoding)
    qids, qtexts, qsha = _read_jsonl_texts(paths[1], with_title=False, encoding=spec.encoding)
    qrels, rsha = _read_qrels(paths[2], set(qids), set(cids), spec.encoding)
    keep = [i for i, q in enumerate(qids) if q in qrels]
    sha = sha256_text(f"{csha}:{qsha}:{rsha}")
    return RetrievalSplit(spec.name, name, cids, ctexts, [qids[i] for i in keep],
                          [qtexts[i] for i in keep], qrels, paths[2], sha)


def write_pairs_as_retrieval(split: PairSplit, out_dir: StrPath, *,
                             threshold: float = 1.0) -> Path:
    """Write a pair split as a retrieval task in the BEIR layout and return its spec file:
    queries the distinct ``sentence1`` of pairs labelled ``>= threshold``, corpus every
    distinct ``sentence2`` of the split (negatives included), qrels the positive pairs
    (score 1). Files are written atomically."""
    from embedkit.io.atomic import atomic_write_text

    out = Path(out_dir)
    docs = {t: f"d{i}" for i, t in enumerate(dict.fromkeys(split.sentences2))}
    queries: dict[str, str] = {}
    qrels: dict[tuple[str, str], int] = {}
    for a, b, y in zip(split.sentences1, split.sentences2, split.labels.tolist(), strict=True):
        if y >= threshold:
            qid = queries.setdefault(a, f"q{len(queries)}")
            qrels[(qid, docs[b])] = 1
    if not qrels:
        raise ConfigError(f"no pair of {split.task}/{split.split} has a label >= {threshold}")

    def jsonl(rows: list[dict[str, str]]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    (out / "qrels").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "corpus.jsonl", jsonl(
        [{"_id": i, "title": "", "text": t} for t, i in docs.items()]))
    atomic_write_text(out / "queries.jsonl", jsonl(
        [{"_id": i, "text": t} for t, i in queries.items()]))
    atomic_write_text(out / "qrels" / f"{split.split}.tsv", "query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{s}\n" for (q, d), s in qrels.items()))
    name = f"{split.task}-retrieval"
    spec = {"name": name, "kind": "retrieval", "corpus": "corpus.jsonl",
            "queries": "queries.jsonl", "files": {split.split: f"qrels/{split.split}.tsv"},
            "description": f"{split.task}/{split.split} as retrieval: queries sentence1 of the "
                           f"positive pairs, corpus every sentence2, qrels the positive pairs "
                           f"(from {split.source}, sha256 {split.sha256[:16]})"}
    path = out / f"{name}.json"
    atomic_write_text(path, json.dumps(spec, ensure_ascii=False, indent=2) + "\n")
    return path
