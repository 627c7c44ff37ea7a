"""The n-gram drafter: prompt lookup plus corpus n-gram statistics, as a proper distribution.

:class:`NGramDrafter` implements :class:`hierspec.protocol.DraftModel`. Its next-token
distribution after the text ``t_0 .. t_i`` is an interpolated (Witten-Bell) back-off chain:

    corpus   P_c^{-1}(x) = 1 / V (uniform), and for context lengths k = 0 .. K_c
             P_c^k(x) = (c_k(h_k, x) + beta * u_k(h_k) * P_c^{k-1}(x))
                        / (c_k(h_k) + beta * u_k(h_k))
             with h_k the last k tokens, c_k counts of the corpus n-grams, c_k(h) =
             sum_x c_k(h, x), u_k(h) the number of distinct followers of h. A context never
             seen leaves the level out (P^k = P^{k-1}).
    local    (prompt lookup) the same recursion with counts from the CURRENT text, for
             k = 1 .. K_l, on top of the corpus chain (P_l^0 = P_c^{K_c}) and with weight
             ``gamma`` in place of ``beta``: an n-gram of the prompt seen again proposes what
             followed it, the longer the match the more sharply.

Every token has probability >= (product of back-off weights) / V > 0, each level is a convex
combination of distributions, so every row is a proper distribution over the full vocabulary
(sum 1 up to float32 rounding), which lossless speculative sampling needs.

Counts are causal: the row after ``t_i`` uses only n-grams whose last token is at a position
``<= i``, also when many tokens are appended at once, so the rows of one pass equal those of
token-by-token passes. ``append`` costs O(K_l) dictionary updates per token; ``truncate`` undoes
exactly the updates of the dropped tokens (counts go back to what they were).

Corpus statistics (:class:`CorpusStatistics`) are built by :func:`build_corpus_statistics` from
any tokenized corpus (the caller chooses and caches it; the bundled family caches the counts of
its own corpus's train split); each context keeps at most ``max_followers`` followers (the most
frequent), and contexts seen fewer than ``min_count`` times are dropped for k >= 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .io import atomic_path

__all__ = [
    "CorpusStatistics",
    "NGramConfig",
    "NGramDrafter",
    "build_corpus_statistics",
]

_TOKEN_BITS = 16  # token ids < 2^16: a context of up to 3 tokens plus a follower fits in 64 bits


@dataclass(frozen=True)
class NGramConfig:
    """Hyper-parameters of :class:`NGramDrafter` (see the module docstring for the formulas).

    ``max_local_order``: longest context K_l matched in the current text. ``local_weight``:
    ``gamma``, the back-off weight of the local levels (smaller = trust prompt matches more).
    ``corpus_weight``: ``beta`` for the corpus levels.
    """

    max_local_order: int = 6
    local_weight: float = 0.3
    corpus_weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_local_order, int) or self.max_local_order < 1:
            raise ValueError(f"max_local_order must be an int >= 1, got {self.max_local_order!r}")
        for name in ("local_weight", "corpus_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class CorpusStatistics:
    """Corpus n-gram counts, compressed for lookup.

    ``unigram``: ``[vocab]`` float64 counts. For context length ``k = 1 .. max_order``
    (``orders[k - 1]``): a tuple ``(context_keys, starts, followers, counts)``:
    ``context_keys [num_contexts]`` int64 sorted, each the context's tokens packed 16 bits each
    (oldest token in the highest bits); ``starts [num_contexts + 1]`` int64 offsets into
    ``followers [num_entries]`` int64 token ids and ``counts [num_entries]`` float64.
    """

    vocab_size: int
    unigram: np.ndarray
    orders: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]
    num_tokens: int

    def __post_init__(self) -> None:
        if self.unigram.shape != (self.vocab_size,):
            raise ValueError(
                f"unigram must have shape ({self.vocab_size},), got {self.unigram.shape}"
            )
        if len(self.orders) > 3:
            raise ValueError(f"orders must hold at most 3 context lengths, got {len(self.orders)}")

    @property
    def max_order(self) -> int:
        return len(self.orders)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the statistics to ``path`` (``.npz``) atomically (``hierspec.io.atomic_path``)."""
        arrays = {
            "unigram": self.unigram,
            "meta": np.array([self.vocab_size, self.num_tokens, self.max_order]),
        }
        for k, (keys, starts, followers, counts) in enumerate(self.orders, start=1):
            arrays[f"keys{k}"] = keys
            arrays[f"starts{k}"] = starts
            arrays[f"followers{k}"] = followers.astype(np.int32)
            arrays[f"counts{k}"] = counts.astype(np.int32)
        with atomic_path(path, suffix=".npz") as temporary:
            np.savez(temporary, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CorpusStatistics:
        """The statistics :meth:`save` wrote to ``path``."""
        with np.load(path) as data:
            vocab_size, num_tokens, max_order = (int(v) for v in data["meta"])
            orders = tuple(
                (
                    data[f"keys{k}"],
                    data[f"starts{k}"],
                    data[f"followers{k}"].astype(np.int64),
                    data[f"counts{k}"].astype(np.float64),
                )
                for k in range(1, max_order + 1)
            )
            return cls(vocab_size, data["unigram"].astype(np.float64), orders, num_tokens)


def _pack(windows: np.ndarray) -> np.ndarray:
    """Pack rows of ``windows`` ``[n, k]`` (token ids) into int64 keys, oldest token highest."""
    keys = np.zeros(windows.shape[0], dtype=np.int64)
    for column in range(windows.shape[1]):
        keys = (keys << _TOKEN_BITS) | windows[:, column].astype(np.int64)
    return keys


def build_corpus_statistics(
    token_ids: np.ndarray,
    vocab_size: int,
    max_order: int = 2,
    max_followers: int = 32,
    min_count: int = 2,
) -> CorpusStatistics:
    """Counts the n-grams of ``token_ids`` ``[num_tokens]`` (documents joined by a separator).

    ``max_order``: longest context (1..3). Each context keeps its ``max_followers`` most frequent
    followers (ties by smaller token id); contexts of length >= 2 seen fewer than ``min_count``
    times (before pruning) are dropped.
    """
    tokens = np.asarray(token_ids, dtype=np.int64)
    if tokens.ndim != 1 or tokens.size < 2:
        raise ValueError(f"token_ids must be 1-D with >= 2 tokens, got shape {tokens.shape}")
    if not 1 <= vocab_size <= 2**_TOKEN_BITS:
        raise ValueError(f"vocab_size must be in [1, {2**_TOKEN_BITS}], got {vocab_size!r}")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(
            f"token_ids must lie in [0, {vocab_size}), got range [{tokens.min()}, {tokens.max()}]"
        )
    if not 1 <= max_order <= 3:
        raise ValueError(f"max_order must be in [1, 3], got {max_order!r}")
    if max_followers < 1:
        raise ValueError(f"max_followers must be >= 1, got {max_followers!r}")
    unigram = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
    orders = []
    for k in range(1, max_order + 1):
        windows = np.lib.stride_tricks.sliding_window_view(tokens, k + 1)  # [n - k, k + 1]
        pair_keys = _pack(windows)  # context then follower, follower in the lowest bits
        unique, counts = np.unique(pair_keys, return_counts=True)
        contexts = unique >> _TOKEN_BITS
        followers = unique & ((1 << _TOKEN_BITS) - 1)
        # Sort by context, then count descending, then follower id, and keep the top followers.
        order = np.lexsort((followers, -counts, contexts))
        contexts, followers, counts = contexts[order], followers[order], counts[order]
        boundaries = np.flatnonzero(np.diff(contexts)) + 1
        starts = np.concatenate([[0], boundaries])
        rank = np.arange(contexts.size) - np.repeat(
            starts, np.diff(np.append(starts, contexts.size))
        )
        totals = np.add.reduceat(counts, starts)
        keep_context = totals >= (min_count if k >= 2 else 1)
        keep = (rank < max_followers) & np.repeat(
            keep_context, np.diff(np.append(starts, contexts.size))
        )
        contexts, followers, counts = contexts[keep], followers[keep], counts[keep]
        context_keys, first = np.unique(contexts, return_index=True)
        starts = np.append(first, contexts.size).astype(np.int64)
        orders.append(
            (
                context_keys.astype(np.int64),
                starts,
                followers.astype(np.int64),
                counts.astype(np.float64),
            )
        )
    return CorpusStatistics(vocab_size, unigram, tuple(orders), int(tokens.size))


class NGramDrafter:
    """Prompt lookup + corpus n-grams as a :class:`hierspec.protocol.DraftModel` (batch 1, CPU).

    Args:
        vocab_size: size of the shared vocabulary (columns of the logits).
        statistics: corpus statistics (same vocabulary), or None for prompt lookup over a
            uniform base distribution.
        config: hyper-parameters.
    """

    def __init__(
        self,
        vocab_size: int,
        statistics: CorpusStatistics | None = None,
        config: NGramConfig = NGramConfig(),
    ) -> None:
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        if statistics is not None and statistics.vocab_size != vocab_size:
            raise ValueError(
                f"statistics has vocab_size {statistics.vocab_size}, expected {vocab_size}"
            )
        self._vocab_size = vocab_size
        self._statistics = statistics
        self._config = config
        self._tokens: list[int] = []
        # context tuple -> [followers {token: count}, total count]
        self._local: dict[tuple[int, ...], list] = {}
        # Base of the corpus chain: unigram level over the uniform distribution (float64).
        uniform = np.full(vocab_size, 1.0 / vocab_size)
        if statistics is None:
            base = uniform
        else:
            unigram = statistics.unigram
            distinct = float(np.count_nonzero(unigram))
            weight = config.corpus_weight * distinct
            base = (unigram + weight * uniform) / (unigram.sum() + weight)
        self._base = torch.from_numpy(base.astype(np.float32))  # [vocab]

    # -- protocol ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def length(self) -> int:
        return len(self._tokens)

    @property
    def config(self) -> NGramConfig:
        return self._config

    def reset(self) -> None:
        self._tokens = []
        self._local = {}

    def append(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Process ``token_ids`` ``[1, num_tokens]``; returns logits ``[1, num_tokens, vocab]``
        float32 (log-probabilities of the distribution described in the module docstring)."""
        new_tokens = self._checked_tokens(token_ids)
        coefficients = np.empty(len(new_tokens), dtype=np.float64)
        rows: list[np.ndarray] = []
        columns: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for row, token in enumerate(new_tokens):
            self._push(token)
            coefficients[row] = self._sparse_row(row, rows, columns, values)
        probs = self._base[None, :] * torch.from_numpy(coefficients.astype(np.float32))[:, None]
        if rows:
            index = (
                torch.from_numpy(np.concatenate(rows)),
                torch.from_numpy(np.concatenate(columns)),
            )
            probs.index_put_(
                index, torch.from_numpy(np.concatenate(values).astype(np.float32)), accumulate=True
            )
        return probs.log_()[None]

    def prefill(self, token_ids: torch.Tensor) -> None:
        """Process ``token_ids`` ``[1, num_tokens]`` without building their rows (the engine
        does not read the logits of a prompt or a catch-up); same state as :meth:`append`."""
        for token in self._checked_tokens(token_ids):
            self._push(token)

    def truncate(self, length: int) -> None:
        if not 0 <= length <= len(self._tokens):
            raise ValueError(f"length must be in [0, {len(self._tokens)}], got {length!r}")
        while len(self._tokens) > length:
            self._pop()

    def __repr__(self) -> str:
        return f"NGramDrafter(vocab_size={self._vocab_size}, length={self.length}, {self._config})"

    # -- internals --------------------------------------------------------------------------

    def _checked_tokens(self, token_ids: torch.Tensor) -> list[int]:
        if token_ids.dim() != 2 or token_ids.shape[0] != 1:
            raise ValueError(
                f"token_ids must have shape [1, num_tokens], got {tuple(token_ids.shape)}"
            )
        new_tokens = [int(t) for t in token_ids[0].tolist()]
        if new_tokens and not all(0 <= t < self._vocab_size for t in new_tokens):
            raise ValueError(f"token_ids must lie in [0, {self._vocab_size}), got {new_tokens}")
        return new_tokens

    def _contexts_ending_before(self, position: int):
        """Local contexts (k = 1..K_l) that end just before ``position``."""
        tokens = self._tokens
        for k in range(1, min(self._config.max_local_order, position) + 1):
            yield tuple(tokens[position - k : position])

    def _push(self, token: int) -> None:
        position = len(self._tokens)
        self._tokens.append(token)
        for context in self._contexts_ending_before(position):
            entry = self._local.get(context)
            if entry is None:
                self._local[context] = [{token: 1}, 1]
            else:
                followers = entry[0]
                followers[token] = followers.get(token, 0) + 1
                entry[1] += 1

    def _pop(self) -> None:
        position = len(self._tokens) - 1
        token = self._tokens[position]
        for context in self._contexts_ending_before(position):
            entry = self._local[context]
            followers = entry[0]
            if followers[token] == 1:
                del followers[token]
            else:
                followers[token] -= 1
            entry[1] -= 1
            if entry[1] == 0:
                del self._local[context]
        self._tokens.pop()

    def _sparse_row(self, row: int, rows: list, columns: list, values: list) -> float:
        """Adds the sparse part of the row after the last token; returns the base coefficient."""
        coefficient = 1.0
        tokens = self._tokens
        length = len(tokens)
        gamma = self._config.local_weight
        for k in range(min(self._config.max_local_order, length), 0, -1):
            entry = self._local.get(tuple(tokens[length - k :]))
            if entry is None:
                continue
            followers, total = entry
            backoff = gamma * len(followers)
            scale = coefficient / (total + backoff)
            columns.append(np.fromiter(followers.keys(), dtype=np.int64, count=len(followers)))
            values.append(
                np.fromiter(followers.values(), dtype=np.float64, count=len(followers)) * scale
            )
            rows.append(np.full(len(followers), row, dtype=np.int64))
            coefficient *= backoff / (total + backoff)
        statistics = self._statistics
        if statistics is not None:
            beta = self._config.corpus_weight
            for k in range(min(statistics.max_order, length), 0, -1):
                keys, starts, followers, counts = statistics.orders[k - 1]
                key = 0
                for token in tokens[length - k :]:
                    key = (key << _TOKEN_BITS) | token
                index = int(np.searchsorted(keys, key))
                if index == keys.size or keys[index] != key:
                    continue
                begin, end = int(starts[index]), int(starts[index + 1])
                level_counts = counts[begin:end]
                total = float(level_counts.sum())
                backoff = beta * (end - begin)
                columns.append(followers[begin:end])
                values.append(level_counts * (coefficient / (total + backoff)))
                rows.append(np.full(end - begin, row, dtype=np.int64))
                coefficient *= backoff / (total + backoff)
        return coefficient
