"""The lossless hierarchical decoding engine: :class:`HierarchicalDecoder`.

It runs exactly the process of ``docs/policy.md`` (the contract that ``hierspec.evaluate``,
``hierspec.expected_latency``, ``hierspec.simulate`` and ``hierspec.plan`` model); the rule numbers
below refer to that file.

Terms (as in policy.md):
    level l          position ``l`` in the chain; level 0 drafts, level ``K`` is the target.
    working text     the tokens a level currently builds on. All working texts live in one token
                     buffer: at any moment each level's text is a prefix of the text of every level
                     below it, so a level's text is ``tokens[:, :text_length[l]]``.
    cache length     tokens the level has processed (its KV cache); the tokens after it, up to the
                     end of its working text, are *pending* and go into its next forward pass.
    batch            the tokens a level hands up to the level above (with, for each, the processed
                     distribution it was drawn from: the ``q`` the level above verifies against).
    emitted tokens   what one verification outputs: the accepted drafts plus one recovered or
                     bonus token (``O`` of rule 2).

One cycle (per target pass): the target calls level K-1, which calls level K-2, ..., level 0;
every verification goes through :func:`hierspec.verify` (the one accept / resample rule), and
after a verification at level ``l`` the cache owner (:class:`_CacheOwner`, the only component that
truncates caches) rolls every level at or below ``l`` back to level ``l``'s working text.

Pass sizes (asserted): level 0 ``2`` then ``1`` per draft (rule 1; ``1`` only for the first pass
after a 1-token prompt); an intermediate level ``1 + T_{l-1}``; the target ``1 + T_0`` when
``K = 1`` (rule 2) or the length ``L`` of the hand-up when ``K >= 2`` (rule 4, deferred); the target
alone ``1``.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..levels import as_levels
from ..protocol import DraftModel
from ..sampling import SamplingConfig, draw, processed_probs
from ..verify import verify

__all__ = ["GenerateOutput", "GenerateStats", "HierarchicalDecoder", "LevelStats"]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelStats:
    """Counters of one level over one :meth:`HierarchicalDecoder.generate` call.

    Forward-pass counters exclude the prompt prefill, which is reported separately
    (``prefill_*``), so ``forward_passes / new_tokens`` is directly comparable with
    ``hierspec.evaluate(...).passes_per_token`` (steady state; the last cycle's overshoot beyond
    ``max_new_tokens`` / EOS is counted as work).

    As a drafter (levels below the target), in vLLM's terms: ``batches`` handed up, ``drafted``
    tokens in them, ``accepted`` by the level above, ``rejected`` batches (those that ended in a
    rejection rather than full acceptance). As a verifier (levels >= 1): ``verifications`` and the
    ``tokens_emitted`` by them (accepted + recovered + bonus; the target's deferred verification
    has no bonus).
    """

    level: int
    forward_passes: int
    tokens_processed: int
    time_s: float  # wall time inside this level's forward passes (host time on async devices)
    prefill_passes: int
    prefill_tokens: int
    prefill_time_s: float
    batches: int
    drafted: int
    accepted: int
    rejected: int
    accepted_at_position: tuple[int, ...]  # [j]: batches whose draft j was accepted
    reached_position: tuple[int, ...]  # [j]: batches whose draft j was tested
    verifications: int
    tokens_emitted: int

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

    @property
    def tokens_per_verification(self) -> float:
        """Mean number of tokens one verification by this level emits (``E[O]`` of policy.md)."""
        return self.tokens_emitted / self.verifications if self.verifications else math.nan


@dataclass(frozen=True)
class GenerateStats:
    """Statistics of one :meth:`HierarchicalDecoder.generate` call (``levels[0]`` = bottom)."""

    levels: tuple[LevelStats, ...]
    prompt_tokens: int
    new_tokens: int  # tokens in the output after the prompt
    target_passes: int  # cycles (excluding the prefill)
    wall_time_s: float  # the whole call, prefill included
    prefill_time_s: float  # wall time of the prompt prefill
    model_time_s: float  # wall time inside forward passes after the prefill, all levels

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
    """Result of :meth:`HierarchicalDecoder.generate`."""

    sequences: torch.Tensor  # [1, prompt + new] int64, on the models' device
    stats: GenerateStats
    seed: int  # the generator seed actually used (reproduces the call when passed as ``seed``)


# --------------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------------


class _Counters:
    """Mutable per-level counters of a running call (frozen into :class:`LevelStats`)."""

    __slots__ = (
        "forward_passes", "tokens_processed", "time_s", "prefill_passes", "prefill_tokens",
        "prefill_time_s", "batches", "drafted", "accepted", "rejected", "outcomes",
        "verifications", "tokens_emitted",
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
        self.outcomes: dict[tuple[int, int], int] = {}  # (batch length, num accepted) -> count
        self.verifications = 0
        self.tokens_emitted = 0

    def record_batch(self, batch_length: int, num_accepted: int) -> None:
        """This level's batch of ``batch_length`` drafts got ``num_accepted`` accepted above."""
        self.batches += 1
        self.drafted += batch_length
        self.accepted += num_accepted
        if num_accepted < batch_length:
            self.rejected += 1
        key = (batch_length, num_accepted)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def freeze(self, level: int) -> LevelStats:
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
        )


class _CacheOwner:
    """Owns every level's working text and is the only component that truncates level caches.

    ``tokens [1, capacity]`` holds the working text of level 0, which extends the text of every
    level above (``text_length`` is non-increasing in the level). A level's cache always covers a
    prefix of its own text (asserted), so forward passes read their pending tokens from here.
    """

    def __init__(
        self, levels: Sequence[DraftModel], counters: Sequence[_Counters], capacity: int
    ) -> None:
        self.levels = levels
        self.counters = counters
        self.tokens = torch.zeros((1, capacity), dtype=torch.int64, device=levels[0].device)
        self.text_length = [0] * len(levels)

    def start(self, prompt: torch.Tensor, bottom_pending: int) -> None:
        """New sequence: every level's text is ``prompt [1, P]``; prefill each level so that the
        target and intermediate levels have 1 pending token and level 0 ``bottom_pending``
        (2 for a drafter, rule 1 - as many as the prompt has; 1 for the target alone)."""
        prompt_length = prompt.shape[1]
        self.tokens[:, :prompt_length] = prompt
        for level_index, level in enumerate(self.levels):
            level.reset()
            self.text_length[level_index] = prompt_length
            pending = bottom_pending if level_index == 0 else 1
            prefill = max(prompt_length - pending, 0)
            if prefill > 0:
                counters = self.counters[level_index]
                started = time.perf_counter()
                level.append(self.tokens[:, :prefill])
                counters.prefill_time_s += time.perf_counter() - started
                counters.prefill_passes += 1
                counters.prefill_tokens += prefill

    def pending(self, level_index: int) -> int:
        return self.text_length[level_index] - self.levels[level_index].length

    def forward(self, level_index: int, num_tokens: int) -> torch.Tensor:
        """One forward pass of a level over its next ``num_tokens`` pending tokens.

        Returns logits ``[1, num_tokens, vocab]``; row ``i`` is the next-token distribution after
        the ``i``-th processed token. Counted and timed as one pass.
        """
        level = self.levels[level_index]
        start = level.length
        assert 0 < num_tokens <= self.text_length[level_index] - start, (
            level_index, num_tokens, self.text_length[level_index], start
        )  # fmt: skip
        counters = self.counters[level_index]
        started = time.perf_counter()
        logits = level.append(self.tokens[:, start : start + num_tokens])
        counters.time_s += time.perf_counter() - started
        counters.forward_passes += 1
        counters.tokens_processed += num_tokens
        return logits

    def normalise_bottom(self) -> None:
        """Rule 1: crop level 0 so that exactly 2 tokens are pending (1 after a 1-token prompt)."""
        level = self.levels[0]
        keep = max(self.text_length[0] - 2, 0)
        assert level.length >= keep, (level.length, self.text_length[0])  # 1 or 2 were pending
        if level.length > keep:
            level.truncate(keep)

    def rollback(self, level_index: int, new_text_length: int) -> None:
        """After a verification at ``level_index``: its text becomes ``tokens[:, :new_text_length]``
        (the emitted token is already written) and every level at or below it adopts that text.

        Each of these levels keeps at most ``new_text_length - 1`` processed tokens: the prefix
        before the last emitted token is the accepted prefix, which all of them processed
        identically (they drafted it); everything after it is gone. Then each level >= 1 has
        exactly one pending token and level 0 one or two (rule 5).
        """
        keep = new_text_length - 1
        for index in range(level_index, -1, -1):
            self.text_length[index] = new_text_length
            level = self.levels[index]
            if level.length > keep:
                level.truncate(keep)
            assert level.length == keep or (index == 0 and level.length == keep - 1), (
                index, level.length, keep
            )  # fmt: skip

    def truncate_text(self, new_text_length: int) -> None:
        """End of generation: cut every level's text to ``new_text_length`` (EOS / max tokens)."""
        keep = new_text_length - 1
        for index, level in enumerate(self.levels):
            self.text_length[index] = new_text_length
            if level.length > keep:
                level.truncate(keep)


# --------------------------------------------------------------------------------------------
# The decoder
# --------------------------------------------------------------------------------------------


class HierarchicalDecoder:
    """Lossless hierarchical speculative decoding over a chain of models (batch size 1).

    Args:
        models: the chain, cheapest first, the target last: transformers causal LMs (wrapped in
            :class:`hierspec.levels.TransformersLevel`) or :class:`hierspec.protocol.DraftModel`
            objects. One shared vocabulary and one device. One model is plain decoding, two is
            classic speculative decoding.
        draft_lengths: ``[T_0, ..., T_{K-1}]``, one int ``>= 1`` per level below the target
            (``[]`` for one model). ``T_0`` is the number of tokens level 0 drafts per call; an
            intermediate level accumulates at least ``T_l`` (+1 below level K-1) tokens before
            handing up (policy.md rules 1-4).

    Raises:
        TypeError / ValueError naming the argument: a model that is neither a transformers model
        nor a DraftModel, a model whose cache cannot be truncated, different vocabularies or
        devices, wrong ``draft_lengths``.
    """

    def __init__(self, models: Sequence[object], draft_lengths: Sequence[int]) -> None:
        levels = as_levels(models)
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
        self._levels = levels
        self._draft_lengths = tuple(sizes)
        self._vocab_size = levels[0].vocab_size
        self._device = torch.device(levels[0].device)
        self._top = len(levels) - 1  # K
        # Hand-up threshold of each intermediate level (rule 3): T_l + 1 below level K-1, T_{K-1}
        # at level K-1 (which hands up everything it holds).
        self._thresholds = tuple(
            size + 1 if index < self._top - 1 else size
            for index, size in enumerate(self._draft_lengths)
        )

    @classmethod
    def from_plan(cls, models: Sequence[object], plan: object) -> HierarchicalDecoder:
        """The decoder of ``plan`` (a :class:`hierspec.Plan` or :class:`hierspec.PlanEntry`).

        ``models`` are ALL the candidates the plan was made for, in the same order (index = model
        index of the profile); the plan's ``chain`` picks the levels and ``draft_lengths`` their
        draft lengths.
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
        return cls([models[index] for index in chain], list(draft_lengths))

    @property
    def levels(self) -> tuple[DraftModel, ...]:
        """The levels of the chain (wrapped models), bottom first."""
        return self._levels

    @property
    def draft_lengths(self) -> tuple[int, ...]:
        return self._draft_lengths

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def device(self) -> torch.device:
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
        eos_token_id: int | Sequence[int] | None = None,
    ) -> GenerateOutput:
        """Generate up to ``max_new_tokens`` tokens after ``input_ids`` ``[1, prompt]`` (int64).

        The output has exactly the distribution of the target sampling alone with the same
        ``temperature`` / ``top_k`` / ``top_p`` (transformers' semantics); ``temperature=0`` is
        greedy and equals the target's ``generate(do_sample=False)`` token for token. Generation
        stops right after the first ``eos_token_id`` (included) or at ``max_new_tokens``.
        All randomness comes from one ``torch.Generator`` seeded with ``seed`` (``None``: a fresh
        nondeterministic seed, returned in :attr:`GenerateOutput.seed`).
        """
        config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
        prompt = self._check_input_ids(input_ids)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise TypeError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        eos_ids = self._check_eos(eos_token_id)
        generator = torch.Generator(device=self._device)
        if seed is None:
            seed = generator.seed()
        else:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seed must be an int or None, got {seed!r}")
            if not 0 <= seed < 2**64:
                raise ValueError(f"seed must be in [0, 2**64), got {seed}")
            generator.manual_seed(seed)
        # Inference mode: no autograd bookkeeping in the per-token loop (~20% less engine time on
        # CPU). Tensors created inside are inference tensors, so the output is cloned outside.
        with torch.inference_mode():
            run = _Run(self, config, generator, prompt, max_new_tokens, eos_ids)
            sequences, stats = run.execute()
        return GenerateOutput(sequences=sequences.clone(), stats=stats, seed=seed)

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

    def _check_eos(self, eos_token_id: int | Sequence[int] | None) -> torch.Tensor | None:
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


class _Run:
    """One generate call: the recursion of policy.md over the decoder's levels."""

    def __init__(
        self,
        decoder: HierarchicalDecoder,
        config: SamplingConfig,
        generator: torch.Generator,
        prompt: torch.Tensor,
        max_new_tokens: int,
        eos_ids: torch.Tensor | None,
    ) -> None:
        self.levels = decoder.levels
        self.draft_lengths = decoder.draft_lengths
        self.thresholds = decoder._thresholds
        self.top = decoder._top
        self.config = config
        self.generator = generator
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.eos_ids = eos_ids
        self.counters = [_Counters() for _ in self.levels]
        # How far level 0's text can run ahead of the committed text within one cycle: each
        # intermediate level holds fewer than threshold + (lower batch + 1) tokens, level 0 adds
        # T_0.
        lookahead = (
            sum(
                self.thresholds[index] + self.draft_lengths[index - 1]
                for index in range(1, self.top)
            )
            + (self.draft_lengths[0] if self.top else 0)
            + 2
        )
        capacity = prompt.shape[1] + max_new_tokens + lookahead
        self.owner = _CacheOwner(self.levels, self.counters, capacity)
        # Processed rows of the tokens each intermediate level has emitted in its current call:
        # [1, threshold + lower batch, vocab] float32 (the q it hands up).
        self.emitted_probs = [None] + [
            torch.empty(
                (1, self.thresholds[index] + self.draft_lengths[index - 1], decoder.vocab_size),
                dtype=torch.float32,
                device=decoder.device,
            )
            for index in range(1, self.top)
        ]

    def execute(self) -> tuple[torch.Tensor, GenerateStats]:
        """Prefill, run cycles until EOS / max_new_tokens, cut the overshoot; returns
        ``(sequences [1, prompt + new] (a view of the token buffer), stats)``."""
        started = time.perf_counter()
        owner = self.owner
        prompt_length = self.prompt.shape[1]
        owner.start(self.prompt, bottom_pending=2 if self.top > 0 else 1)
        prefill_done = time.perf_counter()
        end = prompt_length + self.max_new_tokens
        target_passes = 0
        while owner.text_length[self.top] < end:
            base = owner.text_length[self.top]
            self._cycle()
            target_passes += 1
            committed = owner.text_length[self.top]
            if self.eos_ids is not None:
                is_eos = torch.isin(owner.tokens[0, base:committed], self.eos_ids)
                if bool(is_eos.any()):
                    end = min(end, base + int(is_eos.nonzero()[0, 0]) + 1)
                    break
        final_length = min(end, owner.text_length[self.top])
        owner.truncate_text(final_length)
        sequences = owner.tokens[:, :final_length]
        finished = time.perf_counter()
        stats = GenerateStats(
            levels=tuple(counters.freeze(index) for index, counters in enumerate(self.counters)),
            prompt_tokens=prompt_length,
            new_tokens=final_length - prompt_length,
            target_passes=target_passes,
            wall_time_s=finished - started,
            prefill_time_s=prefill_done - started,
            model_time_s=sum(counters.time_s for counters in self.counters),
        )
        return sequences, stats

    # -- one target cycle (rule 4) -----------------------------------------------------------

    def _cycle(self) -> None:
        owner = self.owner
        top = self.top
        base = owner.text_length[top]
        assert owner.pending(top) == 1, owner.pending(top)
        if top == 0:
            # The target alone: plain decoding, one pass of 1 token per token.
            logits = owner.forward(0, 1)
            token = draw(processed_probs(logits[:, -1], self.config), self.config, self.generator)
            owner.tokens[:, base : base + 1] = token
            owner.text_length[0] = base + 1
            self.counters[0].verifications += 1
            self.counters[0].tokens_emitted += 1
            return
        batch_length, draft_probs = self._call(top - 1)
        owner.text_length[top] = base + batch_length
        draft_token_ids = owner.tokens[:, base : base + batch_length]
        if top == 1:
            # Standard verification (rule 2): pending token + the T_0 drafts, bonus row included.
            logits = owner.forward(top, 1 + batch_length)
            target_probs = processed_probs(logits, self.config)  # [1, L + 1, vocab]
        else:
            # Deferred verification (rule 4): the pass covers the pending token and the first
            # L - 1 drafts, giving one row per draft; the last draft (level K-1's own,
            # unprocessed, recovered or bonus token) is tested against the last row like any
            # other, and there is no bonus token. To keep the accept / resample rule in ONE
            # place, hierspec.verify gets a dummy bonus row (a copy of the last row); when all
            # L drafts are accepted the bonus it draws is discarded, so its row is irrelevant.
            # The tempting alternative - standard verification of the first L - 1 drafts plus a
            # fresh bonus, dropping level K-1's last token - is biased: it hands up "all but the
            # last emitted token", so a position is included exactly when level K-1 accepted its
            # draft there, and the token then follows min(p_{K-2}, p_{K-1}) renormalised instead
            # of p_{K-1} (tests/test_engine_distribution.py detects it).
            logits = owner.forward(top, batch_length)
            rows = processed_probs(logits, self.config)  # [1, L, vocab]
            target_probs = torch.cat([rows, rows[:, -1:]], dim=1)  # [1, L + 1, vocab]
        output_token_ids, num_accepted = verify(
            draft_token_ids, draft_probs, target_probs, self.generator, validate=False
        )
        accepted = int(num_accepted.item())  # the one host sync per verification
        if top >= 2 and accepted == batch_length:
            emitted = batch_length  # deferred: no bonus token
        else:
            emitted = accepted + 1
            owner.tokens[:, base + accepted : base + emitted] = output_token_ids[
                :, accepted : accepted + 1
            ]
        self.counters[top - 1].record_batch(batch_length, accepted)
        self.counters[top].verifications += 1
        self.counters[top].tokens_emitted += emitted
        owner.rollback(top, base + emitted)

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
        """Rule 1: ``T_0`` tokens in ``T_0`` passes, the first over exactly 2 pending tokens."""
        owner = self.owner
        owner.normalise_bottom()
        tokens = owner.tokens
        config = self.config
        generator = self.generator
        draft_length = self.draft_lengths[0]
        base = owner.text_length[0]
        probs_rows = []
        num_tokens = owner.pending(0)  # 2; 1 only right after a 1-token prompt
        for index in range(draft_length):
            logits = owner.forward(0, num_tokens)
            probs = processed_probs(logits[:, -1], config)  # [1, vocab]
            tokens[:, base + index : base + index + 1] = draw(probs, config, generator)
            owner.text_length[0] = base + index + 1
            probs_rows.append(probs)
            num_tokens = 1
        return draft_length, torch.stack(probs_rows, dim=1)  # [1, T_0, vocab]

    def _draft_intermediate(self, level_index: int) -> tuple[int, torch.Tensor]:
        """Rule 3: verify batches of level ``l-1`` until ``s`` reaches the threshold."""
        owner = self.owner
        config = self.config
        counters = self.counters[level_index]
        lower_counters = self.counters[level_index - 1]
        emitted_probs = self.emitted_probs[level_index]
        threshold = self.thresholds[level_index]
        base = owner.text_length[level_index]
        assert owner.pending(level_index) == 1, owner.pending(level_index)
        held = 0  # s of policy.md
        while held < threshold:
            start = base + held
            batch_length, draft_probs = self._call(level_index - 1)
            owner.text_length[level_index] = start + batch_length
            logits = owner.forward(level_index, 1 + batch_length)
            target_probs = processed_probs(logits, config)  # [1, G + 1, vocab]
            output_token_ids, num_accepted = verify(
                owner.tokens[:, start : start + batch_length],
                draft_probs,
                target_probs,
                self.generator,
                validate=False,
            )
            accepted = int(num_accepted.item())  # the one host sync per verification
            emitted = accepted + 1
            owner.tokens[:, start + accepted : start + emitted] = output_token_ids[
                :, accepted:emitted
            ]
            # Each emitted token is distributed as this level's processed row at its position:
            # the q the level above verifies it against (DESIGN §2).
            emitted_probs[:, held : held + emitted] = target_probs[:, :emitted]
            lower_counters.record_batch(batch_length, accepted)
            counters.verifications += 1
            counters.tokens_emitted += emitted
            owner.rollback(level_index, start + emitted)
            held += emitted
        # Below level K-1 hand up exactly T_l (all processed by this level); level K-1 hands up
        # everything it holds (rule 3).
        handed_up = self.draft_lengths[level_index] if level_index < self.top - 1 else held
        return handed_up, emitted_probs[:, :handed_up]
