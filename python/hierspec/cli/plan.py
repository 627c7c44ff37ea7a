"""``hierspec plan``: the latency-optimal hierarchy for a profile JSON."""

from __future__ import annotations

import argparse

from hierspec.io import write_json
from hierspec.planning import has_prefill_costs, load_profile, plan, plan_for_prompt

from . import export
from .report import early_stopping_line, request_plan_line, request_plan_report

HELP = "plan the latency-optimal hierarchy for a profile"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hierspec plan``."""
    parser.add_argument("profile", help="profile JSON (docs/profile-format.md)")
    parser.add_argument(
        "--max-draft-length", type=int, default=16, help="largest draft length T considered (16)"
    )
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        metavar="P",
        help="also plan one request with a prompt of P tokens (the chain's prompt prefill + "
        "--new-tokens x latency; prefill costs from the profile)",
    )
    parser.add_argument(
        "--new-tokens", type=int, default=128, metavar="N", help="with --prompt-tokens (128)"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the plan as JSON to OUT")
    export.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Prints the plan's table (and writes it with ``--json``)."""
    profile = load_profile(args.profile)
    result = plan(
        profile.costs_ms,
        profile.acceptance,
        max_draft_length=args.max_draft_length,
        model_names=profile.model_names,
    )
    print(
        f"profile: {args.profile} ({len(profile.model_names)} models, "
        f"max draft length {args.max_draft_length})"
    )
    print(result.format_table(unit="ms"))
    stopping = early_stopping_line(profile, args.max_draft_length)
    if stopping is not None:
        print(stopping)
    record = {"profile": str(args.profile), "plan": result.to_dict()}
    if args.prompt_tokens is not None:
        if args.prompt_tokens < 1:
            raise ValueError(f"--prompt-tokens must be >= 1, got {args.prompt_tokens}")
        if args.new_tokens < 0:
            raise ValueError(f"--new-tokens must be >= 0, got {args.new_tokens}")
        request = plan_for_prompt(
            profile, args.prompt_tokens, args.new_tokens, max_draft_length=args.max_draft_length
        )
        record["request_plan"] = request_plan_report(
            request, profile.model_names, has_prefill_costs(profile)
        )
        print(request_plan_line(record["request_plan"], args.prompt_tokens))
    if args.json:
        write_json(args.json, record)
        print(f"wrote {args.json}")
    if args.export:
        export.run(args, profile, result)
    return 0
