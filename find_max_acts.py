#!/usr/bin/env python3
"""The original's entry point: ./find_max_acts.py [flags] paths. All the work is in dvtoolbox.cli.find_max_acts."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dvtoolbox.cli.find_max_acts import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
