"""Accelerator peaks: the numbers a cost estimate divides by, each with the datasheet it comes from.

Design choices:
- Peaks are dense tensor-core throughput (no 2:4 sparsity): vendors print the sparse figure first, and
  halving it is what a dense matmul can reach. MFU is always quoted against the dense peak of the
  precision the model trains in.
- Memory is in GB (10^9 bytes) and bandwidth in TB/s, as the datasheets print them.
- An accelerator without a tensor-core path for a precision (A100 has no FP8) has `None` there, and asking
  for it is an error rather than a silent fallback.
- CPUs have no fixed peak (cores × clock × vector width vary by part), so the CPU entry carries only a
  note; use `--peak-tflops` for it, or price a measured run instead.
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("bf16", "fp8")
# Bytes per stored weight at each precision (FP8 block scales and the bf16 norms/embeddings ignored).
WEIGHT_BYTES = {"bf16": 2, "fp8": 1}


@dataclass(frozen=True)
class Accelerator:
    key: str
    name: str
    bf16_tflops: float | None
    fp8_tflops: float | None
    memory_gb: float | None
    bandwidth_tb_s: float | None
    source: str

    def peak_tflops(self, precision: str) -> float:
        """Dense peak TFLOP/s at `precision`; a clear error when the part has none."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
        peak = self.bf16_tflops if precision == "bf16" else self.fp8_tflops
        if peak is None:
            raise ValueError(
                f"gpu={self.key!r} has no published dense {precision} peak ({self.source}); "
                "pass --peak-tflops instead"
            )
        return peak


ACCELERATORS: dict[str, Accelerator] = {
    a.key: a
    for a in (
        Accelerator("h800", "NVIDIA H800 SXM5 80GB", 989.5, 1979.0, 80, 3.35,
                    "NVIDIA H800 Tensor Core GPU datasheet (same SXM5 compute as H100, NVLink 400 GB/s)"),
        Accelerator("h100", "NVIDIA H100 SXM5 80GB", 989.5, 1979.0, 80, 3.35,
                    "NVIDIA H100 Tensor Core GPU datasheet, SXM column (1,979 / 3,958 TFLOPS with sparsity)"),
        Accelerator("h200", "NVIDIA H200 SXM 141GB", 989.5, 1979.0, 141, 4.8,
                    "NVIDIA H200 Tensor Core GPU datasheet, SXM column (1,979 / 3,958 TFLOPS with sparsity)"),
        Accelerator("a100", "NVIDIA A100 SXM4 80GB", 312.0, None, 80, 2.039,
                    "NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM column (no FP8 tensor cores)"),
        Accelerator("b200", "NVIDIA B200 (HGX, 1000 W)", 2250.0, 4500.0, 180, 7.7,
                    "NVIDIA HGX B200 / DGX B200 datasheet, per GPU (4.5 / 9 PFLOPS with sparsity)"),
        Accelerator("mi300x", "AMD Instinct MI300X 192GB", 1307.4, 2614.9, 192, 5.3,
                    "AMD Instinct MI300X accelerator data sheet (dense peaks)"),
        Accelerator("cpu", "CPU (any)", None, None, None, None,
                    "no fixed peak: cores × clock × FLOPs/cycle depend on the part; use --peak-tflops, "
                    "or price a measured run with --measured"),
    )
}  # fmt: skip


def accelerator(key: str) -> Accelerator:
    """Look a part up by key, case-insensitively; the error lists what is known."""
    found = ACCELERATORS.get(key.strip().lower())
    if found is None:
        raise ValueError(f"unknown gpu={key!r}: expected one of {', '.join(ACCELERATORS)} (or --peak-tflops)")
    return found
