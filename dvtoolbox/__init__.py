"""dvtoolbox: the deep-visualization-toolbox image optimizer (Yosinski et al., 2015) in PyTorch.

Data flows one way: command line / settings_local.py / YAML (``dvtoolbox.cli``) -> a params object
(``dvtoolbox.optimize.params.FindParams``) -> a model with named layers and a declared input contract
(``dvtoolbox.models``) -> the optimizer loop (``dvtoolbox.optimize.loop``) -> results -> writers.
"""

__version__ = "0.1.0"
