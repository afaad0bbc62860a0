"""The same work on CUDA as on the CPU: the batched DVT loop, the embedded model, the Caffe loader, the CLI.

Skipped where CUDA is absent (CI has none); run on a GPU machine with ``python -m pytest -q tests/gpu``.
Tolerances: cuDNN chooses other convolution algorithms than the CPU, so traces agree to float32 rounding, not bit
for bit (the job switches TF32 off: see ``dvtoolbox.device.configure_float32``).
"""

import os
import pickle

import numpy as np
import pytest
import torch

from dvtoolbox.cli.optimize_image import main
from dvtoolbox.io.images import load_image_rgb
from dvtoolbox.models.capture import LayerCapture, gradient_source
from dvtoolbox.models.caffe import load_caffe_model
from dvtoolbox.models.pixel_space import image_to_model_input
from dvtoolbox.models.registry import create_model
from dvtoolbox.device import configure_float32
from dvtoolbox.optimize.loop import optimize
from dvtoolbox.optimize.params import FindParams
from dvtoolbox.optimize.start import initial_x

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def _true_float32():
    """As every job does on CUDA (``--tf32`` not given)."""
    configure_float32(torch.device("cuda"), allow_tf32=False)

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
ROW1 = dict(decay=0, blur_radius=0.5, blur_every=4, small_norm_percentile=50, lr_policy="progress",
            lr_params={"max_lr": 100.0, "desired_prog": 2.0})


def _loop(model, device, units, iters=10):
    model = model.to(device)
    mean = model.input_contract.mean_image()
    params = [FindParams(push_layer="fc8", push_channel=u, max_iter=iters, rand_seed=u, **ROW1) for u in units]
    x0 = np.stack([initial_x(q.start_at, q.rand_seed, mean) for q in params])
    return optimize(model, params, x0, mean, (5, 1, 1))


def test_batched_loop_on_cuda_gives_the_cpu_traces():
    cpu = _loop(create_model("tiny_test"), torch.device("cpu"), [0, 2, 4])
    gpu = _loop(create_model("tiny_test"), torch.device("cuda"), [0, 2, 4])
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b.obj, a.obj, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b.norm, a.norm, rtol=1e-4)
        np.testing.assert_allclose(b.best_xx, a.best_xx, rtol=1e-4, atol=1e-3)
        assert (b.best_ii, b.majority_ii, b.meta_result, b.idxmax) == (a.best_ii, a.majority_ii, a.meta_result,
                                                                        a.idxmax)


def test_embedded_model_on_cuda_classifies_as_on_cpu():
    model = create_model("efficientnet_lite0")
    x = np.concatenate([image_to_model_input(load_image_rgb(os.path.join(DATA, "images", name)), model.input_contract)
                  for name in ("ILSVRC2012_val_00000610.jpg", "ILSVRC2012_val_00020333.jpg")])
    with torch.no_grad():
        cpu = model(torch.from_numpy(x)).numpy()
        gpu = model.cuda()(torch.from_numpy(x).cuda()).cpu().numpy()
    assert list(gpu.argmax(1)) == [290, 407] == list(cpu.argmax(1))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_caffe_reference_net_on_cuda_matches_real_caffe():
    ref = os.path.join(DATA, "caffe_reference")
    model = load_caffe_model(os.path.join(ref, "tiny.prototxt"), os.path.join(ref, "tiny.caffemodel")).cuda()
    x = torch.from_numpy(np.load(os.path.join(ref, "input.npy"))).cuda()
    with torch.no_grad(), LayerCapture(model, ["fc2", "prob", "concat"]) as cap:
        model(x)
    for blob in ("fc2", "prob", "concat"):
        want = np.load(os.path.join(ref, f"blob_{blob}.npy"))
        err = np.abs(cap.outputs[blob].cpu().numpy().astype(np.float64) - want).max()
        assert err <= 1e-5 * np.abs(want).max(), blob
    xg = x.clone().requires_grad_(True)
    source = gradient_source(model, "fc2")
    with LayerCapture(model, {"fc2", source}) as cap:
        model(xg)
    (grad,) = torch.autograd.grad(cap.outputs[source][0, 3], xg)
    want = np.load(os.path.join(ref, "grad_fc2_u3.npy"))
    assert np.abs(grad.cpu().numpy() - want.reshape(grad.shape)).max() <= 1e-4 * np.abs(want).max()


def test_cli_on_cuda_writes_what_the_cpu_run_writes(tmp_path):
    flags = ["--model", "tiny_test", "--push-layer", "fc8", "--push-channel", "0:3", "--batch-size", "3",
             "--max-iter", "6", "--decay", "0", "--blur-radius", "0.5", "--blur-every", "2"]
    assert main(flags + ["--device", "cpu", "--output-prefix", str(tmp_path / "cpu" / "o")], settings_dirs=[]) == 0
    assert main(flags + ["--device", "cuda", "--output-prefix", str(tmp_path / "gpu" / "o")], settings_dirs=[]) == 0
    for unit in range(3):
        name = f"o_fc8_{unit:04d}_0_info_big.pkl"
        with open(tmp_path / "cpu" / name, "rb") as a, open(tmp_path / "gpu" / name, "rb") as b:
            cpu, gpu = pickle.load(a)[1], pickle.load(b)[1]
        np.testing.assert_allclose(gpu.obj, cpu.obj, rtol=1e-4, atol=1e-5)
        assert gpu.best_ii == cpu.best_ii


def test_float64_image_state_on_cuda():
    """The original's precision on the GPU: float64 images, the CPU's trace to the network's float32 rounding."""
    cpu = _loop(create_model("tiny_test"), torch.device("cpu"), [0, 2])
    gpu = _loop(create_model("tiny_test"), torch.device("cuda"), [0, 2])
    for a, b in zip(cpu, gpu):
        assert b.best_xx.dtype == np.float64 and b.x0.dtype == np.float64
        assert b.x0.tobytes() == a.x0.tobytes()
        np.testing.assert_allclose(b.obj, a.obj, rtol=1e-5, atol=1e-6)


def test_float64_regularizers_on_cuda_give_scipys_bits():
    from scipy.ndimage import gaussian_filter

    from dvtoolbox.regularizers.operations import gaussian_blur

    x = np.random.RandomState(0).normal(0, 40, (2, 3, 33, 29))
    out = gaussian_blur(torch.from_numpy(x).cuda(), 1.0).cpu().numpy()
    ref = np.stack([[gaussian_filter(x[n, c], 1.0) for c in range(3)] for n in range(2)])
    np.testing.assert_array_equal(out, ref)  # separate IEEE kernels: no fused multiply-add
