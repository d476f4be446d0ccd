import itertools

import numpy as np
import pytest

from relink_lib.threat_model import THREAT_MODELS, chance_recall, chance_table, lift_over_chance


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_chance_equals_enumeration_of_all_rankings(k, n):
    # candidate 0 is the true report; a random ranking is a uniform permutation of the pool
    hits = [perm.index(0) < k for perm in itertools.permutations(range(n))]
    assert chance_recall(k, n) == pytest.approx(np.mean(hits))


def test_chance_known_values_and_lift():
    assert chance_recall(1, 100) == pytest.approx(0.01)
    assert chance_recall(10, 5) == 1.0
    assert lift_over_chance(0.15, 1, 100) == pytest.approx(15)
    assert chance_table().loc["K = 5", "N = 10"] == pytest.approx(0.5)


def test_chance_rejects_empty_pools():
    with pytest.raises(ValueError, match="n >= 1"):
        chance_recall(1, 0)


def test_threat_models_differ_in_capabilities():
    assert len(THREAT_MODELS.drop_duplicates()) == len(THREAT_MODELS)
    # the adaptive re-linker holds what the passive one holds, and public pairs besides
    assert THREAT_MODELS.loc["adaptive re-linker (chapter 11)", "holds public image-report pairs"].startswith("yes")
    assert THREAT_MODELS.loc["passive re-linker (chapters 4-6)", "holds public image-report pairs"] == "no"


def test_chapter_one_payload_and_figure():
    import matplotlib

    matplotlib.use("Agg")
    from relink_lib.paper import PAPER
    from relink_lib.plots.threat import plot_chance_vs_pool
    from relink_lib.threat_model import threat_model_payload

    payload = threat_model_payload()
    assert payload["chance"]["K=5"]["10"] == 0.5 and payload["chance"]["K=1"]["10000"] == 1e-4
    assert payload["paper_reference"]["r1_lift_n100"] == PAPER.r1_lift_n100
    assert len(payload["threat_models"]) == len(THREAT_MODELS)
    ax = plot_chance_vs_pool()
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_ylabel() and ax.get_xlabel()
    line = ax.get_lines()[0]  # chance at K = 1 is 1 / N
    assert np.allclose(line.get_ydata(), 1.0 / line.get_xdata())
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "D"]
    assert [(float(m.get_xdata()[0]), float(m.get_ydata()[0])) for m in marks] == [
        (100.0, PAPER.r1_at(100)),
        (10000.0, PAPER.r1_at(10_000)),
    ]
