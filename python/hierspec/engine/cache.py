"""The cache owner: every level's working text, and the only truncation of level caches.

Terms (as in docs/policy.md):
    working text     the tokens a level currently builds on. All working texts live in one token
                     buffer: at any moment each level's text is a prefix of the text of every level
                     below it, so level ``l``'s text is ``tokens[:, :text_length[l]]``.
    cache length     tokens the level has processed (``level.length``, its KV cache); the tokens
                     after it, up to the end of its working text, are *pending* and go into its
                     next forward pass.

:class:`CacheOwner` is the sole writer of the token buffer and of every ``text_length``, and
during generation the only caller of :meth:`hierspec.protocol.DraftModel.truncate`. The decoder
reads ``tokens`` and ``text_length`` but changes them only through the owner's methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from ..protocol import DraftModel, prefill
from .stats import LevelCounters

__all__ = ["INITIAL_CAPACITY", "CacheOwner", "check_logits"]

# Tokens the token buffer starts with at most (8 KB of int64); it doubles when a write needs more.
INITIAL_CAPACITY = 1024


def check_logits(logits: torch.Tensor, num_tokens: int, level: DraftModel, name: str) -> None:
    """``ValueError`` naming ``name`` (``level``'s role) unless ``level``'s pass over
    ``num_tokens`` tokens returned logits ``[1, num_tokens, vocab_size]`` (more columns would
    let ids >= vocab reach the level above)."""
    if logits.shape != (1, num_tokens, level.vocab_size):
        raise ValueError(
            f"{name} ({level!r}) returned logits of shape {tuple(logits.shape)} for a pass "
            f"over {num_tokens} tokens; expected (1, {num_tokens}, "
            f"vocab_size={level.vocab_size})"
        )


class CacheOwner:
    """Owns every level's working text and is the only component that truncates level caches.

    A level's cache always covers a prefix of its own text (asserted), so forward passes read
    their pending tokens from the buffer.

    Parameters
    ----------
    levels : sequence of DraftModel
        The chain, bottom first.
    counters : sequence of LevelCounters
        One per level; forward passes are counted and timed into them.
    capacity : int
        The longest working text the call is expected to reach (prompt, new tokens and the
        chain's lookahead). A hint, not a limit: the token buffer starts at
        ``min(capacity, INITIAL_CAPACITY)`` tokens and every write grows it as needed
        (:meth:`ensure_capacity`, amortised doubling), so a huge ``max_new_tokens`` that EOS
        cuts short costs no memory up front.
    timer : callable, default time.perf_counter
        The seconds clock every pass is timed with.
    on_pass : callable, optional
        Called after every counted forward pass as ``on_pass(level_index, num_tokens,
        seconds)`` (the adaptive decoder learns the models' costs from it).

    Attributes
    ----------
    tokens : torch.Tensor
        ``[1, buffer length]`` int64 on level 0's device: the working text of level 0, which
        extends the text of every level above (entries past ``text_length[0]`` are garbage).
        Read-only outside this class; replaced by a longer tensor when it grows, so read it
        afresh after any write rather than keeping a view across writes.
    text_length : list of int
        ``[l]``: length of level ``l``'s working text, non-increasing in ``l``. Read-only
        outside this class.
    """

    def __init__(
        self,
        levels: Sequence[DraftModel],
        counters: Sequence[LevelCounters],
        capacity: int,
        timer: Callable[[], float] = time.perf_counter,
        on_pass: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.levels = levels
        self.counters = counters
        self.timer = timer
        self.on_pass = on_pass
        initial = max(min(capacity, INITIAL_CAPACITY), 1)
        self.tokens = torch.zeros((1, initial), dtype=torch.int64, device=levels[0].device)
        self.text_length = [0] * len(levels)

    def ensure_capacity(self, length: int) -> None:
        """Make the token buffer hold at least ``length`` tokens (existing text kept).

        Grows to ``max(length, 2 * current)``: amortised O(1) per token. Every write path calls
        it (:meth:`start`, :meth:`append_bottom`, :meth:`commit`); call it before writing
        beyond ``text_length[0]`` by any other route.
        """
        current = self.tokens.shape[1]
        if length <= current:
            return
        grown = torch.zeros(
            (1, max(length, 2 * current)), dtype=torch.int64, device=self.tokens.device
        )
        grown[:, :current] = self.tokens
        self.tokens = grown

    def start(self, prompt: torch.Tensor, bottom_pending: int) -> None:
        """New sequence: every level's text is the prompt; prefill each level.

        The target and intermediate levels keep 1 pending token and level 0 ``bottom_pending``
        (as many as the prompt has).

        Parameters
        ----------
        prompt : torch.Tensor
            ``[1, prompt]`` int64 on the levels' device.
        bottom_pending : int
            2 when level 0 is a drafter (policy.md rule 1), 1 for the target alone.
        """
        prompt_length = prompt.shape[1]
        self.ensure_capacity(prompt_length)
        self.tokens[:, :prompt_length] = prompt
        for level_index, level in enumerate(self.levels):
            level.reset()
            self.text_length[level_index] = prompt_length
            pending = bottom_pending if level_index == 0 else 1
            num_tokens = max(prompt_length - pending, 0)
            if num_tokens > 0:
                counters = self.counters[level_index]
                started = self.timer()
                prefill(level, self.tokens[:, :num_tokens])  # logits unused: no head (protocol)
                counters.prefill_time_s += self.timer() - started
                counters.prefill_passes += 1
                counters.prefill_tokens += num_tokens

    def pending(self, level_index: int) -> int:
        """Tokens of level ``level_index``'s working text that it has not processed yet."""
        return self.text_length[level_index] - self.levels[level_index].length

    def forward(self, level_index: int, num_tokens: int) -> torch.Tensor:
        """One forward pass of a level over its next ``num_tokens`` pending tokens.

        Counted and timed as one pass.

        Parameters
        ----------
        level_index : int
            The level.
        num_tokens : int
            ``1 <= num_tokens <= pending(level_index)`` (asserted).

        Returns
        -------
        torch.Tensor
            Logits ``[1, num_tokens, vocab]`` (the level's dtype); row ``i`` is the next-token
            distribution after the ``i``-th processed token.

        Raises
        ------
        ValueError
            The level returned logits of another shape, e.g. more columns than its
            ``vocab_size`` (ids >= vocab would reach the level above); names the level.
        """
        level = self.levels[level_index]
        start = level.length
        assert 0 < num_tokens <= self.text_length[level_index] - start, (
            level_index, num_tokens, self.text_length[level_index], start
        )  # fmt: skip
        counters = self.counters[level_index]
        started = self.timer()
        logits = level.append(self.tokens[:, start : start + num_tokens])
        elapsed = self.timer() - started
        counters.time_s += elapsed
        counters.forward_passes += 1
        counters.tokens_processed += num_tokens
        if self.on_pass is not None:
            self.on_pass(level_index, num_tokens, elapsed)
        check_logits(logits, num_tokens, level, f"level {level_index} of the chain")
        return logits

    # -- writes to the working texts -----------------------------------------------------------

    def append_bottom(self, token_id: torch.Tensor) -> None:
        """Level 0 drew ``token_id`` ``[1, 1]`` (int64): it extends level 0's working text."""
        length = self.text_length[0]
        self.ensure_capacity(length + 1)
        self.tokens[:, length : length + 1] = token_id
        self.text_length[0] = length + 1

    def adopt_batch(self, level_index: int, batch_length: int) -> None:
        """Level ``level_index`` takes the batch the level below wrote after its text.

        The batch is the next ``batch_length`` tokens of the buffer (already written by the level
        below); they become pending tokens of ``level_index``, to be verified by its next pass.
        """
        new_length = self.text_length[level_index] + batch_length
        assert new_length <= self.text_length[level_index - 1], (
            level_index, new_length, self.text_length[level_index - 1]
        )  # fmt: skip
        self.text_length[level_index] = new_length

    def commit(
        self,
        level_index: int,
        new_text_length: int,
        last_token_id: torch.Tensor,
        levels_behind: int = 0,
    ) -> None:
        """After a verification at ``level_index``: its text becomes ``tokens[:, :new_text_length]``
        and every level at or below it adopts that text (policy.md rule 5).

        Each of these levels keeps at most ``new_text_length - 1`` processed tokens: the prefix
        before the last emitted token is the accepted prefix, which all of them processed
        identically (they drafted it); everything after it is gone. Then the verifier has one
        pending token, each level below it ``1 + levels_behind`` and level 0 one or two more
        than that.

        Parameters
        ----------
        level_index : int
            The verifying level.
        new_text_length : int
            Its text length after the verification (accepted prefix + emitted tokens).
        last_token_id : torch.Tensor
            ``[1, 1]`` int64: the recovered or bonus token, written at ``new_text_length - 1``.
        levels_behind : int
            1 when the target (``K >= 2``) accepted every draft (rule 4: the levels below it
            then did not process the last draft, which level K-1 emitted itself, and the bonus
            token is new to them), else 0 (asserted).
        """
        self.ensure_capacity(new_text_length)
        self.tokens[:, new_text_length - 1 : new_text_length] = last_token_id
        keep = new_text_length - 1
        for index in range(level_index, -1, -1):
            self.text_length[index] = new_text_length
            level = self.levels[index]
            if level.length > keep:
                level.truncate(keep)
            expected = keep if index == level_index else keep - levels_behind
            assert level.length == expected or (index == 0 and level.length == expected - 1), (
                index, level.length, expected
            )  # fmt: skip

    def normalise_bottom(self, pending: int) -> None:
        """Rule 1: crop level 0 so that exactly ``pending`` tokens are pending: 2, or 3 on its
        first call of a cycle in the bonus state (fewer only after a short prompt)."""
        level = self.levels[0]
        keep = max(self.text_length[0] - pending, 0)
        # pending - 1 or pending tokens were pending
        assert level.length >= keep, (level.length, self.text_length[0], pending)
        if level.length > keep:
            level.truncate(keep)

    def truncate_text(self, new_text_length: int) -> None:
        """End of generation: cut every level's text to ``new_text_length`` (EOS / max tokens)."""
        keep = new_text_length - 1
        for index, level in enumerate(self.levels):
            self.text_length[index] = new_text_length
            if level.length > keep:
                level.truncate(keep)

    # -- switching chains (the adaptive decoder) -----------------------------------------------

    def switch_chain(
        self, levels: Sequence[DraftModel], counters: Sequence[LevelCounters], bonus_state: bool
    ) -> None:
        """Between two target cycles: make ``levels`` the chain (bottom first, target last).

        All levels of the old chain share the committed text at this point; the new chain
        adopts it. A level that was not in the old chain has processed a prefix of the committed
        text (everything it processed was committed when it last left the chain, or it was
        reset at the start); it catches up with ONE pass over the missing tokens, counted as a
        catch-up pass, so that afterwards the target has one pending token, the levels between
        ``1 + b`` and level 0 at most ``2 + b``, exactly as after a target verification
        (policy.md rules 1, 4, 5 and 6; ``b = bonus_state``, the next cycle's bonus state, only
        for a new chain of 3+ models).
        """
        committed = self.text_length[len(self.levels) - 1]
        self.levels = levels
        self.counters = counters
        self.text_length = [committed] * len(levels)
        behind = 1 if bonus_state else 0
        top = len(levels) - 1
        for index, level in enumerate(levels):
            if index == top:
                keep = committed - 1
            elif index == 0:  # rule 1 crops level 0 to 2 + b pending tokens at its next call
                keep = committed - 2 - behind
            else:
                keep = committed - 1 - behind
            assert level.length <= committed - 1 and (index == 0 or level.length <= keep), (
                index, level.length, committed, behind
            )  # fmt: skip
            if level.length < keep:
                counter = counters[index]
                start = level.length
                started = self.timer()
                prefill(level, self.tokens[:, start:keep])
                counter.catch_up_time_s += self.timer() - started
                counter.catch_up_passes += 1
                counter.catch_up_tokens += keep - start
