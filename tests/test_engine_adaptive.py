"""The adaptive hierarchy in the engine: switching chains between cycles stays lossless.

Switching is forced by a replanner subclass that picks a random configuration (chain over the
candidates, the target alone included, random draft lengths and a random early-stopping
threshold of the bottom level) at every cycle or at random cycles, from its own seeded random
stream: a decision that depends only on the past, as the real replanner's does (docs/policy.md
rule 6). Then:
- greedy output equals the target alone (structural);
- the first two sampled tokens follow the target's exact law (chi-square), temperature 1 and
  temperature 0.7 with top-k / top-p;
- every transition of a long sampled output follows the target's transition matrix;
- catch-up passes are counted; the real replanner leaves a drafter that does not pay and,
  with a cheap shadow scoring its predictions while it is out of the chain (the target alone,
  or a chain of larger drafts), comes back to it;
- a request that never switches draws the static plan's tokens at the same seed.
"""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.adaptive import (
    CALIBRATION_DISCOUNT,
    CALIBRATION_PRIOR_PASSES,
    AdaptiveConfig,
    LatencyCalibration,
    PlanDecision,
    Replanner,
)
from hierspec.planning import EarlyStoppingRates, PlanEntry, RequestPlan
from hierspec.sampling import SamplingConfig, processed_probs
from hierspec.testing import (
    AffineCost,
    MarkovLevel,
    chi_square_test,
    first_two_token_counts,
    long_output_transition_test,
    markov_models,
    synthetic_hierarchy,
    tiny_llama_family,
)

P_VALUE_THRESHOLD = 1e-3
CONFIGS = [
    pytest.param(SamplingConfig(temperature=1.0), id="t1.0"),
    pytest.param(SamplingConfig(temperature=0.7, top_k=5, top_p=0.9), id="t0.7-top5-p0.9"),
]


def _profile(num_models: int) -> hierspec.Profile:
    costs = tuple((0.1 * (model + 1),) * 8 for model in range(num_models))
    acceptance = tuple(
        tuple(0.6 if i < j else 1.0 for j in range(num_models)) for i in range(num_models)
    )
    # Thresholds the forced replanner switches between (their rates do not matter here).
    early_stopping = tuple(
        EarlyStoppingRates(threshold, (0.8,) * num_models, acceptance) for threshold in (0.3, 0.6)
    )
    return hierspec.Profile(
        tuple(f"M{m}" for m in range(num_models)), costs, acceptance, early_stopping=early_stopping
    )


class ForcedReplanner(Replanner):
    """Switches to a random configuration with probability ``switch_probability`` per cycle."""

    def __init__(
        self, num_models: int, switch_probability: float, seed: int, shadow_max_cost: float = 0.5
    ) -> None:
        self.switch_probability = switch_probability
        self.seed = seed
        self.calls = 0
        self.switches = 0
        self.thresholds_used: set[float] = set()
        # The cheapest candidate shadows every chain it is not in (a fifth of the target's cost
        # or less), so the forced switches run the shadow's scoring too.
        super().__init__(
            _profile(num_models),
            AdaptiveConfig(replan_interval=1, shadow_max_cost=shadow_max_cost),
        )

    def reset(self) -> None:
        super().reset()
        self.calls += 1  # a different switching stream in every generate call
        self.random = random.Random(self.seed * 1_000_003 + self.calls)

    def decide(
        self, chain, draft_lengths, gaps, tokens_left, token, target_pass, min_draft_confidence
    ):
        switched = self.random.random() < self.switch_probability
        threshold = min_draft_confidence
        if switched:
            num_models = len(self.profile.model_names)
            count = self.random.randint(0, num_models - 1)
            drafts = sorted(self.random.sample(range(num_models - 1), count))
            new_chain = (*drafts, num_models - 1)
            new_lengths = tuple(self.random.randint(1, 3) for _ in drafts)
            new_threshold = self.random.choice(self.thresholds)
            switched = (new_chain, new_lengths, new_threshold) != (chain, draft_lengths, threshold)
            self.switches += switched
            self.thresholds_used.add(new_threshold)
            threshold = new_threshold
        return PlanDecision(
            token=token,
            target_pass=target_pass,
            previous_chain=chain,
            previous_draft_lengths=draft_lengths,
            chain=new_chain if switched else chain,
            draft_lengths=new_lengths if switched else draft_lengths,
            switched=switched,
            acceptance={},
            predicted_latency=float("nan"),
            previous_latency=float("nan"),
            catch_up_cost=0.0,
            min_draft_confidence=threshold,
            previous_min_draft_confidence=min_draft_confidence,
        )


@pytest.mark.parametrize("switch_probability", [1.0, 0.3], ids=["every-cycle", "random"])
def test_greedy_with_forced_switching_equals_the_target(switch_probability):
    models = markov_models(24, noise_scales=[2.0, 1.0, 0.5], sharpness=2.0, seed=4)
    alone = HierarchicalDecoder(models[-1:], [])
    replanner = ForcedReplanner(4, switch_probability, seed=1)
    decoder = HierarchicalDecoder.adaptive(models, replanner.profile, replanner=replanner)
    early_stops = shadow_scored = 0
    for prompt_seed in range(12):
        generator = torch.Generator().manual_seed(prompt_seed)
        prompt = torch.randint(0, 24, (1, 1 + prompt_seed % 5), generator=generator)
        expected = alone.generate(prompt, max_new_tokens=40, temperature=0).sequences
        output = decoder.generate(prompt, max_new_tokens=40, temperature=0)
        assert torch.equal(output.sequences, expected), prompt_seed
        assert len(output.stats.plan_changes) == sum(d.switched for d in output.stats.decisions)
        early_stops += sum(level.early_stops for level in output.stats.levels)
        shadow_scored += output.stats.levels[0].shadow_scored
    assert early_stops > 0  # the thresholds did stop batches
    assert shadow_scored > 20  # the cheapest model shadowed the chains without it
    assert replanner.switches > 50 and replanner.thresholds_used == {0.0, 0.3, 0.6}


def test_greedy_with_forced_switching_tiny_llamas():
    models = tiny_llama_family(3, vocab_size=32, seed=2)
    alone = HierarchicalDecoder(models[-1:], [])
    replanner = ForcedReplanner(3, 1.0, seed=2)
    decoder = HierarchicalDecoder.adaptive(models, replanner.profile, replanner=replanner)
    for prompt in ([[5, 1, 7]], [[3]], [[9, 2, 2, 8, 30, 1]]):
        prompt = torch.tensor(prompt)
        expected = alone.generate(prompt, max_new_tokens=24, temperature=0).sequences
        assert torch.equal(
            decoder.generate(prompt, max_new_tokens=24, temperature=0).sequences, expected
        )
    assert replanner.switches > 10


@pytest.mark.parametrize("config", CONFIGS)
def test_without_a_switch_the_adaptive_decoder_reproduces_the_static_plan(config):
    """Replanning consumes no randomness: a request whose replanner never switches draws the
    same tokens as the static decoder of its plan at the same seed, so a benchmark's
    adaptive-vs-static difference on such a request is timing alone."""
    models = markov_models(24, noise_scales=[2.0, 1.0, 0.5], sharpness=2.0, seed=4)
    replanner = ForcedReplanner(4, 0.0, seed=1)
    adaptive = HierarchicalDecoder.adaptive(models, replanner.profile, replanner=replanner)
    prompt = torch.tensor([[1, 2, 3]])
    for seed in range(6):
        output = adaptive.generate(
            prompt, max_new_tokens=40, seed=seed, **dataclasses.asdict(config)
        )
        assert not output.stats.plan_changes and len(output.stats.decisions) > 5
        plan = output.stats.decisions[0]
        static = HierarchicalDecoder(
            [models[m] for m in plan.chain],
            list(plan.draft_lengths),
            min_draft_confidence=plan.min_draft_confidence,
        )
        expected = static.generate(
            prompt, max_new_tokens=40, seed=seed, **dataclasses.asdict(config)
        )
        assert torch.equal(output.sequences, expected.sequences), seed


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("switch_probability", [1.0, 0.5], ids=["every-cycle", "random"])
def test_first_two_tokens_with_forced_switching(config, switch_probability):
    vocab_size = 6
    models = markov_models(vocab_size, noise_scales=[2.0, 1.0, 0.6], sharpness=1.5, seed=11)
    replanner = ForcedReplanner(4, switch_probability, seed=3)
    decoder = HierarchicalDecoder.adaptive(models, replanner.profile, replanner=replanner)
    # After token 3 the target's law keeps 7 (t=0.7, top-k/top-p) to 20 (t=1) pairs of first
    # two tokens with expected counts >= 5 at this sample size.
    prompt = torch.tensor([[2, 5, 3]])
    transition = processed_probs(models[-1].log_probs, config).double()  # [vocab, vocab]
    exact = transition[3].unsqueeze(1) * transition  # P(x1, x2)
    result = chi_square_test(first_two_token_counts(decoder, prompt, config, 2000), exact)
    assert result.p_value > P_VALUE_THRESHOLD, result
    # Most calls end within one cycle; in 5% or more (times the switching probability) the
    # configuration changed between the two tokens.
    assert replanner.switches > 100 * switch_probability


@pytest.mark.parametrize("config", CONFIGS)
def test_long_sequence_transitions_with_forced_switching(config):
    vocab_size = 8
    models = markov_models(vocab_size, noise_scales=[1.5, 1.0, 0.5], sharpness=1.5, seed=5)
    replanner = ForcedReplanner(4, 0.5, seed=4)
    decoder = HierarchicalDecoder.adaptive(models, replanner.profile, replanner=replanner)
    (statistic, dof, p_value), output = long_output_transition_test(
        decoder, models[-1], config, 5000
    )
    assert p_value > P_VALUE_THRESHOLD, (statistic, dof, p_value)
    assert len(output.stats.plan_changes) > 500


def test_a_joining_model_catches_up_in_one_counted_pass():
    models = markov_models(16, noise_scales=[1.0, 0.5], seed=6)

    class JoinOnce(ForcedReplanner):
        def decide(self, chain, draft_lengths, gaps, tokens_left, token, target_pass, **_):
            switched = chain == (2,)
            if switched:
                self.gap_seen = gaps[0]
            return PlanDecision(
                token, target_pass, chain, draft_lengths, (0, 2) if switched else chain,
                (3,) if switched else draft_lengths, switched, {}, 0.0, 0.0, 0.0,
            )  # fmt: skip

        def initial(self):
            return (2,), (), 1.0

        def initial_for_request(self, prompt_tokens, new_tokens):
            alone = PlanEntry((2,), (), 1.0, 1.0, math.nan, ("M2",))
            return RequestPlan.of(alone, [0.0] * 3, new_tokens)

    replanner = JoinOnce(3, 0.0, seed=0, shadow_max_cost=0.0)  # (a shadow has no gap)
    decoder = HierarchicalDecoder.adaptive(models, replanner.profile, replanner=replanner)
    assert decoder.chain == (2,)
    prompt = torch.tensor([[1, 2, 3, 4, 5]])
    output = decoder.generate(prompt, max_new_tokens=20, temperature=0)
    alone = HierarchicalDecoder(models[-1:], []).generate(prompt, max_new_tokens=20, temperature=0)
    assert torch.equal(output.sequences, alone.sequences)
    change = output.stats.plan_changes[0]
    assert (change.token, change.previous_chain, change.chain) == (1, (2,), (0, 2))
    drafter = output.stats.levels[0]
    # The drafter was reset at the start and joined after one committed token: the text was
    # prompt (5) + 1 token; as level 0 it keeps two pending tokens, so it catches up on 4.
    assert replanner.gap_seen == 5
    assert (drafter.catch_up_passes, drafter.catch_up_tokens) == (1, 4)
    assert drafter.prefill_passes == 0 and drafter.forward_passes > 0
    assert output.stats.levels[1].catch_up_passes == 0


def _leave_a_drafter_that_does_not_pay(calibrate: bool, calibrate_fallback: bool = False):
    # The profile promises acceptance 0.9, the drafter's real rate is 0.05: the static plan uses
    # it, the adaptive decoder learns the rate and falls back to the target alone.
    hierarchy = synthetic_hierarchy([0.05], [AffineCost(0.3), AffineCost(1.0)], seed=2)
    costs = [[1e3 * cost for cost in row] for row in hierarchy.costs_table(16)]  # ms
    profile = hierspec.Profile(("draft", "target"), tuple(map(tuple, costs)), ((1, 0.9), (0, 1)))
    config = AdaptiveConfig(
        prior_strength=8.0,
        replan_interval=2,
        min_draft_confidence=0.0,
        calibrate=calibrate,
        calibrate_fallback=calibrate_fallback,
    )
    decoder = HierarchicalDecoder.adaptive(
        hierarchy.models, profile, config, timer=lambda: hierarchy.clock.elapsed
    )
    assert decoder.chain == (0, 1)
    output = decoder.generate(torch.tensor([[1, 2]]), max_new_tokens=120, seed=0)
    changes = output.stats.plan_changes
    assert changes and changes[-1].chain == (1,) and changes[-1].draft_lengths == ()
    assert changes[-1].token < 60
    return changes[-1], output.stats.levels[0].acceptance_rate


def test_replanner_leaves_a_drafter_that_does_not_pay():
    # Without calibration: it shortened the drafts as the estimate fell, then left the drafter
    # within a few cycles, on an estimate well below the profile's 0.9.
    uncalibrated, rate = _leave_a_drafter_that_does_not_pay(calibrate=False)
    assert uncalibrated.acceptance["0->1"] < 0.5
    assert uncalibrated.previous_calibration > 1.0  # learned, not used
    assert rate < 0.2  # the learned rate is what the verifications showed
    # Calibrated, the cycles that took longer than the (too optimistic) estimates predicted
    # also count against drafting: it leaves no later, on a higher estimate; so with the
    # comparison with the target alone at measured speed (calibrate_fallback).
    for settings in ({"calibrate": True}, {"calibrate": False, "calibrate_fallback": True}):
        calibrated, _ = _leave_a_drafter_that_does_not_pay(**settings)
        assert calibrated.previous_calibration > 1.0
        assert calibrated.token <= uncalibrated.token
        assert calibrated.acceptance["0->1"] >= uncalibrated.acceptance["0->1"]


def test_adaptive_arguments_are_checked():
    models = markov_models(8, noise_scales=[1.0], seed=0)
    with pytest.raises(ValueError, match="models has 2 entries but the profile has 3"):
        HierarchicalDecoder.adaptive(models, _profile(3))
    with pytest.raises(TypeError, match="profile must be a hierspec.Profile"):
        HierarchicalDecoder.adaptive(models, {"models": []})


@pytest.mark.parametrize(
    ("learn_costs", "pool_costs"), [(True, False), (False, False), (True, True)]
)
def test_adaptive_decoder_learns_that_the_target_runs_slower(learn_costs, pool_costs):
    # The profile was measured when the target was 4x faster than it runs now: under the
    # profile the target alone is best; at the real cost drafting pays. With the passes timed on
    # the synthetic models' virtual clock, the decoder learns the factor and starts drafting.
    # Pooled (the default), the drafter it has not timed is priced at the target's factor (a
    # slowdown the models share), so drafting never looks better than under the profile.
    hierarchy = synthetic_hierarchy([0.6], [AffineCost(0.2), AffineCost(1.0)], seed=3)
    real = [[1e3 * cost for cost in row] for row in hierarchy.costs_table(16)]
    profiled = [real[0], [cost / 4 for cost in real[1]]]
    profile = hierspec.Profile(("draft", "target"), tuple(map(tuple, profiled)), ((1, 0.6), (0, 1)))
    config = AdaptiveConfig(
        min_draft_confidence=0.0, learn_costs=learn_costs, pool_costs=pool_costs
    )
    decoder = HierarchicalDecoder.adaptive(
        hierarchy.models, profile, config, timer=lambda: hierarchy.clock.elapsed
    )
    assert decoder.chain == (1,)
    prompt = torch.tensor([[1, 2]])
    output = decoder.generate(prompt, max_new_tokens=60, temperature=0)
    alone = HierarchicalDecoder(hierarchy.models[-1:], []).generate(prompt, 60, temperature=0)
    assert torch.equal(output.sequences, alone.sequences)
    # The stats are on the virtual clock too: 60 target passes of 1 s each at most.
    assert output.stats.levels[1].time_s == pytest.approx(
        output.stats.levels[1].forward_passes * 1.0
    )
    changes = output.stats.plan_changes
    if not learn_costs:
        assert not changes
        return
    if pool_costs:
        assert not changes
        assert output.stats.decisions[-1].cost_scales["1"] == pytest.approx(4.0, rel=0.02)
        scales = decoder.replanner.cost_scales()
        assert scales[0] == pytest.approx(scales[1], rel=0.01)
        return
    assert changes and changes[0].chain == (0, 1)
    assert changes[0].cost_scales["1"] > 2.0  # on its way from the prior's 1 to 4
    assert output.stats.decisions[-1].cost_scales["1"] == pytest.approx(4.0, rel=0.02)
    assert output.stats.decisions[-1].cost_scales["0"] == pytest.approx(1.0, rel=1e-9)


def test_each_cycle_calibrates_the_configuration_it_ran_in():
    # The decoder times every target cycle between two decisions and tells the replanner its
    # time and tokens; the replanner charges them to the configuration in effect.
    class Recording(Replanner):
        def reset(self) -> None:
            super().reset()
            self.cycles: list[tuple[tuple[int, ...], int, float]] = []
            self.latencies: list[float] = []

        def observe_cycle(self, tokens: int, seconds: float) -> None:
            assert self._in_effect is not None
            self.cycles.append((self._in_effect[0][0], tokens, seconds))
            self.latencies.append(self._in_effect[1])
            super().observe_cycle(tokens, seconds)

    hierarchy = synthetic_hierarchy(
        [0.3, 0.9], [AffineCost(0.05), AffineCost(0.3), AffineCost(1.0)], seed=5
    )
    costs = [[1e3 * cost for cost in row] for row in hierarchy.costs_table(16)]  # ms
    acceptance = ((1.0, 0.9, 0.9), (0.0, 1.0, 0.9), (0.0, 0.0, 1.0))  # the bottom's too high
    profile = hierspec.Profile(("a", "b", "target"), tuple(map(tuple, costs)), acceptance)
    config = AdaptiveConfig(min_draft_confidence=0.0, learn_costs=False, max_replan_interval=1)
    replanner = Recording(profile, config)  # (a decision after every cycle)
    decoder = HierarchicalDecoder.adaptive(
        hierarchy.models, profile, replanner=replanner, timer=lambda: hierarchy.clock.elapsed
    )
    output = decoder.generate(torch.tensor([[1, 2]]), max_new_tokens=80, seed=1)
    stats = output.stats
    assert stats.plan_changes  # the bottom's rate is 0.3, not 0.9: it re-plans
    # Every cycle but the last (which ends the call) is observed, in the chain it ran in.
    assert len(replanner.cycles) == stats.target_passes - 1
    chains = [stats.initial_plan.chain] + [d.chain for d in stats.decisions]
    assert [chain for chain, _, _ in replanner.cycles] == chains[: len(replanner.cycles)]
    assert all(tokens >= 1 for _, tokens, _ in replanner.cycles)
    assert sum(tokens for _, tokens, _ in replanner.cycles) < stats.new_tokens
    # On the virtual clock only passes take time: the cycles' time is the passes' (catch-up
    # passes run at the decision, outside the cycles), less the last cycle's.
    observed = sum(seconds for _, _, seconds in replanner.cycles)
    passes = sum(level.time_s for level in stats.levels)
    assert 0.0 < passes - observed <= 20 * 1.0 + 1e-9
    # The ratios are those of the cycles' times against the latency each cycle ran under
    # (the request's plan, then each decision's predicted latency).
    assert replanner.latencies[0] == stats.initial_plan.latency
    assert (
        replanner.latencies[1:]
        == [d.predicted_latency for d in stats.decisions][: len(replanner.cycles) - 1]
    )
    replay = LatencyCalibration(CALIBRATION_PRIOR_PASSES * costs[-1][0], CALIBRATION_DISCOUNT)
    for (chain, tokens, seconds), latency in zip(replanner.cycles, replanner.latencies):
        replay.observe((chain, 0.0), 1e3 * seconds, tokens * latency)
    for chain in set(chains):
        key = (chain, 0.0)
        assert replanner.calibration.ratio(key) == pytest.approx(replay.ratio(key), rel=1e-12)
    last = stats.decisions[-1]
    assert last.previous_calibration != 1.0  # the decisions saw the ratios


class _Phased:
    """A drafter whose rows are ``early``'s before text position ``switch_at`` and ``late``'s
    from there on (text that turns copyable halfway through a request). Costs are
    ``early``'s."""

    def __init__(self, early, late, switch_at: int) -> None:
        self.early, self.late, self.switch_at = early, late, switch_at

    vocab_size = property(lambda self: self.early.vocab_size)
    device = property(lambda self: self.early.device)
    length = property(lambda self: self.early.length)

    def reset(self) -> None:
        self.early.reset()
        self.late.reset()

    def append(self, token_ids: torch.Tensor) -> torch.Tensor:
        start = self.early.length
        early, late = self.early.append(token_ids), self.late.append(token_ids)
        positions = start + torch.arange(token_ids.shape[1])
        return torch.where((positions >= self.switch_at)[None, :, None], late, early)

    def truncate(self, length: int) -> None:
        self.early.truncate(length)
        self.late.truncate(length)


@pytest.mark.parametrize("shadow_max_cost", [0.02, 0.0], ids=["shadow", "no-shadow"])
def test_a_shadow_brings_the_decoder_back_to_drafting(shadow_max_cost):
    # The drafter costs 1% of the target and is useless for the first 60 tokens (its greedy
    # drafts are never the target's), then predicts the target exactly. Verifying a draft costs
    # the target 10% more than a pass of 1 token, so drafting at acceptance 0 is ~10% slower
    # than the target alone: the decoder falls back. With a shadow (the default) the drafter
    # keeps scoring its predictions against the tokens the target commits, and the decoder
    # drafts again once they match; without one the target alone is where it stays.
    hierarchy = synthetic_hierarchy([0.05], [AffineCost(0.01), AffineCost(1.0, 0.1)], seed=2)
    target = hierarchy.models[1]
    prompt = torch.tensor([[1, 2]])
    drafter = _Phased(hierarchy.models[0], MarkovLevel(target.log_probs), switch_at=2 + 60)
    costs = [[1e3 * cost for cost in row] for row in hierarchy.costs_table(16)]  # ms
    profile = hierspec.Profile(("draft", "target"), tuple(map(tuple, costs)), ((1, 0.9), (0, 1)))
    config = AdaptiveConfig(
        min_draft_confidence=0.0, learn_costs=False, shadow_max_cost=shadow_max_cost
    )
    decoder = HierarchicalDecoder.adaptive(
        (drafter, target), profile, config, timer=lambda: hierarchy.clock.elapsed
    )
    assert decoder.replanner.shadow_model == (0 if shadow_max_cost else None)
    output = decoder.generate(prompt, max_new_tokens=160, temperature=0)
    alone = HierarchicalDecoder([target], []).generate(prompt, 160, temperature=0)
    assert torch.equal(output.sequences, alone.sequences)
    changes = output.stats.plan_changes
    fallback = next(change for change in changes if change.chain == (1,))
    assert fallback.token < 60
    stats = output.stats.levels[0]
    if not shadow_max_cost:
        assert changes[-1] is fallback and stats.shadow_passes == 0
        return
    # It came back after the drafter turned good, on the shadow's evidence alone.
    back = next(change for change in changes if change.previous_chain == (1,))
    assert back.chain[0] == 0 and 60 < back.token < 80, changes
    assert back.acceptance["0->1"] > 0.5
    assert changes[-1].chain[0] == 0  # and drafted to the end
    assert back.catch_up_cost == 0.0  # the shadow kept up with the committed text
    # One scored token per target pass run alone; rejected up to new token 60, accepted from
    # new token 61 on (the first the late rows predict: the row at text position 62).
    alone_passes = stats.shadow_scored
    assert alone_passes == back.token - fallback.token
    assert stats.shadow_accepted == back.token - 61
    assert stats.shadow_acceptance_rate == stats.shadow_accepted / alone_passes
    assert stats.shadow_time_s == pytest.approx(0.01 * stats.shadow_passes)
    # The decisions while the target ran alone report the shadow's estimate.
    alone_decisions = [d for d in output.stats.decisions if d.previous_chain == (1,)]
    assert all("0->1" in d.acceptance for d in alone_decisions)
    assert alone_decisions[0].acceptance["0->1"] < 0.2


@pytest.mark.parametrize("shadow_max_cost", [0.02, 0.0], ids=["shadow", "no-shadow"])
def test_a_shadow_brings_the_cheap_drafter_back_into_a_chain_without_it(shadow_max_cost):
    # The cheap drafter (1.5% of the target) is useless for the first 80 tokens, then predicts
    # the target exactly; a medium drafter (20%, and 25% more per extra token verified) is
    # good throughout. The decoder leaves the cheap drafter for `medium -> target`, a chain it
    # is not in. With a shadow it keeps scoring the cheap drafter's predictions against the
    # target's rows at the committed positions and takes it back once they match; without one
    # that chain is where it stays.
    hierarchy = synthetic_hierarchy(
        [0.05, 0.9], [AffineCost(0.015), AffineCost(0.2, 0.05), AffineCost(1.0, 0.1)], seed=3
    )
    target = hierarchy.models[2]
    prompt = torch.tensor([[1, 2]])
    cheap = _Phased(hierarchy.models[0], MarkovLevel(target.log_probs), switch_at=2 + 80)
    costs = [[1e3 * cost for cost in row] for row in hierarchy.costs_table(33)]  # ms
    acceptance = ((1, 0.9, 0.9), (0, 1, 0.9), (0, 0, 1))
    profile = hierspec.Profile(("cheap", "medium", "target"), tuple(map(tuple, costs)), acceptance)
    config = AdaptiveConfig(
        min_draft_confidence=0.0, learn_costs=False, shadow_max_cost=shadow_max_cost
    )
    decoder = HierarchicalDecoder.adaptive(
        (cheap, hierarchy.models[1], target), profile, config, timer=lambda: hierarchy.clock.elapsed
    )
    output = decoder.generate(prompt, max_new_tokens=300, temperature=0)
    alone = HierarchicalDecoder([target], []).generate(prompt, 300, temperature=0)
    assert torch.equal(output.sequences, alone.sequences)
    changes = output.stats.plan_changes
    left = next(change for change in changes if 0 not in change.chain)
    assert left.chain == (1, 2) and left.token < 80, changes
    stats = output.stats.levels[0]
    if not shadow_max_cost:
        assert changes[-1] is left and stats.shadow_passes == 0
        return
    back = next(change for change in changes if change.token > left.token and 0 in change.chain)
    assert back.token > 80, changes  # decisions come every 4 target passes (~50 tokens)
    assert back.acceptance["0->2"] > 0.5 and back.catch_up_cost == 0.0
    assert 0 in changes[-1].chain  # and drafted with it to the end
    # It scored every token committed while out of the chain: rejected before new token 81,
    # accepted from there on.
    assert stats.shadow_scored == back.token - left.token
    assert 0 < stats.shadow_accepted <= back.token - 81
    assert 0 < stats.shadow_passes <= stats.shadow_scored
