"""The adaptive decoder's own work per target cycle, on the family's profile, without models.

Besides the models' passes, ``HierarchicalDecoder.adaptive`` asks its ``Replanner`` after each
target cycle to learn from it and, every ``interval`` cycles, to decide the next
configuration. This script replays synthetic requests through a real ``Replanner`` (the default
``AdaptiveConfig``) on the cached profile of ``hierspec generate`` and times each part:

    observe   per verification of the cycle: ``Replanner.observe`` (the pair's acceptance and,
              with early stopping, each threshold's continue rate and bottom acceptance: one
              posterior update each), and the shadow's score of each committed token
    passes    ``observe_pass`` per forward pass and ``observe_cycle`` (costs, calibration)
    decide    ``Replanner.decide``, asked when the engine asks it (``Replanner.interval``)

A request runs ``--cycles`` target cycles from the profile's static plan, following the
decisions (so that they back off as in the engine once the configuration settles): each pair's
outcome i.i.d. at the profile's acceptance (accepted drafts before the first rejection, at most
the batch), the bottom level's confidences uniform in [0, 1) and its batch stopped at the
threshold in use, the shadow's score of each committed token (when the chain has a shadow) at
its pair's profile acceptance, each pass timed at its profile cost and the cycle at their sum.
Reported: microseconds per cycle of each part (mean over the cycles of ``--requests`` requests,
``reset`` between), the decision's median in ms, and the sum per cycle as a fraction of the
target's 1-token pass (the cheapest a cycle can be).

    OMP_NUM_THREADS=1 python bench/replanner_cost.py                # ~1 min
    OMP_NUM_THREADS=1 python bench/replanner_cost.py --mode temperature1

Writes bench/results/replanner-cost-<mode>-cpu.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path
from typing import Any

from harness import RESULTS, SAMPLING_MODES, Report, cached_family_profile, format_table

from hierspec.adaptive import AdaptiveConfig, BottomBatch, Replanner


def run_request(replanner: Replanner, cycles: int, rng: random.Random) -> dict[str, list[float]]:
    """One synthetic request (module docstring): per cycle the seconds of each part."""
    profile = replanner.profile
    replanner.reset()
    chain, draft_lengths, _ = replanner.initial()
    threshold = replanner.min_draft_confidence
    costs = [row if isinstance(row, (tuple, list)) else (row,) for row in profile.costs_ms]
    target = len(profile.model_names) - 1
    times: dict[str, list[float]] = {"observe": [], "passes": [], "decide": []}
    passes_since_decision = 0
    committed = 0
    timer = time.perf_counter
    for cycle in range(cycles):
        # The outcome of each pair, bottom up; batch = the drafter's draft length (the bottom
        # one cut at the threshold).
        bottom, batch = None, 0
        if len(chain) > 1:
            confidences = tuple(rng.random() for _ in range(draft_lengths[0]))
            drafted = BottomBatch(confidences, draft_lengths[0], threshold)
            batch = drafted.at(threshold)
            if replanner.early_stopping:
                bottom = drafted
        outcomes = []
        for level in range(1, len(chain)):
            length = batch if level == 1 else draft_lengths[level - 1]
            rate = profile.acceptance[chain[level - 1]][chain[level]]
            accepted = 0
            while accepted < length and rng.random() < rate:
                accepted += 1
            tested = accepted + (1 if accepted < length else 0)
            outcomes.append((chain[level - 1], chain[level], tested, accepted))
        tokens = 1 + (outcomes[-1][3] if outcomes else 0)
        shadow = replanner.shadow_for(chain)
        scores = []
        if shadow is not None:
            rate = profile.acceptance[shadow][target]
            scores = [(rng.random() < rate, rng.random()) for _ in range(tokens)]
        started = timer()
        for index, (drafter, verifier, tested, accepted) in enumerate(outcomes):
            replanner.observe(drafter, verifier, tested, accepted, bottom if index == 0 else None)
        for accepted, confidence in scores:
            replanner.observe_shadow(shadow, accepted, confidence)
        observed = timer()
        # One pass per bottom draft, one per level above it; each at its profile cost.
        passes = [(chain[0], 1)] * max(batch, 1) + [(model, 2) for model in chain[1:]]
        cycle_s = 0.0
        for model, width in passes:
            row = costs[model]
            seconds = 1e-3 * float(row[min(width, len(row)) - 1])
            replanner.observe_pass(model, width, seconds)
            cycle_s += seconds
        replanner.observe_cycle(tokens, cycle_s)
        learned = timer()
        committed += tokens
        passes_since_decision += 1
        if passes_since_decision >= replanner.interval:
            gaps = [0 if m in chain else committed for m in range(target + 1)]
            before = timer()
            decision = replanner.decide(
                chain, draft_lengths, gaps, 10_000, committed, cycle + 1, threshold
            )
            times["decide"].append(timer() - before)
            chain, draft_lengths = decision.chain, decision.draft_lengths
            threshold = decision.min_draft_confidence
            passes_since_decision = 0
        times["observe"].append(observed - started)
        times["passes"].append(learned - observed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(SAMPLING_MODES), default="greedy")
    parser.add_argument("--cycles", type=int, default=400, help="target cycles per request (400)")
    parser.add_argument("--requests", type=int, default=5, help="requests (5)")
    parser.add_argument("--profile-prompts", type=int, default=16, help="as hierspec generate")
    parser.add_argument("--max-draft-length", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.cycles < 1 or args.requests < 1:
        parser.error(f"--cycles and --requests must be >= 1, got {args.cycles} and {args.requests}")
    import torch

    from hierspec.family import load_family

    torch.set_num_threads(1)
    report = Report("replanner_cost")
    started = time.perf_counter()
    family = load_family(None, prepare=False, progress=False)
    sampling = SAMPLING_MODES[args.mode]
    profile, path = cached_family_profile(
        family, sampling, args.max_draft_length, args.profile_prompts
    )
    replanner = Replanner(profile, AdaptiveConfig())
    rng = random.Random(0)
    per_cycle: dict[str, list[float]] = {"observe": [], "passes": []}
    decisions: list[float] = []
    cycles = 0
    for _ in range(args.requests):
        times = run_request(replanner, args.cycles, rng)
        per_cycle["observe"] += times["observe"]
        per_cycle["passes"] += times["passes"]
        decisions += times["decide"]
        cycles += args.cycles
    chain, draft_lengths, _ = replanner.initial()
    target_ms = float(profile.costs_ms[-1][0])
    observe_us = 1e6 * statistics.fmean(per_cycle["observe"])
    passes_us = 1e6 * statistics.fmean(per_cycle["passes"])
    decide_us_per_cycle = 1e6 * sum(decisions) / cycles
    total_us = observe_us + passes_us + decide_us_per_cycle
    results: dict[str, Any] = {
        "mode": args.mode,
        "profile_path": str(path),
        "chain": [profile.model_names[m] for m in chain],
        "draft_lengths": list(draft_lengths),
        "thresholds": list(replanner.thresholds),
        "cycles": cycles,
        "decisions": len(decisions),
        "observe_us_per_cycle": observe_us,
        "passes_us_per_cycle": passes_us,
        "decide_ms_median": 1e3 * statistics.median(decisions) if decisions else None,
        "decide_us_per_cycle": decide_us_per_cycle,
        "total_us_per_cycle": total_us,
        "target_1_token_pass_ms": target_ms,
        "fraction_of_target_pass": 1e-3 * total_us / target_ms,
        "duration_s": time.perf_counter() - started,
    }
    print(
        format_table(
            ("part", "us per cycle"),
            [
                ("observe (verifications)", f"{observe_us:.1f}"),
                ("observe_pass + observe_cycle", f"{passes_us:.1f}"),
                (
                    f"decide ({len(decisions)} calls, median "
                    f"{1e3 * statistics.median(decisions) if decisions else 0.0:.3f} ms)",
                    f"{decide_us_per_cycle:.1f}",
                ),
                ("all", f"{total_us:.1f}"),
            ],
        )
    )
    print(
        f"{' -> '.join(results['chain'])} T={list(draft_lengths)}, thresholds "
        f"{list(replanner.thresholds)}: {100 * results['fraction_of_target_pass']:.2f}% of the "
        f"target's 1-token pass ({target_ms:.1f} ms)"
    )
    out = args.out or RESULTS / f"replanner-cost-{args.mode}-cpu.json"
    report.write(out, results)


if __name__ == "__main__":
    main()
