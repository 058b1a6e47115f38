"""Analysis layer: Utility Law fits and the four corollaries, as pure functions on numbers.

Nothing here loads a model; callers pass arrays, lists of dicts or DataFrames. Zoo result files are read by
:mod:`saemui.zoo.record`, whose loaders :mod:`saemui.analysis.zoo` calls when given a directory. Every
public docstring labels its definitions: **[P]** the paper (arXiv 2504.07440), **[X]** a follow-up (MoE-MUI
arXiv 2509.23933, EffiEval arXiv 2508.09662), **[INF]** inferred by us, **[OURS]** a choice of ours where the
paper is silent. See ``docs/method.md`` sections 3-4.
"""

#: the analyses of a zoo that have a figure and a table (``saemui plot KIND``, :func:`saemui.reproduce.reproduce`);
#: kept here, in a module without imports, so that building the command line stays cheap
KINDS: tuple[str, ...] = (
    "law",
    "training",
    "contamination",
    "comparison",
    "diversity",
    "sensitivity",
    "summary",
)
