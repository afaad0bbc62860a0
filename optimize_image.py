#!/usr/bin/env python3
"""The original's entry point: ./optimize_image.py [flags]. All the work is in dvtoolbox.cli.optimize_image."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dvtoolbox.cli.optimize_image import main  # noqa: E402

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(main(settings_dirs=list(dict.fromkeys([os.getcwd(), here]))))
