#!/usr/bin/env bash
# GPU check of optnb: correctness on the device as pytest tests, then speed as side-by-side ratios.
#
#   OUT=/some/folder benchmarks/gpu_check.sh     # default OUT: results/gpu_check; device cuda
#   DRY_RUN=1 benchmarks/gpu_check.sh            # (or --cpu) the whole script on the CPU, tiny sizes
#
# 1. correctness: `pytest -m gpu tests/device -rA --junitxml $OUT/device_checks.xml` (xunit1, so
#    each check's numbers are properties in the XML) with OPTNB_CHECK_DEVICE=cuda: the GPU-resident
#    loader (normalisation equals the CPU's, exact data order on resume, rank shards == global
#    batch), HBNet(beta=0) == ResNet, fused SGD == foreach SGD, `fit` with bf16 + channels_last
#    and checkpoint resume, the divergence guard, ResNet-20 learning the embedded digits; NAS:
#    grouped mixed ops == naive (fp32), bf16 close to fp32, finite-difference vs exact HVP
#    (informative), exact search resume. Tolerances: the tests' docstrings. No timing is asserted.
# 2. speed, `optnb bench` (models): interleaved train steps of resnet56/hbnet56 and
#    densenet40/agdnet40, peak memory, one timed 50k-image engine epoch per model (the second of
#    two), MFU, and the engine against a torchvision DataLoader loop;
# 3. speed, `optnb bench --suite nas --order 1` and `--order 2`: the naive (DARTS-style) search step
#    against the optimised one at the paper's search size, interleaved;
# 4. `optnb bench --suite nas --epoch`: one paper-size first-order search epoch (25k + 25k
#    GPU-resident images, batch 64), extrapolated to the 50-epoch search in GPU-days;
# 5. `optnb bench --suite nas --partial 4`: PC-DARTS's partial channels (K = 4) against the full
#    supernet in the darts, hb and agd spaces at the paper's search size: step time and peak
#    memory, interleaved, full / partial ratios;
# 6. `optnb bench --suite memory`: the reversible HBNet against the ordinary one, n = 9 ... 144
#    blocks per stage: saved bytes, the allocator's peak (`max_memory_allocated`), time per step,
#    and the gradient error per beta and depth in float64 and float32.
# 7. `optnb bench --suite compile`: eager against compiled (torch.compile, Inductor) against graphed
#    (reduce-overhead: CUDA graphs) training steps of resnet56/hbnet56/densenet40/agdnet40 and the
#    DARTS_V2 evaluation network (C = 36, 20 cells, batch 96), bf16, interleaved: step times,
#    speed-ups over today's eager channels_last step, compile time and the steps it takes to pay,
#    peak memory, the HBNet/ResNet and AGDNet/DenseNet ratios (compile-latest.{json,md}).
# 8. (run first) `optnb bench --suite rows`: the training step of every kind of run in the paper plan (each
#    Table 1/2 model, each search space and order, the CIFAR and ImageNet evaluation networks) at
#    the paper's configuration and batch: ms/step, counted FLOPs, the share of the peak (the cost
#    model's utilisation, optnb/experiments/costs.py) and peak memory (rows-latest.{json,md}).
# A short device session runs a subset: GPU_CHECK_STEPS="bench_rows:240 device_checks:200" runs
# only those steps, each under `timeout` of its seconds (NAME alone: no limit), in the script's order.
# A failed step does not stop the later ones (one device session yields every number); the exit
# status is 1 when any step failed. Writes, under $OUT: environment.txt, summary.txt (exit status
# and seconds of each step), device_checks.{xml,log}, bench-<stamp>.{json,md} and latest.{json,md}
# (models), nas-latest.json, nas-order2-latest.json, nas-epoch-latest.json, nas-partial-latest.json,
# memory-latest.json, compile-latest.{json,md}, rows-latest.{json,md} and one .log per step.
# Installs nothing: it uses $PYTHON, else .venv/bin/python, else python3, with the checkout on
# PYTHONPATH (pytest must be installed there). Expected wall time on one H200: a few minutes
# (about 5; most of it the timed epochs), plus the compile suite's 10 Inductor compilations (an
# estimate, never measured: 10-15 minutes). The CPU dry run takes about 3 minutes on 2 cores, plus
# about 1.5 for the compile suite.
set -uo pipefail

cd "$(dirname "$0")/.."
DRY_RUN="${DRY_RUN:-0}"
for arg in "$@"; do
  case "$arg" in
    --cpu) DRY_RUN=1 ;;
    *) echo "gpu_check: unknown argument '$arg' (valid: --cpu)" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OPTNB_DOWNLOAD=0                      # never try to download a dataset
export OPTNB_HEADLESS=1

if [[ "$DRY_RUN" != 0 ]]; then
  DEVICE=cpu
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
  export OPTNB_CHECK_DEVICE=cpu OPTNB_CHECK_TINY=1
  MODELS_ARGS=(--quick --pair resnet8:hbnet8)  # CPU bench sizes, one small pair
  EPOCH_ARGS=(--epoch-images 256)
  MEMORY_ARGS=(--quick)
  # tiny models, traced without C++ code generation (Inductor's CPU compile would take minutes)
  COMPILE_ARGS=(--quick --models resnet8,hbnet8,darts_v2 --compile aot_eager)
  ROWS_ARGS=(--batch 2 --steps 1 --only train:resnet56 --only search:darts:1 --only evaluate:cifar)
else
  DEVICE=cuda
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
  export OPTNB_CHECK_DEVICE=cuda
  MODELS_ARGS=()
  EPOCH_ARGS=()
  MEMORY_ARGS=()
  COMPILE_ARGS=(--models resnet56,hbnet56,densenet40,agdnet40,darts_v2)
  ROWS_ARGS=()
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $([[ "$DRY_RUN" != 0 ]] && echo 'dry run on the CPU (tiny sizes; timings mean nothing)' || echo 'cuda')"
  echo "python: $("$PYTHON" --version 2>&1) ($PYTHON)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv,noheader \
    2>/dev/null || echo "nvidia-smi: not available"
} | tee "$OUT/environment.txt"

DEVICE="$DEVICE" "$PYTHON" - <<'PY' 2>&1 | tee -a "$OUT/environment.txt"
import os, sys
try:
    import pytest, torch, torchvision  # noqa: F401
except ImportError as exc:
    sys.exit(f"gpu_check: {exc}; run it with a Python that has torch, torchvision and pytest (PYTHON=...)")
if os.environ["DEVICE"] == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (DRY_RUN=1 runs the script on the CPU)")
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {gpu}, pytest {pytest.__version__}")
PY
if [[ ${PIPESTATUS[0]} -ne 0 ]]; then exit 2; fi

status=0
: > "$OUT/summary.txt"
# step NAME COMMAND...: run it (if GPU_CHECK_STEPS selects it), log to $OUT/NAME.log, record
# exit status and seconds
step() {
  local name=$1 t0 rc limit=() item
  shift
  if [[ -n "${GPU_CHECK_STEPS:-}" ]]; then
    local selected=0
    for item in $GPU_CHECK_STEPS; do
      if [[ "${item%%:*}" == "$name" ]]; then
        selected=1
        if [[ "$item" == *:* ]]; then limit=(timeout --signal=INT --kill-after=20 "${item#*:}"); fi
      fi
    done
    if [[ $selected == 0 ]]; then return; fi
  fi
  echo "== $name: $*"
  t0=$(date +%s)
  "${limit[@]}" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  printf '%-14s exit %-3s %5ss  %s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$*" \
    | tee -a "$OUT/summary.txt"
  if [[ $rc -ne 0 ]]; then status=1; fi
}

step bench_rows "$PYTHON" -m optnb bench --suite rows --device "$DEVICE" --out "$OUT" "${ROWS_ARGS[@]}"
step device_checks "$PYTHON" -m pytest -m gpu tests/device -rA -p no:cacheprovider \
  --junitxml "$OUT/device_checks.xml" -o junit_family=xunit1
step bench_models "$PYTHON" -m optnb bench --device "$DEVICE" --out "$OUT" "${MODELS_ARGS[@]}"
step bench_nas_1 "$PYTHON" -m optnb bench --suite nas --order 1 --device "$DEVICE" --out "$OUT"
step bench_nas_2 "$PYTHON" -m optnb bench --suite nas --order 2 --device "$DEVICE" --out "$OUT"
step bench_epoch "$PYTHON" -m optnb bench --suite nas --epoch --device "$DEVICE" --out "$OUT" \
  "${EPOCH_ARGS[@]}"
step bench_partial "$PYTHON" -m optnb bench --suite nas --partial 4 --device "$DEVICE" --out "$OUT"
step bench_memory "$PYTHON" -m optnb bench --suite memory --device "$DEVICE" --out "$OUT" \
  "${MEMORY_ARGS[@]}"
step bench_compile "$PYTHON" -m optnb bench --suite compile --device "$DEVICE" --out "$OUT" \
  "${COMPILE_ARGS[@]}"

echo "gpu_check: exit $status; results in $OUT"
cat "$OUT/summary.txt"
exit "$status"
