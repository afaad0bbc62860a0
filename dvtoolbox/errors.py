"""Errors a user can cause: the command line turns these into one line and exit status 2."""


class UsageError(ValueError):
    """Bad input from the user: the message says what is wrong and what is valid, in one line."""
