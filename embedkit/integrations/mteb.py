"""embedkit encoders inside mteb 2.x (``pip install 'embedkit[mteb]'``).

:class:`MtebEncoder` wraps any :class:`~embedkit.encoders.SentenceEncoder` (a pooling, a max
length) and an optional **fitted** linear postprocessor (a fitted postprocessor chain, an
:class:`~embedkit.postprocess.AffineMap`, a :class:`~embedkit.postprocess.TransformFile` or the
path of a saved map) into an object ``mteb.evaluate(model, tasks)`` accepts: mteb's
``EncoderProtocol`` (``encode`` over mteb's DataLoader, cosine ``similarity`` and
``similarity_pairwise``, ``mteb_model_meta``). The map is fixed when the wrapper is built and
only applied in ``encode``: mteb's STS evaluator encodes ``sentence1`` and ``sentence2`` in two
calls, and a map fitted inside ``encode`` would transform the two sides differently.

The ``ModelMeta`` is named as :mod:`~embedkit.integrations.mteb_results` names a configuration
(mteb's naming of a model's variants): the base model (``moka-ai/m3e-small``, revision its
weights' hash; :func:`~embedkit.integrations.mteb_results.mteb_model_name`) when it runs as it is
by itself (default pooling, its own max length, no map), else ``<base> (pooling=cls,
post=..., post_sha256=<12 hex of the float32 map's sha256>)``, with every setting in
``loader_kwargs`` and no ``experiment_kwargs``. So each configuration has its own folder (the
one :func:`~embedkit.integrations.mteb_results.write_mteb_results` writes bench records to),
mteb's default ``ResultCache.load_results()`` reads it, and ``to_dataframe()`` gives it its own
column.

**Offline runs.** mteb loads a task's data from the hub (``AbsTask.load_data``) unless the
task says its data is loaded (``task.data_loaded``). :func:`local_task` is the supported way
to hand mteb local data: it reads the pairs with embedkit's loader (``data_dir``, or splits
already loaded), puts them in ``task.dataset`` as ``datasets.Dataset`` objects and sets
``data_loaded``; nothing is downloaded. The task keeps mteb's name and dataset revision only
when the pairs are mteb's data (the published files' sha256, see
:func:`~embedkit.integrations.mteb_results.dataset_identity`); other pairs make a task named
``<Task>-local-<8 hex>`` with revision ``local-sha256-<hex>`` (their checksum), so a result on
them can never be filed as mteb's task.

**Agreement with embedkit.** mteb takes cosine in float32 (``paired_cosine_distances`` on the
float32 vectors ``encode`` returns), embedkit in float64 rounded to 12 decimals
(:mod:`embedkit.evaluation.metrics`): pairs whose cosines differ by a float32 rounding can
tie in one and not in the other (identical sentences give cosine 1 in both, but e.g.
``0.99999994`` vs ``1.0`` in float32), which moves Spearman by about 1e-5 on the C-MTEB tasks;
mteb's min-max scaling of the gold scores is linear and changes nothing.

>>> import numpy as np, mteb
>>> from embedkit.data import PairSplit
>>> class Toy:   # any SentenceEncoder
...     name, identity, default_pooling, dim = "toy", "sha256:0", "cls", 2
...     def model_max_length(self): return 512
...     def describe(self): return {"name": self.name, "identity": self.identity}
...     def encode(self, sentences, pooling=None, *, max_length=64):
...         return np.array([[len(s), 1.0] for s in sentences], np.float32)
...     def encode_multi(self, sentences, poolings, *, max_length=64):
...         return {str(p): self.encode(sentences, p) for p in poolings}
>>> pairs = PairSplit("STS-B", "test", "-", "", ["a", "bb", "ccc", "dddd"],
...                   ["aa", "b", "cc", "d"], np.array([5.0, 1.0, 3.0, 2.0]))
>>> task = local_task("STS-B", data={"test": pairs})
>>> model = MtebEncoder(Toy(), pooling="cls")
>>> model.mteb_model_meta.name, model.mteb_model_meta.loader_kwargs
('embedkit/toy', {'pooling': 'cls', 'max_length': 512})
>>> MtebEncoder(Toy(), pooling="last-avg").mteb_model_meta.name
'embedkit/toy (pooling=last-avg)'
>>> res = mteb.evaluate(model, [task], cache=None, show_progress_bar=False)
>>> res.task_results[0].task_name, res.task_results[0].dataset_revision  # no checksum given
('STSB-local', 'local-unknown')
>>> mteb_score = res.task_results[0].get_score()
>>> from embedkit.evaluation.metrics import pair_scores
>>> ours = pair_scores(model.embed(pairs.sentences1), model.embed(pairs.sentences2), pairs.labels)
>>> round(float(mteb_score), 4), round(ours["spearman"], 4)
(0.3162, 0.3162)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.data import PairSplit, get_task, load_task
from embedkit.data.spec import TaskSpec
from embedkit.encoders import EncoderConfig, SentenceEncoder, as_encoder
from embedkit.errors import ConfigError
from embedkit.integrations.mteb_results import (
    LANGUAGES,
    annotate_run_settings,
    dataset_identity,
    model_settings,
    mteb_model_name,
    mteb_split_name,
    mteb_task_name,
    result_folder,
    result_root,
    variant_name,
    variant_settings,
)
from embedkit.store.fitted import fitted_post

try:
    import mteb
    from datasets import Dataset, DatasetDict
    from mteb.abstasks import AbsTask
    from mteb.models.model_meta import ModelMeta, ScoringFunction
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("embedkit.integrations.mteb needs mteb 2.x: "
                      "pip install 'embedkit[mteb]'") from exc

__all__ = ["MtebEncoder", "evaluate_encoder", "evaluate_local", "local_task", "result_root"]


class MtebEncoder:
    """An embedkit encoder (+ a fixed postprocessor) as an mteb 2.x ``EncoderProtocol``.

    ``encoder``: a SentenceEncoder, an :class:`EncoderConfig` or a model name; ``pooling``:
    default the encoder's; ``max_length``: default the model's own (C-MTEB's protocol);
    ``post``: see :func:`~embedkit.store.fitted.fitted_post` (a transform file fitted for another
    model, pooling or dimension is refused; ``force`` warns instead); ``name``/``revision``
    override the configuration's name and the model's revision (see the module docstring).
    ``encode`` returns float32 vectors, as a sentence-transformers model does.
    """

    def __init__(self, encoder: SentenceEncoder | EncoderConfig | str, post: Any = None, *,
                 pooling: str | None = None, max_length: int | None = None,
                 name: str | None = None, revision: str | None = None,
                 force: bool = False) -> None:
        self.encoder = as_encoder(encoder)
        self.pooling = str(pooling or self.encoder.default_pooling)
        self.max_length = int(max_length or self.encoder.model_max_length())
        self.post = fitted_post(post, encoder=self.encoder, pooling=self.pooling, force=force)
        described = self.encoder.describe()
        base_name, base_rev = mteb_model_name(described)
        if name is not None and "/" not in name:
            raise ConfigError(f"mteb model names are 'organization/model', not {name!r}",
                              param="name")
        settings = model_settings(described, self.pooling, self.max_length,
                                  self.post.spec if self.post else None,
                                  post_sha256=self.post.sha256 if self.post else None)
        variant = variant_settings(described, settings,
                                   model_max_length=self.encoder.model_max_length(),
                                   default_pooling=str(self.encoder.default_pooling))
        dim = self.post.map.k if self.post else (self.encoder.dim or None)
        full_name = name or variant_name(base_name, variant)
        self._meta = ModelMeta.create_empty(overwrites=dict(
            name=full_name, revision=revision or base_rev, loader_kwargs=settings,
            adapted_from=base_name if full_name != base_name else None,
            languages=list(LANGUAGES), similarity_fn_name=ScoringFunction.COSINE,
            modalities=["text"], max_tokens=self.max_length, embed_dim=dim,
            use_instructions=False))

    @property
    def mteb_model_meta(self) -> ModelMeta:
        """The model's metadata (name, revision, loader_kwargs) mteb files results under."""
        return self._meta

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, k)`` float32 vectors: the encoder's, then the fixed map (if any)."""
        vecs = self.encoder.encode(list(texts), self.pooling, max_length=self.max_length)
        if self.post is not None:
            vecs = self.post.map.apply(vecs)
        return np.asarray(vecs, dtype=np.float32)

    def encode(self, inputs: Iterable[Mapping[str, Any]], *, task_metadata: Any = None,
               hf_split: str = "", hf_subset: str = "", prompt_type: Any = None,
               **kwargs: Any) -> np.ndarray:
        """mteb's ``encode``: the batches' ``text`` column, embedded in one call (embedkit sorts
        by length, de-duplicates and caches), in input order."""
        texts = [str(t) for batch in inputs for t in batch["text"]]
        return self.embed(texts)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Cosine similarity matrix ``(n1, n2)``."""
        a, b = _unit(embeddings1), _unit(embeddings2)
        return a @ b.T

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Row-wise cosine similarity ``(n,)``."""
        return np.einsum("ij,ij->i", _unit(embeddings1), _unit(embeddings2))


def _unit(x: Any) -> np.ndarray:
    x = np.asarray(x.cpu().numpy() if hasattr(x, "cpu") else x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _cmteb_splits(spec: TaskSpec, splits: Sequence[str] | None,
                  data_dir: str | os.PathLike | None, source: str) -> dict[str, PairSplit]:
    """The task's local pairs for ``splits`` (default: the C-MTEB protocol's)."""
    from embedkit.evaluation.protocols import get_protocol

    wanted = get_protocol("cmteb").splits(spec, tuple(splits or ()))
    return load_task(spec, wanted, data_dir=data_dir, source=source)


def local_task(task: str | TaskSpec, splits: Sequence[str] | None = None, *,
               data_dir: str | os.PathLike | None = None, source: str = "auto",
               data: Mapping[str, PairSplit] | None = None, mteb_name: str | None = None
               ) -> Any:
    """An mteb task whose data is embedkit's local pairs, marked loaded (no download).

    ``task``: an embedkit task (name or spec); ``mteb_name``: the mteb task whose evaluation
    (metadata, main score) runs on them, by default the task's C-MTEB name (a task of one's own
    must name one, e.g. ``"STSB"``). The result carries that task's name and dataset revision
    only for mteb's own data; other pairs are ``<name>-local-<8 hex>`` at revision
    ``local-sha256-<hex>`` (see the module docstring). ``data``: splits already loaded
    (``{split: PairSplit}``), else ``splits`` (default: the C-MTEB protocol's) are read from
    ``data_dir`` (or the hub, as embedkit's ``source`` says).
    """
    spec = task if isinstance(task, TaskSpec) else get_task(str(task))
    name = mteb_name or mteb_task_name(spec.name)
    if data is None:
        data = _cmteb_splits(spec, splits, data_dir, source)
    try:
        mt = mteb.get_task(name, eval_splits=[mteb_split_name(s) for s in data])
    except Exception as e:  # noqa: BLE001 - mteb raises KeyError / ValueError for unknown names
        raise ConfigError(f"{spec.name}: no mteb task {name!r} to evaluate it as ({e}); "
                          "pass mteb_name, e.g. 'STSB'", param="mteb_name") from None
    task_name, revision = dataset_identity(name, {s: {"source": d.source, "sha256": d.sha256}
                                                  for s, d in data.items()})
    if (task_name, revision) != (mt.metadata.name, mt.metadata.revision):
        dataset = {**mt.metadata.dataset, "revision": revision}
        mt.metadata = mt.metadata.model_copy(update={"name": task_name, "dataset": dataset})
    mt.dataset = {"default": DatasetDict({
        mteb_split_name(s): Dataset.from_dict({
            "sentence1": list(d.sentences1), "sentence2": list(d.sentences2),
            "score": [float(x) for x in d.labels]})
        for s, d in data.items()})}
    mt.data_loaded = True
    return mt


def evaluate_local(model: MtebEncoder, tasks: Sequence[str | TaskSpec | Any], *,
                   data_dir: str | os.PathLike | None = None,
                   cache_path: str | os.PathLike | None = None,
                   splits: Sequence[str] | None = None, source: str = "auto",
                   mteb_names: Mapping[str, str] | None = None, **evaluate_kwargs: Any) -> Any:
    """``mteb.evaluate(model, tasks)`` on embedkit's local data (:func:`local_task`), offline.

    With ``cache_path`` the results go to ``mteb.ResultCache(cache_path)`` (``cache_path/results``)
    and each task's line of ``run_settings.jsonl`` gets an ``embedkit`` entry: protocol
    ``mteb``, the local files and their sha256, so :mod:`embedkit.runs.compare` can tell
    that the numbers were computed on the same data as a bench record's. Returns mteb's
    ``ModelResult``. ``mteb_names``: ``{task: mteb task}`` for tasks that are not C-MTEB's.
    A task may also be an mteb task object (``mteb.get_task(...)``, a task of one's own): it is
    evaluated on its own data as mteb loads it (:mod:`embedkit.runs.mteb_tasks` loads
    it first, offline when the hub is out of reach) and its entry records its dataset.
    """
    loaded: dict[str, Any] = {}
    mteb_tasks = []
    for item in tasks:
        if isinstance(item, AbsTask):  # mteb's own task: its data, as mteb loads it
            mteb_tasks.append(item)
            loaded[item.metadata.name] = {"dataset": dict(item.metadata.dataset)}
            continue
        spec = item if isinstance(item, TaskSpec) else get_task(str(item))
        data = _cmteb_splits(spec, splits, data_dir, source)
        task = local_task(spec, data=data, mteb_name=(mteb_names or {}).get(spec.name))
        loaded[task.metadata.name] = {s: {"source": d.source, "sha256": d.sha256,
                                          "n_pairs": d.n_pairs} for s, d in data.items()}
        mteb_tasks.append(task)
    cache = mteb.ResultCache(cache_path=Path(cache_path)) if cache_path is not None else None
    evaluate_kwargs.setdefault("show_progress_bar", False)
    result = mteb.evaluate(model, mteb_tasks, cache=cache, **evaluate_kwargs)
    if cache_path is not None:
        meta = model.mteb_model_meta
        folder = result_folder(result_root(cache_path), str(meta.name), str(meta.revision))
        for name, data in loaded.items():
            annotate_run_settings(folder, name, {
                "kind": "mteb", "protocol": "mteb", "evaluator": "mteb",
                "model": model.encoder.describe(), "max_length": model.max_length,
                "post": model.post.spec if model.post else None, "data": data})
    return result


def evaluate_encoder(encoder: SentenceEncoder | EncoderConfig | str,
                     tasks: Sequence[str | TaskSpec], *, pooling: str | None = None,
                     max_length: int | None = None, post: Any = None,
                     data_dir: str | os.PathLike | None = None,
                     cache_path: str | os.PathLike | None = None, **kwargs: Any) -> Any:
    """:func:`evaluate_local` for a plain embedkit encoder: wrapped in :class:`MtebEncoder`
    (``pooling`` default the encoder's, ``max_length`` the model's own, as C-MTEB's protocol;
    ``post`` a fitted map), then scored by mteb on the tasks' local data. ``kwargs`` go to
    :func:`evaluate_local` (``splits``, ``source``, ``mteb_names``) and on to ``mteb.evaluate``.
    The compare report (``benchmarks/report_compare.py``, outside the package) is handed this
    function."""
    model = MtebEncoder(encoder, post, pooling=pooling, max_length=max_length)
    return evaluate_local(model, tasks, data_dir=data_dir, cache_path=cache_path, **kwargs)
