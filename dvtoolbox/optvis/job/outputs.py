"""A visualize job's files: their names (``image_paths``, ``alpha_paths``, ``extra_paths``, ``side_paths``: all
known before the run, so the overwrite rule is checked before any work) and their writing, each atomic:
``<output_dir>/<output_prefix>_step<T>_<n>.png`` per image and threshold (``alpha``: ``..._rgba.png`` with a real
alpha channel, ``_checker.png`` and ``_white.png`` composites, and ``_background.png``; param maco: MACO's
transparency map ``..._transparency.png`` at the last threshold; start_images: ``<prefix>_start_<n>.png``, the
photograph as the parameterisation reproduces it), ``<prefix>_info.txt`` (objective, device, seconds, the objective
at step 1 and at each threshold) and ``<prefix>_config.yaml`` (the caller's record of its settings plus what the run
resolved).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml

from dvtoolbox import __version__
from dvtoolbox.io.atomic import write_text_atomic
from dvtoolbox.io.images import over_checkerboard, over_white, save_image, save_rgba_png
from dvtoolbox.optvis.alpha import TransparentResult
from dvtoolbox.optvis.job.settings import RECIPE_SETTINGS, VisualizeJob
from dvtoolbox.run.context import RunContext

ALPHA_KINDS = ("rgba", "checker", "white")   # the files written per threshold with alpha


def write_render(job: VisualizeJob, context: RunContext, fv, images: Sequence[np.ndarray], param_f,
                 elapsed: float) -> List[str]:
    """Write a render's images (one PNG per image and threshold), its extra files, info.txt and config.yaml;
    returns the paths written."""
    paths, written = image_paths(job), []
    for t, batch in zip(job.thresholds, images):
        for path, image in zip(paths[t], batch):
            save_image(path, image)
            written.append(path)
    written += write_extra(extra_paths(job), param_f)
    info_path, config_path = side_paths(job)
    write_text_atomic(info_path, info_text(fv.objective, fv.history, job.thresholds, elapsed, context.device))
    write_text_atomic(config_path, config_text(job, context, images[0].shape[1:3]))
    return written + [info_path, config_path]


def write_transparent(job: VisualizeJob, context: RunContext, kwargs: Dict[str, object], result: TransparentResult,
                      paths: Dict[int, Dict[str, str]], bg_path: Optional[str]) -> List[str]:
    """Write a transparent render: per threshold the RGBA PNG and its checkerboard and white composites, the
    background (when there is one), info.txt and config.yaml; returns the paths written."""
    written = []
    for t, snapshot in zip(job.thresholds, result.snapshots):
        rgba = snapshot[0]
        save_rgba_png(paths[t]["rgba"], rgba)
        save_image(paths[t]["checker"], over_checkerboard(rgba))
        save_image(paths[t]["white"], over_white(rgba))
        written += [paths[t][kind] for kind in ALPHA_KINDS]
    if bg_path is not None:
        save_image(bg_path, result.backgrounds[0])
        written.append(bg_path)
    record = alpha_record(kwargs, result)
    info_path, config_path = side_paths(job)
    write_text_atomic(info_path, info_text(result.objective, result.history, job.thresholds, result.seconds,
                                           context.device,
                                           alpha_info_lines(record)))
    write_text_atomic(config_path, config_text(job, context, result.rgba.shape[1:3], record))
    return written + [info_path, config_path]


def alpha_record(kwargs: Dict[str, object], result: TransparentResult) -> dict:
    """The alpha settings used and the measured alpha mean, for config.yaml's ``resolved``."""
    return {"background": kwargs["background"], "adversarial": kwargs["adversarial"],
            "alpha-target": kwargs["alpha_target"], "alpha-coef": kwargs["alpha_coef"],
            "alpha-jitter": kwargs["jitter_n"], "alpha-mean": result.alpha_means[0]}


def alpha_info_lines(record: dict) -> List[str]:
    side = "" if record["background"] == "none" else (", adversarial" if record["adversarial"] else ", allied")
    return [f"alpha: background {record['background']}{side}, target {record['alpha-target']:g}, coef "
            f"{record['alpha-coef']:g}, jitter {record['alpha-jitter']}",
            f"alpha mean: {record['alpha-mean']:.6g}"]


def image_paths(job: VisualizeJob, prefix: Optional[str] = None, batch: Optional[int] = None) -> Dict[int, List[str]]:
    """threshold -> one PNG path per image: OUTPUT_DIR/PREFIX_step<T>_<n>.png (``prefix``, ``batch``: instead of
    the job's output_prefix and batch, e.g. one unit's of a whole-layer run)."""
    width = len(str(job.thresholds[-1]))
    prefix = job.output_prefix if prefix is None else prefix
    return {t: [os.path.join(job.output_dir, f"{prefix}_step{t:0{width}d}_{n}.png")
                for n in range(job.batch if batch is None else batch)] for t in job.thresholds}


def alpha_paths(job: VisualizeJob) -> Dict[int, Dict[str, str]]:
    """alpha: threshold -> {kind: path} for the one image, OUTPUT_DIR/PREFIX_step<T>_0_<kind>.png, kind in
    ALPHA_KINDS."""
    return {t: {kind: paths[0][:-len(".png")] + f"_{kind}.png" for kind in ALPHA_KINDS}
            for t, paths in image_paths(job).items()}


def background_path(job: VisualizeJob) -> str:
    """alpha with a background: OUTPUT_DIR/PREFIX_step<T>_0_background.png, T the last threshold."""
    return image_paths(job)[job.thresholds[-1]][0][:-len(".png")] + "_background.png"


def extra_paths(job: VisualizeJob, prefix: Optional[str] = None, batch: Optional[int] = None) -> Dict[int, str]:
    """Image n -> its extra file: MACO's transparency map at the last threshold
    (OUTPUT_DIR/PREFIX_step<T>_<n>_transparency.png), or the accentuation's start image (PREFIX_start_<n>.png).
    prefix, batch: as ``image_paths``'."""
    last = image_paths(job, prefix, batch)[job.thresholds[-1]]
    if job.param == "maco":
        return {n: p[:-len(".png")] + "_transparency.png" for n, p in enumerate(last)}
    if job.start_images:
        return {n: os.path.join(job.output_dir, f"{job.output_prefix}_start_{n}.png") for n in range(len(last))}
    return {}


def extra_images(param_f) -> List[np.ndarray]:
    """The extra file's image of each image of a run, from its ``KeepImageF``: MACO's transparency map (grey) or
    the accentuation's start image, (H, W, 3) in [0, 1]."""
    if param_f.start is None:  # maco: the transparency map, grey
        return [np.repeat(m[:, :, None], 3, axis=2) for m in param_f.image_f.transparency_map()]
    return list(param_f.start.permute(0, 2, 3, 1).cpu().numpy())


def write_extra(extra: Dict[int, str], param_f) -> List[str]:
    """Write ``extra_paths``' files from the run's ``KeepImageF``; returns the paths written."""
    if not extra:
        return []
    images = extra_images(param_f)
    for n, path in extra.items():
        save_image(path, images[n])
    return list(extra.values())


def side_paths(job: VisualizeJob, prefix: Optional[str] = None) -> List[str]:
    """[OUTPUT_DIR/PREFIX_info.txt, OUTPUT_DIR/PREFIX_config.yaml] (``prefix``: as ``image_paths``')."""
    prefix = job.output_prefix if prefix is None else prefix
    return [os.path.join(job.output_dir, f"{prefix}_{name}") for name in ("info.txt", "config.yaml")]


def info_text(objective, history: Sequence[float], thresholds: Sequence[int], elapsed: float, device,
              extra: Sequence[str] = ()) -> str:
    """The objective, device, seconds, the objective at step 1 and at each threshold, then ``extra`` lines."""
    lines = [f"objective: {objective}", f"device: {device}", f"seconds: {elapsed:.2f}",
             f"objective at step 1: {history[0]:.6g}"]
    lines += [f"objective at step {t}: {history[t - 1]:.6g}" for t in thresholds]
    return "\n".join(lines + list(extra)) + "\n"


def config_text(job: VisualizeJob, context: RunContext, size, alpha: Optional[dict] = None,
                unit: Optional[dict] = None) -> str:
    """config.yaml: the caller's record (``job.config``), the version if it has none, and what was resolved (the
    run context's model, device, engine and precision, the image size, what recipe auto chose, with alpha the alpha
    settings with their defaults filled in and the measured alpha mean, and in a whole-layer run the ``unit``)."""
    resolved = context.resolved({"size": list(size)})
    if job.auto_choice is not None:
        resolved["recipe"] = {**job.auto_choice.record(),
                              "settings": {name: getattr(job, name) for name in RECIPE_SETTINGS}}
    if alpha is not None:
        resolved["alpha"] = alpha
    if unit is not None:
        resolved["unit"] = unit
    config = dict(job.config)
    config.setdefault("dvtoolbox-version", __version__)
    config["resolved"] = resolved
    return yaml.safe_dump(config, sort_keys=False)
