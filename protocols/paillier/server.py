"""The Paillier server: multiplies signed ciphertext vectors; never holds the secret key.

It checks every upload (invited sender, width, length, units of Z*_{n^2}, the client's identity
signature for this round and key) before multiplying it in, keeps the signed uploads to hand to
the decryptors (who recompute the product rather than trust the server's), and then either
takes the single key holder's sums or verifies the committee's partial decryptions and combines
any ``threshold`` valid ones (:class:`~protocols.paillier.combine.PartialCollector`).
"""

from __future__ import annotations

from typing import Final

import gmpy2
import numpy as np
import numpy.typing as npt

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
from protocols.identity import TrustedRoster
from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    DecryptedAggregate,
    DecryptionRequest,
    DecryptionShare,
    EncryptedInput,
    Message,
    PaillierSetup,
    decryptor_id,
    header,
)
from protocols.paillier.combine import PartialCollector
from protocols.paillier.params import PaillierParams, PaillierResult, check_units
from protocols.paillier.trust import (
    PaillierPublic,
    UploadShape,
    key_fingerprint,
    plain_key,
    upload_message,
)
from secagg.errors import (
    DecryptorMisbehaviourError,
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    InvalidSignatureError,
    ParameterError,
    RemoteProtocolError,
)
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import ThresholdPublicKey
from secagg.packing import PackingScheme

__all__ = ["PaillierServer"]


class PaillierServer(ServerMachine[ServerPhase]):
    """Multiplies signed ciphertext vectors as they arrive; never holds the secret key.

    Args:
        params: the round's configuration.
        public: the single key holder's public key, or the committee's
            :class:`~secagg.hazmat.paillier.ThresholdPublicKey`.
        roster: the clients' identity keys, to check each upload's signature.
        processes: worker processes for combining partial decryptions.

    A bad input (not in Z*_{n^2}, wrong width or length, unsigned, replayed, from a stranger)
    raises a specific error and is discarded; the contributions already summed are kept. A
    committee member whose partial decryption fails its proof is excluded and listed in
    :attr:`misbehaved`.
    """

    TRANSITIONS = PAILLIER_SERVER_TRANSITIONS
    ABORTED = ServerPhase.ABORTED
    role = "server"

    def __init__(
        self,
        params: PaillierParams,
        public: PaillierPublic,
        roster: TrustedRoster,
        *,
        processes: int | None = 1,
    ) -> None:
        if not isinstance(roster, TrustedRoster):
            raise ParameterError("the Paillier server needs the clients' TrustedRoster")
        missing = sorted(set(params.clients) - set(roster.ids))
        if missing:
            raise ParameterError(f"clients {missing} are not on the trusted roster")
        public_key = plain_key(public)
        self.params: Final = params
        self.public: Final = public
        self._roster = roster
        self._public_key = public_key
        self._fingerprint = key_fingerprint(public)
        self._nsquare = gmpy2.mpz(public_key.nsquare)
        self._width = hazmat.ciphertext_byte_length(public_key)
        self._packing = PackingScheme.for_public_key(
            public_key, value_bits=params.value_bits, num_clients=params.max_clients
        )
        self._num_ciphertexts = self._packing.num_plaintexts(params.vector_length)
        self._processes = processes
        self._phase = ServerPhase.IDLE
        self._product: list[gmpy2.mpz] = []
        self._uploads: dict[int, EncryptedInput] = {}
        self._collector: PartialCollector | None = None
        self._result: PaillierResult | None = None
        self.abort_reason: str | None = None
        #: Party id (client or decryptor) -> what it was caught doing wrong.
        self.misbehaved: dict[int, str] = {}

    @property
    def result(self) -> PaillierResult:
        """The decrypted sums, once ``DONE``."""
        return finished(self._result, self._phase)

    @property
    def decryptors(self) -> tuple[int, ...]:
        """The party ids the aggregate goes to: the key holder, or every committee member."""
        if isinstance(self.public, ThresholdPublicKey):
            return tuple(decryptor_id(i) for i in range(1, self.public.decryptors + 1))
        return (KEY_HOLDER_ID,)

    def start(self) -> list[Message]:
        """Invite every client with the setup (the public key and the packing)."""
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
        elif isinstance(message, DecryptionShare):
            self._on_partial(message)
        else:
            assert isinstance(message, DecryptedAggregate)  # the only other move in the table
            self._on_decrypted(message)
        self._phase = next_phase

    def forget_secrets(self) -> None:
        """Drop the running product and the stored uploads."""
        self._product = []
        self._uploads = {}
        self._collector = None

    def _close(self, next_phase: ServerPhase) -> list[Message]:
        if self._phase is ServerPhase.COLLECT_INPUTS:
            return self._close_inputs(next_phase)
        self._finish_committee()
        self._phase = next_phase
        return []

    def _close_inputs(self, next_phase: ServerPhase) -> list[Message]:
        p = self.params
        if len(self._uploads) < p.min_contributors:
            self._phase = ServerPhase.ABORTED
            self.abort_reason = (
                f"{len(self._uploads)} encrypted inputs arrived, below the minimum "
                f"{p.min_contributors}"
            )
            self.forget_secrets()
            raise InsufficientSurvivorsError(self.abort_reason)
        self._phase = next_phase
        if isinstance(self.public, ThresholdPublicKey):
            self._collector = PartialCollector(
                self.public,
                session_id=p.session_id,
                round_id=p.round_id,
                ciphertexts=[int(c) for c in self._product],
                processes=self._processes,
            )
        uploads = tuple(self._uploads[u] for u in sorted(self._uploads))
        return [
            DecryptionRequest(
                **header(p.session_id, p.round_id, SERVER_ID, party),
                vector_length=p.vector_length,
                uploads=uploads,
            )
            for party in self.decryptors
        ]

    def _on_input(self, message: EncryptedInput) -> None:
        sender = message.sender
        if sender not in self.params.clients:
            raise RemoteProtocolError(f"client {sender} was not invited to this round")
        if sender in self._uploads:
            raise RemoteProtocolError(f"client {sender} uploaded twice")
        if message.ciphertext_bytes != self._width:
            raise InvalidCiphertextError("ciphertexts are not under the decryptors' key")
        if len(message.ciphertexts) != self._num_ciphertexts * self._width:
            raise RemoteProtocolError(
                f"client {sender} sent {len(message.ciphertexts) // self._width} ciphertexts, "
                f"expected {self._num_ciphertexts}"
            )
        self._check_signature(message)
        ciphertexts = hazmat.ciphertexts_from_bytes(
            self._public_key, message.ciphertexts, check_units=False
        )
        check_units(self._public_key, ciphertexts)
        if not self._product:
            self._product = [gmpy2.mpz(c) for c in ciphertexts]
        else:
            nsquare = self._nsquare
            self._product = [
                acc * c % nsquare for acc, c in zip(self._product, ciphertexts, strict=True)
            ]
        self._uploads[sender] = message

    def _check_signature(self, message: EncryptedInput) -> None:
        p = self.params
        shape = UploadShape(p.vector_length, p.value_bits, p.max_clients)
        signed = upload_message(
            p.session_id, p.round_id, message.sender, self._fingerprint, message.ciphertexts, shape
        )
        try:
            self._roster.check_signature(message.sender, signed, message.signature)
        except InvalidSignatureError:
            # Not held against the client: anyone can send an unsigned upload in its name.
            raise RemoteProtocolError(
                f"an upload in client {message.sender}'s name is not signed by its identity key"
            ) from None

    def _on_partial(self, message: DecryptionShare) -> None:
        if self._collector is None:
            raise RemoteProtocolError("the single key holder's round takes no partial decryptions")
        try:
            self._collector.add(message)
        except DecryptorMisbehaviourError as error:
            self.misbehaved[message.sender] = str(error)
            raise

    def _on_decrypted(self, message: DecryptedAggregate) -> None:
        if message.sender != KEY_HOLDER_ID or self._collector is not None:
            raise RemoteProtocolError("only the single key holder sends decrypted aggregates")
        if message.contributors != len(self._uploads):
            raise RemoteProtocolError("the key holder decrypted a different aggregate")
        if message.vector.shape != (self.params.vector_length,):
            raise RemoteProtocolError("the decrypted aggregate has the wrong length")
        self._finish(message.vector, ())

    def _finish_committee(self) -> None:
        try:
            if self._collector is None:
                raise InsufficientSurvivorsError(
                    "the key holder sent no decryption before the deadline"
                )
            plaintexts, used = self._collector.combine()
        except InsufficientSurvivorsError as error:
            self._phase = ServerPhase.ABORTED
            self.abort_reason = str(error)
            self.forget_secrets()
            raise
        count = len(self._uploads)
        self._finish(self._packing.unpack(plaintexts, self.params.vector_length, count), used)

    def _finish(self, vector: npt.NDArray[np.uint64], used: tuple[int, ...]) -> None:
        contributors = tuple(sorted(self._uploads))
        dropped = tuple(sorted(set(self.params.clients) - set(self._uploads)))
        self._result = PaillierResult(
            vector=vector,
            contributors=contributors,
            dropped=dropped,
            dropped_at=dict.fromkeys(dropped, 2),
            decryptors=used,
        )
        self.forget_secrets()
