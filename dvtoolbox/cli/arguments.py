"""What both command lines share, declared once: the parser class and help layout, argument groups built by
functions (as torchvision's ``parents=[...]``: one declaration and one help text per flag), defaults layered from
settings and ``--config FILE.yaml``, the record of the flags for config.yaml, and the layer table.

The regularizer flags are made from ``dvtoolbox.regularizers.settings.Regularizers``' fields and defaults; their
help texts are the original's ``--help``.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

from dvtoolbox import __version__
from dvtoolbox.cli.literals import parse_rgb
from dvtoolbox.cli.settings import read_yaml_config
from dvtoolbox.device import AUTO_ENGINE, ENGINES, PRECISIONS
from dvtoolbox.errors import UsageError
from dvtoolbox.models.layouts import parse_layout
from dvtoolbox.models.registry import DEFAULT_MODEL
from dvtoolbox.regularizers.lr_policies import REQUIRED_LR_KEYS
from dvtoolbox.regularizers.settings import Regularizers

NOT_RECORDED = ("config", "list_layers", "list_models", "verbose", "settings_file",  # not settings of a run
                "trust_model_file")

REGULARIZER_HELP = {  # the original's --help, per Regularizers field
    "decay": "Amount of L2 decay to use.",
    "blur_radius": "Radius in pixels of blur to apply after each BLUR_EVERY steps. If 0, perform no blurring. Blur "
                   "sizes between 0 and 0.3 work poorly.",
    "blur_every": "Blur every BLUR_EVERY steps. If 0, perform no blurring.",
    "small_val_percentile": "Induce sparsity by setting pixels with absolute value under SMALL_VAL_PERCENTILE "
                            "percentile to 0. Not discussed in paper. 0 to disable.",
    "small_norm_percentile": "Induce sparsity by setting pixels with norm under SMALL_NORM_PERCENTILE percentile to "
                             "0. \\theta_{n_pct} from the paper. 0 to disable.",
    "px_benefit_percentile": "Induce sparsity by setting pixels with contribution under PX_BENEFIT_PERCENTILE "
                             "percentile to 0. Mentioned briefly in paper but not used. 0 to disable.",
    "px_abs_benefit_percentile": "Induce sparsity by setting pixels with absolute contribution under "
                                 "PX_ABS_BENEFIT_PERCENTILE percentile to 0. \\theta_{c_pct} from the paper. 0 to "
                                 "disable.",
}
LR_PARAMS_HELP = ("Learning rate params, a Python dict literal. The \"constant\" policy requires the \"lr\" key. The "
                  "\"progress\" policy requires \"max_lr\" and \"desired_prog\" and scales the learning rate so the "
                  "objective changes by DESIRED_PROG under a linear assumption, limited to MAX_LR. The \"progress01\" "
                  "policy requires \"max_lr\", \"early_prog\" and \"late_prog_mult\" and is tuned for outputs in "
                  "[0,1] (softmax units): it slows down as the output approaches 1.")
OBJECTIVE_GRAMMAR = ("layer:channel or layer:channel:y:x terms (@batch restricts a term to one image), joined by + "
                     "and - and scaled by numbers, e.g. \"fc8:130 + 0.5*fc8:131\" (doc/optvis.md); DICT#k is latent k "
                     "of a --dictionary (its pre-activation; DICT.act#k its activation; doc/dictionaries.md)")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default, except where the help text already says it."""

    def __init__(self, prog):
        super().__init__(prog, width=100, max_help_position=32)

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default:" in text or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return OneLineErrorParser(prog=prog, formatter_class=DefaultsHelpFormatter, description=description)


# ---------------------------------------------------------------------------------------------------- groups


def add_model_arguments(group, note: str = "") -> None:
    """--model, --trust-model-file, --model-weights, --input-mean, --input-std, --layout."""
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help="The network: a model name (registered, see --list-models; torchvision's and timm's zoo by "
                            "name, e.g. resnet50, vit_b_16, convnext_tiny, timm:vit_tiny_patch16_224; Hugging Face "
                            "transformers models as hf:<repository or folder>, e.g. hf:facebook/dinov2-small), your "
                            "own code "
                            "as package.module:factory (factory() returns an nn.Module), or a file saved with "
                            "torch.save(model, path), read through an allow-list of torch.nn's, torchvision's and "
                            "timm's module classes (see --trust-model-file). A settings file or --config may give a "
                            "model name only." + note)
    group.add_argument("--trust-model-file", action="store_true",
                       help="Unpickle a --model file whole, as torch.load(weights_only=False) does: needed for a file "
                            "that names classes of your own; it runs whatever code the file names, so give it only "
                            "for files you trust. Only on the command line (not in settings or --config).")
    group.add_argument("--model-weights", default=None, metavar="PATH",
                       help="Weights of a named model: a state-dict file (.pth, .safetensors), or 'none' for random "
                            "weights. (default: the model's own, from its package or the torch / timm / Hugging Face "
                            "cache)")
    group.add_argument("--input-mean", default=None,
                       help="For a network without an input contract (your own, a saved module): the RGB mean it "
                            "normalises by, 0..1 scale, e.g. \"(0.5,0.5,0.5)\". (default: ImageNet's, "
                            "(0.485,0.456,0.406))")
    group.add_argument("--input-std", default=None,
                       help="The same network's RGB std, 0..1 scale. (default: ImageNet's, (0.229,0.224,0.225))")
    group.add_argument("--layout", action="append", default=None, metavar="LAYER=KIND",
                       help="Where a layer's channels are, when --list-layers shows it unknown or to override it: "
                            "NCHW, NC, NHWC, or NTC[:prefix=P][:grid=HxW] (transformer tokens); repeatable. "
                            "(default: inferred)")


DICTIONARY_AS_LAYER = ("A dictionary (sparse autoencoder) over LAYER's channels, a layer named NAME whose units are "
                       "its latents (their pre-activations on LAYER's grid; name it in --layers, or leave --layers "
                       "out to track the dictionaries alone)")


def add_dictionary_arguments(group, what: str = "") -> None:
    """--dictionary (repeatable); what: how this command uses it (default: named in the objective)."""
    group.add_argument("--dictionary", action="append", default=None, metavar="NAME=LAYER=PATH[,topk=K]",
                       help=(what or "A dictionary (sparse autoencoder) over LAYER's channels, named NAME in the "
                             "objective (NAME#k: latent k)") + ": PATH a SAELens folder (cfg.json + "
                       "sae_weights.safetensors), an Overcomplete state dict (.pt/.pth) or a safetensors file with W_enc "
                       "and b_enc; topk=K for a TopK dictionary whose file does not say k; repeatable "
                       "(doc/dictionaries.md). (default: none)")


def dictionaries_from_args(args: argparse.Namespace) -> Dict[str, object]:
    """--dictionary NAME=LAYER=PATH[,topk=K], repeated: {name: LayerDictionary}, the files read now."""
    from dvtoolbox.dictionaries.binding import parse_dictionary_bindings
    texts = args.dictionary
    return parse_dictionary_bindings([texts] if isinstance(texts, str) else texts or (), args.trust_model_file)


def add_listing_arguments(group) -> None:
    """--list-layers, --list-models."""
    group.add_argument("--list-layers", action="store_true",
                       help="Print every layer of the model with its output shape and layout (where its channels "
                            "are), then exit.")
    group.add_argument("--list-models", action="store_true", help="Print the registered models, then exit.")


def add_device_arguments(group, engines: Sequence[str] = ENGINES) -> None:
    """--device, --engine, --precision, --tf32."""
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N. (default: cuda when present, else cpu)")
    group.add_argument("--engine", default="auto", choices=tuple(engines),
                       help="How the network's forward and backward pass run: eager (the model as built), folded "
                            "(batch norms folded into the convolutions before them: float32 rounding), compiled "
                            "(folded, the forward to the pushed layer and the input gradient traced into one graph "
                            "and compiled by inductor: minutes to compile, for whole layers)"
                            + (", graphs (compiled, each iteration replayed as a CUDA graph; CUDA only)"
                               if "graphs" in engines else "")
                            + " or auto (" + ", ".join(f"{k} {v}" for k, v in AUTO_ENGINE.items())
                            + ": the engine whose numbers are the original's, not the fastest). See "
                              "doc/running-optimize-image.md.")
    group.add_argument("--precision", default="float32", choices=PRECISIONS,
                       help="Precision of the network: float32 (true float32, as the original), tf32 (CUDA's TF32 "
                            "tensor cores for convolutions and matrix products, about 3 decimal digits) or bf16 "
                            "(bfloat16 autocast of the forward and backward pass, about 2 decimal digits); their "
                            "measured deviations are in doc/running-optimize-image.md.")
    group.add_argument("--tf32", action="store_true", help="The same as --precision tf32.")


def add_regularizer_arguments(group) -> None:
    """One flag per ``Regularizers`` field, with its default and the original's help."""
    for f in fields(Regularizers):
        group.add_argument("--" + f.name.replace("_", "-"), type=int if f.type == "int" else float, default=f.default,
                           help=REGULARIZER_HELP[f.name])


def add_lr_policy_arguments(group, policy_default: Optional[str], params_default: Optional[str],
                            note: str = "") -> None:
    """--lr-policy, --lr-params."""
    group.add_argument("--lr-policy", default=policy_default, choices=tuple(REQUIRED_LR_KEYS),
                       help="Learning rate policy. See description in lr-params." + note)
    group.add_argument("--lr-params", default=params_default, help=LR_PARAMS_HELP)


def add_brave_argument(group) -> None:
    group.add_argument("--brave", action="store_true",
                       help="Allow overwriting existing results files. Default: off, i.e. cowardly refuse to "
                            "overwrite existing files.")


def add_running_arguments(group, verbose_help: str) -> None:
    """--config, -v/--verbose, --version."""
    group.add_argument("--config", default=None, metavar="FILE.yaml",
                       help="YAML file whose keys are flag names (e.g. max-iter: 1000); values become defaults that "
                            "the command line overrides. (default: none)")
    group.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    group.add_argument("--version", action="version", version=f"dvtoolbox {__version__}")


# ---------------------------------------------------------------------------------------------------- parsing


def parse_with_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
                      defaults_before_config: Optional[Callable] = None) -> argparse.Namespace:
    """Parse ``argv`` with defaults in rising order: the parser's (and any set on it before), then
    ``defaults_before_config(pre_args, config)`` (a dict), then ``--config FILE.yaml``, then the command line."""
    pre, _ = parser.parse_known_args(argv)
    config = read_yaml_config(pre.config, flag_names(parser)) if pre.config else {}
    if defaults_before_config is not None:
        parser.set_defaults(**defaults_before_config(pre, config))
    parser.set_defaults(**config)
    return parser.parse_args(argv)


def flag_names(parser: argparse.ArgumentParser) -> Iterable[str]:
    return [a.dest for a in parser._actions if a.dest != "help"]


def flags_record(args: argparse.Namespace) -> Dict[str, object]:
    """Every setting flag's final value by flag name (config.yaml's first part), then the version."""
    record = {k.replace("_", "-"): v for k, v in vars(args).items() if k not in NOT_RECORDED}
    record["dvtoolbox-version"] = __version__
    return record


def model_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``models.load.load_model`` (and the jobs) the model flags give."""
    weights = args.model_weights
    return dict(weights=None if weights == "none" else ("default" if weights is None else weights),
                input_mean=None if args.input_mean is None else parse_rgb("--input-mean", args.input_mean),
                input_std=None if args.input_std is None else parse_rgb("--input-std", args.input_std),
                trust_model_file=args.trust_model_file)


def layouts_from_args(args: argparse.Namespace) -> Dict[str, object]:
    """--layout NAME=KIND, repeated (each layer once): {name: Layout}."""
    layouts: Dict[str, object] = {}
    for text in args.layout or ():
        name, layout = parse_layout(text)
        if name in layouts:
            raise UsageError(f"--layout gives layer {name!r} twice ({layouts[name]}, then {layout}); give it once")
        layouts[name] = layout
    return layouts


def print_layer_table(rows: Sequence[Tuple[str, Tuple[int, ...], object]]) -> None:
    """``name  shape  layout`` per layer (the shape without the batch dimension), columns aligned."""
    width = max(len(name) for name, _, _ in rows)
    shapes = ["x".join(str(s) for s in shape) for _, shape, _ in rows]
    shape_width = max(len(s) for s in shapes)
    for (name, _, layout), shape in zip(rows, shapes):
        print(f"{name:<{width}}  {shape:<{shape_width}}  {layout}")
