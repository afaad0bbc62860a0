"""FeatureViz.visualize(views=V): V independently transformed copies per step, one forward pass, the objective the
mean over views of its value on each view's slice (dvtoolbox/optvis/render.py's module docstring)."""

import numpy as np
import pytest
import torch

from dvtoolbox.errors import UsageError
from dvtoolbox.models.capture import LayerCapture
from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.optvis import FeatureViz, get_image
from dvtoolbox import objectives as obj
from dvtoolbox.models.pixel_space import to_model_input
from dvtoolbox.objectives import Activations, Objective
from dvtoolbox.optvis.param.rng import param_defaults
from dvtoolbox.optvis.transforms import crop_or_pad
from dvtoolbox.optvis.render import split_views
from dvtoolbox.optvis.transforms import compose, jitter, standard_transforms
from tests.conftest import TINY_SIZE, make_tiny

pytestmark = pytest.mark.filterwarnings("error")


def reference_loop(model, objective, param_f, steps, seed, views, transforms):
    """The documented rule written out: per step, V transform draws in order from the one generator, ONE FORWARD
    PASS PER VIEW (not one concatenated batch), the objective on each view's activations, their mean; Adam 0.05.
    Returns (final images (N, H, W, 3), history)."""
    gen = torch.Generator().manual_seed(seed)
    with param_defaults(generator=gen, device="cpu"):
        params, image_f = param_f()
    params = list(params)
    opt = torch.optim.Adam(params, lr=0.05)
    chain = compose(transforms)
    history = []
    with LayerCapture(model, sorted(objective.layers - {"input"})) as cap:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            image = image_f()
            xs = []
            for _v in range(views):
                t = chain(image, gen)
                if tuple(t.shape[-2:]) != TINY_SIZE:
                    t = crop_or_pad(t, TINY_SIZE)   # visualize's default fit, tested in test_transforms
                xs.append(to_model_input(t, model.input_contract))
            values = []
            for x in xs:
                model(x)
                values.append(objective(Activations({**cap.outputs, "input": image})))
            value = values[0] if views == 1 else torch.stack(values).mean()
            torch.autograd.backward(-value, inputs=params)
            opt.step()
            history.append(value.item())
    with torch.no_grad():
        return image_f().permute(0, 2, 3, 1).numpy(), history


OBJECTIVES = {
    "channel": lambda: obj.channel("conv1", 1),
    "batch_pos_neg": lambda: obj.channel("conv1", 0, batch=0) - obj.channel("conv1", 0, batch=1),
    "diversity": lambda: obj.class_logit("fc8", 2) - 0.5 * obj.diversity("relu1"),
    "interpolate_tv": lambda: obj.channel_interpolate("conv1", 0, "fc8", 3) - 0.01 * obj.total_variation(),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_views_1_is_the_single_view_loop_bit_for_bit(name):
    model, objective = make_tiny(), OBJECTIVES[name]()
    param_f = lambda: get_image(8, batch=2)  # noqa: E731
    ref, ref_history = reference_loop(model, objective, param_f, 6, 4, 1, standard_transforms())
    fv = FeatureViz(model, objective)
    (image,) = fv.visualize(param_f, thresholds=[6], seed=4, views=1)
    np.testing.assert_array_equal(image, ref)
    assert fv.history == ref_history
    (default,) = fv.visualize(param_f, thresholds=[6], seed=4)  # views defaults to 1
    np.testing.assert_array_equal(default, ref)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_views_3_is_the_mean_over_separate_forward_passes(name):
    """One concatenated forward pass = V separate ones up to float rounding; batch=i and the batch-coupling
    objectives act within each view."""
    model, objective = make_tiny(), OBJECTIVES[name]()
    param_f = lambda: get_image(8, batch=2)  # noqa: E731
    ref, ref_history = reference_loop(model, objective, param_f, 6, 4, 3, standard_transforms())
    fv = FeatureViz(model, objective)
    (image,) = fv.visualize(param_f, thresholds=[6], seed=4, views=3)
    np.testing.assert_allclose(image, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(fv.history, ref_history, rtol=1e-5, atol=1e-6)
    single = FeatureViz(model, objective).visualize(param_f, thresholds=[6], seed=4)[0]
    assert np.abs(single - image).max() > 1e-3  # other draws: another image


def test_identical_views_equal_one_view():
    """Without transforms the V copies are identical: the mean of V equal values is that value, and the gradient
    (1/V from each copy, summed) is the single view's (bit for bit on this project's machines)."""
    fv = FeatureViz(make_tiny(), obj.channel("conv1", 2) - 0.3 * obj.diversity("relu1"))
    param_f = lambda: get_image(8, batch=2)  # noqa: E731
    one = fv.visualize(param_f, thresholds=[3, 8], seed=1, transforms=[], views=1)
    history_one = fv.history
    for views in (2, 4):
        many = fv.visualize(param_f, thresholds=[3, 8], seed=1, transforms=[], views=views)
        # equal up to float rounding: a maths library may order a batch of 2 and of 8 differently
        for a, b in zip(one, many):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
        np.testing.assert_allclose(fv.history, history_one, rtol=1e-6)


class RecordingJitter:
    """jitter(d), recording each call's drawn offsets."""

    def __init__(self, d):
        self.inner, self.calls = jitter(d), []

    def __call__(self, x, generator):
        params = self.inner.get_params(x, generator)
        self.calls.append((params["top"], params["left"]))
        return self.inner.kernel(x, **params)


def test_each_view_draws_its_own_parameters_from_the_generator_in_order():
    rec = RecordingJitter(3)
    fv = FeatureViz(make_tiny(), "conv1:1")
    param_f = lambda: get_image(8, batch=2)  # noqa: E731
    fv.visualize(param_f, thresholds=[2], seed=9, transforms=[rec], views=3)
    gen = torch.Generator().manual_seed(9)
    with param_defaults(generator=gen, device="cpu"):
        param_f()  # the initial image's draws come first
    expected = [(int(torch.randint(4, (1,), generator=gen)), int(torch.randint(4, (1,), generator=gen)))
                for _ in range(2 * 3)]  # step 1 views 0, 1, 2, then step 2 views 0, 1, 2
    assert rec.calls == expected
    assert len(set(expected)) > 1


def test_the_model_sees_view_v_of_image_m_at_row_v_times_m_plus_m():
    seen = []

    def record(acts):
        seen.append({k: v.detach().clone() for k, v in acts.items()})
        return acts["conv1"].mean()

    rec = RecordingJitter(2)
    fv = FeatureViz(make_tiny(), Objective(record, "record", layers=["conv1"]))
    fv.visualize(lambda: get_image(8, batch=2), thresholds=[1], seed=3, transforms=[rec], views=3, lr=0.0)
    assert len(seen) == 3 and all(s["conv1"].shape == (2, 4, 8, 8) for s in seen)
    gen = torch.Generator().manual_seed(3)
    with param_defaults(generator=gen, device="cpu"):
        _, image_f = get_image(8, batch=2)
    image = image_f().detach()
    model = make_tiny()
    for v, (top, left) in enumerate(rec.calls):
        x = torch.from_numpy(np.pad(image[..., top:top + 6, left:left + 6].numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)),
                                    constant_values=0.5))                   # the 6x6 view padded grey to 8x8
        expected = model.conv1(to_model_input(x, model.input_contract) / 64.0).detach()
        np.testing.assert_allclose(seen[v]["conv1"].numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(seen[v]["input"].numpy(), image.numpy())  # untransformed, every view


def test_same_seed_same_bits_other_seed_other_image_global_rng_untouched():
    fv = FeatureViz(make_tiny(), obj.channel("conv1", 1) - 0.1 * obj.diversity("relu1"))
    state = torch.get_rng_state()
    run = lambda seed: fv.visualize(lambda: get_image(8, batch=2, alpha=True), thresholds=(2, 4), seed=seed,  # noqa
                                    views=3)
    a, hist_a = run(0), fv.history
    b, hist_b = run(0), fv.history
    c = run(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and hist_a == hist_b
    assert a[-1].shape == (2, 8, 8, 4)
    assert not np.array_equal(a[-1], c[-1])
    assert torch.equal(torch.get_rng_state(), state)


def test_pre_transform_batch_is_split_per_view():
    """A pre_transform that doubles the batch (M = 2N): each view's slice has M rows."""
    rows = []

    def count(acts):
        rows.append(acts["fc8"].shape[0])
        return acts["fc8"][:, 0].mean()

    fv = FeatureViz(make_tiny(), Objective(count, "count", layers=["fc8"]))
    fv.visualize(lambda: get_image(8, batch=1), thresholds=[1], transforms=[], views=2,
                 pre_transform=lambda image, gen: torch.cat([image, 1 - image]))
    assert rows == [2, 2]


def test_split_views_slices_and_its_errors():
    t = torch.arange(6 * 2, dtype=torch.float32).view(6, 2)
    parts = split_views({"a": t, "b": t * 2}, 3, 2)
    assert [p["a"].tolist() for p in parts] == [[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[8, 9], [10, 11]]]
    assert parts[2]["b"].tolist() == [[16, 18], [20, 22]]
    assert split_views({"a": t}, 1, 6)[0]["a"] is t
    with pytest.raises(UsageError, match=r"views=2: layer 'a' must output 2 x 2 rows, batch first, .* got \(6, 2\)"):
        split_views({"a": t}, 2, 2)
    assert split_views({"a": t, "t": (t,)}, 2, 3, strict=False)[1].keys() == {"a"}
    with pytest.raises(UsageError, match="got tuple"):
        split_views({"t": (t,)}, 2, 3)


def test_views_errors():
    fv = FeatureViz(make_tiny(), "conv1:1")
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(UsageError, match="views must be an integer >= 1"):
            fv.visualize(thresholds=[1], views=bad)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.Flatten(0))  # batch folded into rows
    contract = InputContract(size=(4, 4), channel_order="RGB", mean=(0.0, 0.0, 0.0))
    fv = FeatureViz(model, Objective(lambda acts: acts["1"].sum(), "flat", layers=["1"]), contract=contract)
    fv.visualize(lambda: get_image(4), thresholds=[1], transforms=[])  # one view: nothing to split
    with pytest.raises(UsageError, match="views=2: layer '1' must output 2 x 1 rows"):
        fv.visualize(lambda: get_image(4), thresholds=[1], transforms=[], views=2)


# -------------------------------------------------------------------------------------------- presets, CLI


def test_strong_transforms_preset():
    from dvtoolbox.optvis.transforms import TRANSFORM_PRESETS, strong_transforms

    chain = strong_transforms()
    assert [repr(t) for t in chain[:2]] == ["pad(16, mode='constant', value=0.5)", "jitter(16)"]
    np.testing.assert_allclose(chain[2].scales, np.linspace(0.75, 1.25, 11), rtol=0, atol=1e-12)
    assert chain[3].angles == list(range(-20, 21)) and chain[3].units == "degrees"
    assert repr(chain[4]) == "jitter(8)" and strong_transforms() is not strong_transforms()
    assert sorted(TRANSFORM_PRESETS) == ["maco", "none", "standard", "strong"] and TRANSFORM_PRESETS["none"]() == []
    # 224 px: 224 + 32 - 16 = 240, scaled 0.75 .. 1.25 -> 180 .. 300, minus 8
    x = torch.zeros(1, 3, 224, 224)
    sizes = {tuple(compose(strong_transforms())(x, torch.Generator().manual_seed(s)).shape[-2:]) for s in range(40)}
    assert sizes <= {(int(np.floor(240 * k + 1e-6)) - 8,) * 2 for k in chain[2].scales} and len(sizes) > 3


def run_cli(tmp_path, *flags):
    from dvtoolbox.cli.visualize import main

    argv = ["--model", "tiny_test", "--objective", "fc8:2", "--steps", "3", "--output-dir", str(tmp_path / "out"),
            "--device", "cpu", "--recipe", "lucid", *flags]
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_cli_views_and_strong_transforms_write_the_library_image(tmp_path):
    from dvtoolbox.io.images import load_image_rgb, to_uint8
    from dvtoolbox.optvis.transforms import strong_transforms

    assert run_cli(tmp_path, "--seed", "4", "--views", "3", "--transforms", "strong", "--batch", "2") == 0
    fv = FeatureViz(make_tiny(), "fc8:2")
    (images,) = fv.visualize(lambda: get_image(w=8, h=8, batch=2), thresholds=[3], lr=0.05, seed=4, views=3,
                             transforms=strong_transforms())
    for n in range(2):
        png = load_image_rgb(str(tmp_path / "out" / f"viz_step3_{n}.png"))
        np.testing.assert_array_equal(png, to_uint8(images[n]))
    config = (tmp_path / "out" / "viz_config.yaml").read_text()
    assert "views: 3" in config and "transforms: strong" in config


@pytest.mark.parametrize("flags, message", [(("--views", "0"), r"--views must be an integer in \[1, 4096\], got 0"),
                                            (("--views", "2", "--alpha"), r"--views must be 1 with --alpha, got 2")])
def test_cli_views_errors(tmp_path, capsys, flags, message):
    import re

    assert run_cli(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_views_of_different_sizes_need_the_resize():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))  # takes any size
    contract = InputContract(size=(8, 8), channel_order="RGB", mean=(0.0, 0.0, 0.0))
    fv = FeatureViz(model, "0:1", contract=contract, resize_to_contract=False)
    fv.visualize(lambda: get_image(8), thresholds=[1], transforms=[jitter(2)], views=2)  # same size: fine
    with pytest.raises(UsageError, match=r"views 3: the transformed views have different sizes \[\(.*\(resize_to_"
                                         r"contract=True\)") as info:
        fv.visualize(lambda: get_image(8), thresholds=[2], views=3, seed=1)  # random scale: sizes differ
    flags = {"resize_to_contract=True": "without --no-resize"}
    assert info.value.message_for(flags).startswith("--views 3: ")
    assert info.value.message_for(flags).endswith("(without --no-resize)")
