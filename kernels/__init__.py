"""hierspec.kernels: Triton kernels and their pure-torch twins.

Each kernel module ``<op>_triton.py`` (imports triton) has a twin ``<op>_torch.py`` (torch only)
that is its specification and CPU path; :mod:`hierspec.verify` dispatches between them. Only the
twins are imported here, so ``import hierspec`` never imports triton.

- ``verify``: speculative verification (accept / resample / bonus). Twin:
  :func:`verify_torch`; kernel: ``hierspec.kernels.verify_triton.verify_triton``.
"""

from .verify_torch import VerifyNoise, draw_verify_noise, processed_target_probs, verify_torch

__all__ = ["VerifyNoise", "draw_verify_noise", "processed_target_probs", "verify_torch"]
