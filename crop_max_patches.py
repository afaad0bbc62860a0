#!/usr/bin/env python3
"""The original's entry point: ./crop_max_patches.py [flags] paths. The work is in dvtoolbox.cli.crop_max_patches."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dvtoolbox.cli.crop_max_patches import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
