"""The exit statuses every dvtoolbox command line shares: 0 done, 2 bad input (one line on stderr, nothing
written), 1 a failure of the system (a file that cannot be written), 130 interrupted."""

from __future__ import annotations

import sys
from types import MappingProxyType
from typing import Callable, Mapping

from dvtoolbox.errors import UsageError


def run_command(prog: str, body: Callable[[], int], interrupted: str = "interrupted",
                flags: Mapping[str, str] = MappingProxyType({})) -> int:
    """``body()``'s status, or the status of the error it raised, with one line ``<prog>: error: ...`` on stderr.
    A UsageError's setting names become this command's flags (``flags``: field -> flag where the flag is not
    ``--`` and the field with dashes)."""
    try:
        return body()
    except UsageError as exc:
        print(f"{prog}: error: {exc.message_for(flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
