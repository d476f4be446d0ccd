"""The chunked similarity kernel against direct sorting in float64 numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relink_lib.audit.kernel import as_embeddings, count_at_least_own, count_within_groups


def _pairs(m: int, d: int, seed: int = 0, noise: float = 0.7):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, d))
    return z + noise * rng.normal(size=(m, d)), z + noise * rng.normal(size=(m, d))


def _brute_counts(img: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """Rank of the truth by sorting each row (float64); ties placed above the truth."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    rep = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    sims = (img[:, None, :] * rep[None, :, :]).sum(axis=-1)  # identical vectors give identical scores
    out = []
    for i, row in enumerate(sims):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j == i))  # truth after equal scores
        out.append(order.index(i))
    return np.array(out)


def test_counts_match_sorting():
    img, rep = _pairs(60, 8)
    got = count_at_least_own(as_embeddings(img, "i"), as_embeddings(rep, "r"), chunk_size=16)
    np.testing.assert_array_equal(got, _brute_counts(img, rep))


@pytest.mark.parametrize("chunk", [1, 3, 7, 59, 60, 1000])
def test_chunk_size_invariance(chunk):
    img, rep = _pairs(59, 6, seed=1)
    ref = _brute_counts(img, rep)
    got = count_at_least_own(as_embeddings(img, "i"), as_embeddings(rep, "r"), chunk_size=chunk)
    np.testing.assert_array_equal(got, ref)


def test_exact_duplicates_tie_against_the_query():
    img, rep = _pairs(40, 8, seed=2)
    rep[[5, 17, 33]] = rep[3]  # three copies of report 3 besides the truth
    got = count_at_least_own(as_embeddings(img, "i"), as_embeddings(rep, "r"), chunk_size=7)
    assert got[3] >= 3
    np.testing.assert_array_equal(got, _brute_counts(img, rep))
    same = count_at_least_own(as_embeddings(img, "i"), as_embeddings(np.tile(rep[:1], (40, 1)), "r"))
    np.testing.assert_array_equal(same, np.full(40, 39))  # all reports identical: everyone ties


def test_tie_tolerance_counts_near_ties():
    img = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    rep = np.array([[1.0, 0.0], [0.0, 1.0], [np.cos(1e-3), np.sin(1e-3)]])
    a, b = as_embeddings(img, "i"), as_embeddings(rep, "r")
    # report 2 scores 1 - 5e-7 for query 0: below its own report exactly, a tie within 1e-6
    np.testing.assert_array_equal(count_at_least_own(a, b), [0, 0, 1])
    np.testing.assert_array_equal(count_at_least_own(a, b, tie_tol=1e-6), [1, 0, 1])


def test_torch_and_numpy_inputs_and_dtypes_agree():
    img, rep = _pairs(50, 8, seed=3)
    ref = _brute_counts(img, rep)
    for cast in (np.float32, np.float64):
        got = count_at_least_own(
            as_embeddings(img.astype(cast), "i"), as_embeddings(rep.astype(cast), "r"), chunk_size=9
        )
        np.testing.assert_array_equal(got, ref)
    timg, trep = torch.tensor(img, requires_grad=True), torch.tensor(rep)
    np.testing.assert_array_equal(count_at_least_own(as_embeddings(timg, "i"), as_embeddings(trep, "r")), ref)
    # low precision: identical to the float32 result on the same (rounded) values
    for dt in (torch.float16, torch.bfloat16):
        lo_i, lo_r = torch.tensor(img).to(dt), torch.tensor(rep).to(dt)
        got = count_at_least_own(as_embeddings(lo_i, "i"), as_embeddings(lo_r, "r"))
        np.testing.assert_array_equal(got, _brute_counts(lo_i.double().numpy(), lo_r.double().numpy()))


def test_scale_invariance_normalises_rows():
    img, rep = _pairs(30, 5, seed=4)
    scale = np.random.default_rng(0).uniform(0.1, 50, size=(30, 1))
    a = count_at_least_own(as_embeddings(img * scale, "i"), as_embeddings(rep / scale, "r"))
    np.testing.assert_array_equal(a, _brute_counts(img, rep))


def test_huge_finite_rows_are_normalised_not_rejected():
    img, rep = _pairs(20, 4, seed=6)
    big = img.astype(np.float32).copy()
    big[3] *= 1e37  # the float32 norm would overflow
    a = as_embeddings(big, "image_emb")
    assert torch.isfinite(a).all()
    np.testing.assert_allclose(a[3].numpy(), img[3] / np.linalg.norm(img[3]), rtol=1e-5)


def test_within_groups_equals_per_group_audit():
    img, rep = _pairs(45, 6, seed=5)
    groups = np.random.default_rng(1).integers(0, 5, size=45)
    groups[0] = 99  # a singleton group
    better, tied, population = count_within_groups(
        as_embeddings(img, "i"), as_embeddings(rep, "r"), groups, chunk_size=4
    )
    counts = better + tied
    assert population[0] == 0 and counts[0] == 0
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        np.testing.assert_array_equal(population[idx], len(idx) - 1)
        if len(idx) > 1:
            np.testing.assert_array_equal(counts[idx], _brute_counts(img[idx], rep[idx]))


def test_validation_errors():
    ok = np.ones((3, 2), dtype=np.float32)
    with pytest.raises(TypeError, match="image_emb: expected a floating dtype"):
        as_embeddings(np.ones((3, 2), dtype=np.int64), "image_emb")
    with pytest.raises(ValueError, match=r"report_emb: expected a 2-D array.*\(6,\)"):
        as_embeddings(np.ones(6), "report_emb")
    bad = ok.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="image_emb: row 2 has a NaN"):
        as_embeddings(bad, "image_emb")
    zero = ok.copy()
    zero[1] = 0
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        as_embeddings(zero, "report_emb")
    with pytest.raises(TypeError, match="list"):
        as_embeddings([[1.0]], "image_emb")
    a = as_embeddings(ok, "i")
    with pytest.raises(ValueError, match="shape"):
        count_at_least_own(a, as_embeddings(np.ones((4, 2)), "r"))
    with pytest.raises(ValueError, match="chunk_size"):
        count_at_least_own(a, a, chunk_size=0)
    with pytest.raises(ValueError, match="tie_tol"):
        count_at_least_own(a, a, tie_tol=-1)
    with pytest.raises(ValueError, match="device"):
        count_at_least_own(a, a, device="gpu-please")
    with pytest.raises(ValueError, match="groups"):
        count_within_groups(a, a, np.zeros(2))
