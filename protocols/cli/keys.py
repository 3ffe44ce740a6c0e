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
from typing import Final

from protocols.cli.arguments import check_committee_options, non_negative_int, positive_int
from protocols.keyfiles import write_deployment_keys
from protocols.messages import MAX_DECRYPTORS
from secagg.errors import ParameterError
from secagg.hazmat.paillier import SUPPORTED_KEY_BITS

__all__ = ["DESCRIPTION", "EPILOG", "add_keys_arguments", "run_keys"]

#: ``secagg keys --help``'s text above and below the options (pre-wrapped).
DESCRIPTION: Final = """\
Play the trusted setup of a deployment against an active server: write one
identity key file per client (mode 0600, give each to its client only) and the
public roster every client and the server get; with --decryptors, also deal the
Paillier keys. Run it somewhere the server has no access to."""
EPILOG: Final = """\
examples:
  secagg keys deployment --clients 10
  secagg keys deployment --ids 3 7 9 --decryptors 3"""


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``secagg keys``'s options to ``parser``.

    Args:
        parser: the (sub)parser to extend.
    """
    parser.add_argument(
        "directory",
        help="where the files go (created, mode 0700, if missing; nothing in it is overwritten)",
    )
    parser.add_argument(
        "--clients",
        metavar="N",
        type=positive_int,
        default=None,
        help="clients 0 .. N-1, at least 2 (or give --ids)",
    )
    parser.add_argument(
        "--ids",
        type=non_negative_int,
        nargs="+",
        default=None,
        metavar="ID",
        help="the clients' distinct ids, integers >= 0, instead of --clients",
    )
    parser.add_argument(
        "--degree",
        metavar="K",
        type=positive_int,
        default=None,
        help="the SecAgg+ degree every round must use: even, at least 2, below the number of "
        "clients (default: the complete graph, SecAgg)",
    )
    parser.add_argument(
        "--threshold",
        metavar="T",
        type=positive_int,
        default=None,
        help="the least threshold clients accept, at least 2 and at most --degree + 1 (or the "
        "number of clients) (default: the clients' own minimum)",
    )
    _add_paillier_arguments(parser)


def _add_paillier_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that also deal a deployment's Paillier keys."""
    parser.add_argument(
        "--decryptors",
        metavar="M",
        type=positive_int,
        default=None,
        help=f"also deal Paillier keys for M decryptors, 1 .. {MAX_DECRYPTORS} (1: a single "
        "key holder) (default: no Paillier keys)",
    )
    parser.add_argument(
        "--decryption-threshold",
        metavar="T",
        type=positive_int,
        default=None,
        help="Paillier: T of the M decryptors decrypt together, a majority: M/2 < T <= M "
        "(default: the smallest majority)",
    )
    parser.add_argument(
        "--key-bits",
        type=positive_int,
        choices=sorted(SUPPORTED_KEY_BITS),
        default=2048,
        help="Paillier: bits of the modulus n (default: %(default)s)",
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
    _check_roster_options(args, ids)
    if args.decryptors is not None:
        check_committee_options(args.decryptors, args.decryption_threshold)
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


def _check_roster_options(args: argparse.Namespace, ids: list[int]) -> None:
    """Refuse, naming the flags, a roster no round could run with."""
    count = "--clients" if args.clients is not None else "--ids"
    if len(ids) < 2:
        raise ParameterError(f"{count}: a deployment needs at least 2 clients, got {len(ids)}")
    if len(set(ids)) != len(ids):
        raise ParameterError("--ids: the clients' ids must be distinct")
    holders = len(ids)
    if args.degree is not None:
        if args.degree >= len(ids):
            raise ParameterError(
                f"--degree {args.degree} must be below the {len(ids)} clients ({count}): a "
                f"client has at most {len(ids) - 1} neighbours"
            )
        if args.degree < 2 or args.degree % 2:
            raise ParameterError(f"--degree {args.degree} must be even and at least 2")
        holders = args.degree + 1
    if args.threshold is not None and not 2 <= args.threshold <= holders:
        raise ParameterError(
            f"--threshold {args.threshold} must be in 2 .. {holders}: at least 2 (one share "
            f"must never reveal a key) and at most the {holders} share holders of a "
            "neighbourhood (a client and its neighbours)"
        )
