"""Facts about accelerators that several layers need (no torch import: the dry run and
``optnb --help`` read them)."""

from __future__ import annotations

#: dense bf16 tensor-core peaks (TFLOP/s) by device-name substring (first match wins, so A100
#: precedes A10 and L40S precedes L4). NVIDIA datasheets, dense = half the "with sparsity"
#: figure: H100 SXM and H200 SXM 989 (1,979 sparse; the H100 PCIe is 756), A100 312, L40S 362,
#: L4 121, A10 125, RTX 4090 165; V100 has no bf16: its fp16 tensor-core peak, 125.
#: The MFU denominators of ``optnb bench`` and the dry-run cost model (``optnb.experiments.costs``);
#: ``--peak-tflops`` overrides.
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
    "4090": 165.0, "V100": 125.0,
}
