"""hierspec.sampling: processed probabilities (temperature, top-k, top-p) and drawing from them."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from hierspec.sampling import (
    SamplingConfig,
    first_argmax,
    first_invalid_position,
    is_distribution,
    processed_probs,
    sample,
)
from hierspec.testing import chi_square_test


def _transformers_probs(logits: torch.Tensor, temperature: float, top_k, top_p) -> torch.Tensor:
    """The law transformers' generate(do_sample=True) samples from (same warper order)."""
    scores = logits.float()
    scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.softmax(scores, dim=-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.9])
@pytest.mark.parametrize("top_k", [None, 1, 3, 17, 40])
@pytest.mark.parametrize("top_p", [None, 0.05, 0.5, 0.9, 1.0])
def test_processed_probs_match_transformers_warpers(temperature, top_k, top_p):
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn((6, 40), generator=generator)
    logits[0, :5] = logits[0, 5]  # ties at the top-k / top-p boundary
    logits[1] = torch.round(logits[1])  # many ties
    logits[2, 7] = -math.inf  # a masked token
    config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    ours = processed_probs(logits, config)
    expected = _transformers_probs(logits, temperature, top_k, top_p)
    assert ours.dtype == torch.float32
    assert ours.shape == logits.shape
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(ours > 0, expected > 0)  # identical supports
    torch.testing.assert_close(ours.sum(-1), torch.ones(6))


def test_greedy_is_one_hot_argmax_first_index():
    logits = torch.tensor([[0.5, 2.0, 2.0, -1.0], [-math.inf, -3.0, -2.0, -math.inf]])
    probs = processed_probs(logits, SamplingConfig(temperature=0.0, top_k=1, top_p=0.3))
    assert torch.equal(probs, torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))


def test_low_temperature_tends_to_greedy():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn((5, 30), generator=generator)
    cold = processed_probs(logits, SamplingConfig(temperature=1e-5))
    greedy = processed_probs(logits, SamplingConfig(temperature=0.0))
    torch.testing.assert_close(cold, greedy, atol=1e-6, rtol=0)


def test_processed_probs_of_bf16_logits_are_the_exact_float32_law():
    # Logits exact in bf16; temperature 0.5 and top_k 2 keep scores 2 and 4, so the law is
    # (0, e^2, e^4, 0) / (e^2 + e^4), computed here in float64 by hand.
    logits = torch.tensor([[0.0, 1.0, 2.0, -math.inf]], dtype=torch.bfloat16)
    probs = processed_probs(logits, SamplingConfig(temperature=0.5, top_k=2))
    assert probs.dtype == torch.float32
    total = math.exp(2) + math.exp(4)
    expected = torch.tensor([[0.0, math.exp(2) / total, math.exp(4) / total, 0.0]])
    torch.testing.assert_close(probs, expected, rtol=1e-6, atol=0)


def test_small_temperature_with_huge_logits_does_not_overflow():
    # 1e38 / 1e-5 is inf in float32; the row max is subtracted first: one-hot, not NaN.
    logits = torch.tensor([[0.0, 1e38, 0.0], [-1e38, 0.0, 3e38]])
    probs = processed_probs(logits, SamplingConfig(temperature=1e-5))
    assert probs.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_non_distribution_rows_are_reported():
    nan, inf = math.nan, math.inf
    logits = torch.tensor(
        [
            [[0.0, 1.0, 2.0], [nan, 0.0, 0.0], [0.0, 0.0, 0.0]],  # position 1: NaN
            [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [-inf, -inf, -inf]],  # position 2: all masked
            [[0.0, 1.0, 2.0], [inf, 0.0, 0.0], [0.0, 0.0, 0.0]],  # position 1: +inf
            [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]],  # all distributions
        ]
    )  # [batch=4, positions=3, vocab=3]
    for config in (SamplingConfig(), SamplingConfig(temperature=0.7, top_k=2, top_p=0.9)):
        probs = processed_probs(logits, config)
        assert first_invalid_position(probs).tolist() == [1, 2, 1, -1]
    assert is_distribution(torch.tensor([[0.2, 0.8], [0.0, 0.0], [0.5, inf]])).tolist() == [
        True,
        False,
        False,
    ]


def test_rows_are_independent():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn((1, 4, 50), generator=generator)
    config = SamplingConfig(temperature=0.6, top_k=10, top_p=0.8)
    whole = processed_probs(logits, config)
    for row in range(4):
        assert torch.equal(whole[:, row], processed_probs(logits[:, row], config))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": -0.1}, ValueError, r"temperature.*-0\.1"),
        ({"temperature": 1e-40}, ValueError, r"temperature must be 0 \(greedy\) or >= 1e-05"),
        ({"temperature": math.nan}, ValueError, r"temperature.*nan"),
        ({"temperature": "1"}, TypeError, r"temperature.*'1'"),
        ({"top_k": 0}, ValueError, r"top_k.*0"),
        ({"top_k": -3}, ValueError, r"top_k.*-3"),
        ({"top_k": 2.5}, TypeError, r"top_k.*2\.5"),
        ({"top_k": True}, TypeError, r"top_k.*True"),
        ({"top_p": 0.0}, ValueError, r"top_p.*0\.0"),
        ({"top_p": 1.5}, ValueError, r"top_p.*1\.5"),
        ({"top_p": -0.2}, ValueError, r"top_p.*-0\.2"),
        ({"top_p": "0.5"}, TypeError, r"top_p.*'0\.5'"),
    ],
)
def test_sampling_config_rejects_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        SamplingConfig(**kwargs)


def test_sampling_config_is_frozen():
    config = SamplingConfig(temperature=0.5)
    with pytest.raises(AttributeError):
        config.temperature = 1.0  # type: ignore[misc]
    assert SamplingConfig(temperature=0).is_greedy and not config.is_greedy


def test_sample_matches_its_distribution():
    probs = torch.tensor([[0.05, 0.0, 0.15, 0.3, 0.5, 0.0]])
    generator = torch.Generator().manual_seed(4)
    counts = torch.zeros(6)
    num_draws = 20_000
    draws = sample(probs.expand(num_draws, 6).contiguous(), generator)
    assert draws.shape == (num_draws, 1) and draws.dtype == torch.int64
    counts.index_add_(0, draws[:, 0], torch.ones(num_draws))
    assert counts[1] == 0 and counts[5] == 0  # probability-0 tokens never drawn
    result = chi_square_test(counts, probs[0])
    assert result.p_value > 1e-4, result


def test_sample_one_hot_always_returns_its_index():
    probs = torch.zeros((50_000, 64))
    index = torch.arange(50_000) % 64
    probs[torch.arange(50_000), index] = 1.0
    generator = torch.Generator().manual_seed(5)
    assert torch.equal(sample(probs, generator)[:, 0], index)


def test_sample_reproducible_with_generator_and_leaves_global_rng_alone():
    probs = torch.softmax(torch.randn((8, 100), generator=torch.Generator().manual_seed(6)), -1)
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    first = sample(probs, torch.Generator().manual_seed(7))
    second = sample(probs, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), global_state)


def test_draw_greedy_is_the_race_on_one_hot_rows_without_touching_the_generator():
    from hierspec.sampling import draw

    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    greedy = SamplingConfig(temperature=0.0)
    probs = processed_probs(logits, greedy)
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    tokens = draw(probs, greedy, generator)
    assert torch.equal(generator.get_state(), state)
    assert torch.equal(tokens, sample(probs, torch.Generator().manual_seed(1)))
    assert torch.equal(tokens, logits.argmax(-1, keepdim=True))
    # Sampling: draws follow the exact law (0.1, 0.2, 0.3, 0.4), computed by hand.
    config = SamplingConfig(temperature=1.0)
    exact = torch.tensor([0.1, 0.2, 0.3, 0.4])
    probs = processed_probs(exact.log().expand(20_000, 4), config)
    tokens = draw(probs, config, torch.Generator().manual_seed(3))[:, 0]
    result = chi_square_test(torch.bincount(tokens, minlength=4), exact)
    assert result.p_value > 1e-4, result


def test_inverse_cdf_skips_zero_tokens_and_never_runs_past_the_last_positive_one():
    from hierspec.sampling import inverse_cdf

    probs = torch.tensor([[0.0, 0.5, 0.0, 1.5, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    below_one = 1.0 - 2.0**-53  # the largest float64 uniform: u * sum may round up to the sum
    cases = {0.0: [1, 0], 0.2499: [1, 0], 0.25: [3, 0], 0.9: [3, 0], below_one: [3, 0]}
    for u, expected in cases.items():
        uniforms = torch.full((2, 1), u, dtype=torch.float64)
        assert inverse_cdf(probs, uniforms)[:, 0].tolist() == expected, u
    # A total that u * total rounds up to: the clamp, not an index past the row.
    total = torch.tensor([[0.1, 0.2, 0.7, 0.0]], dtype=torch.float64)
    uniforms = torch.tensor([[below_one]], dtype=torch.float64)
    assert inverse_cdf(total.float(), uniforms).item() == 2


def test_sample_draws_one_uniform_per_row_from_the_generator():
    """The random stream a row consumes: one float64 uniform (whatever the vocabulary)."""
    probs = torch.softmax(torch.randn((3, 1000), generator=torch.Generator().manual_seed(2)), -1)
    generator = torch.Generator().manual_seed(9)
    tokens = sample(probs, generator)
    reference = torch.Generator().manual_seed(9)
    uniforms = torch.rand((3, 1), dtype=torch.float64, generator=reference)
    assert torch.equal(generator.get_state(), reference.get_state())
    cumulative = probs.double().cumsum(-1)
    expected = (cumulative > uniforms * cumulative[:, -1:]).int().argmax(-1, keepdim=True)
    assert torch.equal(tokens, expected)


@pytest.mark.parametrize("vocab", [100, 2048, 49152, 49152 + 77, 151936])
def test_first_argmax_is_torch_argmax(vocab):
    # Ties within and across blocks, a tie between the whole blocks and the tail, NaN and +-inf:
    # the blocked CPU path (rows of >= 2048) must return torch.argmax's first maximal index.
    gen = torch.Generator().manual_seed(vocab)
    rows = torch.randn(12, vocab, generator=gen)
    rows[1, :] = 0.0  # all tied: index 0
    rows[2, [3, vocab // 2, vocab - 1]] = 9.0  # ties in different blocks: the first
    rows[3, vocab - 1] = 9.0  # the maximum in the last entry (the tail when vocab % 256)
    rows[4, [5, vocab - 1]] = 9.0  # a tie between an early block and the last entry
    rows[5, [vocab // 3, vocab - 2]] = float("nan")  # the first NaN wins
    rows[6, vocab - 1] = float("nan")  # a NaN in the last entry only
    rows[7, :] = -math.inf
    rows[8, [vocab // 4, vocab // 2]] = math.inf
    rows[9, 0] = float("nan")
    rows[10, 300:310] = 50.0
    rows[11, vocab - 3 :] = 50.0  # tied entries at the very end
    assert torch.equal(first_argmax(rows), rows.argmax(dim=-1, keepdim=True))
    batched = rows.reshape(3, 4, vocab)
    assert torch.equal(first_argmax(batched), batched.argmax(dim=-1, keepdim=True))
    as_double = rows.double()
    assert torch.equal(first_argmax(as_double), as_double.argmax(dim=-1, keepdim=True))
    # A non-contiguous view (a pass's last row) as the engine passes it.
    view = rows.reshape(2, 6, vocab)[:, -1]
    assert torch.equal(first_argmax(view), view.argmax(dim=-1, keepdim=True))
