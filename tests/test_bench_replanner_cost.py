"""bench/replanner_cost.py: a synthetic request through a real Replanner."""

from __future__ import annotations

import random

import hierspec
from hierspec.adaptive import AdaptiveConfig, Replanner


def test_a_synthetic_request_times_every_cycle_and_follows_the_decisions(bench_import):
    replanner_cost = bench_import("replanner_cost")
    costs = (
        tuple(0.3 for _ in range(16)),
        tuple(20.0 + 0.5 * n for n in range(16)),
        tuple(100.0 + 2.0 * n for n in range(16)),
    )
    acceptance = ((1.0, 0.6, 0.5), (0.0, 1.0, 0.9), (0.0, 0.0, 1.0))
    profile = hierspec.Profile(("ngram", "draft", "target"), costs, acceptance)
    replanner = Replanner(profile, AdaptiveConfig(replan_interval=2, max_replan_interval=2))
    times = replanner_cost.run_request(replanner, 40, random.Random(0))
    assert len(times["observe"]) == len(times["passes"]) == 40
    assert len(times["decide"]) == 20  # every 2 target cycles
    assert all(seconds > 0.0 for part in times.values() for seconds in part)
