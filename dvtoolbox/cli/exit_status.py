"""The exit statuses every dvtoolbox command line shares: 0 done, 2 bad input (one line on stderr, nothing
written), 1 a failure of the system (a file that cannot be written), 130 interrupted."""

from __future__ import annotations

import sys
from typing import Callable

from dvtoolbox.errors import UsageError


def run_command(prog: str, body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """``body()``'s status, or the status of the error it raised, with one line ``<prog>: error: ...`` on stderr."""
    try:
        return body()
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
