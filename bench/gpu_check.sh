#!/usr/bin/env bash
# GPU check in one go (about 10 minutes on one CUDA GPU): every figure of issue 24 that a GPU changes, from the
# repository root:
#
#   bench/gpu_check.sh [--dry-run] [OUT_DIR]     # PYTHON=... picks the interpreter (default: python)
#
#   --dry-run   print every step's command line and check that each module it runs exists; run nothing
#               (no GPU needed: `bash -n bench/gpu_check.sh && bench/gpu_check.sh --dry-run` is the smoke test)
#
# Steps (each with its own time limit; the script goes on after a failed step and exits non-zero if any failed):
# 1. conformance vectors on CUDA: fp32 within each vector's tolerance; float16 autocast within 1 mm (3D) and
#    0.05 px (2D keypoints)                                                   -> OUT_DIR/conformance.txt
# 2. issue item 1, the default profile end to end (HRNet-W32 + CA-PF images, P-STMO-243 clip, flip test) on CUDA,
#    fp32 then float16: bench.peer_mediapipe without MediaPipe (it is a CPU library; the realtime profile and
#    item 2 are CPU figures: run bench.peer_mediapipe on the CPU for them); PEER_BASELINE=DIR adds an older
#    tree's default profile beside it (a `git worktree` of the commit to compare)  -> OUT_DIR/peer_default*.txt
# 3. issue item 3, the network suite on CUDA (fast vs reference, batch 1/8/32, % of the fp32 matmul peak)
#                                                                             -> OUT_DIR/suite/bench.{json,md,png}
# 4. issue item 4, serving overhead per layer (bare, engine, REST, gRPC, remote worker) with the engine on CUDA
#                                                                             -> OUT_DIR/overhead/overhead.{json,md}
# 5. end-to-end clip frames/s through the engine (HRNet-W32, 48 frames of 640x480), fp32 and float16
#                                                                             -> OUT_DIR/clip*.txt
# GPU_CHECK_DEVICE=cpu runs quick versions of the steps on the CPU (tiny models) to exercise the script.
set -uo pipefail

DRY=0
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
PY=${PYTHON:-python}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
OUT=${1:-bench/gpu_check_out}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
failed=0

module_of() {  # the module a command line runs with `-m`, if any
    local prev=""
    for arg in "$@"; do
        [ "$prev" = -m ] && { echo "$arg"; return; }
        prev=$arg
    done
}

step() {  # step NAME SECONDS LOGFILE COMMAND...
    local name=$1 limit=$2 log=$3
    shift 3
    if [ "$DRY" -eq 1 ]; then
        local module
        module=$(module_of "$@")
        printf '%s (limit %ss) > %s\n   %s\n' "$name" "$limit" "$log" "$*"
        if [ -n "$module" ] && ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)"; then
            echo "   MISSING: module $module"; failed=1
        fi
        return
    fi
    local start=$SECONDS
    echo "== $name (limit ${limit}s)"
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start))s"
    [ "$rc" -eq 0 ] || failed=1
}

if [ "$DRY" -eq 0 ]; then
    mkdir -p "$OUT"
    if [ "$DEVICE" = cuda ]; then
        "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
            echo "gpu_check: no CUDA device visible to torch ($PY); GPU_CHECK_DEVICE=cpu exercises the script" \
                "on the CPU, --dry-run prints the commands" >&2
            exit 2
        }
        "$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    fi
fi

HALF=()  # float16 autocast is judged on CUDA only (CPU autocast is bfloat16: 8 mantissa bits, not the target)
[ "$DEVICE" = cuda ] && HALF=(--half)
step "conformance vectors on $DEVICE" 150 "$OUT/conformance.txt" \
    "$PY" -m bench.gpu_conformance --device "$DEVICE" "${HALF[@]}"

BASE=()
[ -n "${PEER_BASELINE:-}" ] && BASE=(--baseline "$PEER_BASELINE")
if [ "$DEVICE" = cuda ]; then
    PEER=("$PY" -m bench.peer_mediapipe --no-mediapipe --device cuda --profiles default --rounds 3 --images 20
          --default-frames 60 "${BASE[@]}")
    step "default profile end to end on cuda (fp32)" 100 "$OUT/peer_default.txt" "${PEER[@]}"
    step "default profile end to end on cuda (float16)" 100 "$OUT/peer_default_half.txt" "${PEER[@]}" --half
    step "network suite on cuda" 200 "$OUT/suite.txt" \
        "$PY" -m bench --device cuda --out "$OUT/suite" --rounds 5 --seconds 0.5
    step "serving overhead per layer, engine on cuda" 90 "$OUT/overhead.txt" \
        env POSE3D_DEVICE=cuda "$PY" -m bench overhead --rounds 2 --out "$OUT/overhead"
    step "end-to-end clip frames/s on cuda (fp32)" 45 "$OUT/clip.txt" \
        "$PY" -m bench.clip --device cuda --frames 48 --batch 32 --lifter pstmo-27 --window 27
    step "end-to-end clip frames/s on cuda (float16)" 45 "$OUT/clip_half.txt" \
        env POSE3D_HALF_PRECISION=true "$PY" -m bench.clip --device cuda --frames 48 --batch 32 --lifter pstmo-27 \
        --window 27
else  # a smoke run of the same steps on the CPU (tiny models, short runs)
    step "default profile end to end on cpu (quick)" 300 "$OUT/peer_default.txt" \
        "$PY" -m bench.peer_mediapipe --no-mediapipe --profiles default --rounds 1 --images 1 --default-frames 4 \
        "${BASE[@]}"
    step "network suite on cpu (quick)" 300 "$OUT/suite.txt" \
        "$PY" -m bench --device cpu --quick --out "$OUT/suite"
    step "serving overhead per layer on cpu (quick)" 300 "$OUT/overhead.txt" \
        "$PY" -m bench overhead --rounds 1 --requests 4 --load-requests 8 --warmup 2 --out "$OUT/overhead"
    step "end-to-end clip frames/s on cpu (quick)" 300 "$OUT/clip.txt" \
        "$PY" -m bench.clip --device cpu --quick
fi

[ "$DRY" -eq 1 ] && { [ "$failed" -eq 0 ] && echo "gpu_check: dry run, every module found" || echo "gpu_check: dry run, modules missing"; exit "$failed"; }
echo "outputs in $OUT"
if [ "$failed" -ne 0 ]; then echo "gpu_check: FAILED (see above)"; exit 1; fi
echo "gpu_check: all steps passed"
