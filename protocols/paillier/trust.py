"""What a Paillier decryptor admits: signed uploads of the current round, recomputed by itself.

Why this module exists: a decryptor (the single key holder, or a committee member) is the only
party that can turn ciphertexts into plaintexts, so it must not take the server's word for
anything. Each client signs its upload under its identity key (:func:`sign_upload`), bound to
the session, the round, its id and the fingerprint of the public key it encrypted under. The
:class:`DecryptionGuard` then admits a :class:`~protocols.messages.DecryptionRequest` only if

- it is for this session and for a round newer than every round already decrypted (one
  decryption per round, monotonic, one integer of memory);
- it holds uploads of at least ``min_contributors`` distinct roster clients, each signed for
  exactly this round and key;

and it multiplies the uploads itself. A server can therefore neither invent a round, nor
decrypt a second subset of a round, nor pass one client's ciphertext off as a sum: each of
those is refused with a :class:`~secagg.errors.ServerMisbehaviourError` that says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import phe
from cryptography.hazmat.primitives import hashes

from protocols._machine import check_addressed
from protocols._machine import check_session as _check_session
from protocols.identity import TrustedRoster
from protocols.messages import SERVER_ID, DecryptionRequest, EncryptedInput, Message
from protocols.paillier.params import check_units
from secagg.errors import (
    InvalidSignatureError,
    ParameterError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
)
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import ThresholdPublicKey
from secagg.hazmat.sign import IdentityKey, SignaturePurpose, bound_message, sign
from secagg.packing import PackingScheme

__all__ = [
    "Admitted",
    "DecryptionGuard",
    "PaillierPublic",
    "UploadShape",
    "answer",
    "decryption_context",
    "key_fingerprint",
    "plain_key",
    "sign_upload",
    "upload_message",
]

#: A Paillier public key as the protocol sees it: a single key holder's, or a committee's.
PaillierPublic: TypeAlias = phe.PaillierPublicKey | ThresholdPublicKey


def plain_key(public: PaillierPublic) -> phe.PaillierPublicKey:
    """The phe public key that clients encrypt under."""
    return public.public_key if isinstance(public, ThresholdPublicKey) else public


def key_fingerprint(public: PaillierPublic) -> bytes:
    """SHA-256 of the public key (a committee's includes its verification keys)."""
    if isinstance(public, ThresholdPublicKey):
        return bytes(public.fingerprint())
    n = int(public.n)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"secagg/v1/paillier-key\x00" + n.to_bytes((n.bit_length() + 7) // 8, "big"))
    return digest.finalize()


@dataclass(frozen=True, slots=True)
class UploadShape:
    """How a client packed its upload: part of what it signs.

    A server that gave one client another packing (say a larger ``max_clients``, hence wider
    slots) could make that client's values land in slots no one else fills and read them off
    the sum; since the client signs the shape it used, a decryptor that rebuilds the signed
    message from its own packing refuses such an upload.
    """

    vector_length: int
    value_bits: int
    max_clients: int

    def to_bytes(self) -> bytes:
        """The fixed-width encoding the signature covers."""
        return (
            self.vector_length.to_bytes(8, "big")
            + self.value_bits.to_bytes(2, "big")
            + self.max_clients.to_bytes(8, "big")
        )


def upload_message(
    session_id: bytes,
    round_id: int,
    client_id: int,
    fingerprint: bytes,
    ciphertexts: bytes,
    shape: UploadShape,
) -> bytes:
    """The bytes a client signs for its upload: the round, itself, the key, the packing it
    used and its ciphertexts."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"secagg/v1/paillier-upload\x00" + ciphertexts)
    body = fingerprint + shape.to_bytes() + digest.finalize()
    return bound_message(SignaturePurpose.ENCRYPTED_INPUT, session_id, round_id, client_id, body)


def sign_upload(
    identity: IdentityKey,
    session_id: bytes,
    round_id: int,
    client_id: int,
    fingerprint: bytes,
    ciphertexts: bytes,
    shape: UploadShape,
) -> bytes:
    """The client's identity signature over :func:`upload_message`."""
    message = upload_message(session_id, round_id, client_id, fingerprint, ciphertexts, shape)
    return sign(identity, message)


def decryption_context(session_id: bytes, round_id: int, index: int) -> bytes:
    """What a committee member's proof of partial decryption is bound to."""
    _check_session(session_id, round_id)
    return (
        b"secagg/v1/paillier-partial\x00"
        + session_id
        + round_id.to_bytes(8, "big")
        + index.to_bytes(4, "big")
    )


def answer(who: str, step: Callable[[Message], list[Message]], message: Message) -> list[Message]:
    """Run a decryptor's ``step``; an unexpected failure becomes a RemoteProtocolError.

    The error names only the failure's type: its message could hold secret values. A refused
    message leaves the decryptor as it was.
    """
    try:
        return step(message)
    except SecAggError:
        raise
    except Exception as error:
        raise RemoteProtocolError(
            f"{who} could not process the message ({type(error).__name__})"
        ) from None


@dataclass(frozen=True, slots=True)
class Admitted:
    """An admitted request: the recomputed aggregate and how many clients it sums."""

    round_id: int
    ciphertexts: list[int]
    contributors: tuple[int, ...]
    vector_length: int


class DecryptionGuard:
    """The admission rules every decryptor applies before it decrypts anything.

    Args:
        public: the key the decryptor's secret belongs to.
        session_id: the one session it decrypts for.
        roster: the clients' identity keys.
        packing: the packing every client uses.
        min_contributors: the fewest distinct signed uploads an aggregate must hold.
        recipient: the decryptor's own party id.
    """

    def __init__(
        self,
        public: PaillierPublic,
        *,
        session_id: bytes,
        roster: TrustedRoster,
        packing: PackingScheme,
        min_contributors: int,
        recipient: int,
    ) -> None:
        _check_session(session_id, 0)
        if not isinstance(roster, TrustedRoster):
            raise ParameterError("a decryptor needs the clients' TrustedRoster to check uploads")
        if isinstance(min_contributors, bool) or not isinstance(min_contributors, int):
            raise ParameterError(f"min_contributors must be an int, got {min_contributors!r}")
        if min_contributors < 2:
            raise ParameterError("min_contributors must be >= 2: one input is never decrypted")
        self.public = public
        self.session_id = session_id
        self.roster = roster
        self.packing = packing
        self.min_contributors = min_contributors
        self.recipient = recipient
        self.fingerprint = key_fingerprint(public)
        #: The newest round decrypted so far (None before the first); all the memory it keeps.
        self.last_round: int | None = None

    def admit(self, message: Message) -> Admitted:
        """Check a request and recompute its aggregate; the guard's state is unchanged.

        Raises:
            ServerMisbehaviourError: an old or repeated round, too few or repeated
                contributors, or an upload that is not signed for this round and key.
            RemoteProtocolError: anything else malformed.
        """
        if not isinstance(message, DecryptionRequest):
            raise RemoteProtocolError(
                f"a decryptor decrypts only decryption requests, not {type(message).__name__}"
            )
        check_addressed(
            message,
            session_id=self.session_id,
            round_id=None,
            recipient=self.recipient,
            sender=SERVER_ID,
        )
        self._check_round(message.round_id)
        contributors = self._check_contributors(message)
        for upload in message.uploads:
            self._check_upload(message, upload)
        ciphertexts = self._product(message)
        return Admitted(message.round_id, ciphertexts, contributors, message.vector_length)

    def consume(self, admitted: Admitted) -> None:
        """Mark the admitted round decrypted: no request for it, or an older one, passes again."""
        self.last_round = admitted.round_id

    def _check_round(self, round_id: int) -> None:
        last = self.last_round
        if last is not None and round_id <= last:
            kind = "was already decrypted" if round_id == last else f"is older than round {last}"
            raise ServerMisbehaviourError(
                f"round {round_id} {kind}: a second aggregate could isolate one client's input"
            )

    def _check_contributors(self, message: DecryptionRequest) -> tuple[int, ...]:
        senders = [upload.sender for upload in message.uploads]
        if len(set(senders)) != len(senders):
            raise ServerMisbehaviourError("the aggregate counts one client's upload more than once")
        if len(senders) < self.min_contributors:
            raise ServerMisbehaviourError(
                f"the aggregate holds {len(senders)} signed upload(s); at least "
                f"{self.min_contributors} distinct clients are needed before anything is "
                "decrypted"
            )
        if len(senders) > self.packing.num_clients:
            raise RemoteProtocolError(
                f"{len(senders)} inputs exceed the packing headroom of {self.packing.num_clients}"
            )
        return tuple(sorted(senders))

    def _check_upload(self, request: DecryptionRequest, upload: EncryptedInput) -> None:
        if (upload.session_id, upload.round_id, upload.recipient) != (
            request.session_id,
            request.round_id,
            SERVER_ID,
        ):
            raise ServerMisbehaviourError(
                f"client {upload.sender}'s upload belongs to another round: replay refused"
            )
        shape = UploadShape(
            request.vector_length, self.packing.value_bits, self.packing.num_clients
        )
        message = upload_message(
            upload.session_id,
            upload.round_id,
            upload.sender,
            self.fingerprint,
            upload.ciphertexts,
            shape,
        )
        try:
            self.roster.check_signature(upload.sender, message, upload.signature)
        except InvalidSignatureError:
            raise ServerMisbehaviourError(
                f"client {upload.sender}'s upload is not signed by its identity key for round "
                f"{request.round_id} under this public key and packing"
            ) from None

    def _product(self, request: DecryptionRequest) -> list[int]:
        public_key = plain_key(self.public)
        width = hazmat.ciphertext_byte_length(public_key)
        expected = self.packing.num_plaintexts(request.vector_length)
        vectors: list[list[int]] = []
        for upload in request.uploads:
            if upload.ciphertext_bytes != width or len(upload.ciphertexts) != expected * width:
                raise RemoteProtocolError(
                    f"client {upload.sender}'s upload does not hold {expected} ciphertexts "
                    "under this key"
                )
            values = hazmat.ciphertexts_from_bytes(
                public_key, upload.ciphertexts, check_units=False
            )
            check_units(public_key, values)
            vectors.append(values)
        return hazmat.sum_ciphertext_vectors(public_key, vectors)


class GuardedDecryptor:
    """What every decryptor shares: its packing, its :class:`DecryptionGuard`, its last round.

    Subclasses (the key holder, a committee member) implement ``_receive`` on an admitted
    request; :meth:`receive` wraps it so that an unexpected failure names only its type.

    Args:
        public: the key its secret belongs to.
        party_id: its id on the wire.
        name: how errors name it ("the key holder", "decryptor 3").
        session_id, roster, value_bits, max_clients, min_contributors, processes: as for
            :class:`~protocols.paillier.KeyHolder`.
        last_round: the last round it decrypted in this session, when it restarts: its memory
            of rounds lives in this object, so a decryptor process that is restarted must be
            given it again (or never rejoin the session), or the server could have an old round
            decrypted a second time.
    """

    def __init__(
        self,
        public: PaillierPublic,
        party_id: int,
        name: str,
        *,
        session_id: bytes,
        roster: TrustedRoster,
        value_bits: int,
        max_clients: int,
        min_contributors: int,
        processes: int | None,
        last_round: int | None = None,
    ) -> None:
        self.party_id = party_id
        self.session_id = session_id
        self.name = name
        self.packing = PackingScheme.for_public_key(
            plain_key(public), value_bits=value_bits, num_clients=max_clients
        )
        self.guard = DecryptionGuard(
            public,
            session_id=session_id,
            roster=roster,
            packing=self.packing,
            min_contributors=min_contributors,
            recipient=party_id,
        )
        if last_round is not None:
            _check_session(session_id, last_round)
            self.guard.last_round = last_round
        self.processes = processes

    @property
    def min_contributors(self) -> int:
        """The fewest distinct signed uploads it decrypts an aggregate of."""
        return self.guard.min_contributors

    @property
    def last_round(self) -> int | None:
        """The newest round decrypted (None before the first); every older round is refused."""
        return self.guard.last_round

    def receive(self, message: Message) -> list[Message]:
        """Answer an admitted :class:`~protocols.messages.DecryptionRequest`; refuse the rest.

        A refused message leaves the decryptor as it was; an unexpected failure is re-raised
        as a :class:`~secagg.errors.RemoteProtocolError` that names only its type.

        Raises:
            ServerMisbehaviourError: the request breaks a rule of the guard (it says which).
            SlotOverflowError: (the key holder) a slot of the sum lies outside its range.
        """
        return answer(self.name, self._receive, message)

    def _receive(self, message: Message) -> list[Message]:
        raise NotImplementedError
