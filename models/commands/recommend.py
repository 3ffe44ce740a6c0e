"""``secagg recommend``: top-K unseen items for one user from a ``secagg train --save`` checkpoint.

The command serves from the simulated client's own user state (the checkpoint holds every
client's, see :mod:`models.commands.checkpoint`) and leaves out the items the user interacted
with in training. It prints a ranked list, or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.commands.checkpoint import load_checkpoint
from models.recommend import Recommendations, top_k_items
from protocols.cli.arguments import positive_int
from secagg.errors import ParameterError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``secagg recommend`` options to ``parser``.

    Args:
        parser: the parser to extend.
    """
    parser.add_argument("--checkpoint", type=Path, required=True, help="from secagg train --save")
    parser.add_argument("--user", type=int, required=True)
    parser.add_argument("-k", "--top", type=positive_int, default=10)
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Print the top-K unseen items for ``args.user``.

    Args:
        args: the namespace :func:`add_arguments` describes.

    Returns:
        0.

    Raises:
        ParameterError: no checkpoint at the path, or a user the checkpoint does not hold.
    """
    if not args.checkpoint.is_file():
        raise ParameterError(f"no checkpoint at {args.checkpoint}; run secagg train --save first")
    checkpoint = load_checkpoint(args.checkpoint)
    if not 0 <= args.user < checkpoint.num_users:
        raise ParameterError(f"user {args.user} is not in [0, {checkpoint.num_users})")
    top = top_k_items(
        checkpoint.model,
        checkpoint.user_states[args.user],
        args.top,
        exclude=checkpoint.seen[args.user],
    )
    if args.json:
        _print_json(args.user, top)
    else:
        _print_list(args.user, top)
    return 0


def _print_json(user: int, top: Recommendations) -> None:
    print(
        json.dumps(
            {"user": user, "items": top.items.tolist(), "scores": [float(s) for s in top.scores]}
        )
    )


def _print_list(user: int, top: Recommendations) -> None:
    print(f"top {len(top.items)} unseen items for user {user}:")
    for rank, (item, score) in enumerate(zip(top.items, top.scores, strict=True), start=1):
        print(f"  {rank:>2}. item {int(item):>6}  score {float(score):.4f}")
