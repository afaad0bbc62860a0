"""visualize.py on the tiny test model, for tests that need a separate process (torchrun, SIGKILL)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import tests.conftest  # noqa: E402,F401  (registers "tiny_test")
from dvtoolbox.cli.visualize import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
