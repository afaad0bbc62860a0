"""``torchlight.objective``: objectives of the torchlight README (``dvtoolbox.objectives``)."""

from dvtoolbox.objectives import Objective, create_objective, wrap_objective

__all__ = ["Objective", "create_objective", "wrap_objective"]
