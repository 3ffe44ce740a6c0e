"""The key files of a deployment: identity keys, the roster, and the Paillier decryptors' keys.

Why this module exists: against an active server, a client trusts only what it holds locally: its
Ed25519 identity key and the trusted roster (:class:`~protocols.identity.TrustedRoster`), like
Flower's list of authorised node keys; under Paillier it also pins the decryptors' public key,
which the server must never be the one to hand out. Someone other than the server (the
deployment's operator) creates these files once, hands each client its private key file, every
client and the server the roster and the Paillier public key, and each decryptor its own secret
file. :func:`write_deployment_keys` does that setup (``secagg keys DIR --clients N
[--decryptors M]`` on the command line); :func:`load_node_identity`,
:func:`load_paillier_public` and :func:`load_decryptors` read them back.

File formats (ASCII text, version 1). Every key file is one header line, which names the kind and
the version, then one line of hex:

- ``client-<id>.key`` (secret, mode 0600): the 32 raw Ed25519 private bytes.
- ``paillier-public.key`` (public): a committee's key is
  :meth:`~secagg.hazmat.paillier.ThresholdPublicKey.to_bytes` (it opens with ``STPK``); a
  single key holder's is ``SPPK``, the version byte 1, then n (big-endian, no leading zero).
- ``paillier-decryptor-<i>.key`` (secret, mode 0600): committee member i's
  :meth:`~secagg.hazmat.paillier.DecryptionKeyShare.to_bytes` (``STKS``; it holds the public
  key, and the share is checked against its verification key when read).
- ``paillier-key-holder.key`` (secret, mode 0600), the committee of one: ``SPKP``, the version
  byte 1, the byte length L of a prime (2 bytes), then p and q in L bytes each.

A secret file must be readable by its owner only (as ssh requires of its keys), and no file is
ever overwritten: a second setup would orphan the keys already handed out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypedDict

import gmpy2
import phe
from cryptography.hazmat.primitives import serialization

from protocols.identity import TrustedRoster, trusted_setup
from protocols.paillier import Decryptor, KeyHolder, PaillierPublic, key_fingerprint
from secagg.errors import ParameterError
from secagg.hazmat.paillier import (
    DecryptionKeyShare,
    PaillierKeypair,
    ThresholdPublicKey,
    generate_threshold_keypair,
)
from secagg.hazmat.sign import IdentityKey, identity_from_private_bytes
from secagg.paillier_keys import generate_paillier_keypair

__all__ = [
    "IDENTITY_KEY_HEADER",
    "KEY_HOLDER_FILE",
    "KEY_HOLDER_HEADER",
    "KEY_SHARE_HEADER",
    "PAILLIER_PUBLIC_FILE",
    "PAILLIER_PUBLIC_HEADER",
    "ROSTER_FILE",
    "DeploymentKeys",
    "NodeIdentity",
    "PaillierKeyFiles",
    "decryptor_file_name",
    "key_file_name",
    "load_decryptors",
    "load_identity",
    "load_key_holder",
    "load_key_share",
    "load_node_identity",
    "load_paillier_public",
    "save_identity",
    "save_key_holder",
    "save_key_share",
    "save_paillier_public",
    "write_deployment_keys",
    "write_paillier_keys",
]

IDENTITY_KEY_HEADER: Final = "# secagg identity key v1: the private key of one client, keep secret"
PAILLIER_PUBLIC_HEADER: Final = (
    "# secagg paillier public key v1: the decryptors' public key, give it to every node"
)
KEY_SHARE_HEADER: Final = (
    "# secagg paillier key share v1: one decryptor's share of the secret key, keep secret"
)
KEY_HOLDER_HEADER: Final = (
    "# secagg paillier key holder v1: the single key holder's secret key, keep secret"
)
#: The roster's file name in a directory written by :func:`write_deployment_keys`.
ROSTER_FILE: Final = "roster.txt"
#: The Paillier public key's file name (what every node pins).
PAILLIER_PUBLIC_FILE: Final = "paillier-public.key"
#: The single key holder's secret key file name (a committee of one).
KEY_HOLDER_FILE: Final = "paillier-key-holder.key"

_SINGLE_PUBLIC_MAGIC: Final = b"SPPK"
_KEY_HOLDER_MAGIC: Final = b"SPKP"
_FORMAT_VERSION: Final = 1
_PRIME_ROUNDS: Final = 40


def key_file_name(client_id: int) -> str:
    """The private key file name of ``client_id`` (``client-<id>.key``)."""
    return f"client-{client_id}.key"


def decryptor_file_name(index: int) -> str:
    """The key share file name of committee member ``index`` (``paillier-decryptor-<i>.key``)."""
    return f"paillier-decryptor-{index}.key"


@dataclass(frozen=True, slots=True)
class PaillierKeyFiles:
    """What :func:`write_paillier_keys` wrote.

    Attributes:
        public_path: the public key (give it to every node and to the server).
        secret_paths: committee index -> its key share file, or ``{1: key holder file}`` for
            the single key holder (give each to its decryptor only).
    """

    public_path: Path
    secret_paths: dict[int, Path]


@dataclass(frozen=True, slots=True)
class DeploymentKeys:
    """What :func:`write_deployment_keys` wrote.

    Attributes:
        roster_path: the roster file (public: give it to every node and to the server).
        key_paths: client id -> its private key file (give each to its node only).
        paillier: the Paillier key files, when the setup dealt them.
    """

    roster_path: Path
    key_paths: dict[int, Path]
    paillier: PaillierKeyFiles | None = None


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


# -- one header line, one hex line --------------------------------------------------------------


def _write_key_file(path: str | Path, header: str, payload: bytes, *, secret: bool) -> None:
    """Create ``path`` (never overwrite) with the header and the payload in hex."""
    text = f"{header}\n{payload.hex()}\n".encode("ascii")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    except OSError as error:
        raise ParameterError(f"cannot create the key file {path}: {error}") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(text)


def _read_key_file(path: str | Path, header: str, what: str, *, secret: bool) -> bytes:
    """The payload of a file written by :func:`_write_key_file`; errors name the file."""
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ParameterError(f"cannot read the {what} file {path}: {error}") from None
    if secret and os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        raise ParameterError(
            f"the {what} file {path} is accessible by other users: chmod 600 {path}"
        )
    lines = [line.strip() for line in text.splitlines()]
    values = [line for line in lines if line and not line.startswith("#")]
    if not lines or lines[0] != header or len(values) != 1:
        raise ParameterError(f"{path} is not a secagg {what} file")
    try:
        return bytes.fromhex(values[0])
    except ValueError:
        raise ParameterError(f"{path}: the key is not hex") from None


# -- identity keys --------------------------------------------------------------------------------


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
    _write_key_file(path, IDENTITY_KEY_HEADER, raw, secret=True)


def load_identity(path: str | Path) -> IdentityKey:
    """Read a private key file written by :func:`save_identity`.

    Raises:
        ParameterError: the file is missing, readable by others than its owner, or malformed.
    """
    raw = _read_key_file(path, IDENTITY_KEY_HEADER, "identity key", secret=True)
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


# -- Paillier keys --------------------------------------------------------------------------------


def _int_bytes(value: int, length: int | None = None) -> bytes:
    return int(value).to_bytes(length or (int(value).bit_length() + 7) // 8, "big")


def save_paillier_public(path: str | Path, public: PaillierPublic) -> None:
    """Write the decryptors' public key to a new file (public, mode 0644).

    Raises:
        ParameterError: the file exists already or cannot be made.
    """
    if isinstance(public, ThresholdPublicKey):
        payload = public.to_bytes()
    else:
        payload = _SINGLE_PUBLIC_MAGIC + bytes([_FORMAT_VERSION]) + _int_bytes(public.n)
    _write_key_file(path, PAILLIER_PUBLIC_HEADER, payload, secret=False)


def load_paillier_public(path: str | Path) -> PaillierPublic:
    """Read a file written by :func:`save_paillier_public`: a committee's key or a phe key.

    Raises:
        ParameterError: the file is missing or malformed (the message names it).
    """
    payload = _read_key_file(path, PAILLIER_PUBLIC_HEADER, "Paillier public key", secret=False)
    try:
        if payload[:4] != _SINGLE_PUBLIC_MAGIC:
            return ThresholdPublicKey.from_bytes(payload)
        n = int.from_bytes(payload[5:], "big")
        if payload[4:5] != bytes([_FORMAT_VERSION]) or n.bit_length() < 1024 or n % 2 == 0:
            raise ParameterError("not a version-1 single key holder's key with an odd n")
        if n.bit_length() <= 8 * (len(payload) - 6):
            raise ParameterError("n has a leading zero byte")
        return phe.PaillierPublicKey(n)
    except ParameterError as error:
        raise ParameterError(f"{path}: {error}") from None


def save_key_share(path: str | Path, share: DecryptionKeyShare) -> None:
    """Write one committee member's key share to a new file readable by its owner only.

    Raises:
        ParameterError: the file exists already or cannot be made.
    """
    _write_key_file(path, KEY_SHARE_HEADER, share.to_bytes(), secret=True)


def load_key_share(path: str | Path) -> DecryptionKeyShare:
    """Read a file written by :func:`save_key_share`, checking the share against its key.

    Raises:
        ParameterError: the file is missing, readable by others, malformed, or its share does
            not match its verification key (the message names the file).
    """
    payload = _read_key_file(path, KEY_SHARE_HEADER, "Paillier key share", secret=True)
    try:
        return DecryptionKeyShare.from_bytes(payload)
    except ParameterError as error:
        raise ParameterError(f"{path}: {error}") from None


def save_key_holder(path: str | Path, keypair: PaillierKeypair) -> None:
    """Write the single key holder's secret key (p and q) to a new owner-only file.

    Raises:
        ParameterError: the file exists already or cannot be made.
    """
    p, q = int(keypair.private_key.p), int(keypair.private_key.q)
    length = (max(p, q).bit_length() + 7) // 8
    payload = b"".join(
        [
            _KEY_HOLDER_MAGIC,
            bytes([_FORMAT_VERSION]),
            length.to_bytes(2, "big"),
            _int_bytes(p, length),
            _int_bytes(q, length),
        ]
    )
    _write_key_file(path, KEY_HOLDER_HEADER, payload, secret=True)


def load_key_holder(path: str | Path) -> PaillierKeypair:
    """Read a file written by :func:`save_key_holder` (the key pair has no DJN parameters).

    Raises:
        ParameterError: the file is missing, readable by others, or does not hold two distinct
            primes of at least 512 bits (the message names the file).
    """
    payload = _read_key_file(path, KEY_HOLDER_HEADER, "Paillier key holder", secret=True)
    length = int.from_bytes(payload[5:7], "big")
    header_ok = payload[:5] == _KEY_HOLDER_MAGIC + bytes([_FORMAT_VERSION])
    if not header_ok or length < 64 or len(payload) != 7 + 2 * length:
        raise ParameterError(f"{path}: not a version-1 Paillier key holder's key")
    p = int.from_bytes(payload[7 : 7 + length], "big")
    q = int.from_bytes(payload[7 + length :], "big")
    if min(p, q).bit_length() < 512:
        raise ParameterError(f"{path}: the key holder's p and q must each have at least 512 bits")
    if p == q or not all(gmpy2.is_prime(x, _PRIME_ROUNDS) for x in (p, q)):
        raise ParameterError(f"{path}: the key holder's p and q are not two distinct primes")
    public = phe.PaillierPublicKey(p * q)
    return PaillierKeypair(public, phe.PaillierPrivateKey(public, p, q), None)


def _paillier_targets(folder: Path, decryptors: int) -> PaillierKeyFiles:
    secrets = (
        {1: folder / KEY_HOLDER_FILE}
        if decryptors == 1
        else {i: folder / decryptor_file_name(i) for i in range(1, decryptors + 1)}
    )
    return PaillierKeyFiles(folder / PAILLIER_PUBLIC_FILE, secrets)


def _refuse_existing(paths: Iterable[Path]) -> None:
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        raise ParameterError(f"refusing to overwrite {', '.join(existing)}")


def write_paillier_keys(
    directory: str | Path,
    *,
    decryptors: int = 1,
    threshold: int | None = None,
    key_bits: int = 2048,
) -> PaillierKeyFiles:
    """Deal the Paillier keys (trusted dealer): the public key file and one secret file each.

    ``decryptors=1`` writes the single key holder's :data:`KEY_HOLDER_FILE`; a committee of
    m > 1 gets one :func:`decryptor_file_name` share per member, of which any ``threshold``
    decrypt together. Files go into ``directory`` (created with mode 0700 if missing); secret
    files get mode 0600, and nothing is overwritten.

    Args:
        directory: where the files go.
        decryptors: the committee size m (1 .. 64).
        threshold: the committee's decryption threshold t (2 .. m; ``None``: a majority).
        key_bits: the size of n (2048 or 3072).

    Returns:
        The paths written.

    Raises:
        ParameterError: a bad committee or key size, or a file that exists already.
    """
    from protocols.aggregators.paillier import check_committee

    members, threshold = check_committee(decryptors, threshold)
    folder = Path(directory)
    targets = _paillier_targets(folder, members)
    _refuse_existing([targets.public_path, *targets.secret_paths.values()])
    public: PaillierPublic
    if members == 1:
        keypair = generate_paillier_keypair(key_bits)
        public = keypair.public_key
    else:
        public, shares = generate_threshold_keypair(
            key_bits, decryptors=members, threshold=threshold
        )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if members == 1:
        save_key_holder(targets.secret_paths[1], keypair)
    else:
        for share in shares:
            save_key_share(targets.secret_paths[share.index], share)
    save_paillier_public(targets.public_path, public)
    return targets


def write_deployment_keys(
    directory: str | Path,
    client_ids: Iterable[int],
    *,
    degree: int | None = None,
    threshold: int | None = None,
    decryptors: int | None = None,
    decryption_threshold: int | None = None,
    key_bits: int = 2048,
) -> DeploymentKeys:
    """Play the trusted setup of a deployment: one key file per client and the roster file.

    Writes ``client-<id>.key`` (mode 0600) for each client and :data:`ROSTER_FILE` into
    ``directory`` (created with mode 0700 if missing), and with ``decryptors`` the Paillier
    keys of :func:`write_paillier_keys` too. Nothing is overwritten.

    Args:
        directory: where the files go.
        client_ids: the roster's client ids (at least 2, distinct, in [0, 2^32 - 2]).
        degree: the SecAgg+ degree every round must use (``None``: the complete graph); the
            roster pins it, so the server cannot give clients different neighbourhood sizes.
        threshold: the least threshold the roster pins (``None``: the clients' own minimum).
        decryptors: also deal Paillier keys for m decryptors (1: a single key holder).
        decryption_threshold: t of the m decryptors decrypt together (``None``: a majority).
        key_bits: the Paillier key size.

    Returns:
        The paths written.

    Raises:
        ParameterError: fewer than 2 ids, a bad id or committee, or a file that exists already.
    """
    ids = list(client_ids)
    if len(set(ids)) != len(ids):
        raise ParameterError("the client ids of a deployment must be distinct")
    roster, identities = trusted_setup(ids, degree=degree, threshold=threshold)
    folder = Path(directory)
    targets = [folder / ROSTER_FILE, *(folder / key_file_name(c) for c in roster.ids)]
    if decryptors is not None:
        paillier = _paillier_targets(folder, decryptors)
        targets += [paillier.public_path, *paillier.secret_paths.values()]
    _refuse_existing(targets)
    written = None
    if decryptors is not None:
        written = write_paillier_keys(
            folder, decryptors=decryptors, threshold=decryption_threshold, key_bits=key_bits
        )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_paths = {}
    for client, identity in identities.items():
        key_paths[client] = folder / key_file_name(client)
        save_identity(key_paths[client], identity)
    roster.save(folder / ROSTER_FILE)
    return DeploymentKeys(folder / ROSTER_FILE, key_paths, written)


class _DecryptorOptions(TypedDict):
    """The keywords :class:`KeyHolder` and :class:`Decryptor` share."""

    session_id: bytes
    roster: TrustedRoster
    value_bits: int
    max_clients: int
    min_contributors: int
    processes: int | None


def load_decryptors(
    directory: str | Path,
    *,
    session_id: bytes,
    roster: TrustedRoster | str | Path,
    value_bits: int,
    max_clients: int,
    min_contributors: int = 2,
    processes: int | None = 1,
) -> list[KeyHolder | Decryptor]:
    """The decryptors whose secret files lie in ``directory``, checked against its public key.

    For a deployment that runs its decryptors in one process (a demo, a test): the key holder,
    or one :class:`~protocols.paillier.Decryptor` per share file present (at least the
    threshold of them). Arguments after ``directory`` are those of the two classes.

    Returns:
        The decryptors, ordered by committee index.

    Raises:
        ParameterError: a file is missing or unusable, a secret file belongs to another key
            than :data:`PAILLIER_PUBLIC_FILE`, or fewer than the threshold of shares are there.
    """
    folder = Path(directory)
    public = load_paillier_public(folder / PAILLIER_PUBLIC_FILE)
    options = _DecryptorOptions(
        session_id=session_id,
        roster=roster if isinstance(roster, TrustedRoster) else TrustedRoster.load(roster),
        value_bits=value_bits,
        max_clients=max_clients,
        min_contributors=min_contributors,
        processes=processes,
    )
    if not isinstance(public, ThresholdPublicKey):
        keypair = load_key_holder(folder / KEY_HOLDER_FILE)
        if keypair.public_key != public:
            raise ParameterError(
                f"{folder / KEY_HOLDER_FILE} holds another key than {PAILLIER_PUBLIC_FILE}"
            )
        return [KeyHolder(keypair, **options)]
    return [*_load_committee(folder, public, options)]


def _load_committee(
    folder: Path, public: ThresholdPublicKey, options: _DecryptorOptions
) -> list[Decryptor]:
    """One Decryptor per share file present in ``folder``; at least the threshold of them."""
    members = []
    for index in range(1, public.decryptors + 1):
        path = folder / decryptor_file_name(index)
        if not path.exists():
            continue
        share = load_key_share(path)
        if share.index != index or key_fingerprint(share.public) != key_fingerprint(public):
            raise ParameterError(f"{path} is not share {index} of {PAILLIER_PUBLIC_FILE}")
        members.append(Decryptor(share, **options))
    if len(members) < public.threshold:
        raise ParameterError(
            f"{folder} holds {len(members)} decryptor share files; the key needs "
            f"{public.threshold} of {public.decryptors}"
        )
    return members
