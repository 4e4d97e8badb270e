"""``embedkit distill``: the model2vec method over embedkit's encoder and PCA, its folder loaded
by sentence-transformers and by embedkit, and its one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.cli.main import main
from embedkit.encoders.static import StaticEncoder
from tests.conftest import SPECIALS, cli_error, st_vectors

SENTENCES = ["一个男人在弹吉他。", "一个女人在打电话。", "男孩学习日历。", "一个人在切洋葱。",
             "一个男人在弹吉他，一个女人在打电话，男孩学习日历，一个人在切洋葱。"]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("distill") / "static"
    assert main(["distill", "--model", str(tiny_model_dir), "--dim", "8", "--out", str(out),
                 "--no-cache"]) == 0
    return out


def _teacher_rows(model_dir):
    """Independently, with transformers and numpy: each token but the special ones as
    ``[CLS] t [SEP]`` through the model, mean of the three outputs, PCA by SVD, model2vec's
    SIF-over-Zipf weights; kept: the tokens that are a sentence of their own."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    ids = sorted(i for t, i in tok.get_vocab().items() if t not in SPECIALS)
    x = torch.tensor([[tok.cls_token_id, i, tok.sep_token_id] for i in ids])
    with torch.no_grad():
        vecs = model(input_ids=x).last_hidden_state.mean(dim=1).double().numpy()
    centred = vecs - vecs.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    p = 1 / np.arange(2, len(ids) + 2)
    p /= p.sum()
    rows = (centred @ vt[:8].T) * (1e-4 / (1e-4 + p))[:, None]
    strings = [tok.convert_ids_to_tokens(i) for i in ids]
    alone = [k for k, s in enumerate(strings) if tok(s, add_special_tokens=False)["input_ids"]
             == [ids[k]]]
    return [strings[k] for k in alone], rows[alone]


def test_static_vectors_are_the_teachers_reduced_token_outputs(distilled, tiny_model_dir):
    strings, rows = _teacher_rows(tiny_model_dir)
    assert len(strings) > 100
    got = StaticEncoder(str(distilled)).encode(strings)
    want = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    # PCA's signs are free: compare the cosines between tokens, which do not depend on them
    np.testing.assert_allclose(got @ got.T, want @ want.T, atol=1e-4)
    # the stored rows themselves, SIF weights included (their Gram matrix: sign-free too)
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    stored = load_file(str(distilled / "model.safetensors"))["embedding.weight"]
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    mine = stored[tok.convert_tokens_to_ids(strings)].astype(np.float64)
    scale = np.abs(rows @ rows.T).max()
    np.testing.assert_allclose(mine @ mine.T / scale, rows @ rows.T / scale, atol=1e-4)
    assert not stored[:len(SPECIALS)].any()  # special tokens: zero rows
    recipe = json.loads((distilled / "embedkit_distill.json").read_text())
    n_vocab = len(json.loads((distilled / "tokenizer.json").read_text())["model"]["vocab"])
    assert recipe["teacher"] == str(tiny_model_dir) and recipe["teacher_dim"] == 32
    assert (recipe["dim"], recipe["post"], recipe["pooling"]) == (8, "pca:k=8", "last-avg")
    assert recipe["vocab_size"] == n_vocab - len(SPECIALS) and recipe["skipped_tokens"] == 5
    assert "distilled from" in (distilled / "README.md").read_text()


def test_sentence_transformers_and_embedkit_agree(distilled):
    from embedkit.encoders.config import EncoderConfig

    ours = EncoderConfig(str(distilled), cache=False).build().encode(SENTENCES)
    theirs = st_vectors(distilled, SENTENCES)
    assert ours.shape == (5, 8)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # the teacher's tokenizer settings do not travel: no truncation, no padding
    tokenizer = json.loads((distilled / "tokenizer.json").read_text())
    assert tokenizer["truncation"] is None and tokenizer["padding"] is None


def test_bench_runs_on_the_distilled_folder(distilled, spec_file, tmp_path):
    from scipy.stats import spearmanr

    from tests.conftest import source_lines

    record = tmp_path / "bench.json"
    assert main(["bench", "--model", str(distilled), "--tasks", str(spec_file), "--no-cache",
                 "--output", str(record)]) == 0
    rec = json.loads(record.read_text())
    rows = [line.split("\t") for line in source_lines()]
    enc = StaticEncoder(str(distilled))
    a, b = enc.encode([r[0] for r in rows]), enc.encode([r[1] for r in rows])
    want = spearmanr((a * b).sum(1), [float(r[2]) for r in rows]).statistic
    assert rec["model"]["kind"] == "static"
    got = rec["results"]["last-avg"]["tiny-sts"]["test"]["spearman"]
    assert abs(got - want) < 1e-9, (got, want)


def test_refusals_are_one_line_and_keep_the_folder(distilled, tiny_model_dir, capsys, tmp_path):
    model = ["--model", str(tiny_model_dir), "--no-cache"]
    err = cli_error(capsys, ["distill", *model, "--dim", "40", "--out", str(tmp_path / "x")],
                    before=None)
    assert err == "--dim: dim 40 is more than the teacher's 32 dimensions"
    before = (distilled / "model.safetensors").read_bytes()
    err = cli_error(capsys, ["distill", *model, "--dim", "4", "--out", str(distilled)])
    assert err.startswith(f"--out: {distilled} already exists") and "--force" in err
    err = cli_error(capsys, ["distill", *model, "--dim", "8", "--post", "pca:k=4", "--force",
                             "--out", str(distilled)], before=None)
    assert "gives 4 dimensions, not dim 8" in err
    assert (distilled / "model.safetensors").read_bytes() == before  # nothing replaced
    err = cli_error(capsys, ["distill", "--model", str(distilled), "--dim", "4", "--out",
                             str(tmp_path / "y")], before=None)
    assert "a static model cannot be distilled again" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_force_replaces_with_whitening(tmp_path, tiny_model_dir):
    out = tmp_path / "s"
    base = ["distill", "--model", str(tiny_model_dir), "--no-cache", "--out", str(out)]
    assert main([*base, "--dim", "8"]) == 0
    assert main([*base, "--dim", "6", "--post", "whiten:k=6", "--sif", "0", "--force"]) == 0
    recipe = json.loads((out / "embedkit_distill.json").read_text())
    assert (recipe["dim"], recipe["post"], recipe["weighting"]) == (6, "whiten:k=6", None)
    assert StaticEncoder(str(out)).dim == 6


def test_index_round_trip_rebuilds_the_static_model(distilled, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    idx = tmp_path / "idx"
    assert main(["index", "build", "--model", str(distilled), "--corpus", str(corpus),
                 "--out", str(idx), "--no-cache"]) == 0
    capsys.readouterr()
    assert main(["index", "search", "--index", str(idx), "--query", SENTENCES[2], "-k", "1",
                 "--no-cache"]) == 0
    hit = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["hits"][0]
    assert hit["text"] == SENTENCES[2] and abs(hit["score"] - 1) < 1e-5
