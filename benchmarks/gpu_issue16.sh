#!/usr/bin/env bash
# Issue 16's GPU measurements in one command, sized for one lent GPU (H100 / H200 class), at most 9.5 minutes:
#
#   bash benchmarks/gpu_issue16.sh            # results in $OUT (default gpu_issue16_results/), one file per stage
#
# 1. a whole fc8 layer, Table-1 row 3, B = 512: units/s, TFLOP/s and the projected 1000-unit layer time for eager and
#    graphs in float32, then in bf16, then eager TF32 (bench_layer_units.py; each compile's seconds in "warm-up s");
# 2. the per-iteration obj deviation of each mode from eager true float32 (precision_modes.py, 40 iterations);
# 3. full runs: 5 units x 1000 iterations per precision, the best images judged by Lite0/1/2;
# 4. tests/gpu: the engines on CUDA (no host sync in an iteration, CUDA graphs = the compiled step's bits, modes).
# Each stage has its own time limit and writes its file as it ends, so an interrupted run still reports the stages
# before. Run from the repository root with the project's Python (PYTHON=.venv/bin/python to choose it).
set -u
OUT=${OUT:-gpu_issue16_results}
PY=${PYTHON:-python}
mkdir -p "$OUT"
stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, stdout and stderr into $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "$name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/stages.txt"
}
{ nvidia-smi; "$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } > "$OUT/machine.txt" 2>&1
stage layer_b512_float32 150 "$PY" benchmarks/bench_layer_units.py --device cuda --batch-sizes 512 --iters 20 \
    --rounds 2 --engines eager,graphs --precisions float32
stage layer_b512_bf16 130 "$PY" benchmarks/bench_layer_units.py --device cuda --batch-sizes 512 --iters 20 \
    --rounds 2 --engines eager,graphs --precisions bf16
stage layer_b512_tf32 35 "$PY" benchmarks/bench_layer_units.py --device cuda --batch-sizes 512 --iters 20 \
    --rounds 2 --engines eager --precisions tf32
stage deviation 45 "$PY" benchmarks/precision_modes.py --device cuda --iters 40 \
    --modes eager:float32,folded:float32,eager:tf32,eager:bf16
stage full_runs 60 "$PY" benchmarks/precision_modes.py --device cuda --iters 2 --full-iters 1000 \
    --units 1,9,107,130,145 --modes eager:float32,eager:tf32,eager:bf16
stage tests_gpu 120 "$PY" -m pytest -q -p no:cacheprovider tests/gpu
cat "$OUT/stages.txt"
