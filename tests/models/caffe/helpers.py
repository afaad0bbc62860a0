"""Caffe test helpers: the fixtures' paths (real-Caffe reference files for a tiny net in tests/data/caffe_reference,
the original's deploy prototxts in tests/data/caffe_models) and writers of small nets and caffemodels."""

import os

import numpy as np

from dvtoolbox.models.caffe import caffe_pb2

DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "data"))
REF = os.path.join(DATA, "caffe_reference")
MODELS = os.path.join(DATA, "caffe_models")


def ref_path(name: str) -> str:
    return os.path.join(REF, name)


def model_path(name: str) -> str:
    return os.path.join(MODELS, name)


def write_net(tmp_path, body: str, input_shape=(1, 3, 8, 8), weights=None, legacy_weights=False, name="net"):
    """Write a V2 deploy prototxt (``input: "data"`` of ``input_shape`` + ``body``) and, when ``weights`` (layer name ->
    list of arrays) is given, a caffemodel holding them (legacy 4-D blob fields and V1 layers when
    ``legacy_weights``). Returns (prototxt path, caffemodel path or None)."""
    dims = " ".join(f"dim: {d}" for d in input_shape)
    proto = tmp_path / f"{name}.prototxt"
    proto.write_text(f'name: "{name}"\ninput: "data"\ninput_shape {{ {dims} }}\n{body}')
    if weights is None:
        return str(proto), None
    model = tmp_path / f"{name}.caffemodel"
    write_caffemodel(model, weights, legacy_weights)
    return str(proto), str(model)


def write_caffemodel(path, weights, legacy=False):
    """A caffemodel made with Caffe's schema: layer name -> list of float arrays (the layer's parameter blobs)."""
    net = caffe_pb2.NetParameter()
    for layer_name, arrays in weights.items():
        layer = net.layers.add() if legacy else net.layer.add()
        layer.name = layer_name
        for array in arrays:
            array = np.asarray(array, np.float32)
            blob = layer.blobs.add()
            if legacy:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().tolist())
    path.write_bytes(net.SerializeToString())
