"""bench/correlation.py: the calibration replay and the two-regime model reduce to the i.i.d.
latency model where the process is i.i.d., and the trace predictions to hand computation."""

from __future__ import annotations

import numpy as np
import pytest

import hierspec

DRAFTER = [0.1 * (1 + 0.05 * n) for n in range(20)]  # c_0(n), n = 1..20
TARGET = [10.0 * (1 + 0.02 * n) for n in range(20)]


@pytest.fixture(scope="module")
def correlation(bench_import):
    return bench_import("correlation")


def iid_latency(rate: float, draft_length: int, rho: float = 1.0) -> float:
    return hierspec.evaluate(
        [DRAFTER, TARGET],
        [[1.0, rate], [0.0, 1.0]],
        [0, 1],
        [draft_length],
        continue_rates=[rho, 1.0],
        bottom_acceptance=[[1.0, rate], [0.0, 1.0]],
    ).latency


@pytest.mark.parametrize("draft_length", [1, 3, 6])
def test_replay_of_a_constant_rate_text_is_the_iid_model(correlation, draft_length):
    """Every position accepted with the same probability and always confident: the replayed
    cycles are the i.i.d. process (up to the cycles cut off at the text's end)."""
    text = (np.ones(4000), np.full(4000, 0.6))
    replayed = correlation.replay([text], DRAFTER, TARGET, 0.5, draft_length)
    assert replayed == pytest.approx(iid_latency(0.6, draft_length), rel=2e-3)


def test_replay_follows_a_deterministic_text_by_hand(correlation):
    """Greedy 0/1 overlaps: from position 0 the drafter (T = 2) is confident at 0 and 1, draft 0
    survives and draft 1 fails (2 tokens, next start 2); from 2 it stops at once (not
    confident at 2: 1 token, next start 3); from 3 both drafts survive (3 tokens)."""
    confidence = np.array([0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9])
    overlap = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    latency = correlation.replay([(confidence, overlap)], DRAFTER, TARGET, 0.5, 2)
    # Cycles that fit (start <= 8 - 2 - 1 = 5): starts 0, 2, 3 (then 6 does not fit).
    costs = [
        DRAFTER[1] + DRAFTER[0] + TARGET[2],  # G = 2: 2 passes, target pass over 3
        DRAFTER[1] + TARGET[0],  # G = 0: 1 pass (to decide), target pass over 1
        DRAFTER[1] + DRAFTER[0] + TARGET[2],
    ]
    assert latency == pytest.approx(sum(costs) / (2 + 1 + 3), rel=1e-12)


@pytest.mark.parametrize("rho", [1.0, 0.7])
def test_two_identical_regimes_are_the_iid_model(correlation, rho):
    fit = {
        "continue": [rho, rho],
        "acceptance": [0.55, 0.55],
        "transition": [[0.8, 0.2], [0.3, 0.7]],
    }
    for draft_length in (1, 4, 9):
        assert correlation.regimes_latency(fit, DRAFTER, TARGET, draft_length) == pytest.approx(
            iid_latency(0.55, draft_length, rho), rel=1e-12
        )


def test_a_transient_regime_does_not_count_in_the_long_run(correlation):
    """Regime 1 is absorbing: the stationary law of the start regimes puts everything on it
    and the latency is regime 1's i.i.d. latency."""
    fit = {"continue": [1.0, 1.0], "acceptance": [0.2, 0.9], "transition": [[0.5, 0.5], [0, 1]]}
    assert correlation.regimes_latency(fit, DRAFTER, TARGET, 5) == pytest.approx(
        iid_latency(0.9, 5), rel=1e-9
    )


def test_trace_predictions_by_hand(correlation):
    # Single draft T = 2: outcomes full, partial (1 accepted), full, partial (0 accepted).
    rows = [
        [0, 1, 2, 2, 2, 0, 0],
        [0, 1, 2, 1, 2, 3, 1],
        [0, 1, 2, 2, 2, 5, 2],
        [0, 1, 1, 0, 2, 8, 3],
    ]
    trace = {"mode": "greedy", "category": "x", "chain": [0, 1], "draft_lengths": [2]}
    result = correlation.trace_predictions({**trace, "verifications": rows})
    assert result["realised"] == pytest.approx((3 + 2 + 3 + 1) / 4)
    assert result["rate"] == pytest.approx(5 / 7)  # 5 accepted of 7 tested
    assert result["iid"] == pytest.approx(1 + 5 / 7 + (5 / 7) ** 2)
    # After full: verifications 2 and 4 (1 + 0 accepted of 2 + 1 tested); after partial: 3.
    assert result["rate_after_full"] == pytest.approx(1 / 3)
    assert result["rate_after_partial"] == pytest.approx(1.0)


def test_regime_filter_with_identical_regimes_forecasts_the_iid_batch(correlation):
    """Two regimes that behave alike: whatever the filter saw, the next cycle's expected
    committed tokens are the i.i.d. ones, ``sum_{k=0}^{T} a^k`` without stopping."""
    fit = {"continue": [1.0, 1.0], "acceptance": [0.6, 0.6], "transition": [[0.9, 0.1], [0.2, 0.8]]}
    regimes = correlation.RegimeFilter({0.0: fit})
    for drafted, accepted in [(4, 4), (4, 0), (4, 2)]:
        assert regimes.forecast(0.0, 4) == pytest.approx(sum(0.6**k for k in range(5)))
        regimes.observe(0.0, drafted, 4, accepted)


def test_regime_filter_updates_the_belief_by_bayes_rule(correlation):
    """One rejected draft at threshold 0, from the stationary law (1/2, 1/2) of a symmetric
    chain: posterior proportional to (1 - a_z) / 2, then one transition."""
    transition = np.array([[0.9, 0.1], [0.1, 0.9]])
    fit = {"continue": [1.0, 1.0], "acceptance": [0.2, 0.9], "transition": transition.tolist()}
    regimes = correlation.RegimeFilter({0.0: fit})
    regimes.forecast(0.0, 3)  # starts from the stationary law
    regimes.observe(0.0, drafted=3, draft_length=3, accepted=0)
    posterior = np.array([0.8, 0.1]) / 0.9
    np.testing.assert_allclose(regimes.belief, posterior @ transition, rtol=1e-12)
    # A full batch: three accepted positions and the bonus position (a transition, no evidence).
    belief = regimes.belief
    regimes.observe(0.0, drafted=3, draft_length=3, accepted=3)
    for _ in range(3):
        belief = belief * np.array([0.2, 0.9])
        belief = (belief / belief.sum()) @ transition
    np.testing.assert_allclose(regimes.belief, belief @ transition, rtol=1e-12)


def test_regime_filter_reads_a_stop_only_where_it_was_committed(correlation):
    """At a threshold, a batch that stopped after its drafts were all accepted shows the stop
    (the position the target fills); one whose last draft was rejected does not."""
    fit = {"continue": [0.3, 0.9], "acceptance": [0.4, 0.8], "transition": [[0.9, 0.1], [0.1, 0.9]]}
    transition = np.array(fit["transition"])
    stopped = correlation.RegimeFilter({0.5: fit})
    stopped.belief = np.array([0.5, 0.5])
    stopped.observe(0.5, drafted=0, draft_length=4, accepted=0)
    np.testing.assert_allclose(stopped.belief, np.array([0.7, 0.1]) / 0.8 @ transition)
    rejected = correlation.RegimeFilter({0.5: fit})
    rejected.belief = np.array([0.5, 0.5])
    rejected.observe(0.5, drafted=2, draft_length=4, accepted=1)
    belief = np.array([0.3 * 0.4, 0.9 * 0.8])
    belief = (belief / belief.sum()) @ transition
    belief = belief * np.array([0.3 * 0.6, 0.9 * 0.2])
    np.testing.assert_allclose(rejected.belief, (belief / belief.sum()) @ transition)


@pytest.mark.parametrize("draft_length", [1, 4])
def test_regime_cycles_are_laws(correlation, draft_length):
    fit = {
        "continue": [0.4, 0.95],
        "acceptance": [0.3, 0.9],
        "transition": [[0.8, 0.2], [0.1, 0.9]],
    }
    cycles = correlation.regimes_cycles(fit, draft_length)
    np.testing.assert_allclose(cycles["stops"].sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(cycles["next_start"].sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(cycles["output"] >= 1.0) and np.all(cycles["output"] <= draft_length + 1)
