"""One optimize_image job: its settings (``settings.OptimizeJob``), its run (``pipeline.run_job``) and its files
(``outputs``).

    from dvtoolbox.optimize.job import OptimizeJob, run_job

    results, written = run_job(OptimizeJob(FindParams(push_layer="fc8", push_channel=130, max_iter=100)))
"""

from dvtoolbox.optimize.job.outputs import plan_outputs, resolved_settings, run_settings
from dvtoolbox.optimize.job.pipeline import (Prepared, check_unit, layer_table, padded_batch, prepare,
                                             resolve_token, run_job, unit_shape)
from dvtoolbox.optimize.job.settings import IMAGE_DTYPES, OptimizeJob

__all__ = ["IMAGE_DTYPES", "OptimizeJob", "Prepared", "check_unit", "layer_table", "padded_batch", "plan_outputs",
           "prepare", "resolve_token", "resolved_settings", "run_job", "run_settings", "unit_shape"]
