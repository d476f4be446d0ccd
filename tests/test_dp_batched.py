"""Several seeds of one DP-SGD run stacked into one computation agree with the runs one by one.

The sequential runs (``train_heads`` per seed) are the reference: same batches, same noise, same clipping and
optimiser, so the stacked weights must match them up to summation order, for DP, clip-only and non-private
training, SGD and Adam, with and without the symmetric image bank; the privacy records must be the same.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from relink_lib.dp.batched import batchable, train_heads_seeds
from relink_lib.dp.config import DPConfig
from relink_lib.dp.heads import fresh_heads

D_IMG, D_TXT, D = 12, 10, 8


def _data(n: int = 120, m: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D_IMG)).astype(np.float32)
    t = (x @ rng.normal(size=(D_IMG, D_TXT)) + 0.3 * rng.normal(size=(n, D_TXT))).astype(np.float32)
    return {
        "x": x,
        "t": t,
        "bank_t": rng.normal(size=(m, D_TXT)).astype(np.float32),
        "bank_i": rng.normal(size=(m, D_IMG)).astype(np.float32),
    }


def _starts(seeds: list[int]) -> list[tuple[nn.Module, nn.Module]]:
    template = (nn.Linear(D_IMG, D, bias=False), nn.Linear(D_TXT, D, bias=False))
    return [fresh_heads(*template, seed=s) for s in seeds]


CONFIGS = {
    "dp-adam": DPConfig(target_epsilon=1.0, delta=1e-3, epochs=2, batch_size=16, lr=1e-2, optimizer="adam"),
    "dp-sgd": DPConfig(target_epsilon=1.0, delta=1e-3, epochs=2, batch_size=16, lr=0.5, optimizer="sgd"),
    "clip-only": DPConfig(
        target_epsilon=None, noise_multiplier=0.0, delta=1e-3, epochs=2, batch_size=16, lr=1e-2, optimizer="adam"
    ),
    "nonprivate": DPConfig(
        target_epsilon=None, delta=1e-3, epochs=2, batch_size=16, lr=1e-2, optimizer="adam", max_grad_norm=1.0
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("symmetric", [False, True])
def test_stacked_seeds_match_sequential_runs(name: str, symmetric: bool) -> None:
    cfg, data, seeds = CONFIGS[name], _data(), [3, 4, 5]
    kw = {"bank_text_feats": data["bank_t"], "bank_image_feats": data["bank_i"] if symmetric else None}
    assert batchable(cfg, _starts(seeds))
    seq = train_heads_seeds(data["x"], data["t"], _starts(seeds), config=cfg, seeds=seeds, batched=False, **kw)
    bat = train_heads_seeds(data["x"], data["t"], _starts(seeds), config=cfg, seeds=seeds, batched=True, **kw)
    for a, b in zip(seq, bat, strict=True):
        for ha, hb in ((a.image_head, b.image_head), (a.text_head, b.text_head)):
            torch.testing.assert_close(hb.weight, ha.weight, rtol=1e-4, atol=1e-5)
        skip = {"train_time_s", "batched_seeds"}
        assert {k: v for k, v in b.record.items() if k not in skip} == {
            k: v for k, v in a.record.items() if k not in skip
        }
    # the seeds are different runs: the noise and the batches differ
    assert not torch.allclose(bat[0].image_head.weight, bat[1].image_head.weight)


def test_hook_sees_every_seed_at_every_step() -> None:
    cfg, data, seeds = CONFIGS["nonprivate"], _data(), [1, 2]
    seen: list[tuple[int, int]] = []
    res = train_heads_seeds(
        data["x"],
        data["t"],
        _starts(seeds),
        config=cfg,
        seeds=seeds,
        bank_text_feats=data["bank_t"],
        on_step=lambda step, heads: seen.append((step, len(heads))),
    )
    assert seen == [(k, 2) for k in range(1, res[0].record["steps"] + 1)]


def test_unbatchable_runs_fall_back_or_refuse() -> None:
    cfg = CONFIGS["dp-adam"].replace(bank_grad=True)
    assert not batchable(cfg, _starts([0]))
    data = _data()
    with pytest.raises(ValueError, match="batched=True"):
        train_heads_seeds(
            data["x"], data["t"], _starts([0]), config=cfg, seeds=[0], bank_text_feats=data["bank_t"], batched=True
        )
    with pytest.raises(ValueError, match="one start per seed"):
        train_heads_seeds(data["x"], data["t"], _starts([0]), config=cfg, seeds=[0, 1], bank_text_feats=data["bank_t"])
