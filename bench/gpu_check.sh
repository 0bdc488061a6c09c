#!/usr/bin/env bash
# GPU check in one go (about 10 minutes on one CUDA GPU), from the repository root:
#
#   bench/gpu_check.sh [OUT_DIR]          # PYTHON=... to pick the interpreter (default: python)
#
# 1. the conformance vectors on CUDA: fp32 within each vector's tolerance; float16 autocast within 1 mm (3D)
#    and 0.05 px (2D keypoints)                                   -> OUT_DIR/conformance.txt
# 2. the network suite on CUDA (fast vs reference, batch 1/8/32, % of the fp32 matmul peak)
#                                                                 -> OUT_DIR/suite/bench.{json,md,png}
# 3. end-to-end clip frames/s through the engine (HRNet-W32 detector, 48 frames of 640x480, CUDA)
#                                                                 -> OUT_DIR/clip.txt
# Each step has its own time limit so the whole stays within 10 minutes; the script goes on after a failed
# step and exits non-zero if any failed. Set GPU_CHECK_DEVICE=cpu to exercise the script without a GPU.
set -uo pipefail

PY=${PYTHON:-python}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
OUT=${1:-bench/gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
failed=0

step() {  # step NAME SECONDS LOGFILE COMMAND...
    local name=$1 limit=$2 log=$3
    shift 3
    local start=$SECONDS
    echo "== $name (limit ${limit}s)"
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start))s"
    [ "$rc" -eq 0 ] || failed=1
}

if [ "$DEVICE" = cuda ]; then
    "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
        echo "no CUDA device visible to torch"; exit 2; }
    "$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi

HALF=()  # float16 autocast is judged on CUDA only (CPU autocast is bfloat16: 8 mantissa bits, not the target)
[ "$DEVICE" = cuda ] && HALF=(--half)
step "conformance vectors on $DEVICE" 150 "$OUT/conformance.txt" \
    "$PY" -m bench.gpu_conformance --device "$DEVICE" "${HALF[@]}"

if [ "$DEVICE" = cuda ]; then
    step "network suite on $DEVICE" 300 "$OUT/suite.txt" \
        "$PY" -m bench --device "$DEVICE" --out "$OUT/suite" --rounds 5 --seconds 0.5
    step "end-to-end clip frames/s on $DEVICE" 120 "$OUT/clip.txt" \
        "$PY" -m bench.clip --device "$DEVICE" --frames 48 --batch 32 --lifter pstmo-27 --window 27
else  # a smoke run of the same steps on the CPU (tiny models)
    step "network suite on $DEVICE (quick)" 300 "$OUT/suite.txt" \
        "$PY" -m bench --device "$DEVICE" --quick --out "$OUT/suite"
    step "end-to-end clip frames/s on $DEVICE (quick)" 300 "$OUT/clip.txt" \
        "$PY" -m bench.clip --device "$DEVICE" --quick
fi

echo "outputs in $OUT"
if [ "$failed" -ne 0 ]; then echo "gpu_check: FAILED (see above)"; exit 1; fi
echo "gpu_check: all steps passed"
