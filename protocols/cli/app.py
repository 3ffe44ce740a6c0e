"""The ``secagg`` command: its top-level parser, dispatch, and how errors reach the user.

``demo`` and ``bench`` live in ``protocols``. ``train`` and ``recommend`` live in
``models.commands`` and need torch (the ``models`` extra); ``protocols`` must never import
``models`` statically (imports flow secagg <- protocols <- models), so they are reached through
:func:`importlib.import_module` when one of them runs, and their options are parsed by their own
modules. This keeps ``secagg demo`` fast and working without the optional extras.

:func:`main` is the one place that turns a :class:`~secagg.errors.SecAggError` into
``secagg <command>: error: ...`` on stderr with exit status 2: the same prefix as argparse's own
usage errors of that subcommand (which exit with status 2 by themselves), and plain
``secagg: error:`` only when no subcommand was named.

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
from protocols.cli import demo, keys
from protocols.cli.bench import add_bench_arguments, run_bench
from protocols.cli.demo import add_demo_arguments, run_demo
from protocols.cli.keys import add_keys_arguments, run_keys
from secagg.errors import PackageShadowedError, SecAggError

__all__ = [
    "COMMANDS",
    "DESCRIPTION",
    "EPILOG",
    "MODELS_COMMANDS",
    "build_parser",
    "command_prog",
    "main",
]

#: Commands implemented under ``models`` (they need torch): name -> module. Each module has
#: ``add_arguments(parser)`` and ``run(args) -> int``.
MODELS_COMMANDS: Final[dict[str, str]] = {
    "train": "models.commands.train",
    "recommend": "models.commands.recommend",
}
#: ``secagg --help``'s text above and below the list of commands.
DESCRIPTION: Final = """\
Secure aggregation for federated recommenders: a server learns the sum of the
clients' updates and nothing else. Run one round and see what the server saw
(demo), measure each protocol's cost (bench), deal a deployment's keys (keys),
train a recommender over a secure backend (train) and serve it (recommend).
Every command has its own --help."""
EPILOG: Final = """\
examples:
  secagg demo --clients 20 --dim 1000
  secagg train --protocol secagg+ --rounds 10"""
#: Every subcommand of ``secagg``.
COMMANDS: Final = ("demo", "bench", "keys", *MODELS_COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    """The ``secagg`` parser with its ``demo``, ``bench`` and ``keys`` subcommands.

    ``train`` and ``recommend`` appear in the help only; :func:`main` hands their options to
    their own modules before this parser sees them.

    Returns:
        The parser.
    """
    return _build_parsers()[0]


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``secagg`` parser, and its subcommands' parsers by name."""
    parser = argparse.ArgumentParser(
        prog="secagg",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"secagg {secagg.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_demo_arguments(
        commands.add_parser(
            "demo",
            help="run one secure-aggregation round in-process and explain it",
            description=demo.DESCRIPTION,
            epilog=demo.EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    add_bench_arguments(
        commands.add_parser(
            "bench",
            help="measure the overhead of each protocol against a plain sum",
        )
    )
    add_keys_arguments(
        commands.add_parser(
            "keys",
            help="write a roster and identity key files for an active-model deployment",
            description=keys.DESCRIPTION,
            epilog=keys.EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    # train and recommend need torch (the 'models' extra); their options are parsed lazily.
    commands.add_parser("train", help="federated training of a recommender on a secure backend")
    commands.add_parser("recommend", help="top-K items for a user from a training checkpoint")
    return parser, dict(commands.choices)


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
        print(f"{command_prog(arguments)}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output left (``| head``): not a failure of the command.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def command_prog(arguments: Sequence[str]) -> str:
    """The name errors of this command line start with: ``secagg demo``, or ``secagg``.

    The top-level parser takes no option with a value, so a subcommand, when there is one, is
    the first argument.

    Args:
        arguments: the arguments after the program name.

    Returns:
        ``secagg <command>`` when ``arguments`` name a subcommand, else ``secagg``.
    """
    if arguments and arguments[0] in COMMANDS:
        return f"secagg {arguments[0]}"
    return "secagg"


def _dispatch(arguments: list[str]) -> int:
    if arguments and arguments[0] in MODELS_COMMANDS:
        return _models_command(arguments[0], arguments[1:])
    parser, subcommands = _build_parsers()
    args, unknown = parser.parse_known_args(arguments)
    if unknown:
        # The subcommand's own parser reports them, with its prefix (``secagg demo: error:``).
        subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
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
    except PackageShadowedError:
        raise  # a clash of package names, not a missing extra: main() prints it
    except ImportError as error:
        print(
            f"secagg {name}: error: this command needs the models extra: pip install "
            f"'secagg[models]' ({error})",
            file=sys.stderr,
        )
        return 2
    add_arguments: Callable[[argparse.ArgumentParser], None] = module.add_arguments
    run: Callable[[argparse.Namespace], int] = module.run
    # A command module may give its --help a DESCRIPTION and an EPILOG (pre-wrapped text).
    parser = argparse.ArgumentParser(
        prog=f"secagg {name}",
        description=getattr(module, "DESCRIPTION", None),
        epilog=getattr(module, "EPILOG", None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(rest))
