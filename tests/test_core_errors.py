"""Every bad input to the planning API raises ValueError naming the argument and the value.

The value checks live in C++ (std::invalid_argument) and reach Python through pybind11 as
ValueError; the Python layer rejects what cannot reach C++ faithfully (wrong types, wrong number
of dimensions, integers beyond a C int). ``tests/bad_inputs.py`` holds the table of
``docs/errors.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hierspec
from hierspec import _core

ACCEPTANCE = np.array(
    [[1, 0.5, 0.5, 0.5], [0, 1, 0.5, 0.5], [0, 0, 1, 0.5], [0, 0, 0, 1]], dtype=float
)  # [4, 4]
COSTS = np.tile(np.array([[1.0], [2.0], [3.0], [4.0]]), (1, 9))  # [4, 9]


def with_acceptance(row: int, column: int, value: float) -> np.ndarray:
    acceptance = ACCEPTANCE.copy()
    acceptance[row, column] = value
    return acceptance


def with_cost(row: int, column: int, value: float) -> np.ndarray:
    costs = COSTS.copy()
    costs[row, column] = value
    return costs


# Each API entry point, called with (costs, acceptance, chain, draft_lengths).
ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "evaluate": hierspec.evaluate,
    "expected_latency": hierspec.expected_latency,
    "simulate": lambda *args: hierspec.simulate(*args, num_tokens=10, seed=0),
}


@pytest.fixture(params=sorted(ENTRY_POINTS))
def entry_point(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return ENTRY_POINTS[request.param]


@pytest.mark.parametrize(
    ("acceptance", "message"),
    [
        (with_acceptance(0, 2, 1.5), "acceptance[0][2] = 1.5 is outside [0, 1]"),
        (with_acceptance(1, 3, -0.25), "acceptance[1][3] = -0.25 is outside [0, 1]"),
        (with_acceptance(0, 3, math.nan), "acceptance[0][3] = nan is outside [0, 1]"),
        (with_acceptance(2, 3, math.inf), "acceptance[2][3] = inf is outside [0, 1]"),
    ],
)
def test_acceptance_out_of_range(entry_point, acceptance, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        entry_point(COSTS, acceptance, [0, 2, 3], [2, 2])
    with pytest.raises(ValueError, match=re.escape(message)):
        hierspec.plan(COSTS, acceptance, max_draft_length=4)


def test_acceptance_shape(entry_point) -> None:
    message = "acceptance must be 2-D [M, M], got shape (4,)"
    with pytest.raises(ValueError, match=re.escape(message)):
        entry_point(COSTS, ACCEPTANCE[0], [0, 3], [2])
    with pytest.raises(ValueError, match=re.escape("acceptance[0] has 3 entries")):
        entry_point(COSTS, ACCEPTANCE[:, :3], [0, 3], [2])
    with pytest.raises(ValueError, match=re.escape("acceptance has 0 rows")):
        hierspec.plan([], np.zeros((0, 0)), 4)


@pytest.mark.parametrize(
    ("chain", "draft_lengths", "message"),
    [
        ([2, 1, 3], [1, 1], "chain = [2, 1, 3] is not strictly increasing"),
        ([1, 1, 3], [1, 1], "chain = [1, 1, 3] is not strictly increasing"),
        ([0, 2], [1], "chain must end at the target (model 3), got 2"),
        ([0, 4], [1], "chain[1] = 4 is not a model index in [0, 3]"),
        ([-1, 3], [1], "chain[0] = -1 is not a model index in [0, 3]"),
        ([], [], "chain = [] is empty"),
        ([0, 1, 3], [2, 0], "draft_lengths[1] = 0 must be >= 1"),
        ([0, 3], [-4], "draft_lengths[0] = -4 must be >= 1"),
        ([0, 1, 3], [2], "draft_lengths has 1 entries, chain needs 2"),
        ([3], [1], "draft_lengths has 1 entries, chain needs 0"),
    ],
)
def test_bad_chain_or_draft_lengths(entry_point, chain, draft_lengths, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        entry_point(COSTS, ACCEPTANCE, chain, draft_lengths)


@pytest.mark.parametrize(
    ("costs", "message"),
    [
        (with_cost(1, 0, -2.0), "costs[1][0] = -2 is negative"),
        (with_cost(2, 4, math.nan), "costs[2][4] = nan is not a number"),
        (with_cost(0, 1, math.inf), "costs[0][1] = inf is not finite"),
        (np.array([1.0, -0.5, 3.0, 4.0]), "costs[1] = -0.5 is negative"),
        (np.array([1.0, 2.0, 3.0]), "costs has 3 entries but acceptance has 4 models"),
        (COSTS[:3], "costs has 3 rows but acceptance has 4 models"),
        (np.zeros((4, 0)), "costs has 0 columns"),
        (
            np.zeros((4, 2, 2)),
            "costs must be 1-D [M] (a constant cost per pass) or 2-D [M, N], got shape (4, 2, 2)",
        ),
    ],
)
def test_bad_costs(entry_point, costs, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        entry_point(costs, ACCEPTANCE, [3], [])
    with pytest.raises(ValueError, match=re.escape(message)):
        hierspec.plan(costs, ACCEPTANCE, max_draft_length=4)


def test_ragged_costs() -> None:
    with pytest.raises(ValueError, match="costs could not be read as a float array"):
        hierspec.evaluate([[1.0, 2.0], [3.0]], [[1, 0.5], [0, 1]], [1], [])
    # the C++ check names the row when the rows reach it
    with pytest.raises(ValueError, match=re.escape("costs[1] has 1 columns but costs[0] has 2")):
        _core.evaluate([[1.0, 2.0], [3.0]], [[1, 0.5], [0, 1]], [1], [])


def test_cost_table_too_short(entry_point) -> None:
    # chain [0, 2, 3] with T = (4, 4): the target's pass may process 1 + 4 + 4 = 9 tokens
    message = (
        "costs has 5 columns (passes of n = 1..5 tokens); this chain needs passes of up to n = 9"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        entry_point(COSTS[:, :5], ACCEPTANCE, [0, 2, 3], [4, 4])
    with pytest.raises(ValueError, match=re.escape("this chain needs passes of up to n = 2")):
        entry_point(COSTS[:, :1], ACCEPTANCE, [0, 3], [1])


def test_other_arguments() -> None:
    with pytest.raises(ValueError, match=re.escape("max_draft_length = 0 must be in [1, ")):
        hierspec.plan(COSTS, ACCEPTANCE, max_draft_length=0)
    with pytest.raises(ValueError, match=re.escape("num_tokens = 0 must be >= 1")):
        hierspec.simulate(COSTS, ACCEPTANCE, [0, 3], [2], num_tokens=0)
    with pytest.raises(ValueError, match=re.escape("seed = -1 must be in [0, 2**64)")):
        hierspec.simulate(COSTS, ACCEPTANCE, [0, 3], [2], seed=-1)
    with pytest.raises(ValueError, match=re.escape("model_names has 2 entries, acceptance has 4")):
        hierspec.plan(COSTS, ACCEPTANCE, model_names=["a", "b"])
    message = "chain must be a sequence of ints, got [0.5, 3]"
    with pytest.raises(TypeError, match=re.escape(message)):
        hierspec.evaluate(COSTS, ACCEPTANCE, [0.5, 3], [2])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "profile must be a JSON object, got list"),
        ({"models": []}, "profile has no 'acceptance' key"),
        ({"models": [], "acceptance": []}, "profile 'models' must be a non-empty list"),
        ({"models": [{"name": "a"}], "acceptance": [[1]]}, "profile models[0] must be an object"),
        (
            {
                "models": [{"name": "a", "costs_ms": [1, 2]}, {"name": "b", "costs_ms": [1]}],
                "acceptance": [[1, 0.5], [0, 1]],
            },
            "profile models[*].costs_ms lists have different lengths [1, 2]",
        ),
        (
            {"models": [{"name": "a", "costs_ms": [1, "x"]}], "acceptance": [[1]]},
            "profile models[0].costs_ms = [1, 'x'] must be a number or a list of numbers",
        ),
        (
            {"models": [{"name": "a", "costs_ms": [1]}], "acceptance": [1]},
            "profile 'acceptance' must be a list of lists of numbers, got [1]",
        ),
    ],
)
def test_bad_profile(data, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        hierspec.Profile.from_dict(data)


def test_bad_inputs_table() -> None:
    # Every documented bad input raises the documented error, and docs/errors.md is the table
    # these calls produce now (regenerate: .venv/bin/python tests/bad_inputs.py > docs/errors.md).
    import bad_inputs

    for case in bad_inputs.CASES:
        error = bad_inputs.run(case)
        assert type(error) is case.error, (case.call, error)
        assert str(error).startswith(case.message), (case.call, str(error))
    page = Path(__file__).parent.parent / "docs" / "errors.md"
    assert page.read_text(encoding="utf-8") == bad_inputs.table()


def test_numpy_integers_are_accepted() -> None:
    args = (COSTS, ACCEPTANCE, [np.int64(0), np.int32(3)], [np.int64(2)])
    assert hierspec.evaluate(*args) == hierspec.evaluate(COSTS, ACCEPTANCE, [0, 3], [2])
    first = hierspec.simulate(*args, num_tokens=np.int64(50), seed=np.uint64(3))
    assert first == hierspec.simulate(COSTS, ACCEPTANCE, [0, 3], [2], num_tokens=50, seed=3)
    assert hierspec.plan(COSTS, ACCEPTANCE, np.int16(4)) == hierspec.plan(COSTS, ACCEPTANCE, 4)


def test_limits_are_one_constant() -> None:
    assert hierspec.planning.MAX_DRAFT_LENGTH == _core.MAX_DRAFT_LENGTH == 4096
    limit = hierspec.planning.MAX_DRAFT_LENGTH
    hierspec.evaluate(COSTS[:, :1], ACCEPTANCE, [3], [])  # the limit itself is accepted:
    assert hierspec.evaluate([1.0, 4.0], [[1, 0.5], [0, 1]], [0, 1], [limit]).latency > 0
    with pytest.raises(ValueError, match=re.escape(f"exceeds MAX_DRAFT_LENGTH = {limit}")):
        hierspec.evaluate([1.0, 4.0], [[1, 0.5], [0, 1]], [0, 1], [limit + 1])
    # the core's own message is the same for lengths that reach it
    with pytest.raises(ValueError, match=re.escape(f"exceeds MAX_DRAFT_LENGTH = {limit}")):
        _core.evaluate([1.0, 4.0], [[1, 0.5], [0, 1]], [0, 1], [limit + 1])


@pytest.mark.parametrize("call", ["plan", "brute_force_plan", "simulate"])
def test_long_calls_are_interruptible(call) -> None:
    # A signal handler that raises (as Ctrl-C's does) stops a call that would run for seconds
    # to hours; the call polls the handlers about every 50 ms. Hang detector, not a timing.
    import signal
    import time

    class Interrupted(Exception):
        pass

    def raise_interrupted(signum, frame):
        raise Interrupted

    acceptance = np.triu(np.full((8, 8), 0.7), 1) + np.eye(8)  # [8, 8]
    costs = np.arange(1.0, 9.0)  # [8]
    calls = {
        "plan": lambda: hierspec.plan(costs, acceptance, hierspec.planning.MAX_DRAFT_LENGTH),
        "brute_force_plan": lambda: hierspec.brute_force_plan(costs, acceptance, 64),
        "simulate": lambda: hierspec.simulate(
            costs, acceptance, [0, 6, 7], [4096, 4096], hierspec.planning.MAX_SIMULATED_TOKENS
        ),
    }
    previous = signal.signal(signal.SIGALRM, raise_interrupted)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        with pytest.raises(Interrupted):
            calls[call]()
        assert time.monotonic() - start < 5.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
