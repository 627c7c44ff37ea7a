"""Float32 linear layers on CPU through oneDNN with prepacked weights.

Speculative decoding pays off when a pass over a few tokens costs about as much as a pass over
one. On CPUs where PyTorch's float32 ``linear`` goes to MKL's sgemm, that is not so for small
token counts: on the AMD EPYC this project is benchmarked on, the SmolLM2-135M target's pass
over 2 or 3 tokens costs 1.5-2x its pass over 1 token (MKL's small-M path; bfloat16 goes to
oneDNN and is flat). oneDNN's float32 matmul on a weight reordered once into its blocked layout
(what ``torch.compile`` uses on CPU, ``torch.ops.mkldnn._linear_pointwise``) is about flat up to
~6 tokens and no slower for one (``bench/packing.py``). :func:`pack_for_cpu` swaps a model's
float32 ``nn.Linear`` layers for :class:`PackedLinear`, which shares the same weight and bias
parameters (tied weights stay tied, ``state_dict`` is unchanged) and keeps the packed copy
beside them.

The packed layer computes the same function as ``nn.Linear`` in float32 with a different
summation order (outputs differ by float32 rounding, ~1e-5 relative or less), exactly as MKL's
results already differ between token counts. Use the packed model for every configuration you
compare, the baseline included. ``PackedLinear`` falls back to ``F.linear`` whenever the packed
copy does not apply: autograd recording, an input not on the CPU or not float32, or weights
changed (in place or replaced) since packing. Deep copies and pickles pack again from their own
weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PackedLinear", "pack_for_cpu", "packing_available"]


def packing_available() -> bool:
    """Whether this torch build has oneDNN and the packed linear operators."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class PackedLinear(torch.nn.Module):
    """``nn.Linear`` sharing ``linear``'s parameters, computed by oneDNN on a prepacked weight."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        if linear.weight.dtype != torch.float32 or linear.weight.device.type != "cpu":
            raise ValueError(
                "linear must hold a float32 CPU weight, got "
                f"{linear.weight.dtype} on {linear.weight.device}"
            )
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self._pack()

    def _pack(self) -> None:
        with torch.no_grad():
            self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None)
        # What identifies the weights packed: in-place updates bump ``_version``; ``.data``
        # replacement (``module.half().float()``, ``.to(...)``) changes ``data_ptr``.
        self._weight_key = (self.weight.data_ptr(), self.weight._version)
        self._bias_key = None if self.bias is None else (self.bias.data_ptr(), self.bias._version)

    # The packed copy is an opaque oneDNN tensor that cannot be pickled: leave it out of
    # deepcopy / torch.save and pack again from the (copied) weight.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_packed", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._pack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Straight-line checks: this runs ~200 times per forward pass of a 30-layer model.
        weight, bias = self.weight, self.bias
        if (
            x.is_cpu
            and x.dtype is torch.float32
            and weight.is_cpu
            and (weight.data_ptr(), weight._version) == self._weight_key
            and (bias is None or (bias.data_ptr(), bias._version) == self._bias_key)
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        ):
            if bias is not None:
                bias = bias.detach()
            return torch.ops.mkldnn._linear_pointwise(x, self._packed, bias, "none", [], "")
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, packed=oneDNN"
        )


def pack_for_cpu(model: torch.nn.Module) -> int:
    """Replaces ``model``'s float32 CPU ``nn.Linear`` layers by :class:`PackedLinear`, in place.

    Returns how many layers were replaced: 0 when this torch build lacks oneDNN, or when the
    model has no float32 CPU linear layer (a bfloat16 model already runs on oneDNN). Idempotent.
    The packed copies take as much memory again as the replaced weights.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not packing_available():
        return 0
    replacements = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Linear
        and child.weight.dtype == torch.float32
        and child.weight.device.type == "cpu"
    ]
    packed: dict[int, PackedLinear] = {}  # one packed copy per distinct nn.Linear
    for parent, name, child in replacements:
        if id(child) not in packed:
            packed[id(child)] = PackedLinear(child)
        setattr(parent, name, packed[id(child)])
    return len(packed)
