"""Caffe models without Caffe: a deploy prototxt and its caffemodel (V1 or V2) run as a PyTorch module.

``load_caffe_model(deploy_proto, net_weights)`` (registered as the model family ``caffe:<deploy.prototxt>``:
``create_model("caffe:deploy.prototxt", weights="net.caffemodel")``) returns an ``nn.Module`` whose blobs are submodules named as in
the prototxt (``conv5``, ``fc8``, ``inception_4c/output``), with Caffe's in-place and push semantics; see
``build.py`` for the model and doc/caffe-models.md for what is supported. Files are read with Caffe's own schema
(``caffe.proto``, compiled to ``caffe_pb2.py``; README.md here says how).
"""

from dvtoolbox.errors import UsageError
from dvtoolbox.models.caffe.build import (DEFAULT_MEAN, SUPPORTED_TYPES, CaffeNet, load_caffe_model, tap_name,
                                          version_tap_name)
from dvtoolbox.models.caffe.proto import read_blobproto_array
from dvtoolbox.models.registry import register_family


def caffe_model(deploy_proto: str, weights=None, **kwargs) -> CaffeNet:
    """The ``caffe:`` family: ``deploy_proto`` with the .caffemodel ``weights`` (None: seeded random weights)."""
    if weights == "default":
        raise UsageError(f"caffe:{deploy_proto}: a Caffe model has no default weights; give weights=<file.caffemodel>")
    return load_caffe_model(deploy_proto, weights, **kwargs)


register_family("caffe:", caffe_model, "caffe:<deploy.prototxt> with its .caffemodel")

__all__ = ["CaffeNet", "DEFAULT_MEAN", "SUPPORTED_TYPES", "caffe_model", "load_caffe_model", "read_blobproto_array", "tap_name",
           "version_tap_name"]
