"""Adaptive hierarchy benchmark (issue 9): adaptive vs static plan, hindsight best, prompt lookup.

The adaptive decoder against the static plan of the same profile, the best static configuration
in hindsight and transformers' prompt lookup decoding.

Prompts, by category: the bundled family's held-out prompts (``hierspec.family.corpus``: never
used for profiling or distillation), ``--prompts-per-category`` of each kind of task they carry
(summarize, continue, explain, questions: prose from the Python docs; code_edit, code_explain,
code_docstring, code_rename: standard-library functions; all grounded in an excerpt the answer
can copy from), and the category ``ungrounded``: chat questions with nothing to copy from
(:data:`UNGROUNDED_PROMPTS`, the README's main job first). Chat template of the target.

For each sampling mode (greedy and temperature 1, no top-k / top-p, seeded), each prompt,
``--tokens`` new tokens (EOS ignored), one torch thread, all in one run, configurations
interleaved per prompt in a rotating order after one warm-up run each:

    target          the target alone (hierspec's engine, plain decoding)
    static          ``HierarchicalDecoder.from_plan``: the profile's plan
    adaptive        ``HierarchicalDecoder.adaptive`` with the default ``AdaptiveConfig``: starts
                    from the same plan, learns acceptance while generating, re-plans
    variants        the same with other settings, each compared with the default in the
                    same run: ``--adaptive-variants`` (a fixed ``min_draft_confidence``),
                    ``--change-rate-variants`` (``change_rate``) and ``--config-variants``
                    (any ``AdaptiveConfig`` keywords, e.g. ``calibrate=True``)
    fixed           static configurations for the hindsight best (with the two above that are
                    static): the static plan, ngram -> target at T in {2, 8, 4}, then the single
                    drafts at their planned best T and the plan's alternatives by predicted
                    latency (those the profile predicts faster than the target alone);
                    deduplicated, at most ``--hindsight-size`` besides the target alone
    prompt lookup   transformers' ``generate(prompt_lookup_num_tokens=k)`` on the same packed
                    target, k in ``--prompt-lookup-grid``; sampled with ``do_sample=True``,
                    ``temperature=1``, ``top_k=0``, ``top_p=1`` (transformers would otherwise
                    fill in its global default ``top_k=50``): hierspec's untruncated sampling

Measured: decode time per new token after the prompt prefill (hierspec: ``stats.decode_time_s``;
transformers reports no prefill, so its wall time minus a prefill of the target on the same prompt
timed apart as transformers runs it). Greedy: every hierspec output must equal the target alone's
token for token (recorded; exit status 1 otherwise).

Ratios (speed, decode time; > 1: adaptive is faster) are means over runs of per-run
``baseline_ms / adaptive_ms`` (a run: one prompt, or with ``--seeds N`` one prompt and seed in
sampled modes, every configuration on that seed), each with its standard error in the summary's
``standard_errors``; see ``definitions`` in the JSON for each summary entry. With ``--seeds``
>= 2 in a sampled mode the hindsight best is also chosen on each prompt's other seeds and timed
on this one (``vs_hindsight_best_cross_seed``): at temperature 1 each configuration decodes its
own text, and the fastest of several in one run is partly the luckiest text.

Usage:
    OMP_NUM_THREADS=1 python bench/adaptive.py           # the full run (~1 hour, 2-core CPU)
    OMP_NUM_THREADS=1 python bench/adaptive.py --quick   # 2 prompts per category, 32 tokens,
                                                         # greedy only, a cheap profile
Writes bench/results/adaptive-cpu.json (``summary`` first) and bench/results/adaptive-cpu.png.
"""

from __future__ import annotations

import argparse
import ast
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
    add_prompt_arguments,
    add_prompt_lookup_grid,
    compare_greedy,
    format_table,
    hf_generate,
    hf_prefill_seconds,
    planned_profile,
    single_draft_length,
    standard_error,
    start_family_benchmark,
)

import hierspec
from hierspec import HierarchicalDecoder, SamplingConfig
from hierspec.adaptive import AdaptiveConfig, PlanDecision, Replanner, predicted_latency_of_run

README_PROMPT = "Explain what a Python list comprehension is, with one short example."
# Chat questions with nothing in the prompt to copy from (the n-gram level's worst case).
UNGROUNDED_PROMPTS: tuple[str, ...] = (
    README_PROMPT,
    "Why is the sky blue? Answer in a short paragraph.",
    "Give three tips for writing clear emails at work.",
    "What is the difference between a process and a thread?",
    "Write a short poem about autumn leaves.",
    "How should I prepare for my first job interview?",
)
UNGROUNDED = "ungrounded"
HINDSIGHT = "hindsight best"  # per prompt, the fastest static hierspec configuration
HELDOUT_POOL = 32  # every prompt of the held-out split
# Estimating the full run from the quick one (greedy only): a sampled run of a speculative
# configuration is slower (bench/results/e2e-cpu.json: the planned n-gram chain 28 -> 48
# ms/token, the target alone about the same).
SAMPLED_SLOWDOWN = 1.5


@dataclass(frozen=True)
class Configuration:
    """One way of generating. ``chain`` indexes the family (``(target,)`` for prompt lookup)."""

    name: str
    kind: str  # target | static | adaptive | fixed | prompt-lookup
    chain: tuple[int, ...] = ()
    draft_lengths: tuple[int, ...] = ()
    predicted_ms: float | None = None  # profile's expected decode latency (static ones)
    prompt_lookup_num_tokens: int | None = None
    adaptive_config: AdaptiveConfig | None = None  # adaptive ones

    @property
    def is_static(self) -> bool:
        """A fixed chain of hierspec: a candidate for the hindsight best."""
        return self.kind in ("target", "static", "fixed")


@dataclass(frozen=True)
class Run:
    """One generation of one configuration on one prompt."""

    decode_s: float
    wall_s: float
    new_tokens: int
    identical: bool | None = None  # greedy: equals the target alone's output
    first_mismatch: int | None = None
    predicted_decode_s: float | None = None  # static: profile; adaptive: its decisions
    # Adaptive: its decisions' latencies times their calibration ratios.
    predicted_calibrated_decode_s: float | None = None
    decisions: tuple[PlanDecision, ...] = ()

    @property
    def decode_ms(self) -> float:
        return 1e3 * self.decode_s / self.new_tokens


def select_prompts(tokenizer, per_category: int, ungrounded: int) -> list[dict[str, Any]]:
    """``{category, kind, source, name, message, input_ids}`` per prompt: the first
    ``per_category`` held-out prompts of each kind (in the corpus's order), then ``ungrounded``
    of :data:`UNGROUNDED_PROMPTS`."""
    from hierspec.family import corpus
    from hierspec.prompts import chat_input_ids

    chosen: dict[str, list[Any]] = {}
    for prompt in corpus.heldout_prompts(HELDOUT_POOL):
        group = chosen.setdefault(prompt.kind, [])
        if len(group) < per_category:
            group.append(prompt)
    prompts = [
        {"category": kind, "kind": p.kind, "source": p.source, "name": p.name, "message": p.message}
        for kind, group in chosen.items()
        for p in group
    ]
    prompts += [
        {"category": UNGROUNDED, "kind": UNGROUNDED, "source": None, "name": None, "message": m}
        for m in UNGROUNDED_PROMPTS[:ungrounded]
    ]
    for prompt in prompts:
        prompt["input_ids"] = chat_input_ids(tokenizer, prompt["message"])
    return prompts


def configurations(profile, plan, args) -> list[Configuration]:
    """target, static, adaptive, the fixed set for the hindsight best, prompt lookup."""
    names = profile.model_names
    target = len(names) - 1

    def predicted(chain, draft_lengths) -> float:
        return hierspec.evaluate(
            profile.costs_ms, profile.acceptance, list(chain), list(draft_lengths)
        ).latency

    def describe(chain, draft_lengths) -> str:
        sizes = ",".join(map(str, draft_lengths))
        return " -> ".join(names[index] for index in chain) + (f" T={sizes}" if sizes else "")

    static_key = (tuple(plan.chain), tuple(plan.draft_lengths))
    result = [
        Configuration("target alone", "target", (target,), (), predicted((target,), ())),
        Configuration(
            f"static: {describe(*static_key)}", "static", *static_key, predicted(*static_key)
        ),
        Configuration("adaptive", "adaptive", *static_key, adaptive_config=AdaptiveConfig()),
    ]
    variants = [
        *({"min_draft_confidence": confidence} for confidence in args.adaptive_variants),
        *({"change_rate": rate} for rate in args.change_rate_variants),
        *args.config_variants,
    ]
    for settings in variants:
        name = "adaptive " + ",".join(
            f"{key}={value:g}" if isinstance(value, float) else f"{key}={value!r}"
            for key, value in settings.items()
        )
        config = AdaptiveConfig(**settings)
        result.append(Configuration(name, "adaptive", *static_key, adaptive_config=config))
    # The fixed set: n-gram at a short / long / middle T first (acceptance moves most for the
    # n-gram level), then the rest by predicted latency.
    ngram = names.index("ngram") if "ngram" in names else None
    first = [((ngram, target), (size,)) for size in (2, 8, 4)] if ngram is not None else []
    rest = [
        ((draft, target), (single_draft_length(profile, draft, args.max_draft_length)[0],))
        for draft in range(target)
    ] + [(tuple(entry.chain), tuple(entry.draft_lengths)) for entry in plan.alternatives]
    # Of the rest, none the profile predicts slower than the target alone (the neural singles).
    target_ms = predicted((target,), ())
    rest = sorted((key for key in rest if predicted(*key) < target_ms), key=lambda k: predicted(*k))
    seen = {static_key, ((target,), ())}
    for key in first + rest:
        if len(seen) - 1 >= args.hindsight_size:
            break
        if key in seen:
            continue
        seen.add(key)
        result.append(Configuration(f"fixed: {describe(*key)}", "fixed", *key, predicted(*key)))
    result += [
        Configuration(
            f"prompt lookup k={k}", "prompt-lookup", (target,), (), prompt_lookup_num_tokens=k
        )
        for k in args.prompt_lookup_grid
    ]
    return result


class Runner:
    """Runs configurations on the family's models for one sampling mode."""

    def __init__(self, family, profile, plan, sampling: SamplingConfig) -> None:
        self.family = family
        self.sampling = sampling
        self.pad_token_id = family.tokenizer.pad_token_id or 0
        self.profile = profile
        self.plan = plan
        self._decoders: dict[str, HierarchicalDecoder] = {}

    def decoder(self, configuration: Configuration) -> HierarchicalDecoder:
        if configuration.name not in self._decoders:
            models = list(self.family.models)
            if configuration.kind == "adaptive":
                decoder = HierarchicalDecoder.adaptive(
                    models, self.profile, config=configuration.adaptive_config
                )
            elif configuration.kind == "static":
                decoder = HierarchicalDecoder.from_plan(models, self.plan)
            else:
                decoder = HierarchicalDecoder(
                    [models[index] for index in configuration.chain],
                    list(configuration.draft_lengths),
                )
            self._decoders[configuration.name] = decoder
        return self._decoders[configuration.name]

    def run(
        self,
        configuration: Configuration,
        input_ids: torch.Tensor,  # [1, P] int64
        tokens: int,
        seed: int,
        target_prefill_s: float = 0.0,
    ) -> tuple[Run, torch.Tensor]:
        """One generation; ``target_prefill_s``: the prefill subtracted from transformers'
        wall time."""
        if configuration.kind == "prompt-lookup":
            started = time.perf_counter()
            sequences = hf_generate(
                self.family.models[-1],
                input_ids,
                self.sampling,
                tokens,
                seed,
                self.pad_token_id,
                prompt_lookup_num_tokens=configuration.prompt_lookup_num_tokens,
            )
            wall = time.perf_counter() - started
            new_tokens = sequences.shape[1] - input_ids.shape[1]
            return Run(wall - target_prefill_s, wall, new_tokens), sequences
        decoder = self.decoder(configuration)
        output = decoder.generate(
            input_ids,
            max_new_tokens=tokens,
            temperature=self.sampling.temperature,
            top_k=self.sampling.top_k,
            top_p=self.sampling.top_p,
            seed=seed,
            eos_token_id=None,
        )
        stats = output.stats
        if configuration.kind == "adaptive":
            assert stats.initial_plan is not None
            initial_ms = stats.initial_plan.latency
            predicted_ms = adaptive_prediction_ms(stats.decisions, initial_ms, stats.new_tokens)
            calibrated_ms = adaptive_prediction_ms(
                stats.decisions, initial_ms, stats.new_tokens, calibrated=True
            )
        else:
            assert configuration.predicted_ms is not None
            predicted_ms = calibrated_ms = configuration.predicted_ms * stats.new_tokens
        run = Run(
            stats.decode_time_s,
            stats.wall_time_s,
            stats.new_tokens,
            predicted_decode_s=predicted_ms / 1e3,
            predicted_calibrated_decode_s=calibrated_ms / 1e3,
            decisions=stats.decisions,
        )
        return run, output.sequences


def adaptive_prediction_ms(
    decisions: tuple[PlanDecision, ...], initial_ms: float, new_tokens: int, calibrated=False
) -> float:
    """Predicted decode time (ms) of an adaptive run
    (:func:`hierspec.adaptive.predicted_latency_of_run` times the tokens)."""
    return predicted_latency_of_run(decisions, initial_ms, new_tokens, calibrated) * new_tokens


# --------------------------------------------------------------------------------------------
# One sampling mode


def run_mode(family, sampling: SamplingConfig, args, prompts, log) -> dict:
    label = "greedy" if sampling.is_greedy else f"temperature {sampling.temperature:g}"
    profile, profile_path, plan = planned_profile(
        family,
        sampling,
        args.quick,
        args.max_draft_length,
        1,
        args.profile_prompts,
        not args.no_progress,
        log,
        label,
    )
    runner = Runner(family, profile, plan, sampling)
    configs = configurations(profile, plan, args)
    log(f"[{label}] plan {plan.best.describe()}; configurations: {[c.name for c in configs]}")
    for configuration in configs:  # warm-up
        runner.run(configuration, prompts[0]["input_ids"][:, :64], 4, seed=0)
    target = configs[0]
    records = []
    started = time.perf_counter()
    seeds = 1 if sampling.is_greedy else args.seeds  # greedy output does not depend on it
    runs_total = len(prompts) * seeds
    for index, (prompt, repeat) in enumerate(
        (prompt, repeat) for prompt in prompts for repeat in range(seeds)
    ):
        prompt_index = index // seeds
        input_ids = prompt["input_ids"]
        seed = 1000 + prompt_index + 100_000 * repeat
        target_prefill_s = hf_prefill_seconds(family.models[-1], input_ids)
        runs: dict[str, Run] = {}
        outputs: dict[str, torch.Tensor] = {}
        order = configs[index % len(configs) :] + configs[: index % len(configs)]
        if sampling.is_greedy:  # the reference first
            order = [target] + [c for c in order if c is not target]
        for configuration in order:
            run, outputs[configuration.name] = runner.run(
                configuration, input_ids, args.tokens, seed, target_prefill_s
            )
            if sampling.is_greedy:
                identical, mismatch = compare_greedy(
                    outputs[configuration.name], outputs[target.name], input_ids.shape[1]
                )
                run = dataclasses.replace(run, identical=identical, first_mismatch=mismatch)
            runs[configuration.name] = run
        records.append(
            {"prompt": prompt_index, "seed": seed, "category": prompt["category"], "runs": runs}
        )
        elapsed = time.perf_counter() - started
        adaptive = runs["adaptive"]
        log(
            f"[{label}] run {index + 1}/{runs_total} (prompt {prompt_index + 1}, seed {seed}, "
            f"{prompt['category']}): target "
            f"{runs[target.name].decode_ms:.1f}, static {runs[configs[1].name].decode_ms:.1f}, "
            f"adaptive {adaptive.decode_ms:.1f} ms/token "
            f"({sum(d.switched for d in adaptive.decisions)} switches); "
            f"{elapsed / (index + 1):.0f} s per run"
        )
    return summarize_mode(label, sampling, profile, profile_path, plan, configs, prompts, records)


def summarize_mode(label, sampling, profile, profile_path, plan, configs, prompts, records):
    names = profile.model_names
    target, static = configs[0], configs[1]
    static_names = [c.name for c in configs if c.is_static]
    lookup_names = [c.name for c in configs if c.kind == "prompt-lookup"]
    categories = list(dict.fromkeys(record["category"] for record in records))

    def ms(record, name) -> float:
        """Decode ms/token of configuration ``name`` on a prompt (:data:`HINDSIGHT`: the
        fastest static hierspec configuration)."""
        if name == HINDSIGHT:
            return min(ms(record, static_name) for static_name in static_names)
        return record["runs"][name].decode_ms

    def best_lookup(group) -> str | None:
        """The grid's k with the smallest total decode time over ``group`` (in hindsight)."""
        if not lookup_names or not group:
            return None
        return min(lookup_names, key=lambda name: sum(r["runs"][name].decode_s for r in group))

    def ratio(group, baseline: str | None, name: str = "adaptive") -> float | None:
        """Mean over ``group`` of the speed ratio ``baseline ms / name ms``."""
        if not group or baseline is None:
            return None
        return statistics.fmean(ms(r, baseline) / ms(r, name) for r in group)

    def ratio_error(group, baseline: str | None, name: str = "adaptive") -> float | None:
        """Standard error of :func:`ratio` (sample standard deviation of the per-run ratios
        over the square root of their number; runs taken as independent)."""
        if baseline is None:
            return None
        return standard_error([ms(r, baseline) / ms(r, name) for r in group])

    def prediction_error(group, name, field="predicted_decode_s") -> float:
        """Signed relative error of the predicted decode time, summed over ``group``."""
        measured = sum(r["runs"][name].decode_s for r in group)
        predicted = sum(getattr(r["runs"][name], field) for r in group)
        return (measured - predicted) / predicted

    per_category = []
    for category in categories + ["all"]:
        group = [r for r in records if category in ("all", r["category"])]
        lookup = best_lookup(group)
        row: dict[str, Any] = {
            "category": category,
            "prompts": len({r["prompt"] for r in group}),
            "runs": len(group),
        }
        row["decode_ms_per_token"] = {
            name: {
                "median": statistics.median(ms(r, name) for r in group),
                "mean": statistics.fmean(ms(r, name) for r in group),
            }
            for name in [c.name for c in configs] + [HINDSIGHT]
        }
        row["prompt_lookup_best"] = lookup
        row["adaptive_vs_static"] = ratio(group, static.name)
        row["adaptive_vs_static_se"] = ratio_error(group, static.name)
        row["adaptive_vs_target"] = ratio(group, target.name)
        row["static_vs_target"] = ratio(group, target.name, static.name)
        row["adaptive_vs_hindsight_best"] = ratio(group, HINDSIGHT)
        row["adaptive_vs_prompt_lookup"] = ratio(group, lookup)
        row["static_vs_prompt_lookup"] = ratio(group, lookup, static.name)
        row["prediction_error_static"] = prediction_error(group, static.name)
        row["prediction_error_adaptive"] = prediction_error(group, "adaptive")
        row["prediction_error_adaptive_calibrated"] = prediction_error(
            group, "adaptive", "predicted_calibrated_decode_s"
        )
        row["hindsight_best_counts"] = {
            name: sum(min(static_names, key=lambda n: ms(r, n)) == name for r in group)
            for name in static_names
        }
        row["adaptive_variants"] = {
            c.name: {
                "vs_static": ratio(group, static.name, c.name),
                "vs_adaptive": ratio(group, "adaptive", c.name),
                "vs_hindsight_best": ratio(group, HINDSIGHT, c.name),
                "vs_prompt_lookup": ratio(group, lookup, c.name),
                "prediction_error": prediction_error(group, c.name),
            }
            for c in configs
            if c.kind == "adaptive" and c.name != "adaptive"
        }
        row["plan_changes_per_prompt"] = statistics.fmean(
            sum(d.switched for d in r["runs"]["adaptive"].decisions) for r in group
        )
        # Of those, the changes of the early-stopping threshold (the chain may change too).
        row["threshold_changes_per_prompt"] = statistics.fmean(
            sum(
                d.switched and d.min_draft_confidence != d.previous_min_draft_confidence
                for d in r["runs"]["adaptive"].decisions
            )
            for r in group
        )
        if sampling.is_greedy:
            row["greedy_identical_to_target"] = {
                c.name: sum(bool(r["runs"][c.name].identical) for r in group) for c in configs
            }
        per_category.append(row)
    by_category = {row["category"]: row for row in per_category}
    own = [row for row in per_category if row["category"] != "all"]

    def worst(key: str) -> float:
        return min(row[key] for row in own)

    def worst_error(key: str) -> float:
        return max((row[key] for row in own), key=abs)

    heldout = [r for r in records if r["category"] != UNGROUNDED]
    ungrounded = [r for r in records if r["category"] == UNGROUNDED]

    worst_category = min(own, key=lambda row: row["adaptive_vs_static"])

    # The hindsight best chosen on a prompt's other seeds (sampled modes with --seeds >= 2):
    # at temperature 1 every configuration generates its own text from one seed, and the
    # fastest of several configurations in the same run is partly the one whose text happened
    # to decode fast (selection bias of the minimum); chosen on the other seeds (the least
    # mean decode time there) and timed on this one, the choice is one a user could have made.
    by_prompt: dict[int, list] = {}
    for record in records:
        by_prompt.setdefault(record["prompt"], []).append(record)
    cross_seed = [
        ms(r, min(static_names, key=lambda n: sum(ms(o, n) for o in others))) / ms(r, "adaptive")
        for r in records
        if (others := [o for o in by_prompt[r["prompt"]] if o is not r])
    ]
    summary: dict[str, Any] = {
        "vs_static_ungrounded": by_category.get(UNGROUNDED, {}).get("adaptive_vs_static"),
        "vs_static_worst_category": worst("adaptive_vs_static"),
        "vs_hindsight_best": by_category["all"]["adaptive_vs_hindsight_best"],
        "vs_hindsight_best_cross_seed": statistics.fmean(cross_seed) if cross_seed else None,
        "vs_prompt_lookup": ratio(records, best_lookup(records)),
        "prediction_error": worst_error("prediction_error_adaptive"),
        "prediction_error_static": worst_error("prediction_error_static"),
        "prediction_error_calibrated": worst_error("prediction_error_adaptive_calibrated"),
        "vs_prompt_lookup_heldout": ratio(heldout, best_lookup(heldout)),
        "vs_prompt_lookup_ungrounded": ratio(ungrounded, best_lookup(ungrounded)),
        "static_vs_prompt_lookup_heldout": ratio(heldout, best_lookup(heldout), static.name),
        "static_vs_prompt_lookup_ungrounded": ratio(
            ungrounded, best_lookup(ungrounded), static.name
        ),
        "prompt_lookup_best": best_lookup(records),
        "runs_per_prompt": len(records) // len({r["prompt"] for r in records}),
        "standard_errors": {
            "vs_static_ungrounded": ratio_error(ungrounded, static.name),
            "vs_static_worst_category": worst_category["adaptive_vs_static_se"],
            "vs_static_worst_category_name": worst_category["category"],
            "vs_static": ratio_error(records, static.name),
            "vs_hindsight_best": ratio_error(records, HINDSIGHT),
            "vs_hindsight_best_cross_seed": standard_error(cross_seed),
            "vs_prompt_lookup": ratio_error(records, best_lookup(records)),
        },
        "adaptive_variants": {
            name: {
                "vs_static_ungrounded": by_category.get(UNGROUNDED, {})
                .get("adaptive_variants", {})
                .get(name, {})
                .get("vs_static"),
                "vs_static_worst_category": min(
                    row["adaptive_variants"][name]["vs_static"] for row in own
                ),
                "vs_static": by_category["all"]["adaptive_variants"][name]["vs_static"],
                "vs_adaptive": by_category["all"]["adaptive_variants"][name]["vs_adaptive"],
                "vs_hindsight_best": by_category["all"]["adaptive_variants"][name][
                    "vs_hindsight_best"
                ],
                "vs_prompt_lookup": ratio(records, best_lookup(records), name),
                "prediction_error": max(
                    (row["adaptive_variants"][name]["prediction_error"] for row in own), key=abs
                ),
            }
            for name in by_category["all"]["adaptive_variants"]
        },
    }
    readme = [
        r for r in records if prompts[r["prompt"]]["message"] == README_PROMPT
    ]  # the README's main job
    if readme:  # one run per seed
        summary["readme_main_job"] = {
            "static_speedup_vs_target": ratio(readme, target.name, static.name),
            "adaptive_speedup_vs_target": ratio(readme, target.name),
        }
    if sampling.is_greedy:
        summary["greedy_outputs_identical_to_target"] = all(
            r["runs"][c.name].identical for r in records for c in configs if c.is_static
        ) and all(
            r["runs"][c.name].identical for r in records for c in configs if c.kind == "adaptive"
        )
    return {
        "label": label,
        "sampling": dataclasses.asdict(sampling),
        "profile_path": str(profile_path),
        "profile": profile.to_dict(),
        "plan": plan.to_dict(),
        "adaptive_config": dataclasses.asdict(AdaptiveConfig()),
        # The early-stopping threshold the default configuration chose from this profile.
        "adaptive_min_draft_confidence": Replanner(profile, AdaptiveConfig()).min_draft_confidence,
        "summary": summary,
        "configurations": [
            {
                "name": c.name,
                "kind": c.kind,
                "chain": [names[index] for index in c.chain],
                "draft_lengths": list(c.draft_lengths),
                "predicted_ms_per_token": c.predicted_ms,
                "prompt_lookup_num_tokens": c.prompt_lookup_num_tokens,
                "adaptive_config": (
                    dataclasses.asdict(c.adaptive_config) if c.adaptive_config else None
                ),
            }
            for c in configs
        ],
        "categories": per_category,
        "prompts": [record_to_json(record, names) for record in records],
    }


def record_to_json(record, names) -> dict:
    runs = {}
    for name, run in record["runs"].items():
        entry: dict[str, Any] = {
            "decode_ms_per_token": run.decode_ms,
            "wall_ms_per_token": 1e3 * run.wall_s / run.new_tokens,
            "new_tokens": run.new_tokens,
        }
        if run.predicted_decode_s is not None:
            entry["predicted_decode_ms_per_token"] = 1e3 * run.predicted_decode_s / run.new_tokens
        if run.identical is not None:
            entry["identical_to_target"] = run.identical
            entry["first_mismatch"] = run.first_mismatch
        if run.decisions:
            entry["decisions"] = [
                {
                    "token": d.token,
                    "target_pass": d.target_pass,
                    "previous_chain": [names[index] for index in d.previous_chain],
                    "previous_draft_lengths": list(d.previous_draft_lengths),
                    "chain": [names[index] for index in d.chain],
                    "draft_lengths": list(d.draft_lengths),
                    "previous_min_draft_confidence": d.previous_min_draft_confidence,
                    "min_draft_confidence": d.min_draft_confidence,
                    "switched": d.switched,
                    "acceptance": {
                        pair_name(pair, names): rate for pair, rate in d.acceptance.items()
                    },
                    "predicted_latency": d.predicted_latency,
                    "calibration": d.calibration,
                    "previous_calibration": d.previous_calibration,
                    "catch_up_cost": d.catch_up_cost,
                    "bottom_acceptance": {
                        pair_name(pair, names): rate for pair, rate in d.bottom_acceptance.items()
                    },
                    "continue_rates": {names[int(m)]: r for m, r in d.continue_rates.items()},
                    "cost_scales": {names[int(m)]: r for m, r in d.cost_scales.items()},
                    "overhead_ms": d.overhead_ms,
                }
                for d in run.decisions
            ]
        runs[name] = entry
    return {
        "prompt": record["prompt"],
        "seed": record["seed"],
        "category": record["category"],
        "runs": runs,
    }


def pair_name(pair: str, names) -> str:
    lower, upper = pair.split("->")
    return f"{names[int(lower)]}->{names[int(upper)]}"


# --------------------------------------------------------------------------------------------
# Output


def format_mode(mode: dict) -> str:
    def number(value, suffix="") -> str:
        return "-" if value is None else f"{value:.2f}{suffix}"

    def error(value) -> str:
        return f"{100 * value:+.0f}%"

    header = (
        "category",
        "n",
        "target ms",
        "static ms",
        "adaptive ms",
        "hindsight ms",
        "lookup ms",
        "ad/static (±se)",
        "ad/hindsight",
        "ad/lookup",
        "err static",
        "err adaptive",
        "err calibrated",
        "switches",
    )
    names = [c["name"] for c in mode["configurations"]]
    rows = []
    for row in mode["categories"]:
        times = row["decode_ms_per_token"]
        lookup = row["prompt_lookup_best"]
        rows.append(
            (
                row["category"],
                str(row["runs"]),
                f"{times[names[0]]['median']:.1f}",
                f"{times[names[1]]['median']:.1f}",
                f"{times['adaptive']['median']:.1f}",
                f"{times[HINDSIGHT]['median']:.1f}",
                "-" if lookup is None else f"{times[lookup]['median']:.1f} ({lookup[14:]})",
                number(row["adaptive_vs_static"], "x")
                + (
                    ""
                    if row["adaptive_vs_static_se"] is None
                    else f" ±{row['adaptive_vs_static_se']:.2f}"
                ),
                number(row["adaptive_vs_hindsight_best"], "x"),
                number(row["adaptive_vs_prompt_lookup"], "x"),
                error(row["prediction_error_static"]),
                error(row["prediction_error_adaptive"]),
                error(row["prediction_error_adaptive_calibrated"]),
                f"{row['plan_changes_per_prompt']:.1f}",
            )
        )
    summary = mode["summary"]
    lines = [
        f"== {mode['label']} (n: runs; decode ms/token: medians over runs; ratios: means of "
        "per-run speed ratios) ==",
        format_table(header, rows),
        "summary: " + ", ".join(f"{key} {format_value(value)}" for key, value in summary.items()),
    ]
    return "\n".join(lines)


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def plot(modes: list[dict], prompts: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    greedy = next((mode for mode in modes if mode["label"] == "greedy"), modes[0])
    shown = [
        next((r for r in greedy["prompts"] if r["category"] == UNGROUNDED), None),
        next((r for r in greedy["prompts"] if r["category"] != UNGROUNDED), None),
    ]
    shown = [record for record in shown if record is not None]
    figure = plt.figure(figsize=(13, 11))
    grid = figure.add_gridspec(3, max(len(shown), len(modes)), height_ratios=[1.1, 1.0, 1.1])
    for column, record in enumerate(shown):
        prompt = prompts[record["prompt"]]
        title = prompt["message"] if prompt["category"] == UNGROUNDED else prompt["name"]
        adaptive = record["runs"]["adaptive"]
        decisions = adaptive.get("decisions", [])
        if not decisions:  # ended before its first planning decision
            continue
        tokens = [d["token"] for d in decisions]
        estimates = figure.add_subplot(grid[0, column])

        def in_use(chain: list[str]) -> list[str]:
            return [f"{lower}->{upper}" for lower, upper in zip(chain, chain[1:])]

        pairs = list(dict.fromkeys(pair for d in decisions for pair in in_use(d["chain"])))
        for pair in pairs:  # the estimate of each pair the chain uses after the decision
            for key, label, style in (
                ("acceptance", pair, "-"),
                ("bottom_acceptance", f"{pair} (drafts above the threshold)", "--"),
            ):
                values = [
                    d.get(key, {}).get(pair, math.nan) if pair in in_use(d["chain"]) else math.nan
                    for d in decisions
                ]
                if any(not math.isnan(value) for value in values):
                    estimates.plot(tokens, values, style, marker=".", label=label)
        estimates.set_ylim(0, 1)
        estimates.set_ylabel("acceptance estimate")
        estimates.set_title(
            f"{greedy['label']}, {prompt['category']}: {title[:60]}", fontsize=9, loc="left"
        )
        estimates.legend(fontsize=7)
        lengths = figure.add_subplot(grid[1, column], sharex=estimates)
        # The configuration in use from token 0 (the initial plan) to the end.
        first = decisions[0]
        steps = [
            (
                0,
                first["previous_chain"],
                first["previous_draft_lengths"],
                first.get("previous_min_draft_confidence", 0.0),
            )
        ]
        steps += [
            (d["token"], d["chain"], d["draft_lengths"], d.get("min_draft_confidence", 0.0))
            for d in decisions
        ]
        steps.append((adaptive["new_tokens"], *steps[-1][1:]))
        depth = max(len(sizes) for _, _, sizes, _ in steps)
        for level in range(depth):
            lengths.step(
                [token for token, _, _, _ in steps],
                [sizes[level] if level < len(sizes) else math.nan for _, _, sizes, _ in steps],
                where="post",
                label=f"T_{level}",
            )
        previous = None
        for token, chain, sizes, threshold in steps[:-1]:
            described = " -> ".join(chain) + (f" T={','.join(map(str, sizes))}" if sizes else "")
            described += f", stop < {threshold:g}" if threshold > 0 and len(chain) > 1 else ""
            if described != previous:
                lengths.axvline(token, color="gray", linestyle=":", linewidth=0.8)
                lengths.text(token, 0.2, described, rotation=90, fontsize=6, va="bottom")
                previous = described
        lengths.set_xlabel("generated tokens (at each planning decision)")
        lengths.set_ylabel("draft lengths (configuration at switches)")
        lengths.set_ylim(bottom=0)
        lengths.legend(fontsize=7)
    metrics = (
        ("adaptive_vs_static", "vs static plan"),
        ("adaptive_vs_hindsight_best", "vs hindsight best"),
        ("adaptive_vs_prompt_lookup", "vs prompt lookup (best k)"),
    )
    for column, mode in enumerate(modes):
        bars = figure.add_subplot(grid[2, column])
        rows = mode["categories"]
        width = 0.8 / len(metrics)
        for offset, (key, label) in enumerate(metrics):
            bars.bar(
                [index + (offset - 1) * width for index in range(len(rows))],
                [row[key] or 0.0 for row in rows],
                width=width,
                label=label,
            )
        for level, style in ((1.0, "-"), (0.97, ":"), (1.15, "--")):
            bars.axhline(level, color="black", linestyle=style, linewidth=0.7)
        bars.set_xticks(range(len(rows)))
        bars.set_xticklabels([row["category"] for row in rows], rotation=30, fontsize=7)
        bars.set_ylabel("adaptive speed ratio (decode)")
        bars.set_title(
            f"{mode['label']}: adaptive vs ... per category (lines: 0.97, 1, 1.15 targets)",
            fontsize=9,
        )
        bars.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --------------------------------------------------------------------------------------------


# Defaults of the full run and of --quick (an option given explicitly overrides either).
FULL = dict(
    tokens=128,
    prompts_per_category=2,
    ungrounded_prompts=len(UNGROUNDED_PROMPTS),
    modes=["greedy", "temperature1"],
    profile_prompts=16,
)
QUICK = dict(tokens=32, prompts_per_category=2, ungrounded_prompts=2, modes=["greedy"])


def config_settings(text: str) -> dict[str, Any]:
    """``"key=value,key=value"`` as AdaptiveConfig keywords (values: Python literals)."""
    fields = {field.name for field in dataclasses.fields(AdaptiveConfig)}
    settings: dict[str, Any] = {}
    for item in text.split(","):
        key, separator, value = item.partition("=")
        key = key.strip()
        if not separator or key not in fields:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not KEY=VALUE with KEY one of {sorted(fields)}"
            )
        try:
            settings[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError) as error:
            raise argparse.ArgumentTypeError(f"{item!r}: {value!r} is not a literal") from error
    try:
        AdaptiveConfig(**settings)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from error
    return settings


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_prompt_arguments(parser, FULL, QUICK)
    parser.add_argument(
        "--hindsight-size",
        type=int,
        default=3,
        help="static configurations for the hindsight best besides the target alone, the static "
        "plan included",
    )
    add_prompt_lookup_grid(parser, [2, 4, 10])
    parser.add_argument(
        "--adaptive-variants",
        type=float,
        nargs="*",
        default=[],
        metavar="CONFIDENCE",
        help="also run the adaptive decoder with these min_draft_confidence values (early "
        "stopping of the bottom level), each compared in the same run",
    )
    parser.add_argument(
        "--change-rate-variants",
        type=float,
        nargs="*",
        default=[],
        metavar="RATE",
        help="also run the adaptive decoder with these AdaptiveConfig.change_rate values (change "
        "points in the acceptance estimates), each compared in the same run",
    )
    parser.add_argument(
        "--config-variants",
        type=config_settings,
        nargs="*",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="also run the adaptive decoder with these AdaptiveConfig settings (e.g. "
        "'min_relative_gain=0.1,calibrate=False'), each compared in the same run",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="runs per prompt in sampled modes, each configuration on the same seeds (1; "
        "greedy runs once: its output does not depend on the seed)",
    )
    parser.add_argument("--max-draft-length", type=int, default=16)
    parser.add_argument(
        "--profile-prompts",
        type=int,
        help=f"calibration prompts of the profile ({FULL['profile_prompts']}, as hierspec "
        "generate; quick: 2 with a cheap profile, as bench/e2e.py --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 prompts per category, 32 tokens, greedy only, a cheap profile",
    )
    parser.add_argument("--cache", help="family cache directory")
    parser.add_argument("--out", type=Path, default=RESULTS / "adaptive-cpu.json")
    parser.add_argument("--plot", type=Path, default=None, help="default: --out with .png")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    defaults = {**FULL, "profile_prompts": 2, **QUICK} if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.plot is None:
        args.plot = args.out.with_suffix(".png")
    return args


def estimate_full_run(modes: list[dict], args, num_heldout_kinds: int) -> float:
    """Seconds of the default run's measurement loop from this run's decode times: per prompt,
    every configuration's decode time per token times the full token count plus its prefill
    (wall minus decode); sampled modes at :data:`SAMPLED_SLOWDOWN` when not measured."""
    full = FULL
    prompts = num_heldout_kinds * full["prompts_per_category"] + full["ungrounded_prompts"]
    total = 0.0
    measured = {mode["label"]: mode for mode in modes}
    for name in full["modes"]:
        label = "greedy" if name == "greedy" else "temperature 1"
        mode = measured.get(label) or measured.get("greedy") or next(iter(measured.values()))
        if label in measured:
            factor = 1.0
        elif mode["label"] == "greedy":  # a sampled mode estimated from the greedy one
            factor = SAMPLED_SLOWDOWN
        else:  # greedy estimated from a sampled mode
            factor = 1.0 / SAMPLED_SLOWDOWN
        per_prompt = 0.0
        for configuration in mode["configurations"]:
            runs = [record["runs"][configuration["name"]] for record in mode["prompts"]]
            decode = statistics.fmean(run["decode_ms_per_token"] for run in runs) / 1e3
            prefill = statistics.fmean(
                (run["wall_ms_per_token"] - run["decode_ms_per_token"]) * run["new_tokens"] / 1e3
                for run in runs
            )
            slow = factor if configuration["kind"] != "target" else 1.0
            per_prompt += slow * decode * full["tokens"] + prefill
        total += prompts * per_prompt
    return total


def main(argv=None) -> int:
    args = parse_arguments(argv)
    started = time.perf_counter()
    report, log, family = start_family_benchmark("adaptive", 1, args.cache, not args.no_progress)
    prompts = select_prompts(family.tokenizer, args.prompts_per_category, args.ungrounded_prompts)
    kinds = len({p["category"] for p in prompts if p["category"] != UNGROUNDED})
    log(f"family {', '.join(family.names)}; {len(prompts)} prompts, {kinds} held-out kinds")
    modes = []
    for name in args.modes:
        sampling = SamplingConfig(temperature=0.0 if name == "greedy" else 1.0)
        mode = run_mode(family, sampling, args, prompts, log)
        print(format_mode(mode), flush=True)
        modes.append(mode)
    summary: dict[str, Any] = {
        key: {mode["label"]: mode["summary"].get(key) for mode in modes}
        for key in modes[0]["summary"]
    }
    estimate = estimate_full_run(modes, args, kinds)
    log(
        f"estimated full run (defaults {FULL}): {estimate / 60:.0f} min of measurement from this "
        f"run's timings (load average {report.machine.get('load_average')}), plus profiling "
        "when the profiles are not cached"
    )
    results = {
        "summary": summary,
        "definitions": {
            "speed ratio": "baseline decode ms/token / adaptive decode ms/token of one run "
            "(> 1: adaptive faster); a category's ratio is the mean over its runs (one per "
            "prompt, --seeds per prompt in sampled modes, every configuration on the same "
            "seed)",
            "runs_per_prompt": "seeds per prompt (1 in greedy mode, whose output does not "
            "depend on the seed)",
            "standard_errors": "standard error of each mean ratio: sample standard deviation of "
            "its per-run ratios / sqrt(runs), runs taken as independent; "
            "vs_static_worst_category: that of the worst category (named). In sampled modes "
            "configurations generate different texts from one seed, so a run's ratio carries "
            "the spread of the texts besides the timing noise",
            "vs_static_ungrounded": "mean speed ratio adaptive vs the static plan of the same "
            "profile on the ungrounded prompts",
            "vs_static_worst_category": "the smallest category ratio adaptive vs static "
            "(held-out kinds and ungrounded)",
            "vs_hindsight_best": "mean over all prompts of the ratio adaptive vs the fastest "
            "static hierspec configuration of that prompt (target alone, the static plan, the "
            "fixed set)",
            "vs_hindsight_best_cross_seed": "the same with the configuration chosen on the "
            "prompt's other seeds (least mean decode time there) and timed on this one: free of "
            "the selection bias of the same-run minimum when the configurations' texts differ "
            "(sampled modes); None with one run per prompt",
            "vs_prompt_lookup": "mean over all prompts of the ratio adaptive vs transformers' "
            "prompt lookup decoding at the grid's k with the smallest total decode time over "
            "those prompts (chosen in hindsight, in the peer's favour); _heldout / _ungrounded: "
            "the same over those prompts (k chosen on them); static_vs_*: the static plan's",
            "prediction_error": "adaptive: per category, (measured - predicted) / predicted "
            "decode time summed over its prompts, predicted = each decision's "
            "predicted_latency (the planner's latency under the estimates of that moment) for "
            "the tokens until the next decision (the profile's plan latency before the first) "
            "plus each switch's predicted catch-up cost; the category with the largest "
            "magnitude, signed",
            "prediction_error_static": "the same for the static plan, predicted = "
            "hierspec.evaluate on the profile",
            "prediction_error_calibrated": "the same for adaptive with each decision's "
            "predicted_latency times its calibration (the measured / predicted ratio its "
            "configuration had shown in the request so far: the decoder's own forecast, which "
            "its decisions compare)",
            "readme_main_job": "decode speedup over the target alone on the README prompt, "
            "static plan (before) and adaptive (after), mean over its runs",
            "decode time": "hierspec: stats.decode_time_s (after the prompt prefill); "
            "transformers: wall time minus a prefill of the target on the same prompt timed "
            "apart as transformers runs it (last-position logits only)",
        },
        "duration_s": time.perf_counter() - started,
        "estimated_full_run_s": estimate,
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "family": list(family.names),
        "prompts": [
            {
                key: prompt[key]
                for key in ("category", "kind", "source", "name")
                if prompt[key] is not None
            }
            | ({"message": prompt["message"]} if prompt["category"] == UNGROUNDED else {})
            | {"tokens": int(prompt["input_ids"].shape[1])}
            for prompt in prompts
        ],
        "modes": modes,
    }
    report.write(args.out, results)
    plot(modes, prompts, args.plot)
    log(f"wrote {args.out} and {args.plot}")
    identical = summary.get("greedy_outputs_identical_to_target", {}).get("greedy", True)
    if not identical:
        print("ERROR: a hierspec greedy output differs from the target alone's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
