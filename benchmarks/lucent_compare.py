"""lucent 0.1.8 (a peer, in its own virtual environment) against this project's lucid recipe, same model, same classes.

Both render class visualisations on EfficientNet-Lite0 (the ``fc8`` logit of each class, all K classes as one
batch, each image its own class); the images are judged by the held-out EfficientNet-Lite1 and Lite2 (never by the
model optimised), as in ``transfer_eval.py``. lucent is run in ANOTHER Python (``--lucent-python``, a virtual
environment with ``torch-lucent==0.1.8`` and ``kornia==0.4.1``; it is a peer, not a dependency): this script calls
itself there with ``--peer VARIANT --peer-out FILE.npy``, importing this checkout's dvtoolbox, so that environment
needs dvtoolbox's dependencies too::

    python3 -m venv peer && peer/bin/pip install -e . ipython && peer/bin/pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1
 lucent feeds the model ImageNet-normalised images
(``transform.normalize()``), so the model is wrapped to turn them back into the normalisation its weights expect
(``x01 = x * std + mean``, then ``255 * x01 - 127``, RGB).

Variants (``--variants``):

- ``lucent``: ``render_vis(model, objective)`` with every default (``param.image(128)``: a 128-pixel Fourier image
  with decorrelated colour, lucent's standard transforms, Adam 0.05, the transformed image upsampled to 224 with
  ``align_corners=True`` when it is smaller);
- ``lucent224``: the same with ``param_f=lambda: param.image(224, batch=K)``;
- ``lucid``: ``FeatureViz.visualize``'s lucid recipe as it is now (``--recipe lucid``: the transformed image
  centre-cropped or grey-padded to 224, ``fit="crop"``);
- ``lucid_resize``: the lucid recipe before issue 15 (the transformed image resized back to 224, ``fit="resize"``);
- ``lucid_own_size``: the transformed image fed to the model at its own size (``resize_to_contract=False``);
- ``lucid128``: a 128-pixel image, lucid's transforms, resized to 224 (lucent's default size).

Writes ``--out``/``table.md``, ``results.json``, ``contact_sheet.png``; existing outputs need ``--brave``.

    python benchmarks/lucent_compare.py --out lucent_cmp --lucent-python /work/peer-venvs/lucent/bin/python \\
        --classes 7 --draw eval --steps 512 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from dvtoolbox.errors import UsageError  # noqa: E402

log = logging.getLogger("lucent_compare")

LUCENT_VARIANTS = ("lucent", "lucent224")
OURS_VARIANTS = ("lucid", "lucid_resize", "lucid_own_size", "lucid128")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------ the peer side
class FromImageNetNormalised(nn.Module):
    """Wraps a dvtoolbox model for lucent: input ImageNet-normalised RGB ``(x01 - mean) / std`` -> the model's
    pixel space ``255 * x01`` minus its mean, in its channel order. Layer names gain the prefix ``net_`` in lucent's
    hook names (``net_fc8``)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        contract = net.input_contract
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("model_mean", torch.tensor(contract.mean).view(1, 3, 1, 1), persistent=False)
        self.order = [list(contract.channel_swap_to_rgb).index(i) for i in range(3)]

    def forward(self, x):
        x01 = x * self.std + self.mean
        return self.net(255.0 * x01[:, self.order] - self.model_mean)


def render_lucent(variant: str, classes: List[int], steps: int, seed: int, layer: str = "fc8",
                  kind: str = "channel") -> np.ndarray:
    """In the peer environment: lucent's render_vis on the wrapped EfficientNet-Lite0, (K, S, S, 3) in [0, 1].
    Image i pushes unit ``classes[i]`` of ``layer`` (``kind`` lucent's ``channel``: the mean of that channel, or its
    ``neuron``: the channel at the centre of the grid)."""
    import warnings

    warnings.filterwarnings("ignore")
    from lucent.optvis import objectives, param, render

    from dvtoolbox.models.registry import create_model

    torch.manual_seed(seed)
    np.random.seed(seed)
    model = FromImageNetNormalised(create_model("efficientnet_lite0")).eval()
    hook_name = "net_" + layer.replace(".", "_")   # lucent joins module names with "_"
    unit = objectives.neuron if kind == "neuron" else objectives.channel
    objective = sum(unit(hook_name, int(c), batch=i) for i, c in enumerate(classes))
    kwargs = {}
    if variant == "lucent224":
        kwargs["param_f"] = lambda: param.image(224, batch=len(classes))
    else:  # lucent's default image is param.image(128) with batch 1: give it the batch, nothing else
        kwargs["param_f"] = lambda: param.image(128, batch=len(classes))
    images = render.render_vis(model, objective, thresholds=(steps,), show_image=False, progress=False, **kwargs)
    return images[-1].astype(np.float32)


# ------------------------------------------------------------------------------------------------ our side
def render_ours(variant: str, model, classes: List[int], steps: int, device, seed: int) -> np.ndarray:
    from dvtoolbox.optvis import FeatureViz, get_image
    from dvtoolbox.optvis.transforms import standard_transforms
    from transfer_eval import class_objective

    k = len(classes)
    size, resize, fit = 224, variant != "lucid_own_size", "crop"
    if variant in ("lucid_resize", "lucid128"):
        fit = "resize"
    if variant == "lucid128":
        size = 128
    fv = FeatureViz(model, class_objective(classes, "logit"), resize_to_contract=resize, fit=fit)
    kwargs = {} if variant == "lucid" else {"transforms": standard_transforms()}
    images = fv.visualize(lambda: get_image(size, batch=k), thresholds=[steps], seed=seed, device=device, **kwargs)
    return images[-1]


# ------------------------------------------------------------------------------------------------ main
def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", help="output folder (table.md, results.json, contact_sheet.png)")
    ap.add_argument("--lucent-python", default="/work/peer-venvs/lucent/bin/python",
                    help="the Python of a virtual environment with torch-lucent 0.1.8 and kornia 0.4.1")
    ap.add_argument("--variants", default="lucent,lucid", help=f"of {', '.join(LUCENT_VARIANTS + OURS_VARIANTS)}")
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--draw", choices=("eval", "tune", "final", "fresh"), default="final")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scorers", default="efficientnet_lite1,efficientnet_lite2")
    ap.add_argument("--sheet-cell", type=int, default=112)
    ap.add_argument("--brave", action="store_true")
    ap.add_argument("--peer", default=None, help=argparse.SUPPRESS)       # internal: render one lucent variant
    ap.add_argument("--peer-out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--peer-classes", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--peer-layer", default="fc8", help=argparse.SUPPRESS)
    ap.add_argument("--peer-objective", default="channel", choices=("channel", "neuron"), help=argparse.SUPPRESS)
    return ap


def run_peer(args, variant: str, classes: List[int], layer: str = "fc8", kind: str = "channel") -> np.ndarray:
    """Render ``variant`` in the lucent environment (image i pushes unit ``classes[i]`` of ``layer``, a channel or
    the neuron at its centre: ``kind``); returns its images."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "images.npy")
        cmd = [args.lucent_python, os.path.abspath(__file__), "--peer", variant, "--peer-out", out,
               "--peer-classes", ",".join(map(str, classes)), "--peer-layer", layer, "--peer-objective", kind,
               "--steps", str(args.steps),
               "--seed", str(args.seed), "--threads", str(args.threads)]
        subprocess.run(cmd, check=True)
        return np.load(out)


def run_peer_units(args, target: str, units: List[int], layer: str, variant: str = "lucent") -> np.ndarray:
    """``recipes_eval.py``'s lucent rows: lucent's defaults (``lucent``) or its 224-pixel image (``lucent224``) on
    class logits, on ``layer``'s channels or on its neurons at the centre of the grid."""
    return run_peer(args, variant, units, "fc8" if target == "classes" else layer,
                    "neuron" if target == "neurons" else "channel")


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peer is not None:
        classes = [int(c) for c in args.peer_classes.split(",")]
        np.save(args.peer_out, render_lucent(args.peer, classes, args.steps, args.seed, args.peer_layer,
                                                  args.peer_objective))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from dvtoolbox.models.registry import create_model
    from transfer_eval import draw_classes, load_scorers, score, summarise, thumbnails, write_report

    if not args.out:
        raise UsageError("--out is required")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in LUCENT_VARIANTS + OURS_VARIANTS]
    if unknown:
        raise UsageError(f"unknown variants {unknown}; valid: {', '.join(LUCENT_VARIANTS + OURS_VARIANTS)}")
    os.makedirs(args.out, exist_ok=True)
    outputs = [os.path.join(args.out, f) for f in ("table.md", "results.json", "contact_sheet.png")]
    if not args.brave and any(os.path.exists(p) for p in outputs):
        raise UsageError(f"{args.out} already holds results; use --brave to overwrite")
    device = torch.device("cpu")
    classes = draw_classes(args.classes, args.draw)
    model = create_model("efficientnet_lite0").eval().requires_grad_(False)
    labels = model.input_contract.labels
    scorers = load_scorers(args.scorers.split(","), device)
    log.info("classes (%s draw): %s", args.draw, ", ".join(f"{c} {labels[c]}" for c in classes))
    results: Dict[str, dict] = {"classes": classes, "labels": [labels[c] for c in classes], "args": vars(args),
                                "variants": {}}
    rows, sheet = [], []
    for variant in variants:
        start = time.perf_counter()
        if variant in LUCENT_VARIANTS:
            images = run_peer(args, variant, classes)
        else:
            images = render_ours(variant, model, classes, args.steps, device, args.seed)
        seconds = time.perf_counter() - start
        per = {s: score(m, idx, images, classes, device) for s, (m, idx) in scorers.items()}
        summary = summarise([r for rs in per.values() for r in rs])
        results["variants"][variant] = {"seconds": seconds, "scores": per, "summary": summary,
                                        "size": list(images.shape[1:3])}
        np.save(os.path.join(args.out, f"images_{variant}.npy"), images.astype(np.float32))
        line = (f"| {variant} | {images.shape[1]} | {100 * summary['top1']:.0f}% | {100 * summary['top5']:.0f}% | "
                f"{summary['p']:.3f} | {seconds / len(classes):.1f} |")
        log.info(line)
        rows.append(line)
        sheet.append(list(thumbnails(images, args.sheet_cell)))
    text = ("# lucent 0.1.8 against the lucid recipe\n\nEfficientNet-Lite0, " f"{args.draw} draw of {len(classes)} "
            f"classes, {args.steps} steps, seed {args.seed}, CPU {args.threads} threads; scored by "
            f"{', '.join(scorers)}\n\n| variant | image px | top-1 | top-5 | mean p | s/image |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\nClasses: " + ", ".join(f"{c} {labels[c]}" for c in classes) + "\n")
    write_report(args.out, text, results, sheet)
    print(text)
    return 0


if __name__ == "__main__":
    from dvtoolbox.cli.exit_status import run_command

    sys.exit(run_command("lucent_compare.py", main))
