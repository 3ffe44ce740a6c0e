"""The single Paillier key holder: decrypts one aggregate per round and nothing else."""

from __future__ import annotations

from typing import Final

import phe

from protocols._machine import (
    check_addressed,
)
from protocols._machine import check_session as _check_session
from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    AggregateCiphertext,
    DecryptedAggregate,
    Message,
    header,
)
from secagg.errors import (
    ParameterError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
)
from secagg.hazmat import paillier as hazmat
from secagg.packing import PackingScheme

__all__ = ["KeyHolder"]


class KeyHolder:
    """Holds the secret key; decrypts one aggregate per round and nothing else.

    Args:
        keypair: from :func:`secagg.hazmat.paillier.generate_keypair`.
        session_id: the session whose aggregates it will decrypt.
        value_bits, max_clients: the packing every client uses (same as the server's).
        min_contributors: the fewest inputs an aggregate must claim before it is decrypted.
        processes: worker processes for decryption (None: every core; 1: serial).
    """

    def __init__(
        self,
        keypair: hazmat.PaillierKeypair,
        *,
        session_id: bytes,
        value_bits: int,
        max_clients: int,
        min_contributors: int = 2,
        processes: int | None = 1,
    ) -> None:
        _check_session(session_id, 0)
        if min_contributors < 1:
            raise ParameterError("min_contributors must be >= 1")
        self._keypair = keypair
        self.session_id: Final = session_id
        self.packing = PackingScheme.for_public_key(
            keypair.public_key, value_bits=value_bits, num_clients=max_clients
        )
        self.min_contributors = min_contributors
        self.processes = processes
        self._decrypted_rounds: set[int] = set()
        #: Every aggregate this key holder was shown, for audits and tests.
        self.seen: list[AggregateCiphertext] = []

    @property
    def public_key(self) -> phe.PaillierPublicKey:
        """The key clients pin and encrypt under."""
        return self._keypair.public_key

    @property
    def djn(self) -> hazmat.DJNParameters | None:
        """Public DJN parameters, if the key supports short-exponent randomness."""
        return self._keypair.djn

    def receive(self, message: Message) -> list[Message]:
        """Decrypt an :class:`AggregateCiphertext` from the server; reject anything else.

        A rejected message leaves the key holder as it was; an unexpected failure is re-raised
        as a :class:`~secagg.errors.RemoteProtocolError` that names only its type.
        """
        try:
            return self._receive(message)
        except SecAggError:
            raise
        except Exception as error:
            raise RemoteProtocolError(
                f"the key holder could not process the message ({type(error).__name__})"
            ) from None

    def _receive(self, message: Message) -> list[Message]:
        if not isinstance(message, AggregateCiphertext):
            raise RemoteProtocolError(
                f"the key holder decrypts only aggregates, not {type(message).__name__}"
            )
        check_addressed(
            message,
            session_id=self.session_id,
            round_id=None,
            recipient=KEY_HOLDER_ID,
            sender=SERVER_ID,
        )
        if message.round_id in self._decrypted_rounds:
            raise ServerMisbehaviourError(
                f"round {message.round_id} was already decrypted: a second aggregate of the "
                "same round could isolate one client's input"
            )
        if message.contributors < self.min_contributors:
            raise ServerMisbehaviourError(
                f"the aggregate claims {message.contributors} inputs; at least "
                f"{self.min_contributors} are needed before anything is decrypted"
            )
        if message.contributors > self.packing.num_clients:
            raise RemoteProtocolError(
                f"{message.contributors} inputs exceed the packing headroom of "
                f"{self.packing.num_clients}"
            )
        public_key = self.public_key
        if message.ciphertext_bytes != hazmat.ciphertext_byte_length(public_key):
            raise RemoteProtocolError("the aggregate's ciphertext width does not match the key")
        ciphertexts = hazmat.ciphertexts_from_bytes(public_key, message.ciphertexts)
        if len(ciphertexts) != self.packing.num_plaintexts(message.vector_length):
            raise RemoteProtocolError("the aggregate's length does not match its vector_length")
        self.seen.append(message)
        self._decrypted_rounds.add(message.round_id)
        plaintexts = hazmat.decrypt_vector(
            self._keypair.private_key, ciphertexts, processes=self.processes
        )
        sums = self.packing.unpack(plaintexts, message.vector_length, message.contributors)
        return [
            DecryptedAggregate(
                **header(message.session_id, message.round_id, KEY_HOLDER_ID, SERVER_ID),
                contributors=message.contributors,
                vector=sums,
            )
        ]
