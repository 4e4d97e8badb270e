r"""Training data for SimCSE: unlabelled sentences from tasks or a corpus, labelled pairs,
triplets, seeded sampling, and the overlap check against the built-in evaluation splits.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "corpus.txt")
>>> _ = open(p, "w", encoding="utf-8").write("我爱北京\n\n今天天气很好\n我爱北京\n")
>>> sents, desc = _corpus_sentences(p)
>>> sents, desc["lines"], desc["unique"]
(['我爱北京', '今天天气很好'], 4, 2)
>>> sample_examples(["a", "b", "c", "d"], 2, seed=0)[0]
['a', 'b']
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embedkit.aliases import JSONDict, StrPath
from embedkit.data import PairSplit, get_task, load_task, read_pair_file
from embedkit.data.loading import data_dir_from_env, resolve_file
from embedkit.data.registry import builtin_tasks
from embedkit.data.selection import parse_task_split
from embedkit.data.spec import TaskSpec
from embedkit.errors import ConfigError, DataError, EmbedkitError
from embedkit.provenance import sha256_file, sha256_text
from embedkit.training.config import SimCSEConfig, TrainingWarning


# -- unlabelled sentences -------------------------------------------------------------------
def task_sentences(tasks: Sequence[str | TaskSpec], *, data_dir: StrPath | None = None,
                   source: str = "auto", skip_invalid: bool = False
                   ) -> tuple[list[str], JSONDict, int]:
    """Both sides of every pair of every split each task has, without labels, each sentence
    once (first-seen order, pairs interleaved). Returns (sentences, description, max_length),
    max_length being the largest of the tasks' own."""
    if not tasks:
        raise ConfigError("no tasks given")
    specs = [t if isinstance(t, TaskSpec) else get_task(t) for t in tasks]
    seen: dict[str, None] = {}
    desc: JSONDict = {"kind": "tasks", "tasks": {}}
    for spec in specs:
        splits = load_task(spec, list(spec.splits), data_dir=data_dir, source=source,
                           skip_invalid=skip_invalid)
        desc["tasks"][spec.name] = {s: {"source": d.source, "sha256": d.sha256,
                                        "n_pairs": d.n_pairs, "skipped": d.skipped}
                                    for s, d in splits.items()}
        for d in splits.values():
            for a, b in zip(d.sentences1, d.sentences2, strict=True):
                seen.setdefault(a)
                seen.setdefault(b)
    sentences = [s for s in seen if s.strip()]
    desc["unique"] = len(sentences)
    return sentences, desc, max(s.max_length for s in specs)


def _corpus_sentences(path: StrPath) -> tuple[list[str], dict]:
    """One sentence a line (UTF-8); blank lines skipped, repeats kept once (first-seen order)."""
    from embedkit.io.textfile import read_lines

    p = Path(path)
    lines = read_lines(p, "corpus")
    sentences = list(dict.fromkeys(s.strip() for s in lines if s.strip()))
    return sentences, {"kind": "corpus", "file": str(p), "file_sha256": sha256_file(p),
                       "lines": len(lines), "unique": len(sentences)}


def sample_examples(items: Sequence, k: int | None, seed: int) -> tuple[list, list[int] | None]:
    """Up to ``k`` items drawn without replacement by a ``torch.Generator`` seeded with ``seed``,
    kept in their original order; all of them (and None for the indices) when ``k`` is None or
    at least ``len(items)``."""
    if k is None or k <= 0 or k >= len(items):
        return list(items), None
    g = torch.Generator().manual_seed(int(seed))
    idx = sorted(torch.randperm(len(items), generator=g)[:k].tolist())
    return [items[i] for i in idx], idx


def examples_sha256(examples: Iterable) -> str:
    """sha256 of the examples joined by newlines (tuples joined by tabs first)."""
    return sha256_text("\n".join(
        e if isinstance(e, str) else "\t".join(_fmt(x) for x in e) for e in examples))


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() else repr(x)
    return str(x)


# -- labelled pairs and triplets ------------------------------------------------------------
@dataclass
class Pairs:
    """Labelled pairs from one or more sources, with a description for the record."""

    sentences1: list[str] = field(default_factory=list)
    sentences2: list[str] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    sources: list[JSONDict] = field(default_factory=list)
    max_length: int = 0

    def add(self, split: PairSplit, what: str, max_length: int) -> None:
        self.sentences1 += split.sentences1
        self.sentences2 += split.sentences2
        self.labels += [float(x) for x in split.labels.tolist()]
        self.sources.append({"pairs": what, "source": split.source, "sha256": split.sha256,
                             "n_pairs": split.n_pairs, "skipped": split.skipped})
        self.max_length = max(self.max_length, max_length)


def load_pairs(arg: str, *, data_dir: StrPath | None = None, source: str = "auto",
               skip_invalid: bool = False) -> tuple[PairSplit, str, int]:
    """Load one ``pairs`` item: a TSV file (``s1<TAB>s2<TAB>label``), a task spec ``.json`` or a
    built-in task name, either optionally followed by ``:split`` (default: ``train``).
    Returns (split, description, max_length)."""
    path = Path(arg)
    if path.is_file() and not arg.endswith(".json"):
        spec = TaskSpec.from_dict({"name": path.stem, "files": {"train": str(path.resolve())},
                                   "format": "tsv"}, origin=str(path))
        return read_pair_file(spec, "train", str(path), skip_invalid=skip_invalid), \
            f"file:{path}", 64
    name = arg.rsplit(":", 1)[0] if ":" in arg else arg
    if not name.endswith(".json") and not Path(name).is_file() and ("/" in name or "." in name):
        raise ConfigError(f"{arg}: no such file (give a TSV file s1<TAB>s2<TAB>label, a task "
                          "spec .json, or TASK:split such as LCQMC:train)", param="pairs")
    spec, split = parse_task_split(arg, param="pairs")
    if split is None:
        split = "train"
        if split not in spec.splits:
            raise ConfigError(f"{arg}: task {spec.name} has no train split (it has "
                              f"{', '.join(spec.splits)}); name one as {arg}:SPLIT",
                              param="pairs")
    data = load_task(spec, [split], data_dir=data_dir, source=source,
                     skip_invalid=skip_invalid)[split]
    return data, f"task:{spec.name}:{split}", spec.max_length


def _read_triplets(path: StrPath) -> tuple[list[tuple[str, str, str]], dict]:
    """``anchor<TAB>positive<TAB>negative`` lines (UTF-8, blank lines skipped)."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"triplet file {path} not found", param="triplets") from None
    except UnicodeDecodeError:
        raise DataError("not UTF-8; re-save the file as UTF-8", path=str(path)) from None
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not all(x.strip() for x in parts):
            raise DataError(f"expected 3 non-empty tab-separated fields (anchor, positive, "
                            f"negative), found {len(parts)}", path=str(path), line=i)
        out.append((parts[0], parts[1], parts[2]))
    return out, {"triplets": f"file:{p}", "sha256": sha256_file(p), "n_triplets": len(out)}


def infonce_examples(pairs: Pairs, threshold: float, *, hard_negatives: bool,
                     negative_max: float, seed: int) -> tuple[list[tuple[str, str, str | None]], JSONDict]:
    """(anchor, positive, hard negative or None) from labelled pairs.

    Positives are pairs with ``label >= threshold``. With ``hard_negatives``, a pair with
    ``label <= negative_max`` that shares a sentence with the anchor or its positive supplies the
    hard negative (its other sentence), picked by a generator seeded with ``seed``.
    """
    neg_of: dict[str, list[str]] = {}
    if hard_negatives:
        for a, b, y in zip(pairs.sentences1, pairs.sentences2, pairs.labels, strict=True):
            if y <= negative_max:
                neg_of.setdefault(a, []).append(b)
                neg_of.setdefault(b, []).append(a)
    g = torch.Generator().manual_seed(int(seed))
    out: list[tuple[str, str, str | None]] = []
    with_neg = 0
    for a, b, y in zip(pairs.sentences1, pairs.sentences2, pairs.labels, strict=True):
        if y < threshold:
            continue
        neg = None
        if hard_negatives:
            cands = [c for c in dict.fromkeys(neg_of.get(a, []) + neg_of.get(b, []))
                     if c not in (a, b)]
            if cands:
                neg = cands[int(torch.randint(len(cands), (1,), generator=g))]
                with_neg += 1
        out.append((a, b, neg))
    return out, {"positives": len(out), "with_hard_negative": with_neg}


# -- overlap with the evaluation pairs ------------------------------------------------------
def evaluation_overlap(pairs: Iterable[tuple[str, str]], *,
                       data_dir: StrPath | None = None,
                       tasks: Sequence[TaskSpec] | None = None) -> dict[str, dict]:
    """Exact pair matches (either order) between ``pairs`` and the default evaluation splits of
    the built-in tasks whose files are available locally.

    Returns ``{"TASK/split": {"overlap": n, "n_pairs": m}}`` for every split checked.
    """
    train = set()
    for a, b in pairs:
        train.add((a, b))
        train.add((b, a))
    ddir = data_dir_from_env(data_dir)
    out: dict[str, JSONDict] = {}
    for spec in (tasks if tasks is not None else builtin_tasks().values()):
        for split in spec.default_splits:
            if split not in spec.files or (spec.base == "data-dir" and ddir is None):
                continue
            try:
                path = resolve_file(spec, split, ddir)
                if not path.is_file():
                    continue
                d = read_pair_file(spec, split, str(path), skip_invalid=True)
            except EmbedkitError:
                continue
            n = sum((a, b) in train for a, b in zip(d.sentences1, d.sentences2, strict=True))
            out[f"{spec.name}/{split}"] = {"overlap": n, "n_pairs": d.n_pairs}
    return out


# -- a run's examples -----------------------------------------------------------------------
@dataclass
class TrainingData:
    """The sampled examples of a run, their description for the record, the default max length
    (the tasks') and the overlap with the evaluation pairs (supervised runs)."""

    examples: list[Any]
    description: JSONDict
    max_length: int
    overlap: JSONDict | None = None


def prepare_examples(cfg: SimCSEConfig) -> TrainingData:
    """The examples a fresh run trains on, sampled with ``cfg.seed``."""
    return _supervised(cfg) if cfg.supervised else _unsupervised(cfg)


def _unsupervised(cfg: SimCSEConfig) -> TrainingData:
    if cfg.tasks:
        sents, desc, max_len = task_sentences(cfg.tasks, data_dir=cfg.data_dir,
                                              source=cfg.source, skip_invalid=cfg.skip_invalid)
    else:
        sents, desc = _corpus_sentences(str(cfg.corpus))
        max_len = 64
    examples, _ = sample_examples(sents, cfg.resolved_max_sentences(), cfg.seed)
    if len(examples) < 2:
        where = f"tasks {','.join(cfg.tasks)}" if cfg.tasks else f"corpus {cfg.corpus}"
        raise ConfigError(f"{where} gave {len(examples)} sentence(s); SimCSE needs at least 2",
                          param="tasks" if cfg.tasks else "corpus")
    desc.update(available=len(sents), sampled=len(examples), sample_seed=cfg.seed,
                sha256=examples_sha256(examples))
    return TrainingData(examples, desc, max_len)


def _supervised(cfg: SimCSEConfig) -> TrainingData:
    pairs = Pairs()
    for arg in cfg.pairs or []:
        split, what, ml = load_pairs(arg, data_dir=cfg.data_dir, source=cfg.source,
                                     skip_invalid=cfg.skip_invalid)
        pairs.add(split, what, ml)
    desc: JSONDict = {"kind": "pairs", "sources": pairs.sources, "n_pairs": len(pairs.labels)}
    check = list(zip(pairs.sentences1, pairs.sentences2, strict=True))
    if cfg.loss == "cosent":
        examples = _cosent_examples(pairs)
    else:
        examples = _infonce_examples(cfg, pairs, desc, check)
    examples, _ = sample_examples(examples, cfg.max_sentences or None, cfg.seed)
    if len(examples) < 2:
        raise ConfigError(f"only {len(examples)} training example(s); need at least 2",
                          param="pairs")
    desc.update(sampled=len(examples), sample_seed=cfg.seed, sha256=examples_sha256(examples))
    overlap = evaluation_overlap(check, data_dir=cfg.data_dir)
    _warn_overlap(overlap)
    return TrainingData(examples, desc, pairs.max_length or 64, overlap)


def _cosent_examples(pairs: Pairs) -> list[tuple[str, str, float]]:
    if len(set(pairs.labels)) < 2:
        raise ConfigError("CoSENT ranks pairs by label, and every pair has the same label "
                          f"({pairs.labels[0] if pairs.labels else 'no pairs'})", param="pairs")
    return list(zip(pairs.sentences1, pairs.sentences2, pairs.labels, strict=True))


def _infonce_examples(cfg: SimCSEConfig, pairs: Pairs, desc: JSONDict,
                      check: list[tuple[str, str]]) -> list:
    examples: list = []
    examples, info = infonce_examples(pairs, cfg.threshold, hard_negatives=cfg.hard_negatives,
                                      negative_max=cfg.negative_max, seed=cfg.seed)
    desc.update(info, threshold=cfg.threshold)
    if cfg.pairs and not examples:
        raise ConfigError(f"no pair has a label >= threshold {cfg.threshold}; for 0-5 scores "
                          "use e.g. threshold 4", param="threshold")
    if cfg.hard_negatives:
        desc["negative_max"] = cfg.negative_max
        if info["with_hard_negative"] == 0:
            raise ConfigError("hard_negatives: no positive pair shares a sentence with a pair "
                              f"labelled <= negative_max {cfg.negative_max}",
                              param="hard_negatives")
    if cfg.triplets:
        trip, tdesc = _read_triplets(cfg.triplets)
        examples += trip
        desc["triplets"] = tdesc
        check += [(a, p) for a, p, _ in trip]
    return examples


def _warn_overlap(overlap: dict[str, JSONDict]) -> None:
    hits = {k: v for k, v in overlap.items() if v["overlap"]}
    if hits:
        parts = [f"{k} {v['overlap']} of {v['n_pairs']} pairs "
                 f"({100 * v['overlap'] / v['n_pairs']:.1f}%)" for k, v in hits.items()]
        warnings.warn("training pairs overlap evaluation pairs (exact matches, either order): "
                      + "; ".join(parts) + "; scores on those splits will be inflated",
                      TrainingWarning, stacklevel=4)
