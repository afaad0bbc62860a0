"""visualize.py: feature visualisation (``dvtoolbox.optvis.FeatureViz``) from the command line.

``get_parser()`` returns the parser; ``main(argv)`` parses, checks every input and the output files (nothing is
overwritten without --brave, checked before any work), runs ``visualize`` and writes one PNG per image per
threshold plus ``info.txt`` and ``config.yaml``, all atomically. With ``--alpha`` it runs
``dvtoolbox.optvis.alpha.render_transparent`` instead (an RGBA image optimised over a ``--background``) and writes,
per threshold, the RGBA PNG and its composites over a checkerboard and over white (plus the background). Defaults
come from the built-in defaults, ``--config FILE.yaml`` and the command line, in rising order. Bad input prints one
line and exits with status 2.

How a run is rendered is built in one place, ``render_call(args, model)`` -> ``RenderCall`` (the
parameterisation ``param_f`` and the keyword arguments of ``visualize``): a new mode adds a flag and changes the
call there, and ``PARAMS`` maps each ``--param`` name to its builder. The transparency mode calls another function,
so it has its own builder, ``alpha_call(args, model)`` -> ``render_transparent``'s keyword arguments, and its own
checks (``check_alpha_args``: what ``render_transparent`` does not support is refused, not ignored).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml

from dvtoolbox import __version__
from dvtoolbox.cli.exit_status import run_command
from dvtoolbox.cli.literals import parse_lr_params
from dvtoolbox.cli.optimize_image import DefaultsHelpFormatter, OneLineErrorParser
from dvtoolbox.cli.settings import read_yaml_config
from dvtoolbox.errors import UsageError
from dvtoolbox.io.atomic import write_text_atomic
from dvtoolbox.io.images import over_checkerboard, over_white, save_image, save_rgba_png
from dvtoolbox.models.contract import InputContract
from dvtoolbox.optimize.job import DEFAULT_MODEL, configure_float32, resolve_device
from dvtoolbox.optimize.lr_policies import REQUIRED_LR_KEYS
from dvtoolbox.optimize.writers import check_writable
from dvtoolbox.optvis.dvt import LRSchedule, PixelRegularizers, model_pixel_image
from dvtoolbox.optvis.alpha import ALPHA_COEF, ALPHA_TARGET, TransparentResult, render_transparent
from dvtoolbox.optvis.backgrounds import CLI_BACKGROUNDS
from dvtoolbox.optvis.expression import parse_objective
from dvtoolbox.optvis.objectives import create_objective
from dvtoolbox.optvis.param import get_image, lowres_tensor, to_valid_rgb
from dvtoolbox.optvis.render import FeatureViz, check_thresholds
from dvtoolbox.optvis.recipes import RECIPES
from dvtoolbox.optvis.transforms import TRANSFORM_PRESETS, preset_transforms
from dvtoolbox.io.images import load_image_rgb, resize_center_crop  # issue 15
from dvtoolbox.optvis.accentuate import (DEFAULT_COEF, StartPair, accentuation_objective, default_layer,  # issue 15
                                         start_image_param)
from dvtoolbox.optvis.param.maco import maco_image  # issue 15

PROG = "visualize.py"
REGULARIZER_FLAGS = ("decay", "blur_radius", "blur_every", "small_val_percentile", "small_norm_percentile",
                     "px_benefit_percentile", "px_abs_benefit_percentile")
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
DEFAULT_BACKGROUND = "color"   # render_transparent's default
DEFAULT_ALPHA_JITTER = 2       # the notebook's jitter_n
ALPHA_FLAGS = (("background", "--background"), ("adversarial_bg", "--adversarial-bg"),
               ("alpha_target", "--alpha-target"), ("alpha_coef", "--alpha-coef"), ("alpha_jitter", "--alpha-jitter"))
ALPHA_KINDS = ("rgba", "checker", "white")   # the files written per threshold in --alpha mode


# ---------------------------------------------------------------------------------------------------- parser


def get_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=PROG, formatter_class=DefaultsHelpFormatter,
        description="Feature visualisation: optimise an image so that a model maximises an objective "
                    "(lucid / lucent / torchlight style, with DVT's regularizers available).")
    what = parser.add_argument_group("What to visualise")
    what.add_argument("--model", default=DEFAULT_MODEL, help="Registered model name (see --list-models).")
    what.add_argument("--objective", default="_blocks.10:97",
                      help="layer:channel, layer:channel:y:x, with @batch to restrict a term to one image, joined "
                           "by + and - and scaled by numbers, e.g. \"fc8:130 + 0.5*fc8:131\" or "
                           "\"_blocks.11:154@0 - _blocks.11:154@1\". The objective is maximised.")
    what.add_argument("--list-layers", action="store_true", help="Print the model's layers, then exit.")
    what.add_argument("--list-models", action="store_true", help="Print the registered models, then exit.")

    image = parser.add_argument_group("The image")
    image.add_argument("--param", default="fft", choices=tuple(PARAMS),
                       help="Parameterisation: fft (Fourier, lucid's default), pixel (one value per pixel, through "
                            "a sigmoid), lowres (bilinearly upsampled from 1/--lowres-factor), dvt (the image in "
                            "the model's pixel space, as DVT; needed by the DVT regularizers), maco (MACO: only the "
                            "Fourier phase is optimised, the amplitude is fixed to natural images'; also writes "
                            "PREFIX_step<T>_<n>_transparency.png, MACO's attribution map).")
    # issue 15: feature accentuation
    image.add_argument("--start-image", default=None, metavar="PHOTO[,PHOTO...]",
                       help="Feature accentuation: start from these photographs (one image each; resized to 256 "
                            "and centre-cropped to --size), push the objective and stay close to the photograph in "
                            "--accent-layer's features (doc/optvis.md). Needs --param fft. Also writes "
                            "PREFIX_start_<n>.png. (default: a random start)")
    image.add_argument("--accent-layer", default=None,
                       help="Layer whose features keep the image close to --start-image. (default: the "
                            "objective's layer)")
    image.add_argument("--accent-coef", type=float, default=None,
                       help="Weight of the feature distance to --start-image (relative squared L2), >= 0. "
                            "(default: 30)")
    # end issue 15
    image.add_argument("--no-decorrelate", action="store_true",
                       help="Do not use the decorrelated colour space (fft, pixel, lowres).")
    image.add_argument("--decay-power", type=float, default=1.0,
                       help="Spectrum decay of --param fft: frequency f scaled by 1 / f^DECAY_POWER (lucid: 1; 2 "
                            "favours large shapes, with a lower --lr: see doc/optvis.md).")
    image.add_argument("--lowres-factor", type=int, default=4, help="Down-sampling factor of --param lowres.")
    image.add_argument("--size", type=int, default=None,
                       help="Image width and height in pixels. (default: the model's input size)")
    image.add_argument("--batch", type=int, default=1, help="Number of images optimised together.")
    image.add_argument("--no-resize", action="store_true",
                       help="Feed the model the transformed image at its own size, as lucid does (for models that "
                            "take any size, such as efficientnet_lite0; doc/transparency.md's figures), instead of "
                            "resizing it bilinearly to the model's input size (needed by fixed-size models).")

    alpha = parser.add_argument_group(
        "Transparency (--alpha; lucid's alpha notebook, see doc/transparency.md)")
    alpha.add_argument("--alpha", action="store_true",
                       help="Optimise an RGBA image (Fourier, decorrelated colour, alpha through a sigmoid) whose "
                            "alpha is pushed to a mean of --alpha-target, composited over --background: writes "
                            "PREFIX_step<T>_0_rgba.png (real alpha channel), _checker.png and _white.png (over a "
                            "light-grey checkerboard and over white) and _background.png. Needs a single-unit "
                            "--objective (layer:channel or layer:channel:y:x), --param fft, --batch 1, Adam, no DVT "
                            "regularizers and no --lr-policy.")
    alpha.add_argument("--background", default=None, choices=tuple(CLI_BACKGROUNDS),
                       help="What the RGBA image is optimised over: none (no background of its own: a fresh random "
                            "one each step, plus the alpha penalty), noise (a fresh noise sample each step), image "
                            "(an optimised image), offset-image (an optimised larger image seen through a random "
                            "window), color (one optimised colour). (default: color)")
    alpha.add_argument("--adversarial-bg", action="store_true",
                       help="The background is optimised to LOWER the unit (adversarial); without it, to raise it "
                            "(allied). Needs a --background other than none. (default: allied)")
    alpha.add_argument("--alpha-target", type=float, default=None,
                       help=f"Target of the mean alpha, in (0, 1). (default: {ALPHA_TARGET})")
    alpha.add_argument("--alpha-coef", type=float, default=None,
                       help="Weight of the penalty alpha_coef * (mean alpha - alpha_target) ** 2 subtracted from "
                            f"the objective, >= 0. (default: {ALPHA_COEF:g})")
    alpha.add_argument("--alpha-jitter", type=int, default=None,
                       help="Independent random crops of the colour, the alpha and the background by up to this many "
                            f"pixels (the notebook's jitter_n), in [0, --size). (default: {DEFAULT_ALPHA_JITTER})")

    opt = parser.add_argument_group("Optimisation")
    opt.add_argument("--recipe", default=None, choices=tuple(RECIPES),
                     help="Defaults for --views, --transforms, --decay-power, --lr and --param (given flags still "
                          "win): lucid (1, standard, 1, 0.05, fft: the built-in defaults), class (4, strong, 2, "
                          "0.0015, fft: for class logits, at least 384 steps; doc/models.md), maco (4, maco, -, 0.2, "
                          "maco: MACO), accent (4, maco, 1, 0.02, fft: feature accentuation, needs --start-image); "
                          "which to use for what: doc/optvis.md#recipes-per-use.")
    opt.add_argument("--steps", type=int, default=512, help="Number of steps (the last threshold).")
    opt.add_argument("--thresholds", default=None,
                     help="Comma-separated steps after which images are written, e.g. 128,256,512 (overrides "
                          "--steps). (default: --steps)")
    opt.add_argument("--lr", type=float, default=0.05, help="Learning rate of the optimizer.")
    opt.add_argument("--optimizer", default="adam", choices=tuple(OPTIMIZERS), help="Optimizer.")
    opt.add_argument("--transforms", default="standard", choices=tuple(TRANSFORM_PRESETS),
                     help="Random transforms before each forward pass: lucid's standard chain, a wider one "
                          "(strong: pad 16, jitter 16, scale 0.75..1.25, rotate +-20, jitter 8), or none.")
    opt.add_argument("--views", type=int, default=1,
                     help="Independently transformed copies of the image per step, the objective averaged over "
                          "them (one forward pass of views x batch images: each step costs about views times as "
                          "much). --recipe class sets it to 4 with --transforms strong.")
    opt.add_argument("--seed", type=int, default=0, help="Seed of the torch.Generator (initial image, transforms).")
    opt.add_argument("--device", default=None, help="cpu, cuda or cuda:N. (default: cuda when present, else cpu)")
    opt.add_argument("--tf32", action="store_true",
                     help="On CUDA, let convolutions and matrix products use TF32 tensor cores (faster, 10-bit "
                          "mantissas). (default: true float32)")

    reg = parser.add_argument_group("DVT regularizers and lr policy (as optimize_image.py; regularizers need "
                                    "--param dvt)")
    reg.add_argument("--decay", type=float, default=0.0, help="Amount of L2 decay to use.")
    reg.add_argument("--blur-radius", type=float, default=0.0,
                     help="Radius in pixels of blur to apply after each BLUR_EVERY steps. If 0, no blurring.")
    reg.add_argument("--blur-every", type=int, default=0, help="Blur every BLUR_EVERY steps. If 0, no blurring.")
    reg.add_argument("--small-val-percentile", type=float, default=0.0,
                     help="Zero values whose magnitude is under this percentile. 0 to disable.")
    reg.add_argument("--small-norm-percentile", type=float, default=0.0,
                     help="Zero pixels whose norm is under this percentile. 0 to disable.")
    reg.add_argument("--px-benefit-percentile", type=float, default=0.0,
                     help="Zero pixels whose contribution is under this percentile. 0 to disable.")
    reg.add_argument("--px-abs-benefit-percentile", type=float, default=0.0,
                     help="Zero pixels whose absolute contribution is under this percentile. 0 to disable.")
    reg.add_argument("--lr-policy", default=None, choices=tuple(REQUIRED_LR_KEYS),
                     help="DVT learning rate policy setting the optimizer's lr each step (with --lr-params). "
                          "(default: none, the constant --lr)")
    reg.add_argument("--lr-params", default=None,
                     help="Python dict literal for --lr-policy, e.g. \"{'max_lr': 100, 'desired_prog': 2}\". "
                          "(default: {'lr': --lr})")

    out = parser.add_argument_group("Where to save results")
    out.add_argument("--output-dir", default="visualize_results", help="Folder of the outputs.")
    out.add_argument("--output-prefix", default="viz",
                     help="File name prefix: PREFIX_step<T>_<n>.png (--alpha: PREFIX_step<T>_<n>_rgba.png, "
                          "_checker.png, _white.png, _background.png), PREFIX_info.txt, PREFIX_config.yaml.")
    out.add_argument("--brave", action="store_true", help="Allow overwriting existing files.")

    run = parser.add_argument_group("Running")
    run.add_argument("--config", default=None, metavar="FILE.yaml",
                     help="YAML file whose keys are flag names (e.g. steps: 256); values become defaults that the "
                          "command line overrides. (default: none)")
    run.add_argument("-v", "--verbose", action="store_true", help="Log progress instead of a progress bar.")
    run.add_argument("--version", action="version", version=f"dvtoolbox {__version__}")
    return parser


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse with defaults from --config, then the command line."""
    parser = get_parser()
    pre, _ = parser.parse_known_args(argv)
    config = {}
    if pre.config:
        dests = [a.dest for a in parser._actions if a.dest != "help"]
        config = read_yaml_config(pre.config, dests)
    recipe = pre.recipe if pre.recipe is not None else config.get("recipe")
    if recipe is not None:
        if recipe not in RECIPES:
            raise UsageError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        parser.set_defaults(**RECIPES[recipe].cli_defaults())
    parser.set_defaults(**config)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- checks


def thresholds_from_args(args: argparse.Namespace) -> List[int]:
    """--thresholds when given, else [--steps]."""
    if args.thresholds is None:
        if args.steps < 1:
            raise UsageError(f"--steps must be >= 1, got {args.steps}")
        return [args.steps]
    try:
        values = [int(v) for v in str(args.thresholds).split(",")]
    except ValueError:
        raise UsageError(f"--thresholds must be comma-separated integers, got {args.thresholds!r}") from None
    return check_thresholds(values)


def check_args(args: argparse.Namespace) -> None:
    """Every value check that needs no model (one-line UsageErrors)."""
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    if args.size is not None and args.size < 1:
        raise UsageError(f"--size must be >= 1, got {args.size}")
    if args.alpha and args.recipe not in (None, "lucid"):
        raise UsageError(f"--alpha cannot be combined with --recipe {args.recipe} (it renders one transparent image "
                         "with lucid's settings)")
    if args.views < 1 or (args.alpha and args.views != 1):
        raise UsageError(f"--views must be >= 1 (and 1 with --alpha), got {args.views}")
    if args.lowres_factor < 1:
        raise UsageError(f"--lowres-factor must be >= 1, got {args.lowres_factor}")
    if not (math.isfinite(args.decay_power) and args.decay_power >= 0):
        raise UsageError(f"--decay-power must be >= 0 and finite, got {args.decay_power}")
    if args.decay_power != 1.0 and args.param != "fft":
        raise UsageError(f"--decay-power shapes the Fourier spectrum: it needs --param fft, got --param {args.param}")
    check_maco_accent_args(args)
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.lr_params is not None and args.lr_policy is None:
        raise UsageError("--lr-params needs --lr-policy")
    if not args.output_prefix or os.sep in args.output_prefix:
        raise UsageError(f"--output-prefix must be a file name prefix without {os.sep!r}, got {args.output_prefix!r}")
    check_alpha_args(args)


def check_maco_accent_args(args: argparse.Namespace) -> None:
    """(issue 15) --param maco and --start-image rules that need no model."""
    if args.param == "maco" and args.no_decorrelate:
        raise UsageError("--param maco makes images in the decorrelated colour space of its spectrum: drop "
                         "--no-decorrelate")
    if args.start_image is None:
        if args.recipe == "accent":
            raise UsageError("--recipe accent accentuates a photograph: give --start-image")
        for flag, value in (("--accent-layer", args.accent_layer), ("--accent-coef", args.accent_coef)):
            if value is not None:
                raise UsageError(f"{flag} needs --start-image")
        return
    if args.param != "fft" or args.no_decorrelate or args.alpha:
        raise UsageError("--start-image starts a Fourier image with decorrelated colour from the photograph: it needs "
                         "--param fft, without --no-decorrelate or --alpha")
    paths = start_image_paths(args)
    if args.batch not in (1, len(paths)):
        raise UsageError(f"--start-image gives {len(paths)} images: --batch must be 1 or {len(paths)}, got {args.batch}")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"--start-image: no such file {missing[0]!r}")
    if args.accent_coef is not None and not (0.0 <= args.accent_coef < float("inf")):
        raise UsageError(f"--accent-coef must be >= 0 and finite, got {args.accent_coef}")


def start_image_paths(args: argparse.Namespace) -> List[str]:
    return [p for p in str(args.start_image).split(",") if p]


def check_alpha_args(args: argparse.Namespace) -> None:
    """The --alpha rules that need no model: its flags need it, and it refuses what ``render_transparent`` does not
    do (another parameterisation, several images, SGD, an lr policy, the DVT regularizers)."""
    if not args.alpha:
        given = [flag for dest, flag in ALPHA_FLAGS if getattr(args, dest) not in (None, False)]
        if given:
            raise UsageError(f"{given[0]} needs --alpha")
        return
    refused = [("--param " + str(args.param), args.param != "fft"), ("--no-decorrelate", args.no_decorrelate),
               (f"--batch {args.batch}", args.batch != 1), (f"--optimizer {args.optimizer}", args.optimizer != "adam"),
               ("--lr-policy", args.lr_policy is not None),
               (f"--decay-power {args.decay_power}", args.decay_power != 1.0),
               ("the DVT regularizers (--decay, --blur-*, --*-percentile)",
                any(getattr(args, name) for name in REGULARIZER_FLAGS))]
    for what, bad in refused:
        if bad:
            raise UsageError(f"--alpha cannot be combined with {what} (it optimises one RGBA Fourier image with "
                             "decorrelated colour, with Adam at the constant --lr)")
    target, coef, jitter_n = alpha_settings(args)[2:]
    if not 0.0 < target < 1.0:
        raise UsageError(f"--alpha-target must be in (0, 1), got {target}")
    if not 0.0 <= coef < float("inf"):
        raise UsageError(f"--alpha-coef must be >= 0 and finite, got {coef}")
    if jitter_n < 0:
        raise UsageError(f"--alpha-jitter must be >= 0, got {jitter_n}")
    if args.adversarial_bg and alpha_settings(args)[0] == "none":
        raise UsageError("--adversarial-bg needs a --background other than none (there is no background to optimise)")


def alpha_settings(args: argparse.Namespace):
    """(background, adversarial, alpha_target, alpha_coef, jitter_n) with the defaults filled in."""
    return (args.background if args.background is not None else DEFAULT_BACKGROUND, bool(args.adversarial_bg),
            float(args.alpha_target if args.alpha_target is not None else ALPHA_TARGET),
            float(args.alpha_coef if args.alpha_coef is not None else ALPHA_COEF),
            int(args.alpha_jitter if args.alpha_jitter is not None else DEFAULT_ALPHA_JITTER))


def regularizers_from_args(args: argparse.Namespace) -> PixelRegularizers:
    regs = PixelRegularizers(**{name: getattr(args, name) for name in REGULARIZER_FLAGS})
    if regs.active and args.param != "dvt":
        raise UsageError(f"the DVT regularizers (--decay, --blur-*, --*-percentile) need --param dvt, got --param "
                         f"{args.param}")
    return regs


def lr_schedule_from_args(args: argparse.Namespace) -> Optional[LRSchedule]:
    if args.lr_policy is None:
        return None
    params = parse_lr_params(args.lr_params) if args.lr_params is not None else {"lr": args.lr}
    return LRSchedule(args.lr_policy, params)


# ---------------------------------------------------------------------------------------------------- render


def _fft_or_pixel(fft: bool):
    def build(args, contract: InputContract, h: int, w: int) -> Callable:
        return lambda: get_image(w=w, h=h, batch=args.batch, fft=fft, decorrelate=not args.no_decorrelate,
                                 decay_power=args.decay_power)
    return build


def _lowres(args, contract: InputContract, h: int, w: int) -> Callable:
    low = (args.batch, 3, max(1, h // args.lowres_factor), max(1, w // args.lowres_factor))

    def param_f():
        params, raw_f = lowres_tensor((args.batch, 3, h, w), low)
        return params, to_valid_rgb(raw_f, decorrelate=not args.no_decorrelate)
    return param_f


def _dvt(args, contract: InputContract, h: int, w: int) -> Callable:
    return lambda: model_pixel_image(contract, batch=args.batch, size=(h, w))


class KeepImageF:
    """A ``param_f`` that keeps the ``image_f`` it made (``.image_f``), for outputs read after the run (MACO's
    transparency, the accentuation's start image)."""

    def __init__(self, param_f: Callable):
        self.param_f, self.image_f, self.start = param_f, None, None

    def __call__(self):
        params, self.image_f = self.param_f()
        return params, self.image_f


def _maco(args, contract: InputContract, h: int, w: int) -> Callable:
    return KeepImageF(lambda: maco_image(w=w, h=h, batch=args.batch))


PARAMS: Dict[str, Callable] = {"fft": _fft_or_pixel(True), "pixel": _fft_or_pixel(False), "lowres": _lowres,
                               "dvt": _dvt, "maco": _maco}


@dataclass
class RenderCall:
    """What ``FeatureViz.visualize`` is called with: ``param_f`` and the other keyword arguments."""

    param_f: Callable
    kwargs: Dict[str, object] = field(default_factory=dict)
    objective: Optional[object] = None   # issue 15: optimised instead of --objective (feature accentuation)


def image_size(args: argparse.Namespace, contract: InputContract):
    """(h, w): --size, else the model's input size."""
    return (args.size, args.size) if args.size is not None else tuple(contract.size)


def transforms_from_args(args: argparse.Namespace):
    """--transforms: None for lucid's standard chain (visualize's default), else the preset's list."""
    return preset_transforms(args.transforms)


def render_call(args: argparse.Namespace, model) -> RenderCall:
    """The visualize call the arguments ask for (the one place a new mode of ``visualize`` changes)."""
    contract = model.input_contract
    h, w = image_size(args, contract)
    optimizer = OPTIMIZERS[args.optimizer]
    kwargs = dict(thresholds=thresholds_from_args(args), lr=args.lr, seed=args.seed,
                  transforms=transforms_from_args(args), views=args.views,
                  optimizer=lambda params: optimizer(params, lr=args.lr),
                  regularizers=regularizers_from_args(args), lr_schedule=lr_schedule_from_args(args))
    if args.start_image is not None:
        return accent_call(args, model, kwargs, h, w)
    return RenderCall(PARAMS[args.param](args, contract, h, w), kwargs)


def accent_call(args: argparse.Namespace, model, kwargs: Dict[str, object], h: int, w: int) -> RenderCall:
    """(issue 15) --start-image: the start photographs' Fourier parameterisation, the ``StartPair``
    pre-transform, and the objective wrapped with the feature distance (``dvtoolbox.optvis.accentuate``)."""
    if h != w:
        raise UsageError(f"--start-image makes square images and the size is {h}x{w}: give --size")
    starts = np.stack([resize_center_crop(load_image_rgb(p), h, round(h * 256 / 224)) for p in start_image_paths(args)])
    starts = starts.astype(np.float32) / 255.0
    if args.batch > 1 and len(starts) == 1:
        starts = np.repeat(starts, args.batch, axis=0)
    keep = KeepImageF(lambda: start_image_param(torch.from_numpy(starts.transpose(0, 3, 1, 2)), args.decay_power))

    def pre_transform(image, generator):
        if keep.start is None:
            keep.start = keep.image_f().detach()
        return StartPair(keep.start)(image, generator)

    objective = parse_objective(args.objective, model=model)
    layer = args.accent_layer if args.accent_layer is not None else default_layer(objective, model)
    coef = DEFAULT_COEF if args.accent_coef is None else args.accent_coef
    kwargs["pre_transform"] = pre_transform
    return RenderCall(keep, kwargs, accentuation_objective(objective, layer, coef, len(starts), model=model))


def alpha_call(args: argparse.Namespace, model) -> Dict[str, object]:
    """``render_transparent``'s keyword arguments for --alpha (besides the model, device and progress bar), after
    the checks that need the model: a single-unit objective, a square image, --alpha-jitter below its size."""
    try:
        unit = str(create_objective(args.objective))
    except UsageError:
        unit = None
    if unit != str(parse_objective(args.objective, model=model)):  # e.g. "2 * fc8:2" reads as layer "2 * fc8"
        raise UsageError("--alpha needs a single unit, layer:channel or layer:channel:y:x (no sums, factors or "
                         f"@batch: the unit is read on the foreground's and the background's images), got "
                         f"{args.objective!r}")
    h, w = image_size(args, model.input_contract)
    if h != w:
        raise UsageError(f"--alpha makes square images and the model's input is {h}x{w}: give --size")
    background, adversarial, target, coef, jitter_n = alpha_settings(args)
    if jitter_n >= w:
        raise UsageError(f"--alpha-jitter must be smaller than the image size {w}, got {jitter_n}")
    return dict(objective=args.objective, background=background, adversarial=adversarial, alpha_target=target,
                alpha_coef=coef, w=w, jitter_n=jitter_n, thresholds=thresholds_from_args(args), lr=args.lr,
                transforms=transforms_from_args(args), seed=args.seed,
                resize_to_contract=not args.no_resize)


# ---------------------------------------------------------------------------------------------------- outputs


def image_paths(args: argparse.Namespace, thresholds: Sequence[int]) -> Dict[int, List[str]]:
    """threshold -> one PNG path per image: OUTPUT_DIR/PREFIX_step<T>_<n>.png."""
    width = len(str(thresholds[-1]))
    return {t: [os.path.join(args.output_dir, f"{args.output_prefix}_step{t:0{width}d}_{n}.png")
                for n in range(args.batch)] for t in thresholds}


def alpha_paths(args: argparse.Namespace, thresholds: Sequence[int]) -> Dict[int, Dict[str, str]]:
    """--alpha: threshold -> {kind: path} for the one image, OUTPUT_DIR/PREFIX_step<T>_0_<kind>.png, kind in
    ALPHA_KINDS."""
    return {t: {kind: paths[0][:-len(".png")] + f"_{kind}.png" for kind in ALPHA_KINDS}
            for t, paths in image_paths(args, thresholds).items()}


def background_path(args: argparse.Namespace, thresholds: Sequence[int]) -> str:
    """--alpha with a background: OUTPUT_DIR/PREFIX_step<T>_0_background.png, T the last threshold."""
    return image_paths(args, thresholds)[thresholds[-1]][0][:-len(".png")] + "_background.png"


def extra_paths(args: argparse.Namespace, thresholds: Sequence[int]) -> List[tuple]:
    """(issue 15) (kind, path) of the extra files: MACO's transparency map per image at the last threshold
    (OUTPUT_DIR/PREFIX_step<T>_<n>_transparency.png), the accentuation's start images (PREFIX_start_<n>.png)."""
    last = image_paths(args, thresholds)[thresholds[-1]]
    if args.param == "maco":
        return [("transparency", p[:-len(".png")] + "_transparency.png") for p in last]
    if args.start_image is not None:
        return [("start", os.path.join(args.output_dir, f"{args.output_prefix}_start_{n}.png"))
                for n in range(len(last))]
    return []


def write_extra(extra: List[tuple], param_f) -> List[str]:
    """Write ``extra_paths``' files from the run's ``KeepImageF``; returns the paths written."""
    if not extra:
        return []
    if extra[0][0] == "transparency":
        maps = param_f.image_f.transparency_map()
        images = [np.repeat(m[:, :, None], 3, axis=2) for m in maps]
    else:
        images = list(param_f.start.permute(0, 2, 3, 1).cpu().numpy())
    for (_, path), image in zip(extra, images):
        save_image(path, image)
    return [path for _, path in extra]


def side_paths(args: argparse.Namespace) -> List[str]:
    return [os.path.join(args.output_dir, f"{args.output_prefix}_{name}") for name in ("info.txt", "config.yaml")]


def resolved_config(args: argparse.Namespace, device, size, alpha: Optional[dict] = None) -> dict:
    """Every flag's value, the version, and what was resolved: device, image size and (--alpha) the alpha
    settings with their defaults filled in and the measured alpha mean."""
    config = {k.replace("_", "-"): v for k, v in vars(args).items()
              if k not in ("config", "list_layers", "list_models", "verbose")}
    resolved = {"device": str(device), "size": list(size)}
    if alpha is not None:
        resolved["alpha"] = alpha
    config.update({"dvtoolbox-version": __version__, "config-file": args.config, "resolved": resolved})
    return config


def info_text(objective, history: Sequence[float], thresholds: Sequence[int], elapsed: float, device,
              extra: Sequence[str] = ()) -> str:
    """The objective, device, seconds, the objective at step 1 and at each threshold, then ``extra`` lines."""
    lines = [f"objective: {objective}", f"device: {device}", f"seconds: {elapsed:.2f}",
             f"objective at step 1: {history[0]:.6g}"]
    lines += [f"objective at step {t}: {history[t - 1]:.6g}" for t in thresholds]
    return "\n".join(lines + list(extra)) + "\n"


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


# ---------------------------------------------------------------------------------------------------- main


def warn_if_too_few_steps(recipe: Optional[str], steps: int) -> None:
    """A warning (logged) when --recipe was measured with more steps than the run takes."""
    if recipe is not None and steps < RECIPES[recipe].min_steps:
        logging.getLogger(__name__).warning("--recipe %s was measured at %d steps or more; this run takes %d",
                                            recipe, RECIPES[recipe].min_steps, steps)


def run(args: argparse.Namespace) -> List[str]:
    """Validate, check the outputs, render, write; returns the files written."""
    check_args(args)
    from dvtoolbox.models.registry import create_model

    device = resolve_device(args.device)
    model = create_model(args.model)
    objective = parse_objective(args.objective, model=model)
    if args.no_resize:
        check_input_size(model, image_size(args, model.input_contract))
    if args.alpha:
        return run_alpha(args, model, device)
    call = render_call(args, model)
    thresholds = call.kwargs["thresholds"]
    paths = image_paths(args, thresholds)
    extra = extra_paths(args, thresholds)
    check_writable([p for group in paths.values() for p in group] + [p for _, p in extra] + side_paths(args),
                   args.brave)
    warn_if_too_few_steps(args.recipe, thresholds[-1])

    configure_float32(device, args.tf32)
    fv = FeatureViz(model, objective if call.objective is None else call.objective,
                    resize_to_contract=not args.no_resize)
    start = time.perf_counter()
    images = fv.visualize(call.param_f, device=device, show_progress=not args.verbose, **call.kwargs)
    elapsed = time.perf_counter() - start
    written = []
    for t, batch in zip(thresholds, images):
        for path, image in zip(paths[t], batch):
            save_image(path, image)
            written.append(path)
    written += write_extra(extra, call.param_f)
    size = images[0].shape[1:3]
    info_path, config_path = side_paths(args)
    write_text_atomic(info_path, info_text(fv.objective, fv.history, thresholds, elapsed, device))
    write_text_atomic(config_path, yaml.safe_dump(resolved_config(args, device, size), sort_keys=False))
    return written + [info_path, config_path]


def run_alpha(args: argparse.Namespace, model, device) -> List[str]:
    """--alpha: check the outputs, ``render_transparent``, write the RGBA PNG and its two composites per
    threshold, the background (when there is one) and the side files; returns the files written."""
    kwargs = alpha_call(args, model)
    thresholds = kwargs["thresholds"]
    paths = alpha_paths(args, thresholds)
    bg_path = background_path(args, thresholds) if kwargs["background"] != "none" else None
    check_writable([p for group in paths.values() for p in group.values()] + ([bg_path] if bg_path else [])
                   + side_paths(args), args.brave)

    configure_float32(device, args.tf32)
    result = render_transparent(model, device=device, show_progress=not args.verbose, **kwargs)
    written = []
    for t, snapshot in zip(thresholds, result.snapshots):
        rgba = snapshot[0]
        save_rgba_png(paths[t]["rgba"], rgba)
        save_image(paths[t]["checker"], over_checkerboard(rgba))
        save_image(paths[t]["white"], over_white(rgba))
        written += [paths[t][kind] for kind in ALPHA_KINDS]
    if bg_path is not None:
        save_image(bg_path, result.backgrounds[0])
        written.append(bg_path)
    record = alpha_record(kwargs, result)
    info_path, config_path = side_paths(args)
    write_text_atomic(info_path, info_text(result.objective, result.history, thresholds, result.seconds, device,
                                           alpha_info_lines(record)))
    config = resolved_config(args, device, result.rgba.shape[1:3], record)
    write_text_atomic(config_path, yaml.safe_dump(config, sort_keys=False))
    return written + [info_path, config_path]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run visualize.py; returns the exit status (0 ok, 2 bad input, 1 other failure)."""
    return run_command(PROG, lambda: _main(argv))


def _main(argv: Optional[Sequence[str]]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.list_models:
        from dvtoolbox.models.registry import list_models
        print("\n".join(list_models()))
        return 0
    if args.list_layers:
        print_layers(args)
        return 0
    written = run(args)
    print(f"wrote {len(written)} files in {args.output_dir}: " + ", ".join(os.path.basename(p) for p in written))
    return 0


def check_input_size(model, size) -> None:
    """--no-resize: the model must take images of ``size`` (H, W) as they are (a dry forward pass on the CPU)."""
    from dvtoolbox.models.capture import layer_shapes

    try:
        layer_shapes(model, tuple(size))
    except RuntimeError as exc:
        raise UsageError(f"--no-resize: the model cannot take {size[0]}x{size[1]} images "
                         f"({str(exc).splitlines()[0]}); drop --no-resize or give --size "
                         f"{model.input_contract.size[0]}") from None


def print_layers(args: argparse.Namespace) -> None:
    """Every layer with a tensor output and its shape (without the batch dimension)."""
    from dvtoolbox.models.capture import layer_shapes
    from dvtoolbox.models.registry import create_model

    model = create_model(args.model)
    shapes = layer_shapes(model, tuple(model.input_contract.size))
    width = max(len(name) for name in shapes)
    for name, shape in shapes.items():
        print(f"{name:<{width}}  {'x'.join(str(s) for s in shape)}")
