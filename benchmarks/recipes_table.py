"""One table (and one picture) from several ``recipes_eval.py`` runs: the same units, recipes from any run, seeds
pooled, the spread over seeds shown.

Per recipe and run (a seed): transfer per held-out model (top-1, top-5, mean target probability, from the run's
``results.json``), naturalness recomputed from its ``images_<recipe>.npy`` with ``naturalness.py`` (the slope and
the share of images inside the photographs' slope range, KID x 100 against the photographs, the mean colour's
distance to theirs ("cast") and the share of images whose mean colour is inside their range, and inside the wider
range of the 297 crops MACO's statistics come from), the objective's value
at rest, and the seconds per image the run measured. Several runs of a recipe (seeds) give "mean (lowest ..
highest)" cells; a recipe in one run only gives its value and "1" in the seeds column.

    python benchmarks/recipes_table.py --out OUT RUN_DIR [RUN_DIR ...] [--order lucid,maco,...] [--sheet-units 8]

Writes ``OUT/table.md``, ``OUT/table.json`` and ``OUT/recipes.png`` (rows: the recipes in ``--order``, seed 0 or
the lowest seed; columns: the first ``--sheet-units`` units, labelled); ``--brave`` to overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from dvtoolbox.errors import UsageError  # noqa: E402

SCORER_NAMES = {"efficientnet_lite1": "Lite1", "efficientnet_lite2": "Lite2"}


def read_runs(folders: Sequence[str]) -> List[dict]:
    """Each run's results.json with its folder; every run must push the same units."""
    runs = []
    for folder in folders:
        path = os.path.join(folder, "results.json")
        if not os.path.isfile(path):
            raise UsageError(f"{folder}: no results.json (a recipes_eval.py --out folder)")
        with open(path) as f:
            run = json.load(f)
        run["folder"] = folder
        runs.append(run)
    if len({tuple(r["units"]) for r in runs}) != 1:
        raise UsageError("the runs push different units: " + "; ".join(f"{r['folder']}: {r['units']}" for r in runs))
    return runs


def transfer_per_scorer(entry: dict) -> Dict[str, Dict[str, float]]:
    """scorer -> {top1, top5, p} for one run of one recipe."""
    from transfer_eval import summarise

    return {scorer: summarise(rows) for scorer, rows in entry.get("scores", {}).items()}


def measure_run(run: dict, recipe: str, measure) -> dict:
    """The figures of one recipe in one run."""
    entry = run["recipes"][recipe]
    images = np.load(os.path.join(run["folder"], f"images_{recipe}.npy"))
    return {"seed": run["args"]["seed"], "transfer": transfer_per_scorer(entry), "naturalness": measure(images),
            "value": float(np.mean(entry["unit_values"])), "seconds": entry["seconds_per_image"],
            "steps": run["args"]["steps"], "images": images}


def spread(values: Sequence[float], fmt: str) -> str:
    """"v" for one value, "mean (low .. high)" for several."""
    values = list(values)
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(np.mean(values), fmt)} ({format(min(values), fmt)} .. {format(max(values), fmt)})"


def table_rows(per_recipe: Dict[str, List[dict]], order: Sequence[str], scorers: Sequence[str]) -> List[str]:
    rows = []
    for recipe in order:
        runs = per_recipe[recipe]
        cells = [recipe, str(len(runs))]
        for scorer in scorers:
            cells.append(" / ".join(spread([100 * r["transfer"][scorer][k] for r in runs], ".0f") + ("%" if k != "p" else "")
                                    if k != "p" else spread([r["transfer"][scorer]["p"] for r in runs], ".3f")
                                    for k in ("top1", "top5", "p")))
        nat = [r["naturalness"] for r in runs]
        cells += [spread([n["slope"] for n in nat], ".2f"), spread([100 * n["slope_inside"] for n in nat], ".0f") + "%",
                  spread([n["kid"] for n in nat], ".1f"), spread([n["colour_cast"] for n in nat], ".3f"),
                  spread([100 * n["colour_inside"] for n in nat], ".0f") + "%",
                  spread([100 * n["colour_inside_wide"] for n in nat], ".0f") + "%",
                  spread([r["value"] for r in runs], ".1f"), spread([r["seconds"] for r in runs], ".0f")]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def sheet(per_recipe: Dict[str, List[dict]], order: Sequence[str], names: Sequence[str], k: int, cell: int):
    """(rows, labels): the lowest seed's first ``k`` images of each recipe as thumbnails."""
    from transfer_eval import thumbnails

    rows = [thumbnails(min(per_recipe[r], key=lambda x: x["seed"])["images"][:k], cell) for r in order]
    return rows, list(names[:k])


def save_sheet(path: str, rows, row_labels: Sequence[str], col_labels: Sequence[str], cell: int) -> None:
    """The thumbnails on a white page with the recipe names on the left and the unit names on top (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * cell / 80 + 1.2, n_rows * cell / 80 + 0.4),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            ax = axes[i][j]
            ax.imshow(np.clip(image, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=9)
    fig.tight_layout(pad=0.3)
    import io

    from dvtoolbox.io.atomic import write_bytes_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="recipes_eval.py --out folders (same units)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--order", default=None, help="comma-separated recipes (default: as found)")
    ap.add_argument("--sheet-units", type=int, default=8)
    ap.add_argument("--sheet-cell", type=int, default=112)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--brave", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from naturalness import Naturalness

    if os.path.exists(os.path.join(args.out, "table.md")) and not args.brave:
        raise UsageError(f"{args.out} already holds a table; use --brave to overwrite")
    runs = read_runs(args.runs)
    found: List[str] = []
    for run in runs:
        found += [r for r in run["recipes"] if r not in found]
    order = [r for r in args.order.split(",") if r] if args.order else found
    missing = [r for r in order if r not in found]
    if missing:
        raise UsageError(f"recipes {missing} are in none of the runs; found: {', '.join(found)}")
    measure = Naturalness()
    floor = measure.floor()
    per_recipe: Dict[str, List[dict]] = defaultdict(list)
    for run in runs:
        for recipe in run["recipes"]:
            if recipe in order:
                per_recipe[recipe].append(measure_run(run, recipe, measure))
    scorers = sorted({s for rs in per_recipe.values() for r in rs for s in r["transfer"]})
    head = ["recipe", "seeds"] + [f"{SCORER_NAMES.get(s, s)} top-1 / top-5 / p" for s in scorers]
    head += ["slope", "slope in photos' range", "KID x100", "colour cast", "colour in photos' range",
             "colour in the 297 crops' range", "value at rest", "s/image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + table_rows(per_recipe, order, scorers)
    lines.append(f"| photographs | | {'| ' * len(scorers)}{floor['slope']:.2f} ({floor['slope_range'][0]:.2f} .. "
                 f"{floor['slope_range'][1]:.2f}) | 100% | {floor['kid']:.1f} (half vs half) | 0 | 100% | | | |")
    names = runs[0]["names"]
    text = (f"# Recipes: {len(names)} units, {len(runs)} runs\n\nUnits: {', '.join(names)}\n\n"
            + "\n".join(lines) + f"\n\nPhotographs' mean colour (RGB) {np.round(floor['colour'], 3).tolist()}, range {np.round(floor['colour_range'], 3).tolist()}\n"
            + "\nRuns: " + ", ".join(f"{r['folder']} (seed {r['args']['seed']})" for r in runs) + "\n")
    os.makedirs(args.out, exist_ok=True)
    from dvtoolbox.io.atomic import write_text_atomic

    summary = {recipe: [{k: v for k, v in r.items() if k != "images"} for r in rs] for recipe, rs in per_recipe.items()}
    write_text_atomic(os.path.join(args.out, "table.json"), json.dumps({"floor": floor, "recipes": summary,
                                                                         "units": names}, indent=1))
    write_text_atomic(os.path.join(args.out, "table.md"), text)
    rows, labels = sheet(per_recipe, order, names, args.sheet_units, args.sheet_cell)
    save_sheet(os.path.join(args.out, "recipes.png"), rows, order, labels, args.sheet_cell)
    print(text)
    return 0


if __name__ == "__main__":
    from dvtoolbox.cli.exit_status import run_command

    sys.exit(run_command("recipes_table.py", main))
