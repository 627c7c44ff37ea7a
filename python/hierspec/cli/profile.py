"""``hierspec profile``: measure candidate models into a profile JSON and print the plan."""

from __future__ import annotations

import argparse

import torch

from hierspec.planning import plan
from hierspec.profiler import COST_FITS, ProfilerConfig, profile, write_profile
from hierspec.prompts import encode_prompt, read_prompts

from .candidates import (
    add_common_arguments,
    add_model_help,
    calibration_messages,
    check_threads,
    load_candidates,
)
from .report import early_stopping_line, format_profile

HELP = "measure candidate models' pass costs and acceptance rates into a profile JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hierspec profile``."""
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=add_model_help("none: the whole bundled family"),
    )
    parser.add_argument(
        "--prompts",
        metavar="FILE",
        help="calibration prompts: .json list, .jsonl or one prompt per line "
        "(default: --num-prompts prompts of the corpus validation split)",
    )
    parser.add_argument(
        "--num-prompts",
        type=int,
        default=16,
        help="calibration prompts used (16; the first N of --prompts)",
    )
    parser.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="PROFILE.json",
        help="where to write the profile (docs/profile-format.md)",
    )
    parser.add_argument(
        "--max-draft-length",
        type=int,
        default=16,
        help="largest draft length the planner will consider (16); fixes the cost table width",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="timings per pass length, median kept (7; fewer for n > 8)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature the acceptance rates are for (1.0; 0 = greedy agreement)",
    )
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument(
        "--calibration-tokens",
        type=int,
        default=64,
        help="target continuation tokens per prompt for acceptance (64)",
    )
    parser.add_argument(
        "--context-tokens", type=int, default=120, help="cached tokens before each timed pass (120)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    default_thresholds = ProfilerConfig.stop_thresholds
    parser.add_argument(
        "--stop-thresholds",
        type=float,
        nargs="*",
        default=list(default_thresholds),
        metavar="P",
        help="confidence thresholds at which the bottom level's early stopping is measured "
        f"({' '.join(f'{p:g}' for p in default_thresholds)}; none: not measured)",
    )
    parser.add_argument(
        "--cost-fit",
        choices=COST_FITS,
        default=ProfilerConfig.cost_fit,
        help="how the timed medians become each cost row: their nondecreasing least-squares fit "
        "over the pass length (nondecreasing, the default: a chance dip of one median does not "
        "pick the draft length) or the medians as measured (none)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="tokenize prompts as plain text, without the chat template",
    )
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Measures the candidates, writes the profile JSON, prints the plan."""
    progress = not args.no_progress
    torch.set_num_threads(check_threads(args.threads))
    if args.num_prompts < 1:
        raise ValueError(f"--num-prompts must be >= 1, got {args.num_prompts}")
    candidates = load_candidates(args.models, args.cache, progress)
    if args.prompts:
        prompts = read_prompts(args.prompts)[: args.num_prompts]
    else:
        prompts = calibration_messages(args.num_prompts)
    prompt_ids = [encode_prompt(candidates.tokenizer, prompt, args.raw) for prompt in prompts]
    result = profile(
        candidates.models,
        prompt_ids,
        max_draft_length=args.max_draft_length,
        repeats=args.repeats,
        names=candidates.names,
        progress=progress,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        context_tokens=args.context_tokens,
        calibration_tokens=args.calibration_tokens,
        threads=args.threads,
        stop_thresholds=args.stop_thresholds,
        cost_fit=args.cost_fit,
    )
    write_profile(result, args.out)
    print(format_profile(result))
    print()
    best = plan(
        result.costs_ms,
        result.acceptance,
        max_draft_length=args.max_draft_length,
        model_names=result.model_names,
    )
    print(best.format_table(unit="ms"))
    stopping = early_stopping_line(result, args.max_draft_length)
    if stopping is not None:
        print(stopping)
    print(f"\nwrote {args.out} ({result.extra['metadata']['seconds']:.0f} s)")
    return 0
