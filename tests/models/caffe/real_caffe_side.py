"""Real Caffe's side of test_against_real_caffe.py: run under a Python that imports pycaffe (numpy only besides).

Reads a JSON job on stdin: {"prototxt": text, "seed": int, "pushes": [[blob, layer], ...]}. Builds the
net, fills every parameter blob with seeded random values (weights He-normal over the blob's fan-in, biases normal
with sd 0.1), sets the data blob to a seeded uniform input in [-100, 100), runs the whole forward pass and, per
push, a one-hot diff at the blob's largest unit (flat index) with backward from that layer to the data (``Net._backward``, as the
original's ``backward_from_layer``). Writes an .npz to stdout: ``blob/<name>`` (every blob's data after the forward
pass), ``grad/<blob>`` (the data diff of each push), ``unit/<blob>`` (the unit pushed), ``caffemodel`` (the weights as Caffe saves them, uint8 bytes).
"""

import io
import json
import os
import sys
import tempfile

import numpy as np


def main():
    job = json.load(sys.stdin)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe

    caffe.set_mode_cpu()
    folder = tempfile.mkdtemp()
    proto, weights = os.path.join(folder, "net.prototxt"), os.path.join(folder, "net.caffemodel")
    with open(proto, "w") as f:  # without force_backward Caffe computes no gradient to the data
        f.write(job["prototxt"] if "force_backward" in job["prototxt"] else "force_backward: true\n" + job["prototxt"])
    net = caffe.Net(proto, caffe.TEST)
    rng = np.random.RandomState(job["seed"])
    for blobs in net.params.values():
        weight = blobs[0].data
        weight[...] = rng.normal(0.0, np.sqrt(2.0 / max(1, weight[0].size)), weight.shape)
        for blob in blobs[1:]:
            blob.data[...] = rng.normal(0.0, 0.1, blob.data.shape)
    data = net.blobs["data"]
    data.data[...] = rng.uniform(-100.0, 100.0, data.data.shape)
    net.forward()
    out = {"blob/" + name: blob.data.copy() for name, blob in net.blobs.items()}
    layer_names = list(net._layer_names)
    for blob, layer in job["pushes"]:
        for b in net.blobs.values():
            b.diff[...] = 0
        unit = int(np.argmax(out["blob/" + blob]))
        net.blobs[blob].diff.reshape(-1)[unit] = 1.0
        net._backward(layer_names.index(layer), 0)
        out["grad/" + blob] = data.diff.copy()
        out["unit/" + blob] = np.array(unit)
        if job.get("all_diffs"):
            out.update({"diff/" + name: b.diff.copy() for name, b in net.blobs.items()})
    net.save(weights)
    with open(weights, "rb") as f:
        out["caffemodel"] = np.frombuffer(f.read(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **out)
    sys.stdout.buffer.write(buffer.getvalue())


if __name__ == "__main__":
    main()
