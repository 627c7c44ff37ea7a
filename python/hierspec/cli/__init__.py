"""The ``hierspec`` command line: one module per subcommand, registered in ``COMMANDS``.

Subcommands: ``plan`` (:mod:`hierspec.cli.plan`), ``profile`` (:mod:`hierspec.cli.profile`),
``generate`` (:mod:`hierspec.cli.generate`), ``distill`` (:mod:`hierspec.cli.distill`); the
candidate models are named as in :mod:`hierspec.cli.candidates` and what the commands print is
:mod:`hierspec.cli.report`. To add a subcommand, write a module with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int`` and register it in ``COMMANDS``. ``main``
returns the exit status (never calls ``exit``).

The bundled family (:mod:`hierspec.family`) is imported only by the commands that use it, and
only their arguments are defined when one command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence

from . import distill, generate, plan, profile

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its help line, its argument definitions and its implementation."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    name: Command(help=module.HELP, add_arguments=module.add_arguments, run=module.run)
    for name, module in (
        ("plan", plan),
        ("profile", profile),
        ("generate", generate),
        ("distill", distill),
    )
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand (with ``only``, the arguments of that
    subcommand alone are defined: the others' definitions may import the bundled family)."""
    parser = argparse.ArgumentParser(
        prog="hierspec", description="Hierarchical speculative decoding."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=command.help, description=command.help)
        if only is None or name == only:
            command.add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 for bad arguments or input).

    Bad arguments or input (``ValueError`` / ``TypeError`` from the library, ``OSError`` from
    files) print one line ``hierspec COMMAND: error: ...`` (argparse's style) and no traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((argument for argument in argv if not argument.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except (ValueError, TypeError, OSError) as error:
        message = " ".join(str(error).split())  # one line
        print(f"hierspec {args.command}: error: {message}", file=sys.stderr)
        return 2
