"""``python -m sluice.bench``: the same as ``sluice bench``."""

import sys

from sluice.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m sluice.bench"))
