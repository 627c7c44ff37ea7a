"""The bundled family's corpus n-gram statistics, built once and cached.

The n-gram drafter itself (:class:`hierspec.ngram.NGramDrafter`) is a library level and knows no
corpus; this module counts the n-grams of the family's corpus (:mod:`hierspec.family.corpus`,
train split only) with the target's tokenizer and caches them as
``<cache>/ngram/corpus-<key>.npz``. The key changes exactly when the corpus (its fingerprint),
the vocabulary or a counting parameter does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hierspec.io import content_key
from hierspec.ngram import CorpusStatistics, build_corpus_statistics

from . import corpus
from .cache import cache_dir

__all__ = ["load_corpus_statistics", "statistics_path"]


def _statistics_key(
    tokenizer, max_chars: int, max_order: int, max_followers: int, min_count: int
) -> str:
    # Lists of strings and numbers only: sort_keys does not change the encoding, and the keys
    # equal those of the cache files written before hierspec.io.content_key existed.
    vocabulary = content_key(*sorted(tokenizer.get_vocab().items()), length=12, sort_keys=False)
    parts = (corpus.fingerprint(), vocabulary, max_chars, max_order, max_followers, min_count)
    return content_key(*parts, length=12, sort_keys=False)


def statistics_path(
    tokenizer,
    cache: str | os.PathLike | None = None,
    max_chars: int = 4_000_000,
    max_order: int = 2,
    max_followers: int = 32,
    min_count: int = 2,
) -> Path:
    """The cache file of :func:`load_corpus_statistics` with the same arguments (it may not
    exist yet)."""
    key = _statistics_key(tokenizer, max_chars, max_order, max_followers, min_count)
    return cache_dir(cache) / "ngram" / f"corpus-{key}.npz"


def load_corpus_statistics(
    tokenizer,
    cache: str | os.PathLike | None = None,
    max_chars: int = 4_000_000,
    max_order: int = 2,
    max_followers: int = 32,
    min_count: int = 2,
    build: bool = True,
    progress: bool = True,
) -> CorpusStatistics:
    """Corpus n-gram statistics of the family's train split, cached in ``<cache>/ngram/``.

    Parameters
    ----------
    tokenizer
        The target's tokenizer; documents are tokenized without special tokens and joined by
        its ``unk_token_id`` (0 if it has none).
    cache
        Cache directory (:func:`hierspec.family.cache.cache_dir`).
    max_chars
        Characters of the train split counted (sources interleaved,
        :func:`hierspec.family.corpus.training_texts`).
    max_order, max_followers, min_count
        Passed to :func:`hierspec.ngram.build_corpus_statistics`.
    build
        Build and cache them when missing.
    progress
        Show a progress bar while building.

    Returns
    -------
    CorpusStatistics
        The statistics (vocabulary: ``len(tokenizer)``).

    Raises
    ------
    FileNotFoundError
        Not cached and ``build`` is False; the message names the command that builds them.
    """
    path = statistics_path(tokenizer, cache, max_chars, max_order, max_followers, min_count)
    if path.is_file():
        return CorpusStatistics.load(path)
    if not build:
        raise FileNotFoundError(f"no n-gram statistics in {path}; run `hierspec distill`")
    from tqdm.auto import tqdm

    separator = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    pieces: list[np.ndarray] = []
    texts = corpus.training_texts(max_chars=max_chars)
    for text in tqdm(texts, desc="n-gram corpus", unit="doc", disable=not progress, leave=False):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces.append(np.asarray(ids + [separator], dtype=np.int64))
    statistics = build_corpus_statistics(
        np.concatenate(pieces), len(tokenizer), max_order, max_followers, min_count
    )
    statistics.save(path)
    return statistics
