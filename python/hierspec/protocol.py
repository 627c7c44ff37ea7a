"""The draft-model protocol: what the engine needs from one level of a hierarchy.

A level is anything that keeps a causal state (a KV cache, n-gram counts, ...) over a token
sequence and returns next-token logits for the tokens it is given. transformers causal LMs are
wrapped by :class:`hierspec.levels.TransformersLevel`; other drafters (the n-gram drafter, the
synthetic models of :mod:`hierspec.testing`) implement the protocol directly.

Terms:
    length     number of tokens the level has processed (its cache length).
    append     process new tokens after the current state; row ``i`` of the returned logits is
               the next-token distribution (before temperature/top-k/top-p) after token ``i``.
    prefill    optional: process tokens whose logits nobody reads (the prompt, the catch-up of a
               level that rejoins the chain), with the same effect on the state as ``append``
               and no result. The engine calls it when a level has it and ``append`` otherwise,
               so a level that can skip work here (a language model's vocabulary head over
               every position but the last, an n-gram drafter's rows) saves that work.
    truncate   forget everything after the first ``length`` tokens. During generation the
               engine's cache owner (``hierspec.engine.cache``) is the only caller; outside
               generation the profiler's timing loop (``hierspec.profiler.timing``) rolls back
               the passes it times. Nothing else calls it (tests aside).

Contract the engine relies on (and tests, see tests/test_engine_rollback.py):
    exact rollback   after ``truncate(n)``, ``append(x)`` returns the same logits as if only the
                     first ``n`` tokens had ever been appended, then ``x`` (up to the floating-point
                     rounding of splitting the text into different passes). A level that cannot do
                     this (sliding-window caches, recurrent state) must not implement the protocol.
    causal rows      row ``i`` of ``append``'s result depends only on the processed prefix and
                     ``token_ids[:, :i + 1]``, never on later tokens of the same call.
    no global RNG    logits are a deterministic function of the tokens (randomness lives in the
                     engine's ``torch.Generator``).
    ownership        the engine reads the returned logits before the next call on the level and
                     never writes to them; the level must not modify them afterwards either.
    logit shape      ``append`` returns ``[1, num_tokens, vocab_size]`` (the engine checks it after
                     every pass and raises ``ValueError`` naming the level otherwise).
    prefill state    optional: after ``prefill(x)`` the level is in the state ``append(x)`` would
                     have left (the next ``append`` returns the same logits, up to rounding).
    max length       optional: a level with a ``max_length`` attribute (an int, or ``None`` for no
                     limit) can process at most that many tokens; ``generate`` checks it up front
                     (:attr:`hierspec.levels.TransformersLevel.max_length`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class DraftModel(Protocol):
    """One level of a hierarchy. Batch size is 1 for now; shapes keep the batch dimension."""

    @property
    def vocab_size(self) -> int:
        """Size of the (shared) vocabulary: logits have this many columns."""
        ...

    @property
    def device(self) -> torch.device:
        """Device of the logits this level returns."""
        ...

    @property
    def length(self) -> int:
        """Number of tokens processed so far (the cache length)."""
        ...

    def reset(self) -> None:
        """Forget all state (a new sequence starts)."""
        ...

    def append(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Process ``token_ids`` ``[batch, num_tokens]`` (int64) after the current state.

        Returns next-token logits ``[batch, num_tokens, vocab_size]`` (any float dtype).
        One call is one forward pass: the engine counts it and times it as such.
        """
        ...

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` processed tokens; ``0 <= length <= self.length``."""
        ...


def prefill(level: DraftModel, token_ids: torch.Tensor) -> None:
    """Process ``token_ids`` ``[1, num_tokens]`` on ``level`` when nobody reads their logits:
    the level's optional ``prefill`` when it has one, else ``append`` (result dropped)."""
    method = getattr(level, "prefill", None)
    if method is None:
        level.append(token_ids)
    else:
        method(token_ids)
