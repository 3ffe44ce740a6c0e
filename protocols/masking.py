"""SecAgg / SecAgg+ as one pair of sans-I/O state machines, parametrised by the neighbour graph.

Bonawitz et al. 2017 (Fig. 4) with the sparse graphs of Bell et al. 2020. Rounds:

0. AdvertiseKeys: the server sends each client a :class:`RoundSetup`; each client answers with two
   fresh X25519 public keys (``mask``: s_u, ``share``: c_u).
1. ShareKeys: the server relays a :class:`KeyRoster` of the live neighbourhood; the client draws a
   self-mask seed b_u, Shamir-shares b_u and its mask private key s_u among the roster, and seals
   each neighbour's pair of shares with AES-GCM under a key agreed from c_u.
2. MaskedInputCollection: the server forwards the sealed shares; the client uploads
   y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv) mod 2^k.
3. Unmasking: for each neighbour the client releases the b-share if the server says it survived,
   the s-share if it dropped, and never both (Bonawitz et al. 2017, Section 4, "honest users never
   reveal both"); the server removes the self-masks of survivors and the pairwise masks that the
   dropped clients' partners added.

Neither machine performs I/O, reads a clock or uses a global RNG (randomness comes from the OS via
:mod:`secrets` and :mod:`cryptography`). The driver calls ``receive`` for every message and
``close_phase`` on the server when its round deadline passes; silent clients are then dropped.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeVar

import numpy as np
import numpy.typing as npt

from protocols._machine import (
    ClosePhase,
    Machine,
    Start,
    SubmitInput,
    check_addressed,
    check_client_id,
    check_session,
    finished,
)
from protocols._transitions import (
    CLIENT_TRANSITIONS,
    SERVER_ROUND_INDEX,
    SERVER_TRANSITIONS,
    ClientPhase,
    ServerPhase,
)
from protocols.client_state import STATE_VERSION, MaskingClientState
from protocols.graph import NeighbourGraph
from protocols.messages import (
    MAX_PARTY_ID,
    SERVER_ID,
    Abort,
    EncryptedShares,
    ForwardedShares,
    Header,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    Message,
    RosterEntry,
    RoundSetup,
    SealedShares,
    ShareEntry,
    UnmaskRequest,
    UnmaskResponse,
    header,
)
from secagg.encoding import ring_dtype
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    LocalProtocolError,
    ParameterError,
    ReconstructionError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
)
from secagg.hazmat import aead, shamir
from secagg.hazmat.kex import (
    KeyPair,
    Purpose,
    agree,
    derive_key,
    generate_keypair,
    keypair_from_private_bytes,
)
from secagg.hazmat.prg import add_mask

__all__ = [
    "AggregateResult",
    "ClientPhase",
    "MaskingClient",
    "MaskingParams",
    "MaskingServer",
    "ServerPhase",
]

RingArray = npt.NDArray[np.unsignedinteger]
_BUNDLE: Final = struct.Struct(">II")
_BUNDLE_BYTES: Final = _BUNDLE.size + 2 * shamir.SHARE_BYTES
_SEED_BYTES: Final = 32
_T = TypeVar("_T")


def _x(client_id: int) -> int:
    """Shamir x-coordinate of a client (ids start at 0, x must not)."""
    return client_id + 1


def _agreed_key(
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


def _pairwise_mask_key(
    private: KeyPair, peer_public: bytes, session_id: bytes, round_id: int, u: int, v: int
) -> bytes:
    return _agreed_key(private, peer_public, Purpose.PAIRWISE_MASK, session_id, round_id, (u, v))


def _self_mask_key(seed: bytes, session_id: bytes, round_id: int, owner: int) -> bytes:
    return derive_key(
        seed,
        purpose=Purpose.SELF_MASK,
        session_id=session_id,
        round_id=round_id,
        party_a=owner,
        party_b=owner,
    )


def _share_key(
    private: KeyPair, peer_public: bytes, session_id: bytes, round_id: int, u: int, v: int
) -> bytes:
    return _agreed_key(private, peer_public, Purpose.SHARE_ENCRYPTION, session_id, round_id, (u, v))


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class MaskingClient(Machine[ClientPhase]):
    """One client's side of a masking round (SecAgg or SecAgg+, whichever graph the server uses).

    Args:
        client_id: this client's id, in [0, 2^32 - 2].
        session_id: the 16-byte session this client expects to take part in.
        round_id: the round (protocol instance) it expects; anything else is a replay.
        min_threshold: the smallest Shamir threshold the client accepts from the server.
    """

    TRANSITIONS = CLIENT_TRANSITIONS
    ABORTED = ClientPhase.ABORTED
    role = "client"
    HINTS: ClassVar[Mapping[type, str]] = {SubmitInput: "after the shares arrive"}

    def __init__(
        self, client_id: int, *, session_id: bytes, round_id: int, min_threshold: int = 2
    ) -> None:
        check_client_id(client_id)
        check_session(session_id, round_id)
        if min_threshold < 2:
            raise ParameterError("min_threshold must be >= 2: one share must never reveal a key")
        self.client_id: Final = client_id
        self.session_id: Final = session_id
        self.round_id: Final = round_id
        self._min_threshold = min_threshold
        self._phase = ClientPhase.AWAIT_SETUP
        self._error: SecAggError | None = None
        self._threshold = 0
        self._vector_length = 0
        self._modulus_bits = 0
        self._neighbours: frozenset[int] = frozenset()
        self._mask_keys: KeyPair | None = None
        self._share_keys: KeyPair | None = None
        self._roster: dict[int, RosterEntry] = {}
        self._self_mask_seed: bytes | None = None
        # owner -> (self-mask seed share, mask-key share), our own included.
        self._held_shares: dict[int, tuple[int, int]] = {}
        self._share_keys_by_peer: dict[int, bytes] = {}
        self._mask_peers: tuple[int, ...] = ()

    # -- public entry points -----------------------------------------------------------------

    def receive(self, message: Message) -> list[Message]:
        """Feed one message from the server; returns the messages to send back."""
        return self.guarded(lambda: self._receive(message), remote=True)

    def submit_input(self, vector: npt.ArrayLike) -> list[Message]:
        """Mask the quantized input (values in Z_{2^k}) and return the :class:`MaskedInput`.

        Legal only in ``AWAIT_INPUT``, i.e. after the shares were forwarded.
        """
        return self.guarded(lambda: self._submit_input(vector), remote=False)

    # -- persistence ----------------------------------------------------------------------------

    def export_state(self) -> bytes:
        """Serialise the whole machine, secrets included, for transports that do not keep
        objects alive between messages (e.g. a Flower ClientApp's ``context.state``).

        The bytes hold this round's private keys and shares: keep them where the client's own
        memory would be, never send them anywhere.
        """
        return MaskingClientState(
            version=STATE_VERSION,
            client_id=self.client_id,
            session_id=self.session_id.hex(),
            round_id=self.round_id,
            min_threshold=self._min_threshold,
            phase=self._phase.value,
            threshold=self._threshold,
            vector_length=self._vector_length,
            modulus_bits=self._modulus_bits,
            neighbours=sorted(self._neighbours),
            mask_key=None if self._mask_keys is None else self._mask_keys.private_bytes.hex(),
            share_key=None if self._share_keys is None else self._share_keys.private_bytes.hex(),
            roster=[
                [e.client_id, e.mask_public_key.hex(), e.share_public_key.hex()]
                for e in self._roster.values()
            ],
            self_mask_seed=None if self._self_mask_seed is None else self._self_mask_seed.hex(),
            held_shares=[[u, b, s] for u, (b, s) in self._held_shares.items()],
            share_keys_by_peer=[[u, k.hex()] for u, k in self._share_keys_by_peer.items()],
            mask_peers=list(self._mask_peers),
        ).to_json()

    @classmethod
    def from_state(cls, data: bytes) -> MaskingClient:
        """Rebuild a machine from :meth:`export_state` output; malformed state is rejected.

        Raises:
            LocalProtocolError: the state is malformed or of another version.
        """
        state = MaskingClientState.from_json(data)
        try:
            client = cls(
                state.client_id,
                session_id=bytes.fromhex(state.session_id),
                round_id=state.round_id,
                min_threshold=state.min_threshold,
            )
            client._restore(state)
        except (ValueError, ParameterError):
            raise LocalProtocolError("the saved client state is malformed") from None
        return client

    def _restore(self, state: MaskingClientState) -> None:
        self._phase = ClientPhase(state.phase)
        self._threshold = state.threshold
        self._vector_length = state.vector_length
        self._modulus_bits = state.modulus_bits
        self._neighbours = frozenset(state.neighbours)
        if state.mask_key is not None:
            self._mask_keys = keypair_from_private_bytes(bytes.fromhex(state.mask_key))
        if state.share_key is not None:
            self._share_keys = keypair_from_private_bytes(bytes.fromhex(state.share_key))
        self._roster = {
            int(u): RosterEntry(
                client_id=int(u),
                mask_public_key=bytes.fromhex(str(mask)),
                share_public_key=bytes.fromhex(str(share)),
            )
            for u, mask, share in state.roster
        }
        if state.self_mask_seed is not None:
            self._self_mask_seed = bytes.fromhex(state.self_mask_seed)
        self._held_shares = {u: (b, s) for u, b, s in state.held_shares}
        self._share_keys_by_peer = {
            int(u): bytes.fromhex(str(k)) for u, k in state.share_keys_by_peer
        }
        self._mask_peers = tuple(state.mask_peers)

    # -- machinery ------------------------------------------------------------------------------

    def forget_secrets(self) -> None:
        """Drop every key, seed and share (h11 ``_process_error``)."""
        self._mask_keys = None
        self._share_keys = None
        self._self_mask_seed = None
        self._held_shares = {}
        self._share_keys_by_peer = {}

    def _receive(self, message: Message) -> list[Message]:
        check_addressed(
            message,
            session_id=self.session_id,
            round_id=self.round_id,
            recipient=self.client_id,
            sender=SERVER_ID,
        )
        if isinstance(message, Abort):
            self.poison(None)
            return []
        next_phase = self.advance(type(message), remote=True)
        if isinstance(message, RoundSetup):
            replies = self._on_setup(message)
        elif isinstance(message, KeyRoster):
            replies = self._on_roster(message)
        elif isinstance(message, ForwardedShares):
            replies = self._on_forwarded_shares(message)
        else:
            assert isinstance(message, UnmaskRequest)  # the only other move in the table
            replies = self._on_unmask_request(message)
        self._phase = next_phase
        return replies

    def _header(self) -> Header:
        return header(self.session_id, self.round_id, self.client_id, SERVER_ID)

    # -- round 0 ----------------------------------------------------------------------------

    def _on_setup(self, setup: RoundSetup) -> list[Message]:
        if self.client_id in setup.neighbours:
            raise RemoteProtocolError("the setup lists this client as its own neighbour")
        if setup.threshold < self._min_threshold:
            raise ServerMisbehaviourError(
                f"threshold {setup.threshold} is below the minimum {self._min_threshold}: "
                "too few shares would reveal our keys"
            )
        if setup.threshold > len(setup.neighbours) + 1:
            raise RemoteProtocolError(
                f"threshold {setup.threshold} exceeds the {len(setup.neighbours) + 1} holders"
            )
        self._threshold = setup.threshold
        self._vector_length = setup.vector_length
        self._modulus_bits = setup.modulus_bits
        self._neighbours = frozenset(setup.neighbours)
        self._mask_keys = generate_keypair()
        self._share_keys = generate_keypair()
        return [
            KeyAdvertisement(
                **self._header(),
                mask_public_key=self._mask_keys.public_bytes,
                share_public_key=self._share_keys.public_bytes,
            )
        ]

    # -- round 1 ----------------------------------------------------------------------------

    def _on_roster(self, roster: KeyRoster) -> list[Message]:
        assert self._mask_keys is not None and self._share_keys is not None
        ids = [entry.client_id for entry in roster.entries]
        if len(set(ids)) != len(ids):
            raise ServerMisbehaviourError("the roster lists a client twice")
        keys = [e.mask_public_key for e in roster.entries]
        keys += [e.share_public_key for e in roster.entries]
        if len(set(keys)) != len(keys):
            raise ServerMisbehaviourError("the roster repeats a public key")
        by_id = {entry.client_id: entry for entry in roster.entries}
        own = by_id.get(self.client_id)
        if own is None:
            raise ServerMisbehaviourError("the roster leaves out this client's own keys")
        if (own.mask_public_key, own.share_public_key) != (
            self._mask_keys.public_bytes,
            self._share_keys.public_bytes,
        ):
            raise ServerMisbehaviourError("the roster altered this client's own public keys")
        strangers = set(by_id) - self._neighbours - {self.client_id}
        if strangers:
            raise ServerMisbehaviourError(f"the roster names non-neighbours {sorted(strangers)}")
        if len(by_id) < self._threshold:
            raise InsufficientSurvivorsError(
                f"the roster has {len(by_id)} members, below the threshold {self._threshold}"
            )
        self._roster = by_id
        self._self_mask_seed = secrets.token_bytes(_SEED_BYTES)
        holders = [_x(u) for u in sorted(by_id)]
        seed_shares = shamir.split(
            shamir.secret_from_bytes(self._self_mask_seed), self._threshold, holders
        )
        key_shares = shamir.split(
            shamir.secret_from_bytes(self._mask_keys.private_bytes), self._threshold, holders
        )
        bundles = []
        for peer in sorted(by_id):
            pair = (seed_shares[_x(peer)], key_shares[_x(peer)])
            if peer == self.client_id:
                self._held_shares[peer] = pair
                continue
            plaintext = (
                _BUNDLE.pack(self.client_id, peer)
                + shamir.share_to_bytes(pair[0])
                + shamir.share_to_bytes(pair[1])
            )
            key = _share_key(
                self._share_keys,
                by_id[peer].share_public_key,
                self.session_id,
                self.round_id,
                self.client_id,
                peer,
            )
            # The same key opens the peer's bundle to us in the next round.
            self._share_keys_by_peer[peer] = key
            ad = aead.associated_data(self.session_id, self.round_id, self.client_id, peer)
            bundles.append(SealedShares(peer=peer, ciphertext=aead.seal(key, plaintext, ad)))
        return [EncryptedShares(**self._header(), bundles=tuple(bundles))]

    # -- round 2 ----------------------------------------------------------------------------

    def _on_forwarded_shares(self, forwarded: ForwardedShares) -> list[Message]:
        assert self._share_keys is not None
        senders = [bundle.peer for bundle in forwarded.bundles]
        if len(set(senders)) != len(senders):
            raise RemoteProtocolError("shares from one sender were forwarded twice")
        unknown = set(senders) - set(self._roster) | ({self.client_id} & set(senders))
        if unknown:
            raise RemoteProtocolError(f"shares forwarded from non-roster ids {sorted(unknown)}")
        if len(senders) + 1 < self._threshold:
            raise InsufficientSurvivorsError(
                f"only {len(senders) + 1} share holders remain, below the threshold "
                f"{self._threshold}"
            )
        for bundle in forwarded.bundles:
            key = self._share_keys_by_peer[bundle.peer]
            ad = aead.associated_data(self.session_id, self.round_id, bundle.peer, self.client_id)
            plaintext = aead.open_(key, bundle.ciphertext, ad)
            if len(plaintext) != _BUNDLE_BYTES:
                raise InvalidCiphertextError("invalid ciphertext")
            owner, recipient = _BUNDLE.unpack_from(plaintext)
            if (owner, recipient) != (bundle.peer, self.client_id):
                raise InvalidCiphertextError("invalid ciphertext")
            try:
                seed_share = shamir.share_from_bytes(plaintext[_BUNDLE.size : -shamir.SHARE_BYTES])
                key_share = shamir.share_from_bytes(plaintext[-shamir.SHARE_BYTES :])
            except ReconstructionError:
                raise InvalidCiphertextError("invalid ciphertext") from None
            self._held_shares[owner] = (seed_share, key_share)
        self._mask_peers = tuple(sorted(senders))
        self._share_keys_by_peer = {}
        return []

    def _submit_input(self, vector: npt.ArrayLike) -> list[Message]:
        next_phase = self.advance(SubmitInput, remote=False)
        assert self._mask_keys is not None and self._self_mask_seed is not None
        masked = self._checked_input(vector)
        add_mask(
            masked,
            _self_mask_key(self._self_mask_seed, self.session_id, self.round_id, self.client_id),
        )
        for peer in self._mask_peers:
            key = _pairwise_mask_key(
                self._mask_keys,
                self._roster[peer].mask_public_key,
                self.session_id,
                self.round_id,
                self.client_id,
                peer,
            )
            add_mask(masked, key, subtract=peer < self.client_id)
        _reduce(masked, self._modulus_bits)
        # The mask key and seed are no longer needed here; only their shares are.
        self._mask_keys = None
        self._self_mask_seed = None
        self._phase = next_phase
        return [
            MaskedInput(
                **self._header(),
                modulus_bits=self._modulus_bits,
                vector=masked,
            )
        ]

    def _checked_input(self, vector: npt.ArrayLike) -> RingArray:
        array = np.asarray(vector)
        if array.ndim != 1 or array.shape[0] != self._vector_length:
            raise LocalProtocolError(
                f"input has shape {array.shape}; this round expects {self._vector_length} values"
            )
        if array.dtype.kind not in "ui":
            raise LocalProtocolError(
                f"input dtype is {array.dtype}; quantize it to integers first "
                "(secagg.encoding.QuantizationScheme)"
            )
        if array.size and (int(array.min()) < 0 or int(array.max()) >> self._modulus_bits):
            raise LocalProtocolError(
                f"input values must lie in [0, 2^{self._modulus_bits}); quantize with enough "
                "headroom"
            )
        return array.astype(ring_dtype(self._modulus_bits), copy=True)

    # -- round 3 ----------------------------------------------------------------------------

    def _on_unmask_request(self, request: UnmaskRequest) -> list[Message]:
        survivors, dropped = request.survivors, request.dropped
        if self.client_id in dropped:
            raise ServerMisbehaviourError(
                "the server claims this client dropped: answering would reveal its own mask key"
            )
        overlap = set(survivors) & set(dropped)
        if overlap:
            raise ServerMisbehaviourError(
                f"clients {sorted(overlap)} are named both survivor and dropped: answering "
                "would reveal both of their secrets"
            )
        if len(set(survivors)) != len(survivors) or len(set(dropped)) != len(dropped):
            raise RemoteProtocolError("the unmask request names a client twice")
        known = set(self._mask_peers) | {self.client_id}
        unknown = (set(survivors) | set(dropped)) - known
        if unknown:
            raise RemoteProtocolError(
                f"the unmask request names {sorted(unknown)}, whose shares this client never held"
            )
        if self.client_id not in survivors:
            raise RemoteProtocolError("the unmask request leaves out this client, which uploaded")
        if len(survivors) < self._threshold:
            raise InsufficientSurvivorsError(
                f"{len(survivors)} survivors named, below the threshold {self._threshold}"
            )
        response = UnmaskResponse(
            **self._header(),
            self_mask_shares=tuple(
                ShareEntry(owner=u, value=self._held_shares[u][0]) for u in sorted(survivors)
            ),
            mask_key_shares=tuple(
                ShareEntry(owner=u, value=self._held_shares[u][1]) for u in sorted(dropped)
            ),
        )
        self._held_shares = {}
        self._share_keys = None
        return [response]


def _reduce(vector: RingArray, modulus_bits: int) -> None:
    if modulus_bits < 8 * vector.dtype.itemsize:
        np.bitwise_and(vector, (1 << modulus_bits) - 1, out=vector, casting="unsafe")


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MaskingParams:
    """The server's configuration of one masking round.

    Attributes:
        session_id: 16 random bytes naming the session (e.g. ``secrets.token_bytes(16)``).
        round_id: the protocol instance within the session; never reuse one.
        graph: the neighbour graph; complete for SecAgg, Harary for SecAgg+.
        threshold: Shamir threshold t; every neighbourhood (with its owner) must keep t members.
        vector_length: number of ring values each client uploads.
        modulus_bits: k, the ring Z_{2^k} (from :class:`secagg.encoding.QuantizationScheme`).
    """

    session_id: bytes
    round_id: int
    graph: NeighbourGraph
    threshold: int
    vector_length: int
    modulus_bits: int

    def __post_init__(self) -> None:
        check_session(self.session_id, self.round_id)
        nodes = self.graph.nodes
        if len(nodes) < 2 or nodes[0] < 0 or nodes[-1] > MAX_PARTY_ID:
            raise ParameterError(f"client ids must be in [0, {MAX_PARTY_ID}], at least two")
        smallest = min(len(p) for p in self.graph.neighbours.values()) + 1
        if not 2 <= self.threshold <= smallest:
            raise ParameterError(
                f"threshold {self.threshold} must be in [2, {smallest}] (the smallest "
                "neighbourhood including its owner)"
            )
        if self.vector_length < 1:
            raise ParameterError(f"vector_length must be >= 1, got {self.vector_length}")
        ring_dtype(self.modulus_bits)


@dataclass(frozen=True, slots=True, eq=False)
class AggregateResult:
    """The server's output: the ring sum of the survivors' inputs, and who they are."""

    vector: RingArray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    dropped_at: dict[int, int] = field(default_factory=dict)


class MaskingServer(Machine[ServerPhase]):
    """The server's side of a masking round; one instance per round.

    Bad messages from a client raise :class:`RemoteProtocolError` and are discarded without
    touching the round's state (one client cannot abort everyone else's round). Too few
    survivors at any close raises :class:`InsufficientSurvivorsError` and aborts the round.
    """

    TRANSITIONS = SERVER_TRANSITIONS
    ABORTED = ServerPhase.ABORTED
    role = "server"

    def __init__(self, params: MaskingParams) -> None:
        self.params: Final = params
        self._phase = ServerPhase.IDLE
        self._dtype = ring_dtype(params.modulus_bits)
        self._neighbours = params.graph.neighbours
        self._expected: set[int] = set(params.graph.nodes)  # who may speak in this phase
        self._dropped_at: dict[int, int] = {}
        self._keys: dict[int, KeyAdvertisement] = {}
        self._rosters: dict[int, frozenset[int]] = {}
        self._sealed: dict[int, dict[int, bytes]] = {}
        self._mask_peers: dict[int, frozenset[int]] = {}
        self._uploaded: set[int] = set()
        self._sum = np.zeros(0, dtype=self._dtype)
        self._requests: dict[int, UnmaskRequest] = {}
        self._seed_shares: dict[int, dict[int, int]] = {}
        self._key_shares: dict[int, dict[int, int]] = {}
        self._responders: set[int] = set()
        self._result: AggregateResult | None = None
        self.abort_reason: str | None = None

    @property
    def result(self) -> AggregateResult:
        """The aggregate, once the round is ``DONE``."""
        return finished(self._result, self._phase)

    @property
    def dropped_at(self) -> dict[int, int]:
        """Client id -> protocol round (0-3) in which it fell out, so far."""
        return dict(self._dropped_at)

    @property
    def alive(self) -> tuple[int, ...]:
        """Clients still taking part."""
        return tuple(sorted(self._expected))

    def _header(self, recipient: int) -> Header:
        return header(self.params.session_id, self.params.round_id, SERVER_ID, recipient)

    def forget_secrets(self) -> None:
        """Drop the running sum, the sealed bundles and every share received."""
        self._sum = np.zeros(0, dtype=self._dtype)
        self._sealed.clear()
        self._seed_shares.clear()
        self._key_shares.clear()

    # -- driving ------------------------------------------------------------------------------

    def start(self) -> list[Message]:
        """Begin round 0: one :class:`RoundSetup` per client."""
        self._phase = self.advance(Start, remote=False)
        p = self.params
        return [
            RoundSetup(
                **self._header(u),
                threshold=p.threshold,
                vector_length=p.vector_length,
                modulus_bits=p.modulus_bits,
                neighbours=tuple(sorted(self._neighbours[u])),
            )
            for u in p.graph.nodes
        ]

    def receive(self, message: Message) -> list[Message]:
        """Record one client message of the current round; the server never replies at once.

        A bad message raises a :class:`~secagg.errors.SecAggError` and is discarded before it
        touches the round (one client cannot abort everyone else's round); any other failure
        poisons the server.
        """
        try:
            self._receive(message)
        except SecAggError:
            raise
        except Exception as error:
            raise self.fail(error, remote=True) from None
        return []

    def _receive(self, message: Message) -> None:
        p = self.params
        check_addressed(message, session_id=p.session_id, round_id=p.round_id, recipient=SERVER_ID)
        self.advance(type(message), remote=True)
        if isinstance(message, Abort):
            self._drop(message.sender)
            return
        if message.sender not in self._expected:
            raise RemoteProtocolError(
                f"client {message.sender} is not (or no longer) part of this round"
            )
        if isinstance(message, KeyAdvertisement):
            self._on_keys(message)
        elif isinstance(message, EncryptedShares):
            self._on_shares(message)
        elif isinstance(message, MaskedInput):
            self._on_input(message)
        else:
            assert isinstance(message, UnmaskResponse)  # the only other move in the table
            self._on_unmask(message)

    def close_phase(self) -> list[Message]:
        """The round deadline passed: drop the silent, check the threshold, start the next round."""
        next_phase = self.advance(ClosePhase, remote=False)
        return self.guarded(lambda: self._close(next_phase), remote=False)

    def _close(self, next_phase: ServerPhase) -> list[Message]:
        closers: dict[ServerPhase, Callable[[], list[Message]]] = {
            ServerPhase.COLLECT_KEYS: self._close_keys,
            ServerPhase.COLLECT_SHARES: self._close_shares,
            ServerPhase.COLLECT_INPUTS: self._close_inputs,
            ServerPhase.COLLECT_UNMASK: self._close_unmask,
        }
        messages = closers[self._phase]()
        self._phase = next_phase
        return messages

    def abort_messages(self) -> list[Message]:
        """:class:`Abort` notices for the clients still in the round (after an abort)."""
        reason = self.abort_reason or "aborted"
        return [Abort(**self._header(u), reason=reason) for u in sorted(self._expected)]

    # -- bookkeeping ----------------------------------------------------------------------------

    def _drop(self, client: int) -> None:
        if client in self._expected:
            self._expected.discard(client)
            self._dropped_at[client] = SERVER_ROUND_INDEX.get(self._phase, 0)

    def _abort(self, reason: str) -> InsufficientSurvivorsError:
        self._phase = ServerPhase.ABORTED
        self.abort_reason = reason
        self._sum = np.zeros(0, dtype=self._dtype)
        self._seed_shares.clear()
        self._key_shares.clear()
        return InsufficientSurvivorsError(reason)

    def _keep_responders(self, responded: Iterable[int]) -> None:
        """Drop everyone expected in this phase who did not respond."""
        for client in sorted(self._expected - set(responded)):
            self._drop(client)

    def _prune(self, live: set[int]) -> None:
        """Drop clients whose live neighbourhood (with themselves) fell below the threshold."""
        t = self.params.threshold
        round_index = SERVER_ROUND_INDEX[self._phase]
        if len(live) < t:
            raise self._abort(
                f"{len(live)} clients answered in round {round_index}, below the threshold {t}"
            )
        kept = set(live)
        changed = True
        while changed:
            changed = False
            for u in sorted(kept):
                if len(self._neighbours[u] & kept) + 1 < t:
                    kept.discard(u)
                    changed = True
        if len(kept) < t:
            # Everyone who answered is still expected, so abort_messages() reaches them all.
            raise self._abort(
                f"after dropping clients whose neighbourhood fell below the threshold {t}, "
                f"{len(kept)} clients remain in round {round_index}"
            )
        for u in sorted(live - kept):
            self._drop(u)
        live.intersection_update(kept)

    # -- round 0 ------------------------------------------------------------------------------

    def _on_keys(self, message: KeyAdvertisement) -> None:
        if message.sender in self._keys:
            raise RemoteProtocolError(f"client {message.sender} advertised keys twice")
        if message.mask_public_key == message.share_public_key:
            raise RemoteProtocolError(f"client {message.sender} reused one key for two purposes")
        self._keys[message.sender] = message

    def _close_keys(self) -> list[Message]:
        self._keep_responders(self._keys)
        live = set(self._keys)
        self._prune(live)
        messages: list[Message] = []
        for u in sorted(live):
            members = (self._neighbours[u] & live) | {u}
            self._rosters[u] = frozenset(members)
            entries = tuple(
                RosterEntry(
                    client_id=v,
                    mask_public_key=self._keys[v].mask_public_key,
                    share_public_key=self._keys[v].share_public_key,
                )
                for v in sorted(members)
            )
            messages.append(KeyRoster(**self._header(u), entries=entries))
        return messages

    # -- round 1 ------------------------------------------------------------------------------

    def _on_shares(self, message: EncryptedShares) -> None:
        sender = message.sender
        if sender in self._sealed:
            raise RemoteProtocolError(f"client {sender} sent its shares twice")
        recipients = [bundle.peer for bundle in message.bundles]
        if sorted(recipients) != sorted(self._rosters[sender] - {sender}):
            raise RemoteProtocolError(
                f"client {sender} must send one bundle to each roster member, got {recipients}"
            )
        self._sealed[sender] = {b.peer: b.ciphertext for b in message.bundles}

    def _close_shares(self) -> list[Message]:
        self._keep_responders(self._sealed)
        live = set(self._sealed)
        self._prune(live)
        self._sum = np.zeros(self.params.vector_length, dtype=self._dtype)
        messages: list[Message] = []
        for v in sorted(live):
            senders = frozenset(self._neighbours[v] & live)
            self._mask_peers[v] = senders
            bundles = tuple(
                SealedShares(peer=u, ciphertext=self._sealed[u][v]) for u in sorted(senders)
            )
            messages.append(ForwardedShares(**self._header(v), bundles=bundles))
        self._sealed.clear()
        return messages

    # -- round 2 ------------------------------------------------------------------------------

    def _on_input(self, message: MaskedInput) -> None:
        p = self.params
        if message.sender in self._uploaded:
            raise RemoteProtocolError(f"client {message.sender} uploaded twice")
        vector = message.vector
        if message.modulus_bits != p.modulus_bits or vector.dtype != self._dtype:
            raise RemoteProtocolError(
                f"client {message.sender} used a {message.modulus_bits}-bit ring, expected "
                f"{p.modulus_bits}"
            )
        if vector.shape != (p.vector_length,):
            raise RemoteProtocolError(
                f"client {message.sender} uploaded {vector.shape[0]} values, expected "
                f"{p.vector_length}"
            )
        if p.modulus_bits < 8 * self._dtype.itemsize and int(vector.max()) >> p.modulus_bits:
            raise RemoteProtocolError(f"client {message.sender} uploaded values outside the ring")
        np.add(self._sum, vector, out=self._sum)
        self._uploaded.add(message.sender)

    def _close_inputs(self) -> list[Message]:
        self._keep_responders(self._uploaded)
        survivors = set(self._uploaded)
        t = self.params.threshold
        if len(survivors) < t:
            raise self._abort(f"{len(survivors)} masked inputs arrived, below the threshold {t}")
        messages: list[Message] = []
        for v in sorted(survivors):
            alive = (self._mask_peers[v] & survivors) | {v}
            if len(alive) < t:
                raise self._abort(
                    f"client {v} kept {len(alive)} live share holders, below the threshold {t}"
                )
            request = UnmaskRequest(
                **self._header(v),
                survivors=tuple(sorted(alive)),
                dropped=tuple(sorted(self._mask_peers[v] - survivors)),
            )
            self._requests[v] = request
            messages.append(request)
        return messages

    # -- round 3 ------------------------------------------------------------------------------

    def _on_unmask(self, message: UnmaskResponse) -> None:
        sender = message.sender
        if sender in self._responders:
            raise RemoteProtocolError(f"client {sender} answered the unmask request twice")
        request = self._requests[sender]
        seed_owners = {share.owner for share in message.self_mask_shares}
        key_owners = {share.owner for share in message.mask_key_shares}
        if seed_owners != set(request.survivors) or key_owners != set(request.dropped):
            raise RemoteProtocolError(f"client {sender} answered a different unmask request")
        for share in message.self_mask_shares:
            self._seed_shares.setdefault(share.owner, {})[_x(sender)] = share.value
        for share in message.mask_key_shares:
            self._key_shares.setdefault(share.owner, {})[_x(sender)] = share.value
        self._responders.add(sender)

    def _close_unmask(self) -> list[Message]:
        p = self.params
        # Clients that uploaded but do not answer now stay in the sum: their input arrived.
        for client in sorted(self._expected - self._responders):
            self._dropped_at.setdefault(client, 3)
        reconstructors: dict[tuple[int, ...], shamir.Reconstructor] = {}

        def recover(owner: int, shares: dict[int, int], what: str) -> bytes:
            if len(shares) < p.threshold:
                raise self._abort(
                    f"only {len(shares)} shares of client {owner}'s {what} arrived, below the "
                    f"threshold {p.threshold}"
                )
            holders = tuple(sorted(shares)[: p.threshold])
            reconstructor = reconstructors.get(holders)
            if reconstructor is None:
                reconstructor = reconstructors[holders] = shamir.Reconstructor(holders)
            try:
                return shamir.secret_to_bytes(reconstructor.combine(shares))
            except ReconstructionError:
                raise self._abort(f"the shares of client {owner}'s {what} are corrupt") from None

        total = self._sum
        survivors = sorted(self._uploaded)
        for v in survivors:
            seed = recover(v, self._seed_shares.get(v, {}), "self-mask seed")
            add_mask(total, _self_mask_key(seed, p.session_id, p.round_id, v), subtract=True)
        for u in sorted(self._mask_peers):
            partners = self._mask_peers[u] & self._uploaded
            if u in self._uploaded or not partners:
                continue
            private = keypair_from_private_bytes(
                recover(u, self._key_shares.get(u, {}), "mask key")
            )
            if private.public_bytes != self._keys[u].mask_public_key:
                raise self._abort(f"client {u}'s mask key did not reconstruct to its public key")
            for v in sorted(partners):
                key = _pairwise_mask_key(
                    private, self._keys[v].mask_public_key, p.session_id, p.round_id, u, v
                )
                # v added +PRG(s_uv) when v < u and -PRG(s_uv) when v > u; undo it.
                add_mask(total, key, subtract=v < u)
        _reduce(total, p.modulus_bits)
        self._seed_shares.clear()
        self._key_shares.clear()
        self._result = AggregateResult(
            vector=total,
            survivors=tuple(survivors),
            dropped=tuple(sorted(set(p.graph.nodes) - self._uploaded)),
            dropped_at=dict(self._dropped_at),
        )
        return []
