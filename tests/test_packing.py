"""hierspec.packing: float32 linears on oneDNN with prepacked weights compute the same function."""

from __future__ import annotations

import pytest
import torch

from hierspec import HierarchicalDecoder, pack_for_cpu
from hierspec.packing import PackedLinear, packing_available
from hierspec.testing import tiny_llama, tiny_llama_family

pytestmark = pytest.mark.skipif(not packing_available(), reason="torch built without oneDNN")


def _tied_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval()


def test_packed_model_computes_the_same_logits():
    model = tiny_llama(vocab_size=64, seed=3)
    linears = sum(type(module) is torch.nn.Linear for module in model.modules())
    keys = set(model.state_dict())
    ids = torch.randint(0, 64, (1, 17), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(ids).logits
    assert pack_for_cpu(model) == linears > 0
    assert not any(type(module) is torch.nn.Linear for module in model.modules())
    assert set(model.state_dict()) == keys
    with torch.inference_mode():
        actual = model(ids).logits
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert pack_for_cpu(model) == 0  # idempotent


@pytest.mark.parametrize("tokens", [1, 2, 3, 4, 7, 16])
def test_packed_linear_matches_linear_for_every_token_count(tokens):
    generator = torch.Generator().manual_seed(tokens)
    linear = torch.nn.Linear(48, 80)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(80, 48, generator=generator))
        linear.bias.copy_(torch.randn(80, generator=generator))
    packed = PackedLinear(linear)
    x = torch.randn(1, tokens, 48, generator=generator)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), linear(x), rtol=1e-5, atol=1e-5)


def test_tied_weights_stay_tied():
    model = _tied_llama()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    pack_for_cpu(model)
    assert isinstance(model.lm_head, PackedLinear)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_falls_back_for_autograd_and_in_place_updates():
    linear = torch.nn.Linear(8, 5)
    packed = PackedLinear(linear)
    x = torch.randn(3, 8, requires_grad=True)
    packed(x).sum().backward()  # autograd: F.linear, so gradients flow
    assert linear.weight.grad is not None and x.grad is not None
    with torch.no_grad():
        linear.weight.mul_(2.0)  # the packed copy is stale now: must not be used
        torch.testing.assert_close(packed(x), linear(x), rtol=1e-6, atol=1e-6)


def test_replaced_weights_are_not_served_from_a_stale_pack():
    model = tiny_llama(vocab_size=64, seed=4)
    pack_for_cpu(model)
    with torch.no_grad():
        model.lm_head.weight.data = model.lm_head.weight.data * 3.0  # .data swap: no version bump
    ids = torch.randint(0, 64, (1, 5), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        hidden = model.model(ids).last_hidden_state
        torch.testing.assert_close(
            model.lm_head(hidden), hidden @ model.lm_head.weight.T, rtol=1e-5, atol=1e-5
        )


def test_deepcopy_and_save_repack():
    import copy
    import io

    model = tiny_llama(vocab_size=64, seed=6)
    pack_for_cpu(model)
    ids = torch.randint(0, 64, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = model(ids).logits
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        assert isinstance(clone.lm_head, PackedLinear)
        assert clone.lm_head.weight.data_ptr() != model.lm_head.weight.data_ptr()
        with torch.inference_mode():
            torch.testing.assert_close(clone(ids).logits, expected, rtol=0, atol=0)


def test_skips_what_it_cannot_pack():
    assert pack_for_cpu(tiny_llama(vocab_size=64, dtype=torch.bfloat16)) == 0
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        pack_for_cpu("target")
    with pytest.raises(ValueError, match="linear must hold a float32 CPU weight"):
        PackedLinear(torch.nn.Linear(4, 4, dtype=torch.bfloat16))


def test_greedy_with_packed_target_equals_its_own_greedy():
    *drafts, target = tiny_llama_family(3, vocab_size=64, seed=5, noise=0.1)
    pack_for_cpu(target)
    decoder = HierarchicalDecoder([*drafts, target], [2, 3])
    generator = torch.Generator().manual_seed(1)
    for index in range(5):
        prompt = torch.randint(0, 64, (1, 3 + index), generator=generator)
        expected = target.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=None,
        )
        output = decoder.generate(prompt, max_new_tokens=24, temperature=0.0)
        assert torch.equal(output.sequences, expected), index
