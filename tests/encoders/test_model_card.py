"""Model cards: the base model's licence read from its folder, and the rendered card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from embedkit.encoders.model_card import (
    UNKNOWN_LICENSE,
    BaseLicense,
    CardInfo,
    read_base_license,
    render_model_card,
)

M3E_LICENSE = ("M3E models 使用的数据集中包括大量非商用的数据集，所以 M3E models 也是非商用的，"
               "仅供研究使用。")


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_license_from_front_matter(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# M\n",
                                        encoding="utf-8")
    lic = read_base_license(tmp_path, "m")
    assert (lic.id, lic.text, lic.non_commercial) == ("apache-2.0", "apache-2.0", False)
    assert lic.source == str(tmp_path / "README.md")


def test_license_section_non_commercial(tmp_path):
    (tmp_path / "README.md").write_text(
        f"---\nlanguage: [zh]\n---\n# M3E\n\n## License\n\n{M3E_LICENSE}\n\n## Next\nx\n",
        encoding="utf-8")
    lic = read_base_license(tmp_path, "m3e-small", "moka-ai/m3e-small")
    assert (lic.id, lic.name, lic.non_commercial) == ("other", "m3e-small-license", True)
    assert lic.text.startswith("non-commercial, research use only") and M3E_LICENSE in lic.text
    assert lic.link == "https://huggingface.co/moka-ai/m3e-small"


def test_license_from_config_then_unknown(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"license": "mit"}), encoding="utf-8")
    assert read_base_license(tmp_path).id == "mit"
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    lic = read_base_license(tmp_path)
    assert (lic.id, lic.text) == ("unknown", UNKNOWN_LICENSE)
    assert UNKNOWN_LICENSE == "unknown \u2014 check the base model's card"


def test_broken_front_matter_falls_back(tmp_path, caplog):
    (tmp_path / "README.md").write_text("---\nlicense: [unclosed\n---\n## License\nMIT\n",
                                        encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="embedkit.encoders.model_card"):
        lic = read_base_license(tmp_path, "m")
    assert lic.id == "other" and "MIT" in lic.text
    assert [r.getMessage() for r in caplog.records if "unreadable front matter" in r.getMessage()]


def test_rendered_card_front_matter_and_text():
    lic = BaseLicense("other", "non-commercial, research use only", name="m3e-small-license",
                      link="https://huggingface.co/moka-ai/m3e-small", non_commercial=True)
    text = render_model_card(CardInfo(
        title="T", base_name="m3e-small", base_model="moka-ai/m3e-small", license=lic,
        summary="S.", pooling="last-avg", postprocessor="whiten:beta=1,gamma=1,k=8",
        fit_data="task:STS-B", scores={"STS-B/test": 0.7123}, embedkit_version="9.9"))
    meta = front_matter(text)
    assert meta["license"] == "other" and meta["license_name"] == "m3e-small-license"
    assert meta["base_model"] == "moka-ai/m3e-small" and "embedkit" in meta["tags"]
    assert "**Non-commercial.**" in text and "| Pooling | last-avg |" in text
    assert "| Postprocessor | whiten:beta=1,gamma=1,k=8 |" in text
    assert "| STS-B/test | 71.23 |" in text and "| embedkit | 9.9 |" in text


def test_the_installed_m3e_small_is_non_commercial():
    from embedkit.encoders.models import resolve_model_path

    path = Path(resolve_model_path("m3e-small"))
    if not (path / "README.md").is_file():
        pytest.skip("m3e-small is not installed locally")
    lic = read_base_license(path, "m3e-small", "moka-ai/m3e-small")
    assert lic.non_commercial and lic.id == "other"


def test_a_card_names_local_folders_and_files_by_their_names(tmp_path):
    """No path of the machine that wrote the card (issue 18), whoever builds it."""
    from embedkit.encoders.model_card import card_name
    from embedkit.training.checkpoint import training_card

    base = tmp_path / "runs" / "base-model"
    base.mkdir(parents=True)
    (base / "README.md").write_text("---\nlicense: mit\n---\n", encoding="utf-8")
    assert card_name(str(base)) == card_name(f"{base}/") == "base-model"
    assert card_name("moka-ai/m3e-small") == "moka-ai/m3e-small"
    assert card_name("file:/x/y/fit.txt,task:BQ:train") == "file:fit.txt,task:BQ:train"
    rec = {"method": "simcse-unsupervised", "base_model": {"name": str(base), "path": str(base)},
           "pooling": "cls", "max_length": 32,
           "data": {"kind": "corpus", "file": str(tmp_path / "c.txt")}, "steps": 1,
           "total_steps": 1, "seed": 1, "hyperparameters": {}}
    card = training_card(rec)
    text = render_model_card(card)
    assert str(tmp_path) not in text and card.base_model is None and card.license.id == "mit"
    assert "# base-model + simcse-unsupervised" in text and "the corpus file c.txt" in text
    assert "- Read from: the base model's `README.md`" in text
