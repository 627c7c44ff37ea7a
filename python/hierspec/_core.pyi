"""Type stubs for the pybind11 module hierspec._core (glue over the C++ core)."""

from typing import overload

MAX_DRAFT_LENGTH: int  # largest draft length / max_draft_length (kMaxDraftLength, inputs.hpp)
MAX_SIMULATED_TOKENS: int  # largest num_tokens of simulate (kMaxSimulatedTokens)

class Evaluation:
    @property
    def latency(self) -> float: ...
    @property
    def passes_per_token(self) -> list[float]: ...
    @property
    def tokens_per_token(self) -> list[float]: ...
    @property
    def cost_per_token(self) -> list[float]: ...
    @property
    def tokens_per_target_pass(self) -> float: ...
    @property
    def bonus_state_probability(self) -> float: ...

class SimulationResult:
    @property
    def latency(self) -> float: ...
    @property
    def passes_per_token(self) -> list[float]: ...
    @property
    def tokens_per_token(self) -> list[float]: ...
    @property
    def cost_per_token(self) -> list[float]: ...
    @property
    def tokens_per_target_pass(self) -> float: ...
    @property
    def num_tokens(self) -> int: ...
    @property
    def num_target_passes(self) -> int: ...

class PlanEntry:
    @property
    def chain(self) -> list[int]: ...
    @property
    def draft_lengths(self) -> list[int]: ...
    @property
    def latency(self) -> float: ...
    @property
    def speedup(self) -> float: ...
    @property
    def speedup_vs_single_draft(self) -> float: ...

class PlanResult:
    @property
    def best(self) -> PlanEntry: ...
    @property
    def target_latency(self) -> float: ...
    @property
    def best_single_draft(self) -> PlanEntry | None: ...
    @property
    def alternatives(self) -> list[PlanEntry]: ...
    @property
    def max_draft_length(self) -> int: ...
    @property
    def cost_table_columns(self) -> int: ...
    @property
    def columns_needed(self) -> int: ...
    @property
    def limited_by_cost_table(self) -> bool: ...

@overload
def evaluate(
    costs: list[list[float]],
    acceptance: list[list[float]],
    chain: list[int],
    draft_lengths: list[int],
) -> Evaluation: ...
@overload
def evaluate(
    costs: list[float],
    acceptance: list[list[float]],
    chain: list[int],
    draft_lengths: list[int],
) -> Evaluation: ...
@overload
def simulate(
    costs: list[list[float]],
    acceptance: list[list[float]],
    chain: list[int],
    draft_lengths: list[int],
    num_tokens: int,
    seed: int,
) -> SimulationResult: ...
@overload
def simulate(
    costs: list[float],
    acceptance: list[list[float]],
    chain: list[int],
    draft_lengths: list[int],
    num_tokens: int,
    seed: int,
) -> SimulationResult: ...
@overload
def plan(
    costs: list[list[float]],
    acceptance: list[list[float]],
    max_draft_length: int,
) -> PlanResult: ...
@overload
def plan(
    costs: list[float], acceptance: list[list[float]], max_draft_length: int
) -> PlanResult: ...
@overload
def brute_force_plan(
    costs: list[list[float]],
    acceptance: list[list[float]],
    max_draft_length: int,
) -> PlanResult: ...
@overload
def brute_force_plan(
    costs: list[float],
    acceptance: list[list[float]],
    max_draft_length: int,
) -> PlanResult: ...

class RatePosteriors:
    """Online posteriors of Bernoulli rates (hierspec/rates.hpp); the typed API is
    hierspec.adaptive.RatePosteriors."""

    def __init__(
        self,
        prior: list[float],
        strength: list[float],
        discount: float,
        change_rate: float = 0.0,
        max_runs: int = 32,
    ) -> None: ...
    def observe(self, entry: int, successes: int, failures: int) -> None: ...
    def means(self) -> list[float]: ...
    def stds(self) -> list[float]: ...
    def evidence(self) -> list[float]: ...
    @property
    def size(self) -> int: ...
    @property
    def runs(self) -> int: ...
