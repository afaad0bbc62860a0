"""Time the original's per-iteration work under real Caffe (pycaffe), for bench_caffe_loader.py --caffe-python.

Runs under the Python that imports ``caffe`` (another environment, a chroot) and needs only numpy, scipy and
pycaffe. It reads a JSON job on stdin: {"prototxt": text, "push_layer", "push_channel", "blur_radius", "iters",
"warmup", "seed"} and prints one JSON line: {"seconds": [per-iteration seconds], "caffe": version}. One iteration
is the original optimizer's work: ``net.forward(end=push_layer)``, a one-hot diff at the pushed unit, backward from
that layer to the data (stock Caffe's ``Net._backward``, as the original's
Caffe fork's ``backward_from_layer``) and scipy's Gaussian blur of each channel.
The BLAS thread count comes from the environment (OPENBLAS_NUM_THREADS), set by the caller.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np
from scipy.ndimage import gaussian_filter


def main():
    job = json.load(sys.stdin)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe

    caffe.set_mode_cpu()
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(job["prototxt"])
    net = caffe.Net(f.name, caffe.TEST)
    os.unlink(f.name)
    rng = np.random.RandomState(job["seed"])
    for blobs in net.params.values():  # random weights, as the loader's side has (no all-zero shortcuts)
        for blob in blobs:
            blob.data[...] = rng.normal(0.0, 0.01, blob.data.shape)
    layer, unit = job["push_layer"], job["push_channel"]
    data = net.blobs["data"]
    start = list(net._layer_names).index(layer)
    x = (rng.uniform(0, 255, data.data.shape) - 117.0).astype(np.float32)
    seconds = []
    for i in range(job["warmup"] + job["iters"]):
        t0 = time.perf_counter()
        data.data[...] = x
        net.forward(end=layer)
        diff = np.zeros_like(net.blobs[layer].diff)
        diff.reshape(diff.shape[0], -1)[0, unit] = 1.0
        net.blobs[layer].diff[...] = diff
        net._backward(start, 0)  # what the original's Caffe fork's backward_from_layer runs
        grad = data.diff
        x = x + grad
        for c in range(x.shape[1]):
            x[0, c] = gaussian_filter(x[0, c], job["blur_radius"])
        if i >= job["warmup"]:
            seconds.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": seconds, "caffe": getattr(caffe, "__version__", "unknown")}))


if __name__ == "__main__":
    main()
