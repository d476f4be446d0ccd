"""The seed paper's quoted figures, in one place (Tayebi Arasteh et al., arXiv 2606.02276).

These are **the paper's** numbers (its strongest model, MIMIC-CXR), quoted beside the book's
simulation; nothing here is computed by this project. Chapters and the summary read them from
:data:`PAPER` so that a figure is typed once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PaperFigures", "PAPER", "PAPER_CITATION", "PAPER_URL"]

PAPER_CITATION = "Tayebi Arasteh et al., arXiv 2606.02276"
PAPER_URL = "https://arxiv.org/abs/2606.02276"


@dataclass(frozen=True)
class PaperFigures:
    """The figures the book quotes from the seed paper (fractions, not percentages)."""

    r1_lift_n100: float = 15.0
    """Recall@1 of the strongest model at N = 100, as a multiple of chance (15x)."""
    r1_lift_n10000: float = 50.0
    """Recall@1 at N = 10,000, as a multiple of chance (50x)."""
    dp_epsilon: float = 0.34
    """The DP budget of the head fine-tuning."""
    dp_delta: float = 6e-6
    dp_r1_reduction_n10000: float = 0.618
    """Relative cut of Recall@1 at N = 10,000 by DP fine-tuning of the heads at eps = 0.34 (61.8%)."""
    probe_macro_auroc_before: float = 0.7963
    """Linear-probe macro AUROC over the 14 CheXpert labels before DP (79.63%)."""
    probe_macro_auroc_after: float = 0.7943
    """The same after DP (79.43%)."""

    @property
    def r1_lift_by_pool(self) -> dict[int, float]:
        """The paper's Recall@1 lift over chance by pool size N: ``{100: 15.0, 10_000: 50.0}`` (a fresh dict)."""
        return {100: self.r1_lift_n100, 10_000: self.r1_lift_n10000}

    def r1_lift_at(self, n: int) -> float | None:
        """The paper's Recall@1 lift at pool size ``n``; ``None`` where the paper quotes none (only N = 100, 10,000)."""
        return self.r1_lift_by_pool.get(int(n))

    def r1_at(self, n: int) -> float:
        """The paper's Recall@1 implied by its lift at ``n`` (100 or 10,000): lift / n."""
        lift = self.r1_lift_at(n)
        if lift is None:
            raise ValueError(f"n={n}: the paper quotes Recall@1 lift at N = 100 and N = 10,000 only")
        return lift / n

    def as_rows(self) -> list[dict[str, object]]:
        """One row per quoted figure: ``figure``, ``value`` (display text), ``source``."""
        return [
            {"figure": "R@1 lift over chance, N = 100", "value": f"{self.r1_lift_n100:g}x", "source": PAPER_CITATION},
            {
                "figure": "R@1 lift over chance, N = 10,000",
                "value": f"{self.r1_lift_n10000:g}x",
                "source": PAPER_CITATION,
            },
            {
                "figure": f"cut of R@1 at N = 10,000 by DP heads (eps = {self.dp_epsilon:g})",
                "value": f"{100 * self.dp_r1_reduction_n10000:.1f}%",
                "source": PAPER_CITATION,
            },
            {
                "figure": "linear-probe macro AUROC, before -> after DP",
                "value": f"{100 * self.probe_macro_auroc_before:.2f}% -> {100 * self.probe_macro_auroc_after:.2f}%",
                "source": PAPER_CITATION,
            },
        ]


PAPER = PaperFigures()
"""The seed paper's figures (quoted, never computed)."""
