"""The FeatureViz loop against a bare forward + backward on the same model, same batch and size, in one process.

``visualize`` runs lucid's standard transforms on a Fourier, colour-decorrelated image with Adam (the torchlight
README's setup); the bare loop feeds a plain (N, 3, 224, 224) leaf tensor to the same model, captures the same
layer, and backpropagates the same channel objective into the input, then takes a plain gradient step. Both stop
the forward pass at the objective's layer (as the loop does). Rounds are interleaved so that machine noise hits
both alike; the medians and minima over rounds are reported, with the ratio loop / bare (the issue's target:
<= 1.2 on the CPU). ``--engines eager,folded,compiled`` times each engine's loop against a bare loop on that
engine's network. The process keeps freed memory as the command lines do. Not a test: run it by hand.

With ``--views V`` the loop runs ``visualize(views=V)`` (V transformed copies of each image, one forward pass of
V x batch images per step) and the bare loop a leaf batch of the same V x batch images, so the ratio is still the
loop's overhead over the least any loop feeding the model that many images must do; the per-step seconds show
what the views cost. ``--transforms strong`` uses ``strong_transforms()`` (with ``--views 4``, the class recipe's views).

With ``--recipe NAME`` the loop runs that recipe of ``dvtoolbox.optvis.recipes.RECIPES`` (its
parameterisation, transforms, views and lr; ``maco``: ``maco_image``; ``accent``: ``accentuate`` from a fixed random
start image, whose forward passes carry the image AND its start image, so the bare loop feeds 2 x views x batch
images), and the bare loop the same number of images per step.

    python benchmarks/bench_visualize.py [--device cpu|cuda] [--steps 20] [--rounds 5] [--threads 2] [--batch 1]
        [--views 1] [--transforms standard|strong|maco] [--recipe lucid|class|maco|accent]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from _timing import interleaved_times, machine, medians_and_minima  # noqa: E402  (benchmarks/, the script's folder)
from dvtoolbox.device import Execution, keep_freed_memory  # noqa: E402
from dvtoolbox.models.program import CapturedNetwork  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optvis import FeatureViz, get_image  # noqa: E402
from dvtoolbox.objectives import create_objective  # noqa: E402
from dvtoolbox.optvis.transforms import TRANSFORM_PRESETS  # noqa: E402


def bare_loop(network: CapturedNetwork, layer: str, channel: int, batch: int, size, steps: int,
              device) -> torch.Tensor:
    """Forward to the layer (where the loop's forward pass stops too), the channel's mean, backward into a leaf
    image, x += lr * grad: the least any loop must do."""
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    x = torch.randn((batch, 3) + tuple(size), generator=gen, device=device)
    for _ in range(steps):
        x.requires_grad_(True)
        value = network.forward(x)[layer][:, channel].mean()
        (grad,) = torch.autograd.grad(value, x)
        x = (x + 1.0 * grad).detach()
    return x


def featureviz_loop(fv: FeatureViz, batch: int, size, steps: int, device, views: int = 1,
                    transforms: str = "standard", execution: Execution = Execution("eager")) -> None:
    """``visualize`` with the named transform preset (standard: the default) and ``views`` copies, Fourier +
    decorrelated image, Adam lr 0.05."""
    h, w = size
    fv.visualize(lambda: get_image(w=w, h=h, batch=batch, fft=True, decorrelate=True), thresholds=[steps],
                 lr=0.05, seed=0, device=device, views=views, transforms=TRANSFORM_PRESETS[transforms](),
                 execution=execution)


def recipe_loop(fv: FeatureViz, name: str, batch: int, size, steps: int, device) -> None:
    """One run of a named recipe (see the module docstring) with ``fv``'s model and objective."""
    import numpy as np

    from dvtoolbox.optvis.accentuate import accentuate
    from dvtoolbox.optvis.param.maco import maco_image
    from dvtoolbox.optvis.recipes import RECIPES

    recipe = RECIPES[name]
    h, w = size
    if name == "accent":
        start = np.random.RandomState(0).rand(batch, h, w, 3)
        accentuate(fv.model, fv.objective, start, thresholds=[steps], lr=recipe.lr,
                   transforms=recipe.transform_list(), views=recipe.views, device=device)
        return
    param_f = (lambda: maco_image(w, h, batch=batch)) if recipe.param == "maco" else \
        (lambda: get_image(w=w, h=h, batch=batch, decay_power=recipe.decay_power))
    fv.visualize(param_f, thresholds=[steps], lr=recipe.lr, seed=0, device=device, views=recipe.views,
                 transforms=recipe.transform_list())


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--objective", default="_blocks.10:97", help="layer:channel")
    ap.add_argument("--batch", type=int, default=1, help="images optimised together")
    ap.add_argument("--views", type=int, default=1,
                    help="visualize(views=...); the bare loop then feeds views x batch images")
    ap.add_argument("--transforms", default="standard", choices=tuple(TRANSFORM_PRESETS))
    ap.add_argument("--recipe", default=None, help="a RECIPES name: time that recipe (sets --views)")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--engines", default="eager", help="comma-separated: eager, folded, compiled (each against a bare "
                                                       "loop on its own network)")
    return ap


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    kept = keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = create_model(args.model).to(device).eval().requires_grad_(False)
    size = tuple(model.input_contract.size)
    layer, channel = args.objective.rsplit(":", 1)
    fv = FeatureViz(model, create_objective(args.objective, model=model))
    bare_images = args.views * args.batch
    if args.recipe is not None:
        from dvtoolbox.optvis.recipes import RECIPES

        args.views, args.transforms = RECIPES[args.recipe].views, RECIPES[args.recipe].transforms
        bare_images = args.views * args.batch * (2 if args.recipe == "accent" else 1)
    variants = {}
    for engine in args.engines.split(","):
        execution = Execution(engine).on(device)
        suffix = "" if engine == "eager" else "-" + engine
        network = CapturedNetwork(model, [layer], True, execution.fold, execution.memory_format(device))
        variants["bare" + suffix] = lambda n=network: bare_loop(n, layer, int(channel), bare_images, size,
                                                                args.steps, device)
        if args.recipe is None:
            variants["visualize" + suffix] = lambda e=execution: featureviz_loop(
                fv, args.batch, size, args.steps, device, args.views, args.transforms, e)
        elif engine == "eager":
            variants["visualize " + args.recipe] = lambda: recipe_loop(fv, args.recipe, args.batch, size, args.steps,
                                                                       device)
    stats = medians_and_minima(interleaved_times(variants, args.rounds, device, per=args.steps))
    where = machine(device, args.threads)
    print(f"{args.model} {args.objective}, batch {args.batch} x {args.views} views ({args.transforms} transforms; "
          f"the bare loop: batch {bare_images}), {size[0]}x{size[1]}, {args.steps} steps x "
          f"{args.rounds} rounds, {where}, freed memory kept: {kept}; load average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"{'variant':18} {'median s/step':>13} {'ratio':>7} {'min s/step':>10} {'ratio':>7}")
    for name, (med, low) in stats.items():
        if name.startswith("visualize "):
            bare = stats["bare"]
        else:
            bare = stats["bare" + name[len("visualize"):]] if name.startswith("visualize") else (med, low)
        print(f"{name:18} {med:13.4f} {med / bare[0]:7.3f} {low:10.4f} {low / bare[1]:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
