"""Structural: the engine's counters equal the latency model's expectations (engine == model).

Synthetic hierarchies (hierspec.testing.synthetic_hierarchy) have exactly i.i.d. acceptance with
known rates and deterministic per-pass costs on a virtual clock, so over a long generation:
- forward passes per committed token of every level must be within 3% of
  ``hierspec.evaluate(...).passes_per_token`` (and tokens processed per token likewise);
- the virtual-clock latency per token must be within 3% of ``hierspec.expected_latency(...)``.

To tell who is wrong when engine and evaluator disagree, the expectations are also computed here
directly from the formulas of docs/policy.md ("Expected latency"), independently of the C++ core:
``test_policy_formulas_match_evaluate`` compares those with ``hierspec.evaluate`` exactly, and
``test_engine_matches_policy_formulas`` compares the engine with them.

Per-token counters exclude the prompt prefill (reported separately in LevelStats.prefill_*); the
virtual latency subtracts the prefill passes' cost. Seeds are fixed (deterministic); the token
counts keep the sampling error of each ratio near 1%.
"""

from __future__ import annotations

import functools

import pytest
import torch

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.testing import AffineCost, synthetic_hierarchy

TOLERANCE = 0.03
COST_FNS = (
    AffineCost(1e-3, 2e-4),
    AffineCost(4e-3, 4e-4),
    AffineCost(12e-3, 1e-3),
    AffineCost(40e-3, 2e-3),
)
RHOS = (0.65, 0.75, 0.85)

# (chain over the 4 candidates, draft lengths, new tokens)
CASES = [
    pytest.param((3,), (), 2000, id="target-alone"),
    pytest.param((2, 3), (4,), 8000, id="2-levels-T4"),
    pytest.param((0, 3), (2,), 8000, id="2-levels-T2"),
    pytest.param((1, 2, 3), (3, 4), 8000, id="3-levels-T3,4"),
    pytest.param((0, 2, 3), (2, 1), 8000, id="3-levels-T2,1"),
    pytest.param((0, 1, 2, 3), (2, 3, 4), 8000, id="4-levels-T2,3,4"),
    pytest.param((0, 1, 2, 3), (1, 1, 2), 8000, id="4-levels-T1,1,2"),
]


def policy_expectations(costs, acceptance, chain, draft_lengths):
    """Per committed token: (passes per level, tokens per level, latency), from docs/policy.md.

    ``costs[m](n)``: cost of a pass of model m over n tokens; ``acceptance[i][j]``.
    """
    top = len(chain) - 1
    if top == 0:
        return [1.0], [1.0], costs[chain[0]](1)
    rates = [None] + [acceptance[chain[level - 1]][chain[level]] for level in range(1, top + 1)]

    def output_law(rate, batch):  # law of O for a standard verification of a fixed batch
        law = {o: rate ** (o - 1) * (1 - rate) for o in range(1, batch + 1)}
        law[batch + 1] = rate**batch
        return law

    # Per call of each level: expected passes and tokens of every level at or below it, cost.
    passes = [[0.0] * (top + 1) for _ in range(top)]
    tokens = [[0.0] * (top + 1) for _ in range(top)]
    cost = [0.0] * top
    size0 = draft_lengths[0]
    passes[0][0], tokens[0][0] = size0, size0 + 1
    cost[0] = costs[chain[0]](2) + (size0 - 1) * costs[chain[0]](1)
    hand_up_law = None
    for level in range(1, top):
        batch = draft_lengths[level - 1]
        law = output_law(rates[level], batch)
        threshold = draft_lengths[level] + 1 if level < top - 1 else draft_lengths[level]
        renewal = [1.0]
        for held in range(1, threshold + 1):
            renewal.append(sum(renewal[held - o] * q for o, q in law.items() if o <= held))
        calls = sum(renewal[:threshold])  # E[N_l]: verifications per call
        for below in range(level):
            passes[level][below] = calls * passes[level - 1][below]
            tokens[level][below] = calls * tokens[level - 1][below]
        passes[level][level] = calls
        tokens[level][level] = calls * (batch + 1)
        cost[level] = calls * (costs[chain[level]](batch + 1) + cost[level - 1])
        if level == top - 1:
            hand_up_law = {}
            for held in range(threshold):
                for o, q in law.items():
                    if held + o >= threshold:
                        hand_up_law[held + o] = hand_up_law.get(held + o, 0.0) + renewal[held] * q
    rate = rates[top]
    below = top - 1
    if top == 1:
        hand_up_law = {size0: 1.0}
    # Rule 4: a standard pass over the pending token and the L drafts.
    target_pass = {length + 1: p for length, p in hand_up_law.items()}
    outputs = sum(p * ((1 - rate**length) / (1 - rate) if rate < 1 else length)
                  for length, p in target_pass.items())  # fmt: skip
    # The bonus state (K >= 2): after a full acceptance (probability pi = E[a^L]) level 0's
    # first pass of the next cycle processes 3 tokens instead of 2 and each intermediate level's
    # first verification one more token.
    bonus = sum(p * rate**length for length, p in hand_up_law.items()) if top >= 2 else 0.0
    extra = costs[chain[0]](3) - costs[chain[0]](2) if top >= 2 else 0.0
    for level in range(1, top):
        batch = draft_lengths[level - 1]
        extra += costs[chain[level]](batch + 2) - costs[chain[level]](batch + 1)
    target_tokens = sum(length * p for length, p in target_pass.items())
    target_cost = sum(costs[chain[top]](length) * p for length, p in target_pass.items())
    per_token_passes = [passes[below][level] / outputs for level in range(top)] + [1 / outputs]
    per_token_tokens = [(tokens[below][level] + bonus) / outputs for level in range(top)] + [
        target_tokens / outputs
    ]
    latency = (target_cost + cost[below] + bonus * extra) / outputs
    return per_token_passes, per_token_tokens, latency


def _hierarchy():
    return synthetic_hierarchy(RHOS, COST_FNS, seed=3, record_history=False)


@functools.cache
def _run(chain, draft_lengths, new_tokens):
    """One seeded generation per case, shared by the tests below."""
    hierarchy = _hierarchy()
    decoder = HierarchicalDecoder([hierarchy.models[m] for m in chain], list(draft_lengths))
    prompt = torch.tensor([[hierarchy.models[0].vocab_size - 1, 2, 5]])
    output = decoder.generate(prompt, max_new_tokens=new_tokens, temperature=1.0, seed=12345)
    stats = output.stats
    assert stats.new_tokens == new_tokens
    prefill_cost = sum(
        hierarchy.cost_fns[m](level.prefill_tokens) * level.prefill_passes
        for m, level in zip(chain, stats.levels)
    )
    latency = (hierarchy.clock.elapsed - prefill_cost) / stats.new_tokens
    return hierarchy, stats, latency


def _assert_close(measured, expected, what):
    assert abs(measured - expected) <= TOLERANCE * expected, (
        f"{what}: engine {measured:.5f} vs expected {expected:.5f} "
        f"({100 * (measured / expected - 1):+.2f}%)"
    )


@pytest.mark.parametrize(("chain", "draft_lengths", "new_tokens"), CASES)
def test_engine_matches_evaluate(chain, draft_lengths, new_tokens):
    hierarchy, stats, latency = _run(chain, draft_lengths, new_tokens)
    costs = hierarchy.costs_table(sum(draft_lengths) + 2)
    evaluation = hierspec.evaluate(costs, hierarchy.acceptance, chain, draft_lengths)
    for level, (measured, expected) in enumerate(
        zip(stats.passes_per_token, evaluation.passes_per_token)
    ):
        _assert_close(measured, expected, f"level {level} passes per token")
    for level, (measured, expected) in enumerate(
        zip(stats.tokens_per_token, evaluation.tokens_per_token)
    ):
        _assert_close(measured, expected, f"level {level} tokens per token")
    _assert_close(
        latency,
        hierspec.expected_latency(costs, hierarchy.acceptance, chain, draft_lengths),
        "latency",
    )


@pytest.mark.parametrize(("chain", "draft_lengths", "new_tokens"), CASES)
def test_engine_matches_policy_formulas(chain, draft_lengths, new_tokens):
    hierarchy, stats, latency = _run(chain, draft_lengths, new_tokens)
    passes, tokens, expected_latency = policy_expectations(
        hierarchy.cost_fns, hierarchy.acceptance, chain, draft_lengths
    )
    for level, (measured, expected) in enumerate(zip(stats.passes_per_token, passes)):
        _assert_close(measured, expected, f"level {level} passes per token")
    for level, (measured, expected) in enumerate(zip(stats.tokens_per_token, tokens)):
        _assert_close(measured, expected, f"level {level} tokens per token")
    _assert_close(latency, expected_latency, "latency")
    # The measured acceptance rates are the synthetic ones (exact i.i.d. Bernoulli).
    for level in range(len(chain) - 1):
        rate = hierarchy.acceptance[chain[level]][chain[level + 1]]
        assert abs(stats.levels[level].acceptance_rate - rate) < 0.03, (level, stats.levels[level])


@pytest.mark.parametrize(("chain", "draft_lengths", "new_tokens"), CASES)
def test_policy_formulas_match_evaluate(chain, draft_lengths, new_tokens):
    """Tells engine/evaluator disagreements apart: the formulas of policy.md vs the C++ core."""
    hierarchy = _hierarchy()
    costs = hierarchy.costs_table(sum(draft_lengths) + 2)
    evaluation = hierspec.evaluate(costs, hierarchy.acceptance, chain, draft_lengths)
    passes, tokens, latency = policy_expectations(
        hierarchy.cost_fns, hierarchy.acceptance, chain, draft_lengths
    )
    assert evaluation.passes_per_token == pytest.approx(passes, rel=1e-9)
    assert evaluation.tokens_per_token == pytest.approx(tokens, rel=1e-9)
    assert evaluation.latency == pytest.approx(latency, rel=1e-9)


def test_policy_formulas_reduce_to_leviathan():
    """One draft: latency = (T c_0 + c_1) (1 - a) / (1 - a^(T+1)) with constant costs."""
    costs = [lambda n: 0.1, lambda n: 1.0]
    acceptance = [[1.0, 0.7], [1.0, 1.0]]
    _, _, latency = policy_expectations(costs, acceptance, (0, 1), (5,))
    assert latency == pytest.approx((5 * 0.1 + 1.0) * 0.3 / (1 - 0.7**6), rel=1e-12)
