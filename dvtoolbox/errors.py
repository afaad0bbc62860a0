"""Errors a user can cause: the command line turns these into one line and exit status 2."""

from __future__ import annotations

import re
from typing import Mapping


class UsageError(ValueError):
    """Bad input from the user: the message says what is wrong and what is valid, in one line.

    ``fields``: the settings the message names, by their library names (``push_channel``, ``device``, ``brave``);
    a command line shows its own flag for each (``--push-channel``): see ``message_for``.
    """

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.fields = tuple(fields)

    def message_for(self, flags: Mapping[str, str]) -> str:
        """The message with the first mention of each of ``fields`` replaced by its flag: ``flags[field]``, else
        ``--`` and the field with dashes."""
        text = str(self)
        for name in self.fields:
            flag = flags.get(name, "--" + name.replace("_", "-"))
            text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", flag.replace("\\", r"\\"), text, count=1)
        return text
