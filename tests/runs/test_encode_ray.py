"""The Ray engine gives the local engine's shards and manifest (one local Ray per session,
skipped with the reason when Ray cannot start); without Ray it says how to install it."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from embedkit.encoders import EncoderConfig
from embedkit.errors import ConfigError
from embedkit.runs.encode import EncodeSettings, run_encode
from embedkit.store.encode_folder import EncodeFolder, read_shard
from tests.conftest import source_sentences

pytest.importorskip("pyarrow")


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'embedkit[ray]')")
    pytest.importorskip("ray.data")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"Ray cannot start here: {exc}")
    yield ray
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path):
    texts = list(dict.fromkeys(source_sentences()))
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"k": f"s{i}", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    return path


def _comparable(manifest):
    return {k: v for k, v in manifest.items()
            if k not in ("engine", "settings", "timings", "versions", "command")}


@pytest.mark.slow
def test_ray_engine_equals_local(tmp_path, corpus, tiny_model_dir, ray_session, monkeypatch):
    from embedkit.encoders import transformer

    loads: list[str] = []
    load = transformer._load
    monkeypatch.setattr(transformer, "_load", lambda *a, **k: loads.append("x") or load(*a, **k))
    config = EncoderConfig(str(tiny_model_dir), pooling="cls", cache=False, batch_size=16)
    local = run_encode(config, corpus, tmp_path / "local", EncodeSettings(
        shard_size=25, max_length=32), id_column="k")
    assert loads == ["x"]
    remote = run_encode(config, corpus, tmp_path / "ray", EncodeSettings(
        shard_size=25, max_length=32, engine="ray", workers=2), id_column="k")
    assert loads == ["x"]  # the driver read the folder; only the workers loaded the model
    assert remote["manifest"]["engine"] == "ray"
    assert list(remote["model"]) == list(local["model"])
    assert remote["model"]["identity"] == local["model"]["identity"]
    man_l, man_r = _comparable(local["manifest"]), _comparable(remote["manifest"])
    shards_l, shards_r = man_l.pop("shards"), man_r.pop("shards")
    assert man_l == man_r
    assert [(e["file"], e["rows"]) for e in shards_l] == [(e["file"], e["rows"])
                                                         for e in shards_r]
    for a, b in zip(EncodeFolder.open(tmp_path / "local").shard_files,
                    EncodeFolder.open(tmp_path / "ray").shard_files, strict=True):
        ids_a, texts_a, x_a = read_shard(a)
        ids_b, texts_b, x_b = read_shard(b)
        assert ids_a == ids_b and texts_a == texts_b and ids_a[0].startswith("s")
        np.testing.assert_allclose(x_a, x_b, atol=1e-5)
    # a rerun of the finished folder on Ray writes nothing
    again = run_encode(config, corpus, tmp_path / "ray", EncodeSettings(
        shard_size=25, max_length=32, engine="ray", workers=2), id_column="k")
    assert again["status"] == "complete"


def test_ray_engine_needs_a_config(tmp_path, corpus, tiny_model_dir):
    enc = EncoderConfig(str(tiny_model_dir), cache=False).build(cache=False)
    with pytest.raises(ConfigError) as err:
        run_encode(enc, corpus, tmp_path / "o", EncodeSettings(engine="ray"))
    assert err.value.param == "engine"


def test_without_ray_the_error_says_how_to_install(tmp_path, corpus, tiny_model_dir,
                                                   monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(ConfigError) as err:
        run_encode(EncoderConfig(str(tiny_model_dir), cache=False), corpus, tmp_path / "o",
                   EncodeSettings(engine="ray"))
    assert err.value.param == "engine"
    assert "pip install 'embedkit[ray]'" in str(err.value)


# -- Ray's own logging only with --debug (issue 18) -------------------------------------------

class _FakeRay:
    """What _connect and quiet_ray_data touch of the ``ray`` module: no Ray is started."""

    def __init__(self):
        import types

        self.inits = []
        self.ctx = types.SimpleNamespace(enable_progress_bars=True)
        self.data = types.SimpleNamespace(DataContext=types.SimpleNamespace(
            get_current=lambda: self.ctx))

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.inits.append(kwargs)


@pytest.fixture
def embedkit_level():
    """Set the embedkit logger's level as the CLI does (--debug: DEBUG); reset after (setLevel
    also clears the loggers' cached levels)."""
    import logging

    log = logging.getLogger("embedkit")
    yield log.setLevel
    log.setLevel(logging.NOTSET)


@pytest.mark.parametrize("debug", [False, True])
def test_ray_logging_is_quiet_unless_debug(monkeypatch, embedkit_level, debug):
    import logging

    from embedkit.runs import encode_ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    embedkit_level(logging.DEBUG if debug else logging.INFO)
    ray = _FakeRay()
    assert encode_ray._connect(ray, None, 2) is True
    assert ray.inits == [{"num_cpus": 3, "include_dashboard": False,
                          "logging_level": logging.INFO if debug else logging.ERROR,
                          "log_to_driver": debug}]
    data_log = logging.getLogger("ray.data")
    before = data_log.level
    with encode_ray.quiet_ray_data(ray, encode_ray.ray_verbose()):
        assert ray.ctx.enable_progress_bars is debug
        assert data_log.level == (before if debug else logging.ERROR)
    assert ray.ctx.enable_progress_bars is True and data_log.level == before
    ray.inits.clear()
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    encode_ray._connect(ray, None, 2)
    assert ray.inits == [{"address": "ray://head:10001",
                          "logging_level": logging.INFO if debug else logging.ERROR,
                          "log_to_driver": debug}]
