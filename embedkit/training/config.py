"""The settings of a training run, declared once: each field carries its help text and its
constraint, so validation and the command line (``embedkit train simcse``) are generated from
this one table.

>>> cfg = SimCSEConfig(corpus="c.txt", out_dir="o", batch_size=1)
>>> cfg.validate()
Traceback (most recent call last):
...
embedkit.errors.ConfigError: batch_size must be at least 2 (in-batch negatives need two \
examples), not 1
>>> SimCSEConfig(corpus="c.txt", out_dir="o", dtype="bf16").dtype
'bfloat16'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from embedkit.errors import ConfigError, check_int

UNSUPERVISED_DROPOUT = 0.3
UNSUPERVISED_MAX_SENTENCES = 10_000
#: what training runs in (autocast for bfloat16; the weights stay float32)
TRAIN_DTYPES = ("float32", "bfloat16")
#: settings that may differ when resuming (they do not change the weights, or only warn)
FREE_ON_RESUME = frozenset({"out_dir", "overwrite", "save_every", "keep_checkpoints", "checkpoint_dir",
                            "log_every", "stop_at", "data_dir", "source", "skip_invalid",
                            "progress", "device"})


class TrainingWarning(UserWarning):
    """A training problem worth knowing that does not stop the run (e.g. train/test overlap)."""


@dataclass(frozen=True)
class Check:
    """A field's constraint: ``test(value)`` is true for a valid value (it may also raise a
    :class:`ConfigError` of its own); ``rule`` says what a valid value is."""

    test: Callable[[Any], bool]
    rule: str


#: the annotations of integer fields (strings: the module postpones annotations)
_INT_TYPES = ("int", "int | None")


def at_least(n: float, why: str = "") -> Check:
    return Check(lambda v: v >= n, f"at least {n}" + (f" ({why})" if why else ""))


def positive() -> Check:
    return Check(lambda v: v > 0 and math.isfinite(v), "positive")


def one_of(*values: str, why: str = "") -> Check:
    return Check(lambda v: v in values, " or ".join(values) + (f" ({why})" if why else ""))


def _pooling(value: str) -> bool:
    from embedkit.encoders.pooling import Pooling

    Pooling(value)  # raises ConfigError naming the valid poolings
    return True


def option(default: Any, help: str, *, check: Check | None = None,
           default_text: str | None = None) -> Any:
    """A config field with its help text and constraint; ``default_text`` describes a ``None``
    default in words."""
    return field(default=default, metadata={"help": help, "check": check,
                                            "default_text": default_text})


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

    >>> SimCSEConfig(corpus="c.txt", out_dir="o").method
    'simcse-unsupervised'
    """

    model: str = option("m3e-small", "hub id, local folder or alias")
    out_dir: str | None = option(None, "output model folder (written atomically)")
    overwrite: bool = option(False, "start over in an out_dir an earlier run wrote: remove it "
                                    "and its checkpoints (otherwise such a folder is refused)")
    pooling: str | None = option(
        None, "cls, last-avg (mean), first-last-avg, pooler, pooler-tanh, layers-avg:I,J",
        check=Check(_pooling, "a pooling name"),
        default_text="the model's declared pooling, else cls")
    tasks: list[str] | None = option(
        None, "unsupervised: comma-separated tasks (names or spec .json); their sentences of "
              "every split, without labels")
    corpus: str | None = option(None, "unsupervised: a text file, one sentence a line")
    supervised: bool = option(False, "train on labelled pairs/triplets instead of unlabelled "
                                     "sentences")
    pairs: list[str] | None = option(
        None, "supervised: TSV file s1<TAB>s2<TAB>label, task spec .json or TASK:split (e.g. "
              "LCQMC:train); repeatable")
    triplets: str | None = option(None, "supervised: TSV file anchor<TAB>positive<TAB>negative")
    hard_negatives: bool = option(False, "supervised InfoNCE: add a hard negative per anchor "
                                         "from label-0 pairs")
    loss: str = option("infonce", "supervised loss: infonce (in-batch negatives) or cosent",
                       check=one_of("infonce", "cosent"))
    threshold: float = option(1.0, "supervised InfoNCE: positives are pairs with label >= this "
                                   "(e.g. 4 for 0-5 scores)")
    negative_max: float = option(0.0, "hard negatives: pairs with label <= this give them")
    dropout: float | None = option(
        None, "hidden and attention dropout while training",
        check=Check(lambda v: 0 <= v < 1, "in [0, 1)"),
        default_text="0.3 unsupervised, the model's own supervised")
    batch_size: int = option(64, "sentences (pairs) per batch",
                             check=at_least(2, "in-batch negatives need two examples"))
    lr: float = option(1e-5, "peak learning rate, AdamW, linear decay", check=positive())
    epochs: int = option(1, "passes over the sample", check=at_least(1))
    max_sentences: int | None = option(
        None, "sample at most this many sentences (supervised: examples), seeded; 0: all",
        check=at_least(0, "0: all"), default_text="10000 unsupervised, all supervised")
    temperature: float = option(0.05, "InfoNCE temperature", check=positive())
    cosent_scale: float = option(20.0, "CoSENT lambda", check=positive())
    max_length: int | None = option(
        None, "tokens per sentence with [CLS]/[SEP]",
        check=at_least(3, "[CLS], a token, [SEP]"), default_text="the task's; 64 for files")
    seed: int = option(42, "seed of sampling, data order and dropout")
    device: str = option("cpu", "cpu, cuda, cuda:N")
    dtype: str = option("float32", "float32 or bfloat16 (autocast; weights stay float32)",
                        check=one_of(*TRAIN_DTYPES, why="autocast; float16 would need loss "
                                                        "scaling"))
    grad_accum: int = option(1, "micro-batches per optimizer step (in-batch negatives stay "
                                "within a micro-batch)", check=at_least(1))
    warmup_steps: int = option(0, "linear warmup steps", check=at_least(0))
    weight_decay: float = option(0.0, "AdamW weight decay", check=at_least(0))
    max_grad_norm: float | None = option(1.0, "gradient clipping norm, 0 for none",
                                         check=at_least(0, "0: no clipping"))
    save_every: int = option(0, "write a resumable checkpoint every N steps to OUT.checkpoints/ "
                                "(0: never)", check=at_least(0, "0: never"))
    keep_checkpoints: int = option(1, "keep the newest N checkpoints, 0 all",
                                   check=at_least(0, "0: keep all"))
    checkpoint_dir: str | None = option(None, "where checkpoints go",
                                        default_text="OUT.checkpoints")
    log_every: int = option(10, "loss history granularity in embedkit.json", check=at_least(1))
    stop_at: int | None = option(None, "stop at this step with a checkpoint (continue by "
                                       "resuming)", check=at_least(1), default_text="no stop")
    data_dir: str | None = option(None, "also used for the train/test overlap check")
    source: str = option("auto", "task data: auto, local or hub",
                         check=one_of("auto", "local", "hub"))
    skip_invalid: bool = option(False, "skip malformed rows of task files instead of stopping")
    progress: bool | None = option(None, "progress bar with the running loss",
                                   default_text="on a terminal")

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        if isinstance(self.pairs, str):
            self.pairs = [self.pairs]
        from embedkit.encoders.transformer import DTYPES, canonical_dtype

        if isinstance(self.dtype, str) and self.dtype in DTYPES:
            self.dtype = canonical_dtype(self.dtype)
        if self.max_grad_norm == 0:
            self.max_grad_norm = None  # 0 and None both mean: no clipping
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
        """Raise :class:`ConfigError` (with ``param``) naming the first bad setting."""
        for param, broken, message in _RULES:
            if broken(self):
                raise ConfigError(message, param=param)
        for f in dataclasses.fields(self):
            value, check = getattr(self, f.name), f.metadata.get("check")
            if value is None:
                if f.default is not None:
                    raise ConfigError(f"{f.name} must be set", param=f.name)
                continue
            if f.type in _INT_TYPES:  # the one integer check; the field's rule then says the rest
                check_int(value, f.name, minimum=None)
            if check is not None and not check.test(value):
                raise ConfigError(f"{f.name} must be {check.rule}, not {value!r}", param=f.name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, path: Any) -> SimCSEConfig:
        """The configuration a checkpoint was written with (``path`` as for ``resume``)."""
        from embedkit.training.checkpoint import find_checkpoint, read_state

        return cls(**read_state(find_checkpoint(path))["config"])

    def resolved_dropout(self) -> float | None:
        """The dropout to set: the given one, else 0.3 unsupervised and the model's own
        (None) supervised."""
        if self.dropout is not None:
            return self.dropout
        return None if self.supervised else UNSUPERVISED_DROPOUT

    def resolved_max_sentences(self) -> int:
        if self.max_sentences is not None:
            return self.max_sentences
        return 0 if self.supervised else UNSUPERVISED_MAX_SENTENCES


#: (parameter at fault, is the config broken?, message): the rules between fields, in order
_RULES: list[tuple[str, Callable[[SimCSEConfig], bool], str]] = [
    ("loss", lambda c: c.loss == "cosent" and not c.supervised,
     "loss 'cosent' trains on labelled pairs: set supervised=True and give pairs"),
    ("supervised", lambda c: c.supervised and bool(c.tasks or c.corpus),
     "supervised training takes its data from pairs/triplets, not tasks/corpus"),
    ("supervised", lambda c: c.supervised and not c.pairs and not c.triplets,
     "supervised training needs pairs (a TSV file, a task spec or TASK:split) or triplets "
     "(a TSV file)"),
    ("triplets", lambda c: c.supervised and c.loss == "cosent"
     and bool(c.triplets or c.hard_negatives),
     "triplets and hard_negatives apply to loss 'infonce', not 'cosent'"),
    ("hard_negatives", lambda c: c.supervised and c.hard_negatives and not c.pairs,
     "hard_negatives draws negatives from label-0 pairs: give pairs (or use triplets alone)"),
    ("tasks", lambda c: not c.supervised and bool(c.tasks) and bool(c.corpus),
     "give exactly one of tasks and corpus (or supervised=True with pairs)"),
    ("tasks", lambda c: not c.supervised and not c.tasks and not c.corpus,
     "no training data: give tasks (names) or corpus (a file)"),
    ("supervised", lambda c: not c.supervised and bool(c.pairs or c.triplets
                                                         or c.hard_negatives),
     "pairs, triplets and hard_negatives need supervised=True"),
    ("out_dir", lambda c: c.out_dir is None,
     "out_dir is required (where the trained model folder goes)"),
]


def merge_for_resume(given: SimCSEConfig, stored: SimCSEConfig) -> SimCSEConfig:
    """``given``'s unset (None) fields filled from the checkpoint's ``stored`` config;
    ConfigError (param ``resume``) on given settings that would change the result."""
    from embedkit.encoders.pooling import Pooling

    merged: dict[str, Any] = {}
    bad = []
    defaults = SimCSEConfig()
    for f in dataclasses.fields(SimCSEConfig):
        mine, theirs = getattr(given, f.name), getattr(stored, f.name)
        if f.name == "pooling" and mine is not None:
            mine = Pooling(mine)
        if f.name in ("stop_at", "overwrite"):
            # never inherited: the stored run may have stopped there, or started over
            merged[f.name] = mine if f.name == "stop_at" else bool(mine)
        elif f.name in FREE_ON_RESUME:
            merged[f.name] = mine if mine is not None else theirs
        elif mine is None or mine == theirs or mine == getattr(defaults, f.name):
            merged[f.name] = theirs  # unset or left at its default: take the checkpoint's
        else:
            bad.append(f"{f.name} {mine!r} (checkpoint: {theirs!r})")
    if bad:
        raise ConfigError("resume: these settings differ from the checkpoint's and would change "
                          "the result: " + "; ".join(bad), param="resume")
    return SimCSEConfig(**merged)


def unset_config(**given: Any) -> SimCSEConfig:
    """A config with every field None except ``given`` (what a resume was told explicitly)."""
    return SimCSEConfig(**{**{f.name: None for f in dataclasses.fields(SimCSEConfig)}, **given})
