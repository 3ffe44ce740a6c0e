"""Ed25519 signatures (RFC 8032) for the clients' long-term identity keys, via ``cryptography``.

An identity key signs what a client says about a round (its advertised keys, the survivor set it
saw), so a server can neither substitute a peer's keys nor show clients different sets without
being caught. Every signature is bound by a domain-separated prefix to its purpose, the session,
the round and the signer (:func:`bound_message`), so a signature from one context never verifies
in another. Verification raises :class:`~secagg.errors.InvalidSignatureError` and never returns
a bool (pyca's ``verify`` style); a malformed key or signature fails the same way.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from secagg.errors import InvalidSignatureError, ParameterError
from secagg.hazmat.kex import SESSION_ID_BYTES

__all__ = [
    "IDENTITY_PUBLIC_KEY_BYTES",
    "SIGNATURE_BYTES",
    "IdentityKey",
    "SignaturePurpose",
    "bound_message",
    "generate_identity",
    "identity_from_private_bytes",
    "sign",
    "verify",
]

IDENTITY_PUBLIC_KEY_BYTES: Final = 32
IDENTITY_PRIVATE_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
_DOMAIN: Final = b"secagg/v1/sign/"
_CONTEXT: Final = struct.Struct(">16sQI")


class SignaturePurpose(enum.Enum):
    """What a signature vouches for; part of every signed message."""

    KEY_ADVERTISEMENT = "key-advertisement"
    CONSISTENCY = "consistency"
    #: A Flower node's claim of the roster client it speaks for (protocols.flower.keys).
    NODE_CLAIM = "node-claim"
    #: A Paillier client's upload: its ciphertexts, under one public key (protocols.paillier).
    ENCRYPTED_INPUT = "encrypted-input"


@dataclass(frozen=True, slots=True, eq=False)
class IdentityKey:
    """A client's long-term Ed25519 key pair (keep the private half on the client)."""

    private: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        """The 32-byte raw public key, as a trusted roster lists it."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )


def generate_identity() -> IdentityKey:
    """A fresh identity key from the operating system's randomness."""
    return IdentityKey(Ed25519PrivateKey.generate())


def identity_from_private_bytes(private_bytes: bytes) -> IdentityKey:
    """Rebuild an identity key from its 32 raw private bytes (RFC 8032 test vectors, storage).

    Raises:
        ParameterError: the key is not 32 bytes.
    """
    if not isinstance(private_bytes, bytes) or len(private_bytes) != IDENTITY_PRIVATE_KEY_BYTES:
        raise ParameterError(f"an Ed25519 private key is {IDENTITY_PRIVATE_KEY_BYTES} bytes")
    return IdentityKey(Ed25519PrivateKey.from_private_bytes(private_bytes))


def bound_message(
    purpose: SignaturePurpose, session_id: bytes, round_id: int, signer: int, body: bytes
) -> bytes:
    """The bytes a signature covers: domain, purpose, session, round, signer, then ``body``.

    Raises:
        ParameterError: a session id that is not 16 bytes, or ids outside their ranges.
    """
    if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_BYTES:
        raise ParameterError(f"session_id must be {SESSION_ID_BYTES} bytes")
    if not 0 <= round_id < 2**64 or not 0 <= signer < 2**32:
        raise ParameterError("round_id must fit in 64 bits and signer in 32 bits")
    label = purpose.value.encode("ascii")
    return (
        _DOMAIN
        + bytes([len(label)])
        + label
        + _CONTEXT.pack(session_id, round_id, signer)
        + bytes(body)
    )


def sign(key: IdentityKey, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` (deterministic, RFC 8032)."""
    return key.private.sign(bytes(message))


def verify(public_bytes: bytes, message: bytes, signature: bytes) -> None:
    """Check ``signature`` over ``message`` under the raw public key ``public_bytes``.

    Raises:
        InvalidSignatureError: the signature does not verify, or the key or signature is
            malformed (one opaque error for every failure).
    """
    if (
        not isinstance(public_bytes, bytes)
        or len(public_bytes) != IDENTITY_PUBLIC_KEY_BYTES
        or not isinstance(signature, bytes)
        or len(signature) != SIGNATURE_BYTES
    ):
        raise InvalidSignatureError("invalid signature")
    try:
        Ed25519PublicKey.from_public_bytes(public_bytes).verify(signature, bytes(message))
    except (InvalidSignature, ValueError):
        raise InvalidSignatureError("invalid signature") from None
