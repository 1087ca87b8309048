"""The host key kernel choices are cached under: what the CPU is, the ISA limits put on it, threads, torch."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from cleangpt_core.kernels.host import cpu_identity, host_key


def test_cpuinfo_is_read_from_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f\n\n"
        "processor\t: 1\nvendor_id\t: GenuineIntel\n"
    )
    assert cpu_identity(cpuinfo) == ("AuthenticAMD", "AMD EPYC 9R14", {"fpu", "avx2", "avx512f"})


def test_an_arm_cpus_features_count_as_its_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16\n\n")
    assert cpu_identity(cpuinfo)[2] == {"fp", "asimd", "sve", "bf16"}


def test_a_missing_cpuinfo_gives_no_flags(tmp_path):
    vendor, _, flags = cpu_identity(tmp_path / "missing")
    assert (vendor, flags) == ("", set())


def test_the_key_names_threads_and_torch_version():
    key = host_key()
    assert f"threads={torch.get_num_threads()}" in key and f"torch={torch.__version__}" in key
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(before + 1)
        assert host_key() != key
    finally:
        torch.set_num_threads(before)
    assert host_key() == key


def test_the_libraries_isa_limits_make_another_host():
    code = "from cleangpt_core.kernels.host import host_key; print(host_key())"

    def key(**limits: str) -> str:
        environment = {name: value for name, value in os.environ.items() if name not in limits} | limits
        result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
        return result.stdout.strip()

    held = key(ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in held and held != host_key()
