"""Model cards (``README.md`` with YAML front matter) for the model folders embedkit writes: the
sentence-transformers export of a fitted map and a SimCSE / CoSENT training output.

The card states the base model and its licence, read from the base model's folder
(:func:`read_base_license`: the README's front matter ``license:``, else its "License" section,
else ``config.json``; otherwise "unknown"), how the vectors are made (pooling, postprocessor,
fit data), the embedkit version and the scores when they are known. The front matter is
written by ``huggingface_hub.ModelCardData``, so the hub reads it as it reads its own.

>>> card = CardInfo(title="m3e-small + whitening", base_name="m3e-small",
...                 base_model="moka-ai/m3e-small", summary="A test.", pooling="last-avg",
...                 license=BaseLicense("other", "non-commercial, research use only",
...                                     name="m3e-small-license", non_commercial=True))
>>> text = render_model_card(card)
>>> text.splitlines()[0], "license: other" in text, "base_model: moka-ai/m3e-small" in text
('---', True, True)
>>> "**Non-commercial.**" in text
True
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedkit import __version__
from embedkit.io.tables import Markdown, escape_markdown, text_table

logger = logging.getLogger(__name__)

__all__ = ["BaseLicense", "CardInfo", "CARD_FILE", "UNKNOWN_LICENSE", "card_name",
           "read_base_license", "render_model_card", "write_model_card"]

CARD_FILE = "README.md"
UNKNOWN_LICENSE = "unknown \u2014 check the base model's card"
_LICENSE_HEADING = re.compile(r"^#{1,6}\s*(licen[cs]e|许可|许可证|协议|开源协议)\b.*$",
                              re.IGNORECASE | re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s", re.MULTILINE)
_NON_COMMERCIAL = re.compile(r"non[- ]?commercial|非商用|不可商用|禁止商用|research (use )?only|"
                             r"仅供研究|cc-by-nc", re.IGNORECASE)


@dataclass(frozen=True)
class BaseLicense:
    """A base model's licence: ``id`` for the front matter (an SPDX-like hub id such as
    ``apache-2.0``, ``other`` or ``unknown``), ``text`` for readers, ``name`` / ``link`` (the
    hub's ``license_name`` / ``license_link`` for ``other``), where it was read (``source``),
    and whether it forbids commercial use (``non_commercial``)."""

    id: str
    text: str
    name: str | None = None
    link: str | None = None
    source: str | None = None
    non_commercial: bool = False


def _front_matter(readme: Path) -> tuple[dict[str, Any], str]:
    """The YAML front matter (``{}`` when none or unreadable) and the text after it."""
    text = readme.read_text(encoding="utf-8", errors="replace")
    meta: dict[str, Any] = {}
    body = text
    match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.DOTALL)
    if match:
        body = text[match.end():]
        try:
            import yaml

            loaded = yaml.safe_load(match.group(1))
            meta = loaded if isinstance(loaded, dict) else {}
        except Exception as exc:  # a broken card must not stop an export
            logger.warning("%s: unreadable front matter (%s); licence not read from it",
                           readme, exc)
    return meta, body


def _license_section(body: str) -> str | None:
    """The first paragraph under a "License" heading, whitespace collapsed."""
    match = _LICENSE_HEADING.search(body)
    if not match:
        return None
    rest = body[match.end():]
    nxt = _HEADING.search(rest)
    section = rest[: nxt.start()] if nxt else rest
    paragraph = next((p for p in re.split(r"\n\s*\n", section) if p.strip()), "")
    return " ".join(paragraph.split()) or None


def _local_path(text: str) -> bool:
    """A name that is a path on this machine: absolute, home- or dot-relative, with a
    backslash or more than one ``/``, or an existing folder (a hub id has one ``/``)."""
    return (text.startswith(("/", "~", ".")) or "\\" in text or text.count("/") > 1
            or Path(text).expanduser().is_dir())


def card_name(text: str) -> str:
    """How a card names a model, a file or a data source: an alias, a hub id or a task as
    given; a path on this machine by its last part only (a card travels with the folder: the
    path of the machine that wrote it means nothing elsewhere and tells about that machine).
    Comma-separated parts and a ``file:`` prefix are kept.

    >>> card_name("m3e-small"), card_name("moka-ai/m3e-small"), card_name("task:ATEC:test")
    ('m3e-small', 'moka-ai/m3e-small', 'task:ATEC:test')
    >>> card_name("/home/u/runs/simcse-stsb/"), card_name("file:/data/fit.txt,task:BQ:train")
    ('simcse-stsb', 'file:fit.txt,task:BQ:train')
    """
    parts = []
    for part in text.split(","):
        prefix = "file:" if part.startswith("file:") else ""
        rest = part[len(prefix):]
        if rest and _local_path(rest):
            rest = Path(rest.rstrip("/\\")).name or rest
        parts.append(prefix + rest)
    return ",".join(parts)


def _slug(name: str) -> str:
    """A hub ``license_name`` from a model name or folder (its last part)."""
    return re.sub(r"[^a-z0-9]+", "-", Path(name).name.lower()).strip("-") or "base-model"


def read_base_license(folder: str | os.PathLike | None, base_name: str = "the base model",
                      hub_id: str | None = None) -> BaseLicense:
    """The licence of the model in ``folder`` (None: a hub model not on disk).

    In order: ``README.md``'s front matter ``license:`` (with ``license_name`` /
    ``license_link``), the README's "License" section (``other``, its first paragraph quoted),
    ``config.json``'s ``license``; otherwise ``unknown`` and :data:`UNKNOWN_LICENSE`.

    >>> read_base_license(None, "x", "org/x").text
    "unknown \u2014 check the base model's card (https://huggingface.co/org/x)"
    """
    link = f"https://huggingface.co/{hub_id}" if hub_id else None
    path = Path(folder) if folder is not None else None
    readme = path / CARD_FILE if path is not None else None
    if readme is not None and readme.is_file():
        meta, body = _front_matter(readme)
        lic = meta.get("license")
        if isinstance(lic, str) and lic.strip() and lic.strip() != "unknown":
            name, lic_link = meta.get("license_name"), meta.get("license_link")
            text = lic.strip() if lic.strip() != "other" else str(name or "other")
            return BaseLicense(lic.strip(), text, str(name) if name else None,
                               str(lic_link) if lic_link else link,
                               str(readme), bool(_NON_COMMERCIAL.search(
                                   f"{lic} {name or ''}")))
        section = _license_section(body)
        if section:
            nc = bool(_NON_COMMERCIAL.search(section))
            what = "non-commercial, research use only" if nc else "see the base model's card"
            return BaseLicense("other", f'{what} ({base_name}\'s README, "License": '
                               f'"{section}")', f"{_slug(base_name)}-license", link,
                               str(readme), nc)
    config = path / "config.json" if path is not None else None
    if config is not None and config.is_file():
        try:
            lic = json.loads(config.read_text(encoding="utf-8")).get("license")
        except (ValueError, AttributeError):
            lic = None
        if isinstance(lic, str) and lic.strip():
            return BaseLicense(lic.strip(), lic.strip(), link=link, source=str(config),
                               non_commercial=bool(_NON_COMMERCIAL.search(lic)))
    return BaseLicense("unknown", UNKNOWN_LICENSE + (f" ({link})" if link else ""), link=link)


@dataclass(frozen=True)
class CardInfo:
    """What a card says. ``base_model`` is the hub id for the front matter (None for a local
    folder); ``details`` are extra (label, value) rows of the model table; ``scores`` maps a
    label (task/split) to a Spearman fraction; ``usage`` a Python snippet."""

    title: str
    base_name: str
    license: BaseLicense
    summary: str
    base_model: str | None = None
    pooling: str | None = None
    postprocessor: str | None = None
    fit_data: str | None = None
    details: Sequence[tuple[str, str]] = ()
    scores: Mapping[str, float] | None = None
    tags: Sequence[str] = ("embedkit", "sentence-transformers", "sentence-similarity")
    language: Any = None
    library_name: str | None = "sentence-transformers"
    usage: str | None = None
    embedkit_version: str = field(default=__version__)
    #: a calibrated decision threshold (embedkit.runs.whiten.calibrate_threshold)
    threshold: Mapping[str, Any] | None = None


def _yaml(info: CardInfo) -> str:
    from huggingface_hub import ModelCardData

    lic = info.license
    data = ModelCardData(
        license=lic.id, license_name=lic.name if lic.id == "other" else None,
        license_link=lic.link if lic.id == "other" else None, base_model=info.base_model,
        tags=list(dict.fromkeys(info.tags)), language=info.language,
        library_name=info.library_name, pipeline_tag="sentence-similarity")
    return data.to_yaml()


def _licence_lines(info: CardInfo) -> list[str]:
    lic = info.license
    out = ["## Licence", ""]
    if lic.non_commercial:
        out += [f"**Non-commercial.** This model is derived from {card_name(info.base_name)}, "
                "whose licence forbids commercial use; it inherits that licence.", ""]
    out += [f"- Base model licence: {lic.text}"]
    if lic.source:  # the file's name only: the base model's folder is a path of this machine
        out += [f"- Read from: the base model's `{Path(lic.source).name}`"]
    if lic.link:
        out += [f"- Base model card: {lic.link}"]
    return out + ["", "The licence of the fit or training data may add conditions.", ""]


def render_model_card(info: CardInfo) -> str:
    """The card's text: front matter, summary, licence, the model table, scores, usage."""
    rows = [["Base model", Markdown(escape_markdown(card_name(info.base_name)) + (
        f" (`{escape_markdown(info.base_model)}`)" if info.base_model else ""))]]
    rows += [[label, value] for label, value in (
        ("Pooling", info.pooling), ("Postprocessor", info.postprocessor),
        ("Fitted on", info.fit_data)) if value]
    rows += [[label, value] for label, value in info.details]
    lic = info.license
    rows += [["Licence", ("non-commercial, " if lic.non_commercial else "") + lic.id
              + (f" ({lic.name})" if lic.name else "")], ["embedkit", info.embedkit_version]]
    out = ["---", _yaml(info).rstrip("\n"), "---", "", f"# {info.title}", "", info.summary, ""]
    out += _licence_lines(info)
    out += ["## Model", "", text_table(["", "value"], rows, markdown=True, left=2), "",
            "## Scores", ""]
    if info.scores:
        out += ["Spearman x 100 of cosine similarity.", "",
                text_table(["task / split", "Spearman x 100"],
                           [[k, f"{100 * v:.2f}"] for k, v in info.scores.items()],
                           markdown=True), ""]
    else:
        out += ["Not measured when this folder was written; `embedkit bench` with this folder "
                "as the model measures them.", ""]
    out += _threshold_lines(info.threshold)
    if info.usage:
        out += ["## Usage", "", "```python", info.usage.rstrip("\n"), "```", ""]
    return "\n".join(out)


def _threshold_lines(t: Mapping[str, Any] | None) -> list[str]:
    """The "Threshold" section: the cosine above which a pair is called a duplicate, where it
    was chosen and what it scores on held-out pairs."""
    if not t:
        return []
    return ["## Threshold", "",
            f"A pair is a duplicate when the cosine of its two vectors is above "
            f"**{t['threshold']:.4f}** (best accuracy on {t['task']}/{t['selected_on']}). On "
            f"{t['task']}/{t['evaluated_on']} ({t['n_pairs']} pairs, not used to choose it) it "
            f"gives accuracy {100 * t['accuracy']:.2f}; the best-F1 threshold "
            f"{t['f1_threshold']:.4f} gives F1 {100 * t['f1']:.2f}; average precision "
            f"{100 * t['ap']:.2f}. Also in `embedkit_threshold.json`.", ""]


def write_model_card(folder: str | os.PathLike, info: CardInfo) -> Path:
    """Write ``folder/README.md`` (replacing any generic card there); returns its path."""
    path = Path(folder) / CARD_FILE
    path.write_text(render_model_card(info), encoding="utf-8")
    return path
