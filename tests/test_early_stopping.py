"""Early stopping of the bottom level (docs/policy.md rule 1, docs/theory.md §11): the model
(evaluator = simulator, planner = brute force), the engine (counters = evaluator, lossless:
greedy = the target, chi-square at temperature 1 and 0.7 with top-k / top-p) and the argument
checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.sampling import SamplingConfig, processed_probs
from hierspec.testing import (
    chi_square_test,
    first_two_token_counts,
    long_output_transition_test,
    markov_models,
    markov_transition_test,
)

P_VALUE_THRESHOLD = 1e-3


def random_early_stopping(
    rng: np.random.Generator, acceptance: np.ndarray
) -> tuple[list[float], np.ndarray | None]:
    """Continue rates (often 1, sometimes 0) and, half the time, a bottom acceptance matrix
    above the main one (confident drafts survive more often)."""
    kinds = rng.integers(0, 10, size=acceptance.shape[0])
    rates = np.where(kinds <= 2, 1.0, np.where(kinds == 3, 0.0, rng.uniform(0.3, 1.0, kinds.size)))
    bottom = None
    if rng.integers(0, 2):
        bottom = np.triu(acceptance + (1 - acceptance) * rng.uniform(0, 0.5, acceptance.shape), 1)
    return rates.tolist(), bottom


def random_instance(rng: np.random.Generator, num_models: int, num_columns: int):
    scale = 4.0 ** np.arange(num_models)[:, None]
    costs = scale * rng.uniform(0.5, 2.0, size=(num_models, num_columns))
    acceptance = np.triu(rng.uniform(0.0, 1.0, size=(num_models, num_models)), 1)
    return costs, acceptance


@pytest.mark.parametrize("seed", range(30))
def test_planner_equals_brute_force_with_early_stopping(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    num_models = int(rng.integers(2, 6))
    max_draft_length = int(rng.integers(1, 5 if num_models == 5 else 6))
    costs, acceptance = random_instance(rng, num_models, 2 * max_draft_length + 1)
    if seed % 2:
        acceptance = np.triu(0.5 + 0.5 * acceptance, 1)
    rates, bottom = random_early_stopping(rng, acceptance)
    options = {"continue_rates": rates, "bottom_acceptance": bottom}
    planned = hierspec.plan(costs, acceptance, max_draft_length, **options)
    brute = hierspec.brute_force_plan(costs, acceptance, max_draft_length, **options)
    assert planned.latency == pytest.approx(brute.latency, rel=1e-10)
    assert [entry.latency for entry in planned.alternatives] == pytest.approx(
        [entry.latency for entry in brute.alternatives], rel=1e-10
    )
    for entry in planned.alternatives:
        latency = hierspec.expected_latency(
            costs, acceptance, entry.chain, entry.draft_lengths, **options
        )
        assert latency == pytest.approx(entry.latency, rel=1e-10)


@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_simulator_agrees_with_evaluator_with_early_stopping(num_levels: int) -> None:
    rng = np.random.default_rng(40 + num_levels)
    num_models = num_levels + 2
    costs, acceptance = random_instance(rng, num_models, 17)
    acceptance = np.triu(0.2 + 0.75 * acceptance, 1)
    rates, bottom = random_early_stopping(rng, acceptance)
    chain = sorted(rng.choice(num_models - 1, size=num_levels, replace=False).tolist())
    chain.append(num_models - 1)
    rates[chain[0]] = 0.6
    draft_lengths = rng.integers(2, 9, num_levels).tolist()
    options = {"continue_rates": rates, "bottom_acceptance": bottom}
    expected = hierspec.evaluate(costs, acceptance, chain, draft_lengths, **options)
    simulated = hierspec.simulate(costs, acceptance, chain, draft_lengths, 300_000, 3, **options)
    assert simulated.latency == pytest.approx(expected.latency, rel=0.01)
    assert simulated.tokens_per_target_pass == pytest.approx(
        expected.tokens_per_target_pass, rel=0.01
    )
    assert simulated.passes_per_token == pytest.approx(expected.passes_per_token, rel=0.01)
    assert simulated.tokens_per_token == pytest.approx(expected.tokens_per_token, rel=0.01)


def test_defaults_are_no_early_stopping() -> None:
    costs = [[0.1] * 9, [1.0 + 0.1 * n for n in range(9)], [5.0 + n for n in range(9)]]
    acceptance = [[1, 0.7, 0.5], [0, 1, 0.8], [0, 0, 1]]
    plain = hierspec.evaluate(costs, acceptance, [0, 1, 2], [3, 4])
    explicit = hierspec.evaluate(
        costs, acceptance, [0, 1, 2], [3, 4], [1, 1, 1], bottom_acceptance=acceptance
    )
    assert plain == explicit
    assert hierspec.plan(costs, acceptance, 4) == hierspec.plan(
        costs, acceptance, 4, continue_rates=[1, 1, 1]
    )


def test_stopping_pays_when_the_target_pass_grows_with_its_length() -> None:
    """A CPU-like target (cost linear in the pass length) and a drafter that is right when
    confident: stopping early lowers the latency the planner predicts."""
    costs = [[0.01] * 17, [10.0 + 3.0 * n for n in range(17)]]
    acceptance = [[1, 0.3], [0, 1]]
    always = hierspec.plan(costs, acceptance, 8)
    stopping = hierspec.plan(
        costs, acceptance, 8, continue_rates=[0.3, 1], bottom_acceptance=[[1, 0.9], [0, 1]]
    )
    assert stopping.latency < 0.9 * always.latency
    assert stopping.chain == (0, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"continue_rates": [1, 1]}, r"continue_rates must have shape \(3,\)"),
        ({"continue_rates": [1, 1.5, 1]}, r"continue_rates\[1\] = 1.5 is outside \[0, 1\]"),
        ({"continue_rates": [float("nan"), 1, 1]}, r"continue_rates\[0\] = nan is outside"),
        ({"bottom_acceptance": [[1, 0.5], [0, 1]]}, r"bottom_acceptance must have shape \(3, 3\)"),
        (
            {"bottom_acceptance": [[1, 0.5, 2.0], [0, 1, 0.5], [0, 0, 1]]},
            r"bottom_acceptance\[0\]\[2\] = 2.0 is outside \[0, 1\]",
        ),
    ],
)
def test_bad_early_stopping_arguments(options: dict, message: str) -> None:
    acceptance = [[1, 0.7, 0.5], [0, 1, 0.8], [0, 0, 1]]
    with pytest.raises(ValueError, match=message):
        hierspec.evaluate([0.1, 1, 5], acceptance, [0, 2], [3], **options)
    with pytest.raises(ValueError, match=message):
        hierspec.plan([0.1, 1, 5], acceptance, 4, **options)
    with pytest.raises(TypeError, match="continue_rates"):
        hierspec.plan([0.1, 1, 5], acceptance, 4, continue_rates=["1", 1, 1])


# --------------------------------------------------------------------------------------------
# The engine with early stopping: lossless, and its counters are the model's


class StopsAtRandom:
    """A :class:`hierspec.protocol.DraftModel` wrapper whose rows are the wrapped level's, except
    that a pseudo-random fraction ``1 - continue_rate`` of them (a fixed function of the position
    and the last token) is replaced by the uniform distribution. With ``min_draft_confidence``
    above ``1 / vocab`` and below the wrapped rows' confidence, the bottom level stops exactly at
    those rows: i.i.d. stops at the given rate, independent of acceptance, the process
    ``hierspec.evaluate`` models with ``continue_rates``."""

    def __init__(self, level, continue_rate: float, seed: int = 0) -> None:
        self._level = level
        generator = torch.Generator().manual_seed(seed)
        self._stop = torch.rand((4096, level.vocab_size), generator=generator) >= continue_rate
        self._tokens: list[int] = []

    vocab_size = property(lambda self: self._level.vocab_size)
    device = property(lambda self: self._level.device)
    length = property(lambda self: self._level.length)

    def reset(self) -> None:
        self._level.reset()
        self._tokens = []

    def truncate(self, length: int) -> None:
        self._level.truncate(length)
        del self._tokens[length:]

    def append(self, token_ids: torch.Tensor) -> torch.Tensor:
        logits = self._level.append(token_ids).clone()
        for row, token in enumerate(token_ids[0].tolist()):
            position = len(self._tokens)
            self._tokens.append(token)
            if self._stop[position % self._stop.shape[0], token]:
                logits[0, row] = 0.0  # uniform: confidence 1 / vocab
        return logits


MIN_CONFIDENCE = 0.06  # above 1 / 20 (uniform over the synthetic vocabulary), below its rows'

STOP_CASES = [
    pytest.param((0, 3), (4,), 8000, id="2-levels-T4"),
    pytest.param((0, 2, 3), (3, 2), 8000, id="3-levels-T3,2"),
    pytest.param((0, 1, 2, 3), (3, 2, 3), 8000, id="4-levels-T3,2,3"),
]


@pytest.mark.parametrize(("chain", "draft_lengths", "new_tokens"), STOP_CASES)
def test_engine_counters_match_evaluate_with_early_stopping(chain, draft_lengths, new_tokens):
    from hierspec.testing import AffineCost, synthetic_hierarchy

    cost_fns = (AffineCost(1e-3, 2e-4), AffineCost(4e-3, 4e-4), AffineCost(12e-3, 1e-3))
    cost_fns += (AffineCost(40e-3, 2e-3),)
    hierarchy = synthetic_hierarchy((0.65, 0.75, 0.85), cost_fns, seed=3, record_history=False)
    continue_rate = 0.7
    models = [hierarchy.models[m] for m in chain]
    models[0] = StopsAtRandom(models[0], continue_rate, seed=1)
    assert 1 / models[0].vocab_size < MIN_CONFIDENCE
    decoder = HierarchicalDecoder(models, list(draft_lengths), min_draft_confidence=MIN_CONFIDENCE)
    prompt = torch.tensor([[models[0].vocab_size - 1, 2, 5]])
    output = decoder.generate(prompt, max_new_tokens=new_tokens, temperature=1.0, seed=12345)
    stats = output.stats
    prefill_cost = sum(
        hierarchy.cost_fns[m](level.prefill_tokens) * level.prefill_passes
        for m, level in zip(chain, stats.levels)
    )
    latency = (hierarchy.clock.elapsed - prefill_cost) / stats.new_tokens
    rates = [1.0] * len(hierarchy.models)
    rates[chain[0]] = continue_rate
    costs = hierarchy.costs_table(sum(draft_lengths) + 2)
    evaluation = hierspec.evaluate(
        costs, hierarchy.acceptance, chain, draft_lengths, continue_rates=rates
    )
    assert stats.levels[0].continue_rate == pytest.approx(continue_rate, abs=0.02)
    assert stats.levels[0].early_stops > 0
    assert stats.passes_per_token == pytest.approx(evaluation.passes_per_token, rel=0.03)
    assert stats.tokens_per_token == pytest.approx(evaluation.tokens_per_token, rel=0.03)
    assert latency == pytest.approx(evaluation.latency, rel=0.03)


def _confident_models(noise_scales):
    return markov_models(8, noise_scales=noise_scales, sharpness=1.5, seed=5)


@pytest.mark.parametrize(
    ("noise_scales", "draft_lengths"),
    [([0.7], [4]), ([1.0, 0.5], [3, 3]), ([1.5, 1.0, 0.5], [2, 2, 2])],
    ids=["2-levels", "3-levels", "4-levels"],
)
def test_greedy_with_early_stopping_equals_the_target(noise_scales, draft_lengths):
    models = _confident_models(noise_scales)
    prompt = torch.tensor([[3, 1]])
    alone = HierarchicalDecoder(models[-1:], []).generate(prompt, 300, temperature=0)
    decoder = HierarchicalDecoder(list(models), draft_lengths, min_draft_confidence=0.5)
    output = decoder.generate(prompt, 300, temperature=0)
    assert torch.equal(output.sequences, alone.sequences)
    assert 0 < output.stats.levels[0].early_stops < output.stats.levels[0].batches


CONFIGS = [
    pytest.param(SamplingConfig(temperature=1.0), id="t1.0"),
    pytest.param(SamplingConfig(temperature=0.7, top_k=4, top_p=0.9), id="t0.7-top4-p0.9"),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize(
    ("noise_scales", "draft_lengths"),
    [([0.7], [4]), ([1.0, 0.5], [3, 3]), ([1.5, 1.0, 0.5], [2, 2, 2])],
    ids=["2-levels", "3-levels", "4-levels"],
)
def test_long_sequence_transitions_with_early_stopping(config, noise_scales, draft_lengths):
    models = _confident_models(noise_scales)
    decoder = HierarchicalDecoder(list(models), draft_lengths, min_draft_confidence=0.7)
    (statistic, dof, p_value), output = long_output_transition_test(
        decoder, models[-1], config, 8000
    )
    assert p_value > P_VALUE_THRESHOLD, (statistic, dof, p_value)
    bottom = output.stats.levels[0]
    assert 0.05 < bottom.continue_rate < 0.95, bottom  # the rule did fire, and not always


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(SamplingConfig(temperature=1.0), id="t1.0"),
        pytest.param(SamplingConfig(temperature=0.7, top_k=4), id="t0.7-top4"),
    ],
)
def test_first_two_tokens_with_early_stopping(config):
    vocab_size = 6
    models = markov_models(vocab_size, noise_scales=[2.0, 1.0], sharpness=1.5, seed=11)
    decoder = HierarchicalDecoder(list(models), [2, 3], min_draft_confidence=0.7)
    prompt = torch.tensor([[2, 5, 1]])
    transition = processed_probs(models[-1].log_probs, config).double()
    exact = transition[1].unsqueeze(1) * transition  # P(x1, x2)
    result = chi_square_test(first_two_token_counts(decoder, prompt, config, 3000), exact)
    assert result.p_value > P_VALUE_THRESHOLD, result


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_bad_min_draft_confidence(value):
    models = markov_models(8, noise_scales=[0.7])
    with pytest.raises(ValueError, match="min_draft_confidence must be in"):
        HierarchicalDecoder(list(models), [2], min_draft_confidence=value)
    with pytest.raises(TypeError, match="min_draft_confidence"):
        HierarchicalDecoder(list(models), [2], min_draft_confidence="0.5")


# --------------------------------------------------------------------------------------------
# The adaptive decoder learns the continue rate and the bottom acceptance


def _adaptive_profile(num_models: int) -> hierspec.Profile:
    """Cheap drafts, an expensive target whose pass grows slowly with its length."""
    costs = tuple(
        tuple((0.02 * (model + 1) if model < num_models - 1 else 1.0) * (1 + 0.05 * n)
              for n in range(40))
        for model in range(num_models)
    )  # fmt: skip
    acceptance = tuple(
        tuple(0.6 if i < j else 1.0 for j in range(num_models)) for i in range(num_models)
    )
    return hierspec.Profile(tuple(f"M{m}" for m in range(num_models)), costs, acceptance)


def test_adaptive_decoder_with_early_stopping_is_lossless_and_learns_the_rates():
    from hierspec.adaptive import AdaptiveConfig

    models = _confident_models([1.0, 0.5])
    # Costs fixed to the profile's (the Markov models' real pass times say nothing here).
    config = AdaptiveConfig(
        min_draft_confidence=0.7, replan_interval=1, prior_strength=4, learn_costs=False
    )
    decoder = HierarchicalDecoder.adaptive(list(models), _adaptive_profile(3), config)
    assert decoder.min_draft_confidence == 0.7
    prompt = torch.tensor([[3, 1]])
    alone = HierarchicalDecoder(models[-1:], []).generate(prompt, 200, temperature=0)
    greedy = decoder.generate(prompt, 200, temperature=0)
    assert torch.equal(greedy.sequences, alone.sequences)
    output = decoder.generate(torch.tensor([[0]]), max_new_tokens=6000, seed=1)
    transition = processed_probs(models[-1].log_probs, SamplingConfig()).double()
    statistic, dof, p_value = markov_transition_test(output.sequences[0].tolist(), transition)
    assert p_value > P_VALUE_THRESHOLD, (statistic, dof, p_value)
    # The decisions carry the learned continue rate of the bottom model: it moved from the
    # prior (1: the profile has none) towards the observed rate (the decoder may later leave
    # the drafts: decisions for the target alone have no bottom).
    observed = [level for level in output.stats.levels if level.stop_checks]
    assert observed, output.stats.levels
    rates = [rate for d in output.stats.decisions for rate in d.continue_rates.values()]
    assert rates and min(rates) < 0.95
    assert all(decision.bottom_acceptance for decision in output.stats.decisions[:3])


def test_adaptive_decoder_learns_the_threshold_during_the_request():
    """The profile says stopping does not pay (its measured rates at the threshold are those of
    all drafts); in this request half the bottom rows are uniform (confidence 1 / vocab) and
    their drafts fail. Running without stopping, the decoder learns what the threshold would
    have drafted and accepted, switches to it mid-request (no catch-up: the chain stays), and
    the output stays the target's."""
    from hierspec.adaptive import AdaptiveConfig
    from hierspec.planning import EarlyStoppingRates, choose_min_draft_confidence
    from hierspec.testing import AffineCost, synthetic_hierarchy

    cost_fns = (AffineCost(1e-3, 2e-4), AffineCost(40e-3, 8e-3))
    hierarchy = synthetic_hierarchy((0.8,), cost_fns, seed=5, record_history=False)
    models = [StopsAtRandom(hierarchy.models[0], 0.5, seed=2), hierarchy.models[1]]
    threshold = 0.12  # above 1 / vocab, below the synthetic drafter's rows (0.16 and up)
    assert 1 / models[0].vocab_size < threshold
    costs = ((0.02,) * 16, tuple(1.0 + 0.2 * n for n in range(16)))
    acceptance = ((1.0, 0.8), (0.0, 1.0))
    table = (EarlyStoppingRates(threshold, (0.9, 1.0), acceptance),)
    profile = hierspec.Profile(("draft", "target"), costs, acceptance, early_stopping=table)
    assert choose_min_draft_confidence(profile, 8)[0] == 0.0
    config = AdaptiveConfig(
        max_draft_length=8, learn_costs=False, prior_strength=4.0, continue_prior_strength=4.0
    )
    decoder = HierarchicalDecoder.adaptive(models, profile, config)
    assert decoder.min_draft_confidence == 0.0 and decoder.replanner.learns_threshold
    prompt = torch.tensor([[1, 2, 3]])
    output = decoder.generate(prompt, max_new_tokens=200, temperature=0)
    alone = HierarchicalDecoder(models[-1:], []).generate(prompt, 200, temperature=0)
    assert torch.equal(output.sequences, alone.sequences)
    changes = [d for d in output.stats.plan_changes if d.min_draft_confidence == threshold]
    assert changes and changes[0].previous_min_draft_confidence == 0.0
    assert changes[0].catch_up_cost == 0.0
    # Learned at the threshold: about half the rows are confident (the estimate left the
    # profile's 0.9 for it), and their drafts survive more often than all drafts did (the pair's
    # estimate from the batches run without stopping).
    rates = changes[0].continue_rates["0"], changes[0].bottom_acceptance["0->1"]
    all_drafts = decoder.replanner.estimator.estimates()[0, 1]
    assert 0.3 < rates[0] < 0.85 and rates[1] > all_drafts + 0.1, (rates, all_drafts)
    assert output.stats.levels[0].early_stops > 0


# -- the threshold from the profile ------------------------------------------------------------


def _profile_with_table(bottom: float, rate: float) -> hierspec.Profile:
    """ngram-like drafter (acceptance 0.5) and a target; early stopping measured at 0.5: the
    drafter drafts at ``rate`` of the positions and those drafts are accepted at ``bottom``."""
    from hierspec.planning import EarlyStoppingRates

    costs = ((0.5,) * 40, tuple(10.0 * (1 + 0.05 * n) for n in range(40)))
    return hierspec.Profile(
        ("draft", "target"),
        costs,
        ((1.0, 0.5), (0.0, 1.0)),
        early_stopping=(EarlyStoppingRates(0.5, (rate, 1.0), ((1.0, bottom), (0.0, 1.0))),),
    )


def test_threshold_is_chosen_by_the_planner_from_the_measured_rates() -> None:
    from hierspec.adaptive import AdaptiveConfig, Replanner
    from hierspec.planning import choose_min_draft_confidence

    # Confident drafts are much better: stopping pays.
    informative = _profile_with_table(bottom=0.9, rate=0.5)
    threshold, best = choose_min_draft_confidence(informative, max_draft_length=8)
    rates = informative.stopping_rates(0.5)
    expected = hierspec.plan(
        informative.costs_ms, informative.acceptance, max_draft_length=8, **rates
    )
    assert threshold == 0.5 and best.latency == pytest.approx(expected.latency)
    plain = hierspec.plan(informative.costs_ms, informative.acceptance, max_draft_length=8)
    assert best.latency < plain.latency
    # Confidence says nothing about survival (the bf16 copy at temperature 1): no stopping.
    uninformative = _profile_with_table(bottom=0.5, rate=0.6)
    threshold, best = choose_min_draft_confidence(uninformative, max_draft_length=8)
    assert threshold == 0.0 and best.latency == pytest.approx(
        hierspec.plan(uninformative.costs_ms, uninformative.acceptance, max_draft_length=8).latency
    )
    # No table: nothing measured, no stopping.
    bare = hierspec.Profile(informative.model_names, informative.costs_ms, informative.acceptance)
    assert choose_min_draft_confidence(bare)[0] == 0.0
    # The adaptive decoder takes the chosen threshold by default, the entry's rates as priors.
    replanner = Replanner(informative, AdaptiveConfig(max_draft_length=8))
    assert replanner.min_draft_confidence == 0.5 and replanner.early_stopping
    assert replanner.thresholds == (0.0, 0.5) and replanner.learns_threshold
    rates = replanner.stopping[0.5].plan_arguments()
    assert rates["continue_rates"][0] == pytest.approx(0.5)
    assert rates["bottom_acceptance"][0][1] == pytest.approx(0.9)
    assert replanner.initial()[2] == pytest.approx(expected.latency)
    models = markov_models(8, noise_scales=[1.0], seed=0)
    decoder = HierarchicalDecoder.adaptive(models, informative, AdaptiveConfig(max_draft_length=8))
    assert decoder.min_draft_confidence == 0.5
    fixed = Replanner(informative, AdaptiveConfig(min_draft_confidence=0.0))
    assert fixed.min_draft_confidence == 0.0 and not fixed.early_stopping
    assert fixed.thresholds == (0.0,) and not fixed.learns_threshold and not fixed.stopping


def test_early_stopping_table_round_trips_and_is_checked() -> None:
    profile = _profile_with_table(bottom=0.9, rate=0.5)
    assert hierspec.Profile.from_dict(profile.to_dict()) == profile
    data = profile.to_dict()
    data["early_stopping"][0]["continue_rates"] = [1.5, 1.0]
    with pytest.raises(ValueError, match=r"early_stopping\[0\]: continue_rates\[0\] = 1.5"):
        hierspec.Profile.from_dict(data)
    data = profile.to_dict()
    data["early_stopping"][0]["min_draft_confidence"] = 0.0
    with pytest.raises(ValueError, match=r"early_stopping\[0\].min_draft_confidence"):
        hierspec.Profile.from_dict(data)
    data = profile.to_dict()
    data["early_stopping"] = data["early_stopping"] * 2
    with pytest.raises(ValueError, match="must increase strictly"):
        hierspec.Profile.from_dict(data)
    data["early_stopping"] = [{"min_draft_confidence": 0.5}]
    with pytest.raises(ValueError, match=r"early_stopping\[0\] must be an object with keys"):
        hierspec.Profile.from_dict(data)


def test_profiler_measures_the_rates_at_each_threshold() -> None:
    """The profile's early_stopping is what early_stopping_rates computes from the models' own
    confidence and the pair's overlap on the calibration text; rates fall with the threshold."""
    from hierspec.profiler import ProfilerConfig
    from hierspec.profiler.acceptance import calibration_probs

    models = markov_models(12, noise_scales=[1.5], sharpness=3.0, seed=4)
    prompts = [torch.tensor([[1, 2, 3]]), torch.tensor([[5, 0]])]
    result = hierspec.profile(
        models,
        prompts,
        max_draft_length=2,
        repeats=1,
        progress=False,
        calibration_tokens=40,
        stop_thresholds=(0.6, 0.3),
    )
    table = result.early_stopping
    assert [entry.min_draft_confidence for entry in table] == [0.3, 0.6]
    assert table[0].continue_rates[0] >= table[1].continue_rates[0]
    # By hand for threshold 0.6: the target's calibration continuations, re-scored.
    sampling = SamplingConfig()
    drafted, accepted_mass = 0, 0.0
    positions = 0
    confidences = []
    for index, prompt in enumerate(prompts):
        sequence = (
            HierarchicalDecoder([models[-1]], [])
            .generate(prompt, max_new_tokens=40, seed=index)
            .sequences
        )
        draft_probs, confidence = calibration_probs(models[0], sequence, prompt.shape[1], sampling)
        target_probs, _ = calibration_probs(models[1], sequence, prompt.shape[1], sampling)
        overlap = torch.minimum(draft_probs, target_probs).sum(-1).double()
        mask = confidence >= 0.6
        confidences.append(confidence)
        drafted += int(mask.sum())
        accepted_mass += float(overlap[mask].sum())
        positions += confidence.numel()
    assert table[1].continue_rates[0] == pytest.approx(drafted / positions)
    assert table[1].bottom_acceptance[0][1] == pytest.approx(accepted_mass / drafted)
    # Per prompt (the empirical-Bayes input of the online continue rates' priors).
    details = result.extra["acceptance_details"]
    by_prompt = {
        threshold: [float((c >= threshold).double().mean()) for c in confidences]
        for threshold in (0.3, 0.6)
    }
    for threshold, rates in by_prompt.items():
        index = details["stop_thresholds"].index(threshold)
        assert details["continue_by_prompt"][index][0] == pytest.approx(rates)
    with pytest.raises(ValueError, match="stop_thresholds entries must be numbers in"):
        ProfilerConfig(stop_thresholds=(1.5,))
