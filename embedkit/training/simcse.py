"""SimCSE fine-tuning: unsupervised (dropout as the only augmentation), supervised InfoNCE with
in-batch (and optional hard) negatives, and CoSENT on graded pairs.

Unsupervised SimCSE (Gao et al. 2021) encodes each sentence of a batch twice; dropout makes the
two vectors differ, and InfoNCE over the in-batch cosine similarities divided by a temperature
treats the paired copy as the positive and every other sentence as a negative. There is no MLM
loss and no MLP head: the vectors are the chosen embedkit pooling of the encoder (the same
:func:`embedkit.encoders.pooling.pool` used to evaluate), so the trained folder is evaluated
exactly as it was trained. The defaults are those of the Chinese SimCSE experiments: dropout
0.3, batch 64, lr 1e-5, one epoch, 10,000 sentences sampled from the task, temperature 0.05,
max length = the task's (64; 128 for PAWSX). The optimizer is AdamW (no weight decay), the
schedule linear decay to 0 (as the SimCSE code's transformers Trainer), gradients clipped to 1.

Tiny example (``tiny-bert`` a local model folder, ``corpus.txt`` one sentence a line)::

    >>> from embedkit.training import SimCSEConfig, train_simcse
    >>> cfg = SimCSEConfig(model="tiny-bert", corpus="corpus.txt", out_dir="simcse-out",
    ...                    pooling="cls", batch_size=8, lr=1e-3)            # doctest: +SKIP
    >>> result = train_simcse(cfg)                                        # doctest: +SKIP
    >>> result.steps, round(result.final_loss, 2)                         # doctest: +SKIP
    (5, 1.23)

The output folder loads with ``AutoModel.from_pretrained``, ``SentenceTransformer`` (cls and
last-avg poolings) and ``embedkit bench --model DIR`` (which then uses the trained pooling).

Exact resume
------------
Every ``save_every`` steps a checkpoint (model, optimizer, scheduler, torch RNG states, step,
per-epoch data order, losses and the sampled examples themselves) is written to
``<out>.checkpoints/step-NNNNNN``. ``resume=`` (``--resume DIR``) continues from it to the same
final weights, bit for bit, as an uninterrupted run, provided it runs on the same device type,
with the same dtype, the same torch/transformers versions and the same number of CPU threads
(``torch.get_num_threads()``: the reduction order of CPU kernels depends on it; a difference is
warned about). On CUDA it also needs deterministic kernels (``CUBLAS_WORKSPACE_CONFIG=:4096:8``
and ``torch.use_deterministic_algorithms(True)`` set by the caller); embedkit uses no
randomness besides torch's (Python's ``random`` and NumPy are not used).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embedkit.io.atomic import atomic_dir
from embedkit.encoders.models import declared_pooling, is_local, model_identity, resolve_model_path
from embedkit.encoders.pooling import layers_needed, parse_pooling, pool
from embedkit.errors import ConfigError, EmbedkitError
from embedkit.provenance import library_versions, machine_description
from embedkit.training.checkpoint import (
    DROPOUT_KEYS,
    STATE_DIR,
    check_out_dir,
    find_checkpoint,
    prune_checkpoints,
    save_model_folder,
)
from embedkit.training.data import (
    Pairs,
    corpus_sentences,
    evaluation_overlap,
    examples_sha256,
    infonce_examples,
    load_pairs,
    read_triplets,
    sample_examples,
    task_sentences,
)
from embedkit.training.losses import cosent_loss, infonce_loss, simcse_loss

UNSUPERVISED_DROPOUT = 0.3
UNSUPERVISED_MAX_SENTENCES = 10_000
STATE_FORMAT = 1
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
#: settings that may differ when resuming (they do not change the weights, or only warn)
_FREE_ON_RESUME = {"out_dir", "save_every", "keep_checkpoints", "checkpoint_dir", "log_every",
                   "stop_at", "data_dir", "source", "skip_invalid", "progress", "device"}

EXACT_RESUME_REQUIRES = (
    "same device type, dtype, torch/transformers versions and CPU thread count "
    "(torch.get_num_threads()); on CUDA also deterministic kernels "
    "(CUBLAS_WORKSPACE_CONFIG=:4096:8, torch.use_deterministic_algorithms(True))")


class TrainingWarning(UserWarning):
    """A training problem worth knowing that does not stop the run (e.g. train/test overlap)."""


def _warn(message: str) -> None:
    warnings.warn(message, TrainingWarning, stacklevel=3)
    print(f"embedkit: warning: {message}", file=sys.stderr)


@dataclass
class SimCSEConfig:
    """Every setting of a training run (recorded in ``embedkit.json`` and the checkpoints).

    Data (exactly one source): ``tasks`` (names or spec files: every split's sentences, no
    labels) or ``corpus`` (one sentence a line) for unsupervised SimCSE; ``supervised=True``
    with ``pairs`` (TSV files ``s1<TAB>s2<TAB>label``, spec files or ``TASK:split``) and/or
    ``triplets`` (``anchor<TAB>positive<TAB>negative``) for supervised training.

    ``None`` means: ``pooling`` the model's declared one (else cls); ``dropout`` 0.3
    unsupervised, the model's own supervised; ``max_sentences`` 10,000 unsupervised, all
    supervised (0: all); ``max_length`` the task's (64 for files).
    """

    model: str = "m3e-small"
    out_dir: str | None = None
    pooling: str | None = None
    tasks: list[str] | None = None
    corpus: str | None = None
    supervised: bool = False
    pairs: list[str] | None = None
    triplets: str | None = None
    hard_negatives: bool = False
    loss: str = "infonce"
    threshold: float = 1.0
    negative_max: float = 0.0
    dropout: float | None = None
    batch_size: int = 64
    lr: float = 1e-5
    epochs: int = 1
    max_sentences: int | None = None
    temperature: float = 0.05
    cosent_scale: float = 20.0
    max_length: int | None = None
    seed: int = 42
    device: str = "cpu"
    dtype: str = "float32"
    grad_accum: int = 1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    save_every: int = 0
    keep_checkpoints: int = 1
    checkpoint_dir: str | None = None
    log_every: int = 10
    stop_at: int | None = None
    data_dir: str | None = None
    source: str = "auto"
    skip_invalid: bool = False
    progress: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if isinstance(self.pairs, str):
            self.pairs = [self.pairs]
        if self.dtype in _DTYPES:
            self.dtype = _DTYPES[self.dtype]
        for name in ("out_dir", "corpus", "triplets", "checkpoint_dir", "data_dir"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                setattr(self, name, str(v))

    @property
    def method(self) -> str:
        if not self.supervised:
            return "simcse-unsupervised"
        return "cosent" if self.loss == "cosent" else "simcse-supervised"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad setting."""
        if self.loss not in ("infonce", "cosent"):
            raise ConfigError(f"--loss {self.loss!r}: choose infonce or cosent")
        if self.loss == "cosent" and not self.supervised:
            raise ConfigError("--loss cosent trains on labelled pairs: add --supervised --pairs ...")
        if self.supervised:
            if self.tasks or self.corpus:
                raise ConfigError("--supervised takes its data from --pairs/--triplets, not "
                                  "--tasks/--corpus")
            if not self.pairs and not self.triplets:
                raise ConfigError("--supervised needs --pairs FILE|TASK:split or --triplets FILE")
            if self.loss == "cosent" and (self.triplets or self.hard_negatives):
                raise ConfigError("--triplets and --hard-negatives apply to --loss infonce, not "
                                  "cosent")
            if self.hard_negatives and not self.pairs:
                raise ConfigError("--hard-negatives draws negatives from label-0 pairs: give "
                                  "--pairs (or use --triplets alone)")
        else:
            if bool(self.tasks) == bool(self.corpus):
                raise ConfigError("give exactly one of --tasks and --corpus (or --supervised "
                                  "with --pairs)" if self.tasks else
                                  "no training data: give --tasks NAMES or --corpus FILE")
            if self.pairs or self.triplets or self.hard_negatives:
                raise ConfigError("--pairs, --triplets and --hard-negatives need --supervised")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size {self.batch_size}: in-batch negatives need a batch "
                              "of at least 2")
        checks = [
            (self.lr > 0 and math.isfinite(self.lr), f"--lr {self.lr} must be positive"),
            (self.epochs >= 1, f"--epochs {self.epochs} must be at least 1"),
            (self.temperature > 0, f"--temperature {self.temperature} must be positive"),
            (self.cosent_scale > 0, f"cosent scale {self.cosent_scale} must be positive"),
            (self.dropout is None or 0 <= self.dropout < 1,
             f"--dropout {self.dropout} must be in [0, 1)"),
            (self.max_sentences is None or self.max_sentences >= 0,
             f"--max-sentences {self.max_sentences} must be >= 0 (0: all)"),
            (self.max_length is None or self.max_length >= 3,
             f"--max-length {self.max_length} must be at least 3 ([CLS], a token, [SEP])"),
            (self.grad_accum >= 1, f"--grad-accum {self.grad_accum} must be at least 1"),
            (self.warmup_steps >= 0, f"--warmup-steps {self.warmup_steps} must be >= 0"),
            (self.weight_decay >= 0, f"--weight-decay {self.weight_decay} must be >= 0"),
            (self.save_every >= 0, f"--save-every {self.save_every} must be >= 0 (0: never)"),
            (self.keep_checkpoints >= 0, "--keep-checkpoints must be >= 0 (0: keep all)"),
            (self.log_every >= 1, f"--log-every {self.log_every} must be at least 1"),
            (self.stop_at is None or self.stop_at >= 1, f"--stop-at {self.stop_at} must be >= 1"),
            (self.dtype in _DTYPES, f"--dtype {self.dtype!r}: training supports float32 and "
                                    "bfloat16 (autocast); float16 would need loss scaling"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.out_dir is None:
            raise ConfigError("--out DIR is required (where the trained model folder goes)")
        if self.pooling:
            parse_pooling(self.pooling)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> SimCSEConfig:
        """The configuration a checkpoint was written with (``path`` as for ``--resume``)."""
        state = _read_state(find_checkpoint(path))
        return cls(**state["config"])


@dataclass
class TrainResult:
    """What :func:`train_simcse` did. ``model`` and ``tokenizer`` are the trained objects in
    memory (in training mode, on the training device); ``out_dir`` is None when the run stopped
    early (``stop_at``) with only a checkpoint written."""

    out_dir: Path | None
    checkpoint: Path | None
    steps: int
    total_steps: int
    complete: bool
    final_loss: float | None
    losses: list[float]
    seconds_per_step: float
    record: dict
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)


# -- model ----------------------------------------------------------------------------------
def load_training_model(path: str, dropout: float | None, revision: str | None = None
                        ) -> tuple[Any, Any, dict]:
    """Load model and tokenizer with ``dropout`` set on the config (hidden and attention
    dropout; ``None`` keeps the model's). Returns (model, tokenizer, the config's original
    dropout values)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        cfg = AutoConfig.from_pretrained(path, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    except OSError as e:
        raise EmbedkitError(f"cannot load model {path!r}: {str(e).splitlines()[0]}") from None
    original = {k: getattr(cfg, k) for k in DROPOUT_KEYS if isinstance(getattr(cfg, k, None), float)}
    if dropout is not None:
        if not original:
            raise ConfigError(f"{path}: its config has none of {', '.join(DROPOUT_KEYS)}; "
                              "cannot set the training dropout")
        for k in original:
            setattr(cfg, k, float(dropout))
    model, info = AutoModel.from_pretrained(path, config=cfg, revision=revision,
                                            output_loading_info=True)
    if getattr(model, "pooler", None) is not None and any(
            "pooler" in k for k in info.get("missing_keys", [])):
        model.pooler = None  # never train or save a randomly initialised pooler
    return model, tokenizer, original


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was given but torch sees no CUDA device; use --device cpu")
    return dev


# -- data -----------------------------------------------------------------------------------
def _prepare_data(cfg: SimCSEConfig) -> tuple[list, dict, int, dict | None]:
    """(examples, description, default max length, overlap) for a fresh run."""
    overlap = None
    if not cfg.supervised:
        if cfg.tasks:
            sents, desc, max_len = task_sentences(cfg.tasks, data_dir=cfg.data_dir,
                                                  source=cfg.source, skip_invalid=cfg.skip_invalid)
        else:
            sents, desc = corpus_sentences(cfg.corpus)
            max_len = 64
        k = UNSUPERVISED_MAX_SENTENCES if cfg.max_sentences is None else cfg.max_sentences
        examples, _ = sample_examples(sents, k, cfg.seed)
        if len(examples) < 2:
            where = f"tasks {','.join(cfg.tasks)}" if cfg.tasks else f"corpus {cfg.corpus}"
            raise ConfigError(f"{where} gave {len(examples)} sentence(s); SimCSE needs at least 2")
        desc.update(available=len(sents), sampled=len(examples), sample_seed=cfg.seed,
                    sha256=examples_sha256(examples))
        return examples, desc, max_len, overlap

    pairs = Pairs()
    for arg in cfg.pairs or []:
        split, what, ml = load_pairs(arg, data_dir=cfg.data_dir, source=cfg.source,
                                     skip_invalid=cfg.skip_invalid)
        pairs.add(split, what, ml)
    desc: dict = {"kind": "pairs", "sources": pairs.sources, "n_pairs": len(pairs.labels)}
    max_len = pairs.max_length or 64
    check = list(zip(pairs.sentences1, pairs.sentences2, strict=True))
    if cfg.loss == "cosent":
        examples = [(a, b, y) for a, b, y in zip(pairs.sentences1, pairs.sentences2, pairs.labels, strict=True)]
        if len(set(pairs.labels)) < 2:
            raise ConfigError("CoSENT ranks pairs by label, and every pair has the same label "
                              f"({pairs.labels[0] if pairs.labels else 'no pairs'})")
    else:
        examples, info = infonce_examples(pairs, cfg.threshold, hard_negatives=cfg.hard_negatives,
                                          negative_max=cfg.negative_max, seed=cfg.seed)
        desc.update(info, threshold=cfg.threshold)
        if cfg.pairs and not examples:
            raise ConfigError(f"no pair has a label >= --threshold {cfg.threshold}; for 0-5 "
                              "scores pass e.g. --threshold 4")
        if cfg.hard_negatives:
            desc["negative_max"] = cfg.negative_max
            if info["with_hard_negative"] == 0:
                raise ConfigError(f"--hard-negatives: no positive pair shares a sentence with a "
                                  f"pair labelled <= {cfg.negative_max}; none found")
        if cfg.triplets:
            trip, tdesc = read_triplets(cfg.triplets)
            examples += trip
            desc["triplets"] = tdesc
            check += [(a, p) for a, p, _ in trip]
    k = cfg.max_sentences or None
    examples, _ = sample_examples(examples, k, cfg.seed)
    if len(examples) < 2:
        raise ConfigError(f"only {len(examples)} training example(s); need at least 2")
    desc.update(sampled=len(examples), sample_seed=cfg.seed, sha256=examples_sha256(examples))
    overlap = evaluation_overlap(check, data_dir=cfg.data_dir)
    hits = {k: v for k, v in overlap.items() if v["overlap"]}
    if hits:
        parts = [f"{k} {v['overlap']} of {v['n_pairs']} pairs ({100 * v['overlap'] / v['n_pairs']:.1f}%)"
                 for k, v in hits.items()]
        _warn("training pairs overlap evaluation pairs (exact matches, either order): "
              + "; ".join(parts) + "; scores on those splits will be inflated")
    return examples, desc, max_len, overlap


class _Batches:
    """Tokenised examples and the loss of a micro-batch (a list of example indices)."""

    def __init__(self, method: str, examples: list, tokenizer, max_length: int, pooling: str,
                 cfg: SimCSEConfig, device: torch.device):
        self.method, self.examples, self.pooling, self.cfg, self.device = (
            method, examples, pooling, cfg, device)
        def texts_of(e) -> list[str]:
            if isinstance(e, str):
                return [e]
            return [t for t in (e[:2] if method == "cosent" else e) if t is not None]

        texts = list(dict.fromkeys(t for e in examples for t in texts_of(e)))
        ids = tokenizer(texts, truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        self.ids = dict(zip(texts, ids, strict=True))
        self.pad_id = tokenizer.pad_token_id or 0
        self.need_hidden = layers_needed(pooling) is not None

    def _embed(self, model, texts: list[str]) -> torch.Tensor:
        seqs = [self.ids[t] for t in texts]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            input_ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, :len(s)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        out = model(input_ids=input_ids, attention_mask=mask,
                    token_type_ids=torch.zeros_like(input_ids),
                    output_hidden_states=self.need_hidden, return_dict=True)
        return pool(self.pooling, out, mask, model)

    def loss(self, model, idx: list[int]) -> torch.Tensor:
        ex = [self.examples[i] for i in idx]
        n = len(ex)
        if self.method == "simcse-unsupervised":
            z = self._embed(model, ex + ex)           # one pass, two dropout masks per sentence
            return simcse_loss(z[:n], z[n:], self.cfg.temperature)
        if self.method == "cosent":
            z = self._embed(model, [e[0] for e in ex] + [e[1] for e in ex])
            cos = torch.nn.functional.cosine_similarity(z[:n], z[n:], dim=-1)
            labels = torch.tensor([float(e[2]) for e in ex], device=cos.device)
            return cosent_loss(cos, labels, self.cfg.cosent_scale)
        negs = [e[2] for e in ex if e[2] is not None]
        z = self._embed(model, [e[0] for e in ex] + [e[1] for e in ex] + negs)
        return infonce_loss(z[:n], z[n:2 * n], z[2 * n:] if negs else None, self.cfg.temperature)


def _plan(n: int, batch: int, accum: int, epochs: int) -> list[list[tuple[int, int, int]]]:
    """Optimizer steps, each a list of micro-batches (epoch, start, end) into that epoch's order.
    A last micro-batch of fewer than 2 examples is dropped (no in-batch negative)."""
    steps = []
    for e in range(epochs):
        micro = [(e, s, min(s + batch, n)) for s in range(0, n, batch) if min(s + batch, n) - s >= 2]
        steps += [micro[i:i + accum] for i in range(0, len(micro), accum)]
    return steps


def _read_state(ckpt: Path) -> dict:
    try:
        state = json.loads((ckpt / STATE_DIR / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{ckpt}: unreadable training state ({e})") from None
    if state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{ckpt}: training state format {state.get('format')} is not "
                          f"{STATE_FORMAT}; resume with the embedkit version that wrote it")
    return state


def _check_resume(cfg: SimCSEConfig, stored: SimCSEConfig) -> SimCSEConfig:
    """Fill ``cfg``'s unset fields from ``stored``; ConfigError on settings that would change the
    result."""
    merged = {}
    bad = []
    defaults = SimCSEConfig()
    for f in dataclasses.fields(SimCSEConfig):
        mine, theirs = getattr(cfg, f.name), getattr(stored, f.name)
        if f.name == "pooling" and mine is not None:
            mine = parse_pooling(mine)
        if f.name == "stop_at":
            merged[f.name] = mine  # never inherited: the stored run may have stopped there
        elif f.name in _FREE_ON_RESUME:
            merged[f.name] = mine if mine is not None else theirs
        elif mine is None or mine == theirs:
            merged[f.name] = theirs
        elif mine == getattr(defaults, f.name):
            merged[f.name] = theirs  # left at its default: take the checkpoint's
        else:
            bad.append(f"{f.name} {mine!r} (checkpoint: {theirs!r})")
    if bad:
        raise ConfigError("--resume: these settings differ from the checkpoint's and would change "
                          "the result: " + "; ".join(bad))
    return SimCSEConfig(**merged)


def _rng_state(device: torch.device) -> dict:
    st = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["cpu"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


# -- training -------------------------------------------------------------------------------
def train_simcse(config: SimCSEConfig | None = None, *, resume: str | Path | None = None,
                 command: str | None = None, **overrides) -> TrainResult:
    """Train and save a model folder; see the module docstring.

    ``config`` (or keyword overrides of :class:`SimCSEConfig` fields) says what to train.
    ``resume`` names a checkpoint (or a folder of them, or the output folder) to continue; the
    run's settings and sampled data then come from the checkpoint, and any setting given that
    would change the result must match it.

    >>> train_simcse(model="x", corpus="c.txt", out_dir="o", batch_size=1)
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: --batch-size 1: in-batch negatives need a batch of at least 2
    """
    t_start = time.perf_counter()
    ckpt = state = None
    if resume is not None:
        ckpt = find_checkpoint(resume)
        state = _read_state(ckpt)
        stored = SimCSEConfig(**state["config"])
        given = dataclasses.replace(config, **overrides) if config else SimCSEConfig(
            **{**{f.name: None for f in dataclasses.fields(SimCSEConfig)}, **overrides})
        cfg = _check_resume(given, stored)
    else:
        cfg = dataclasses.replace(config, **overrides) if config else SimCSEConfig(**overrides)
    cfg.validate()
    device = _device(cfg.device)
    dtype = _DTYPES[cfg.dtype]
    threads = torch.get_num_threads()
    out_dir = Path(cfg.out_dir)
    ckpt_root = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else \
        out_dir.parent / f"{out_dir.name}.checkpoints"

    if state is None:
        base_path = resolve_model_path(cfg.model)
        check_out_dir(out_dir, base_path)
        examples, data_desc, default_len, overlap = _prepare_data(cfg)
        pooling = parse_pooling(cfg.pooling or declared_pooling(
            base_path if is_local(base_path) else None) or "cls")
        dropout = cfg.dropout if cfg.dropout is not None else (
            None if cfg.supervised else UNSUPERVISED_DROPOUT)
        cfg = dataclasses.replace(cfg, pooling=pooling, max_length=cfg.max_length or default_len,
                                  dropout=dropout,
                                  max_sentences=cfg.max_sentences if cfg.max_sentences is not None
                                  else (0 if cfg.supervised else UNSUPERVISED_MAX_SENTENCES))
        torch.manual_seed(cfg.seed)  # any weights the checkpoint lacks are initialised alike
        model, tokenizer, base_dropout = load_training_model(base_path, dropout)
        cap = getattr(model.config, "max_position_embeddings", None)
        if isinstance(cap, int) and cfg.max_length > cap:  # as the Encoder does
            cfg = dataclasses.replace(cfg, max_length=cap)
        base = {"name": cfg.model, "path": base_path,
                "identity": model_identity(base_path, getattr(model.config, "_commit_hash", None))}
        losses: list[float] = []
        resumed_from: list[str] = []
        seconds_before = 0.0
    else:
        check_out_dir(out_dir, state["base_model"]["path"])
        examples = json.loads((ckpt / STATE_DIR / "examples.json").read_text(encoding="utf-8"))
        if cfg.supervised and cfg.loss != "cosent":
            examples = [tuple(e) for e in examples]
        elif cfg.supervised:
            examples = [(e[0], e[1], float(e[2])) for e in examples]
        if examples_sha256(examples) != state["data"]["sha256"]:
            raise ConfigError(f"{ckpt}: the stored examples do not match their recorded sha256")
        data_desc, overlap, base = state["data"], state.get("overlap"), state["base_model"]
        pooling = cfg.pooling
        model, tokenizer, _ = load_training_model(str(ckpt), cfg.dropout)
        base_dropout = state["base_dropout"]
        losses = list(state["losses"])
        resumed_from = [*state.get("resumed_from", []), str(ckpt)]
        seconds_before = float(state.get("seconds_training", 0.0))
        if state.get("threads") != threads:
            _warn(f"resuming with {threads} CPU threads; the checkpoint was written with "
                  f"{state.get('threads')}: the weights may differ in the last bits from an "
                  "uninterrupted run")
        if state.get("device_type") != device.type or state.get("torch") != torch.__version__:
            _warn(f"resuming on {device.type} with torch {torch.__version__}; the checkpoint was "
                  f"written on {state.get('device_type')} with torch {state.get('torch')}: the "
                  "result will not be bit-identical to an uninterrupted run")

    if pooling in ("pooler", "pooler-tanh") and getattr(model, "pooler", None) is None:
        raise ConfigError(f"pooling {pooling!r} needs pooler weights, and {cfg.model} has none in "
                          "its checkpoint; choose cls, last-avg or first-last-avg")
    model.to(device)
    model.train()
    batches = _Batches(cfg.method, examples, tokenizer, cfg.max_length, pooling, cfg, device)
    n = len(examples)
    plan = _plan(n, cfg.batch_size, cfg.grad_accum, cfg.epochs)
    total = len(plan)
    if total == 0:
        raise ConfigError(f"{n} examples make no batch of at least 2")

    decay = [p for name, p in model.named_parameters() if not (name.endswith("bias") or
                                                                 "LayerNorm" in name or "norm" in name)]
    keep_ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in keep_ids]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    warm = cfg.warmup_steps

    def lr_lambda(step: int) -> float:  # transformers' get_linear_schedule_with_warmup
        if step < warm:
            return step / max(1, warm)
        return max(0.0, (total - step) / max(1, total - warm))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)

    if state is None:
        g = torch.Generator().manual_seed(cfg.seed + 1)
        orders = [torch.randperm(n, generator=g).tolist() for _ in range(cfg.epochs)]
        start = 0
        torch.manual_seed(cfg.seed)  # the dropout stream starts here
        if device.type == "cuda":
            torch.cuda.manual_seed_all(cfg.seed)
    else:
        st_dir = ckpt / STATE_DIR
        optimizer.load_state_dict(torch.load(st_dir / "optimizer.pt", map_location=device,
                                             weights_only=True))
        scheduler.load_state_dict(torch.load(st_dir / "scheduler.pt", weights_only=True))
        orders = state["orders"]
        start = int(state["step"])
        _set_rng_state(torch.load(st_dir / "rng.pt", weights_only=True), device)

    steps_per_epoch = total // cfg.epochs  # every epoch has the same batches

    def record(step: int, complete: bool, seconds: float) -> dict:
        hist = [{"step": s, "loss": round(sum(losses[s - cfg.log_every:s]) / cfg.log_every, 6)}
                for s in range(cfg.log_every, step + 1, cfg.log_every)]
        if step % cfg.log_every and step:
            tail = losses[step - step % cfg.log_every:step]
            hist.append({"step": step, "loss": round(sum(tail) / len(tail), 6)})
        hyper = {k: getattr(cfg, k) for k in (
            "dropout", "batch_size", "lr", "epochs", "max_sentences", "temperature", "max_length",
            "grad_accum", "warmup_steps", "weight_decay", "max_grad_norm", "loss")}
        if cfg.supervised:
            hyper.update(threshold=cfg.threshold, hard_negatives=cfg.hard_negatives,
                         negative_max=cfg.negative_max)
            if cfg.loss == "cosent":
                hyper["cosent_scale"] = cfg.cosent_scale
        hyper.update(optimizer="AdamW", schedule="linear decay to 0 after warmup",
                     dropout_set_on=list(base_dropout) if cfg.dropout is not None else None,
                     base_dropout=base_dropout)
        return {
            "format": "embedkit-training/1", "method": cfg.method, "complete": complete,
            "base_model": base, "pooling": pooling, "max_length": cfg.max_length,
            "data": data_desc, "evaluation_overlap": overlap, "hyperparameters": hyper,
            "seed": cfg.seed, "config": cfg.to_dict(), "device": str(device),
            "dtype": dtype, "threads": threads, "versions": library_versions(),
            "machine": machine_description(), "command": command,
            "steps": step, "total_steps": total, "steps_per_epoch": steps_per_epoch,
            "examples": n, "final_loss": losses[step - 1] if step else None,
            "loss_history": hist, "loss_history_every": cfg.log_every,
            "seconds_training": round(seconds, 3),
            "seconds_per_step": round(seconds / step, 4) if step else None,
            "resumed_from": resumed_from, "exact_resume_requires": EXACT_RESUME_REQUIRES,
        }

    def save_checkpoint(step: int, seconds: float) -> Path:
        rng = _rng_state(device)
        dest = ckpt_root / f"step-{step:06d}"
        with atomic_dir(dest) as tmp:
            save_model_folder(tmp, model, tokenizer, pooling=pooling, max_length=cfg.max_length,
                              base_config=base_dropout, record=record(step, False, seconds))
            sd = tmp / STATE_DIR
            sd.mkdir()
            torch.save(optimizer.state_dict(), sd / "optimizer.pt")
            torch.save(scheduler.state_dict(), sd / "scheduler.pt")
            torch.save(rng, sd / "rng.pt")
            (sd / "examples.json").write_text(json.dumps(examples, ensure_ascii=False),
                                              encoding="utf-8")
            (sd / "state.json").write_text(json.dumps({
                "format": STATE_FORMAT, "step": step, "total_steps": total,
                "config": cfg.to_dict(), "base_model": base, "base_dropout": base_dropout,
                "data": data_desc, "overlap": overlap, "orders": orders, "losses": losses[:step],
                "threads": threads, "device_type": device.type, "torch": torch.__version__,
                "seconds_training": seconds, "resumed_from": resumed_from,
            }, ensure_ascii=False), encoding="utf-8")
        _set_rng_state(rng, device)  # saving must not shift the dropout stream
        prune_checkpoints(ckpt_root, cfg.keep_checkpoints)
        return dest

    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, desc=cfg.method, unit="step", disable=not show,
               dynamic_ncols=True)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=dtype == "bfloat16")
    last_ckpt: Path | None = None
    t_loop = time.perf_counter()
    saving = 0.0  # seconds spent writing checkpoints (not counted as training time)
    step = start
    try:
        while step < total:
            micro = plan[step]
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for e, s, t in micro:
                with autocast:
                    loss = batches.loss(model, orders[e][s:t])
                if not torch.isfinite(loss):
                    raise EmbedkitError(f"the loss became {loss.item()} at step {step + 1}; "
                                        "lower --lr or raise --temperature")
                (loss / len(micro)).backward()
                step_loss += loss.item() / len(micro)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(step_loss)
            step += 1
            window = losses[-cfg.log_every:]
            bar.update(1)
            bar.set_postfix(loss=f"{sum(window) / len(window):.4f}")
            seconds = seconds_before + time.perf_counter() - t_loop - saving
            stopping = cfg.stop_at is not None and step >= cfg.stop_at and step < total
            if step < total and ((cfg.save_every and step % cfg.save_every == 0) or stopping):
                t_save = time.perf_counter()
                last_ckpt = save_checkpoint(step, seconds)
                saving += time.perf_counter() - t_save
            if stopping:
                break
    finally:
        bar.close()
    seconds = seconds_before + time.perf_counter() - t_loop - saving
    complete = step >= total
    rec = record(step, complete, seconds)
    out: Path | None = None
    if complete:
        with atomic_dir(out_dir) as tmp:
            decl = save_model_folder(tmp, model, tokenizer, pooling=pooling,
                                     max_length=cfg.max_length, base_config=base_dropout,
                                     record=rec)
        rec["pooling_declaration"] = decl
        out = out_dir
    rec["seconds_checkpointing"] = round(saving, 3)
    rec["seconds_total"] = round(time.perf_counter() - t_start, 3)
    return TrainResult(out_dir=out, checkpoint=last_ckpt, steps=step, total_steps=total,
                       complete=complete, final_loss=losses[-1] if losses else None,
                       losses=list(losses), seconds_per_step=rec["seconds_per_step"] or 0.0,
                       record=rec, model=model, tokenizer=tokenizer)
