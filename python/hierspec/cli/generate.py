"""``hierspec generate``: the main job.

Take a set of candidate models (by default the bundled family of :mod:`hierspec.family`; see
:mod:`hierspec.cli.candidates` for the model specifications), get their profile (cached per
models, prompts and conditions, measured once when missing, on the family corpus's calibration
prompts), plan the latency-optimal hierarchy, decode with it, and report the text, the plan,
tokens/s and the speedup over the target alone measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from hierspec.adaptive import AdaptiveConfig, predicted_latency_of_run
from hierspec.engine import GenerateOutput, HierarchicalDecoder
from hierspec.io import machine_info, write_json
from hierspec.planning import (
    evaluate,
    has_prefill_costs,
    load_profile,
    plan,
    plan_for_prompt,
)
from hierspec.profiler import ProfilerConfig
from hierspec.prompts import encode_prompt
from hierspec.sampling import SamplingConfig

from .candidates import (
    add_common_arguments,
    add_model_help,
    candidates_profile,
    check_threads,
    load_candidates,
)
from .report import (
    GenerateReport,
    LevelReport,
    PlanChangeReport,
    print_generate_report,
    request_plan_report,
)

HELP = "generate with the auto-planned hierarchy (default: the bundled model family)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hierspec generate``."""
    parser.add_argument("--prompt", "-p", required=True, help="the user message")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=128,
        help="tokens to generate at most (128); stops earlier at EOS",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0 (the default) = greedy: deterministic, and checked token for "
        "token against the target alone; > 0 samples exactly the target's "
        "distribution at that temperature",
    )
    parser.add_argument("--top-k", type=int, default=None, help="top-k filter (none)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus filter (none)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        default=None,
        help=add_model_help("default: the whole bundled family (prepared on first use)"),
    )
    parser.add_argument(
        "--profile",
        metavar="PROFILE.json",
        help="plan from this profile (its model names must be among the "
        "candidates) instead of the cached one",
    )
    parser.add_argument(
        "--reprofile",
        action="store_true",
        help="measure the profile again even if a cached one exists",
    )
    parser.add_argument(
        "--profile-prompts",
        type=int,
        default=16,
        help="calibration prompts when profiling (16, corpus validation split)",
    )
    parser.add_argument(
        "--max-draft-length",
        type=int,
        default=16,
        help="largest draft length the planner considers (16)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for profiling and generating (1); a cached "
        "profile is per thread count",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="do not run the target alone for the speedup"
    )
    parser.add_argument(
        "--ignore-eos", action="store_true", help="always generate --max-new-tokens tokens"
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="tokenize the prompt as plain text, without the chat template",
    )
    parser.add_argument(
        "--no-stream",
        action="store_true",
        help="print the text when it is complete instead of streaming it as the hierarchy "
        "commits it (streaming decodes the text inside the timed run)",
    )
    parser.add_argument(
        "--adaptive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learn acceptance while generating and re-plan every few target passes, starting "
        "from the plan for this request (the default); --no-adaptive runs the plan for this "
        "request throughout (both count the chain's prompt prefill)",
    )
    parser.add_argument(
        "--min-draft-confidence",
        type=float,
        default=None,
        metavar="P",
        help="adaptive mode: the bottom level stops its batch early before a draft it gives "
        "less than this probability (its own softmax), and the decoder learns how often it "
        "stops; 0 never stops (default: re-planned during the request among 0 and the "
        "thresholds the profiler measured, starting from the one whose plan the profile "
        "predicts fastest)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    add_common_arguments(parser)


def _prior_strengths(decoder: HierarchicalDecoder, names: Sequence[str]) -> dict[str, float]:
    """The adaptive decoder's prior strength per pair of candidates (``{}`` for a static
    chain): how many observations each pair's profile rate counts as."""
    replanner = decoder.replanner
    if replanner is None:
        return {}
    strengths = replanner.prior_strengths
    return {
        f"{names[i]}->{names[j]}": float(strengths[i, j])
        for i in range(len(names))
        for j in range(i + 1, len(names))
    }


def _describe(
    names: tuple[str, ...],
    chain: tuple[int, ...],
    draft_lengths: tuple[int, ...],
    min_draft_confidence: float = 0.0,
) -> str:
    lengths = ",".join(str(length) for length in draft_lengths)
    stops = f", stops below {min_draft_confidence:g}" if min_draft_confidence > 0 else ""
    return (
        " -> ".join(names[model] for model in chain)
        + (f" T={lengths}" if lengths else "")
        + (stops if len(chain) > 1 else "")
    )


def _decode_ms_per_token(output: GenerateOutput) -> float:
    stats = output.stats
    return 1e3 * stats.decode_time_s / stats.new_tokens if stats.new_tokens else math.nan


def run(args: argparse.Namespace) -> int:
    """Profiles (cached), plans for the request (prompt prefill + decode), decodes, reports."""
    progress = not args.no_progress
    torch.set_num_threads(check_threads(args.threads))
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if not args.prompt:
        raise ValueError("--prompt must be a non-empty string")
    if not args.adaptive and args.min_draft_confidence not in (None, 0):
        raise ValueError(
            f"--min-draft-confidence {args.min_draft_confidence} needs the adaptive decoder "
            "(it learns how often the bottom level stops); drop --no-adaptive or set it to 0"
        )
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    candidates = load_candidates(args.models or [], args.cache, progress)
    if args.profile:
        loaded = load_profile(args.profile)
        candidates = candidates.select(loaded.model_names, f"--profile {args.profile}")
        profile_path, measured_now = Path(args.profile), False
    else:
        config = ProfilerConfig(
            max_draft_length=args.max_draft_length, sampling=sampling, threads=args.threads
        )
        loaded, profile_path, measured_now = candidates_profile(
            candidates, config, args.profile_prompts, refresh=args.reprofile, progress=progress
        )
    tokenizer = candidates.tokenizer
    input_ids = encode_prompt(tokenizer, args.prompt, args.raw)
    prompt_length = input_ids.shape[1]
    best = plan(
        loaded.costs_ms,
        loaded.acceptance,
        max_draft_length=args.max_draft_length,
        model_names=loaded.model_names,
    )  # the plan table printed (the best per token, no prefill)
    if args.adaptive:
        adaptive_config = AdaptiveConfig(max_draft_length=args.max_draft_length)
        if args.min_draft_confidence is not None:
            adaptive_config = dataclasses.replace(
                adaptive_config, min_draft_confidence=args.min_draft_confidence
            )
        decoder = HierarchicalDecoder.adaptive(candidates.models, loaded, adaptive_config)
    else:
        # The configuration of least expected time for THIS request: the chain's prompt
        # prefill plus max_new_tokens x its latency (the adaptive decoder plans each call so).
        static_request = plan_for_prompt(
            loaded, prompt_length, args.max_new_tokens, max_draft_length=args.max_draft_length
        )
        decoder = HierarchicalDecoder.from_plan(candidates.models, static_request.entry)
    eos = None if args.ignore_eos else getattr(tokenizer, "eos_token_id", None)

    def run(chain_decoder: HierarchicalDecoder, streamer: object = None) -> GenerateOutput:
        streaming = {} if streamer is None else {"streamer": streamer}
        return chain_decoder.generate(
            input_ids,
            max_new_tokens=args.max_new_tokens,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            seed=args.seed,
            eos_token_id=eos,
            **streaming,
        )

    # The text streams to stdout burst by burst as the target commits it (transformers'
    # TextStreamer, fed the prompt first, which it skips); the report follows.
    streamer = None
    if not args.no_stream and "streamer" in inspect.signature(decoder.generate).parameters:
        from transformers import TextStreamer

        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    output = run(decoder, streamer)
    baseline = None if args.no_baseline else run(HierarchicalDecoder([candidates.models[-1]], []))
    request = output.stats.initial_plan if args.adaptive else static_request
    assert request is not None  # the adaptive decoder records its first plan
    text = tokenizer.decode(output.sequences[0, prompt_length:], skip_special_tokens=True)
    stats = output.stats
    speedup = identical = None
    if baseline is not None:
        speedup = stats.tokens_per_second / baseline.stats.tokens_per_second
        if sampling.is_greedy:
            identical = torch.equal(output.sequences, baseline.sequences)
    tokens = max(stats.new_tokens, 1)
    levels = []
    if args.adaptive:
        # Per candidate that ran; the chain changed, so no per-level prediction applies.
        predicted = predicted_latency_of_run(stats.decisions, request.latency, stats.new_tokens)
        for model, counters in enumerate(stats.levels):
            if counters.forward_passes + counters.catch_up_passes + counters.shadow_passes == 0:
                continue
            model_s = counters.time_s + counters.catch_up_time_s + counters.shadow_time_s
            levels.append(
                LevelReport(
                    model=loaded.model_names[model],
                    passes_per_token=counters.forward_passes / tokens,
                    predicted_passes_per_token=None,
                    model_ms_per_token=1e3 * model_s / tokens,
                    predicted_ms_per_token=None,
                    acceptance=counters.acceptance_rate if counters.batches else None,
                    profile_acceptance=None,
                    shadow_tokens=counters.shadow_scored,
                    shadow_acceptance=(
                        counters.shadow_acceptance_rate if counters.shadow_scored else None
                    ),
                )
            )
    else:
        predicted = request.latency
        chain = request.chain
        evaluation = evaluate(loaded.costs_ms, loaded.acceptance, chain, request.draft_lengths)
        for level, (model, counters) in enumerate(zip(chain, stats.levels)):
            above = chain[level + 1] if level + 1 < len(chain) else None
            levels.append(
                LevelReport(
                    model=loaded.model_names[model],
                    passes_per_token=counters.forward_passes / tokens,
                    predicted_passes_per_token=evaluation.passes_per_token[level],
                    model_ms_per_token=1e3 * counters.time_s / tokens,
                    predicted_ms_per_token=evaluation.cost_per_token[level],
                    acceptance=None if above is None else counters.acceptance_rate,
                    profile_acceptance=None if above is None else loaded.acceptance[model][above],
                )
            )
    names = loaded.model_names
    plan_history = tuple(
        PlanChangeReport(
            token=decision.token,
            previous=_describe(
                names,
                decision.previous_chain,
                decision.previous_draft_lengths,
                decision.previous_min_draft_confidence,
            ),
            new=_describe(
                names, decision.chain, decision.draft_lengths, decision.min_draft_confidence
            ),
            acceptance={
                **{
                    f"{names[int(i)]}->{names[int(j)]}": rate
                    for (i, j), rate in (
                        (key.split("->"), value) for key, value in decision.acceptance.items()
                    )
                },
                # Early stopping: the bottom pairs' acceptance of confident drafts and the
                # bottom models' continue rates.
                **{
                    f"{names[int(i)]}->{names[int(j)]} (bottom)": rate
                    for (i, j), rate in (
                        (key.split("->"), value)
                        for key, value in decision.bottom_acceptance.items()
                    )
                },
                **{
                    f"{names[int(model)]} continues": rate
                    for model, rate in decision.continue_rates.items()
                },
            },
            previous_latency_ms=decision.previous_latency,
            predicted_latency_ms=decision.predicted_latency,
            catch_up_ms=decision.catch_up_cost,
            cost_scales={names[int(m)]: scale for m, scale in decision.cost_scales.items()},
            previous_calibration=decision.previous_calibration,
            calibration=decision.calibration,
            overhead_ms=decision.overhead_ms,
        )
        for decision in stats.plan_changes
    )
    report = GenerateReport(
        prompt=args.prompt,
        text=text,
        prompt_tokens=prompt_length,
        new_tokens=stats.new_tokens,
        plan=best.to_dict(),
        request_plan=request_plan_report(request, names, has_prefill_costs(loaded)),
        prefill_time_s=stats.prefill_time_s,
        profile_path=str(profile_path),
        sampling=dataclasses.asdict(sampling),
        seed=output.seed,
        wall_time_s=stats.wall_time_s,
        tokens_per_second=stats.tokens_per_second,
        decode_ms_per_token=_decode_ms_per_token(output),
        predicted_ms_per_token=predicted,
        adaptive=args.adaptive,
        min_draft_confidence=decoder.min_draft_confidence,
        min_draft_confidence_candidates=(
            () if decoder.replanner is None else decoder.replanner.thresholds
        ),
        plan_history=plan_history,
        prior_strengths=_prior_strengths(decoder, names),
        prior_strength_source=(
            "" if decoder.replanner is None else decoder.replanner.prior_strength_source
        ),
        baseline_wall_time_s=None if baseline is None else baseline.stats.wall_time_s,
        baseline_tokens_per_second=None if baseline is None else baseline.stats.tokens_per_second,
        baseline_decode_ms_per_token=None if baseline is None else _decode_ms_per_token(baseline),
        speedup_vs_target=speedup,
        identical_to_target=identical,
        levels=tuple(levels),
        machine=machine_info(),
    )
    source = "measured now" if measured_now else "cached"
    print_generate_report(
        report,
        best,
        f"profile: {profile_path} ({source}; {len(loaded.model_names)} candidates, "
        f"{args.threads} thread(s), temperature {sampling.temperature:g})",
        None if baseline is None else baseline.stats.new_tokens,
        text_printed=streamer is not None,
    )
    if args.json:
        write_json(args.json, dataclasses.asdict(report))
        print(f"wrote {args.json}")
    if identical is False:
        # Not an error exit: batched verification passes can round differently from one-token
        # passes and flip a near-tie argmax; bench/e2e.py is the strict check.
        print(
            "warning: the greedy output differs from the target alone's; if the first "
            "difference is a near-tie of the target's top two logits this is floating-point "
            "rounding of batched passes, otherwise please report it",
            file=sys.stderr,
        )
    return 0
