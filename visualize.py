#!/usr/bin/env python3
"""Feature visualisation from the command line: ./visualize.py [flags]. All the work is in dvtoolbox.cli.visualize."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dvtoolbox.cli.visualize import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
