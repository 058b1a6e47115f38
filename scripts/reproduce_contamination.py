#!/usr/bin/env python
"""Reproduce the zoo's contamination figure and table from committed result files (offline, no model).

    python scripts/reproduce_contamination.py [--results results/zoo] [--out figures]

Same code path as `saemui plot contamination` and the notebooks: :func:`saemui.plot_cli.reproduce`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saemui.plot_cli import script_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(script_main("contamination"))
