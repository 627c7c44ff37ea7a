"""Structural: KV-cache rollback, pass sizes and stopping, fuzzed over random hierarchies.

After every generate each level's cache holds exactly a prefix of the output: its processed
tokens (MarkovLevel.history) equal ``sequence[:length]`` with ``length = len(sequence) - 1`` (one
pending token) for the target, 1 or 2 pending tokens (2 in the bonus state of rule 4) for the
levels between and 1 to 3 at level 0 (policy.md rules 1, 4, 5).
Every forward pass has the size policy.md prescribes. Random acceptance rates (including 0 and
1), draft lengths, chain lengths, prompts, temperatures, top-k/top-p, EOS and max_new_tokens.
"""

from __future__ import annotations

import random

import pytest
import torch

from hierspec import HierarchicalDecoder
from hierspec.testing import AffineCost, synthetic_hierarchy, tiny_llama_family


def _check_pass_sizes(decoder, stats, prompt_length):
    levels = decoder.levels
    top = len(levels) - 1
    sizes = decoder.draft_lengths
    bonus_passes = []  # [level < K]: passes with the bonus state's extra pending token
    for index, (level, level_stats) in enumerate(zip(levels, stats.levels)):
        passes = list(level.pass_sizes)
        assert len(passes) == level_stats.prefill_passes + level_stats.forward_passes
        if level_stats.prefill_passes:
            assert passes[0] == level_stats.prefill_tokens
            passes = passes[1:]
        assert sum(passes) == level_stats.tokens_processed
        if top == 0:
            assert set(passes) <= {1}
        elif index == 0:
            # Rule 1: calls of T_0 passes, the first over exactly 2 tokens (1 only right after a
            # 1-token prompt; 3 on the first call of a cycle in the bonus state, K >= 2), the
            # others over 1.
            assert len(passes) % sizes[0] == 0
            firsts = []
            for call in range(len(passes) // sizes[0]):
                chunk = passes[call * sizes[0] : (call + 1) * sizes[0]]
                first = 1 if (call == 0 and prompt_length == 1) else 2
                assert chunk[1:] == [1] * (sizes[0] - 1), (call, chunk)
                assert chunk[0] == first or (top >= 2 and chunk[0] == 3), (call, chunk)
                firsts.append(chunk[0])
            bonus_passes.append(firsts.count(3))
        elif index < top:
            # Rule 2: the pending token and the batch; one more pending token on the first
            # verification of a cycle in the bonus state.
            assert set(passes) <= {1 + sizes[index - 1], 2 + sizes[index - 1]}, (index, passes)
            bonus_passes.append(passes.count(2 + sizes[index - 1]))
        elif top == 1:
            assert set(passes) <= {1 + sizes[0]}  # rule 4, K = 1
        else:
            # Rule 4, K >= 2: a standard pass over the pending token and the L tokens handed up,
            # T_{K-1} <= L <= T_{K-1} + T_{K-2}.
            low, high = 1 + sizes[top - 1], 1 + sizes[top - 1] + sizes[top - 2]
            assert all(low <= size <= high for size in passes), (low, high, set(passes))
            # Every cycle in the bonus state has exactly one such pass at every level below.
            assert len(set(bonus_passes)) == 1 and bonus_passes[0] < len(passes), bonus_passes


def _check_caches(decoder, sequence):
    top = len(decoder.levels) - 1
    for index, level in enumerate(decoder.levels):
        length = level.length
        pending = len(sequence) - length
        if index == top:
            assert pending == 1, (index, pending)
        elif index == 0:
            assert pending in ((1, 2, 3) if top >= 2 else (1, 2)), (index, pending)
        else:
            assert pending in (1, 2), (index, pending)
        assert level.history == sequence[:length], index


def test_fuzz_rollback_and_pass_sizes():
    rng = random.Random(2024)
    for trial in range(120):
        num_models = rng.randint(1, 4)
        rhos = [rng.choice([0.0, 1.0, rng.random(), rng.random()]) for _ in range(num_models - 1)]
        hierarchy = synthetic_hierarchy(
            rhos, [AffineCost(1e-3)] * num_models, block_size=rng.randint(1, 3),
            target_block_size=rng.randint(2, 6), seed=trial,
        )  # fmt: skip
        draft_lengths = [rng.randint(1, 5) for _ in range(num_models - 1)]
        decoder = HierarchicalDecoder(list(hierarchy.models), draft_lengths)
        vocab_size = decoder.vocab_size
        for call in range(3):  # repeated calls on one decoder: each starts from a reset
            prompt_length = rng.randint(1, 6)
            prompt = torch.tensor([[rng.randrange(vocab_size) for _ in range(prompt_length)]])
            temperature = rng.choice([0.0, 0.6, 1.0, 1.3])
            top_k = rng.choice([None, None, 1, 2, 5])
            top_p = rng.choice([None, None, 0.5, 0.9])
            max_new_tokens = rng.randint(0, 60)
            eos = rng.choice([None, rng.randrange(vocab_size)])
            output = decoder.generate(
                prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                top_p=top_p, seed=rng.randrange(2**32), eos_token_id=eos,
            )  # fmt: skip
            sequence = output.sequences[0].tolist()
            new = sequence[prompt_length:]
            context = (trial, call, rhos, draft_lengths, prompt_length, max_new_tokens, eos)
            assert sequence[:prompt_length] == prompt[0].tolist(), context
            assert output.stats.new_tokens == len(new) <= max_new_tokens, context
            if eos is None or eos not in new:
                assert len(new) == max_new_tokens, context
            else:
                assert new.index(eos) == len(new) - 1, context  # stops right after the first EOS
            if max_new_tokens == 0:
                assert all(level.forward_passes == 0 for level in output.stats.levels)
                continue
            _check_caches(decoder, sequence)
            _check_pass_sizes(decoder, output.stats, prompt_length)


def test_rollback_extreme_acceptance():
    """rho = 1: every batch fully accepted (bonus tokens, the bonus state of rule 4); rho = 0:
    every first draft rejected."""
    for rhos in ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]):
        hierarchy = synthetic_hierarchy(rhos, [AffineCost(1e-3)] * 4, seed=1)
        decoder = HierarchicalDecoder(list(hierarchy.models), [2, 3, 2])
        output = decoder.generate(torch.tensor([[1, 2]]), max_new_tokens=50, seed=0)
        sequence = output.sequences[0].tolist()
        _check_caches(decoder, sequence)
        _check_pass_sizes(decoder, output.stats, 2)
        for level, rho in zip(output.stats.levels, rhos):
            assert level.acceptance_rate == rho
        # Only the target's block appears in the output.
        target_block_start = hierarchy.models[0].vocab_size - 8
        assert all(token >= target_block_start for token in sequence[2:])


def test_transformers_caches_stay_consistent():
    """After generate, each TransformersLevel's cache equals a fresh forward over the output:
    the logits it gives for the pending tokens match recomputing the whole sequence."""
    models = tiny_llama_family(3, vocab_size=48, seed=4, noise=0.3)
    decoder = HierarchicalDecoder(models, [2, 3])
    generator = torch.Generator().manual_seed(0)
    for call in range(4):
        prompt = torch.randint(0, 48, (1, 3 + call), generator=generator)
        output = decoder.generate(prompt, max_new_tokens=25 + call, temperature=1.0, seed=call)
        sequence = output.sequences
        for index, level in enumerate(decoder.levels):
            length = level.length
            pending = sequence.shape[1] - length
            # the target 1; level 1 1 or 2 (bonus state); level 0 1 to 3
            assert 1 <= pending <= (1 if index == 2 else 2 if index == 1 else 3), (index, pending)
            assert level._cache.get_seq_length() == length
            logits = level.append(sequence[:, length:])
            with torch.inference_mode():
                reference = level.model(sequence).logits[:, length:]
            torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-5)
            level.truncate(length)
            assert level._cache.get_seq_length() == length


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_decoder_reuse_matches_fresh_decoder(temperature):
    hierarchy = synthetic_hierarchy([0.6, 0.8], [AffineCost(1e-3)] * 3, seed=2)
    decoder = HierarchicalDecoder(list(hierarchy.models), [2, 2])
    prompt = torch.tensor([[0, 3, 4]])
    decoder.generate(torch.tensor([[5]]), max_new_tokens=17, temperature=temperature, seed=9)
    reused = decoder.generate(prompt, max_new_tokens=40, temperature=temperature, seed=4)
    fresh = HierarchicalDecoder(
        list(synthetic_hierarchy([0.6, 0.8], [AffineCost(1e-3)] * 3, seed=2).models), [2, 2]
    )
    assert torch.equal(
        reused.sequences,
        fresh.generate(prompt, max_new_tokens=40, temperature=temperature, seed=4).sequences,
    )
