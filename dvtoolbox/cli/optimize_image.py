"""optimize_image.py: the original's command line (all 26 flags, same names, meanings and defaults) on dvtoolbox.

``get_parser()`` returns the parser; ``main(argv)`` parses, builds an OptimizeJob and runs it, so the command line
is testable and the core never parses. Defaults come, in rising order, from the built-in defaults, settings_local.py,
``--config FILE.yaml`` and the command line. Bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Optional, Sequence

from dvtoolbox.checks import MAX_IMAGE_SIDE
from dvtoolbox.cli.arguments import (OBJECTIVE_GRAMMAR, add_brave_argument, add_device_arguments, add_listing_arguments,
                                     add_dictionary_arguments, add_lr_policy_arguments, add_model_arguments, add_regularizer_arguments,
                                     add_running_arguments, dictionaries_from_args, flag_names, flags_record, layouts_from_args,
                                     model_options, new_parser, parse_with_config, print_layer_table)
from dvtoolbox.cli.exit_status import run_command
from dvtoolbox.cli.literals import parse_int_tuple, parse_lr_params, parse_mean, parse_push_spatial
from dvtoolbox.cli.settings import find_settings_file, read_settings_local
from dvtoolbox.device import keep_freed_memory
from dvtoolbox.optimize.job import OptimizeJob, layer_table, prepare, run_job
from dvtoolbox.optimize.loop import STATS_EVERY
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.start import START_AT_CHOICES
from dvtoolbox.run.units import is_single_unit

PROG = "optimize_image.py"
FLAGS = {"allow_tf32": "--tf32", "unit_spec": "--push-channel", "push_token": "--push-spatial",  # library names
         "weights": "--model-weights", "layouts": "--layout"}                                     # not --<name>
FROM_MODEL = "<the model's>"


def get_parser() -> argparse.ArgumentParser:
    """The optimize_image.py parser, flags grouped as the original's --help groups them."""
    parser = new_parser(PROG, "Find, with or without regularization, images that cause high or low activations of "
                              "specific neurons in a network via numerical optimization (deep-visualization-toolbox, "
                              "in PyTorch).")
    for add_group in (_network, _start, _push, _regularization, _learning_rate, _outputs, _running):
        add_group(parser)
    return parser


def _network(parser) -> None:
    net = parser.add_argument_group("Which trained network to load")
    net.add_argument("--caffe-root", default=None,
                     help="Accepted for compatibility and ignored: dvtoolbox needs no Caffe installation. "
                          "(default: <read from settings>)")
    net.add_argument("--deploy-proto", default=None,
                     help="Path to a Caffe network prototxt; runs that Caffe model in PyTorch. Without it the "
                          "--model is used. (default: <read from settings>)")
    net.add_argument("--net-weights", default=None,
                     help="Path to the Caffe network weights (.caffemodel). (default: <read from settings>)")
    add_model_arguments(net, " Used when no Caffe model is given.")
    net.add_argument("--mean", default=None,
                     help="Mean. The mean may be None, a tuple of one mean value per channel (broadcast to the data "
                          "size), or a string giving the path of a mean image (.npy or .binaryproto). This argument "
                          "is a Python literal: \"None\", \"(10,20,30)\" and \"'mean.npy'\" are all valid (quote a "
                          "path inside the shell's quotes). (default: <read from settings>, else the model's mean)")
    net.add_argument("--channel-swap-to-rgb", default=None,
                     help="Permutation to apply to channels to change to RGB space for plotting. Hint: (0,1,2) if "
                          "your network is trained for RGB, (2,1,0) if it is trained for BGR. (default: the model's "
                          "channel order: (0,1,2) for the embedded model, (2,1,0) for Caffe models)")
    net.add_argument("--data-size", default=None,
                     help="Size of network input, e.g. \"(227,227)\". (default: the model's input size: (224,224) "
                          "for the embedded model, the prototxt's input for Caffe models)")
    add_device_arguments(net)
    net.add_argument("--image-dtype", default="float64", choices=("float64", "float32"),
                     help="Precision of the optimized image (x0, x, the step, decay, blur, the clips): float64 as the "
                          "original's numpy arrays (its numbers, iteration by iteration), or float32 (a little "
                          "faster; the trajectory departs from the original's after a few iterations, see "
                          "doc/running-optimize-image.md). The network always computes in float32.")
    add_listing_arguments(net)


def _start(parser) -> None:
    start = parser.add_argument_group("Where to start optimization")
    start.add_argument("--start-at", default="mean_plus_rand",
                       help=f"How to generate x0, the initial point used in optimization: one of "
                            f"{', '.join(START_AT_CHOICES)}, or the path of a .npy file holding x0 (3 x H x W, the "
                            "image minus the mean on the 0..255 scale, model channel order), used exactly as given.")
    start.add_argument("--rand-seed", type=int, default=0,
                       help="Random seed used for generating the start-at image (use different seeds to generate "
                            "different images).")


def _push(parser) -> None:
    push = parser.add_argument_group("Which neuron to optimize and in what direction")
    push.add_argument("--push-layer", default="fc8",
                      help="Name of layer that contains the desired neuron whose value is optimized. The NAME of a "
                           "--dictionary is a layer too: its latents' pre-activations on its layer's grid, so "
                           "--push-channel all runs the whole dictionary (doc/dictionaries.md).")
    push.add_argument("--push-channel", default="130",
                      help="Channel number for desired neuron whose value is optimized (channel for conv, neuron "
                           "index for FC). Several units: a list 1,130,554, a range 0:1000 (end excluded), or all; "
                           "each unit is written as its own single run would write it.")
    push.add_argument("--push-spatial", default="None",
                      help="Which spatial location to push for conv layers. For FC layers, set this to None. For "
                           "conv layers, set it to a tuple, e.g. when using `--push-layer conv5` on AlexNet, "
                           "--push-spatial (6,6) will maximize the center unit of the 13x13 spatial grid.")
    push.add_argument("--objective", default=None,
                      help=f"Instead of the unit alone, ascend a feature-visualisation objective: {OBJECTIVE_GRAMMAR}. "
                           "Its value is recorded as obj; --push-layer/--push-channel still name the files and the "
                           "unit of the idxmax statistics. (default: the pushed unit)")
    add_dictionary_arguments(push)
    push.add_argument("--push-dir", type=float, default=1,
                      help="Which direction to push the activation of the selected neuron, that is, the value used "
                           "to begin backprop. For example, use 1 to maximize the selected neuron activation and -1 "
                           "to minimize it.")


def _regularization(parser) -> None:
    add_regularizer_arguments(parser.add_argument_group("Which regularization options to apply"))


def _learning_rate(parser) -> None:
    lr = parser.add_argument_group("What learning rate schedule to use")
    add_lr_policy_arguments(lr, "constant", "{'lr': 1}")
    lr.add_argument("--max-iter", type=int, default=500, help="Number of iterations of the optimization loop.")


def _outputs(parser) -> None:
    out = parser.add_argument_group("Where to save results")
    out.add_argument("--output-prefix", default="optimize_results/opt", help="Output path and filename prefix.")
    out.add_argument("--output-template", default="%(p.push_layer)s_%(p.push_channel)04d_%(p.rand_seed)d",
                     help="Output filename template, filled with p.<FindParams field> and r.<FindResults field>. The "
                          "default prefix and template give files like optimize_results/opt_fc8_0130_0_best_X.jpg. "
                          "(default: %%(p.push_layer)s_%%(p.push_channel)04d_%%(p.rand_seed)d)")
    add_brave_argument(out)
    out.add_argument("--skipbig", action="store_true",
                     help="Skip outputting the large *info_big.pkl file (pickled FindParams and FindResults with x0, "
                          "last x, best x and the first x that made the unit the maximum of its layer).")


def _running(parser) -> None:
    run = parser.add_argument_group("Running")
    run.add_argument("--batch-size", type=int, default=1,
                     help="Optimize this many units at once (one forward/backward for all); each unit's result is "
                          "what its single run gives.")
    run.add_argument("--stats-every", type=int, default=STATS_EVERY, metavar="K",
                     help="Copy the recorded statistics (obj, idxmax, norm, dist, std) from the device to the host "
                          "every K iterations (and at the end) and update the progress bar then; the results are the "
                          "same for any K. -v copies and logs every iteration.")
    run.add_argument("--resume", action="store_true",
                     help="Skip units whose files are all there, redo the others (incomplete ones are overwritten); "
                          "the folder's run summary must have the same settings.")
    add_running_arguments(run, "Log the original's per-iteration lines instead of showing a progress bar.")


def parse_args(argv: Optional[Sequence[str]], settings_dirs: Sequence[str]) -> argparse.Namespace:
    """Parse with defaults from settings_local.py and --config (in that order), then the command line."""
    parser = get_parser()
    settings_path = find_settings_file(settings_dirs)
    if settings_path:
        parser.set_defaults(**read_settings_local(settings_path, flag_names(parser)))
    args = parse_with_config(parser, argv)
    args.settings_file = settings_path
    return args


def job_from_args(args: argparse.Namespace) -> OptimizeJob:
    """Validate every option once and build the job."""
    single = is_single_unit(args.push_channel)
    spatial = parse_push_spatial(args.push_spatial)
    token = spatial if isinstance(spatial, int) else None
    params = FindParams(
        rand_seed=args.rand_seed, start_at=args.start_at, push_layer=args.push_layer,
        push_channel=int(args.push_channel) if single else 0, push_spatial=(0, 0) if token is not None else spatial,
        push_dir=args.push_dir, decay=args.decay, blur_radius=args.blur_radius, blur_every=args.blur_every,
        small_val_percentile=args.small_val_percentile, small_norm_percentile=args.small_norm_percentile,
        px_benefit_percentile=args.px_benefit_percentile, px_abs_benefit_percentile=args.px_abs_benefit_percentile,
        lr_policy=args.lr_policy, lr_params=parse_lr_params(args.lr_params), max_iter=args.max_iter)
    return OptimizeJob(
        params=params, model=args.model, deploy_proto=args.deploy_proto, net_weights=args.net_weights,
        mean="model" if args.mean is None else parse_mean(args.mean),
        channel_swap_to_rgb=None if args.channel_swap_to_rgb is None else parse_int_tuple(
            "--channel-swap-to-rgb", args.channel_swap_to_rgb, None, 0),
        data_size=None if args.data_size is None else parse_int_tuple("--data-size", args.data_size, 2, 1,
                                                                      MAX_IMAGE_SIDE),
        device=args.device, output_prefix=args.output_prefix, output_template=args.output_template,
        brave=args.brave, skipbig=args.skipbig, progress=not args.verbose, config=resolved_config(args),
        channels=None if single else args.push_channel, batch_size=args.batch_size, resume=args.resume,
        objective=args.objective, allow_tf32=args.tf32, image_dtype=args.image_dtype, engine=args.engine,
        precision=args.precision, stats_every=args.stats_every, layouts=layouts_from_args(args), push_token=token,
        dictionaries=dictionaries_from_args(args),
        **model_options(args))


def resolved_config(args: argparse.Namespace) -> dict:
    """Every flag's final value (what config.yaml beside the outputs records), plus provenance."""
    config = flags_record(args)
    config["settings-file"] = args.settings_file
    config["config-file"] = args.config
    return config


def main(argv: Optional[Sequence[str]] = None, settings_dirs: Optional[Sequence[str]] = None) -> int:
    """Run optimize_image.py; returns the exit status (0 ok, 2 bad input, 1 other failure)."""
    settings_dirs = [os.getcwd()] if settings_dirs is None else list(settings_dirs)
    return run_command(PROG, lambda: _main(argv, settings_dirs), interrupted="interrupted; nothing was written",
                       flags=FLAGS)


def _main(argv: Optional[Sequence[str]], settings_dirs: Sequence[str]) -> int:
    args = parse_args(argv, settings_dirs)
    keep_freed_memory()  # the same numbers, without faulting fresh pages in for every tensor
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.list_models:
        from dvtoolbox.models.registry import list_models
        print("\n".join(list_models()))
        return 0
    job = job_from_args(args)
    if args.list_layers:
        print_layers(job)
        return 0
    if args.verbose:
        print("Starting optimization with the following parameters:\n" + str(job.params))
    results, written = run_job(job)
    if len(results) == 1:
        res = results[0]
        print(res.meta_result)
        print(f"best obj {res.best_obj:g} at iteration {res.best_ii}; last obj {res.last_obj:g}")
        print("wrote " + ", ".join(written))
    else:
        print(f"{len(results)} units optimized; summary: {written[-1] if written else 'none'}")
    return 0


def print_layers(job: OptimizeJob) -> None:
    """The --list-layers table: every pushable layer and its output shape (without the batch dimension)."""
    print_layer_table(layer_table(prepare(job)))
