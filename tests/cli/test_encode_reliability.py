"""Encode folders and two-file exports on the command line (issue 18, item 5): a hand-edited
encode manifest or a shard named outside the folder is one error line for ``index build
--embeddings`` and ``diagnose --embeddings``; the kernel of one ``whiten --format faiss`` export
beside the metadata of another is one error line where it is used."""

from __future__ import annotations

import json
import shutil

import pytest

from embedkit.cli.main import main
from embedkit.store.encode_folder import MANIFEST, synthetic_folder, write_manifest
from tests.conftest import cli_error

pytest.importorskip("pyarrow")
R = pytest.mark.reliability


@pytest.fixture
def folder(tmp_path):
    return synthetic_folder(tmp_path / "emb", rows=120, dim=8, seed=0, shard_size=50)


def _readers(folder, tmp_path):
    return {"index build": ["index", "build", "--embeddings", str(folder), "--out",
                            str(tmp_path / "idx")],
            "diagnose": ["diagnose", "--embeddings", str(folder), "--k", "5", "--output",
                         str(tmp_path / "d.json")]}


@pytest.mark.parametrize("command", [
    pytest.param("index build", marks=R("18.5", "index build --embeddings on a manifest whose "
                                               "recipe.pooling was edited: one line naming it")),
    pytest.param("diagnose", marks=R("18.5", "diagnose --embeddings on a manifest whose "
                                            "recipe.pooling was edited: one line naming it")),
])
def test_edited_manifest_is_one_line(folder, tmp_path, capsys, command):
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    manifest["recipe"]["pooling"] = "last-avg"
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    line = cli_error(capsys, _readers(folder, tmp_path)[command])
    assert line == (f"--embeddings: {folder / MANIFEST}: edited since the folder was encoded "
                    "(changed recipe.pooling): its values say how the vectors were made and how "
                    "queries are encoded, so they cannot change afterwards; put the file back "
                    "as it was or encode the corpus again with the new settings")
    assert not (tmp_path / "idx").exists() and not (tmp_path / "d.json").exists()


@pytest.mark.parametrize("command", ["index build", "diagnose"])
@R("18.5", "a manifest naming a shard '../x.parquet': one line naming the entry, nothing read")
def test_shard_outside_the_folder_is_one_line(folder, tmp_path, capsys, command):
    shutil.copyfile(folder / "shard-00001.parquet", tmp_path / "x.parquet")
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    manifest["shards"][1]["file"] = "../x.parquet"
    write_manifest(folder, manifest)
    line = cli_error(capsys, _readers(folder, tmp_path)[command])
    assert line == (f"--embeddings: {folder / MANIFEST}: shards[1].file '../x.parquet' is not a "
                    f"file inside {folder} (an absolute path, '..' or a link leaving it); "
                    "encode the corpus again")


@R("18.5", "whiten --format faiss: the kernel of a last-avg export beside the metadata of a cls "
           "export (same k): bench --post file: refuses it in one line")
def test_faiss_export_of_mixed_files_is_one_line(tiny_model_dir, spec_file, tmp_path, capsys):
    paths = {}
    for pooling in ("cls", "last-avg"):
        (tmp_path / pooling).mkdir()
        paths[pooling] = tmp_path / pooling / "w.faiss"
        assert main(["whiten", "--model", str(tiny_model_dir), "--fit-on", str(spec_file),
                     "--pooling", pooling, "--k", "8", "--format", "faiss", "--out",
                     str(paths[pooling])]) == 0
    capsys.readouterr()
    shutil.copyfile(paths["last-avg"], paths["cls"])  # as a kill between the two files leaves
    line = cli_error(capsys, ["bench", "--model", str(tiny_model_dir), "--tasks",
                                   str(spec_file), "--pooling", "cls", "--post",
                                   f"file:{paths['cls']}"])
    assert f"{paths['cls']}.json: written with another kernel than {paths['cls']}" in line
