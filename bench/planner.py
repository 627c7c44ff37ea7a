"""Planning time: the C++ planner (hierspec.plan) against a NumPy/Python port of the same DP.

Grid: number of candidates M in (2, 4, 8, 16, 32) x max draft length T in (8, 16, 32, 64, 128),
one thread, the same random instance for both implementations in the same run. Reports the
median (and min/max) CPU time of the calling thread over repeated runs (wall-clock medians are
stored too; CPU time is robust to other processes on a shared machine), checks that both return
the same optimal latency on every cell, prints a table and writes bench/results/planner.json.

"C++" is the public API `hierspec.plan` (argument conversion and result wrapping included);
"(core)" is the `_core.plan` call alone. With M = 2 the graph has no edges (single drafts only),
so that row measures call overhead and fixed per-call work, not the DP.

The Python version (`plan_python`) is the algorithm of cpp/src/planner.cpp's `plan` without
early stopping (the benchmark plans without it), bonus state included (docs/theory.md §4, §6):
the same nodes (model, T), each seeded with its model's level-0 line (Cost = c(2) + (T - 1) c(1),
Dsum = c(3) - c(2)); the same renewal f by the sliding geometric window (a Python loop: it is
sequential); every line of the node (p, G) below offered to the nodes (i, 1..T) as the line
Cost = E[N](T) (c_i(G + 1) + Cost_p), Dsum = c_i(G + 2) - c_i(G + 1) + Dsum_p; each node keeps
the lower envelope of its lines Cost + lambda Dsum on lambda in [0, 1]; the last step evaluates
every line of (p, G) with the three windows H (target pass cost, committed tokens, full
acceptance a^e) and the prefix-sum identity, latency = (E[c_K(e + 1)] + E[N] (c_j(G + 1) +
Cost_p) + pi (delta + Dsum_p)) / E[O_K] with pi = E[a^e]; plus the single drafts and the target
alone, the optimum chosen with `assemble`'s tie order. NumPy does every O(T) vector step (the
lines offered to T nodes at once, the windows H by np.correlate, the prefix sums, the minima).
Two implementation choices differ from the C++ (same result, each the natural NumPy form): a
model's candidate lines are collected for all its nodes and reduced once, after its last offer,
by the C++ rejection rule (beaten at lambda = 0 and 1 by the node's cheapest line at either end)
and the monotone-chain envelope of `lower_envelope`, vectorized over T, instead of the C++'s
incremental per-node `NodeCandidates`; the windows H are correlations (O(T G) in compiled code)
instead of the O(T) backward slide (which would be a Python loop). It supports full cost tables
only (2 T + 1 columns), which is what the benchmark uses. `check_small_cases` compares its
optimum with `hierspec.plan`, `hierspec.expected_latency` of its chain and brute force (where
small), on non-monotone random tables and on tables with strongly negative and large
bonus-state deltas (`spread_instance`, as in cpp/tests/test_planner.cpp), where keeping only
each node's cheapest sub-chain (the DP before the bonus state's envelopes) misses the optimum on
5 of the 120.

    python bench/planner.py [--quick]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402  (the one-line summary printed)
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from harness import RESULTS, Report  # noqa: E402

import hierspec  # noqa: E402
from hierspec import _core  # noqa: E402

NUM_CANDIDATES = (2, 4, 8, 16, 32)
MAX_DRAFT_LENGTHS = (8, 16, 32, 64, 128)
PYTHON_BUDGET_S = 60.0  # skip a Python cell predicted to take longer than this
SPREAD_INSTANCES_PER_CELL = 20


def _lower_envelopes(cost: np.ndarray, bonus_extra: np.ndarray) -> list[np.ndarray]:
    """Per node (column T of ``cost``) the lower envelope on lambda in [0, 1] of the candidate
    lines ``cost[r, T] + lambda * bonus_extra[r]`` (``inf``: row r is no candidate of node T):
    the kept rows, sorted by Dsum descending. ``lower_envelope`` of cpp/src/planner.cpp, run for
    all nodes of a model at once (NumPy over T, a Python loop over the distinct Dsum values).
    """
    num_rows, num_nodes = cost.shape
    rows = np.arange(num_rows)
    # NodeCandidates' O(1) rejection: a line beaten at lambda = 0 and at lambda = 1 by the
    # node's cheapest line at lambda = 0 or the one at lambda = 1 is beaten on all of [0, 1].
    cost = cost.copy()
    for best in (np.argmin(cost, axis=0), np.argmin(cost + bonus_extra[:, None], axis=0)):
        best_cost = cost[best, np.arange(num_nodes)]
        best_extra = bonus_extra[best]
        beaten = (best_cost[None, :] <= cost) & (
            (best_cost + best_extra)[None, :] <= cost + bonus_extra[:, None]
        )
        beaten &= rows[:, None] != best[None, :]
        cost[beaten] = np.inf
    keep = np.isfinite(cost).any(axis=1)
    rows, cost, bonus_extra = rows[keep], cost[keep], bonus_extra[keep]
    # Sorted by Dsum descending; among equal Dsum only the cheapest line per node counts.
    order = np.argsort(-bonus_extra, kind="stable")
    rows, cost, bonus_extra = rows[order], cost[order], bonus_extra[order]
    starts = np.flatnonzero(np.concatenate([[True], bonus_extra[1:] != bonus_extra[:-1]]))
    group_cost = np.minimum.reduceat(cost, starts, axis=0)
    group_of_row = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(rows))))
    position = np.where(cost == group_cost[group_of_row], np.arange(len(rows))[:, None], len(rows))
    group_row = rows[np.minimum(np.minimum.reduceat(position, starts, axis=0), len(rows) - 1)]
    group_extra = bonus_extra[starts]
    # The monotone chain of lower_envelope, one stack per node.
    num_groups = len(starts)
    stack_cost = np.zeros((num_nodes, num_groups))
    stack_extra = np.zeros((num_nodes, num_groups))
    stack_row = np.zeros((num_nodes, num_groups), dtype=int)
    height = np.zeros(num_nodes, dtype=int)
    for group in range(num_groups):
        line_cost, line_extra = group_cost[group], group_extra[group]
        nodes = np.flatnonzero(np.isfinite(line_cost))
        while True:  # pop while crossing(h[-2], point) <= crossing(h[-2], h[-1])
            tall = nodes[height[nodes] >= 2]
            if len(tall) == 0:
                break
            top = height[tall]
            low_cost, low_extra = stack_cost[tall, top - 2], stack_extra[tall, top - 2]
            pop = (line_cost[tall] - low_cost) / (low_extra - line_extra) <= (
                stack_cost[tall, top - 1] - low_cost
            ) / (low_extra - stack_extra[tall, top - 1])
            if not pop.any():
                break
            height[tall[pop]] -= 1
        top = height[nodes]
        stack_cost[nodes, top] = line_cost[nodes]
        stack_extra[nodes, top] = line_extra
        stack_row[nodes, top] = group_row[group, nodes]
        height[nodes] += 1
    # Line k is the minimum on [crossing(k-1, k), crossing(k, k+1)]; keep those meeting [0, 1].
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = (stack_cost[:, 1:] - stack_cost[:, :-1]) / (
            stack_extra[:, :-1] - stack_extra[:, 1:]
        )
    depth = np.arange(num_groups)[None, :]
    inside = depth < height[:, None]
    padded = np.full((num_nodes, 1), np.nan)
    starts_by_one = (depth == 0) | (np.concatenate([padded, crossing], axis=1) <= 1.0)
    ends_after_zero = (depth + 1 >= height[:, None]) | (
        np.concatenate([crossing, padded], axis=1) >= 0.0
    )
    kept = inside & starts_by_one & ends_after_zero
    return [stack_row[node, kept[node]] for node in range(num_nodes)]


def plan_python(
    costs: np.ndarray, acceptance: np.ndarray, max_draft_length: int
) -> tuple[float, tuple[int, ...], tuple[int, ...]]:
    """The planner's DP in NumPy/Python. costs [M, N >= 2 T + 1], acceptance [M, M].

    Returns (latency, chain, draft_lengths) of the optimum, as ``hierspec.plan(...).best``.
    """
    num_models, num_columns = costs.shape
    target, tmax = num_models - 1, max_draft_length
    assert num_columns >= 2 * tmax + 1 or num_models < 3, "full cost tables only"
    alone = (float(costs[target, 0]), (target,), ())
    if num_models == 1:
        return alone
    batches = np.arange(1, tmax + 1)
    # Level 0 (rule 1): Cost = c(2) + (T - 1) c(1), Dsum = c(3) - c(2); every model is a plain
    # bottom (no early stopping), so its bottom line seeds its node (model, T).
    bottom = costs[:target, 1:2] + (batches[None, :] - 1) * costs[:target, 0:1]  # [i, T - 1]
    bottom_extra = costs[:target, 2] - costs[:target, 1] if num_columns >= 3 else np.zeros(target)
    # hull_*[i][T]: the lines kept for node (i, T), Dsum descending, with back-pointers
    # (below model -1: level 0).
    hull_cost = [[np.empty(0)] * (tmax + 1) for _ in range(target)]
    hull_extra = [[np.empty(0)] * (tmax + 1) for _ in range(target)]
    hull_back = [[np.empty((0, 3), dtype=int)] * (tmax + 1) for _ in range(target)]

    # The target's pass over its pending token and a hand-up of e tokens costs c_K(e + 1),
    # commits h_K(e + 1) = sum_{k <= e} a^k and accepts everything with probability a^e.
    max_hand_up = min(num_columns, 2 * tmax + 1) - 1
    hand_up_cost = costs[target, : max_hand_up + 1]
    hand_ups = np.arange(max_hand_up + 1)

    def sub_chain(model: int, batch: int, point: int) -> tuple[list[int], list[int]]:
        chain, sizes = [], []
        while model >= 0:
            chain.append(model)
            sizes.append(batch)
            model, batch, point = (int(x) for x in hull_back[model][batch][point])
        return chain[::-1], sizes[::-1]

    entries = [alone]
    for model in range(target):
        rate_top = acceptance[model, target]
        hand_up_outputs = np.cumsum(rate_top**hand_ups)  # h_K(e + 1)
        hand_up_full = rate_top**hand_ups  # a^e
        # single draft [model, target]: (c_K(T + 1) + Cost_0) / h_K(T + 1)
        last_single = min(tmax, num_columns - 1)
        single = (hand_up_cost[1 : last_single + 1] + bottom[model, :last_single]) / (
            hand_up_outputs[1 : last_single + 1]
        )
        k = int(np.argmin(single))
        single_entry = (float(single[k]), (model, target), (k + 1,))
        top = single_entry
        # candidate lines of the nodes (model, 1..T): cost [row, T - 1], Dsum [row], back [row]
        line_costs = [bottom[model][None, :]]
        line_extras = [bottom_extra[model : model + 1]]
        line_backs = [np.array([[-1, 0, 0]])]
        for below in range(model):
            rate = acceptance[below, model]
            for batch_below in range(1, tmax + 1):
                below_cost = hull_cost[below][batch_below]
                below_extra = hull_extra[below][batch_below]
                if len(below_cost) == 0 or batch_below + 2 > num_columns:
                    continue
                verify_cost = costs[model, batch_below]  # c(G + 1)
                verify_extra = costs[model, batch_below + 1] - verify_cost  # delta
                # renewal f(0..T) by the sliding geometric window
                power_g = rate**batch_below
                density = [1.0] + [0.0] * tmax
                window = 0.0
                for s in range(1, tmax + 1):
                    dropped = density[s - 1 - batch_below] if s - 1 - batch_below >= 0 else 0.0
                    window = density[s - 1] + rate * window - power_g * dropped
                    density[s] = (1.0 - rate) * window + power_g * dropped
                f = np.array(density)
                verifications = np.cumsum(f)  # E[N](T) = sum_{s<=T} f(s)
                iteration_cost = verify_cost + below_cost  # per line of (below, G)
                line_extra = verify_extra + below_extra
                # intermediate `model` handing up exactly T: Cost = E[N](T) (c(G+1) + Cost_p),
                # Dsum = delta + Dsum_p
                line_costs.append(iteration_cost[:, None] * verifications[None, 1:])
                line_extras.append(line_extra)
                back = np.empty((len(below_cost), 3), dtype=int)
                back[:, 0], back[:, 1], back[:, 2] = below, batch_below, np.arange(len(below_cost))
                line_backs.append(back)
                # `model` directly below the target, stopping threshold b = T - 1
                last = min(tmax - 1, num_columns - batch_below - 2)
                if last < 0:
                    continue
                # H(s) = sum_{o=1}^{G+1} q(o) h(s + o), s = 0..b, for the three h
                law = np.empty(batch_below + 1)
                law[:batch_below] = (1.0 - rate) * rate ** np.arange(batch_below)
                law[batch_below] = power_g
                span = last + batch_below + 2
                f_b = f[: last + 1]
                # E[h(e)] = sum_{s<=b} f(s) H(s) - sum_{1<=u<=b} f(u) h(u)
                sums = []
                for values in (hand_up_cost, hand_up_outputs, hand_up_full):
                    windows = np.correlate(values[1:span], law, mode="valid")
                    correction = np.concatenate([[0.0], f_b[1:] * values[1 : last + 1]])
                    sums.append(np.cumsum(f_b * windows) - np.cumsum(correction))
                expected_cost, expected_outputs, full_acceptance = sums
                # latency = (E[c_K(e+1)] + E[N] (c(G+1) + Cost_p) + pi (delta + Dsum_p)) / E[O_K]
                latency = (
                    expected_cost[:, None]
                    + verifications[: last + 1, None] * iteration_cost[None, :]
                    + full_acceptance[:, None] * line_extra[None, :]
                ) / expected_outputs[:, None]
                threshold, point = np.unravel_index(int(np.argmin(latency)), latency.shape)
                if latency[threshold, point] < top[0]:
                    chain, sizes = sub_chain(below, batch_below, int(point))
                    top = (
                        float(latency[threshold, point]),
                        (*chain, model, target),
                        (*sizes, int(threshold) + 1),
                    )
        entries.append(top)
        if len(top[1]) != 2:
            entries.append(single_entry)
        # the nodes (model, 1..T): lower envelopes of their candidate lines
        all_costs = np.concatenate(line_costs)
        all_extras = np.concatenate(line_extras)
        all_backs = np.concatenate(line_backs)
        for batch, kept in enumerate(_lower_envelopes(all_costs, all_extras), start=1):
            hull_cost[model][batch] = all_costs[kept, batch - 1]
            hull_extra[model][batch] = all_extras[kept]
            hull_back[model][batch] = all_backs[kept]
    return min(entries, key=lambda entry: (entry[0], len(entry[1]), entry[1], entry[2]))


def random_instance(
    rng: np.random.Generator, num_models: int, max_draft_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """costs [M, 2 T + 1] affine in n (bigger models cost more), acceptance in [0.4, 0.95]."""
    base = np.sort(rng.uniform(0.05, 10.0, num_models))
    slope = rng.uniform(0.0, 0.05, num_models)
    n = np.arange(1, 2 * max_draft_length + 2)
    costs = base[:, None] * (1.0 + slope[:, None] * (n[None, :] - 1))
    acceptance = np.triu(rng.uniform(0.4, 0.95, (num_models, num_models)), 1)
    return costs, acceptance


def time_runs(function, min_repeats: int, min_total_s: float, max_repeats: int) -> dict:
    """Repeats `function`; returns the median/min/max of the calling thread's CPU time (the
    number reported: robust to other processes on a shared machine) and the wall-clock median."""
    cpu: list[float] = []
    wall: list[float] = []
    while len(cpu) < min_repeats or (sum(wall) < min_total_s and len(cpu) < max_repeats):
        start_wall, start_cpu = time.perf_counter(), time.thread_time()
        function()
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return {
        "median": statistics.median(cpu),
        "min": min(cpu),
        "max": max(cpu),
        "wall_median": statistics.median(wall),
        "repeats": len(cpu),
    }


def spread_instance(
    rng: np.random.Generator, num_models: int, max_draft_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Like cpp/tests/test_planner.cpp's spread_instance: every entry uniform in [0.1, 6] times a
    per-model scale growing 4-12x per model (so the bonus-state deltas c(G + 2) - c(G + 1) range
    from strongly negative to large), acceptance in [0.7, 1], sometimes exactly 0.7 or 1."""
    num_columns = 2 * max_draft_length + 1
    scales = np.cumprod(np.concatenate([[1.0], rng.uniform(4.0, 12.0, num_models - 1)]))
    costs = scales[:, None] * rng.uniform(0.1, 6.0, (num_models, num_columns))
    kind = rng.integers(0, 10, (num_models, num_models))
    rates = np.where(kind == 0, 0.0, np.where(kind == 1, 1.0, rng.uniform(0.0, 1.0, kind.shape)))
    return costs, np.triu(0.7 + 0.3 * rates, 1)


def check_same_optimum(costs: np.ndarray, acceptance: np.ndarray, max_draft_length: int) -> None:
    """plan_python's optimum has hierspec.plan's latency, which is expected_latency of its chain
    and (where small) brute force's; all to 1e-9 relative."""
    planned = hierspec.plan(costs, acceptance, max_draft_length)
    latency, chain, sizes = plan_python(costs, acceptance, max_draft_length)
    assert abs(latency - planned.latency) <= 1e-9 * planned.latency, (latency, planned)
    evaluated = hierspec.expected_latency(costs, acceptance, chain, sizes)
    assert abs(evaluated - latency) <= 1e-9 * latency, (evaluated, latency, chain, sizes)
    if max_draft_length <= 4 and costs.shape[0] <= 5:
        brute = hierspec.brute_force_plan(costs, acceptance, max_draft_length)
        assert abs(brute.latency - latency) <= 1e-9 * latency, (brute.latency, latency)


def check_small_cases() -> tuple[int, int]:
    """Both implementations (and brute force) agree on small random instances: non-monotone
    affine-times-noise tables, and spread tables where keeping only the cheapest sub-chain per
    node (the DP before the bonus state) misses the optimum on some instances. Returns the
    number of each."""
    rng = np.random.default_rng(1)
    count = 0
    for num_models in (1, 2, 3, 4, 5):
        for max_draft_length in (1, 3, 5):
            for _ in range(4):
                costs, acceptance = random_instance(rng, num_models, max_draft_length)
                costs *= rng.uniform(0.5, 2.0, costs.shape)  # not monotone in n
                check_same_optimum(costs, acceptance, max_draft_length)
                count += 1
    spread_count = 0
    for num_models in (4, 5):
        for max_draft_length in (2, 3, 4):
            for _ in range(SPREAD_INSTANCES_PER_CELL):
                costs, acceptance = spread_instance(rng, num_models, max_draft_length)
                check_same_optimum(costs, acceptance, max_draft_length)
                spread_count += 1
    return count, spread_count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="M <= 8, T <= 32 only")
    parser.add_argument("--output", type=Path, default=RESULTS / "planner.json")
    args = parser.parse_args()

    report = Report("planner")
    checked, checked_spread = check_small_cases()
    print(
        f"same optimum as the Python DP (and brute force where small) on {checked} random and "
        f"{checked_spread} spread-cost instances"
    )

    rng = np.random.default_rng(0)
    rows = []
    # measured Python time / (M^2 T^2), to predict skips: the last (largest T) cell of the same M
    # (fixed per-call work makes small T look dearer per unit), else the largest rate measured
    python_seconds_per_unit: dict[int, float] = {}
    header = f"{'M':>3} {'T':>4} {'C++ ms':>10} {'(core)':>9} {'Python ms':>11} {'ratio':>8}  plan"
    print(header)
    print("-" * len(header))
    for num_models in NUM_CANDIDATES:
        for max_draft_length in MAX_DRAFT_LENGTHS:
            if args.quick and (num_models > 8 or max_draft_length > 32):
                continue
            costs, acceptance = random_instance(rng, num_models, max_draft_length)
            result = hierspec.plan(costs, acceptance, max_draft_length)
            cpp_times = time_runs(
                lambda: hierspec.plan(costs, acceptance, max_draft_length), 5, 0.3, 200
            )
            costs_list, acceptance_list = costs.tolist(), acceptance.tolist()
            core_times = time_runs(
                lambda: _core.plan(costs_list, acceptance_list, max_draft_length), 5, 0.3, 200
            )
            work = num_models * num_models * max_draft_length * max_draft_length
            rate = python_seconds_per_unit.get(
                num_models, max(python_seconds_per_unit.values(), default=None)
            )
            predicted = None if rate is None else rate * work
            row: dict[str, object] = {
                "num_candidates": num_models,
                "max_draft_length": max_draft_length,
                "chain": list(result.chain),
                "draft_lengths": list(result.draft_lengths),
                "latency": result.latency,
                "cpp_s": cpp_times,
                # the C++ call alone (lists prepared beforehand): the rest of cpp_s is the
                # Python API's conversion and result wrapping
                "cpp_core_only_s": core_times,
            }
            if predicted is not None and predicted > PYTHON_BUDGET_S:
                row["python_s"] = {"skipped": True, "predicted_s": predicted}
                python_text, ratio_text = f"skip ({predicted:.0f}s)", "-"
            else:
                python_result: list[tuple[float, tuple[int, ...], tuple[int, ...]]] = []
                python_times = time_runs(
                    lambda: python_result.append(plan_python(costs, acceptance, max_draft_length)),
                    1,
                    2.0,
                    5,
                )
                latency = python_result[0][0]
                assert abs(latency - result.latency) <= 1e-9 * result.latency, (latency, result)
                median = python_times["median"]
                python_seconds_per_unit[num_models] = median / work
                row["python_s"] = {**python_times, "same_optimum": True}
                row["speedup_cpp_over_python"] = median / cpp_times["median"]
                python_text = f"{1e3 * median:11.2f}"
                ratio_text = f"{row['speedup_cpp_over_python']:7.0f}x"
            rows.append(row)
            print(
                f"{num_models:>3} {max_draft_length:>4} {1e3 * cpp_times['median']:10.3f} "
                f"{1e3 * core_times['median']:9.3f} {python_text:>11} {ratio_text:>8}  "
                f"{result.chain} T={result.draft_lengths}"
            )

    target_row = next(
        (row for row in rows if row["num_candidates"] == 8 and row["max_draft_length"] == 64), None
    )
    summary = {}
    if target_row is not None:
        summary["m8_t64_cpp_ms"] = 1e3 * target_row["cpp_s"]["median"]
        summary["m8_t64_under_10ms"] = summary["m8_t64_cpp_ms"] < 10.0
    ratios = [row["speedup_cpp_over_python"] for row in rows if "speedup_cpp_over_python" in row]
    if ratios:
        summary["min_speedup_cpp_over_python"] = min(ratios)
        summary["median_speedup_cpp_over_python"] = statistics.median(ratios)
        summary["min_speedup_cpp_over_python_m_ge_4"] = min(
            row["speedup_cpp_over_python"]
            for row in rows
            if "speedup_cpp_over_python" in row and row["num_candidates"] >= 4
        )
    print(json.dumps(summary))
    report.write(
        args.output,
        {
            "threads": 1,
            "summary": summary,
            "checked_small_instances": checked,
            "checked_spread_instances": checked_spread,
            "results": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
