"""``python -m saemui.cli``: the same as the ``saemui`` console script."""

import sys

from saemui.cli import main

sys.exit(main())
