"""The adaptive hierarchy's acceptance estimates and planning decisions (hierspec.adaptive)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

import hierspec
from hierspec.adaptive import (
    FALLBACK_PRIOR_STRENGTH,
    PRIOR_STRENGTH_RANGE,
    AcceptanceEstimator,
    AdaptiveConfig,
    BottomBatch,
    ContinueEstimator,
    CostEstimator,
    LatencyCalibration,
    Replanner,
    continue_strengths,
    prior_strengths,
)
from hierspec.planning import EarlyStoppingRates

PRIOR = [[1.0, 0.6, 0.5, 0.4], [0.0, 1.0, 0.8, 0.7], [0.0, 0.0, 1.0, 0.9], [0.0, 0.0, 0.0, 1.0]]


def test_posterior_mean_is_prior_plus_counts() -> None:
    estimator = AcceptanceEstimator(PRIOR, prior_strength=20.0, discount=1.0)
    estimator.observe(0, 3, tested=5, accepted=4)
    estimator.observe(0, 3, tested=3, accepted=2)
    # 6 accepted, 2 rejected: (20 * 0.4 + 6) / (20 + 8)
    assert estimator.estimates()[0, 3] == pytest.approx((8.0 + 6.0) / 28.0, rel=1e-12)
    assert estimator.estimates()[1, 3] == pytest.approx(0.7)  # drafter 1 unseen: prior


def test_cautious_rates_are_the_means_less_posterior_deviations() -> None:
    estimator = AcceptanceEstimator(PRIOR, prior_strength=20.0, discount=1.0)
    estimator.observe(0, 3, tested=8, accepted=6)  # Beta(8 + 6, 12 + 2): mean 0.5, n = 28
    cautious = estimator.estimates(pessimism=2.0)
    assert cautious[0, 3] == pytest.approx(0.5 - 2.0 * math.sqrt(0.25 / 29), rel=1e-12)
    # A pair without evidence: its prior's deviation, at its (moved) mean.
    moved = estimator.estimates()[0, 1]
    assert moved > 0.6  # drafter 0 does better than its prior here: its other pairs move up
    assert cautious[0, 1] == pytest.approx(moved - 2.0 * math.sqrt(moved * (1 - moved) / 21))
    assert cautious[1, 3] == pytest.approx(0.7 - 2.0 * math.sqrt(0.7 * 0.3 / 21))
    # Evidence narrows the deviation; no rate goes below 0; pessimism 0 is the means.
    estimator.observe(0, 3, tested=800, accepted=600)
    assert 0.5 - cautious[0, 3] > estimator.estimates()[0, 3] - estimator.estimates(2.0)[0, 3]
    assert estimator.estimates(pessimism=100.0).min() == 0.0
    assert np.array_equal(estimator.estimates(0.0), estimator.estimates())


def test_discount_forgets_old_evidence() -> None:
    estimator = AcceptanceEstimator(PRIOR, prior_strength=1.0, discount=0.9)
    for _ in range(100):
        estimator.observe(1, 2, tested=1, accepted=1)  # a run of acceptances ...
    for _ in range(100):
        estimator.observe(1, 2, tested=1, accepted=0)  # ... then a run of rejections
    # Evidence of the first run is weighted 0.9**100 ~ 3e-5: the estimate follows the drift.
    # The prior counts as evidence from before the request: weight 0.9**200.
    accepted = sum(0.9**k for k in range(100, 200))
    rejected = sum(0.9**k for k in range(100))
    prior_weight = 0.9**200
    expected = (prior_weight * 0.8 + accepted) / (prior_weight + accepted + rejected)
    assert estimator.estimates()[1, 2] == pytest.approx(expected, rel=1e-9)
    assert expected < 0.08
    assert estimator.evidence()[1, 2] == pytest.approx(sum(0.9**k for k in range(200)), rel=1e-9)


def test_a_wrong_prior_is_outweighed_in_the_end() -> None:
    """The prior is discounted with the evidence: a long request at 0.05 against a profile
    promising 0.9 ends near 0.05, not at the undiscounted floor (8 * 0.9 + 20 * 0.05) / 28."""
    estimator = AcceptanceEstimator([[1, 0.9], [0, 1]], prior_strength=8.0, discount=0.95)
    for index in range(400):
        estimator.observe(0, 1, tested=1, accepted=int(index % 20 == 0))
    assert estimator.estimates()[0, 1] < 0.1
    assert estimator.estimates()[0, 1] < (8 * 0.9 + 20 * 0.05) / 28 / 2


def test_unseen_pair_moves_with_its_drafters_shift() -> None:
    estimator = AcceptanceEstimator(PRIOR, prior_strength=4.0, discount=1.0)
    estimator.observe(0, 3, tested=400, accepted=100)  # drafter 0 is poor on this request
    estimates = estimator.estimates()
    observed = estimates[0, 3]
    shift = math.log(observed / (1 - observed)) - math.log(0.4 / 0.6)
    for verifier, prior in ((1, 0.6), (2, 0.5)):
        expected = 1 / (1 + math.exp(-(math.log(prior / (1 - prior)) + shift)))
        assert estimates[0, verifier] == pytest.approx(expected, rel=1e-12)
        assert estimates[0, verifier] < prior
    # Other drafters keep their priors: nothing was learned about them.
    assert estimates[1, 2] == pytest.approx(0.8) and estimates[2, 3] == pytest.approx(0.9)


def test_bad_observation_and_config_are_named() -> None:
    estimator = AcceptanceEstimator(PRIOR, prior_strength=4.0, discount=1.0)
    with pytest.raises(ValueError, match="accepted <= tested"):
        estimator.observe(0, 1, tested=2, accepted=3)
    with pytest.raises(ValueError, match="discount must be in"):
        AdaptiveConfig(discount=0.0)
    with pytest.raises(TypeError, match="replan_interval must be an int"):
        AdaptiveConfig(replan_interval=1.5)
    with pytest.raises(ValueError, match="prior_strength must be > 0"):
        AdaptiveConfig(prior_strength=-1)
    with pytest.raises(ValueError, match=r"prior_strength must be a number or a \[4, 4\]"):
        AcceptanceEstimator(PRIOR, prior_strength=[[1.0, 2.0], [3.0, 4.0]], discount=1.0)
    bad = np.full((4, 4), 4.0)
    bad[1, 3] = 0.0
    with pytest.raises(ValueError, match="prior_strength must be finite and > 0"):
        AcceptanceEstimator(PRIOR, prior_strength=bad, discount=1.0)
    bad[1, 3] = math.nan
    with pytest.raises(ValueError, match="prior_strength must be finite and > 0"):
        AcceptanceEstimator(PRIOR, prior_strength=bad, discount=1.0)


def _segmentation_posterior(outcomes, rate, strength, change_rate):
    """Brute force of change-point detection: every set of change points before the
    observations (each with probability ``change_rate``), each segment's rate ``Beta(strength
    rate, strength (1 - rate))`` a priori; the posterior mean and standard deviation of the last
    segment's rate."""
    total = weighted = second = 0.0
    for changes in itertools.product((False, True), repeat=len(outcomes)):
        probability = 1.0
        segments: list[list[int]] = [[0, 0]]  # accepted, rejected per segment
        for changed, (tested, accepted) in zip(changes, outcomes, strict=True):
            probability *= change_rate if changed else 1.0 - change_rate
            if changed:
                segments.append([0, 0])
            alpha = strength * rate + segments[-1][0]
            beta = strength * (1 - rate) + segments[-1][1]
            for _ in range(accepted):  # sequential Beta-Bernoulli predictive probabilities
                probability *= alpha / (alpha + beta)
                alpha += 1
            if tested > accepted:
                probability *= beta / (alpha + beta)
            segments[-1][0] += accepted
            segments[-1][1] += tested - accepted
        accepted, rejected = segments[-1]
        total += probability
        alpha, size = strength * rate + accepted, strength + accepted + rejected
        weighted += probability * alpha / size
        second += probability * alpha * (alpha + 1) / (size * (size + 1))
    mean = weighted / total
    return mean, math.sqrt(second / total - mean**2)


def test_change_point_estimate_is_the_exact_posterior_over_change_points() -> None:
    outcomes = [(5, 5), (5, 5), (1, 0), (1, 0), (3, 2), (5, 5), (2, 1)]
    for change_rate in (0.05, 0.3):
        estimator = AcceptanceEstimator(
            PRIOR, prior_strength=3.0, discount=1.0, change_rate=change_rate, max_runs=16
        )
        for step, (tested, accepted) in enumerate(outcomes, start=1):
            estimator.observe(0, 3, tested, accepted)
            mean, std = _segmentation_posterior(outcomes[:step], 0.4, 3.0, change_rate)
            assert estimator.estimates()[0, 3] == pytest.approx(mean, rel=1e-9)
            # Its standard deviation is the mixture's: the cautious rate is mean - z std.
            assert estimator.estimates(pessimism=1.5)[0, 3] == pytest.approx(
                max(mean - 1.5 * std, 0.0), rel=1e-9
            )


def test_change_rate_zero_is_the_single_posterior() -> None:
    rng = np.random.default_rng(7)
    plain = AcceptanceEstimator(PRIOR, prior_strength=5.0, discount=0.9)
    accepted_sum = rejected_sum = 0.0
    prior_weight = 5.0
    for _ in range(50):
        tested = int(rng.integers(1, 6))
        accepted = tested - int(rng.integers(0, 2))  # all accepted, or a rejection last
        plain.observe(1, 2, tested, accepted)
        decay = 0.9**tested
        prior_weight *= decay
        accepted_sum = decay * accepted_sum + accepted
        rejected_sum = decay * rejected_sum + tested - accepted
    expected = (prior_weight * 0.8 + accepted_sum) / (prior_weight + accepted_sum + rejected_sum)
    assert plain.estimates()[1, 2] == pytest.approx(expected, rel=1e-12)


def test_change_points_follow_the_end_of_a_copy_within_a_few_verifications() -> None:
    """The n-gram level copies (16 of 16 accepted, 20 cycles), then stops copying (its first
    draft rejected each cycle). The discount window (0.95: ~20 drafts) takes tens of cycles to
    forget the copy; with change points the estimate falls within three."""
    prior = [[1.0, 0.5], [0.0, 1.0]]
    windowed = AcceptanceEstimator(prior, prior_strength=3.0, discount=0.95)
    changing = AcceptanceEstimator(prior, prior_strength=3.0, discount=0.95, change_rate=0.02)
    for estimator in (windowed, changing):
        for _ in range(20):
            estimator.observe(0, 1, tested=16, accepted=16)
        assert estimator.estimates()[0, 1] > 0.95
        for _ in range(3):
            estimator.observe(0, 1, tested=1, accepted=0)
    assert windowed.estimates()[0, 1] > 0.8
    assert changing.estimates()[0, 1] < 0.3
    # A lone rejection inside a copy is not a change: the estimate stays high.
    steady = AcceptanceEstimator(prior, prior_strength=3.0, discount=0.95, change_rate=0.02)
    for index in range(40):
        steady.observe(0, 1, tested=16 if index != 20 else 5, accepted=16 if index != 20 else 4)
    assert steady.estimates()[0, 1] > 0.95


def test_change_rate_is_checked() -> None:
    with pytest.raises(ValueError, match=r"change_rate must be in \[0, 1\), got 1.0"):
        AdaptiveConfig(change_rate=1.0)
    with pytest.raises(ValueError, match="change_rate must be in"):
        AcceptanceEstimator(PRIOR, prior_strength=1.0, discount=1.0, change_rate=-0.1)
    with pytest.raises(TypeError, match="change_rate must be a number"):
        AdaptiveConfig(change_rate="0.1")
    with pytest.raises(ValueError, match="max_runs must be >= 2"):
        AcceptanceEstimator(PRIOR, prior_strength=1.0, discount=1.0, change_rate=0.1, max_runs=1)


def _profile_with_prompts(by_prompt, positions, acceptance=((1.0, 0.5, 0.5), (0, 1.0, 0.95))):
    return hierspec.Profile(
        ("ngram", "bf16", "target"),
        ((0.05,) * 8, (1.0,) * 8, (1.0,) * 8),
        (*acceptance, (0.0, 0.0, 1.0)),
        extra={"acceptance_details": {"by_prompt": by_prompt, "prompt_positions": positions}},
    )


def test_prior_strength_by_empirical_bayes() -> None:
    """n0 = a (1 - a) / V - 1 with V the variance of the per-prompt rates less their binomial
    noise; a pair without prompt-to-prompt variation gets the upper bound, one without
    per-prompt rates (or a profile without them) the constant."""
    varied = [0.1, 0.9, 0.2, 0.8, 0.5, 0.5]  # mean 0.5: an n-gram level on copy / chat prompts
    steady = [0.95] * 6  # the same on every prompt: only noise
    positions = [64] * 6
    profile = _profile_with_prompts(
        [[None, None, varied], [None, None, steady], [None, None, None]], positions
    )
    strengths = prior_strengths(profile)
    rates = np.array(varied)
    between = rates.var(ddof=1) - np.mean(rates * (1 - rates) / 64)
    assert strengths[0, 2] == pytest.approx(0.5 * 0.5 / between - 1, rel=1e-12)
    assert PRIOR_STRENGTH_RANGE[0] <= strengths[0, 2] < 4
    assert strengths[1, 2] == PRIOR_STRENGTH_RANGE[1]  # no variation beyond the noise
    assert strengths[0, 1] == FALLBACK_PRIOR_STRENGTH  # no per-prompt rates for the pair
    plain = hierspec.Profile(("d", "t"), (1.0, 10.0), ((1.0, 0.5), (0.0, 1.0)))
    assert prior_strengths(plain).tolist() == [[FALLBACK_PRIOR_STRENGTH] * 2] * 2
    one_prompt = _profile_with_prompts([[None, None, [0.5]], [None] * 3, [None] * 3], [64])
    assert prior_strengths(one_prompt)[0, 2] == FALLBACK_PRIOR_STRENGTH
    # Extreme spread (rates 0 and 1) is clipped to one pseudo-observation.
    extreme = _profile_with_prompts(
        [[None, None, [0.0, 1.0] * 3], [None] * 3, [None] * 3], positions
    )
    assert prior_strengths(extreme)[0, 2] == PRIOR_STRENGTH_RANGE[0]


def test_replanner_uses_the_empirical_strengths_unless_one_is_given() -> None:
    varied = [0.1, 0.9, 0.2, 0.8, 0.5, 0.5]
    profile = _profile_with_prompts(
        [[None, None, varied], [None, None, [0.95] * 6], [None] * 3], [64] * 6
    )
    learned = Replanner(profile, AdaptiveConfig(discount=1.0, min_draft_confidence=0.0))
    assert learned.prior_strengths.tolist() == prior_strengths(profile).tolist()
    fixed = Replanner(
        profile, AdaptiveConfig(prior_strength=32.0, discount=1.0, min_draft_confidence=0.0)
    )
    assert fixed.prior_strengths[0, 2] == 32.0
    assert (learned.prior_strength_source, fixed.prior_strength_source) == ("profile", "config")
    plain = hierspec.Profile(profile.model_names, profile.costs_ms, profile.acceptance)
    assert Replanner(plain, AdaptiveConfig(min_draft_confidence=0.0)).prior_strength_source == (
        "fallback"
    )
    # Ten rejections move the prompt-dependent pair most of the way, the fixed prior a little.
    for replanner in (learned, fixed):
        replanner.observe(0, 2, tested=10, accepted=0)
    weak = prior_strengths(profile)[0, 2]
    assert learned.estimator.estimates()[0, 2] == pytest.approx(0.5 * weak / (weak + 10))
    assert fixed.estimator.estimates()[0, 2] == pytest.approx(0.5 * 32 / 42)
    # The steady pair keeps its profile rate against the same evidence.
    learned.observe(1, 2, tested=10, accepted=0)
    assert learned.estimator.estimates()[1, 2] > 0.94


def _profile_with_continue_rates(continue_by_prompt) -> hierspec.Profile:
    """Two candidates, early stopping measured at 0.5 (continue rate 0.5 for the drafter) with
    per-prompt continue rates ``continue_by_prompt`` ([M][P]) over 64 positions each."""
    rates = EarlyStoppingRates(0.5, (0.5, 1.0), ((1.0, 0.8), (0.0, 1.0)))
    return hierspec.Profile(
        ("ngram", "target"),
        ((0.05,) * 8, (1.0,) * 8),
        ((1.0, 0.6), (0.0, 1.0)),
        early_stopping=(rates,),
        extra={
            "acceptance_details": {
                "prompt_positions": [64] * len(continue_by_prompt[0]),
                "stop_thresholds": [0.5],
                "continue_by_prompt": [continue_by_prompt],
            }
        },
    )


def test_continue_strength_by_empirical_bayes() -> None:
    """The continue rates' priors get the strength of prior_strengths' formula from the
    per-prompt continue rates at their threshold; the constant where there are none."""
    varied = [0.1, 0.9, 0.2, 0.8, 0.5, 0.5]  # confident while copying, not on chat prompts
    profile = _profile_with_continue_rates([varied, [1.0] * 6])
    strengths = continue_strengths(profile, 0.5)
    rates = np.array(varied)
    between = rates.var(ddof=1) - np.mean(rates * (1 - rates) / 64)
    assert strengths[0] == pytest.approx(0.5 * 0.5 / between - 1, rel=1e-12)
    assert strengths[1] == PRIOR_STRENGTH_RANGE[1]  # the same on every prompt
    assert continue_strengths(profile, 0.7).tolist() == [FALLBACK_PRIOR_STRENGTH] * 2
    plain = hierspec.Profile(
        profile.model_names,
        profile.costs_ms,
        profile.acceptance,
        early_stopping=profile.early_stopping,
    )
    assert continue_strengths(plain, 0.5).tolist() == [FALLBACK_PRIOR_STRENGTH] * 2


def test_replanner_learns_continue_rates_at_their_configured_strength() -> None:
    """A threshold's continue rate moves by the configured constant (the default) or, with
    continue_prior_strength=None, by the empirical-Bayes strength (a prompt-dependent drafter
    learns the request's rate from a few checks); prior_strength leaves it alone."""
    varied = [0.1, 0.9, 0.2, 0.8, 0.5, 0.5]
    profile = _profile_with_continue_rates([varied, [1.0] * 6])
    learned = Replanner(
        profile, AdaptiveConfig(continue_prior_strength=None, discount=1.0, change_rate=0.0)
    )
    fixed = Replanner(profile, AdaptiveConfig(prior_strength=4.0, discount=1.0, change_rate=0.0))
    assert learned.thresholds == fixed.thresholds == (0.0, 0.5)
    weak = continue_strengths(profile, 0.5)[0]
    assert learned.continue_strengths[0.5].tolist() == continue_strengths(profile, 0.5).tolist()
    assert fixed.continue_strengths[0.5].tolist() == [32.0, 32.0]
    # Four batches run without stopping whose first draft was unconfident: at 0.5 each is one
    # check that stops.
    batch = BottomBatch((0.2, 0.9, 0.9), draft_length=3, threshold=0.0)
    for replanner in (learned, fixed):
        for _ in range(4):
            replanner.observe(0, 1, tested=3, accepted=3, bottom=batch)
    rate = {
        name: replanner.stopping[0.5].plan_arguments()["continue_rates"][0]
        for name, replanner in (("learned", learned), ("fixed", fixed))
    }
    assert rate["learned"] == pytest.approx(0.5 * weak / (weak + 4))
    assert rate["fixed"] == pytest.approx(0.5 * 32 / 36)
    assert rate["learned"] < 0.2 < 0.4 < rate["fixed"]
    assert fixed.prior_strengths[0, 1] == 4.0
    # continue_prior_strength sets the continue rates' strength alone.
    constant = Replanner(profile, AdaptiveConfig(continue_prior_strength=8.0))
    assert constant.continue_strengths[0.5].tolist() == [8.0, 8.0]
    assert constant.prior_strengths.tolist() == prior_strengths(profile).tolist()
    assert AdaptiveConfig().continue_prior_strength == FALLBACK_PRIOR_STRENGTH
    with pytest.raises(ValueError, match=r"prior_strength must be a number or \[2\] values"):
        ContinueEstimator([0.5, 1.0], prior_strength=[1.0, 2.0, 3.0], discount=1.0)
    with pytest.raises(ValueError, match="prior_strength must be finite and > 0"):
        ContinueEstimator([0.5, 1.0], prior_strength=[1.0, 0.0], discount=1.0)
    with pytest.raises(ValueError, match="continue_prior_strength must be > 0, got 0"):
        AdaptiveConfig(continue_prior_strength=0)


def _profile() -> hierspec.Profile:
    costs = [[0.05 * (1 + 0.01 * n) for n in range(32)], [1.0 + 0.02 * n for n in range(32)]]
    return hierspec.Profile(("ngram", "target"), tuple(map(tuple, costs)), ((1.0, 0.6), (0, 1.0)))


def test_replanner_starts_from_the_static_plan_and_falls_back_to_the_target() -> None:
    profile = _profile()
    replanner = Replanner(
        profile, AdaptiveConfig(prior_strength=4.0, discount=1.0, min_draft_confidence=0.0)
    )
    chain, lengths, latency = replanner.initial()
    static = hierspec.plan(profile.costs_ms, profile.acceptance, max_draft_length=16)
    assert (chain, lengths, latency) == (static.chain, static.draft_lengths, static.latency)
    assert chain == (0, 1)
    # The drafter turns out useless on this request: the plan falls back to the target alone.
    replanner.estimator.observe(0, 1, tested=200, accepted=0)
    decision = replanner.decide(
        chain, lengths, gaps=[0, 0], tokens_left=100, token=5, target_pass=3
    )
    assert decision.switched and decision.chain == (1,) and decision.draft_lengths == ()
    target_alone = hierspec.evaluate(profile.costs_ms, profile.acceptance, [1], []).latency
    assert decision.predicted_latency == pytest.approx(target_alone)
    assert decision.previous_latency > decision.predicted_latency


def test_replanner_weighs_the_catch_up_cost() -> None:
    profile = _profile()
    replanner = Replanner(
        profile, AdaptiveConfig(prior_strength=4.0, discount=1.0, min_draft_confidence=0.0)
    )
    replanner.estimator.observe(0, 1, tested=400, accepted=390)  # the drafter is excellent now
    # From the target alone, joining costs a pass of the drafter over its gap.
    cheap = replanner.decide((1,), (), gaps=[10, 0], tokens_left=100, token=50, target_pass=50)
    assert cheap.switched and cheap.chain == (0, 1)
    assert cheap.catch_up_cost == pytest.approx(replanner.catch_up_cost(0, 10))
    # With 2 tokens left the same gain cannot repay a catch-up over 10**6 tokens.
    dear = replanner.decide((1,), (), gaps=[10**6, 0], tokens_left=2, token=50, target_pass=50)
    assert not dear.switched and dear.chain == (1,)


def test_catch_up_cost_extrapolates_linearly_beyond_the_table() -> None:
    replanner = Replanner(_profile(), AdaptiveConfig())
    row = np.asarray(_profile().costs_ms[0])
    assert replanner.catch_up_cost(0, 0) == 0.0
    assert replanner.catch_up_cost(0, 3) == pytest.approx(row[2])
    assert replanner.catch_up_cost(0, 64) == pytest.approx(row[-1] * 2)


def test_initial_plan_is_the_priors_not_the_evidence() -> None:
    """initial() is what the decoder starts every request with: the profile's plan under the
    priors, also when asked after observations (a benchmark asks it after the run)."""
    profile = _profile()
    replanner = Replanner(profile, AdaptiveConfig(prior_strength=4.0, min_draft_confidence=0.5))
    before = replanner.initial()
    batch = BottomBatch((0.9,) * 5, draft_length=8, threshold=0.5)
    for _ in range(40):
        replanner.observe(0, 1, tested=5, accepted=0, bottom=batch)
    assert replanner.initial() == before


def test_cost_estimator_is_a_discounted_ratio_of_sums() -> None:
    forward = [[1.0, 2.0, 3.0], [10.0, 10.0, 10.0]]
    for pooled in (False, True):
        estimator = CostEstimator(forward, prior_passes=2.0, discount=0.5, pooled=pooled)
        assert estimator.scales().tolist() == [1.0, 1.0]
        estimator.observe(0, 2, 6.0)  # predicted 2
        estimator.observe(0, 5, 15.0)  # beyond the table: 3 * 5 / 3 = 5 predicted
        evidence = (0.5 * 6.0 + 15.0, 0.5 * 2.0 + 5.0)  # measured, predicted
        assert estimator.pooled() == pytest.approx(evidence[0] / evidence[1], rel=1e-12)
        factor = estimator.pooled() if pooled else 1.0
        prior = 0.5 * 0.5 * 2 * 10.0  # 2 passes at max(forward[:][0]), discounted twice
        expected = (prior * factor + evidence[0]) / (prior + evidence[1])
        assert estimator.scales()[0] == pytest.approx(expected, rel=1e-12)
        # Nothing seen of model 1: the pooled factor (1 without pooling).
        assert estimator.scales()[1] == pytest.approx(factor, rel=1e-12)
        # The prior fades: many passes at 3x give 3x whatever the prior said.
        for _ in range(200):
            estimator.observe(1, 1, 30.0)
        assert estimator.scales()[1] == pytest.approx(3.0, rel=1e-9)


def test_cost_prior_is_time_not_passes() -> None:
    """Every model's prior is the same predicted time (2 of the target's 1-token passes): a
    cheap model's outlier passes barely move its factor, its steady ratio takes over after
    enough passes, and a model whose profile cost is 0 keeps factor 1."""
    forward = [[0.3, 0.5], [80.0, 90.0], [0.0, 0.0]]
    estimator = CostEstimator(forward, prior_passes=2.0, discount=0.9, pooled=False)
    estimator.observe(1, 1, 80.0)
    estimator.observe(0, 2, 5.0)  # 10x its 0.5 ms (the first pass of a request)
    scale = (160.0 * 0.9 * 1.0 + 5.0) / (160.0 * 0.9 + 0.5)
    assert estimator.scales()[0] == pytest.approx(scale, rel=1e-12)
    assert estimator.scales()[0] < 1.04
    for _ in range(150):  # then passes at 2.5x: its own factor takes over
        estimator.observe(0, 1, 0.75)
    assert estimator.scales()[0] == pytest.approx(2.5, rel=1e-3)
    assert estimator.scales()[2] == 1.0  # free: nothing to scale, no prior
    estimator.observe(2, 1, 1.0)
    assert estimator.scales()[2] == 1.0


def test_replanner_scales_costs_by_what_the_passes_took() -> None:
    profile = _profile()
    learning = Replanner(profile, AdaptiveConfig(min_draft_confidence=0.0, pool_costs=False))
    pooling = Replanner(profile, AdaptiveConfig(min_draft_confidence=0.0))
    fixed = Replanner(profile, AdaptiveConfig(min_draft_confidence=0.0, learn_costs=False))
    for replanner in (learning, pooling, fixed):
        for _ in range(100):  # the target's 1-token passes take 4x the profile's forward cost
            replanner.observe_pass(1, 1, 4.0 * profile.costs_ms[1][0] / 1e3)
    assert learning.cost_scales() == pytest.approx([1.0, 4.0], rel=1e-4)  # prior: 0.9**100
    # The drafter, never timed, is priced at the target's factor by default.
    assert pooling.cost_scales() == pytest.approx([4.0, 4.0], rel=1e-4)
    assert fixed.cost_scales().tolist() == [1.0, 1.0]
    assert learning.costs()[1] == pytest.approx([4.0 * c for c in profile.costs_ms[1]], rel=1e-4)
    assert learning.catch_up_cost(1, 3) == pytest.approx(4.0 * profile.costs_ms[1][2], rel=1e-4)
    decision = learning.decide((0, 1), (4,), gaps=[0, 0], tokens_left=100, token=5, target_pass=3)
    assert decision.cost_scales == pytest.approx({"0": 1.0, "1": 4.0}, rel=1e-4)
    costs = learning.costs()
    expected = hierspec.evaluate(costs, profile.acceptance, [0, 1], [4]).latency
    assert decision.previous_latency == pytest.approx(expected)
    assert fixed.decide((0, 1), (4,), [0, 0], 100, 5, 3).cost_scales == {}
    with pytest.raises(TypeError, match="learn_costs must be a bool"):
        AdaptiveConfig(learn_costs=1)
    with pytest.raises(TypeError, match="pool_costs must be a bool, got 'yes'"):
        AdaptiveConfig(pool_costs="yes")


def test_replanner_learns_the_engines_work_per_pass() -> None:
    """Each cycle's time outside the passes timed in it, per pass, discounted over the cycles
    from a prior of 4 passes at 0 ms, is added to every model's cost."""
    profile = _profile()
    passes = ((0, 1), (0, 1), (1, 3))  # two drafts, then the target over 3 tokens

    def cycle(replanner: Replanner, outside_ms: float) -> None:
        timed = 0.0
        for model, tokens in passes:
            milliseconds = profile.costs_ms[model][tokens - 1]
            replanner.observe_pass(model, tokens, milliseconds / 1e3)
            timed += milliseconds
        replanner.observe_cycle(tokens=2, seconds=(timed + outside_ms) / 1e3)

    learning = Replanner(profile, AdaptiveConfig(min_draft_confidence=0.0, learn_overhead=True))
    fixed = Replanner(profile, AdaptiveConfig(min_draft_confidence=0.0))  # off by default
    assert learning.overhead_ms() == fixed.overhead_ms() == 0.0
    for replanner in (learning, fixed):
        cycle(replanner, outside_ms=6.0)
    assert learning.overhead_ms() == pytest.approx(6.0 / (0.9 * 4 + 3), rel=1e-12)
    for replanner in (learning, fixed):
        for _ in range(300):
            cycle(replanner, outside_ms=6.0)
    assert learning.overhead_ms() == pytest.approx(2.0, rel=1e-9)  # 6 ms over 3 passes
    assert fixed.overhead_ms() == 0.0
    scaled = fixed.costs()
    assert np.allclose(learning.costs(), np.asarray(scaled) + 2.0, rtol=1e-9, atol=0.0)
    # A cycle with no timed pass (costs not learned) teaches nothing.
    learning.observe_cycle(tokens=1, seconds=1.0)
    assert learning.overhead_ms() == pytest.approx(2.0, rel=1e-9)
    with pytest.raises(TypeError, match="learn_overhead must be a bool, got 0"):
        AdaptiveConfig(learn_overhead=0)


def test_latency_calibration_pools_until_a_configuration_shows_its_own() -> None:
    calibration = LatencyCalibration(prior_ms=10.0, discount=0.5)
    slow, fast, unseen = ((0, 1, 2), 0.0), ((0, 2), 0.0), ((0, 2), 0.3)
    assert calibration.pooled() == calibration.ratio(slow) == 1.0  # nothing seen
    calibration.observe(slow, milliseconds=30.0, predicted_ms=20.0)
    calibration.observe(slow, milliseconds=60.0, predicted_ms=40.0)
    # One configuration run: every configuration has its ratio (a common factor).
    assert calibration.pooled() == calibration.ratio(slow) == calibration.ratio(fast) == 1.5
    calibration.observe(fast, milliseconds=40.0, predicted_ms=40.0)
    measured, predicted = 0.5 * (0.5 * 30 + 60) + 40, 0.5 * (0.5 * 20 + 40) + 40  # per cycle
    pooled = measured / predicted
    assert calibration.pooled() == pytest.approx(pooled, rel=1e-12)
    # Each configuration's sums are discounted by its own cycles only.
    assert calibration.ratio(slow) == pytest.approx(
        (0.5 * 30 + 60 + 10 * pooled) / (0.5 * 20 + 40 + 10), rel=1e-12
    )
    assert calibration.ratio(fast) == pytest.approx((40 + 10 * pooled) / (40 + 10), rel=1e-12)
    assert calibration.ratio(unseen) == pytest.approx(pooled, rel=1e-12)  # another threshold
    before = calibration.ratio(fast), calibration.pooled()
    for ignored in ((math.nan, 1.0), (1.0, 0.0), (-1.0, 1.0), (1.0, math.inf)):
        calibration.observe(fast, *ignored)  # nothing to learn from
    assert (calibration.ratio(fast), calibration.pooled()) == before
    with pytest.raises(ValueError, match="prior_ms must be a finite number > 0, got 0"):
        LatencyCalibration(prior_ms=0, discount=0.9)
    with pytest.raises(ValueError, match=r"discount must be in \(0, 1\], got 1.5"):
        LatencyCalibration(prior_ms=1.0, discount=1.5)


def _three_models() -> hierspec.Profile:
    """ngram, a middle model and the target: the planner's best is the 3-model chain, ~16%
    ahead of ngram -> target."""
    costs = [
        [0.05 * (1 + 0.01 * n) for n in range(32)],
        [0.4 + 0.01 * n for n in range(32)],
        [1.0 + 0.02 * n for n in range(32)],
    ]
    acceptance = ((1.0, 0.5, 0.5), (0.0, 1.0, 0.9), (0.0, 0.0, 1.0))
    return hierspec.Profile(("ngram", "middle", "target"), tuple(map(tuple, costs)), acceptance)


def test_replanner_leaves_a_configuration_that_measures_slower_than_predicted() -> None:
    profile = _three_models()
    planned = hierspec.plan(profile.costs_ms, profile.acceptance, max_draft_length=16)
    single = next(entry for entry in planned.alternatives if entry.chain == (0, 2))
    assert planned.chain == (0, 1, 2) and single.latency < 1.2 * planned.latency
    decisions = {}
    for calibrate in (False, True):
        config = AdaptiveConfig(
            min_draft_confidence=0.0, learn_costs=False, calibrate=calibrate, switch_pessimism=0.0
        )
        replanner = Replanner(profile, config)
        request = replanner.initial_for_request(prompt_tokens=8, new_tokens=200)
        assert (request.chain, request.draft_lengths) == (planned.chain, planned.draft_lengths)
        # The 3-model chain's cycles take 1.5x what was predicted for their tokens.
        for _ in range(40):
            replanner.observe_cycle(tokens=3, seconds=1.5 * 3 * request.latency / 1e3)

        arguments = (planned.chain, planned.draft_lengths, [0, 0, 0], 150, 50, 20, 0.0)
        # One configuration seen: its ratio is everyone's, the model decides.
        first = replanner.decide(*arguments)
        assert not first.switched
        assert first.calibration == first.previous_calibration == pytest.approx(1.5)
        # ngram -> target has run too, at the predicted time (say, earlier in the request).
        for _ in range(40):
            replanner.calibration.observe(((0, 2), 0.0), 3 * single.latency, 3 * single.latency)
        decisions[calibrate] = replanner.decide(*arguments)
    # Without calibrate the ratios are learned (the forecast's) but the model decides.
    assert not decisions[False].switched
    assert decisions[False].previous_calibration > 1.4
    switch = decisions[True]
    assert switch.switched and (switch.chain, switch.draft_lengths) == (
        single.chain,
        single.draft_lengths,
    )
    assert switch.predicted_latency == pytest.approx(single.latency)  # the model's, uncalibrated
    assert switch.previous_calibration > 1.4 and switch.calibration < 1.1
    assert switch.predicted_latency * switch.calibration < (
        switch.previous_latency * switch.previous_calibration
    )
    with pytest.raises(TypeError, match="calibrate must be a bool, got 'no'"):
        AdaptiveConfig(calibrate="no")


def test_switch_pessimism_holds_a_switch_until_the_new_pairs_are_measured() -> None:
    """From ngram -> target, the 3-model chain is 16% faster at the profile's rates. On the
    priors alone (a weak prior: 8 pseudo-drafts) the cautious decoder stays; once the request
    has measured the chain's pairs at those rates, it switches like the means would; a new
    draft length of the chain in use is judged at the means."""
    profile = _three_models()
    planned = hierspec.plan(profile.costs_ms, profile.acceptance, max_draft_length=16)
    single = next(entry for entry in planned.alternatives if entry.chain == (0, 2))
    arguments = (single.chain, single.draft_lengths, [0, 10, 0], 150, 50, 20)

    def replanner(pessimism: float) -> Replanner:
        config = AdaptiveConfig(
            prior_strength=8.0,
            discount=1.0,
            change_rate=0.0,
            min_draft_confidence=0.0,
            learn_costs=False,
            switch_pessimism=pessimism,
        )
        return Replanner(profile, config)

    assert AdaptiveConfig().switch_pessimism == 1.0
    plain, cautious = replanner(0.0), replanner(1.0)
    first = plain.decide(*arguments)
    assert first.switched and (first.chain, first.draft_lengths) == (
        planned.chain,
        planned.draft_lengths,
    )
    held = cautious.decide(*arguments)
    assert not held.switched and held.predicted_latency == held.previous_latency
    # The request verified the middle model's pairs at the profile's rates (earlier on).
    for each in (plain, cautious):
        each.estimator.observe(0, 1, tested=2000, accepted=1000)
        each.estimator.observe(1, 2, tested=3000, accepted=2700)
    decisions = [each.decide(*arguments) for each in (plain, cautious)]
    assert decisions[1].switched and decisions[0] == decisions[1]
    assert decisions[1].chain == planned.chain
    # The n-gram level copies: a longer draft of the chain in use, the same at either setting.
    plain, cautious = replanner(0.0), replanner(1.0)
    for each in (plain, cautious):
        each.estimator.observe(0, 2, tested=400, accepted=390)
    longer = [each.decide(*arguments) for each in (plain, cautious)]
    assert longer[0] == longer[1] and longer[1].switched and longer[1].chain == (0, 2)
    assert longer[1].draft_lengths[0] > single.draft_lengths[0]


def test_switch_pessimism_lowers_the_unstopped_rate_while_a_threshold_runs() -> None:
    """At a threshold above 0 the batches feed the bottom pair's acceptance at that threshold,
    not its acceptance without stopping: moving to no stopping is a move to an unverified
    rate, priced at the cautious rate like a new pair. On the priors (strength 4), with 0.5 in
    use, no stopping is 13% faster at the means (0.6 against 0.5 at the threshold), and not
    at 0.6 less one deviation (0.22)."""
    from hierspec.planning import EarlyStoppingRates

    acceptance = ((1.0, 0.6), (0.0, 1.0))
    stopped = {"continue_rates": [0.9, 1.0], "bottom_acceptance": [[1.0, 0.5], [0.0, 1.0]]}
    table = (EarlyStoppingRates(0.5, tuple(stopped["continue_rates"]), ((1.0, 0.5), (0.0, 1.0))),)
    costs = ((0.05,) * 16, tuple(1.0 + 0.1 * n for n in range(16)))
    profile = hierspec.Profile(("draft", "target"), costs, acceptance, early_stopping=table)
    in_use = hierspec.plan(costs, acceptance, max_draft_length=16, **stopped)
    decisions = []
    for pessimism in (0.0, 1.0):
        config = AdaptiveConfig(
            prior_strength=4.0,
            discount=1.0,
            change_rate=0.0,
            learn_costs=False,
            switch_pessimism=pessimism,
        )
        replanner = Replanner(profile, config)
        assert replanner.thresholds == (0.0, 0.5)
        arguments = (in_use.chain, in_use.draft_lengths, [0, 0], 100, 10, 3, 0.5)
        decisions.append(replanner.decide(*arguments))
    plain, cautious = decisions
    assert plain.switched and plain.min_draft_confidence == 0.0
    assert plain.predicted_latency < 0.9 * plain.previous_latency
    assert not cautious.switched and cautious.min_draft_confidence == 0.5


def test_a_drafters_shift_at_a_threshold_moves_its_unstopped_rates() -> None:
    """The drafters' shifts pool the acceptance without stopping and the bottom acceptance at
    every threshold: rejected batches at 0.5 (its bottom acceptance 0.5 -> 0.25) move the
    unseen acceptance without stopping by the same logit shift, so no stopping, 13% faster on
    the priors, no longer looks it."""
    from hierspec.planning import EarlyStoppingRates

    acceptance = ((1.0, 0.6), (0.0, 1.0))
    table = (EarlyStoppingRates(0.5, (0.9, 1.0), ((1.0, 0.5), (0.0, 1.0))),)
    costs = ((0.05,) * 16, tuple(1.0 + 0.1 * n for n in range(16)))
    profile = hierspec.Profile(("draft", "target"), costs, acceptance, early_stopping=table)
    config = AdaptiveConfig(
        prior_strength=4.0, discount=1.0, change_rate=0.0, learn_costs=False, switch_pessimism=0.0
    )
    replanner = Replanner(profile, config)
    for _ in range(4):  # 4 pseudo-drafts at 0.5 + 4 rejections: 2 / 8 = 0.25
        batch = BottomBatch((0.9,) * 3, draft_length=3, threshold=0.5)
        replanner.observe(0, 1, tested=1, accepted=0, bottom=batch)
    bottom = replanner.stopping[0.5].bottom_estimator
    assert bottom.estimates()[0, 1] == pytest.approx(0.25)
    shift = math.log(0.25 / 0.75) - math.log(0.5 / 0.5)
    assert replanner.drafter_shifts()[0] == pytest.approx([4.0 * shift, 4.0])
    assert replanner.estimator.estimates()[0, 1] == pytest.approx(0.6)  # its own: unseen
    moved = 1.0 / (1.0 + math.exp(-(math.log(0.6 / 0.4) + shift)))
    pooled = replanner.estimator.estimates(shifts=replanner.drafter_shifts())
    assert pooled[0, 1] == pytest.approx(moved, rel=1e-9)
    lengths = hierspec.plan(
        costs, acceptance, 16, continue_rates=[0.9, 1.0], bottom_acceptance=[[1, 0.25], [0, 1]]
    ).draft_lengths
    decision = replanner.decide((0, 1), lengths, [0, 0], 100, 10, 3, 0.5)
    assert decision.min_draft_confidence == 0.5
    assert decision.acceptance == {} and decision.bottom_acceptance == {"0->1": 0.25}


def test_cost_scale_uses_the_profiles_forward_part() -> None:
    """The engine times a level's append only; the profiler's ``forward_ms`` is that part of
    the cost, so a pass that took exactly its forward_ms leaves the scale at 1."""
    base = _profile()
    forward = [[0.5 * c for c in row] for row in base.costs_ms]
    profile = hierspec.Profile(
        base.model_names,
        base.costs_ms,
        base.acceptance,
        extra={"model_details": [{"forward_ms": row} for row in forward]},
    )
    replanner = Replanner(profile, AdaptiveConfig())
    for _ in range(50):
        replanner.observe_pass(1, 2, forward[1][1] / 1e3)
    assert replanner.cost_scales()[1] == pytest.approx(1.0)


def _stopping_profile() -> hierspec.Profile:
    """A drafter and a target, early stopping measured at 0.3 and 0.6 (where the profile says
    it does not pay: the drafts kept are no better than all drafts)."""
    from hierspec.planning import EarlyStoppingRates

    acceptance = ((1.0, 0.5), (0.0, 1.0))
    table = tuple(
        EarlyStoppingRates(threshold, (rate, 1.0), ((1.0, bottom), (0.0, 1.0)))
        for threshold, rate, bottom in ((0.3, 0.8, 0.5), (0.6, 0.5, 0.5))
    )
    costs = ((0.05,) * 16, tuple(1.0 + 0.1 * n for n in range(16)))
    return hierspec.Profile(("draft", "target"), costs, acceptance, early_stopping=table)


def test_a_bottom_batch_says_what_each_higher_threshold_would_have_drafted() -> None:
    batch = BottomBatch((0.9, 0.5, 0.7, 0.2), draft_length=6, threshold=0.1)
    assert [batch.at(c) for c in (0.1, 0.3, 0.6, 0.95)] == [4, 3, 1, 0]
    with pytest.raises(ValueError, match="says nothing about threshold 0.05"):
        batch.at(0.05)


def test_each_threshold_learns_what_it_would_have_done_with_the_batch() -> None:
    config = AdaptiveConfig(
        prior_strength=1e-6,
        continue_prior_strength=1e-6,
        discount=1.0,
        change_rate=0.0,
        learn_costs=False,
    )  # the counts alone: every estimate a ratio of what the thresholds saw
    replanner = Replanner(_stopping_profile(), config)
    assert replanner.thresholds == (0.0, 0.3, 0.6)
    # Run without stopping: T = 4, drafts 1 and 2 accepted, draft 3 rejected.
    batch = BottomBatch((0.9, 0.5, 0.4, 0.8), draft_length=4, threshold=0.0)
    replanner.observe(0, 1, tested=3, accepted=2, bottom=batch)
    assert replanner.estimator.estimates()[0, 1] == pytest.approx(2 / 3)
    at_03, at_06 = (replanner.stopping[c].plan_arguments() for c in (0.3, 0.6))
    # 0.3 drafts all 4 (no check after the last): same outcome as all drafts.
    assert at_03["continue_rates"][0] == pytest.approx(1.0)
    assert at_03["bottom_acceptance"][0][1] == pytest.approx(2 / 3)
    # 0.6 drafts only the first (checks 2 positions) and it is accepted.
    assert at_06["continue_rates"][0] == pytest.approx(0.5)
    assert at_06["bottom_acceptance"][0][1] == pytest.approx(1.0)
    # A batch run at 0.6 teaches 0.6 only: 0.3 and all drafts never saw its drafts below 0.6.
    before = replanner.estimator.estimates().copy(), replanner.stopping[0.3].plan_arguments()
    stopped = BottomBatch((0.9,), draft_length=4, threshold=0.6)  # stopped before draft 2
    replanner.observe(0, 1, tested=1, accepted=0, bottom=stopped)
    assert np.array_equal(replanner.estimator.estimates(), before[0])
    assert replanner.stopping[0.3].plan_arguments() == before[1]
    at_06 = replanner.stopping[0.6].plan_arguments()
    assert at_06["continue_rates"][0] == pytest.approx(2 / 4)  # 1 + 1 drafted of 2 + 2 checks
    assert at_06["bottom_acceptance"][0][1] == pytest.approx(1 / 2)


def test_replanner_switches_the_threshold_when_the_request_shows_it_pays() -> None:
    profile = _stopping_profile()
    replanner = Replanner(profile, AdaptiveConfig(prior_strength=2.0, learn_costs=False))
    start = replanner.min_draft_confidence
    assert start == 0.0
    chain, lengths, _ = replanner.initial()
    # Drafts above 0.6 always survive, the others never do; half the drafts are above 0.6.
    for _ in range(30):
        batch = BottomBatch((0.9, 0.45, 0.9, 0.45), draft_length=4, threshold=start)
        drafted = batch.at(start)
        accepted = 1 if drafted else 0
        replanner.observe(0, 1, min(accepted + 1, drafted), accepted, bottom=batch)
    # Each decision plans at the threshold in use and one other in turn: 0.3 (no better than
    # 0 on this request: every draft is above it), then 0.6.
    decisions = [
        replanner.decide(chain, lengths, [0, 0], 100, 50, 30, min_draft_confidence=start)
        for _ in range(2)
    ]
    assert not decisions[0].switched
    decision = decisions[1]
    assert decision.switched and decision.min_draft_confidence == 0.6
    assert decision.previous_min_draft_confidence == start and decision.catch_up_cost == 0.0
    assert decision.continue_rates["0"] < 0.7 and decision.bottom_acceptance["0->1"] > 0.8
    with pytest.raises(ValueError, match="min_draft_confidence 0.5 is not one of"):
        replanner.decide(chain, lengths, [0, 0], 100, 50, 30, min_draft_confidence=0.5)


def test_replanner_estimates_follow_a_change_with_the_configured_change_rate() -> None:
    """The change rate reaches every estimate the replanner plans with: the pair's acceptance,
    and at each threshold the continue rate and the bottom acceptance."""
    profile = _stopping_profile()
    copying = BottomBatch((0.95,) * 8, draft_length=8, threshold=0.0)
    stuck = BottomBatch((0.1, 0.1, 0.1, 0.1), draft_length=8, threshold=0.0)
    results = {}
    for change_rate in (0.0, 0.02):
        config = AdaptiveConfig(change_rate=change_rate, learn_costs=False)
        replanner = Replanner(profile, config)
        for _ in range(20):
            replanner.observe(0, 1, tested=8, accepted=8, bottom=copying)
        for _ in range(3):
            replanner.observe(0, 1, tested=1, accepted=0, bottom=stuck)
        at_06 = replanner.stopping[0.6].plan_arguments()
        results[change_rate] = (
            replanner.estimator.estimates()[0, 1],
            at_06["continue_rates"][0],
            at_06["bottom_acceptance"][0][1],
        )
    acceptance, continue_rate, _ = results[0.0]
    assert acceptance > 0.8 and continue_rate > 0.8  # the discount window still remembers
    acceptance, continue_rate, bottom = results[0.02]
    assert acceptance < 0.5 and continue_rate < 0.5
    # At 0.6 the stuck batches drafted nothing: no tested draft, the copy's rate stands.
    assert bottom > 0.9


def test_posteriors_are_computed_once_per_observation() -> None:
    """RatePosteriors memoizes means / stds / evidence between observations: a caller's copy can
    be changed without touching it, and the next observation recomputes them."""
    from hierspec.adaptive import RatePosteriors

    posteriors = RatePosteriors(np.array([0.5]), np.array([4.0]), discount=1.0, change_rate=0.01)
    means = posteriors.means()
    means[0] = 0.0
    assert posteriors.means()[0] == pytest.approx(0.5)
    before = posteriors.means(), posteriors.stds(), posteriors.evidence()
    posteriors.observe((0,), successes=6, failures=0)
    after = posteriors.means(), posteriors.stds(), posteriors.evidence()
    assert after[0][0] > before[0][0] and after[1][0] < before[1][0]
    assert before[2][0] == 0.0 and after[2][0] == pytest.approx(6.0)


def test_the_cheapest_candidate_shadows_every_chain_without_it() -> None:
    """The shadow is the cheapest candidate within shadow_max_cost of the target's 1-token
    pass; it shadows the target alone and every chain it is not in, at one pass over each
    cycle's committed tokens; what it scores feeds its pair as a first draft of a batch run
    without stopping."""
    acceptance = tuple(tuple(row[:3]) for row in PRIOR[:3])
    profile = hierspec.Profile(
        ("small", "ngram", "target"),
        ((2.0,) * 4, (0.3, 0.4, 0.6, 0.8), (84.0,) * 4),
        acceptance,
        early_stopping=(EarlyStoppingRates(0.5, (0.5, 0.5, 1.0), acceptance),),
    )
    replanner = Replanner(profile, AdaptiveConfig(discount=1.0, change_rate=0.0))
    assert replanner.shadow_model == 1  # 0.36% of the target; the small model is not cheapest
    assert replanner.shadow_for((2,)) == 1 and replanner.shadow_for((0, 2)) == 1
    assert replanner.shadow_for((1, 2)) is None and replanner.shadow_for((1, 0, 2)) is None
    costs = np.asarray(replanner.costs())
    assert replanner.shadow_ms((2,), costs) == pytest.approx(0.3)
    # One pass over the k tokens a target pass commits, per token: c(k) / k, interpolated.
    assert replanner.shadow_ms((0, 2), costs, 3.0) == pytest.approx(0.6 / 3)
    assert replanner.shadow_ms((0, 2), costs, 2.5) == pytest.approx(0.5 / 2.5)
    assert replanner.shadow_ms((1, 2), costs, 3.0) == 0.0
    for limit in (0.0, 0.003):  # off, or the cheapest too dear
        assert Replanner(profile, AdaptiveConfig(shadow_max_cost=limit)).shadow_model is None
    evidence = replanner.estimator.evidence().copy()
    for confidence, accepted in ((0.9, True), (0.3, False), (0.8, False)):
        replanner.observe_shadow(1, accepted, confidence)
    assert replanner.estimator.evidence()[1, 2] == evidence[1, 2] + 3
    assert np.delete(replanner.estimator.evidence(), 5).tolist() == np.delete(evidence, 5).tolist()
    # At 0.5 the unconfident prediction would not have been drafted: two checks continued of
    # three, and one draft of the two accepted.
    stopping = replanner.stopping[0.5]
    assert stopping.continue_estimator.estimates()[1] == pytest.approx((32 * 0.5 + 2) / 35)
    assert stopping.bottom_estimator.evidence()[1, 2] == 2
    strength = replanner.prior_strengths[1, 2]
    bottom = stopping.bottom_estimator.estimates()[1, 2]
    assert bottom == pytest.approx((strength * 0.8 + 1) / (strength + 2))


def test_the_fall_back_needs_fallback_min_gain_while_a_candidate_shadows() -> None:
    """Drafting at acceptance ~0 costs the target's 2-token pass (108 ms) plus the drafter's
    1 ms per token; the target alone 100 ms plus its shadow's 1 ms: 7% faster. That clears
    fallback_min_gain (3%) with a shadow, not min_relative_gain (10%) without one."""
    profile = hierspec.Profile(
        ("ngram", "target"),
        ((1.0,) * 16, tuple(100.0 + 8.0 * n for n in range(16))),
        ((1.0, 0.001), (0.0, 1.0)),
    )
    decisions = {}
    for limit in (0.02, 0.0):
        config = AdaptiveConfig(
            prior_strength=1000.0, min_draft_confidence=0.0, shadow_max_cost=limit
        )
        replanner = Replanner(profile, config)
        decisions[limit] = replanner.decide(
            (0, 1), (1,), gaps=[0, 0], tokens_left=100, token=10, target_pass=10
        )
    shadowed, unshadowed = decisions[0.02], decisions[0.0]
    assert shadowed.switched and shadowed.chain == (1,)
    assert shadowed.predicted_latency == pytest.approx(101.0)  # the shadow's pass included
    assert shadowed.acceptance.keys() == {"0->1"}  # what the shadow will learn, reported
    assert 0.03 < 1.0 - shadowed.predicted_latency / shadowed.previous_latency < 0.1
    assert not unshadowed.switched and unshadowed.chain == (0, 1)


def test_decisions_back_off_while_the_configuration_stays() -> None:
    """replan_interval after a switch and at the start, doubled by each decision that keeps
    the configuration, up to max_replan_interval."""
    profile = hierspec.Profile(
        ("ngram", "target"),
        ((1.0,) * 16, tuple(100.0 + 2.0 * n for n in range(16))),
        ((1.0, 0.6), (0.0, 1.0)),
    )
    replanner = Replanner(profile, AdaptiveConfig(min_draft_confidence=0.0))
    chain, lengths, _ = replanner.initial()
    keywords = dict(gaps=[0, 0], tokens_left=100, token=10, target_pass=10)
    intervals = [replanner.interval]
    for _ in range(4):
        assert not replanner.decide(chain, lengths, **keywords).switched
        intervals.append(replanner.interval)
    assert intervals == [1, 2, 4, 4, 4]
    assert replanner.decide((1,), (), **keywords).switched  # the target alone: far slower
    assert replanner.interval == 1
    replanner.reset()
    assert replanner.interval == 1
    fixed = Replanner(
        profile, AdaptiveConfig(min_draft_confidence=0.0, replan_interval=3, max_replan_interval=3)
    )
    fixed.decide(chain, lengths, **keywords)
    assert fixed.interval == 3


def _assert_plain_python(value, where="decision") -> None:
    """Only Python's own bool, int, float, str, tuples, lists and dicts (no NumPy scalars)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_plain_python(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _assert_plain_python(item, f"{where}[{index}]")
    else:
        assert type(value) in (bool, int, float, str), f"{where}: {type(value)}"


def test_the_comparison_with_the_target_alone_is_at_measured_speed() -> None:
    """calibrate_fallback: a drafting configuration whose cycles run slower than the model says
    is compared with the target alone at its own measured / predicted ratio, both ways: it
    falls back when it measures slower than the target alone, and the model's gain must
    survive that ratio to come back; without it the model alone decides and keeps drafting."""
    profile = hierspec.Profile(
        ("ngram", "target"),
        ((0.3,) * 16, tuple(100.0 + 2.0 * n for n in range(16))),
        ((1.0, 0.6), (0.0, 1.0)),
    )
    outcomes = {}
    for calibrate_fallback in (True, False):
        config = AdaptiveConfig(
            prior_strength=1000.0,
            min_draft_confidence=0.0,
            switch_pessimism=0.0,
            calibrate_fallback=calibrate_fallback,
        )
        replanner = Replanner(profile, config)
        request = replanner.initial_for_request(prompt_tokens=8, new_tokens=400)
        assert request.chain == (0, 1) and request.latency < 50.0  # the model: 2x faster
        # Its cycles take 4x the predicted time: ~85% slower than the target alone.
        for _ in range(100):
            replanner.observe_cycle(tokens=2, seconds=4.0 * 2 * request.latency / 1e3)
        # The prior (16 target passes at ratio 1) holds it well below 4: 20% slower.
        assert 2.4 < replanner.own_calibration_ratio((0, 1), 0.0) < 3.0
        arguments = dict(gaps=[0, 0], tokens_left=300, token=100, target_pass=50)
        leave = replanner.decide(request.chain, request.draft_lengths, **arguments)
        # At the target alone (it runs at its predicted time), asked again.
        for _ in range(8):
            replanner.observe_cycle(tokens=1, seconds=101.0 / 1e3)
        back = replanner.decide((1,), (), **arguments)
        outcomes[calibrate_fallback] = leave, back
    for decision in (*outcomes[True], *outcomes[False]):
        _assert_plain_python(dataclasses.asdict(decision))  # a typed result, JSON as it is
        json.dumps(dataclasses.asdict(decision), allow_nan=False)
    leave, back = outcomes[True]
    assert leave.switched and leave.chain == (1,)
    assert leave.predicted_latency > leave.previous_latency  # the model alone would stay
    assert not back.switched  # 1.8x its model latency does not beat the target alone
    leave, back = outcomes[False]
    assert not leave.switched
    assert back.switched and back.chain == (0, 1)
    with pytest.raises(TypeError, match="calibrate_fallback must be a bool, got 1"):
        AdaptiveConfig(calibrate_fallback=1)
