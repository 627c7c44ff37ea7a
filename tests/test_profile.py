"""The profiler (hierspec.profile): exact costs and acceptance on synthetic models, the JSON
round trip through load_profile, greedy agreement on tiny transformers, and bad input.

Synthetic levels (hierspec.testing) advance a virtual clock by a known cost per pass and have
exactly known acceptance rates at every context, so the profiler's output is checked exactly
when it is given that clock as its timer. Real timings are only checked for shape and sign; the
acceptance rates of tiny transformers against an independent computation (greedy) and for
reproducibility (sampled, seeded). No test here uses the bundled family or its corpus.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest
import torch

import hierspec
from hierspec.profiler import (
    ProfilerConfig,
    cached_profile,
    columns_needed,
    measure_pass_costs,
    nondecreasing_fit,
    profile,
    profile_cache_path,
    write_profile,
)
from hierspec.profiler.acceptance import acceptance_by_position
from hierspec.testing import AffineCost, synthetic_hierarchy, tiny_llama_family

PROMPTS = [torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]]), torch.tensor([3, 1, 4, 1, 5, 0, 2, 6])]


def synthetic(rhos=(0.6, 0.8, 0.9), seed=0):
    costs = [
        AffineCost(1e-3, 1e-4),
        AffineCost(2e-3, 1e-4),
        AffineCost(5e-3, 3e-4),
        AffineCost(2e-2, 1e-3),
    ][-len(rhos) - 1 :]
    return synthetic_hierarchy(list(rhos), costs, seed=seed, record_history=False)


def virtual_profile(hierarchy, **arguments):
    """Profile of a synthetic hierarchy timed with its virtual clock (exact costs)."""
    defaults = dict(
        max_draft_length=4,
        repeats=3,
        progress=False,
        calibration_tokens=48,
        timer=lambda: hierarchy.clock.elapsed,
    )
    return profile(list(hierarchy.models), PROMPTS, **{**defaults, **arguments})


# --------------------------------------------------------------------------------------------
# exact


def test_synthetic_acceptance_equals_known_rates():
    hierarchy = synthetic()
    result = virtual_profile(hierarchy)
    num_models = len(hierarchy.models)
    for i in range(num_models):
        for j in range(i + 1, num_models):
            assert result.acceptance[i][j] == pytest.approx(hierarchy.acceptance[i][j], abs=1e-6)
            # Acceptance is i.i.d. at every context: every position of a block has the same rate.
            by_position = result.extra["acceptance_details"]["by_position"][i][j]
            assert len(by_position) == 4
            assert by_position == pytest.approx([hierarchy.acceptance[i][j]] * 4, abs=1e-6)
    details = result.extra["acceptance_details"]
    assert details["prompts"] == 2 and details["positions"] == 2 * 48
    assert result.extra["sampling"] == {"temperature": 1.0, "top_k": None, "top_p": None}


def test_costs_with_virtual_clock_equal_cost_functions_and_table_width():
    hierarchy = synthetic()
    result = virtual_profile(hierarchy, max_draft_length=5)
    width = columns_needed(4, 5)
    assert width == 11  # 2 T + 1 for three or more models (docs/theory.md §6)
    expected = [[1e3 * cost(n) for n in range(1, width + 1)] for cost in hierarchy.cost_fns]
    assert len(result.costs_ms) == 4 and all(len(row) == width for row in result.costs_ms)
    for row, expected_row in zip(result.costs_ms, expected):
        assert row == pytest.approx(expected_row, rel=1e-9)
    for detail, cost in zip(result.extra["model_details"], hierarchy.cost_fns):
        assert detail["measured_n"] == list(range(1, width + 1))
        assert detail["interpolated_n"] == []
        assert detail["repeats"] == [3] * width
        assert detail["kind"] == "DraftModel MarkovLevel"
        # The virtual clock advances in append only: the whole cost is the forward part.
        assert detail["forward_ms"] == pytest.approx([1e3 * cost(n) for n in range(1, width + 1)])
        assert detail["processing_ms"] == [0.0] * width
        assert detail["truncate_ms"] == [0.0] * width
        assert detail["spread_ms"] == pytest.approx([0.0] * width, abs=1e-12)
    assert result.extra["metadata"]["cost_table_columns"] == width
    assert result.extra["metadata"]["interpolated"] is False
    # The planner gets exactly the known costs and rates: the same plan as from the truth.
    truth = hierspec.plan(expected, hierarchy.acceptance, max_draft_length=5)
    measured = hierspec.plan(result.costs_ms, result.acceptance, max_draft_length=5)
    assert (measured.chain, measured.draft_lengths) == (truth.chain, truth.draft_lengths)
    assert measured.latency == pytest.approx(truth.latency, rel=1e-5)
    assert not measured.limited_by_cost_table


@pytest.mark.parametrize(
    "num_models,max_draft_length,width", [(1, 8, 1), (2, 1, 2), (2, 6, 7), (3, 1, 3), (3, 16, 33)]
)
def test_table_width_is_what_the_planner_needs(num_models, max_draft_length, width):
    assert columns_needed(num_models, max_draft_length) == width
    hierarchy = synthetic(rhos=(0.7, 0.8, 0.9)[: num_models - 1])
    if num_models == 1:
        hierarchy = synthetic_hierarchy([], [AffineCost(1e-3)], record_history=False)
    result = virtual_profile(hierarchy, max_draft_length=max_draft_length, repeats=1)
    assert all(len(row) == width for row in result.costs_ms)


def test_cost_points_interpolate_between_measured_points_only():
    hierarchy = synthetic(rhos=(0.7,))
    result = virtual_profile(hierarchy, max_draft_length=7, cost_points=[3, 5])  # width 8
    for detail in result.extra["model_details"]:
        assert detail["measured_n"] == [1, 3, 5, 8]  # 1 and the width are always measured
        assert detail["interpolated_n"] == [2, 4, 6, 7]
    assert result.extra["metadata"]["interpolated"] is True
    # Affine costs: linear interpolation is exact.
    for row, cost in zip(result.costs_ms, hierarchy.cost_fns):
        assert row == pytest.approx([1e3 * cost(n) for n in range(1, 9)], rel=1e-9)


def test_cost_points_interpolation_is_linear_for_curved_costs():
    def curved(num_tokens):
        return 1e-3 * num_tokens**2

    hierarchy = synthetic_hierarchy([0.5], [curved, curved], record_history=False)
    result = virtual_profile(hierarchy, max_draft_length=3, cost_points=[1])  # width 4: n = 1, 4
    assert result.costs_ms[0] == pytest.approx([1.0, 6.0, 11.0, 16.0])


def test_repeats_for_long_passes():
    hierarchy = synthetic(rhos=(0.7,))
    result = virtual_profile(hierarchy, max_draft_length=12, repeats=5)  # width 13
    assert ProfilerConfig(repeats=5).large_pass_repeats == 3
    assert result.extra["model_details"][0]["repeats"] == [5] * 8 + [3] * 5
    result = virtual_profile(hierarchy, max_draft_length=12, repeats=2, large_pass_repeats=1)
    assert result.extra["model_details"][0]["repeats"] == [2] * 8 + [1] * 5


def test_timing_loop_interleaves_levels_and_leaves_them_reset():
    """Two levels timed together (as bench/packing.py does) get each its own exact costs."""
    hierarchy = synthetic(rhos=(0.7,))
    context = torch.arange(12).remainder(12)[None]  # [1, 8 cached + 4 new]
    clock = hierarchy.clock
    measurements = measure_pass_costs(
        hierarchy.models,
        context,
        num_cached=8,
        points=[1, 2, 4],
        repeats=3,
        timer=lambda: clock.elapsed,
    )
    for measurement, cost in zip(measurements, hierarchy.cost_fns):
        assert measurement.measured_n == (1, 2, 4) and measurement.repeats == (3, 3, 3)
        assert list(measurement.costs_ms) == pytest.approx(
            [1e3 * cost(1), 1e3 * cost(2), 1e3 * (cost(2) + cost(4)) / 2, 1e3 * cost(4)]
        )
    assert all(model.length == 0 for model in hierarchy.models)
    with pytest.raises(ValueError, match="context has 12 tokens, need num_cached"):
        measure_pass_costs(hierarchy.models, context, num_cached=10, points=[4], repeats=1)


def test_acceptance_by_position_of_hand_made_overlaps():
    overlaps = [torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64)]
    # k=0: 3/4; k=1: windows (1,1),(1,0),(0,1) -> 1 of 2 reached; k=2: 0 of 1; k=3: not reached.
    assert acceptance_by_position(overlaps, 5) == [0.75, 0.5, 0.0, None, None]
    halves = [
        torch.full((6,), 0.5, dtype=torch.float64),
        torch.full((3,), 0.5, dtype=torch.float64),
    ]
    assert acceptance_by_position(halves, 4) == pytest.approx([0.5, 0.5, 0.5, 0.5])


# --------------------------------------------------------------------------------------------
# tiny transformers: greedy agreement, real timings, JSON round trip


@pytest.fixture(scope="module")
def llamas():
    return tiny_llama_family(3, vocab_size=48, seed=2, noise=0.3)


def test_greedy_acceptance_is_argmax_agreement(llamas):
    result = profile(
        llamas,
        PROMPTS,
        max_draft_length=3,
        repeats=1,
        progress=False,
        temperature=0.0,
        calibration_tokens=24,
        seed=5,
    )
    # Independent computation: the target's greedy continuation by plain forward passes, then
    # each model's argmax at those positions.
    agreements = {(i, j): [] for i in range(3) for j in range(i + 1, 3)}
    for prompt in PROMPTS:
        sequence = prompt.reshape(1, -1)
        with torch.no_grad():
            for _ in range(24):
                next_token = llamas[-1](sequence).logits[:, -1].argmax(-1, keepdim=True)
                sequence = torch.cat([sequence, next_token], dim=1)
            argmaxes = [
                model(sequence[:, :-1]).logits[0, prompt.numel() - 1 :].argmax(-1)
                for model in llamas
            ]
        for i, j in agreements:
            agreements[(i, j)].append((argmaxes[i] == argmaxes[j]).double())
        assert torch.equal(argmaxes[-1], sequence[0, prompt.numel() :])
    details = result.extra["acceptance_details"]
    assert details["prompt_positions"] == [24] * len(PROMPTS)
    for (i, j), values in agreements.items():
        assert result.acceptance[i][j] == pytest.approx(float(torch.cat(values).mean()), abs=1e-12)
        # Per prompt: the agreement over that prompt's positions (the empirical-Bayes input).
        assert details["by_prompt"][i][j] == pytest.approx(
            [float(v.mean()) for v in values], abs=1e-12
        )
    assert details["by_prompt"][1][0] is None and details["by_prompt"][0][0] is None
    assert result.extra["sampling"]["temperature"] == 0.0


def test_real_timings_are_positive_and_shaped(llamas):
    previous = torch.get_num_threads()
    result = profile(
        llamas,
        PROMPTS,
        max_draft_length=2,
        repeats=2,
        progress=False,
        names=["small", "medium", "big"],
        calibration_tokens=8,
        threads=1,
    )
    assert torch.get_num_threads() == previous  # restored
    assert result.model_names == ("small", "medium", "big")
    assert len(result.costs_ms) == 3 and all(len(row) == 5 for row in result.costs_ms)
    assert all(value > 0 and math.isfinite(value) for row in result.costs_ms for value in row)
    for detail in result.extra["model_details"]:
        assert detail["kind"] == "transformers LlamaForCausalLM"
        assert detail["dtype"] == "float32" and detail["parameters"] > 0
        for key in ("forward_ms", "processing_ms", "truncate_ms"):
            assert len(detail[key]) == 5 and all(value >= 0 for value in detail[key])
    metadata = result.extra["metadata"]
    assert (
        metadata["threads"] == 1 and metadata["machine"]["versions"]["torch"] == torch.__version__
    )
    # Seeded calibration: the sampled continuations, hence the acceptance rates, reproduce.
    again = profile(
        llamas, PROMPTS, max_draft_length=2, repeats=1, progress=False, calibration_tokens=8
    )
    assert again.acceptance == result.acceptance
    assert again.extra["acceptance_details"] == result.extra["acceptance_details"]


def test_json_round_trip_through_load_profile(llamas, tmp_path):
    result = profile(
        llamas,
        PROMPTS,
        max_draft_length=2,
        repeats=1,
        progress=False,
        calibration_tokens=8,
        cost_points=[2],
    )
    path = tmp_path / "profile.json"
    write_profile(result, path)
    loaded = hierspec.load_profile(path)
    assert loaded == result  # names, costs and acceptance
    assert loaded.extra == json.loads(json.dumps(result.extra))
    assert json.loads(path.read_text())["models"][0]["name"] == "M0"
    plan = hierspec.plan(
        loaded.costs_ms, loaded.acceptance, max_draft_length=2, model_names=loaded.model_names
    )
    assert plan.chain[-1] == 2 and not plan.limited_by_cost_table


class CharacterTokenizer:
    """A stand-in tokenizer without a chat template (prompts may be strings)."""

    chat_template = None

    def __call__(self, text):
        return {"input_ids": [ord(character) % 12 for character in text[:40]]}


def test_cached_profile_is_reused_and_keyed_by_conditions(tmp_path):
    hierarchy = synthetic(rhos=(0.7,))
    prompts = ["first prompt", "second prompt"]
    config = ProfilerConfig(max_draft_length=2, repeats=1, calibration_tokens=4)

    def cached(config, prompts, **arguments):
        return cached_profile(
            hierarchy.models,
            ["a", "b"],
            prompts,
            tmp_path,
            config,
            tokenizer=CharacterTokenizer(),
            progress=False,
            **arguments,
        )

    first, path, measured = cached(config, prompts)
    assert measured and path.is_file() and path.parent == tmp_path / "profiles"
    assert first.extra["acceptance_details"]["prompts"] == 2
    assert hierspec.load_profile(path) == first
    second, same_path, measured = cached(config, prompts)
    assert not measured and same_path == path and second == first
    greedy = dataclasses.replace(config, sampling=hierspec.SamplingConfig(temperature=0.0))
    _, other_path, measured = cached(greedy, prompts)
    assert measured and other_path != path
    _, other_path, measured = cached(config, prompts[:1])
    assert measured and other_path != path
    _, same_path, measured = cached(config, prompts, refresh=True)
    assert measured and same_path == path


def test_cache_key_is_the_content_of_models_prompts_and_conditions(tmp_path):
    """A level's state (its length) must not change the key; prompts, configuration and the
    caller's identities of the models do."""
    from hierspec.ngram import NGramDrafter

    models = [NGramDrafter(12), synthetic(rhos=(0.7,)).models[1]]
    names = ["ngram", "target"]
    config = ProfilerConfig(max_draft_length=2)
    prompts = [torch.tensor([[1, 2, 3]]), "text"]
    before = profile_cache_path(tmp_path, models, names, config, prompts)
    assert before.parent == tmp_path / "profiles" and before.name.startswith("profile-")
    models[0].append(torch.tensor([[1, 2, 3]]))
    assert profile_cache_path(tmp_path, models, names, config, prompts) == before
    assert profile_cache_path(tmp_path, models, names, config, prompts[:1]) != before
    changed = [torch.tensor([[1, 2, 4]]), "text"]
    assert profile_cache_path(tmp_path, models, names, config, changed) != before
    greedy = ProfilerConfig(max_draft_length=2, sampling=hierspec.SamplingConfig(temperature=0.0))
    assert profile_cache_path(tmp_path, models, names, greedy, prompts) != before
    raw = ProfilerConfig(max_draft_length=2, cost_fit="none")
    assert profile_cache_path(tmp_path, models, names, raw, prompts) != before
    identities = [{}, {"record": "abc"}]
    keyed = profile_cache_path(tmp_path, models, names, config, prompts, identities)
    assert keyed != before
    assert profile_cache_path(tmp_path, models, names, config, prompts, [{}, {}]) == before
    with pytest.raises(ValueError, match="identities has 1 entries, models has 2"):
        profile_cache_path(tmp_path, models, names, config, prompts, [{}])


# --------------------------------------------------------------------------------------------
# the cost table's nondecreasing fit


def isotonic_by_min_max(values, weights):
    """The weighted least-squares nondecreasing fit by its closed form (an independent
    definition): fit_i = max over j <= i of min over k >= i of the weighted mean of j..k."""
    n = len(values)

    def mean(j, k):
        w = weights[j : k + 1]
        return sum(v * x for v, x in zip(values[j : k + 1], w)) / sum(w)

    return [max(min(mean(j, k) for k in range(i, n)) for j in range(i + 1)) for i in range(n)]


def test_nondecreasing_fit_equals_the_closed_form_on_random_sequences():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 12)
        values = [rng.choice([rng.uniform(0, 100), 50.0]) for _ in range(n)]  # ties included
        weights = [rng.choice([1, 4, 7, 0.5]) for _ in range(n)]
        fitted = nondecreasing_fit(values, weights)
        assert fitted.tolist() == pytest.approx(isotonic_by_min_max(values, weights), abs=1e-9)
        assert all(a <= b + 1e-12 for a, b in zip(fitted, fitted[1:]))
        # Pooling keeps the weighted total.
        assert sum(f * w for f, w in zip(fitted, weights)) == pytest.approx(
            sum(v * w for v, w in zip(values, weights))
        )


def test_nondecreasing_fit_leaves_a_nondecreasing_sequence_alone():
    values = [0.3, 0.3, 0.7, 1.0, 1.0, 2.5]
    assert nondecreasing_fit(values).tolist() == values
    assert nondecreasing_fit([5.0]).tolist() == [5.0]
    assert nondecreasing_fit([]).tolist() == []


@pytest.mark.parametrize(
    "values,weights,message",
    [
        ([1.0, float("nan")], None, "values must be a 1-d sequence of finite numbers"),
        ([[1.0, 2.0]], None, "values must be a 1-d sequence of finite numbers"),
        ([1.0, 2.0], [1.0], "weights must be 2 positive finite numbers, got"),
        ([1.0, 2.0], [1.0, 0.0], "weights must be 2 positive finite numbers, got"),
        ([1.0, 2.0], [1.0, float("inf")], "weights must be 2 positive finite numbers, got"),
    ],
)
def test_nondecreasing_fit_bad_input(values, weights, message):
    with pytest.raises(ValueError, match=message):
        nondecreasing_fit(values, weights)


def dipping(num_tokens):
    """A pass cost (s) whose n = 3 and n = 5 sit below n = 2: 10, 12, 9, 13, 11, 14, 15 ms, then
    8 + n ms (the prefill)."""
    table = [10.0, 12.0, 9.0, 13.0, 11.0, 14.0, 15.0]
    return 1e-3 * (table[num_tokens - 1] if num_tokens <= len(table) else 8.0 + num_tokens)


def test_profile_costs_are_the_nondecreasing_fit_and_the_medians_are_kept():
    hierarchy = synthetic_hierarchy([0.6], [AffineCost(1e-4, 1e-5), dipping], record_history=False)
    fitted = virtual_profile(hierarchy, max_draft_length=6)  # width 7
    raw = virtual_profile(hierarchy, max_draft_length=6, cost_fit="none")
    medians = [1e3 * dipping(n) for n in range(1, 8)]
    expected = nondecreasing_fit(medians, [3] * 7).tolist()
    assert expected == pytest.approx([10.0, 10.5, 10.5, 12.0, 12.0, 14.0, 15.0])
    assert list(fitted.costs_ms[1]) == pytest.approx(expected)
    assert list(raw.costs_ms[1]) == pytest.approx(medians)
    for result in (fitted, raw):
        detail = result.extra["model_details"][1]
        assert detail["total_ms"] == pytest.approx(medians)
        assert detail["fitted_ms"] == pytest.approx(list(result.costs_ms[1]))
        # The affine (already nondecreasing) row is the same either way.
        assert list(result.costs_ms[0]) == pytest.approx(
            [1e3 * (1e-4 + 1e-5 * (n - 1)) for n in range(1, 8)]
        )
    assert fitted.extra["metadata"]["config"]["cost_fit"] == "nondecreasing"
    assert "nondecreasing least-squares fit" in fitted.extra["metadata"]["cost_definition"]
    assert raw.extra["metadata"]["config"]["cost_fit"] == "none"
    assert "fit" not in raw.extra["metadata"]["cost_definition"]


def test_forward_rows_are_fitted_as_the_cost_rows_were():
    """The adaptive decoder scales costs by measured / profiled forward time: the profiled
    forward part must be fitted like the cost rows, or a dip in it inflates the scale."""
    hierarchy = synthetic_hierarchy([0.6], [dipping, dipping], record_history=False)
    fitted = virtual_profile(hierarchy, max_draft_length=6)
    raw = virtual_profile(hierarchy, max_draft_length=6, cost_fit="none")
    # The virtual clock advances in append only: the forward part is the whole cost.
    assert hierspec.planning.forward_cost_rows(fitted)[1].tolist() == pytest.approx(
        list(fitted.costs_ms[1])
    )
    assert hierspec.planning.forward_cost_rows(raw)[1].tolist() == pytest.approx(
        [1e3 * dipping(n) for n in range(1, 8)]
    )
    # A profile that does not record its fit (written before it existed) keeps the medians.
    data = fitted.to_dict()
    del data["metadata"]["config"]["cost_fit"]
    old = hierspec.Profile.from_dict(data)
    assert hierspec.planning.forward_cost_rows(old)[1].tolist() == pytest.approx(
        [1e3 * dipping(n) for n in range(1, 8)]
    )


def test_cost_fit_is_applied_before_interpolation():
    hierarchy = synthetic_hierarchy([0.6], [dipping, dipping], record_history=False)
    result = virtual_profile(hierarchy, max_draft_length=6, cost_points=[3])  # n = 1, 3, 7
    # medians 10, 9, 15 -> fit 9.5, 9.5, 15 -> interpolated over n = 1..7
    assert list(result.costs_ms[0]) == pytest.approx(
        [9.5, 9.5, 9.5, 9.5 + 5.5 / 4, 9.5 + 5.5 / 2, 9.5 + 5.5 * 3 / 4, 15.0]
    )
    measurements = measure_pass_costs(
        [hierarchy.models[0]],
        torch.arange(16).remainder(12)[None],
        num_cached=8,
        points=[1, 2, 3],
        repeats=2,
        timer=lambda: hierarchy.clock.elapsed,
        fit="none",
    )
    assert measurements[0].costs_ms == pytest.approx((10.0, 12.0, 9.0))
    for samples, cost in zip(measurements[0].samples_ms, (10.0, 12.0, 9.0)):
        assert samples == pytest.approx((cost, cost))
    with pytest.raises(
        ValueError, match=r"fit must be one of \('nondecreasing', 'none'\), got 'x'"
    ):
        measure_pass_costs(
            [hierarchy.models[0]], torch.arange(16).remainder(12)[None], 8, [1], 1, fit="x"
        )


# --------------------------------------------------------------------------------------------
# bad input


def test_bad_models():
    hierarchy = synthetic(rhos=(0.7,))
    with pytest.raises(ValueError, match="at least one model"):
        profile([], PROMPTS, progress=False)
    with pytest.raises(ValueError, match=r"models\[1\] is the same object as models\[0\]"):
        profile([hierarchy.models[0], hierarchy.models[0]], PROMPTS, progress=False)
    with pytest.raises(TypeError, match=r"models\[0\] must be a transformers causal LM"):
        profile(["gpt2", hierarchy.models[1]], PROMPTS, progress=False)
    other = synthetic_hierarchy([], [AffineCost(1e-3)], block_size=4, target_block_size=5)
    with pytest.raises(ValueError, match=r"models\[1\] has vocab_size 5 but models\[0\] has 12"):
        profile([hierarchy.models[0], other.models[0]], PROMPTS, progress=False)


def test_bad_names_and_prompts():
    models = list(synthetic(rhos=(0.7,)).models)
    with pytest.raises(ValueError, match=r"names has 1 entries \['x'\], models has 2"):
        profile(models, PROMPTS, names=["x"], progress=False)
    with pytest.raises(ValueError, match="names must be unique"):
        profile(models, PROMPTS, names=["x", "x"], progress=False)
    with pytest.raises(ValueError, match="prompts must hold at least one prompt"):
        profile(models, [], progress=False)
    with pytest.raises(TypeError, match="prompts must be a sequence of prompts"):
        profile(models, torch.tensor([[1, 2]]), progress=False)
    with pytest.raises(ValueError, match=r"prompts\[0\] is a string; pass tokenizer="):
        profile(models, ["hello"], progress=False)
    with pytest.raises(
        ValueError, match=r"prompts\[1\] contains token id 12, outside \[0, vocab_size=12\)"
    ):
        profile(models, [torch.tensor([[1]]), torch.tensor([[3, 12]])], progress=False)
    with pytest.raises(
        ValueError, match=r"prompts\[0\] must have shape \[1, P\] or \[P\], got \(2, 2\)"
    ):
        profile(models, [torch.ones((2, 2), dtype=torch.int64)], progress=False)
    with pytest.raises(TypeError, match=r"prompts\[0\] must hold int64 token ids"):
        profile(models, [torch.tensor([[1.0]])], progress=False)
    with pytest.raises(ValueError, match=r"prompts\[0\] is empty"):
        profile(models, [torch.zeros((1, 0), dtype=torch.int64)], progress=False)


@pytest.mark.parametrize(
    "arguments,error,message",
    [
        (dict(max_draft_length=0), ValueError, "max_draft_length must be >= 1, got 0"),
        (dict(repeats=0), ValueError, "repeats must be >= 1, got 0"),
        (
            dict(repeats=2, large_pass_repeats=3),
            ValueError,
            r"large_pass_repeats must be <= repeats \(2\), got 3",
        ),
        (dict(calibration_tokens=0), ValueError, "calibration_tokens must be >= 1, got 0"),
        (dict(context_tokens=-1), ValueError, "context_tokens must be >= 1, got -1"),
        (dict(cost_points=[0, 2]), ValueError, "cost_points entry must be >= 1, got 0"),
        (dict(threads=0), ValueError, "threads must be >= 1, got 0"),
        (dict(repeats=2.5), TypeError, "repeats must be an int >= 1, got 2.5"),
        (dict(temperature=-1.0), ValueError, "temperature must be a finite float >= 0"),
        (dict(seed=-3), ValueError, "seed must be >= 0, got -3"),
        (
            dict(cost_fit="linear"),
            ValueError,
            r"cost_fit must be one of \('nondecreasing', 'none'\), got 'linear'",
        ),
    ],
)
def test_bad_configuration(arguments, error, message):
    models = list(synthetic(rhos=(0.7,)).models)
    with pytest.raises(error, match=message):
        profile(models, PROMPTS, progress=False, **arguments)
