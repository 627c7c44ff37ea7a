"""Tests of the planning API: evaluator, simulator, planner (docs/theory.md names each claim).

Exact: closed forms and planner == brute force. Distributional: simulator vs evaluator.
Properties (hypothesis): the monotonicity facts proved in docs/theory.md §8, plus a
counterexample showing the one monotonicity that does NOT hold.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import hierspec

# --------------------------------------------------------------------------------------------
# helpers


def random_instance(
    rng: np.random.Generator, num_models: int, num_columns: int
) -> tuple[np.ndarray, np.ndarray]:
    """costs [M, N] (model m about 4^m, random per-n factor: not monotone in n) and
    acceptance [M, M] (upper triangle in [0, 1], sometimes exactly 0 or 1)."""
    scale = 4.0 ** np.arange(num_models)[:, None]
    costs = scale * rng.uniform(0.5, 2.0, size=(num_models, num_columns))
    acceptance = rng.uniform(0.0, 1.0, size=(num_models, num_models))
    corners = rng.integers(0, 10, size=acceptance.shape)
    acceptance[corners == 0] = 0.0
    acceptance[corners == 1] = 1.0
    return costs, np.triu(acceptance, 1)


def random_chain(
    rng: np.random.Generator, num_models: int, num_levels: int, max_draft_length: int
) -> tuple[list[int], list[int]]:
    drafts = sorted(rng.choice(num_models - 1, size=num_levels, replace=False).tolist())
    return drafts + [num_models - 1], rng.integers(1, max_draft_length + 1, num_levels).tolist()


def columns_needed(draft_lengths: list[int]) -> int:
    """Longest pass of a chain (docs/policy.md): see hierspec::chain_columns_needed."""
    if not draft_lengths:
        return 1
    if len(draft_lengths) == 1:
        return max(2, draft_lengths[0] + 1)
    # K >= 2, bonus state: level 0's 3 tokens, a first verification's T_{l-1} + 2, the target's
    # standard pass 1 + L.
    needed = max([3] + [size + 2 for size in draft_lengths[:-1]])
    return max(needed, 1 + draft_lengths[-1] + draft_lengths[-2])


# --------------------------------------------------------------------------------------------
# exact: closed forms (theory §5)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.55, 0.9, 0.999])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_single_draft_closed_form_with_cost_table(rate: float, batch: int) -> None:
    rng = np.random.default_rng(batch)
    costs = rng.uniform(0.1, 3.0, size=(2, batch + 2)) * [[1.0], [10.0]]  # [2, N]
    acceptance = [[1.0, rate], [0.0, 1.0]]
    expected = (costs[0, 1] + (batch - 1) * costs[0, 0] + costs[1, batch]) / (
        (1 - rate ** (batch + 1)) / (1 - rate)
    )
    assert hierspec.expected_latency(costs, acceptance, [0, 1], [batch]) == pytest.approx(
        expected, rel=1e-12
    )


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.8])
@pytest.mark.parametrize("gamma", [1, 4, 10])
def test_single_draft_constant_costs_is_leviathan_form(rate: float, gamma: int) -> None:
    c0, c1 = 0.3, 5.0
    expected = (gamma * c0 + c1) * (1 - rate) / (1 - rate ** (gamma + 1))
    got = hierspec.expected_latency([c0, c1], [[1, rate], [0, 1]], [0, 1], [gamma])
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("gamma", [1, 2, 7])
def test_single_draft_full_acceptance_limit(gamma: int) -> None:
    costs = np.array([[0.5, 0.6] + [0.5] * 8, np.linspace(4.0, 6.0, 10)])
    expected = (0.6 + (gamma - 1) * 0.5 + costs[1, gamma]) / (gamma + 1)
    evaluation = hierspec.evaluate(costs, [[1, 1.0], [0, 1]], [0, 1], [gamma])
    assert evaluation.latency == pytest.approx(expected, rel=1e-14)
    assert evaluation.tokens_per_target_pass == pytest.approx(gamma + 1)
    near = hierspec.expected_latency(costs, [[1, 1 - 1e-9], [0, 1]], [0, 1], [gamma])
    assert near == pytest.approx(expected, rel=1e-7)


def test_target_alone_is_plain_decoding() -> None:
    evaluation = hierspec.evaluate([[1.0, 2.0], [3.0, 4.0]], [[1, 0.5], [0, 1]], [1], [])
    assert evaluation == hierspec.Evaluation(3.0, (1.0,), (1.0,), (3.0,), 1.0)


def test_evaluation_levels_add_up() -> None:
    costs = [0.1, 0.5, 2.0, 7.0]
    acceptance = [[1, 0.7, 0.6, 0.5], [0, 1, 0.8, 0.7], [0, 0, 1, 0.85], [0, 0, 0, 1]]
    evaluation = hierspec.evaluate(costs, acceptance, [0, 1, 2, 3], [2, 4, 6])
    assert sum(evaluation.cost_per_token) == pytest.approx(evaluation.latency, rel=1e-14)
    for level, model in enumerate([0, 1, 2, 3]):
        # constant costs: cost = passes * cost per pass
        assert evaluation.cost_per_token[level] == pytest.approx(
            evaluation.passes_per_token[level] * costs[model], rel=1e-12
        )
    assert evaluation.passes_per_token[3] * evaluation.tokens_per_target_pass == pytest.approx(1)


# --------------------------------------------------------------------------------------------
# distributional: simulator vs evaluator (theory §7)


@pytest.mark.parametrize("num_levels", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simulator_agrees_with_evaluator(num_levels: int, seed: int) -> None:
    rng = np.random.default_rng(100 + 10 * num_levels + seed)
    num_models = num_levels + 1 + int(rng.integers(0, 2))
    costs, acceptance = random_instance(rng, num_models, 17)
    acceptance = np.triu(0.2 + 0.75 * acceptance, 1)  # rates in [0.2, 0.95]
    chain, draft_lengths = random_chain(rng, num_models, num_levels, 8)
    expected = hierspec.evaluate(costs, acceptance, chain, draft_lengths)
    simulated = hierspec.simulate(costs, acceptance, chain, draft_lengths, 300_000, seed=seed)
    assert simulated.num_tokens >= 300_000
    assert simulated.latency == pytest.approx(expected.latency, rel=0.01)
    assert simulated.tokens_per_target_pass == pytest.approx(
        expected.tokens_per_target_pass, rel=0.01
    )
    for level in range(len(chain)):
        assert simulated.passes_per_token[level] == pytest.approx(
            expected.passes_per_token[level], rel=0.01
        )
        assert simulated.tokens_per_token[level] == pytest.approx(
            expected.tokens_per_token[level], rel=0.01
        )


def test_simulation_is_reproducible() -> None:
    args = ([0.1, 1.0, 5.0], [[1, 0.6, 0.5], [0, 1, 0.8], [0, 0, 1]], [0, 1, 2], [3, 4])
    first = hierspec.simulate(*args, num_tokens=5000, seed=7)
    assert first == hierspec.simulate(*args, num_tokens=5000, seed=7)
    assert first != hierspec.simulate(*args, num_tokens=5000, seed=8)


# --------------------------------------------------------------------------------------------
# exact: planner == brute force (theory §6)


def assert_same_plan(planned: hierspec.Plan, brute: hierspec.Plan, costs, acceptance) -> None:
    assert planned.latency == pytest.approx(brute.latency, rel=1e-10)
    assert planned.target_latency == brute.target_latency
    assert (planned.best_single_draft is None) == (brute.best_single_draft is None)
    if planned.best_single_draft is not None:
        assert planned.best_single_draft.latency == pytest.approx(
            brute.best_single_draft.latency, rel=1e-10
        )
    assert [entry.latency for entry in planned.alternatives] == pytest.approx(
        [entry.latency for entry in brute.alternatives], rel=1e-10
    )
    for entry in planned.alternatives:
        assert hierspec.expected_latency(
            costs, acceptance, entry.chain, entry.draft_lengths
        ) == pytest.approx(entry.latency, rel=1e-10)


@pytest.mark.parametrize("seed", range(40))
def test_planner_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_models = int(rng.integers(2, 6))
    max_draft_length = int(rng.integers(1, 5 if num_models == 5 else 6))
    num_columns = 2 * max_draft_length + 1
    costs, acceptance = random_instance(rng, num_models, num_columns)
    if seed % 2:  # drafting pays: high acceptance, so deep chains are in play
        acceptance = np.triu(0.5 + 0.5 * acceptance, 1)
    planned = hierspec.plan(costs, acceptance, max_draft_length)
    brute = hierspec.brute_force_plan(costs, acceptance, max_draft_length)
    assert_same_plan(planned, brute, costs, acceptance)
    assert not planned.limited_by_cost_table


@pytest.mark.parametrize("seed", range(10))
def test_planner_equals_brute_force_with_short_table(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    num_models, max_draft_length = 4, 4
    num_columns = int(rng.integers(1, 8))  # 8 would limit nothing
    costs, acceptance = random_instance(rng, num_models, num_columns)
    planned = hierspec.plan(costs, acceptance, max_draft_length)
    brute = hierspec.brute_force_plan(costs, acceptance, max_draft_length)
    assert_same_plan(planned, brute, costs, acceptance)
    assert planned.limited_by_cost_table
    assert (planned.cost_table_columns, planned.columns_needed) == (num_columns, 9)
    for entry in planned.alternatives:
        assert columns_needed(list(entry.draft_lengths)) <= num_columns


def test_plan_structure() -> None:
    costs = [0.05, 0.4, 1.5, 6.0]
    acceptance = [[1, 0.75, 0.6, 0.5], [0, 1, 0.8, 0.65], [0, 0, 1, 0.85], [0, 0, 0, 1]]
    names = ["tiny", "small", "medium", "target"]
    result = hierspec.plan(costs, acceptance, max_draft_length=16, model_names=names)
    assert result.best == result.alternatives[0]
    assert (result.chain, result.draft_lengths) == (result.best.chain, result.best.draft_lengths)
    assert result.chain[-1] == 3 and len(result.chain) >= 3
    assert result.target_latency == 6.0
    assert result.speedup == pytest.approx(6.0 / result.latency)
    single = result.best_single_draft
    assert single is not None and len(single.chain) == 2
    assert result.speedup_vs_single_draft == pytest.approx(single.latency / result.latency)
    assert result.speedup_vs_single_draft > 1.0
    latencies = [entry.latency for entry in result.alternatives]
    assert latencies == sorted(latencies)
    assert any(entry.chain == (3,) for entry in result.alternatives)
    below_target = {entry.chain[-2] for entry in result.alternatives if len(entry.chain) > 1}
    assert below_target == {0, 1, 2}  # one best plan per model directly below the target
    for entry in result.alternatives:
        assert entry.model_names == tuple(names[model] for model in entry.chain)
    assert json.loads(json.dumps(result.to_dict()))["chain"] == list(result.chain)


def test_plan_of_the_target_alone() -> None:
    result = hierspec.plan([2.5], [[1.0]], max_draft_length=4)
    assert result.chain == (0,) and result.draft_lengths == () and result.latency == 2.5
    assert result.best_single_draft is None and math.isnan(result.speedup_vs_single_draft)


# --------------------------------------------------------------------------------------------
# properties (theory §8)

rates = st.floats(0.0, 1.0)
small_ints = st.integers(1, 6)


@st.composite
def instances(draw, max_models: int = 5):
    """(costs [M, N], acceptance [M, M], chain, draft_lengths) with N covering the chain."""
    num_models = draw(st.integers(2, max_models))
    num_levels = draw(st.integers(1, num_models - 1))
    drafts = sorted(draw(st.permutations(range(num_models - 1)))[:num_levels])
    draft_lengths = [draw(small_ints) for _ in range(num_levels)]
    num_columns = columns_needed(draft_lengths)
    costs = np.array(
        [[draw(st.floats(0.0, 10.0)) for _ in range(num_columns)] for _ in range(num_models)]
    )
    acceptance = np.array([[draw(rates) for _ in range(num_models)] for _ in range(num_models)])
    return costs, np.triu(acceptance, 1), drafts + [num_models - 1], draft_lengths


@settings(max_examples=150, deadline=None)
@given(instances(), st.data())
def test_latency_nonincreasing_in_acceptance_except_below_target(instance, data) -> None:
    """theory §8 claim 2: non-increasing in a_l for every level l except l = K-1 (K >= 2); in
    a_K (K >= 2) when the bonus state's extra cost D satisfies D E[L] <= E[c_K(L+1)] +
    Cost_{K-1}."""
    costs, acceptance, chain, draft_lengths = instance
    top = len(chain) - 1
    levels = [level for level in range(1, top + 1) if not (level == top - 1 and top >= 2)]
    level = data.draw(st.sampled_from(levels))
    row, column = chain[level - 1], chain[level]
    low, high = sorted([acceptance[row, column], data.draw(rates)])
    acceptance_low, acceptance_high = acceptance.copy(), acceptance.copy()
    acceptance_low[row, column], acceptance_high[row, column] = low, high
    if level == top and top >= 2:
        # D = delta_0 + sum_l delta_l; E[L] and X = E[c_K(L+1)] + Cost_{K-1} from evaluate
        # (neither depends on a_K).
        extra = (
            costs[chain[0], 2]
            - costs[chain[0], 1]
            + sum(
                costs[chain[index], draft_lengths[index - 1] + 1]
                - costs[chain[index], draft_lengths[index - 1]]
                for index in range(1, top)
            )
        )
        low_evaluation = hierspec.evaluate(costs, acceptance_low, chain, draft_lengths)
        mean_hand_up = (
            low_evaluation.tokens_per_token[top] / low_evaluation.passes_per_token[top] - 1
        )
        cycle_cost = low_evaluation.latency * low_evaluation.tokens_per_target_pass
        fixed_cost = cycle_cost - low_evaluation.bonus_state_probability * extra
        assume(extra * mean_hand_up <= fixed_cost * (1 - 1e-9))
    latency_low = hierspec.expected_latency(costs, acceptance_low, chain, draft_lengths)
    latency_high = hierspec.expected_latency(costs, acceptance_high, chain, draft_lengths)
    assert latency_high <= latency_low * (1 + 1e-12) + 1e-15


def test_latency_is_not_monotone_in_acceptance_below_target() -> None:
    """theory §8 claim 3: the counterexample. Chain [0, 1, 2], T = (1, 2), free drafts: with
    a = 1 level 1 always hands up 2 tokens, with a = 1/2 sometimes 3, which the target then
    verifies in the same pass."""

    def latency(rate: float) -> float:
        acceptance = [[1, rate, 0.5], [0, 1, 0.9], [0, 0, 1]]
        return hierspec.expected_latency([0.0, 0.0, 1.0], acceptance, [0, 1, 2], [1, 2])

    # e = 2 always: the target's pass over 3 tokens commits 1 + 0.9 + 0.81
    assert latency(1.0) == pytest.approx(1 / 2.71)
    assert latency(0.5) < latency(1.0) * 0.95


@settings(max_examples=150, deadline=None)
@given(instances(), st.data())
def test_latency_nondecreasing_and_linear_in_costs(instance, data) -> None:
    """theory §8 claim 1: latency = sum of nonnegative weights times cost entries."""
    costs, acceptance, chain, draft_lengths = instance
    base = hierspec.expected_latency(costs, acceptance, chain, draft_lengths)
    model = data.draw(st.integers(0, costs.shape[0] - 1))
    column = data.draw(st.integers(0, costs.shape[1] - 1))
    raised = costs.copy()
    raised[model, column] += data.draw(st.floats(0.0, 5.0))
    assert hierspec.expected_latency(raised, acceptance, chain, draft_lengths) >= base * (1 - 1e-12)
    factor = data.draw(st.floats(0.1, 10.0))
    assert hierspec.expected_latency(
        costs * factor, acceptance, chain, draft_lengths
    ) == pytest.approx(base * factor, rel=1e-12, abs=1e-300)


@settings(max_examples=60, deadline=None)
@given(instances(max_models=5), st.integers(1, 5))
def test_plan_is_a_lower_bound_and_monotone(instance, max_draft_length) -> None:
    """theory §8 claim 4: the optimum is <= every configuration it searches; growing
    max_draft_length or adding candidates never makes it worse."""
    costs, acceptance, chain, draft_lengths = instance
    num_models = costs.shape[0]
    table = np.repeat(costs[:, :1], 2 * (max_draft_length + 1) + 1, axis=1)
    table[:, : costs.shape[1]] = costs[:, : table.shape[1]]
    # Rounding slack relative to the costs' scale: with zero costs a latency can come out as
    # -2e-16, where a purely relative tolerance has the wrong sign.
    scale = float(table.max())

    def at_most(value: float, bound: float) -> bool:
        return value <= bound + 1e-12 * (abs(bound) + scale)

    result = hierspec.plan(table, acceptance, max_draft_length)
    assert result.latency <= result.target_latency
    if result.best_single_draft is not None:
        assert result.latency <= result.best_single_draft.latency
    if max(draft_lengths) <= max_draft_length:
        assert at_most(
            result.latency, hierspec.expected_latency(table, acceptance, chain, draft_lengths)
        )
    larger = hierspec.plan(table, acceptance, max_draft_length + 1)
    assert at_most(larger.latency, result.latency)
    if num_models > 2:  # drop one draft
        keep = [model for model in range(num_models) if model != chain[0]]
        fewer = hierspec.plan(table[keep], acceptance[np.ix_(keep, keep)], max_draft_length)
        assert at_most(result.latency, fewer.latency)


# --------------------------------------------------------------------------------------------
# profile files


def write_profile(path, data) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


PROFILE = {
    "models": [
        {"name": "ngram", "costs_ms": [0.05, 0.05, 0.05, 0.06, 0.06, 0.06, 0.07, 0.07, 0.08]},
        {"name": "small", "costs_ms": [2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8]},
        {"name": "target", "costs_ms": [20.0, 20.5, 21.0, 21.5, 22.0, 22.5, 23.0, 24.0, 25.0]},
    ],
    "acceptance": [[1, 0.6, 0.4], [0, 1, 0.8], [0, 0, 1]],
    "metadata": {"device": "cpu"},
}


def test_profile_round_trip_and_extra_keys(tmp_path) -> None:
    path = tmp_path / "profile.json"
    write_profile(path, PROFILE)
    profile = hierspec.load_profile(path)
    assert profile.model_names == ("ngram", "small", "target")
    assert profile.extra == {"metadata": {"device": "cpu"}}
    assert hierspec.Profile.from_dict(profile.to_dict()) == profile


def test_planning_has_no_json_helpers_of_its_own() -> None:
    # JSON writing lives in hierspec.io (one owner); planning uses it for Plan.to_dict.
    import hierspec.io
    import hierspec.planning

    assert not hasattr(hierspec.planning, "write_json")
    assert hierspec.planning.json_safe is hierspec.io.json_safe
    plan = hierspec.plan([1.0], [[1.0]], 4)  # one model: no single draft, NaN speedup
    assert plan.to_dict()["speedup_vs_single_draft"] is None
