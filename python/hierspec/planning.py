"""Expected latency, simulation and the optimal hierarchy for hierarchical speculative decoding.

Everything here models the decoding policy of ``docs/policy.md`` (the contract the engine runs)
and is computed by the C++ core ``hierspec._core``; this module converts arguments and wraps
results in frozen dataclasses. All validation happens in C++ and surfaces as ``ValueError``
naming the argument and its value.

Terms:
    models      candidates ``0 .. M-1``, cheapest first; model ``M-1`` is the target.
    costs       cost of one forward pass: ``[M]`` (the same for any number of tokens) or
                ``[M, N]`` with ``costs[m, n-1]`` = a pass of model ``m`` over ``n`` tokens.
                Any unit (milliseconds in profiles); latencies come out in the same unit.
    acceptance  ``[M, M]``; ``acceptance[i, j]`` (``i < j``) = probability that model ``j``
                accepts one draft token of model ``i``. Entries with ``i >= j`` are ignored.
    chain       increasing model indices ending at the target; position ``l`` is level ``l``.
    draft_lengths ``[T_0, ..., T_{K-1}]``, one per level below the target (``[]`` for the target
                alone).
    latency     expected cost per committed token.

Cost tables in ``plan``: configurations that need a pass longer than the table covers are
skipped, never extrapolated, and ``Plan.limited_by_cost_table`` says so. A table with
``2 * max_draft_length`` columns (``max_draft_length + 1`` for two models) limits nothing;
1-D costs never limit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

from hierspec import _core

CostsLike = npt.ArrayLike | Sequence[float] | Sequence[Sequence[float]]
AcceptanceLike = npt.ArrayLike | Sequence[Sequence[float]]

__all__ = [
    "Evaluation",
    "Plan",
    "PlanEntry",
    "Profile",
    "SimulationResult",
    "brute_force_plan",
    "evaluate",
    "expected_latency",
    "load_profile",
    "plan",
    "simulate",
]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None``, recursively
    through dicts, lists and tuples: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: str | PathLike[str], value: Any) -> None:
    """Writes :func:`json_safe` ``value`` to ``path`` (one-space indent, creating the folder)."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(value), indent=1) + "\n", encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Exact expectations of a chain, per committed token (tuples are per level, 0 = bottom)."""

    latency: float
    passes_per_token: tuple[float, ...]
    tokens_per_token: tuple[float, ...]
    cost_per_token: tuple[float, ...]
    tokens_per_target_pass: float


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """Counts of a seeded Monte Carlo run of the policy, per committed token."""

    latency: float
    passes_per_token: tuple[float, ...]
    tokens_per_token: tuple[float, ...]
    cost_per_token: tuple[float, ...]
    tokens_per_target_pass: float
    num_tokens: int  # tokens committed (>= the number requested)
    num_target_passes: int


@dataclasses.dataclass(frozen=True)
class PlanEntry:
    """One configuration with its predicted latency.

    ``speedup_vs_single_draft`` is NaN when no single-draft configuration fits (one model, or a
    cost table with one column).
    """

    chain: tuple[int, ...]
    draft_lengths: tuple[int, ...]
    latency: float
    speedup: float  # target alone latency / latency
    speedup_vs_single_draft: float  # best single-draft latency / latency
    model_names: tuple[str, ...]  # names of the chain's models

    def describe(self) -> str:
        """``"a -> b -> target"`` with the draft lengths, e.g. ``"tiny -> small -> big  T=4,8"``."""
        sizes = ",".join(str(size) for size in self.draft_lengths)
        return " -> ".join(self.model_names) + (f"  T={sizes}" if sizes else "")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The latency-optimal configuration and its runners-up.

    ``alternatives`` (sorted by latency; ``alternatives[0]`` is the plan itself) holds, for each
    model directly below the target, the best configuration with that model there; for each
    draft its best single-draft configuration (when different); and the target alone.
    """

    chain: tuple[int, ...]
    draft_lengths: tuple[int, ...]
    latency: float
    speedup: float
    speedup_vs_single_draft: float
    target_latency: float
    alternatives: tuple[PlanEntry, ...]
    best_single_draft: PlanEntry | None
    model_names: tuple[str, ...]  # all candidates, index = model
    max_draft_length: int
    cost_table_columns: int
    columns_needed: int
    limited_by_cost_table: bool

    @property
    def best(self) -> PlanEntry:
        """The plan as a :class:`PlanEntry`."""
        return self.alternatives[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN speedups become ``None``)."""
        return json_safe(dataclasses.asdict(self))

    def format_table(self, unit: str = "") -> str:
        """The plan and its alternatives as a plain-text table."""
        suffix = f" {unit}" if unit else ""
        best = self.best
        lines = [
            f"best plan: {' -> '.join(best.model_names)}",
            f"  draft lengths: {list(best.draft_lengths)}",
            f"  predicted latency: {self.latency:.6g}{suffix} per token",
            f"  speedup over the target alone ({self.target_latency:.6g}{suffix}): "
            f"{self.speedup:.3f}x",
        ]
        if self.best_single_draft is not None:
            lines.append(
                f"  speedup over the best single draft ({self.best_single_draft.describe()}, "
                f"{self.best_single_draft.latency:.6g}{suffix}): "
                f"{self.speedup_vs_single_draft:.3f}x"
            )
        else:
            lines.append("  no single-draft configuration fits")
        if self.limited_by_cost_table:
            lines.append(
                f"  note: the cost table covers passes of up to {self.cost_table_columns} tokens;"
                f" configurations needing longer passes (up to {self.columns_needed} with"
                f" max_draft_length {self.max_draft_length}) were skipped"
            )
        header = ("rank", "chain", "draft lengths", f"latency{suffix}", "speedup", "vs single")
        rows = [
            (
                str(rank + 1),
                " -> ".join(entry.model_names),
                ",".join(str(size) for size in entry.draft_lengths) or "-",
                f"{entry.latency:.6g}",
                f"{entry.speedup:.3f}x",
                "-"
                if math.isnan(entry.speedup_vs_single_draft)
                else f"{entry.speedup_vs_single_draft:.3f}x",
            )
            for rank, entry in enumerate(self.alternatives)
        ]
        widths = [max(len(row[col]) for row in [header, *rows]) for col in range(len(header))]
        lines.append("")
        lines.append("alternatives:")
        for row in [header, *rows]:
            lines.append(
                ("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))).rstrip()
            )
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Profile:
    """A planning profile (format: ``docs/profile-format.md``).

    ``costs_ms`` is ``[M]`` (constant per pass) or ``[M][N]`` (a pass over ``n`` tokens at
    index ``n-1``), milliseconds; ``acceptance`` is ``[M][M]``; ``extra`` holds every other
    top-level key of the file (metadata written by the profiler).
    """

    model_names: tuple[str, ...]
    costs_ms: tuple[float, ...] | tuple[tuple[float, ...], ...]
    acceptance: tuple[tuple[float, ...], ...]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """Reads the JSON structure; ``ValueError`` naming the key for a malformed profile."""
        if not isinstance(data, dict):
            raise ValueError(f"profile must be a JSON object, got {type(data).__name__}")
        for key in ("models", "acceptance"):
            if key not in data:
                raise ValueError(f"profile has no {key!r} key (keys: {sorted(data)})")
        models = data["models"]
        if not isinstance(models, list) or not models:
            raise ValueError(f"profile 'models' must be a non-empty list, got {models!r}")
        names: list[str] = []
        costs: list[Any] = []
        for index, model in enumerate(models):
            if not isinstance(model, dict) or "name" not in model or "costs_ms" not in model:
                raise ValueError(
                    f"profile models[{index}] must be an object with 'name' and 'costs_ms', "
                    f"got {model!r}"
                )
            names.append(str(model["name"]))
            costs.append(model["costs_ms"])
        for index, cost in enumerate(costs):
            values = cost if isinstance(cost, list) else [cost]
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
                raise ValueError(
                    f"profile models[{index}].costs_ms = {cost!r} must be a number or a list of "
                    "numbers"
                )
        rows = data["acceptance"]
        if not isinstance(rows, list) or not all(
            isinstance(row, list)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row)
            for row in rows
        ):
            raise ValueError(
                f"profile 'acceptance' must be a list of lists of numbers, got {rows!r}"
            )
        widths = {len(cost) for cost in costs if isinstance(cost, list)}
        if len(widths) > 1:
            raise ValueError(
                f"profile models[*].costs_ms lists have different lengths {sorted(widths)}; "
                "all must cover the same pass lengths n = 1..N"
            )
        table: tuple[float, ...] | tuple[tuple[float, ...], ...]
        if widths:
            width = widths.pop()
            table = tuple(
                tuple(float(x) for x in cost) if isinstance(cost, list) else (float(cost),) * width
                for cost in costs
            )
        else:
            table = tuple(float(cost) for cost in costs)
        acceptance = tuple(tuple(float(x) for x in row) for row in rows)
        extra = {key: value for key, value in data.items() if key not in ("models", "acceptance")}
        return cls(tuple(names), table, acceptance, extra)

    def to_dict(self) -> dict[str, Any]:
        """The JSON structure of ``docs/profile-format.md``."""
        models = [
            {"name": name, "costs_ms": list(cost) if isinstance(cost, tuple) else cost}
            for name, cost in zip(self.model_names, self.costs_ms)
        ]
        return {
            "models": models,
            "acceptance": [list(row) for row in self.acceptance],
            **self.extra,
        }


def load_profile(path: str | PathLike[str]) -> Profile:
    """Reads a profile JSON file (``docs/profile-format.md``)."""
    with open(path, encoding="utf-8") as handle:
        return Profile.from_dict(json.load(handle))


def _costs_argument(costs: CostsLike) -> list[float] | list[list[float]]:
    try:
        array = np.asarray(costs, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"costs could not be read as a float array [M] or [M, N]: {error}"
        ) from None
    if array.ndim not in (1, 2):
        raise ValueError(
            f"costs must be 1-D [M] (a constant cost per pass) or 2-D [M, N], got shape "
            f"{array.shape}"
        )
    return array.tolist()


def _acceptance_argument(acceptance: AcceptanceLike) -> list[list[float]]:
    try:
        array = np.asarray(acceptance, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"acceptance could not be read as a float array [M, M]: {error}") from None
    if array.ndim != 2:
        raise ValueError(f"acceptance must be 2-D [M, M], got shape {array.shape}")
    return array.tolist()


def _ints_argument(values: Sequence[int], name: str) -> list[int]:
    try:
        return [operator.index(value) for value in values]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}") from None


def evaluate(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    chain: Sequence[int],
    draft_lengths: Sequence[int],
) -> Evaluation:
    """Exact expected latency and per-level counts of ``chain`` with ``draft_lengths``.

    costs ``[M]`` or ``[M, N]`` (``N`` must cover the chain's longest pass), acceptance
    ``[M, M]``, chain ``[K+1]``, draft_lengths ``[K]``.
    """
    result = _core.evaluate(
        _costs_argument(costs),
        _acceptance_argument(acceptance),
        _ints_argument(chain, "chain"),
        _ints_argument(draft_lengths, "draft_lengths"),
    )
    return Evaluation(
        latency=result.latency,
        passes_per_token=tuple(result.passes_per_token),
        tokens_per_token=tuple(result.tokens_per_token),
        cost_per_token=tuple(result.cost_per_token),
        tokens_per_target_pass=result.tokens_per_target_pass,
    )


def expected_latency(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    chain: Sequence[int],
    draft_lengths: Sequence[int],
) -> float:
    """Expected cost per committed token (``evaluate(...).latency``)."""
    return evaluate(costs, acceptance, chain, draft_lengths).latency


def simulate(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    chain: Sequence[int],
    draft_lengths: Sequence[int],
    num_tokens: int = 100_000,
    seed: int = 0,
) -> SimulationResult:
    """Seeded Monte Carlo of the policy until at least ``num_tokens`` tokens are committed.

    Same arguments as :func:`evaluate`; ``seed`` in ``[0, 2**64)`` seeds ``std::mt19937_64``
    (the same seed gives the same result).
    """
    seed = operator.index(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed = {seed} must be in [0, 2**64)")
    result = _core.simulate(
        _costs_argument(costs),
        _acceptance_argument(acceptance),
        _ints_argument(chain, "chain"),
        _ints_argument(draft_lengths, "draft_lengths"),
        operator.index(num_tokens),
        seed,
    )
    return SimulationResult(
        latency=result.latency,
        passes_per_token=tuple(result.passes_per_token),
        tokens_per_token=tuple(result.tokens_per_token),
        cost_per_token=tuple(result.cost_per_token),
        tokens_per_target_pass=result.tokens_per_target_pass,
        num_tokens=result.num_tokens,
        num_target_passes=result.num_target_passes,
    )


def _model_names(model_names: Sequence[str] | None, num_models: int) -> tuple[str, ...]:
    if model_names is None:
        return tuple(f"M{index}" for index in range(num_models))
    names = tuple(str(name) for name in model_names)
    if len(names) != num_models:
        raise ValueError(
            f"model_names has {len(names)} entries, acceptance has {num_models} models"
        )
    return names


def _plan_from_core(result: Any, names: tuple[str, ...]) -> Plan:
    def entry(core_entry: Any) -> PlanEntry:
        chain = tuple(core_entry.chain)
        return PlanEntry(
            chain=chain,
            draft_lengths=tuple(core_entry.draft_lengths),
            latency=core_entry.latency,
            speedup=core_entry.speedup,
            speedup_vs_single_draft=core_entry.speedup_vs_single_draft,
            model_names=tuple(names[model] for model in chain),
        )

    alternatives = tuple(entry(item) for item in result.alternatives)
    best = alternatives[0]
    single = result.best_single_draft
    return Plan(
        chain=best.chain,
        draft_lengths=best.draft_lengths,
        latency=best.latency,
        speedup=best.speedup,
        speedup_vs_single_draft=best.speedup_vs_single_draft,
        target_latency=result.target_latency,
        alternatives=alternatives,
        best_single_draft=None if single is None else entry(single),
        model_names=names,
        max_draft_length=result.max_draft_length,
        cost_table_columns=result.cost_table_columns,
        columns_needed=result.columns_needed,
        limited_by_cost_table=result.limited_by_cost_table,
    )


def plan(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    max_draft_length: int = 16,
    model_names: Sequence[str] | None = None,
) -> Plan:
    """The latency-optimal chain and draft lengths (each in ``1..max_draft_length``), exactly.

    Searches every subset of the candidates (the target always last) by the
    generalized-shortest-path dynamic program of ``docs/theory.md``; O(M^2 T^2) time.
    costs ``[M]`` or ``[M, N]``, acceptance ``[M, M]``, model_names ``[M]`` (default
    ``"M0".."M{M-1}"``).
    """
    costs_list = _costs_argument(costs)
    acceptance_list = _acceptance_argument(acceptance)
    names = _model_names(model_names, len(acceptance_list))
    result = _core.plan(costs_list, acceptance_list, operator.index(max_draft_length))
    return _plan_from_core(result, names)


def brute_force_plan(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    max_draft_length: int = 4,
    model_names: Sequence[str] | None = None,
) -> Plan:
    """The same result as :func:`plan` by exhaustive enumeration (exponential; for tests)."""
    costs_list = _costs_argument(costs)
    acceptance_list = _acceptance_argument(acceptance)
    names = _model_names(model_names, len(acceptance_list))
    result = _core.brute_force_plan(costs_list, acceptance_list, operator.index(max_draft_length))
    return _plan_from_core(result, names)
