"""Fit a whitening map on an encoder's vectors and export it (the library behind ``embedkit whiten``).

What a map is fitted on (``--fit-on``) is resolved by :func:`collect_fit_sentences`:

- relative to a task (``embedkit bench`` / ``embedkit sweep``): ``task`` (every split of the
  task, both sentences of every pair: the published protocol), a split name (``train``,
  ``valid``, ``test``) or a file with one sentence a line;
- absolute (``embedkit whiten``): ``TASK`` (every split), ``TASK:SPLIT``, several of these
  comma-separated, or a FILE of sentences.

Pairs contribute ``s1, s2`` in file order, splits in the task's order; ``unique`` keeps the first
occurrence of each sentence only. :func:`fit_whitening` encodes and fits (in chunks, float64
statistics), :func:`whitening_metadata` records how, and :func:`export_whitening` writes
safetensors / npz (:func:`~embedkit.postprocess.save_transform`), a FAISS ``LinearTransform``
(with a ``.json`` metadata file beside it) or a sentence-transformers model folder.

>>> import os, tempfile
>>> f = os.path.join(tempfile.mkdtemp(), "s.txt")
>>> _ = open(f, "w", encoding="utf-8").write("你好\\n\\n再见\\n你好\\n")
>>> fs = collect_fit_sentences(f, unique=True)
>>> fs.sentences, fs.description == f"file:{f}", fs.max_length
(['你好', '再见'], True, 64)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.postprocess.whitening import Whitening

__all__ = [
    "EXPORT_FORMATS",
    "FIT_SPLITS",
    "FitSentences",
    "collect_fit_sentences",
    "pair_sentences",
    "read_sentence_file",
    "fit_whitening",
    "whitening_metadata",
    "export_whitening",
    "export_format",
    "st_pooling_mode",
    "load_faiss_metadata",
]

FIT_SPLITS = ("train", "valid", "test")
EXPORT_FORMATS = ("safetensors", "npz", "sentence-transformers", "faiss")
#: Max length (tokens, counting [CLS] and [SEP]) for sentences that come from a plain file.
FILE_MAX_LENGTH = 64
#: Distinct sentences encoded between two partial fits (bounds memory whatever the data size).
FIT_CHUNK = 8192
#: embedkit pooling -> sentence-transformers Pooling mode (the others have no ST equivalent).
_ST_POOLING = {"cls": "cls", "last-avg": "mean"}
_SUFFIX_FORMATS = {".safetensors": "safetensors", ".npz": "npz", ".faiss": "faiss"}


@dataclass
class FitSentences:
    """The sentences a postprocessor is fitted on and how they were chosen.

    ``description`` is what the records show (``task:ATEC:train+valid+test``,
    ``file:fit.txt``, comma-joined for several); ``max_length`` the default encoding length for
    them (the largest of the tasks' own, 64 for files); ``parts`` one entry per source.
    """

    sentences: list[str]
    description: str
    max_length: int = FILE_MAX_LENGTH
    unique: bool = False
    parts: list[dict] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """sha256 of the sentences joined by newlines (what ``fit_data_sha256`` records)."""
        from embedkit.provenance import sha256_text

        return sha256_text("\n".join(self.sentences))

    def record(self) -> dict:
        """JSON-ready summary."""
        return {"on": self.description, "n_sentences": len(self.sentences),
                "unique": self.unique, "sha256": self.sha256, "parts": self.parts}


def pair_sentences(splits: Sequence[Any]) -> list[str]:
    """Both sentences of every pair of the splits, in order: ``s1, s2, s1, s2, ...``."""
    return [t for s in splits for pair in zip(s.sentences1, s.sentences2, strict=True)
            for t in pair]


def read_sentence_file(path: str | os.PathLike, flag: str = "--fit-on") -> list[str]:
    """The non-blank lines of a UTF-8 file (kept as they are, blank lines dropped)."""
    from embedkit.io.textfile import read_sentences

    return read_sentences(path, f"{flag} sentence")


def _dedupe(sents: list[str], unique: bool) -> list[str]:
    return list(dict.fromkeys(sents)) if unique else sents


def _task_sentences(spec, splits: Sequence[str], data: dict | None, *, data_dir, source,
                    skip_invalid) -> tuple[list[str], str]:
    from embedkit.data import load_task

    data = dict(data or {})
    missing = [s for s in splits if s not in data]
    if missing:
        data.update(load_task(spec, missing, data_dir=data_dir, source=source,
                              skip_invalid=skip_invalid))
    chosen = [data[s] for s in splits]
    return pair_sentences(chosen), f"task:{spec.name}:{'+'.join(s.split for s in chosen)}"


def _is_sentence_file(item: str) -> bool:
    return Path(item).is_file() and not item.lower().endswith(".json")


def collect_fit_sentences(fit_on: str, spec=None, data: dict | None = None, *,
                          data_dir: str | os.PathLike | None = None, source: str = "auto",
                          skip_invalid: bool = False, unique: bool = False) -> FitSentences:
    """Resolve ``--fit-on`` into the sentences to fit on (see the module docstring).

    With ``spec`` (a :class:`~embedkit.data.TaskSpec`; ``data`` its already loaded splits) the
    relative forms apply: ``task``, a split name, or a file. Without it, the absolute forms:
    ``TASK``, ``TASK:SPLIT``, comma-separated lists of these, or a file.
    """
    from embedkit.data.spec import canonical_split

    if not isinstance(fit_on, str) or not fit_on.strip():
        raise ConfigError("--fit-on: empty; give task, a split name, TASK, TASK:SPLIT or a file")
    fit_on = fit_on.strip()
    kw = {"data_dir": data_dir, "source": source, "skip_invalid": skip_invalid}
    if spec is not None:
        if fit_on == "task":
            sents, what = _task_sentences(spec, list(spec.splits), data, **kw)
        elif canonical_split(fit_on) in FIT_SPLITS:
            split = canonical_split(fit_on)
            if split not in spec.splits:
                raise ConfigError(f"--fit-on {fit_on}: task {spec.name} has no {split} split "
                                  f"(it has {', '.join(spec.splits)})")
            sents, what = _task_sentences(spec, [split], data, **kw)
        elif Path(fit_on).is_file():
            sents, what = read_sentence_file(fit_on), f"file:{fit_on}"
            return FitSentences(_dedupe(sents, unique), what, spec.max_length, unique,
                                [{"on": what, "n_sentences": len(sents)}])
        else:
            raise ConfigError(f"--fit-on {fit_on!r} is neither task, train, valid, test nor a file")
        return FitSentences(_dedupe(sents, unique), what, spec.max_length, unique,
                            [{"on": what, "n_sentences": len(sents)}])

    sentences: list[str] = []
    parts: list[dict] = []
    lengths: list[int] = []
    for item in (s.strip() for s in fit_on.split(",")):
        if not item:
            continue
        if _is_sentence_file(item):
            sents, what = read_sentence_file(item), f"file:{item}"
            lengths.append(FILE_MAX_LENGTH)
        else:
            task_spec, splits = _parse_task_item(item)
            sents, what = _task_sentences(task_spec, splits, None, **kw)
            lengths.append(task_spec.max_length)
        sentences += sents
        parts.append({"on": what, "n_sentences": len(sents)})
    if not parts:
        raise ConfigError("--fit-on: empty; give TASK, TASK:SPLIT or a file")
    if not sentences:
        raise ConfigError(f"--fit-on {fit_on!r}: no sentences to fit on")
    return FitSentences(_dedupe(sentences, unique), ",".join(p["on"] for p in parts),
                        max(lengths), unique, parts)


def _parse_task_item(item: str):
    """``TASK`` -> (spec, every split); ``TASK:SPLIT`` -> (spec, [split])."""
    from embedkit.data import get_task
    from embedkit.data.spec import canonical_split

    hint = ("--fit-on {!r}: not a task name, TASK:SPLIT or an existing file of sentences "
            "(one a line)")
    if ":" in item:
        name, split = item.rsplit(":", 1)
        split = canonical_split(split)
        spec = _get_task_or_none(name)
        if spec is None:
            raise ConfigError(hint.format(item) + f"; unknown task {name!r}")
        if split not in spec.splits:
            raise ConfigError(f"--fit-on {item!r}: task {spec.name} has no {split} split "
                              f"(it has {', '.join(spec.splits)})")
        return spec, [split]
    spec = _get_task_or_none(item)
    if spec is None:
        if Path(item).exists() and not Path(item).is_file():
            raise ConfigError(f"--fit-on {item!r} is a folder; give a file with one sentence a line")
        try:
            get_task(item)  # re-raise the registry's own message (it lists the built-in tasks)
        except ConfigError as e:
            raise ConfigError(hint.format(item) + f" ({e})") from None
    return spec, list(spec.splits)


def _get_task_or_none(name: str):
    from embedkit.data import get_task

    try:
        return get_task(name)
    except ConfigError:
        if name.endswith(".json") and Path(name).is_file():
            raise  # a broken spec file: its own message says what is wrong
        return None


# -- fitting -----------------------------------------------------------------------------------

def _k_value(k: int | str | None) -> int | None:
    if k is None or (isinstance(k, str) and k.lower() == "all"):
        return None
    try:
        value = int(k)
    except (TypeError, ValueError):
        raise ConfigError(f"--k {k!r}: expected a positive integer or 'all'") from None
    if value < 1:
        raise ConfigError(f"--k {k!r}: expected a positive integer or 'all'")
    return value


def fit_whitening(encoder, pooling: str, sentences: Sequence[str], *, beta: float = 1.0,
                  gamma: float = 1.0, k: int | str | None = None, max_length: int = 64,
                  batch_size: int | None = None, eps: float = 1e-6,
                  chunk: int = FIT_CHUNK) -> Whitening:
    """Encode ``sentences`` with ``encoder``/``pooling`` and fit ``Whitening(beta, gamma, k)``.

    Every occurrence counts (pass unique sentences for unique fitting). Distinct sentences are
    encoded ``chunk`` at a time and their rows repeated by their counts into ``partial_fit``, so
    memory stays bounded and each sentence is encoded once; the statistics equal one ``fit`` on
    all vectors (up to float64 rounding).
    """
    from embedkit.encoders import parse_pooling

    pooling = parse_pooling(pooling)
    sentences = list(sentences)
    if not sentences:
        raise ConfigError("no sentences to fit the whitening on")
    n_components = _k_value(k)
    hidden = int(getattr(encoder.model.config, "hidden_size", 0) or 0)
    if n_components is not None and hidden and n_components > hidden:
        raise ConfigError(f"--k {n_components} is larger than the model's dimension d={hidden}; "
                          f"use k <= {hidden} or all")
    w = Whitening(beta=beta, gamma=gamma, n_components=n_components, eps=eps)
    w._check_params()  # bad beta/gamma/eps fail before any encoding
    counts: dict[str, int] = {}
    for s in sentences:
        counts[s] = counts.get(s, 0) + 1
    unique = list(counts)
    for start in range(0, len(unique), chunk):
        part = unique[start:start + chunk]
        vecs = encoder.encode(part, pooling, max_length=max_length, batch_size=batch_size)
        reps = np.fromiter((counts[s] for s in part), dtype=np.int64, count=len(part))
        w.partial_fit(np.repeat(vecs, reps, axis=0) if reps.max() > 1 else vecs)
    # derive now, so that rank warnings appear at fit time
    _ = w.kernel_
    return w


def whitening_metadata(whitening: Whitening, encoder, pooling: str, max_length: int,
                       fit: FitSentences, *, normalize: bool = False,
                       k: int | str | None = None) -> dict[str, Any]:
    """The metadata stored with an exported whitening map (checked when it is loaded)."""
    from embedkit import __version__

    return {
        "kind": "whitening",
        "beta": float(whitening.beta),
        "gamma": float(whitening.gamma),
        "k": int(whitening.n_components_),
        "k_spec": "all" if _k_value(k if k is not None else whitening.n_components) is None
        else str(int(whitening.n_components_)),
        "eps": float(whitening.eps),
        "model": encoder.identity,
        "model_name": encoder.name,
        "pooling": pooling,
        "max_length": int(max_length),
        "dtype": encoder.dtype_name,
        "lowercase": bool(encoder.lowercase),
        "fit_on": fit.description,
        "fit_unique": bool(fit.unique),
        "fit_data_sha256": fit.sha256,
        "n_samples": int(whitening.n_samples_seen_),
        "normalize": bool(normalize),
        "embedkit_version": __version__,
    }


# -- export ------------------------------------------------------------------------------------

def export_format(out: str | os.PathLike, fmt: str | None) -> str:
    """The export format: ``fmt`` if given (checked against a known suffix), else by suffix
    (``.npz``, ``.faiss``; anything else safetensors)."""
    suffix_fmt = _SUFFIX_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        return suffix_fmt or "safetensors"
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format {fmt!r}: valid formats: {', '.join(EXPORT_FORMATS)}")
    if suffix_fmt is not None and fmt != suffix_fmt and fmt != "faiss":
        raise ConfigError(f"--out {str(out)!r} has the suffix {Path(out).suffix!r} (for "
                          f"{suffix_fmt}) but --format is {fmt}; make them agree")
    return fmt


def st_pooling_mode(pooling: str) -> str:
    """The sentence-transformers Pooling mode for an embedkit pooling, or ConfigError."""
    from embedkit.encoders import parse_pooling

    p = parse_pooling(pooling)
    if p not in _ST_POOLING:
        raise ConfigError(
            f"pooling {p!r} cannot be written as a sentence-transformers Pooling module (only "
            "cls and last-avg/mean can); export it with --format safetensors, npz or faiss, "
            "which work with every pooling")
    return _ST_POOLING[p]


def export_whitening(out: str | os.PathLike, whitening: Whitening, fmt: str, *,
                     metadata: dict[str, Any], encoder=None, pooling: str | None = None,
                     max_length: int | None = None, normalize: bool = False) -> Path:
    """Write the fitted map ``(x + bias) @ kernel`` to ``out`` in ``fmt``; returns the path.

    - ``safetensors`` / ``npz``: :func:`~embedkit.postprocess.save_transform` with ``metadata``
      (``normalize`` is recorded there; the consumer applies it);
    - ``faiss``: a ``faiss.LinearTransform`` plus ``OUT.json`` holding ``metadata``;
    - ``sentence-transformers``: a model folder (needs ``encoder``, ``pooling`` and
      ``max_length``): Transformer + Pooling + Dense(W = kernel.T, b = bias @ kernel) [+
      Normalize], with ``embedkit_whitening.json`` holding ``metadata``. Written atomically.
    """
    from embedkit.io.atomic import atomic_write_json
    from embedkit.postprocess.export import save_faiss_transform, save_transform

    out = Path(out)
    fmt = export_format(out, fmt)
    kernel = np.asarray(whitening.kernel_, dtype=np.float64)
    bias = np.asarray(whitening.bias_, dtype=np.float64)
    meta = {**metadata, "normalize": bool(normalize)}
    if fmt in ("safetensors", "npz"):
        save_transform(out, kernel, bias, meta, format=fmt)
    elif fmt == "faiss":
        from embedkit import __version__

        save_faiss_transform(out, kernel, bias)
        d, k = kernel.shape
        atomic_write_json(faiss_metadata_path(out),
                          {"embedkit_version": __version__, **meta, "d": d, "k": k})
    else:
        if encoder is None or pooling is None or max_length is None:
            raise ConfigError("the sentence-transformers format needs the encoder, pooling and "
                              "max_length")
        _save_sentence_transformers(out, kernel, bias, meta, encoder=encoder, pooling=pooling,
                                    max_length=max_length, normalize=normalize)
    return out


def faiss_metadata_path(path: str | os.PathLike) -> Path:
    """Where the metadata of a FAISS transform lies: ``PATH.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_faiss_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata written beside a FAISS transform (``{}`` when there is none)."""
    meta = faiss_metadata_path(path)
    if not meta.is_file():
        return {}
    try:
        value = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{meta}: cannot read the transform's metadata ({e})") from None
    return value if isinstance(value, dict) else {}


def _import_st():
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError("--format sentence-transformers needs the sentence-transformers "
                          "package: pip install 'embedkit[st]'") from exc
    try:  # sentence-transformers >= 6 (the old path still works there, with a warning)
        from sentence_transformers.sentence_transformer.modules import (
            Dense,
            Normalize,
            Pooling,
            Transformer,
        )
    except ImportError:  # pragma: no cover - sentence-transformers 3 to 5
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer
    return torch, SentenceTransformer, Transformer, Pooling, Dense, Normalize


def _save_sentence_transformers(out: Path, kernel: np.ndarray, bias: np.ndarray,
                                meta: dict[str, Any], *, encoder, pooling: str, max_length: int,
                                normalize: bool) -> None:
    from embedkit.io.atomic import atomic_dir, atomic_write_json

    mode = st_pooling_mode(pooling)
    torch, SentenceTransformer, Transformer, Pooling, Dense, Normalize = _import_st()
    d, k = kernel.shape
    max_length = int(min(max_length, encoder.max_positions))
    transformer = Transformer(encoder.path, max_seq_length=max_length,
                              do_lower_case=bool(encoder.lowercase))
    width = (getattr(transformer, "get_embedding_dimension", None)
             or transformer.get_word_embedding_dimension)()
    if width != d:
        raise ConfigError(f"the model's dimension is {width} but the whitening map expects d={d}")
    weight = torch.tensor(kernel.T, dtype=torch.float32)
    b = torch.tensor(bias @ kernel, dtype=torch.float32)
    dense = Dense(d, k, bias=True, activation_function=torch.nn.Identity(),
                  init_weight=weight, init_bias=b)
    modules = [transformer, Pooling(d, pooling_mode=mode), dense]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu")
    with atomic_dir(out) as tmp:
        model.save(str(tmp))
        atomic_write_json(tmp / "embedkit_whitening.json", {**meta, "d": d, "k": k})
