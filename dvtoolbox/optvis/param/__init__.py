"""Image parameterisations ``(params, image_f)``: spatial (pixel, fft, lowres, laplacian pyramid), colour
(decorrelation + sigmoid), and ``get_image`` / ``image_sample`` that combine them. See each module's docstring."""

from dvtoolbox.optvis.param.color import (COLOR_CORRELATION_NORMALIZED, COLOR_CORRELATION_SVD_SQRT,
                                          linear_decorrelate_color, to_valid_rgb)
from dvtoolbox.optvis.param.images import get_image, image_sample
from dvtoolbox.optvis.param.maco import maco_image
from dvtoolbox.optvis.param.rng import param_defaults
from dvtoolbox.optvis.param.spatial import (fft_image, laplacian_pyramid, lowres_tensor, pixel_image,
                                            resize_bilinear, rfft2d_freqs, spectrum_scale)

__all__ = [
    "COLOR_CORRELATION_NORMALIZED", "COLOR_CORRELATION_SVD_SQRT", "fft_image", "get_image", "image_sample",
    "laplacian_pyramid", "linear_decorrelate_color", "lowres_tensor", "maco_image", "param_defaults", "pixel_image",
    "resize_bilinear", "rfft2d_freqs", "spectrum_scale", "to_valid_rgb",
]
