"""The lossless hierarchical decoding engine: :class:`HierarchicalDecoder`.

It runs exactly the process of ``docs/policy.md`` (the contract that ``hierspec.evaluate``,
``hierspec.expected_latency``, ``hierspec.simulate`` and ``hierspec.plan`` model); the rule numbers
below refer to that file, the derivations to ``docs/theory.md``.

Terms (as in policy.md; working text, cache length and pending tokens are defined in
:mod:`hierspec.engine.cache`):
    level l          position ``l`` in the chain; level 0 drafts, level ``K`` is the target.
    batch            the tokens a level hands up to the level above (with, for each, the processed
                     distribution it was drawn from: the ``q`` the level above verifies against).
    emitted tokens   what one verification outputs: the accepted drafts plus one recovered or
                     bonus token (``O`` of rule 2).

One cycle (per target pass): the target calls level K-1, which calls level K-2, ..., level 0;
every verification goes through :func:`hierspec.verify` (the one accept / resample rule), and
after a verification at level ``l`` the cache owner (:class:`~hierspec.engine.cache.CacheOwner`,
the only writer of the working texts and the only component that truncates caches) rolls every
level at or below ``l`` back to level ``l``'s working text.

Pass sizes (asserted): level 0 ``2`` then ``1`` per draft (rule 1; ``1`` only for the first pass
after a 1-token prompt), ``min(G + 1, T_0)`` passes for a batch of ``G`` when it stops early; an
intermediate level ``1 + G`` for the batch of ``G`` tokens of the level below (``G = T_{l-1}``, or
level 0's ``G <= T_0``); the target ``1 + L`` for the hand-up of ``L`` tokens (rules 2, 4:
standard verification with a bonus token); the target alone ``1``. For ``K >= 2``, in a cycle that
follows a full acceptance by the target (the *bonus state* ``b = 1``), level 0's first pass of the
cycle processes ``3`` tokens and the first verification of every intermediate level ``2 + G`` (one
more pending token each, rules 1 and 4).

The file reads top down: ``_Run`` (the recursion itself, one generate call), then
:class:`ChainSchedule` (what the recursion needs to know about the chain), then the public
:class:`HierarchicalDecoder` (argument checks, seeding).
"""

from __future__ import annotations

import operator
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import torch

from ..adaptive import (
    AdaptiveConfig,
    BottomBatch,
    PlanDecision,
    Replanner,
    check_min_draft_confidence,
)
from ..levels import as_levels
from ..planning import MAX_DRAFT_LENGTH, Profile
from ..protocol import DraftModel, prefill
from ..sampling import (
    SamplingConfig,
    confidence,
    draw,
    first_argmax,
    overlap,
    processed_probs,
)
from ..verify import verify, verify_greedy
from .cache import CacheOwner, check_logits
from .errors import RowChecks
from .stats import GenerateOutput, GenerateStats, LevelCounters

__all__ = ["ChainSchedule", "HierarchicalDecoder", "Streamer"]


class Streamer(Protocol):
    """transformers' streamer protocol (e.g. ``transformers.TextStreamer``): ``put`` receives
    the prompt ``[prompt]`` first, then each committed burst of new tokens ``[n]`` (int64, on
    the CPU); ``end`` is called once after the last token."""

    def put(self, value: torch.Tensor) -> None: ...

    def end(self) -> None: ...


# --------------------------------------------------------------------------------------------
# The recursion of policy.md (one generate call)
# --------------------------------------------------------------------------------------------


class _Run:
    """One generate call: the recursion of policy.md over the chain's levels.

    Reads the working texts from the cache owner and changes them only through its methods.
    ``candidates`` are every model the call may use; ``chain`` indexes the ones in use. With a
    ``replanner`` the chain and draft lengths may change between two target cycles (rule 6).
    """

    def __init__(
        self,
        candidates: Sequence[DraftModel],
        chain: tuple[int, ...],
        schedule: ChainSchedule,
        vocab_size: int,
        device: torch.device,
        config: SamplingConfig,
        generator: torch.Generator,
        prompt: torch.Tensor,  # [1, prompt] int64 on the levels' device
        max_new_tokens: int,
        eos_ids: torch.Tensor | None,  # [num_eos] int64 on the levels' device
        replanner: Replanner | None = None,
        streamer: Streamer | None = None,
        min_draft_confidence: float = 0.0,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.candidates = candidates
        self.timer = timer
        self.min_draft_confidence = min_draft_confidence  # changes with the replanner's decisions
        # The replanner learns early stopping from each bottom draft's confidence.
        self.report_confidences = replanner is not None and replanner.early_stopping
        self.bottom_confidences: list = []  # of the last bottom batch: floats or 0-dim tensors
        self.vocab_size = vocab_size
        self.device = device
        self.config = config
        self.generator = generator
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.eos_ids = eos_ids
        self.row_checks = RowChecks(config)  # rows that are not distributions (errors.py)
        self.replanner = replanner
        self.streamer = streamer
        self.model_counters = [LevelCounters() for _ in candidates]  # index = candidate
        self.decisions: list[PlanDecision] = []
        # Draws whether the shadow's would-be drafts are accepted: a stream of its own, so the
        # target's draws (and the output at a seed) are those of a decoder without a shadow.
        self.shadow_random = random.Random(f"hierspec-shadow-{generator.initial_seed()}")
        # b of policy.md rule 4: the last target pass accepted all its drafts (K >= 2), so each
        # level below it has one more pending token until its first pass of the next cycle.
        self.bonus_state = False
        # [level]: 1 while the level's first pass of this cycle has the bonus state's extra
        # pending token, else 0 (set at the start of each cycle).
        self.extra_pending: list[int] = []
        lookahead = schedule.lookahead
        if replanner is not None:
            lookahead = ChainSchedule.max_lookahead(
                len(candidates), replanner.config.max_draft_length
            )
        capacity = prompt.shape[1] + max_new_tokens + lookahead
        self._configure(chain, schedule)
        on_pass = None
        if replanner is not None and replanner.learns_costs:
            on_pass = self._observe_pass
        self.owner = CacheOwner(self.levels, self.counters, capacity, timer, on_pass)

    def _observe_pass(self, level_index: int, num_tokens: int, seconds: float) -> None:
        """A counted forward pass of level ``level_index``: the replanner learns its model's
        cost from it."""
        assert self.replanner is not None
        self.replanner.observe_pass(self.chain[level_index], num_tokens, seconds)

    def _configure(self, chain: tuple[int, ...], schedule: ChainSchedule) -> None:
        """Use ``chain`` (candidate indices, bottom first) with ``schedule`` from now on."""
        self.chain = chain
        self.levels = [self.candidates[model] for model in chain]
        self.counters = [self.model_counters[model] for model in chain]  # index = level
        self.draft_lengths = schedule.draft_lengths
        self.thresholds = schedule.thresholds
        self.top = schedule.top
        # The candidate that scores its predictions while the target runs alone (or None).
        self.shadow = None if self.replanner is None else self.replanner.shadow_for(chain)
        # Processed rows of the tokens each intermediate level has emitted in its current call:
        # [1, threshold + lower batch, vocab] float32 (the q it hands up).
        self.emitted_probs = [None] + [
            torch.empty(
                (1, self.thresholds[index] + self.draft_lengths[index - 1], self.vocab_size),
                dtype=torch.float32,
                device=self.device,
            )
            for index in range(1, self.top)
        ]

    def execute(self) -> tuple[torch.Tensor, GenerateStats]:
        """Prefill, run cycles until EOS / max_new_tokens, cut the overshoot; returns
        ``(sequences [1, prompt + new] (a view of the token buffer), stats)``."""
        started = self.timer()
        owner = self.owner
        prompt_length = self.prompt.shape[1]
        for model, candidate in enumerate(self.candidates):
            if model not in self.chain:
                candidate.reset()  # joins later by a catch-up pass from an empty state
        owner.start(self.prompt, bottom_pending=2 if self.top > 0 else 1)
        if self.streamer is not None:
            self.streamer.put(self.prompt[0].cpu())
        prefill_done = self.timer()
        end = prompt_length + self.max_new_tokens
        target_passes = 0
        passes_since_decision = 0
        while owner.text_length[self.top] < end:
            cycle_started = self.timer()
            base = owner.text_length[self.top]
            self._cycle()
            target_passes += 1
            committed = owner.text_length[self.top]
            if self.eos_ids is not None:
                is_eos = torch.isin(owner.tokens[0, base:committed], self.eos_ids)
                if bool(is_eos.any()):
                    end = min(end, base + int(is_eos.nonzero()[0, 0]) + 1)
            if self.streamer is not None:
                self.streamer.put(owner.tokens[0, base : min(end, committed)].cpu())
            if committed >= end:
                break
            if self.replanner is not None:
                # The cycle's time and tokens calibrate its configuration's predicted latency.
                self.replanner.observe_cycle(committed - base, self.timer() - cycle_started)
                passes_since_decision += 1
                if passes_since_decision >= self.replanner.interval:
                    self._replan(committed, end, target_passes)
                    passes_since_decision = 0
        final_length = min(end, owner.text_length[self.top])
        self.row_checks.finish(owner.levels[-1])  # the target alone's rows, read once
        owner.truncate_text(final_length)
        sequences = owner.tokens[:, :final_length]
        if self.streamer is not None:
            self.streamer.end()
        finished = self.timer()
        counters = self.model_counters if self.replanner is not None else self.counters
        stats = GenerateStats(
            levels=tuple(counter.freeze(index) for index, counter in enumerate(counters)),
            prompt_tokens=prompt_length,
            new_tokens=final_length - prompt_length,
            target_passes=target_passes,
            wall_time_s=finished - started,
            prefill_time_s=prefill_done - started,
            model_time_s=sum(
                counter.time_s + counter.catch_up_time_s + counter.shadow_time_s
                for counter in self.model_counters
            ),
            decisions=tuple(self.decisions),
        )
        return sequences, stats

    def _replan(self, committed: int, end: int, target_passes: int) -> None:
        """Rule 6: between two cycles, the replanner picks the chain of the next cycles from
        the acceptance seen so far; a switch depends only on the committed past."""
        replanner = self.replanner
        assert replanner is not None
        gaps = [
            0 if model in self.chain else max(committed - 1 - candidate.length, 0)
            for model, candidate in enumerate(self.candidates)
        ]
        decision = replanner.decide(
            self.chain,
            self.draft_lengths,
            gaps=gaps,
            tokens_left=end - committed,
            token=committed - self.prompt.shape[1],
            target_pass=target_passes,
            min_draft_confidence=self.min_draft_confidence,
        )
        self.decisions.append(decision)
        self.min_draft_confidence = decision.min_draft_confidence
        if decision.switched:
            self._configure(decision.chain, ChainSchedule(decision.draft_lengths))
            # The bonus state carries over to a chain of 3+ models (its levels keep or catch up
            # to one more pending token); a chain of 1 or 2 models has none (rule 6).
            self.bonus_state = self.bonus_state and self.top >= 2
            self.owner.switch_chain(self.levels, self.counters, self.bonus_state)

    # -- one target cycle (rule 4) -----------------------------------------------------------

    def _cycle(self) -> None:
        owner = self.owner
        top = self.top
        base = owner.text_length[top]
        assert owner.pending(top) == 1, owner.pending(top)
        if top == 0:
            # The target alone: plain decoding, one pass of 1 token per token.
            logits = owner.forward(0, 1)
            probs = processed_probs(logits[:, -1], self.config)  # [1, vocab]
            self.row_checks.track_alone(logits[:, -1:], probs[:, None], base)
            token = draw(probs, self.config, self.generator)
            owner.append_bottom(token)
            self.counters[0].record_verification(1)
            if self.shadow is not None:
                self._shadow(base, probs[:, None])
            return
        # Rule 4: in the bonus state every level below the target has one more pending token,
        # processed by its first pass of the cycle.
        self.extra_pending = [1 if self.bonus_state else 0] * top
        batch_length, draft_probs = self._call(top - 1)
        owner.adopt_batch(top, batch_length)
        draft_token_ids = owner.tokens[:, base : base + batch_length]
        # Standard verification (rules 2, 4): pending token + the L drafts, bonus row included
        # (L = 0 only for K = 1 after level 0 stopped before its first draft).
        logits = owner.forward(top, 1 + batch_length)
        target_probs = processed_probs(logits, self.config)  # [1, L + 1, vocab]
        first_invalid = self.row_checks.first_invalid(logits, target_probs)  # [1], no sync
        output_token_ids, num_accepted = self._verify(draft_token_ids, draft_probs, target_probs)
        # The one host sync per verification, which also reads the rows' checks (errors.py).
        accepted = self.row_checks.read_verification(
            num_accepted, first_invalid, draft_probs, top, owner.levels, base
        )
        emitted = accepted + 1  # the accepted drafts and the recovered / bonus token
        self._record_outcome(top, batch_length, accepted, emitted)
        # After a full acceptance the levels below the target are one token further behind
        # (K >= 2; for K = 1 level 0's 2 pending tokens are rule 1's normal state).
        self.bonus_state = top >= 2 and accepted == batch_length
        owner.commit(
            top,
            base + emitted,
            output_token_ids[:, accepted:emitted],
            levels_behind=1 if self.bonus_state else 0,
        )
        if self.shadow is not None:
            self._shadow(base, target_probs[:, :emitted])

    def _shadow(self, base: int, target_probs: torch.Tensor) -> None:
        """The shadow (the cheapest candidate, out of the chain; rule 6) scores the tokens the
        cycle committed at ``base ..`` against the target's processed rows there
        (``target_probs`` ``[1, emitted, vocab]``: each is the target's distribution given the
        committed text before it). The shadow processes the committed text it has not seen
        (a prefill up to ``base - 1``, then one pass over the last ``emitted`` tokens before the
        newest, whose rows are the ones its first draft at each committed position would have
        been drawn from) and for each row ``q`` against the target's ``p`` draws, from a random
        stream of its own, rule 2's acceptance of a draft from ``q`` (probability
        ``sum(min(p, q))``; greedy: 1 when the argmaxes agree): the replanner learns the
        shadow's acceptance from the committed text alone. It ends holding all but the newest
        committed token. Timed into its shadow counters; the scoring pass also teaches the
        replanner its cost."""
        model = self.shadow
        assert model is not None and self.replanner is not None
        level = self.candidates[model]
        counter = self.model_counters[model]
        emitted = target_probs.shape[1]
        tokens = self.owner.tokens
        started = self.timer()
        start = level.length
        # Out of the chain it holds a prefix of the committed text (CacheOwner.commit and
        # switch_chain), and after its last scoring all but the newest token of that cycle.
        assert start <= base - 1, (start, base)
        if start < base - 1:
            prefill(level, tokens[:, start : base - 1])
            counter.shadow_passes += 1
        scoring_started = self.timer()
        logits = level.append(tokens[:, base - 1 : base - 1 + emitted])  # [1, emitted, vocab]
        finished = self.timer()
        counter.shadow_passes += 1
        counter.shadow_tokens += base - 1 + emitted - start
        counter.shadow_time_s += finished - started
        self.replanner.observe_pass(model, emitted, finished - scoring_started)
        check_logits(logits, emitted, level, f"candidate {model}, shadowing the chain")
        shadow_probs = processed_probs(logits, self.config)  # [1, emitted, vocab]
        rates = torch.stack(
            [overlap(shadow_probs[0], target_probs[0]), confidence(logits[0].float()).double()]
        ).tolist()
        for probability, shadow_confidence in zip(*rates):
            accepted = self.shadow_random.random() < probability  # NaN rows: rejected
            counter.shadow_scored += 1
            counter.shadow_accepted += int(accepted)
            self.replanner.observe_shadow(model, accepted, shadow_confidence)

    def _verify(
        self, draft_token_ids: torch.Tensor, draft_probs: torch.Tensor, target_probs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`hierspec.verify` of a batch (rule 2); a batch of no drafts (level 0 stopped
        before its first, rule 1) emits the verifier's own token from its one row, which is
        what verification with all of zero drafts accepted does."""
        if draft_token_ids.shape[1] == 0:
            token = draw(target_probs[:, 0], self.config, self.generator)  # [1, 1]
            return token, torch.zeros(1, dtype=torch.long, device=token.device)
        if self.config.is_greedy:  # one-hot rows: the same result without the noise
            return verify_greedy(draft_token_ids, first_argmax(target_probs).squeeze(-1))
        return verify(draft_token_ids, draft_probs, target_probs, self.generator, validate=False)

    def _record_outcome(
        self, level_index: int, batch_length: int, accepted: int, emitted: int
    ) -> None:
        """Level ``level_index`` verified a batch of ``batch_length`` drafts of the level below,
        accepted ``accepted`` of them and emitted ``emitted`` tokens."""
        self.counters[level_index - 1].record_batch(batch_length, accepted)
        self.counters[level_index].record_verification(emitted)
        if self.replanner is not None:
            tested = accepted + (1 if accepted < batch_length else 0)
            bottom = None
            if level_index == 1 and self.report_confidences:
                values = self.bottom_confidences  # read after the verification's host sync
                if values and isinstance(values[0], torch.Tensor):
                    values = torch.stack(values).tolist()
                bottom = BottomBatch(
                    tuple(values), self.draft_lengths[0], self.min_draft_confidence
                )
            self.replanner.observe(
                self.chain[level_index - 1], self.chain[level_index], tested, accepted, bottom
            )

    # -- the levels below the target ---------------------------------------------------------

    def _call(self, level_index: int) -> tuple[int, torch.Tensor]:
        """Call level ``level_index`` (< K): it writes its batch after the caller's text.

        Returns ``(batch length, draft_probs [1, batch length, vocab] float32)``; the batch
        tokens are ``owner.tokens[:, base : base + length]`` where ``base`` is the caller's
        (= this level's, at the call) text length.
        """
        if level_index == 0:
            return self._draft_bottom()
        return self._draft_intermediate(level_index)

    def _draft_bottom(self) -> tuple[int, torch.Tensor]:
        """Rule 1: up to ``T_0`` tokens, the first pass over exactly 2 pending tokens (3 on the
        first call of a cycle in the bonus state); with early stopping the batch ends before a
        draft whose row has confidence (largest probability of the level's own softmax) below
        ``min_draft_confidence``: ``G`` tokens in ``min(G + 1, T_0)`` passes (``G = 0``: one pass
        over the pending tokens, and the level above verifies a pass of its pending tokens
        only)."""
        owner = self.owner
        owner.normalise_bottom(2 + self.extra_pending[0])
        self.extra_pending[0] = 0
        config = self.config
        generator = self.generator
        draft_length = self.draft_lengths[0]
        min_confidence = self.min_draft_confidence
        probs_rows = []
        confidences = self.bottom_confidences = []
        num_tokens = owner.pending(0)  # 2 (+ b); 1 only right after a 1-token prompt
        for _ in range(draft_length):
            logits = owner.forward(0, num_tokens)
            if min_confidence > 0.0:
                row_confidence = float(confidence(logits[0, -1].float()))
                if row_confidence < min_confidence:
                    break  # depends only on this level's own row: a stopping time, lossless
                confidences.append(row_confidence)
            elif self.report_confidences:
                confidences.append(confidence(logits[0, -1].float()))  # read with the verification
            probs = processed_probs(logits[:, -1], config)  # [1, vocab]
            owner.append_bottom(draw(probs, config, generator))
            probs_rows.append(probs)
            num_tokens = 1
        drafted = len(probs_rows)
        if min_confidence > 0.0:
            checks = drafted + (1 if drafted < draft_length else 0)
            self.counters[0].record_stop_checks(checks, stopped=drafted < draft_length)
        if not probs_rows:
            return 0, torch.empty((1, 0, self.vocab_size), dtype=torch.float32, device=self.device)
        return drafted, torch.stack(probs_rows, dim=1)  # [1, G, vocab]

    def _draft_intermediate(self, level_index: int) -> tuple[int, torch.Tensor]:
        """Rule 3: verify batches of level ``l-1`` until ``s`` reaches the threshold."""
        owner = self.owner
        config = self.config
        emitted_probs = self.emitted_probs[level_index]
        threshold = self.thresholds[level_index]
        base = owner.text_length[level_index]
        # 1 pending token, 2 on the first call of a cycle in the bonus state (rules 3, 4).
        extra = self.extra_pending[level_index]
        assert owner.pending(level_index) == 1 + extra, (owner.pending(level_index), extra)
        held = 0  # s of policy.md
        while held < threshold:
            start = base + held
            batch_length, draft_probs = self._call(level_index - 1)
            owner.adopt_batch(level_index, batch_length)
            # One pass over the pending token(s) and the G drafts; the rows that verify are the
            # last G + 1 (the extra pending token's row, if any, predicts a known token).
            logits = owner.forward(level_index, 1 + extra + batch_length)[:, extra:]
            extra = self.extra_pending[level_index] = 0
            target_probs = processed_probs(logits, config)  # [1, G + 1, vocab]
            first_invalid = self.row_checks.first_invalid(logits, target_probs)  # [1], no sync
            output_token_ids, num_accepted = self._verify(
                owner.tokens[:, start : start + batch_length], draft_probs, target_probs
            )
            # The one host sync per verification, which also reads the rows' checks (errors.py).
            accepted = self.row_checks.read_verification(
                num_accepted, first_invalid, draft_probs, level_index, owner.levels, start
            )
            emitted = accepted + 1  # the accepted drafts and the recovered / bonus token
            # Each emitted token is distributed as this level's processed row at its position
            # (speculative sampling, policy.md rule 2), so that row is the q the level above
            # verifies it against.
            emitted_probs[:, held : held + emitted] = target_probs[:, :emitted]
            self._record_outcome(level_index, batch_length, accepted, emitted)
            owner.commit(level_index, start + emitted, output_token_ids[:, accepted:emitted])
            held += emitted
        # Below level K-1 hand up exactly T_l (all processed by this level); level K-1 hands up
        # everything it holds (rule 3).
        handed_up = self.draft_lengths[level_index] if level_index < self.top - 1 else held
        return handed_up, emitted_probs[:, :handed_up]


# --------------------------------------------------------------------------------------------
# The chain's schedule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainSchedule:
    """The draft lengths of a chain and the hand-up thresholds derived from them (rule 3).

    Parameters
    ----------
    draft_lengths : tuple of int
        ``[T_0, ..., T_{K-1}]``, each ``>= 1`` (empty for the target alone).

    Attributes
    ----------
    top : int
        ``K``, the target's level (``len(draft_lengths)``).
    thresholds : tuple of int
        ``[l]``: the ``s`` at which intermediate level ``l`` stops verifying and hands up:
        ``T_l + 1`` below level K-1, ``T_{K-1}`` at level K-1 (which hands up everything it
        holds). Entry 0 is unused (level 0 drafts exactly ``T_0``).

    Raises
    ------
    ValueError
        A draft length below 1.
    """

    draft_lengths: tuple[int, ...]
    top: int = field(init=False)
    thresholds: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        for index, size in enumerate(self.draft_lengths):
            if size < 1:
                raise ValueError(f"draft_lengths[{index}] must be >= 1, got {size}")
            if size > MAX_DRAFT_LENGTH:  # the planner's limit and message (hierspec.planning)
                raise ValueError(
                    f"draft_lengths[{index}] = {size} exceeds MAX_DRAFT_LENGTH = {MAX_DRAFT_LENGTH}"
                )
        top = len(self.draft_lengths)
        object.__setattr__(self, "top", top)
        object.__setattr__(
            self,
            "thresholds",
            tuple(
                size + 1 if index < top - 1 else size
                for index, size in enumerate(self.draft_lengths)
            ),
        )

    @staticmethod
    def max_lookahead(num_candidates: int, max_draft_length: int) -> int:
        """A bound on :attr:`lookahead` over every chain of ``num_candidates`` models with draft
        lengths ``<= max_draft_length``."""
        return num_candidates * (2 * max_draft_length + 2) + 2

    @property
    def lookahead(self) -> int:
        """How far level 0's text can run ahead of the committed text within one cycle.

        Each intermediate level holds fewer than ``threshold + (lower batch + 1)`` tokens, level 0
        adds ``T_0``; plus 2.
        """
        return (
            sum(
                self.thresholds[index] + self.draft_lengths[index - 1]
                for index in range(1, self.top)
            )
            + (self.draft_lengths[0] if self.top else 0)
            + 2
        )


# --------------------------------------------------------------------------------------------
# The public decoder
# --------------------------------------------------------------------------------------------


class HierarchicalDecoder:
    """Lossless hierarchical speculative decoding over a chain of models (batch size 1).

    Parameters
    ----------
    models : sequence of models
        The chain, cheapest first, the target last: transformers causal LMs (wrapped in
        :class:`hierspec.levels.TransformersLevel`) or :class:`hierspec.protocol.DraftModel`
        objects. One shared vocabulary and one device. One model is plain decoding, two is
        classic speculative decoding.
    draft_lengths : sequence of int
        ``[T_0, ..., T_{K-1}]``, one int ``>= 1`` per level below the target (``[]`` for one
        model). ``T_0`` is the number of tokens level 0 drafts per call; an intermediate level
        accumulates at least ``T_l`` (+1 below level K-1) tokens before handing up (policy.md
        rules 1-4).
    min_draft_confidence : float in [0, 1), default 0
        Early stopping of level 0 (policy.md rule 1): it ends its batch before a draft whose
        next-token distribution (the softmax of its own logits, whatever the sampling
        settings) has no probability of at least this much, so it may hand up fewer than
        ``T_0`` tokens (even none). Lossless: the decision depends only on the drafter's own
        output. 0 never stops. Model it with ``continue_rates`` / ``bottom_acceptance`` in
        :func:`hierspec.evaluate` and :func:`hierspec.plan` (``LevelStats.continue_rate`` is
        the observed rate).
    timer : callable, optional
        The seconds clock the passes and ``GenerateStats`` times are taken with (default
        ``time.perf_counter``; tests pass the virtual clock of synthetic models).

    Raises
    ------
    TypeError
        A model that is neither a transformers model nor a DraftModel; ``draft_lengths`` not a
        sequence of ints; a ``timer`` that is not callable.
    ValueError
        A model whose cache cannot be truncated, different vocabularies or devices,
        ``draft_lengths`` of the wrong length or with an entry below 1, ``min_draft_confidence``
        outside ``[0, 1)``.

    See Also
    --------
    hierspec.plan : picks the chain and draft lengths (:meth:`from_plan` builds the decoder).
    hierspec.evaluate : the expected passes per token and latency of this decoder's process.
    """

    def __init__(
        self,
        models: Sequence[object],
        draft_lengths: Sequence[int],
        *,
        min_draft_confidence: float = 0.0,
        timer: Callable[[], float] | None = None,
    ) -> None:
        levels = as_levels(models)
        if timer is not None and not callable(timer):
            raise TypeError(f"timer must be a callable returning seconds, got {timer!r}")
        self._timer = timer if timer is not None else time.perf_counter
        if isinstance(draft_lengths, (str, bytes)) or not isinstance(draft_lengths, Sequence):
            raise TypeError(f"draft_lengths must be a sequence of ints, got {draft_lengths!r}")
        if len(draft_lengths) != len(levels) - 1:
            raise ValueError(
                f"draft_lengths must have one entry per model below the target "
                f"({len(levels) - 1}), got {list(draft_lengths)!r} of length {len(draft_lengths)}"
            )
        sizes = []
        for index, size in enumerate(draft_lengths):
            if isinstance(size, bool):
                raise TypeError(f"draft_lengths[{index}] must be an int >= 1, got {size!r}")
            try:
                size = operator.index(size)
            except TypeError:
                raise TypeError(
                    f"draft_lengths[{index}] must be an int >= 1, got {size!r}"
                ) from None
            if size < 1:
                raise ValueError(f"draft_lengths[{index}] must be >= 1, got {size}")
            sizes.append(size)
        self._min_draft_confidence = check_min_draft_confidence(min_draft_confidence)
        self._levels = levels
        self._candidates = levels
        self._chain = tuple(range(len(levels)))
        self._replanner: Replanner | None = None
        self._schedule = ChainSchedule(tuple(sizes))
        self._vocab_size = levels[0].vocab_size
        self._device = torch.device(levels[0].device)

    @classmethod
    def from_plan(
        cls, models: Sequence[object], plan: object, *, min_draft_confidence: float = 0.0
    ) -> HierarchicalDecoder:
        """The decoder of ``plan``.

        Parameters
        ----------
        models : sequence of models
            ALL the candidates the plan was made for, in the same order (index = model index of
            the profile); the plan's ``chain`` picks the levels.
        plan : hierspec.Plan or hierspec.PlanEntry
            Anything with ``.chain`` and ``.draft_lengths``.
        min_draft_confidence : float, default 0
            As in the constructor.

        Returns
        -------
        HierarchicalDecoder
            The decoder over ``[models[i] for i in plan.chain]`` with ``plan.draft_lengths``.

        Raises
        ------
        TypeError
            ``models`` not a sequence, ``plan`` without ``.chain`` / ``.draft_lengths``.
        ValueError
            A plan made for a different number of candidates, a chain that does not index
            ``models`` or does not end at the target (the last model).
        """
        if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
            raise TypeError(f"models must be a sequence of models, got {type(models).__name__}")
        chain = getattr(plan, "chain", None)
        draft_lengths = getattr(plan, "draft_lengths", None)
        if chain is None or draft_lengths is None:
            raise TypeError(
                f"plan must have .chain and .draft_lengths (a hierspec.Plan), got {plan!r}"
            )
        model_names = getattr(plan, "model_names", None)
        if (
            isinstance(model_names, Sequence)
            and hasattr(plan, "alternatives")
            and len(model_names) != len(models)
        ):
            raise ValueError(
                f"plan was made for {len(model_names)} candidates {list(model_names)} but "
                f"models has {len(models)}"
            )
        chain = [operator.index(index) for index in chain]
        if not chain or any(not 0 <= index < len(models) for index in chain):
            raise ValueError(f"plan.chain {chain} does not index models (length {len(models)})")
        if chain[-1] != len(models) - 1:
            raise ValueError(
                f"plan.chain {chain} must end at the target, models[{len(models) - 1}]"
            )
        return cls(
            [models[index] for index in chain],
            list(draft_lengths),
            min_draft_confidence=min_draft_confidence,
        )

    @classmethod
    def adaptive(
        cls,
        models: Sequence[object],
        profile: Profile,
        config: AdaptiveConfig | None = None,
        replanner: Replanner | None = None,
        *,
        timer: Callable[[], float] | None = None,
    ) -> HierarchicalDecoder:
        """A decoder that learns acceptance while generating and re-plans (the adaptive
        hierarchy, :mod:`hierspec.adaptive`).

        It starts every call with the configuration of least expected time for the call's
        prompt and ``max_new_tokens`` (the profile's static plan, unless the drafts' prompt
        prefill does not pay for itself: :meth:`Replanner.initial_for_request`), keeps a
        posterior over each pair's acceptance rate fed by its verifications, and every
        ``config.replan_interval`` target passes (up to ``config.max_replan_interval`` while
        the configuration stays) asks the planner for the best chain and draft lengths under
        the current estimates, switching between cycles when the predicted gain repays the
        passes that bring joining models up to date. The target alone is always an option,
        and the cheapest candidate shadows every chain it is not in (``config.shadow_max_cost``:
        its estimates keep learning from the committed text). Lossless: a switch
        depends only on the committed past (policy.md rule 6).

        Parameters
        ----------
        models : sequence of models
            ALL the candidates of ``profile``, in its order (cheapest first, the target last).
        profile : hierspec.Profile
            Costs and acceptance of the candidates (the prior of the estimates).
        config : AdaptiveConfig, optional
            Estimation and switching settings (default :class:`AdaptiveConfig()`).
        replanner : Replanner, optional
            Replaces the default ``Replanner(profile, config)`` (e.g. a subclass with another
            decision rule); ``config`` is then ignored.
        timer : callable, optional
            As in the constructor; with ``config.learn_costs`` the pass times it measures are
            what the replanner learns the costs from.

        Returns
        -------
        HierarchicalDecoder
            Its :attr:`levels` / :attr:`draft_lengths` are the profile's static plan's (a call
            starts from the plan for its prompt, ``stats.initial_plan``); ``generate`` reports
            per-candidate :class:`LevelStats` and every decision in ``stats.decisions``.

        Raises
        ------
        TypeError, ValueError
            As the constructor, and when ``models`` and ``profile`` differ in length.
        """
        if replanner is None:
            if not isinstance(profile, Profile):
                raise TypeError(f"profile must be a hierspec.Profile, got {type(profile).__name__}")
            replanner = Replanner(profile, config if config is not None else AdaptiveConfig())
        candidates = as_levels(models)
        num_models = len(replanner.profile.model_names)
        if len(candidates) != num_models:
            raise ValueError(
                f"models has {len(candidates)} entries but the profile has {num_models} "
                f"models {list(replanner.profile.model_names)}"
            )
        chain, draft_lengths, _ = replanner.initial()
        decoder = cls(
            [candidates[model] for model in chain],
            list(draft_lengths),
            min_draft_confidence=replanner.min_draft_confidence,
            timer=timer,
        )
        decoder._candidates = candidates
        decoder._chain = chain
        decoder._replanner = replanner
        return decoder

    @property
    def candidates(self) -> tuple[DraftModel, ...]:
        """Every model the decoder may use (the chain's levels for a static decoder)."""
        return self._candidates

    @property
    def chain(self) -> tuple[int, ...]:
        """Indices into :attr:`candidates` of the (initial) chain, bottom first."""
        return self._chain

    @property
    def replanner(self) -> Replanner | None:
        """The adaptive decoder's replanner (``None`` for a static chain)."""
        return self._replanner

    @property
    def levels(self) -> tuple[DraftModel, ...]:
        """The levels of the chain (wrapped models), bottom first."""
        return self._levels

    @property
    def min_draft_confidence(self) -> float:
        """Early stopping of level 0 (see the constructor); 0 never stops. The adaptive decoder
        starts each request here and may change it (``PlanDecision.min_draft_confidence``)."""
        return self._min_draft_confidence

    @property
    def draft_lengths(self) -> tuple[int, ...]:
        """``(T_0, ..., T_{K-1})``; empty for the target alone."""
        return self._schedule.draft_lengths

    @property
    def schedule(self) -> ChainSchedule:
        """The draft lengths and the hand-up thresholds derived from them (policy.md rule 3)."""
        return self._schedule

    @property
    def vocab_size(self) -> int:
        """Size of the shared vocabulary."""
        return self._vocab_size

    @property
    def device(self) -> torch.device:
        """Device of the levels; ``generate`` returns its sequences there."""
        return self._device

    # ---------------------------------------------------------------------------------------

    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        eos_token_id: int | Sequence[int] | Literal["generation_config"] | None = (
            "generation_config"
        ),
        streamer: Streamer | None = None,
    ) -> GenerateOutput:
        """Generate up to ``max_new_tokens`` tokens after a prompt.

        The output has exactly the distribution of the target sampling alone with the same
        ``temperature`` / ``top_k`` / ``top_p`` (transformers' semantics); ``temperature=0`` is
        greedy and equals the target's ``generate(do_sample=False)`` token for token. All
        randomness comes from one ``torch.Generator`` seeded with ``seed``.

        Parameters
        ----------
        input_ids : torch.Tensor
            ``[1, prompt]`` int64 (or int32) token ids in ``[0, vocab_size)``, at least one.
        max_new_tokens : int, default 64
            Upper bound on the new tokens, ``>= 0``.
        temperature : float, default 1.0
            ``0`` is greedy.
        top_k : int or None
            Keep the ``top_k`` most likely tokens (``None``: all).
        top_p : float or None
            Keep the smallest set of tokens whose probability reaches ``top_p`` (``None``: all).
        seed : int or None
            Seed of the generator, in ``[0, 2**64)``; ``None`` draws a fresh nondeterministic
            seed, returned in :attr:`GenerateOutput.seed`.
        eos_token_id : int, sequence of int, "generation_config", or None
            Generation stops right after the first of these tokens (included). The default
            ``"generation_config"`` takes them from the target's generation config as
            transformers' ``generate`` does (``model.generation_config.eos_token_id`` of a
            transformers target, :attr:`hierspec.TransformersLevel.eos_token_ids`; no EOS when it
            sets none or the target is a plain DraftModel); ``None`` means no EOS.
        streamer : Streamer, optional
            transformers' streamer protocol (e.g. ``transformers.TextStreamer``): ``put`` gets
            the prompt, then each committed burst of new tokens; ``end`` once at the end.

        Returns
        -------
        GenerateOutput
            ``sequences`` ``[1, prompt + new]`` int64 on :attr:`device`, the per-level
            :class:`GenerateStats` and the seed used.

        Raises
        ------
        TypeError
            ``input_ids`` not an integer tensor; ``max_new_tokens``, ``seed`` or
            ``eos_token_id`` not ints; a sampling argument of the wrong type.
        ValueError
            ``input_ids`` not of shape ``[1, prompt >= 1]`` or with ids outside the vocabulary;
            negative ``max_new_tokens``; ``seed`` or ``eos_token_id`` out of range; invalid
            ``temperature`` / ``top_k`` / ``top_p``; a prompt + ``max_new_tokens`` that does not
            fit a level's ``max_length`` (learned absolute positions, e.g. GPT-2's
            ``n_positions``), counting the chain's lookahead (see :meth:`_check_max_length`).
        hierspec.NonDistributionError
            A verifying level (the target or an intermediate level) produced a processed row
            that is not a distribution (NaN / ``inf`` logits, all ``-inf``, or no mass after
            top-k / top-p); names the level and the text position. A drafter doing so only
            gets a ``RuntimeWarning`` (once per call): its drafts are always rejected.

        Examples
        --------
        Three synthetic models (two drafts and the target, a 32-token vocabulary); greedy
        hierarchical decoding reproduces the target alone, with fewer target passes:

        >>> import torch
        >>> from hierspec import HierarchicalDecoder
        >>> from hierspec.testing import markov_models
        >>> models = markov_models(vocab_size=32, noise_scales=[1.0, 0.5])
        >>> prompt = torch.tensor([[1, 2, 3]])
        >>> decoder = HierarchicalDecoder(models, draft_lengths=[2, 4])
        >>> spec = decoder.generate(prompt, max_new_tokens=24, temperature=0)
        >>> alone = HierarchicalDecoder(models[-1:], draft_lengths=[]).generate(
        ...     prompt, max_new_tokens=24, temperature=0
        ... )
        >>> spec.sequences.shape
        torch.Size([1, 27])
        >>> bool((spec.sequences == alone.sequences).all())
        True
        >>> spec.stats.target_passes < alone.stats.target_passes
        True

        Sampling is reproducible from the seed:

        >>> first = decoder.generate(prompt, max_new_tokens=16, seed=7)
        >>> again = decoder.generate(prompt, max_new_tokens=16, seed=first.seed)
        >>> bool((first.sequences == again.sequences).all())
        True
        """
        config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
        prompt = self._check_input_ids(input_ids)
        checked_max_new_tokens = _int_or_none(max_new_tokens)
        if checked_max_new_tokens is None:
            raise TypeError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        max_new_tokens = checked_max_new_tokens
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        self._check_max_length(prompt.shape[1], max_new_tokens)
        eos_ids = self._check_eos(eos_token_id)
        generator = torch.Generator(device=self._device)
        if seed is None:
            seed = generator.seed()
        else:
            checked_seed = _int_or_none(seed)
            if checked_seed is None:
                raise TypeError(f"seed must be an int or None, got {seed!r}")
            seed = checked_seed
            if not 0 <= seed < 2**64:
                raise ValueError(f"seed must be in [0, 2**64), got {seed}")
            generator.manual_seed(seed)
        # Inference mode: no autograd bookkeeping in the per-token loop (~20% less engine time on
        # CPU). Tensors created inside are inference tensors, so the output is cloned outside.
        with torch.inference_mode():
            chain, schedule, request = self._chain, self._schedule, None
            if self._replanner is not None:
                self._replanner.reset()
                request = self._replanner.initial_for_request(prompt.shape[1], max_new_tokens)
                chain, schedule = request.chain, ChainSchedule(request.draft_lengths)
            run = _Run(
                self._candidates,
                chain,
                schedule,
                self._vocab_size,
                self._device,
                config,
                generator,
                prompt,
                max_new_tokens,
                eos_ids,
                replanner=self._replanner,
                streamer=streamer,
                min_draft_confidence=self._min_draft_confidence,
                timer=self._timer,
            )
            sequences, stats = run.execute()
        if request is not None:
            stats = replace(stats, initial_plan=request)
        return GenerateOutput(sequences=sequences.clone(), stats=stats, seed=seed)

    def _check_max_length(self, prompt_length: int, max_new_tokens: int) -> None:
        """Refuse a call that would run a level past its ``max_length`` (learned positions).

        Levels process drafts beyond the committed text: level 0's text runs up to the chain's
        :attr:`ChainSchedule.lookahead` tokens ahead. Rather than clamp drafts near the end (a
        different process from the one the planner models), the call must fit with the
        lookahead: ``prompt + max_new_tokens + lookahead <= max_length`` for every level with a
        ``max_length`` (a few tokens conservative, never an ``IndexError`` mid-generation). An
        adaptive decoder checks every candidate with the bound over all chains it may run.
        """
        lookahead = self._schedule.lookahead
        if self._replanner is not None:  # any chain of the candidates may run
            lookahead = ChainSchedule.max_lookahead(
                len(self._candidates), self._replanner.config.max_draft_length
            )
        needed = prompt_length + max_new_tokens + lookahead
        for index, level in enumerate(self._candidates):
            max_length = getattr(level, "max_length", None)
            if max_length is None or needed <= max_length:
                continue
            allowed = max_length - prompt_length - lookahead
            advice = (
                f"use max_new_tokens <= {allowed}"
                if allowed >= 0
                else f"shorten the prompt to at most {max_length - lookahead} tokens"
            )
            raise ValueError(
                f"models[{index}] ({level!r}) can process at most {max_length} tokens (learned "
                f"position embeddings), but prompt ({prompt_length}) + max_new_tokens "
                f"({max_new_tokens}) + the chain's lookahead ({lookahead}, drafts processed "
                f"beyond the text) = {needed}; {advice}"
            )

    def _check_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(
                f"input_ids must be a torch.Tensor [1, prompt], got {type(input_ids).__name__}"
            )
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(
                f"input_ids must be an int64 (or int32) tensor, got dtype {input_ids.dtype}"
            )
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape [1, prompt], got shape {tuple(input_ids.shape)}"
            )
        if input_ids.shape[0] != 1:
            raise ValueError(
                f"input_ids has batch size {input_ids.shape[0]} (shape {tuple(input_ids.shape)}); "
                "only batch size 1 is supported"
            )
        if input_ids.shape[1] == 0:
            raise ValueError(
                f"input_ids is an empty prompt (shape {tuple(input_ids.shape)}); need >= 1 token"
            )
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= self._vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"input_ids contains token id {bad}, outside [0, vocab_size={self._vocab_size})"
            )
        return input_ids.to(device=self._device, dtype=torch.int64)

    def _check_eos(
        self, eos_token_id: int | Sequence[int] | Literal["generation_config"] | None
    ) -> torch.Tensor | None:
        if isinstance(eos_token_id, str):
            if eos_token_id != "generation_config":
                raise ValueError(
                    "eos_token_id must be an int, a sequence of ints, 'generation_config' or "
                    f"None; got {eos_token_id!r}"
                )
            eos_token_id = getattr(self._levels[-1], "eos_token_ids", None)
        if eos_token_id is None:
            return None
        ids = [eos_token_id] if not isinstance(eos_token_id, Sequence) else list(eos_token_id)
        if not ids:
            raise ValueError(
                "eos_token_id must be an int, a non-empty sequence of ints, or None; got []"
            )
        for value in ids:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"eos_token_id must be an int or a sequence of ints, got {eos_token_id!r}"
                )
            if not 0 <= value < self._vocab_size:
                raise ValueError(
                    f"eos_token_id {value} is outside [0, vocab_size={self._vocab_size})"
                )
        return torch.tensor(ids, dtype=torch.int64, device=self._device)


def _int_or_none(value: object) -> int | None:
    """``value`` as an int (Python or NumPy integers, via ``operator.index``), or ``None`` when
    it is not one; bools (``True`` is not a count or a seed) and floats are not ints."""
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):  # NumPy bools
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None
