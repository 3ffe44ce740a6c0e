"""The configuration and the result of one Paillier round, shared by every role."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import gmpy2
import numpy as np
import numpy.typing as npt
import phe

from protocols._machine import check_session as _check_session
from protocols.messages import MAX_PARTY_ID
from secagg.errors import InvalidCiphertextError, ParameterError

__all__ = ["PaillierParams", "PaillierResult", "check_units"]


def check_units(public_key: phe.PaillierPublicKey, ciphertexts: Sequence[int]) -> None:
    """All ciphertexts are units mod n iff their product mod n is: one gcd for the vector."""
    n = gmpy2.mpz(public_key.n)
    product = gmpy2.mpz(1)
    for ciphertext in ciphertexts:
        product = product * ciphertext % n
    if gmpy2.gcd(product, n) != 1:
        raise InvalidCiphertextError("invalid Paillier ciphertext")


@dataclass(frozen=True, slots=True)
class PaillierParams:
    """The server's configuration of one Paillier round.

    Attributes:
        session_id, round_id: as for masking; never reuse a round id.
        clients: ids of the clients invited to the round.
        vector_length: values per client.
        value_bits: bits of one quantized value.
        max_clients: packing headroom: the most inputs a slot can sum (>= len(clients)).
        min_contributors: the fewest inputs for which an aggregate is sent to the key holder.
    """

    session_id: bytes
    round_id: int
    clients: tuple[int, ...]
    vector_length: int
    value_bits: int
    max_clients: int
    min_contributors: int = 2

    def __post_init__(self) -> None:
        _check_session(self.session_id, self.round_id)
        if len(set(self.clients)) != len(self.clients) or not self.clients:
            raise ParameterError("clients must be a non-empty tuple of distinct ids")
        if any(not 0 <= u <= MAX_PARTY_ID for u in self.clients):
            raise ParameterError(f"client ids must be in [0, {MAX_PARTY_ID}]")
        if self.max_clients < len(self.clients):
            raise ParameterError(
                f"max_clients={self.max_clients} is below the {len(self.clients)} invited "
                "clients: their sum could overflow a slot"
            )
        if not 1 <= self.min_contributors <= len(self.clients):
            raise ParameterError(f"min_contributors must be in [1, {len(self.clients)}]")
        if self.vector_length < 1:
            raise ParameterError("vector_length must be >= 1")


@dataclass(frozen=True, slots=True, eq=False)
class PaillierResult:
    """The decrypted per-value sums, who contributed, and who did not."""

    vector: npt.NDArray[np.uint64]
    contributors: tuple[int, ...]
    dropped: tuple[int, ...]
    dropped_at: dict[int, int] = field(default_factory=dict)
    #: Committee members (by index) whose verified partial decryptions gave the sums.
    decryptors: tuple[int, ...] = ()

    @property
    def survivors(self) -> tuple[int, ...]:
        """The contributors, named as in the masking result."""
        return self.contributors
