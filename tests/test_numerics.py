"""The portable numerical mode gives bit-identical ladder weights and features whatever CPU dispatch the shell asks for.

Each run is a child process started as the pipeline starts a notebook kernel
(:func:`relink_lib.numerics.kernel_env` over an outer environment). The outer environments
differ in torch's CPU capability and in MKL's and oneDNN's instruction-set settings, the way two
machines differ. Under ``native`` the same two runs give different weights, which shows the
settings matter and that the equality under ``portable`` is not vacuous.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from relink_lib.numerics import MODES, cache_token, get_mode, kernel_env, mode_of
from relink_lib.profiles import get_profile

PROBE = Path(__file__).with_name("_dispatch_probe.py")
OUTER = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "2"},
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "MKL_CBWR": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
}


def _run_probe(tmp: Path, mode: str, outer: dict[str, str]) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("RELINK_NUMERICS",)}
    base.update(outer)
    env = kernel_env(get_mode(mode), base=base)
    env["RELINK_CACHE"] = str(tmp / "cache")
    done = subprocess.run([sys.executable, str(PROBE), str(tmp)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _supports_avx512() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " avx512f " in flags and " avx2 " in flags


@pytest.mark.slow
def test_portable_mode_is_bit_identical_across_dispatch_and_native_is_not(tmp_path):
    portable = {name: _run_probe(tmp_path / f"portable-{name}", "portable", outer) for name, outer in OUTER.items()}
    a, b = portable["avx2"], portable["avx512"]
    for run in (a, b):
        assert run["cpu_capability"] == "DEFAULT" and run["mkl_cbwr"] == "COMPATIBLE" and run["torch_threads"] == 1
        assert not run["mkldnn_enabled"] and not run["nnpack_enabled"] and run["numerical_mode"] == "portable"
    assert a["weights"] == b["weights"]
    assert a["features"] == b["features"]
    if not _supports_avx512():
        pytest.skip("this CPU lacks AVX-512: the native control run cannot dispatch differently")
    native = {name: _run_probe(tmp_path / f"native-{name}", "native", outer) for name, outer in OUTER.items()}
    assert native["avx2"]["cpu_capability"] == "AVX2" and native["avx512"]["cpu_capability"] == "AVX512"
    assert native["avx2"]["weights"] != native["avx512"]["weights"]


def test_kernel_env_overrides_the_shell_only_in_portable_mode():
    shell = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "8", "HOME": "/root"}
    env = kernel_env(get_mode("portable"), base=shell)
    assert env["ATEN_CPU_CAPABILITY"] == "default" and env["MKL_CBWR"] == "COMPATIBLE" and env["OMP_NUM_THREADS"] == "1"
    assert env["RELINK_NUMERICS"] == "portable" and env["HOME"] == "/root"
    native = kernel_env(get_mode("native"), base=shell)
    assert native["ATEN_CPU_CAPABILITY"] == "avx2" and native["OMP_NUM_THREADS"] == "8"


def test_baselined_profiles_are_portable_and_others_native():
    assert {p: mode_of(get_profile(p)).name for p in ("smoke", "ci", "default", "paper")} == {
        "smoke": "portable",
        "ci": "portable",
        "default": "native",
        "paper": "native",
    }
    with pytest.raises(ValueError, match=r"\['numerics'\]\['mode'\]='fast'"):
        mode_of(get_profile("ci", {"numerics": {"mode": "fast"}}))
    assert set(MODES) == {"portable", "native"}


def test_cache_token_names_the_dispatch_actually_in_force():
    # this pytest process was not started in the portable mode: its cache entries must not pass for portable ones
    from relink_lib.audit.blas import gemm_choice

    gemm = gemm_choice().backend  # the machine's audit BLAS: numpy's OpenBLAS on an AVX2 EPYC, torch's MKL on a Xeon
    suffix = "" if gemm == "torch" else f"-{gemm}"
    assert cache_token() == f"native-{torch.backends.cpu.get_cpu_capability()}{suffix}"
