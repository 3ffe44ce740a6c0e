"""The single Paillier key holder (a committee of one): decrypts one admitted aggregate per round.

The key holder is a party apart from the server that holds the whole secret key. It decrypts
only what :class:`~protocols.paillier.trust.DecryptionGuard` admits (signed uploads of a new
round, from enough distinct clients, multiplied by itself), checks every slot's range and
returns the sums. With no single party trusted with the key, use a committee of
:class:`~protocols.paillier.decryptor.Decryptor` instead.
"""

from __future__ import annotations

from typing import Final

import phe

from protocols.identity import TrustedRoster
from protocols.messages import KEY_HOLDER_ID, DecryptedAggregate, Message, header
from protocols.paillier.trust import DecryptionGuard, answer
from secagg.hazmat import paillier as hazmat
from secagg.packing import PackingScheme

__all__ = ["KeyHolder"]


class KeyHolder:
    """Holds the secret key; decrypts one admitted aggregate per round and nothing else.

    Args:
        keypair: from :func:`secagg.hazmat.paillier.generate_keypair`.
        session_id: the session whose aggregates it will decrypt.
        roster: the clients' identity keys; every upload must be signed under one of them.
        value_bits, max_clients: the packing every client uses (same as the server's).
        min_contributors: the fewest distinct signed uploads an aggregate must hold (>= 2).
        processes: worker processes for decryption (None: every core; 1: serial).
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
    ) -> None:
        self._keypair = keypair
        self.session_id: Final = session_id
        self.packing = PackingScheme.for_public_key(
            keypair.public_key, value_bits=value_bits, num_clients=max_clients
        )
        self.guard = DecryptionGuard(
            keypair.public_key,
            session_id=session_id,
            roster=roster,
            packing=self.packing,
            min_contributors=min_contributors,
            recipient=KEY_HOLDER_ID,
        )
        self.processes = processes
        #: Its party id on the wire (the server addresses its decryption request there).
        self.party_id: Final = KEY_HOLDER_ID

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

    @property
    def min_contributors(self) -> int:
        """The fewest distinct signed uploads it decrypts an aggregate of."""
        return self.guard.min_contributors

    @property
    def last_round(self) -> int | None:
        """The newest round decrypted (None before the first); every older round is refused."""
        return self.guard.last_round

    def receive(self, message: Message) -> list[Message]:
        """Decrypt an admitted :class:`~protocols.messages.DecryptionRequest`; refuse the rest.

        A refused message leaves the key holder as it was; an unexpected failure is re-raised
        as a :class:`~secagg.errors.RemoteProtocolError` that names only its type.

        Raises:
            ServerMisbehaviourError: the request breaks a rule of the guard (it says which).
            SlotOverflowError: a slot of the sum lies outside its range (a client encrypted an
                out-of-range plaintext; nothing is returned, no sub-sum is tried).
        """
        return answer("the key holder", self._receive, message)

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
