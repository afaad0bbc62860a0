"""The one grammar of objectives (dvtoolbox/objectives/expression.py), read by create_objective, both command lines
and both engines: values on known activations, layers, names of every kind, and one-line errors."""

import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.objectives import Activations, create_objective, parse_objective
from dvtoolbox.objectives.expression import tokenize
from tests.conftest import make_tiny


def fake_acts():
    fc8 = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 30.0, 40.0, 50.0]])
    conv = torch.arange(2 * 4 * 8 * 8, dtype=torch.float32).reshape(2, 4, 8, 8)
    return Activations({"fc8": fc8, "conv1": conv})


@pytest.mark.parametrize("text, expected", [
    ("fc8:3", (4 + 40) / 2),
    ("fc8:3 + 0.5 * fc8:1", 22 + 0.5 * 11),
    ("fc8:3 + fc8:1*0.5", 22 + 0.5 * 11),
    ("-fc8:0 - fc8:1 / 4", -5.5 - 11 / 4),
    ("2 * (fc8:0 - fc8:1)", 2 * (5.5 - 11)),
    ("fc8:3@0 - fc8:3@1", 4 - 40),
    ("1e-1*fc8:4 + 3", 0.1 * 27.5 + 3),
    ("conv1:1:2:5", (64 + 2 * 8 + 5 + 256 + 64 + 2 * 8 + 5) / 2),  # neuron (y=2, x=5), mean over the batch
    ("conv1:1:2:5@1", 256 + 64 + 2 * 8 + 5),
])
def test_expressions_have_the_expected_values(text, expected):
    assert parse_objective(text)(fake_acts()).item() == pytest.approx(expected)


def test_expression_layers_and_model_check():
    assert parse_objective("fc8:3 - 0.1 * conv1:0").layers == frozenset({"fc8", "conv1"})
    assert [t[0] for t in tokenize("_blocks.10:97 + a/b.c:1@2")] == ["spec", "op", "spec"]
    with pytest.raises(UsageError, match="conv7"):
        create_objective("fc8:1 + conv7:2", model=make_tiny())


@pytest.mark.parametrize("text, message", [
    ("", "empty expression"),
    ("fc8:1 * fc8:2", "cannot be multiplied"),
    ("fc8:1 / fc8:2", "divide by a non-zero number"),
    ("fc8:1 / 0", "divide by a non-zero number"),
    ("3 + 4", "is a number"),
    ("fc8:1 +", "at the end"),
    ("(fc8:1", "expected '\\)'"),
    ("fc8:1)", "unexpected at"),
    ("fc8", "cannot read 'fc8'"),
    ("fc8:1 ; import os", "cannot read"),
    ("__import__('os')", "cannot read"),
])
def test_bad_expressions_are_one_line_usage_errors(text, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_objective(text)
    assert "\n" not in str(info.value)




def test_create_objective_takes_the_whole_grammar():
    """create_objective (FeatureViz, the library) reads what the command lines read: sums, factors, @batch."""
    text = "fc8:3 + 0.5 * fc8:1 - conv1:1:2:5@1"
    assert create_objective(text)(fake_acts()).item() == pytest.approx(parse_objective(text)(fake_acts()).item())
    assert create_objective(text, model=make_tiny()).layers == frozenset({"fc8", "conv1"})


def test_default_batch_applies_to_terms_without_their_own():
    acts = fake_acts()
    assert create_objective("fc8:3", batch=1)(acts).item() == 40
    assert create_objective("fc8:3 - fc8:3@0", batch=1)(acts).item() == 40 - 4


@pytest.mark.parametrize("text, layers", [
    ("2:5", {"2"}),                                    # an nn.Sequential's child
    ("features.3:1 + 0.5 * 0:2", {"features.3", "0"}),
    ("conv2@relu2:3:1:1@0", {"conv2@relu2"}),          # a Caffe in-place tap, then @batch
    ("inception_4c/output:5", {"inception_4c/output"}),
])
def test_layer_names_of_every_kind(text, layers):
    assert parse_objective(text).layers == frozenset(layers)


def test_numbers_stay_numbers():
    objective = parse_objective("0.5 * fc8:1 + 2")
    assert objective(fake_acts()).item() == pytest.approx(0.5 * 11 + 2)


def test_wrong_number_of_indices():
    with pytest.raises(UsageError, match="layer:channel, layer:channel:token or layer:channel:y:x"):
        parse_objective("fc8:1:2:3:4")
    assert str(parse_objective("blocks.3:7:0")) == "neuron('blocks.3', 7, token=0)"


@pytest.mark.parametrize("text, single", [("fc8:1", True), ("conv2@relu2:3:1:1", True), (" fc8:1 ", True),
                                          ("fc8:1@0", False), ("2 * fc8:1", False), ("fc8:1 + fc8:2", False),
                                          ("fc8", False), ("", False)])
def test_is_single_unit(text, single):
    from dvtoolbox.objectives.expression import is_single_unit

    assert is_single_unit(text) is single
