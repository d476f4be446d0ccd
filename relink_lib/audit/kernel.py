"""Chunked similarity kernel: per-query counts of distractors that score at least as high as the truth.

For a query image ``i`` with its own report ``i``, the whole audit depends on one integer,

    c_i = #{ j != i : s_ij >= s_ii - tie_tol },   s_ij = <image_i, report_j>,

the number of distractor reports that rank at or above the true report, split into those
strictly above (``better``) and those that tie it (``tied``, so that the audit can break ties
uniformly at random and report both bounds). The kernel streams the similarity matrix in row blocks
of ``chunk_size`` queries, so memory is ``O(chunk_size * M)`` and the ``M x M`` matrix is never materialised. The
BLAS computes different columns along different code paths, so bit-identical reports need not score bit-identically:
the pass runs against the distinct reports only (:func:`find_duplicate_reports`) and counts each column with its
multiplicity, so the true report and its copies share one score and tie exactly. On the CPU each block's GEMM runs
in the BLAS that :func:`relink_lib.audit.blas.gemm_choice` picked for the machine (torch's MKL or numpy's OpenBLAS),
and both counts come from one fused read of the block (:mod:`relink_lib.audit.fused`) where a C compiler is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .blas import gemm_choice
from .fused import available as fused_available
from .fused import count_rows as fused_count_rows

__all__ = [
    "ReportDuplicates",
    "as_embeddings",
    "count_better_and_tied",
    "find_duplicate_reports",
    "count_at_least_own",
    "count_within_groups",
    "resolve_device",
]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA when available, else CPU."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N', 'auto' or None") from exc


def as_embeddings(x: Any, name: str, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Validate an ``(n, d)`` float matrix (numpy or torch) and return it as an L2-normalised torch tensor.

    Raises ``TypeError`` for non-float input and ``ValueError`` for a wrong shape, non-finite
    values or an all-zero row (which has no direction to normalise). Rows are normalised in
    float64 for float64 input and in float32 otherwise, then cast to ``dtype``. The result
    lives on the CPU; the caller moves it to a device.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    elif isinstance(x, np.ndarray):
        if x.dtype == object:
            raise TypeError(f"{name}: expected a float array, got dtype object")
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        raise TypeError(f"{name}: expected a numpy array or torch tensor of shape (n, d), got {type(x).__name__}")
    if not torch.is_floating_point(t):
        raise TypeError(f"{name}: expected a floating dtype (float16/bfloat16/float32/float64), got {t.dtype}")
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (n, d), got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one row and one column, got shape {tuple(t.shape)}")
    t = t.to(torch.float64 if t.dtype == torch.float64 else torch.float32)
    # one pass: a row norm is finite iff the row is finite (or it overflowed; rescaled below)
    norms = torch.linalg.vector_norm(t, dim=1, keepdim=True)
    bad = ~torch.isfinite(norms[:, 0])
    if bool(bad.any()):
        for row in torch.nonzero(bad)[:, 0].tolist():
            if not bool(torch.isfinite(t[row]).all()):
                raise ValueError(f"{name}: row {row} has a NaN or infinite value; embeddings must be finite")
        t = t.clone()
        t[bad] = t[bad] / t[bad].abs().amax(dim=1, keepdim=True)  # huge but finite rows: rescale first
        norms = torch.linalg.vector_norm(t, dim=1, keepdim=True)
    if bool((norms == 0).any()):
        row = int(torch.nonzero(norms[:, 0] == 0)[0, 0])
        raise ValueError(f"{name}: row {row} is all zeros and cannot be L2-normalised")
    return (t / norms).to(dtype).contiguous()


def _check_pair(image_emb: torch.Tensor, report_emb: torch.Tensor) -> None:
    if image_emb.shape != report_emb.shape:
        raise ValueError(
            f"image_emb has shape {tuple(image_emb.shape)} but report_emb has shape {tuple(report_emb.shape)}; "
            "row i of image_emb must pair with row i of report_emb (same n and d)"
        )


def _check_chunk(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}: expected a positive integer (queries per block)")
    return int(chunk_size)


def _check_tol(tie_tol: float) -> float:
    tol = float(tie_tol)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tie_tol={tie_tol!r}: expected a finite non-negative float (cosine units)")
    return tol


def _row_count(mask: torch.Tensor, dev: torch.device) -> torch.Tensor:
    if dev.type == "cpu":  # numpy's byte reduction is several times faster than torch's bool sum on CPU
        return torch.from_numpy(mask.numpy().view(np.uint8).sum(axis=1, dtype=np.int64))
    return mask.sum(dim=1)


@dataclass(frozen=True)
class ReportDuplicates:
    """Bit-identical report rows, found before the similarity pass.

    ``unique``: ``(U,)`` index of the first row of each distinct report, in row order; ``inverse``: ``(M,)``
    position in ``unique`` of each row's report; ``multiplicity``: ``(U,)`` how many rows carry each report.
    """

    unique: np.ndarray
    inverse: np.ndarray
    multiplicity: np.ndarray


def _as_void_rows(x: np.ndarray, width: int) -> np.ndarray:
    """The first ``width`` bytes of each row of a C-contiguous 2-D array as one opaque (void) item per row."""
    raw = np.ascontiguousarray(x).view(np.uint8).reshape(x.shape[0], -1)[:, :width]
    return np.ascontiguousarray(raw).view(np.dtype((np.void, raw.shape[1]))).ravel()


def find_duplicate_reports(report_emb: torch.Tensor) -> ReportDuplicates | None:
    """Group bit-identical rows of ``report_emb`` (``(M, d)``); ``None`` when every row is distinct.

    A cheap pass on each row's first 16 bytes finds candidates; only rows that share those bytes are compared
    in full, so a database without duplicates costs one small sort (about 10 ms at M = 43,793).
    """
    x = report_emb.detach().cpu().contiguous().numpy()
    m = x.shape[0]
    head = _as_void_rows(x, min(16, x.shape[1] * x.itemsize))
    _, head_inverse, head_counts = np.unique(head, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(head_counts[head_inverse] > 1)
    if candidates.size == 0:
        return None
    _, first, cand_inverse = np.unique(
        _as_void_rows(x[candidates], x.shape[1] * x.itemsize), return_index=True, return_inverse=True
    )
    representative = np.arange(m)
    representative[candidates] = candidates[first[cand_inverse.ravel()]]
    if np.array_equal(representative, np.arange(m)):
        return None
    unique, inverse, multiplicity = np.unique(representative, return_inverse=True, return_counts=True)
    return ReportDuplicates(unique=unique, inverse=inverse.ravel(), multiplicity=multiplicity)


def _weighted_row_count(mask: torch.Tensor, weights: torch.Tensor | None, dev: torch.device) -> torch.Tensor:
    """Per-row count of true entries, each column weighted by its report's multiplicity when ``weights`` is set."""
    if weights is None:
        return _row_count(mask, dev)
    return torch.mv(mask.to(weights.dtype), weights).round().to(torch.int64)


@torch.no_grad()
def count_better_and_tied(
    image_emb: torch.Tensor,
    report_emb: torch.Tensor,
    *,
    chunk_size: int = 4096,
    device: str | torch.device | None = "cpu",
    tie_tol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query ``(better, tied)``, both ``(M,)`` int64.

    ``better[i] = #{j != i : s_ij > s_ii + tie_tol}`` (distractors strictly above the true
    report) and ``tied[i] = #{j != i : |s_ij - s_ii| <= tie_tol}`` (distractors that tie it).
    ``image_emb`` and ``report_emb`` are ``(M, d)`` tensors, already normalised (see
    :func:`as_embeddings`); row ``i`` of one pairs with row ``i`` of the other. Peak extra
    memory is about ``chunk_size * M * 5`` bytes (float32 block plus a boolean mask reused for
    both comparisons).

    Bit-identical reports tie exactly, whatever the BLAS: the similarity pass runs against the distinct
    reports only (:func:`find_duplicate_reports`), each column counted with its multiplicity, so the truth and
    its copies share one score. A scorer that gives every report the same embedding gets exactly chance.
    """
    _check_pair(image_emb, report_emb)
    chunk = _check_chunk(chunk_size)
    tol = _check_tol(tie_tol)
    dev = resolve_device(device)
    m = image_emb.shape[0]
    dups = find_duplicate_reports(report_emb)
    if dups is None:
        own_col = torch.arange(m, device=dev)
        distinct = report_emb
    else:
        own_col = torch.from_numpy(dups.inverse).to(dev)
        distinct = report_emb[torch.from_numpy(dups.unique)]
    u = distinct.shape[0]
    reports_t = distinct.to(dev).T  # (d, U) view: BLAS reads the transpose, no copy
    images = image_emb.to(dev)
    at_least = torch.empty(m, dtype=torch.int64, device=dev)
    above = torch.empty(m, dtype=torch.int64, device=dev)
    block = torch.empty((min(chunk, m), u), dtype=reports_t.dtype, device=dev)
    # one fused read of each block (audit.fused) where it is compiled; else four torch passes over a boolean mask
    fused_on = dev.type == "cpu" and block.dtype == torch.float32 and fused_available()
    multiplicity = None if dups is None else dups.multiplicity
    # the torch passes weight each column by its multiplicity (float64 sums of 0/1 times integer weights are exact
    # far beyond any database size, 2**53); the fused pass reads ``multiplicity`` itself
    weights = None if dups is None or fused_on else torch.from_numpy(dups.multiplicity.astype(np.float64)).to(dev)
    mask = torch.empty((0 if fused_on else min(chunk, m), u), dtype=torch.bool, device=dev)
    np_gemm = dev.type == "cpu" and gemm_choice().backend == "numpy"
    if np_gemm:  # numpy's BLAS writes into the same memory torch compares in
        images_np, reports_t_np, block_np = images.numpy(), reports_t.numpy(), block.numpy()
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        rows = stop - start
        s = block[:rows]
        if np_gemm:
            np.matmul(images_np[start:stop], reports_t_np, out=block_np[:rows])
        else:
            torch.mm(images[start:stop], reports_t, out=s)
        if fused_on:
            fused_count_rows(s, own_col[start:stop], tol, multiplicity, at_least[start:stop], above[start:stop])
            at_least[start:stop] -= 1  # the true report itself always counts once (its copies count as ties)
            continue
        own = s[torch.arange(rows, device=dev), own_col[start:stop]].unsqueeze(1)
        torch.ge(s, own - tol if tol else own, out=mask[:rows])
        # the true report itself always counts once (its copies count as ties)
        at_least[start:stop] = _weighted_row_count(mask[:rows], weights, dev) - 1
        torch.gt(s, own + tol if tol else own, out=mask[:rows])
        above[start:stop] = _weighted_row_count(mask[:rows], weights, dev)  # never the true report itself
    better = above.cpu().numpy()
    return better, at_least.cpu().numpy() - better


def count_at_least_own(
    image_emb: torch.Tensor,
    report_emb: torch.Tensor,
    *,
    chunk_size: int = 4096,
    device: str | torch.device | None = "cpu",
    tie_tol: float = 0.0,
) -> np.ndarray:
    """Per-query number of distractors scoring at least the true report (``better + tied``), ``(M,)`` int64.

    The count with ties against the query; see :func:`count_better_and_tied`.
    """
    better, tied = count_better_and_tied(image_emb, report_emb, chunk_size=chunk_size, device=device, tie_tol=tie_tol)
    return better + tied


def count_within_groups(
    image_emb: torch.Tensor,
    report_emb: torch.Tensor,
    groups: np.ndarray,
    *,
    chunk_size: int = 4096,
    device: str | torch.device | None = "cpu",
    tie_tol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts restricted to distractors of the query's own group (hard negatives).

    ``groups`` is an ``(M,)`` integer array of group ids. Returns ``(better, tied, population)``,
    all ``(M,)`` int64: same-group distractors strictly above the true report, tied with it (see
    :func:`count_better_and_tied`), and the number of same-group distractors (group size - 1).
    Each group is audited as its own small database, so the cost is ``sum_g n_g^2 d``.
    """
    _check_pair(image_emb, report_emb)
    groups = np.asarray(groups)
    if groups.shape != (image_emb.shape[0],):
        raise ValueError(f"groups: expected shape ({image_emb.shape[0]},), got {groups.shape}")
    m = image_emb.shape[0]
    better = np.zeros(m, dtype=np.int64)
    tied = np.zeros(m, dtype=np.int64)
    population = np.zeros(m, dtype=np.int64)
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    bounds = np.flatnonzero(np.diff(sorted_groups)) + 1
    for members in np.split(order, bounds):
        population[members] = len(members) - 1
        if len(members) < 2:
            continue
        idx = torch.from_numpy(members)
        better[members], tied[members] = count_better_and_tied(
            image_emb[idx], report_emb[idx], chunk_size=chunk_size, device=device, tie_tol=tie_tol
        )
    return better, tied, population
