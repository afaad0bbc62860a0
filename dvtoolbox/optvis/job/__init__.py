"""One visualize job: its settings (``settings.VisualizeJob``), its run (``pipeline.run_visualize``), its
parameterisations by name and its files (``outputs``).

    from dvtoolbox.optvis.job import VisualizeJob, run_visualize

    written = run_visualize(VisualizeJob(objective="fc8:130", thresholds=(128, 256), output_dir="viz", brave=True))
"""

from dvtoolbox.optvis.job.outputs import (ALPHA_KINDS, alpha_paths, background_path, config_text, extra_paths,
                                          image_paths, info_text, side_paths)
from dvtoolbox.optvis.job.parameterisations import PARAMETERISATIONS, KeepImageF
from dvtoolbox.optvis.job.pipeline import (accentuation, alpha_kwargs, check_input_size, image_size, layer_table,
                                           render_kwargs, run_visualize)
from dvtoolbox.optvis.job.settings import (ALPHA_SETTINGS, DEFAULT_ALPHA_JITTER, DEFAULT_BACKGROUND, DEFAULT_RECIPE,
                                           OPTIMIZERS, VisualizeJob)

__all__ = ["ALPHA_KINDS", "ALPHA_SETTINGS", "DEFAULT_ALPHA_JITTER", "DEFAULT_BACKGROUND", "DEFAULT_RECIPE",
           "KeepImageF", "OPTIMIZERS", "PARAMETERISATIONS", "VisualizeJob", "accentuation", "alpha_kwargs",
           "alpha_paths", "background_path", "check_input_size", "config_text", "extra_paths", "image_paths",
           "image_size", "info_text", "layer_table", "render_kwargs", "run_visualize", "side_paths"]
