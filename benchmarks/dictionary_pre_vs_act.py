"""Pre-activation versus activation as a dictionary latent's objective (doc/dictionaries.md, "Measured").

The planted dictionary of tests/dictionaries/test_planted.py (8 random unit directions over a one-block ViT's 16
channels) with a TopK (k = 2) or a JumpReLU (threshold 0.5) activation; visualize's fft recipe, 48 steps, each latent
K in turn, objective ``planted#K`` or ``planted.act#K``. Prints per setting: how many optimisations moved the
objective, the rank of K's pre-activation rise among the 8 (ties against K) and that rise. Run from the repository
root:  PYTHONPATH=. python benchmarks/dictionary_pre_vs_act.py   (about 2 minutes on a 2-core CPU)
"""

import logging
import os
import tempfile

import torch

import tests.dictionaries.test_planted as planted
from dvtoolbox.dictionaries import Dictionary, LayerDictionary
from dvtoolbox.optvis.job import VisualizeJob, run_visualize

STEPS = 48


def objective_values(folder: str):
    with open(os.path.join(folder, "viz_info.txt"), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    return [float(line.rsplit(":", 1)[1]) for line in lines if line.startswith("objective at step")]


def main() -> None:
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    model_name, layer, d_in, read, _ = planted.LAYOUTS["tokens"]
    model = planted.model_of(model_name)
    base = planted.planted_dictionary(d_in)
    activations = {"topk2": dict(activation="topk", k=2),
                   "jumprelu0.5": dict(activation="jumprelu", threshold=torch.full((8,), 0.5))}
    for name, kwargs in activations.items():
        dictionary = Dictionary(W_enc=base.W_enc, b_enc=base.b_enc, source="planted", **kwargs)
        for form in ("planted#", "planted.act#"):
            ranks, rises, moved = [], [], 0
            for k in range(planted.N_LATENTS):
                planted.K = k
                out = tempfile.mkdtemp()
                run_visualize(VisualizeJob(objective=f"{form}{k}", model=model_name, weights=None,
                                           thresholds=(1, STEPS), device="cpu", output_dir=out,
                                           dictionaries={"planted": LayerDictionary(layer, dictionary)}))
                start, x = (planted.model_input(os.path.join(out, f"viz_step{t:02d}_0.png"), model)
                            for t in (1, STEPS))
                ranks.append(planted.rank_of_rise(model, layer, read, dictionary, x, start))
                rise = (planted.latent_means(model, layer, read, dictionary, x)
                        - planted.latent_means(model, layer, read, dictionary, start))
                rises.append(round(float(rise[k]), 3))
                values = objective_values(out)
                moved += abs(values[-1] - values[0]) > 1e-6
            print(f"{name} {form}K: moved {moved} of {planted.N_LATENTS}, ranks {ranks}, rise of K {rises}")


if __name__ == "__main__":
    main()
