"""The key files of an active-model deployment: identity private keys and the roster file.

Why this module exists: against an active server, a client trusts only what it holds locally: its
Ed25519 identity key and the trusted roster (:class:`~protocols.identity.TrustedRoster`), like
Flower's list of authorised node keys. Someone other than the server (the deployment's operator)
creates them once, hands each client its private key file and every client and the server the
same roster file. :func:`write_deployment_keys` does that setup (``secagg keys DIR --clients N``
on the command line); :func:`load_node_identity` is how a client reads its two files back.

A private key file holds one comment line and the 32 raw private bytes in hex, and must be
readable by its owner only (mode 0600, as ssh requires of its keys).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization

from protocols.identity import TrustedRoster, trusted_setup
from secagg.errors import ParameterError
from secagg.hazmat.sign import IdentityKey, identity_from_private_bytes

__all__ = [
    "IDENTITY_KEY_HEADER",
    "ROSTER_FILE",
    "DeploymentKeys",
    "NodeIdentity",
    "key_file_name",
    "load_identity",
    "load_node_identity",
    "save_identity",
    "write_deployment_keys",
]

IDENTITY_KEY_HEADER: Final = "# secagg identity key v1: the private key of one client, keep secret"
#: The roster's file name in a directory written by :func:`write_deployment_keys`.
ROSTER_FILE: Final = "roster.txt"


def key_file_name(client_id: int) -> str:
    """The private key file name of ``client_id`` (``client-<id>.key``)."""
    return f"client-{client_id}.key"


@dataclass(frozen=True, slots=True)
class DeploymentKeys:
    """What :func:`write_deployment_keys` wrote.

    Attributes:
        roster_path: the roster file (public: give it to every node and to the server).
        key_paths: client id -> its private key file (give each to its node only).
    """

    roster_path: Path
    key_paths: dict[int, Path]


@dataclass(frozen=True, slots=True, eq=False)
class NodeIdentity:
    """A node's trust anchor in the active model: its identity key, its id and the roster.

    Attributes:
        client_id: the roster id whose public key is ``identity``'s.
        identity: the node's Ed25519 identity key.
        roster: the trusted roster, read from the node's own file.
    """

    client_id: int
    identity: IdentityKey
    roster: TrustedRoster


def save_identity(path: str | Path, key: IdentityKey) -> None:
    """Write ``key`` to a new private key file readable by its owner only (mode 0600).

    Raises:
        ParameterError: the file exists already (a key is never overwritten) or cannot be made.
    """
    raw = key.private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    text = f"{IDENTITY_KEY_HEADER}\n{raw.hex()}\n".encode("ascii")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise ParameterError(f"cannot create the key file {path}: {error}") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(text)


def load_identity(path: str | Path) -> IdentityKey:
    """Read a private key file written by :func:`save_identity`.

    Raises:
        ParameterError: the file is missing, readable by others than its owner, or malformed.
    """
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ParameterError(f"cannot read the identity key file {path}: {error}") from None
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        raise ParameterError(
            f"the identity key file {path} is accessible by other users: chmod 600 {path}"
        )
    lines = [line.strip() for line in text.splitlines()]
    values = [line for line in lines if line and not line.startswith("#")]
    if not lines or lines[0] != IDENTITY_KEY_HEADER or len(values) != 1:
        raise ParameterError(f"{path} is not a secagg identity key file")
    try:
        raw = bytes.fromhex(values[0])
    except ValueError:
        raise ParameterError(f"{path}: the key is not hex") from None
    try:
        return identity_from_private_bytes(raw)
    except ParameterError as error:
        raise ParameterError(f"{path}: {error}") from None


def load_node_identity(key_path: str | Path, roster_path: str | Path) -> NodeIdentity:
    """A node's identity key and roster, and its client id: the roster entry of its key.

    Raises:
        ParameterError: a file is unusable, or the key is not on the roster.
    """
    identity = load_identity(key_path)
    roster = TrustedRoster.load(roster_path)
    owners = [c for c, key in roster.keys.items() if key == identity.public_bytes]
    if not owners:
        raise ParameterError(
            f"the identity key {key_path} belongs to no client of the roster {roster_path}"
        )
    return NodeIdentity(owners[0], identity, roster)


def write_deployment_keys(
    directory: str | Path,
    client_ids: Iterable[int],
    *,
    degree: int | None = None,
    threshold: int | None = None,
) -> DeploymentKeys:
    """Play the trusted setup of a deployment: one key file per client and the roster file.

    Writes ``client-<id>.key`` (mode 0600) for each client and :data:`ROSTER_FILE` into
    ``directory`` (created with mode 0700 if missing). Nothing is overwritten.

    Args:
        directory: where the files go.
        client_ids: the roster's client ids (at least 2, distinct, in [0, 2^32 - 2]).
        degree: the SecAgg+ degree every round must use (``None``: the complete graph); the
            roster pins it, so the server cannot give clients different neighbourhood sizes.
        threshold: the least threshold the roster pins (``None``: the clients' own minimum).

    Returns:
        The paths written.

    Raises:
        ParameterError: fewer than 2 ids, a bad id, or a file that exists already.
    """
    ids = list(client_ids)
    if len(set(ids)) != len(ids):
        raise ParameterError("the client ids of a deployment must be distinct")
    roster, identities = trusted_setup(ids, degree=degree, threshold=threshold)
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    targets = [folder / ROSTER_FILE, *(folder / key_file_name(c) for c in roster.ids)]
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        raise ParameterError(f"refusing to overwrite {', '.join(existing)}")
    key_paths = {}
    for client, identity in identities.items():
        key_paths[client] = folder / key_file_name(client)
        save_identity(key_paths[client], identity)
    roster.save(folder / ROSTER_FILE)
    return DeploymentKeys(folder / ROSTER_FILE, key_paths)
