"""bench/estimator.py: recording verification traces and scoring estimator settings on them.

Scoring is exact against hand computation on tiny synthetic traces; the grid must prefer
forgetting on a trace that drifts and a strong prior on one that does not; the recorder's
batch lengths and token counts must agree with the engine's own counters (synthetic models).
"""

from __future__ import annotations

import math
import random

import pytest
import torch

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.testing import markov_models


@pytest.fixture(scope="module")
def estimator(bench_import):
    return bench_import("estimator")


def _trace(module, verifications, mode="greedy"):
    return module.Trace(
        mode=mode,
        prompt=0,
        category="test",
        chain=(0, 1),
        draft_lengths=(4,),
        prompt_tokens=3,
        new_tokens=sum(v.accepted + 1 for v in verifications),
        verifications=tuple(verifications),
    )


def _batch(module, accepted, batch_length=4, token=0, target_pass=0):
    tested = min(accepted + 1, batch_length)
    return module.Verification(0, 1, tested, accepted, batch_length, token, target_pass)


def test_score_matches_hand_computation(estimator):
    prior = [[1.0, 0.6], [0.0, 1.0]]
    trace = _trace(estimator, [_batch(estimator, 2), _batch(estimator, 4, target_pass=1)])
    score = estimator.score_trace(trace, prior, prior_strength=10.0, discount=1.0)
    # First verification at the prior 0.6: 2 accepted, 1 rejected. Then (6 + 2) / (10 + 3).
    second = 8.0 / 13.0
    expected = 2 * math.log(0.6) + math.log(0.4) + 4 * math.log(second)
    assert score.log_likelihood == pytest.approx(expected, rel=1e-12)
    assert score.tested == 7
    assert score.nats_per_draft == pytest.approx(expected / 7, rel=1e-12)

    def accepted_drafts(rate):  # sum_{m=1..4} a^m
        return sum(rate**m for m in range(1, 5))

    assert score.abs_token_error == pytest.approx(
        abs(accepted_drafts(0.6) - 2) + abs(accepted_drafts(second) - 4), rel=1e-12
    )
    assert score.token_bias == pytest.approx(
        (accepted_drafts(0.6) + accepted_drafts(second)) / 6 - 1, rel=1e-12
    )


def test_score_takes_per_pair_strengths(estimator):
    """The empirical-Bayes strengths are a matrix: its (0, 1) entry is what scores pair (0, 1)."""
    prior = [[1.0, 0.6], [0.0, 1.0]]
    trace = _trace(estimator, [_batch(estimator, 2), _batch(estimator, 4, target_pass=1)])
    scalar = estimator.score_trace(trace, prior, prior_strength=10.0, discount=1.0)
    matrix = estimator.score_trace(trace, prior, [[7.0, 10.0], [3.0, 5.0]], discount=1.0)
    assert matrix == scalar
    weak = estimator.score_trace(trace, prior, [[1.0, 2.0], [1.0, 1.0]], discount=1.0)
    second = (2 * 0.6 + 2) / (2 + 3)  # the second verification's estimate under n0 = 2
    expected = 2 * math.log(0.6) + math.log(0.4) + 4 * math.log(second)
    assert weak.log_likelihood == pytest.approx(expected, rel=1e-12)


def test_regret_pair_is_a_paired_difference(estimator):
    values = {(None, 0.95): [0.1, 0.2, math.nan, 0.4], (32.0, 0.95): [0.2, 0.2, 0.5, 0.1]}
    result = estimator._regret_pair(values, (32.0, 0.95))
    assert result["regret"] == pytest.approx((0.1 + 0.2 + 0.4) / 3)
    assert result["constant_regret"] == pytest.approx((0.2 + 0.2 + 0.1) / 3)
    differences = [-0.1, 0.0, 0.3]
    assert result["vs_constant"] == pytest.approx(sum(differences) / 3)
    mean = sum(differences) / 3
    stdev = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    assert result["vs_constant_stderr"] == pytest.approx(stdev / math.sqrt(3))


def test_verification_rejects_untested_drafts(estimator):
    with pytest.raises(ValueError, match="tested must be min"):
        estimator.Verification(0, 1, 4, 2, 4, 0, 0)  # drafts after a rejection are not tested
    with pytest.raises(ValueError, match="accepted <= tested"):
        estimator.Verification(0, 1, 2, 3, 4, 0, 0)


def test_grid_prefers_forgetting_on_drift_and_the_prior_without(estimator):
    prior = {"greedy": [[1.0, 0.5], [0.0, 1.0]]}
    stream = random.Random(0)

    def draws(rates):
        verifications = []
        for index, rate in enumerate(rates):
            accepted = 0
            while accepted < 4 and stream.random() < rate:
                accepted += 1
            verifications.append(_batch(estimator, accepted, target_pass=index))
        return verifications

    drifting = [_trace(estimator, draws([0.95] * 60 + [0.1] * 60)) for _ in range(4)]
    cells = estimator.score_grid(drifting, prior, strengths=[4.0], discounts=[0.9, 1.0])
    summary = estimator.grid_summary(cells, default=(4.0, 1.0))
    assert summary["best"] == {"prior_strength": 4.0, "discount": 0.9}
    assert summary["default"]["vs_best"] < 0
    # Stationary at the prior's rate: the strong prior is best, and a weak one does better
    # without forgetting (noise is all forgetting follows).
    steady = [_trace(estimator, draws([0.5] * 120)) for _ in range(4)]
    cells = estimator.score_grid(steady, prior, strengths=[1.0, 64.0], discounts=[0.8, 1.0])
    assert estimator.grid_summary(cells, default=(1.0, 0.8))["best"]["prior_strength"] == 64.0
    weak = {cell.discount: cell.nats_per_draft for cell in cells if cell.prior_strength == 1.0}
    assert weak[1.0] > weak[0.8]


def test_first_reaction_waits_for_a_decision_point(estimator):
    wanted = [3, 5, 8]
    assert estimator.first_reaction(wanted, 1) == 3
    assert estimator.first_reaction(wanted, 2) == 8
    assert estimator.first_reaction(wanted, 3) == 3
    assert estimator.first_reaction(wanted, 4) == 8
    assert estimator.first_reaction(wanted, 16) is None
    with pytest.raises(ValueError, match="interval must be >= 1"):
        estimator.first_reaction(wanted, 0)


def test_recommend_interval_keeps_overhead_under_the_limit(estimator):
    decide_ms = {"greedy": 0.5, "temperature1": 0.9}
    target_ms = {"greedy": 100.0, "temperature1": 30.0}
    # 0.9 / 30 = 3% at 1, 1.5% at 2, 1% at 3.
    assert estimator.recommend_interval(decide_ms, target_ms, 0.01, [1, 2, 3, 4]) == 3
    assert estimator.recommend_interval(decide_ms, target_ms, 0.05, [1, 2, 3, 4]) == 1


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize(
    ("chain", "draft_lengths"), [((0, 3), (3,)), ((0, 2, 3), (2, 3)), ((0, 1, 2, 3), (1, 2, 3))]
)
def test_recorder_agrees_with_the_engine(estimator, temperature, chain, draft_lengths):
    models = markov_models(16, noise_scales=[1.5, 1.0, 0.5], sharpness=1.5, seed=7)
    costs = tuple((0.1 * (model + 1),) * 8 for model in range(4))
    acceptance = tuple(tuple(0.6 if i < j else 1.0 for j in range(4)) for i in range(4))
    profile = hierspec.Profile(("M0", "M1", "M2", "M3"), costs, acceptance)
    recorder = estimator.TraceRecorder(profile, chain, draft_lengths)
    decoder = HierarchicalDecoder.adaptive(models, profile, replanner=recorder)
    for seed in range(3):
        output = decoder.generate(
            torch.tensor([[1, 4, 2]]),
            max_new_tokens=30,
            temperature=temperature,
            seed=seed,
            eos_token_id=None,
        )
        stats = output.stats
        assert recorder.decisions_checked == stats.target_passes - 1  # decide checked each
        assert recorder.token >= stats.new_tokens  # the last cycle's overshoot is cut
        assert recorder.target_pass == stats.target_passes
        by_model = {level.level: level for level in stats.levels}
        for drafter, verifier in zip(chain, chain[1:]):
            items = [v for v in recorder.verifications if v.drafter == drafter]
            assert all(v.verifier == verifier for v in items)
            assert sum(v.batch_length for v in items) == by_model[drafter].drafted
            assert sum(v.accepted for v in items) == by_model[drafter].accepted
            assert len(items) == by_model[verifier].verifications


def test_request_rates_pool_the_window_and_keep_the_prior_elsewhere(estimator):
    prior = [[1.0, 0.5, 0.3], [0.0, 1.0, 0.7], [0.0, 0.0, 1.0]]
    first = estimator.Trace(
        "greedy", 0, "test", (0, 2), (4,), 3, 10,
        (
            estimator.Verification(0, 2, 4, 4, 4, 0, 0),
            estimator.Verification(0, 2, 2, 1, 4, 5, 1),
            estimator.Verification(0, 2, 1, 0, 4, 7, 2),
        ),
    )  # fmt: skip
    second = estimator.Trace(
        "greedy", 0, "test", (0, 2), (4,), 3, 10,
        (estimator.Verification(0, 2, 3, 2, 4, 6, 0),),
    )  # fmt: skip
    rates = estimator.request_rates([first, second], prior, start=5, end=7)
    assert rates[0][2] == pytest.approx((1 + 2) / (2 + 3))  # tokens 5 and 6 only
    assert rates[0][1] == 0.5 and rates[1][2] == 0.7  # not verified: the prior
    assert estimator.request_rates([first], prior, 0, math.inf)[0][2] == pytest.approx(5 / 7)
