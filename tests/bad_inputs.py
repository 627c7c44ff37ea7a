"""The bad inputs tried against the public API, and the error each gets.

One list, used twice: ``tests/test_core_errors.py::test_bad_inputs_table`` calls every case and
checks its exception type and message, and checks that ``docs/errors.md`` is exactly the table
this module prints. Regenerate the page after adding a case:

    .venv/bin/python tests/bad_inputs.py > docs/errors.md
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

import hierspec
from hierspec.sampling import SamplingConfig

ACCEPTANCE = [[1, 0.6, 0.4], [0, 1, 0.8], [0, 0, 1]]  # [3, 3]
COSTS = [1, 3, 10]  # [3]


class BadInput(NamedTuple):
    call: str  # Python source of the call, as shown in the table
    error: type[Exception]
    message: str  # the start of the error message (the table shows the whole of it)


def _profile(name: Any) -> dict[str, Any]:
    return {"models": [{"name": name, "costs_ms": 1.0}], "acceptance": [[1.0]]}


def _verify_logits(target_logits: torch.Tensor, temperature: float) -> Any:
    return hierspec.verify_logits(
        torch.tensor([[2]]), None, target_logits, temperature, torch.Generator().manual_seed(0)
    )


def _verify(draft_token_ids: list[list[int]], target_probs: torch.Tensor) -> Any:
    return hierspec.verify(
        torch.tensor(draft_token_ids), None, target_probs, torch.Generator().manual_seed(0)
    )


class ExitStatus(Exception):
    """A CLI call that exited with a non-zero status: ``"<status>: <stderr>"``."""


def _cli(*arguments: str, profile: dict[str, Any] | None = None) -> None:
    """``hierspec *arguments`` with ``P.json`` a temporary profile (``profile``, default the
    3-model profile of C and A); raises :class:`ExitStatus` when the status is not 0."""
    import contextlib
    import io
    import json
    import tempfile
    from pathlib import Path

    from hierspec.cli import main

    models = [{"name": name, "costs_ms": cost} for name, cost in zip("abc", COSTS)]
    data = profile if profile is not None else {"models": models, "acceptance": ACCEPTANCE}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "P.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = main(
                [str(path) if argument == "P.json" else argument for argument in arguments]
            )
    if status != 0:
        raise ExitStatus(f"{status}: {stderr.getvalue().strip()}")


def _markov_decoder(draft_lengths: list[int]) -> hierspec.HierarchicalDecoder:
    from hierspec.testing import markov_models

    models = markov_models(8, noise_scales=[1.0] * len(draft_lengths), seed=0)
    return hierspec.HierarchicalDecoder(list(models), draft_lengths)


def _broken_target(fill: float = math.nan, extra_columns: int = 0) -> Any:
    """``generate`` with the issue's reproducer: the target of ``synthetic_hierarchy([0.7], ...,
    seed=1)`` returns ``fill`` everywhere (or ``extra_columns`` more logit columns)."""
    from hierspec.testing import AffineCost, synthetic_hierarchy

    models = synthetic_hierarchy([0.7], [AffineCost(1e-3)] * 2, seed=1).models
    append = models[-1].append

    def broken(token_ids: torch.Tensor) -> torch.Tensor:
        logits = append(token_ids)
        if extra_columns:
            return torch.cat([logits, logits[..., :extra_columns]], dim=-1)
        return torch.full_like(logits, fill)

    models[-1].append = broken  # type: ignore[method-assign]
    decoder = hierspec.HierarchicalDecoder(list(models), [2])
    return decoder.generate(torch.tensor([[8, 9]]), max_new_tokens=6, seed=0)


def _gpt2(n_positions: int) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=32, n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


NAMESPACE: dict[str, Any] = {
    "hierspec": hierspec,
    "np": np,
    "torch": torch,
    "math": math,
    "A": ACCEPTANCE,
    "C": COSTS,
    "SamplingConfig": SamplingConfig,
    "profile": _profile,
    "verify_logits": _verify_logits,
    "verify": _verify,
    "uniform": torch.full((1, 2, 8), 0.125),  # [batch=1, 2 positions, vocab=8]
    "cli": _cli,
    "markov_decoder": _markov_decoder,
    "broken_target": _broken_target,
    "gpt2": _gpt2,
}

CASES: list[BadInput] = [
    # Unbounded work: now refused up front (the limits are MAX_DRAFT_LENGTH, MAX_SIMULATED_TOKENS)
    BadInput("hierspec.plan(C, A, 10**6)", ValueError, "max_draft_length = 1000000 must be in"),
    BadInput(
        "hierspec.evaluate(C, A, [0, 1, 2], [2**20, 2**20])",
        ValueError,
        "draft_lengths[0] = 1048576 exceeds MAX_DRAFT_LENGTH",
    ),
    BadInput(
        "hierspec.simulate(C, A, [0, 2], [4], num_tokens=10**15)",
        ValueError,
        "num_tokens = 1000000000000000 exceeds MAX_SIMULATED_TOKENS",
    ),
    # Early stopping of the bottom level
    BadInput(
        "hierspec.plan(C, A, continue_rates=[1, 1.5, 1])",
        ValueError,
        "continue_rates[1] = 1.5 is outside [0, 1]",
    ),
    BadInput(
        "hierspec.evaluate(C, A, [0, 2], [4], bottom_acceptance=[[1, 2], [0, 1]])",
        ValueError,
        "bottom_acceptance must have shape (3, 3)",
    ),
    BadInput(
        "hierspec.HierarchicalDecoder(markov_decoder([2]).levels, [2], min_draft_confidence=1)",
        ValueError,
        "min_draft_confidence must be in [0, 1), got 1",
    ),
    BadInput(
        "hierspec.HierarchicalDecoder(markov_decoder([2]).levels, [2], timer=5)",
        TypeError,
        "timer must be a callable returning seconds, got 5",
    ),
    BadInput(
        "hierspec.profiler.ProfilerConfig(stop_thresholds=(0.5, 1.0))",
        ValueError,
        "stop_thresholds entries must be numbers in (0, 1), got 1.0",
    ),
    BadInput(
        "hierspec.profiler.ProfilerConfig(cost_fit='linear')",
        ValueError,
        "cost_fit must be one of ('nondecreasing', 'none'), got 'linear'",
    ),
    BadInput(
        "hierspec.profiler.nondecreasing_fit([3.0, 1.0], weights=[1.0, 0.0])",
        ValueError,
        "weights must be 2 positive finite numbers, got [1.0, 0.0]",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(learn_costs='yes')",
        TypeError,
        "learn_costs must be a bool, got 'yes'",
    ),
    BadInput(
        "hierspec.adaptive.AcceptanceEstimator([[1, 0.5], [0, 1]], 4, 0.95).estimates("
        "shifts=[[0.1, 2.0]])",
        ValueError,
        "shifts must be a finite [2, 2] array (AcceptanceEstimator.drafter_shifts), got "
        "[[0.1, 2.0]]",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(pool_costs='yes')",
        TypeError,
        "pool_costs must be a bool, got 'yes'",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(learn_overhead=0)",
        TypeError,
        "learn_overhead must be a bool, got 0",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(calibrate=1)",
        TypeError,
        "calibrate must be a bool, got 1",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(continue_prior_strength=-1)",
        ValueError,
        "continue_prior_strength must be > 0, got -1",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(switch_pessimism=-0.5)",
        ValueError,
        "switch_pessimism must be >= 0, got -0.5",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(shadow_max_cost=1.5)",
        ValueError,
        "shadow_max_cost must be in [0, 1], got 1.5",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(fallback_min_gain=-0.01)",
        ValueError,
        "fallback_min_gain must be >= 0, got -0.01",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(replan_interval=4, max_replan_interval=2)",
        ValueError,
        "max_replan_interval must be >= replan_interval (4), got 2",
    ),
    BadInput(
        "hierspec.adaptive.AdaptiveConfig(change_rate=1.0)",
        ValueError,
        "change_rate must be in [0, 1), got 1.0",
    ),
    BadInput(
        "cli('generate', '--prompt', 'Hi', '--no-adaptive', '--min-draft-confidence', '0.5')",
        ExitStatus,
        "2: hierspec generate: error: --min-draft-confidence 0.5 needs the adaptive decoder",
    ),
    # Integers beyond a C int / int64
    BadInput("hierspec.plan(C, A, max_draft_length=2**31)", ValueError, "max_draft_length = 2"),
    BadInput(
        "hierspec.evaluate(C, A, [0, 2**40], [2])",
        ValueError,
        "chain[1] = 1099511627776 is not a model index in [0, 2]",
    ),
    BadInput(
        "hierspec.simulate(C, A, [0, 2], [4], num_tokens=2**63)",
        ValueError,
        "num_tokens = 9223372036854775808 exceeds",
    ),
    BadInput("hierspec.simulate(C, A, [0, 2], [4], seed=2**64)", ValueError, "seed = "),
    # Wrong types, once accepted quietly
    BadInput("hierspec.plan(['1', '3', '10'], A)", TypeError, "costs[0] must hold numbers"),
    BadInput("hierspec.plan([1, True, 10], A)", TypeError, "costs[1] must hold numbers"),
    BadInput("hierspec.plan(C, A, max_draft_length=True)", TypeError, "max_draft_length must be"),
    BadInput("hierspec.plan(C, A, model_names='abc')", TypeError, "model_names must be a sequence"),
    BadInput("hierspec.plan(C, A, model_names=['a', None, 'c'])", TypeError, "model_names[1]"),
    BadInput("hierspec.plan(C, A, model_names=['a', '', 'c'])", ValueError, "model_names[1]"),
    BadInput(
        "hierspec.Profile.from_dict(profile(['a']))",
        ValueError,
        "profile models[0].name must be a non-empty string",
    ),
    BadInput(
        "hierspec.Profile.from_dict(profile(None))",
        ValueError,
        "profile models[0].name must be a non-empty string",
    ),
    BadInput("hierspec.evaluate(C, A, [0.5, 2], [2])", TypeError, "chain must be a sequence"),
    BadInput("hierspec.evaluate(C, A, [0, 2], '2')", TypeError, "draft_lengths must be a"),
    # Values the core checks
    BadInput("hierspec.plan(C, [[1, 1.5, 0], [0, 1, 0], [0, 0, 1]])", ValueError, "acceptance[0]"),
    BadInput("hierspec.plan([1, -3, 10], A)", ValueError, "costs[1] = -3 is negative"),
    BadInput("hierspec.plan([1, math.nan, 10], A)", ValueError, "costs[1] = nan is not a number"),
    # Sampling and verification
    BadInput("SamplingConfig(temperature=1e-40)", ValueError, "temperature must be 0 (greedy)"),
    BadInput(
        "verify_logits(torch.tensor([[[0.0, 0.0, 1.0]] * 2]), 1e-40)",
        ValueError,
        "temperature must be 0 (greedy)",
    ),
    BadInput("verify([[8]], uniform)", ValueError, "draft_token_ids must be in [0, vocab=8)"),
    BadInput(
        "verify([[1]], torch.full((1, 2, 8), math.nan))",
        ValueError,
        "target_probs must be finite and >= 0",
    ),
    BadInput(
        "verify([[1]], torch.zeros((1, 2, 8)))", ValueError, "target_probs[0, 0] is 0 everywhere"
    ),
    # The engine (HierarchicalDecoder): broken levels and extreme arguments
    BadInput("broken_target(math.nan)", hierspec.NonDistributionError, "level 1 of the chain"),
    BadInput("broken_target(-math.inf)", hierspec.NonDistributionError, "level 1 of the chain"),
    BadInput("broken_target(extra_columns=1)", ValueError, "level 1 of the chain"),
    BadInput(
        "markov_decoder([10**7])", ValueError, "draft_lengths[0] = 10000000 exceeds MAX_DRAFT"
    ),
    BadInput(
        "markov_decoder([2]).generate(torch.tensor([[1]]), seed=np.bool_(True))",
        TypeError,
        "seed must be an int or None",
    ),
    BadInput(
        "hierspec.HierarchicalDecoder([gpt2(16)], []).generate(torch.tensor([[1, 2, 3]]), 20)",
        ValueError,
        "models[0] (TransformersLevel(GPT2LMHeadModel",
    ),
    # The command line: exit status 2 and one line, no traceback
    BadInput(
        "cli('plan', 'P.json', '--max-draft-length', '99999999999')",
        ExitStatus,
        "2: hierspec plan: error: max_draft_length = 99999999999",
    ),
    BadInput(
        "cli('plan', 'P.json', profile={'models': [{'name': 'a', 'costs_ms': 1},"
        " {'name': 'b', 'costs_ms': 9}], 'acceptance': A})",
        ExitStatus,
        "2: hierspec plan: error: profile has 2 models",
    ),
    BadInput(
        "cli('profile', 'm', '--out', 'P.json', '--threads', '99999999999')",
        ExitStatus,
        "2: hierspec profile: error: --threads must be <= 1024",
    ),
]


def run(case: BadInput) -> Exception:
    """The exception ``case.call`` raises; AssertionError when it raises none."""
    call: Callable[[], Any] = eval(f"lambda: {case.call}", NAMESPACE)
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError(f"{case.call} raised nothing")


def table() -> str:
    """``docs/errors.md``: every case, its exception and its full message."""
    lines = [
        "# Bad inputs and their errors",
        "",
        "Generated by `tests/bad_inputs.py` (`.venv/bin/python tests/bad_inputs.py >"
        " docs/errors.md`) and checked by `tests/test_core_errors.py::test_bad_inputs_table`:"
        " every row is a call that was run and the error it raised. In the calls, `C = [1, 3, 10]`"
        " (costs), `A = [[1, .6, .4], [0, 1, .8], [0, 0, 1]]` (acceptance), `uniform` is"
        " `[1, 2, 8]` probabilities of 1/8, and `verify` / `verify_logits` take draft ids"
        " (default `[[2]]`), the target and a seeded generator. Engine rows:"
        " `broken_target(fill)` is the generate call of the issue's reproducer (the target of"
        " `synthetic_hierarchy([0.7], ..., seed=1)` returning `fill` everywhere, or extra logit"
        " columns), `markov_decoder(draft_lengths)` a decoder over `markov_models(8, ...)`,"
        " `gpt2(n)` a tiny GPT-2 with `n_positions=n`. `cli(...)` runs the command line with"
        " `P.json` a temporary profile and raises `ExitStatus` with the status and stderr when the"
        " status is not 0. A drafter whose rows are not distributions is not an error (its"
        " drafts are always rejected): it gets one `RuntimeWarning` per generate call. Long calls"
        " (`plan`,"
        " `brute_force_plan`, `simulate`) are also interruptible: Ctrl-C raises"
        " `KeyboardInterrupt` within about 50 ms.",
        "",
        "| call | error | message |",
        "| --- | --- | --- |",
    ]
    for case in CASES:
        error = run(case)
        message = str(error).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{case.call}` | `{type(error).__name__}` | {message} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
