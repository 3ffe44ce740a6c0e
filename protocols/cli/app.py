"""The ``secagg`` command: its top-level parser, dispatch, and how errors reach the user.

``demo`` and ``bench`` live in ``protocols``. ``train`` and ``recommend`` live in
``models.commands`` and need torch (the ``models`` extra); ``protocols`` must never import
``models`` statically (imports flow secagg <- protocols <- models), so they are reached through
:func:`importlib.import_module` when one of them runs, and their options are parsed by their own
modules. This keeps ``secagg demo`` fast and working without the optional extras.

:func:`main` is the one place that turns a :class:`~secagg.errors.SecAggError` into
``secagg: error: ...`` on stderr with exit status 2; argparse exits with status 2 on a usage
error by itself.

``bench``'s command line is :mod:`protocols.cli.bench`; imports flow ``protocols.cli`` ->
``protocols.bench`` and never back, so it is imported here like ``demo``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Final

import secagg
from protocols.cli.bench import add_bench_arguments, run_bench
from protocols.cli.demo import add_demo_arguments, run_demo
from protocols.cli.keys import add_keys_arguments, run_keys
from secagg.errors import SecAggError

__all__ = ["MODELS_COMMANDS", "build_parser", "main"]

#: Commands implemented under ``models`` (they need torch): name -> module. Each module has
#: ``add_arguments(parser)`` and ``run(args) -> int``.
MODELS_COMMANDS: Final[dict[str, str]] = {
    "train": "models.commands.train",
    "recommend": "models.commands.recommend",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``secagg`` parser with its ``demo``, ``bench`` and ``keys`` subcommands.

    ``train`` and ``recommend`` appear in the help only; :func:`main` hands their options to
    their own modules before this parser sees them.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="secagg", description="Secure aggregation for federated recommenders."
    )
    parser.add_argument("--version", action="version", version=f"secagg {secagg.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_demo_arguments(
        commands.add_parser(
            "demo", help="run one secure-aggregation round in-process and explain it"
        )
    )
    add_bench_arguments(
        commands.add_parser(
            "bench", help="measure the overhead of each protocol against a plain sum"
        )
    )
    add_keys_arguments(
        commands.add_parser(
            "keys", help="write a roster and identity key files for an active-model deployment"
        )
    )
    # train and recommend need torch (the 'models' extra); their options are parsed lazily.
    commands.add_parser("train", help="federated training of a recommender on a secure backend")
    commands.add_parser("recommend", help="top-K items for a user from a training checkpoint")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``secagg`` console script.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when a demo round was not exact, 2 on an error.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(arguments)
    except SecAggError as error:
        print(f"secagg: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output left (``| head``): not a failure of the command.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _dispatch(arguments: list[str]) -> int:
    if arguments and arguments[0] in MODELS_COMMANDS:
        return _models_command(arguments[0], arguments[1:])
    args = build_parser().parse_args(arguments)
    if args.command == "demo":
        return run_demo(args)
    if args.command == "bench":
        return run_bench(args)
    if args.command == "keys":
        return run_keys(args)
    return 1  # pragma: no cover - argparse enforces a command


def _models_command(name: str, rest: Sequence[str]) -> int:
    """Run ``train`` / ``recommend``, which live in ``models`` and need torch."""
    try:
        module = importlib.import_module(MODELS_COMMANDS[name])
    except ImportError as error:
        print(
            f"secagg: error: '{name}' needs the models extra: pip install 'secagg[models]' "
            f"({error})",
            file=sys.stderr,
        )
        return 2
    add_arguments: Callable[[argparse.ArgumentParser], None] = module.add_arguments
    run: Callable[[argparse.Namespace], int] = module.run
    parser = argparse.ArgumentParser(prog=f"secagg {name}")
    add_arguments(parser)
    return run(parser.parse_args(rest))
