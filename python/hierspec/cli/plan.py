"""``hierspec plan``: the latency-optimal hierarchy for a profile JSON."""

from __future__ import annotations

import argparse

from hierspec.io import write_json
from hierspec.planning import load_profile, plan

from . import export
from .report import early_stopping_line

HELP = "plan the latency-optimal hierarchy for a profile"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hierspec plan``."""
    parser.add_argument("profile", help="profile JSON (docs/profile-format.md)")
    parser.add_argument(
        "--max-draft-length", type=int, default=16, help="largest draft length T considered (16)"
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
    if args.json:
        write_json(args.json, {"profile": str(args.profile), "plan": result.to_dict()})
        print(f"wrote {args.json}")
    if args.export:
        export.run(args, profile, result)
    return 0
