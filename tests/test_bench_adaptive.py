"""bench/adaptive.py: its command line (the variants of the adaptive decoder)."""

from __future__ import annotations

import argparse

import pytest

from hierspec.adaptive import AdaptiveConfig


@pytest.fixture(scope="module")
def adaptive(bench_import):
    return bench_import("adaptive")


def test_config_variants_are_adaptive_config_keywords(adaptive):
    args = adaptive.parse_arguments(
        ["--config-variants", "min_relative_gain=0.03", "calibrate=False,change_rate=0"]
    )
    assert args.config_variants == [
        {"min_relative_gain": 0.03},
        {"calibrate": False, "change_rate": 0},
    ]
    for settings in args.config_variants:
        AdaptiveConfig(**settings)  # what configurations() builds


@pytest.mark.parametrize(
    "text, message",
    [
        ("threshold=0.5", "'threshold=0.5' is not KEY=VALUE with KEY one of"),
        ("calibrate", "'calibrate' is not KEY=VALUE"),
        ("calibrate=yes please", "'calibrate=yes please': 'yes please' is not a literal"),
        ("calibrate=1", "calibrate must be a bool, got 1"),
        ("min_relative_gain=-1", "min_relative_gain must be >= 0, got -1"),
    ],
)
def test_bad_config_variants_name_the_setting(adaptive, text, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        adaptive.parse_arguments(["--config-variants", text])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_e2e_predicts_each_run_at_its_measured_acceptance(bench_import):
    """bench/e2e.py: the model's prediction with each run's measured acceptance plugged in,
    token-weighted over the runs."""
    import hierspec

    e2e = bench_import("e2e")
    costs = [[1.0 + 0.2 * n for n in range(8)], [2.0] * 8, [10.0 + 0.5 * n for n in range(8)]]
    acceptance = [[1.0, 0.5, 0.4], [0.0, 1.0, 0.8], [0.0, 0.0, 1.0]]
    profile = hierspec.Profile(("a", "b", "target"), costs, acceptance)

    def run(tokens, rates):
        return e2e.Run(0, 1.0, 1.0, 0.5, tokens, None, None, rates)

    done = [run(30, (0.9, 0.7)), run(10, (float("nan"), 0.6))]
    latency, passes = e2e.predicted_at_measured_acceptance(profile, (0, 1, 2), (2, 3), done)
    first = hierspec.evaluate(costs, [[1, 0.9, 0.4], [0, 1, 0.7], [0, 0, 1]], [0, 1, 2], [2, 3])
    # A pair without a measured rate keeps the profile's.
    second = hierspec.evaluate(costs, [[1, 0.5, 0.4], [0, 1, 0.6], [0, 0, 1]], [0, 1, 2], [2, 3])
    assert latency == pytest.approx((30 * first.latency + 10 * second.latency) / 40)
    for level in range(3):
        expected = (30 * first.passes_per_token[level] + 10 * second.passes_per_token[level]) / 40
        assert passes[level] == pytest.approx(expected)


def test_seeds_must_be_positive(adaptive, capsys):
    with pytest.raises(SystemExit) as exit_info:
        adaptive.parse_arguments(["--seeds", "0"])
    assert exit_info.value.code == 2
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err


def test_prompt_lookup_grid_values_are_positive(adaptive, bench_import, capsys):
    assert adaptive.parse_arguments(["--prompt-lookup-grid", "2", "4"]).prompt_lookup_grid == [2, 4]
    with pytest.raises(SystemExit) as exit_info:
        adaptive.parse_arguments(["--prompt-lookup-grid", "4", "0"])
    assert exit_info.value.code == 2
    assert "--prompt-lookup-grid values must be >= 1, got 0" in capsys.readouterr().err
    # Optional (bench/e2e.py, bench/prefill.py): none given skips the peer.
    harness = bench_import("harness")
    parser = argparse.ArgumentParser()
    harness.add_prompt_lookup_grid(parser, [2, 10], optional=True)
    assert parser.parse_args([]).prompt_lookup_grid == [2, 10]
    assert parser.parse_args(["--prompt-lookup-grid"]).prompt_lookup_grid == []


def test_summary_pairs_runs_by_seed_and_reports_standard_errors(adaptive):
    """Several seeds per prompt: each (prompt, seed) run is one paired ratio; the summary's
    standard errors are those of the mean ratios."""
    import math
    import statistics

    import hierspec
    from hierspec.sampling import SamplingConfig

    costs = [[1.0] * 8, [3.0] * 8, [10.0] * 8]
    acceptance = [[1.0, 0.5, 0.4], [0.0, 1.0, 0.8], [0.0, 0.0, 1.0]]
    profile = hierspec.Profile(("a", "b", "target"), costs, acceptance)
    plan = hierspec.plan(costs, acceptance, 4, model_names=profile.model_names)
    configs = [
        adaptive.Configuration("target alone", "target", (2,), (), 10.0),
        adaptive.Configuration("static", "static", (0, 2), (2,), 5.0),
        adaptive.Configuration("adaptive", "adaptive", (0, 2), (2,)),
    ]
    prompts = [
        {"category": "summarize", "message": "m0"},
        {"category": adaptive.UNGROUNDED, "message": "m1"},
        {"category": adaptive.UNGROUNDED, "message": "m2"},
    ]
    static_ms = {(0, 0): 50, (0, 1): 60, (1, 0): 40, (1, 1): 80, (2, 0): 70, (2, 1): 55}
    adaptive_ms = {(0, 0): 40, (0, 1): 75, (1, 0): 50, (1, 1): 64, (2, 0): 70, (2, 1): 50}

    def run(ms):
        seconds = ms * 1e-3 * 100
        return adaptive.Run(seconds, seconds, 100, None, None, 5.0, 5.0)

    records = [
        {
            "prompt": prompt,
            "seed": 1000 + prompt + 100_000 * seed,
            "category": prompts[prompt]["category"],
            "runs": {
                "target alone": run(100),
                "static": run(static_ms[prompt, seed]),
                "adaptive": run(adaptive_ms[prompt, seed]),
            },
        }
        for prompt in range(3)
        for seed in range(2)
    ]
    mode = adaptive.summarize_mode(
        "temperature 1",
        SamplingConfig(temperature=1.0),
        profile,
        "profile.json",
        plan,
        configs,
        prompts,
        records,
    )

    def ratios(keys):
        return [static_ms[key] / adaptive_ms[key] for key in keys]

    ungrounded = ratios([(1, 0), (1, 1), (2, 0), (2, 1)])
    every = ratios(sorted(static_ms))
    summary = mode["summary"]
    assert summary["runs_per_prompt"] == 2
    assert summary["vs_static_ungrounded"] == pytest.approx(statistics.fmean(ungrounded))
    errors = summary["standard_errors"]
    assert errors["vs_static_ungrounded"] == pytest.approx(statistics.stdev(ungrounded) / 2)
    assert errors["vs_static"] == pytest.approx(statistics.stdev(every) / math.sqrt(6))
    by_category = {row["category"]: row for row in mode["categories"]}
    worst = min(
        ("summarize", adaptive.UNGROUNDED), key=lambda c: by_category[c]["adaptive_vs_static"]
    )
    assert worst == "summarize"  # (50/40 + 60/75) / 2 against ungrounded's 1.0375
    assert errors["vs_static_worst_category_name"] == worst
    assert errors["vs_static_worst_category"] == pytest.approx(
        by_category[worst]["adaptive_vs_static_se"]
    )
    assert by_category["summarize"]["prompts"] == 1
    assert by_category["summarize"]["runs"] == 2


def test_cross_seed_hindsight_is_chosen_on_the_other_seeds(adaptive):
    """With two seeds per prompt, the hindsight best of each run is the static configuration
    with the least decode time on the prompt's other run, timed on this one; with one run per
    prompt there is none."""
    import statistics

    import hierspec
    from hierspec.sampling import SamplingConfig

    costs = [[1.0] * 8, [10.0] * 8]
    acceptance = [[1.0, 0.5], [0.0, 1.0]]
    profile = hierspec.Profile(("a", "target"), costs, acceptance)
    plan = hierspec.plan(costs, acceptance, 4, model_names=profile.model_names)
    configs = [
        adaptive.Configuration("target alone", "target", (1,), (), 10.0),
        adaptive.Configuration("static", "static", (0, 1), (2,), 5.0),
        adaptive.Configuration("adaptive", "adaptive", (0, 1), (2,)),
    ]
    prompts = [{"category": "summarize", "message": "m0"}]
    # seed 0: static faster; seed 1: the target alone faster (each the other's choice).
    times = [
        {"target alone": 60, "static": 40, "adaptive": 50},
        {"target alone": 45, "static": 70, "adaptive": 50},
    ]

    def run(ms):
        seconds = ms * 1e-3 * 100
        return adaptive.Run(seconds, seconds, 100, None, None, 5.0, 5.0)

    def summary(seeds):
        records = [
            {
                "prompt": 0,
                "seed": 1000 + 100_000 * seed,
                "category": "summarize",
                "runs": {name: run(ms) for name, ms in times[seed].items()},
            }
            for seed in seeds
        ]
        return adaptive.summarize_mode(
            "temperature 1",
            SamplingConfig(temperature=1.0),
            profile,
            "p.json",
            plan,
            configs,
            prompts,
            records,
        )["summary"]

    both = summary([0, 1])
    assert both["vs_hindsight_best"] == pytest.approx(statistics.fmean([40 / 50, 45 / 50]))
    # seed 0 takes seed 1's choice (target alone, 60 ms here), seed 1 seed 0's (static, 70).
    cross = [60 / 50, 70 / 50]
    assert both["vs_hindsight_best_cross_seed"] == pytest.approx(statistics.fmean(cross))
    assert both["standard_errors"]["vs_hindsight_best_cross_seed"] == pytest.approx(
        statistics.stdev(cross) / 2**0.5
    )
    one = summary([0])
    assert one["vs_hindsight_best_cross_seed"] is None
    assert one["standard_errors"]["vs_hindsight_best_cross_seed"] is None
