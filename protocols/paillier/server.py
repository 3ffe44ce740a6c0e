"""The Paillier server: multiplies ciphertext vectors; never holds the secret key."""

from __future__ import annotations

from typing import Final

import gmpy2
import phe

from protocols._machine import (
    ServerMachine,
    Start,
    check_addressed,
    finished,
)
from protocols._transitions import (
    PAILLIER_SERVER_TRANSITIONS,
    ServerPhase,
)
from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    AggregateCiphertext,
    DecryptedAggregate,
    EncryptedInput,
    Message,
    PaillierSetup,
    header,
)
from protocols.paillier.params import PaillierParams, PaillierResult, _check_units
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    RemoteProtocolError,
)
from secagg.hazmat import paillier as hazmat
from secagg.packing import PackingScheme

__all__ = ["PaillierServer"]


class PaillierServer(ServerMachine[ServerPhase]):
    """Multiplies ciphertext vectors as they arrive; never holds the secret key.

    A bad input (not in Z*_{n^2}, wrong width or length, replayed, from a stranger) raises a
    specific error and is discarded; the contributions already summed are kept.
    """

    TRANSITIONS = PAILLIER_SERVER_TRANSITIONS
    ABORTED = ServerPhase.ABORTED
    role = "server"

    def __init__(self, params: PaillierParams, public_key: phe.PaillierPublicKey) -> None:
        self.params: Final = params
        self._public_key = public_key
        self._nsquare = gmpy2.mpz(public_key.nsquare)
        self._width = hazmat.ciphertext_byte_length(public_key)
        self._packing = PackingScheme.for_public_key(
            public_key, value_bits=params.value_bits, num_clients=params.max_clients
        )
        self._num_ciphertexts = self._packing.num_plaintexts(params.vector_length)
        self._phase = ServerPhase.IDLE
        self._product: list[gmpy2.mpz] = []
        self._contributors: set[int] = set()
        self._result: PaillierResult | None = None
        self.abort_reason: str | None = None

    @property
    def result(self) -> PaillierResult:
        """The decrypted sums, once ``DONE``."""
        return finished(self._result, self._phase)

    def start(self) -> list[Message]:
        """Invite every client with the setup (the key holder's public key and the packing)."""
        self._phase = self.advance(Start, remote=False)
        p = self.params
        return [
            PaillierSetup(
                **header(p.session_id, p.round_id, SERVER_ID, u),
                public_key_n=int(self._public_key.n),
                vector_length=p.vector_length,
                value_bits=p.value_bits,
                max_clients=p.max_clients,
            )
            for u in p.clients
        ]

    def _record(self, message: Message) -> None:
        p = self.params
        check_addressed(message, session_id=p.session_id, round_id=p.round_id, recipient=SERVER_ID)
        next_phase = self.advance(type(message), remote=True)
        if isinstance(message, EncryptedInput):
            self._on_input(message)
        else:
            assert isinstance(message, DecryptedAggregate)  # the only other move in the table
            if message.sender != KEY_HOLDER_ID:
                raise RemoteProtocolError("only the key holder sends decrypted aggregates")
            self._on_decrypted(message)
        self._phase = next_phase

    def forget_secrets(self) -> None:
        """Drop the running product of ciphertexts."""
        self._product = []

    def _close(self, next_phase: ServerPhase) -> list[Message]:
        p = self.params
        if len(self._contributors) < p.min_contributors:
            self._phase = ServerPhase.ABORTED
            self.abort_reason = (
                f"{len(self._contributors)} encrypted inputs arrived, below the minimum "
                f"{p.min_contributors}"
            )
            self._product = []
            raise InsufficientSurvivorsError(self.abort_reason)
        self._phase = next_phase
        return [
            AggregateCiphertext(
                **header(p.session_id, p.round_id, SERVER_ID, KEY_HOLDER_ID),
                contributors=len(self._contributors),
                vector_length=p.vector_length,
                ciphertext_bytes=self._width,
                ciphertexts=hazmat.ciphertexts_to_bytes(
                    self._public_key, [int(c) for c in self._product]
                ),
            )
        ]

    def _on_input(self, message: EncryptedInput) -> None:
        sender = message.sender
        if sender not in self.params.clients:
            raise RemoteProtocolError(f"client {sender} was not invited to this round")
        if sender in self._contributors:
            raise RemoteProtocolError(f"client {sender} uploaded twice")
        if message.ciphertext_bytes != self._width:
            raise InvalidCiphertextError("ciphertexts are not under the key holder's key")
        if len(message.ciphertexts) != self._num_ciphertexts * self._width:
            raise RemoteProtocolError(
                f"client {sender} sent {len(message.ciphertexts) // self._width} ciphertexts, "
                f"expected {self._num_ciphertexts}"
            )
        ciphertexts = hazmat.ciphertexts_from_bytes(
            self._public_key, message.ciphertexts, check_units=False
        )
        _check_units(self._public_key, ciphertexts)
        if not self._product:
            self._product = [gmpy2.mpz(c) for c in ciphertexts]
        else:
            nsquare = self._nsquare
            self._product = [
                acc * c % nsquare for acc, c in zip(self._product, ciphertexts, strict=True)
            ]
        self._contributors.add(sender)

    def _on_decrypted(self, message: DecryptedAggregate) -> None:
        if message.contributors != len(self._contributors):
            raise RemoteProtocolError("the key holder decrypted a different aggregate")
        if message.vector.shape != (self.params.vector_length,):
            raise RemoteProtocolError("the decrypted aggregate has the wrong length")
        contributors = tuple(sorted(self._contributors))
        dropped = tuple(sorted(set(self.params.clients) - self._contributors))
        self._result = PaillierResult(
            vector=message.vector,
            contributors=contributors,
            dropped=dropped,
            dropped_at=dict.fromkeys(dropped, 2),
        )
        self._product = []
