"""bench/adaptive.py: its command line (the variants of the adaptive decoder)."""

from __future__ import annotations

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
