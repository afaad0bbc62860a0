"""visualize.py: feature visualisation from the command line, a parser over ``dvtoolbox.optvis.job``.

``get_parser()`` returns the parser; ``main(argv)`` parses, builds a ``VisualizeJob`` and runs it
(``run_visualize``: the model, the device, the render, the files and config.yaml; nothing is overwritten without
--brave, checked before any work). Defaults come from the built-in defaults, ``--recipe``, ``--config FILE.yaml`` and
the command line, in rising order. Bad input prints one line, with this command's flags, and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import List, Optional, Sequence

from dvtoolbox.checks import MAX_ITERATIONS
from dvtoolbox.cli.arguments import (OBJECTIVE_GRAMMAR, add_brave_argument, add_device_arguments,
                                     add_dictionary_arguments, add_listing_arguments, add_lr_policy_arguments, add_model_arguments,
                                     add_regularizer_arguments, add_running_arguments, dictionaries_from_args, flags_record,
                                     layouts_from_args, model_options, new_parser, parse_with_config,
                                     print_layer_table)
from dvtoolbox.cli.exit_status import run_command
from dvtoolbox.cli.literals import parse_lr_params
from dvtoolbox.device import ENGINES, keep_freed_memory
from dvtoolbox.errors import UsageError
from dvtoolbox.optvis.alpha import ALPHA_COEF, ALPHA_TARGET
from dvtoolbox.optvis.backgrounds import CLI_BACKGROUNDS
from dvtoolbox.optvis.job import (DEFAULT_ALPHA_JITTER, OPTIMIZERS, PARAMETERISATIONS, VisualizeJob, layer_table,
                                  run_visualize)
from dvtoolbox.optvis.auto_recipe import AUTO
from dvtoolbox.optvis.job.settings import DEFAULT_OBJECTIVE, RECIPE_SETTINGS
from dvtoolbox.optvis.recipes import RECIPES
from dvtoolbox.optvis.render import check_thresholds
from dvtoolbox.optvis.transforms import TRANSFORM_PRESETS
from dvtoolbox.regularizers.settings import REGULARIZER_FIELDS, Regularizers

PROG = "visualize.py"
FLAGS = {"allow_tf32": "--tf32", "decorrelate": "--no-decorrelate", "decorrelate=False": "--no-decorrelate",  # the job's names whose flag is not --<name>
         "weights": "--model-weights", "layouts": "--layout", "start_images": "--start-image",
         "resize_to_contract=False": "--no-resize", "resize_to_contract=True": "without --no-resize",
         "regularizers": "the DVT regularizers (--decay, --blur-*, --*-percentile)"}


# ---------------------------------------------------------------------------------------------------- parser


def get_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, "Feature visualisation: optimise an image so that a model maximises an objective "
                              "(lucid / lucent / torchlight style, with DVT's regularizers available).")
    for add_group in (_what, _image, _transparency, _optimisation, _dvt, _outputs, _running):
        add_group(parser)
    return parser


def _what(parser) -> None:
    what = parser.add_argument_group("What to visualise")
    add_model_arguments(what)
    what.add_argument("--objective", default=None,
                      help=f"{OBJECTIVE_GRAMMAR}; e.g. \"_blocks.11:154@0 - _blocks.11:154@1\". The objective is "
                           f"maximised. (default: {DEFAULT_OBJECTIVE})")
    what.add_argument("--text", default=None,
                      help="A text direction: the cosine similarity of a CLIP or SigLIP model's image embedding "
                           "(hf:<repo>, its layer image_embeds) with this prompt's embedding by the model's own text "
                           "tower and tokenizer; an --objective given too is added to it (a faceted text objective, "
                           "e.g. a facet's probe as a one-latent --dictionary: --objective \"0.5 * facet#0\"; "
                           "doc/models.md).")
    what.add_argument("--units", default=None, metavar="all|A:B|K,K,...",
                      help="Every unit of the layer or dictionary that --objective names alone (--objective "
                           "_blocks.10, --objective sae): all, a range 0:64 (0:64:4 with a step) or a list 3,5,9. "
                           "One image per unit (a layer's channel LAYER:k, a dictionary's latent DICT#k), --batch "
                           "units per render; files PREFIX_NAME_kkkk_*, and index.html (doc/dictionaries.md).")
    what.add_argument("--resume", action="store_true",
                      help="With --units: skip the units whose files are all written; refuse units made with other "
                           "flags.")
    add_dictionary_arguments(what)
    add_listing_arguments(what)


def _image(parser) -> None:
    image = parser.add_argument_group("The image")
    image.add_argument("--param", default="fft", choices=tuple(PARAMETERISATIONS),
                       help="Parameterisation: fft (Fourier, lucid's default), pixel (one value per pixel, through "
                            "a sigmoid), lowres (bilinearly upsampled from 1/--lowres-factor), dvt (the image in "
                            "the model's pixel space, as DVT; needed by the DVT regularizers), maco (MACO: only the "
                            "Fourier phase is optimised, the amplitude is fixed to natural images'; also writes "
                            "PREFIX_step<T>_<n>_transparency.png, MACO's attribution map).")
    image.add_argument("--start-image", default=None, metavar="PHOTO[,PHOTO...]",
                       help="Feature accentuation: start from these photographs (one image each; resized to 256/224 "
                            "of the size and centre-cropped), push the objective and stay close to the photograph "
                            "in --accent-layer's features (doc/optvis.md). Needs --param fft. Also writes "
                            "PREFIX_start_<n>.png. (default: a random start)")
    image.add_argument("--accent-layer", default=None,
                       help="Layer whose features keep the image close to --start-image. (default: the "
                            "objective's layer)")
    image.add_argument("--accent-coef", type=float, default=None,
                       help="Weight of the feature distance to --start-image (relative squared L2), >= 0. "
                            "(default: 30)")
    image.add_argument("--no-decorrelate", action="store_true",
                       help="Do not use the decorrelated colour space (fft, pixel, lowres).")
    image.add_argument("--decay-power", type=float, default=1.0,
                       help="Spectrum decay of --param fft: frequency f scaled by 1 / f^DECAY_POWER (lucid: 1; 2 "
                            "favours large shapes, with a lower --lr: see doc/optvis.md).")
    image.add_argument("--lowres-factor", type=int, default=4, help="Down-sampling factor of --param lowres.")
    image.add_argument("--size", type=int, default=None,
                       help="Image width and height in pixels. (default: the model's input size)")
    image.add_argument("--batch", type=int, default=1,
                       help="Number of images optimised together (with --units: units per render).")
    image.add_argument("--no-resize", action="store_true",
                       help="Feed the model the transformed image at its own size, as lucid does (for models that "
                            "take any size, such as efficientnet_lite0; doc/transparency.md's figures), instead of "
                            "bringing it to the model's input size (needed by fixed-size models).")
    image.add_argument("--fit", default=None, choices=("crop", "resize"),
                       help="How a transformed image is brought to the model's input size: crop (centre crop, or "
                            "grey padding, keeping the scale the transforms drew, as lucid feeds it) or resize "
                            "(bilinear: dvtoolbox before 2026-11, which undoes the random scale). (default: crop, "
                            "or, where --recipe auto's table says so and the model takes any size, the image at "
                            "its own size, as --no-resize)")


def _transparency(parser) -> None:
    alpha = parser.add_argument_group("Transparency (--alpha; lucid's alpha notebook, see doc/transparency.md)")
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
                       help="Independent random crops of the colour, the alpha and the background by up to this "
                            "many pixels (the notebook's jitter_n), in [0, --size). "
                            f"(default: {DEFAULT_ALPHA_JITTER})")


def _optimisation(parser) -> None:
    opt = parser.add_argument_group("Optimisation")
    opt.add_argument("--recipe", default=None, choices=(AUTO,) + tuple(RECIPES),
                     help="Defaults for --views, --transforms, --decay-power, --lr and --param (given flags still "
                          "win): auto (the default: chosen from the objective and the model, printed in one line "
                          "and written to config.yaml; doc/optvis.md#the-recipe-auto-picks), lucid (1, standard, "
                          "1, 0.05, fft), class (4, strong, 2, "
                          "0.0015, fft: for class logits, at least 384 steps; doc/models.md), maco (4, maco, -, 0.2, "
                          "maco: MACO), accent (4, maco, 1, 0.02, fft: feature accentuation, needs --start-image).")
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
    add_device_arguments(opt, engines=tuple(e for e in ENGINES if e != "graphs"))


def _dvt(parser) -> None:
    reg = parser.add_argument_group("DVT regularizers and lr policy (as optimize_image.py; regularizers need "
                                    "--param dvt)")
    add_regularizer_arguments(reg)
    add_lr_policy_arguments(reg, None, None, note=" Sets the optimizer's lr each step. (default: none, the "
                                                  "constant --lr; --lr-params default: {'lr': --lr})")


def _outputs(parser) -> None:
    out = parser.add_argument_group("Where to save results")
    out.add_argument("--output-dir", default="visualize_results", help="Folder of the outputs.")
    out.add_argument("--output-prefix", default="viz",
                     help="File name prefix: PREFIX_step<T>_<n>.png (--alpha: PREFIX_step<T>_<n>_rgba.png, "
                          "_checker.png, _white.png, _background.png), PREFIX_info.txt, PREFIX_config.yaml.")
    add_brave_argument(out)


def _running(parser) -> None:
    add_running_arguments(parser.add_argument_group("Running"), "Log progress instead of a progress bar.")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse with defaults from --recipe, then --config, then the command line; no recipe anywhere is auto."""
    args = parse_with_config(get_parser(), argv, _recipe_defaults)
    if args.recipe is None:
        args.recipe = AUTO
    if args.objective is None and args.text is None:
        args.objective = DEFAULT_OBJECTIVE
    return args


def _recipe_defaults(pre: argparse.Namespace, config: dict) -> dict:
    recipe = pre.recipe if pre.recipe is not None else config.get("recipe", AUTO)
    if recipe == AUTO:  # the job fills what no flag gives once the model says what the objective is
        return {name: None for name in RECIPE_SETTINGS}
    if recipe not in RECIPES:
        raise UsageError(f"recipe must be one of {AUTO}, {', '.join(RECIPES)}, got {recipe!r}", "recipe")
    return RECIPES[recipe].cli_defaults()


# ---------------------------------------------------------------------------------------------------- the job


def thresholds_from_args(args: argparse.Namespace) -> List[int]:
    """--thresholds when given, else [--steps]."""
    if args.thresholds is None:
        if not 1 <= args.steps <= MAX_ITERATIONS:
            raise UsageError(f"--steps must be an integer in [1, {MAX_ITERATIONS}], got {args.steps}")
        return [args.steps]
    try:
        values = [int(v) for v in str(args.thresholds).split(",")]
    except ValueError:
        raise UsageError(f"--thresholds must be comma-separated integers, got {args.thresholds!r}") from None
    return check_thresholds(values)


def start_images_from_args(args: argparse.Namespace) -> List[str]:
    """--start-image's comma-separated paths."""
    return [] if args.start_image is None else [p for p in str(args.start_image).split(",") if p]


def job_from_args(args: argparse.Namespace) -> VisualizeJob:
    """Every flag into the job (which validates them); the flags' record goes to config.yaml."""
    config = flags_record(args)
    config["config-file"] = args.config
    return VisualizeJob(
        objective=args.objective, text=args.text, model=args.model, param=args.param, decorrelate=not args.no_decorrelate,
        decay_power=args.decay_power, lowres_factor=args.lowres_factor, size=args.size, batch=args.batch,
        resize_to_contract=not args.no_resize, fit=args.fit, start_images=start_images_from_args(args),
        accent_layer=args.accent_layer, accent_coef=args.accent_coef, alpha=args.alpha, background=args.background,
        adversarial_bg=args.adversarial_bg, alpha_target=args.alpha_target, alpha_coef=args.alpha_coef,
        alpha_jitter=args.alpha_jitter, recipe=args.recipe, thresholds=thresholds_from_args(args), lr=args.lr,
        optimizer=args.optimizer, transforms=args.transforms, views=args.views, seed=args.seed, device=args.device,
        allow_tf32=args.tf32, engine=args.engine, precision=args.precision,
        regularizers=Regularizers(**{name: getattr(args, name) for name in REGULARIZER_FIELDS}),
        lr_policy=args.lr_policy, lr_params=None if args.lr_params is None else parse_lr_params(args.lr_params),
        output_dir=args.output_dir, output_prefix=args.output_prefix, brave=args.brave, progress=not args.verbose,
        config=config, layouts=layouts_from_args(args), dictionaries=dictionaries_from_args(args),
        units=args.units, resume=args.resume,
        **model_options(args))


# ---------------------------------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run visualize.py; returns the exit status (0 ok, 2 bad input, 1 other failure)."""
    return run_command(PROG, lambda: _main(argv), flags=FLAGS)


def _main(argv: Optional[Sequence[str]]) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # the same numbers, without faulting fresh pages in for every tensor
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.list_models:
        from dvtoolbox.models.registry import list_models
        print("\n".join(list_models()))
        return 0
    if args.list_layers:
        print_layers(args)
        return 0
    written = run_visualize(job_from_args(args), announce=print)
    if args.units is not None:
        print(f"wrote {len(written)} files in {args.output_dir} (see {os.path.join(args.output_dir, 'index.html')})")
    else:
        print(f"wrote {len(written)} files in {args.output_dir}: " + ", ".join(os.path.basename(p) for p in written))
    return 0


def print_layers(args: argparse.Namespace) -> None:
    """Every layer with a tensor output, its shape (without the batch dimension) and its layout."""
    print_layer_table(layer_table(job_from_args(args)))
