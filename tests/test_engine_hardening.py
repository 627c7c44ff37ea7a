"""Hardening of the engine against broken levels and extreme arguments (issue 10).

Each test failed before its fix: a verifying level with NaN / inf rows made ``generate`` emit
token 0; a drafter with NaN rows was silently always rejected; a level with too many logit columns
let ids >= vocab through; the token buffer was allocated for ``max_new_tokens`` up front; the
engine had no cap on draft lengths; NumPy integer seeds were refused; a learned-position model
failed with ``IndexError`` inside its embedding.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hierspec import HierarchicalDecoder, NonDistributionError
from hierspec.engine import cache
from hierspec.engine.decoder import ChainSchedule
from hierspec.planning import MAX_DRAFT_LENGTH
from hierspec.testing import AffineCost, markov_models, synthetic_hierarchy, tiny_llama

PROMPT = torch.tensor([[1, 2]])


def broken(level, fill: float, columns: int = 0):
    """Make ``level.append`` return ``fill`` everywhere, or (``columns > 0``) its logits with
    ``columns`` extra columns; returns the original (restore with ``level.append = original``)."""
    original = level.append

    def append(token_ids):
        logits = original(token_ids)
        if columns:
            return torch.cat([logits, logits[..., :columns]], dim=-1)
        return torch.full_like(logits, fill)

    level.append = append
    return original


# --------------------------------------------------------------------------------------------
# 1. rows that are not distributions


@pytest.mark.parametrize("fill", [float("nan"), -float("inf"), float("inf")])
@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_verifying_target_with_bad_rows_raises(fill, temperature):
    """The issue's reproducer: the output was [[8, 9, 0, 0, ...]]."""
    models = synthetic_hierarchy([0.7], [AffineCost(1e-3)] * 2, seed=1).models
    decoder = HierarchicalDecoder(list(models), [2])
    prompt = torch.tensor([[8, 9]])
    good = decoder.generate(prompt, max_new_tokens=6, temperature=temperature, seed=0)
    original = broken(models[-1], fill)
    with pytest.raises(
        NonDistributionError,
        match=r"level 1 of the chain \(the target, MarkovLevel\(M1.*not a probability "
        r"distribution.*text position 2",
    ):
        decoder.generate(prompt, max_new_tokens=6, temperature=temperature, seed=0)
    models[-1].append = original  # the decoder stays usable
    again = decoder.generate(prompt, max_new_tokens=6, temperature=temperature, seed=0)
    assert torch.equal(again.sequences, good.sequences)


def test_intermediate_level_with_bad_rows_raises():
    models = markov_models(8, noise_scales=[1.0, 0.5], seed=0)
    decoder = HierarchicalDecoder(list(models), [2, 2])
    original = broken(models[1], float("nan"))
    try:
        with pytest.raises(
            NonDistributionError,
            match=r"level 1 of the chain \(intermediate level, MarkovLevel.*text position 2",
        ):
            decoder.generate(PROMPT, max_new_tokens=8, seed=0)
    finally:
        models[1].append = original


def test_every_token_masked_is_an_error_under_top_p():
    """A row of -inf only (every token masked) has no mass whatever the filters."""
    models = markov_models(8, noise_scales=[1.0], seed=0)
    decoder = HierarchicalDecoder(list(models), [3])
    original = broken(models[1], -float("inf"))
    try:
        with pytest.raises(NonDistributionError, match=r"no mass left after"):
            decoder.generate(PROMPT, max_new_tokens=4, top_p=0.5, seed=0)
    finally:
        models[1].append = original


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_target_alone_with_bad_rows_raises(temperature):
    (target,) = markov_models(8, noise_scales=[], seed=0)
    decoder = HierarchicalDecoder([target], [])
    original = broken(target, float("nan"))
    try:
        with pytest.raises(
            NonDistributionError, match=r"the target \(MarkovLevel.*text position 2"
        ):
            decoder.generate(PROMPT, max_new_tokens=5, temperature=temperature, seed=0)
    finally:
        target.append = original
    assert decoder.generate(PROMPT, max_new_tokens=5, seed=0).sequences.shape == (1, 7)


def test_nan_drafter_warns_once_and_stays_lossless():
    models = markov_models(8, noise_scales=[1.0], seed=0)
    decoder = HierarchicalDecoder(list(models), [3])
    original = broken(models[0], float("nan"))
    try:
        with pytest.warns(RuntimeWarning) as record:
            output = decoder.generate(PROMPT, max_new_tokens=12, seed=0)
    finally:
        models[0].append = original
    messages = [str(item.message) for item in record if item.category is RuntimeWarning]
    assert len(messages) == 1, messages
    assert "level 0 of the chain" in messages[0] and "always rejected" in messages[0]
    assert output.stats.new_tokens == 12
    assert output.stats.levels[0].drafted > 0 and output.stats.levels[0].accepted == 0
    with warnings.catch_warnings():  # a healthy drafter: no warning
        warnings.simplefilter("error")
        decoder.generate(PROMPT, max_new_tokens=12, seed=0)


# --------------------------------------------------------------------------------------------
# 2. logit width


def test_level_with_too_many_logit_columns_raises():
    models = markov_models(8, noise_scales=[1.0], seed=0)
    decoder = HierarchicalDecoder(list(models), [2])
    original = broken(models[0], 0.0, columns=1)
    try:
        with pytest.raises(
            ValueError,
            match=r"level 0 of the chain \(MarkovLevel.*\) returned logits of shape \(1, 2, 9\) "
            r"for a pass over 2 tokens; expected \(1, 2, vocab_size=8\)",
        ):
            decoder.generate(PROMPT, max_new_tokens=4, seed=0)
    finally:
        models[0].append = original
    decoder.generate(PROMPT, max_new_tokens=4, seed=0)


# --------------------------------------------------------------------------------------------
# 3. the token buffer grows as needed


def test_huge_max_new_tokens_with_early_eos_is_fast_and_right():
    models = markov_models(8, noise_scales=[1.0, 0.5], seed=0)
    decoder = HierarchicalDecoder(list(models), [2, 3])
    reference = decoder.generate(PROMPT, max_new_tokens=6, temperature=0).sequences
    eos = int(reference[0, 5])
    first = int((reference[0, 2:] == eos).nonzero()[0, 0]) + 2  # the first EOS after the prompt
    for max_new_tokens in (3 * 10**8, 10**12):
        output = decoder.generate(
            PROMPT, max_new_tokens=max_new_tokens, temperature=0, eos_token_id=eos
        )
        assert torch.equal(output.sequences, reference[:, : first + 1])


def test_ensure_capacity_doubles_and_keeps_the_text():
    (target,) = markov_models(8, noise_scales=[], seed=0)
    owner = cache.CacheOwner([target], [None], capacity=10**15)  # a hint, not an allocation
    assert owner.tokens.shape[1] == cache.INITIAL_CAPACITY
    owner.tokens[0, :5] = torch.arange(1, 6)
    owner.ensure_capacity(cache.INITIAL_CAPACITY + 1)
    assert owner.tokens.shape[1] == 2 * cache.INITIAL_CAPACITY
    assert owner.tokens[0, :5].tolist() == [1, 2, 3, 4, 5]
    owner.ensure_capacity(10 * cache.INITIAL_CAPACITY)
    assert owner.tokens.shape[1] == 10 * cache.INITIAL_CAPACITY
    assert owner.tokens[0, :5].tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("draft_lengths", [[], [3], [2, 3]])
def test_growing_buffer_gives_the_same_sequences(monkeypatch, draft_lengths):
    """A buffer that starts at 1 token and grows many times gives the same output."""
    models = markov_models(8, noise_scales=[1.0, 0.5], seed=0)[-1 - len(draft_lengths) :]
    decoder = HierarchicalDecoder(list(models), draft_lengths)
    prompt = torch.tensor([[1, 2, 3, 4, 5]])
    expected = decoder.generate(prompt, max_new_tokens=40, seed=3).sequences
    monkeypatch.setattr(cache, "INITIAL_CAPACITY", 1)
    assert torch.equal(decoder.generate(prompt, max_new_tokens=40, seed=3).sequences, expected)


# --------------------------------------------------------------------------------------------
# 4. / 5. draft lengths and seeds


def test_draft_length_cap_is_the_planners():
    models = markov_models(8, noise_scales=[1.0], seed=0)
    message = rf"draft_lengths\[0\] = 10000000 exceeds MAX_DRAFT_LENGTH = {MAX_DRAFT_LENGTH}"
    with pytest.raises(ValueError, match=message):
        HierarchicalDecoder(list(models), [10**7])
    with pytest.raises(ValueError, match=message):
        ChainSchedule((10**7,))
    HierarchicalDecoder(list(models), [MAX_DRAFT_LENGTH])


def test_numpy_integer_seeds_and_counts():
    models = markov_models(8, noise_scales=[1.0], seed=0)
    decoder = HierarchicalDecoder(list(models), [2])
    expected = decoder.generate(PROMPT, max_new_tokens=6, seed=3).sequences
    for seed in (np.int64(3), np.uint8(3), np.int32(3)):
        output = decoder.generate(PROMPT, max_new_tokens=np.int64(6), seed=seed)
        assert output.seed == 3 and type(output.seed) is int
        assert torch.equal(output.sequences, expected)
    for seed in (True, np.bool_(True), 3.0, np.float64(3.0)):
        with pytest.raises(TypeError, match=r"seed must be an int or None"):
            decoder.generate(PROMPT, seed=seed)
    with pytest.raises(TypeError, match=r"max_new_tokens must be an int >= 0, got True"):
        decoder.generate(PROMPT, max_new_tokens=True)


# --------------------------------------------------------------------------------------------
# 6. learned positions


def tiny_gpt2(n_positions: int = 16, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=32, n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


def test_max_length_only_for_learned_positions():
    from hierspec.levels import TransformersLevel

    assert TransformersLevel(tiny_gpt2(16)).max_length == 16
    assert TransformersLevel(tiny_llama(vocab_size=32)).max_length is None  # RoPE


@pytest.mark.parametrize("num_models", [1, 2, 3])
def test_learned_positions_are_checked_up_front(num_models):
    models = [tiny_gpt2(16, seed) for seed in range(num_models)]
    draft_lengths = [2] * (num_models - 1)
    decoder = HierarchicalDecoder(models, draft_lengths)
    lookahead = decoder.schedule.lookahead
    prompt = torch.tensor([[1, 2, 3]])
    fits = 16 - 3 - lookahead
    with pytest.raises(
        ValueError,
        match=rf"models\[0\] \(TransformersLevel\(GPT2LMHeadModel.*at most 16 tokens.*prompt "
        rf"\(3\) \+ max_new_tokens \({fits + 1}\) \+ the chain's lookahead \({lookahead}.*"
        rf"use max_new_tokens <= {fits}",
    ):
        decoder.generate(prompt, max_new_tokens=fits + 1, temperature=0)
    # At the limit every pass fits (no IndexError), greedy and sampled.
    assert decoder.generate(prompt, max_new_tokens=fits, temperature=0).stats.new_tokens == fits
    for seed in range(5):
        decoder.generate(prompt, max_new_tokens=fits, seed=seed)
    with pytest.raises(ValueError, match=r"shorten the prompt"):
        decoder.generate(torch.zeros((1, 16), dtype=torch.long), max_new_tokens=1)
