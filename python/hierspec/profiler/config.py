"""How the profiler measures: :class:`ProfilerConfig` (validated) and the cost table's width."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from hierspec.planning import is_stop_threshold, plan
from hierspec.sampling import SamplingConfig

from .timing import COST_FITS

__all__ = ["DEFAULT_CONFIG", "SMALL_PASS_TOKENS", "ProfilerConfig", "check_int", "columns_needed"]

# Passes over up to this many tokens get ``repeats`` timings; longer ones ``large_pass_repeats``.
SMALL_PASS_TOKENS = 8


def check_int(name: str, value: object, minimum: int) -> None:
    """Raises ``TypeError`` unless ``value`` is an int (not a bool), ``ValueError`` if it is below
    ``minimum``; both name ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclasses.dataclass(frozen=True)
class ProfilerConfig:
    """How :func:`hierspec.profile` measures (validated on construction; recorded in the profile
    JSON).

    Attributes
    ----------
    max_draft_length
        Largest draft length the planner will consider; fixes the cost table width.
    repeats
        Timings per pass length ``n <= 8`` (the median is kept).
    large_pass_repeats
        Timings per pass length ``n > 8`` (default ``max(3, ceil(repeats / 2))``, at most
        ``repeats``): long passes are the expensive ones and vary less relatively.
    context_tokens
        Tokens in the cache before each timed pass (a realistic prompt length).
    calibration_tokens
        Tokens of target continuation per prompt for the acceptance rates.
    cost_points
        Pass lengths to time (``1`` and the table width are always added); the rest are
        interpolated. ``None``: every ``n`` is timed.
    sampling
        The processed distributions compared for acceptance (and processed in the timed passes).
    threads
        Torch CPU threads during profiling (``None``: leave torch's setting alone).
    seed
        Seeds the calibration continuations (prompt ``i`` uses ``seed + i``).
    stop_thresholds
        Confidence thresholds of the bottom level's early stopping at which the continue rates
        and bottom acceptance are measured on the calibration text (the profile's
        ``early_stopping``), each in (0, 1); ``()`` measures none.
    cost_fit
        ``"nondecreasing"``: each cost row is the nondecreasing least-squares fit of the medians
        (:func:`hierspec.planning.nondecreasing_fit`), so that a chance dip of one
        median does not pick the draft length; ``"none"``: the medians as measured. The
        medians are recorded either way (``model_details[m].total_ms``).
    """

    max_draft_length: int = 16
    repeats: int = 7
    large_pass_repeats: int | None = None
    context_tokens: int = 120
    calibration_tokens: int = 64
    cost_points: tuple[int, ...] | None = None
    sampling: SamplingConfig = SamplingConfig()
    threads: int | None = 1
    seed: int = 0
    stop_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
    cost_fit: str = "nondecreasing"

    def __post_init__(self) -> None:
        for name in ("max_draft_length", "repeats", "context_tokens", "calibration_tokens"):
            check_int(name, getattr(self, name), minimum=1)
        if self.large_pass_repeats is None:
            object.__setattr__(
                self, "large_pass_repeats", min(self.repeats, max(3, math.ceil(self.repeats / 2)))
            )
        check_int("large_pass_repeats", self.large_pass_repeats, minimum=1)
        if self.large_pass_repeats > self.repeats:
            raise ValueError(
                f"large_pass_repeats must be <= repeats ({self.repeats}), got "
                f"{self.large_pass_repeats}"
            )
        if self.threads is not None:
            check_int("threads", self.threads, minimum=1)
        check_int("seed", self.seed, minimum=0)
        if not isinstance(self.sampling, SamplingConfig):
            raise TypeError(f"sampling must be a hierspec.SamplingConfig, got {self.sampling!r}")
        if self.cost_points is not None:
            if isinstance(self.cost_points, (str, bytes)) or not isinstance(
                self.cost_points, Sequence
            ):
                raise TypeError(f"cost_points must be a sequence of ints, got {self.cost_points!r}")
            for point in self.cost_points:
                check_int("cost_points entry", point, minimum=1)
            object.__setattr__(self, "cost_points", tuple(sorted(set(self.cost_points))))

        thresholds = self.stop_thresholds
        if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Sequence):
            raise TypeError(f"stop_thresholds must be a sequence of numbers, got {thresholds!r}")
        for threshold in thresholds:
            if not is_stop_threshold(threshold):
                raise ValueError(
                    f"stop_thresholds entries must be numbers in (0, 1), got {threshold!r}"
                )
        object.__setattr__(
            self, "stop_thresholds", tuple(sorted({float(value) for value in thresholds}))
        )
        if self.cost_fit not in COST_FITS:
            raise ValueError(f"cost_fit must be one of {COST_FITS}, got {self.cost_fit!r}")

    def points(self, width: int) -> list[int]:
        """The pass lengths timed for a table of ``width`` columns (``1`` and ``width`` always)."""
        chosen = range(1, width + 1) if self.cost_points is None else self.cost_points
        return sorted({1, width} | {n for n in chosen if n <= width})

    def repeats_for(self, num_tokens: int) -> int:
        """Timings taken for a pass over ``num_tokens`` tokens."""
        return self.repeats if num_tokens <= SMALL_PASS_TOKENS else int(self.large_pass_repeats)


DEFAULT_CONFIG = ProfilerConfig()


def columns_needed(num_models: int, max_draft_length: int) -> int:
    """Width of a cost table that limits no configuration of ``num_models`` candidates with draft
    lengths up to ``max_draft_length``: asked of the planner itself (docs/theory.md §6).

    Examples
    --------
    >>> columns_needed(2, 6), columns_needed(3, 16)
    (7, 33)
    """
    check_int("num_models", num_models, minimum=1)
    check_int("max_draft_length", max_draft_length, minimum=1)
    acceptance = [[0.5] * num_models for _ in range(num_models)]
    return plan([1.0] * num_models, acceptance, max_draft_length=max_draft_length).columns_needed
