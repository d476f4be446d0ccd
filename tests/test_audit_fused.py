"""The fused compare-and-count pass (audit.fused) against the torch passes and a float64-free brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relink_lib.audit import fused
from relink_lib.audit.kernel import as_embeddings, count_better_and_tied


@pytest.fixture
def counter(monkeypatch):
    """Run a callable with the fused pass on or off (the library is re-resolved each time)."""

    def run(on: bool, fn):
        monkeypatch.setenv(fused.FUSED_ENV, "1" if on else "0")
        fused._library.cache_clear()
        try:
            return fn()
        finally:
            fused._library.cache_clear()

    return run


def _brute(block: torch.Tensor, own_col: np.ndarray, tol: float, w: np.ndarray | None) -> tuple[np.ndarray, ...]:
    own = block[torch.arange(block.shape[0]), torch.from_numpy(own_col)].unsqueeze(1)
    ge = (block >= own - tol).numpy().astype(np.int64)
    gt = (block > own + tol).numpy().astype(np.int64)
    weights = np.ones(block.shape[1], np.int64) if w is None else w
    return ge @ weights, gt @ weights


@pytest.mark.parametrize("rows", [1, 63, 200])
@pytest.mark.parametrize("tol", [0.0, 0.05])
@pytest.mark.parametrize("weighted", [False, True])
def test_count_rows_matches_a_brute_force(rows: int, tol: float, weighted: bool) -> None:
    if not fused.available():
        pytest.skip(fused.status())
    rng = np.random.default_rng(rows)
    cols = 301
    # a coarse grid of values: many exact ties with the own score, and ties at own +- tol
    block = torch.from_numpy(rng.integers(-20, 21, size=(rows, cols)).astype(np.float32) / 20)
    own_col = rng.integers(0, cols, size=rows).astype(np.int64)
    w = rng.integers(1, 4, size=cols).astype(np.int64) if weighted else None
    at_least = torch.empty(rows, dtype=torch.int64)
    above = torch.empty(rows, dtype=torch.int64)
    fused.count_rows(block, torch.from_numpy(own_col), tol, w, at_least, above)
    ge, gt = _brute(block, own_col, tol, w)
    np.testing.assert_array_equal(at_least.numpy(), ge)
    np.testing.assert_array_equal(above.numpy(), gt)


@pytest.mark.parametrize("chunk", [5, 128, 4096])
def test_kernel_counts_are_the_same_with_and_without_the_fused_pass(counter, chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    m = 700
    img = rng.standard_normal((m, 48)).astype(np.float32)
    rep = (img + rng.standard_normal((m, 48))).astype(np.float32)
    rep[[10, 500]] = rep[3]  # copies: the weighted path
    i_t, r_t = as_embeddings(img, "image_emb"), as_embeddings(rep, "report_emb")
    on = counter(True, lambda: (fused.status(), count_better_and_tied(i_t, r_t, chunk_size=chunk, tie_tol=1e-3)))
    off = counter(False, lambda: (fused.status(), count_better_and_tied(i_t, r_t, chunk_size=chunk, tie_tol=1e-3)))
    assert off[0].startswith("off") and (on[0].startswith("on") or not fused.available())
    np.testing.assert_array_equal(on[1][0], off[1][0])
    np.testing.assert_array_equal(on[1][1], off[1][1])
    assert on[1][1][[3, 10, 500]].min() >= 2  # each copy ties the other two


def test_no_compiler_falls_back_to_the_torch_passes(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(fused.FUSED_ENV, raising=False)
    fused._library.cache_clear()
    try:
        assert not fused.available()
        assert "failed" in fused.status() and "torch passes" in fused.status()
        rng = np.random.default_rng(0)
        x = as_embeddings(rng.standard_normal((50, 8)), "x")
        better, tied = count_better_and_tied(x, x, chunk_size=16)
        assert better.tolist() == [0] * 50 and tied.tolist() == [0] * 50  # each image's own report is its best
    finally:
        fused._library.cache_clear()


def test_a_wrong_block_is_refused() -> None:
    if not fused.available():
        pytest.skip(fused.status())
    out = torch.empty(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="float32"):
        fused.count_rows(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.int64), 0.0, None, out, out)
    with pytest.raises(ValueError, match="own_col"):
        fused.count_rows(torch.zeros(2, 3), torch.zeros(3, dtype=torch.int64), 0.0, None, out, out)
