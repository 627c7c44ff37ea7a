"""Online acceptance estimates and re-planning during generation (the adaptive hierarchy).

A profile's acceptance rates are averages over calibration text; one request can differ a lot
(the n-gram level accepts 0.58 of its drafts on text it can copy from and 0.26 on a chat prompt
it cannot). The adaptive decoder keeps, per pair of candidates, a posterior over the acceptance
rate, fed by the verifications it runs, and every few target passes asks the planner for the best
configuration under the current estimates; it switches between cycles when the predicted gain
repays the switch.

Terms:
    prior        the profile's rate ``a_ij`` as ``n0_ij`` pseudo-observations (``n0_ij * a_ij``
                 accepted, ``n0_ij * (1 - a_ij)`` rejected). ``n0_ij`` by empirical Bayes from
                 how much the pair's rate varies between the profile's calibration prompts
                 (:func:`prior_strengths`): a pair whose rate is the same on every prompt
                 (the target's bf16 copy) keeps its profile rate long, one whose rate depends on
                 the prompt (the n-gram level: 0.19 to 0.97 greedy) learns the request's rate
                 from a few drafts. ``AdaptiveConfig.prior_strength`` fixes one ``n0`` instead.
    evidence     per pair (i, j) in use, the tested drafts of model ``i`` verified by model ``j``
                 in this request: ``accepted`` and ``rejected`` counts, each multiplied by
                 ``discount`` per later tested draft of the pair (exponential forgetting, a
                 window of about ``1 / (1 - discount)`` drafts), so the estimate follows drift.
                 The prior counts as observations made before the request and is discounted
                 with them (its weight is ``w = n0_ij * discount^n`` after ``n``
                 tested drafts of the pair), so the request's evidence outweighs any prior in
                 the end: with an undiscounted prior the estimate could never move further than
                 ``w / (w + 1 / (1 - discount))`` of the way from the profile's rate.
    estimate     the posterior mean ``(w * a_ij + accepted) / (w + accepted + rejected)``.
    change point with ``AdaptiveConfig.change_rate = h > 0``, before each verification of a
                 pair its rate may jump (probability ``h``) to a fresh draw from its prior:
                 the n-gram level starts or stops copying. The estimate is then the mean over
                 the posterior of the time of the last change (Bayesian online change-point
                 detection, :class:`RatePosteriors`): two or three verifications that the
                 current rate makes unlikely move it, where the discount window would take
                 ~20 tested drafts. The continue rates of early stopping learn the same way
                 (their priors' strength a constant, ``AdaptiveConfig.continue_prior_strength``).
    unseen pair  a pair not verified in this request (not adjacent in any chain used so far).
                 Its estimate moves its prior by the request's shift of the drafter: the mean,
                 weighted by evidence, of ``logit(estimate) - logit(prior)`` over the observed
                 pairs with the same drafter ``i``. The reason: what makes a request hard for a
                 drafter (no text to copy for the n-gram level, an unusual domain for a small
                 model) is a property of the drafter and the text, and the verifier it is tested
                 by matters less (the n-gram level's rate against the target and against the
                 target's bf16 copy move together). With no observed pair for the drafter the
                 prior stands: a drafter's behaviour says little about another's. The shift
                 pools the bottom acceptance at every early-stopping threshold with the
                 acceptance without stopping (:meth:`Replanner.drafter_shifts`): while the
                 n-gram level runs at a threshold, its rates without stopping (and at the
                 thresholds below, as long as they have not run) move with what its batches
                 showed there.

Early stopping of the bottom level (policy.md rule 1): the bottom level ends its batch before a
draft it is not confident about (its own largest probability below a threshold). The profiler
measures, at a few thresholds on its calibration text, the two rates the planner needs: per
model its *continue rate* (the probability that it drafts at a checked position) and per pair
the *bottom acceptance* of the drafts it hands up as level 0 (the drafts it was confident
about). Whether stopping pays, and where, depends on the drafter, the sampling mode and the
request, so by default (``AdaptiveConfig.min_draft_confidence=None``) the threshold is
re-planned like the chain: the candidates are 0 (no stopping) and the profile's thresholds, and
each has its own :class:`StoppingEstimator` (the two rates at that threshold, the profile's as
prior). They all learn from the same batches: the engine reports the confidence of every draft
of a bottom batch, and a batch run at threshold ``c`` tells what threshold ``c' >= c`` would
have done (it would have stopped before the first draft below ``c'``, which is also where its
tested and accepted drafts end), so every threshold at or above the one in use gets evidence
and those below keep what they had. The request starts at the threshold whose plan the profile
predicts fastest; each decision plans at the threshold in use and at one other candidate (each
in turn) and takes the fastest configuration (chain, draft lengths and threshold), with the
usual switching rule (a change of threshold alone costs no catch-up). A fixed
``min_draft_confidence`` keeps one threshold.

Costs (``AdaptiveConfig.learn_costs``, on by default): a profile's cost table was measured at
another moment, and on a shared machine a model's passes can run 20% slower or faster an hour
later. Per model the decoder learns a factor on its cost row from the passes it times
(:class:`CostEstimator`) and plans and predicts with the scaled rows; a model not timed yet in
the request takes the pooled factor of those that were (``AdaptiveConfig.pool_costs``), since
what slows one model's passes down slows the others' too.

Calibration: even with the request's acceptance and costs, a configuration's cycles can take
longer than the latency model says, and not by the same factor for every configuration: engine
work per pass that no cost row holds, acceptance that comes in runs (which hurts a 3-model
chain, whose middle level throws away its pending tokens at a target rejection, more than a
single draft). Per configuration (chain and early-stopping threshold) the decoder learns the
ratio of the time its cycles took to the time the decisions predicted for them
(:class:`LatencyCalibration`): each decision records it, and the predicted latency times it is
the decoder's calibrated forecast. With ``AdaptiveConfig.calibrate`` the decisions also compare
configurations at those ratios (one that measured slower than predicted is left and not
re-entered on the model's word alone; a configuration not run in this request has the ratio of
all cycles so far, so the comparison is the model's until a configuration has shown its own);
off by default, since that measured no faster. The comparison with the target alone can be
made the exception (``AdaptiveConfig.calibrate_fallback``, with ``learn_costs``, which takes the
machine's factor out of every ratio; also off by default, it measured no faster either): the
target alone's prediction
is one pass of its learned cost per token and rests on no acceptance, so its time is known where
a drafting configuration's is modelled; a drafting configuration is compared with the target
alone at its own ratio (its cycles in this request, 1 before it has run; not the pooled one), so
a request whose drafts run slower than the model says leaves for the target alone when they
measure slower than it, and comes back only when the model's gain survives the ratio the
configuration showed. Each cycle is compared with the latency predicted for it re-priced at the
cost factors learned since the decision (each model's share of it), so that a ratio is the
model's error and not the cost estimator's lag.

Switching (``AdaptiveConfig.switch_pessimism``): the configuration in use is priced at the
posterior means, every candidate with the acceptance of each pair the configuration in use does
not verify lowered by ``switch_pessimism`` posterior standard deviations
(:meth:`AcceptanceEstimator.estimates`). Early in a request the rates of a configuration not yet
run are the profile's, with a wide posterior; without the caution the decoder moved into such
configurations after one or two target passes and out again when they ran slower. A new draft
length of the chain in use, and the fall back to the target alone, are judged at the means.

The shadow (``AdaptiveConfig.shadow_max_cost``, ``fallback_min_gain``): a model out of the
chain is tested by nothing, so its estimates would freeze where they were when the decoder left
it, and leaving it would be for good: the target alone verifies nothing at all, and a chain of
large models without the n-gram level never learns that the text turned copyable. The cheapest
candidate, when its pass costs at most ``shadow_max_cost`` of the target's (the n-gram level,
~0.4%), shadows every chain it is not in: it processes the committed tokens and its row at each
committed position is scored against the target's row there, as its first draft would have been
(:meth:`Replanner.observe_shadow`). Its estimates keep moving, the decoder drafts with it again
when the text turns copyable, and the fall back to the target alone can be taken at a smaller
predicted gain (``fallback_min_gain``, 3%: a request whose drafts do not pay runs about that
much slower than the target alone at most, by the model).

The prompt: every model of a chain first prefills the prompt, and the one that joins later
catches up on the text it missed with one such pass. The first configuration of a request is the
one with the least expected prefill + decode time for its prompt length and ``max_new_tokens``
(:meth:`Replanner.initial_for_request`, :func:`hierspec.planning.plan_for_prompt`); the
catch-up of a switch is priced the same way (:func:`hierspec.planning.prefill_costs`).

A re-planning decision depends only on the tokens committed so far, the outcomes of past
verifications (and of the shadow's scores, drawn from a random stream of their own) and how
long past passes and cycles took, none of which depends on the random
draws still to come, so it is a stopping-time decision and the output stays exactly the
target's distribution (``docs/policy.md``, rule 6).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _core
from .planning import (
    PlanEntry,
    Profile,
    RequestPlan,
    _evaluate_lists,
    choose_min_draft_confidence,
    evaluate,
    forward_cost_rows,
    pass_cost,
    plan,
    plan_for_prompt,
    prefill_costs,
)

__all__ = [
    "AcceptanceEstimator",
    "BottomBatch",
    "ContinueEstimator",
    "CostEstimator",
    "LatencyCalibration",
    "RatePosteriors",
    "StoppingEstimator",
    "AdaptiveConfig",
    "PlanDecision",
    "Replanner",
    "predicted_latency_of_run",
    "continue_strengths",
    "has_prompt_rates",
    "prior_strengths",
]

_RATE_FLOOR = 1e-4  # keeps logits finite for profile rates of exactly 0 or 1
# CostEstimator: every model's prior counts as this many of the most expensive model's 1-token
# passes of predicted time (the target's); each pass of a model discounts the earlier ones by
# this factor (a window of about ten passes, a few target cycles: one pass of a model varies by
# ~5-10% on a quiet CPU, the machine's load changes over seconds).
COST_PRIOR_PASSES = 2.0
COST_DISCOUNT = 0.9
# Engine work per forward pass (AdaptiveConfig.learn_overhead): the prior counts as this many
# passes at 0 ms; each cycle discounts the earlier ones by this factor.
OVERHEAD_PRIOR_PASSES = 4.0
OVERHEAD_DISCOUNT = 0.9
# LatencyCalibration: the prior of each ratio counts as this many of the target's 1-token passes
# of predicted time at the pooled ratio; each cycle of a configuration discounts its earlier ones
# by this factor (a window of about twenty cycles: one cycle's time over its prediction varies by
# tens of percent with the tokens it commits, the effects to find are 5-15%).
CALIBRATION_PRIOR_PASSES = 4.0
CALIBRATION_DISCOUNT = 0.95
# AdaptiveConfig.calibrate_fallback: a configuration's own ratio, against the target alone, has a
# prior at 1 of this many target passes: one cycle's time over its prediction varies by 2x with
# the tokens it commits (1 to T + 1), and with the forecast's 4 passes one short cycle at a
# request's start sent the decoder to the target alone for good (the ratio stays while the
# configuration does not run).
FALLBACK_CALIBRATION_PRIOR_PASSES = 16.0
# The prior's pseudo-observations where the profile has no per-prompt rates (profiles written
# before the profiler measured them): the constant chosen by bench/estimator.py (theory §10.1).
FALLBACK_PRIOR_STRENGTH = 32.0
# Empirical-Bayes strengths are clipped to this range: at least one pseudo-observation, and at
# most a long request's worth where the prompts show no variation beyond their sampling noise.
PRIOR_STRENGTH_RANGE = (1.0, 1024.0)


def has_prompt_rates(profile: Profile) -> bool:
    """Whether ``profile`` carries per-prompt rates of at least two calibration prompts
    (``by_prompt`` and ``prompt_positions`` of its ``acceptance_details``): what
    :func:`prior_strengths` needs to estimate a strength instead of using its fallback. Profiles
    written before the profiler measured them have none (``hierspec generate --reprofile``).

    >>> has_prompt_rates(Profile(("d", "t"), (1.0, 10.0), ((1.0, 0.5), (0.0, 1.0))))
    False
    """
    details = profile.extra.get("acceptance_details") or {}
    by_prompt, positions = details.get("by_prompt"), details.get("prompt_positions")
    return isinstance(by_prompt, list) and isinstance(positions, list) and len(positions) >= 2


def prior_strengths(profile: Profile, fallback: float = FALLBACK_PRIOR_STRENGTH) -> np.ndarray:
    """``[M, M]`` pseudo-observations of each pair's prior, by empirical Bayes from how much the
    pair's rate varies between the profile's calibration prompts (``by_prompt`` and
    ``prompt_positions`` of its ``acceptance_details``, written by the profiler).

    A Beta prior with mean ``a`` and strength ``n0`` has variance ``a (1 - a) / (n0 + 1)``.
    Matched to the variance of the pair's rate between prompts,
    ``V = var_p(r_p) - mean_p(r_p (1 - r_p) / n_p)`` (the spread of the per-prompt mean rates
    ``r_p`` less their sampling noise over ``n_p`` positions: exact for greedy 0/1 outcomes,
    an upper bound otherwise), it gives ``n0 = a (1 - a) / V - 1`` with ``a`` the profile's
    rate, clipped to ``PRIOR_STRENGTH_RANGE`` (the upper end where no variation beyond the noise
    shows). ``fallback`` where a pair has no per-prompt rates (a profile written before they
    were measured, fewer than two prompts) and for ``i >= j`` (never used).

    Examples
    --------
    >>> profile = Profile(
    ...     ("draft", "target"), (1.0, 10.0), ((1.0, 0.5), (0.0, 1.0)),
    ...     extra={"acceptance_details": {
    ...         "by_prompt": [[None, [0.2, 0.8, 0.3, 0.7]], [None, None]],
    ...         "prompt_positions": [64, 64, 64, 64]}},
    ... )
    >>> round(float(prior_strengths(profile)[0, 1]), 2)  # 0.25 / (0.0867 - 0.0029) - 1
    1.98
    >>> float(prior_strengths(Profile(("d", "t"), (1.0, 10.0), ((1.0, 0.5), (0.0, 1.0))))[0, 1])
    32.0
    """
    size = len(profile.model_names)
    strengths = np.full((size, size), float(fallback))
    if not has_prompt_rates(profile):
        return strengths
    details = profile.extra["acceptance_details"]
    by_prompt, positions = details["by_prompt"], details["prompt_positions"]
    for i in range(size):
        for j in range(i + 1, size):
            rates = by_prompt[i][j] if i < len(by_prompt) and j < len(by_prompt[i]) else None
            if isinstance(rates, list) and len(rates) == len(positions):
                strengths[i, j] = _empirical_bayes_strength(
                    float(profile.acceptance[i][j]), rates, positions
                )
    return strengths


def continue_strengths(
    profile: Profile, threshold: float, fallback: float = FALLBACK_PRIOR_STRENGTH
) -> np.ndarray:
    """``[M]`` pseudo-observations of each model's continue rate at early-stopping
    ``threshold``, by the empirical Bayes of :func:`prior_strengths` from the profile's
    per-prompt continue rates (``continue_by_prompt`` of its ``acceptance_details``) around the
    profile's rate at that threshold. ``fallback`` where the profile has none (written before
    the profiler measured them, or not measured at ``threshold``).

    A drafter's confidence depends on the text as its acceptance does (the n-gram level is
    confident while it copies), so a continue rate can vary between prompts as much. Used with
    ``AdaptiveConfig(continue_prior_strength=None)``; the default keeps the constant, which
    measured faster in decisions (the weak priors changed the threshold on a few checks).

    Examples
    --------
    >>> from hierspec.planning import EarlyStoppingRates
    >>> profile = Profile(
    ...     ("draft", "target"), (1.0, 10.0), ((1.0, 0.5), (0.0, 1.0)),
    ...     early_stopping=(EarlyStoppingRates(0.5, (0.5, 1.0), ((1.0, 0.6), (0.0, 1.0))),),
    ...     extra={"acceptance_details": {
    ...         "prompt_positions": [64, 64, 64, 64], "stop_thresholds": [0.5],
    ...         "continue_by_prompt": [[[0.2, 0.8, 0.3, 0.7], [1.0, 1.0, 1.0, 1.0]]]}},
    ... )
    >>> [round(float(value), 2) for value in continue_strengths(profile, 0.5)]
    [1.98, 1024.0]
    >>> float(continue_strengths(profile, 0.7)[0])  # not measured there
    32.0
    """
    size = len(profile.model_names)
    strengths = np.full(size, float(fallback))
    details = profile.extra.get("acceptance_details") or {}
    thresholds = details.get("stop_thresholds")
    by_threshold = details.get("continue_by_prompt")
    positions = details.get("prompt_positions")
    if not (
        isinstance(thresholds, list)
        and isinstance(by_threshold, list)
        and isinstance(positions, list)
        and len(positions) >= 2
        and threshold in thresholds
    ):
        return strengths
    index = thresholds.index(threshold)
    by_model = by_threshold[index] if index < len(by_threshold) else None
    means = profile.stopping_rates(threshold)["continue_rates"]
    if not isinstance(by_model, list) or means is None:
        return strengths
    for model in range(min(size, len(by_model))):
        rates = by_model[model]
        if isinstance(rates, list) and len(rates) == len(positions):
            strengths[model] = _empirical_bayes_strength(float(means[model]), rates, positions)
    return strengths


def _empirical_bayes_strength(
    mean: float, rates: Sequence[float], positions: Sequence[float]
) -> float:
    """The Beta prior strength ``n0 = a (1 - a) / V - 1`` of :func:`prior_strengths`: ``a`` =
    ``mean``, ``V`` the variance of the per-prompt ``rates`` less their sampling noise over
    ``positions``, clipped to ``PRIOR_STRENGTH_RANGE`` (its top where nothing is left)."""
    rates_array = np.asarray(rates, dtype=np.float64)
    counts = np.maximum(np.asarray(positions, dtype=np.float64), 1.0)
    between = float(rates_array.var(ddof=1)) - float(
        np.mean(rates_array * (1.0 - rates_array) / counts)
    )
    spread = mean * (1.0 - mean)
    low, high = PRIOR_STRENGTH_RANGE
    strength = high if between <= 0.0 or spread <= 0.0 else spread / between - 1.0
    return min(max(strength, low), high)


def check_min_draft_confidence(value: object) -> float:
    """``value`` as a float in ``[0, 1)``; ``TypeError`` / ``ValueError`` naming
    ``min_draft_confidence`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"min_draft_confidence must be a number in [0, 1), got {value!r}")
    if not 0.0 <= value < 1.0:  # also refuses NaN
        raise ValueError(f"min_draft_confidence must be in [0, 1), got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class AdaptiveConfig:
    """Settings of the adaptive hierarchy.

    Parameters
    ----------
    prior_strength
        Pseudo-observations the profile's rate counts as (> 0). Larger trusts the profile longer.
        ``None`` (the default): per pair by empirical Bayes from the profile's per-prompt rates
        (:func:`prior_strengths`; ``FALLBACK_PRIOR_STRENGTH`` = 32 where the profile has no
        per-prompt rates). The acceptance of pairs only; the continue rates have their own.
    continue_prior_strength
        Pseudo-observations of each continue rate's prior (early stopping; > 0). ``None``: per
        model and threshold by the same empirical Bayes from the profile's per-prompt continue
        rates (:func:`continue_strengths`; 2-6 for the n-gram level). The default, the constant
        32, measured faster: the empirical-Bayes strengths let a threshold's rate move on a few
        checks, and the decoder then changed threshold more often, 0.99x as fast greedy and
        0.97x at temperature 1 (``bench/adaptive.py``, ``docs/theory.md`` §11).
    discount
        Forgetting factor per tested draft of a pair, in (0, 1]; 1 never forgets.
    change_rate
        The prior probability, before each verification of a pair, that the pair's acceptance
        rate jumps (in [0, 1); 0: it never does, the discount alone follows drift). Above 0
        each pair's estimate is a mixture over the time of its last change (Bayesian online
        change-point detection, :class:`AcceptanceEstimator`), which follows a sudden change
        (the n-gram level ending a copy) within a few verifications.
    replan_interval, max_replan_interval
        Target passes between two planning decisions (>= 1): ``replan_interval`` after a
        switch (and at the start), doubled after each decision that keeps the configuration,
        up to ``max_replan_interval`` (>= ``replan_interval``). In the engine a decision costs
        about 1.2 ms, twice its cost measured alone (the model's passes between two decisions
        leave the CPU caches cold), 2% of the target's pass on CPU, where a request that keeps
        its configuration needs no decision after every pass.
    max_draft_length
        The planner's largest draft length.
    switch_horizon_tokens, min_relative_gain
        A switch needs a predicted gain of at least ``min_relative_gain`` of the current
        latency that repays the catch-up passes within ``switch_horizon_tokens`` tokens.
    switch_pessimism
        How sure a switch must be (>= 0): the configuration in use is priced at the posterior
        means of its rates, the candidates with the acceptance of every pair the configuration
        in use does not verify (another pair, or the bottom pair at another early-stopping
        threshold, 0 included) lowered by this many posterior standard deviations
        (:meth:`AcceptanceEstimator.estimates`). A configuration whose new pairs rest on a few
        verifications or on a weak prior (pairs the request has not run) must then pay under
        rates it is fairly sure to reach, while a new draft length of the chain in use is
        judged at the means; 0 compares means with means. At 0 the decoder ran 0.956x +-
        0.017 as fast as at 1 greedy (2.6 times the plan changes, worst category 0.92x
        against 1.00x of the static plan) and the same at temperature 1
        (``bench/adaptive.py``, ``docs/theory.md`` §10.1).
    min_draft_confidence
        Early stopping of the bottom level (policy.md rule 1), fixed for the decoder's lifetime;
        0 never stops. ``None`` (the default): re-planned during each request among 0 and the
        thresholds the profile measured, starting from the one whose plan the profile predicts
        fastest (:func:`hierspec.planning.choose_min_draft_confidence`; always 0 for a profile
        without ``early_stopping``; module docstring).
    learn_costs
        Scale each model's profile costs by the factor its timed passes in this request show
        (:class:`CostEstimator`): plans and predictions follow the machine's load.
    pool_costs
        With ``learn_costs``: a model not yet timed in this request takes the factor of the
        passes timed so far (pooled over the models, weighted by time) instead of 1, and its
        own passes take over as they come (:class:`CostEstimator`). Measured 1.08x as fast
        greedy and the same at temperature 1 as without (``docs/theory.md`` §10.1).
    learn_overhead
        With ``learn_costs``: learn the engine's work per forward pass in this request (the
        time of each cycle outside the passes timed in it, per pass: sampling, verification,
        cache trims) and add it to every model's cost, so configurations with more passes per
        token pay for them. Off by default: it made the prediction better (worst category +4%
        against +11% at temperature 1, +32% against +37% greedy) but not the decoder faster
        (1.00x greedy, 0.97x +- 0.024 at temperature 1; ``docs/theory.md`` §10.1).
    shadow_max_cost
        While the chain does not include it, the cheapest candidate whose 1-token pass costs at
        most this fraction of the target's (by the profile; 0: none) keeps up with the committed
        text and scores its prediction at each committed position against the target's row
        there: what its draft's acceptance would have been (rule 2's ``sum(min(p, q))`` for a
        draft from its own row, drawn from a random stream of its own), and its confidence,
        feed its estimates as a first draft would (:meth:`Replanner.observe_shadow`). Leaving
        it (for the target alone, or for a chain of larger drafts) is then no dead end: when the
        text turns copyable the estimate says so and the decoder drafts with it again. The
        bundled n-gram level costs about 0.4% of the target's pass; the shadow's pass over each
        cycle's committed tokens is priced into the latency of every chain it shadows.
    fallback_min_gain
        The gain the fall back to the target alone needs (instead of ``min_relative_gain``)
        while a candidate shadows the target (``shadow_max_cost``): a request whose drafts do
        not pay then runs at most about this much slower than the target alone, by the
        model's prediction. Without a shadow the target alone learns nothing, so it keeps
        ``min_relative_gain``.
    calibrate_fallback
        With ``learn_costs`` (which learns the machine's factor on every cost, so that what is
        left of a configuration's ratio is the model's error for it): compare a drafting
        configuration with the target alone (either way: falling back to it,
        or leaving it) at the drafting configuration's own ratio of measured to predicted time
        in this request (:meth:`LatencyCalibration.own_ratio`: its cycles' ratio, 1 before it
        has run). The target alone's latency is one pass of its learned cost per token and
        rests on no acceptance (its ratio is taken as 1), while a drafting configuration's rests
        on the acceptance law (i.i.d. within a batch), which is optimistic where the first draft
        of a batch is rejected more often than the rest (the README's own prompt, greedy, ran
        0.82-0.95x of the target alone with the model predicting 1.04-1.19x). Comparisons
        between drafting configurations stay the model's (``calibrate``). Off by default: in
        ``bench/results/adaptive-fallback-greedy-cpu.json`` (22 prompts, greedy, this variant
        against the default in the same run) it fell back on 3 requests, each of which then
        ran slower than without it (0.84x, 0.94x, 0.98x), and over all 22 it ran 0.992x +-
        0.023 as fast (mean of per-request ratios).
    calibrate
        Compare configurations by predicted latency times the ratio of measured to predicted
        time that each one's cycles showed in this request (:class:`LatencyCalibration`;
        module docstring). The ratios are learned either way (the decisions' ``calibration``
        fields, the calibrated forecast); off by default: deciding with them measured 0.97x
        as fast greedy and 1.00x at temperature 1 (``bench/adaptive.py``, ``docs/theory.md``
        §10.1).

    The defaults of the estimator and the interval were chosen by measurement
    (``bench/estimator.py``, ``bench/prediction_error.py``, ``docs/theory.md`` §10.1): a
    constant 32 with discount 0.95 (a window of about 20 tested drafts; the prior decays with
    the evidence) is within two standard errors of the best predictive likelihood of real
    verification traces and has the least decision regret among the constant settings; the
    per-pair empirical-Bayes strengths predict those traces better still; change points at
    0.01 predict them better again and made the decoder fastest of 0, 0.01 and 0.05 in both
    sampling modes; one decision costs 0.6 ms alone and 1.2 ms in the engine with the bundled
    family's five candidates and five thresholds (2% of a CPU target pass), so decisions back
    off while the configuration stays (``max_replan_interval``: 1.15% faster where nothing
    switched, the same within noise overall); ``min_relative_gain`` 0.1 ran 1.03x as fast as
    0.03 greedy and 1.00x at temperature 1 (``bench/adaptive.py``, interleaved).
    """

    prior_strength: float | None = None
    continue_prior_strength: float | None = FALLBACK_PRIOR_STRENGTH
    discount: float = 0.95
    change_rate: float = 0.01
    replan_interval: int = 1
    max_replan_interval: int = 4
    max_draft_length: int = 16
    switch_horizon_tokens: int = 64
    min_relative_gain: float = 0.1
    switch_pessimism: float = 1.0
    min_draft_confidence: float | None = None
    learn_costs: bool = True
    pool_costs: bool = True
    learn_overhead: bool = False
    calibrate: bool = False
    calibrate_fallback: bool = False
    shadow_max_cost: float = 0.02
    fallback_min_gain: float = 0.03

    def __post_init__(self) -> None:
        def number(name: str, value: object) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            return float(value)

        def integer(name: str, value: object) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
            return value

        def boolean(name: str, value: object) -> None:
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")

        if self.prior_strength is not None and number("prior_strength", self.prior_strength) <= 0:
            raise ValueError(f"prior_strength must be > 0, got {self.prior_strength!r}")
        if (
            self.continue_prior_strength is not None
            and number("continue_prior_strength", self.continue_prior_strength) <= 0
        ):
            raise ValueError(
                f"continue_prior_strength must be > 0, got {self.continue_prior_strength!r}"
            )
        if not 0 < number("discount", self.discount) <= 1:
            raise ValueError(f"discount must be in (0, 1], got {self.discount!r}")
        if not 0 <= number("change_rate", self.change_rate) < 1:
            raise ValueError(f"change_rate must be in [0, 1), got {self.change_rate!r}")
        if number("min_relative_gain", self.min_relative_gain) < 0:
            raise ValueError(f"min_relative_gain must be >= 0, got {self.min_relative_gain!r}")
        if not 0 <= number("shadow_max_cost", self.shadow_max_cost) <= 1:
            raise ValueError(f"shadow_max_cost must be in [0, 1], got {self.shadow_max_cost!r}")
        if number("fallback_min_gain", self.fallback_min_gain) < 0:
            raise ValueError(f"fallback_min_gain must be >= 0, got {self.fallback_min_gain!r}")
        if number("switch_pessimism", self.switch_pessimism) < 0:
            raise ValueError(f"switch_pessimism must be >= 0, got {self.switch_pessimism!r}")
        if self.min_draft_confidence is not None:
            check_min_draft_confidence(self.min_draft_confidence)
        boolean("learn_costs", self.learn_costs)
        boolean("pool_costs", self.pool_costs)
        boolean("learn_overhead", self.learn_overhead)
        boolean("calibrate", self.calibrate)
        boolean("calibrate_fallback", self.calibrate_fallback)
        integer("replan_interval", self.replan_interval)
        if integer("max_replan_interval", self.max_replan_interval) < self.replan_interval:
            raise ValueError(
                f"max_replan_interval must be >= replan_interval ({self.replan_interval}), got "
                f"{self.max_replan_interval}"
            )
        integer("max_draft_length", self.max_draft_length)
        integer("switch_horizon_tokens", self.switch_horizon_tokens)


def _logit(rate: np.ndarray) -> np.ndarray:
    clipped = np.clip(rate, _RATE_FLOOR, 1.0 - _RATE_FLOOR)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(value: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-value))


class RatePosteriors:
    """Posterior means of Bernoulli rates (one per entry of ``prior``), learned from counts of
    successes and failures: the core of :class:`AcceptanceEstimator` and
    :class:`ContinueEstimator`.

    Each rate's prior is ``Beta(n0 p, n0 (1 - p))`` (``p`` its entry of ``prior``, ``n0`` of
    ``strength``); the counts and the prior's pseudo-observations are discounted by ``discount``
    per observed draw. With ``change_rate > 0`` each rate may jump before each observation with
    that probability, to a value drawn from its prior again (Bayesian online change-point
    detection, Adams and MacKay 2007): the posterior is a mixture over the *run length* (the
    observations since the last change), one discounted Beta posterior per run length, at most
    ``max_runs`` of them (the two oldest are merged, weight-averaged, beyond it). With
    ``change_rate == 0`` there is one run and the mean is ``(w p + successes) / (w + draws)``.
    ``change_rate`` and ``max_runs`` are checked here; ``prior`` and ``strength`` by the
    estimators, which know their shapes.

    The state and its update live in the C++ core (``hierspec/rates.hpp``): the engine
    observes every verification into one acceptance and, per early-stopping threshold, two
    more rates, and the update there costs about a microsecond where numpy's small-array calls
    cost about 100.
    """

    def __init__(
        self,
        prior: np.ndarray,
        strength: np.ndarray,
        discount: float,
        change_rate: float = 0.0,
        max_runs: int = 32,
    ) -> None:
        if not 0.0 <= change_rate < 1.0:  # also refuses NaN
            raise ValueError(f"change_rate must be in [0, 1), got {change_rate!r}")
        if max_runs < 2:
            raise ValueError(f"max_runs must be >= 2, got {max_runs!r}")
        self.prior = prior
        self.strength = strength
        self._shape = prior.shape
        self._core = _core.RatePosteriors(
            prior.ravel().tolist(),
            np.broadcast_to(strength, prior.shape).ravel().tolist(),
            float(discount),
            float(change_rate),
            int(max_runs),
        )
        # means / stds / evidence of the current state, computed once between two observations
        # (a decision asks each estimator for them several times; observe clears it).
        self._memo: dict[str, np.ndarray] = {}

    def observe(self, index: tuple[int, ...], successes: int, failures: int) -> None:
        """Draws of rate ``index``: ``successes`` successes, then ``failures`` failures."""
        if len(index) != len(self._shape) or not all(
            0 <= i < n for i, n in zip(index, self._shape)
        ):
            raise IndexError(f"index {index!r} is out of range for rates of shape {self._shape}")
        flat = 0
        for i, n in zip(index, self._shape):
            flat = flat * n + int(i)
        self._core.observe(flat, int(successes), int(failures))
        self._memo.clear()

    def _memoized(self, name: str) -> np.ndarray:
        """A copy of the core's ``name`` (``means``, ``stds``, ``evidence``), read once per
        state (:attr:`_memo`)."""
        value = self._memo.get(name)
        if value is None:
            value = np.array(getattr(self._core, name)()).reshape(self._shape)
            self._memo[name] = value
        return value.copy()

    def evidence(self) -> np.ndarray:
        """Discounted draws per rate (expected over the run length)."""
        return self._memoized("evidence")

    def means(self) -> np.ndarray:
        """Posterior means (the prior where a rate has no draws)."""
        return self._memoized("means")

    def stds(self) -> np.ndarray:
        """Posterior standard deviations (of the mixture over the run length): each run's Beta
        posterior has variance ``m (1 - m) / (n + 1)`` (``m`` its mean, ``n`` its discounted
        pseudo-observations and draws)."""
        return self._memoized("stds")


def _adjacent_pairs(chain: Sequence[int]) -> set[tuple[int, int]]:
    """The (drafter, verifier) pairs a chain verifies."""
    return set(zip(chain, chain[1:]))


def _prior_weights(
    prior_strength: float | Sequence | np.ndarray,
    shape: tuple[int, ...],
    expected: str,
    used: tuple[np.ndarray, ...] | None = None,
) -> np.ndarray:
    """``prior_strength`` (one number, or an array of ``shape``: ``expected`` in the error)
    broadcast to ``shape``; its entries at ``used`` (all by default) must be finite and > 0."""
    weight = np.asarray(prior_strength, dtype=np.float64)
    if weight.shape not in ((), shape):
        raise ValueError(f"prior_strength must be a number or {expected}, got shape {weight.shape}")
    checked = weight if weight.ndim == 0 or used is None else weight[used]
    if not (np.all(np.isfinite(checked)) and np.all(checked > 0)):
        raise ValueError(f"prior_strength must be finite and > 0, got {prior_strength!r}")
    return np.broadcast_to(weight, shape).copy()


class AcceptanceEstimator:
    """Posterior acceptance rates of every pair of candidates for one request.

    Parameters
    ----------
    prior
        ``[M, M]`` profile acceptance, ``prior[i][j]`` for ``i < j``: model ``j`` accepts a draft
        of model ``i``.
    prior_strength
        Pseudo-observations of the prior (> 0): one number for every pair, or ``[M, M]`` per
        pair (:func:`prior_strengths`; entries with ``i >= j`` are not used).
    discount, change_rate
        See :class:`AdaptiveConfig`. With ``change_rate > 0`` each pair's posterior is a mixture
        over the time of its last change (:class:`RatePosteriors`): a rate that jumps (the
        n-gram level stops copying) is followed within a few verifications instead of a
        discount window.
    max_runs
        Run-length hypotheses kept per pair with ``change_rate > 0`` (>= 2).

    Examples
    --------
    >>> estimator = AcceptanceEstimator([[1, 0.6], [0, 1]], prior_strength=10, discount=1.0)
    >>> estimator.observe(0, 1, tested=10, accepted=2)
    >>> round(float(estimator.estimates()[0, 1]), 3)  # (10 * 0.6 + 2) / (10 + 10)
    0.4
    """

    def __init__(
        self,
        prior: Sequence[Sequence[float]],
        prior_strength: float | Sequence[Sequence[float]] | np.ndarray,
        discount: float,
        change_rate: float = 0.0,
        max_runs: int = 32,
    ) -> None:
        self._prior = np.array(prior, dtype=np.float64)
        if self._prior.ndim != 2 or self._prior.shape[0] != self._prior.shape[1]:
            raise ValueError(f"prior must be a square [M, M] matrix, got shape {self._prior.shape}")
        size = self._prior.shape[0]
        self._prior_logit = _logit(self._prior)
        self._upper = np.triu(np.ones((size, size), dtype=bool), 1)  # the pairs i < j
        self._posteriors = RatePosteriors(
            self._prior,
            _prior_weights(
                prior_strength, (size, size), f"a [{size}, {size}] matrix", np.triu_indices(size, 1)
            ),
            discount,
            change_rate,
            max_runs,
        )

    @property
    def num_models(self) -> int:
        return self._prior.shape[0]

    def observe(self, drafter: int, verifier: int, tested: int, accepted: int) -> None:
        """One verification: ``tested`` drafts of ``drafter`` were tested by ``verifier``,
        the first ``accepted`` of them accepted (``tested - accepted`` is 0 or 1)."""
        if not 0 <= accepted <= tested:
            raise ValueError(f"need 0 <= accepted <= tested, got {accepted} and {tested}")
        self._posteriors.observe((drafter, verifier), accepted, tested - accepted)

    def evidence(self) -> np.ndarray:
        """``[M, M]`` discounted number of tested drafts per pair (expected over the run
        length with ``change_rate > 0``)."""
        return self._posteriors.evidence()

    def observed_estimates(self) -> np.ndarray:
        """``[M, M]`` posterior means (the prior where a pair has no evidence)."""
        return self._posteriors.means()

    def drafter_shifts(self) -> np.ndarray:
        """``[M, 2]``: per drafter, the evidence-weighted sum of ``logit(estimate) -
        logit(prior)`` over its observed pairs, and the evidence (the drafter's shift is their
        ratio; module docstring). Sums, so that several estimators can pool them."""
        evidence = np.triu(self.evidence(), 1)
        shift = _logit(self.observed_estimates()) - self._prior_logit
        return np.stack([(evidence * shift).sum(axis=1), evidence.sum(axis=1)], axis=1)

    def estimates(self, pessimism: float = 0.0, shifts: np.ndarray | None = None) -> np.ndarray:
        """``[M, M]`` rates for planning: posterior means of observed pairs; unseen pairs moved
        by their drafter's shift (module docstring).

        ``pessimism`` > 0: each rate lowered by that many posterior standard deviations
        (:meth:`RatePosteriors.stds`; an unseen pair's is its prior's at the moved mean),
        floored at 0: the rates a configuration has to pay under to be switched to
        (:class:`AdaptiveConfig` ``switch_pessimism``). ``shifts``: the drafters' shifts to
        move unseen pairs by, as :meth:`drafter_shifts` (default: this estimator's own), e.g.
        pooled with the estimators of the early-stopping thresholds
        (:meth:`Replanner.drafter_shifts`).
        """
        observed = self.observed_estimates()
        evidence = self.evidence()
        result = observed.copy()
        stds = self._posteriors.stds() if pessimism > 0.0 else None
        size = self.num_models
        if shifts is None:
            shifts = self.drafter_shifts()
        elif np.shape(shifts) != (size, 2) or not np.all(np.isfinite(shifts)):
            raise ValueError(
                f"shifts must be a finite [{size}, 2] array (AcceptanceEstimator."
                f"drafter_shifts), got {np.asarray(shifts).tolist()!r}"
            )
        # The pairs (i < j) no evidence has reached, of drafters that have a shift.
        totals = shifts[:, 1]
        shifted = totals > 0.0
        unseen = (evidence == 0.0) & self._upper & shifted[:, None]
        if unseen.any():
            mean_shift = np.divide(shifts[:, 0], totals, out=np.zeros(size), where=shifted)
            moved = _sigmoid(self._prior_logit + mean_shift[:, None])
            result = np.where(unseen, moved, result)
            if stds is not None:
                with np.errstate(invalid="ignore", divide="ignore"):  # unused entries
                    prior_stds = np.sqrt(moved * (1.0 - moved) / (self._posteriors.strength + 1))
                stds = np.where(unseen, prior_stds, stds)
        if stds is not None:
            result = np.maximum(result - pessimism * stds, 0.0)
        return result


class ContinueEstimator:
    """Posterior continue rates of the bottom level's early stopping, one per model.

    Each model's rate has the prior ``prior[m]`` as ``prior_strength`` pseudo-checks (one number,
    or ``[M]`` per model: :func:`continue_strengths`) and counts
    the checked positions of this request, the prior and the checks discounted (and with
    ``change_rate > 0`` allowed to jump) like :class:`AcceptanceEstimator`'s.

    Examples
    --------
    >>> estimator = ContinueEstimator([1.0, 1.0], prior_strength=4, discount=1.0)
    >>> for _ in range(2):  # two calls that stopped after 2 drafts (3 checks each)
    ...     estimator.observe(0, checks=3, drafted=2)
    >>> round(float(estimator.estimates()[0]), 3)  # (4 * 1 + 4) / (4 + 6)
    0.8
    """

    def __init__(
        self,
        prior: Sequence[float],
        prior_strength: float | Sequence[float] | np.ndarray,
        discount: float,
        change_rate: float = 0.0,
        max_runs: int = 32,
    ) -> None:
        rates = np.array(prior, dtype=np.float64)
        weights = _prior_weights(
            prior_strength, rates.shape, f"[{rates.size}] values, one per model"
        )
        self._posteriors = RatePosteriors(rates, weights, discount, change_rate, max_runs)

    def observe(self, model: int, checks: int, drafted: int) -> None:
        """One bottom call of ``model``: ``checks`` positions checked, ``drafted`` of them
        drafted (``checks - drafted`` is 0 or 1)."""
        if not 0 <= drafted <= checks:
            raise ValueError(f"need 0 <= drafted <= checks, got {drafted} and {checks}")
        self._posteriors.observe((model,), drafted, checks - drafted)

    def estimates(self) -> np.ndarray:
        """``[M]`` posterior means."""
        return self._posteriors.means()


@dataclasses.dataclass(frozen=True)
class BottomBatch:
    """A batch of the bottom level, as the engine reports it with its verification.

    ``confidences`` are the bottom level's confidence at each of its drafts, in order (the
    largest probability of its own softmax; empty when it stopped before its first);
    ``draft_length`` is ``T_0``; ``threshold`` the early-stopping threshold the batch ran at
    (0: it drafted ``T_0`` tokens). A batch shorter than ``T_0`` stopped at a confidence
    below ``threshold``.
    """

    confidences: tuple[float, ...]
    draft_length: int
    threshold: float

    def at(self, threshold: float) -> int:
        """The drafts the batch would have had at ``threshold`` (>= :attr:`threshold`): those
        before the first draft whose confidence is below it.

        >>> BottomBatch((0.9, 0.4, 0.8), draft_length=4, threshold=0.3).at(0.5)
        1
        """
        if threshold < self.threshold:
            raise ValueError(
                f"a batch run at threshold {self.threshold:g} says nothing about threshold "
                f"{threshold:g} (its drafts below {self.threshold:g} were never drafted)"
            )
        return next(
            (index for index, value in enumerate(self.confidences) if value < threshold),
            len(self.confidences),
        )


class StoppingEstimator:
    """The continue rates and bottom acceptance of early stopping at one threshold, learned
    online (module docstring).

    Parameters
    ----------
    threshold
        The threshold (> 0).
    continue_prior, bottom_prior
        ``[M]`` continue rates and ``[M, M]`` bottom acceptance: the profile's at ``threshold``.
    prior_strength, continue_strength
        Pseudo-observations of the bottom acceptance (as :class:`AcceptanceEstimator`) and of
        the continue rates (as :class:`ContinueEstimator`).
    discount, change_rate
        See :class:`AdaptiveConfig`.

    Examples
    --------
    >>> estimator = StoppingEstimator(0.5, [1.0, 1.0], [[1, 0.5], [0, 1]], 2, 2, discount=1.0)
    >>> batch = BottomBatch((0.9, 0.7, 0.2, 0.6), draft_length=4, threshold=0.0)
    >>> estimator.observe(0, 1, batch, tested=4, accepted=3)  # at 0.5: 2 drafts, both accepted
    >>> rates = estimator.plan_arguments()
    >>> rates["continue_rates"][0], rates["bottom_acceptance"][0][1]  # (2 + 2) / (2 + 3), 3 / 4
    (0.8, 0.75)
    """

    def __init__(
        self,
        threshold: float,
        continue_prior: Sequence[float],
        bottom_prior: Sequence[Sequence[float]],
        prior_strength: float | np.ndarray,
        continue_strength: float | np.ndarray,
        discount: float,
        change_rate: float = 0.0,
    ) -> None:
        self.threshold = float(threshold)
        self.continue_estimator = ContinueEstimator(
            continue_prior, continue_strength, discount, change_rate
        )
        self.bottom_estimator = AcceptanceEstimator(
            bottom_prior, prior_strength, discount, change_rate
        )

    def observe(
        self, drafter: int, verifier: int, batch: BottomBatch, tested: int, accepted: int
    ) -> None:
        """A bottom batch of ``drafter`` run at ``batch.threshold`` <= this threshold, of which
        ``verifier`` tested ``tested`` and accepted ``accepted``: what this threshold would have
        drafted, checked, tested and accepted of it."""
        drafted = batch.at(self.threshold)
        checks = drafted + (1 if drafted < batch.draft_length else 0)
        self.continue_estimator.observe(drafter, checks, drafted)
        self.bottom_estimator.observe(
            drafter, verifier, min(tested, drafted), min(accepted, drafted)
        )

    def plan_arguments(self, shifts: np.ndarray | None = None) -> dict[str, list]:
        """The ``continue_rates`` / ``bottom_acceptance`` keywords of plan and evaluate
        (``shifts``: see :meth:`AcceptanceEstimator.estimates`)."""
        return {
            "continue_rates": self.continue_estimator.estimates().tolist(),
            "bottom_acceptance": self.bottom_estimator.estimates(shifts=shifts).tolist(),
        }


class CostEstimator:
    """Per model, the factor by which its passes run slower (> 1) or faster (< 1) in this
    request than the profile says.

    A pass of model ``m`` over ``n`` tokens that took ``t`` ms, where the profile predicts
    ``c = forward[m][n - 1]``, adds ``t`` to a numerator and ``c`` to a denominator, both
    discounted by ``discount`` per pass of the model; the prior is ``W = prior_passes *
    max_m forward[m][0]`` ms of predicted time (the same for every model: that many 1-token
    passes of the most expensive one, the target), discounted with them, at the factor ``p``:
    ``scale = (W p + sum d^age t) / (W + sum d^age c)``. A model's factor thus leaves ``p`` as
    its measured time, not its pass count, grows against ``W``: a cheap model's pass (the n-gram
    level's, a few tenths of a millisecond) is timed with jitter of its own size, and the first
    of a request ran 2-5x its median in the engine (cold caches after the prompt's prefill), so
    with a prior of a few of its own passes one such pass set its factor to 3-10 at a request's
    first decision; with ``W`` such a pass moves it by a few percent (its excess over ``W``,
    and over the pooled time), and the model's own factor takes over within some fifty passes,
    when it has had the time to matter; an expensive model's moves within a few passes as
    before. With ``pooled`` (the default)
    ``p`` is the pooled factor of every timed pass so far (:meth:`pooled`, 1 before any): what
    slows one model's passes down (the machine's load, its clock) slows the others' too, so a
    model not yet run in this request is priced at the others' factor, not at the profile's
    cost (which would make it look cheap on a machine running slower than when profiled, and
    a configuration with it look faster than it is); without, ``p = 1``. ``forward`` is what
    the engine times of a pass (the level's ``append``; the profile's ``forward_ms``), the
    scale applies to the whole cost row.

    Examples
    --------
    >>> estimator = CostEstimator([[1.0, 2.0], [4.0, 4.0]], prior_passes=2, discount=1.0)
    >>> estimator.observe(0, 2, 6.0)  # a pass over 2 tokens took 6 ms, predicted 2 ms
    >>> [round(float(scale), 3) for scale in estimator.scales()]  # (2 * 4 * 3 + 6) / (2 * 4 + 2)
    [3.0, 3.0]

    A cheap model's slow pass next to a target timed at its profile's cost:

    >>> estimator = CostEstimator([[0.3], [84.0]], prior_passes=2, discount=1.0)
    >>> estimator.observe(1, 1, 84.0)
    >>> estimator.observe(0, 1, 3.0)  # 10x its 0.3 ms: its factor moves by 5%, not to 4
    >>> [round(float(scale), 2) for scale in estimator.scales()]
    [1.05, 1.02]
    """

    def __init__(
        self,
        forward_costs: Sequence[Sequence[float]],
        prior_passes: float,
        discount: float,
        pooled: bool = True,
    ) -> None:
        self._forward = np.array(forward_costs, dtype=np.float64)
        if self._forward.ndim != 2:
            raise ValueError(f"forward_costs must be [M, N], got shape {self._forward.shape}")
        self._discount = float(discount)
        self._pooled = bool(pooled)
        # The prior's predicted time per model (the same for all: prior_passes of the most
        # expensive model's 1-token pass), and the timed passes' measured and predicted times,
        # each discounted per pass of its model.
        first = self._forward[:, 0]
        reference = float(first.max()) if first.size else 0.0
        self._prior = np.where(first > 0.0, float(prior_passes) * reference, 0.0)
        self._measured = np.zeros_like(self._prior)
        self._predicted = np.zeros_like(self._prior)

    def observe(self, model: int, num_tokens: int, milliseconds: float) -> None:
        """One forward pass of ``model`` over ``num_tokens`` tokens took ``milliseconds``."""
        predicted = pass_cost(self._forward[model], num_tokens)
        if not (predicted > 0.0 and math.isfinite(milliseconds) and milliseconds >= 0.0):
            return  # a free model in the profile has nothing to scale
        self._prior[model] *= self._discount
        self._measured[model] = self._discount * self._measured[model] + milliseconds
        self._predicted[model] = self._discount * self._predicted[model] + predicted

    def pooled(self) -> float:
        """Measured / predicted time of every timed pass (1 before any): the models' common
        factor, weighted by time (a cheap model's passes move it little)."""
        predicted = float(self._predicted.sum())
        return float(self._measured.sum()) / predicted if predicted > 0.0 else 1.0

    def scales(self) -> np.ndarray:
        """``[M]`` factors (1 where the profile's cost is 0)."""
        factor = self.pooled() if self._pooled else 1.0
        numerator = self._prior * factor + self._measured
        denominator = self._prior + self._predicted
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = numerator / denominator
        return np.where(denominator > 0.0, ratio, 1.0)


#: A configuration as :class:`LatencyCalibration` tells them apart: the chain (model indices,
#: bottom first) and the bottom level's early-stopping threshold.
ConfigurationKey = tuple[tuple[int, ...], float]


def _configuration_key(chain: Sequence[int], min_draft_confidence: float) -> ConfigurationKey:
    """The key of a configuration in :class:`LatencyCalibration`: its chain and threshold (0
    for the target alone, which drafts nothing to stop)."""
    chain = tuple(int(model) for model in chain)
    return chain, 0.0 if len(chain) == 1 else float(min_draft_confidence)


class LatencyCalibration:
    """Per configuration, the ratio of the time its cycles took in this request to the time the
    latency model predicted for them.

    A cycle run in configuration ``k`` that took ``t`` ms and committed ``n`` tokens, under a
    decision that predicted ``L`` ms per token, adds ``t`` to ``M_k`` and ``n L`` to ``P_k``
    (the sums of ``k`` discounted by ``discount`` per later cycle of ``k``) and to the pooled
    sums ``M``, ``P`` (discounted per cycle). With a prior of ``w`` ms of predicted time at the
    pooled ratio:

        pooled     = M / P                             (1 before the first cycle)
        ratio(k)   = (M_k + w * pooled) / (P_k + w)

    A configuration not run yet has the pooled ratio; one run for a while has its own. While
    one configuration has run, its ratio is the pooled one and every configuration has the same
    ratio: a factor common to all (the machine runs slower than profiled) changes no
    comparison, only a difference between configurations does. The discount applies only when
    the configuration runs, so what a configuration showed stays known for the request.

    Examples
    --------
    >>> calibration = LatencyCalibration(prior_ms=10.0, discount=1.0)
    >>> calibration.observe(((0, 2), 0.0), milliseconds=30.0, predicted_ms=20.0)
    >>> calibration.pooled(), calibration.ratio(((0, 2), 0.0)), calibration.ratio(((2,), 0.0))
    (1.5, 1.5, 1.5)
    >>> calibration.observe(((2,), 0.0), milliseconds=10.0, predicted_ms=10.0)
    >>> round(calibration.pooled(), 3)  # (30 + 10) / (20 + 10)
    1.333
    >>> round(calibration.ratio(((2,), 0.0)), 3)  # (10 + 10 * 4 / 3) / (10 + 10)
    1.167
    """

    def __init__(self, prior_ms: float, discount: float) -> None:
        if not (prior_ms > 0.0 and math.isfinite(prior_ms)):
            raise ValueError(f"prior_ms must be a finite number > 0, got {prior_ms!r}")
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {discount!r}")
        self._prior = float(prior_ms)
        self._discount = float(discount)
        self._measured = 0.0
        self._predicted = 0.0
        self._by_key: dict[ConfigurationKey, list[float]] = {}

    def observe(self, key: ConfigurationKey, milliseconds: float, predicted_ms: float) -> None:
        """One cycle of configuration ``key`` took ``milliseconds``; the model predicted
        ``predicted_ms`` for the tokens it committed. Ignored unless both are finite and >= 0
        and the prediction is > 0 (a cycle that committed nothing, a free configuration)."""
        if not (
            math.isfinite(milliseconds)
            and milliseconds >= 0.0
            and math.isfinite(predicted_ms)
            and predicted_ms > 0.0
        ):
            return
        d = self._discount
        self._measured = d * self._measured + milliseconds
        self._predicted = d * self._predicted + predicted_ms
        sums = self._by_key.setdefault(key, [0.0, 0.0])
        sums[0] = d * sums[0] + milliseconds
        sums[1] = d * sums[1] + predicted_ms

    def pooled(self) -> float:
        """The ratio over every configuration's cycles (1 before the first)."""
        return self._measured / self._predicted if self._predicted > 0.0 else 1.0

    def ratio(self, key: ConfigurationKey) -> float:
        """The ratio of configuration ``key`` (the pooled ratio when it has not run)."""
        measured, predicted = self._by_key.get(key, (0.0, 0.0))
        return (measured + self._prior * self.pooled()) / (predicted + self._prior)

    def own_ratio(self, key: ConfigurationKey, prior_ms: float | None = None) -> float:
        """The ratio of configuration ``key`` from its own cycles alone, with the prior
        (``prior_ms`` of predicted time, default this calibration's) at 1 instead of the pooled
        ratio (1 when it has not run): ``(M_k + w) / (P_k + w)``.

        >>> calibration = LatencyCalibration(prior_ms=10.0, discount=1.0)
        >>> calibration.observe(((0, 2), 0.0), milliseconds=30.0, predicted_ms=20.0)
        >>> calibration.own_ratio(((0, 2), 0.0)), calibration.own_ratio(((2,), 0.0))
        (1.3333333333333333, 1.0)
        >>> calibration.own_ratio(((0, 2), 0.0), prior_ms=60.0)  # (30 + 60) / (20 + 60)
        1.125
        """
        prior = self._prior if prior_ms is None else float(prior_ms)
        measured, predicted = self._by_key.get(key, (0.0, 0.0))
        return (measured + prior) / (predicted + prior)


@dataclasses.dataclass(frozen=True)
class PlanDecision:
    """One planning decision during a generate call.

    ``token`` is the number of new tokens committed when it was taken; ``chain`` and
    ``draft_lengths`` are the configuration run from then on (``switched``: it differs from
    ``previous_chain`` / ``previous_draft_lengths``). ``acceptance`` holds the estimates behind
    it for the adjacent pairs of both configurations, ``{"i->j": rate}``; ``predicted_latency``
    and ``previous_latency`` are the planner's latencies of the two under those estimates (cost
    units of the profile, ms); ``catch_up_cost`` the predicted cost of the passes that bring
    joining levels up to date. ``min_draft_confidence`` is the bottom level's early-stopping
    threshold from then on (``previous_min_draft_confidence`` before; a change of threshold is a
    switch too). When the chosen threshold is above 0, ``bottom_acceptance`` holds its estimates
    for the bottom pairs of both configurations and ``continue_rates`` those of their bottom
    models (``{"i": rate}``); both are empty otherwise. With ``learn_costs``, ``cost_scales``
    holds the learned factor on the profile's costs of the models of both configurations
    (``{"i": factor}``; the latencies above use the scaled costs). ``calibration`` and
    ``previous_calibration`` are the measured / predicted ratios of the chosen and the previous
    configuration in this request so far (:class:`LatencyCalibration`): ``predicted_latency *
    calibration`` is the decoder's calibrated forecast; with ``calibrate`` the decision compared
    it with ``previous_latency * previous_calibration``. ``overhead_ms``: the engine's work per
    forward pass learned so far, in every cost the latencies above used (0 without
    ``learn_overhead``).
    """

    token: int
    target_pass: int
    previous_chain: tuple[int, ...]
    previous_draft_lengths: tuple[int, ...]
    chain: tuple[int, ...]
    draft_lengths: tuple[int, ...]
    switched: bool
    acceptance: dict[str, float]
    predicted_latency: float
    previous_latency: float
    catch_up_cost: float
    bottom_acceptance: dict[str, float] = dataclasses.field(default_factory=dict)
    continue_rates: dict[str, float] = dataclasses.field(default_factory=dict)
    cost_scales: dict[str, float] = dataclasses.field(default_factory=dict)
    min_draft_confidence: float = 0.0
    previous_min_draft_confidence: float = 0.0
    calibration: float = 1.0
    previous_calibration: float = 1.0
    overhead_ms: float = 0.0


class Replanner:
    """Chooses the configuration between cycles from the current acceptance estimates.

    Parameters
    ----------
    profile
        Costs (``costs_ms``, ``[M]`` or ``[M, N]``) and prior acceptance of the candidates.
    config
        :class:`AdaptiveConfig`.
    """

    def __init__(self, profile: Profile, config: AdaptiveConfig) -> None:
        self.profile = profile
        self.config = config
        threshold = config.min_draft_confidence
        #: The early-stopping thresholds a request may use: the configured one, or 0 and the
        #: profile's (module docstring).
        self.thresholds: tuple[float, ...]
        if threshold is None:
            threshold, _ = choose_min_draft_confidence(profile, config.max_draft_length)
            measured = (entry.min_draft_confidence for entry in profile.early_stopping or ())
            self.thresholds = (0.0, *measured)
        else:
            self.thresholds = (threshold,)
        #: The threshold each request starts from.
        self.min_draft_confidence: float = threshold
        self._forward = forward_cost_rows(profile)
        #: The candidate that shadows every chain without it (``AdaptiveConfig.shadow_max_cost``):
        #: the cheapest whose 1-token pass costs at most that fraction of the target's; None
        #: when there is none.
        self.shadow_model: int | None = None
        one_token = self._forward[:, 0]
        target = one_token.shape[0] - 1
        if target > 0 and config.shadow_max_cost > 0.0:
            cheapest = int(np.argmin(one_token[:target]))
            if one_token[cheapest] <= config.shadow_max_cost * one_token[target]:
                self.shadow_model = cheapest
        # LatencyCalibration's prior: CALIBRATION_PRIOR_PASSES of the target's 1-token pass.
        costs = np.asarray(profile.costs_ms, dtype=np.float64).reshape(len(profile.model_names), -1)
        self._calibration_prior_ms = CALIBRATION_PRIOR_PASSES * float(costs[-1, 0])
        self._fallback_prior_ms = FALLBACK_CALIBRATION_PRIOR_PASSES * float(costs[-1, 0])
        #: ``[M, M]`` pseudo-observations of each pair's prior (:func:`prior_strengths`); the
        #: profile's, fixed for the replanner's lifetime like the threshold.
        self.prior_strengths: np.ndarray
        #: Where they come from: ``"profile"`` (empirical Bayes from its per-prompt rates),
        #: ``"fallback"`` (``FALLBACK_PRIOR_STRENGTH``: the profile has no per-prompt rates) or
        #: ``"config"`` (``AdaptiveConfig.prior_strength``).
        self.prior_strength_source: str
        size = len(profile.model_names)
        if config.prior_strength is None:
            self.prior_strengths = prior_strengths(profile)
            self.prior_strength_source = "profile" if has_prompt_rates(profile) else "fallback"
        else:
            self.prior_strengths = np.full((size, size), config.prior_strength)
            self.prior_strength_source = "config"
        #: Per threshold > 0 of :attr:`thresholds`, ``[M]`` pseudo-observations of the
        #: continue rates' priors (``config.continue_prior_strength``, or
        #: :func:`continue_strengths` when it is None).
        self.continue_strengths: dict[float, np.ndarray] = {
            value: (
                continue_strengths(profile, value)
                if config.continue_prior_strength is None
                else np.full(size, float(config.continue_prior_strength))
            )
            for value in self.thresholds
            if value > 0.0
        }
        self.reset()

    @property
    def interval(self) -> int:
        """Target passes until the next decision: ``config.replan_interval`` at the start of a
        request and after a switch, doubled by each decision that keeps the configuration, up
        to ``config.max_replan_interval``."""
        return self._interval

    @property
    def learns_costs(self) -> bool:
        """Whether pass times scale the profile's costs (``config.learn_costs``)."""
        return self.config.learn_costs

    @property
    def early_stopping(self) -> bool:
        """Whether the bottom level may stop early (a threshold > 0 among :attr:`thresholds`):
        the engine then reports the confidence of each bottom draft (:class:`BottomBatch`)."""
        return max(self.thresholds) > 0.0

    @property
    def learns_threshold(self) -> bool:
        """Whether the threshold is re-planned during a request (more than one candidate)."""
        return len(self.thresholds) > 1

    def reset(self) -> None:
        """Forget the evidence of the previous request (a generate call starts)."""
        config, profile = self.config, self.profile
        strengths = self.prior_strengths
        self.estimator = AcceptanceEstimator(
            profile.acceptance, strengths, config.discount, config.change_rate
        )
        self.cost_estimator: CostEstimator | None = None
        if config.learn_costs:
            self.cost_estimator = CostEstimator(
                self._forward, COST_PRIOR_PASSES, COST_DISCOUNT, config.pool_costs
            )
        #: The measured / predicted time of each configuration's cycles: the forecast's
        #: correction, and with ``config.calibrate`` the decisions'.
        self.calibration: LatencyCalibration | None = None
        if self._calibration_prior_ms > 0.0:  # (a free target leaves nothing to calibrate)
            self.calibration = LatencyCalibration(self._calibration_prior_ms, CALIBRATION_DISCOUNT)
        # The configuration the cycles run in and the latency per token predicted for it (set
        # by the request's first plan and by each decision; None before a request starts).
        # With it, each model's share of that latency and the cost factors it was priced at
        # (the cycles' predictions follow the factors learned since: _cycle_latency).
        self._in_effect: tuple[ConfigurationKey, float] | None = None
        self._in_effect_costs: tuple[dict[int, float], np.ndarray] | None = None
        self._decisions = 0  # of this request: which other threshold the next one plans at
        self._interval = config.replan_interval  # target passes until the next decision
        # Engine work per pass: discounted sums of the time outside timed passes and of the
        # passes, over the cycles (a prior of OVERHEAD_PRIOR_PASSES passes at 0 ms), and the
        # timed passes of the cycle under way.
        self._overhead_ms, self._overhead_passes = 0.0, OVERHEAD_PRIOR_PASSES
        self._cycle_pass_ms, self._cycle_passes = 0.0, 0
        #: Per threshold > 0 of :attr:`thresholds`, its online rates.
        self.stopping: dict[float, StoppingEstimator] = {}
        for threshold in self.thresholds:
            if threshold > 0.0:
                measured = profile.stopping_rates(threshold)
                self.stopping[threshold] = StoppingEstimator(
                    threshold,
                    measured["continue_rates"] or (1.0,) * len(profile.model_names),
                    measured["bottom_acceptance"] or profile.acceptance,
                    strengths,
                    self.continue_strengths[threshold],
                    config.discount,
                    config.change_rate,
                )

    def observe(
        self,
        drafter: int,
        verifier: int,
        tested: int,
        accepted: int,
        bottom: BottomBatch | None = None,
    ) -> None:
        """One verification by the engine (see :meth:`AcceptanceEstimator.observe`).

        ``bottom``: the drafter was level 0 and this was its batch, with the confidence of each
        draft (the engine reports it when :attr:`early_stopping`). A batch run without early
        stopping feeds the pair's acceptance, and every threshold's rates learn what they would
        have drafted of it; one run at threshold ``c > 0`` feeds the thresholds ``>= c`` only.
        """
        if bottom is None or bottom.threshold == 0.0:
            self.estimator.observe(drafter, verifier, tested, accepted)
        if bottom is not None:
            for threshold, estimator in self.stopping.items():
                if threshold >= bottom.threshold:
                    estimator.observe(drafter, verifier, bottom, tested, accepted)

    def shadow_for(self, chain: Sequence[int]) -> int | None:
        """The candidate that shadows ``chain`` (:attr:`shadow_model` when ``chain`` does not
        include it, else None): the engine scores its prediction at each committed position
        against the target's row there (:meth:`observe_shadow`)."""
        model = self.shadow_model
        return model if model is not None and model not in chain else None

    def observe_shadow(self, model: int, accepted: bool, confidence: float) -> None:
        """The chain committed a token; the shadow ``model``, from the committed text before
        it, would have drafted a token that the target's verification ``accepted`` (drawn
        with the probability ``sum(min(p, q))`` of rule 2 for a draft from its row ``q``
        against the target's row ``p`` there, independently of the target's draws), with
        ``confidence`` (its largest probability). Fed as a first draft of a bottom batch of
        one run without stopping: the pair's acceptance, and what each threshold would have
        drafted of it."""
        target = len(self.profile.model_names) - 1
        bottom = BottomBatch((float(confidence),), 1, 0.0) if self.early_stopping else None
        self.observe(model, target, 1, int(accepted), bottom)

    def shadow_ms(
        self, chain: Sequence[int], costs: np.ndarray, tokens_per_target_pass: float = 1.0
    ) -> float:
        """The shadow's pass per committed token of ``chain`` (0 without one) at ``costs``
        (:meth:`costs`): one pass per target cycle over the ``k`` tokens it committed,
        ``c(k) / k`` at ``k = tokens_per_target_pass`` (``hierspec.Evaluation``; 1 for the
        target alone; ``c`` interpolated between pass lengths): what ``chain`` costs on top of
        its own passes."""
        model = self.shadow_for(chain)
        if model is None:
            return 0.0
        row = np.atleast_1d(costs[model])
        tokens = min(max(float(tokens_per_target_pass), 1.0), float(row.shape[0]))
        return float(np.interp(tokens, np.arange(1, row.shape[0] + 1), row)) / tokens

    def observe_pass(self, model: int, num_tokens: int, seconds: float) -> None:
        """One timed forward pass of ``model`` (see :meth:`CostEstimator.observe`)."""
        if self.cost_estimator is not None:
            self.cost_estimator.observe(model, num_tokens, seconds * 1e3)
        self._cycle_pass_ms += 1e3 * seconds
        self._cycle_passes += 1

    def observe_cycle(self, tokens: int, seconds: float) -> None:
        """One target cycle (from the end of the last decision to the start of the next, the
        catch-up passes of a switch excluded) took ``seconds`` and committed ``tokens``: the
        configuration in use learns its measured / predicted ratio; with ``learn_overhead``,
        the cycle's time outside the passes timed in it is engine work per pass."""
        if self.calibration is not None and self._in_effect is not None:
            key, _ = self._in_effect
            self.calibration.observe(key, 1e3 * seconds, tokens * self._cycle_latency())
        if self.config.learn_overhead and self._cycle_passes > 0 and math.isfinite(seconds):
            outside = max(1e3 * seconds - self._cycle_pass_ms, 0.0)
            self._overhead_ms = OVERHEAD_DISCOUNT * self._overhead_ms + outside
            self._overhead_passes = OVERHEAD_DISCOUNT * self._overhead_passes + self._cycle_passes
        self._cycle_pass_ms, self._cycle_passes = 0.0, 0

    def _cycle_latency(self) -> float:
        """The latency per token of the configuration in effect, as predicted when it was
        chosen, with each model's share re-priced at the cost factor learned since (the cycle
        just timed taught it the factor of its passes): what the calibration compares a cycle
        with is the model's error for the configuration, not the cost estimator's lag behind
        the machine."""
        assert self._in_effect is not None
        latency = self._in_effect[1]
        if self.cost_estimator is None or self._in_effect_costs is None:
            return latency
        shares, scales = self._in_effect_costs
        now = self.cost_estimator.scales()
        return latency + sum(share * (now[m] / scales[m] - 1.0) for m, share in shares.items())

    def _set_in_effect(
        self,
        chain: Sequence[int],
        threshold: float,
        latency: float,
        cost_per_token: Sequence[float],
        shadow_ms: float = 0.0,
    ) -> None:
        """The configuration the next cycles run in (:meth:`observe_cycle`): ``latency`` ms
        per token, of which ``cost_per_token`` per level of ``chain`` (an evaluation's) and
        ``shadow_ms`` its shadow's pass (:meth:`shadow_ms`), priced at the cost factors now."""
        self._in_effect = (_configuration_key(chain, threshold), latency)
        self._in_effect_costs = None
        if self.cost_estimator is None:
            return
        shares: dict[int, float] = {}
        for model, cost in zip(chain, cost_per_token):
            shares[model] = shares.get(model, 0.0) + float(cost)
        shadow = self.shadow_for(chain)
        if shadow is not None and shadow_ms > 0.0:
            shares[shadow] = shares.get(shadow, 0.0) + shadow_ms
        self._in_effect_costs = (shares, self.cost_estimator.scales())

    def overhead_ms(self) -> float:
        """Engine work per forward pass learned in this request (ms; 0 without
        ``learn_overhead``): added to every model's cost in plans and predictions."""
        if not self.config.learn_overhead:
            return 0.0
        return self._overhead_ms / self._overhead_passes

    def calibration_ratio(self, chain: Sequence[int], min_draft_confidence: float) -> float:
        """The measured / predicted ratio of a configuration in this request
        (:class:`LatencyCalibration`; 1 for a profile whose target costs nothing)."""
        if self.calibration is None:
            return 1.0
        return float(self.calibration.ratio(_configuration_key(chain, min_draft_confidence)))

    def own_calibration_ratio(self, chain: Sequence[int], min_draft_confidence: float) -> float:
        """The measured / predicted ratio of a configuration from its own cycles in this
        request, against a prior at 1 of ``FALLBACK_CALIBRATION_PRIOR_PASSES`` target passes
        (:meth:`LatencyCalibration.own_ratio`; 1 for a profile whose target costs nothing): the
        factor ``calibrate_fallback`` compares it with the target alone at."""
        if self.calibration is None:
            return 1.0
        return float(
            self.calibration.own_ratio(
                _configuration_key(chain, min_draft_confidence), self._fallback_prior_ms
            )
        )

    def cost_scales(self) -> np.ndarray:
        """``[M]`` learned factors on the profile's costs (ones without ``learn_costs``)."""
        if self.cost_estimator is None:
            return np.ones(self._forward.shape[0])
        return self.cost_estimator.scales()

    def costs(self) -> list:
        """The profile's ``costs_ms`` (same shape) scaled by :meth:`cost_scales`, plus
        :meth:`overhead_ms` per pass."""
        costs = np.asarray(self.profile.costs_ms, dtype=np.float64)
        scales = self.cost_scales()
        scaled = costs * (scales[:, None] if costs.ndim == 2 else scales)
        return (scaled + self.overhead_ms()).tolist()

    def drafter_shifts(self) -> np.ndarray:
        """``[M, 2]`` the drafters' shifts (:meth:`AcceptanceEstimator.drafter_shifts`) pooled
        over the acceptance without stopping and the bottom acceptance at every threshold: a
        pair none of them has seen moves by what the request showed of its drafter at any
        threshold. (While a threshold above 0 runs, the batches feed only the bottom
        acceptance at it and above; the n-gram level's rates without stopping, against the
        target or a middle level, then move with what its confident drafts showed.)"""
        shifts = self.estimator.drafter_shifts()
        for estimator in self.stopping.values():
            shifts += estimator.bottom_estimator.drafter_shifts()
        return shifts

    def _early_stopping_estimates(
        self, threshold: float, shifts: np.ndarray | None = None
    ) -> dict[str, np.ndarray | None]:
        """The ``continue_rates`` / ``bottom_acceptance`` keywords of plan and evaluate at
        ``threshold`` (one of :attr:`thresholds`; ``shifts``: :meth:`drafter_shifts`)."""
        if threshold == 0.0:
            return {"continue_rates": None, "bottom_acceptance": None}
        return {
            name: np.asarray(rates)
            for name, rates in self.stopping[threshold].plan_arguments(shifts).items()
        }

    def initial(self) -> tuple[tuple[int, ...], tuple[int, ...], float]:
        """The static plan of the profile: ``(chain, draft_lengths, predicted latency)``, under
        the priors (whatever this request has observed so far); no prompt prefill counted."""
        profile = self.profile
        stopping = profile.stopping_rates(self.min_draft_confidence)
        best = plan(
            profile.costs_ms,
            profile.acceptance,
            max_draft_length=self.config.max_draft_length,
            **stopping,
        )
        return tuple(best.chain), tuple(best.draft_lengths), best.latency

    def initial_for_request(self, prompt_tokens: int, new_tokens: int) -> RequestPlan:
        """The first configuration of a request with a prompt of ``prompt_tokens`` tokens and
        up to ``new_tokens`` new ones: the least expected prefill + decode time under the priors
        (:func:`hierspec.planning.plan_for_prompt`, at this replanner's threshold). The
        request's cycles run in it until the first decision (:meth:`observe_cycle`)."""
        request = plan_for_prompt(
            self.profile,
            prompt_tokens,
            new_tokens,
            max_draft_length=self.config.max_draft_length,
            min_draft_confidence=self.min_draft_confidence,
        )
        profile = self.profile
        evaluation = evaluate(
            profile.costs_ms,
            profile.acceptance,
            request.chain,
            request.draft_lengths,
            **profile.stopping_rates(self.min_draft_confidence),
        )
        self._set_in_effect(
            request.chain, self.min_draft_confidence, request.latency, evaluation.cost_per_token
        )
        return request

    def catch_up_cost(self, model: int, gap: int) -> float:
        """Predicted cost of one prefill pass of ``model`` over ``gap`` tokens
        (:func:`hierspec.planning.prefill_costs`; scaled by the learned cost factor)."""
        if gap <= 0:
            return 0.0
        return float(prefill_costs(self.profile, gap)[model] * self.cost_scales()[model])

    def _cautious_rates(
        self,
        chain: tuple[int, ...],
        threshold: float,
        candidates: Sequence[float],
        estimates: np.ndarray,
        stopping: dict[float, dict[str, np.ndarray | None]],
        shifts: np.ndarray,
    ) -> tuple[np.ndarray, dict[float, dict[str, np.ndarray | None]]] | None:
        """The rates candidates are priced at (``AdaptiveConfig.switch_pessimism``): each pair's
        acceptance lowered by that many posterior deviations, except what the configuration in
        use (``chain`` at ``threshold``) verifies, which keeps its means: its pairs, the bottom
        one at ``threshold`` (above 0 that is the bottom pair's acceptance at it, while the
        bottom pair's acceptance without stopping, which its batches do not feed, is lowered
        like any other unverified rate); the continue rates keep theirs. As ``(acceptance,
        {threshold: plan keywords})``; None for pessimism 0 (the means)."""
        pessimism = self.config.switch_pessimism
        if pessimism == 0.0:
            return None
        in_use = _adjacent_pairs(chain)
        # The pairs whose acceptance without stopping the batches in use feed (observe).
        verified = in_use
        if threshold > 0.0 and len(chain) >= 2:
            verified = in_use - {(chain[0], chain[1])}

        def lowered(
            estimator: AcceptanceEstimator, means: np.ndarray, kept: set[tuple[int, int]]
        ) -> np.ndarray:
            rates = estimator.estimates(pessimism, shifts)
            for drafter, verifier in kept:
                rates[drafter, verifier] = means[drafter, verifier]
            return rates

        cautious_stopping = {}
        for candidate in candidates:
            rates = stopping[candidate]
            if candidate > 0.0:
                bottom = self.stopping[candidate].bottom_estimator
                rates = dict(
                    rates,
                    bottom_acceptance=lowered(
                        bottom,
                        rates["bottom_acceptance"],
                        in_use if candidate == threshold else set(),
                    ),
                )
            cautious_stopping[candidate] = rates
        return lowered(self.estimator, estimates, verified), cautious_stopping

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
        """The configuration for the next cycles.

        ``gaps[m]``: tokens model ``m`` would have to catch up on to join (0 for the models in
        ``chain``); ``min_draft_confidence``: the threshold in use (default: the request's
        first, :attr:`min_draft_confidence`). Plans at that threshold and at one other of
        :attr:`thresholds` (each in turn: a decision costs two planner calls, not one per
        threshold), prices each configuration offered (the plan and its alternatives) at the
        cautious rates of ``switch_pessimism`` (:class:`AdaptiveConfig`; the configuration in
        use at its means) and takes the cheapest (with ``calibrate``: latency times its
        :meth:`calibration_ratio`); switches when it lowers the latency by at least
        ``min_relative_gain`` (``fallback_min_gain`` for the target alone with a shadow,
        :meth:`shadow_for`) and the gain over ``min(tokens_left, switch_horizon_tokens)``
        tokens exceeds the catch-up cost. The target alone's latency includes its shadow's
        pass (:meth:`shadow_ms`). The decision reports latencies at the means.
        """
        threshold = (
            self.min_draft_confidence
            if min_draft_confidence is None
            else float(min_draft_confidence)
        )
        if threshold not in self.thresholds:
            raise ValueError(
                f"min_draft_confidence {threshold:g} is not one of this replanner's thresholds "
                f"{list(self.thresholds)}"
            )
        # Arrays for plan: it checks an array's dtype at once, where it walks a list's items.
        shifts = self.drafter_shifts()
        estimates = self.estimator.estimates(shifts=shifts)
        costs = np.asarray(self.costs())
        max_draft_length = self.config.max_draft_length
        candidates = [threshold]
        others = [value for value in self.thresholds if value != threshold]
        if others:
            candidates.append(others[self._decisions % len(others)])
        self._decisions += 1
        stopping = {
            candidate: self._early_stopping_estimates(candidate, shifts) for candidate in candidates
        }
        # The configurations are priced by the core directly, on lists converted once: the
        # arrays are the replanner's own (evaluate's checks and conversions, per call, were
        # half a decision's time).
        costs_list = costs.tolist()

        def as_lists(rates: dict[str, np.ndarray | None]) -> dict[str, list | None]:
            return {
                name: None if value is None else value.tolist() for name, value in rates.items()
            }

        def evaluation_at(
            rates: list, configuration: Sequence[int], lengths: Sequence[int], rates_stopping
        ) -> Any:
            return _evaluate_lists(
                costs_list, rates, list(configuration), list(lengths), **rates_stopping
            )

        def with_shadow(evaluation: Any, configuration: Sequence[int]) -> float:
            """The latency of ``evaluation`` plus the pass of the shadow of ``configuration``
            (:meth:`shadow_ms`)."""
            return evaluation.latency + self.shadow_ms(
                configuration, costs, evaluation.tokens_per_target_pass
            )

        estimates_list = estimates.tolist()
        current_evaluation = evaluation_at(
            estimates_list, chain, draft_lengths, as_lists(stopping[threshold])
        )
        current = with_shadow(current_evaluation, chain)
        in_use = _adjacent_pairs(chain)
        cautious = self._cautious_rates(chain, threshold, candidates, estimates, stopping, shifts)
        cautious_lists = None
        if cautious is not None:
            cautious_lists = (
                cautious[0].tolist(),
                {candidate: as_lists(rates) for candidate, rates in cautious[1].items()},
            )

        alone_now = len(chain) == 1

        def decision_ratio(configuration_chain: Sequence[int], configuration_threshold: float):
            """The factor on a configuration's latency in the comparison: its calibration
            ratio with ``calibrate``; with ``calibrate_fallback`` (and ``learn_costs``), where
            one of it and the configuration in use is the target alone, the drafting one's own
            ratio (the target alone's is 1), in the frame of the one in use; else 1."""
            if self.config.calibrate:
                return self.calibration_ratio(configuration_chain, configuration_threshold)
            if (
                self.config.calibrate_fallback
                and self.config.learn_costs
                and (len(configuration_chain) == 1) != alone_now
            ):
                if alone_now:
                    return self.own_calibration_ratio(configuration_chain, configuration_threshold)
                return 1.0 / self.own_calibration_ratio(chain, threshold)
            return 1.0

        def score(entry: PlanEntry, latency: float, candidate: float) -> float:
            """The latency a candidate is compared at (module docstring, switching): at the
            cautious rates when it verifies a pair, or its bottom pair at a threshold, that the
            configuration in use does not (the target alone has no rate to be cautious about);
            ``latency`` at the means, both with the pass of its shadow."""
            pairs = _adjacent_pairs(entry.chain)
            if (
                cautious_lists is not None
                and pairs
                and (candidate != threshold or not pairs <= in_use)
            ):
                rates, rates_stopping = cautious_lists[0], cautious_lists[1][candidate]
                latency = with_shadow(
                    evaluation_at(rates, entry.chain, entry.draft_lengths, rates_stopping),
                    entry.chain,
                )
            return latency * decision_ratio(entry.chain, candidate)

        # The configuration in use at its posterior means against every configuration the
        # planner offers at the means (per threshold: the plan and its alternatives), each
        # priced by ``score``; the first of equals wins (the configuration in use, then the
        # thresholds and the planner's order).
        current_calibrated = current * decision_ratio(chain, threshold)
        options = [(current_calibrated, current, chain, draft_lengths, threshold)]
        for candidate in candidates:
            stopping_lists = as_lists(stopping[candidate])
            for entry in plan(
                costs, estimates, max_draft_length=max_draft_length, **stopping[candidate]
            ).alternatives:
                latency = entry.latency
                if self.shadow_for(entry.chain) is not None:  # its shadow's pass: per cycle
                    latency = with_shadow(
                        evaluation_at(
                            estimates_list, entry.chain, entry.draft_lengths, stopping_lists
                        ),
                        entry.chain,
                    )
                options.append(
                    (
                        score(entry, latency, candidate),
                        latency,
                        tuple(entry.chain),
                        tuple(entry.draft_lengths),
                        candidate,
                    )
                )
        best_score, best_latency, new_chain, new_lengths, best_threshold = min(
            options, key=lambda option: option[0]
        )
        catch_up = sum(self.catch_up_cost(model, gaps[model]) for model in new_chain)
        horizon = min(tokens_left, self.config.switch_horizon_tokens)
        gain = current_calibrated - best_score
        # The target alone is no dead end while a candidate shadows it: leaving for it needs
        # less (AdaptiveConfig.fallback_min_gain).
        min_gain = self.config.min_relative_gain
        if len(new_chain) == 1 and self.shadow_for(new_chain) is not None:
            min_gain = self.config.fallback_min_gain
        # bool(): the calibrated latencies are NumPy scalars, and the decision is a typed result
        # (JSON cannot encode numpy.bool_).
        switched = bool(
            (new_chain, new_lengths, best_threshold) != (chain, draft_lengths, threshold)
            and gain >= min_gain * current_calibrated
            and gain * horizon > catch_up
        )
        predicted = float(best_latency if switched else current)
        chosen = best_threshold if switched else threshold
        pairs = in_use | _adjacent_pairs(new_chain)
        for configuration_chain in (chain, new_chain):
            shadow = self.shadow_for(configuration_chain)
            if shadow is not None:  # what the shadow learns while it is out of the chain
                pairs.add((shadow, configuration_chain[-1]))
        cost_scales: dict[str, float] = {}
        if self.cost_estimator is not None:
            scales = self.cost_estimator.scales()
            cost_scales = {str(m): float(scales[m]) for m in sorted(set(chain) | set(new_chain))}
        bottom_acceptance: dict[str, float] = {}
        continue_rates: dict[str, float] = {}
        if chosen > 0.0:
            rates = stopping[chosen]
            for bottom_chain in {chain, new_chain}:
                if len(bottom_chain) >= 2:
                    drafter, verifier = bottom_chain[0], bottom_chain[1]
                    rate = rates["bottom_acceptance"][drafter][verifier]
                    bottom_acceptance[f"{drafter}->{verifier}"] = float(rate)
                    continue_rates[str(drafter)] = float(rates["continue_rates"][drafter])
            pairs -= {(c[0], c[1]) for c in (chain, new_chain) if len(c) >= 2}
        decision = PlanDecision(
            token=token,
            target_pass=target_pass,
            previous_chain=chain,
            previous_draft_lengths=draft_lengths,
            chain=new_chain if switched else chain,
            draft_lengths=new_lengths if switched else draft_lengths,
            switched=switched,
            acceptance={f"{i}->{j}": float(estimates[i, j]) for i, j in sorted(pairs)},
            predicted_latency=predicted,
            previous_latency=float(current),
            catch_up_cost=float(catch_up) if switched else 0.0,
            bottom_acceptance=bottom_acceptance,
            continue_rates=continue_rates,
            cost_scales=cost_scales,
            min_draft_confidence=chosen,
            previous_min_draft_confidence=threshold,
            calibration=self.calibration_ratio(new_chain if switched else chain, chosen),
            previous_calibration=self.calibration_ratio(chain, threshold),
            overhead_ms=self.overhead_ms(),
        )
        evaluation = current_evaluation
        if switched:  # the chosen one at the means (the shares of its latency)
            evaluation = evaluation_at(
                estimates_list, new_chain, new_lengths, as_lists(stopping[chosen])
            )
        self._set_in_effect(
            decision.chain,
            chosen,
            decision.predicted_latency,
            evaluation.cost_per_token,
            self.shadow_ms(decision.chain, costs, evaluation.tokens_per_target_pass),
        )
        config = self.config
        self._interval = (
            config.replan_interval
            if switched
            else min(2 * self._interval, config.max_replan_interval)
        )
        return decision


def predicted_latency_of_run(
    decisions: Sequence[PlanDecision],
    initial_latency: float,
    new_tokens: int,
    calibrated: bool = False,
) -> float:
    """The latency per token the adaptive decoder predicted for a run, token-weighted.

    Until the first decision the initial (static) plan's ``initial_latency`` holds; from each
    decision on, its ``predicted_latency`` (the configuration it chose, under the estimates of
    that moment) holds until the next one. Each segment is weighted by the tokens committed
    in it (``new_tokens`` in all); the predicted catch-up cost of each switch is added.
    ``calibrated``: each decision's latency times its ``calibration`` (what the decoder
    expected, having measured the cycles before it) instead of the latency model's alone.

    Examples
    --------
    >>> decision = PlanDecision(30, 10, (0, 1), (4,), (1,), (), True, {}, 50.0, 80.0, 0.0)
    >>> predicted_latency_of_run([decision], initial_latency=20.0, new_tokens=100)
    41.0
    """
    if new_tokens <= 0:
        return math.nan
    total, start, latency = 0.0, 0, initial_latency
    for decision in decisions:
        token = min(decision.token, new_tokens)
        total += (token - start) * latency + decision.catch_up_cost
        start, latency = token, decision.predicted_latency
        if calibrated:
            latency *= decision.calibration
    total += (new_tokens - start) * latency
    return total / new_tokens
