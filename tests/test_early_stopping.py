"""Early stopping of the bottom level (docs/policy.md rule 1, docs/theory.md §11): the model
(evaluator = simulator, planner = brute force) and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import hierspec


def random_early_stopping(
    rng: np.random.Generator, acceptance: np.ndarray
) -> tuple[list[float], np.ndarray | None]:
    """Continue rates (often 1, sometimes 0) and, half the time, a bottom acceptance matrix
    above the main one (confident drafts survive more often)."""
    kinds = rng.integers(0, 10, size=acceptance.shape[0])
    rates = np.where(kinds <= 2, 1.0, np.where(kinds == 3, 0.0, rng.uniform(0.3, 1.0, kinds.size)))
    bottom = None
    if rng.integers(0, 2):
        bottom = np.triu(acceptance + (1 - acceptance) * rng.uniform(0, 0.5, acceptance.shape), 1)
    return rates.tolist(), bottom


def random_instance(rng: np.random.Generator, num_models: int, num_columns: int):
    scale = 4.0 ** np.arange(num_models)[:, None]
    costs = scale * rng.uniform(0.5, 2.0, size=(num_models, num_columns))
    acceptance = np.triu(rng.uniform(0.0, 1.0, size=(num_models, num_models)), 1)
    return costs, acceptance


@pytest.mark.parametrize("seed", range(30))
def test_planner_equals_brute_force_with_early_stopping(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    num_models = int(rng.integers(2, 6))
    max_draft_length = int(rng.integers(1, 5 if num_models == 5 else 6))
    costs, acceptance = random_instance(rng, num_models, 2 * max_draft_length + 1)
    if seed % 2:
        acceptance = np.triu(0.5 + 0.5 * acceptance, 1)
    rates, bottom = random_early_stopping(rng, acceptance)
    options = {"continue_rates": rates, "bottom_acceptance": bottom}
    planned = hierspec.plan(costs, acceptance, max_draft_length, **options)
    brute = hierspec.brute_force_plan(costs, acceptance, max_draft_length, **options)
    assert planned.latency == pytest.approx(brute.latency, rel=1e-10)
    assert [entry.latency for entry in planned.alternatives] == pytest.approx(
        [entry.latency for entry in brute.alternatives], rel=1e-10
    )
    for entry in planned.alternatives:
        latency = hierspec.expected_latency(
            costs, acceptance, entry.chain, entry.draft_lengths, **options
        )
        assert latency == pytest.approx(entry.latency, rel=1e-10)


@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_simulator_agrees_with_evaluator_with_early_stopping(num_levels: int) -> None:
    rng = np.random.default_rng(40 + num_levels)
    num_models = num_levels + 2
    costs, acceptance = random_instance(rng, num_models, 17)
    acceptance = np.triu(0.2 + 0.75 * acceptance, 1)
    rates, bottom = random_early_stopping(rng, acceptance)
    chain = sorted(rng.choice(num_models - 1, size=num_levels, replace=False).tolist())
    chain.append(num_models - 1)
    rates[chain[0]] = 0.6
    draft_lengths = rng.integers(2, 9, num_levels).tolist()
    options = {"continue_rates": rates, "bottom_acceptance": bottom}
    expected = hierspec.evaluate(costs, acceptance, chain, draft_lengths, **options)
    simulated = hierspec.simulate(costs, acceptance, chain, draft_lengths, 300_000, 3, **options)
    assert simulated.latency == pytest.approx(expected.latency, rel=0.01)
    assert simulated.tokens_per_target_pass == pytest.approx(
        expected.tokens_per_target_pass, rel=0.01
    )
    assert simulated.passes_per_token == pytest.approx(expected.passes_per_token, rel=0.01)
    assert simulated.tokens_per_token == pytest.approx(expected.tokens_per_token, rel=0.01)


def test_defaults_are_no_early_stopping() -> None:
    costs = [[0.1] * 9, [1.0 + 0.1 * n for n in range(9)], [5.0 + n for n in range(9)]]
    acceptance = [[1, 0.7, 0.5], [0, 1, 0.8], [0, 0, 1]]
    plain = hierspec.evaluate(costs, acceptance, [0, 1, 2], [3, 4])
    explicit = hierspec.evaluate(
        costs, acceptance, [0, 1, 2], [3, 4], [1, 1, 1], bottom_acceptance=acceptance
    )
    assert plain == explicit
    assert hierspec.plan(costs, acceptance, 4) == hierspec.plan(
        costs, acceptance, 4, continue_rates=[1, 1, 1]
    )


def test_stopping_pays_when_the_target_pass_grows_with_its_length() -> None:
    """A CPU-like target (cost linear in the pass length) and a drafter that is right when
    confident: stopping early lowers the latency the planner predicts."""
    costs = [[0.01] * 17, [10.0 + 3.0 * n for n in range(17)]]
    acceptance = [[1, 0.3], [0, 1]]
    always = hierspec.plan(costs, acceptance, 8)
    stopping = hierspec.plan(
        costs, acceptance, 8, continue_rates=[0.3, 1], bottom_acceptance=[[1, 0.9], [0, 1]]
    )
    assert stopping.latency < 0.9 * always.latency
    assert stopping.chain == (0, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"continue_rates": [1, 1]}, r"continue_rates must have shape \(3,\)"),
        ({"continue_rates": [1, 1.5, 1]}, r"continue_rates\[1\] = 1.5 is outside \[0, 1\]"),
        ({"continue_rates": [float("nan"), 1, 1]}, r"continue_rates\[0\] = nan is outside"),
        ({"bottom_acceptance": [[1, 0.5], [0, 1]]}, r"bottom_acceptance must have shape \(3, 3\)"),
        (
            {"bottom_acceptance": [[1, 0.5, 2.0], [0, 1, 0.5], [0, 0, 1]]},
            r"bottom_acceptance\[0\]\[2\] = 2.0 is outside \[0, 1\]",
        ),
    ],
)
def test_bad_early_stopping_arguments(options: dict, message: str) -> None:
    acceptance = [[1, 0.7, 0.5], [0, 1, 0.8], [0, 0, 1]]
    with pytest.raises(ValueError, match=message):
        hierspec.evaluate([0.1, 1, 5], acceptance, [0, 2], [3], **options)
    with pytest.raises(ValueError, match=message):
        hierspec.plan([0.1, 1, 5], acceptance, 4, **options)
    with pytest.raises(TypeError, match="continue_rates"):
        hierspec.plan([0.1, 1, 5], acceptance, 4, continue_rates=["1", 1, 1])
