"""SimCSE fine-tuning: unsupervised (dropout as the only augmentation), supervised InfoNCE with
in-batch (and optional hard) negatives, and CoSENT on graded pairs.

Unsupervised SimCSE (Gao et al. 2021) encodes each sentence of a batch twice; dropout makes the
two vectors differ, and InfoNCE over the in-batch cosine similarities divided by a temperature
treats the paired copy as the positive and every other sentence as a negative. There is no MLM
loss and no MLP head: the vectors are the chosen embedkit pooling of the encoder, computed by
the forward pass evaluation uses (:func:`embedkit.encoders.transformer.forward_pooled`), so the
trained folder is evaluated exactly as it was trained. The defaults are those of the Chinese
SimCSE experiments: dropout 0.3, batch 64, lr 1e-5, one epoch, 10,000 sentences sampled from
the task, temperature 0.05, max length = the task's (64; 128 for PAWSX). The optimizer is AdamW
(no weight decay), the schedule transformers' linear warmup and decay to 0
(``get_linear_schedule_with_warmup``), gradients clipped to 1.

Tiny example (``tiny-bert`` a local model folder, ``corpus.txt`` one sentence a line)::

    >>> from embedkit.training import SimCSEConfig, train_simcse
    >>> cfg = SimCSEConfig(model="tiny-bert", corpus="corpus.txt", out_dir="simcse-out",
    ...                    pooling="cls", batch_size=8, lr=1e-3)            # doctest: +SKIP
    >>> result = train_simcse(cfg)                                        # doctest: +SKIP
    >>> result.steps, round(result.final_loss, 2)                         # doctest: +SKIP
    (5, 1.23)

The output folder loads with ``AutoModel.from_pretrained``, ``SentenceTransformer`` (cls and
last-avg poolings) and ``embedkit bench`` (which then uses the trained pooling).

Exact resume
------------
Every ``save_every`` steps a checkpoint (model, optimizer, scheduler, torch RNG states, step,
per-epoch data order, losses and the sampled examples themselves) is written to
``<out>.checkpoints/step-NNNNNN``. ``resume=`` continues from it to the same final weights, bit
for bit, as an uninterrupted run, provided it runs on the same device type, with the same
dtype, the same torch/transformers versions and the same number of CPU threads
(``torch.get_num_threads()``: the reduction order of CPU kernels depends on it; a difference is
warned about). On CUDA it also needs deterministic kernels (``CUBLAS_WORKSPACE_CONFIG=:4096:8``
and ``torch.use_deterministic_algorithms(True)`` set by the caller); embedkit uses no
randomness besides torch's (Python's ``random`` and NumPy are not used).

One run, one output
-------------------
A run holds its output folder's lock from start to end and records a run id in every
checkpoint and in ``embedkit.json``. A new run refuses an output folder or checkpoint folder an
earlier run wrote (``overwrite=True`` removes them first); a resume refuses an output or
checkpoints of another run. Each checkpoint records the sha256 of its files: resuming from a
folder of checkpoints takes the newest intact one (warning about damaged newer ones), and a
damaged file is an error naming it. The next run or resume removes what killed checkpoint
writes left.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from embedkit.aliases import JSONDict
from embedkit.encoders.models import is_local, model_identity, resolve_model_path
from embedkit.encoders.pooling import Pooling
from embedkit.encoders.st_folder import declared_pooling
from embedkit.errors import ConfigError, EmbedkitError
from embedkit.io.atomic import atomic_dir, folder_lock
from embedkit.provenance import library_versions, machine_description
from embedkit.training.batches import Batches, MicroBatch, plan
from embedkit.training.checkpoint import (
    DROPOUT_KEYS,
    DamagedCheckpointError,
    checkpoint_root,
    choose_checkpoint,
    claim_output,
    load_state,
    new_run_id,
    prune_checkpoints,
    read_examples,
    read_state,
    rng_state,
    save_model_folder,
    set_rng_state,
    write_state,
)
from embedkit.training.config import (
    SimCSEConfig,
    TrainingWarning,
    merge_for_resume,
    unset_config,
)
from embedkit.training.data import TrainingData, examples_sha256, prepare_examples

logger = logging.getLogger(__name__)

_EXACT_RESUME_REQUIRES = (
    "same device type, dtype, torch/transformers versions and CPU thread count "
    "(torch.get_num_threads()); on CUDA also deterministic kernels "
    "(CUBLAS_WORKSPACE_CONFIG=:4096:8, torch.use_deterministic_algorithms(True))")


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
    record: JSONDict
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)


# -- model ----------------------------------------------------------------------------------
def load_training_model(path: str, dropout: float | None, revision: str | None = None, *,
                        safetensors_only: bool = False) -> tuple[Any, Any, JSONDict]:
    """Load model and tokenizer with ``dropout`` set on the config (hidden and attention
    dropout; ``None`` keeps the model's). Returns (model, tokenizer, the config's original
    dropout values). ``safetensors_only`` (checkpoints, which embedkit writes as safetensors)
    never falls back to pickled weights."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        cfg = AutoConfig.from_pretrained(path, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    except OSError as e:
        raise EmbedkitError(f"cannot load model {path!r}: {str(e).splitlines()[0]}",
                            param="model") from None
    original = {k: getattr(cfg, k) for k in DROPOUT_KEYS if isinstance(getattr(cfg, k, None), float)}
    if dropout is not None:
        if not original:
            raise ConfigError(f"{path}: its config has none of {', '.join(DROPOUT_KEYS)}; "
                              "cannot set the training dropout", param="dropout")
        for k in original:
            setattr(cfg, k, float(dropout))
    try:
        # use_safetensors=None is transformers' own default (safetensors first, then .bin)
        model, info = AutoModel.from_pretrained(
            path, config=cfg, revision=revision, output_loading_info=True,
            use_safetensors=True if safetensors_only else None)
    except Exception as e:  # OSError, safetensors' and torch's errors for damaged weights
        raise EmbedkitError(f"cannot load the weights of model {path!r}: "
                            f"{str(e).splitlines()[0][:300]}", param="model") from None
    if getattr(model, "pooler", None) is not None and any(
            "pooler" in k for k in info.get("missing_keys", [])):
        model.pooler = None  # never train or save a randomly initialised pooler
    return model, tokenizer, original


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: use cpu, cuda or cuda:N", param="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was given but torch sees no CUDA device; use cpu",
                          param="device")
    return dev


# -- a run ----------------------------------------------------------------------------------
@dataclass
class _Run:
    """What a run holds from one step to the next."""

    cfg: SimCSEConfig
    device: torch.device
    model: Any
    tokenizer: Any
    pooling: Pooling
    data: TrainingData
    base: JSONDict                 # the base model: name, path, identity
    base_dropout: JSONDict         # its config's dropout values (written back to config.json)
    losses: list[float]
    resumed_from: list[str]
    seconds_before: float      # training seconds of the runs this one resumes
    command: str | None
    run_id: str | None         # every checkpoint and the output record it
    threads: int = field(default_factory=torch.get_num_threads)
    steps: list[list[MicroBatch]] = field(default_factory=list)
    orders: list[list[int]] = field(default_factory=list)
    optimizer: Any = None
    scheduler: Any = None
    batches: Batches | None = None
    t_loop: float = 0.0
    saving: float = 0.0        # seconds spent writing checkpoints (not training time)
    last_ckpt: Path | None = None

    @property
    def total(self) -> int:
        return len(self.steps)

    @property
    def max_length(self) -> int:
        return int(self.cfg.max_length or 0)

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t_loop - self.saving

    @property
    def ckpt_root(self) -> Path:
        return checkpoint_root(str(self.cfg.out_dir), self.cfg.checkpoint_dir)


def train_simcse(config: SimCSEConfig | None = None, *, resume: str | Path | None = None,
                 command: str | None = None, **overrides: Any) -> TrainResult:
    """Train and save a model folder; see the module docstring.

    ``config`` (or keyword overrides of :class:`SimCSEConfig` fields) says what to train.
    ``resume`` names a checkpoint (or a folder of them, or the output folder) to continue; the
    run's settings and sampled data then come from the checkpoint, and any setting given that
    would change the result must match it.

    >>> train_simcse(model="x", corpus="c.txt", out_dir="o", batch_size=1)
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: batch_size must be at least 2 (in-batch negatives need two \
examples), not 1
    """
    t_start = time.perf_counter()
    cfg, ckpt, state = _settings(config, resume, overrides)
    cfg.validate()
    device = _device(cfg.device)
    # one run at a time writes an output folder and its checkpoints; the folder's parent is
    # made first (out_dir="runs/lcqmc" in a fresh checkout: the lock lies in runs/)
    Path(str(cfg.out_dir)).parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(str(cfg.out_dir), timeout=0, what="training output"):
        if ckpt is None or state is None:
            run = _fresh_run(cfg, device, command)
        else:
            run = _resumed_run(cfg, device, command, ckpt, state)
        start = _prepare(run, ckpt, state)
        step = _loop(run, start)
        return _finish(run, step, t_start)


def _settings(config: SimCSEConfig | None, resume: str | Path | None, overrides: JSONDict
              ) -> tuple[SimCSEConfig, Path | None, JSONDict | None]:
    """The run's config, and the checkpoint and its state when resuming."""
    if resume is None:
        return (dataclasses.replace(config, **overrides) if config
                else SimCSEConfig(**overrides)), None, None
    ckpt, skipped = choose_checkpoint(resume)
    for message in skipped:
        warnings.warn(message, TrainingWarning, stacklevel=3)
    state = read_state(ckpt)
    given = dataclasses.replace(config, **overrides) if config else unset_config(**overrides)
    try:
        stored = SimCSEConfig(**state["config"])
    except (KeyError, TypeError) as e:
        raise DamagedCheckpointError(ckpt / "training_state" / "state.json",
                                     f"its config is not this version's ({e})"
                                     ).with_advice(False) from None
    return merge_for_resume(given, stored), ckpt, state


def _fresh_run(cfg: SimCSEConfig, device: torch.device, command: str | None) -> _Run:
    base_path = resolve_model_path(cfg.model)
    run_id = new_run_id()
    claim_output(Path(str(cfg.out_dir)), checkpoint_root(str(cfg.out_dir), cfg.checkpoint_dir),
                 run_id=run_id, resuming=False, base_path=base_path, overwrite=cfg.overwrite,
                 param="checkpoint_dir" if cfg.checkpoint_dir else "out_dir")
    data = prepare_examples(cfg)
    declared = declared_pooling(base_path if is_local(base_path) else None)
    pooling = Pooling(cfg.pooling or declared or "cls")
    cfg = dataclasses.replace(cfg, pooling=str(pooling),
                              max_length=cfg.max_length or data.max_length,
                              dropout=cfg.resolved_dropout(),
                              max_sentences=cfg.resolved_max_sentences())
    torch.manual_seed(cfg.seed)  # any weights the checkpoint lacks are initialised alike
    model, tokenizer, base_dropout = load_training_model(base_path, cfg.dropout)
    cap = getattr(model.config, "max_position_embeddings", None)
    if isinstance(cap, int) and int(cfg.max_length or 0) > cap:  # as the encoder does
        cfg = dataclasses.replace(cfg, max_length=cap)
    base = {"name": cfg.model, "path": base_path,
            "identity": model_identity(base_path, getattr(model.config, "_commit_hash", None))}
    return _Run(cfg, device, model, tokenizer, pooling, data, base, base_dropout, losses=[],
                resumed_from=[], seconds_before=0.0, command=command, run_id=run_id)


def _resumed_run(cfg: SimCSEConfig, device: torch.device, command: str | None, ckpt: Path,
                 state: JSONDict) -> _Run:
    run_id = state.get("run_id")
    claim_output(Path(str(cfg.out_dir)), checkpoint_root(str(cfg.out_dir), cfg.checkpoint_dir),
                 run_id=run_id, resuming=True, base_path=state["base_model"]["path"],
                 overwrite=cfg.overwrite,
                 param="checkpoint_dir" if cfg.checkpoint_dir else "out_dir")
    examples = read_examples(ckpt, cfg.method)
    if examples_sha256(examples) != state["data"]["sha256"]:
        raise DamagedCheckpointError(ckpt / "training_state" / "examples.json",
                                     "the examples do not match their recorded sha256"
                                     ).with_advice(False)
    data = TrainingData(examples, state["data"], int(cfg.max_length or 0), state.get("overlap"))
    try:
        model, tokenizer, _ = load_training_model(str(ckpt), cfg.dropout,
                                                  safetensors_only=True)
    except EmbedkitError as e:
        raise DamagedCheckpointError(ckpt / "model.safetensors", str(e)).with_advice(
            False) from None
    run = _Run(cfg, device, model, tokenizer, Pooling(str(cfg.pooling)), data,
               state["base_model"], state["base_dropout"], list(state["losses"]),
               [*state.get("resumed_from", []), str(ckpt)],
               float(state.get("seconds_training", 0.0)), command, run_id)
    if state.get("threads") != run.threads:
        warnings.warn(f"resuming with {run.threads} CPU threads; the checkpoint was written with "
                      f"{state.get('threads')}: the weights may differ in the last bits from an "
                      "uninterrupted run", TrainingWarning, stacklevel=3)
    if state.get("device_type") != device.type or state.get("torch") != torch.__version__:
        warnings.warn(f"resuming on {device.type} with torch {torch.__version__}; the checkpoint "
                      f"was written on {state.get('device_type')} with torch "
                      f"{state.get('torch')}: the result will not be bit-identical to an "
                      "uninterrupted run", TrainingWarning, stacklevel=3)
    return run


def _optimizer(model: Any, cfg: SimCSEConfig) -> torch.optim.Optimizer:
    """AdamW, without weight decay on biases and norm weights."""
    decay = [p for name, p in model.named_parameters()
             if not (name.endswith("bias") or "LayerNorm" in name or "norm" in name)]
    keep_ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in keep_ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def _prepare(run: _Run, ckpt: Path | None, state: JSONDict | None) -> int:
    """Model on its device, batches, plan, optimizer, schedule, data order and RNG state;
    returns the step to start from."""
    from transformers import get_linear_schedule_with_warmup

    cfg, model = run.cfg, run.model
    if run.pooling.needs_pooler and getattr(model, "pooler", None) is None:
        raise ConfigError(f"pooling {str(run.pooling)!r} needs pooler weights, and {cfg.model} "
                          "has none in its checkpoint; choose cls, last-avg or first-last-avg",
                          param="pooling")
    model.to(run.device)
    model.train()
    n = len(run.data.examples)
    run.batches = Batches(cfg.method, run.data.examples, run.tokenizer,
                          max_length=run.max_length, pooling=run.pooling, device=run.device,
                          temperature=cfg.temperature, cosent_scale=cfg.cosent_scale)
    run.steps = plan(n, cfg.batch_size, cfg.grad_accum, cfg.epochs)
    if not run.steps:
        raise ConfigError(f"{n} examples make no batch of at least 2", param="batch_size")
    run.optimizer = _optimizer(model, cfg)
    run.scheduler = get_linear_schedule_with_warmup(run.optimizer, cfg.warmup_steps, run.total)
    if ckpt is None or state is None:
        g = torch.Generator().manual_seed(cfg.seed + 1)
        run.orders = [torch.randperm(n, generator=g).tolist() for _ in range(cfg.epochs)]
        torch.manual_seed(cfg.seed)  # the dropout stream starts here
        if run.device.type == "cuda":
            torch.cuda.manual_seed_all(cfg.seed)
        return 0
    rng = load_state(ckpt, optimizer=run.optimizer, scheduler=run.scheduler, device=run.device)
    run.orders = state["orders"]
    set_rng_state(rng, run.device)
    return int(state["step"])


# -- the loop -------------------------------------------------------------------------------
def _loop(run: _Run, start: int) -> int:
    """Optimizer steps from ``start`` to the end (or ``stop_at``); returns the last step."""
    cfg = run.cfg
    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    autocast = torch.autocast(device_type=run.device.type, dtype=torch.bfloat16,
                              enabled=cfg.dtype == "bfloat16")
    run.t_loop = time.perf_counter()
    step = start
    with tqdm(total=run.total, initial=start, desc=cfg.method, unit="step", disable=not show,
              dynamic_ncols=True) as bar:
        while step < run.total:
            run.losses.append(_step(run, step, autocast))
            step += 1
            window = run.losses[-cfg.log_every:]
            bar.update(1)
            bar.set_postfix(loss=f"{sum(window) / len(window):.4f}")
            if step % cfg.log_every == 0:
                logger.debug("step %d/%d: loss %.4f", step, run.total,
                             sum(window) / len(window))
            if _maybe_checkpoint(run, step):
                break
    return step


def _step(run: _Run, step: int, autocast: torch.autocast) -> float:
    """One optimizer step (0-based ``step``) over its micro-batches; returns its loss."""
    assert run.batches is not None
    micro = run.steps[step]
    run.optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    for e, s, t in micro:
        with autocast:
            loss = run.batches.loss(run.model, run.orders[e][s:t])
        if not torch.isfinite(loss):
            raise EmbedkitError(f"the loss became {loss.item()} at step {step + 1}; lower lr or "
                                "raise temperature", param="lr")
        (loss / len(micro)).backward()
        step_loss += loss.item() / len(micro)
    if run.cfg.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    return step_loss


def _maybe_checkpoint(run: _Run, step: int) -> bool:
    """Write a checkpoint when one is due after ``step``; returns True when the run stops here
    (``stop_at``)."""
    cfg = run.cfg
    stopping = cfg.stop_at is not None and cfg.stop_at <= step < run.total
    if step < run.total and ((cfg.save_every and step % cfg.save_every == 0) or stopping):
        t_save = time.perf_counter()
        run.last_ckpt = _save_checkpoint(run, step, run.seconds())
        run.saving += time.perf_counter() - t_save
    return stopping


def _save_checkpoint(run: _Run, step: int, seconds: float) -> Path:
    rng = rng_state(run.device)
    dest = run.ckpt_root / f"step-{step:06d}"
    with atomic_dir(dest) as tmp:
        save_model_folder(tmp, run.model, run.tokenizer, pooling=run.pooling,
                          max_length=run.max_length, base_config=run.base_dropout,
                          record=_record(run, step, False, seconds))
        write_state(tmp, optimizer=run.optimizer, scheduler=run.scheduler, rng=rng,
                    examples=run.data.examples, state={
                        "step": step, "total_steps": run.total, "config": run.cfg.to_dict(),
                        "base_model": run.base, "base_dropout": run.base_dropout,
                        "data": run.data.description, "overlap": run.data.overlap,
                        "orders": run.orders, "losses": run.losses[:step],
                        "threads": run.threads, "device_type": run.device.type,
                        "torch": torch.__version__, "seconds_training": seconds,
                        "resumed_from": run.resumed_from, "run_id": run.run_id})
    set_rng_state(rng, run.device)  # saving must not shift the dropout stream
    prune_checkpoints(run.ckpt_root, run.cfg.keep_checkpoints, run.run_id)
    logger.debug("checkpoint %s", dest)
    return dest


# -- the record and the result --------------------------------------------------------------
def _loss_history(losses: list[float], step: int, every: int) -> list[JSONDict]:
    """The mean loss of every ``every`` steps, and of the last partial window."""
    hist = [{"step": s, "loss": round(sum(losses[s - every:s]) / every, 6)}
            for s in range(every, step + 1, every)]
    if step % every and step:
        tail = losses[step - step % every:step]
        hist.append({"step": step, "loss": round(sum(tail) / len(tail), 6)})
    return hist


def _hyperparameters(run: _Run) -> JSONDict:
    cfg = run.cfg
    hyper = {k: getattr(cfg, k) for k in (
        "dropout", "batch_size", "lr", "epochs", "max_sentences", "temperature", "max_length",
        "grad_accum", "warmup_steps", "weight_decay", "max_grad_norm", "loss")}
    if cfg.supervised:
        hyper.update(threshold=cfg.threshold, hard_negatives=cfg.hard_negatives,
                     negative_max=cfg.negative_max)
        if cfg.loss == "cosent":
            hyper["cosent_scale"] = cfg.cosent_scale
    hyper.update(optimizer="AdamW", schedule="linear decay to 0 after warmup",
                 dropout_set_on=list(run.base_dropout) if cfg.dropout is not None else None,
                 base_dropout=run.base_dropout)
    return hyper


def _record(run: _Run, step: int, complete: bool, seconds: float) -> JSONDict:
    """``embedkit.json`` of the model folder (or checkpoint) after ``step`` steps."""
    cfg, losses = run.cfg, run.losses
    return {
        "format": "embedkit-training/1", "method": cfg.method, "complete": complete,
        "run_id": run.run_id,
        "base_model": run.base, "pooling": str(run.pooling), "max_length": cfg.max_length,
        "data": run.data.description, "evaluation_overlap": run.data.overlap,
        "hyperparameters": _hyperparameters(run), "seed": cfg.seed, "config": cfg.to_dict(),
        "device": str(run.device), "dtype": cfg.dtype, "threads": run.threads,
        "versions": library_versions(), "machine": machine_description(),
        "command": run.command, "steps": step, "total_steps": run.total,
        "steps_per_epoch": run.total // cfg.epochs,  # every epoch has the same batches
        "examples": len(run.data.examples), "final_loss": losses[step - 1] if step else None,
        "loss_history": _loss_history(losses, step, cfg.log_every),
        "loss_history_every": cfg.log_every, "seconds_training": round(seconds, 3),
        "seconds_per_step": round(seconds / step, 4) if step else None,
        "resumed_from": run.resumed_from, "exact_resume_requires": _EXACT_RESUME_REQUIRES,
    }


def _finish(run: _Run, step: int, t_start: float) -> TrainResult:
    """Save the model folder when the run is complete; the result and its record."""
    seconds = run.seconds()
    complete = step >= run.total
    rec = _record(run, step, complete, seconds)
    out: Path | None = None
    if complete:
        out = Path(str(run.cfg.out_dir))
        with atomic_dir(out) as tmp:
            rec["pooling_declaration"] = save_model_folder(
                tmp, run.model, run.tokenizer, pooling=run.pooling, max_length=run.max_length,
                base_config=run.base_dropout, record=rec)
    rec["seconds_checkpointing"] = round(run.saving, 3)
    rec["seconds_total"] = round(time.perf_counter() - t_start, 3)
    return TrainResult(out_dir=out, checkpoint=run.last_ckpt, steps=step, total_steps=run.total,
                       complete=complete, final_loss=run.losses[-1] if run.losses else None,
                       losses=list(run.losses), seconds_per_step=rec["seconds_per_step"] or 0.0,
                       record=rec, model=run.model, tokenizer=run.tokenizer)
