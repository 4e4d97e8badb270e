"""Model folders written by training: a standard transformers folder, ``embedkit.json``, and the
sentence-transformers files that declare the trained pooling; plus the training state that lets
a resumed run continue exactly.

Layout of a folder (``*`` only in periodic checkpoints)::

    config.json, model.safetensors, tokenizer files     transformers (AutoModel / AutoTokenizer)
    modules.json, 1_Pooling/, ...                       sentence-transformers (cls / last-avg
                                                        only), written by
                                                        :mod:`embedkit.encoders.st_folder`
    README.md                                           the model card: base model, its
                                                        licence, method, data, pooling
                                                        (:mod:`embedkit.encoders.model_card`)
    embedkit.json                                       what was trained, how, on what
    training_state/  *                                  state.json, examples.json, optimizer.pt,
                                                        scheduler.pt, rng.pt

>>> pooling_declaration("cls")["sentence_transformers"], pooling_declaration("first-last-avg")["config"]
(True, 'first_last_mean')
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch

from embedkit import __version__
from embedkit.encoders.model_card import CardInfo, card_name, read_base_license, write_model_card
from embedkit.encoders.models import hub_id, is_local
from embedkit.encoders.pooling import Pooling
from embedkit.encoders.st_folder import write_st_folder
from embedkit.errors import ConfigError, DataError
from embedkit.io.atomic import recover_dir
from embedkit.provenance import sha256_file

logger = logging.getLogger(__name__)

STATE_DIR = "training_state"
STATE_FORMAT = 1
RECORD_FILE = "embedkit.json"
#: what a checkpoint cannot resume without (besides state.json); tokenizer files vary by model
CHECKPOINT_FILES = ("config.json", "model.safetensors", f"{STATE_DIR}/optimizer.pt",
                    f"{STATE_DIR}/scheduler.pt", f"{STATE_DIR}/rng.pt",
                    f"{STATE_DIR}/examples.json")
_STEP = re.compile(r"step-\d+")
#: dropout settings of BERT-family configs (the first two are BERT's own)
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout",
                "attention_dropout")


def pooling_declaration(pooling: str) -> dict:
    """How a folder trained with ``pooling`` declares it to its loaders."""
    p = Pooling(pooling)
    st = p.st_mode is not None and importlib.util.find_spec("sentence_transformers") is not None
    uniem = p.kind.uniem
    if p.st_mode is not None and not st:
        note = ("sentence-transformers is not installed: no modules.json written; "
                f"config.json's uniem_embedding_strategy={uniem} declares it to embedkit")
    elif st:
        note = ("modules.json + 1_Pooling/config.json declare it to sentence-transformers; "
                "config.json's uniem_embedding_strategy to embedkit")
    elif uniem:
        note = (f"sentence-transformers' Pooling cannot express {p}: no modules.json "
                "written (SentenceTransformer(DIR) would fall back to mean pooling); "
                f"config.json's uniem_embedding_strategy={uniem} declares it to embedkit")
    else:
        note = (f"neither sentence-transformers nor config.json can express {p}: give "
                f"pooling {p} when evaluating it (the folder declares no pooling)")
    return {"sentence_transformers": st, "config": uniem, "note": note}


def save_model_folder(dest: str | os.PathLike, model: Any, tokenizer: Any, *, pooling: str,
                      max_length: int, base_config: dict, record: dict) -> dict:
    """Write model, tokenizer, pooling declaration and ``embedkit.json`` into ``dest`` (an
    existing, empty folder: the caller makes it atomic). ``base_config`` holds config.json
    values to write instead of the training ones (the base model's dropout). Returns the
    pooling declaration (also stored in the record)."""
    dest = Path(dest)
    decl = pooling_declaration(pooling)
    if decl["sentence_transformers"]:
        # sentence-transformers' own writer, on a copy of the model (it reloads it from a
        # folder) kept inside dest: a kill leaves it in dest's temporary folder, which the next
        # write of the folder removes, never beside it
        with tempfile.TemporaryDirectory(prefix=".st-source-", dir=dest) as src:
            _save_transformers(Path(src), model, tokenizer, base_config, decl["config"])
            write_st_folder(dest, src, pooling=pooling, max_seq_length=max_length)
    # the weights and config exactly as trained: the reloaded copy may hold modules the trained
    # model does not (a randomly initialised pooler when the base had no pooler weights)
    _save_transformers(dest, model, None, base_config, decl["config"])
    if not decl["sentence_transformers"]:
        tokenizer.save_pretrained(dest)
    _write_json(dest / RECORD_FILE, {**record, "pooling_declaration": decl})
    write_model_card(dest, training_card(record, decl))  # replaces the generic one, if any
    return decl


_METHODS = {"simcse-unsupervised": "unsupervised SimCSE (dropout noise as augmentation)",
            "simcse-supervised": "supervised SimCSE (InfoNCE on labelled pairs)",
            "cosent": "CoSENT (pairs ranked by their labels)"}


def _data_summary(desc: dict) -> str:
    """One line of what a run trained on, from the record's ``data``."""
    kind = desc.get("kind")
    if kind == "tasks":
        what = "sentences of the tasks " + ", ".join(desc.get("tasks") or {})
    elif kind == "corpus":
        what = f"the corpus file {card_name(str(desc.get('file')))}"
    elif kind == "pairs":
        what = "labelled pairs from " + ", ".join(
            card_name(str(s.get("on", s) if isinstance(s, dict) else s))
            for s in desc.get("sources", []))
    else:
        what = str(kind or "unknown data")
    n = desc.get("sampled")
    seed = desc.get("sample_seed")
    sha = str(desc.get("sha256") or "")[:16]
    return what + (f" ({n} examples, sampled with seed {seed}; sha256 `{sha}`)" if n else "")


def training_card(record: dict, declaration: dict | None = None) -> CardInfo:
    """The model card of a training output (or checkpoint) from its ``embedkit.json`` record.

    >>> rec = {"method": "simcse-unsupervised", "base_model": {"name": "m3e-small",
    ...        "path": "moka-ai/m3e-small", "identity": "x"}, "pooling": "cls",
    ...        "max_length": 32, "data": {"kind": "corpus", "file": "c.txt"},
    ...        "steps": 10, "total_steps": 10, "seed": 1, "hyperparameters": {"lr": 3e-05}}
    >>> card = training_card(rec)
    >>> card.base_model, card.license.id, dict(card.details)["Trained on"]
    ('moka-ai/m3e-small', 'unknown', 'the corpus file c.txt')
    """
    base = record.get("base_model") or {}
    given, path = str(base.get("name") or "unknown"), str(base.get("path") or "")
    hub, name = hub_id(given), card_name(given)  # a local folder by its name, not its path
    method = str(record.get("method"))
    hyper = record.get("hyperparameters") or {}
    steps = f"{record.get('steps')} of {record.get('total_steps')}"
    details = [("Method", _METHODS.get(method, method)),
               ("Trained on", _data_summary(record.get("data") or {})),
               ("Max length", str(record.get("max_length"))),
               ("Steps", steps + ("" if record.get("complete", True) else " (a checkpoint)")),
               ("Seed", str(record.get("seed")))]
    details += [(k, str(hyper[k])) for k in ("lr", "batch_size", "temperature", "epochs", "loss")
                if k in hyper]
    if declaration is not None:
        details.append(("Pooling declared", str(declaration.get("note"))))
    return CardInfo(
        title=f"{name} + {method}", base_name=name, base_model=hub,
        license=read_base_license(path if path and is_local(path) else None, name, hub),
        summary=(f"{name} fine-tuned by embedkit with {_METHODS.get(method, method)}; a "
                 "transformers folder (and a sentence-transformers one when the pooling allows)."),
        pooling=str(record.get("pooling")), details=details, tags=("embedkit", "sentence-transformers", "sentence-similarity",
                               method),
        library_name="sentence-transformers" if (declaration or {}).get(
            "sentence_transformers") else "transformers",
        embedkit_version=str((record.get("versions") or {}).get("embedkit") or __version__))


def _save_transformers(dest: Path, model: Any, tokenizer: Any, base_config: dict,
                       uniem: str | None) -> None:
    """The transformers folder (tokenizer unless None), config.json carrying ``base_config``
    and the pooling for embedkit (``uniem_embedding_strategy``)."""
    model.save_pretrained(dest, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(dest)
    cfg_path = dest / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.update(base_config)
    if uniem:
        cfg["uniem_embedding_strategy"] = uniem
    else:
        cfg.pop("uniem_embedding_strategy", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# -- runs: who owns an output folder and its checkpoints -------------------------------------
def new_run_id() -> str:
    """A fresh run id: every checkpoint and output of a run records it."""
    return uuid.uuid4().hex


def checkpoint_root(out_dir: str | os.PathLike, checkpoint_dir: str | None = None) -> Path:
    """Where the checkpoints of a run writing ``out_dir`` go: ``checkpoint_dir``, else the
    sibling ``<out>.checkpoints``."""
    out = Path(out_dir)
    return Path(checkpoint_dir) if checkpoint_dir else out.parent / f"{out.name}.checkpoints"


def step_folders(root: Path) -> list[Path]:
    """The ``step-*`` checkpoint folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(c for c in root.iterdir()
                  if _STEP.fullmatch(c.name) and (c / STATE_DIR).is_dir())


def _json_object(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def checkpoint_run(ckpt: Path) -> str | None:
    """The run id a checkpoint records (None: unreadable, or written before run ids)."""
    state = _json_object(ckpt / STATE_DIR / "state.json") or {}
    run = state.get("run_id")
    return run if isinstance(run, str) else None


def output_run(out: Path) -> str | None:
    """The run id the training output ``out`` records (None when it records none)."""
    run = (_json_object(out / RECORD_FILE) or {}).get("run_id")
    return run if isinstance(run, str) else None


def claim_output(out: Path, root: Path, *, run_id: str | None, resuming: bool,
                 base_path: str | None, overwrite: bool, param: str = "out_dir") -> None:
    """Make ``out`` and the checkpoint folder ``root`` run ``run_id``'s (a resumed run's is
    its checkpoint's; None for checkpoints written before run ids), under the output's lock:
    refuse a folder that is not a training output, and an earlier or other run's output or
    checkpoints; ``overwrite`` removes them now (a resumed run's output is replaced when it
    completes). Remove what interrupted checkpoint writes left. ``param`` names the setting
    that chose ``root``."""
    check_out_dir(out, base_path)
    if out.is_dir() and any(out.iterdir()) and overwrite and not resuming:
        shutil.rmtree(out)  # a training output (check_out_dir): started over, as asked
        logger.info("removed %s (the output of an earlier run: overwrite)", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        theirs = output_run(out)
        if not resuming:
            raise ConfigError(f"out_dir {out} holds the output of an earlier training run; "
                                  "choose a new folder, or start over with overwrite=True (which "
                              "removes it and its checkpoints)", param="out_dir")
        if theirs != run_id:
            raise ConfigError(f"out_dir {out} holds the output of another training run "
                              f"(run {theirs or 'without an id'}) than the checkpoint (run "
                              f"{run_id}); resume into a new out_dir, or overwrite=True to "
                              "replace it", param="out_dir")
    clean_checkpoint_leftovers(root)
    others = [c for c in step_folders(root) if not resuming or checkpoint_run(c) != run_id]
    if others and not overwrite:
        names = ", ".join(c.name for c in others[-3:])
        raise ConfigError(f"{root} holds checkpoints of {'another' if resuming else 'an earlier'}"
                          f" training run ({names}): they would be taken for this run's; "
                          f"resume that run from {root}, or start over with overwrite=True "
                          "(which removes them)", param=param)
    for c in others:
        shutil.rmtree(c)
        logger.info("removed %s (a checkpoint of an earlier run: overwrite)", c)


def clean_checkpoint_leftovers(root: Path) -> None:
    """Remove what killed checkpoint writes left in ``root``: the atomic writer's temporary
    folders (``.step-NNNNNN.*.tmp`` / ``.old``, repaired by :func:`recover_dir` under each
    checkpoint's lock, so a live writer's are never touched) and sentence-transformers source
    copies of earlier versions (``.st-*``)."""
    if not root.is_dir():
        return
    names = {m.group(1) for n in os.listdir(root)
             if (m := re.fullmatch(r"\.(step-\d+)\.[^.]+\.(?:tmp|old)", n))}
    for name in sorted(names):
        recover_dir(root / name)
    for stale in root.glob(".st-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
            logger.info("removed %s, left by an interrupted checkpoint write", stale)


def prune_checkpoints(root: Path, keep: int, run_id: str | None) -> None:
    """Remove all but the newest ``keep`` checkpoints of run ``run_id`` under ``root`` (other
    runs' checkpoints are not this run's to remove)."""
    if keep <= 0:
        return
    mine = [c for c in step_folders(root) if checkpoint_run(c) == run_id]
    for old in mine[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def check_out_dir(out: Path, base_path: str | None) -> None:
    """Refuse to write a folder that is not an earlier training output."""
    if base_path and Path(base_path).is_dir() and out.resolve() == Path(base_path).resolve():
        raise ConfigError(f"out_dir {out} is the base model's folder; choose a new folder",
                          param="out_dir")
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"out_dir {out} exists and is not a folder", param="out_dir")
        if any(out.iterdir()) and not (out / RECORD_FILE).is_file():
            raise ConfigError(f"out_dir {out} exists, is not empty and holds no {RECORD_FILE} "
                              "(not an embedkit training output); choose a new folder",
                              param="out_dir")


# -- finding a checkpoint to resume, and checking it ------------------------------------------
def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder ``path`` names: a checkpoint itself, a folder of ``step-*``
    checkpoints (the latest is taken), or an output folder whose ``<out>.checkpoints`` sibling
    holds them. Nothing is verified (see :func:`choose_checkpoint`)."""
    return _candidates(Path(path).expanduser(), path)[0][-1]


def _candidates(p: Path, given: Any) -> tuple[list[Path], bool]:
    """The checkpoints ``p`` names, oldest first, and whether it named one explicitly."""
    if (p / STATE_DIR).is_dir():
        return [p], True
    for root in (p, p.parent / f"{p.name}.checkpoints"):
        steps = step_folders(root)
        if steps:
            return steps, False
    raise ConfigError(f"{given}: no checkpoint there (a checkpoint folder holds "
                      f"{STATE_DIR}/state.json; they are written every save_every steps to "
                      "<out>.checkpoints/step-NNNNNN)", param="resume")


def choose_checkpoint(path: str | os.PathLike) -> tuple[Path, list[str]]:
    """The checkpoint to resume from ``path`` (as :func:`find_checkpoint`), verified
    (:func:`verify_checkpoint`), and what was skipped: from a folder of checkpoints, the newest
    intact one of its run is taken and each damaged newer one is a message; a damaged
    checkpoint named explicitly is an error that names the newest intact earlier one."""
    steps, explicit = _candidates(Path(path).expanduser(), path)
    runs = {checkpoint_run(c) for c in steps} - {None}
    if len(runs) > 1:
        raise ConfigError(f"{path} holds checkpoints of {len(runs)} training runs; resume from "
                          "one step-NNNNNN folder", param="resume")
    if explicit:
        try:
            verify_checkpoint(steps[0])
        except DamagedCheckpointError as e:
            earlier = [c for c in step_folders(steps[0].parent) if c.name < steps[0].name
                       and checkpoint_run(c) == checkpoint_run(steps[0])]
            raise e.with_advice(next((c for c in reversed(earlier) if _intact(c)),
                                     None)) from None
        return steps[0], []
    skipped: list[str] = []
    for ckpt in reversed(steps):
        try:
            verify_checkpoint(ckpt)
        except DamagedCheckpointError as e:
            if ckpt is steps[0]:  # nothing older left
                raise e.with_advice(None) from None
            skipped.append(str(e))
            continue
        return ckpt, [f"{m}; resuming from the earlier checkpoint {ckpt} instead"
                      for m in skipped]
    raise AssertionError("unreachable")  # pragma: no cover


class DamagedCheckpointError(DataError):
    """A checkpoint file is missing, unreadable or not what was written. The message names the
    file and says what to do."""

    def __init__(self, file: Path, problem: str, advice: str = "") -> None:
        self.file, self.bare = file, problem
        super().__init__(f"damaged training checkpoint: {problem}{advice}", path=str(file),
                         param="resume")

    def with_advice(self, earlier: Path | None | bool) -> DamagedCheckpointError:
        """The same error saying what to do: resume from the ``earlier`` checkpoint, or start
        over (``None``: no intact earlier one; ``False``: not looked for)."""
        if isinstance(earlier, Path):
            advice = (f"; resume from the earlier checkpoint {earlier}, or start over with "
                      "overwrite=True")
        elif earlier is None:
            advice = "; no intact checkpoint of this run is left: start over with overwrite=True"
        else:
            advice = ("; resume from an earlier checkpoint if there is one, or start over "
                      "with overwrite=True")
        return DamagedCheckpointError(self.file, self.bare, advice)


def _intact(ckpt: Path) -> bool:
    try:
        verify_checkpoint(ckpt)
    except DamagedCheckpointError:
        return False
    return True


def file_manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative POSIX paths) but ``state.json``, which
    holds this manifest."""
    skip = Path(STATE_DIR) / "state.json"
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder) != skip}


def verify_checkpoint(ckpt: Path) -> None:
    """Raise :class:`DamagedCheckpointError` naming the first file of ``ckpt`` that is missing,
    unreadable or (for checkpoints that record checksums) changed since it was written."""
    state_file = ckpt / STATE_DIR / "state.json"
    state = _json_object(state_file)
    if state is None:
        why = "missing" if not state_file.is_file() else "not a JSON object"
        raise DamagedCheckpointError(state_file, why)
    for name in CHECKPOINT_FILES:
        sharded = name == "model.safetensors" and (ckpt / f"{name}.index.json").is_file()
        if not (ckpt / name).is_file() and not sharded:
            raise DamagedCheckpointError(ckpt / name, "missing")
    manifest = state.get("files")
    if not isinstance(manifest, dict):  # written before checksums: check what can be parsed
        if not isinstance(_json_list(ckpt / STATE_DIR / "examples.json"), list):
            raise DamagedCheckpointError(ckpt / STATE_DIR / "examples.json",
                                         "not a JSON list")
        return
    for name, digest in manifest.items():
        f = ckpt / name
        if not f.is_file():
            raise DamagedCheckpointError(f, "missing")
        if sha256_file(f) != digest:
            raise DamagedCheckpointError(f, "its sha256 differs from the one recorded when it "
                                            "was written (changed or truncated)")


def _json_list(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- the training state of a checkpoint ----------------------------------------------------
def read_state(ckpt: Path) -> dict:
    """``training_state/state.json`` of a checkpoint folder."""
    state_file = ckpt / STATE_DIR / "state.json"
    state = _json_object(state_file)
    if state is None:
        raise DamagedCheckpointError(state_file, "unreadable or not a JSON object").with_advice(
            False)
    if state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{ckpt}: training state format {state.get('format')} is not "
                          f"{STATE_FORMAT}; resume with the embedkit version that wrote it",
                          param="resume")
    return state


def read_examples(ckpt: Path, method: str) -> list:
    """The sampled examples a checkpoint stored (tuples for supervised methods)."""
    path = ckpt / STATE_DIR / "examples.json"
    examples = _json_list(path)
    try:
        if method == "cosent":
            return [(e[0], e[1], float(e[2])) for e in examples]
        if method == "simcse-supervised":
            return [tuple(e) for e in examples]
        if not isinstance(examples, list):
            raise TypeError
        return examples
    except (TypeError, IndexError, ValueError, KeyError):
        raise DamagedCheckpointError(path, "unreadable or not the list of examples that was "
                                           "written").with_advice(False) from None


def write_state(dest: Path, *, optimizer: Any, scheduler: Any, rng: dict, examples: list,
                state: dict) -> None:
    """Write ``training_state/`` into the checkpoint folder ``dest``: optimizer and scheduler
    state dicts, RNG states, the examples and ``state.json`` (``state`` plus the format and
    the sha256 of every file of the checkpoint, so a damaged one is told at resume)."""
    sd = dest / STATE_DIR
    sd.mkdir()
    torch.save(optimizer.state_dict(), sd / "optimizer.pt")
    torch.save(scheduler.state_dict(), sd / "scheduler.pt")
    torch.save(rng, sd / "rng.pt")
    (sd / "examples.json").write_text(json.dumps(examples, ensure_ascii=False), encoding="utf-8")
    (sd / "state.json").write_text(json.dumps({"format": STATE_FORMAT, **state,
                                               "files": file_manifest(dest)},
                                              ensure_ascii=False), encoding="utf-8")


def load_state(ckpt: Path, *, optimizer: Any, scheduler: Any, device: Any) -> dict:
    """Restore optimizer and scheduler from a checkpoint; returns its RNG states. Every file is
    read with ``torch.load(weights_only=True)`` (tensors and plain containers: no pickled
    code)."""
    sd = ckpt / STATE_DIR
    try:
        optimizer.load_state_dict(_load(sd / "optimizer.pt", device))
        scheduler.load_state_dict(_load(sd / "scheduler.pt", None))
        return _load(sd / "rng.pt", None)
    except (KeyError, ValueError, RuntimeError, TypeError) as e:  # loaded, but not a state
        raise DamagedCheckpointError(sd, f"its optimizer, scheduler or RNG state does not fit "
                                         f"this run ({str(e).splitlines()[0][:200]})"
                                     ).with_advice(False) from None


def _load(path: Path, device: Any) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise DamagedCheckpointError(path, "missing").with_advice(False) from None
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise DamagedCheckpointError(path, f"unreadable ({str(e).splitlines()[0][:200]})"
                                     ).with_advice(False) from None


def rng_state(device: torch.device) -> dict:
    """torch's RNG states (CPU, and the device's on CUDA)."""
    st = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["cpu"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)
