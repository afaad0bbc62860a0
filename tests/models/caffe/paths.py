"""Paths of the Caffe fixtures: real-Caffe reference files for a tiny net (tests/data/caffe_reference) and the
original's deploy prototxts (tests/data/caffe_models)."""

import os

DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "data"))
REF = os.path.join(DATA, "caffe_reference")
MODELS = os.path.join(DATA, "caffe_models")


def ref_path(name: str) -> str:
    return os.path.join(REF, name)


def model_path(name: str) -> str:
    return os.path.join(MODELS, name)
