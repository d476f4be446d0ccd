"""The audit's CPU GEMM backend (relink_lib.audit.blas): either BLAS gives exact counts for the scores it computed,
exact duplicates tie under both, and the choice follows the numerical mode and the environment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relink_lib.audit import blas
from relink_lib.audit.kernel import count_better_and_tied


@pytest.fixture(autouse=True)
def _fresh_choice(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RELINK_GEMM", raising=False)
    monkeypatch.delenv("RELINK_NUMERICS", raising=False)
    blas.gemm_choice.cache_clear()
    yield
    blas.gemm_choice.cache_clear()


def _embeddings(m: int = 300, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(m, d)).astype(np.float32)
    rep = (img + 1.5 * rng.normal(size=(m, d))).astype(np.float32)
    rep[10] = rep[11]  # an exact duplicate report: query 10 and query 11 each tie one distractor
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    rep /= np.linalg.norm(rep, axis=1, keepdims=True)
    return torch.from_numpy(img), torch.from_numpy(rep)


def _brute(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    own = np.diag(scores)[:, None]
    off = ~np.eye(len(scores), dtype=bool)
    return ((scores > own) & off).sum(1), ((scores == own) & off).sum(1)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_each_backend_counts_exactly_for_its_own_scores(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("RELINK_GEMM", backend)
    img, rep = _embeddings()
    assert blas.gemm_choice() == blas.GemmChoice(backend, "environment")
    better, tied = count_better_and_tied(img, rep, chunk_size=64, device="cpu")
    # the same blocks of the same BLAS: scores the backend itself computes for each row block
    blocks = []
    for s in range(0, len(img), 64):
        if backend == "numpy":
            blocks.append(np.matmul(img.numpy()[s : s + 64], rep.numpy().T))
        else:
            blocks.append(torch.mm(img[s : s + 64], rep.T).numpy())
    b, t = _brute(np.concatenate(blocks))
    np.testing.assert_array_equal(better, b)
    np.testing.assert_array_equal(tied, t)
    assert tied[10] >= 1 and tied[11] >= 1


def test_portable_mode_always_uses_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELINK_NUMERICS", "portable")
    monkeypatch.setenv("RELINK_GEMM", "numpy")
    assert blas.gemm_choice().backend == "torch" and blas.gemm_choice().reason == "portable mode"


def test_unknown_backend_is_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELINK_GEMM", "cublas")
    with pytest.raises(ValueError, match="RELINK_GEMM='cublas'"):
        blas.gemm_choice()


def test_benchmark_picks_numpy_only_with_a_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blas, "measure_gflops", lambda: {"torch": 100.0, "numpy": 105.0})
    assert blas.gemm_choice().backend == "torch"
    blas.gemm_choice.cache_clear()
    blas.choice_file().unlink()  # measure again, as on another machine
    monkeypatch.setattr(blas, "measure_gflops", lambda: {"torch": 100.0, "numpy": 180.0})
    choice = blas.gemm_choice()
    assert (choice.backend, choice.reason, choice.numpy_gflops) == ("numpy", "benchmark", 180.0)


def test_the_choice_is_kept_per_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(blas, "measure_gflops", lambda: calls.append(1) or {"torch": 100.0, "numpy": 180.0})
    first = blas.gemm_choice()
    blas.gemm_choice.cache_clear()  # another process of the same run
    second = blas.gemm_choice()
    assert len(calls) == 1 and first.backend == second.backend == "numpy"
    assert second.reason == "benchmark (stored)" and blas.choice_file().is_file()
    # another machine (or thread count) measures again
    monkeypatch.setattr(blas, "_machine_key", lambda: {"cpu": "other"})
    blas.gemm_choice.cache_clear()
    blas.gemm_choice()
    assert len(calls) == 2


def test_measure_gflops_times_both_backends() -> None:
    g = blas.measure_gflops((64, 32, 128))
    assert set(g) == {"torch", "numpy"} and all(np.isfinite(v) and v > 0 for v in g.values())
