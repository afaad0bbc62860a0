"""The parameterisations a visualize job can ask for, by name: ``PARAMETERISATIONS[name](job, contract, h, w,
batch=None)`` returns the ``param_f`` (``() -> (params, image_f)``) that ``FeatureViz.visualize`` draws the images
from: ``batch`` images (None: the job's batch).

fft (Fourier, lucid's default), pixel (one value per pixel through a sigmoid), lowres (bilinearly upsampled), dvt
(the image in the model's pixel space, as DVT's), maco (only the Fourier phase optimised, the amplitude natural
images': ``param.maco``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Optional

from dvtoolbox.models.pixel_space import InputContract
from dvtoolbox.optvis.dvt import model_pixel_image
from dvtoolbox.optvis.param import get_image, lowres_tensor, maco_image, to_valid_rgb

if TYPE_CHECKING:
    from dvtoolbox.optvis.job.settings import VisualizeJob


def _fft_or_pixel(fft: bool) -> Callable:
    def build(job: "VisualizeJob", contract: InputContract, h: int, w: int, batch: Optional[int] = None) -> Callable:
        return lambda: get_image(w=w, h=h, batch=batch or job.batch, fft=fft, decorrelate=job.decorrelate,
                                 decay_power=job.decay_power)
    return build


def _lowres(job: "VisualizeJob", contract: InputContract, h: int, w: int, batch: Optional[int] = None) -> Callable:
    batch = batch or job.batch
    low = (batch, 3, max(1, h // job.lowres_factor), max(1, w // job.lowres_factor))

    def param_f():
        params, raw_f = lowres_tensor((batch, 3, h, w), low)
        return params, to_valid_rgb(raw_f, decorrelate=job.decorrelate)
    return param_f


def _dvt(job: "VisualizeJob", contract: InputContract, h: int, w: int, batch: Optional[int] = None) -> Callable:
    return lambda: model_pixel_image(contract, batch=batch or job.batch, size=(h, w))


class KeepImageF:
    """A ``param_f`` that keeps the ``image_f`` it made (``.image_f``), for outputs read after the run (MACO's
    transparency map, the accentuation's start image, ``.start``)."""

    def __init__(self, param_f: Callable):
        self.param_f, self.image_f, self.start = param_f, None, None

    def __call__(self):
        params, self.image_f = self.param_f()
        return params, self.image_f


def _maco(job: "VisualizeJob", contract: InputContract, h: int, w: int, batch: Optional[int] = None) -> Callable:
    return KeepImageF(lambda: maco_image(w=w, h=h, batch=batch or job.batch))


# name -> builder(job, contract, h, w, batch=None) -> param_f (see the module docstring)
PARAMETERISATIONS: Dict[str, Callable] = {"fft": _fft_or_pixel(True), "pixel": _fft_or_pixel(False),
                                          "lowres": _lowres, "dvt": _dvt, "maco": _maco}
