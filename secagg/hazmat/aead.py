"""AES-GCM sealing of share bundles, with (session, round, sender, recipient) as associated data.

The associated data binds a ciphertext to its context: a bundle replayed from another round or
session, or forwarded to the wrong recipient, fails authentication. Every failure raises the same
opaque :class:`InvalidCiphertextError` (pyca Fernet's ``InvalidToken`` discipline). Nonces are
random 96-bit values from the OS; keys are one per (session, round, pair) anyway.
"""

from __future__ import annotations

import os
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg.errors import InvalidCiphertextError, ParameterError

__all__ = ["AEAD_KEY_BYTES", "NONCE_BYTES", "TAG_BYTES", "associated_data", "open_", "seal"]

AEAD_KEY_BYTES: Final = 16
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16


def associated_data(session_id: bytes, round_id: int, sender: int, recipient: int) -> bytes:
    """Encode the context a share bundle is bound to."""
    if not isinstance(session_id, bytes) or len(session_id) != 16:
        raise ParameterError("session_id must be 16 bytes")
    if not 0 <= round_id < 2**64 or not 0 <= sender < 2**32 or not 0 <= recipient < 2**32:
        raise ParameterError("round_id must fit 64 bits and party ids 32 bits")
    return b"secagg/v1/shares" + session_id + struct.pack(">QII", round_id, sender, recipient)


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext``; returns nonce || ciphertext || tag."""
    if len(key) != AEAD_KEY_BYTES:
        raise ParameterError(f"an AES-GCM key here is {AEAD_KEY_BYTES} bytes")
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def open_(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    """Authenticate and decrypt a :func:`seal` output; any failure is InvalidCiphertextError."""
    if len(key) != AEAD_KEY_BYTES or len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise InvalidCiphertextError("invalid ciphertext")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ad)
    except InvalidTag:
        raise InvalidCiphertextError("invalid ciphertext") from None
