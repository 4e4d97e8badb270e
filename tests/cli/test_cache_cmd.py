"""``embedkit cache info|clear``."""

from __future__ import annotations

from embedkit.cli.main import main


def populate(model_dir, spec_file, *extra):
    assert main(["bench", "--model", str(model_dir), "--tasks", str(spec_file), "--pooling",
                 "cls,last-avg", *extra]) == 0


def test_info_and_clear(tiny_model_dir, spec_file, tmp_path, capsys):
    root = tmp_path / "embedkit-cache"
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.startswith(f"cache: {root}  (0 namespaces, 0.0 MiB)")
    populate(tiny_model_dir, spec_file)
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"cache: {root}  (2 namespaces, ")
    assert len(lines) == 3
    poolings = sorted(line.split()[2] for line in lines[1:])
    assert poolings == ["cls", "last-avg"]
    assert all(str(tiny_model_dir) in line and "max_length=64" in line and "float32" in line
               for line in lines[1:])
    from embedkit.data import load_task

    n = len(load_task(str(spec_file))["test"].unique_sentences())
    assert all(f"rows={n}" in line for line in lines[1:])

    assert main(["cache", "clear", "--model", "no-such-model"]) == 0
    assert capsys.readouterr().out.strip() == f"removed 0 cache namespace(s) from {root}"
    # a part of the name matches nothing (issue 9.12): the model as run, exactly
    assert main(["cache", "clear", "--model", tiny_model_dir.name]) == 0
    assert capsys.readouterr().out.strip() == f"removed 0 cache namespace(s) from {root}"
    assert main(["cache", "clear", "--model", str(tiny_model_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"removed 2 cache namespace(s) from {root}"
    assert main(["cache", "info"]) == 0
    assert "(0 namespaces" in capsys.readouterr().out


def test_cache_dir_option(tiny_model_dir, spec_file, tmp_path, capsys):
    other = tmp_path / "c2"
    populate(tiny_model_dir, spec_file, "--cache-dir", str(other))
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", str(other)]) == 0
    assert "(2 namespaces" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache-dir", str(other)]) == 0
    assert "removed 2" in capsys.readouterr().out


def test_info_tells_backend_precision_prompt_apart(tiny_model_dir, spec_file, capsys):
    """An int8 ONNX run with a prompt is its own namespace, and ``cache info`` says so (it read
    float32 for both before); the bench's title says how it ran too."""
    populate(tiny_model_dir, spec_file)
    capsys.readouterr()
    populate(tiny_model_dir, spec_file, "--backend", "onnx", "--quantize", "int8",
             "--prompt", "query: ")
    title = capsys.readouterr().out.splitlines()[0]
    assert title == (f'{tiny_model_dir} [onnx int8, prompt "query: "]: Spearman x 100 '
                     "(whitening protocol)")
    assert main(["cache", "info"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    runs = sorted((line.split()[2], line[line.index("[") + 1:line.index("]")]) for line in lines)
    assert runs == [("cls", 'onnx int8, prompt "query: "'), ("cls", "torch float32"),
                    ("last-avg", 'onnx int8, prompt "query: "'), ("last-avg", "torch float32")]


def test_namespace_run_reads_identities():
    from embedkit.encoders.cache import namespace_run

    hub = namespace_run({"model_identity": "org/m@0123456789abcdef;dtype=float16",
                         "dtype": "float16"})
    assert hub == {"backend": "torch", "quantize": "none", "dtype": "float16", "prompt": "",
                   "revision": "0123456789ab"}
    ov = namespace_run({"model_identity": "sha256:ab;backend=openvino;lowercase"})
    assert (ov["backend"], ov["quantize"], ov["revision"]) == ("openvino", "none", "")
