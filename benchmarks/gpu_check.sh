#!/usr/bin/env bash
# GPU check for optnb's loader and training engine: correctness first, then epoch times.
#
#   OUT=/some/folder benchmarks/gpu_check.sh        # default OUT: results/gpu_check
#
# 1. correctness on the device (benchmarks/gpu_check.py): the GPU-resident loader (normalisation
#    equals the CPU's, exact data order on resume, rank shards == global batch), HBNet(beta=0) ==
#    ResNet, fused SGD == foreach SGD, bf16 + channels_last training with checkpoint/resume, the
#    NaN guard, and ResNet-20 learning the embedded digits;
# 2. speed (optnb bench): interleaved train steps of resnet56/hbnet56 and densenet40/agdnet40,
#    peak memory, one timed 50k-image engine epoch per model (the second of two), MFU, and the
#    engine against a torchvision DataLoader loop.
# Writes $OUT/gpu_check.{json,md} and $OUT/bench-*.{json,md}/latest.{json,md}. Installs nothing:
# it uses $PYTHON, else .venv/bin/python, else python3, with the checkout on PYTHONPATH.
# 3. NAS (optnb.nas.gpu_check): batched mixed ops, bf16, FD vs exact HVP, resume, one search epoch.
# Expected wall time on one H100/H200: about 3-5 minutes (most of it the timed epochs).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OPTNB_DOWNLOAD=0                      # never try to download a dataset
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "python: $("$PYTHON" --version 2>&1) ($PYTHON)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv,noheader \
    2>/dev/null || echo "nvidia-smi: not available"
} | tee "$OUT/environment.txt"

"$PYTHON" - <<'PY'
import sys
try:
    import torch, torchvision  # noqa: F401
except ImportError as exc:
    sys.exit(f"gpu_check: {exc}; run it with a Python that has torch/torchvision (PYTHON=...)")
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY

status=0
"$PYTHON" benchmarks/gpu_check.py --device cuda --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log" \
  || status=$?
# NAS (issue 5): batched mixed ops, bf16, finite-difference vs exact HVP, resume, one search epoch.
"$PYTHON" -m optnb.nas.gpu_check --device cuda --out "$OUT" --epoch 2>&1 | tee "$OUT/nas_gpu_check.log" \
  || status=$?
echo "gpu_check: exit $status; results in $OUT"
exit "$status"
