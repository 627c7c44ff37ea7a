"""Adaptive hierarchy settings by measurement (issue 9): prior strength, discount, interval.

``hierspec.adaptive.AdaptiveConfig`` has three settings that decide how the adaptive decoder
learns and reacts: ``prior_strength`` (pseudo-observations the profile's rate counts as),
``discount`` (forgetting per tested draft) and ``replan_interval`` (target passes between two
planning decisions). This script chooses them from real verification outcomes, in three steps.

1. Traces. The bundled family decodes the held-out prompts of ``bench/adaptive.py`` (every
   category of ``hierspec.family.corpus``, ``--prompts-per-category`` each, plus
   ``--ungrounded-prompts`` ungrounded chat prompts), greedy and temperature 1, ``--tokens`` new
   tokens (EOS ignored), seeds as ``bench/adaptive.py``, the cached profiles of ``hierspec
   generate`` as priors (never re-profiled: a missing profile is an error). Two static
   configurations per mode give evidence on the pairs the plans and their alternatives use:

       ngram -> target                 the planner's best T for this single draft
       ngram -> target-bf16 -> target  the best (T_0, T_1) of the profile (hierspec.evaluate
                                       over T_0 <= 8, T_1 <= 16)

   Every verification is recorded without touching the engine: the decoder is
   ``HierarchicalDecoder.adaptive`` with a :class:`TraceRecorder` (a ``Replanner`` whose
   ``initial`` is the static configuration, whose ``observe`` records and whose ``decide``, asked
   after every target pass, never switches and checks the recorder's token count against the
   engine's). Per verification: drafter, verifier, drafts tested, accepted, batch length, new
   tokens committed before its target cycle, its target cycle. The traces are in the JSON, so
   steps 2 and 3 rerun without models (``--rescore``).

2. Grid. For each ``(prior_strength, discount)``, :class:`hierspec.adaptive.AcceptanceEstimator`
   (the decoder's own) replays each trace with the mode's profile as prior; before each
   verification its current estimate ``a`` of the pair scores the outcome:

       log-likelihood  ``k log a + (t - k) log(1 - a)`` for ``k`` of ``t`` tested drafts
                       accepted (sequential Bernoulli draws, the estimator's own model), summed
                       and divided by the drafts tested: nats per tested draft;
       token error     ``|sum_{m=1..L} a^m - k|`` per verification (expected accepted drafts of
                       a batch of ``L`` under the i.i.d. model, the quantity latency rests on),
                       and the relative bias of its sum over the trace.

   Each is averaged over the traces (prompts x configurations) of a mode. The neighbourhood of
   the best setting: the settings whose per-trace difference from it has a mean within two
   standard errors (not distinguishable on these traces). References: the profile alone (no
   learning) and the best constant rate per pair in hindsight (a bound for any constant).

   Change points (``AdaptiveConfig.change_rate``): the decoder's estimator (empirical-Bayes
   strengths, the recommended discount) at each of ``--change-rates``, scored the same way and
   by decision regret, each paired with no change points (``change_points`` in the JSON).

   Decision regret: the estimator feeds decisions, and predicting the next verification well
   is not the same as choosing well. Each plan trace is replayed through a real ``Replanner``
   with each setting, asked after every target pass; the configuration it would run next is
   judged under the acceptance the request then realised (the traces of both configurations
   of that prompt, pooled per pair, over the next ``switch_horizon_tokens`` new tokens, and over
   the rest of the request): ``evaluate(chosen) / plan() - 1`` (catch-up costs left out), mean
   over decisions, then over traces. Recommended: of the settings in the log-likelihood's
   neighbourhood (pooled modes), the one with the least regret over the switch horizon.

3. Interval. The cost of one decision (``Replanner.decide`` on the real profile after the
   observations of half a trace, median of ``--decide-repeats``) against the target's 1-token
   pass in the profile (a lower bound on a target cycle, so the overhead fraction is an upper
   bound). The reaction: each trace replayed through a real ``Replanner`` with the recommended
   estimator settings, deciding after every target pass; the first pass ``p_1`` at which it
   would switch away from the trace's configuration; with interval ``R`` the first decision
   point ``p_R`` (a multiple of ``R``) at which it would; the delay ``p_R - p_1`` in target passes
   and in tokens, and the traces where interval ``R`` never switches. Recommended: the smallest
   interval whose decision overhead is under ``--overhead-limit`` (1%) in every mode; a smaller
   interval reacts no later. The reaction uses the recommended estimator settings.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python bench/estimator.py           # ~20 min decoding + 4 scoring
    OMP_NUM_THREADS=1 .venv/bin/python bench/estimator.py --quick   # 9 prompts, 32 tokens, greedy
    .venv/bin/python bench/estimator.py --rescore bench/results/estimator-cpu.json
Writes bench/results/estimator-cpu.json (``recommendation`` first).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import RESULTS, Report, add_prompt_arguments, format_table, standard_error

import hierspec
from hierspec.adaptive import (
    FALLBACK_PRIOR_STRENGTH,
    AcceptanceEstimator,
    AdaptiveConfig,
    BottomBatch,
    PlanDecision,
    Replanner,
    prior_strengths,
)
from hierspec.planning import PlanEntry, Profile, RequestPlan, prompt_prefill_costs

STRENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
DISCOUNTS = (0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0)
CHANGE_RATES = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)
INTERVALS = (1, 2, 3, 4, 6, 8, 16)
MODES = {"greedy": 0.0, "temperature1": 1.0}
_PROB_FLOOR = 1e-12  # a rate the estimator reports as exactly 0 or 1 (a prior of 0 or 1)


# --------------------------------------------------------------------------------------------
# Traces


@dataclass(frozen=True)
class Verification:
    """One verification: ``verifier`` tested ``tested`` drafts of ``drafter`` from a batch of
    ``batch_length`` and accepted the first ``accepted``; ``token``: new tokens committed before
    its target cycle, ``target_pass``: that cycle's index (0-based)."""

    drafter: int
    verifier: int
    tested: int
    accepted: int
    batch_length: int
    token: int
    target_pass: int

    def __post_init__(self) -> None:
        if not 0 <= self.accepted <= self.tested <= self.batch_length:
            raise ValueError(
                f"need 0 <= accepted <= tested <= batch_length, got {self.accepted}, "
                f"{self.tested}, {self.batch_length}"
            )
        if self.tested != min(self.accepted + 1, self.batch_length):
            raise ValueError(
                f"tested must be min(accepted + 1, batch_length) (drafts after the first "
                f"rejection are not tested), got tested={self.tested}, accepted={self.accepted}, "
                f"batch_length={self.batch_length}"
            )


@dataclass(frozen=True)
class Trace:
    """The verifications of one generation of a static configuration."""

    mode: str
    prompt: int
    category: str
    chain: tuple[int, ...]
    draft_lengths: tuple[int, ...]
    prompt_tokens: int
    new_tokens: int
    verifications: tuple[Verification, ...]
    role: str = "plan"  # plan: the profile's plan; alternative: another configuration

    @property
    def target_passes(self) -> int:
        return 1 + max((v.target_pass for v in self.verifications), default=-1)

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON: verifications as rows ``[drafter, verifier, tested, accepted,
        batch_length, token, target_pass]``."""
        return {
            "mode": self.mode,
            "prompt": self.prompt,
            "category": self.category,
            "chain": list(self.chain),
            "draft_lengths": list(self.draft_lengths),
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "verifications": [list(dataclasses.astuple(v)) for v in self.verifications],
            "role": self.role,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        return cls(
            mode=data["mode"],
            prompt=data["prompt"],
            category=data["category"],
            chain=tuple(data["chain"]),
            draft_lengths=tuple(data["draft_lengths"]),
            prompt_tokens=data["prompt_tokens"],
            new_tokens=data["new_tokens"],
            verifications=tuple(Verification(*row) for row in data["verifications"]),
            role=data.get("role", "plan"),
        )


class TraceRecorder(Replanner):
    """A replanner that runs one static configuration and records every verification.

    ``initial`` is ``(chain, draft_lengths)``; ``observe`` records (the estimator is not fed);
    ``decide`` is asked after every target pass (``replan_interval=1``) and never switches. The
    batch length of a verification is not passed to ``observe``; it follows from the chain's
    schedule (docs/policy.md rule 3): level 1 verifies ``T_0`` drafts; level ``l`` with
    ``1 < l < K`` gets exactly ``T_{l-1}``; the target above an intermediate level (``K >= 2``)
    gets all that level emitted in this cycle (``accepted + 1`` per verification). The target
    emits ``accepted + 1`` (standard verification with a bonus token for every ``K``, rule 4).
    ``decide`` checks the resulting token count against the engine's.
    """

    def __init__(
        self, profile: Profile, chain: Sequence[int], draft_lengths: Sequence[int]
    ) -> None:
        self.static_chain = tuple(chain)
        self.static_draft_lengths = tuple(draft_lengths)
        if len(self.static_draft_lengths) != len(self.static_chain) - 1:
            raise ValueError(
                f"draft_lengths {list(draft_lengths)} must have one entry per level below the "
                f"target of chain {list(chain)}"
            )
        # The traces are of decoding without early stopping (min_draft_confidence 0).
        super().__init__(profile, AdaptiveConfig(replan_interval=1, min_draft_confidence=0.0))

    def reset(self) -> None:
        super().reset()
        self.verifications: list[Verification] = []
        self.token = 0  # new tokens committed
        self.target_pass = 0  # target cycles completed
        self.held = 0  # tokens level K-1 emitted in this cycle
        self.decisions_checked = 0

    def initial(self) -> tuple[tuple[int, ...], tuple[int, ...], float]:
        latency = hierspec.evaluate(
            self.profile.costs_ms,
            self.profile.acceptance,
            list(self.static_chain),
            list(self.static_draft_lengths),
        ).latency
        return self.static_chain, self.static_draft_lengths, latency

    def initial_for_request(self, prompt_tokens: int, new_tokens: int) -> RequestPlan:
        chain, draft_lengths, latency = self.initial()
        names = tuple(self.profile.model_names[model] for model in chain)
        entry = PlanEntry(chain, draft_lengths, latency, math.nan, math.nan, names)
        prefill = prompt_prefill_costs(self.profile, prompt_tokens)
        return RequestPlan.of(entry, prefill.tolist(), new_tokens)

    def observe(
        self,
        drafter: int,
        verifier: int,
        tested: int,
        accepted: int,
        bottom: BottomBatch | None = None,
    ) -> None:
        chain = self.static_chain
        top = len(chain) - 1
        level = chain.index(verifier)
        if chain[level - 1] != drafter:
            raise AssertionError(f"verification {drafter}->{verifier} is not in chain {chain}")
        if level == 1:
            batch_length = self.static_draft_lengths[0]
        elif level < top:
            batch_length = self.static_draft_lengths[level - 1]
        else:
            batch_length = self.held
        self.verifications.append(
            Verification(
                drafter, verifier, tested, accepted, batch_length, self.token, self.target_pass
            )
        )
        if level == top - 1:
            self.held += accepted + 1
        if level == top:
            self.token += accepted + 1
            self.target_pass += 1
            self.held = 0

    def decide(
        self,
        chain: tuple[int, ...],
        draft_lengths: tuple[int, ...],
        gaps: Sequence[int],
        tokens_left: int,
        token: int,
        target_pass: int,
        min_draft_confidence: float | None = None,
    ) -> PlanDecision:
        if (token, target_pass) != (self.token, self.target_pass):
            raise AssertionError(
                f"recorder out of step with the engine: it counts {self.token} tokens after "
                f"{self.target_pass} target passes, the engine {token} after {target_pass}"
            )
        self.decisions_checked += 1
        return PlanDecision(
            token=token,
            target_pass=target_pass,
            previous_chain=chain,
            previous_draft_lengths=draft_lengths,
            chain=chain,
            draft_lengths=draft_lengths,
            switched=False,
            acceptance={},
            predicted_latency=math.nan,
            previous_latency=math.nan,
            catch_up_cost=0.0,
        )


# --------------------------------------------------------------------------------------------
# Scoring (no models): the decoder's AcceptanceEstimator replayed on traces


def expected_accepted(rate: float, batch_length: int) -> float:
    """Expected accepted drafts of a batch of ``batch_length`` under the i.i.d. model:
    ``sum_{m=1..L} a^m`` (draft ``m`` is accepted iff the first ``m`` are)."""
    if rate >= 1.0:
        return float(batch_length)
    return rate * (1.0 - rate**batch_length) / (1.0 - rate)


@dataclass(frozen=True)
class TraceScore:
    """A trace scored by one estimator: ``log_likelihood`` (nats, summed), ``tested`` drafts,
    ``abs_token_error`` (summed over ``verifications``), ``predicted_accepted`` and
    ``accepted`` (sums)."""

    log_likelihood: float
    tested: int
    abs_token_error: float
    predicted_accepted: float
    accepted: int
    verifications: int

    @property
    def nats_per_draft(self) -> float:
        return self.log_likelihood / self.tested if self.tested else math.nan

    @property
    def token_error(self) -> float:
        """Mean absolute error of the predicted accepted drafts per verification."""
        return self.abs_token_error / self.verifications if self.verifications else math.nan

    @property
    def token_bias(self) -> float:
        """(predicted - measured) / measured accepted drafts over the trace."""
        return self.predicted_accepted / self.accepted - 1.0 if self.accepted else math.nan


def _outcome_score(
    rate: float, item: Verification
) -> tuple[float, float]:  # (log-likelihood, predicted accepted)
    rate_clipped = min(max(rate, _PROB_FLOOR), 1.0 - _PROB_FLOOR)
    rejected = item.tested - item.accepted
    log_likelihood = item.accepted * math.log(rate_clipped) + rejected * math.log1p(-rate_clipped)
    return log_likelihood, expected_accepted(rate, item.batch_length)


def _summed(outcomes: Sequence[tuple[Verification, float, float]]) -> TraceScore:
    return TraceScore(
        log_likelihood=sum(ll for _, ll, _ in outcomes),
        tested=sum(item.tested for item, _, _ in outcomes),
        abs_token_error=sum(abs(pred - item.accepted) for item, _, pred in outcomes),
        predicted_accepted=sum(pred for _, _, pred in outcomes),
        accepted=sum(item.accepted for item, _, _ in outcomes),
        verifications=len(outcomes),
    )


def score_trace(
    trace: Trace,
    prior: Sequence[Sequence[float]],
    prior_strength: float | Any,
    discount: float,
    pairs: set[tuple[int, int]] | None = None,
    change_rate: float = 0.0,
) -> TraceScore:
    """Replays ``trace`` through an :class:`AcceptanceEstimator`: each verification is scored
    with the estimate of its pair before it (``estimates()``, what the decoder plans with), then
    observed. ``prior_strength``: one number or ``[M, M]`` per pair (empirical Bayes,
    :func:`hierspec.adaptive.prior_strengths`). ``pairs``: score only these ``(drafter,
    verifier)`` (all are observed). ``change_rate``: the estimator's (0: no change points)."""
    estimator = AcceptanceEstimator(prior, prior_strength, discount, change_rate)
    outcomes = []
    for item in trace.verifications:
        if pairs is None or (item.drafter, item.verifier) in pairs:
            rate = float(estimator.estimates()[item.drafter, item.verifier])
            outcomes.append((item, *_outcome_score(rate, item)))
        estimator.observe(item.drafter, item.verifier, item.tested, item.accepted)
    return _summed(outcomes)


def score_hindsight_constant(trace: Trace) -> TraceScore:
    """Reference: each pair at its own constant rate over the trace, chosen in hindsight (the
    maximum-likelihood ``accepted / tested``): no constant estimate scores better."""
    totals: dict[tuple[int, int], list[int]] = {}
    for item in trace.verifications:
        counts = totals.setdefault((item.drafter, item.verifier), [0, 0])
        counts[0] += item.accepted
        counts[1] += item.tested
    outcomes = []
    for item in trace.verifications:
        accepted, tested = totals[(item.drafter, item.verifier)]
        outcomes.append((item, *_outcome_score(accepted / tested, item)))
    return _summed(outcomes)


@dataclass(frozen=True)
class Cell:
    """One estimator setting over a set of traces: per-trace scores and their means."""

    prior_strength: float
    discount: float
    scores: tuple[TraceScore, ...]

    @property
    def nats_per_draft(self) -> float:
        """Mean over traces of the log-likelihood per tested draft."""
        return statistics.fmean(score.nats_per_draft for score in self.scores)

    @property
    def token_error(self) -> float:
        return statistics.fmean(score.token_error for score in self.scores)

    @property
    def token_bias(self) -> float:
        return statistics.fmean(
            score.token_bias for score in self.scores if not math.isnan(score.token_bias)
        )


def score_grid(
    traces: Sequence[Trace],
    priors: dict[str, Sequence[Sequence[float]]],
    strengths: Sequence[float] = STRENGTHS,
    discounts: Sequence[float] = DISCOUNTS,
    pairs: set[tuple[int, int]] | None = None,
) -> list[Cell]:
    """Every ``(prior_strength, discount)`` on every trace (prior: ``priors[trace.mode]``).
    With ``pairs``, traces without a verification of one of them are left out."""
    chosen = [
        trace
        for trace in traces
        if pairs is None or any((v.drafter, v.verifier) in pairs for v in trace.verifications)
    ]
    return [
        Cell(
            strength,
            discount,
            tuple(
                score_trace(trace, priors[trace.mode], strength, discount, pairs)
                for trace in chosen
            ),
        )
        for strength in strengths
        for discount in discounts
    ]


def mean_and_stderr(differences: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of paired differences (standard error 0 for one)."""
    error = standard_error(differences)
    return statistics.fmean(differences), 0.0 if error is None else error


def paired_series(mine: Sequence[float], theirs: Sequence[float]) -> tuple[float, ...]:
    """Two per-trace series, paired where neither is NaN: ``(mean of mine, mean of theirs,
    mean of mine - theirs, its standard error)``."""
    pairs = [
        (a, b) for a, b in zip(mine, theirs, strict=True) if not (math.isnan(a) or math.isnan(b))
    ]
    return (
        statistics.fmean(a for a, _ in pairs),
        statistics.fmean(b for _, b in pairs),
        *mean_and_stderr([a - b for a, b in pairs]),
    )


def paired_difference(cell: Cell, best: Cell) -> tuple[float, float]:
    """Mean and standard error over traces of ``cell - best`` (nats per tested draft)."""
    return mean_and_stderr(
        [a.nats_per_draft - b.nats_per_draft for a, b in zip(cell.scores, best.scores, strict=True)]
    )


def grid_summary(cells: Sequence[Cell], default: tuple[float, float]) -> dict[str, Any]:
    """The best cell by log-likelihood, its neighbourhood (cells within two standard errors of
    it, paired over traces), the best by token error, and the default's place."""
    best = max(cells, key=lambda cell: cell.nats_per_draft)
    rows = []
    for cell in cells:
        mean, stderr = paired_difference(cell, best)
        rows.append(
            {
                "prior_strength": cell.prior_strength,
                "discount": cell.discount,
                "nats_per_draft": cell.nats_per_draft,
                "vs_best": mean,
                "vs_best_stderr": stderr,
                "within_two_stderr": cell is best or mean >= -2.0 * stderr,
                "token_error": cell.token_error,
                "token_bias": cell.token_bias,
            }
        )
    default_row = next(
        (r for r in rows if (r["prior_strength"], r["discount"]) == tuple(default)), None
    )
    by_tokens = min(cells, key=lambda cell: cell.token_error)
    no_forgetting = [cell for cell in cells if cell.discount == 1.0]
    return {
        "traces": len(best.scores),
        "best": {"prior_strength": best.prior_strength, "discount": best.discount},
        "best_nats_per_draft": best.nats_per_draft,
        "neighbourhood": [
            [r["prior_strength"], r["discount"]] for r in rows if r["within_two_stderr"]
        ],
        "best_by_token_error": {
            "prior_strength": by_tokens.prior_strength,
            "discount": by_tokens.discount,
            "token_error": by_tokens.token_error,
        },
        "best_without_forgetting": (
            None
            if not no_forgetting
            else {
                "prior_strength": (
                    keep := max(no_forgetting, key=lambda cell: cell.nats_per_draft)
                ).prior_strength,
                "vs_best": paired_difference(keep, best)[0],
                "vs_best_stderr": paired_difference(keep, best)[1],
            }
        ),
        "default": default_row,
        "cells": rows,
    }


def first_reaction(switch_passes: Sequence[int], interval: int) -> int | None:
    """The first decision point of ``interval`` (target passes ``interval, 2 interval, ...``)
    at which a decision would switch, given the passes after which one would (``None``:
    never)."""
    if interval < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    return min((p for p in switch_passes if p % interval == 0), default=None)


def switch_passes(trace: Trace, profile: Profile, config: AdaptiveConfig) -> dict[int, int]:
    """``{target pass: tokens committed}`` after each target pass at which a real
    :class:`Replanner` fed the trace's verifications would switch away from the trace's static
    configuration (asked after every pass but the last, as the engine asks with
    ``max_replan_interval=1``; models outside the chain have an empty cache, so their catch-up
    gap is the whole text but its last token)."""
    result: dict[int, int] = {}
    for passes, token, decision in replayed_decisions(trace, profile, config):
        if decision.switched:
            result[passes] = token
    return result


def replayed_decisions(trace: Trace, profile: Profile, config: AdaptiveConfig):
    """Feeds ``trace``'s verifications to a real :class:`Replanner` and asks it after every
    target pass but the last, as the engine asks with ``max_replan_interval=1`` (models outside
    the chain have an empty cache, so their catch-up gap is the whole text but its last token);
    yields ``(target passes,
    tokens committed, PlanDecision)`` after each."""
    replanner = Replanner(profile, config)
    chain, lengths = trace.chain, trace.draft_lengths
    items = trace.verifications
    for index, item in enumerate(items):
        replanner.observe(item.drafter, item.verifier, item.tested, item.accepted)
        last_of_cycle = index + 1 == len(items) or items[index + 1].target_pass != item.target_pass
        if not last_of_cycle or item.target_pass + 1 >= trace.target_passes:
            continue
        token = items[index + 1].token  # committed after this cycle
        passes = item.target_pass + 1
        gaps = [
            0 if m in chain else trace.prompt_tokens + token - 1
            for m in range(len(profile.model_names))
        ]
        decision = replanner.decide(chain, lengths, gaps, trace.new_tokens - token, token, passes)
        yield passes, token, decision


def reaction_delays(
    traces: Sequence[Trace],
    profiles: dict[str, Profile],
    config: AdaptiveConfig,
    intervals: Sequence[int] = INTERVALS,
) -> dict[str, Any]:
    """Per interval: the delay of the first switch against deciding after every pass (mean and
    max over the traces that switch at all, in target passes and tokens) and the traces where
    that interval never switches."""
    wanted = [switch_passes(trace, profiles[trace.mode], config) for trace in traces]
    reacting = [w for w in wanted if w]
    rows = []
    for interval in intervals:
        passes, tokens, missed = [], [], 0
        for w in reacting:
            first, at = min(w), first_reaction(list(w), interval)
            if at is None:
                missed += 1
                continue
            passes.append(at - first)
            tokens.append(w[at] - w[first])
        rows.append(
            {
                "interval": interval,
                "mean_delay_passes": statistics.fmean(passes) if passes else None,
                "max_delay_passes": max(passes) if passes else None,
                "mean_delay_tokens": statistics.fmean(tokens) if tokens else None,
                "never_switches": missed,
            }
        )
    return {
        "traces": len(traces),
        "traces_that_switch": len(reacting),
        "first_switch_pass_median": (
            statistics.median(min(w) for w in reacting) if reacting else None
        ),
        "switching_passes_fraction": (
            sum(len(w) for w in wanted) / max(sum(t.target_passes - 1 for t in traces), 1)
        ),
        "by_interval": rows,
    }


def request_rates(
    traces: Sequence[Trace], prior: Sequence[Sequence[float]], start: int, end: float
) -> list[list[float]]:
    """``[M, M]`` acceptance realised in ``traces`` (the configurations run on one prompt) by
    the verifications of target cycles starting at new tokens ``[start, end)``: per pair,
    accepted / tested drafts pooled; pairs not verified there keep ``prior``."""
    rates = [list(row) for row in prior]
    totals: dict[tuple[int, int], list[int]] = {}
    for trace in traces:
        for item in trace.verifications:
            if start <= item.token < end:
                counts = totals.setdefault((item.drafter, item.verifier), [0, 0])
                counts[0] += item.accepted
                counts[1] += item.tested
    for (drafter, verifier), (accepted, tested) in totals.items():
        if tested:
            rates[drafter][verifier] = accepted / tested
    return rates


def decision_regret(
    trace: Trace,
    partners: Sequence[Trace],
    profile: Profile,
    config: AdaptiveConfig,
    horizon: float,
    cache: dict[Any, tuple[list[list[float]], float]] | None = None,
) -> float:
    """Mean over the decisions of a real :class:`Replanner` fed ``trace`` (asked after every
    target pass but the last) of the excess latency of the configuration it would run next,
    judged under the acceptance the request then realised: :func:`request_rates` of
    ``partners`` (every trace of the prompt and mode) over the next ``horizon`` new tokens,
    ``evaluate(chosen) / plan().latency - 1`` (catch-up costs left out). ``cache``: the judge's
    rates and best latency per decision point, shared between settings."""
    regrets = []
    for _, token, decision in replayed_decisions(trace, profile, config):
        key = (trace.mode, trace.prompt, token, horizon)
        if cache is None or key not in cache:
            rates = request_rates(partners, profile.acceptance, token, token + horizon)
            best = hierspec.plan(profile.costs_ms, rates, max_draft_length=config.max_draft_length)
            judged = (rates, best.latency)
            if cache is not None:
                cache[key] = judged
        else:
            judged = cache[key]
        rates, best_latency = judged
        chosen = hierspec.evaluate(
            profile.costs_ms, rates, list(decision.chain), list(decision.draft_lengths)
        ).latency
        regrets.append(chosen / best_latency - 1.0)
    return statistics.fmean(regrets) if regrets else math.nan


def regret_grid(
    traces: Sequence[Trace],
    profiles: dict[str, Profile],
    strengths: Sequence[float | None],
    discounts: Sequence[float],
    horizon: float,
    cache: dict[Any, tuple[list[list[float]], float]] | None = None,
    change_rate: float = 0.0,
) -> dict[tuple[float | None, float], list[float]]:
    """:func:`decision_regret` of every setting on each plan trace (where the decoder starts),
    in the order of ``traces``. A strength of ``None``: per pair by empirical Bayes from the
    profile (the decoder's default). ``change_rate``: the estimator's, for every setting."""
    cache = {} if cache is None else cache
    plan_traces = [t for t in traces if t.role == "plan"]
    result = {}
    for strength in strengths:
        for discount in discounts:
            config = AdaptiveConfig(
                prior_strength=strength,
                discount=discount,
                change_rate=change_rate,
                replan_interval=1,
                min_draft_confidence=0.0,
            )
            result[(strength, discount)] = [
                decision_regret(
                    trace,
                    [t for t in traces if (t.mode, t.prompt) == (trace.mode, trace.prompt)],
                    profiles[trace.mode],
                    config,
                    horizon,
                    cache,
                )
                for trace in plan_traces
            ]
    return result


def regret_summary(
    values: dict[tuple[float, float], list[float]], default: tuple[float, float]
) -> dict[str, Any]:
    """Mean regret per setting, the least, and each setting's paired difference from it (mean
    and standard error over traces)."""

    def mean(key) -> float:
        return statistics.fmean(v for v in values[key] if not math.isnan(v))

    best = min(values, key=mean)
    rows = []
    for key, series in values.items():
        differences = [
            a - b for a, b in zip(series, values[best]) if not (math.isnan(a) or math.isnan(b))
        ]
        difference, stderr = mean_and_stderr(differences)
        rows.append(
            {
                "prior_strength": key[0],
                "discount": key[1],
                "regret": mean(key),
                "vs_best": difference,
                "vs_best_stderr": stderr,
                "traces": len(differences),
            }
        )
    by_key = {(r["prior_strength"], r["discount"]): r for r in rows}
    return {
        "best": {"prior_strength": best[0], "discount": best[1], "regret": mean(best)},
        "default": by_key.get(tuple(default)),
        "cells": rows,
    }


def decision_cost_ms(profile: Profile, trace: Trace, config: AdaptiveConfig, repeats: int) -> float:
    """Median ms of ``Replanner.decide`` on ``profile`` after the observations of the first
    half of ``trace`` (the planner on real estimates, the evaluation, the estimates)."""
    replanner = Replanner(profile, config)
    half = trace.verifications[: len(trace.verifications) // 2]
    for item in half:
        replanner.observe(item.drafter, item.verifier, item.tested, item.accepted)
    token = half[-1].token if half else 0
    gaps = [
        0 if m in trace.chain else trace.prompt_tokens + token - 1
        for m in range(len(profile.model_names))
    ]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        replanner.decide(trace.chain, trace.draft_lengths, gaps, 64, token, 1)
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def recommend_interval(
    decide_ms: dict[str, float],
    target_pass_ms: dict[str, float],
    limit: float,
    intervals: Sequence[int] = INTERVALS,
) -> int:
    """The smallest interval whose overhead ``decide / (interval * target pass)`` is at most
    ``limit`` in every mode (the largest interval when none is)."""
    for interval in sorted(intervals):
        if all(decide_ms[m] / (interval * target_pass_ms[m]) <= limit for m in decide_ms):
            return interval
    return max(intervals)


# --------------------------------------------------------------------------------------------
# Recording (the models)


def configurations(plan: Any) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The profile's plan (where the adaptive decoder starts) and the best of its alternatives
    with an adjacent pair the plan lacks (the evidence for a switch), as ``(chain,
    draft_lengths)``."""

    def pairs(entry) -> set[tuple[int, int]]:
        return set(zip(entry.chain, entry.chain[1:]))

    best = plan.best
    other = next(entry for entry in plan.alternatives if pairs(entry) - pairs(best))
    return [(tuple(e.chain), tuple(e.draft_lengths)) for e in (best, other)]


def record_mode(family, mode: str, args, prompts, log) -> tuple[Profile, Path, list, list[Trace]]:
    """The traces of one sampling mode."""
    import torch
    from harness import cached_family_profile, profile_plan

    from hierspec import HierarchicalDecoder
    from hierspec.sampling import SamplingConfig

    sampling = SamplingConfig(temperature=MODES[mode])
    profile, path = cached_family_profile(
        family, sampling, args.max_draft_length, args.profile_prompts
    )
    log(f"[{mode}] profile {path} (cached)")
    plan = profile_plan(profile, args.max_draft_length)
    configs = configurations(plan)
    names = profile.model_names

    def describe(chain, lengths) -> str:
        return " -> ".join(names[m] for m in chain) + f" T={','.join(map(str, lengths))}"

    log(f"[{mode}] configurations: {[describe(*c) for c in configs]}")
    recorders = [TraceRecorder(profile, chain, lengths) for chain, lengths in configs]
    decoders = [
        HierarchicalDecoder.adaptive(list(family.models), profile, replanner=recorder)
        for recorder in recorders
    ]
    traces: list[Trace] = []
    started = time.perf_counter()
    for index, prompt in enumerate(prompts):
        outputs = []
        parts = []
        for role, (chain, lengths), recorder, decoder in zip(
            ("plan", "alternative"), configs, recorders, decoders
        ):
            output = decoder.generate(
                prompt["input_ids"],
                max_new_tokens=args.tokens,
                temperature=sampling.temperature,
                seed=1000 + index,
                eos_token_id=None,
            )
            outputs.append(output.sequences)
            if recorder.token < output.stats.new_tokens:
                raise AssertionError(
                    f"recorder counted {recorder.token} tokens, the engine "
                    f"{output.stats.new_tokens}"
                )
            trace = Trace(
                mode=mode,
                prompt=index,
                category=prompt["category"],
                chain=chain,
                draft_lengths=lengths,
                prompt_tokens=int(prompt["input_ids"].shape[1]),
                new_tokens=output.stats.new_tokens,
                verifications=tuple(recorder.verifications),
                role=role,
            )
            traces.append(trace)
            rates = {}
            for item in trace.verifications:
                key = f"{names[item.drafter]}->{names[item.verifier]}"
                counts = rates.setdefault(key, [0, 0])
                counts[0] += item.accepted
                counts[1] += item.tested
            parts.append(
                f"{len(chain)} levels {trace.target_passes} passes "
                + " ".join(f"{k} {a / t:.2f}" for k, (a, t) in rates.items())
            )
        if sampling.is_greedy and not all(torch.equal(outputs[0], other) for other in outputs):
            raise AssertionError(f"greedy outputs of the configurations differ on prompt {index}")
        elapsed = time.perf_counter() - started
        log(
            f"[{mode}] prompt {index + 1}/{len(prompts)} ({prompt['category']}): "
            + "; ".join(parts)
            + f"; {elapsed / (index + 1):.0f} s per prompt"
        )
    return profile, path, configs, traces


# --------------------------------------------------------------------------------------------
# Analysis and tables


def measure_by_prompt(
    traces: Sequence[Trace], profiles: dict[str, Profile], args, log
) -> dict[str, Profile]:
    """The profiles with per-prompt acceptance (``acceptance_details.by_prompt``, what
    :func:`hierspec.adaptive.prior_strengths` needs) measured now for the pairs of the models the
    traces use, by the profiler's own :func:`~hierspec.profiler.acceptance.measure_acceptance` on
    the profile's calibration prompts and settings (the family's models of those names, which
    must be the ones the traces were decoded with; pairs of other models get none and fall back
    to the constant). For traces recorded before the profiler measured per-prompt rates."""
    import torch

    from hierspec.cli.candidates import calibration_messages
    from hierspec.family import load_family
    from hierspec.levels import as_levels
    from hierspec.profiler import ProfilerConfig
    from hierspec.profiler.acceptance import measure_acceptance
    from hierspec.prompts import prompt_token_ids
    from hierspec.sampling import SamplingConfig

    torch.set_num_threads(1)
    result = {}
    for mode, profile in profiles.items():
        names = profile.model_names
        used = sorted({m for t in traces if t.mode == mode for m in t.chain})
        family = load_family(
            args.cache, include=tuple(names[m] for m in used), prepare=False, progress=False
        )
        levels = as_levels([family.models[list(family.names).index(names[m])] for m in used])
        prompts = prompt_token_ids(
            calibration_messages(args.profile_prompts), family.tokenizer, levels[-1].vocab_size
        )
        started = time.perf_counter()
        _, details, _ = measure_acceptance(
            levels,
            prompts,
            SamplingConfig(temperature=MODES[mode]),
            calibration_tokens=ProfilerConfig().calibration_tokens,
            max_positions=1,
            seed=ProfilerConfig().seed,
        )
        by_prompt: list[list[Any]] = [[None] * len(names) for _ in names]
        for a, i in enumerate(used):
            for b, j in enumerate(used):
                by_prompt[i][j] = details["by_prompt"][a][b]
        extra = dict(profile.extra)
        extra["acceptance_details"] = {
            "by_prompt": by_prompt,
            "prompt_positions": details["prompt_positions"],
            "note": f"per-prompt rates of {[names[m] for m in used]} measured by "
            "bench/estimator.py --measure-by-prompt",
        }
        result[mode] = dataclasses.replace(profile, extra=extra)
        log(
            f"[by prompt] {mode}: {[names[m] for m in used]} on {len(prompts)} calibration "
            f"prompts in {time.perf_counter() - started:.0f} s"
        )
    return result


def empirical_bayes(
    traces: Sequence[Trace],
    profiles: dict[str, Profile],
    constant: dict[str, list[Cell]],
    constant_key: tuple[float, float],
    regret_cache: dict[Any, tuple[list[list[float]], float]],
    horizons: dict[str, float],
) -> dict[str, Any]:
    """The decoder's per-pair empirical-Bayes prior strengths (:func:`prior_strengths` of each
    mode's profile) at the discount of ``constant_key`` (a constant ``(prior_strength,
    discount)`` of the grid), scored like the grid: log-likelihood, token error, paired
    difference from that constant and from the grid's best, and decision regret against the
    constant."""
    discount = constant_key[1]
    strengths = {mode: prior_strengths(profile) for mode, profile in profiles.items()}
    names = next(iter(profiles.values())).model_names
    modes = list(dict.fromkeys(trace.mode for trace in traces))
    result: dict[str, Any] = {
        "discount": discount,
        "strengths": {
            mode: {
                f"{names[i]}->{names[j]}": float(matrix[i, j])
                for i in range(len(names))
                for j in range(i + 1, len(names))
                if matrix[i, j] != FALLBACK_PRIOR_STRENGTH
            }
            for mode, matrix in strengths.items()
        },
    }
    priors = {mode: profile.acceptance for mode, profile in profiles.items()}
    for mode in modes + ["all"]:
        chosen = [t for t in traces if mode in ("all", t.mode)]
        cell = Cell(
            math.nan,
            discount,
            tuple(score_trace(t, priors[t.mode], strengths[t.mode], discount) for t in chosen),
        )
        cells = {(c.prior_strength, c.discount): c for c in constant[mode]}
        best = max(constant[mode], key=lambda c: c.nats_per_draft)
        fallback = cells.get(constant_key)
        entry: dict[str, Any] = {
            "traces": len(chosen),
            "nats_per_draft": cell.nats_per_draft,
            "token_error": cell.token_error,
            "token_bias": cell.token_bias,
            "vs_likelihood_best": paired_difference(cell, best)[0],
            "vs_likelihood_best_stderr": paired_difference(cell, best)[1],
        }
        if fallback is not None:
            entry["vs_constant"] = paired_difference(cell, fallback)[0]
            entry["vs_constant_stderr"] = paired_difference(cell, fallback)[1]
            entry["constant_token_error"] = fallback.token_error
        result[mode] = entry
    for name, horizon in horizons.items():
        pooled: dict[Any, list[float]] = {}
        for mode in modes:
            values = regret_grid(
                [t for t in traces if t.mode == mode],
                profiles,
                [None, constant_key[0]],
                [discount],
                horizon,
                regret_cache,
            )
            for key, series in values.items():
                pooled.setdefault(key, []).extend(series)
            result[mode][f"regret_{name}"] = _regret_pair(values, constant_key)
        result["all"][f"regret_{name}"] = _regret_pair(pooled, constant_key)
    return result


def _regret_pair(values: dict[Any, list[float]], constant_key: tuple[float, float]) -> dict:
    """Mean regret of empirical Bayes (key ``(None, discount)``) and of the constant, and their
    paired difference (mean, standard error) over traces."""
    regret, constant_regret, difference, stderr = paired_series(
        values[(None, constant_key[1])], values[constant_key]
    )
    return {
        "regret": regret,
        "constant_regret": constant_regret,
        "vs_constant": difference,
        "vs_constant_stderr": stderr,
    }


def change_points(
    traces: Sequence[Trace],
    profiles: dict[str, Profile],
    change_rates: Sequence[float],
    discount: float,
    regret_cache: dict[Any, tuple[list[list[float]], float]],
    horizons: dict[str, float],
) -> dict[str, Any]:
    """``AdaptiveConfig.change_rate`` by measurement: the decoder's estimator (empirical-Bayes
    strengths, ``discount``) with each change rate, scored like the grid (log-likelihood, token
    error and bias per mode) and by decision regret, each as a paired difference (mean, standard
    error over traces) from change rate 0 (no change points). Recommended: the rate with the
    best pooled log-likelihood among those that beat 0 by more than two standard errors with a
    regret over the switch horizon not worse than 0's by more than two; 0 when none does."""
    rates = sorted({0.0, *change_rates})
    strengths = {mode: prior_strengths(profile) for mode, profile in profiles.items()}
    priors = {mode: profile.acceptance for mode, profile in profiles.items()}
    modes = list(dict.fromkeys(trace.mode for trace in traces))
    result: dict[str, Any] = {"discount": discount, "rates": {}}
    regrets: dict[str, dict[float, list[float]]] = {name: {} for name in horizons}
    for name, horizon in horizons.items():
        for rate in rates:
            series: list[float] = []
            for mode in modes:
                values = regret_grid(
                    [t for t in traces if t.mode == mode],
                    profiles,
                    [None],
                    [discount],
                    horizon,
                    regret_cache,
                    change_rate=rate,
                )
                series += values[(None, discount)]
            regrets[name][rate] = series
    scored = {
        rate: [
            score_trace(t, priors[t.mode], strengths[t.mode], discount, change_rate=rate)
            for t in traces
        ]
        for rate in rates
    }
    for rate in rates:
        entry: dict[str, Any] = {}
        for mode in modes + ["all"]:
            chosen = [i for i, t in enumerate(traces) if mode in ("all", t.mode)]
            cell, zero = (
                Cell(math.nan, discount, tuple(scored[value][i] for i in chosen))
                for value in (rate, 0.0)
            )
            mean, stderr = paired_difference(cell, zero)
            entry[mode] = {
                "nats_per_draft": cell.nats_per_draft,
                "vs_zero": mean,
                "vs_zero_stderr": stderr,
                "token_error": cell.token_error,
                "token_bias": cell.token_bias,
            }
        for name in horizons:
            regret, _, difference, stderr = paired_series(regrets[name][rate], regrets[name][0.0])
            entry["all"][f"regret_{name}"] = regret
            entry["all"][f"regret_{name}_vs_zero"] = difference
            entry["all"][f"regret_{name}_vs_zero_stderr"] = stderr
        result["rates"][str(rate)] = entry
    eligible = [
        rate
        for rate in rates
        if rate == 0.0
        or (
            (pooled := result["rates"][str(rate)]["all"])["vs_zero"] > 2 * pooled["vs_zero_stderr"]
            and pooled["regret_horizon_vs_zero"] <= 2 * pooled["regret_horizon_vs_zero_stderr"]
        )
    ]
    result["recommended"] = max(
        eligible, key=lambda rate: result["rates"][str(rate)]["all"]["nats_per_draft"]
    )
    return result


def analyse(traces: Sequence[Trace], profiles: dict[str, Profile], args, log) -> dict[str, Any]:
    """Steps 2 and 3 on the traces (no models)."""
    default = AdaptiveConfig()
    default_key = (FALLBACK_PRIOR_STRENGTH, default.discount)  # the constant grid's default
    priors = {mode: profile.acceptance for mode, profile in profiles.items()}
    modes = list(dict.fromkeys(trace.mode for trace in traces))
    grids: dict[str, Any] = {}
    cells_by_mode: dict[str, list[Cell]] = {}
    for mode in modes + ["all"]:
        chosen = [t for t in traces if mode in ("all", t.mode)]
        cells = score_grid(chosen, priors, args.strengths, args.discounts)
        cells_by_mode[mode] = cells
        summary = grid_summary(cells, default_key)
        profile_only = score_grid(chosen, priors, [1e12], [1.0])[0]
        hindsight = [score_hindsight_constant(t) for t in chosen]
        summary["profile_only_nats_per_draft"] = profile_only.nats_per_draft
        summary["profile_only_token_error"] = profile_only.token_error
        summary["profile_only_token_bias"] = profile_only.token_bias
        summary["hindsight_constant_nats_per_draft"] = statistics.fmean(
            s.nats_per_draft for s in hindsight
        )
        summary["hindsight_constant_token_error"] = statistics.fmean(
            s.token_error for s in hindsight
        )
        pairs = sorted({(v.drafter, v.verifier) for t in chosen for v in t.verifications})
        names = next(iter(profiles.values())).model_names
        summary["per_pair"] = {}
        for pair in pairs:
            pair_cells = score_grid(chosen, priors, args.strengths, args.discounts, {pair})
            pair_summary = grid_summary(pair_cells, default_key)
            summary["per_pair"][f"{names[pair[0]]}->{names[pair[1]]}"] = {
                key: pair_summary[key]
                for key in ("traces", "best", "best_nats_per_draft", "neighbourhood", "default")
            }
        grids[mode] = summary
        log(f"[score] {mode}: {len(chosen)} traces, best {summary['best']}")
    # Decision quality: the configurations a replanner with each setting would choose, judged
    # under the acceptance each request then realised (next switch horizon; whole request).
    decisions: dict[str, Any] = {mode: {} for mode in modes + ["all"]}
    horizons = {"horizon": float(default.switch_horizon_tokens), "rest_of_request": math.inf}
    regret_cache: dict[Any, tuple[list[list[float]], float]] = {}
    for name, horizon in horizons.items():
        pooled: dict[tuple[float, float], list[float]] = {}
        for mode in modes:
            values = regret_grid(
                [t for t in traces if t.mode == mode],
                profiles,
                args.strengths,
                args.discounts,
                horizon,
                regret_cache,
            )
            decisions[mode][name] = regret_summary(values, default_key)
            for key, series in values.items():
                pooled.setdefault(key, []).extend(series)
        decisions["all"][name] = regret_summary(pooled, default_key)
    for mode in modes + ["all"]:
        log(
            f"[decisions] {mode}: least regret over the next {default.switch_horizon_tokens} "
            f"tokens {decisions[mode]['horizon']['best']}, over the rest of the request "
            f"{decisions[mode]['rest_of_request']['best']}"
        )
    # The recommendation: of the settings that predict verifications as well as the best (the
    # likelihood's neighbourhood), the one whose decisions are best over the switch horizon.
    regret_by_key = {
        (r["prior_strength"], r["discount"]): r["regret"]
        for r in decisions["all"]["horizon"]["cells"]
    }
    chosen_key = min(
        (tuple(cell) for cell in grids["all"]["neighbourhood"]), key=lambda k: regret_by_key[k]
    )
    # Per-pair strengths by empirical Bayes (profiles with per-prompt rates only) at the chosen
    # discount, against the chosen constant: recommended instead when it predicts better by more
    # than two standard errors and its regret is not worse by more than two.
    eb_result = None
    if any("by_prompt" in (p.extra.get("acceptance_details") or {}) for p in profiles.values()):
        eb_result = empirical_bayes(
            traces, profiles, cells_by_mode, chosen_key, regret_cache, horizons
        )
        for mode in modes + ["all"]:
            entry = eb_result[mode]
            log(
                f"[empirical Bayes] {mode}: {entry['nats_per_draft']:.4f} nats/draft "
                f"({entry.get('vs_constant', math.nan):+.4f} +- "
                f"{entry.get('vs_constant_stderr', math.nan):.4f} vs constant "
                f"{chosen_key[0]:g}), token error {entry['token_error']:.3f} "
                f"(constant {entry.get('constant_token_error', math.nan):.3f}), regret "
                f"{100 * entry['regret_horizon']['regret']:.1f}% (constant "
                f"{100 * entry['regret_horizon']['constant_regret']:.1f}%)"
            )
    recommended_strength: float | str = chosen_key[0]
    if eb_result is not None:
        eb_pooled = eb_result["all"]
        regret = eb_pooled["regret_horizon"]
        if (
            eb_pooled["vs_constant"] > 2 * eb_pooled["vs_constant_stderr"]
            and regret["vs_constant"] <= 2 * regret["vs_constant_stderr"]
        ):
            recommended_strength = "empirical Bayes"
    # Change points (AdaptiveConfig.change_rate) for the decoder's estimator at that discount.
    change_result = change_points(
        traces, profiles, args.change_rates, chosen_key[1], regret_cache, horizons
    )
    for rate, entry in change_result["rates"].items():
        pooled = entry["all"]
        log(
            f"[change points] rate {rate}: {pooled['nats_per_draft']:.4f} nats/draft "
            f"({pooled['vs_zero']:+.4f} +- {pooled['vs_zero_stderr']:.4f} vs none), token "
            f"error {pooled['token_error']:.3f}, bias {pooled['token_bias']:+.3f}, regret "
            f"{100 * pooled['regret_horizon']:.1f}% ({100 * pooled['regret_horizon_vs_zero']:+.1f}"
            f" +- {100 * pooled['regret_horizon_vs_zero_stderr']:.1f})"
        )
    config = AdaptiveConfig(
        prior_strength=None if recommended_strength == "empirical Bayes" else chosen_key[0],
        discount=chosen_key[1],
        change_rate=change_result["recommended"],
        replan_interval=1,
        min_draft_confidence=0.0,  # the traces were decoded without early stopping
    )
    # The reaction of a decoder started from the plan (the alternative's traces would switch to
    # the plan at once: a different configuration, not a reaction to the request).
    default_replan = dataclasses.replace(default, replan_interval=1, min_draft_confidence=0.0)
    reactions = {
        mode: {
            "recommended": reaction_delays(
                [t for t in traces if t.mode == mode and t.role == "plan"],
                profiles,
                config,
                args.intervals,
            ),
            "default": reaction_delays(
                [t for t in traces if t.mode == mode and t.role == "plan"],
                profiles,
                default_replan,
                args.intervals,
            ),
        }
        for mode in modes
    }
    decide_ms, target_ms = {}, {}
    for mode in modes:
        profile = profiles[mode]
        longest = max((t for t in traces if t.mode == mode), key=lambda t: len(t.verifications))
        decide_ms[mode] = decision_cost_ms(profile, longest, config, args.decide_repeats)
        costs = profile.costs_ms[-1]
        target_ms[mode] = float(costs[0] if isinstance(costs, tuple) else costs)
    interval = recommend_interval(decide_ms, target_ms, args.overhead_limit, args.intervals)
    overhead = {
        mode: {
            "decide_ms": decide_ms[mode],
            "target_1_token_pass_ms": target_ms[mode],
            "overhead_fraction_by_interval": {
                str(r): decide_ms[mode] / (r * target_ms[mode]) for r in args.intervals
            },
        }
        for mode in modes
    }
    grid_cells = {(r["prior_strength"], r["discount"]): r for r in grids["all"]["cells"]}
    regret_cells = {
        name: {(r["prior_strength"], r["discount"]): r for r in decisions["all"][name]["cells"]}
        for name in ("horizon", "rest_of_request")
    }

    def evidence_of(key) -> dict[str, Any]:
        cell = grid_cells.get(key)
        return {
            "nats_per_draft": None if cell is None else cell["nats_per_draft"],
            "vs_likelihood_best": None if cell is None else cell["vs_best"],
            "vs_likelihood_best_stderr": None if cell is None else cell["vs_best_stderr"],
            "in_likelihood_neighbourhood": None if cell is None else cell["within_two_stderr"],
            "token_error": None if cell is None else cell["token_error"],
            **{
                f"regret_{name}": (cells[key]["regret"] if key in cells else None)
                for name, cells in regret_cells.items()
            },
            **{
                f"regret_{name}_vs_least": (cells[key]["vs_best"] if key in cells else None)
                for name, cells in regret_cells.items()
            },
            **{
                f"regret_{name}_vs_least_stderr": (
                    cells[key]["vs_best_stderr"] if key in cells else None
                )
                for name, cells in regret_cells.items()
            },
        }

    recommendation = {
        "prior_strength": recommended_strength,
        "constant_prior_strength": chosen_key[0],
        "discount": chosen_key[1],
        "change_rate": change_result["recommended"],
        "replan_interval": interval,
        "rule": "constant prior_strength and discount: of the settings within two standard errors "
        "of the best predictive log-likelihood (pooled modes), the least decision regret over the "
        "switch horizon; prior_strength: empirical Bayes per pair instead when the profiles have "
        "per-prompt rates and it predicts better than that constant by more than two standard "
        "errors with a regret not worse by more than two; replan_interval: the smallest whose "
        "decision overhead is under "
        f"{args.overhead_limit:g} of the target's 1-token pass in every mode",
        "current_default": {
            "prior_strength": (
                "empirical Bayes per pair (hierspec.adaptive.prior_strengths; constant "
                f"{FALLBACK_PRIOR_STRENGTH:g} for a profile without per-prompt rates)"
                if default.prior_strength is None
                else default.prior_strength
            ),
            "discount": default.discount,
            "change_rate": default.change_rate,
            "replan_interval": default.replan_interval,
        },
        "evidence": {
            "recommended": evidence_of(chosen_key),
            "current_default": evidence_of(default_key),
            "likelihood_best": grids["all"]["best"],
            "likelihood_best_per_mode": {mode: grids[mode]["best"] for mode in modes},
            "likelihood_neighbourhood": grids["all"]["neighbourhood"],
            "least_regret_horizon": decisions["all"]["horizon"]["best"],
            "least_regret_rest_of_request": decisions["all"]["rest_of_request"]["best"],
            "decide_ms": decide_ms,
            "overhead_at_recommended_interval": {
                mode: decide_ms[mode] / (interval * target_ms[mode]) for mode in modes
            },
        },
    }
    return {
        "recommendation": recommendation,
        "empirical_bayes": eb_result,
        "change_points": change_result,
        "grid": grids,
        "decisions": decisions,
        "reaction": reactions,
        "decision_overhead": overhead,
    }


def format_grid(mode: str, summary: dict[str, Any], strengths, discounts) -> str:
    cells = {(r["prior_strength"], r["discount"]): r for r in summary["cells"]}
    header = ["strength \\ discount", *[f"{d:g}" for d in discounts]]
    rows = []
    for strength in strengths:
        row = [f"{strength:g}"]
        for discount in discounts:
            cell = cells[(strength, discount)]
            mark = "*" if cell["within_two_stderr"] else " "
            row.append(f"{cell['vs_best']:+.4f}{mark}")
        rows.append(row)
    token_rows = [
        [f"{strength:g}", *[f"{cells[(strength, d)]['token_error']:.3f}" for d in discounts]]
        for strength in strengths
    ]
    best = summary["best"]
    lines = [
        f"== {mode}: {summary['traces']} traces; best prior_strength {best['prior_strength']:g} "
        f"discount {best['discount']:g} at {summary['best_nats_per_draft']:.4f} nats per tested "
        f"draft (profile alone {summary['profile_only_nats_per_draft']:.4f}, best constant in "
        f"hindsight {summary['hindsight_constant_nats_per_draft']:.4f}) ==",
        "log-likelihood per tested draft minus the best's (paired mean over traces; *: within "
        "two standard errors of the best)",
        format_table(header, rows),
        f"mean |predicted - measured| accepted drafts per verification (profile alone "
        f"{summary['profile_only_token_error']:.3f}, best constant in hindsight "
        f"{summary['hindsight_constant_token_error']:.3f})",
        format_table(["strength \\ discount", *[f"{d:g}" for d in discounts]], token_rows),
        "per pair: "
        + "; ".join(
            f"{pair} best {p['best']['prior_strength']:g}/{p['best']['discount']:g} "
            f"({p['traces']} traces, {len(p['neighbourhood'])} cells within 2 se)"
            for pair, p in summary["per_pair"].items()
        ),
    ]
    return "\n".join(lines)


def format_regret(mode: str, decisions: dict[str, Any], strengths, discounts) -> str:
    lines = []
    for name, label in (("horizon", "the next switch horizon"), ("rest_of_request", "the rest")):
        summary = decisions[name]
        cells = {(r["prior_strength"], r["discount"]): r for r in summary["cells"]}
        rows = [
            [
                f"{strength:g}",
                *[
                    f"{100 * cells[(strength, d)]['regret']:.1f}"
                    + (
                        "*"
                        if cells[(strength, d)]["vs_best"]
                        <= 2 * cells[(strength, d)]["vs_best_stderr"]
                        else " "
                    )
                    for d in discounts
                ],
            ]
            for strength in strengths
        ]
        best = summary["best"]
        lines += [
            f"== {mode}: decision regret (%, excess latency of the chosen configuration under "
            f"the acceptance of {label} of the request; *: within two standard errors of the "
            f"least, {best['prior_strength']:g}/{best['discount']:g}) ==",
            format_table(["strength \\ discount", *[f"{d:g}" for d in discounts]], rows),
        ]
    return "\n".join(lines)


def format_interval(results: dict[str, Any]) -> str:
    lines = []
    for mode, overhead in results["decision_overhead"].items():
        reaction = results["reaction"][mode]["recommended"]
        default = results["reaction"][mode]["default"]
        rows = [
            [
                str(row["interval"]),
                f"{100 * overhead['overhead_fraction_by_interval'][str(row['interval'])]:.2f}%",
                "-" if row["mean_delay_passes"] is None else f"{row['mean_delay_passes']:.1f}",
                "-" if row["max_delay_passes"] is None else str(row["max_delay_passes"]),
                "-" if row["mean_delay_tokens"] is None else f"{row['mean_delay_tokens']:.1f}",
                str(row["never_switches"]),
            ]
            for row in reaction["by_interval"]
        ]
        lines += [
            f"== {mode}: decide {overhead['decide_ms']:.3f} ms (median), target 1-token pass "
            f"{overhead['target_1_token_pass_ms']:.1f} ms; {reaction['traces_that_switch']} of "
            f"{reaction['traces']} plan traces would switch, first at pass "
            f"{reaction['first_switch_pass_median']} (median), at "
            f"{100 * reaction['switching_passes_fraction']:.0f}% of decisions (default settings: "
            f"{default['traces_that_switch']} traces, pass {default['first_switch_pass_median']}, "
            f"{100 * default['switching_passes_fraction']:.0f}%) ==",
            format_table(
                [
                    "interval",
                    "overhead <=",
                    "delay passes (mean)",
                    "max",
                    "delay tokens (mean)",
                    "never switches",
                ],
                rows,
            ),
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------

FULL = dict(
    tokens=128, prompts_per_category=1, ungrounded_prompts=4, modes=["greedy", "temperature1"]
)
QUICK = dict(tokens=32, prompts_per_category=1, ungrounded_prompts=1, modes=["greedy"])


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_prompt_arguments(parser, FULL)
    parser.add_argument("--strengths", type=float, nargs="+", default=list(STRENGTHS))
    parser.add_argument("--discounts", type=float, nargs="+", default=list(DISCOUNTS))
    parser.add_argument("--change-rates", type=float, nargs="+", default=list(CHANGE_RATES))
    parser.add_argument("--intervals", type=int, nargs="+", default=list(INTERVALS))
    parser.add_argument("--decide-repeats", type=int, default=200)
    parser.add_argument(
        "--overhead-limit",
        type=float,
        default=0.01,
        help="largest decision overhead per target pass, a fraction (0.01)",
    )
    parser.add_argument("--max-draft-length", type=int, default=16)
    parser.add_argument(
        "--profile-prompts",
        type=int,
        default=16,
        help="calibration prompts of the cached profile (16, as hierspec generate)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 prompt per category and 1 ungrounded, 32 tokens, greedy only",
    )
    parser.add_argument(
        "--rescore",
        type=Path,
        help="score the traces of this results JSON again (no models); writes --out",
    )
    parser.add_argument(
        "--measure-by-prompt",
        action="store_true",
        help="with --rescore: measure the per-prompt acceptance of the traces' models now (the "
        "profiler's calibration prompts; a few minutes per mode) for the empirical-Bayes prior "
        "strengths, when the recorded profiles predate them",
    )
    parser.add_argument("--cache", help="family cache directory")
    parser.add_argument("--out", type=Path, default=RESULTS / "estimator-cpu.json")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    defaults = {**FULL, **QUICK} if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _profile_dict(profile: Profile) -> dict[str, Any]:
    """The profile without its metadata (names, costs, acceptance, and the per-prompt rates of
    ``acceptance_details`` when it has them): the prior and costs the scoring needs."""
    return {
        "models": [
            {"name": name, "costs_ms": list(cost) if isinstance(cost, tuple) else cost}
            for name, cost in zip(profile.model_names, profile.costs_ms)
        ],
        "acceptance": [list(row) for row in profile.acceptance],
        **(
            {
                "acceptance_details": {
                    key: details[key]
                    for key in ("by_prompt", "prompt_positions", "note")
                    if key in details
                }
            }
            if "by_prompt" in (details := profile.extra.get("acceptance_details") or {})
            else {}
        ),
    }


def main(argv=None) -> int:
    args = parse_arguments(argv)
    started = time.perf_counter()
    report = Report("estimator")

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    if args.rescore is not None:
        import json

        previous = json.loads(args.rescore.read_text())
        traces = [Trace.from_dict(t) for t in previous["traces"]]
        profiles = {
            mode: Profile.from_dict(entry["profile"]) for mode, entry in previous["modes"].items()
        }
        modes_info = previous["modes"]
        recording = previous.get("recording", {})
        log(f"rescoring {len(traces)} traces of {args.rescore}")
        if args.measure_by_prompt:
            profiles = measure_by_prompt(traces, profiles, args, log)
            for mode, profile in profiles.items():
                modes_info[mode] = {**modes_info[mode], "profile": _profile_dict(profile)}
    else:
        import torch
        import transformers

        torch.set_num_threads(1)
        transformers.logging.set_verbosity_error()
        from adaptive import select_prompts

        from hierspec.family import load_family

        family = load_family(args.cache, prepare=False, progress=not args.no_progress)
        prompts = select_prompts(
            family.tokenizer, args.prompts_per_category, args.ungrounded_prompts
        )
        log(f"family {', '.join(family.names)}; {len(prompts)} prompts")
        traces, profiles, modes_info = [], {}, {}
        for mode in args.modes:
            profile, path, configs, mode_traces = record_mode(family, mode, args, prompts, log)
            traces += mode_traces
            profiles[mode] = profile
            modes_info[mode] = {
                "profile_path": str(path),
                "profile": _profile_dict(profile),
                "configurations": [
                    {"chain": list(chain), "draft_lengths": list(lengths)}
                    for chain, lengths in configs
                ],
            }
        recording = {
            "command": report.command,
            "seconds": time.perf_counter() - started,
            "prompts": [
                {
                    key: prompt[key]
                    for key in ("category", "source", "name", "message")
                    if prompt.get(key) is not None
                }
                | {"tokens": int(prompt["input_ids"].shape[1])}
                for prompt in prompts
            ],
        }
        log(f"recorded {len(traces)} traces in {recording['seconds']:.0f} s")
    results = analyse(traces, profiles, args, log)
    for mode, summary in results["grid"].items():
        print(format_grid(mode, summary, args.strengths, args.discounts), flush=True)
    for mode, decisions in results["decisions"].items():
        print(format_regret(mode, decisions, args.strengths, args.discounts), flush=True)
    print(format_interval(results), flush=True)
    recommendation = results["recommendation"]
    log(
        f"recommended prior_strength {recommendation['prior_strength']}, discount "
        f"{recommendation['discount']:g}, replan_interval {recommendation['replan_interval']} "
        f"(default {recommendation['current_default']})"
    )
    report.write(
        args.out,
        {
            **results,
            "definitions": {
                "nats_per_draft": "sum over verifications of k log a + (t - k) log(1 - a), a "
                "the estimator's estimate of the pair before the verification, k of t tested "
                "drafts accepted; divided by the drafts tested in the trace; mean over traces",
                "vs_best": "paired mean over traces of nats_per_draft minus the best cell's; "
                "within_two_stderr: not below -2 standard errors of that mean",
                "token_error": "mean over verifications of |sum_{m=1..L} a^m - accepted|, L "
                "the batch length; mean over traces",
                "token_bias": "(sum predicted - sum accepted) / sum accepted per trace; mean",
                "profile_only": "the profile's rate, never updated (prior_strength 1e12)",
                "hindsight_constant": "each pair at its trace's accepted / tested",
                "reaction": "a real Replanner (recommended prior_strength and discount) fed a "
                "trace, asked after every target pass: delay of the first switch at interval R "
                "against R = 1, over the traces that would switch",
                "overhead": "decide_ms / (interval * the target's 1-token pass in the profile): "
                "an upper bound of the decision's share of decode time",
            },
            "settings": {
                key: (str(value) if isinstance(value, Path) else value)
                for key, value in vars(args).items()
            },
            "recording": recording,
            "modes": modes_info,
            "traces": [trace.to_dict() for trace in traces],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
