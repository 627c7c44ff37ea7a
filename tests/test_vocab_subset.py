"""Vocabulary-subset drafts (hierspec.vocab_subset): exact logits, rollback, losslessness.

- exact: the subset level's logits equal the full model's on the subset columns and are -inf
  elsewhere; truncate-then-append gives the logits of an uninterrupted pass.
- structural: greedy decoding with a subset draft (bottom or middle level) equals the target's
  own greedy decoding, on prompts where the target's greedy token is often OUTSIDE the subset.
- distributional: the first two sampled tokens follow the target's exact processed law
  (chi-square, temperature 1 and temperature 0.7 with top-k / top-p) with a subset that excludes
  the target's most likely tokens.
- bad input: token_ids / size / architecture errors name the argument and value.
"""

from __future__ import annotations

import pytest
import torch

from hierspec import HierarchicalDecoder, TransformersLevel, VocabSubsetLevel, frequent_tokens
from hierspec.sampling import SamplingConfig, processed_probs
from hierspec.testing import chi_square_test, tiny_llama, tiny_llama_family

VOCAB = 64
NEW_TOKENS = 20
P_VALUE_THRESHOLD = 1e-3
NUM_SAMPLES = 1200  # per sampling configuration


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and on a loaded machine oversubscription makes
    # every pass 10x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def family():
    return tiny_llama_family(3, vocab_size=VOCAB, seed=0, noise=0.1)


def _prompts(count: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, VOCAB, (1, 1 + (index * 5) % 11), generator=generator)
        for index in range(count)
    ]


def _target_greedy(target, prompt):
    return target.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=None,
    )


# ---------------------------------------------------------------------------------------------
# Exact logits and rollback


def test_logits_equal_full_model_on_subset_and_minus_inf_elsewhere(family):
    draft = family[0]
    subset = torch.tensor([0, 5, 6, 17, 33, 40, 63])
    level = VocabSubsetLevel(draft, subset)
    full = TransformersLevel(draft)
    tokens = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(1))
    for chunk in (tokens[:, :7], tokens[:, 7:8], tokens[:, 8:]):  # prefill, 1 token, 4 tokens
        subset_logits = level.append(chunk)  # [1, n, vocab]
        full_logits = full.append(chunk)
        assert subset_logits.shape == full_logits.shape
        torch.testing.assert_close(
            subset_logits[..., subset], full_logits[..., subset], rtol=1e-5, atol=1e-5
        )
        outside = torch.ones(VOCAB, dtype=torch.bool)
        outside[subset] = False
        assert bool(torch.isneginf(subset_logits[..., outside]).all())
    assert level.length == full.length == 12


def test_rollback_is_exact(family):
    level = VocabSubsetLevel(family[1], list(range(0, VOCAB, 2)))
    tokens = torch.randint(0, VOCAB, (1, 10), generator=torch.Generator().manual_seed(2))
    level.append(tokens[:, :6])
    reference = level.append(tokens[:, 6:]).clone()  # rows for tokens 6..9
    level.truncate(6)
    assert level.length == 6
    level.append(torch.tensor([[3, 4, 5]]))  # a rejected branch
    level.truncate(6)
    again = level.append(tokens[:, 6:])
    torch.testing.assert_close(again, reference, rtol=1e-5, atol=1e-5)
    level.reset()
    assert level.length == 0
    fresh = level.append(tokens)[:, 6:]
    torch.testing.assert_close(fresh, reference, rtol=1e-5, atol=1e-5)


def test_head_bias_and_scaling_are_applied():
    from transformers import GraniteConfig, GraniteForCausalLM

    config = GraniteConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, logits_scaling=4.0,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GraniteForCausalLM(config).eval()
    with torch.no_grad():  # give the head a bias so that it is exercised too
        model.lm_head.bias = torch.nn.Parameter(torch.randn(32))
    subset = [1, 2, 30]
    tokens = torch.tensor([[4, 9, 1]])
    logits = VocabSubsetLevel(model, subset).append(tokens)
    with torch.inference_mode():
        expected = model(input_ids=tokens).logits
    torch.testing.assert_close(logits[..., subset], expected[..., subset], rtol=1e-5, atol=1e-5)


def test_head_change_after_construction_is_seen(family):
    model = tiny_llama(vocab_size=VOCAB, seed=4)
    level = VocabSubsetLevel(model, [1, 2, 3])
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
    logits = level.append(torch.tensor([[7, 8]]))
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([[7, 8]])).logits
    torch.testing.assert_close(logits[..., [1, 2, 3]], expected[..., [1, 2, 3]])


# ---------------------------------------------------------------------------------------------
# Greedy: equals the target, including target tokens outside the subset


@pytest.mark.parametrize("where", ["bottom", "middle"])
def test_greedy_equals_target_with_tokens_outside_subset(family, where):
    draft_low, draft_high, target = family
    subset = torch.arange(0, VOCAB, 2)  # the even ids: half the vocabulary
    if where == "bottom":
        decoders = [
            HierarchicalDecoder([VocabSubsetLevel(draft_high, subset), target], [3]),
            HierarchicalDecoder([VocabSubsetLevel(draft_low, subset), draft_high, target], [2, 3]),
        ]
    else:
        decoders = [
            HierarchicalDecoder([draft_low, VocabSubsetLevel(draft_high, subset), target], [2, 3])
        ]
    in_subset = torch.zeros(VOCAB, dtype=torch.bool)
    in_subset[subset] = True
    outside_count = inside_count = 0
    accepted = [0] * len(decoders)
    drafted = [0] * len(decoders)
    subset_position = 0 if where == "bottom" else 1
    for prompt in _prompts(6, seed=3):
        expected = _target_greedy(target, prompt)
        new_tokens = expected[0, prompt.shape[1] :]
        outside_count += int((~in_subset[new_tokens]).sum())
        inside_count += int(in_subset[new_tokens].sum())
        for decoder in decoders:
            output = decoder.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0.0)
            assert torch.equal(output.sequences, expected), (where, prompt)
            subset_stats = output.stats.levels[subset_position]
            accepted[decoders.index(decoder)] += subset_stats.accepted
            drafted[decoders.index(decoder)] += subset_stats.drafted
    # The case that matters occurred often, and the subset draft was also accepted.
    assert outside_count >= 15, outside_count
    assert inside_count >= 15, inside_count
    for num_accepted, num_drafted in zip(accepted, drafted):
        assert 0 < num_accepted < num_drafted, (num_accepted, num_drafted)


# ---------------------------------------------------------------------------------------------
# Distributional: the first two tokens follow the target's exact law


CONFIGS = [
    pytest.param(SamplingConfig(temperature=1.0), id="t1.0"),
    pytest.param(SamplingConfig(temperature=0.7, top_k=6, top_p=0.95), id="t0.7-top6-p0.95"),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_first_two_tokens_follow_target_law(config):
    vocab_size = 8
    draft, target = tiny_llama_family(2, vocab_size=vocab_size, seed=3, noise=0.3)
    prompt = torch.tensor([[1, 6, 3]])
    with torch.inference_mode():
        first_logits = target(input_ids=prompt).logits[0, -1]  # [vocab]
        first = processed_probs(first_logits, config).double()  # [vocab]
        continuations = torch.cat(
            [prompt.repeat(vocab_size, 1), torch.arange(vocab_size)[:, None]], dim=1
        )
        second = processed_probs(target(input_ids=continuations).logits[:, -1], config).double()
    exact = first[:, None] * second  # [vocab, vocab]: P(x1, x2)
    # The subset leaves out the target's two most likely first tokens.
    excluded = first.topk(2).indices
    subset = torch.tensor([token for token in range(vocab_size) if token not in excluded])
    assert float(first[excluded].sum()) > 0.3
    decoder = HierarchicalDecoder([VocabSubsetLevel(draft, subset), target], [2])
    counts = torch.zeros((vocab_size, vocab_size))
    for seed in range(NUM_SAMPLES):
        output = decoder.generate(
            prompt, max_new_tokens=2, temperature=config.temperature, top_k=config.top_k,
            top_p=config.top_p, seed=seed,
        )  # fmt: skip
        token_1, token_2 = output.sequences[0, -2:].tolist()
        counts[token_1, token_2] += 1
    result = chi_square_test(counts, exact)
    assert result.p_value > P_VALUE_THRESHOLD, result
    # Tokens outside the subset were emitted (by the residual / bonus draws) about as often as
    # the target's law says.
    assert counts[excluded].sum() > 0.25 * counts.sum()


# ---------------------------------------------------------------------------------------------
# frequent_tokens


def test_frequent_tokens_ranks_by_count_then_id():
    sequences = [torch.tensor([5, 5, 2, 7, 2, 5]), [9, 7], torch.tensor([[3], [3]])]
    # counts: 5:3, 2:2, 7:2, 3:2, 9:1 -> ties (2, 3, 7) broken by id
    assert frequent_tokens(sequences, 1).tolist() == [5]
    assert frequent_tokens(sequences, 3).tolist() == [2, 3, 5]
    assert frequent_tokens(sequences, 4).tolist() == [2, 3, 5, 7]
    assert frequent_tokens(sequences, 3, always=[9]).tolist() == [2, 5, 9]
    # Beyond the distinct ids seen: the smallest unseen ids fill up.
    assert frequent_tokens([[4, 4]], 3, vocab_size=10).tolist() == [0, 1, 4]
    result = frequent_tokens(sequences, 5)
    assert result.dtype == torch.int64


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("token_ids", "error", "match"),
    [
        ([], ValueError, "token_ids must hold at least one token id"),
        ([1, 2, 2], ValueError, "token_ids must be unique, got 2"),
        ([0, VOCAB], ValueError, rf"token_ids must be in \[0, {VOCAB}\), got {VOCAB}"),
        ([-1, 3], ValueError, r"token_ids must be in \[0, 64\), got -1"),
        (torch.tensor([[1, 2]]), ValueError, r"token_ids must be 1-D \[subset\]"),
        (torch.tensor([1.0, 2.0]), TypeError, "token_ids must hold integers"),
        ([1, 2.5], TypeError, r"token_ids\[1\] must be an int"),
        ("abc", TypeError, "token_ids must be a 1-D integer tensor or a sequence of ints"),
    ],
)
def test_bad_token_ids(family, token_ids, error, match):
    with pytest.raises(error, match=match):
        VocabSubsetLevel(family[0], token_ids)


def test_bad_models():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    with pytest.raises(TypeError, match="model must be a transformers PreTrainedModel"):
        VocabSubsetLevel(torch.nn.Linear(2, 2), [0])
    config = Gemma2Config(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, sliding_window=None,
        layer_types=["full_attention"],
    )  # fmt: skip
    model = Gemma2ForCausalLM(config).eval()
    with pytest.raises(ValueError, match=r"\(model_type 'gemma2'\) is not supported"):
        VocabSubsetLevel(model, [0, 1])


def test_accepts_a_transformers_level(family):
    inner = TransformersLevel(family[0])
    inner.append(torch.tensor([[1, 2, 3]]))
    level = VocabSubsetLevel(inner, [4, 5])
    assert level.model is family[0]
    assert level.length == 0  # its own cache
    assert inner.length == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0}, "size must be an int >= 1, got 0"),
        ({"size": 2, "always": [1, 2, 3]}, r"size must be >= the number of always ids \(3\)"),
        ({"size": 11, "vocab_size": 10}, "size must be <= the vocabulary size 10, got 11"),
        ({"size": 1, "vocab_size": 5, "always": [7]}, "token ids must be < vocab_size 5, got 7"),
        ({"size": 1, "always": [-2]}, "token ids must be >= 0, got -2"),
    ],
)
def test_frequent_tokens_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        frequent_tokens([[1, 2, 3]], **kwargs)
