"""``secagg keys``: play the trusted setup of an active-model deployment, on the command line.

Why this module exists: against an active server, every client needs its own identity key file
and the same roster file before the first round, and they must come from someone other than the
server. This command writes them (:func:`protocols.keyfiles.write_deployment_keys`): one
``client-<id>.key`` per client (mode 0600, give each to its client only) and ``roster.txt``
(public, give it to every client and to the server).
"""

from __future__ import annotations

import argparse

from protocols.cli.arguments import positive_int
from protocols.keyfiles import write_deployment_keys
from secagg.errors import ParameterError

__all__ = ["add_keys_arguments", "run_keys"]


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``secagg keys``'s options to ``parser``.

    Args:
        parser: the (sub)parser to extend.
    """
    parser.add_argument("directory", help="where the files go (created, mode 0700, if missing)")
    parser.add_argument(
        "--clients", type=positive_int, default=None, help="clients 0 .. N-1 (or give --ids)"
    )
    parser.add_argument(
        "--ids", type=int, nargs="+", default=None, help="the clients' ids, instead of --clients"
    )
    parser.add_argument(
        "--degree",
        type=positive_int,
        default=None,
        help="the SecAgg+ degree every round must use (default: the complete graph, SecAgg)",
    )
    parser.add_argument(
        "--threshold", type=positive_int, default=None, help="the least threshold clients accept"
    )


def run_keys(args: argparse.Namespace) -> int:
    """Write the roster and the key files; print where they went.

    Returns:
        0 once every file is written.

    Raises:
        ParameterError: neither or both of ``--clients`` and ``--ids``, bad ids, or a file that
            exists already (nothing is overwritten).
    """
    if (args.clients is None) == (args.ids is None):
        raise ParameterError("give exactly one of --clients N and --ids ID [ID ...]")
    ids = list(range(args.clients)) if args.clients is not None else list(args.ids)
    written = write_deployment_keys(
        args.directory, ids, degree=args.degree, threshold=args.threshold
    )
    print(f"roster (give it to every client and to the server): {written.roster_path}")
    for client, path in written.key_paths.items():
        print(f"client {client} (give it to this client only): {path}")
    return 0
