"""A Flower node's claim of its roster client id, and the key-file command.

Flower assigns node ids when SuperNodes connect, so the server cannot know in advance which node
speaks for which roster client. A node therefore claims its client id with a signature of its
identity key over the run's session, its Flower node id and the client id
(:func:`sign_claim`); the server checks the claim against the roster (:func:`check_claim`), so a
node can claim no other client's id. The claim grants nothing the protocol would not check
again: every key advertisement is still signed and checked by every peer.

The key files themselves live in :mod:`protocols.keyfiles` (re-exported here), the Paillier
decryptors' keys included; ``python -m protocols.flower DIRECTORY --clients N [--decryptors M]``
and ``secagg keys`` (the same options) write them.
"""

from __future__ import annotations

import argparse
import struct
from collections.abc import Sequence
from typing import Final

from protocols.cli.keys import add_keys_arguments, run_keys
from protocols.identity import TrustedRoster
from protocols.keyfiles import (
    IDENTITY_KEY_HEADER,
    PAILLIER_PUBLIC_FILE,
    ROSTER_FILE,
    DeploymentKeys,
    NodeIdentity,
    PaillierKeyFiles,
    decryptor_file_name,
    key_file_name,
    load_decryptors,
    load_identity,
    load_node_identity,
    load_paillier_public,
    save_identity,
    write_deployment_keys,
)
from secagg.errors import ParameterError
from secagg.hazmat.sign import SignaturePurpose, bound_message, sign

__all__ = [
    "IDENTITY_KEY_HEADER",
    "PAILLIER_PUBLIC_FILE",
    "ROSTER_FILE",
    "DeploymentKeys",
    "NodeIdentity",
    "PaillierKeyFiles",
    "check_claim",
    "claim_message",
    "decryptor_file_name",
    "key_file_name",
    "load_decryptors",
    "load_identity",
    "load_node_identity",
    "load_paillier_public",
    "main",
    "save_identity",
    "sign_claim",
    "write_deployment_keys",
]

_NODE_ID: Final = struct.Struct(">Q")
#: A claim holds for the whole run: it is bound to the session, under round 0.
_CLAIM_ROUND: Final = 0


def claim_message(session_id: bytes, node_id: int, client_id: int) -> bytes:
    """The bytes a node signs to claim ``client_id`` for Flower node ``node_id`` in a session.

    Raises:
        ParameterError: a session id that is not 16 bytes, or ids outside their ranges.
    """
    if not isinstance(node_id, int) or not 0 <= node_id < 2**64:
        raise ParameterError("node_id must fit in 64 bits")
    return bound_message(
        SignaturePurpose.NODE_CLAIM, session_id, _CLAIM_ROUND, client_id, _NODE_ID.pack(node_id)
    )


def sign_claim(node: NodeIdentity, session_id: bytes, node_id: int) -> bytes:
    """The node's signature claiming its client id for ``node_id`` in this session."""
    return sign(node.identity, claim_message(session_id, node_id, node.client_id))


def check_claim(
    roster: TrustedRoster, session_id: bytes, node_id: int, client_id: int, signature: bytes
) -> None:
    """Check that ``client_id``'s identity key signed its claim for ``node_id``.

    Raises:
        InvalidSignatureError: the client is not on the roster, or the signature is bad.
        ParameterError: ids outside their ranges.
    """
    roster.check_signature(client_id, claim_message(session_id, node_id, client_id), signature)


# -- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m protocols.flower DIRECTORY --clients N``: write a deployment's keys.

    It takes the options of ``secagg keys`` (:mod:`protocols.cli.keys`), ``--decryptors M``
    for the Paillier keys included.

    Returns:
        The exit status (0, or 2 when the keys could not be written).
    """
    parser = argparse.ArgumentParser(
        prog="python -m protocols.flower",
        description="Write a trusted roster, one identity key file per client and, with "
        "--decryptors, the Paillier keys (as secagg keys does).",
    )
    add_keys_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_keys(args)
    except ParameterError as error:
        parser.exit(2, f"error: {error}\n")
