"""Encode folders as safe as index folders (issue 18, item 5): the sealed and validated
``manifest.json``, shards checked against their recorded row range, ids and folder, shard names
kept inside the folder, and on-disk IVF indexes that read their own inverted lists when copied.

The folders are synthetic (``store.encode_folder.synthetic_folder``: no model), 300 rows of 8-d
vectors in 3 shards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from embedkit.errors import ConfigError
from embedkit.provenance import sha256_file
from embedkit.retrieval.folder import build_index
from embedkit.retrieval.persistence import IVFDATA_FILE
from embedkit.store.encode_folder import (
    MANIFEST,
    EncodeFolder,
    folder_key,
    read_shard,
    shard_name,
    synthetic_folder,
    write_manifest,
    write_shard,
)

pytest.importorskip("pyarrow")
R = pytest.mark.reliability
ROOT = Path(__file__).parents[2]


@pytest.fixture
def folder(tmp_path) -> Path:
    return synthetic_folder(tmp_path / "emb", rows=300, dim=8, seed=0, shard_size=100)


def edit(folder: Path, change, *, reseal: bool = False) -> None:
    """Change manifest.json by hand (``reseal``: and compute its seal again, as a forger or a
    tool that rewrites it would)."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    change(manifest)
    if reseal:
        write_manifest(folder, manifest)
    else:
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def refusal(folder: Path) -> str:
    with pytest.raises(ConfigError) as err:
        EncodeFolder.open(folder)
    assert err.value.param == "embeddings"
    assert "\n" not in str(err.value)
    return str(err.value)


# --------------------------------------------------------------------------------------------
# the manifest sealed and typed


@R("18.5", "encode manifest.json recipe.pooling edited by hand: the folder is refused naming "
           "the key, and no index is built from it")
def test_hand_edited_manifest_recipe_refused(folder, tmp_path):
    edit(folder, lambda m: m["recipe"].__setitem__("pooling", "last-avg"))
    assert refusal(folder) == (
        f"{folder / MANIFEST}: edited since the folder was encoded (changed recipe.pooling): "
        "its values say how the vectors were made and how queries are encoded, so they cannot "
        "change afterwards; put the file back as it was or encode the corpus again with the "
        "new settings")
    with pytest.raises(ConfigError, match="changed recipe.pooling"):
        build_index(tmp_path / "idx", folder)
    assert not (tmp_path / "idx").exists()


@R("18.5", "encode manifest.json with a value of the wrong type: one line naming the key")
def test_mistyped_manifest_value_refused(folder):
    edit(folder, lambda m: m["shards"][1].__setitem__("rows", "100"))
    assert refusal(folder) == (f"{folder / MANIFEST}: key 'shards[1].rows' must be an integer, "
                               "not '100'; encode the corpus again")


def test_manifest_is_sealed_and_an_unsealed_one_loads_with_a_warning(folder):
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert "recipe.pooling" in manifest["values_sha256"] and "shards" in manifest["values_sha256"]
    edit(folder, lambda m: m.pop("values_sha256"))
    with pytest.warns(UserWarning, match="without checksums of its values"):
        assert EncodeFolder.open(folder).total_rows == 300


# --------------------------------------------------------------------------------------------
# shards against their row range, ids and folder


def _put_shard(folder: Path, i: int, source: Path) -> None:
    """Replace shard ``i`` by ``source`` and record its sha256 in the (resealed) manifest."""
    shutil.copyfile(source, folder / shard_name(i))
    digest = sha256_file(folder / shard_name(i))
    edit(folder, lambda m: m["shards"][i].__setitem__("sha256", digest), reseal=True)


@R("18.5", "a shard replaced by another valid shard of the folder, its sha256 put in the "
           "manifest: refused (row range)")
def test_shard_of_another_position_refused(folder):
    _put_shard(folder, 1, folder / shard_name(0))
    assert refusal(folder) == (
        f"{folder / shard_name(1)}: holds rows from 0 but {MANIFEST} says rows from 100: a "
        "shard of another position or folder; rerun `embedkit encode` to re-encode it")


@R("18.5", "a shard replaced by the same shard of another encode folder, its sha256 put in "
           "the manifest: refused")
def test_shard_of_another_folder_refused(folder, tmp_path):
    other = synthetic_folder(tmp_path / "other", rows=300, dim=8, seed=1, shard_size=100)
    _put_shard(folder, 2, other / shard_name(2))
    assert refusal(folder) == (
        f"{folder / shard_name(2)}: written for another encode folder (recipe, inputs or "
        "storage differ); rerun `embedkit encode` to re-encode it")


@R("18.5", "a shard whose ids differ from those recorded (same row range and folder): refused")
def test_shard_with_other_ids_refused(folder):
    ids, texts, x = read_shard(folder / shard_name(1))
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    tmp = folder.parent / "forged.parquet"
    write_shard(tmp, [f"x{i}" for i in ids], texts, x, first_row=100, key=folder_key(manifest))
    _put_shard(folder, 1, tmp)
    assert refusal(folder) == (f"{folder / shard_name(1)}: its ids differ from those "
                               f"{MANIFEST} recorded; rerun `embedkit encode` to re-encode it")


def test_row_ranges_must_follow_each_other(folder):
    edit(folder, lambda m: m["shards"][2].__setitem__("first_row", 150), reseal=True)
    assert refusal(folder) == (f"{folder / MANIFEST}: shards[2].first_row is 150 but the shards "
                               "before it end at row 200; encode the corpus again")
    edit(folder, lambda m: (m["shards"][2].__setitem__("first_row", 200),
                            m.__setitem__("total_rows", 400)), reseal=True)
    assert refusal(folder) == (f"{folder / MANIFEST}: total_rows is 400 but the shards hold 300 "
                               "rows; encode the corpus again")


# --------------------------------------------------------------------------------------------
# shard names inside the folder


def _outside_copy(folder: Path) -> Path:
    out = folder.parent / "x.parquet"
    shutil.copyfile(folder / shard_name(0), out)
    return out


def _dotdot(folder: Path) -> str:
    _outside_copy(folder)
    return "../x.parquet"


def _absolute(folder: Path) -> str:
    return str(_outside_copy(folder))


def _link(folder: Path) -> str:
    (folder / "link.parquet").symlink_to(_outside_copy(folder))
    return "link.parquet"


@pytest.mark.parametrize("name_of", [
    pytest.param(_dotdot, id="dotdot", marks=R(
        "18.5", "manifest shard named '../x.parquet': refused in one line naming the entry")),
    pytest.param(_absolute, id="absolute", marks=R(
        "18.5", "manifest shard named by an absolute path: refused in one line naming the entry")),
    pytest.param(_link, id="symlink", marks=R(
        "18.5", "manifest shard that is a link leaving the folder: refused in one line naming "
                "the entry")),
])
def test_shard_names_stay_inside_the_folder(folder, name_of):
    name = name_of(folder)  # each a valid copy of shard 0, its sha256 the recorded one
    edit(folder, lambda m: m["shards"][0].__setitem__("file", name), reseal=True)
    assert refusal(folder) == (
        f"{folder / MANIFEST}: shards[0].file {name!r} is not a file inside {folder} (an "
        "absolute path, '..' or a link leaving it); encode the corpus again")


def test_a_link_inside_the_folder_is_a_shard(folder):
    (folder / shard_name(0)).rename(folder / "real.parquet")
    (folder / shard_name(0)).symlink_to("real.parquet")
    assert EncodeFolder.open(folder).total_rows == 300


# --------------------------------------------------------------------------------------------
# on-disk IVF indexes copied or moved

_SEARCH = """
import json, sys
import numpy as np
from embedkit.retrieval.index import EmbeddingIndex
index = EmbeddingIndex.load(sys.argv[1])
hits = index.search(np.load(sys.argv[2]), k=5, nprobe=4)
print(json.dumps([[h.id for h in q] for q in hits]))
"""


def _search_in_a_process(index_dir: Path, queries: Path) -> list[list[int]]:
    """Load and search ``index_dir`` in a child process: a crash (bus error, segfault) fails
    the test instead of killing the test run."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _SEARCH, str(index_dir), str(queries)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _delete(original: Path, tmp_path: Path) -> None:
    shutil.rmtree(original)


def _truncate(original: Path, tmp_path: Path) -> None:
    (original / IVFDATA_FILE).write_bytes(b"")


def _rebuild_other(original: Path, tmp_path: Path) -> None:
    other = synthetic_folder(tmp_path / "other", rows=600, dim=8, seed=5, shard_size=200)
    build_index(original, other, factory="IVF4,Flat", seed=1, on_disk=True)


@pytest.mark.parametrize("change", [
    pytest.param(_delete, id="deleted", marks=R(
        "18.5", "on-disk IVF index copied, the original deleted: the copy loads and searches "
                "its own lists")),
    pytest.param(_truncate, id="truncated", marks=R(
        "18.5", "on-disk IVF index copied, the original's lists truncated: the copy searches "
                "right, no bus error")),
    pytest.param(_rebuild_other, id="rebuilt", marks=R(
        "18.5", "on-disk IVF index copied, the original rebuilt from other vectors: the copy "
                "searches its own lists")),
])
def test_copied_on_disk_index_reads_its_own_lists(folder, tmp_path, change):
    original, copy = tmp_path / "disk", tmp_path / "copy"
    memory = build_index(tmp_path / "mem", folder, factory="IVF4,Flat", seed=1)
    build_index(original, folder, factory="IVF4,Flat", seed=1, on_disk=True)
    shutil.copytree(original, copy)
    change(original, tmp_path)
    queries = tmp_path / "q.npy"
    np.save(queries, EncodeFolder.open(folder).sample(12, seed=2))
    expected = [[h.id for h in q] for q in memory.search(np.load(queries), k=5, nprobe=4)]
    assert _search_in_a_process(copy, queries) == expected


def test_the_checksum_covers_the_lists_faiss_maps(folder, tmp_path):
    """The copy's own lists.ivfdata is what is checked and mapped: damage it and the copy is
    refused (while the original, untouched, still loads)."""
    from embedkit.retrieval.index import EmbeddingIndex

    original, copy = tmp_path / "disk", tmp_path / "copy"
    build_index(original, folder, factory="IVF4,Flat", seed=1, on_disk=True)
    shutil.copytree(original, copy)
    data = bytearray((copy / IVFDATA_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / IVFDATA_FILE).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=f"{copy / IVFDATA_FILE}: changed since the index"):
        EmbeddingIndex.load(copy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EmbeddingIndex.load(original).ntotal == 300
