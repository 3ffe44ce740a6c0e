"""X25519 key agreement and HKDF-SHA256 key derivation bound to the protocol context.

Every symmetric key in the protocol comes out of :func:`derive_key`, whose HKDF ``info`` encodes
a version tag, the purpose, the session id, the round and *both* party ids. A key derived for
one (session, round, pair, purpose) is therefore independent of every other, which is what lets
the PRG and AES-GCM layers use fixed or random nonces without reuse (Bonawitz et al. 2017 use a
single KA output per pair; binding the context is our hardening).
"""

from __future__ import annotations

import enum
import functools
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.errors import InvalidCiphertextError, ParameterError

__all__ = [
    "PUBLIC_KEY_BYTES",
    "SESSION_ID_BYTES",
    "KeyPair",
    "Purpose",
    "agree",
    "check_public_key",
    "derive_key",
    "generate_keypair",
    "hkdf_sha256",
    "keypair_from_private_bytes",
]

PUBLIC_KEY_BYTES: Final = 32
PRIVATE_KEY_BYTES: Final = 32
SESSION_ID_BYTES: Final = 16
_INFO_TAG: Final = b"secagg/v1"
_MAX_ID: Final = 2**32 - 1
_MAX_ROUND: Final = 2**64 - 1


class Purpose(enum.Enum):
    """What a derived key is for; part of the HKDF info so keys never cross purposes."""

    PAIRWISE_MASK = b"pairwise-mask"
    SELF_MASK = b"self-mask"
    SHARE_ENCRYPTION = b"share-encryption"


@dataclass(frozen=True, slots=True, repr=False)
class KeyPair:
    """An X25519 key pair. The key object is kept so each agreement costs one scalar product."""

    private_key: X25519PrivateKey
    public_bytes: bytes

    @property
    def private_bytes(self) -> bytes:
        """The raw 32-byte private scalar (what gets Shamir-shared)."""
        return self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"KeyPair(public_bytes={self.public_bytes.hex()}, private_key=<hidden>)"


def generate_keypair() -> KeyPair:
    """Return a fresh X25519 key pair from the operating system's CSPRNG."""
    return _to_keypair(X25519PrivateKey.generate())


def keypair_from_private_bytes(private_bytes: bytes) -> KeyPair:
    """Rebuild a key pair from a raw private scalar (after Shamir reconstruction)."""
    if not isinstance(private_bytes, bytes) or len(private_bytes) != PRIVATE_KEY_BYTES:
        raise ParameterError(f"an X25519 private key is {PRIVATE_KEY_BYTES} bytes")
    return _to_keypair(X25519PrivateKey.from_private_bytes(private_bytes))


def _to_keypair(private: X25519PrivateKey) -> KeyPair:
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return KeyPair(private_key=private, public_bytes=public)


def agree(private: KeyPair | bytes, peer_public_bytes: bytes) -> bytes:
    """Return the raw X25519 shared secret; a low-order peer key raises InvalidCiphertextError.

    Pass the :class:`KeyPair` where you have it: rebuilding a key from raw bytes costs a
    second scalar multiplication.
    """
    if not isinstance(peer_public_bytes, bytes) or len(peer_public_bytes) != PUBLIC_KEY_BYTES:
        raise InvalidCiphertextError("invalid public key")
    key = private.private_key if isinstance(private, KeyPair) else _private_from_bytes(private)
    try:
        return key.exchange(X25519PublicKey.from_public_bytes(peer_public_bytes))
    except (ValueError, UnsupportedAlgorithm):
        # cryptography refuses an all-zero shared secret (a small-order point); say nothing more.
        raise InvalidCiphertextError("invalid public key") from None


def check_public_key(public_bytes: bytes) -> None:
    """Refuse a public key that no honest party advertises: wrong length or a low-order point.

    A low-order point makes every agreement with it the all-zero secret, which
    :func:`agree` refuses; checking an advertised key once, against a probe key, lets a
    server turn it away before any peer fails on it. The probe's secret protects nothing, so
    one probe serves every check.

    Raises:
        InvalidCiphertextError: the key is malformed or of low order.
    """
    agree(_probe_key(), public_bytes)


@functools.cache
def _probe_key() -> KeyPair:
    return generate_keypair()


def _private_from_bytes(private_bytes: bytes) -> X25519PrivateKey:
    if not isinstance(private_bytes, bytes) or len(private_bytes) != PRIVATE_KEY_BYTES:
        raise ParameterError(f"an X25519 private key is {PRIVATE_KEY_BYTES} bytes")
    return X25519PrivateKey.from_private_bytes(private_bytes)


def hkdf_sha256(secret: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """Plain HKDF-SHA256 (RFC 5869); exposed for known-answer tests of our use of it."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def derive_key(
    secret: bytes,
    *,
    purpose: Purpose,
    session_id: bytes,
    round_id: int,
    party_a: int,
    party_b: int,
    length: int = 16,
) -> bytes:
    """Derive a key from ``secret`` bound to (purpose, session, round, party_a, party_b).

    For a pairwise key pass the two ids in either order: they are sorted, so both ends derive
    the same key. For a per-party key (the self-mask) pass the owner twice.
    """
    if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_BYTES:
        raise ParameterError(f"session_id must be {SESSION_ID_BYTES} bytes")
    if not 16 <= length <= 64:
        raise ParameterError(f"derived keys here are 16 to 64 bytes, not {length}")
    if not 0 <= round_id <= _MAX_ROUND:
        raise ParameterError(f"round_id must be in [0, 2^64), got {round_id}")
    for party in (party_a, party_b):
        if not 0 <= party <= _MAX_ID:
            raise ParameterError(f"party ids must be in [0, 2^32), got {party}")
    low, high = sorted((party_a, party_b))
    info = (
        _INFO_TAG
        + struct.pack(">B", len(purpose.value))
        + purpose.value
        + session_id
        + struct.pack(">QII", round_id, low, high)
    )
    return hkdf_sha256(secret, salt=None, info=info, length=length)
