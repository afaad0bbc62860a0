#!/bin/sh
# Reproduces doc/dictionary_gallery.png: the gallery page (index.html) of 8 latents of a random, seeded 4096-latent
# dictionary bound to _blocks.10 (112 channels, 14x14) of the embedded model, each pushed at the grid's centre with
# the README's first command's regularisation, then screenshotted with headless Chromium.
# The dictionary is random, so its latents are random directions of the layer: give a trained SAE for real use.
# Usage: scripts/dictionary_gallery.sh [PYTHON] [ITERATIONS]   (5 to 8 minutes on the 2-core CPU VM at 400)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${1:-$ROOT/.venv/bin/python}
ITERS=${2:-400}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$PYTHON" - <<'PY'
import torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(0)
w = torch.randn(112, 4096, generator=g)          # W_enc (d_in, n): unit-norm random directions
save_file({"W_enc": (w / w.norm(dim=0, keepdim=True)).contiguous(), "b_enc": torch.zeros(4096)},
          "random_dictionary.safetensors")
PY
PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" "$ROOT/optimize_image.py" \
    --dictionary sae=_blocks.10=random_dictionary.safetensors \
    --push-layer sae --push-channel 0:8 --push-spatial "(7,7)" --batch-size 8 \
    --decay 0.0001 --blur-radius 1.0 --blur-every 4 --max-iter "$ITERS" \
    --lr-policy constant --lr-params "{'lr': 100.0}"
cd optimize_results
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,700 \
    --screenshot="$ROOT/doc/dictionary_gallery.png" index.html
