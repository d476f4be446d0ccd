"""Re-linkage audit: exact expected Recall@K over random and pathology-matched pools, with CIs.

``relink_audit`` is the audit's public entry point (docs/audit.md); ``rank_counts`` and
``audit_table`` split it into the similarity pass and the (cheap) expectation step so that
one pass serves many tables (subsets, bootstrap, pool sizes). See ``docs/audit.md``.
"""

from .bootstrap import patient_bootstrap, percentile_interval
from .engine import (
    DEFAULT_KS,
    DEFAULT_POOL_SIZES,
    TABLE_COLUMNS,
    RankCounts,
    audit_table,
    per_query_recall,
    rank_counts,
    rank_statistics,
    relink_audit,
)
from .expected import (
    chance_recall,
    expected_recall,
    expected_recall_ties,
    expected_reciprocal_rank,
    expected_reciprocal_rank_ties,
    hypergeom_lower_tail,
    tie_median_rank,
)
from .hard_negatives import describe_match, label_groups
from .kernel import count_at_least_own, count_better_and_tied, count_within_groups
from .montecarlo import monte_carlo_recall

__all__ = [
    "relink_audit",
    "rank_counts",
    "audit_table",
    "rank_statistics",
    "per_query_recall",
    "RankCounts",
    "TABLE_COLUMNS",
    "DEFAULT_POOL_SIZES",
    "DEFAULT_KS",
    "expected_recall",
    "expected_reciprocal_rank",
    "hypergeom_lower_tail",
    "expected_recall_ties",
    "expected_reciprocal_rank_ties",
    "tie_median_rank",
    "chance_recall",
    "label_groups",
    "describe_match",
    "patient_bootstrap",
    "percentile_interval",
    "count_at_least_own",
    "count_better_and_tied",
    "count_within_groups",
    "monte_carlo_recall",
]
