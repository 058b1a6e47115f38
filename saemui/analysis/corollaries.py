"""The four corollaries of the Utility Law, in one namespace.

The code lives in small modules (``training``, ``contamination``, ``comparison``, ``diversity``,
``sensitivity``); this module re-exports their public API. Provenance labels are in each function's docstring.
"""

from saemui.analysis.comparison import (
    alpha_sensitivity,
    law_residual_score,
    rank_changes,
    utility_adjusted_score,
)
from saemui.analysis.contamination import Confusion, confusion_table, contamination_scores, shift_table
from saemui.analysis.diversity import (
    CoverageCurve,
    GreedyResult,
    coverage_curve,
    distinct_ngrams,
    greedy_lexical_subset,
    greedy_max_coverage,
    jaccard,
    ngram_sets,
    subset_rank_preservation,
    union_ids,
)
from saemui.analysis.sensitivity import sensitivity_table
from saemui.analysis.stats import TauCI, auroc, kendall_tau, kendall_tau_ci, zscore
from saemui.analysis.training import PHASES, classify_phases, classify_trajectory, phase_counts

__all__ = [
    "PHASES",
    "Confusion",
    "CoverageCurve",
    "GreedyResult",
    "TauCI",
    "alpha_sensitivity",
    "auroc",
    "classify_phases",
    "classify_trajectory",
    "confusion_table",
    "contamination_scores",
    "coverage_curve",
    "distinct_ngrams",
    "greedy_lexical_subset",
    "greedy_max_coverage",
    "jaccard",
    "kendall_tau",
    "kendall_tau_ci",
    "law_residual_score",
    "ngram_sets",
    "phase_counts",
    "rank_changes",
    "sensitivity_table",
    "shift_table",
    "subset_rank_preservation",
    "union_ids",
    "utility_adjusted_score",
    "zscore",
]
