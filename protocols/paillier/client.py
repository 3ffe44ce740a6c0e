"""The Paillier client: checks the setup against its pinned key, then encrypts its input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from protocols._machine import (
    ClientMachine,
    SubmitInput,
    check_client_id,
)
from protocols._machine import check_session as _check_session
from protocols._transitions import (
    PAILLIER_CLIENT_TRANSITIONS,
    ClientPhase,
)
from protocols.messages import (
    SERVER_ID,
    EncryptedInput,
    Message,
    PaillierSetup,
    header,
)
from protocols.paillier.trust import (
    PaillierPublic,
    UploadShape,
    key_fingerprint,
    plain_key,
    sign_upload,
)
from secagg.errors import (
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
)
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import ThresholdPublicKey
from secagg.hazmat.sign import IdentityKey
from secagg.packing import PackingScheme

__all__ = ["PaillierClient"]


class PaillierClient(ClientMachine[ClientPhase]):
    """One client: checks the setup against its pinned key, then encrypts its packed input.

    Args:
        client_id: this client's id.
        session_id, round_id: the round it expects; anything else is a replay.
        public_key: the decryptors' public key, obtained from them, never from the server
            (pinned): the single key holder's phe key, or a committee's
            :class:`~secagg.hazmat.paillier.ThresholdPublicKey`.
        identity: this client's identity key; it signs the upload for this round and key.
        mode: ``RandomnessMode.FRESH`` (default) or ``DJN`` (needs ``djn``; extra assumption).
        djn: the key's public DJN parameters (a committee key carries its own).
        processes: worker processes for encryption (None: every core; 1: serial).
    """

    TRANSITIONS = PAILLIER_CLIENT_TRANSITIONS
    ABORTED = ClientPhase.ABORTED
    role = "client"
    HINTS: ClassVar[Mapping[type, str]] = {SubmitInput: "after the setup"}

    def __init__(
        self,
        client_id: int,
        *,
        session_id: bytes,
        round_id: int,
        public_key: PaillierPublic,
        identity: IdentityKey,
        mode: hazmat.RandomnessMode = hazmat.RandomnessMode.FRESH,
        djn: hazmat.DJNParameters | None = None,
        processes: int | None = 1,
    ) -> None:
        check_client_id(client_id)
        _check_session(session_id, round_id)
        if not isinstance(identity, IdentityKey):
            raise ParameterError("a Paillier client signs its upload: pass its IdentityKey")
        if isinstance(public_key, ThresholdPublicKey) and djn is None:
            djn = public_key.djn
        self._fingerprint = key_fingerprint(public_key)
        self._identity = identity
        public_key = plain_key(public_key)
        if mode is hazmat.RandomnessMode.DJN and (djn is None or not djn.matches(public_key)):
            raise ParameterError("DJN mode needs the DJN parameters of the pinned public key")
        self.client_id = client_id
        self.session_id = session_id
        self.round_id = round_id
        self._public_key = public_key
        self._mode = mode
        self._djn = djn
        self._processes = processes
        self._phase = ClientPhase.AWAIT_SETUP
        self._packing: PackingScheme | None = None
        self._vector_length = 0
        self._error: SecAggError | None = None

    def _handle(self, message: Message) -> list[Message]:
        assert isinstance(message, PaillierSetup)  # the only move in the table
        if message.public_key_n != self._public_key.n:
            raise ServerMisbehaviourError(
                "the setup carries a public key other than the decryptors' pinned key"
            )
        try:
            self._packing = PackingScheme.for_public_key(
                self._public_key, value_bits=message.value_bits, num_clients=message.max_clients
            )
        except ParameterError as error:
            raise RemoteProtocolError(f"unusable packing parameters: {error}") from None
        self._vector_length = message.vector_length
        return []

    def _submit_input(self, vector: npt.ArrayLike) -> list[Message]:
        next_phase = self.advance(SubmitInput, remote=False)
        assert self._packing is not None  # set by the setup, the only way into AWAIT_INPUT
        array = np.asarray(vector)
        if array.ndim != 1 or array.shape[0] != self._vector_length:
            raise LocalProtocolError(
                f"input has shape {array.shape}; this round expects {self._vector_length} values"
            )
        if array.dtype.kind not in "ui":
            raise LocalProtocolError(f"input dtype is {array.dtype}; quantize it first")
        if array.size and (int(array.min()) < 0 or int(array.max()) >> self._packing.value_bits):
            raise LocalProtocolError(f"input values must lie in [0, 2^{self._packing.value_bits})")
        plaintexts = self._packing.pack(array)
        ciphertexts = hazmat.encrypt_vector(
            self._public_key,
            plaintexts,
            mode=self._mode,
            djn=self._djn if self._mode is hazmat.RandomnessMode.DJN else None,
            processes=self._processes,
        )
        self._phase = next_phase
        data = hazmat.ciphertexts_to_bytes(self._public_key, ciphertexts)
        return [
            EncryptedInput(
                **header(self.session_id, self.round_id, self.client_id, SERVER_ID),
                ciphertext_bytes=hazmat.ciphertext_byte_length(self._public_key),
                ciphertexts=data,
                signature=sign_upload(
                    self._identity,
                    self.session_id,
                    self.round_id,
                    self.client_id,
                    self._fingerprint,
                    data,
                    UploadShape(
                        self._vector_length, self._packing.value_bits, self._packing.num_clients
                    ),
                ),
            )
        ]
