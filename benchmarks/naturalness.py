"""How close are visualisations to photographs? Two measures beside the transfer measure.

1. **Spectral slope** (``dvtoolbox.optvis.spectrum.spectral_slope``): the slope of a power law fitted to the radially
   averaged amplitude spectrum of each image's grey level (24 log-spaced bins from 2/224 to 0.5 cycles per pixel).
   Photographs sit near -1 (amplitude ~ 1/f); a flatter slope (nearer 0) means more high-frequency energy than
   photographs have, a steeper one a blurrier image. Reported: the mean slope, and its distance to the
   photographs' mean slope (|delta slope|).
   Also the share of images whose slope lies inside the photographs' range (lowest .. highest crop).
2. **Kernel distance to photographs (KID)**: the unbiased squared MMD with the cubic polynomial kernel
   k(x, y) = (x.y / d + 1) ** 3 (Binkowski et al., 2018) between the images' and the photographs' features in a
   model that was NOT optimised: EfficientNet-Lite2's pooled 1280-d features (``_avg_pool``), images resized to
   260 pixels. Reported x 100. 0 means the two sets are indistinguishable to that kernel; it is biased towards
   0 neither way (unbiased estimator: small sets give noisy, possibly negative values).

3. **Mean colour**: each image's mean RGB; reported: the mean over the images, its distance to the photographs'
   mean colour ("cast", RGB in [0, 1]: a recipe that gives every image the same tint has a large one) and the share
   of images whose mean colour lies inside the photographs' range on every channel; and, as ten photographs span a
   narrow range of colours, the share inside the range of the 297 crops of the 8 photographs MACO's statistics
   come from (``natural_spectrum.npz``'s ``rgb_low`` .. ``rgb_high``: a sea, a volcano, a red rocket among them).

The photographs: the nine colour ILSVRC2012 validation photographs of ``tests/data/images`` and matplotlib's
``grace_hopper.jpg``, each resized to 256 (shorter side) with the four corner and the centre 224-pixel crops and
their mirror images: 100 reference images (used here only as a measurement reference, not shipped in the
package). Their own slope and the KID of a held-out half against the other half are printed as the floor.

    python benchmarks/naturalness.py IMAGES.npy [...]      # (N, H, W, 3) in [0, 1]; prints both measures
    python benchmarks/naturalness.py --grid-period 16 IMAGES.npy [...]   # a ViT's patch grid in the spectrum
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from dvtoolbox.optvis.spectrum import spectral_slope  # noqa: E402

FEATURE_MODEL = "efficientnet_lite2"
FEATURE_LAYER = "_avg_pool"
PHOTO_DIR = os.path.join(os.path.dirname(HERE), "tests", "data", "images")


def reference_photographs(size: int = 224) -> np.ndarray:
    """(100, size, size, 3) float32 in [0, 1]: see the module docstring."""
    import matplotlib.cbook

    from dvtoolbox.io.images import load_image_rgb

    paths = sorted(p for p in glob.glob(os.path.join(PHOTO_DIR, "ILSVRC2012_val_*.jpg")) if "_gray" not in p)
    paths.append(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    photos = [load_image_rgb(p) for p in paths]
    out = []
    for photo in photos:
        for crop in five_crops(photo, size, round(size * 256 / 224)):
            out += [crop, crop[:, ::-1]]
    return np.stack(out).astype(np.float32) / 255.0


def five_crops(photo: np.ndarray, size: int, short_side: int) -> List[np.ndarray]:
    from PIL import Image

    h, w = photo.shape[:2]
    scale = short_side / min(h, w)
    a = np.asarray(Image.fromarray(photo).resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                                 Image.BILINEAR))
    H, W = a.shape[:2]
    corners = [(0, 0), (0, W - size), (H - size, 0), (H - size, W - size), ((H - size) // 2, (W - size) // 2)]
    return [a[y:y + size, x:x + size] for y, x in corners]


class FeatureModel:
    """Pooled features of a model not optimised (EfficientNet-Lite2 by default)."""

    def __init__(self, name: str = FEATURE_MODEL, layer: str = FEATURE_LAYER, device="cpu"):
        from dvtoolbox.models.capture import LayerCapture
        from dvtoolbox.models.registry import create_model

        self.model = create_model(name).to(device).eval().requires_grad_(False)
        self.layer, self.device, self._capture = layer, torch.device(device), LayerCapture

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch: int = 25) -> np.ndarray:
        from dvtoolbox.models.pixel_space import to_model_input

        contract = self.model.input_contract
        out = []
        with self._capture(self.model, [self.layer]) as capture:
            for i in range(0, len(images), batch):
                x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).permute(0, 3, 1, 2).to(self.device)
                x = F.interpolate(x.float(), size=tuple(contract.size), mode="bilinear", align_corners=False)
                capture.outputs.clear()
                self.model(to_model_input(x, contract))
                out.append(capture.outputs[self.layer].flatten(1).double().cpu().numpy())
        return np.concatenate(out)


def kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD between feature sets x (n, d) and y (m, d), kernel (a.b / d + 1) ** 3."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    n, m = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def wide_colour_range():
    """(low, high) (3,) RGB in [0, 1]: the lowest and highest crop mean colour of the spectrum's photographs."""
    from dvtoolbox.optvis.spectrum import load_natural_spectrum

    spectrum = load_natural_spectrum()
    return np.asarray(spectrum["rgb_low"], np.float64), np.asarray(spectrum["rgb_high"], np.float64)


def inside(colours: np.ndarray, colour_range) -> float:
    """The share of the (N, 3) colours inside [low, high] on every channel."""
    low, high = colour_range
    return float(np.mean(np.all((colours >= low) & (colours <= high), axis=1)))


class Naturalness:
    """Both measures against the reference photographs, computed once."""

    def __init__(self, device="cpu"):
        self.features = FeatureModel(device=device)
        self.photos = reference_photographs()
        self.photo_features = self.features(self.photos)
        slopes = spectral_slope(self.photos)
        self.photo_slope = float(slopes.mean())
        self.slope_range = (float(slopes.min()), float(slopes.max()))
        colours = self.photos.mean(axis=(1, 2))
        self.photo_colour, self.colour_range = colours.mean(axis=0), (colours.min(axis=0), colours.max(axis=0))
        self.wide_colour_range = wide_colour_range()

    def __call__(self, images: np.ndarray) -> Dict[str, float]:
        images = np.asarray(images, dtype=np.float32)
        if images.shape[1:3] != (224, 224):
            x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
            images = x.clamp(0, 1).permute(0, 2, 3, 1).numpy()
        slopes = spectral_slope(images)
        colours = images.mean(axis=(1, 2))                                      # (N, 3) mean RGB per image
        return {"slope": float(slopes.mean()), "delta_slope": float(abs(slopes.mean() - self.photo_slope)),
                "slope_sd": float(slopes.std()),
                "slope_inside": float(np.mean((slopes >= self.slope_range[0]) & (slopes <= self.slope_range[1]))),
                "colour": colours.mean(axis=0).round(4).tolist(),
                "colour_cast": float(np.linalg.norm(colours.mean(axis=0) - self.photo_colour)),
                "colour_inside": inside(colours, self.colour_range),
                "colour_inside_wide": inside(colours, self.wide_colour_range),
                "kid": 100 * kid(self.features(images), self.photo_features)}

    def floor(self, seed: int = 0) -> Dict[str, float]:
        """The photographs against themselves: KID of a random half (by photograph) against the other half."""
        rng = np.random.RandomState(seed)
        n_photos = len(self.photos) // 10
        half = rng.permutation(n_photos)[: n_photos // 2]
        mask = np.isin(np.arange(len(self.photos)) // 10, half)
        return {"slope": self.photo_slope, "delta_slope": 0.0, "slope_range": list(self.slope_range),
                "colour": self.photo_colour.round(4).tolist(),
                "colour_range": [c.round(4).tolist() for c in self.colour_range],
                "kid": 100 * kid(self.photo_features[mask], self.photo_features[~mask])}


def grid_peak(images01: np.ndarray, period: int = 16) -> np.ndarray:
    """(N,): how much of each (N, H, W, 3) image's grey-level amplitude spectrum sits at the frequencies of a grid
    of ``period`` pixels (a ViT's patches): the mean, over the grid's first two harmonics on both axes (H / period
    and 2 H / period cycles per image, both signs), of the amplitude there over the mean amplitude of the ring of
    the same radius. About 1 for an image without a grid (isotropic texture); photographs' horizontal and vertical
    edges raise the axes somewhat; a patch-grid artefact raises it well above."""
    grey = np.asarray(images01, np.float64).mean(axis=-1)
    n = grey.shape[1]
    if grey.shape[1] != grey.shape[2] or n % period:
        raise ValueError(f"grid_peak needs square images whose side is a multiple of {period}, got {grey.shape[1:]}")
    f = np.fft.fftfreq(n) * n
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    peaks = [(k * n // period) * s for k in (1, 2) for s in (1, -1)]
    out = []
    for image in grey:
        amplitude = np.abs(np.fft.fft2(image - image.mean()))
        ratios = [amplitude[p, 0] / amplitude[np.abs(radius - abs(p)) < 0.5].mean() for p in peaks]
        ratios += [amplitude[0, p] / amplitude[np.abs(radius - abs(p)) < 0.5].mean() for p in peaks]
        out.append(np.mean(ratios))
    return np.array(out)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--grid-period"]:   # only the patch-grid measure: --grid-period 16 IMAGES.npy ...
        for path in argv[2:]:
            peaks = grid_peak(np.load(path), int(argv[1]))
            print(f"{path}: grid peak {peaks.mean():.2f} ({peaks.min():.2f} .. {peaks.max():.2f})")
        return 0
    torch.set_num_threads(2)
    measure = Naturalness()
    print(f"photographs: slope {measure.photo_slope:.3f}, KID half vs half {measure.floor()['kid']:.3f}")
    for path in argv:
        m = measure(np.load(path))
        print(f"{path}: slope {m['slope']:.3f} (|delta| {m['delta_slope']:.3f}), KID x100 {m['kid']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
