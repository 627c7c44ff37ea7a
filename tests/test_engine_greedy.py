"""Structural: greedy hierarchical decoding equals the target's own greedy decoding, token for
token.

Chains of 1-4 tiny random Llamas (drafts are perturbed copies of the target, so acceptance is
partial at every level), >= 20 prompts x 32 tokens per chain length, draft lengths cycling through
configurations that exercise fixed-length hand-ups (T_l + 1 thresholds), the target's
verification of hand-ups of every length, full acceptances (the bonus state), and EOS stops.
"""

from __future__ import annotations

import pytest
import torch

from hierspec import HierarchicalDecoder
from hierspec.testing import tiny_llama, tiny_llama_family

VOCAB = 64
NUM_PROMPTS = 20
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def family():
    return tiny_llama_family(4, vocab_size=VOCAB, seed=0, noise=0.1)


def _prompts(seed: int):
    generator = torch.Generator().manual_seed(seed)
    for index in range(NUM_PROMPTS):
        length = 1 + (index * 7) % 13  # 1..13, including the 1-token prompt
        yield torch.randint(0, VOCAB, (1, length), generator=generator)


def _target_greedy(target, prompt, eos_token_id=None):
    # An explicit all-ones attention mask: transformers would otherwise infer one from the pad
    # id, masking prompt tokens that happen to equal it.
    return target.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=eos_token_id,
    )


CHAINS = {
    1: ([3], [[]]),
    2: ([1, 3], [[1], [3], [5]]),
    3: ([0, 2, 3], [[1, 1], [2, 3], [3, 1], [1, 4]]),
    4: ([0, 1, 2, 3], [[1, 1, 1], [2, 1, 3], [1, 3, 2], [3, 2, 1]]),
}


@pytest.mark.parametrize("num_levels", [1, 2, 3, 4])
def test_greedy_equals_target_greedy(family, num_levels):
    chain, draft_length_options = CHAINS[num_levels]
    models = [family[index] for index in chain]
    decoders = [HierarchicalDecoder(models, sizes) for sizes in draft_length_options]
    target = family[-1]
    full_acceptances = 0
    for index, prompt in enumerate(_prompts(seed=num_levels)):
        decoder = decoders[index % len(decoders)]
        expected = _target_greedy(target, prompt)
        output = decoder.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0.0, seed=index)
        assert torch.equal(output.sequences, expected), (index, decoder.draft_lengths)
        assert output.stats.new_tokens == NEW_TOKENS
        levels = output.stats.levels
        full_acceptances += sum(level.batches - level.rejected for level in levels)
        # Each level below the target handed up batches; acceptance is partial, not trivial.
        for level in levels[:-1]:
            assert level.batches > 0
    if num_levels > 1:
        assert full_acceptances > 0


@pytest.mark.parametrize("num_levels", [2, 3, 4])
def test_greedy_stops_at_eos_like_target(family, num_levels):
    chain, draft_length_options = CHAINS[num_levels]
    target = family[-1]
    for index, prompt in enumerate(list(_prompts(seed=100 + num_levels))[:6]):
        sizes = draft_length_options[index % len(draft_length_options)]
        decoder = HierarchicalDecoder([family[i] for i in chain], sizes)
        free_run = _target_greedy(target, prompt)
        eos = int(free_run[0, prompt.shape[1] + 3 + index])  # a token the target emits
        expected = _target_greedy(target, prompt, eos_token_id=eos)
        output = decoder.generate(
            prompt, max_new_tokens=NEW_TOKENS, temperature=0.0, eos_token_id=eos
        )
        assert torch.equal(output.sequences, expected), (index, sizes, eos)
        assert int(output.sequences[0, -1]) == eos


def test_greedy_mixed_precision_chain(family):
    """A bf16 copy of the fp32 target drafting for it (and a bf16 noisy draft below)."""
    target = family[-1]
    bf16_copy = tiny_llama(vocab_size=VOCAB, seed=0, initializer_range=0.2, dtype=torch.bfloat16)
    bf16_copy.load_state_dict({key: value.bfloat16() for key, value in target.state_dict().items()})
    bf16_draft = tiny_llama(vocab_size=VOCAB, seed=0, initializer_range=0.2, dtype=torch.bfloat16)
    bf16_draft.load_state_dict(
        {key: value.bfloat16() for key, value in family[1].state_dict().items()}
    )
    decoder = HierarchicalDecoder([bf16_draft, bf16_copy, target], [2, 3])
    for index, prompt in enumerate(_prompts(seed=7)):
        expected = _target_greedy(target, prompt)
        output = decoder.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0.0)
        assert torch.equal(output.sequences, expected), index
    # The bf16 copy agrees with the target almost always: the chain really used it.
    assert output.stats.levels[1].acceptance_rate > 0.8


def test_greedy_with_gpt2_architecture():
    """Any architecture with a truncatable cache works the same (GPT-2: learned positions)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2(seed: int):
        torch.manual_seed(seed)
        config = GPT2Config(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=256,
            bos_token_id=None,
            eos_token_id=None,
        )
        return GPT2LMHeadModel(config).eval()

    with torch.random.fork_rng(devices=[]):
        target, draft = gpt2(0), gpt2(1)
    decoder = HierarchicalDecoder([draft, target], [3])
    for index, prompt in enumerate(list(_prompts(seed=9))[:5]):
        expected = _target_greedy(target, prompt)
        output = decoder.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0.0)
        assert torch.equal(output.sequences, expected), index
