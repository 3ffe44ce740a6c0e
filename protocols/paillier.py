"""Paillier aggregation as three sans-I/O roles: clients, a server, and a separate key holder.

The key holder generates the key pair and publishes the public key; clients pin that key,
pack their quantized input into as few plaintexts as the slot headroom allows and encrypt it;
the server multiplies the ciphertext vectors that arrive before its deadline and never holds
the secret key; the key holder decrypts only the aggregate, checks every slot's range, and
returns the sums. Two rules protect individual inputs from a curious server:

- a client refuses a setup whose public key differs from the one it pinned (the server cannot
  substitute a key it can decrypt with);
- the key holder decrypts at most one aggregate per (session, round), and only one that claims
  at least ``min_contributors`` inputs, so a server cannot difference two subsets of a round.
  (The contributor count itself is the server's word; a deployment that fears a server forging
  it needs client signatures over their ciphertexts, which are out of scope here.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeVar

import gmpy2
import numpy as np
import numpy.typing as npt
import phe

from protocols._machine import (
    ClientMachine,
    ServerMachine,
    Start,
    SubmitInput,
    check_addressed,
    check_client_id,
    finished,
)
from protocols._machine import check_session as _check_session
from protocols._transitions import (
    PAILLIER_CLIENT_TRANSITIONS,
    PAILLIER_SERVER_TRANSITIONS,
    ClientPhase,
    ServerPhase,
)
from protocols.messages import (
    KEY_HOLDER_ID,
    MAX_PARTY_ID,
    SERVER_ID,
    AggregateCiphertext,
    DecryptedAggregate,
    EncryptedInput,
    Message,
    PaillierSetup,
    header,
)
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
)
from secagg.hazmat import paillier as hazmat
from secagg.packing import PackingScheme

__all__ = [
    "KeyHolder",
    "PaillierClient",
    "PaillierParams",
    "PaillierResult",
    "PaillierServer",
]

_T = TypeVar("_T")


def _check_units(public_key: phe.PaillierPublicKey, ciphertexts: Sequence[int]) -> None:
    """All ciphertexts are units mod n iff their product mod n is: one gcd for the vector."""
    n = gmpy2.mpz(public_key.n)
    product = gmpy2.mpz(1)
    for ciphertext in ciphertexts:
        product = product * ciphertext % n
    if gmpy2.gcd(product, n) != 1:
        raise InvalidCiphertextError("invalid Paillier ciphertext")


# --------------------------------------------------------------------------------------------
# Key holder
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class PaillierClient(ClientMachine[ClientPhase]):
    """One client: checks the setup against its pinned key, then encrypts its packed input.

    Args:
        client_id: this client's id.
        session_id, round_id: the round it expects; anything else is a replay.
        public_key: the key holder's public key, obtained from the key holder (pinned).
        mode: ``RandomnessMode.FRESH`` (default) or ``DJN`` (needs ``djn``; extra assumption).
        djn: the key holder's public DJN parameters.
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
        public_key: phe.PaillierPublicKey,
        mode: hazmat.RandomnessMode = hazmat.RandomnessMode.FRESH,
        djn: hazmat.DJNParameters | None = None,
        processes: int | None = 1,
    ) -> None:
        check_client_id(client_id)
        _check_session(session_id, round_id)
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
                "the setup carries a public key other than the key holder's pinned key"
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
        return [
            EncryptedInput(
                **header(self.session_id, self.round_id, self.client_id, SERVER_ID),
                ciphertext_bytes=hazmat.ciphertext_byte_length(self._public_key),
                ciphertexts=hazmat.ciphertexts_to_bytes(self._public_key, ciphertexts),
            )
        ]


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


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

    @property
    def survivors(self) -> tuple[int, ...]:
        """The contributors, named as in the masking result."""
        return self.contributors


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
