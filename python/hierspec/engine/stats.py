"""Results of :meth:`hierspec.HierarchicalDecoder.generate` and the counters behind them.

Terms (vLLM's, as in docs/policy.md):
    batch            the tokens a level hands up to the level above for one verification.
    drafted          tokens in the batches a level handed up.
    accepted         drafted tokens the level above accepted.
    rejected batch   a batch that ended in a rejection rather than full acceptance.
    emitted tokens   what one verification outputs: the accepted drafts plus one recovered or
                     bonus token (``O`` of policy.md rule 2, the target's verification of rule 4
                     included).

:class:`LevelCounters` are the mutable counters of a running call; the engine freezes them into
:class:`LevelStats` at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..adaptive import PlanDecision
from ..planning import RequestPlan

__all__ = ["GenerateOutput", "GenerateStats", "LevelCounters", "LevelStats"]


@dataclass(frozen=True)
class LevelStats:
    """Counters of one level over one :meth:`~hierspec.HierarchicalDecoder.generate` call.

    Forward-pass counters exclude the prompt prefill, which is reported separately
    (``prefill_*``), so ``forward_passes / new_tokens`` is directly comparable with
    ``hierspec.evaluate(...).passes_per_token`` (steady state; the last cycle's overshoot beyond
    ``max_new_tokens`` / EOS is counted as work).

    Attributes
    ----------
    level : int
        Position in the chain (0 = bottom drafter, ``K`` = target); for an adaptive decoder,
        whose chain changes, the candidate's model index.
    forward_passes, tokens_processed : int
        Forward passes after the prefill and the tokens they processed.
    time_s : float
        Wall time inside this level's forward passes after the prefill (host time on
        asynchronous devices).
    prefill_passes, prefill_tokens : int
        Forward passes of the prompt prefill (0 or 1) and the tokens they processed.
    prefill_time_s : float
        Wall time of the prefill passes.
    batches, drafted, accepted, rejected : int
        As a drafter (levels below the target): batches handed up, tokens in them, tokens the
        level above accepted, batches that ended in a rejection.
    accepted_at_position : tuple of int
        ``[j]``: batches whose draft ``j`` was accepted.
    reached_position : tuple of int
        ``[j]``: batches whose draft ``j`` was tested.
    verifications, tokens_emitted : int
        As a verifier (levels >= 1; the target alone counts one per token): verifications and
        the tokens they emitted (accepted + recovered + bonus).
    catch_up_passes, catch_up_tokens, catch_up_time_s
        Adaptive decoder only: passes that brought the model up to date with the committed text
        when it joined the chain (one per join), the tokens they processed and their wall time.
        Not included in ``forward_passes`` / ``time_s``.
    stop_checks, early_stops : int
        Early stopping of the bottom level (``min_draft_confidence > 0``, policy.md rule 1):
        draft positions whose confidence was checked, and bottom calls that stopped before
        ``T_0`` drafts (0 without early stopping).
    shadow_passes, shadow_tokens, shadow_time_s
        Adaptive decoder only: passes of the model as the shadow of a chain it is not in
        (``AdaptiveConfig.shadow_max_cost``: keeping up with the committed text to score its
        prediction at each committed position), the tokens they processed and their wall
        time. Not included in ``forward_passes`` / ``time_s``.
    shadow_scored, shadow_accepted : int
        The committed tokens the shadow's prediction was scored against, and how many of its
        would-be drafts the target's verification accepted (``shadow_acceptance_rate``).
    """

    level: int
    forward_passes: int
    tokens_processed: int
    time_s: float
    prefill_passes: int
    prefill_tokens: int
    prefill_time_s: float
    batches: int
    drafted: int
    accepted: int
    rejected: int
    accepted_at_position: tuple[int, ...]
    reached_position: tuple[int, ...]
    verifications: int
    tokens_emitted: int
    catch_up_passes: int = 0
    catch_up_tokens: int = 0
    catch_up_time_s: float = 0.0
    stop_checks: int = 0
    early_stops: int = 0
    shadow_passes: int = 0
    shadow_tokens: int = 0
    shadow_time_s: float = 0.0
    shadow_scored: int = 0
    shadow_accepted: int = 0

    @property
    def shadow_acceptance_rate(self) -> float:
        """``shadow_accepted / shadow_scored``: the acceptance the model's drafts would have
        had while it shadowed the chain (NaN when it never did)."""
        return self.shadow_accepted / self.shadow_scored if self.shadow_scored else math.nan

    @property
    def continue_rate(self) -> float:
        """``1 - early_stops / stop_checks``: the observed probability that the bottom level
        drafts at a checked position (``continue_rates`` of ``hierspec.evaluate``; NaN without
        checks)."""
        return 1.0 - self.early_stops / self.stop_checks if self.stop_checks else math.nan

    @property
    def mean_acceptance_length(self) -> float:
        """``1 + accepted / batches`` (vLLM's definition; NaN when nothing was handed up)."""
        return 1.0 + self.accepted / self.batches if self.batches else math.nan

    @property
    def acceptance_rate(self) -> float:
        """``accepted / (accepted + rejected)``: the i.i.d. estimate of the acceptance
        probability of one of this level's drafts by the level above (NaN when untested)."""
        tested = self.accepted + self.rejected
        return self.accepted / tested if tested else math.nan

    @property
    def acceptance_by_position(self) -> tuple[float, ...]:
        """``[j]``: probability that draft ``j`` of a batch is accepted, given it was tested."""
        return tuple(
            accepted / reached if reached else math.nan
            for accepted, reached in zip(self.accepted_at_position, self.reached_position)
        )


@dataclass(frozen=True)
class GenerateStats:
    """Statistics of one :meth:`~hierspec.HierarchicalDecoder.generate` call.

    Attributes
    ----------
    levels : tuple of LevelStats
        One per level of the chain, ``levels[0]`` = bottom, ``levels[-1]`` = target.
    prompt_tokens : int
        Length of the prompt.
    new_tokens : int
        Tokens in the output after the prompt.
    target_passes : int
        Target cycles (forward passes of the target), excluding the prefill.
    wall_time_s : float
        The whole call, prefill included.
    prefill_time_s : float
        Wall time of the prompt prefill.
    model_time_s : float
        Wall time inside forward passes after the prefill, all levels (catch-up and shadow
        passes included).
    decisions : tuple of PlanDecision
        Adaptive decoder only: every planning decision, in order (see :attr:`plan_changes`).
    initial_plan : RequestPlan or None
        Adaptive decoder only: the configuration the call started with, the least expected
        prefill + decode time for its prompt and ``max_new_tokens``
        (:func:`hierspec.planning.plan_request`).
    """

    levels: tuple[LevelStats, ...]
    prompt_tokens: int
    new_tokens: int
    target_passes: int
    wall_time_s: float
    prefill_time_s: float
    model_time_s: float
    decisions: tuple[PlanDecision, ...] = ()
    initial_plan: RequestPlan | None = None

    @property
    def plan_changes(self) -> tuple[PlanDecision, ...]:
        """The decisions that switched the configuration (at which token, old and new chain
        and draft lengths, the acceptance estimates behind it)."""
        return tuple(decision for decision in self.decisions if decision.switched)

    @property
    def decode_time_s(self) -> float:
        """Wall time after the prefill."""
        return self.wall_time_s - self.prefill_time_s

    @property
    def overhead_time_s(self) -> float:
        """Decoding wall time not spent in forward passes: the engine's own cost."""
        return self.decode_time_s - self.model_time_s

    @property
    def tokens_per_second(self) -> float:
        """New tokens per second of the whole call (prefill included)."""
        return self.new_tokens / self.wall_time_s if self.wall_time_s > 0 else math.nan

    @property
    def passes_per_token(self) -> tuple[float, ...]:
        """Forward passes per new token, per level (prefill excluded), as ``evaluate`` reports."""
        return tuple(level.forward_passes / max(self.new_tokens, 1) for level in self.levels)

    @property
    def tokens_per_token(self) -> tuple[float, ...]:
        """Tokens processed per new token, per level (prefill excluded)."""
        return tuple(level.tokens_processed / max(self.new_tokens, 1) for level in self.levels)


@dataclass(frozen=True)
class GenerateOutput:
    """Result of :meth:`~hierspec.HierarchicalDecoder.generate`.

    Attributes
    ----------
    sequences : torch.Tensor
        ``[1, prompt + new]`` int64 on the models' device: the prompt followed by the new tokens.
    stats : GenerateStats
        Counters and timings of the call.
    seed : int
        The generator seed actually used; passing it as ``seed`` reproduces the call.
    """

    sequences: torch.Tensor
    stats: GenerateStats
    seed: int


class LevelCounters:
    """Mutable counters of one level during a running call (frozen into :class:`LevelStats`).

    The attributes are those of :class:`LevelStats`, except that the per-position acceptance is
    kept as ``outcomes``: ``(batch length, num accepted) -> count``.
    """

    __slots__ = (
        "forward_passes", "tokens_processed", "time_s", "prefill_passes", "prefill_tokens",
        "prefill_time_s", "batches", "drafted", "accepted", "rejected", "outcomes",
        "verifications", "tokens_emitted", "catch_up_passes", "catch_up_tokens",
        "catch_up_time_s", "stop_checks", "early_stops", "shadow_passes", "shadow_tokens",
        "shadow_time_s", "shadow_scored", "shadow_accepted",
    )  # fmt: skip

    def __init__(self) -> None:
        self.forward_passes = 0
        self.tokens_processed = 0
        self.time_s = 0.0
        self.prefill_passes = 0
        self.prefill_tokens = 0
        self.prefill_time_s = 0.0
        self.batches = 0
        self.drafted = 0
        self.accepted = 0
        self.rejected = 0
        self.outcomes: dict[tuple[int, int], int] = {}
        self.verifications = 0
        self.tokens_emitted = 0
        self.catch_up_passes = 0
        self.catch_up_tokens = 0
        self.catch_up_time_s = 0.0
        self.stop_checks = 0
        self.early_stops = 0
        self.shadow_passes = 0
        self.shadow_tokens = 0
        self.shadow_time_s = 0.0
        self.shadow_scored = 0
        self.shadow_accepted = 0

    def record_stop_checks(self, checks: int, stopped: bool) -> None:
        """A bottom call checked the confidence at ``checks`` positions and stopped early or
        not."""
        self.stop_checks += checks
        self.early_stops += int(stopped)

    def record_batch(self, batch_length: int, num_accepted: int) -> None:
        """This level's batch of ``batch_length`` drafts got ``num_accepted`` accepted above."""
        self.batches += 1
        self.drafted += batch_length
        self.accepted += num_accepted
        if num_accepted < batch_length:
            self.rejected += 1
        key = (batch_length, num_accepted)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def record_verification(self, num_emitted: int) -> None:
        """This level ran one verification (or, as the target alone, one step) that emitted
        ``num_emitted`` tokens."""
        self.verifications += 1
        self.tokens_emitted += num_emitted

    def freeze(self, level: int) -> LevelStats:
        """The counters as the :class:`LevelStats` of level ``level``."""
        longest = max((length for length, _ in self.outcomes), default=0)
        accepted_at = [0] * longest
        reached = [0] * longest
        for (length, num_accepted), count in self.outcomes.items():
            for position in range(min(num_accepted + 1, length)):
                reached[position] += count
            for position in range(num_accepted):
                accepted_at[position] += count
        return LevelStats(
            level=level,
            forward_passes=self.forward_passes,
            tokens_processed=self.tokens_processed,
            time_s=self.time_s,
            prefill_passes=self.prefill_passes,
            prefill_tokens=self.prefill_tokens,
            prefill_time_s=self.prefill_time_s,
            batches=self.batches,
            drafted=self.drafted,
            accepted=self.accepted,
            rejected=self.rejected,
            accepted_at_position=tuple(accepted_at),
            reached_position=tuple(reached),
            verifications=self.verifications,
            tokens_emitted=self.tokens_emitted,
            catch_up_passes=self.catch_up_passes,
            catch_up_tokens=self.catch_up_tokens,
            catch_up_time_s=self.catch_up_time_s,
            stop_checks=self.stop_checks,
            early_stops=self.early_stops,
            shadow_passes=self.shadow_passes,
            shadow_tokens=self.shadow_tokens,
            shadow_time_s=self.shadow_time_s,
            shadow_scored=self.shadow_scored,
            shadow_accepted=self.shadow_accepted,
        )
