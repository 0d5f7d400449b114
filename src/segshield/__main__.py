"""``python -m segshield``: the ``segshield`` command line, same commands and exit codes.

Example:
    ``python -m segshield defend scan.png -o out --defense fr`` runs what
    ``segshield defend scan.png -o out --defense fr`` runs.
"""

from __future__ import annotations

import sys

from segshield.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
