"""Expected latency, simulation and the optimal hierarchy for hierarchical speculative decoding.

Everything here models the decoding policy of ``docs/policy.md`` (the contract the engine runs)
and is computed by the C++ core ``hierspec._core``; this module converts arguments and wraps
results in frozen dataclasses. Values are validated in C++ and surface as ``ValueError`` naming
the argument and its value; this module rejects what cannot reach C++ faithfully first: wrong
types (strings, bools, ``None`` where numbers are expected: ``TypeError``) and integers outside
the core's ranges (``ValueError``). ``docs/errors.md`` lists the bad inputs tried and their errors.

Limits (one limit, one message, shared with the engine): every draft length and
``max_draft_length`` is in ``[1, MAX_DRAFT_LENGTH]`` (4096); ``simulate``'s ``num_tokens`` is in
``[1, MAX_SIMULATED_TOKENS]`` (10**7, about a second for short draft lengths). Complexity:
``plan`` is O(M^2 T^2) time for ``M`` candidates and ``T = max_draft_length`` (about 0.4 s for
M = 3, T = 4096 on one CPU core);
``evaluate`` O(K T^2) for ``K`` draft levels; ``simulate`` O(num_tokens x work per token).
``plan``, ``brute_force_plan`` and ``simulate`` release the GIL and are interruptible: Ctrl-C
raises ``KeyboardInterrupt`` within about 50 ms.

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
``2 * max_draft_length + 1`` columns (``max_draft_length + 1`` for two models) limits nothing;
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
from hierspec.io import json_safe

MAX_DRAFT_LENGTH: int = _core.MAX_DRAFT_LENGTH
"""Largest draft length (and ``max_draft_length``) accepted anywhere: planner, evaluator,
simulator and engine (the C++ core's ``kMaxDraftLength``)."""
MAX_SIMULATED_TOKENS: int = _core.MAX_SIMULATED_TOKENS
"""Largest ``num_tokens`` accepted by :func:`simulate`."""

CostsLike = npt.ArrayLike | Sequence[float] | Sequence[Sequence[float]]
AcceptanceLike = npt.ArrayLike | Sequence[Sequence[float]]

__all__ = [
    "EarlyStoppingRates",
    "MAX_DRAFT_LENGTH",
    "MAX_SIMULATED_TOKENS",
    "Evaluation",
    "Plan",
    "PlanEntry",
    "Profile",
    "RequestPlan",
    "SimulationResult",
    "brute_force_plan",
    "choose_min_draft_confidence",
    "evaluate",
    "expected_latency",
    "forward_cost_rows",
    "has_prefill_costs",
    "load_profile",
    "nondecreasing_fit",
    "pass_cost",
    "plan",
    "plan_for_prompt",
    "plan_request",
    "prefill_costs",
    "prompt_prefill_costs",
    "simulate",
]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Exact expectations of a chain, per committed token (tuples are per level, 0 = bottom)."""

    latency: float
    passes_per_token: tuple[float, ...]
    tokens_per_token: tuple[float, ...]
    cost_per_token: tuple[float, ...]
    tokens_per_target_pass: float
    # P(a target cycle starts in the bonus state): the previous target pass accepted every
    # draft, so each level below it has one more pending token (docs/policy.md rule 4; 0 for
    # chains of 1 or 2 models).
    bonus_state_probability: float = 0.0


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
class EarlyStoppingRates:
    """The bottom level's early stopping at one confidence threshold (profile key
    ``early_stopping``): per model the rate at which it drafts at a checked position
    (``continue_rates`` ``[M]``) and per pair the acceptance of the drafts it makes
    (``bottom_acceptance`` ``[M][M]``), as :func:`evaluate` takes them."""

    min_draft_confidence: float
    continue_rates: tuple[float, ...]
    bottom_acceptance: tuple[tuple[float, ...], ...]


def is_stop_threshold(value: object) -> bool:
    """Whether ``value`` can be an early-stopping threshold measured by the profiler: a number
    (not a bool) in ``(0, 1)`` (0 is no stopping, which needs no measurement)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0.0 < value < 1.0


def _early_stopping_table(value: Any, num_models: int) -> tuple[EarlyStoppingRates, ...]:
    """The profile's ``early_stopping`` list, validated (errors name ``early_stopping[k]``)."""
    if not isinstance(value, list):
        raise ValueError(f"profile 'early_stopping' must be a list of objects, got {value!r}")
    entries = []
    for index, entry in enumerate(value):
        name = f"early_stopping[{index}]"
        keys = ("min_draft_confidence", "continue_rates", "bottom_acceptance")
        if not isinstance(entry, dict) or any(key not in entry for key in keys):
            raise ValueError(f"profile {name} must be an object with keys {keys}, got {entry!r}")
        threshold = entry["min_draft_confidence"]
        if not is_stop_threshold(threshold):
            raise ValueError(
                f"profile {name}.min_draft_confidence must be a number in (0, 1), got {threshold!r}"
            )
        try:
            rates = _early_stopping_arguments(
                entry["continue_rates"], entry["bottom_acceptance"], num_models
            )
        except (TypeError, ValueError) as error:
            raise type(error)(f"profile {name}: {error}") from None
        entries.append(
            EarlyStoppingRates(
                float(threshold),
                tuple(rates["continue_rates"]),
                tuple(tuple(row) for row in rates["bottom_acceptance"]),
            )
        )
    thresholds = [entry.min_draft_confidence for entry in entries]
    if thresholds != sorted(set(thresholds)):
        raise ValueError(
            f"profile early_stopping thresholds must increase strictly, got {thresholds}"
        )
    return tuple(entries)


@dataclasses.dataclass(frozen=True)
class Profile:
    """A planning profile (format: ``docs/profile-format.md``).

    ``costs_ms`` is ``[M]`` (constant per pass) or ``[M][N]`` (a pass over ``n`` tokens at
    index ``n-1``), milliseconds; ``acceptance`` is ``[M][M]``; ``continue_rates`` ``[M]`` and
    ``bottom_acceptance`` ``[M][M]`` (optional) describe the bottom level's early stopping as in
    :func:`evaluate`; ``early_stopping`` (optional, written by the profiler) holds the same two
    measured at several confidence thresholds (:class:`EarlyStoppingRates`, by increasing
    threshold; :meth:`stopping_rates`, :func:`choose_min_draft_confidence`); ``extra`` holds
    every other top-level key of the file (metadata written by the profiler).
    """

    model_names: tuple[str, ...]
    costs_ms: tuple[float, ...] | tuple[tuple[float, ...], ...]
    acceptance: tuple[tuple[float, ...], ...]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    continue_rates: tuple[float, ...] | None = None
    bottom_acceptance: tuple[tuple[float, ...], ...] | None = None
    early_stopping: tuple[EarlyStoppingRates, ...] | None = None

    def stopping_rates(self, min_draft_confidence: float) -> dict[str, Any]:
        """The ``continue_rates`` / ``bottom_acceptance`` keywords of :func:`plan` and
        :func:`evaluate` for a bottom level that stops below ``min_draft_confidence``.

        0 (no early stopping): both ``None``. Otherwise the :attr:`early_stopping` entry measured
        at that threshold, else the profile's top-level ``continue_rates`` /
        ``bottom_acceptance`` (``None`` where the profile has none).
        """
        if min_draft_confidence == 0.0:
            return {"continue_rates": None, "bottom_acceptance": None}
        for entry in self.early_stopping or ():
            if entry.min_draft_confidence == min_draft_confidence:
                return {
                    "continue_rates": entry.continue_rates,
                    "bottom_acceptance": entry.bottom_acceptance,
                }
        return {"continue_rates": self.continue_rates, "bottom_acceptance": self.bottom_acceptance}

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
            name = model["name"]
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"profile models[{index}].name must be a non-empty string, got {name!r}"
                )
            if name in names:
                raise ValueError(
                    f"profile models[{index}].name {name!r} repeats models[{names.index(name)}]"
                    ".name; names identify the models"
                )
            names.append(name)
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
        if len(rows) != len(names) or any(len(row) != len(names) for row in rows):
            lengths = sorted({len(row) for row in rows})
            shape = (
                f"{len(rows)} x {lengths[0]}"
                if len(lengths) == 1
                else f"{len(rows)} rows of lengths {lengths}"
            )
            raise ValueError(
                f"profile has {len(names)} models {names} but its 'acceptance' is {shape}; it "
                f"must be {len(names)} x {len(names)} (one row and one column per model)"
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
        optional = ("continue_rates", "bottom_acceptance", "early_stopping")
        stopping = _early_stopping_arguments(
            data.get("continue_rates"), data.get("bottom_acceptance"), len(names)
        )  # validated: ValueError / TypeError naming the key
        stopping_table = None
        if data.get("early_stopping") is not None:
            stopping_table = _early_stopping_table(data["early_stopping"], len(names))
        extra = {
            key: value
            for key, value in data.items()
            if key not in ("models", "acceptance", *optional)
        }
        return cls(
            tuple(names),
            table,
            acceptance,
            extra,
            continue_rates=tuple(stopping["continue_rates"]) or None,
            bottom_acceptance=tuple(tuple(row) for row in stopping["bottom_acceptance"]) or None,
            early_stopping=stopping_table,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON structure of ``docs/profile-format.md``."""
        models = [
            {"name": name, "costs_ms": list(cost) if isinstance(cost, tuple) else cost}
            for name, cost in zip(self.model_names, self.costs_ms)
        ]
        optional: dict[str, Any] = {}
        if self.continue_rates is not None:
            optional["continue_rates"] = list(self.continue_rates)
        if self.bottom_acceptance is not None:
            optional["bottom_acceptance"] = [list(row) for row in self.bottom_acceptance]
        if self.early_stopping is not None:
            optional["early_stopping"] = [
                {
                    "min_draft_confidence": entry.min_draft_confidence,
                    "continue_rates": list(entry.continue_rates),
                    "bottom_acceptance": [list(row) for row in entry.bottom_acceptance],
                }
                for entry in self.early_stopping
            ]
        return {
            "models": models,
            "acceptance": [list(row) for row in self.acceptance],
            **optional,
            **self.extra,
        }


def load_profile(path: str | PathLike[str]) -> Profile:
    """Reads a profile JSON file (``docs/profile-format.md``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Profile

    Raises
    ------
    ValueError
        A malformed profile, naming the key (e.g. ``models[1].name``).
    """
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"profile {str(path)!r} is not valid JSON: {error}") from None
    return Profile.from_dict(data)


_C_INT_MIN, _C_INT_MAX = -(2**31), 2**31 - 1


def _reject_non_numbers(value: Any, name: str) -> None:
    """``TypeError`` for a string, bytes, bool or ``None`` anywhere in nested lists / tuples
    (numpy would silently read ``"1"`` as 1.0 and ``True`` as 1.0)."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
        raise TypeError(f"{name} must hold numbers; got {value!r}")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _reject_non_numbers(item, f"{name}[{index}]")


def _float_array(value: Any, name: str, shape: str) -> np.ndarray:
    _reject_non_numbers(value, name)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} could not be read as a float array {shape}: {error}") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold numbers {shape}; got an array of dtype {array.dtype}")
    return array.astype(np.float64)


def _costs_argument(costs: CostsLike) -> list[float] | list[list[float]]:
    array = _float_array(costs, "costs", "[M] or [M, N]")
    if array.ndim not in (1, 2):
        raise ValueError(
            f"costs must be 1-D [M] (a constant cost per pass) or 2-D [M, N], got shape "
            f"{array.shape}"
        )
    return array.tolist()


def _acceptance_argument(acceptance: AcceptanceLike) -> list[list[float]]:
    array = _float_array(acceptance, "acceptance", "[M, M]")
    if array.ndim != 2:
        raise ValueError(f"acceptance must be 2-D [M, M], got shape {array.shape}")
    return array.tolist()


def _early_stopping_arguments(
    continue_rates: Sequence[float] | None,
    bottom_acceptance: AcceptanceLike | None,
    num_models: int,
) -> dict[str, Any]:
    """The core's ``continue_rates`` / ``bottom_acceptance`` keywords (empty lists for None),
    checked here so that messages name the Python arguments."""
    rates: list[float] = []
    if continue_rates is not None:
        array = _float_array(continue_rates, "continue_rates", "[M]")
        if array.shape != (num_models,):
            raise ValueError(
                f"continue_rates must have shape ({num_models},) (one rate per model), got "
                f"{array.shape}"
            )
        for model, rate in enumerate(array.tolist()):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"continue_rates[{model}] = {rate} is outside [0, 1]")
        rates = array.tolist()
    matrix: list[list[float]] = []
    if bottom_acceptance is not None:
        array = _float_array(bottom_acceptance, "bottom_acceptance", "[M, M]")
        if array.shape != (num_models, num_models):
            raise ValueError(
                f"bottom_acceptance must have shape ({num_models}, {num_models}) like "
                f"acceptance, got {array.shape}"
            )
        for drafter in range(num_models):
            for verifier in range(drafter + 1, num_models):
                rate = float(array[drafter, verifier])
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(
                        f"bottom_acceptance[{drafter}][{verifier}] = {rate} is outside [0, 1]"
                    )
        matrix = array.tolist()
    return {"continue_rates": rates, "bottom_acceptance": matrix}


def _int_argument(value: Any, name: str) -> int:
    """``operator.index(value)`` (Python and numpy ints); ``TypeError`` naming ``name`` for
    anything else, bools included."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int; got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int; got {value!r}") from None


def _ints_argument(values: Sequence[int], name: str) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}")
    try:
        return [_int_argument(value, f"{name}[{index}]") for index, value in enumerate(values)]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}") from None


def _chain_argument(chain: Sequence[int], num_models: int) -> list[int]:
    """Model indices; an index beyond a C int gets the core's message for a bad index."""
    values = _ints_argument(chain, "chain")
    for level, model in enumerate(values):
        if not _C_INT_MIN <= model <= _C_INT_MAX:
            raise ValueError(
                f"chain[{level}] = {model} is not a model index in [0, {num_models - 1}]"
            )
    return values


def _draft_lengths_argument(draft_lengths: Sequence[int]) -> list[int]:
    """Draft lengths; one beyond a C int gets the core's message for its side of the range."""
    values = _ints_argument(draft_lengths, "draft_lengths")
    for level, length in enumerate(values):
        if length > MAX_DRAFT_LENGTH:
            raise ValueError(
                f"draft_lengths[{level}] = {length} exceeds MAX_DRAFT_LENGTH = {MAX_DRAFT_LENGTH}"
            )
        if length < 1:
            raise ValueError(f"draft_lengths[{level}] = {length} must be >= 1")
    return values


def _max_draft_length_argument(max_draft_length: int) -> int:
    value = _int_argument(max_draft_length, "max_draft_length")
    if not 1 <= value <= MAX_DRAFT_LENGTH:
        raise ValueError(
            f"max_draft_length = {value} must be in [1, {MAX_DRAFT_LENGTH}] (MAX_DRAFT_LENGTH)"
        )
    return value


def evaluate(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    chain: Sequence[int],
    draft_lengths: Sequence[int],
    continue_rates: Sequence[float] | None = None,
    bottom_acceptance: AcceptanceLike | None = None,
) -> Evaluation:
    """Exact expected latency and per-level counts of ``chain`` with ``draft_lengths``.

    Parameters
    ----------
    costs : array_like, shape ``[M]`` or ``[M, N]``, float
        Cost of one forward pass per model (``[M]``: whatever the number of tokens) or per
        model and pass length ``n = 1..N`` (``N`` must cover the chain's longest pass).
    acceptance : array_like, shape ``[M, M]``, float in ``[0, 1]`` above the diagonal
    chain : sequence of int, length ``K + 1``
        Increasing model indices ending at the target ``M - 1``.
    draft_lengths : sequence of int, length ``K``
        ``[T_0, ..., T_{K-1}]``, each in ``[1, MAX_DRAFT_LENGTH]``.
    continue_rates : array_like, shape ``[M]``, float in ``[0, 1]``, optional
        Early stopping of the bottom level (``docs/policy.md`` rule 1): the probability that
        model ``m``, as level 0, drafts at each of its positions rather than stopping its batch.
        Default: 1 for every model (level 0 always drafts ``T_0`` tokens).
    bottom_acceptance : array_like, shape ``[M, M]``, optional
        Acceptance of model ``m``'s drafts when ``m`` is level 0 (the drafts it was confident
        enough to hand up). Default: ``acceptance``.

    Returns
    -------
    Evaluation
        Latency per committed token and per-level tuples of length ``K + 1``.

    Raises
    ------
    TypeError
        A non-numeric cost / acceptance entry (strings, bools, ``None``) or a non-int index.
    ValueError
        Any value out of range, naming the argument and the value. O(K T^2) time.

    Examples
    --------
    >>> import hierspec
    >>> acceptance = [[1, 0.6, 0.4], [0, 1, 0.8], [0, 0, 1]]
    >>> result = hierspec.evaluate([1, 3, 10], acceptance, chain=[1, 2], draft_lengths=[3])
    >>> round(result.latency, 4), round(result.tokens_per_target_pass, 4)
    (6.4363, 2.952)
    >>> len(result.passes_per_token)  # one entry per level: the draft, the target
    2
    >>> stopping = hierspec.evaluate(  # the draft stops early at 30% of its positions
    ...     [1, 3, 10], acceptance, [1, 2], [3], continue_rates=[1, 0.7, 1],
    ...     bottom_acceptance=[[1, 0.6, 0.4], [0, 1, 0.9], [0, 0, 1]])
    >>> round(stopping.latency, 4), round(stopping.tokens_per_target_pass, 4)
    (7.2773, 2.2769)
    """
    acceptance_list = _acceptance_argument(acceptance)
    num_models = len(acceptance_list)
    result = _core.evaluate(
        _costs_argument(costs),
        acceptance_list,
        _chain_argument(chain, num_models),
        _draft_lengths_argument(draft_lengths),
        **_early_stopping_arguments(continue_rates, bottom_acceptance, num_models),
    )
    return Evaluation(
        latency=result.latency,
        passes_per_token=tuple(result.passes_per_token),
        tokens_per_token=tuple(result.tokens_per_token),
        cost_per_token=tuple(result.cost_per_token),
        tokens_per_target_pass=result.tokens_per_target_pass,
        bonus_state_probability=result.bonus_state_probability,
    )


def _evaluate_lists(
    costs: list,
    acceptance: list[list[float]],
    chain: list[int],
    draft_lengths: list[int],
    continue_rates: list[float] | None = None,
    bottom_acceptance: list[list[float]] | None = None,
) -> Any:
    """The core's evaluation (``latency``, ``tokens_per_target_pass``, ...) for arguments that
    are already plain lists of checked values (``None``: no early stopping): no Python-side
    checks or conversions (the core still refuses what it cannot evaluate). For the
    replanner, which prices some 15 configurations per decision from arrays it built itself;
    everyone else calls :func:`evaluate`."""
    return _core.evaluate(
        costs,
        acceptance,
        chain,
        draft_lengths,
        continue_rates=continue_rates or [],
        bottom_acceptance=bottom_acceptance or [],
    )


def expected_latency(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    chain: Sequence[int],
    draft_lengths: Sequence[int],
    continue_rates: Sequence[float] | None = None,
    bottom_acceptance: AcceptanceLike | None = None,
) -> float:
    """Expected cost per committed token: ``evaluate(...).latency`` (same arguments).

    Returns
    -------
    float
        In the unit of ``costs``.
    """
    return evaluate(
        costs, acceptance, chain, draft_lengths, continue_rates, bottom_acceptance
    ).latency


def simulate(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    chain: Sequence[int],
    draft_lengths: Sequence[int],
    num_tokens: int = 100_000,
    seed: int = 0,
    continue_rates: Sequence[float] | None = None,
    bottom_acceptance: AcceptanceLike | None = None,
) -> SimulationResult:
    """Seeded Monte Carlo of the policy until at least ``num_tokens`` tokens are committed.

    Parameters
    ----------
    costs, acceptance, chain, draft_lengths, continue_rates, bottom_acceptance
        As in :func:`evaluate`.
    num_tokens : int
        In ``[1, MAX_SIMULATED_TOKENS]``; the run stops after the first target pass reaching it.
    seed : int
        In ``[0, 2**64)`` (Python or numpy int); seeds ``std::mt19937_64``, so the same seed
        gives the same result on every platform.

    Returns
    -------
    SimulationResult
        Per-committed-token counts; agrees with :func:`evaluate` up to Monte Carlo error.

    Notes
    -----
    Releases the GIL; Ctrl-C raises ``KeyboardInterrupt`` within about 50 ms.
    """
    seed = _int_argument(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed = {seed} must be in [0, 2**64)")
    num_tokens = _int_argument(num_tokens, "num_tokens")
    if num_tokens < 1:
        raise ValueError(f"num_tokens = {num_tokens} must be >= 1")
    if num_tokens > MAX_SIMULATED_TOKENS:
        raise ValueError(
            f"num_tokens = {num_tokens} exceeds MAX_SIMULATED_TOKENS = {MAX_SIMULATED_TOKENS}"
        )
    acceptance_list = _acceptance_argument(acceptance)
    num_models = len(acceptance_list)
    result = _core.simulate(
        _costs_argument(costs),
        acceptance_list,
        _chain_argument(chain, num_models),
        _draft_lengths_argument(draft_lengths),
        num_tokens,
        seed,
        **_early_stopping_arguments(continue_rates, bottom_acceptance, num_models),
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
    if isinstance(model_names, (str, bytes)) or not isinstance(model_names, Sequence):
        raise TypeError(
            f"model_names must be a sequence of strings (one per model) or None; got "
            f"{model_names!r}"
        )
    names = tuple(model_names)
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"model_names[{index}] must be a str; got {name!r}")
        if not name:
            raise ValueError(f"model_names[{index}] is empty; every model needs a name")
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
    continue_rates: Sequence[float] | None = None,
    bottom_acceptance: AcceptanceLike | None = None,
) -> Plan:
    """The latency-optimal chain and draft lengths (each in ``1..max_draft_length``), exactly.

    Searches every subset of the candidates (the target always last) by the
    generalized-shortest-path dynamic program of ``docs/theory.md`` §6.

    Parameters
    ----------
    costs : array_like, shape ``[M]`` or ``[M, N]``, float
        As in :func:`evaluate`; configurations needing passes longer than ``N`` are skipped
        (``Plan.limited_by_cost_table``).
    acceptance : array_like, shape ``[M, M]``
    max_draft_length : int
        The search bound ``T`` on every draft length, in ``[1, MAX_DRAFT_LENGTH]``.
    model_names : sequence of str, length ``M``, optional
        Default ``"M0" .. "M{M-1}"``. A plain string is refused (it is not a list of names).
    continue_rates, bottom_acceptance : optional
        Early stopping of the bottom level, as in :func:`evaluate`.

    Returns
    -------
    Plan
        The optimum and its runners-up.

    Notes
    -----
    O(M^2 T^2) time, O(M T) memory: about 0.4 s for ``M = 3``, ``T = 4096`` on one CPU core,
    growing with ``M^2``. Releases the GIL; Ctrl-C raises ``KeyboardInterrupt`` within ~50 ms.

    Examples
    --------
    >>> import hierspec
    >>> acceptance = [[1, 0.6, 0.4], [0, 1, 0.8], [0, 0, 1]]
    >>> best = hierspec.plan([1, 3, 10], acceptance, 16, model_names=["tiny", "small", "big"])
    >>> best.best.describe()
    'tiny -> small -> big  T=1,3'
    >>> round(best.speedup, 3)
    1.684
    """
    costs_list = _costs_argument(costs)
    acceptance_list = _acceptance_argument(acceptance)
    names = _model_names(model_names, len(acceptance_list))
    result = _core.plan(
        costs_list,
        acceptance_list,
        _max_draft_length_argument(max_draft_length),
        **_early_stopping_arguments(continue_rates, bottom_acceptance, len(acceptance_list)),
    )
    return _plan_from_core(result, names)


def brute_force_plan(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    max_draft_length: int = 4,
    model_names: Sequence[str] | None = None,
    continue_rates: Sequence[float] | None = None,
    bottom_acceptance: AcceptanceLike | None = None,
) -> Plan:
    """The same result as :func:`plan` by exhaustive enumeration (for tests).

    Same arguments as :func:`plan`; O(sum over chains of ``max_draft_length^K``) evaluations,
    interruptible like :func:`plan`.

    Returns
    -------
    Plan
    """
    costs_list = _costs_argument(costs)
    acceptance_list = _acceptance_argument(acceptance)
    names = _model_names(model_names, len(acceptance_list))
    result = _core.brute_force_plan(
        costs_list,
        acceptance_list,
        _max_draft_length_argument(max_draft_length),
        **_early_stopping_arguments(continue_rates, bottom_acceptance, len(acceptance_list)),
    )
    return _plan_from_core(result, names)


def choose_min_draft_confidence(profile: Profile, max_draft_length: int = 16) -> tuple[float, Plan]:
    """The bottom level's early-stopping threshold with the fastest plan, and that plan.

    Plans with no early stopping (threshold 0) and at every threshold of
    ``profile.early_stopping`` (its measured continue rates and bottom acceptance,
    :meth:`Profile.stopping_rates`) and keeps the lowest predicted latency; a threshold must
    beat 0 strictly. A profile without ``early_stopping`` gives 0: nothing was measured to
    predict what stopping does.

    Examples
    --------
    >>> profile = Profile(
    ...     ("draft", "target"), ((1.0,) * 8, (10.0,) * 8), ((1.0, 0.5), (0.0, 1.0)),
    ...     early_stopping=(EarlyStoppingRates(0.5, (0.6, 1.0), ((1.0, 0.8), (0.0, 1.0))),),
    ... )
    >>> threshold, best = choose_min_draft_confidence(profile, max_draft_length=6)
    >>> threshold, best.chain
    (0.5, (0, 1))
    """
    best_threshold = 0.0
    best = plan(
        profile.costs_ms,
        profile.acceptance,
        max_draft_length=max_draft_length,
        model_names=profile.model_names,
    )
    for entry in profile.early_stopping or ():
        threshold = entry.min_draft_confidence
        candidate = plan(
            profile.costs_ms,
            profile.acceptance,
            max_draft_length=max_draft_length,
            model_names=profile.model_names,
            **profile.stopping_rates(threshold),
        )
        if candidate.latency < best.latency:
            best_threshold, best = threshold, candidate
    return best_threshold, best


# -- one request: the prompt's prefill plus the decode -----------------------------------------


def pass_cost(row: Sequence[float] | np.ndarray, num_tokens: int) -> float:
    """Cost of one pass over ``num_tokens`` tokens from a cost row (``row[n - 1]``; beyond the
    table, the last entry scaled linearly; 0 for no tokens)."""
    if num_tokens <= 0:
        return 0.0
    columns = len(row)
    if num_tokens <= columns:
        return float(row[num_tokens - 1])
    return float(row[-1]) * num_tokens / columns


def nondecreasing_fit(
    values: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """The nondecreasing sequence closest to ``values`` in weighted least squares (pool adjacent
    violators): runs of values that decrease are replaced by their weighted mean.

    Parameters
    ----------
    values
        ``[n]`` finite numbers, e.g. median costs at increasing pass lengths.
    weights
        ``[n]`` positive finite weights (e.g. the timings behind each median); default all 1.

    Returns
    -------
    numpy.ndarray
        ``[n]`` float64, nondecreasing; ``values`` itself where it already is.

    Examples
    --------
    >>> nondecreasing_fit([73.7, 81.7, 64.7, 70.6, 80.0]).round(2).tolist()
    [72.68, 72.68, 72.68, 72.68, 80.0]
    >>> nondecreasing_fit([2.0, 1.0], weights=[3, 1]).tolist()
    [1.75, 1.75]
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"values must be a 1-d sequence of finite numbers, got {values!r}")
    if weights is None:
        weight_array = np.ones_like(array)
    else:
        weight_array = np.asarray(weights, dtype=np.float64)
        if (
            weight_array.shape != array.shape
            or not np.all(np.isfinite(weight_array))
            or not np.all(weight_array > 0)
        ):
            raise ValueError(
                f"weights must be {array.size} positive finite numbers, got {weights!r}"
            )
    means: list[float] = []  # one block per run of pooled values
    block_weights: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(array.tolist(), weight_array.tolist()):
        means.append(value)
        block_weights.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            weight = block_weights[-2] + block_weights[-1]
            mean = (means[-2] * block_weights[-2] + means[-1] * block_weights[-1]) / weight
            means[-2:] = [mean]
            block_weights[-2:] = [weight]
            sizes[-2:] = [sizes[-2] + sizes[-1]]
    return np.repeat(np.array(means, dtype=np.float64), sizes)


def _cost_fit(profile: Profile) -> str:
    """The profiler's ``cost_fit`` recorded in ``profile`` (``"none"`` when not recorded: the
    profiles written before the fit kept the medians)."""
    metadata = profile.extra.get("metadata")
    config = metadata.get("config") if isinstance(metadata, dict) else None
    fit = config.get("cost_fit") if isinstance(config, dict) else None
    return fit if fit == "nondecreasing" else "none"


def forward_cost_rows(profile: Profile) -> np.ndarray:
    """``[M, N]``: per model the part of its cost row that the engine times of a pass (the
    profiler's ``model_details[m].forward_ms``, the level's ``append``; fitted as the cost rows
    were, :func:`nondecreasing_fit` weighted by the repeats, when the profile's ``cost_fit`` is
    ``"nondecreasing"``), else the whole row (1-D costs become one column)."""
    costs = np.asarray(profile.costs_ms, dtype=np.float64)
    costs = costs if costs.ndim == 2 else costs[:, None]
    details = profile.extra.get("model_details")
    forward = costs.copy()
    fitted = _cost_fit(profile) == "nondecreasing"
    if isinstance(details, list) and len(details) == costs.shape[0]:
        for model, detail in enumerate(details):
            row = detail.get("forward_ms") if isinstance(detail, dict) else None
            if (
                isinstance(row, list)
                and len(row) == costs.shape[1]
                and all(isinstance(x, (int, float)) and x > 0 for x in row)
            ):
                if fitted:
                    repeats = detail.get("repeats")
                    usable = (
                        isinstance(repeats, list)
                        and len(repeats) == len(row)
                        and all(isinstance(x, int) and x > 0 for x in repeats)
                    )
                    row = nondecreasing_fit(row, repeats if usable else None).tolist()
                forward[model] = row
    return forward


def _measured_prefill(profile: Profile) -> list[tuple[int, float]] | None:
    """Per model ``(prefill_tokens, prefill_ms)`` from ``model_details``, or ``None`` unless
    every model has a usable measurement."""
    details = profile.extra.get("model_details")
    if not isinstance(details, list) or len(details) != len(profile.model_names):
        return None
    measured = []
    for detail in details:
        tokens = detail.get("prefill_tokens") if isinstance(detail, dict) else None
        milliseconds = detail.get("prefill_ms") if isinstance(detail, dict) else None
        if (
            isinstance(tokens, int)
            and not isinstance(tokens, bool)
            and tokens >= 2
            and isinstance(milliseconds, (int, float))
            and not isinstance(milliseconds, bool)
            and math.isfinite(milliseconds)
            and milliseconds > 0
        ):
            measured.append((tokens, float(milliseconds)))
        else:
            return None
    return measured


def has_prefill_costs(profile: Profile) -> bool:
    """Whether every model of ``profile`` has a measured prompt prefill
    (``model_details[m].prefill_tokens`` / ``prefill_ms``, written by the profiler since the
    engine's prefill skips the vocabulary head); :func:`prefill_costs` extrapolates the cost
    table otherwise."""
    return _measured_prefill(profile) is not None


def prefill_costs(profile: Profile, num_tokens: int) -> np.ndarray:
    """``[M]`` predicted cost (the profile's unit, ms) of each model's prefill of ``num_tokens``
    tokens in one pass (a prompt; the catch-up of a level that rejoins the chain).

    With measured prefills (:func:`has_prefill_costs`) the cost is affine in the tokens, through
    the model's 1-token pass (its ``forward_ms``, ``c_1``) and its measured prefill of
    ``P = prefill_tokens`` tokens, ``P_ms``: ``c(n) = c_1 + (P_ms - c_1) (n - 1) / (P - 1)``,
    flat at ``P_ms`` when that is below ``c_1`` (a prefill that skips what a decode pass
    computes, e.g. the n-gram drafter's rows). Without, a pass over
    ``n`` tokens of the cost table (:func:`pass_cost`, linear beyond it), which includes the
    vocabulary head on every row and so overestimates a prefill that skips it.

    Examples
    --------
    >>> profile = Profile(
    ...     ("draft", "target"), ((1.0, 1.5), (10.0, 12.0)), ((1.0, 0.5), (0.0, 1.0)),
    ...     extra={"model_details": [
    ...         {"prefill_tokens": 11, "prefill_ms": 3.0},
    ...         {"prefill_tokens": 11, "prefill_ms": 30.0},
    ...     ]},
    ... )
    >>> prefill_costs(profile, 21).tolist()
    [5.0, 50.0]
    """
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, np.integer)):
        raise TypeError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    forward = forward_cost_rows(profile)
    if num_tokens == 0:
        return np.zeros(forward.shape[0])
    measured = _measured_prefill(profile)
    if measured is None:
        return np.array([pass_cost(row, int(num_tokens)) for row in forward])
    costs = []
    for row, (tokens, milliseconds) in zip(forward, measured):
        # A prefill can cost less than a 1-token pass (the n-gram drafter builds no rows): then
        # it is flat at the measurement, never a negative slope.
        one = min(float(row[0]), milliseconds)
        costs.append(one + (milliseconds - one) * (num_tokens - 1) / (tokens - 1))
    return np.array(costs)


def _chain_prefill(prefill: Sequence[float], chain: Sequence[int]) -> float:
    """The prompt prefill of every model of ``chain`` (``prefill`` per candidate)."""
    return float(sum(prefill[model] for model in chain))


def _request_time(prefill: Sequence[float], entry: PlanEntry, new_tokens: int) -> float:
    """Expected time of a request run with ``entry``: its chain's prefill + new tokens x
    latency (the objective of :func:`plan_request`)."""
    return _chain_prefill(prefill, entry.chain) + new_tokens * entry.latency


@dataclasses.dataclass(frozen=True)
class RequestPlan:
    """The configuration one request runs with, and its expected time (:func:`plan_request`).

    ``total`` = the chain's prefill (every model in it, the target included) + ``new_tokens``
    x ``latency``: the expected wall time of a request that generates ``new_tokens`` tokens.
    ``decode_entry`` is the configuration of least latency per token (:func:`plan`'s optimum,
    which ignores the prefill) and ``decode_total`` its expected time for the same request
    (``>= total`` for a planned request).
    """

    entry: PlanEntry
    new_tokens: int
    prefill: tuple[float, ...]  # [M] each candidate's prefill of this prompt
    prefill_total: float  # of the chosen chain
    total: float
    decode_entry: PlanEntry
    decode_total: float

    @classmethod
    def of(
        cls,
        entry: PlanEntry,
        prefill: Sequence[float],
        new_tokens: int,
        decode_entry: PlanEntry | None = None,
    ) -> RequestPlan:
        """The request plan of ``entry`` (e.g. a fixed configuration: ``decode_entry``
        defaults to ``entry``) with the candidates' ``prefill`` costs and ``new_tokens``."""
        decode_entry = entry if decode_entry is None else decode_entry
        prefill = tuple(float(value) for value in prefill)
        return cls(
            entry=entry,
            new_tokens=new_tokens,
            prefill=prefill,
            prefill_total=_chain_prefill(prefill, entry.chain),
            total=_request_time(prefill, entry, new_tokens),
            decode_entry=decode_entry,
            decode_total=_request_time(prefill, decode_entry, new_tokens),
        )

    @property
    def chain(self) -> tuple[int, ...]:
        return self.entry.chain

    @property
    def draft_lengths(self) -> tuple[int, ...]:
        return self.entry.draft_lengths

    @property
    def latency(self) -> float:
        """Expected decode cost per token of the chosen configuration."""
        return self.entry.latency

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN becomes ``None``)."""
        return json_safe(dataclasses.asdict(self))


def plan_request(
    costs: CostsLike,
    acceptance: AcceptanceLike,
    prefill: Sequence[float] | np.ndarray,
    new_tokens: int,
    max_draft_length: int = 16,
    model_names: Sequence[str] | None = None,
    continue_rates: Sequence[float] | None = None,
    bottom_acceptance: AcceptanceLike | None = None,
) -> RequestPlan:
    """The chain and draft lengths that minimise one request's expected time, exactly:
    ``sum of prefill[m] over the chain + new_tokens x latency``.

    Every model of the chain must first prefill the prompt, so a draft that pays per token may
    not pay for a short request (a slow-to-prefill draft, a long prompt). The objective is not
    a latency per token, so the shortest-path program cannot carry it; but the prefill depends
    only on the SET of models used: for each subset ``S`` of the drafts, :func:`plan` over
    ``S`` and the target gives the best latency of any chain within ``S``, whose prefill is at
    most ``S``'s. The minimum over subsets of ``prefill(S) + new_tokens x latency(S)`` is then
    the exact optimum (it is attained at ``S`` = the optimal chain's models); ``2^(M-1)`` calls
    of :func:`plan`.

    Parameters
    ----------
    costs, acceptance, max_draft_length, model_names, continue_rates, bottom_acceptance
        As in :func:`plan`.
    prefill : array_like, shape ``[M]``
        Each candidate's cost of prefilling this request's prompt, in the unit of ``costs``
        (:func:`prefill_costs` from a profile), finite and ``>= 0``.
    new_tokens : int
        Tokens the request generates (``>= 0``; ``max_new_tokens`` of a call that may stop
        early at EOS).

    Returns
    -------
    RequestPlan

    Examples
    --------
    A draft that saves 7.1 of every 10 ms per token but takes 300 ms to prefill the prompt pays
    from the 43rd token on:

    >>> costs, acceptance = [1.0, 10.0], [[1.0, 0.9], [0.0, 1.0]]
    >>> plan_request(costs, acceptance, [300.0, 100.0], new_tokens=42).chain
    (1,)
    >>> plan_request(costs, acceptance, [300.0, 100.0], new_tokens=43).chain
    (0, 1)
    """
    costs_list = _costs_argument(costs)
    acceptance_list = _acceptance_argument(acceptance)
    num_models = len(acceptance_list)
    names = _model_names(model_names, num_models)
    new_tokens = _int_argument(new_tokens, "new_tokens")
    if new_tokens < 0:
        raise ValueError(f"new_tokens must be >= 0, got {new_tokens}")
    prefill_costs_ms = _float_array(prefill, "prefill", "[M]")
    if prefill_costs_ms.shape != (num_models,):
        raise ValueError(
            f"prefill must have one entry per model ({num_models}), got shape "
            f"{prefill_costs_ms.shape}"
        )
    if not np.all(np.isfinite(prefill_costs_ms)) or np.any(prefill_costs_ms < 0):
        raise ValueError(f"prefill must be finite and >= 0, got {prefill_costs_ms.tolist()}")
    if len(costs_list) != num_models:
        raise ValueError(f"costs has {len(costs_list)} models, acceptance has {num_models}")
    full = plan(
        costs_list,
        acceptance_list,
        max_draft_length,
        model_names=names,
        continue_rates=continue_rates,
        bottom_acceptance=bottom_acceptance,
    )

    prefill_list = prefill_costs_ms.tolist()
    target = num_models - 1
    best_entry, best_total = full.best, _request_time(prefill_list, full.best, new_tokens)
    for mask in range(2**target - 1):  # every proper subset of the drafts (all: ``full``)
        subset = [model for model in range(target) if mask >> model & 1] + [target]
        sub = plan(
            [costs_list[model] for model in subset],
            [[acceptance_list[i][j] for j in subset] for i in subset],
            max_draft_length,
            continue_rates=None
            if continue_rates is None
            else [continue_rates[model] for model in subset],
            bottom_acceptance=None
            if bottom_acceptance is None
            else [[bottom_acceptance[i][j] for j in subset] for i in subset],
        )
        chain = tuple(subset[index] for index in sub.chain)
        single = full.best_single_draft
        entry = PlanEntry(
            chain=chain,
            draft_lengths=sub.draft_lengths,
            latency=sub.latency,
            speedup=full.target_latency / sub.latency,
            speedup_vs_single_draft=math.nan if single is None else single.latency / sub.latency,
            model_names=tuple(names[model] for model in chain),
        )
        total = _request_time(prefill_list, entry, new_tokens)
        if total < best_total:
            best_entry, best_total = entry, total
    return RequestPlan.of(best_entry, prefill_list, new_tokens, full.best)


def prompt_prefill_costs(profile: Profile, prompt_tokens: int) -> np.ndarray:
    """``[M]`` each candidate's prefill of a prompt of ``prompt_tokens`` tokens as the engine
    runs it: every token but the last, which stays pending for the first pass (level 0 keeps
    one more; a token's difference, ignored). :func:`prefill_costs` of ``prompt_tokens - 1``."""
    return prefill_costs(profile, max(prompt_tokens - 1, 0))


def plan_for_prompt(
    profile: Profile,
    prompt_tokens: int,
    new_tokens: int,
    max_draft_length: int = 16,
    min_draft_confidence: float = 0.0,
) -> RequestPlan:
    """:func:`plan_request` from a profile for a prompt of ``prompt_tokens`` tokens and up to
    ``new_tokens`` new ones: the prefill costs of :func:`prompt_prefill_costs` and, with a
    ``min_draft_confidence`` > 0, the early-stopping rates the profile measured at it
    (:meth:`Profile.stopping_rates`). What ``hierspec generate`` and the adaptive decoder run.

    Examples
    --------
    >>> profile = Profile(("draft", "target"), (1.0, 10.0), ((1.0, 0.9), (0.0, 1.0)),
    ...     extra={"model_details": [
    ...         {"prefill_tokens": 11, "prefill_ms": 301.0},
    ...         {"prefill_tokens": 11, "prefill_ms": 110.0},
    ...     ]})
    >>> plan_for_prompt(profile, prompt_tokens=11, new_tokens=20).chain  # prefill 271 ms
    (1,)
    >>> plan_for_prompt(profile, prompt_tokens=11, new_tokens=200).chain
    (0, 1)
    """
    return plan_request(
        profile.costs_ms,
        profile.acceptance,
        prompt_prefill_costs(profile, prompt_tokens),
        new_tokens,
        max_draft_length=max_draft_length,
        model_names=profile.model_names,
        **profile.stopping_rates(min_draft_confidence),
    )
