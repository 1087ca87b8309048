"""The float32 GEMM library is chosen from what the CPU is: oneDNN only where it has the wider ISA."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from cleangpt_core.model.cpu_gemm import cpu_identity, onednn_is_faster, prefers_onednn
from cleangpt_core.model.linear import ONEDNN_AVAILABLE, uses_onednn

AVX512 = {"avx2", "avx512f", "avx512bw"}
AVX2 = {"avx2", "fma"}


def test_an_amd_cpu_with_avx512_prefers_onednn():
    assert prefers_onednn("AuthenticAMD", AVX512, {})


def test_avx2_only_intel_and_arm_cpus_keep_mkl():
    assert not prefers_onednn("AuthenticAMD", AVX2, {})
    assert not prefers_onednn("GenuineIntel", AVX512, {})  # MKL has its AVX-512 path there
    assert not prefers_onednn("", {"neon", "asimd"}, {})


def test_the_libraries_isa_limits_make_an_avx512_cpu_an_avx2_one():
    limited = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert not prefers_onednn("AuthenticAMD", AVX512, limited)
    assert prefers_onednn("AuthenticAMD", AVX512, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    # Intel with MKL held to AVX2 while oneDNN keeps AVX-512: oneDNN has the wider ISA
    assert prefers_onednn("GenuineIntel", AVX512, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"})


def test_cpuinfo_is_read_from_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\n")
    assert cpu_identity(cpuinfo) == ("AuthenticAMD", {"fpu", "avx2", "avx512f"})
    assert cpu_identity(tmp_path / "missing") == ("", set())


def test_by_default_linear_follows_the_cpus_choice():
    x, weight = torch.randn(64, 128), torch.randn(512, 128)
    assert uses_onednn(x, weight) == (ONEDNN_AVAILABLE and onednn_is_faster())


def test_the_avx2_limits_turn_onednn_off_in_a_fresh_process():
    environment = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    code = "from cleangpt_core.model.cpu_gemm import onednn_is_faster; print(onednn_is_faster())"
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
