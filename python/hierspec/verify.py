"""Speculative verification for every level of a hierarchy: validation, noise, dispatch.

:func:`verify` (probabilities) and :func:`verify_logits` (logits + temperature) are the one place
where hierspec accepts draft tokens and draws recovered / bonus tokens (:func:`verify_greedy`:
their outcome on one-hot rows, which needs no noise). The rule, its terms
(accepted / recovered / bonus tokens) and the noise layout are specified in
:mod:`hierspec.kernels.verify_torch`; this module

1. checks the inputs (types, shapes, dtypes, devices, values) and raises ``TypeError`` /
   ``ValueError`` naming the argument and the value, before anything is launched;
2. draws all the noise in one place from the caller's ``torch.Generator``
   (:func:`hierspec.kernels.draw_verify_noise`);
3. dispatches to the Triton kernel (:func:`hierspec.kernels.verify_triton.verify_triton`) or to
   its pure-torch twin (:func:`hierspec.kernels.verify_torch`). Both consume the same noise, so
   the same generator state gives the same output whichever backend runs.

Bad input with ``validate=False``: draft ids outside ``[0, vocab)`` are rejected (probability 0
under the target), never emitted, by both backends alike. Rows that are not distributions (NaN,
``inf``, no mass) are not detected here without ``validate``; callers that skip validation (the
engine) check their processed rows with :func:`hierspec.sampling.first_invalid_position`: one
reduction, read in the same host synchronization as ``num_accepted``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from hierspec.kernels.verify_torch import draw_verify_noise, output_row_layout, verify_torch
from hierspec.sampling import MIN_TEMPERATURE

BACKENDS = ("auto", "torch", "triton")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
Message = Callable[[tuple[int, ...]], str]  # error message for the first bad index
__all__ = [
    "BACKENDS",
    "MIN_TEMPERATURE",
    "VerifyResult",
    "verify",
    "verify_greedy",
    "verify_logits",
]


class VerifyResult(NamedTuple):
    """Outcome of one verification; unpacks as ``output_token_ids, num_accepted = verify(...)``."""

    output_token_ids: torch.Tensor  # [batch, num_draft_tokens + 1] int64: accepted, sampled, -1...
    num_accepted: torch.Tensor  # [batch] int64 in [0, num_draft_tokens]


def verify(
    draft_token_ids: torch.Tensor,  # [batch, num_draft_tokens] int64
    draft_probs: torch.Tensor | None,  # [batch, num_draft_tokens, vocab] fp32/fp16/bf16, or None
    target_probs: torch.Tensor,  # [batch, num_draft_tokens + 1, vocab] fp32/fp16/bf16
    generator: torch.Generator | None = None,
    backend: str = "auto",
    *,
    validate: bool = True,
) -> VerifyResult:
    """Verify ``num_draft_tokens`` draft tokens per row against the target's distributions.

    Standard speculative sampling: draft ``j`` is accepted with probability
    ``min(1, target_probs[b, j, x] / draft_probs[b, j, x])`` until the first rejection, where one
    token is drawn from ``normalize(max(target_probs - draft_probs, 0))``; if all are accepted a
    bonus token is drawn from ``target_probs[b, num_draft_tokens]``. ``draft_probs=None`` means
    one-hot proposals (each draft token had probability 1). Every emitted token follows the
    target's distribution. One-hot ``target_probs`` give greedy verification.

    Parameters
    ----------
    draft_token_ids : torch.Tensor, shape ``[batch, num_draft_tokens]``, int64
        The proposed tokens, each in ``[0, vocab)`` (with ``validate=False`` an id outside is
        rejected, never emitted, by both backends).
    draft_probs : torch.Tensor, shape ``[batch, num_draft_tokens, vocab]``, fp32/fp16/bf16, or None
        The processed distributions the draft tokens were drawn from; ``None``: one-hot.
    target_probs : torch.Tensor, shape ``[batch, num_draft_tokens + 1, vocab]``, fp32/fp16/bf16
        The processed target distributions. Rows must be probability distributions (checked by
        ``validate``: finite, non-negative, positive mass; the sum is not checked).
    generator : torch.Generator, optional
        Source of all randomness, on the inputs' device. ``None``: a fresh generator with a
        nondeterministic seed (the global RNG is never used).
    backend : {"auto", "torch", "triton"}
        ``"triton"`` (the fused kernel: CUDA tensors, or CPU under ``TRITON_INTERPRET=1``),
        ``"torch"`` (the twin), or ``"auto"`` (Triton on CUDA tensors, the twin otherwise).
    validate : bool
        Check token ids and values (NaN / inf / negative, zero-mass rows, drafted tokens of
        probability 0). The checks read every input once and synchronize with the device; pass
        ``False`` only for inputs that hierspec itself produced, and check processed rows with
        :func:`hierspec.sampling.first_invalid_position`. Shapes, dtypes and devices are always
        checked.

    Returns
    -------
    VerifyResult
        ``output_token_ids`` ``[batch, num_draft_tokens + 1]`` int64 (accepted drafts, the
        recovered / bonus token, then ``-1``) and ``num_accepted`` ``[batch]`` int64, on the
        inputs' device.

    Raises
    ------
    TypeError, ValueError
        Naming the argument and the first bad index, before anything is launched.

    Examples
    --------
    >>> import torch
    >>> from hierspec import verify
    >>> draft_token_ids = torch.tensor([[1, 0]])  # [batch=1, num_draft_tokens=2]
    >>> target_probs = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [0.5, 0.5]]])  # [1, 3, vocab=2]
    >>> generator = torch.Generator().manual_seed(0)
    >>> output_token_ids, num_accepted = verify(draft_token_ids, None, target_probs, generator)
    >>> output_token_ids.tolist()  # token 1 accepted, token 0 rejected (probability 0), 1 drawn
    [[1, 1, -1]]
    >>> num_accepted.tolist()
    [1]
    """
    return _verify(
        draft_token_ids,
        draft_probs,
        target_probs,
        "target_probs",
        None,
        generator,
        backend,
        validate,
    )


def verify_logits(
    draft_token_ids: torch.Tensor,  # [batch, num_draft_tokens] int64
    draft_probs: torch.Tensor | None,  # [batch, num_draft_tokens, vocab] fp32/fp16/bf16, or None
    target_logits: torch.Tensor,  # [batch, num_draft_tokens + 1, vocab] fp32/fp16/bf16
    temperature: float,
    generator: torch.Generator | None = None,
    backend: str = "auto",
    *,
    validate: bool = True,
) -> VerifyResult:
    """:func:`verify` against ``softmax(target_logits / temperature)``, never materialized by the
    kernel (online max / sum over vocabulary tiles).

    Parameters
    ----------
    draft_token_ids, draft_probs, generator, backend, validate
        As in :func:`verify`; ``draft_probs`` must be processed at the same temperature.
    target_logits : torch.Tensor, shape ``[batch, num_draft_tokens + 1, vocab]``, fp32/fp16/bf16
        ``-inf`` logits (masked tokens) have probability 0; NaN, ``+inf`` and all ``-inf`` rows
        are refused by ``validate``.
    temperature : float
        0 (greedy: the one-hot limit of the same rule; a draft is accepted iff it is the argmax
        of its target row, the first maximal index, and the emitted token is the argmax) or at
        least ``MIN_TEMPERATURE`` (1e-5). The row max is subtracted before scaling, so any finite
        logits work at any allowed temperature (no overflow to NaN).

    Returns
    -------
    VerifyResult
        As :func:`verify`.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a float; got {temperature!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be finite and >= 0; got {temperature}")
    if 0 < temperature < MIN_TEMPERATURE:
        raise ValueError(
            f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}, got {temperature!r}"
        )
    return _verify(
        draft_token_ids,
        draft_probs,
        target_logits,
        "target_logits",
        float(temperature),
        generator,
        backend,
        validate,
    )


def verify_greedy(draft_token_ids: torch.Tensor, target_token_ids: torch.Tensor) -> VerifyResult:
    """:func:`verify` against one-hot target rows, given by their tokens: no noise, no vocabulary.

    With ``target_probs = one_hot(target_token_ids)`` the rule accepts draft ``j`` iff it equals
    ``target_token_ids[b, j]`` (``u q(x) <= p(x)`` with ``p(x)`` 0 or 1 and ``u > 0``, for any
    draft row that gave its token positive probability), and the recovered or bonus token is the
    target's token at the first rejection (the residual ``max(p - q, 0)`` is positive there
    only; at the bonus row ``p`` itself), whatever the noise. So this returns what :func:`verify`
    returns for such rows and any valid ``draft_probs``, and what the engine's greedy levels get
    (their rows are one-hot, ``hierspec.sampling.processed_probs``), without drawing the noise of
    a vocabulary-wide race: it consumes no randomness. Inputs are not validated (the engine's own
    tensors); a draft id outside the vocabulary is rejected, as :func:`verify` does.

    Parameters
    ----------
    draft_token_ids : torch.Tensor, shape ``[batch, num_draft_tokens]``, int64
    target_token_ids : torch.Tensor, shape ``[batch, num_draft_tokens + 1]``, int64
        The target's greedy token at each position (``first_argmax`` of its rows).

    Returns
    -------
    VerifyResult
        As :func:`verify`.

    >>> verify_greedy(torch.tensor([[5, 7, 9]]), torch.tensor([[5, 7, 8, 3]]))
    VerifyResult(output_token_ids=tensor([[ 5,  7,  8, -1]]), num_accepted=tensor([2]))
    """
    batch_size, num_draft_tokens = draft_token_ids.shape
    if tuple(target_token_ids.shape) != (batch_size, num_draft_tokens + 1):
        raise ValueError(
            f"target_token_ids must have shape {(batch_size, num_draft_tokens + 1)}, got "
            f"{tuple(target_token_ids.shape)}"
        )
    matches = draft_token_ids == target_token_ids[:, :num_draft_tokens]
    num_accepted = matches.long().cumprod(dim=-1).sum(dim=-1)  # [batch]
    emitted_token = target_token_ids.gather(1, num_accepted.unsqueeze(-1)).squeeze(-1)
    return VerifyResult(
        output_token_ids=output_row_layout(draft_token_ids, num_accepted, emitted_token),
        num_accepted=num_accepted,
    )


def _verify(
    draft_token_ids: torch.Tensor,
    draft_probs: torch.Tensor | None,
    target: torch.Tensor,
    target_name: str,
    temperature: float | None,
    generator: torch.Generator | None,
    backend: str,
    validate: bool,
) -> VerifyResult:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    _check_structure(draft_token_ids, draft_probs, target, target_name)
    device = target.device
    generator = _resolve_generator(generator, device)
    use_triton = backend == "triton" or (
        backend == "auto" and device.type == "cuda" and _triton_importable()
    )
    if use_triton:
        launcher = _triton_launcher(device)  # raises before any work if Triton cannot run here
    if validate:
        _check_values(draft_token_ids, draft_probs, target, target_name, temperature is not None)

    batch_size, num_draft_tokens = draft_token_ids.shape
    noise = draw_verify_noise(batch_size, num_draft_tokens, target.shape[-1], generator, device)
    if use_triton:
        output_token_ids, num_accepted = launcher(
            draft_token_ids, draft_probs, target, noise, temperature=temperature
        )
    else:
        output_token_ids, num_accepted = verify_torch(
            draft_token_ids, draft_probs, target, noise, temperature=temperature
        )
    return VerifyResult(output_token_ids=output_token_ids, num_accepted=num_accepted)


def _check_structure(
    draft_token_ids: torch.Tensor,
    draft_probs: torch.Tensor | None,
    target: torch.Tensor,
    target_name: str,
) -> None:
    """Types, ranks, shapes, dtypes and devices (no data is read)."""
    if not isinstance(draft_token_ids, torch.Tensor):
        raise TypeError(
            f"draft_token_ids must be a torch.Tensor; got {type(draft_token_ids).__name__}"
        )
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{target_name} must be a torch.Tensor; got {type(target).__name__}")
    if draft_probs is not None and not isinstance(draft_probs, torch.Tensor):
        raise TypeError(
            f"draft_probs must be a torch.Tensor or None; got {type(draft_probs).__name__}"
        )
    if draft_token_ids.dtype != torch.int64:
        raise TypeError(f"draft_token_ids must be int64; got dtype {draft_token_ids.dtype}")
    for name, tensor in ((target_name, target), ("draft_probs", draft_probs)):
        if tensor is not None and tensor.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{name} must be float32, float16 or bfloat16; got dtype {tensor.dtype}"
            )
    if draft_token_ids.dim() != 2:
        raise ValueError(
            "draft_token_ids must have shape [batch, num_draft_tokens]; "
            f"got shape {tuple(draft_token_ids.shape)}"
        )
    batch_size, num_draft_tokens = draft_token_ids.shape
    if batch_size < 1 or num_draft_tokens < 1:
        raise ValueError(
            f"draft_token_ids needs batch >= 1 and num_draft_tokens >= 1; got shape "
            f"{tuple(draft_token_ids.shape)}"
        )
    if target.dim() != 3 or tuple(target.shape[:2]) != (batch_size, num_draft_tokens + 1):
        raise ValueError(
            f"{target_name} must have shape [batch={batch_size}, num_draft_tokens + 1="
            f"{num_draft_tokens + 1}, vocab]; got shape {tuple(target.shape)}"
        )
    vocab_size = target.shape[2]
    if vocab_size < 1:
        raise ValueError(f"{target_name} needs vocab >= 1; got shape {tuple(target.shape)}")
    if draft_probs is not None and tuple(draft_probs.shape) != (
        batch_size,
        num_draft_tokens,
        vocab_size,
    ):
        raise ValueError(
            f"draft_probs must have shape [batch={batch_size}, "
            f"num_draft_tokens={num_draft_tokens}, vocab={vocab_size}]; "
            f"got shape {tuple(draft_probs.shape)}"
        )
    for name, tensor in (("draft_token_ids", draft_token_ids), ("draft_probs", draft_probs)):
        if tensor is not None and tensor.device != target.device:
            raise ValueError(
                f"{name} is on {tensor.device} but {target_name} is on {target.device}; "
                "all inputs must be on one device"
            )


def _check_values(
    draft_token_ids: torch.Tensor,
    draft_probs: torch.Tensor | None,
    target: torch.Tensor,
    target_name: str,
    target_is_logits: bool,
) -> None:
    """Token ids and values; one device synchronization when everything is valid."""
    vocab_size = target.shape[-1]
    inf = float("inf")

    def bad_entry(name: str, tensor: torch.Tensor, expected: str) -> Message:
        def message(index: tuple[int, ...]) -> str:
            return f"{name} must be {expected}; {name}[{_fmt(index)}] = {tensor[index].item()}"

        return message

    def bad_row(what: str) -> Message:
        return lambda index: f"{target_name}[{_fmt(index)}] is {what}"

    def zero_draft_prob(index: tuple[int, ...]) -> str:
        token = int(draft_token_ids[index])
        value = float(draft_probs[index + (token,)])  # type: ignore[index]
        return (
            "draft_probs must be > 0 at each drafted token (it was drawn from them); "
            f"draft_probs[{_fmt(index + (token,))}] = {value} for "
            f"draft_token_ids[{_fmt(index)}] = {token}"
        )

    # Each check: (mask of bad entries, message for the first bad index). Ids are checked first.
    out_of_range = (draft_token_ids < 0) | (draft_token_ids >= vocab_size)
    checks: list[tuple[torch.Tensor, Message]] = [
        (out_of_range, bad_entry("draft_token_ids", draft_token_ids, f"in [0, vocab={vocab_size})"))
    ]
    if target_is_logits:
        # NaN fails `< inf`; -inf (a masked token) is allowed, a row of only -inf is not.
        checks.append((~(target < inf), bad_entry(target_name, target, "neither NaN nor +inf")))
        no_finite_logit = ~(target.amax(dim=-1) > -inf)
        checks.append((no_finite_logit, bad_row("-inf everywhere; a row needs a finite logit")))
    else:
        not_a_probability = ~((target >= 0) & (target < inf))
        checks.append((not_a_probability, bad_entry(target_name, target, "finite and >= 0")))
        no_mass = ~(target.amax(dim=-1) > 0)
        checks.append((no_mass, bad_row("0 everywhere; a row needs positive mass")))
    if draft_probs is not None:
        not_a_probability = ~((draft_probs >= 0) & (draft_probs < inf))
        checks.append((not_a_probability, bad_entry("draft_probs", draft_probs, "finite and >= 0")))
        safe_ids = draft_token_ids.clamp(0, vocab_size - 1).unsqueeze(-1)
        checks.append((~(draft_probs.gather(-1, safe_ids).squeeze(-1) > 0), zero_draft_prob))
    any_bad = torch.stack([bad.any() for bad, _ in checks]).tolist()  # the one synchronization
    for (bad, message), is_bad in zip(checks, any_bad, strict=True):
        if is_bad:
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(message(first))


def _fmt(index: tuple[int, ...]) -> str:
    return ", ".join(str(i) for i in index)


def _resolve_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    if generator is None:
        fresh = torch.Generator(device=device)
        fresh.seed()  # nondeterministic seed; the global RNG is left alone
        return fresh
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None; got {type(generator).__name__}"
        )
    if torch.device(generator.device).type != device.type or (
        device.type != "cpu" and torch.device(generator.device).index != device.index
    ):
        raise ValueError(
            f"generator is on {generator.device} but the inputs are on {device}; "
            "the noise is drawn on the inputs' device"
        )
    return generator


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _triton_launcher(device: torch.device):
    """The kernel launcher, or a clear error when the Triton kernel cannot run on ``device``."""
    if not _triton_importable():
        raise ValueError("backend='triton' needs the triton package, which is not installed")
    from hierspec.kernels import verify_triton as triton_module

    if device.type == "cpu" and not triton_module.interpreter_enabled():
        raise ValueError(
            "backend='triton' got CPU tensors, but Triton runs on CPU only in its interpreter: set "
            "TRITON_INTERPRET=1 before hierspec.kernels.verify_triton is first imported, or use "
            "backend='torch' / 'auto'"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"backend='triton' supports CUDA (and interpreted CPU) tensors; got {device}"
        )
    return triton_module.verify_triton
