"""The pass-timing loop: what one pass of a level over ``n`` new tokens costs, as the engine pays
it. Used by the profiler and by every benchmark (bench/), so "cost" means one thing everywhere.

Terms:
    pass      one ``append`` of ``n`` new tokens to a level holding ``num_cached`` cached tokens;
    forward   the ``append`` itself (the model's forward pass and its cache update);
    processing
              turning the ``n`` rows of logits into probabilities
              (:func:`hierspec.sampling.processed_probs`: temperature, top-k, top-p) and one draw
              from the last row (:func:`hierspec.sampling.draw`), as the engine draws once per
              drafting pass (an argmax when greedy);
    truncate  the ``truncate(num_cached)`` that rolls the pass back;
    cost      forward + processing + truncate. A verifying pass's accept / resample step
              (:mod:`hierspec.verify`) is not included.

Passes of different ``n`` (and of different levels, when several are timed together) are
interleaved, alternating direction every repeat, so that a drift of machine load hits all alike;
the median over repeats is kept. A pass over more tokens does at least the work of a shorter one,
so the cost table is the medians' nondecreasing least-squares fit
(:func:`hierspec.planning.nondecreasing_fit`, weighted by the repeats) unless ``fit="none"``: a
median of a few noisy timings dips below its neighbours by chance (10-20% on a loaded CPU), and a
planner given that table picks the draft length whose verification happens to sit in the dip
(``bench/cost_fit.py`` measures the cost of that). The medians themselves are kept beside the fit.

Besides the engine's cache owner this module is the only caller of ``DraftModel.truncate``: a
timed pass must leave the level as it found it.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from hierspec.planning import nondecreasing_fit
from hierspec.protocol import DraftModel, prefill
from hierspec.sampling import SamplingConfig, draw, processed_probs

_DEFAULT_SAMPLING = SamplingConfig()  # temperature 1, the profiler's default

COST_FITS = ("nondecreasing", "none")

__all__ = [
    "COST_FITS",
    "CostMeasurement",
    "PassTiming",
    "measure_pass_costs",
    "measure_prefill_cost",
    "time_pass",
    "time_prefill",
    "timing_context",
]


@dataclasses.dataclass(frozen=True)
class PassTiming:
    """Seconds of one timed pass, split into its parts (module docstring)."""

    forward_s: float
    processing_s: float
    truncate_s: float

    @property
    def total_s(self) -> float:
        """forward + processing + truncate: the cost of the pass."""
        return self.forward_s + self.processing_s + self.truncate_s


@dataclasses.dataclass(frozen=True)
class CostMeasurement:
    """Medians (ms) at the measured pass lengths ``measured_n``, their fit and the table.

    ``fitted_ms``: the totals' medians fitted as the measurement's ``fit`` says (module
    docstring; ``"none"``: the medians). ``costs_ms[n - 1]`` for ``n = 1 .. max(measured_n)``:
    ``fitted_ms``, linearly interpolated between measured neighbours where ``n`` was not measured
    (never extrapolated).
    """

    measured_n: tuple[int, ...]
    total_ms: tuple[float, ...]  # forward + processing + truncate, median per measured n
    forward_ms: tuple[float, ...]
    processing_ms: tuple[float, ...]
    truncate_ms: tuple[float, ...]
    spread_ms: tuple[float, ...]  # interquartile range of the totals
    repeats: tuple[int, ...]
    fitted_ms: tuple[float, ...]  # per measured n
    costs_ms: tuple[float, ...]  # [N]: n = 1..N, interpolated where not measured
    samples_ms: tuple[tuple[float, ...], ...]  # per measured n: every timed total, in order

    def cost_at(self, num_tokens: int) -> float:
        """The cost (ms) of a pass over ``num_tokens`` tokens (``costs_ms[num_tokens - 1]``)."""
        return self.costs_ms[num_tokens - 1]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pass(
    level: DraftModel,
    token_ids: torch.Tensor,  # [1, n] int64: the pass's new tokens
    num_cached: int,
    sampling: SamplingConfig,
    generator: torch.Generator,
    timer: Callable[[], float] = time.perf_counter,
) -> PassTiming:
    """Times one pass of ``level`` (holding ``num_cached`` tokens) over ``token_ids`` and rolls it
    back to ``num_cached`` tokens (module docstring).

    Parameters
    ----------
    level
        A :class:`hierspec.DraftModel` whose length is ``num_cached``.
    token_ids
        ``[1, n]`` int64, the new tokens.
    num_cached
        The level's length before (and after) the pass.
    sampling
        How the logits are processed (as the engine does at this sampling configuration).
    generator
        The noise of the one draw (on the level's device).
    timer
        A seconds clock (tests pass the virtual clock of synthetic models).
    """
    device = torch.device(level.device)
    _synchronize(device)
    started = timer()
    logits = level.append(token_ids)  # [1, n, vocab]
    _synchronize(device)
    forwarded = timer()
    probs = processed_probs(logits, sampling)  # [1, n, vocab]
    draw(probs[:, -1], sampling, generator)
    _synchronize(device)
    processed = timer()
    level.truncate(num_cached)
    finished = timer()
    return PassTiming(forwarded - started, processed - forwarded, finished - processed)


def timing_context(prompt_ids: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """``[1, length]`` int64: the prompts' tokens one after another, repeated if they are too
    short (the cached context and the new tokens of the timed passes)."""
    tokens = torch.cat([ids.reshape(-1) for ids in prompt_ids])
    repeats = -(-length // tokens.numel())
    return tokens.repeat(repeats)[:length][None]


def measure_pass_costs(
    levels: Sequence[DraftModel],
    context: torch.Tensor,  # [1, num_cached + max(points)] int64
    num_cached: int,
    points: Sequence[int],
    repeats: int | Callable[[int], int],
    sampling: SamplingConfig = _DEFAULT_SAMPLING,
    seed: int = 0,
    timer: Callable[[], float] | None = None,
    on_timing: Callable[[], None] | None = None,
    fit: str = "nondecreasing",
) -> list[CostMeasurement]:
    """The cost of a pass of each of ``levels`` over each of ``points`` new tokens.

    Each level is reset, given ``context[:, :num_cached]`` (not timed), warmed up by passes over
    1, ``max(points)`` and 1 tokens (the first passes of a shape pay for allocations and kernel
    selection), then timed: pass ``n`` appends ``context[:, num_cached : num_cached + n]``.
    Lengths and levels are interleaved (module docstring). The levels are reset at the end.

    Parameters
    ----------
    levels
        The levels timed together (interleaved pass by pass; the profiler times one at a time).
    context
        ``[1, num_cached + max(points)]`` int64 token ids.
    num_cached
        Cached tokens before every timed pass.
    points
        Pass lengths ``n`` to time (positive ints).
    repeats
        Timings per pass length, or a function of ``n`` giving them; the median is kept.
    sampling, seed
        The processing of the logits and the seed of each level's draw generator.
    timer
        A seconds clock (default ``time.perf_counter``).
    on_timing
        Called after every timed pass (progress bars).
    fit
        ``"nondecreasing"`` (:func:`~hierspec.planning.nondecreasing_fit` of the medians,
        weighted by the repeats) or ``"none"`` (the medians): what ``costs_ms`` is made of
        (module docstring).

    Returns
    -------
    list[CostMeasurement]
        One per level, ``costs_ms`` of width ``max(points)``.
    """
    if fit not in COST_FITS:
        raise ValueError(f"fit must be one of {COST_FITS}, got {fit!r}")
    points = sorted(set(points))
    width = points[-1]
    if context.shape[-1] < num_cached + width:
        raise ValueError(
            f"context has {context.shape[-1]} tokens, need num_cached + max(points) = "
            f"{num_cached + width}"
        )
    timer = time.perf_counter if timer is None else timer
    repeats_for = repeats if callable(repeats) else (lambda _num_tokens: repeats)
    most_repeats = max(repeats_for(n) for n in points)
    generators = []
    for level in levels:
        generators.append(torch.Generator(device=torch.device(level.device)).manual_seed(seed))
        level.reset()
        prefill(level, context[:, :num_cached])  # the cached context (not timed)
        for num_tokens in (1, width, 1):  # warm-up
            level.append(context[:, num_cached : num_cached + num_tokens])
            level.truncate(num_cached)
    # [level][n] -> timings of each pass
    samples: list[dict[int, list[PassTiming]]] = [{n: [] for n in points} for _ in levels]
    for repeat in range(most_repeats):
        # Interleave the lengths (alternating direction) so that drifting load hits all alike.
        order = points if repeat % 2 == 0 else points[::-1]
        for num_tokens in order:
            if repeat >= repeats_for(num_tokens):
                continue
            tokens = context[:, num_cached : num_cached + num_tokens]
            for index, level in enumerate(levels):
                samples[index][num_tokens].append(
                    time_pass(level, tokens, num_cached, sampling, generators[index], timer)
                )
                if on_timing is not None:
                    on_timing()
    for level in levels:
        level.reset()
    return [_summarize(per_n, points, width, fit) for per_n in samples]


def time_prefill(
    level: DraftModel,
    token_ids: torch.Tensor,
    timer: Callable[[], float] | None = None,
    logits: bool = False,
) -> float:
    """Seconds of one pass of ``level`` over ``token_ids`` ``[1, P]`` from an empty state: the
    engine's prefill (:func:`hierspec.protocol.prefill`, no vocabulary head where the level can
    skip it), or with ``logits`` an ``append`` (every position's logits). The level is reset
    before and after."""
    timer = time.perf_counter if timer is None else timer
    device = torch.device(level.device)
    level.reset()
    _synchronize(device)
    started = timer()
    if logits:
        level.append(token_ids)
    else:
        prefill(level, token_ids)
    _synchronize(device)
    seconds = timer() - started
    level.reset()
    return seconds


def measure_prefill_cost(
    level: DraftModel,
    token_ids: torch.Tensor,
    repeats: int,
    timer: Callable[[], float] | None = None,
    on_timing: Callable[[], None] | None = None,
) -> float:
    """Median ms of the engine's prefill of ``token_ids`` ``[1, P]`` from an empty state
    (:func:`time_prefill`, ``repeats`` times): the pass the engine runs over a prompt and over
    the gap of a level that rejoins the chain. The level is left reset."""
    timings = []
    for _ in range(repeats):
        timings.append(time_prefill(level, token_ids, timer))
        if on_timing is not None:
            on_timing()
    return 1e3 * statistics.median(timings)


def _summarize(
    samples: dict[int, list[PassTiming]], points: list[int], width: int, fit: str
) -> CostMeasurement:
    def median_ms(values: list[float]) -> float:
        return 1e3 * statistics.median(values)

    totals = [[timing.total_s for timing in samples[n]] for n in points]
    measured = np.array([median_ms(values) for values in totals])
    repeats = [len(values) for values in totals]
    fitted = nondecreasing_fit(measured, repeats) if fit == "nondecreasing" else measured
    costs = np.interp(np.arange(1, width + 1), np.array(points), fitted)
    return CostMeasurement(
        measured_n=tuple(points),
        total_ms=tuple(float(value) for value in measured),
        forward_ms=tuple(median_ms([t.forward_s for t in samples[n]]) for n in points),
        processing_ms=tuple(median_ms([t.processing_s for t in samples[n]]) for n in points),
        truncate_ms=tuple(median_ms([t.truncate_s for t in samples[n]]) for n in points),
        spread_ms=tuple(
            1e3 * float(np.subtract(*np.percentile(values, [75, 25]))) for values in totals
        ),
        repeats=tuple(repeats),
        fitted_ms=tuple(float(value) for value in fitted),
        costs_ms=tuple(float(value) for value in costs),
        samples_ms=tuple(tuple(1e3 * value for value in values) for values in totals),
    )
