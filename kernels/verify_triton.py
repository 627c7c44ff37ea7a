"""Fused speculative verification kernel: accept loop, recovered / bonus token, one program per row.

Specification: :func:`verify_torch` in ``verify_torch.py`` (terms, rule and noise layout are
defined there); this kernel consumes the same :class:`VerifyNoise` and gives the same outputs.

One program handles one batch row:
    1. accept loop over the draft tokens ``j < G``: ``u_j * q(x_j) <= p(x_j)`` in float64, stop at
       the first rejection (``p(x_j)`` and ``q(x_j)`` are single loads for probability inputs; for
       logits, one online max / sum pass over the target row ``j`` first, never storing a softmax);
    2. one fused pass over the vocabulary of row ``k = num_accepted`` (tiles of ``BLOCK_V``, the
       tail masked): residual ``max(p_k - q_k, 0)`` (``q_G = 0`` for the bonus), two exponential
       races (the residual, and the target row for the numerically-zero-residual fallback) and the
       residual max, all accumulated in float32;
    3. write ``output_token_ids[row]`` (accepted drafts, the sampled token, -1) and
       ``num_accepted[row]``.
Compile-time flags: ``HAS_DRAFT_PROBS`` (else one-hot proposals), ``TARGET_IS_LOGITS`` (else
probabilities), ``IS_GREEDY`` (temperature 0: every target row is the one-hot of its argmax, the
limit of the same rule).

Memory traffic per row (napkin, fp32, V = 128256): probabilities read 2 rows + the noise row
(target row k, draft row k, exponentials: 3 x 0.51 MB) plus O(G) scalars; logits add one read of
each visited target row 0..k for its max / sum (k + 1 more rows). Nothing of size V is written.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .verify_torch import VerifyNoise

DEFAULT_BLOCK_V = 1024


@triton.jit
def _target_row_stats(
    target_row_ptr,
    vocab_size,
    inv_temperature,
    IS_GREEDY: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    """One pass over a target row: (max, sum of exp((x - max) * inv_temperature), argmax).

    Online softmax statistics (Milakov & Gimelshein 2018) for logits, the max taken over the raw
    logits and subtracted before scaling, so a small temperature cannot overflow; for greedy only
    the argmax (first maximal index) is meaningful. ``-inf`` entries (masked tokens) are allowed.
    """
    offsets = tl.arange(0, BLOCK_V)
    running_max = tl.full((), float("-inf"), tl.float32)
    running_sum = tl.full((), 0.0, tl.float32)
    running_argmax = tl.full((), 0, tl.int32)
    for start in range(0, vocab_size, BLOCK_V):
        vocab_index = start + offsets
        in_vocab = vocab_index < vocab_size
        values = tl.load(target_row_ptr + vocab_index, mask=in_vocab, other=float("-inf"))
        values = values.to(tl.float32)
        if IS_GREEDY:
            tile_max, tile_argmax = tl.max(
                values, axis=0, return_indices=True, return_indices_tie_break_left=True
            )
            # Strictly greater: an earlier tile wins ties, as torch.argmax.
            running_argmax = tl.where(tile_max > running_max, start + tile_argmax, running_argmax)
            running_max = tl.maximum(running_max, tile_max)
        else:
            new_max = tl.maximum(running_max, tl.max(values, axis=0))
            # A prefix of only -inf logits keeps the max at -inf: shift by 0 to avoid inf - inf.
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            running_sum = running_sum * tl.exp((running_max - shift) * inv_temperature) + tl.sum(
                tl.exp((values - shift) * inv_temperature), axis=0
            )
            running_max = new_max
    return running_max, running_sum, running_argmax


@triton.jit
def verify_kernel(
    output_token_ids_ptr,  # [batch, num_draft_tokens + 1] int64 (written)
    num_accepted_ptr,  # [batch] int64 (written)
    draft_token_ids_ptr,  # [batch, num_draft_tokens] int64
    draft_probs_ptr,  # [batch, num_draft_tokens, vocab] fp32/fp16/bf16; read if HAS_DRAFT_PROBS
    target_ptr,  # [batch, num_draft_tokens + 1, vocab] probs or logits, fp32/fp16/bf16
    uniforms_ptr,  # [batch, num_draft_tokens] float64 in (0, 1]
    exponentials_ptr,  # [batch, vocab] float32 > 0
    inv_temperature,  # float32, 1 / temperature (logits only)
    num_draft_tokens,
    vocab_size,
    HAS_DRAFT_PROBS: tl.constexpr,
    TARGET_IS_LOGITS: tl.constexpr,
    IS_GREEDY: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_G: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    num_target_rows = num_draft_tokens + 1
    draft_ids_row_ptr = draft_token_ids_ptr + row * num_draft_tokens

    # 1. Accept loop. row_max / row_sum / row_argmax: statistics of the last target row visited.
    num_accepted = tl.full((), 0, tl.int32)
    still_accepting = tl.full((), 1, tl.int32)
    row_max = tl.full((), float("-inf"), tl.float32)
    row_sum = tl.full((), 1.0, tl.float32)
    row_argmax = tl.full((), 0, tl.int32)
    for j in range(0, num_draft_tokens):
        if still_accepting != 0:
            draft_token = tl.load(draft_ids_row_ptr + j)
            # An out-of-range id (validate=False only) reads p = 0 and q = 1: always rejected,
            # as in the twin; the masked loads never touch memory outside the rows.
            token_in_vocab = (draft_token >= 0) & (draft_token < vocab_size)
            target_row_ptr = target_ptr + (row * num_target_rows + j) * vocab_size
            if IS_GREEDY:
                row_max, row_sum, row_argmax = _target_row_stats(
                    target_row_ptr, vocab_size, inv_temperature, IS_GREEDY, BLOCK_V
                )
                target_prob = (draft_token == row_argmax).to(tl.float64)
            elif TARGET_IS_LOGITS:
                row_max, row_sum, row_argmax = _target_row_stats(
                    target_row_ptr, vocab_size, inv_temperature, IS_GREEDY, BLOCK_V
                )
                logit = tl.load(
                    target_row_ptr + draft_token, mask=token_in_vocab, other=float("-inf")
                ).to(tl.float32)
                target_prob = (tl.exp((logit - row_max) * inv_temperature) / row_sum).to(tl.float64)
            else:
                target_prob = tl.load(target_row_ptr + draft_token, mask=token_in_vocab, other=0.0)
                target_prob = target_prob.to(tl.float32).to(tl.float64)
            if HAS_DRAFT_PROBS:
                draft_row_ptr = draft_probs_ptr + (row * num_draft_tokens + j) * vocab_size
                draft_prob = tl.load(draft_row_ptr + draft_token, mask=token_in_vocab, other=1.0)
                draft_prob = draft_prob.to(tl.float32).to(tl.float64)
            else:
                draft_prob = tl.full((), 1.0, tl.float64)
            uniform = tl.load(uniforms_ptr + row * num_draft_tokens + j)
            accepted = (uniform * draft_prob <= target_prob).to(tl.int32)
            num_accepted += accepted
            still_accepting = accepted

    # 2. The row the emitted token is drawn from: k < G recovered (residual), k == G bonus (q = 0).
    k = num_accepted
    is_recovered = k < num_draft_tokens
    target_row_ptr = target_ptr + (row * num_target_rows + k) * vocab_size
    draft_row_ptr = draft_probs_ptr + (row * num_draft_tokens + k) * vocab_size
    draft_token = tl.load(draft_ids_row_ptr + k, mask=is_recovered, other=-1)
    if IS_GREEDY or TARGET_IS_LOGITS:  # noqa: SIM102 - the outer test is compile-time
        if k == num_draft_tokens:  # the bonus row was not visited by the accept loop
            row_max, row_sum, row_argmax = _target_row_stats(
                target_row_ptr, vocab_size, inv_temperature, IS_GREEDY, BLOCK_V
            )

    offsets = tl.arange(0, BLOCK_V)
    best_residual_score = tl.full((), -1.0, tl.float32)
    best_residual_token = tl.full((), 0, tl.int32)
    best_target_score = tl.full((), -1.0, tl.float32)
    best_target_token = tl.full((), 0, tl.int32)
    residual_max = tl.full((), 0.0, tl.float32)
    for start in range(0, vocab_size, BLOCK_V):
        vocab_index = start + offsets
        in_vocab = vocab_index < vocab_size
        if IS_GREEDY:
            target_tile = (vocab_index == row_argmax).to(tl.float32)
        elif TARGET_IS_LOGITS:
            logits = tl.load(target_row_ptr + vocab_index, mask=in_vocab, other=float("-inf"))
            target_tile = tl.exp((logits.to(tl.float32) - row_max) * inv_temperature) / row_sum
        else:
            target_tile = tl.load(target_row_ptr + vocab_index, mask=in_vocab, other=0.0)
            target_tile = target_tile.to(tl.float32)
        if HAS_DRAFT_PROBS:
            draft_tile = tl.load(
                draft_row_ptr + vocab_index, mask=in_vocab & is_recovered, other=0.0
            )
            draft_tile = draft_tile.to(tl.float32)
        else:
            draft_tile = ((vocab_index == draft_token) & is_recovered).to(tl.float32)
        residual = tl.maximum(target_tile - draft_tile, 0.0)
        exponentials = tl.load(
            exponentials_ptr + row * vocab_size + vocab_index, mask=in_vocab, other=1.0
        )
        # Race scores weight / E >= 0; the masked tail scores -1 and never wins. div_rn: IEEE
        # round-to-nearest division, as torch (the default "/" may be approximate on GPU).
        residual_score = tl.where(in_vocab, tl.math.div_rn(residual, exponentials), -1.0)
        target_score = tl.where(in_vocab, tl.math.div_rn(target_tile, exponentials), -1.0)
        tile_score, tile_token = tl.max(
            residual_score, axis=0, return_indices=True, return_indices_tie_break_left=True
        )
        better = tile_score > best_residual_score  # strictly: earlier tiles win ties
        best_residual_token = tl.where(better, start + tile_token, best_residual_token)
        best_residual_score = tl.where(better, tile_score, best_residual_score)
        tile_score, tile_token = tl.max(
            target_score, axis=0, return_indices=True, return_indices_tie_break_left=True
        )
        better = tile_score > best_target_score
        best_target_token = tl.where(better, start + tile_token, best_target_token)
        best_target_score = tl.where(better, tile_score, best_target_score)
        residual_max = tl.maximum(residual_max, tl.max(residual, axis=0))
    # A residual that is 0 everywhere (p == q up to rounding) cannot be sampled: use the target.
    sampled_token = tl.where(residual_max > 0.0, best_residual_token, best_target_token)

    # 3. Accepted drafts, then the sampled token, then -1.
    positions = tl.arange(0, BLOCK_G)
    drafts = tl.load(draft_ids_row_ptr + positions, mask=positions < k, other=-1)
    row_tokens = tl.where(positions == k, sampled_token.to(tl.int64), drafts)
    tl.store(
        output_token_ids_ptr + row * num_target_rows + positions,
        row_tokens,
        mask=positions < num_target_rows,
    )
    tl.store(num_accepted_ptr + row, k.to(tl.int64))


def interpreter_enabled() -> bool:
    """Whether ``verify_kernel`` runs in Triton's CPU interpreter (``TRITON_INTERPRET=1`` was set
    before this module was imported)."""
    return not isinstance(verify_kernel, triton.runtime.JITFunction)


def verify_triton(
    draft_token_ids: torch.Tensor,  # [batch, num_draft_tokens] int64
    draft_probs: torch.Tensor | None,  # [batch, num_draft_tokens, vocab] or None (one-hot)
    target: torch.Tensor,  # [batch, num_draft_tokens + 1, vocab] probs, or logits if temperature
    noise: VerifyNoise,
    *,
    temperature: float | None = None,
    block_v: int = DEFAULT_BLOCK_V,
    num_warps: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch :func:`verify_kernel` on already validated inputs (:func:`hierspec.verify` validates).

    Same contract as :func:`verify_torch`; ``temperature is None`` means ``target`` holds
    probabilities, ``0`` is greedy (``IS_GREEDY``). ``block_v`` (a power of two) is the vocabulary
    tile. Returns ``(output_token_ids [batch, G + 1] int64, num_accepted [batch] int64)``.
    """
    batch_size, num_draft_tokens = draft_token_ids.shape
    vocab_size = target.shape[-1]
    if block_v < 1 or block_v & (block_v - 1):
        raise ValueError(f"block_v must be a power of two; got {block_v}")
    block_v = min(block_v, triton.next_power_of_2(vocab_size))
    if target.device.type == "cpu" and not interpreter_enabled():
        raise RuntimeError(
            "verify_triton on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
            "before hierspec.kernels.verify_triton is imported "
            f"(TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r})"
        )
    draft_token_ids = draft_token_ids.contiguous()
    target = target.contiguous()
    draft_probs = draft_probs.contiguous() if draft_probs is not None else None
    output_token_ids = torch.empty(
        (batch_size, num_draft_tokens + 1), dtype=torch.int64, device=target.device
    )
    num_accepted = torch.empty((batch_size,), dtype=torch.int64, device=target.device)
    is_greedy = temperature is not None and temperature == 0.0
    inv_temperature = 1.0
    if temperature is not None and not is_greedy:
        # Rounded to float32 exactly as processed_target_probs does.
        inv_temperature = float(torch.tensor(1.0 / temperature, dtype=torch.float32))
    verify_kernel[(batch_size,)](
        output_token_ids_ptr=output_token_ids,
        num_accepted_ptr=num_accepted,
        draft_token_ids_ptr=draft_token_ids,
        draft_probs_ptr=draft_probs if draft_probs is not None else target,
        target_ptr=target,
        uniforms_ptr=noise.uniforms.contiguous(),
        exponentials_ptr=noise.exponentials.contiguous(),
        inv_temperature=inv_temperature,
        num_draft_tokens=num_draft_tokens,
        vocab_size=vocab_size,
        HAS_DRAFT_PROBS=draft_probs is not None,
        TARGET_IS_LOGITS=temperature is not None,
        IS_GREEDY=is_greedy,
        BLOCK_V=block_v,
        BLOCK_G=triton.next_power_of_2(num_draft_tokens + 1),
        num_warps=num_warps,
    )
    return output_token_ids, num_accepted
