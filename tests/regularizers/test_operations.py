"""The post-step regularizers against independent float64 numpy/scipy restatements of the original's phase 6.

The references below restate ``optimize/gradient_optimizer.py`` (deep-visualization-toolbox) line by line on
one image (1, 3, H, W) float64. On float32 batches masks must agree exactly and values to float32 rounding; on
float64 batches (the loop's image state) the torch code gives numpy's and scipy's bits.
"""

from types import SimpleNamespace

import platform

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from dvtoolbox.models.pixel_space import crop_to_valid_range
from dvtoolbox.regularizers import operations as R

pytestmark = pytest.mark.filterwarnings("error")


# ------------------------------------------------------------------------------------------ references (float64)


def ref_clip_small_val(xx, pct):
    small_entries = np.abs(xx) < np.percentile(np.abs(xx), pct)
    return xx - xx * small_entries, small_entries


def ref_clip_small_norm(xx, pct):
    pxnorms = np.linalg.norm(xx, axis=1)
    smallpx = pxnorms < np.percentile(pxnorms, pct)
    smallpx3 = np.tile(smallpx[:, np.newaxis, :, :], (1, 3, 1, 1))
    return xx - xx * smallpx3, smallpx3


def ref_clip_px_benefit(xx, grad, pct):
    px_benefit = (grad * -xx).sum(1)
    smallben = px_benefit < np.percentile(px_benefit, pct)
    smallben3 = np.tile(smallben[:, np.newaxis, :, :], (1, 3, 1, 1))
    return xx - xx * smallben3, smallben3


def ref_clip_px_abs_benefit(xx, grad, pct):
    px_benefit = (grad * -xx).sum(1)
    smallaben = np.abs(px_benefit) < np.percentile(np.abs(px_benefit), pct)
    smallaben3 = np.tile(smallaben[:, np.newaxis, :, :], (1, 3, 1, 1))
    return xx - xx * smallaben3, smallaben3


def ref_phase6(xx, grad, ii, p):
    """The original's block after ``xx += lr * grad``, for one image (1, 3, H, W) float64."""
    xx = xx.copy()
    xx *= 1 - p.decay
    if p.blur_every != 0 and p.blur_radius > 0:
        if ii % p.blur_every == 0:
            for channel in range(3):
                xx[0, channel] = gaussian_filter(xx[0, channel], p.blur_radius)
    if p.small_val_percentile > 0:
        xx, _ = ref_clip_small_val(xx, p.small_val_percentile)
    if p.small_norm_percentile > 0:
        xx, _ = ref_clip_small_norm(xx, p.small_norm_percentile)
    if p.px_benefit_percentile > 0:
        xx, _ = ref_clip_px_benefit(xx, grad, p.px_benefit_percentile)
    if p.px_abs_benefit_percentile > 0:
        xx, _ = ref_clip_px_abs_benefit(xx, grad, p.px_abs_benefit_percentile)
    return xx


def ref_batch(fn, x, *args):
    """Apply a one-image reference to each element of a float32 batch, in float64."""
    as64 = [a.astype(np.float64) for a in (x,) + args]
    return [fn(*[a[n : n + 1] for a in as64]) for n in range(len(x))]


def make_params(**kw):
    base = dict(decay=0.0, blur_radius=0.0, blur_every=0, small_val_percentile=0, small_norm_percentile=0,
                px_benefit_percentile=0, px_abs_benefit_percentile=0)
    base.update(kw)
    return SimpleNamespace(**base)


def assert_close_to_ref(out, ref):
    """float32 vs float64: rtol 1e-5 plus an atol of 1e-6 of the array's largest magnitude."""
    scale = max(np.abs(ref).max(), 1e-30)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6 * scale)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def batch(rng, shape=(2, 3, 36, 30), scale=40.0):
    return (rng.normal(0, scale, shape)).astype(np.float32)


# ------------------------------------------------------------------------------------------ crop


def test_crop_to_valid_range_matches_numpy(rng):
    x = batch(rng, scale=150.0)
    mean = rng.uniform(90, 130, x.shape[1:]).astype(np.float32)
    out = crop_to_valid_range(torch.from_numpy(x), torch.from_numpy(mean)).numpy()
    ref = np.minimum(255.0, np.maximum(0.0, x.astype(np.float64) + mean)) - mean
    assert_close_to_ref(out, ref)
    assert (out + mean >= -1e-4).all() and (out + mean <= 255 + 1e-4).all()
    assert np.any(x + mean > 255) and np.any(x + mean < 0)  # the test data do get clipped


# ------------------------------------------------------------------------------------------ blur


@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.5, 1.0, 2.0, 4.0, 7.0])
def test_gaussian_kernel1d_is_scipys_impulse_response(sigma):
    kernel = R.gaussian_kernel1d(sigma)
    radius = int(4.0 * sigma + 0.5)
    assert kernel.shape == (2 * radius + 1,) and kernel.dtype == np.float64
    delta = np.zeros(4 * radius + 1)
    delta[2 * radius] = 1.0
    impulse = gaussian_filter1d(delta, sigma)[radius : 3 * radius + 1]
    np.testing.assert_array_equal(kernel, impulse)  # the same float64 weights
    np.testing.assert_array_equal(kernel, kernel[::-1])
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("size", range(1, 7))
@pytest.mark.parametrize("radius", [0, 1, 2, 5, 6, 7, 13, 16])
def test_reflect_indices_match_numpy_symmetric_pad(size, radius):
    ref = np.pad(np.arange(size), radius, mode="symmetric")
    np.testing.assert_array_equal(R.reflect_indices(size, radius).numpy(), ref)


def blur_reference(x, sigma):
    x64 = x.astype(np.float64)
    return np.stack([[gaussian_filter(x64[n, c], sigma) for c in range(x.shape[1])] for n in range(len(x))])


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.0, 7.0])
def test_gaussian_blur_matches_scipy(rng, sigma):
    x = batch(rng, shape=(2, 3, 40, 37))
    out = R.gaussian_blur(torch.from_numpy(x), sigma).numpy()
    assert out.dtype == np.float32
    assert_close_to_ref(out, blur_reference(x, sigma))


# scipy's C loop compiles without fused multiply-add on x86-64 wheels; elsewhere (arm64 wheels) it may fuse
BITS_LIKE_SCIPY = platform.machine().lower() in ("x86_64", "amd64")


def assert_float64_like_scipy(out, ref):
    if BITS_LIKE_SCIPY:
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-14, atol=1e-14 * np.abs(ref).max())


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.0, 7.0])
def test_gaussian_blur_float64_gives_scipys_bits(rng, sigma):
    x = rng.normal(0, 40.0, (2, 3, 40, 37))
    out = R.gaussian_blur(torch.from_numpy(x), sigma).numpy()
    assert out.dtype == np.float64
    assert_float64_like_scipy(out, blur_reference(x, sigma))


@pytest.mark.parametrize("shape, sigma", [((1, 3, 5, 6), 4.0), ((1, 2, 1, 9), 1.0), ((1, 1, 3, 1), 2.5)])
def test_gaussian_blur_radius_beyond_image_reflects_repeatedly(rng, shape, sigma):
    x = batch(rng, shape=shape)
    assert int(4 * sigma + 0.5) > min(shape[2:])
    assert_close_to_ref(R.gaussian_blur(torch.from_numpy(x), sigma).numpy(), blur_reference(x, sigma))


def test_gaussian_blur_zero_sigma_copies_and_input_untouched(rng):
    x = torch.from_numpy(batch(rng))
    before = x.clone()
    same = R.gaussian_blur(x, 0.0)
    assert torch.equal(same, x) and same.data_ptr() != x.data_ptr()
    R.gaussian_blur(x, 1.0)
    assert torch.equal(x, before)


# ------------------------------------------------------------------------------------------ percentiles


def rows_with_ties(rng, k):
    """Three rows of k values: continuous, heavily tied (a few distinct values), constant."""
    return np.stack([rng.normal(size=k), np.round(rng.normal(size=k) * 2) / 2, np.full(k, 3.25)]).astype(np.float32)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 100, 1001, 30_000])
@pytest.mark.parametrize("q", [0, 0.5, 1, 20, 33.3, 50, 73.3, 90, 99.9, 100])
def test_percentile_per_item_matches_numpy(rng, k, q):
    values = rows_with_ties(rng, k)
    ref = np.array([np.percentile(row.astype(np.float64), q) for row in values])
    ours = R.percentile_per_item(torch.from_numpy(values), q)
    assert ours.shape == (3,) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-7, atol=0)
    mask = R.below_percentile(torch.from_numpy(values), q).numpy()
    np.testing.assert_array_equal(mask, values.astype(np.float64) < ref[:, None])


def test_percentile_strict_threshold_on_ties():
    values = torch.tensor([[1.0, 1.0, 1.0, 2.0], [4.0, 1.0, 3.0, 2.0]])
    assert R.percentile_per_item(values, 50).tolist() == [1.0, 2.5]
    assert R.below_percentile(values, 50).tolist() == [[False] * 4, [False, True, False, True]]


def test_percentile_beyond_torch_quantile_limit():
    k = 2**24 + 5  # torch.quantile refuses inputs this large
    values = torch.from_numpy(np.random.default_rng(5).standard_normal(k, dtype=np.float32)).reshape(1, k)
    ref = np.percentile(values.numpy()[0].astype(np.float64), 37.5)
    assert R.percentile_per_item(values, 37.5).item() == pytest.approx(ref, rel=1e-7)


@pytest.mark.parametrize("q", [-0.1, 100.5])
def test_percentile_out_of_range_raises(q):
    with pytest.raises(ValueError, match="percentile"):
        R.percentile_per_item(torch.zeros(1, 4), q)


# ------------------------------------------------------------------------------------------ clips

CLIPS = {
    "small_val": (lambda x, g, pct: R.zero_small_values(x, pct), lambda x, g, pct: ref_clip_small_val(x, pct)),
    "small_norm": (lambda x, g, pct: R.zero_small_norm_pixels(x, pct), lambda x, g, pct: ref_clip_small_norm(x, pct)),
    "px_benefit": (R.zero_small_benefit_pixels, ref_clip_px_benefit),
    "px_abs_benefit": (R.zero_small_abs_benefit_pixels, ref_clip_px_abs_benefit),
}


@pytest.mark.parametrize("name", sorted(CLIPS))
@pytest.mark.parametrize("pct", [0.5, 10, 50, 90, 99.9])
@pytest.mark.parametrize("tied", [False, True])
def test_clip_matches_numpy(rng, name, pct, tied):
    ours_fn, ref_fn = CLIPS[name]
    x, grad = batch(rng), batch(rng, scale=0.01)
    if tied:  # integer pixels: the percentile lands on tied values, where the strict < matters
        x, grad = np.round(x / 10), np.round(grad * 100)
    out = ours_fn(torch.from_numpy(x), torch.from_numpy(grad), pct).numpy()
    for n in range(len(x)):
        _, mask = ref_fn(x[n : n + 1].astype(np.float64), grad[n : n + 1].astype(np.float64), pct)
        mask = mask[0].astype(bool)
        assert mask.any() or tied  # the test does exercise the clip
        np.testing.assert_array_equal(out[n][mask], 0.0)
        np.testing.assert_array_equal(out[n][~mask], x[n][~mask])


def test_clip_does_not_zero_values_equal_to_the_percentile():
    x = torch.tensor([1.0, -1.0, 1.0, 2.0] * 3).reshape(1, 3, 2, 2)  # |x| percentile 50 is 1: nothing below
    assert torch.equal(R.zero_small_values(x, 50), x)
    x2 = torch.tensor([1.0, 2.0, 3.0, 4.0] * 3).reshape(1, 3, 2, 2)  # norms sqrt(3)*[1..4], median between 2 and 3
    assert R.zero_small_norm_pixels(x2, 50)[0, :, 0].tolist() == [[0.0, 0.0]] * 3


# ------------------------------------------------------------------------------------------ regularize


TABLE1 = {
    "row1": dict(decay=0.0, blur_radius=0.5, blur_every=4, small_norm_percentile=50),
    "row2": dict(decay=0.3, small_norm_percentile=20),
    "row3": dict(decay=0.0001, blur_radius=1.0, blur_every=4),
    "row4": dict(decay=0.0, blur_radius=0.5, blur_every=4, px_abs_benefit_percentile=90),
    "all": dict(decay=0.01, blur_radius=1.0, blur_every=2, small_val_percentile=10, small_norm_percentile=10,
                px_benefit_percentile=10, px_abs_benefit_percentile=10),
}


@pytest.mark.parametrize("row", sorted(TABLE1))
@pytest.mark.parametrize("ii", [0, 1])
def test_regularize_matches_original_phase6(rng, row, ii):
    p = make_params(**TABLE1[row])
    x, grad = batch(rng), batch(rng, scale=0.01)
    out = R.regularize(torch.from_numpy(x), torch.from_numpy(grad), ii, p).numpy()
    ref = np.concatenate(ref_batch(lambda xx, gg: ref_phase6(xx, gg, ii, p), x, grad))
    assert_close_to_ref(out, ref)
    np.testing.assert_array_equal(out == 0, ref == 0)
    blurred = p.blur_radius > 0 and ii == 0
    untouched = np.isclose(out, x * (1 - p.decay), rtol=1e-6) | (out == 0)
    assert untouched.all() != blurred  # ii = 0 blurs, ii = 1 does not


@pytest.mark.parametrize("row", sorted(TABLE1))
@pytest.mark.parametrize("ii", [0, 1])
def test_regularize_float64_state_gives_the_originals_bits(rng, row, ii):
    """The loop's precision: float64 image, float32 gradient widened where numpy widened it."""
    p = make_params(**TABLE1[row])
    x, grad = rng.normal(0, 40.0, (2, 3, 36, 30)), batch(rng, scale=0.01)
    out = R.regularize(torch.from_numpy(x), torch.from_numpy(grad), ii, p).numpy()
    assert out.dtype == np.float64
    ref = np.concatenate([ref_phase6(x[n:n + 1], grad[n:n + 1], ii, p) for n in range(len(x))])
    assert_float64_like_scipy(out, ref)


def test_regularize_batch_elements_are_independent(rng):
    p = make_params(**TABLE1["all"])
    x, grad = torch.from_numpy(batch(rng)), torch.from_numpy(batch(rng, scale=0.01))
    out = R.regularize(x, grad, 0, p)
    x2, grad2 = x.clone(), grad.clone()
    x2[0] = x2[0] * 5 + 17
    grad2[0] = -grad2[0]
    out2 = R.regularize(x2, grad2, 0, p)
    assert torch.equal(out2[1], out[1])
    assert not torch.equal(out2[0], out[0])


@pytest.mark.parametrize("row", sorted(TABLE1))
def test_regularize_does_not_modify_input(rng, row):
    x, grad = torch.from_numpy(batch(rng)), torch.from_numpy(batch(rng, scale=0.01))
    x_before, grad_before = x.clone(), grad.clone()
    out = R.regularize(x, grad, 0, make_params(**TABLE1[row]))
    assert torch.equal(x, x_before) and torch.equal(grad, grad_before)
    assert out.data_ptr() != x.data_ptr()


def test_regularize_reads_none_as_off(rng):
    p = make_params(decay=0.01, blur_radius=None, blur_every=None, small_val_percentile=None,
                    small_norm_percentile=None, px_benefit_percentile=None, px_abs_benefit_percentile=None)
    x = torch.from_numpy(batch(rng))
    assert torch.equal(R.regularize(x, x, 0, p), x * 0.99)


@pytest.mark.parametrize("ii, every, radius, due", [(0, 4, 0.5, True), (8, 4, 0.5, True), (3, 4, 0.5, False),
                                                    (0, 0, 0.5, False), (0, 4, 0.0, False), (5, 1, 1.0, True)])
def test_blur_due(ii, every, radius, due):
    assert R.blur_due(ii, radius, every) is due


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_regularize_on_cuda_matches_cpu(rng):
    p = make_params(**TABLE1["all"])
    x, grad = torch.from_numpy(batch(rng)), torch.from_numpy(batch(rng, scale=0.01))
    cpu = R.regularize(x, grad, 0, p)
    gpu = R.regularize(x.cuda(), grad.cuda(), 0, p)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-4)
