"""The cases behind tests/data/golden.json (see tests/record_golden.py and tests/test_golden.py).

Every value is a deterministic function of the code: planner results on seeded random instances,
greedy outputs and seeded samples of the engine on synthetic and tiny transformers hierarchies.
The only names used are the public API's, so a pure restructuring must reproduce them exactly.
"""

from __future__ import annotations

import numpy as np
import torch

import hierspec
from hierspec.testing import AffineCost, synthetic_hierarchy, tiny_llama_family


def _instance(seed: int, num_models: int, columns: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    base = np.sort(rng.uniform(0.02, 1.0, num_models))
    base[-1] = 1.0
    growth = rng.uniform(0.0, 0.2, num_models)
    costs = [
        [float(b * (1 + g * (n - 1))) for n in range(1, columns + 1)] for b, g in zip(base, growth)
    ]
    acceptance = np.ones((num_models, num_models))
    for i in range(num_models):
        for j in range(i + 1, num_models):
            acceptance[i, j] = rng.uniform(0.3, 0.95)
    return costs, acceptance.tolist()


def planner_cases() -> list[dict]:
    cases = []
    for seed, num_models, max_length in [(0, 3, 8), (1, 4, 8), (2, 5, 12), (3, 4, 16)]:
        columns = 64
        costs, acceptance = _instance(seed, num_models, columns)
        result = hierspec.plan(costs, acceptance, max_length)
        chain = list(result.chain)
        lengths = list(_lengths(result))
        evaluation = hierspec.evaluate(costs, acceptance, chain, lengths)
        simulation = hierspec.simulate(
            costs, acceptance, chain, lengths, num_tokens=2000, seed=seed
        )
        cases.append(
            {
                "seed": seed,
                "num_models": num_models,
                "max_length": max_length,
                "chain": chain,
                "lengths": lengths,
                "latency": result.latency,
                "alternatives": [
                    [list(a.chain), list(_lengths(a)), a.latency] for a in result.alternatives
                ],
                "evaluate": [evaluation.latency, list(evaluation.passes_per_token)],
                "simulate": [
                    simulation.latency,
                    simulation.num_tokens,
                    simulation.num_target_passes,
                ],
            }
        )
    return cases


def _lengths(plan_or_entry) -> tuple[int, ...]:
    # The draft lengths under whichever name the current API uses.
    for name in ("draft_lengths", "draft_lengths"):
        if hasattr(plan_or_entry, name):
            return tuple(getattr(plan_or_entry, name))
    raise AttributeError("plan has no draft lengths")


def _decoder(models, lengths):
    try:
        return hierspec.HierarchicalDecoder(models, draft_lengths=lengths)
    except TypeError:
        return hierspec.HierarchicalDecoder(models, draft_lengths=lengths)


def engine_cases() -> list[dict]:
    cases = []
    synthetic = synthetic_hierarchy([0.8, 0.6, 0.7], [AffineCost(1e-3)] * 4, seed=3)
    llamas = tiny_llama_family(3, vocab_size=48, seed=5)
    prompt_synthetic = torch.tensor([[1, 5, 9]])
    prompt_llama = torch.tensor([[3, 17, 29, 4, 11]])
    chains = {
        "synthetic": [([3], []), ([0, 3], [4]), ([1, 2, 3], [3, 5]), ([0, 1, 2, 3], [2, 3, 6])],
        "llama": [([2], []), ([0, 2], [3]), ([0, 1, 2], [2, 4])],
    }
    samplings = [
        ("greedy", dict(temperature=0.0)),
        ("t1", dict(temperature=1.0, seed=11)),
        ("t07_topk_topp", dict(temperature=0.7, top_k=20, top_p=0.9, seed=12)),
    ]
    for family, models, prompt in [
        ("synthetic", synthetic.models, prompt_synthetic),
        ("llama", llamas, prompt_llama),
    ]:
        for chain, lengths in chains[family]:
            for name, kwargs in samplings:
                decoder = _decoder([models[i] for i in chain], lengths)
                output = decoder.generate(prompt, max_new_tokens=24, **kwargs)
                cases.append(
                    {
                        "family": family,
                        "chain": chain,
                        "lengths": lengths,
                        "sampling": name,
                        "sequence": output.sequences[0].tolist(),
                        "passes": [level.forward_passes for level in output.stats.levels],
                    }
                )
    return cases


def compute_all() -> dict:
    return {"planner": planner_cases(), "engine": engine_cases()}
