"""Bad input: every error is raised before any work and names the argument and the value."""

from __future__ import annotations

import pytest
import torch

from hierspec import HierarchicalDecoder
from hierspec.testing import MarkovLevel, markov_models, tiny_llama


@pytest.fixture(scope="module")
def models():
    return markov_models(8, noise_scales=[1.0, 0.5], seed=0)


@pytest.fixture(scope="module")
def decoder(models):
    return HierarchicalDecoder(list(models), [2, 2])


PROMPT = torch.tensor([[1, 2, 3]])


def test_vocab_mismatch(models):
    other = markov_models(10, noise_scales=[], seed=0)[0]
    with pytest.raises(ValueError, match=r"models\[2\] has vocab_size 10 but models\[0\] has 8"):
        HierarchicalDecoder([models[0], models[1], other], [1, 1])


def test_models_on_different_devices(models):
    on_meta = MarkovLevel(torch.empty((8, 8), device="meta"))
    with pytest.raises(
        ValueError, match=r"models\[1\] is on device meta but models\[0\] is on cpu"
    ):
        HierarchicalDecoder([models[0], on_meta], [1])


@pytest.mark.parametrize(
    ("draft_lengths", "error", "match"),
    [
        (
            [2],
            ValueError,
            r"draft_lengths must have one entry per model below the target \(2\), got \[2\]",
        ),
        ([2, 2, 2], ValueError, r"draft_lengths.*\(2\), got \[2, 2, 2\] of length 3"),
        ([0, 2], ValueError, r"draft_lengths\[0\] must be >= 1, got 0"),
        ([2, -1], ValueError, r"draft_lengths\[1\] must be >= 1, got -1"),
        ([2, 1.5], TypeError, r"draft_lengths\[1\] must be an int >= 1, got 1\.5"),
        ([True, 2], TypeError, r"draft_lengths\[0\] must be an int >= 1, got True"),
        (3, TypeError, r"draft_lengths must be a sequence of ints, got 3"),
    ],
)
def test_bad_draft_lengths(models, draft_lengths, error, match):
    with pytest.raises(error, match=match):
        HierarchicalDecoder(list(models), draft_lengths)


def test_bad_models():
    with pytest.raises(ValueError, match=r"models must hold at least one model"):
        HierarchicalDecoder([], [])
    with pytest.raises(
        TypeError,
        match=r"models\[0\] must be a transformers causal LM or implement .*DraftModel.*got str",
    ):
        HierarchicalDecoder(["gpt2"], [])
    with pytest.raises(TypeError, match=r"models must be a sequence of models, got MarkovLevel"):
        HierarchicalDecoder(markov_models(4, noise_scales=[], seed=0)[0], [])


def test_same_draft_model_object_twice(models):
    with pytest.raises(ValueError, match=r"models\[2\] is the same object as models\[0\]"):
        HierarchicalDecoder([models[0], models[1], models[0]], [1, 1])


def test_refuses_untruncatable_caches():
    from transformers import MambaConfig, MambaForCausalLM, MistralConfig, MistralForCausalLM

    sliding = MistralForCausalLM(MistralConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, sliding_window=8,
    )).eval()  # fmt: skip
    target = tiny_llama(vocab_size=32)
    with pytest.raises(ValueError, match=r"models\[0\].*sliding-window.*sliding_window=8"):
        HierarchicalDecoder([sliding, target], [2])
    recurrent = MambaForCausalLM(
        MambaConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, state_size=4)
    ).eval()
    with pytest.raises(ValueError, match=r"models\[1\].*MambaForCausalLM.*cannot be truncated"):
        HierarchicalDecoder([target, recurrent], [2])


def test_refuses_model_in_training_mode():
    model = tiny_llama(vocab_size=32).train()
    with pytest.raises(ValueError, match=r"models\[0\].*training mode.*model\.eval\(\)"):
        HierarchicalDecoder([model], [])


@pytest.mark.parametrize(
    ("input_ids", "error", "match"),
    [
        (
            torch.zeros((1, 0), dtype=torch.long),
            ValueError,
            r"input_ids is an empty prompt \(shape \(1, 0\)\)",
        ),
        (
            torch.zeros((2, 3), dtype=torch.long),
            ValueError,
            r"input_ids has batch size 2 \(shape \(2, 3\)\); only batch size 1",
        ),
        (
            torch.zeros(3, dtype=torch.long),
            ValueError,
            r"input_ids must have shape \[1, prompt\], got shape \(3,\)",
        ),
        (
            torch.zeros((1, 3)),
            TypeError,
            r"input_ids must be an int64 \(or int32\) tensor, got dtype torch.float32",
        ),
        ([[1, 2]], TypeError, r"input_ids must be a torch.Tensor \[1, prompt\], got list"),
        (
            torch.tensor([[1, 8]]),
            ValueError,
            r"input_ids contains token id 8, outside \[0, vocab_size=8\)",
        ),
        (torch.tensor([[-1, 2]]), ValueError, r"input_ids contains token id -1"),
    ],
)
def test_bad_input_ids(decoder, input_ids, error, match):
    with pytest.raises(error, match=match):
        decoder.generate(input_ids)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": -0.5}, ValueError, r"temperature must be a finite float >= 0, got -0\.5"),
        ({"top_p": 0.0}, ValueError, r"top_p must be in \(0, 1\] or None, got 0\.0"),
        ({"top_p": 1.01}, ValueError, r"top_p must be in \(0, 1\] or None, got 1\.01"),
        ({"top_k": 0}, ValueError, r"top_k must be >= 1 or None, got 0"),
        ({"max_new_tokens": -1}, ValueError, r"max_new_tokens must be >= 0, got -1"),
        ({"max_new_tokens": 2.0}, TypeError, r"max_new_tokens must be an int >= 0, got 2\.0"),
        ({"seed": -3}, ValueError, r"seed must be in \[0, 2\*\*64\), got -3"),
        ({"seed": "7"}, TypeError, r"seed must be an int or None, got '7'"),
        ({"eos_token_id": 8}, ValueError, r"eos_token_id 8 is outside \[0, vocab_size=8\)"),
        ({"eos_token_id": []}, ValueError, r"eos_token_id must be .*got \[\]"),
        (
            {"eos_token_id": 1.0},
            TypeError,
            r"eos_token_id must be an int or a sequence of ints, got 1\.0",
        ),
    ],
)
def test_bad_generate_arguments(decoder, kwargs, error, match):
    with pytest.raises(error, match=match):
        decoder.generate(PROMPT, **kwargs)


def test_from_plan_mismatch(models):
    class FakePlan:
        chain = (0, 1)
        draft_lengths = (2,)

    with pytest.raises(
        ValueError, match=r"plan.chain \[0, 1\] must end at the target, models\[2\]"
    ):
        HierarchicalDecoder.from_plan(list(models), FakePlan())
    FakePlan.chain = (0, 5)
    with pytest.raises(ValueError, match=r"plan.chain \[0, 5\] does not index models \(length 3\)"):
        HierarchicalDecoder.from_plan(list(models), FakePlan())
    with pytest.raises(TypeError, match=r"plan must have .chain and .draft_lengths"):
        HierarchicalDecoder.from_plan(list(models), object())
