"""Writing one result as the original did: ``<prefix>best_X.jpg``, ``best_Xpm.jpg``, ``info.txt``, ``info.pkl``,
``info_big.pkl`` (unless skipbig), plus ``last_X.jpg`` / ``last_Xpm.jpg``, ``curve.png`` (obj and norm per iteration,
written with or without skipbig) and ``config.yaml`` (the resolved configuration, written last). Every file is
written atomically. The prefix comes from the original's template, filled with ``p.<field>`` of FindParams and
``r.<field>`` of FindResults.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
from dataclasses import fields
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml

from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import write_bytes_atomic, write_text_atomic
from dvtoolbox.io.curves import write_curve
from dvtoolbox.io.images import norm01, norm01c, save_image
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.results import FindResults

IMAGE_SUFFIXES = ("best_X.jpg", "best_Xpm.jpg", "last_X.jpg", "last_Xpm.jpg")
INFO_SUFFIXES = ("info.txt", "info.pkl")
BIG_SUFFIX = "info_big.pkl"
CURVE_SUFFIX = "curve.png"
CONFIG_SUFFIX = "config.yaml"


def template_values(params: FindParams, results: Optional[FindResults] = None) -> Dict[str, object]:
    """The dict the output template is filled from: 'p.push_layer', 'r.best_obj', ..."""
    values = {"p." + f.name: getattr(params, f.name) for f in fields(params)}
    if results is not None:
        values.update({"r." + k: v for k, v in vars(results).items()})
    return values


def uses_results(template: str) -> bool:
    """True when the template needs FindResults fields, so the prefix is known only after the run."""
    return re.search(r"%\(r\.", template) is not None


def output_prefix(template: str, params: FindParams, results: Optional[FindResults] = None) -> str:
    """Fill the template; a folder-only result gets a trailing slash (as the original)."""
    values = template_values(params, results)
    try:
        prefix = template % values
    except KeyError as exc:
        valid = ", ".join(sorted(values))
        raise UsageError(f"output_template: unknown field %({exc.args[0]})s; valid fields: {valid}",
                         "output_template") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"output_template: cannot fill {template!r}: {exc}", "output_template") from None
    if os.path.isdir(prefix) and not prefix.endswith(os.sep):
        prefix += os.sep
    return prefix


def planned_files(prefix: str, skipbig: bool) -> List[str]:
    """Every file a run with this prefix writes."""
    suffixes = IMAGE_SUFFIXES + INFO_SUFFIXES + (() if skipbig else (BIG_SUFFIX,)) + (CURVE_SUFFIX, CONFIG_SUFFIX)
    return [prefix + suffix for suffix in suffixes]


def write_results(prefix: str, params: FindParams, results: FindResults, mean: np.ndarray,
                  channel_swap_to_rgb: Sequence[int], skipbig: bool, config: Dict[str, object]) -> List[str]:
    """Write every file of one result; returns their paths. mean: (3, H, W) in the model's channel order."""
    swap = list(channel_swap_to_rgb)
    mean_rgb = np.transpose(mean[swap], (1, 2, 0))
    written = []
    for name, xx in (("best", results.best_xx), ("last", results.last_xx)):
        if xx is None:
            continue
        rgb = np.transpose(xx[swap], (1, 2, 0))
        save_image(prefix + name + "_X.jpg", norm01c(rgb, 0))
        save_image(prefix + name + "_Xpm.jpg", norm01(rgb + mean_rgb))
        written += [prefix + name + "_X.jpg", prefix + name + "_Xpm.jpg"]
    write_text_atomic(prefix + "info.txt", info_text(params, results))
    written.append(prefix + "info.txt")
    if not skipbig:
        write_bytes_atomic(prefix + BIG_SUFFIX, pickle.dumps((params, results), protocol=pickle.HIGHEST_PROTOCOL))
        written.append(prefix + BIG_SUFFIX)
    trimmed = copy.deepcopy(results)
    trimmed.trim_arrays()
    write_bytes_atomic(prefix + "info.pkl", pickle.dumps((params, trimmed), protocol=pickle.HIGHEST_PROTOCOL))
    write_curve(prefix + CURVE_SUFFIX, results.ii, results.obj, results.norm, results.best_ii, results.majority_ii,
                title=f"{params.push_layer} unit {params.push_channel}, seed {params.rand_seed}")
    write_text_atomic(prefix + CONFIG_SUFFIX, yaml.safe_dump(config, sort_keys=False))
    return written + [prefix + "info.pkl", prefix + CURVE_SUFFIX, prefix + CONFIG_SUFFIX]


def info_text(params: FindParams, results: FindResults) -> str:
    """info.txt exactly as the original's print statements laid it out."""
    return str(params) + "\n\n" + str(results) + "\n"
