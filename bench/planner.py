"""Planning time: the C++ planner (hierspec.plan) against a NumPy/Python port of the same DP.

Grid: number of candidates M in (2, 4, 8, 16, 32) x max draft length T in (8, 16, 32, 64, 128),
one thread, the same random instance for both implementations in the same run. Reports the
median (and min/max) CPU time of the calling thread over repeated runs (wall-clock medians are
stored too; CPU time is robust to other processes on a shared machine), checks that both return
the same optimum on every cell, prints a table and writes bench/results/planner.json.

"C++" is the public API `hierspec.plan` (argument conversion and result wrapping included);
"(core)" is the `_core.plan` call alone. With M = 2 the graph has no edges (single drafts only)
and both versions take microseconds, so that row measures call overhead, not the DP.

The Python version (`plan_python`) is the algorithm of cpp/src/planner.cpp line by line: the
same nodes (model, T), the same sliding-window renewal (a Python loop: it is sequential), and
NumPy for every O(T) vector step (prefix sums, the end-point correlation, the min updates). It
supports full cost tables only (2 T + 1 columns), which is what the benchmark uses.

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


def plan_python(
    costs: np.ndarray, acceptance: np.ndarray, max_draft_length: int
) -> tuple[float, tuple[int, ...], tuple[int, ...]]:
    """The planner's DP in NumPy/Python. costs [M, N >= 2 T + 1], acceptance [M, M].

    Returns (latency, chain, draft_lengths) of the optimum.
    """
    num_models, num_columns = costs.shape
    target, tmax = num_models - 1, max_draft_length
    assert num_columns >= 2 * tmax + 1 or num_models < 3, "full cost tables only"
    batches = np.arange(1, tmax + 1)
    best = (float(costs[target, 0]), (target,), ())
    if num_models == 1:
        return best
    # node_cost[i, T] = D(i, T); back-pointers below_model/below_batch (-1: level 0)
    node_cost = costs[:target, 1:2] + (batches[None, :] - 1) * costs[:target, 0:1]
    node_cost = np.concatenate([np.full((target, 1), np.inf), node_cost], axis=1)
    below_model = np.full((target, tmax + 1), -1)
    below_batch = np.zeros((target, tmax + 1), dtype=int)
    h_cost = np.concatenate([[0.0], costs[target, : 2 * tmax + 1]])  # h(e) = c_K(e), e >= 1

    def sub_chain(model: int, batch: int) -> tuple[list[int], list[int]]:
        chain, sizes = [], []
        while model >= 0:
            chain.append(model)
            sizes.append(batch)
            model, batch = int(below_model[model, batch]), int(below_batch[model, batch])
        return chain[::-1], sizes[::-1]

    for model in range(target):
        rate_top = acceptance[model, target]
        h_outputs = np.zeros(2 * tmax + 2)  # E[O_K | pass of e tokens] = sum_{k<e} a^k
        for e in range(1, 2 * tmax + 2):
            h_outputs[e] = 1.0 + rate_top * h_outputs[e - 1]
        # single draft [model, target]
        single = (h_cost[2 : tmax + 2] + node_cost[model, 1:]) / h_outputs[2 : tmax + 2]
        k = int(np.argmin(single))
        if single[k] < best[0]:
            best = (float(single[k]), (model, target), (k + 1,))
        for below in range(model):
            rate = acceptance[below, model]
            for batch_below in range(1, tmax + 1):
                iteration_cost = costs[model, batch_below] + node_cost[below, batch_below]
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
                call_cost = verifications[1:] * iteration_cost
                better = call_cost < node_cost[model, 1:]
                node_cost[model, 1:][better] = call_cost[better]
                below_model[model, 1:][better] = below
                below_batch[model, 1:][better] = batch_below
                # last step: H(s) = sum_{o=1}^{G+1} q(o) h(s + o), s = 0..T
                law = np.empty(batch_below + 1)
                law[:batch_below] = (1.0 - rate) * rate ** np.arange(batch_below)
                law[batch_below] = power_g
                span = tmax + batch_below + 2
                window_cost = np.correlate(h_cost[1:span], law, mode="valid")
                window_outputs = np.correlate(h_outputs[1:span], law, mode="valid")
                # E[h(e)] = sum_{s<=θ} f(s) H(s) - sum_{1<=u<=θ} f(u) h(u), threshold θ
                expected_cost = np.cumsum(f * window_cost) - np.cumsum(
                    np.concatenate([[0.0], f[1:] * h_cost[1 : tmax + 1]])
                )
                expected_outputs = np.cumsum(f * window_outputs) - np.cumsum(
                    np.concatenate([[0.0], f[1:] * h_outputs[1 : tmax + 1]])
                )
                # `model` below the target stops once s >= T: threshold T - 1 (index k = T - 1)
                latency = (expected_cost[:-1] + verifications[:-1] * iteration_cost) / (
                    expected_outputs[:-1]
                )
                k = int(np.argmin(latency))
                if latency[k] < best[0]:
                    chain, sizes = sub_chain(below, batch_below)
                    best = (float(latency[k]), (*chain, model, target), (*sizes, k + 1))
    return best


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


def check_small_cases() -> int:
    """Both implementations (and brute force) agree on small random instances."""
    rng = np.random.default_rng(1)
    count = 0
    for num_models in (1, 2, 3, 4, 5):
        for max_draft_length in (1, 3, 5):
            for _ in range(4):
                costs, acceptance = random_instance(rng, num_models, max_draft_length)
                costs *= rng.uniform(0.5, 2.0, costs.shape)  # not monotone in n
                planned = hierspec.plan(costs, acceptance, max_draft_length)
                latency, chain, sizes = plan_python(costs, acceptance, max_draft_length)
                assert abs(latency - planned.latency) <= 1e-9 * planned.latency, (latency, planned)
                assert (
                    abs(hierspec.expected_latency(costs, acceptance, chain, sizes) - latency)
                    <= 1e-9 * latency
                )
                if max_draft_length <= 3 and num_models <= 4:
                    brute = hierspec.brute_force_plan(costs, acceptance, max_draft_length)
                    assert abs(brute.latency - latency) <= 1e-9 * latency
                count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="M <= 8, T <= 32 only")
    parser.add_argument("--output", type=Path, default=RESULTS / "planner.json")
    args = parser.parse_args()

    report = Report("planner")
    checked = check_small_cases()
    print(f"same optimum as the Python DP (and brute force where small) on {checked} instances")

    rng = np.random.default_rng(0)
    rows = []
    python_seconds_per_unit = None  # measured Python time / (M^2 T^2), to predict skips
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
            predicted = None if python_seconds_per_unit is None else python_seconds_per_unit * work
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
                python_seconds_per_unit = max(python_seconds_per_unit or 0.0, median / work)
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
        {"threads": 1, "summary": summary, "checked_small_instances": checked, "results": rows},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
