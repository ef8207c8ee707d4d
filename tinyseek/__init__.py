"""tinyseek: a readable, runnable open implementation of the DeepSeek-R1 system.

Data flows one way: config -> model -> (train | rl) -> checkpoint -> (inference engine -> server | eval).
Public names are imported lazily so that `tinyseek --help` and light tools stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "ModelConfig": "tinyseek.config",
    "Transformer": "tinyseek.model.transformer",
    "LLM": "tinyseek.inference.llm",
    "SamplingParams": "tinyseek.inference.sampling_params",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'tinyseek' has no attribute {name!r}")
