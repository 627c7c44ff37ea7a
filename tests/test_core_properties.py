"""Property tests of the C++ core through the public API (hypothesis).

Random valid inputs: ``plan`` equals ``brute_force_plan`` on small instances, ``evaluate`` gives
consistent finite results, ``simulate`` agrees with ``evaluate`` within a statistical bound.
Random invalid inputs: a ``ValueError`` / ``TypeError`` naming the argument. Every call runs
under a hang detector (``signal.alarm``: a generous 5 s bound, not a timing of speed).
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hierspec

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
HANG_SECONDS = 5


@contextlib.contextmanager
def hang_detector(seconds: int = HANG_SECONDS) -> Iterator[None]:
    """Fails the test if the block runs longer than ``seconds`` (the core polls signals)."""

    def on_alarm(signum, frame):
        raise AssertionError(f"call did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def instances(draw, max_models: int = 4, max_columns: int = 9):
    """(costs [M] or [M, N], acceptance [M, M]) with M in 1..max_models."""
    num_models = draw(st.integers(1, max_models))
    rate = st.floats(0.0, 1.0, allow_nan=False)
    acceptance = np.eye(num_models)
    for row in range(num_models):
        for column in range(row + 1, num_models):
            acceptance[row, column] = draw(rate)
    cost = st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False)
    if draw(st.booleans()):
        costs = np.array([draw(cost) for _ in range(num_models)])
    else:
        num_columns = draw(st.integers(1, max_columns))
        costs = np.array(
            [sorted(draw(cost) for _ in range(num_columns)) for _ in range(num_models)]
        )
    return costs, acceptance


@st.composite
def chains(draw, num_models: int, max_draft_length: int = 6):
    """(chain, draft_lengths): a random subset of the drafts, the target last."""
    drafts = [model for model in range(num_models - 1) if draw(st.booleans())]
    chain = [*drafts, num_models - 1]
    lengths = [draw(st.integers(1, max_draft_length)) for _ in drafts]
    return chain, lengths


def max_committed(draft_lengths: list[int]) -> int:
    """Most tokens one target pass can commit (docs/policy.md rules 2 and 4)."""
    if not draft_lengths:
        return 1
    if len(draft_lengths) == 1:
        return draft_lengths[0] + 1
    return 1 + draft_lengths[-1] + draft_lengths[-2]  # standard pass with a bonus token


def fits(costs: np.ndarray, draft_lengths: list[int]) -> bool:
    if costs.ndim == 1 or not draft_lengths:
        return True
    if len(draft_lengths) == 1:
        return costs.shape[1] >= max(2, draft_lengths[0] + 1)
    # K >= 2: level 0's first pass of a cycle in the bonus state (3 tokens), the first
    # verification of an intermediate level in it (T_{l-1} + 2), the target's pass (1 + L).
    needed = max([3] + [size + 2 for size in draft_lengths[:-1]])
    return costs.shape[1] >= max(needed, 1 + draft_lengths[-1] + draft_lengths[-2])


@SETTINGS
@given(instance=instances(max_models=4, max_columns=9), max_draft_length=st.integers(1, 4))
def test_plan_equals_brute_force(instance, max_draft_length) -> None:
    costs, acceptance = instance
    with hang_detector():
        planned = hierspec.plan(costs, acceptance, max_draft_length)
        brute = hierspec.brute_force_plan(costs, acceptance, max_draft_length)
    assert planned.latency == pytest.approx(brute.latency, rel=1e-9, abs=1e-12)
    assert [entry.latency for entry in planned.alternatives] == pytest.approx(
        [entry.latency for entry in brute.alternatives], rel=1e-9, abs=1e-12
    )
    assert planned.latency <= planned.target_latency


@SETTINGS
@given(data=st.data(), instance=instances(max_models=5, max_columns=13))
def test_evaluate_is_finite_and_consistent(data, instance) -> None:
    costs, acceptance = instance
    chain, draft_lengths = data.draw(chains(len(acceptance)))
    if not fits(costs, draft_lengths):
        with hang_detector(), pytest.raises(ValueError, match="costs has"):
            hierspec.evaluate(costs, acceptance, chain, draft_lengths)
        return
    with hang_detector():
        result = hierspec.evaluate(costs, acceptance, chain, draft_lengths)
    assert math.isfinite(result.latency) and result.latency >= 0
    assert sum(result.cost_per_token) == pytest.approx(result.latency, rel=1e-12, abs=1e-12)
    assert 1 <= result.tokens_per_target_pass <= max_committed(draft_lengths) + 1e-9


@settings(max_examples=10, deadline=None, derandomize=True)
@given(data=st.data(), instance=instances(max_models=4, max_columns=13))
def test_simulate_agrees_with_evaluate(data, instance) -> None:
    costs, acceptance = instance
    chain, draft_lengths = data.draw(chains(len(acceptance), max_draft_length=5))
    if not fits(costs, draft_lengths):
        return
    seed = data.draw(st.integers(0, 2**64 - 1))
    with hang_detector():
        expected = hierspec.evaluate(costs, acceptance, chain, draft_lengths)
        simulated = hierspec.simulate(costs, acceptance, chain, draft_lengths, 40_000, seed)
    # Tokens per target pass lies in [1, max pass]: its standard error over n >= 40000 / max
    # passes is at most max / sqrt(n); 6 standard errors (plus a renewal-end term) is loose.
    max_output = max_committed(draft_lengths)
    passes = simulated.num_target_passes
    bound = 6 * max_output / math.sqrt(passes) + max_output / passes
    assert abs(simulated.tokens_per_target_pass - expected.tokens_per_target_pass) <= bound


# --------------------------------------------------------------------------------------------
# invalid inputs: a clear error naming the argument

VALID_COSTS = [1.0, 3.0, 10.0]
VALID_ACCEPTANCE = [[1, 0.6, 0.4], [0, 1, 0.8], [0, 0, 1]]

bad_numbers = st.one_of(
    st.text(max_size=3),
    st.booleans(),
    st.none(),
    st.just(math.nan),
    st.just(math.inf),
    st.floats(max_value=-1e-9, allow_nan=False),
)
huge_ints = st.one_of(st.integers(min_value=2**31), st.integers(max_value=-(2**31) - 1))


@SETTINGS
@given(index=st.integers(0, 2), value=bad_numbers)
def test_bad_cost_names_costs(index, value) -> None:
    costs: list = list(VALID_COSTS)
    costs[index] = value
    with hang_detector(), pytest.raises((ValueError, TypeError), match=rf"costs\[{index}\]"):
        hierspec.plan(costs, VALID_ACCEPTANCE, 4)


@SETTINGS
@given(row=st.integers(0, 1), value=bad_numbers.filter(lambda v: not isinstance(v, float) or v < 0))
def test_bad_acceptance_names_acceptance(row, value) -> None:
    acceptance = [list(r) for r in VALID_ACCEPTANCE]
    acceptance[row][2] = value
    with hang_detector(), pytest.raises((ValueError, TypeError), match=r"acceptance\["):
        hierspec.evaluate(VALID_COSTS, acceptance, [0, 2], [3])


@SETTINGS
@given(
    argument=st.sampled_from(["max_draft_length", "chain", "draft_lengths", "num_tokens", "seed"]),
    value=st.one_of(huge_ints, st.integers(max_value=0), st.text(max_size=2), st.booleans()),
)
def test_bad_integers_name_the_argument(argument, value) -> None:
    calls = {
        "max_draft_length": lambda: hierspec.plan(VALID_COSTS, VALID_ACCEPTANCE, value),
        "chain": lambda: hierspec.evaluate(VALID_COSTS, VALID_ACCEPTANCE, [value, 2], [2]),
        "draft_lengths": lambda: hierspec.evaluate(VALID_COSTS, VALID_ACCEPTANCE, [0, 2], [value]),
        "num_tokens": lambda: hierspec.simulate(
            VALID_COSTS, VALID_ACCEPTANCE, [0, 2], [2], num_tokens=value
        ),
        "seed": lambda: hierspec.simulate(
            VALID_COSTS, VALID_ACCEPTANCE, [0, 2], [2], num_tokens=10, seed=value
        ),
    }
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if (argument == "chain" and is_int and value == 0) or (
        argument == "seed" and is_int and 0 <= value < 2**64
    ):
        return  # a valid chain [0, 2] / a valid seed
    with hang_detector(), pytest.raises((ValueError, TypeError), match=argument):
        calls[argument]()
