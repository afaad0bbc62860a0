#!/usr/bin/env bash
# The four rows of Table 1 of Yosinski et al. (2015), in the order of the paper, exactly as the original toolbox's
# documentation gives them. Extra arguments are passed to every row, e.g.:
#   scripts/table1.sh --push-layer fc8 --push-channel 130
#   scripts/table1.sh --deploy-proto caffenet-yos-deploy.prototxt --net-weights caffenet-yos-weights --mean "'ilsvrc_2012_mean.npy'"
# Each row writes to optimize_results/table1_row<N>_... (change with --output-prefix in the arguments: the row
# number is appended to it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
prefix=optimize_results/table1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --output-prefix) prefix=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
run() { local row=$1; shift; echo "== Table 1, row $row"; "$PY" optimize_image.py --output-prefix "${prefix}_row${row}" "$@" ${args[@]+"${args[@]}"}; }
run 1 --decay 0      --blur-radius 0.5 --blur-every 4  --small-norm-percentile 50     --max-iter 500  --lr-policy progress --lr-params "{'max_lr': 100.0, 'desired_prog': 2.0}"
run 2 --decay 0.3    --blur-radius 0   --blur-every 0  --small-norm-percentile 20     --max-iter 750  --lr-policy constant --lr-params "{'lr': 100.0}"
run 3 --decay 0.0001 --blur-radius 1.0 --blur-every 4                                 --max-iter 1000 --lr-policy constant --lr-params "{'lr': 100.0}"
run 4 --decay 0      --blur-radius 0.5 --blur-every 4  --px-abs-benefit-percentile 90 --max-iter 1000 --lr-policy progress --lr-params "{'max_lr': 100000000, 'desired_prog': 2.0}"
