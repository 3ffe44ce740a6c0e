"""The keys and formats one masking round derives, shared by its client and server.

Every key is bound to its purpose, the session, the round and both clients
(:func:`secagg.hazmat.kex.derive_key`): the pairwise mask key s_uv from X25519 between two
clients' mask keys, the share-encryption key from their share keys, and the self-mask key from a
client's seed b_u. A Shamir share of client u sits at x = u + 1 (x must not be 0). A sealed
share bundle is ``owner u32 | recipient u32 | seed share | mask-key share``.

The commitments are SHA-256 hashes, bound the same way: :func:`seed_commitment` binds a client
to b_u in its advertisement, and :func:`share_digest` lets the server check, at unmasking,
that a holder returned the share its dealer gave it. Both hash secrets of 256 random bits, so
they hide them. :func:`advertisement_message` and :func:`consistency_message` are the bytes the
identity signatures cover (:func:`secagg.hazmat.sign.bound_message`).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes

from protocols.identity import TrustedRoster
from protocols.messages import KeyAdvertisement, RosterEntry
from secagg.hazmat import shamir
from secagg.hazmat.kex import (
    KeyPair,
    Purpose,
    agree,
    derive_key,
)
from secagg.hazmat.sign import SignaturePurpose, bound_message

__all__ = [
    "BUNDLE",
    "BUNDLE_BYTES",
    "SEED_BYTES",
    "RingArray",
    "ShareKind",
    "advertisement_message",
    "agreed_key",
    "check_advertisement",
    "consistency_message",
    "pairwise_mask_key",
    "reduce_ring",
    "seed_commitment",
    "self_mask_key",
    "shamir_x",
    "share_digest",
    "share_key",
]

RingArray = npt.NDArray[np.unsignedinteger]
BUNDLE: Final = struct.Struct(">II")
BUNDLE_BYTES: Final = BUNDLE.size + 2 * shamir.SHARE_BYTES
SEED_BYTES: Final = 32
_CONTEXT: Final = struct.Struct(">16sQII")


class ShareKind(enum.Enum):
    """Which of a client's two secrets a share belongs to."""

    SELF_MASK_SEED = b"seed"
    MASK_KEY = b"mask-key"


def _digest(label: bytes, *parts: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"secagg/v1/" + label + b"\x00")
    for part in parts:
        digest.update(struct.pack(">I", len(part)) + part)
    return digest.finalize()


def seed_commitment(seed: bytes, session_id: bytes, round_id: int, owner: int) -> bytes:
    """SHA-256 commitment to the self-mask seed b_u, bound to (session, round, owner)."""
    return _digest(b"seed-commitment", _CONTEXT.pack(session_id, round_id, owner, owner), seed)


def share_digest(
    share: int, kind: ShareKind, session_id: bytes, round_id: int, owner: int, holder: int
) -> bytes:
    """SHA-256 digest of the share of ``owner``'s secret ``kind`` dealt to ``holder``."""
    context = _CONTEXT.pack(session_id, round_id, owner, holder)
    return _digest(b"share-digest", context, kind.value, shamir.share_to_bytes(share))


def advertisement_message(
    session_id: bytes,
    round_id: int,
    client_id: int,
    mask_public_key: bytes,
    share_public_key: bytes,
    commitment: bytes,
) -> bytes:
    """What a client's identity signature over its key advertisement covers."""
    body = mask_public_key + share_public_key + commitment
    return bound_message(SignaturePurpose.KEY_ADVERTISEMENT, session_id, round_id, client_id, body)


def check_advertisement(
    roster: TrustedRoster,
    session_id: bytes,
    round_id: int,
    client_id: int,
    advert: KeyAdvertisement | RosterEntry,
) -> None:
    """Check that ``client_id``'s identity key signed these advertised keys and commitment.

    Raises:
        InvalidSignatureError: the signature does not verify, or the client is not on the roster.
    """
    message = advertisement_message(
        session_id,
        round_id,
        client_id,
        advert.mask_public_key,
        advert.share_public_key,
        advert.seed_commitment,
    )
    roster.check_signature(client_id, message, advert.signature)


def consistency_message(
    session_id: bytes, round_id: int, client_id: int, survivors: Iterable[int]
) -> bytes:
    """What a client's consistency signature covers: the sorted survivor set it was shown."""
    ids = sorted(survivors)
    body = struct.pack(f">I{len(ids)}I", len(ids), *ids)
    return bound_message(SignaturePurpose.CONSISTENCY, session_id, round_id, client_id, body)


def shamir_x(client_id: int) -> int:
    """Shamir x-coordinate of a client (ids start at 0, x must not)."""
    return client_id + 1


def agreed_key(
    private: KeyPair,
    peer_public: bytes,
    purpose: Purpose,
    session_id: bytes,
    round_id: int,
    pair: tuple[int, int],
) -> bytes:
    """A key agreed by X25519 between the two clients of ``pair``, bound to the round."""
    return derive_key(
        agree(private, peer_public),
        purpose=purpose,
        session_id=session_id,
        round_id=round_id,
        party_a=pair[0],
        party_b=pair[1],
    )


def pairwise_mask_key(
    private: KeyPair, peer_public: bytes, session_id: bytes, round_id: int, u: int, v: int
) -> bytes:
    return agreed_key(private, peer_public, Purpose.PAIRWISE_MASK, session_id, round_id, (u, v))


def self_mask_key(seed: bytes, session_id: bytes, round_id: int, owner: int) -> bytes:
    return derive_key(
        seed,
        purpose=Purpose.SELF_MASK,
        session_id=session_id,
        round_id=round_id,
        party_a=owner,
        party_b=owner,
    )


def share_key(
    private: KeyPair, peer_public: bytes, session_id: bytes, round_id: int, u: int, v: int
) -> bytes:
    return agreed_key(private, peer_public, Purpose.SHARE_ENCRYPTION, session_id, round_id, (u, v))


def reduce_ring(vector: RingArray, modulus_bits: int) -> None:
    if modulus_bits < 8 * vector.dtype.itemsize:
        np.bitwise_and(vector, (1 << modulus_bits) - 1, out=vector, casting="unsafe")
