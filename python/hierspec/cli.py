"""The ``hierspec`` command line: one function per subcommand, registered in ``COMMANDS``.

To add a subcommand, write ``_add_<name>_arguments(parser)`` and ``_run_<name>(args) -> int``
and register them in ``COMMANDS``. ``main`` returns the exit status (never calls ``exit``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence

from hierspec import distill, jobs
from hierspec.planning import load_profile, plan


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its help line, its argument definitions and its implementation."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", help="profile JSON (docs/profile-format.md)")
    parser.add_argument(
        "--max-draft-length", type=int, default=16, help="largest draft length T considered (16)"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the plan as JSON to OUT")


def _run_plan(args: argparse.Namespace) -> int:
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
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"profile": str(args.profile), "plan": result.to_dict()}, handle, indent=2)
            handle.write("\n")
        print(f"wrote {args.json}")
    return 0


COMMANDS: dict[str, Command] = {
    "plan": Command(
        help="plan the latency-optimal hierarchy for a profile",
        add_arguments=_add_plan_arguments,
        run=_run_plan,
    ),
    "profile": Command(
        help="measure candidate models' pass costs and acceptance rates into a profile JSON",
        add_arguments=jobs.add_profile_arguments,
        run=jobs.run_profile,
    ),
    "generate": Command(
        help="generate with the auto-planned hierarchy (default: the bundled model family)",
        add_arguments=jobs.add_generate_arguments,
        run=jobs.run_generate,
    ),
    "distill": Command(
        help="prepare the bundled family: convert the target, count corpus n-grams, distil drafts",
        add_arguments=distill.add_arguments,
        run=distill.run,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="hierspec", description="Hierarchical speculative decoding."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 for bad arguments or input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except (ValueError, OSError) as error:
        print(f"hierspec {args.command}: error: {error}", file=sys.stderr)
        return 2
