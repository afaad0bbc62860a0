"""transfer_eval.py's parts that decide its figures: the class draws, the class objective, the summary, and that its
``class`` recipe is the library's."""

import os
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import transfer_eval  # noqa: E402
from dvtoolbox.errors import UsageError  # noqa: E402
from dvtoolbox.optvis.recipes import RECIPES  # noqa: E402


def test_draws_are_seeded_sorted_and_disjoint():
    ev, tune = transfer_eval.draw_classes(8, "eval"), transfer_eval.draw_classes(16, "tune")
    assert ev == [5, 108, 112, 255, 518, 689, 807, 931]  # the classes doc/models.md reports
    assert ev == sorted(ev) and tune == sorted(tune) and len(set(tune)) == 16
    draws = [set(transfer_eval.draw_classes(250, d)) for d in transfer_eval.DRAWS]
    assert len(set().union(*draws)) == 1000       # four disjoint quarters of the permutation
    # issue 22's fresh draw, as doc/optvis.md reports it
    assert transfer_eval.draw_classes(16, "fresh") == [40, 41, 65, 103, 391, 530, 538, 583, 679, 697, 722, 780,
                                                       801, 856, 976, 980]
    with pytest.raises(UsageError, match="--classes must be in 1..250"):
        transfer_eval.draw_classes(251, "eval")


@pytest.mark.parametrize("kind", ["logit", "logprob"])
def test_class_objective_sums_each_images_own_class(kind):
    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(1))
    classes = [7, 500, 999]
    value = transfer_eval.class_objective(classes, kind)({"fc8": logits})
    table = torch.log_softmax(logits.double(), 1) if kind == "logprob" else logits.double()
    assert float(value) == pytest.approx(sum(float(table[i, c]) for i, c in enumerate(classes)), rel=1e-5)


def test_summary_counts_ranks_and_averages_probabilities():
    rows = [{"rank": 0, "p": 0.9}, {"rank": 3, "p": 0.2}, {"rank": 5, "p": 0.1}, {"rank": 0, "p": 0.6}]
    assert transfer_eval.summarise(rows) == pytest.approx({"top1": 0.5, "top5": 0.75, "p": np.mean([0.9, 0.2, 0.1,
                                                                                                     0.6])})


def test_class_recipe_is_the_librarys():
    mine, lib = transfer_eval.RECIPES["class"], RECIPES["class"]
    assert (mine.views, mine.transforms, mine.decay_power, mine.lr, mine.steps_factor) == \
        (lib.views, lib.transforms, lib.decay_power, lib.lr, 1.0)
