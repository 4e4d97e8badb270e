"""The hardware fingerprint (issue 23.5): CPU model, the flags that matter for speed, cores,
threads and GPU from a fake /proc/cpuinfo, and a digest equal for equal hardware only."""

from __future__ import annotations

import sys
import types

import pytest

from embedkit import provenance

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni avx512_bf16 sha_ni
processor\t: 1
model name\t: AMD EPYC 9B14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni avx512_bf16 sha_ni
"""


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """A two-processor /proc/cpuinfo and four cores available; returns the file to rewrite."""
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO, encoding="utf-8")
    monkeypatch.setattr(provenance, "CPUINFO", str(path))
    monkeypatch.setattr(provenance.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3},
                        raising=False)
    return path


def test_fingerprint_keys_from_cpuinfo(fake_cpu):
    fp = provenance.hardware_fingerprint(threads=2, device="cpu")
    assert fp == {"cpu": "AMD EPYC 9B14 96-Core Processor",
                  "cpu_flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"],
                  "cores_available": 4, "threads": 2, "gpu": None,
                  "fingerprint": fp["fingerprint"]}
    assert len(fp["fingerprint"]) == 12 and int(fp["fingerprint"], 16) >= 0


def test_machine_description_keeps_its_keys_and_adds_the_fingerprint(fake_cpu):
    m = provenance.machine_description(threads=2)
    assert m["cpu"] == "AMD EPYC 9B14 96-Core Processor" and m["cpu_bf16"] == "avx512_bf16"
    assert {"cores", "os"} <= set(m) and m["cores_available"] == 4
    assert m["fingerprint"] == provenance.hardware_fingerprint(threads=2)["fingerprint"]


def test_digest_is_stable_and_differs_with_the_hardware(fake_cpu):
    same = provenance.hardware_fingerprint(threads=2)["fingerprint"]
    assert provenance.hardware_fingerprint(threads=2)["fingerprint"] == same
    assert provenance.hardware_fingerprint(threads=1)["fingerprint"] != same
    fake_cpu.write_text(CPUINFO.replace(" avx512_bf16", ""), encoding="utf-8")
    no_bf16 = provenance.hardware_fingerprint(threads=2)
    assert no_bf16["cpu_flags"] == ["avx2", "avx512f", "avx512_vnni"]
    assert no_bf16["fingerprint"] != same
    fake_cpu.write_text(CPUINFO.replace("9B14", "7B13"), encoding="utf-8")
    assert provenance.hardware_fingerprint(threads=2)["fingerprint"] != same


def test_gpu_named_only_when_torch_is_imported_and_cuda_ran(fake_cpu, monkeypatch):
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(
        get_device_name=lambda device: f"NVIDIA H100 ({device})"))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    cpu = provenance.hardware_fingerprint(threads=2, device="cpu")
    gpu = provenance.hardware_fingerprint(threads=2, device="cuda:0")
    assert cpu["gpu"] is None and gpu["gpu"] == "NVIDIA H100 (cuda:0)"
    assert gpu["fingerprint"] != cpu["fingerprint"]
    monkeypatch.delitem(sys.modules, "torch")  # never imported for this
    assert provenance.hardware_fingerprint(threads=2, device="cuda:0")["gpu"] is None
    assert "torch" not in sys.modules


def test_no_cpuinfo_still_describes_the_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CPUINFO", str(tmp_path / "absent"))
    fp = provenance.hardware_fingerprint()
    assert fp["cpu"] and fp["cpu_flags"] == [] and fp["cores_available"] >= 1
