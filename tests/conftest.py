"""Shared pytest setup.

Without a CUDA device, Triton kernels run in Triton's CPU interpreter. ``triton.jit`` reads
``TRITON_INTERPRET`` when it decorates a kernel, so the variable is set here, before any test
module imports a kernel (importing torch does not import triton).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
