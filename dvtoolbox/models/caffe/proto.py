"""Caffe's files read through Caffe's own schema (``caffe.proto`` compiled to ``caffe_pb2``), no wire parsing here.

- ``read_net_text(path)``: a deploy ``.prototxt`` (protobuf text format) -> ``caffe_pb2.NetParameter``.
- ``read_net_binary(path)``: a ``.caffemodel`` (binary protobuf) -> ``caffe_pb2.NetParameter``.
- ``net_layers(net)``: the layers of either generation (V2 ``layer { type: "Convolution" }``, legacy V1
  ``layers { type: CONVOLUTION }``) as ``LayerSpec``: name, V2 type string, bottoms, tops, the message itself.
- ``blob_array(blob)``: a ``BlobProto`` as a float32 array, shaped by ``shape`` or by the legacy 4-D
  ``num``/``channels``/``height``/``width`` fields.
- ``read_blobproto_array(path)``: a ``.binaryproto`` mean image -> float32 array in its blob shape.

Every user-caused failure (missing file, malformed text, not a protobuf) is a one-line ``UsageError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from google.protobuf import message as pb_message
from google.protobuf import text_format

from dvtoolbox.errors import UsageError
from dvtoolbox.models.caffe import caffe_pb2

# Caffe's UpgradeV1LayerType: the V1 enum name -> the V2 type string.
V1_TYPES: Dict[str, str] = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


@dataclass(frozen=True)
class LayerSpec:
    """One layer of either generation. ``message`` is the ``LayerParameter`` or ``V1LayerParameter`` itself:
    read its ``*_param`` fields through ``layer_param(spec, field, default_type)``."""

    name: str
    type: str
    bottom: Tuple[str, ...]
    top: Tuple[str, ...]
    message: pb_message.Message

    @property
    def blobs(self) -> Sequence[caffe_pb2.BlobProto]:
        return self.message.blobs


def _read_bytes(path: str, what: str) -> bytes:
    if not os.path.isfile(path):
        raise UsageError(f"cannot read {what} {path!r}: no such file")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def _read_binary(path: str, message, what: str):
    """``message`` (an empty protobuf message) filled from the binary file at ``path``; a non-protobuf file is a
    UsageError naming ``what``."""
    data = _read_bytes(path, what)
    try:
        message.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise UsageError(f"cannot read {what} {path!r}: not a binary Caffe {type(message).__name__} "
                         f"({_one_line(exc)})") from None
    return message


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_net_text(path: str) -> caffe_pb2.NetParameter:
    """A prototxt (protobuf text format, V1 or V2) as a NetParameter; bad text is a one-line UsageError."""
    data = _read_bytes(path, "deploy prototxt")
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(data.decode("utf-8"), net)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot parse deploy prototxt {path!r}: {_one_line(exc)}") from None
    return net


def read_net_binary(path: str) -> caffe_pb2.NetParameter:
    """A caffemodel (binary NetParameter, V1 or V2) as a NetParameter; a non-protobuf file is a UsageError."""
    net = _read_binary(path, caffe_pb2.NetParameter(), "net weights")
    if not len(net.layer) and not len(net.layers):
        raise UsageError(f"cannot read net weights {path!r}: it holds no layers (not a caffemodel?)")
    return net


def net_layers(net: caffe_pb2.NetParameter, source: str) -> List[LayerSpec]:
    """The layers of ``net`` in file order, V1 or V2 (a file may not mix them, as in Caffe)."""
    if len(net.layer) and len(net.layers):
        raise UsageError(f"{source}: mixes V2 'layer' and V1 'layers' entries; Caffe accepts one generation only")
    if len(net.layer):
        return [LayerSpec(m.name, m.type, tuple(m.bottom), tuple(m.top), m) for m in net.layer]
    specs = []
    for m in net.layers:
        if m.HasField("layer"):
            raise UsageError(f"{source}: layer {m.name or m.layer.name!r} is in the V0 format; convert the file "
                             f"with Caffe's upgrade_net_proto_text / upgrade_net_proto_binary first")
        type_name = caffe_pb2.V1LayerParameter.LayerType.Name(m.type)
        specs.append(LayerSpec(m.name, V1_TYPES.get(type_name, type_name), tuple(m.bottom), tuple(m.top), m))
    return specs


def layer_param(spec: LayerSpec, field: str, default_type):
    """``spec.message.<field>`` (e.g. "pooling_param"), or a default ``default_type()`` when the layer's
    generation has no such field (V1 has no flatten_param, for instance)."""
    if field in spec.message.DESCRIPTOR.fields_by_name:
        return getattr(spec.message, field)
    return default_type()


def blob_shape(blob: caffe_pb2.BlobProto) -> Tuple[Tuple[int, ...], bool]:
    """(shape, legacy): the blob's ``shape`` dims, or its 4-D num/channels/height/width with legacy=True."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim), False
    return (int(blob.num), int(blob.channels), int(blob.height), int(blob.width)), True


def blob_array(blob: caffe_pb2.BlobProto, what: str) -> np.ndarray:
    """The blob's values (``data`` or ``double_data``) as float32 in its shape; a count mismatch is a UsageError."""
    shape, _legacy = blob_shape(blob)
    values = blob.data if len(blob.data) else blob.double_data
    arr = np.asarray(values, dtype=np.float32)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if arr.size != count:
        raise UsageError(f"{what}: the blob holds {arr.size} values but its shape {shape} needs {count}")
    return arr.reshape(shape)


def read_blobproto_array(path: str) -> np.ndarray:
    """A ``.binaryproto`` BlobProto (a Caffe mean image) as float32 in its blob shape, e.g. (1, 3, 256, 256)."""
    blob = _read_binary(path, caffe_pb2.BlobProto(), "mean file")
    return blob_array(blob, f"mean file {path!r}")


def weights_by_layer(net: caffe_pb2.NetParameter, source: str) -> Dict[str, Sequence[caffe_pb2.BlobProto]]:
    """Parameter blobs by layer name, for every layer of a caffemodel (V1 or V2) that has any. A later layer of
    the same name replaces an earlier one, as in Caffe's CopyTrainedLayersFrom."""
    found: Dict[str, Sequence[caffe_pb2.BlobProto]] = {}
    for spec in net_layers(net, source):
        if len(spec.blobs):
            found[spec.name] = spec.blobs
    return found


def input_shape_of(net: caffe_pb2.NetParameter, source: str) -> Optional[Tuple[str, Tuple[int, ...]]]:
    """(name, shape) of the net's input declared by ``input:`` + ``input_shape``/``input_dim``, or None when the
    net declares no ``input:`` (it may have an Input layer instead). More than one input is a UsageError."""
    if not len(net.input):
        return None
    if len(net.input) > 1:
        raise UsageError(f"{source}: the net declares {len(net.input)} inputs ({', '.join(net.input)}); "
                         f"only nets with one input blob (the image) are supported")
    name = net.input[0]
    if len(net.input_shape):
        return name, tuple(int(d) for d in net.input_shape[0].dim)
    if len(net.input_dim) == 4:
        return name, tuple(int(d) for d in net.input_dim)
    raise UsageError(f"{source}: input {name!r} needs an input_shape or four input_dim values, "
                     f"got {len(net.input_dim)} input_dim")
