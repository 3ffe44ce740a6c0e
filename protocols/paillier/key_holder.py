"""The single Paillier key holder (a committee of one): decrypts one admitted aggregate per round.

The key holder is a party apart from the server that holds the whole secret key. It decrypts
only what :class:`~protocols.paillier.trust.DecryptionGuard` admits (signed uploads of a new
round, from enough distinct clients, multiplied by itself), checks every slot's range and
returns the sums. With no single party trusted with the key, use a committee of
:class:`~protocols.paillier.decryptor.Decryptor` instead.
"""

from __future__ import annotations

import phe

from protocols.identity import TrustedRoster
from protocols.messages import KEY_HOLDER_ID, DecryptedAggregate, Message, header
from protocols.paillier.trust import GuardedDecryptor
from secagg.hazmat import paillier as hazmat

__all__ = ["KeyHolder"]


class KeyHolder(GuardedDecryptor):
    """Holds the secret key; decrypts one admitted aggregate per round and nothing else.

    Args:
        keypair: from :func:`secagg.hazmat.paillier.generate_keypair`.
        session_id: the session whose aggregates it will decrypt.
        roster: the clients' identity keys; every upload must be signed under one of them.
        value_bits, max_clients: the packing every client uses (same as the server's).
        min_contributors: the fewest distinct signed uploads an aggregate must hold (>= 2).
        processes: worker processes for decryption (None: every core; 1: serial).
        last_round: the last round decrypted in this session, for a restarted key holder.
    """

    def __init__(
        self,
        keypair: hazmat.PaillierKeypair,
        *,
        session_id: bytes,
        roster: TrustedRoster,
        value_bits: int,
        max_clients: int,
        min_contributors: int = 2,
        processes: int | None = 1,
        last_round: int | None = None,
    ) -> None:
        self._keypair = keypair
        super().__init__(
            keypair.public_key,
            KEY_HOLDER_ID,
            "the key holder",
            session_id=session_id,
            roster=roster,
            value_bits=value_bits,
            max_clients=max_clients,
            min_contributors=min_contributors,
            processes=processes,
            last_round=last_round,
        )

    @property
    def public(self) -> phe.PaillierPublicKey:
        """The key clients pin and encrypt under (as for a committee's :class:`Decryptor`)."""
        return self._keypair.public_key

    @property
    def public_key(self) -> phe.PaillierPublicKey:
        """The key clients pin and encrypt under."""
        return self._keypair.public_key

    @property
    def djn(self) -> hazmat.DJNParameters | None:
        """Public DJN parameters, if the key supports short-exponent randomness."""
        return self._keypair.djn

    def _receive(self, message: Message) -> list[Message]:
        admitted = self.guard.admit(message)
        # The round is consumed before decryption: a failure afterwards never re-opens it.
        self.guard.consume(admitted)
        plaintexts = hazmat.decrypt_vector(
            self._keypair.private_key, admitted.ciphertexts, processes=self.processes
        )
        count = len(admitted.contributors)
        sums = self.packing.unpack(plaintexts, admitted.vector_length, count)
        return [
            DecryptedAggregate(
                **header(self.session_id, admitted.round_id, KEY_HOLDER_ID, message.sender),
                contributors=count,
                vector=sums,
            )
        ]
