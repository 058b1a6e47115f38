#!/usr/bin/env python
"""Write ``zoo_summary.md`` / ``.json``: the law fits, contamination AUROC, rank changes, phases and the diversity
result of the zoo, from committed result files (offline, no model). Same as ``saemui plot summary``.

    python scripts/reproduce_summary.py [--results results/zoo] [--out figures]
"""

import sys

from saemui.cli.plot import script_main

if __name__ == "__main__":
    sys.exit(script_main("summary"))
