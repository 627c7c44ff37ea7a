"""bench/prediction_error.py: the per-cycle account of an adaptive run, by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import hierspec
from hierspec.adaptive import BottomBatch, PlanDecision

COSTS = [[1.0, 1.5, 2.0, 2.5, 3.0, 3.5], [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]  # ngram, target


@pytest.fixture(scope="module")
def prediction_error(bench_import):
    return bench_import("prediction_error")


def decision(token: int, latency: float, catch_up: float = 0.0) -> PlanDecision:
    return PlanDecision(
        token, token, (0, 1), (3,), (0, 1), (3,), catch_up > 0, {}, latency, latency, catch_up
    )


def test_cycles_and_their_account_by_hand(prediction_error):
    """Two cycles of ngram -> target T = 3 after the first decision: the first drafts 3, all
    accepted (4 tokens, 40 ms); the second stops after 1 draft at threshold 0.5 and it is
    rejected (1 token, 20 ms)."""
    evaluation = SimpleNamespace(tokens_per_target_pass=2.5)
    inputs = {
        "costs": COSTS,
        "acceptance": [[1.0, 0.7], [0.0, 1.0]],
        "continue_rates": None,
        "bottom_acceptance": None,
    }
    events = [
        ("decide", 0.0, 0.001, decision(0, 8.0), evaluation, inputs),
        ("pass", 0, 2),
        ("pass", 0, 1),
        ("pass", 0, 1),
        ("pass", 1, 4),
        ("verify", 0, 1, 3, 3, BottomBatch((0.9, 0.9, 0.9), 3, 0.0)),
        ("decide", 0.041, 0.042, decision(4, 9.0, catch_up=2.0), evaluation, inputs),
        ("pass", 0, 2),
        ("pass", 0, 1),
        ("pass", 1, 2),
        ("verify", 0, 1, 1, 0, BottomBatch((0.9,), 3, 0.5)),
        ("decide", 0.062, 0.063, decision(5, 9.0), evaluation, inputs),
    ]
    cycles = prediction_error.cycles_of(events)
    assert [c["tokens"] for c in cycles] == [4, 1]
    assert [c["seconds"] for c in cycles] == pytest.approx([0.040, 0.020])
    fit = {"continue": [1.0, 1.0], "acceptance": [0.5, 0.5], "transition": [[0.5, 0.5]] * 2}
    fits = {0.0: fit, 0.5: {**fit, "continue": [0.5, 0.5]}}
    regimes = prediction_error.RegimeFilter(fits)
    # The second decision carries threshold 0 too (PlanDecision's default): forecast at 0.
    totals = prediction_error.account(cycles, regimes, ngram=0, target=1)
    assert totals["measured_ms"] == pytest.approx(60.0)
    # The second cycle runs after a switch: its catch-up pass is charged at its prediction.
    assert totals["model_cost_ms"] == pytest.approx((1.5 + 1 + 1 + 13) + (1.5 + 1 + 11) + 2.0)
    assert totals["predicted_ms"] == pytest.approx(8.0 * 4 + 9.0 * 1 + 2.0)
    assert totals["iid_tokens"] == pytest.approx(5.0)
    # Identical regimes: the forecast is the i.i.d. batch of 3 at 0.5, each cycle.
    assert totals["regime_forecast_tokens"] == pytest.approx(2 * (1 + 0.5 + 0.25 + 0.125))
    # The plug-in replaces the pair's 0.7 by the regimes' 0.5.
    plug_in = hierspec.evaluate(COSTS, [[1.0, 0.5], [0.0, 1.0]], [0, 1], [3]).latency
    assert totals["regime_predicted_ms"] == pytest.approx(plug_in * 5 + 2.0)
    assert totals["regime_iid_predicted_ms"] == pytest.approx(totals["predicted_ms"])
    summary = prediction_error.summarize([totals])
    assert (1 + summary["cost_side"]) * (1 + summary["acceptance_side"]) == pytest.approx(
        1 + summary["prediction_error"]
    )
    assert summary["prediction_error"] == pytest.approx(60.0 / 43.0 - 1.0)
    assert summary["iid_tokens_bias"] == pytest.approx(5.0 / 5.0 - 1.0)


def test_ordered_puts_the_low_regime_first(prediction_error):
    fit = {
        "continue": [0.9, 0.4],
        "acceptance": [0.95, 0.3],
        "transition": [[0.8, 0.2], [0.1, 0.9]],
    }
    result = prediction_error.ordered(fit)
    assert result["acceptance"] == [0.3, 0.95]
    assert result["continue"] == [0.4, 0.9]
    assert result["transition"] == [[0.9, 0.1], [0.2, 0.8]]


def test_recorded_evaluation_is_the_decisions_latency(prediction_error):
    """The replanner's record re-evaluates each decision's configuration on the estimates the
    decision priced it at (its means, the drafters' shifts pooled over the thresholds): the
    same latency as the decision's. Batches run at 0.5 move the unseen acceptance without
    stopping; a record without the pooled shifts would price it at the profile's."""
    from hierspec.adaptive import AdaptiveConfig
    from hierspec.planning import EarlyStoppingRates

    acceptance = ((1.0, 0.6), (0.0, 1.0))
    table = (EarlyStoppingRates(0.5, (0.9, 1.0), ((1.0, 0.5), (0.0, 1.0))),)
    profile = hierspec.Profile(("ngram", "target"), COSTS, acceptance, early_stopping=table)
    config = AdaptiveConfig(prior_strength=4.0, learn_costs=False, switch_pessimism=0.0)
    replanner = prediction_error.RecordingReplanner(profile, config)
    for _ in range(4):
        batch = BottomBatch((0.9,) * 3, draft_length=3, threshold=0.5)
        replanner.observe(0, 1, tested=1, accepted=0, bottom=batch)
    for _ in range(2):  # at 0.5, then planning at 0 too (the other threshold in turn)
        decision = replanner.decide((0, 1), (3,), [0, 0], 100, 10, 3, min_draft_confidence=0.5)
        *_, recorded, evaluation, inputs = replanner.events[-1]
        assert recorded is decision
        assert evaluation.latency == pytest.approx(decision.predicted_latency, rel=1e-12)
        assert inputs["acceptance"][0][1] < 0.6 - 0.1  # moved with the batches at 0.5
