"""Tokens per target pass of every 3-model chain: deferred verification (before, no bonus token
at the target for K >= 2) against standard verification with a bonus token (now, policy.md
rule 4), on measured profiles.

"Now" is ``hierspec.evaluate``. "Before" is the old rule's formula, computed here from the same
end-point law of level K-1 (the hand-up L does not depend on the target's rule): the target's
pass processed L tokens and committed ``E[sum_{k<L} a^k]`` (now: L + 1 tokens,
``E[sum_{k<=L} a^k]``); its cost was ``E[c_K(L)] + Cost_{K-1}`` (now plus ``pi D``, the bonus
state). For each chain both policies get their own best draft lengths (``T_0, T_1 <=
--max-draft-length``, exhaustive), and tokens per pass are also compared at the same (new
best) draft lengths.

    python bench/bonus_state.py [PROFILE ...]

Default profiles: the measured greedy and temperature-1 profiles in ~/.cache/hierspec/profiles.
Prints a table and writes bench/results/bonus-state.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import hierspec
from hierspec.planning import load_profile

RESULTS = Path(__file__).parent / "results"
DEFAULT_PROFILES = [
    Path.home() / ".cache/hierspec/profiles/profile-f02a1aa840f53905.json",  # greedy
    Path.home() / ".cache/hierspec/profiles/profile-94164c7af5dac183.json",  # temperature 1
]


def deferred(costs, acceptance, chain, draft_lengths):
    """(latency, tokens per target pass) of a 3-model chain under the old rule 4 (deferred)."""
    bottom, middle, target = chain
    size0, size1 = draft_lengths
    rate, target_rate = acceptance[bottom][middle], acceptance[middle][target]
    law = {o: rate ** (o - 1) * (1 - rate) for o in range(1, size0 + 1)}
    law[size0 + 1] = rate**size0
    renewal = [1.0]  # f(s), s < T_1
    for held in range(1, size1):
        renewal.append(sum(renewal[held - o] * q for o, q in law.items() if o <= held))
    hand_up = {}
    for held in range(size1):
        for o, q in law.items():
            if held + o >= size1:
                hand_up[held + o] = hand_up.get(held + o, 0.0) + renewal[held] * q
    calls = sum(renewal)  # E[N_1]
    middle_cost = calls * (costs[middle][size0] + costs[bottom][1] + (size0 - 1) * costs[bottom][0])
    committed = sum(p * sum(target_rate**k for k in range(length)) for length, p in hand_up.items())
    target_cost = sum(p * costs[target][length - 1] for length, p in hand_up.items())
    return (target_cost + middle_cost) / committed, committed


def chains_of(profile, max_draft_length):
    costs = [list(row) for row in profile.costs_ms]
    acceptance = [list(row) for row in profile.acceptance]
    target = len(costs) - 1
    rows = []
    for bottom, middle in itertools.combinations(range(target), 2):
        chain = [bottom, middle, target]
        lengths = list(itertools.product(range(1, max_draft_length + 1), repeat=2))
        now = {t: hierspec.evaluate(costs, acceptance, chain, list(t)) for t in lengths}
        before = {t: deferred(costs, acceptance, chain, t) for t in lengths}
        best_now = min(lengths, key=lambda t: now[t].latency)
        best_before = min(lengths, key=lambda t: before[t][0])
        rows.append(
            {
                "chain": [profile.model_names[m] for m in chain],
                "best_draft_lengths_before": list(best_before),
                "tokens_per_target_pass_before": before[best_before][1],
                "latency_ms_before": before[best_before][0],
                "best_draft_lengths_now": list(best_now),
                "tokens_per_target_pass_now": now[best_now].tokens_per_target_pass,
                "latency_ms_now": now[best_now].latency,
                "bonus_state_probability_now": now[best_now].bonus_state_probability,
                "tokens_per_target_pass_before_at_new_best": before[best_now][1],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", type=Path, default=DEFAULT_PROFILES)
    parser.add_argument("--max-draft-length", type=int, default=15)
    args = parser.parse_args()
    report = {"benchmark": "bonus_state", "max_draft_length": args.max_draft_length, "profiles": []}
    for path in args.profiles:
        profile = load_profile(path)
        rows = chains_of(profile, args.max_draft_length)
        sampling = profile.extra.get("sampling", {})
        report["profiles"].append({"profile": path.name, "sampling": sampling, "chains": rows})
        print(f"\n{path.name}  sampling={sampling}")
        print(
            f"{'chain':40s} {'T before':>9s} {'tok/pass':>8s} {'ms/tok':>7s}   "
            f"{'T now':>7s} {'tok/pass':>8s} {'ms/tok':>7s} {'pi':>5s}  "
            f"{'tok/pass before @T now':>22s}"
        )
        for row in rows:
            print(
                f"{' -> '.join(row['chain']):40s} "
                f"{str(tuple(row['best_draft_lengths_before'])):>9s} "
                f"{row['tokens_per_target_pass_before']:8.3f} {row['latency_ms_before']:7.2f}   "
                f"{str(tuple(row['best_draft_lengths_now'])):>7s} "
                f"{row['tokens_per_target_pass_now']:8.3f} {row['latency_ms_now']:7.2f} "
                f"{row['bonus_state_probability_now']:5.3f}  "
                f"{row['tokens_per_target_pass_before_at_new_best']:22.3f}"
            )
        plan = hierspec.plan(profile.costs_ms, profile.acceptance, args.max_draft_length)
        print(
            f"plan (now): {plan.best.chain} T={plan.best.draft_lengths} {plan.best.latency:.2f} ms"
        )
        report["profiles"][-1]["plan_now"] = {
            "chain": list(plan.best.chain),
            "draft_lengths": list(plan.best.draft_lengths),
            "latency_ms": plan.best.latency,
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bonus-state.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {RESULTS / 'bonus-state.json'}")


if __name__ == "__main__":
    main()
