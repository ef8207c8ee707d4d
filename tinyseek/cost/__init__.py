"""Cost accounting: FLOPs, accelerator peaks, training bills, inference memory, measured runs."""

from tinyseek.cost.flops import DecodeFlops, TrainingFlops, decode_flops_per_token, training_flops_per_token
from tinyseek.cost.hardware import ACCELERATORS, Accelerator, accelerator
from tinyseek.cost.measured import Throughput, cost_per_million_tokens, read_throughput
from tinyseek.cost.memory import CacheFit, KVCacheBytes, cache_fit, kv_cache_bytes_per_token
from tinyseek.cost.training import TrainingCost, training_cost

__all__ = [
    "ACCELERATORS",
    "Accelerator",
    "CacheFit",
    "DecodeFlops",
    "KVCacheBytes",
    "Throughput",
    "TrainingCost",
    "TrainingFlops",
    "accelerator",
    "cache_fit",
    "cost_per_million_tokens",
    "decode_flops_per_token",
    "kv_cache_bytes_per_token",
    "read_throughput",
    "training_cost",
    "training_flops_per_token",
]
