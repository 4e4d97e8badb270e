"""Model folders written by training: a standard transformers folder, ``embedkit.json``, and the
sentence-transformers files that declare the trained pooling; plus the training state that lets
a resumed run continue exactly.

Layout of a folder (``*`` only in periodic checkpoints)::

    config.json, model.safetensors, tokenizer files     transformers (AutoModel / AutoTokenizer)
    modules.json, 1_Pooling/, ... (README.md)           sentence-transformers (cls / last-avg
                                                        only), written by
                                                        :mod:`embedkit.encoders.st_folder`
    embedkit.json                                       what was trained, how, on what
    training_state/  *                                  state.json, examples.json, optimizer.pt,
                                                        scheduler.pt, rng.pt

>>> pooling_declaration("cls")["sentence_transformers"], pooling_declaration("first-last-avg")["config"]
(True, 'first_last_mean')
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from embedkit.encoders.pooling import Pooling
from embedkit.encoders.st_folder import write_st_folder
from embedkit.errors import ConfigError

STATE_DIR = "training_state"
STATE_FORMAT = 1
RECORD_FILE = "embedkit.json"
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
        # sentence-transformers' own writer, on a copy of the model (it reloads it from a folder)
        with tempfile.TemporaryDirectory(prefix=".st-", dir=dest.parent) as src:
            _save_transformers(Path(src), model, tokenizer, base_config, decl["config"])
            write_st_folder(dest, src, pooling=pooling, max_seq_length=max_length)
    # the weights and config exactly as trained: the reloaded copy may hold modules the trained
    # model does not (a randomly initialised pooler when the base had no pooler weights)
    _save_transformers(dest, model, None, base_config, decl["config"])
    if not decl["sentence_transformers"]:
        tokenizer.save_pretrained(dest)
    _write_json(dest / RECORD_FILE, {**record, "pooling_declaration": decl})
    return decl


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


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder ``path`` names: a checkpoint itself, a folder of ``step-*``
    checkpoints (the latest is taken), or an output folder whose ``<out>.checkpoints`` sibling
    holds them."""
    p = Path(path).expanduser()
    if (p / STATE_DIR / "state.json").is_file():
        return p
    for root in (p, p.parent / f"{p.name}.checkpoints"):
        if root.is_dir():
            steps = sorted(c for c in root.glob("step-*") if (c / STATE_DIR / "state.json").is_file())
            if steps:
                return steps[-1]
    raise ConfigError(f"{path}: no checkpoint there (a checkpoint folder holds "
                      f"{STATE_DIR}/state.json; they are written every save_every steps to "
                      "<out>.checkpoints/step-NNNNNN)", param="resume")


def prune_checkpoints(root: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` ``step-*`` checkpoints under ``root``."""
    if keep <= 0:
        return
    steps = sorted(c for c in root.glob("step-*") if (c / STATE_DIR).is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def check_out_dir(out: Path, base_path: str) -> None:
    """Refuse to overwrite a folder that is not an earlier training output."""
    if Path(base_path).is_dir() and out.resolve() == Path(base_path).resolve():
        raise ConfigError(f"out_dir {out} is the base model's folder; choose a new folder",
                          param="out_dir")
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"out_dir {out} exists and is not a folder", param="out_dir")
        if any(out.iterdir()) and not (out / RECORD_FILE).is_file():
            raise ConfigError(f"out_dir {out} exists, is not empty and holds no {RECORD_FILE} "
                              "(not an embedkit training output); choose a new folder",
                              param="out_dir")


# -- the training state of a checkpoint ----------------------------------------------------
def read_state(ckpt: Path) -> dict:
    """``training_state/state.json`` of a checkpoint folder."""
    try:
        state = json.loads((ckpt / STATE_DIR / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{ckpt}: unreadable training state ({e})", param="resume") from None
    if state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{ckpt}: training state format {state.get('format')} is not "
                          f"{STATE_FORMAT}; resume with the embedkit version that wrote it",
                          param="resume")
    return state


def read_examples(ckpt: Path, method: str) -> list:
    """The sampled examples a checkpoint stored (tuples for supervised methods)."""
    examples = json.loads((ckpt / STATE_DIR / "examples.json").read_text(encoding="utf-8"))
    if method == "cosent":
        return [(e[0], e[1], float(e[2])) for e in examples]
    if method == "simcse-supervised":
        return [tuple(e) for e in examples]
    return examples


def write_state(dest: Path, *, optimizer: Any, scheduler: Any, rng: dict, examples: list,
                state: dict) -> None:
    """Write ``training_state/`` into the checkpoint folder ``dest``: optimizer and scheduler
    state dicts, RNG states, the examples and ``state.json`` (``state`` plus the format)."""
    sd = dest / STATE_DIR
    sd.mkdir()
    torch.save(optimizer.state_dict(), sd / "optimizer.pt")
    torch.save(scheduler.state_dict(), sd / "scheduler.pt")
    torch.save(rng, sd / "rng.pt")
    (sd / "examples.json").write_text(json.dumps(examples, ensure_ascii=False), encoding="utf-8")
    (sd / "state.json").write_text(json.dumps({"format": STATE_FORMAT, **state},
                                              ensure_ascii=False), encoding="utf-8")


def load_state(ckpt: Path, *, optimizer: Any, scheduler: Any, device: Any) -> dict:
    """Restore optimizer and scheduler from a checkpoint; returns its RNG states."""
    sd = ckpt / STATE_DIR
    optimizer.load_state_dict(torch.load(sd / "optimizer.pt", map_location=device,
                                         weights_only=True))
    scheduler.load_state_dict(torch.load(sd / "scheduler.pt", weights_only=True))
    return torch.load(sd / "rng.pt", weights_only=True)


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
