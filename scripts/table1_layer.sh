#!/usr/bin/env bash
# One row of Table 1 of Yosinski et al. (2015) over every unit of a layer, then the folder's index.html.
# Default: row 3 (the paper's flamingo row; the quadrant the original GUI shows) on all units of fc8 of the
# embedded model, 16 units per forward/backward, resumable (a killed run continues where it stopped).
#   scripts/table1_layer.sh                                   # row 3, fc8, all 1000 units
#   scripts/table1_layer.sh --row 1 --push-channel 0:8 --max-iter 20 --device cpu
#   scripts/table1_layer.sh --deploy-proto caffenet-yos-deploy.prototxt --net-weights caffenet-yos-weights \
#       --mean "'ilsvrc_2012_mean.npy'" --gui-dir unit_jpg_vis --gui-layer-units 1000
# Options of this script: --row N (1-4), --output-prefix P (default optimize_results/table1_layer_row<N>/opt),
# --gui-dir DIR and --gui-layer-units N (also write the original GUI's layout; see doc/whole-layers.md).
# Every other argument goes to optimize_image.py after the row's flags, so it overrides them (e.g. --max-iter,
# --push-layer, --push-channel, --batch-size, --device). The rows are those of scripts/table1.sh (a test checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
row=3
prefix=
gallery_args=()
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --row) row=$2; shift 2 ;;
    --output-prefix) prefix=$2; shift 2 ;;
    --gui-dir|--gui-layer-units) gallery_args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
prefix=${prefix:-optimize_results/table1_layer_row${row}/opt}
case "$row" in
  1) flags=(--decay 0      --blur-radius 0.5 --blur-every 4  --small-norm-percentile 50     --max-iter 500  --lr-policy progress --lr-params "{'max_lr': 100.0, 'desired_prog': 2.0}") ;;
  2) flags=(--decay 0.3    --blur-radius 0   --blur-every 0  --small-norm-percentile 20     --max-iter 750  --lr-policy constant --lr-params "{'lr': 100.0}") ;;
  3) flags=(--decay 0.0001 --blur-radius 1.0 --blur-every 4                                 --max-iter 1000 --lr-policy constant --lr-params "{'lr': 100.0}") ;;
  4) flags=(--decay 0      --blur-radius 0.5 --blur-every 4  --px-abs-benefit-percentile 90 --max-iter 1000 --lr-policy progress --lr-params "{'max_lr': 100000000, 'desired_prog': 2.0}") ;;
  *) echo "table1_layer.sh: error: --row must be 1, 2, 3 or 4, got '$row'" >&2; exit 2 ;;
esac
echo "== Table 1, row $row, whole layer -> $prefix"
"$PY" optimize_image.py --push-layer fc8 --push-channel all --batch-size 16 --resume --output-prefix "$prefix" \
  "${flags[@]}" ${args[@]+"${args[@]}"}
"$PY" -m dvtoolbox.cli.gallery "$(dirname "$prefix")" ${gallery_args[@]+"${gallery_args[@]}"}
