"""The n-gram drafter: protocol, exact rollback, proper distributions, prompt lookup, corpus
statistics against hand counts, and greedy losslessness through the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hierspec.ngram import CorpusStatistics, NGramConfig, NGramDrafter, build_corpus_statistics
from hierspec.protocol import DraftModel

VOCAB = 40


@pytest.fixture(scope="module")
def statistics() -> CorpusStatistics:
    generator = np.random.default_rng(0)
    # A corpus with structure (a repeating phrase) and noise, so every order has contexts.
    phrase = np.array([5, 6, 7, 8, 9])
    pieces = [
        phrase if generator.random() < 0.4 else generator.integers(0, VOCAB, 6) for _ in range(300)
    ]
    return build_corpus_statistics(np.concatenate(pieces), VOCAB, max_order=2, max_followers=8)


def _ids(tokens) -> torch.Tensor:
    return torch.tensor([list(tokens)], dtype=torch.int64)


def test_protocol_conformance(statistics):
    drafter = NGramDrafter(VOCAB, statistics)
    assert isinstance(drafter, DraftModel)
    assert drafter.vocab_size == VOCAB and drafter.device == torch.device("cpu")
    logits = drafter.append(_ids([1, 2, 3]))
    assert logits.shape == (1, 3, VOCAB) and logits.dtype == torch.float32
    assert drafter.length == 3
    assert drafter.append(_ids([4])).shape == (1, 1, VOCAB)
    assert drafter.append(_ids([])).shape == (1, 0, VOCAB)
    assert drafter.length == 4
    drafter.truncate(2)
    assert drafter.length == 2
    drafter.reset()
    assert drafter.length == 0


@settings(max_examples=40, deadline=None)
@given(tokens=st.lists(st.integers(0, 9), min_size=1, max_size=40), with_statistics=st.booleans())
def test_rows_are_proper_distributions(statistics, tokens, with_statistics):
    # Small token range: many repeated n-grams, so every local order is exercised.
    drafter = NGramDrafter(
        VOCAB,
        statistics if with_statistics else None,
        NGramConfig(max_local_order=3, local_weight=0.2),
    )
    probs = drafter.append(_ids(tokens)).exp()[0].double()
    assert torch.all(probs > 0)
    torch.testing.assert_close(
        probs.sum(-1), torch.ones(len(tokens), dtype=torch.float64), atol=1e-5, rtol=0
    )


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.lists(st.integers(0, 7), min_size=0, max_size=25),
    dropped=st.lists(st.integers(0, 7), min_size=0, max_size=12),
    suffix=st.lists(st.integers(0, 7), min_size=1, max_size=12),
    chunk=st.integers(1, 4),
)
def test_truncate_then_append_equals_fresh_append(statistics, prefix, dropped, suffix, chunk):
    """Rollback is exact: after appending ``dropped`` and truncating it away, appending
    ``suffix`` (in chunks of any size) gives bit-identical rows and state to a fresh drafter."""
    rolled = NGramDrafter(VOCAB, statistics, NGramConfig(max_local_order=4))
    if prefix:
        rolled.append(_ids(prefix))
    if dropped:
        rolled.append(_ids(dropped))
    rolled.truncate(len(prefix))
    rows = [rolled.append(_ids(suffix[i : i + chunk])) for i in range(0, len(suffix), chunk)]
    fresh = NGramDrafter(VOCAB, statistics, NGramConfig(max_local_order=4))
    if prefix:
        fresh.append(_ids(prefix))
    expected = fresh.append(_ids(suffix))  # one pass: rows are causal, so chunking is invisible
    assert torch.equal(torch.cat(rows, dim=1), expected)
    assert rolled._local == fresh._local and rolled._tokens == fresh._tokens


def test_truncate_to_zero_forgets_everything(statistics):
    drafter = NGramDrafter(VOCAB, statistics)
    first = drafter.append(_ids([3, 4, 3, 4, 3]))
    drafter.truncate(0)
    assert drafter._local == {}
    assert torch.equal(drafter.append(_ids([3, 4, 3, 4, 3])), first)


def test_prompt_lookup_proposes_the_continuation_of_a_repeated_ngram():
    text = [11, 12, 13, 14, 15, 16, 20, 21, 22, 11, 12, 13]
    drafter = NGramDrafter(VOCAB, None, NGramConfig(max_local_order=3, local_weight=0.3))
    logits = drafter.append(_ids(text))
    probs = logits[0, -1].exp()
    assert int(probs.argmax()) == 14  # "11 12 13" was followed by 14
    # Three matching orders, each with one follower seen once: mass 1 - (0.3 / 1.3)^3 + rest.
    backoff = 0.3 / 1.3
    assert float(probs[14]) == pytest.approx(1 - backoff**3 + backoff**3 / VOCAB, rel=1e-5)
    # Continue the copy: after 14 the drafter proposes 15, then 16.
    assert int(drafter.append(_ids([14]))[0, -1].argmax()) == 15
    assert int(drafter.append(_ids([15]))[0, -1].argmax()) == 16


def test_row_matches_the_witten_bell_formula_by_hand():
    # Corpus 1 2 1 2 1 3: unigram counts {1: 3, 2: 2, 3: 1}; context (1,) -> {2: 2, 3: 1}.
    statistics = build_corpus_statistics(np.array([1, 2, 1, 2, 1, 3]), 5, max_order=1)
    keys, starts, followers, counts = statistics.orders[0]
    assert keys.tolist() == [1, 2] and starts.tolist() == [0, 2, 3]
    assert followers.tolist() == [2, 3, 1] and counts.tolist() == [2, 1, 2]
    beta = 0.5
    drafter = NGramDrafter(5, statistics, NGramConfig(max_local_order=1, corpus_weight=beta))
    probs = drafter.append(_ids([1]))[0, 0].exp().double()
    uniform = 1 / 5
    unigram = np.array([0, 3, 2, 1, 0]) / 1.0
    base = (unigram + beta * 3 * uniform) / (6 + beta * 3)  # 3 distinct unigram tokens
    bigram_counts = np.array([0, 0, 2, 1, 0])
    expected = (bigram_counts + beta * 2 * base) / (3 + beta * 2)  # context (1,): 2 followers
    torch.testing.assert_close(probs, torch.from_numpy(expected), atol=1e-6, rtol=0)


def test_statistics_keep_the_most_frequent_followers_and_drop_rare_contexts():
    tokens = np.array([1, 2, 1, 2, 1, 3, 1, 4, 0, 7, 7, 7, 7])
    statistics = build_corpus_statistics(tokens, 8, max_order=2, max_followers=1, min_count=2)
    keys, starts, followers, counts = statistics.orders[0]
    context_one = int(np.searchsorted(keys, 1))
    assert followers[starts[context_one] : starts[context_one + 1]].tolist() == [2]
    assert counts[starts[context_one] : starts[context_one + 1]].tolist() == [2]
    keys2, _, _, _ = statistics.orders[1]
    packed = {int(k) for k in keys2}
    assert (1 << 16) | 2 in packed  # "1 2" seen twice
    assert (7 << 16) | 7 in packed  # "7 7" seen twice as a context (7 7 7 7)
    assert (2 << 16) | 1 in packed  # "2 1" seen twice
    assert (3 << 16) | 1 not in packed  # "3 1" seen once: dropped


def test_statistics_round_trip(tmp_path, statistics):
    path = tmp_path / "stats.npz"
    statistics.save(path)
    loaded = CorpusStatistics.load(path)
    assert loaded.vocab_size == statistics.vocab_size and loaded.num_tokens == statistics.num_tokens
    for original, copy in zip(statistics.orders, loaded.orders):
        for a, b in zip(original, copy):
            assert np.array_equal(a, b)
    text = _ids([5, 6, 7, 1, 5, 6])
    assert torch.equal(
        NGramDrafter(VOCAB, statistics).append(text), NGramDrafter(VOCAB, loaded).append(text)
    )


def test_bad_input(statistics):
    drafter = NGramDrafter(VOCAB, statistics)
    drafter.append(_ids([1, 2]))
    with pytest.raises(ValueError, match="length must be in \\[0, 2\\], got 3"):
        drafter.truncate(3)
    with pytest.raises(ValueError, match="token_ids must lie in \\[0, 40\\)"):
        drafter.append(_ids([40]))
    with pytest.raises(ValueError, match="token_ids must have shape \\[1, num_tokens\\]"):
        drafter.append(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="statistics has vocab_size 40, expected 41"):
        NGramDrafter(41, statistics)
    with pytest.raises(ValueError, match="vocab_size must be an int >= 1, got 0"):
        NGramDrafter(0)
    with pytest.raises(ValueError, match="max_local_order must be an int >= 1, got 0"):
        NGramConfig(max_local_order=0)
    with pytest.raises(ValueError, match="local_weight must be a finite number > 0, got 0"):
        NGramConfig(local_weight=0)
    with pytest.raises(ValueError, match="max_order must be in \\[1, 3\\], got 4"):
        build_corpus_statistics(np.array([1, 2, 3]), 8, max_order=4)
    with pytest.raises(ValueError, match="token_ids must lie in \\[0, 8\\)"):
        build_corpus_statistics(np.array([1, 9]), 8)


def test_greedy_through_the_engine_equals_target_greedy(statistics):
    """Greedy hierarchical decoding with the n-gram drafter at the bottom (two and three levels)
    equals the tiny target's own greedy decoding, token for token."""
    from hierspec import HierarchicalDecoder
    from hierspec.testing import tiny_llama_family

    models = tiny_llama_family(2, vocab_size=VOCAB, seed=3, noise=0.1)
    target = models[-1]
    generator = torch.Generator().manual_seed(0)
    for draft_lengths, chain in (([3], [target]), ([2, 3], [models[0], target])):
        drafter = NGramDrafter(VOCAB, statistics, NGramConfig(max_local_order=3))
        decoder = HierarchicalDecoder([drafter, *chain], draft_lengths)
        drafted = 0
        for length in (1, 5, 12):
            prompt = torch.randint(0, VOCAB, (1, length), generator=generator)
            # A repeated prompt makes prompt lookup propose (and the target accept) some tokens.
            prompt = torch.cat([prompt, prompt], dim=1)
            output = decoder.generate(prompt, max_new_tokens=24, temperature=0.0)
            expected = target.generate(
                prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24, do_sample=False
            )
            assert torch.equal(output.sequences, expected)
            drafted += output.stats.levels[0].forward_passes
        assert drafted > 0
        assert not math.isnan(output.stats.tokens_per_second)
