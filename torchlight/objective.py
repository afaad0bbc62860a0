"""``torchlight.objective``: objectives of the torchlight README (``dvtoolbox.optvis.objectives``)."""

from dvtoolbox.optvis.objectives import Objective, create_objective, wrap_objective

__all__ = ["Objective", "create_objective", "wrap_objective"]
