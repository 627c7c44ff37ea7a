"""Engine benchmark on synthetic hierarchies: predicted vs measured latency, engine overhead.

Synthetic levels (hierspec.testing.synthetic_hierarchy) have exactly known i.i.d. acceptance and
busy-wait for a fixed cost per forward pass (the cheapest model >= 1 ms per pass), so:
- predicted latency  = hierspec.expected_latency(costs, acceptance, chain, draft_lengths);
- virtual latency    = the costs of the passes the engine actually ran (deterministic clock),
                       per new token: the policy the engine executed, without its overhead
                       (shown for the timed runs and for the 10x longer engine-only runs);
- measured latency   = decoding wall time per new token (prefill excluded);
- overhead           = decoding wall time not spent inside forward passes, per token and as a
                       percentage of model time (target: < 5%);
- overhead (CPU)     = CPU time of the process during decoding not spent inside forward passes
                       (``time.process_time``), as a percentage of the virtual model time per
                       token. Wall-time numbers include preemption when other processes compete
                       for the cores (busy-waits and engine alike); the CPU-time number is the
                       engine's own work, but on a loaded machine it too grows after
                       preemptions (cold caches, core migration), roughly with the pass length;
- engine only        = the same generation with zero-cost models (no busy-wait): decoding wall
                       time minus time in forward passes, per token, and as a percentage of the
                       virtual model time (the engine's cost with warm caches, a lower bound).

Usage: OMP_NUM_THREADS=1 python bench/engine_synthetic.py [--tokens 300] [--repeats 3]
Writes bench/results/engine_synthetic.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from harness import RESULTS, Report, format_table

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.testing import AffineCost, synthetic_hierarchy


@dataclass(frozen=True)
class Scenario:
    name: str
    costs: tuple[AffineCost, ...]  # per candidate, seconds
    rhos: tuple[float, ...]  # acceptance between consecutive candidates
    chain: tuple[int, ...]
    draft_lengths: tuple[int, ...]


MS = 1e-3
SCENARIOS = (
    Scenario(
        "target alone",
        (AffineCost(1 * MS, 0.05 * MS), AffineCost(10 * MS, 0.5 * MS)),
        (0.8,),
        (1,),
        (),
    ),
    Scenario(
        "2 levels",
        (AffineCost(1 * MS, 0.05 * MS), AffineCost(10 * MS, 0.5 * MS)),
        (0.8,),
        (0, 1),
        (4,),
    ),
    Scenario(
        "3 levels",
        (
            AffineCost(1 * MS, 0.05 * MS),
            AffineCost(3 * MS, 0.15 * MS),
            AffineCost(15 * MS, 0.75 * MS),
        ),
        (0.7, 0.85),
        (0, 1, 2),
        (3, 4),
    ),  # fmt: skip
    Scenario(
        "4 levels",
        (
            AffineCost(1 * MS, 0.05 * MS),
            AffineCost(2 * MS, 0.1 * MS),
            AffineCost(6 * MS, 0.3 * MS),
            AffineCost(20 * MS, 1 * MS),
        ),
        (0.6, 0.8, 0.9),
        (0, 1, 2, 3),
        (2, 3, 4),
    ),  # fmt: skip
    Scenario(
        "4 levels, T=1,1,1",
        (
            AffineCost(1 * MS, 0.05 * MS),
            AffineCost(2 * MS, 0.1 * MS),
            AffineCost(6 * MS, 0.3 * MS),
            AffineCost(20 * MS, 1 * MS),
        ),
        (0.6, 0.8, 0.9),
        (0, 1, 2, 3),
        (1, 1, 1),
    ),  # fmt: skip
)


class CpuTimedLevel:
    """A DraftModel wrapper that adds up the process CPU time spent inside ``append``."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.cpu_time_s = 0.0

    vocab_size = property(lambda self: self.inner.vocab_size)
    device = property(lambda self: self.inner.device)
    length = property(lambda self: self.inner.length)

    def reset(self) -> None:
        self.inner.reset()

    def append(self, token_ids: torch.Tensor) -> torch.Tensor:
        started = time.process_time()
        logits = self.inner.append(token_ids)
        self.cpu_time_s += time.process_time() - started
        return logits

    def truncate(self, length: int) -> None:
        self.inner.truncate(length)


def run_scenario(scenario: Scenario, new_tokens: int, repeats: int) -> dict:
    hierarchy = synthetic_hierarchy(
        scenario.rhos, scenario.costs, seed=0, busy_wait=True, record_history=False
    )
    costs_table = hierarchy.costs_table(sum(scenario.draft_lengths) + 2)
    predicted = hierspec.expected_latency(
        costs_table, hierarchy.acceptance, scenario.chain, scenario.draft_lengths
    )
    levels = [CpuTimedLevel(hierarchy.models[m]) for m in scenario.chain]
    decoder = HierarchicalDecoder(levels, list(scenario.draft_lengths))
    prompt = torch.tensor([[0, 1, 2, 3]])
    decoder.generate(prompt, max_new_tokens=8, seed=0)  # warm-up
    runs = []
    for repeat in range(repeats):
        hierarchy.clock.elapsed = 0.0
        for level in levels:
            level.cpu_time_s = 0.0
        cpu_started = time.process_time()
        output = decoder.generate(prompt, max_new_tokens=new_tokens, seed=1000 + repeat)
        cpu_total = time.process_time() - cpu_started
        stats = output.stats
        prefill_cost = sum(
            scenario.costs[m](level.prefill_tokens) * level.prefill_passes
            for m, level in zip(scenario.chain, stats.levels)
        )
        tokens = stats.new_tokens
        virtual_latency = (hierarchy.clock.elapsed - prefill_cost) / tokens
        # Engine CPU time: the whole call minus the forward passes (the prefill passes included,
        # so this also counts the call's fixed setup; negligible over hundreds of tokens).
        engine_cpu = cpu_total - sum(level.cpu_time_s for level in levels)
        runs.append(
            {
                "virtual_latency_ms": virtual_latency * 1e3,
                "measured_latency_ms": stats.decode_time_s / tokens * 1e3,
                "model_time_ms_per_token": stats.model_time_s / tokens * 1e3,
                "overhead_ms_per_token": stats.overhead_time_s / tokens * 1e3,
                "overhead_percent_of_model_time": 100 * stats.overhead_time_s / stats.model_time_s,
                "overhead_cpu_ms_per_token": engine_cpu / tokens * 1e3,
                "overhead_cpu_percent_of_virtual_model_time": 100
                * engine_cpu
                / tokens
                / virtual_latency,
                "tokens_per_second": tokens / stats.decode_time_s,
                "passes_per_token": list(stats.passes_per_token),
                "acceptance_rate": [level.acceptance_rate for level in stats.levels[:-1]],
            }
        )

    # Engine only: zero-cost models (virtual costs still counted, no busy-wait).
    quiet = synthetic_hierarchy(
        scenario.rhos, scenario.costs, seed=0, busy_wait=False, record_history=False
    )
    quiet_decoder = HierarchicalDecoder(
        [quiet.models[m] for m in scenario.chain], list(scenario.draft_lengths)
    )
    quiet_decoder.generate(prompt, max_new_tokens=8, seed=0)  # warm-up
    engine_only = []
    for repeat in range(repeats):
        quiet.clock.elapsed = 0.0
        stats = quiet_decoder.generate(
            prompt, max_new_tokens=10 * new_tokens, seed=2000 + repeat
        ).stats
        prefill_cost = sum(
            scenario.costs[m](level.prefill_tokens) * level.prefill_passes
            for m, level in zip(scenario.chain, stats.levels)
        )
        virtual_latency = (quiet.clock.elapsed - prefill_cost) / stats.new_tokens
        engine_only.append((stats.overhead_time_s / stats.new_tokens, virtual_latency))
    for run, (overhead, virtual_latency) in zip(runs, engine_only):
        run["engine_only_overhead_ms_per_token"] = overhead * 1e3
        run["engine_only_overhead_percent_of_virtual_model_time"] = 100 * overhead / virtual_latency
        run["engine_only_virtual_latency_ms"] = virtual_latency * 1e3

    def summary(key: str) -> dict:
        values = [run[key] for run in runs]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "name": scenario.name,
        "chain": list(scenario.chain),
        "draft_lengths": list(scenario.draft_lengths),
        "costs_ms": [[cost.base * 1e3, cost.per_token * 1e3] for cost in scenario.costs],
        "cost_model": "c(n) = base + per_token * (n - 1) ms, busy-wait",
        "rhos": list(scenario.rhos),
        "new_tokens_per_run": new_tokens,
        "repeats": repeats,
        "predicted_latency_ms": predicted * 1e3,
        **{
            key: summary(key)
            for key in (
                "virtual_latency_ms",
                "measured_latency_ms",
                "model_time_ms_per_token",
                "overhead_ms_per_token",
                "overhead_percent_of_model_time",
                "overhead_cpu_ms_per_token",
                "overhead_cpu_percent_of_virtual_model_time",
                "engine_only_overhead_ms_per_token",
                "engine_only_overhead_percent_of_virtual_model_time",
                "engine_only_virtual_latency_ms",
                "tokens_per_second",
            )
        },  # fmt: skip
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=300, help="new tokens per run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per scenario (median reported)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "engine_synthetic.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = Report("engine_synthetic")
    results = [run_scenario(scenario, args.tokens, args.repeats) for scenario in SCENARIOS]

    header = (
        "scenario", "T", "predicted", "virtual (run / 10x)", "measured", "model", "overhead",
        "overhead %", "CPU overhead %", "engine only", "engine only %", "tok/s",
    )  # fmt: skip
    rows = [
        (
            result["name"],
            ",".join(map(str, result["draft_lengths"])) or "-",
            f"{result['predicted_latency_ms']:.3f}",
            f"{result['virtual_latency_ms']['median']:.3f} / "
            f"{result['engine_only_virtual_latency_ms']['median']:.3f}",
            f"{result['measured_latency_ms']['median']:.3f}",
            f"{result['model_time_ms_per_token']['median']:.3f}",
            f"{result['overhead_ms_per_token']['median']:.3f}",
            f"{result['overhead_percent_of_model_time']['median']:.2f}"
            f" [{result['overhead_percent_of_model_time']['min']:.2f}, "
            f"{result['overhead_percent_of_model_time']['max']:.2f}]",
            f"{result['overhead_cpu_percent_of_virtual_model_time']['median']:.2f}"
            f" [{result['overhead_cpu_percent_of_virtual_model_time']['min']:.2f}, "
            f"{result['overhead_cpu_percent_of_virtual_model_time']['max']:.2f}]",
            f"{result['engine_only_overhead_ms_per_token']['median']:.3f}",
            f"{result['engine_only_overhead_percent_of_virtual_model_time']['median']:.2f}",
            f"{result['tokens_per_second']['median']:.1f}",
        )
        for result in results
    ]
    print(
        "latency and overhead per new token in ms (median of runs); percentages: median [min, max]"
    )
    print(format_table(header, rows))
    report.write(args.output, {"results": results})
    print(f"load average before {report.machine['load_average']}")


if __name__ == "__main__":
    main()
