"""The server's side of a masking round: relays keys and shares, sums uploads, unmasks the sum.

It never learns a single input: it keeps a running sum of masked vectors and, after the upload
deadline, asks every survivor for the shares that remove the survivors' self-masks and the
dropped clients' pairwise masks. A bad message from one client is discarded without touching
the round; too few survivors at any close aborts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import numpy as np

from protocols._machine import (
    ServerMachine,
    Start,
    check_addressed,
    finished,
)
from protocols._transitions import (
    SERVER_ROUND_INDEX,
    SERVER_TRANSITIONS,
    ServerPhase,
)
from protocols.masking.keys import (
    pairwise_mask_key,
    reduce_ring,
    self_mask_key,
    shamir_x,
)
from protocols.masking.params import AggregateResult, MaskingParams
from protocols.messages import (
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
    UnmaskRequest,
    UnmaskResponse,
    header,
)
from secagg.encoding import ring_dtype
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    ReconstructionError,
    RemoteProtocolError,
)
from secagg.hazmat import shamir
from secagg.hazmat.kex import check_public_key, keypair_from_private_bytes
from secagg.hazmat.prg import add_mask

__all__ = ["MaskingServer"]


class MaskingServer(ServerMachine[ServerPhase]):
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
        self._key_owners: dict[bytes, int] = {}  # every advertised public key -> its client
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

    def _record(self, message: Message) -> None:
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
        sender = message.sender
        if sender in self._keys:
            raise RemoteProtocolError(f"client {sender} advertised keys twice")
        keys = (message.mask_public_key, message.share_public_key)
        if keys[0] == keys[1]:
            raise RemoteProtocolError(f"client {sender} reused one key for two purposes")
        for key in keys:
            if key in self._key_owners:
                raise RemoteProtocolError(
                    f"client {sender} advertised a public key of client "
                    f"{self._key_owners[key]}; it is left out"
                )
        for key in keys:
            try:
                check_public_key(key)
            except InvalidCiphertextError:
                # Relayed, it would make every neighbour abort: the client is left out instead.
                raise RemoteProtocolError(
                    f"client {sender} advertised an invalid (low-order) public key; it is left out"
                ) from None
        self._keys[sender] = message
        self._key_owners.update(dict.fromkeys(keys, sender))

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
            self._seed_shares.setdefault(share.owner, {})[shamir_x(sender)] = share.value
        for share in message.mask_key_shares:
            self._key_shares.setdefault(share.owner, {})[shamir_x(sender)] = share.value
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
            add_mask(total, self_mask_key(seed, p.session_id, p.round_id, v), subtract=True)
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
                key = pairwise_mask_key(
                    private, self._keys[v].mask_public_key, p.session_id, p.round_id, u, v
                )
                # v added +PRG(s_uv) when v < u and -PRG(s_uv) when v > u; undo it.
                add_mask(total, key, subtract=v < u)
        reduce_ring(total, p.modulus_bits)
        self._seed_shares.clear()
        self._key_shares.clear()
        self._result = AggregateResult(
            vector=total,
            survivors=tuple(survivors),
            dropped=tuple(sorted(set(p.graph.nodes) - self._uploaded)),
            dropped_at=dict(self._dropped_at),
        )
        return []
