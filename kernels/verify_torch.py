"""Speculative verification (accept / resample / bonus): the pure-torch twin and its noise.

This module is the readable specification of ``verify_kernel`` (``verify_triton.py``) and the CPU
path of :func:`hierspec.verify`. It imports nothing but torch.

Terms (as in vLLM's rejection sampler):
    draft tokens      ``draft_token_ids[b, j]``, ``j < G``, proposed by the level below, drawn from
                      ``draft_probs[b, j]`` (or proposed one-hot: ``draft_probs is None`` means the
                      draft token has probability 1).
    accepted tokens   the leading draft tokens that pass the acceptance test; their number is
                      ``num_accepted[b]`` in ``[0, G]``.
    recovered token   at the first rejected position ``k = num_accepted[b] < G``, one token drawn
                      from the residual
                      ``normalize(max(target_probs[b, k] - draft_probs[b, k], 0))``.
    bonus token       when all ``G`` drafts are accepted, one token drawn from
                      ``target_probs[b, G]``.
    Each row emits its accepted tokens plus exactly one recovered or bonus token:
    ``output_token_ids[b, :num_accepted[b] + 1]``; the rest of the row is ``-1``.
    out-of-range ids  a draft id outside ``[0, vocab)`` (possible only with ``validate=False``)
                      has target probability 0 and draft probability 1: it is rejected, never
                      emitted, and the recovered token is drawn from the target row (one-hot
                      proposals) or the residual against ``draft_probs[b, j]``. The kernel does
                      the same (masked loads), so both backends agree on such input too.

The rule (Leviathan et al. 2023; Chen et al. 2023), in the form both implementations run:
    accept draft ``j`` iff ``u[b, j] * draft_prob(x_j) <= target_prob(x_j)``
        (``u`` uniform in (0, 1], i.e. accept with probability ``min(1, p(x) / q(x))``);
    the emitted token is drawn from ``max(target_k - draft_k, 0)``, where ``draft_k = 0`` for the
        bonus position ``k = G`` (so the bonus token is drawn from ``target_G``). When the residual
        is identically 0 (``target_k == draft_k``: rejection has probability 0, but floating point
        may still reach it) the token is drawn from ``target_k`` instead;
    drawing uses the exponential race: ``argmax_v weight[v] / E[v]`` with ``E[v] ~ Exp(1)`` i.i.d.
        picks ``v`` with probability ``weight[v] / sum(weight)``, so the residual needs no
        normalization (ties: the smallest index, as ``torch.argmax``).
    Greedy decoding (temperature 0) is the one-hot limit of the same rule: the target rows become
        ``one_hot(argmax target row)`` (first maximal index); then a draft is accepted iff it
        equals that argmax (``u > 0`` makes ``u * q(x) <= 0`` false whenever ``q(x) > 0``), and the
        recovered / bonus token is that argmax, whatever the noise.

Noise layout (drawn once, in :func:`draw_verify_noise`, from the caller's ``torch.Generator`` on
the inputs' device, in this order, and consumed identically by the twin and the kernel):
    uniforms       ``[B, G]`` float64 in (0, 1]: ``1 - torch.rand``; ``uniforms[b, j]`` is the
                   acceptance test of draft ``j`` of row ``b`` (used only if drafts ``< j`` were
                   accepted).
    exponentials   ``[B, V]`` float32, strictly positive and finite: ``-log1p(-torch.rand)`` drawn
                   in float64 (so at most 36.7), rounded to float32 and clamped to the smallest
                   normal float32. One vector per row suffices because each row emits exactly one
                   sampled (recovered or bonus) token.

Exactness between the twin and the kernel: for probability inputs every operation that decides
the output is an IEEE-rounded float64 multiply/compare (acceptance) or float32 subtract / max /
divide (race), which torch and Triton (``div_rn``) round identically, so the outputs are equal
bit for bit. For logit inputs the softmax involves ``exp`` and a vocabulary-wide sum whose last
bits depend on the implementation and the summation order; outputs are equal except when a
decision falls within a few ulps of its threshold (an event of probability ~1e-7 per decision).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class VerifyNoise(NamedTuple):
    """All the randomness one verification consumes (see the module docstring for the layout)."""

    uniforms: torch.Tensor  # [batch, num_draft_tokens] float64 in (0, 1]
    exponentials: torch.Tensor  # [batch, vocab] float32, > 0 and finite


def draw_verify_noise(
    batch_size: int,
    num_draft_tokens: int,
    vocab_size: int,
    generator: torch.Generator,
    device: torch.device | str,
) -> VerifyNoise:
    """Draw the noise of one verification from ``generator`` (which must live on ``device``).

    Draw order: the acceptance uniforms, then the race exponentials. Nothing reads the global RNG.
    """
    uniforms = 1.0 - torch.rand(
        (batch_size, num_draft_tokens), dtype=torch.float64, generator=generator, device=device
    )
    race_uniforms = torch.rand(
        (batch_size, vocab_size), dtype=torch.float64, generator=generator, device=device
    )
    # -log(1 - U) ~ Exp(1); U in [0, 1) so the result is finite (<= 36.7) but may be 0: clamp.
    exponentials = torch.neg(torch.log1p(race_uniforms.neg_())).to(torch.float32)
    exponentials.clamp_min_(torch.finfo(torch.float32).tiny)
    return VerifyNoise(uniforms=uniforms, exponentials=exponentials)


def processed_target_probs(target_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Target distributions the logits variant verifies against, float32 ``[..., vocab]``.

    ``softmax((target_logits - row_max) * (1 / temperature))`` (the reciprocal rounded to
    float32, as the kernel uses it; the row max subtracted first, so that a small temperature
    cannot overflow: ``x * (1 / t)`` is ``inf`` for ``|x| > 3.4e38 t``, ``(x - max) / t <= 0``
    never is). ``temperature == 0`` is the limit: ``one_hot(argmax)``, first maximal index.
    ``-inf`` logits (masked tokens) get probability 0.
    """
    logits = target_logits.float()
    if temperature == 0.0:
        greedy = logits.argmax(dim=-1)
        return torch.nn.functional.one_hot(greedy, logits.shape[-1]).to(torch.float32)
    inv_temperature = float(torch.tensor(1.0 / temperature, dtype=torch.float32))
    row_max = logits.amax(dim=-1, keepdim=True)
    return torch.softmax((logits - row_max) * inv_temperature, dim=-1)


def verify_torch(
    draft_token_ids: torch.Tensor,  # [batch, num_draft_tokens] int64
    draft_probs: torch.Tensor | None,  # [batch, num_draft_tokens, vocab] or None (one-hot)
    target: torch.Tensor,  # [batch, num_draft_tokens + 1, vocab] probs, or logits if temperature
    noise: VerifyNoise,
    *,
    temperature: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The verification rule, on inputs that :func:`hierspec.verify` validated.

    ``target`` holds probabilities when ``temperature is None``, else logits processed by
    :func:`processed_target_probs`. Returns ``output_token_ids [batch, num_draft_tokens + 1]``
    int64 (-1 padded) and ``num_accepted [batch]`` int64.
    """
    batch_size, num_draft_tokens = draft_token_ids.shape
    vocab_size = target.shape[-1]
    target_probs = (
        target.float() if temperature is None else processed_target_probs(target, temperature)
    )
    rows = torch.arange(batch_size, device=target.device)
    # Out-of-range ids (validate=False only): p(x) = 0, q(x) = 1, so they are always rejected.
    in_vocab = (draft_token_ids >= 0) & (draft_token_ids < vocab_size)  # [batch, G]
    safe_draft_token_ids = draft_token_ids.clamp(0, vocab_size - 1)
    draft_index = safe_draft_token_ids.unsqueeze(-1)

    # Acceptance: accept draft j iff u_j * q(x_j) <= p(x_j), in float64; keep the leading run.
    target_prob_of_draft = target_probs[:, :num_draft_tokens].gather(-1, draft_index).squeeze(-1)
    target_prob_of_draft = torch.where(in_vocab, target_prob_of_draft, 0.0)
    if draft_probs is None:
        draft_prob_of_draft = torch.ones_like(target_prob_of_draft)
    else:
        draft_prob_of_draft = draft_probs.gather(-1, draft_index).squeeze(-1).float()
        draft_prob_of_draft = torch.where(in_vocab, draft_prob_of_draft, 1.0)
    accepted = noise.uniforms * draft_prob_of_draft.double() <= target_prob_of_draft.double()
    num_accepted = accepted.long().cumprod(dim=-1).sum(dim=-1)  # [batch]

    # The emitted token: the residual at the first rejection, or the bonus (draft row = 0).
    is_recovered = num_accepted < num_draft_tokens
    draft_row_index = num_accepted.clamp(max=num_draft_tokens - 1)
    target_row = target_probs[rows, num_accepted]  # [batch, vocab] float32
    if draft_probs is None:
        draft_tokens_at_row = safe_draft_token_ids[rows, draft_row_index]
        draft_row = torch.nn.functional.one_hot(draft_tokens_at_row, vocab_size).to(torch.float32)
        draft_row *= in_vocab[rows, draft_row_index].unsqueeze(-1)  # an out-of-range id: 0
    else:
        draft_row = draft_probs[rows, draft_row_index].float()
    draft_row = torch.where(is_recovered.unsqueeze(-1), draft_row, torch.zeros_like(draft_row))
    residual = (target_row - draft_row).clamp_min(0.0)
    has_residual = residual.amax(dim=-1, keepdim=True) > 0
    race_weights = torch.where(has_residual, residual, target_row)
    sampled_token = (race_weights / noise.exponentials).argmax(dim=-1)  # [batch]

    return output_row_layout(draft_token_ids, num_accepted, sampled_token), num_accepted


def output_row_layout(
    draft_token_ids: torch.Tensor,  # [batch, num_draft_tokens] int64
    num_accepted: torch.Tensor,  # [batch] int64
    emitted_token: torch.Tensor,  # [batch] int64: the recovered / bonus token
) -> torch.Tensor:
    """``output_token_ids [batch, num_draft_tokens + 1]``: the accepted drafts, then the
    recovered / bonus token, then -1 (the layout every verification returns)."""
    batch_size, num_draft_tokens = draft_token_ids.shape
    positions = torch.arange(num_draft_tokens + 1, device=draft_token_ids.device)
    padded_drafts = torch.cat(
        [draft_token_ids, draft_token_ids.new_full((batch_size, 1), -1)], dim=1
    )
    accepted_count = num_accepted.unsqueeze(-1)
    return torch.where(
        positions < accepted_count,
        padded_drafts,
        torch.where(positions == accepted_count, emitted_token.unsqueeze(-1), -1),
    )
