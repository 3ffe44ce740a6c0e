"""The keys and formats one masking round derives, shared by its client and server.

Every key is bound to its purpose, the session, the round and both clients
(:func:`secagg.hazmat.kex.derive_key`): the pairwise mask key s_uv from X25519 between two
clients' mask keys, the share-encryption key from their share keys, and the self-mask key from a
client's seed b_u. A Shamir share of client u sits at x = u + 1 (x must not be 0). A sealed
share bundle is ``owner u32 | recipient u32 | seed share | mask-key share``.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np
import numpy.typing as npt

from secagg.hazmat import shamir
from secagg.hazmat.kex import (
    KeyPair,
    Purpose,
    agree,
    derive_key,
)

__all__ = [
    "BUNDLE",
    "BUNDLE_BYTES",
    "SEED_BYTES",
    "RingArray",
    "agreed_key",
    "pairwise_mask_key",
    "reduce_ring",
    "self_mask_key",
    "shamir_x",
    "share_key",
]

RingArray = npt.NDArray[np.unsignedinteger]
BUNDLE: Final = struct.Struct(">II")
BUNDLE_BYTES: Final = BUNDLE.size + 2 * shamir.SHARE_BYTES
SEED_BYTES: Final = 32


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
