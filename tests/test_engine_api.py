"""The public API: seeds, from_plan, statistics, plain decoding through the same engine."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import hierspec
from hierspec import GenerateStats, HierarchicalDecoder, LevelStats
from hierspec.testing import AffineCost, markov_models, synthetic_hierarchy, tiny_llama_family

PROMPT = torch.tensor([[3, 1, 4, 1, 5]])


@pytest.fixture(scope="module")
def llamas():
    return tiny_llama_family(3, vocab_size=48, seed=1, noise=0.2)


def test_same_seed_same_output(llamas):
    decoder = HierarchicalDecoder(llamas, [2, 3])
    first = decoder.generate(PROMPT, max_new_tokens=40, temperature=1.0, top_p=0.95, seed=17)
    second = decoder.generate(PROMPT, max_new_tokens=40, temperature=1.0, top_p=0.95, seed=17)
    assert torch.equal(first.sequences, second.sequences)
    assert [level.forward_passes for level in first.stats.levels] == [
        level.forward_passes for level in second.stats.levels
    ]
    other = decoder.generate(PROMPT, max_new_tokens=40, temperature=1.0, top_p=0.95, seed=18)
    assert not torch.equal(first.sequences, other.sequences)


def test_no_seed_reports_the_seed_used_and_leaves_global_rng_alone():
    models = markov_models(16, noise_scales=[1.0], seed=3)
    decoder = HierarchicalDecoder(list(models), [3])
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    first = decoder.generate(PROMPT, max_new_tokens=50)
    assert torch.equal(torch.get_rng_state(), global_state)
    again = decoder.generate(PROMPT, max_new_tokens=50, seed=first.seed)
    assert torch.equal(first.sequences, again.sequences)


def test_from_plan_picks_chain_and_draft_lengths():
    hierarchy = synthetic_hierarchy(
        [0.6, 0.9, 0.9],
        [AffineCost(1e-3), AffineCost(2e-3), AffineCost(1e-2), AffineCost(5e-2)],
        seed=0,
    )
    costs = hierarchy.costs_table(33)
    plan = hierspec.plan(costs, hierarchy.acceptance, max_draft_length=8)
    decoder = HierarchicalDecoder.from_plan(list(hierarchy.models), plan)
    assert decoder.levels == tuple(hierarchy.models[index] for index in plan.chain)
    assert decoder.draft_lengths == plan.draft_lengths
    entry = plan.alternatives[-1]
    decoder = HierarchicalDecoder.from_plan(list(hierarchy.models), entry)
    assert decoder.levels == tuple(hierarchy.models[index] for index in entry.chain)
    output = decoder.generate(torch.tensor([[0]]), max_new_tokens=20, seed=0)
    assert output.stats.new_tokens == 20
    with pytest.raises(ValueError, match=r"plan was made for 4 candidates .* but models has 3"):
        HierarchicalDecoder.from_plan(list(hierarchy.models[1:]), plan)


def test_stats_are_typed_frozen_and_consistent():
    hierarchy = synthetic_hierarchy([0.7, 0.8], [AffineCost(1e-3)] * 3, seed=5)
    decoder = HierarchicalDecoder(list(hierarchy.models), [3, 2])
    output = decoder.generate(PROMPT, max_new_tokens=300, seed=2)
    stats = output.stats
    assert isinstance(stats, GenerateStats) and all(
        isinstance(level, LevelStats) for level in stats.levels
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.new_tokens = 0  # type: ignore[misc]
    assert stats.prompt_tokens == 5 and stats.new_tokens == 300
    assert output.sequences.shape == (1, 305) and output.sequences.dtype == torch.int64
    bottom, middle, target = stats.levels
    assert stats.target_passes == target.forward_passes == target.verifications
    # Prefill reported separately: levels >= 1 process prompt[:-1], level 0 prompt[:-2].
    assert (bottom.prefill_tokens, middle.prefill_tokens, target.prefill_tokens) == (3, 4, 4)
    # Drafter and verifier views agree.
    assert bottom.batches == middle.verifications and middle.batches == target.verifications
    assert bottom.drafted == 3 * bottom.batches
    assert middle.tokens_emitted == bottom.accepted + bottom.batches  # accepted + one more each
    assert target.tokens_emitted >= 300
    assert middle.mean_acceptance_length == pytest.approx(1 + middle.accepted / middle.batches)
    assert len(bottom.acceptance_by_position) == 3
    assert bottom.reached_position[0] == bottom.batches
    assert bottom.acceptance_by_position[0] == pytest.approx(
        bottom.accepted_at_position[0] / bottom.batches
    )
    assert math.isnan(target.acceptance_rate) and target.batches == 0
    assert stats.passes_per_token[2] == pytest.approx(target.forward_passes / 300)
    assert stats.tokens_per_token[0] == pytest.approx(bottom.tokens_processed / 300)
    assert 0 < stats.model_time_s <= stats.decode_time_s <= stats.wall_time_s
    assert stats.tokens_per_second > 0


def test_one_model_is_plain_decoding_through_the_same_engine():
    models = markov_models(16, noise_scales=[], seed=4)
    decoder = HierarchicalDecoder(list(models), [])
    output = decoder.generate(PROMPT, max_new_tokens=25, seed=1)
    (level,) = output.stats.levels
    assert level.forward_passes == level.tokens_processed == 25
    assert level.prefill_tokens == 4
    assert decoder.levels[0].pass_sizes == [4] + [1] * 25


def test_zero_new_tokens_returns_the_prompt(llamas):
    decoder = HierarchicalDecoder(llamas, [1, 1])
    output = decoder.generate(PROMPT, max_new_tokens=0)
    assert torch.equal(output.sequences, PROMPT)
    assert output.stats.new_tokens == 0 and output.stats.target_passes == 0


def test_eos_list_and_wrapping_of_prebuilt_levels(llamas):
    levels = [hierspec.TransformersLevel(model) for model in llamas]
    decoder = HierarchicalDecoder(levels, [2, 2])
    free = decoder.generate(PROMPT, max_new_tokens=30, temperature=0.0).sequences[0, 5:].tolist()
    eos = [free[7], free[3]]
    output = decoder.generate(PROMPT, max_new_tokens=30, temperature=0.0, eos_token_id=eos)
    stop = min(free.index(token) for token in eos)
    assert output.sequences[0, 5:].tolist() == free[: stop + 1]
