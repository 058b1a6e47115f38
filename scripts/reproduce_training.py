#!/usr/bin/env python
"""Reproduce the zoo's training figure and table from committed result files (offline, no model).

    python scripts/reproduce_training.py [--results results/zoo] [--out figures]

Same code path as `saemui plot training` and the notebooks: :func:`saemui.reproduce.reproduce`.
"""

import sys

from saemui.cli.plot import script_main

if __name__ == "__main__":
    sys.exit(script_main("training"))
