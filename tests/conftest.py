"""Fixtures every test module can use: a fixed seed and INFO logs for all, one OpenMP thread on request.

The tiny models themselves are in tests/fixtures.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch


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
