"""``secagg recommend``: top-K unseen items for one user from a ``secagg train --save`` checkpoint.

The command serves from the simulated client's own user state (the checkpoint holds every
client's, see :mod:`models.commands.checkpoint`) and leaves out the items the user interacted
with in training. Users and items are named by the data file's own ids: ``--user 200`` is the
user the file calls 200, and the items printed are the file's item ids. The model's 0-based
internal indices appear only where asked for: ``--user-index``, and the ``user_index`` and
``item_indices`` fields of ``--json``. It prints a ranked list, or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.commands.checkpoint import Checkpoint, load_checkpoint
from models.recommend import Recommendations, top_k_items
from secagg.errors import ParameterError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``secagg recommend`` options to ``parser``.

    Args:
        parser: the parser to extend.
    """
    parser.description = (
        "Top-K items a user has not interacted with, from a secagg train --save checkpoint. "
        "Users and items are named by the data file's own ids."
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="from secagg train --save")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--user", type=int, metavar="ID", help="the user's id as in the data file (e.g. 200)"
    )
    who.add_argument(
        "--user-index",
        type=int,
        metavar="INDEX",
        help="the user's 0-based internal index instead (the user_index of --json)",
    )
    parser.add_argument(
        "-k",
        "--top",
        type=int,
        default=10,
        metavar="K",
        help="how many items, from 1 to the number of items (default 10)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: user, user_index, items, item_indices, scores, id_maps",
    )


def run(args: argparse.Namespace) -> int:
    """Print the top-K unseen items for the user ``args.user`` (or ``args.user_index``).

    A checkpoint written before id maps were saved is served with the identity map, and a note
    on stderr says so.

    Args:
        args: the namespace :func:`add_arguments` describes.

    Returns:
        0.

    Raises:
        ParameterError: no checkpoint at the path, a user the checkpoint does not hold, or a
            ``-k`` below 1 or above the number of items.
    """
    if args.top < 1:
        raise ParameterError(f"-k/--top {args.top}: must be a positive integer")
    if not args.checkpoint.is_file():
        raise ParameterError(f"no checkpoint at {args.checkpoint}; run secagg train --save first")
    checkpoint = load_checkpoint(args.checkpoint)
    if not checkpoint.has_id_maps:
        print(
            f"secagg recommend: note: {args.checkpoint} was written before checkpoints kept "
            "the data's ids; "
            "users and items are shown by their 0-based internal index",
            file=sys.stderr,
        )
    index = _user_index(args, checkpoint)
    num_items = checkpoint.model.num_items
    if args.top > num_items:
        raise ParameterError(f"-k/--top {args.top}: the checkpoint knows only {num_items} items")
    top = top_k_items(
        checkpoint.model, checkpoint.user_states[index], args.top, exclude=checkpoint.seen[index]
    )
    if args.json:
        _print_json(checkpoint, index, top)
    else:
        _print_list(checkpoint, index, top)
    return 0


def _user_index(args: argparse.Namespace, checkpoint: Checkpoint) -> int:
    """The internal index of the user the command line names, by id or by ``--user-index``."""
    if args.user_index is None:
        return checkpoint.user_index(args.user)
    if not 0 <= args.user_index < checkpoint.num_users:
        raise ParameterError(
            f"--user-index {args.user_index} is not in 0..{checkpoint.num_users - 1} (the "
            f"checkpoint knows {checkpoint.num_users} users)"
        )
    return int(args.user_index)


def _print_json(checkpoint: Checkpoint, index: int, top: Recommendations) -> None:
    print(
        json.dumps(
            {
                "user": int(checkpoint.user_ids[index]),
                "user_index": index,
                "items": checkpoint.original_item_ids(top.items).tolist(),
                "item_indices": top.items.tolist(),
                "scores": [float(s) for s in top.scores],
                "id_maps": checkpoint.has_id_maps,
            }
        )
    )


def _print_list(checkpoint: Checkpoint, index: int, top: Recommendations) -> None:
    items = checkpoint.original_item_ids(top.items)
    print(f"top {len(items)} unseen items for user {int(checkpoint.user_ids[index])}:")
    for rank, (item, score) in enumerate(zip(items, top.scores, strict=True), start=1):
        print(f"  {rank:>2}. item {int(item):>6}  score {float(score):.4f}")
