"""One request = the prompt's prefill + the decode: the levels' head-free prefill, its measured
cost in a profile, and the planner's exact optimum of prefill + new_tokens x latency."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.adaptive import AdaptiveConfig
from hierspec.levels import TransformersLevel
from hierspec.ngram import NGramDrafter
from hierspec.planning import (
    Profile,
    RequestPlan,
    has_prefill_costs,
    plan_request,
    prefill_costs,
)
from hierspec.protocol import prefill
from hierspec.testing import AffineCost, synthetic_hierarchy, tiny_llama
from hierspec.vocab_subset import VocabSubsetLevel

# --------------------------------------------------------------------------------------------
# levels: prefill leaves the state append would, without the logits


def _assert_prefill_equals_append(make_level, tokens: torch.Tensor, split: int) -> None:
    """prefill(tokens[:split]) then append(rest) gives append(tokens)'s rows for the rest."""
    reference = make_level()
    expected = reference.append(tokens)[:, split:]
    level = make_level()
    prefill(level, tokens[:, :split])
    assert level.length == split
    got = level.append(tokens[:, split:])
    torch.testing.assert_close(got.float(), expected.float(), rtol=1e-4, atol=1e-5)
    # and after a rollback into the prefilled part
    level.truncate(split - 2)
    again = level.append(tokens[:, split - 2 :])
    torch.testing.assert_close(again[:, 2:].float(), expected.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["transformers", "vocab_subset", "ngram"])
def test_prefill_leaves_the_state_of_append(kind):
    model = tiny_llama(vocab_size=40, seed=3)
    makers = {
        "transformers": lambda: TransformersLevel(model),
        "vocab_subset": lambda: VocabSubsetLevel(model, list(range(0, 40, 3))),
        "ngram": lambda: NGramDrafter(vocab_size=40),
    }
    tokens = torch.randint(0, 40, (1, 30), generator=torch.Generator().manual_seed(1))
    tokens[0, 20:26] = tokens[0, 4:10]  # something for the n-gram drafter to copy
    _assert_prefill_equals_append(makers[kind], tokens, split=18)


def test_transformers_prefill_computes_the_head_on_the_last_position_only():
    model = tiny_llama(vocab_size=40, seed=3)
    head = model.get_output_embeddings()
    rows: list[int] = []
    handle = head.register_forward_hook(lambda _m, inputs, _o: rows.append(inputs[0].shape[1]))
    try:
        level = TransformersLevel(model)
        level.prefill(torch.arange(12)[None])
        level.append(torch.arange(12, 15)[None])
    finally:
        handle.remove()
    assert rows == [1, 3]


def test_the_engine_prefills_without_logits():
    """Prompt prefill and catch-up go through ``prefill`` where a level has it; greedy output
    stays the target's."""
    hierarchy = synthetic_hierarchy([0.6, 0.8], [AffineCost(0.1), AffineCost(0.3), AffineCost(1)])

    calls: list[tuple[int, int]] = []

    class Recording:
        """A synthetic level with a ``prefill`` that records its calls."""

        def __init__(self, level, index):
            self.level, self.index = level, index

        vocab_size = property(lambda self: self.level.vocab_size)
        device = property(lambda self: self.level.device)
        length = property(lambda self: self.level.length)

        def reset(self):
            self.level.reset()

        def append(self, token_ids):
            return self.level.append(token_ids)

        def truncate(self, length):
            self.level.truncate(length)

        def prefill(self, token_ids):
            calls.append((self.index, token_ids.shape[1]))
            self.level.append(token_ids)

    models = [Recording(level, index) for index, level in enumerate(hierarchy.models)]
    prompt = torch.tensor([[1, 2, 3, 4, 5, 6]])
    output = HierarchicalDecoder(models, [2, 3]).generate(prompt, 20, temperature=0)
    alone = HierarchicalDecoder(hierarchy.models[-1:], []).generate(prompt, 20, temperature=0)
    assert torch.equal(output.sequences, alone.sequences)
    # level 0 keeps two pending tokens of the prompt, the others one (policy.md rule 1)
    assert calls == [(0, 4), (1, 5), (2, 5)]


# --------------------------------------------------------------------------------------------
# prefill costs of a profile


def _profile(details=None) -> Profile:
    extra = {} if details is None else {"model_details": details}
    return Profile(
        ("draft", "target"),
        ((1.0, 1.5, 2.0), (10.0, 12.0, 14.0)),
        ((1.0, 0.7), (0.0, 1.0)),
        extra=extra,
    )


def test_prefill_costs_measured_are_affine_through_one_token_and_the_measurement():
    profile = _profile(
        [{"prefill_tokens": 41, "prefill_ms": 5.0}, {"prefill_tokens": 41, "prefill_ms": 50.0}]
    )
    assert has_prefill_costs(profile)
    assert prefill_costs(profile, 1).tolist() == pytest.approx([1.0, 10.0])
    assert prefill_costs(profile, 41).tolist() == pytest.approx([5.0, 50.0])
    assert prefill_costs(profile, 81).tolist() == pytest.approx([9.0, 90.0])
    assert prefill_costs(profile, 0).tolist() == [0.0, 0.0]


def test_a_prefill_cheaper_than_one_pass_is_flat_never_negative():
    profile = _profile(
        [{"prefill_tokens": 41, "prefill_ms": 0.5}, {"prefill_tokens": 41, "prefill_ms": 50.0}]
    )
    assert prefill_costs(profile, 400).tolist() == pytest.approx([0.5, 409.0])


def test_prefill_costs_without_a_measurement_extrapolate_the_cost_table():
    for details in (None, [{"prefill_tokens": 41}, {"prefill_tokens": 41, "prefill_ms": 50.0}]):
        profile = _profile(details)
        assert not has_prefill_costs(profile)
        assert prefill_costs(profile, 2).tolist() == [1.5, 12.0]
        assert prefill_costs(profile, 30).tolist() == pytest.approx([20.0, 140.0])


@pytest.mark.parametrize("value", [-1, 2.5, True, "3"])
def test_prefill_costs_refuse_bad_token_counts(value):
    with pytest.raises((TypeError, ValueError), match="num_tokens"):
        prefill_costs(_profile(), value)


def test_the_profiler_measures_the_prefill():
    hierarchy = synthetic_hierarchy(
        [0.7], [AffineCost(1e-3, 1e-4), AffineCost(1e-2, 1e-3)], record_history=False
    )
    result = hierspec.profile(
        hierarchy.models,
        [torch.tensor([[0, 1, 2, 3]])],
        max_draft_length=2,
        repeats=1,
        progress=False,
        calibration_tokens=16,
        context_tokens=40,
        timer=lambda: hierarchy.clock.elapsed,
    )
    details = result.extra["model_details"]
    # a pass over n tokens costs 1 + 0.1 (n - 1) ms and 10 + (n - 1) ms: 40 tokens
    assert [d["prefill_tokens"] for d in details] == [40, 40]
    assert [d["prefill_ms"] for d in details] == pytest.approx([4.9, 49.0])
    assert prefill_costs(result, 40).tolist() == pytest.approx([4.9, 49.0])


# --------------------------------------------------------------------------------------------
# the request planner


def _brute_force_request(costs, acceptance, prefill_ms, new_tokens, max_draft_length, **stop):
    """min over every chain and draft-length vector of prefill(chain) + N x evaluate()."""
    num_models = len(acceptance)
    best = math.inf
    for size in range(num_models):
        for drafts in itertools.combinations(range(num_models - 1), size):
            chain = [*drafts, num_models - 1]
            for lengths in itertools.product(range(1, max_draft_length + 1), repeat=size):
                latency = hierspec.evaluate(costs, acceptance, chain, list(lengths), **stop).latency
                total = sum(prefill_ms[m] for m in chain) + new_tokens * latency
                best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_plan_request_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    num_models = int(rng.integers(2, 5))
    max_draft_length = 3
    width = 2 * max_draft_length + 1
    costs = 4.0 ** np.arange(num_models)[:, None] * rng.uniform(0.5, 2.0, (num_models, width))
    costs = np.sort(costs, axis=1)
    acceptance = np.triu(rng.uniform(0.3, 1.0, (num_models, num_models)), 1)
    prefill_ms = rng.uniform(0.0, 300.0, num_models)
    stop = {}
    if seed % 3 == 2:
        stop = {
            "continue_rates": rng.uniform(0.3, 1.0, num_models).tolist(),
            "bottom_acceptance": np.triu(rng.uniform(0.3, 1.0, (num_models,) * 2), 1).tolist(),
        }
    for new_tokens in (0, 8, 64, 1000):
        request = plan_request(costs, acceptance, prefill_ms, new_tokens, max_draft_length, **stop)
        expected = _brute_force_request(
            costs, acceptance, prefill_ms, new_tokens, max_draft_length, **stop
        )
        assert request.total == pytest.approx(expected, rel=1e-10)
        # the chosen configuration's own numbers add up
        latency = hierspec.evaluate(
            costs, acceptance, list(request.chain), list(request.draft_lengths), **stop
        ).latency
        assert request.latency == pytest.approx(latency, rel=1e-10)
        chain_prefill = sum(prefill_ms[m] for m in request.chain)
        assert request.total == pytest.approx(chain_prefill + new_tokens * latency, rel=1e-12)
        assert request.total <= request.decode_total * (1 + 1e-12)
        decode = hierspec.plan(costs, acceptance, max_draft_length, **stop)
        assert request.decode_entry.chain == decode.chain


def test_plan_request_without_prefill_is_the_plan():
    costs, acceptance = [0.3, 1.0, 4.0], [[1, 0.8, 0.6], [0, 1, 0.9], [0, 0, 1]]
    decode = hierspec.plan(costs, acceptance, 8)
    request = plan_request(costs, acceptance, [0.0, 0.0, 0.0], 100, 8)
    assert (request.chain, request.draft_lengths) == (decode.chain, decode.draft_lengths)
    assert request.total == pytest.approx(100 * decode.latency)


@pytest.mark.parametrize(
    ("prefill_ms", "new_tokens", "match"),
    [
        ([1.0], 10, "prefill must have one entry per model"),
        ([1.0, -1.0], 10, "prefill must be finite and >= 0"),
        ([1.0, math.nan], 10, "prefill must be finite and >= 0"),
        (["1", 2.0], 10, r"prefill\[0\] must hold numbers; got .1."),
        ([1.0, 2.0], -1, "new_tokens must be >= 0, got -1"),
        ([1.0, 2.0], 2.5, "new_tokens must be an int"),
        ([1.0, 2.0], True, "new_tokens must be an int"),
    ],
)
def test_plan_request_refuses_bad_input(prefill_ms, new_tokens, match):
    with pytest.raises((TypeError, ValueError), match=match):
        plan_request([1.0, 10.0], [[1, 0.9], [0, 1]], prefill_ms, new_tokens)


def test_request_plan_of_a_fixed_configuration():
    entry = hierspec.plan([1.0, 10.0], [[1, 0.9], [0, 1]], 4).best
    request = RequestPlan.of(entry, [30.0, 100.0], 10)
    assert request.prefill_total == 130.0
    assert request.total == pytest.approx(130.0 + 10 * entry.latency)
    assert request.decode_total == request.total
    assert request.to_dict()["entry"]["chain"] == [0, 1]


# --------------------------------------------------------------------------------------------
# the adaptive decoder starts each request from its request plan


def test_the_adaptive_decoder_skips_a_draft_whose_prefill_does_not_pay():
    hierarchy = synthetic_hierarchy([0.9], [AffineCost(0.1, 0.05), AffineCost(1.0)], seed=2)
    costs = [[1e3 * cost for cost in row] for row in hierarchy.costs_table(16)]  # ms
    # the draft's prefill: 20 s per 10 tokens (a slow-to-prefill draft), the target's 0.1 s
    details = [
        {"prefill_tokens": 10, "prefill_ms": 20000.0},
        {"prefill_tokens": 10, "prefill_ms": 100.0},
    ]
    profile = Profile(
        ("draft", "target"), tuple(map(tuple, costs)), ((1, 0.9), (0, 1)),
        extra={"model_details": details},
    )  # fmt: skip
    config = AdaptiveConfig(min_draft_confidence=0.0)
    decoder = HierarchicalDecoder.adaptive(
        hierarchy.models, profile, config, timer=lambda: hierarchy.clock.elapsed
    )
    assert decoder.chain == (0, 1)  # the static plan drafts
    prompt = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]])
    short = decoder.generate(prompt, max_new_tokens=4, temperature=0)
    assert short.stats.initial_plan.chain == (1,)
    assert short.stats.levels[0].prefill_passes == 0  # the draft never prefilled
    long = decoder.generate(prompt, max_new_tokens=200, temperature=0)
    assert long.stats.initial_plan.chain == (0, 1)
    assert long.stats.initial_plan.prefill_total == pytest.approx(20100.0)
    assert long.stats.levels[0].prefill_passes == 1
