#!/usr/bin/env python
"""Write ``zoo_summary.md`` / ``.json``: the law fits, contamination AUROC, rank changes, phases and the diversity
result of the zoo, from committed result files (offline, no model). Same as ``saemui plot summary``.

    python scripts/reproduce_summary.py [--results results/zoo] [--out figures]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saemui.plot_cli import script_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(script_main("summary"))
