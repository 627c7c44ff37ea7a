"""What would a middle level have to be for a hierarchy to pay on this family? (issue 12)

The planner on a measured profile with one hypothetical model ``X`` inserted between the
family's cheapest drafter (``ngram``) and the target: ``X``'s pass costs ``f`` times the
target's at every length (``c_X(n) = f c_target(n)``: a smaller model of the same shape) and
the target (and every candidate above ``X``) accepts its drafts at rate ``q``; the n-gram
level's drafts are accepted by ``X`` at the rate the target accepts them (``X`` imitates the
target); every other pair as measured. The other candidates stay in, so the planner can always
fall back to a single draft.

For each ``(f, q)`` on a grid: the plan's latency against the best single-draft configuration
(the planner's ``speedup_vs_single_draft``; > 1: a hierarchy wins) and the chain it picks. The
family's own drafts are placed on the same axes (their measured cost ratio at one token and
their acceptance by the target), so the table says how far each is from paying and what the
smallest change would be (more agreement at the same cost, or a cheaper head at the same
agreement: ``hierspec.VocabSubsetLevel``).

    python bench/middle_level.py PROFILE [PROFILE ...]

Prints one table per profile and writes bench/results/middle-level.json. Planner only (no
models, a few seconds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import hierspec
from hierspec.planning import load_profile

RESULTS = Path(__file__).parent / "results"
COST_FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
AGREEMENTS = (0.3, 0.45, 0.6, 0.75, 0.9, 0.98)


def with_middle(profile, fraction: float, agreement: float):
    """``(costs, acceptance, names)``: the profile's candidates with ``X`` inserted after the
    cheapest one (module docstring)."""
    costs = [list(row) for row in profile.costs_ms]
    acceptance = [list(row) for row in profile.acceptance]
    names = list(profile.model_names)
    target = len(names) - 1
    middle_costs = [fraction * cost for cost in costs[target]]
    size = len(names) + 1
    table = [[1.0 if i == j else 0.0 for j in range(size)] for i in range(size)]
    old = [0, *range(2, size)]  # new index of each old candidate (X is 1)
    for i, new_i in enumerate(old):
        for j, new_j in enumerate(old):
            if new_i < new_j:
                table[new_i][new_j] = acceptance[i][j]
    table[0][1] = acceptance[0][target]  # the cheapest drafter's drafts, accepted as by the target
    for new_j in range(2, size):
        table[1][new_j] = agreement  # X imitates the target; every verifier above takes it so
    return [costs[0], middle_costs, *costs[1:]], table, [names[0], "X", *names[1:]]


def family_points(profile) -> list[dict]:
    """The family's own candidates on the (f, q) axes: cost at one token relative to the
    target's, acceptance by the target."""
    target = len(profile.model_names) - 1
    one_token = profile.costs_ms[target][0]
    return [
        {
            "name": name,
            "cost_fraction": profile.costs_ms[index][0] / one_token,
            "acceptance_by_target": profile.acceptance[index][target],
        }
        for index, name in enumerate(profile.model_names[:-1])
    ]


def sweep(profile, max_draft_length: int) -> dict:
    base = hierspec.plan(
        profile.costs_ms,
        profile.acceptance,
        max_draft_length=max_draft_length,
        model_names=profile.model_names,
    )
    grid = []
    for fraction in COST_FRACTIONS:
        for agreement in AGREEMENTS:
            costs, acceptance, names = with_middle(profile, fraction, agreement)
            result = hierspec.plan(
                costs, acceptance, max_draft_length=max_draft_length, model_names=names
            )
            grid.append(
                {
                    "cost_fraction": fraction,
                    "agreement": agreement,
                    "chain": [names[index] for index in result.best.chain],
                    "draft_lengths": list(result.best.draft_lengths),
                    "latency_ms": result.best.latency,
                    "vs_best_single_draft": result.speedup_vs_single_draft,
                    "vs_family_plan": base.latency / result.best.latency,
                }
            )
    return {
        "family_plan": {
            "chain": [profile.model_names[index] for index in base.best.chain],
            "draft_lengths": list(base.best.draft_lengths),
            "latency_ms": base.latency,
        },
        "family_points": family_points(profile),
        "grid": grid,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--max-draft-length", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS / "middle-level.json")
    args = parser.parse_args()
    report = {
        "benchmark": "middle_level",
        "command": "python bench/middle_level.py " + " ".join(str(p) for p in args.profiles),
        "max_draft_length": args.max_draft_length,
        "definitions": {
            "cost_fraction": "f: X's pass over n tokens costs f times the target's",
            "agreement": "q: the target accepts X's drafts at this rate",
            "vs_best_single_draft": "best single-draft latency / the plan's latency (> 1: a "
            "hierarchy wins)",
            "vs_family_plan": "the family's own plan's latency / the plan's latency with X",
        },
        "profiles": [],
    }
    for path in args.profiles:
        profile = load_profile(path)
        result = sweep(profile, args.max_draft_length)
        sampling = profile.extra.get("sampling", {})
        report["profiles"].append({"profile": path.name, "sampling": sampling, **result})
        plan = result["family_plan"]
        print(
            f"\n{path.name}  sampling={sampling}; family plan "
            f"{' -> '.join(plan['chain'])} T={plan['draft_lengths']} {plan['latency_ms']:.1f} ms"
        )
        for point in result["family_points"]:
            print(
                f"  {point['name']:12s} f = {point['cost_fraction']:.2f}, "
                f"q = {point['acceptance_by_target']:.2f}"
            )
        for key, title in (
            ("vs_best_single_draft", "the plan with X vs the best single draft (X -> target too)"),
            ("vs_family_plan", "the plan with X vs the family's plan"),
        ):
            print(title + ":")
            print("f \\ q   " + "".join(f"{q:>9.2f}" for q in AGREEMENTS))
            for fraction in COST_FRACTIONS:
                cells = []
                for entry in result["grid"]:
                    if entry["cost_fraction"] != fraction:
                        continue
                    mark = "*" if "X" in entry["chain"] and len(entry["chain"]) >= 3 else " "
                    cells.append(f"{entry[key]:>8.2f}{mark}")
                print(f"{fraction:<8.2f}" + "".join(cells))
        print("(*: the plan is a chain of 3+ models through X)")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
