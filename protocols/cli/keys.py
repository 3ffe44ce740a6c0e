"""``secagg keys``: play the trusted setup of a deployment, on the command line.

Why this module exists: against an active server, every client needs its own identity key file
and the same roster file before the first round, and under Paillier the decryptors' public key
too; they must come from someone other than the server. This command writes them
(:func:`protocols.keyfiles.write_deployment_keys`): one ``client-<id>.key`` per client (mode
0600, give each to its client only) and ``roster.txt`` (public, give it to every client and to
the server). With ``--decryptors M`` it also deals the Paillier keys: ``paillier-public.key``
(public, every client pins it) and one secret file per decryptor (mode 0600: the single key
holder's ``paillier-key-holder.key``, or ``paillier-decryptor-<i>.key`` per committee member).
"""

from __future__ import annotations

import argparse

from protocols.cli.arguments import positive_int
from protocols.keyfiles import write_deployment_keys
from secagg.errors import ParameterError
from secagg.hazmat.paillier import SUPPORTED_KEY_BITS

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
    parser.add_argument(
        "--decryptors",
        type=positive_int,
        default=None,
        help="also deal Paillier keys for M decryptors (1: a single key holder)",
    )
    parser.add_argument(
        "--decryption-threshold",
        type=positive_int,
        default=None,
        help="Paillier: T of the M decryptors decrypt together (default: a majority)",
    )
    parser.add_argument(
        "--key-bits",
        type=int,
        choices=sorted(SUPPORTED_KEY_BITS),
        default=2048,
        help="Paillier key size (default 2048)",
    )


def run_keys(args: argparse.Namespace) -> int:
    """Write the roster, the key files and any Paillier keys; print where they went.

    Returns:
        0 once every file is written.

    Raises:
        ParameterError: neither or both of ``--clients`` and ``--ids``, bad ids, a bad
            committee, or a file that exists already (nothing is overwritten).
    """
    if (args.clients is None) == (args.ids is None):
        raise ParameterError("give exactly one of --clients N and --ids ID [ID ...]")
    if args.decryptors is None and args.decryption_threshold is not None:
        raise ParameterError("--decryption-threshold needs --decryptors M")
    ids = list(range(args.clients)) if args.clients is not None else list(args.ids)
    written = write_deployment_keys(
        args.directory,
        ids,
        degree=args.degree,
        threshold=args.threshold,
        decryptors=args.decryptors,
        decryption_threshold=args.decryption_threshold,
        key_bits=args.key_bits,
    )
    print(f"roster (give it to every client and to the server): {written.roster_path}")
    for client, path in written.key_paths.items():
        print(f"client {client} (give it to this client only): {path}")
    if written.paillier is not None:
        print(f"Paillier public key (every client pins it): {written.paillier.public_path}")
        for index, path in written.paillier.secret_paths.items():
            print(f"decryptor {index} (give it to this decryptor only): {path}")
    return 0
