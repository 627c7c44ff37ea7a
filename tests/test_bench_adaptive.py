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
