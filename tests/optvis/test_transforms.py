"""Transforms: kernels against numpy / scipy references and exact known cases; sampling from the generator."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from dvtoolbox.optvis import transforms as T
from dvtoolbox.optvis.param.images import image_sample

pytestmark = pytest.mark.filterwarnings("error")


def rand(*shape, seed=0):
    return torch.from_numpy(np.random.RandomState(seed).rand(*shape).astype(np.float32))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -------------------------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("mode,np_mode", [("constant", "constant"), ("reflect", "reflect"), ("replicate", "edge")])
def test_pad_matches_numpy(mode, np_mode):
    x = rand(2, 3, 5, 6)
    extra = {"constant_values": 0.5} if np_mode == "constant" else {}
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3), (3, 3)), mode=np_mode, **extra)
    assert np.array_equal(T.pad_image(x, 3, mode, value=0.5).numpy(), expected)
    assert np.array_equal(T.pad(3, mode.upper(), 0.5)(x).numpy(), expected)


def test_crop_and_jitter_are_crops():
    x = rand(1, 2, 9, 7)
    assert np.array_equal(T.crop(x, 2, 1, 5, 4).numpy(), x.numpy()[..., 2:7, 1:5])
    jit = T.jitter(3)
    g = gen(4)
    state = g.get_state()
    params = jit.get_params(x, g)
    g.set_state(state)
    out = jit(x, g)
    assert out.shape == (1, 2, 6, 4)
    assert np.array_equal(out.numpy(), x.numpy()[..., params["top"]:params["top"] + 6,
                                                  params["left"]:params["left"] + 4])


def test_jitter_offsets_cover_0_to_d_uniformly():
    jit, g, x = T.jitter(2), gen(1), rand(1, 1, 5, 5)
    seen = {tuple(jit.get_params(x, g).values()) for _ in range(200)}
    assert seen == {(top, left) for top in range(3) for left in range(3)}


@pytest.mark.parametrize("scale,size", [(0.9, (18, 13)), (1.1, (22, 16)), (0.5, (10, 7)), (1.02, (20, 15))])
def test_scale_matches_scipy_zoom(scale, size):
    x = rand(1, 2, 20, 15)
    out = T.scale_image(x, scale)
    assert tuple(out.shape[-2:]) == size == T.scaled_size((20, 15), scale)
    zoom = (size[0] / 20, size[1] / 15)
    for c in range(2):
        expected = ndi.zoom(x[0, c].numpy().astype(np.float64), zoom, order=1, mode="nearest", grid_mode=True)
        assert expected.shape == size
        assert out[0, c].numpy() == pytest.approx(expected, abs=1e-5)


def test_scale_one_is_identity():
    x = rand(2, 3, 11, 9)
    out = T.scale_image(x, 1.0)
    assert torch.equal(out, x) and out is not x


def test_rotate_90_and_180_are_exact_turns():
    sq = rand(2, 3, 6, 6)
    assert T.rotate_image(sq, 90).numpy() == pytest.approx(np.rot90(sq.numpy(), 1, axes=(2, 3)), abs=1e-6)
    assert T.rotate_image(sq, -90).numpy() == pytest.approx(np.rot90(sq.numpy(), -1, axes=(2, 3)), abs=1e-6)
    wide = rand(1, 2, 5, 8)
    assert T.rotate_image(wide, 180).numpy() == pytest.approx(np.rot90(wide.numpy(), 2, axes=(2, 3)), abs=1e-6)
    assert T.rotate_image(wide, 0).numpy() == pytest.approx(wide.numpy(), abs=1e-6)


def scipy_rotate(img, degrees):
    """Counter-clockwise rotation about the centre, bilinear, zeros outside (input coords = M @ out + offset)."""
    rad = np.deg2rad(degrees)
    c, s = np.cos(rad), np.sin(rad)
    matrix = np.array([[c, s], [-s, c]])  # (row, col) order
    centre = (np.array(img.shape) - 1) / 2.0
    return ndi.affine_transform(img, matrix, offset=centre - matrix @ centre, order=1, mode="grid-constant", cval=0)


@pytest.mark.parametrize("shape,degrees", [((9, 9), 17.0), ((7, 12), 30.0), ((12, 7), -40.0), ((8, 8), 45.0)])
def test_rotate_matches_scipy_affine_transform(shape, degrees):
    x = rand(1, 2, *shape)
    out = T.rotate_image(x, degrees)
    for c in range(2):
        expected = scipy_rotate(x[0, c].numpy().astype(np.float64), degrees)
        assert out[0, c].numpy() == pytest.approx(expected, abs=1e-5)


def test_rotation_direction_is_counter_clockwise():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 4] = 1.0  # top right
    assert T.rotate_image(x, 90)[0, 0, 0, 0] == pytest.approx(1.0)  # -> top left


def test_composite_alpha():
    rgba = rand(1, 4, 3, 3)
    bg = rand(1, 3, 3, 3, seed=1)
    a = rgba[:, 3:4].numpy()
    expected = rgba[:, :3].numpy() * a + bg.numpy() * (1 - a)
    assert T.composite_alpha(rgba, bg).numpy() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("transform", [
    T.pad(2, "constant"), T.pad(2, "reflect"), T.jitter(2), T.random_scale([0.8, 1.3]), T.random_rotate([15, -20]),
    T.collapse_alpha_random(), T.compose(T.standard_transforms())])
def test_transforms_leave_the_input_alone_and_pass_gradients(transform):
    x = rand(2, 4 if isinstance(transform, T.CollapseAlphaRandom) else 3, 30, 30)
    before = x.clone()
    x.requires_grad_(True)
    out = transform(x, gen(2))
    out.sum().backward()
    assert torch.equal(x.detach(), before)
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kernel", [
    lambda t: T.rotate_image(t, 23.0), lambda t: T.scale_image(t, 0.7), lambda t: T.pad_image(t, 2, "reflect"),
    lambda t: T.crop(t, 1, 2, 3, 3)])
def test_kernels_gradcheck(kernel):
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(kernel, (x,))


# -------------------------------------------------------------------------------------------- sampling


def test_same_generator_state_same_output_and_global_rng_untouched():
    x = rand(1, 3, 40, 40)
    chain = T.compose(T.standard_transforms())
    global_state = torch.get_rng_state()
    outs = [chain(x, gen(7)) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(torch.get_rng_state(), global_state)
    shapes = {tuple(chain(x, gen(s)).shape) for s in range(12)}
    assert len(shapes) > 1  # the scale differs between seeds


def test_standard_transforms_sizes_and_choices():
    chain = T.standard_transforms()
    assert chain is not T.standard_transforms()
    assert [repr(t).split("(")[0] for t in chain] == ["pad", "jitter", "random_scale", "random_rotate", "jitter"]
    assert chain[2].scales == pytest.approx([0.9, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.1])
    assert chain[3].angles == list(range(-10, 11)) + [0] * 5
    out = T.compose(chain)(rand(1, 3, 224, 224), gen(0))
    scale = chain[2].scales
    assert out.shape[-1] in {T.scaled_size((240, 240), s)[0] - 4 for s in scale}


def test_random_rotate_radians():
    rot = T.random_rotate([np.pi / 2], units="radians")
    assert rot.get_params(rand(1, 1, 4, 4), gen())["angle_degrees"] == pytest.approx(90.0)


def test_collapse_alpha_random_uses_the_generator_background():
    rgba = rand(1, 4, 8, 8)
    rgba[:, 3] = 0.0
    out = T.collapse_alpha_random(sd=0.5)(rgba, gen(3))
    assert torch.equal(out, image_sample((1, 3, 8, 8), sd=0.5, generator=gen(3)))
    rgba[:, 3] = 1.0
    assert torch.equal(T.collapse_alpha_random()(rgba, gen(3)), rgba[:, :3])
    rgb = rand(1, 3, 8, 8)
    assert T.collapse_alpha_random()(rgb, gen(3)) is rgb


def test_bad_configurations():
    with pytest.raises(ValueError, match="pad mode must be one of"):
        T.pad(2, "wrap")
    with pytest.raises(ValueError, match="jitter d must be >= 1, got 0"):
        T.jitter(0)
    with pytest.raises(ValueError, match="scales must be > 0"):
        T.random_scale([1.0, -1.0])
    with pytest.raises(ValueError, match="units must be one of"):
        T.random_rotate([1], units="turns")
    with pytest.raises(ValueError, match="needs an image larger than 8 pixels, got 8x8"):
        T.jitter(8)(rand(1, 3, 8, 8), gen())
