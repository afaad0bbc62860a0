"""A module of the user's own that fails on import (for the tests of package.module:factory)."""

raise RuntimeError("this module is broken on import")


def factory():  # never reached
    return None
