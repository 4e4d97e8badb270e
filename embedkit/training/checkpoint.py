"""Model folders written by training: a standard transformers folder, ``embedkit.json``, and the
sentence-transformers files that declare the trained pooling; plus the training state that lets
``--resume`` continue a run exactly.

Layout of a folder (``*`` only in periodic checkpoints)::

    config.json, model.safetensors, tokenizer files     transformers (AutoModel / AutoTokenizer)
    modules.json, sentence_bert_config.json,
    1_Pooling/config.json                               sentence-transformers (cls / last-avg only)
    embedkit.json                                       what was trained, how, on what
    training_state/  *                                  state.json, examples.json, optimizer.pt,
                                                        scheduler.pt, rng.pt

>>> pooling_declaration("cls")["sentence_transformers"], pooling_declaration("first-last-avg")["config"]
(True, 'first_last_mean')
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from embedkit.errors import ConfigError

STATE_DIR = "training_state"
RECORD_FILE = "embedkit.json"
#: dropout settings of BERT-family configs (the first two are BERT's own)
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout",
                "attention_dropout")
_ST_MODES = {"cls": "pooling_mode_cls_token", "last-avg": "pooling_mode_mean_tokens"}
_ST_FLAGS = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
             "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
             "pooling_mode_lasttoken")
#: m3e's config key, read by embedkit's Encoder (declared_pooling) as the default pooling
_UNIEM = {"cls": "cls", "last-avg": "last_mean", "first-last-avg": "first_last_mean"}


def pooling_declaration(pooling: str) -> dict:
    """How a folder trained with ``pooling`` declares it to its loaders."""
    st = pooling in _ST_MODES
    uniem = _UNIEM.get(pooling)
    if st:
        note = ("modules.json + 1_Pooling/config.json declare it to sentence-transformers; "
                "config.json's uniem_embedding_strategy to embedkit")
    elif uniem:
        note = (f"sentence-transformers' Pooling cannot express {pooling}: no modules.json "
                "written (SentenceTransformer(DIR) would fall back to mean pooling); "
                f"config.json's uniem_embedding_strategy={uniem} declares it to embedkit")
    else:
        note = (f"neither sentence-transformers nor config.json can express {pooling}: pass "
                f"--pooling {pooling} to embedkit bench (the folder declares no pooling)")
    return {"sentence_transformers": st, "config": uniem, "note": note}


def save_model_folder(dest: str | os.PathLike, model, tokenizer, *, pooling: str,
                      max_length: int, base_config: dict, record: dict) -> dict:
    """Write model, tokenizer, pooling declaration and ``embedkit.json`` into ``dest`` (an
    existing, empty folder: the caller makes it atomic). ``base_config`` holds config.json
    values to write instead of the training ones (the base model's dropout). Returns the
    pooling declaration (also stored in the record)."""
    dest = Path(dest)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    cfg_path = dest / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.update(base_config)
    decl = pooling_declaration(pooling)
    if decl["config"]:
        cfg["uniem_embedding_strategy"] = decl["config"]
    else:
        cfg.pop("uniem_embedding_strategy", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if decl["sentence_transformers"]:
        _write_json(dest / "modules.json", [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"}])
        _write_json(dest / "sentence_bert_config.json",
                    {"max_seq_length": int(max_length), "do_lower_case": False})
        hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "dim", 0))
        pcfg = {"word_embedding_dimension": hidden, **{k: False for k in _ST_FLAGS},
                "include_prompt": True}
        pcfg[_ST_MODES[pooling]] = True
        (dest / "1_Pooling").mkdir(exist_ok=True)
        _write_json(dest / "1_Pooling" / "config.json", pcfg)
    record = {**record, "pooling_declaration": decl}
    _write_json(dest / RECORD_FILE, record)
    return decl


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
    raise ConfigError(f"--resume {path}: no checkpoint there (a checkpoint folder holds "
                      f"{STATE_DIR}/state.json; they are written every --save-every steps to "
                      "<out>.checkpoints/step-NNNNNN)")


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
        raise ConfigError(f"--out {out} is the base model's folder; choose a new folder")
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / RECORD_FILE).is_file():
            raise ConfigError(f"--out {out} exists, is not empty and holds no {RECORD_FILE} "
                              "(not an embedkit training output); choose a new folder")
