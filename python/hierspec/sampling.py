"""Logits -> processed probabilities (temperature, top-k, top-p), and drawing from them.

This is the ONE module that turns a level's logits into the distribution its tokens are drawn
from. Every level of a hierarchy goes through :func:`processed_probs` with the same
:class:`SamplingConfig`, and the distribution a token was drawn from is exactly the one the level
above verifies it against (``docs/theory.md``, "Losslessness": the acceptance ratio must use the
*processed* distributions, or the output is not the target's processed law).

Terms:
    logits           raw next-token scores of a model, any float dtype, ``[..., vocab]``.
    processed probs  float32 ``[..., vocab]``, the law tokens are drawn from:
                     ``temperature > 0``: ``softmax(top_p(top_k((logits - max) / temperature)))``
                     (``logits.float()``, the row max subtracted first so that a small
                     temperature cannot overflow: the same law, computed safely);
                     ``temperature == 0``: ``one_hot(argmax(logits))`` (first maximal index), the
                     limit of the above as the temperature goes to 0, so greedy decoding is the
                     same verification rule with one-hot distributions, not a second code path.

The filters follow transformers' logits warpers (same order: temperature, top-k, top-p, and the
same tie rules), so a hierarchy samples from exactly the law ``generate(do_sample=True, ...)``
samples from:
    top-k   keep the tokens whose logit is ``>=`` the k-th largest logit (ties at the k-th value
            are all kept);
    top-p   sort ascending, drop the tokens whose cumulative probability is ``<= 1 - top_p``, but
            always keep the most probable token (the smallest set with mass ``>= top_p``, up to
            ties).
Computation is in float32 whatever the model's dtype: levels may differ in precision (a bf16 copy
of an fp32 target is a valid draft) and are compared on the same footing.

Temperatures: 0 (greedy) or at least ``MIN_TEMPERATURE`` = 1e-5 (vLLM treats smaller ones as
greedy); in between is refused, the same floor as :func:`hierspec.verify_logits`.

Non-distribution rows: a level whose logits are NaN, ``+inf``, or ``-inf`` everywhere gives rows
that are not distributions (NaN after the softmax). :func:`is_distribution` and
:func:`first_invalid_position` report them with one reduction over the vocabulary and no host
synchronization, so the caller can fold the check into the synchronization it already does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "MIN_TEMPERATURE",
    "SamplingConfig",
    "confidence",
    "draw",
    "first_argmax",
    "first_invalid_position",
    "inverse_cdf",
    "is_distribution",
    "overlap",
    "processed_probs",
    "sample",
]

MIN_TEMPERATURE = 1e-5
"""Smallest positive temperature (0 means greedy); the floor shared with ``verify_logits``."""

_ARGMAX_BLOCK = 256  # first_argmax's block: 192 blocks for a 49k vocabulary


@dataclass(frozen=True)
class SamplingConfig:
    """How logits become the distribution tokens are drawn from (validated on construction).

    Attributes
    ----------
    temperature : float
        ``0`` (greedy: one-hot argmax) or in ``[MIN_TEMPERATURE, inf)``.
    top_k : int or None
        Keep the ``top_k`` largest logits (``>= 1``), or ``None`` for no top-k filter.
    top_p : float or None
        Nucleus mass in ``(0, 1]``, or ``None`` (``1.0`` is the same as ``None``).

    Raises
    ------
    TypeError, ValueError
        On construction, naming the field and the value.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        temperature = self.temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"temperature must be a float >= 0, got {temperature!r}")
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite float >= 0, got {temperature!r}")
        if 0 < temperature < MIN_TEMPERATURE:
            raise ValueError(
                f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}, got {temperature!r}"
            )
        top_k = self.top_k
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int):
                raise TypeError(f"top_k must be an int >= 1 or None, got {top_k!r}")
            if top_k < 1:
                raise ValueError(f"top_k must be >= 1 or None, got {top_k!r}")
        top_p = self.top_p
        if top_p is not None:
            if isinstance(top_p, bool) or not isinstance(top_p, (int, float)):
                raise TypeError(f"top_p must be a float in (0, 1] or None, got {top_p!r}")
            if not (0.0 < top_p <= 1.0):
                raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
        object.__setattr__(self, "temperature", float(temperature))
        if top_p is not None:
            object.__setattr__(self, "top_p", float(top_p))

    @property
    def is_greedy(self) -> bool:
        """True when tokens are the argmax (temperature 0)."""
        return self.temperature == 0.0


def overlap(draft_probs: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """``[...]`` float64 ``sum_x min(p(x), q(x))`` per row of two ``[..., vocab]`` processed
    distributions, clamped to ``[0, 1]`` against rounding: the probability that
    :func:`hierspec.verify` accepts a draft drawn from ``draft_probs`` (policy.md rule 2).
    The profiler's acceptance per position; the adaptive decoder's score of a shadow's
    would-be draft (NaN for a row that is not a distribution).

    >>> overlap(torch.tensor([[0.5, 0.5], [1.0, 0.0]]), torch.tensor([[0.25, 0.75], [1.0, 0.0]]))
    tensor([0.7500, 1.0000], dtype=torch.float64)
    """
    return torch.minimum(draft_probs, target_probs).sum(dim=-1).double().clamp_(0.0, 1.0)


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """``[...]`` the largest probability of ``softmax(logits)`` per row of ``[..., vocab]`` raw
    logits, in their dtype (NaN counts as 0): a level's own confidence in its next token,
    whatever the sampling configuration. What early stopping compares with
    ``min_draft_confidence`` (policy.md rule 1): the engine's bottom level per draft, the
    profiler per calibration position (in float64), the adaptive decoder's shadow.

    >>> confidence(torch.tensor([[0.0, 0.0], [0.0, -math.inf]]))
    tensor([0.5000, 1.0000])

    ``softmax`` then ``amax``: about 35 us for a 49k row on one CPU core, where
    ``1 / exp(logits - max).sum()`` costs about 105 (PyTorch's ``softmax`` vectorizes its
    exponential, ``exp`` on CPU does not); the engine takes one per bottom draft.
    """
    return torch.nan_to_num(torch.softmax(logits, dim=-1).amax(dim=-1), nan=0.0)


def processed_probs(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """Processed probabilities of ``logits`` under ``config`` (the module docstring's law).

    Parameters
    ----------
    logits : torch.Tensor, shape ``[..., vocab]``, any float dtype
        ``-inf`` entries (masked tokens) get probability 0.
    config : SamplingConfig

    Returns
    -------
    torch.Tensor, shape ``[..., vocab]``, float32
        Rows are independent: the result for a row does not depend on the other rows, so a
        level may process one row or a whole pass at once. A row of NaN / ``+inf`` logits, or
        of ``-inf`` only, comes out NaN (not a distribution; see :func:`is_distribution`).

    Examples
    --------
    >>> import torch
    >>> from hierspec.sampling import SamplingConfig, processed_probs
    >>> processed_probs(torch.tensor([0.0, 1e38, 0.0]), SamplingConfig(temperature=1e-5))
    tensor([0., 1., 0.])
    """
    scores = logits.float()
    if config.temperature == 0.0:
        return torch.zeros_like(scores).scatter_(-1, first_argmax(scores), 1.0)
    if config.temperature != 1.0:
        # Subtract the row max first: (x - max) / t <= 0 cannot overflow to +inf (x / t can,
        # for |x| > 3.4e38 t); the softmax is unchanged. -inf stays -inf.
        row_max = scores.amax(dim=-1, keepdim=True)
        scores = (scores - row_max) / config.temperature
    vocab_size = scores.shape[-1]
    if config.top_k is not None and config.top_k < vocab_size:
        kth_largest = torch.topk(scores, config.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth_largest, -math.inf)
    if config.top_p is not None and config.top_p < 1.0:
        sorted_scores, sorted_indices = torch.sort(scores, dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        sorted_remove = cumulative <= (1.0 - config.top_p)
        sorted_remove[..., -1:] = False  # always keep the most probable token
        remove = sorted_remove.scatter(-1, sorted_indices, sorted_remove)
        scores = scores.masked_fill(remove, -math.inf)
    return torch.softmax(scores, dim=-1)


def is_distribution(probs: torch.Tensor) -> torch.Tensor:
    """Whether each row of processed probabilities is a distribution: one sum per row.

    Parameters
    ----------
    probs : torch.Tensor, shape ``[..., vocab]``, non-negative where finite (as
        :func:`processed_probs` returns)

    Returns
    -------
    torch.Tensor, shape ``[...]``, bool
        ``True`` iff the row's sum is finite and positive (a NaN or ``inf`` entry makes the sum
        NaN or ``inf``; an all-zero row sums to 0). Stays on the device: no synchronization.
    """
    mass = probs.sum(dim=-1)
    return torch.isfinite(mass) & (mass > 0)


def first_argmax(values: torch.Tensor) -> torch.Tensor:
    """``values.argmax(dim=-1, keepdim=True)``: the first maximal index of each row, the first
    NaN where a row holds one (``torch.argmax``'s rules), faster on CPU.

    Parameters
    ----------
    values : torch.Tensor, shape ``[..., vocab]``, float

    Returns
    -------
    torch.Tensor, shape ``[..., 1]``, int64

    Notes
    -----
    PyTorch's CPU ``argmax`` over a 49k vocabulary costs about 45 us a row on one core (it does
    not vectorize), a block-wise ``amax`` about 8 us. On CPU, rows of at least 2048 entries are
    cut into blocks of 256: the first block whose maximum is the row's maximum (``amax`` and
    ``argmax`` both propagate NaN, so a row with a NaN picks the first block holding one) and the
    first maximal index inside it are the row's first maximal index; the entries after the last
    whole block are compared apart (the head keeps ties). About 20 us a row; greedy decoding
    takes one per processed row and one per drawn token. Other devices call ``argmax``.

    >>> first_argmax(torch.tensor([[0.0, 2.0, 1.0, 2.0]])).tolist()
    [[1]]
    """
    size = values.shape[-1]
    if values.device.type != "cpu" or size < 8 * _ARGMAX_BLOCK or values.numel() == 0:
        return values.argmax(dim=-1, keepdim=True)
    rows = values.reshape(-1, size)
    head = size - size % _ARGMAX_BLOCK
    blocks = rows[:, :head].reshape(rows.shape[0], head // _ARGMAX_BLOCK, _ARGMAX_BLOCK)
    maxima = blocks.amax(dim=-1)  # [rows, blocks]
    best = maxima.argmax(dim=-1, keepdim=True)  # [rows, 1]
    inside = blocks.gather(1, best.unsqueeze(-1).expand(-1, 1, _ARGMAX_BLOCK)).squeeze(1)
    index = best * _ARGMAX_BLOCK + inside.argmax(dim=-1, keepdim=True)
    if head < size:
        tail = rows[:, head:]
        tail_index = tail.argmax(dim=-1, keepdim=True)
        head_max, tail_max = maxima.gather(1, best), tail.gather(1, tail_index)
        # The tail wins only with a larger maximum, or a NaN where the head has none.
        tail_wins = (tail_max > head_max) | (tail_max.isnan() & ~head_max.isnan())
        index = torch.where(tail_wins, head + tail_index, index)
    return index.reshape(*values.shape[:-1], 1)


def first_invalid_position(probs: torch.Tensor) -> torch.Tensor:
    """The first position whose row is not a distribution, per batch row, or -1.

    Parameters
    ----------
    probs : torch.Tensor, shape ``[batch, positions, vocab]``
        E.g. a verifying level's processed rows for one pass.

    Returns
    -------
    torch.Tensor, shape ``[batch]``, int64
        ``-1`` when every row is a distribution. One reduction over the vocabulary and no host
        synchronization: stack it with ``num_accepted`` and read both in one ``.tolist()``.

    Examples
    --------
    >>> import torch
    >>> from hierspec.sampling import first_invalid_position
    >>> rows = torch.tensor([[[0.5, 0.5], [float("nan"), 0.0], [0.0, 0.0]]])
    >>> first_invalid_position(rows)
    tensor([1])
    """
    invalid = ~is_distribution(probs)  # [batch, positions]
    if invalid.shape[-1] == 0:  # no rows (a bottom batch that stopped before its first draft)
        return torch.full(invalid.shape[:-1], -1, dtype=torch.long, device=invalid.device)
    first = invalid.int().argmax(dim=-1)  # the first True (argmax returns the first maximum)
    return torch.where(invalid.any(dim=-1), first, -1).long()


def sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw one token per row of ``probs`` (rows need not be normalized).

    Parameters
    ----------
    probs : torch.Tensor, shape ``[rows, vocab]``, float, non-negative
    generator : torch.Generator
        On ``probs.device``; the only source of randomness.

    Returns
    -------
    torch.Tensor, shape ``[rows, 1]``, int64

    Notes
    -----
    Inverse CDF (:func:`inverse_cdf`): one uniform ``U`` per row, float64, and the first token
    whose cumulative probability exceeds ``U * sum(probs)`` (float64 cumulative sums: the law is
    exact up to float64 rounding, about ``1e-16`` of the total). Zero-probability tokens are never
    drawn and a one-hot row always yields its index, so greedy decoding needs no separate path.
    All randomness comes from ``generator`` (on ``probs.device``); nothing reads the global RNG.
    One row of a 49k vocabulary costs about 0.1 ms on one CPU core, where an exponential race
    (``argmax_v probs[v] / E[v]``, ``vocab`` exponentials: :func:`hierspec.verify`'s resampling
    method) or ``torch.multinomial`` cost about 0.8 ms (``bench/sampling.py``), and this runs
    once per draft of the bottom level.
    """
    uniforms = torch.rand(
        (probs.shape[0], 1), dtype=torch.float64, generator=generator, device=probs.device
    )
    return inverse_cdf(probs, uniforms)


def inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The token of each row at quantile ``uniforms`` of the row's distribution.

    Parameters
    ----------
    probs : torch.Tensor, shape ``[rows, vocab]``, float, non-negative, each row's sum > 0
    uniforms : torch.Tensor, shape ``[rows, 1]``, float64 in ``[0, 1)``

    Returns
    -------
    torch.Tensor, shape ``[rows, 1]``, int64: the first ``v`` with
    ``cumsum(probs)[v] > u * sum(probs)``, clamped to the row's last positive token (where
    ``u * sum`` rounds up to the sum itself).

    >>> import torch
    >>> probs = torch.tensor([[0.0, 0.25, 0.0, 0.75, 0.0]])
    >>> inverse_cdf(probs, torch.tensor([[0.2]], dtype=torch.float64)).item()
    1
    >>> inverse_cdf(probs, torch.tensor([[0.25]], dtype=torch.float64)).item()
    3
    >>> inverse_cdf(probs, torch.tensor([[1.0 - 2**-53]], dtype=torch.float64)).item()
    3
    """
    cumulative = probs.to(torch.float64).cumsum(dim=-1)  # [rows, vocab]
    total = cumulative[:, -1:].contiguous()  # [rows, 1]
    index = torch.searchsorted(cumulative, uniforms * total, right=True)
    # The first position reaching the total is the last positive token (float64 sums of
    # non-negative terms never decrease, so a binary search finds it; clamped into the row for a
    # row that is not a distribution, which the caller reports).
    last = torch.searchsorted(cumulative, total).clamp_(max=probs.shape[-1] - 1)
    return torch.minimum(index, last)


def draw(probs: torch.Tensor, config: SamplingConfig, generator: torch.Generator) -> torch.Tensor:
    """One token per row of processed probabilities: the same token :func:`sample` draws.

    Parameters
    ----------
    probs : torch.Tensor, shape ``[rows, vocab]``, float32
        :func:`processed_probs` under ``config``.
    config : SamplingConfig
    generator : torch.Generator

    Returns
    -------
    torch.Tensor, shape ``[rows, 1]``, int64

    Notes
    -----
    Greedy rows are one-hot, where :func:`sample` always returns the row's index, so greedy
    takes the argmax directly and leaves ``generator`` untouched.
    """
    if config.is_greedy:
        return first_argmax(probs)
    return sample(probs, generator)
