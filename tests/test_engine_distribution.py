"""Distributional: sampled output of 3-level chains follows the target's exact law (chi-square).

The exact law is the target's *processed* distribution (temperature / top-k / top-p applied by
hierspec.sampling, as transformers' warpers do): for the first two new tokens jointly,
``P(x1, x2) = p(x1 | prompt) * p(x2 | prompt, x1)``. Synthetic Markov models (next token depends
on the last token only) make the law exact and sampling fast; a slow test repeats it with tiny
random Llamas. A long-sequence test checks every transition of a 12k-token output against the
target's transition matrix, covering all positions relative to batch boundaries.

The tests are seeded (deterministic); the p-value thresholds (1e-3) leave a wide margin for a
correct engine, while the biases these tests guard against (e.g. verifying the target's last
hand-up token with a fresh bonus, or verifying against the wrong level's distribution) shift
the law by far more than the sampling noise of these sample sizes.
"""

from __future__ import annotations

import pytest
import torch

from hierspec import HierarchicalDecoder
from hierspec.sampling import SamplingConfig, processed_probs
from hierspec.testing import (
    chi_square_test,
    first_two_token_counts,
    long_output_transition_test,
    markov_models,
    tiny_llama_family,
)

P_VALUE_THRESHOLD = 1e-3
CONFIGS = [
    pytest.param(SamplingConfig(temperature=1.0), id="t1.0"),
    pytest.param(SamplingConfig(temperature=0.7, top_k=4), id="t0.7-top4"),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("draft_lengths", [[1, 1], [2, 3]], ids=["T1,1", "T2,3"])
def test_first_two_tokens_markov_three_levels(config, draft_lengths):
    vocab_size = 6
    models = markov_models(vocab_size, noise_scales=[2.0, 1.0], sharpness=1.5, seed=11)
    decoder = HierarchicalDecoder(list(models), draft_lengths)
    prompt = torch.tensor([[2, 5, 1]])
    transition = processed_probs(models[-1].log_probs, config).double()  # [vocab, vocab]
    exact = transition[1].unsqueeze(1) * transition  # P(x1, x2)
    counts = first_two_token_counts(decoder, prompt, config, 4000)
    result = chi_square_test(counts, exact)
    assert result.p_value > P_VALUE_THRESHOLD, result


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize(
    ("noise_scales", "draft_lengths"),
    [([1.0, 0.5], [2, 3]), ([1.5, 1.0, 0.5], [1, 2, 2]), ([0.7], [4])],
    ids=["3-levels", "4-levels", "2-levels"],
)
def test_long_sequence_transitions(config, noise_scales, draft_lengths):
    vocab_size = 8
    models = markov_models(vocab_size, noise_scales=noise_scales, sharpness=1.5, seed=5)
    decoder = HierarchicalDecoder(list(models), draft_lengths)
    (statistic, dof, p_value), output = long_output_transition_test(
        decoder, models[-1], config, 12_000
    )
    assert p_value > P_VALUE_THRESHOLD, (statistic, dof, p_value)
    # Drafts were partially accepted at every level: the test exercised the hierarchy.
    for level in output.stats.levels[:-1]:
        assert 0.2 < level.acceptance_rate < 0.99, level


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_first_two_tokens_tiny_llamas_three_levels(config):
    vocab_size = 8
    # Drafts are perturbed copies of the target (acceptance about 0.3 and 0.55 at temperature 1).
    *drafts, target = tiny_llama_family(
        3, vocab_size=vocab_size, seed=3, noise=0.5, initializer_range=0.25
    )
    decoder = HierarchicalDecoder([drafts[0], drafts[1], target], [2, 2])
    prompt = torch.tensor([[1, 6, 3]])
    with torch.inference_mode():
        first = processed_probs(target(prompt).logits[0, -1], config).double()  # [vocab]
        extended = torch.cat(
            [prompt.expand(vocab_size, -1), torch.arange(vocab_size)[:, None]], dim=1
        )
        second = processed_probs(target(extended).logits[:, -1], config).double()  # [vocab, vocab]
    exact = first.unsqueeze(1) * second
    counts = first_two_token_counts(decoder, prompt, config, 2000)
    result = chi_square_test(counts, exact)
    assert result.p_value > P_VALUE_THRESHOLD, result
