"""Builds tinyseek's C++ CPU kernels for the CPU that runs them, through torch's cpp_extension.

`-march=native`, so the build's name holds a hash of this CPU's feature flags: a cache shared between
machines (`TORCH_EXTENSIONS_DIR`) never hands one CPU a binary built for another's instructions. torch
rebuilds when a source or a flag changes; callers pass a header's hash as a flag for the same reason.
The kernels are optional everywhere: a caller catches the failure and keeps its portable path.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from pathlib import Path

import torch


def build(name: str, sources: Sequence[Path], extra_cflags: Sequence[str] = (), openmp: bool = False) -> None:
    """Build (first time, tens of seconds) and load `sources` as a library of torch ops; raises where it
    cannot (no compiler or ninja, a compile error). `openmp`: at::parallel_for spreads work over torch's
    threads (without -fopenmp its header runs the whole range on the calling thread); the library links
    libgomp by name, so the copy torch loaded is the one it uses."""
    from torch.utils.cpp_extension import load

    isa = f"{torch.backends.cpu.get_cpu_capability().lower()}_{_cpu_features()}"
    load(
        name=f"{name}_{isa}",
        sources=[str(source) for source in sources],
        extra_cflags=[
            "-O3",
            "-march=native",
            "-ffast-math",
            "-fopenmp" if openmp else "-fopenmp-simd",
            *extra_cflags,
        ],
        extra_ldflags=["-fopenmp"] if openmp else [],
        is_python_module=False,
    )


def header_flag(macro: str, header: Path) -> str:
    """`-D<macro>=<hash of header>`: a rebuild when the header changes."""
    return f"-D{macro}={hashlib.sha1(header.read_bytes()).hexdigest()[:10]}"


def _cpu_features() -> str:
    """A short hash of this CPU's feature flags (what `-march=native` compiles for)."""
    flags = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return hashlib.sha1(flags.encode()).hexdigest()[:10]
