#!/usr/bin/env bash
# Every output of both command lines for a fixed set of runs, to compare two revisions byte for byte (a refactor
# must change no output file). Usage:
#   scripts/byte_identity.sh OUTDIR [CHECKOUT]     # runs CHECKOUT's code (default: this checkout) into OUTDIR
#   diff -r OUTDIR_BEFORE OUTDIR_AFTER             # then compare; `seconds:` lines of visualize's info.txt are
#                                                  # blanked (a wall-clock time), nothing else
# PYTHON (default python3) must have dvtoolbox's dependencies; CHECKOUT is put first on PYTHONPATH, so the
# installed dvtoolbox does not matter. CPU only, a few minutes on 2 cores.
set -euo pipefail
out=$(realpath -m "$1"); src=$(realpath "${2:-$(dirname "$0")/..}")
PY=${PYTHON:-python3}
mkdir -p "$out"
photo="$src/tests/data/images/$(ls "$src/tests/data/images" | grep -i -m1 '\.jpe\?g$')"
export PYTHONPATH="$src" CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1
cd "$src"
opt() { local name=$1; shift; echo "== optimize $name"; "$PY" optimize_image.py --device cpu --output-prefix "$out/$name/opt" "$@" >"$out/$name.stdout"; }
viz() { local name=$1; shift; echo "== visualize $name"; "$PY" visualize.py --device cpu --output-dir "$out/$name" "$@" >"$out/$name.stdout"; }
common=(--push-layer fc8 --push-channel 130 --max-iter 20)
opt row1 "${common[@]}" --decay 0      --blur-radius 0.5 --blur-every 4  --small-norm-percentile 50     --lr-policy progress --lr-params "{'max_lr': 100.0, 'desired_prog': 2.0}"
opt row2 "${common[@]}" --decay 0.3    --blur-radius 0   --blur-every 0  --small-norm-percentile 20     --lr-policy constant --lr-params "{'lr': 100.0}"
opt row3 "${common[@]}" --decay 0.0001 --blur-radius 1.0 --blur-every 4                                 --lr-policy constant --lr-params "{'lr': 100.0}"
opt row4 "${common[@]}" --decay 0      --blur-radius 0.5 --blur-every 4  --px-abs-benefit-percentile 90 --lr-policy progress --lr-params "{'max_lr': 100000000, 'desired_prog': 2.0}"
opt conv --push-layer _blocks.10 --push-channel 7 --push-spatial "(7,7)" --max-iter 20 --lr-params "{'lr': 100.0}" --image-dtype float32
opt objective --objective "fc8:130 + 0.5*fc8:131" --max-iter 20 --lr-params "{'lr': 100.0}"
opt layer --push-channel 0:6 --batch-size 3 --max-iter 15 --decay 0.0001 --blur-radius 1.0 --blur-every 4 --lr-params "{'lr': 100.0}"
opt resume --push-channel 0:4 --batch-size 2 --max-iter 10 --lr-params "{'lr': 100.0}"
rm "$out"/resume/opt_fc8_0002_0_best_X.jpg
opt resume2 --push-channel 0:4 --batch-size 2 --max-iter 10 --lr-params "{'lr': 100.0}" --output-prefix "$out/resume/opt" --resume
"$PY" optimize_image.py --list-layers >"$out/list_layers.stdout"
"$PY" -m dvtoolbox.cli.gallery "$out/layer" >"$out/gallery.stdout"
viz lucid --objective "_blocks.10:97" --steps 12 --size 96
viz class --objective fc8:130 --recipe class --steps 8 --size 96
viz maco --objective fc8:130 --recipe maco --steps 8 --size 96
viz accent --objective fc8:130 --recipe accent --steps 8 --start-image "$photo"
viz dvt --objective fc8:130 --param dvt --steps 8 --decay 0.0001 --blur-radius 1.0 --blur-every 4 --lr 2 --lr-policy constant --lr-params "{'lr': 100.0}"
viz alpha --objective fc8:1 --alpha --steps 8 --size 64
viz views --objective "fc8:1 + fc8:2@1" --batch 2 --views 2 --steps 6 --size 96 --thresholds 3,6
# wall-clock lines and the results folder's absolute paths are not outputs of the computation
find "$out" -name '*info.txt' -exec sed -i 's/^seconds: .*/seconds: -/' {} +
grep -rl --include='*.stdout' --include='*.json' --include='*.yaml' --include='*.html' "$out" "$out" | xargs -r sed -i "s#$out#OUT#g"
echo "done: $out"
