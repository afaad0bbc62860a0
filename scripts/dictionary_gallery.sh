#!/bin/sh
# Reproduces the gallery pages (index.html) of 8 latents of a random, seeded 4096-latent dictionary bound to
# _blocks.10 (112 channels, 14x14) of the embedded model, screenshotted with headless Chromium:
#   optimize  -> doc/dictionary_gallery.png: optimize_image.py, each latent pushed at the grid's centre with the
#                README's first command's regularisation, ITERATIONS iterations (default 400);
#   visualize -> doc/dictionary_units_gallery.png: visualize.py --units with --recipe maco, each latent's mean
#                pre-activation over the grid, ITERATIONS steps (default 256), the 8 latents in one batch.
# The dictionary is random, so its latents are random directions of the layer: give a trained SAE for real use.
# Usage: scripts/dictionary_gallery.sh [PYTHON] [ITERATIONS] [optimize|visualize]
#        (2-core CPU VM: optimize at 400, 5 to 8 minutes; visualize at 256, about 10 minutes)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${1:-$ROOT/.venv/bin/python}
MODE=${3:-optimize}
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
if [ "$MODE" = visualize ]; then
    PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" "$ROOT/visualize.py" \
        --dictionary sae=_blocks.10=random_dictionary.safetensors \
        --objective sae --units 0:8 --batch 8 --recipe maco --steps "${2:-256}" --output-dir results
    PAGE=results/index.html
    SHOT=$ROOT/doc/dictionary_units_gallery.png
else
    PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" "$ROOT/optimize_image.py" \
        --dictionary sae=_blocks.10=random_dictionary.safetensors \
        --push-layer sae --push-channel 0:8 --push-spatial "(7,7)" --batch-size 8 \
        --decay 0.0001 --blur-radius 1.0 --blur-every 4 --max-iter "${2:-400}" \
        --lr-policy constant --lr-params "{'lr': 100.0}"
    PAGE=optimize_results/index.html
    SHOT=$ROOT/doc/dictionary_gallery.png
fi
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,700 \
    --screenshot="$SHOT" "$PAGE"
