"""Feature exploration: max-activating contexts, activation histograms, logit lens and views for notebooks.

- :mod:`saemui.explore.collector`: :class:`ContextCollector` (an engine observer) and the ``contexts.npz`` file;
- :mod:`saemui.explore.lens`: unit output directions and their logit lens;
- :mod:`saemui.explore.views`: per-run DataFrame views and figures, and :func:`explore_run` (MUI + contexts in
  one pass).

Run-vs-run comparisons (:func:`compare_runs`, :func:`unique_features`, :func:`correct_vs_incorrect`) live in
:mod:`saemui.compare` and are re-exported here, as are all public names this module had before it became a
package.
"""

from __future__ import annotations

from saemui.compare import compare_runs, correct_vs_incorrect, unique_features
from saemui.explore.collector import (
    CONTEXTS_FILE,
    CONTEXTS_FORMAT,
    HIST_EDGES,
    HIST_INNER,
    N_BINS,
    ContextCollector,
    ShownContext,
    TokenScoreRecorder,
    load_contexts,
)
from saemui.explore.lens import lens_ids, logit_lens, stored_logit_lens, unit_directions
from saemui.explore.views import (
    context_tokens,
    explore_run,
    feature_contexts,
    neuronpedia_ids,
    plot_histogram,
    plot_layer_mui,
    report_units,
    top_features,
)

__all__ = [
    "CONTEXTS_FILE",
    "CONTEXTS_FORMAT",
    "HIST_EDGES",
    "HIST_INNER",
    "N_BINS",
    "ContextCollector",
    "ShownContext",
    "TokenScoreRecorder",
    "compare_runs",
    "context_tokens",
    "correct_vs_incorrect",
    "explore_run",
    "feature_contexts",
    "lens_ids",
    "load_contexts",
    "logit_lens",
    "neuronpedia_ids",
    "plot_histogram",
    "plot_layer_mui",
    "report_units",
    "stored_logit_lens",
    "top_features",
    "unique_features",
    "unit_directions",
]
