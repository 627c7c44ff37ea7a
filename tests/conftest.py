"""Shared pytest setup.

Without a CUDA device, Triton kernels run in Triton's CPU interpreter. ``triton.jit`` reads
``TRITON_INTERPRET`` when it decorates a kernel, so the variable is set here, before any test
module imports a kernel (importing torch does not import triton).
"""

import importlib
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_import():
    """Imports a bench script by name, with bench/ on ``sys.path`` while the requesting test
    module runs (the scripts import their harness by name)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        yield importlib.import_module
