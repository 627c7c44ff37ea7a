"""bench/cost_fit.py: simulated profiles from reference timings, planned and scored."""

from __future__ import annotations

import random
import statistics

import pytest

from hierspec.profiler import ProfilerConfig, nondecreasing_fit

NAMES = ("ngram", "target")
ACCEPTANCE = ((1.0, 0.5), (0.0, 1.0))


def reference(noise: float, rng: random.Random, width: int = 9, count: int = 20):
    """Target timings around a flat 100 ms (+ 1 ms per token), each timing +- ``noise`` ms."""
    return {
        1: [
            [100.0 + n + rng.uniform(-noise, noise) for _ in range(count)]
            for n in range(1, width + 1)
        ]
    }


def test_trial_tables_draw_the_profilers_timings_and_keep_the_rest_as_reference(bench_import):
    cost_fit = bench_import("cost_fit")
    config = ProfilerConfig(repeats=3, large_pass_repeats=2)
    # 4 distinct timings per n: a trial draws 3 (n <= 8) or 2 (n = 9), the reference is the rest.
    timings = reference(5.0, random.Random(1), count=4)
    fixed = [[0.1 * n for n in range(1, 10)], [0.0] * 9]
    tables, table_reference = cost_fit.trial_tables(timings, fixed, config, random.Random(2))
    # The model without timings keeps its fixed row everywhere.
    assert tables["none"][0] == tables["nondecreasing"][0] == table_reference[0] == fixed[0]
    medians = tables["none"][1]
    assert tables["nondecreasing"][1] == pytest.approx(
        nondecreasing_fit(medians, [3] * 8 + [2]).tolist()
    )
    for n, (median, rest) in enumerate(zip(medians, table_reference[1]), start=1):
        samples = timings[1][n - 1]
        if n <= 8:  # the reference is the one timing not drawn, the trial the median of the 3
            assert rest in samples
            assert median == statistics.median([s for s in samples if s != rest])
        else:  # two and two: the means of complementary pairs
            assert 2 * median + 2 * rest == pytest.approx(sum(samples))
            assert median != pytest.approx(rest)


def scored(cost_fit, noise: float, trials: int):
    """``score_mode`` over the reference of :func:`reference` at ``noise`` ms."""
    config = ProfilerConfig(repeats=3, large_pass_repeats=2, max_draft_length=8)
    timings = reference(noise, random.Random(3))
    fixed = [[0.1 * n for n in range(1, 10)], [0.0] * 9]
    return cost_fit.score_mode(timings, fixed, ACCEPTANCE, NAMES, trials, config, seed=0)


def test_without_noise_both_tables_plan_the_reference_optimum(bench_import):
    result = scored(bench_import("cost_fit"), noise=0.0, trials=5)
    for fit in ("none", "nondecreasing"):
        assert result[fit]["regret_mean"] == pytest.approx(0.0, abs=1e-12)
        assert result[fit]["share_at_reference_optimum"] == 1.0
        assert result[fit]["prediction_error_mean_abs"] == pytest.approx(0.0, abs=1e-12)


def test_noisy_flat_timings_mislead_the_medians_more_than_the_fit(bench_import):
    """Timings flat within noise much larger than their slope: the medians' plan picks chance
    dips and predicts better than it runs; the fit predicts closer and plans no worse."""
    result = scored(bench_import("cost_fit"), noise=15.0, trials=60)
    medians, fit = result["none"], result["nondecreasing"]
    assert sum(medians["plans"].values()) == sum(fit["plans"].values()) == 60
    assert medians["prediction_error_mean"] < 0.0
    assert fit["prediction_error_mean_abs"] < medians["prediction_error_mean_abs"]
    assert fit["regret_mean"] <= medians["regret_mean"]
