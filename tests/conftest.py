"""Fixtures every test module can use: a fixed seed and INFO logs for all, one OpenMP thread and the
CPU kernels on request.

The tiny models themselves are in tests/fixtures.py."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator

import pytest
import torch

from tinyseek.inference import cpu_kernels


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    logging.getLogger("tinyseek").setLevel(logging.INFO)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny ops are microseconds long: on a shared 2-core machine a second OpenMP thread only adds
    synchronisation and made them up to ~100x slower. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cpu_kernels_built() -> None:
    """The compiled engine's C++ CPU kernels, built here (~30-40 s the first time); where a compiler
    exists they must build (a failure would otherwise only show as slower compiled engines)."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: compiled engines gather and use BLAS instead")
    assert cpu_kernels.load(), "a C++ compiler is here but the CPU kernels did not build"
