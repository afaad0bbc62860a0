"""Every recipe on the same draw: transfer (held-out models), naturalness (``naturalness.py``) and seconds per image.

``--target classes``: one image per class of a seeded draw (``transfer_eval.draw_classes``; the ``final`` draw was
never tuned on), objective the ``fc8`` logit on EfficientNet-Lite0, judged by EfficientNet-Lite1 and Lite2 (top-1,
top-5, mean target probability over both; never scored on Lite0) and by the two naturalness measures.
``--target channels``: one image per hidden channel (K channels of ``--layer`` drawn with ``--seed-channels``),
objective the channel's mean; transfer cannot judge these, so: naturalness, and the channel's value on the image
at rest (no transform; the source's own number, for reference). ``--target neurons``: the same channels, each at
one place, the centre of ``--layer``'s grid (the ``neuron`` objective); measured as channels are, the value read
at that place.

Recipes (``--recipes``): ``lucid_before`` (the lucid recipe before issue 15: the transformed image resized back to
224), ``lucid`` (``visualize()``'s lucid recipe now), ``lucent`` (lucent 0.1.8's ``render_vis`` defaults in its
own environment, ``--lucent-python``: a 128-pixel image upsampled to 224; see ``lucent_compare.py``), ``lucent224``
(lucent at its best setting for a 224-pixel model: ``param.image(224)``, the transformed image fed at its own
size), ``class`` (``--recipe class``), ``lucid_own`` (lucid's recipe with the transformed image fed to the
model at its own size, ``--no-resize``, instead of cropped or padded to 224; recipes of several views per step
cannot: their views differ in size and share one forward pass), ``maco``
(``--recipe maco``), ``accent`` (feature accentuation from ``--start-photo``, ``--recipe accent``). All images of a
recipe are rendered as one batch with seed ``--seed``, for ``--steps`` steps or the recipe's measured minimum
when larger (class and maco: 384). Writes ``--out``/``table.md``, ``results.json``,
``images_<recipe>.npy`` and ``contact_sheet.png`` (rows the recipes, columns the units); ``--brave`` to overwrite.

    python benchmarks/recipes_eval.py --out recipes_final --target classes --draw final --classes 6 --steps 256
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Dict, List

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from dvtoolbox.errors import UsageError  # noqa: E402

log = logging.getLogger("recipes_eval")
RECIPE_NAMES = ("lucid_before", "lucid", "lucid_own", "lucent", "lucent224", "class", "maco", "maco_fixed",
                "maco_before", "maco_paper", "accent")
OWN_SIZE_SUFFIX = "_own"   # the recipe with the transformed image fed at its own size (--no-resize)
ACCENT_CLASS_LAYER = "_blocks.12"   # where the accentuation of a class logit measures its distance to the photograph


def start_photo(path: str, size: int) -> np.ndarray:
    """(size, size, 3) in [0, 1]: resized to 256/224 of ``size`` (shorter side), centre crop. ``grace_hopper``:
    matplotlib's sample photograph (public domain)."""
    from dvtoolbox.io.images import load_image_rgb, resize_center_crop

    if path == "grace_hopper":
        import matplotlib.cbook

        path = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return resize_center_crop(load_image_rgb(path), size, round(size * 256 / 224)).astype(np.float32) / 255.0


def batch_objective(target: str, units: List[int], layer: str):
    """Image i pushes unit i: the sum over i of the fc8 logit (classes), of the channel's mean (channels) or of the
    channel at the centre of the grid (neurons)."""
    from dvtoolbox.objectives import channel, neuron
    from transfer_eval import class_objective

    if target == "classes":
        return class_objective(units, "logit")
    if target == "neurons":
        return sum(neuron(layer, int(u), batch=i) for i, u in enumerate(units))
    return sum(channel(layer, int(u), batch=i) for i, u in enumerate(units))


def render(name: str, model, objective, k: int, steps: int, seed: int, args) -> np.ndarray:
    from dvtoolbox.optvis import FeatureViz, get_image
    from dvtoolbox.optvis.accentuate import DEFAULT_COEF, accentuate
    from dvtoolbox.optvis.param.maco import maco_image
    from dvtoolbox.optvis.recipes import RECIPES
    from dvtoolbox.optvis.transforms import standard_transforms

    size = model.input_contract.size[0]
    if name == "lucid_before":
        fv = FeatureViz(model, objective, fit="resize")
        return fv.visualize(lambda: get_image(size, batch=k), thresholds=[steps], seed=seed,
                            transforms=standard_transforms())[-1]
    if name == "accent":
        recipe = RECIPES["accent"]
        photo = start_photo(args.start_photo, size)
        layer = args.accent_layer or (ACCENT_CLASS_LAYER if args.target == "classes" else args.layer)
        result = accentuate(model, objective, np.repeat(photo[None], k, axis=0), layer=layer, coef=DEFAULT_COEF if args.accent_coef is None else args.accent_coef,
                            thresholds=[steps], lr=recipe.lr, transforms=recipe.transform_list(), views=recipe.views,
                            seed=seed, decay_power=recipe.decay_power)
        return result.images[-1]
    if name.startswith("maco_"):
        return render_maco_variant(name, model, objective, size, k, steps, seed, args)
    own_size = name.endswith(OWN_SIZE_SUFFIX)
    recipe = RECIPES[name[:-len(OWN_SIZE_SUFFIX)] if own_size else name]
    fv = FeatureViz(model, objective, resize_to_contract=not own_size)
    if recipe.param == "maco":
        param_f = lambda: maco_image(size, batch=k)  # noqa: E731
    else:
        param_f = lambda: get_image(size, batch=k, decay_power=recipe.decay_power)  # noqa: E731
    return fv.visualize(param_f, thresholds=[steps], seed=seed, lr=recipe.lr, transforms=recipe.transform_list(),
                        views=recipe.views)[-1]


def render_maco_variant(name: str, model, objective, size: int, k: int, steps: int, seed: int, args) -> np.ndarray:
    """``maco_fixed``: the MACO recipe with the mean colour fixed at the photographs' average (the paper's fixed DC
    term); ``maco_before``: fixed mean AND the spectrum before issue 22 (``--maco-before-spectrum``, the five
    photographs' file, e.g. ``git show 921404a:dvtoolbox/data/natural_spectrum.npz``); ``maco_paper``: the
    paper's settings, a canvas twice the model's size, 8 crops per step of 0.55 .. 0.8 of it (the model sees the
    canvas at 0.63 .. 0.91 of its scale, as horama's and xplique's crops do), the recipe's learning rate and noise."""
    from dvtoolbox.optvis import FeatureViz
    from dvtoolbox.optvis.param.maco import maco_image
    from dvtoolbox.optvis.recipes import RECIPES
    from dvtoolbox.optvis.spectrum import natural_amplitude
    from dvtoolbox.optvis.transforms import MACO_NOISE, pixel_noise, random_box_crop

    recipe, transforms, views = RECIPES["maco"], RECIPES["maco"].transform_list(), RECIPES["maco"].views
    if name == "maco_fixed":
        param_f = lambda: maco_image(size, batch=k, fixed_mean=True)  # noqa: E731
    elif name == "maco_before":
        if not args.maco_before_spectrum:
            raise UsageError("maco_before needs --maco-before-spectrum FILE.npz")
        with np.load(args.maco_before_spectrum) as data:
            old = {"quadrant": data["quadrant"].astype(np.float64), "mean": data["mean"].astype(np.float64),
                   "reference_size": int(data["reference_size"])}
        amplitude, sign = natural_amplitude(size, size, old)
        param_f = lambda: maco_image(size, batch=k, amplitude=amplitude, dc_sign=sign)  # noqa: E731
    else:
        param_f = lambda: maco_image(2 * size, batch=k)  # noqa: E731
        transforms, views = [random_box_crop((0.55, 0.8), size=(size, size)), pixel_noise(MACO_NOISE)], 8
    fv = FeatureViz(model, objective)
    return fv.visualize(param_f, thresholds=[steps], seed=seed, lr=recipe.lr, transforms=transforms, views=views)[-1]


def steps_for(name: str, steps: int) -> int:
    """--steps, or the recipe's measured minimum when larger (the class and MACO recipes: 384)."""
    from dvtoolbox.optvis.recipes import RECIPES

    name = name[:-len(OWN_SIZE_SUFFIX)] if name.endswith(OWN_SIZE_SUFFIX) else name
    name = "maco" if name.startswith("maco_") else name
    return max(steps, RECIPES[name].min_steps) if name in RECIPES else steps


@torch.no_grad()
def unit_values(model, images: np.ndarray, target: str, units: List[int], layer: str) -> List[float]:
    """The pushed unit's value on each image as it is (no transform), resized to the model's size."""
    from dvtoolbox.models.capture import LayerCapture
    from dvtoolbox.models.pixel_space import to_model_input
    from dvtoolbox.optvis.param.spatial import resize_bilinear

    from dvtoolbox.models.layouts import canonical, model_layouts

    name = "fc8" if target == "classes" else layer
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    x = to_model_input(resize_bilinear(x, model.input_contract.size), model.input_contract)
    layout = model_layouts(model, tuple(model.input_contract.size))[name]
    with LayerCapture(model, [name]) as capture:
        model(x)
        out = canonical(capture.outputs[name], layout, name)     # (N, C, H, W) or (N, C)
    if target == "neurons":  # the centre, as the neuron objective's default place
        return [float(out[i, u, out.shape[2] // 2, out.shape[3] // 2]) for i, u in enumerate(units)]
    return [float(out[i, u].mean()) for i, u in enumerate(units)]


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", choices=("classes", "channels", "neurons"), default="classes")
    ap.add_argument("--draw", choices=("eval", "tune", "final", "fresh"), default="final")
    ap.add_argument("--classes", type=int, default=6, help="K classes (--target classes)")
    ap.add_argument("--model", default="efficientnet_lite0",
                    help="the model optimised (--target channels / neurons for another one, e.g. a token model)")
    ap.add_argument("--model-weights", choices=("default", "none"), default="default",
                    help="none: random weights, seeded (torch.manual_seed(0))")
    ap.add_argument("--layer", default="_blocks.10", help="--target channels / neurons: the layer")
    ap.add_argument("--channels", type=int, default=6, help="--target channels / neurons: K channels")
    ap.add_argument("--seed-channels", type=int, default=15)
    ap.add_argument("--recipes", default=",".join(RECIPE_NAMES))
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--start-photo", default="grace_hopper", help="accent: the start photograph (a path)")
    ap.add_argument("--accent-layer", default=None,
                    help=f"accent: the distance's layer (default: {ACCENT_CLASS_LAYER} for classes, --layer for channels)")
    ap.add_argument("--accent-coef", type=float, default=None, help="accent: the distance's weight (default: accentuate's)")
    ap.add_argument("--maco-before-spectrum", default=None, help="maco_before: the spectrum file before issue 22")
    ap.add_argument("--lucent-python", default="/work/peer-venvs/lucent/bin/python")
    ap.add_argument("--scorers", default="efficientnet_lite1,efficientnet_lite2")
    ap.add_argument("--sheet-cell", type=int, default=128)
    ap.add_argument("--brave", action="store_true")
    return ap


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    from dvtoolbox.io.atomic import write_bytes_atomic
    from dvtoolbox.models.registry import create_model
    from lucent_compare import run_peer_units
    from naturalness import Naturalness
    from transfer_eval import draw_classes, load_scorers, score, summarise, thumbnails

    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipes if r not in RECIPE_NAMES]
    if unknown:
        raise UsageError(f"unknown recipes {unknown}; valid: {', '.join(RECIPE_NAMES)}")
    os.makedirs(args.out, exist_ok=True)
    table_path = os.path.join(args.out, "table.md")
    if os.path.exists(table_path) and not args.brave:
        raise UsageError(f"{args.out} already holds results; use --brave to overwrite")
    if args.model != "efficientnet_lite0" and (args.target == "classes" or "lucent" in ",".join(recipes)):
        raise UsageError("--model: another model than efficientnet_lite0 takes --target channels or neurons and "
                         "no lucent row (lucent reads every layer as channels first)")
    torch.manual_seed(0)                                # random weights (--model-weights none) are seeded
    model = create_model(args.model, weights=None if args.model_weights == "none" else "default")
    model = model.eval().requires_grad_(False)
    labels = model.input_contract.labels
    if args.target == "classes":
        units = draw_classes(args.classes, args.draw)
        names = [labels[c] for c in units]
        scorers = load_scorers(args.scorers.split(","), "cpu")
    else:
        from dvtoolbox.models.layouts import canonical_shape, survey_layers

        shapes, layouts = survey_layers(model, tuple(model.input_contract.size))
        n_channels = canonical_shape(shapes[args.layer], layouts[args.layer], args.layer)[0]
        gen = torch.Generator().manual_seed(args.seed_channels)
        units = sorted(torch.randperm(n_channels, generator=gen)[:args.channels].tolist())
        names = [f"{args.layer}:{u}" for u in units]
        scorers = {}
    log.info("%s: %s", args.target, ", ".join(names))
    measure = Naturalness()
    floor = measure.floor()
    objective = batch_objective(args.target, units, args.layer)
    results: Dict[str, object] = {"units": units, "names": names, "args": vars(args), "photographs": floor,
                                  "recipes": {}}
    rows, sheet = [], []
    for name in recipes:
        start = time.perf_counter()
        if name in ("lucent", "lucent224"):
            images = run_peer_units(args, args.target, units, args.layer, name)
        else:
            images = render(name, model, objective, len(units), steps_for(name, args.steps), args.seed, args)
        seconds = (time.perf_counter() - start) / len(units)
        entry = {"seconds_per_image": seconds, "naturalness": measure(images),
                 "unit_values": unit_values(model, images, args.target, units, args.layer)}
        if scorers:
            per = {s: score(m, idx, images, units, "cpu") for s, (m, idx) in scorers.items()}
            entry["scores"], entry["transfer"] = per, summarise([r for rs in per.values() for r in rs])
        results["recipes"][name] = entry
        write_bytes_atomic(os.path.join(args.out, f"images_{name}.npy"), _npy(images))
        nat = entry["naturalness"]
        transfer = entry.get("transfer")
        cells = (f"{100 * transfer['top1']:.0f}% / {100 * transfer['top5']:.0f}% / {transfer['p']:.3f} | "
                 if transfer else "")
        rows.append(f"| {name} | {cells}{nat['slope']:.2f} ({nat['delta_slope']:.2f}) | {nat['kid']:.2f} | "
                    f"{nat['colour_cast']:.3f} | {np.mean(entry['unit_values']):.2f} | {steps_for(name, args.steps)} | "
                    f"{seconds:.0f} |")
        log.info(rows[-1])
        sheet.append(list(thumbnails(images, args.sheet_cell)))
        text = write_outputs(args, scorers, units, names, recipes[:len(rows)], rows, sheet, floor, results)
    print(text)
    return 0


def write_outputs(args, scorers, units, names, recipes_done, rows, sheet, floor, results) -> str:
    """table.md, results.json and contact_sheet.png for the recipes rendered so far (rewritten after each)."""
    from transfer_eval import write_report

    head = ("| recipe | transfer top-1 / top-5 / p (Lite1 + Lite2) | " if scorers else "| recipe | ")
    head += "slope (abs. diff. to photos) | KID x100 | colour cast | source value (mean) | steps | s/image |"
    text = (f"# Recipes, {args.target}\n\n{args.model} ({args.model_weights} weights), {len(units)} {args.target} ({args.draw if scorers else args.layer}), "
            f"{args.steps} steps, seed {args.seed}, CPU, {args.threads} threads\n\n{head}\n|"
            + "---|" * (head.count("|") - 1) + "\n" + "\n".join(rows)
            + f"\n| photographs | {'- | ' if scorers else ''}{floor['slope']:.2f} (0) | {floor['kid']:.2f} (half vs half) | 0 | | | |\n\n"
            + "Units: " + ", ".join(names) + "\n\nContact sheet rows: " + ", ".join(recipes_done) + "\n")
    write_report(args.out, text, results, sheet)
    return text


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    return buffer.getvalue()


if __name__ == "__main__":
    from dvtoolbox.cli.exit_status import run_command

    sys.exit(run_command("recipes_eval.py", main))
