"""The server's side of a masking round: relays keys and shares, sums uploads, unmasks the sum.

It never learns a single input: it sums masked vectors and, after the upload deadline, asks
every survivor for the shares that remove the survivors' self-masks and the dropped clients'
pairwise masks. Against an active adversary (``threat_model="active"``) it checks every
advertisement's identity signature against the trusted roster, and runs the consistency round
(Bonawitz et al. 2017, round 3): it shows every survivor the same survivor set and relays the
signatures over it, which honest clients check before they release a share.

One misbehaving client cannot break the round. Its bad message is discarded and the client is
named in :attr:`AggregateResult.misbehaved`: a copied, low-order or unsigned key leaves it out
in round 0; a share bundle its peer cannot open only costs it that holder (the peer still masks
with it, and is asked for none of its shares); a share that does not match the digest its dealer
sent is
not used, and the other holders' shares are (the holder is named together with the dealer:
either may have lied). Every reconstruction is checked against the
dealer's commitment, so a dealer whose shares are inconsistent aborts the round with
:class:`~secagg.errors.ClientMisbehaviourError` naming it: the round never returns a wrong sum.
Too few survivors at any close aborts it with :class:`~secagg.errors.InsufficientSurvivorsError`,
and so do fewer uploads than the round's survivor floor (``MaskingParams.min_survivors``): that
check runs after the masked-input collection and again before any :class:`UnmaskRequest` is
built, so a sum below the floor is never unmasked, and nothing of it is kept.
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
    ACTIVE_SERVER_TRANSITIONS,
    SERVER_ROUND_INDEX,
    SERVER_TRANSITIONS,
    ServerPhase,
)
from protocols.graph import harary_graph
from protocols.identity import TrustedRoster
from protocols.masking.keys import (
    RingArray,
    ShareKind,
    check_advertisement,
    consistency_message,
    pairwise_mask_key,
    reduce_ring,
    seed_commitment,
    self_mask_key,
    shamir_x,
    share_digest,
)
from protocols.masking.params import AggregateResult, MaskingParams
from protocols.messages import (
    SERVER_ID,
    Abort,
    ConsistencyRequest,
    ConsistencySignature,
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
    ShareDigest,
    ShareEntry,
    SignatureEntry,
    UnmaskRequest,
    UnmaskResponse,
    header,
)
from secagg.encoding import ring_dtype
from secagg.errors import (
    ClientMisbehaviourError,
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    InvalidSignatureError,
    ParameterError,
    ReconstructionError,
    RemoteProtocolError,
    SecAggError,
)
from secagg.hazmat import shamir
from secagg.hazmat.kex import check_public_key, keypair_from_private_bytes
from secagg.hazmat.prg import add_mask

__all__ = ["MaskingServer"]


class MaskingServer(ServerMachine[ServerPhase]):
    """The server's side of a masking round; one instance per round.

    Args:
        params: the round's configuration (its ``threat_model`` picks the protocol).
        roster: the trusted roster; required against an active adversary, whose clients all
            hold identity keys on it and whose graph must be the roster's public graph.

    Bad messages from a client raise :class:`RemoteProtocolError` and are discarded without
    touching the round's state (one client cannot abort everyone else's round). Too few
    survivors at any close raises :class:`InsufficientSurvivorsError` and aborts the round.
    """

    ABORTED = ServerPhase.ABORTED
    role = "server"

    def __init__(self, params: MaskingParams, roster: TrustedRoster | None = None) -> None:
        self.params: Final = params
        self.roster: Final = roster
        self.TRANSITIONS = SERVER_TRANSITIONS
        if params.threat_model == "active":
            _check_active_setup(params, roster)
            self.TRANSITIONS = ACTIVE_SERVER_TRANSITIONS
        self._phase = ServerPhase.IDLE
        self._dtype = ring_dtype(params.modulus_bits)
        self._neighbours = params.graph.neighbours
        self._expected: set[int] = set(params.graph.nodes)  # who may speak in this phase
        self._dropped_at: dict[int, int] = {}
        self._culprits: dict[int, str] = {}
        self._keys: dict[int, KeyAdvertisement] = {}
        self._key_owners: dict[bytes, int] = {}  # every advertised public key -> its client
        self._rosters: dict[int, frozenset[int]] = {}
        self._sealed: dict[int, dict[int, bytes]] = {}
        self._digests: dict[int, dict[int, ShareDigest]] = {}  # owner -> holder -> digest
        self._mask_peers: dict[int, frozenset[int]] = {}  # whom each client masks with
        self._holds: dict[int, frozenset[int]] = {}  # whose shares each uploader holds
        self._uploaded: set[int] = set()
        self._survivors: frozenset[int] = frozenset()
        self._signatures: dict[int, bytes] = {}
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
        """Client id -> protocol round (0-4) in which it fell out, so far."""
        return dict(self._dropped_at)

    @property
    def misbehaved(self) -> dict[int, str]:
        """Client id -> what it did wrong, so far (it was excluded or its bad shares unused)."""
        return dict(self._culprits)

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
        handlers: dict[type, Callable[[Message], None]] = {
            KeyAdvertisement: self._on_keys,
            EncryptedShares: self._on_shares,
            MaskedInput: self._on_input,
            ConsistencySignature: self._on_signature,
            UnmaskResponse: self._on_unmask,
        }
        handlers[type(message)](message)

    def _close(self, next_phase: ServerPhase) -> list[Message]:
        closers: dict[ServerPhase, Callable[[], list[Message]]] = {
            ServerPhase.COLLECT_KEYS: self._close_keys,
            ServerPhase.COLLECT_SHARES: self._close_shares,
            ServerPhase.COLLECT_INPUTS: self._close_inputs,
            ServerPhase.COLLECT_CONSISTENCY: self._close_consistency,
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

    def _refuse(self, client: int, reason: str) -> RemoteProtocolError:
        """Name ``client`` as a culprit; the error discards its message."""
        self._culprits.setdefault(client, reason)
        return RemoteProtocolError(f"client {client} {reason}")

    def _abort(self, reason: str, culprit: int | None = None) -> SecAggError:
        self._phase = ServerPhase.ABORTED
        self.abort_reason = reason
        self.forget_secrets()
        if culprit is None:
            return InsufficientSurvivorsError(reason)
        return ClientMisbehaviourError(reason, culprit)

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

    def _on_keys(self, message: Message) -> None:
        assert isinstance(message, KeyAdvertisement)
        sender = message.sender
        if sender in self._keys:
            raise RemoteProtocolError(f"client {sender} advertised keys twice")
        keys = (message.mask_public_key, message.share_public_key)
        if keys[0] == keys[1]:
            raise self._refuse(sender, "reused one key for two purposes; it is left out")
        for key in keys:
            if key in self._key_owners:
                raise self._refuse(
                    sender,
                    f"advertised a public key of client {self._key_owners[key]}; it is left out",
                )
        for key in keys:
            try:
                check_public_key(key)
            except InvalidCiphertextError:
                # Relayed, it would make every neighbour abort: the client is left out instead.
                raise self._refuse(
                    sender, "advertised an invalid (low-order) public key; it is left out"
                ) from None
        if self.roster is not None:
            self._check_advert_signature(message)
        self._keys[sender] = message
        self._key_owners.update(dict.fromkeys(keys, sender))

    def _check_advert_signature(self, message: KeyAdvertisement) -> None:
        assert self.roster is not None
        p = self.params
        try:
            check_advertisement(self.roster, p.session_id, p.round_id, message.sender, message)
        except InvalidSignatureError:
            raise self._refuse(
                message.sender,
                "sent an advertisement its identity key did not sign; it is left out",
            ) from None

    def _close_keys(self) -> list[Message]:
        self._keep_responders(self._keys)
        live = set(self._keys)
        self._prune(live)
        messages: list[Message] = []
        for u in sorted(live):
            members = (self._neighbours[u] & live) | {u}
            self._rosters[u] = frozenset(members)
            entries = tuple(_roster_entry(self._keys[v]) for v in sorted(members))
            messages.append(KeyRoster(**self._header(u), entries=entries))
        return messages

    # -- round 1 ------------------------------------------------------------------------------

    def _on_shares(self, message: Message) -> None:
        assert isinstance(message, EncryptedShares)
        sender = message.sender
        if sender in self._sealed:
            raise RemoteProtocolError(f"client {sender} sent its shares twice")
        recipients = [bundle.peer for bundle in message.bundles]
        if sorted(recipients) != sorted(self._rosters[sender] - {sender}):
            raise self._refuse(
                sender, f"must send one bundle to each roster member, got {recipients}"
            )
        holders = [digest.holder for digest in message.digests]
        if sorted(holders) != sorted(self._rosters[sender]):
            raise self._refuse(sender, "must send one share digest per roster member")
        self._sealed[sender] = {b.peer: b.ciphertext for b in message.bundles}
        self._digests[sender] = {d.holder: d for d in message.digests}

    def _close_shares(self) -> list[Message]:
        self._keep_responders(self._sealed)
        live = set(self._sealed)
        self._prune(live)
        messages: list[Message] = []
        for v in sorted(live):
            senders = frozenset(self._neighbours[v] & live)
            self._mask_peers[v] = senders
            bundles = tuple(
                SealedShares(peer=u, ciphertext=self._sealed[u][v]) for u in sorted(senders)
            )
            messages.append(ForwardedShares(**self._header(v), bundles=bundles))
        self._sealed.clear()
        self._sum = np.zeros(self.params.vector_length, dtype=self._dtype)
        return messages

    # -- round 2 ------------------------------------------------------------------------------

    def _on_input(self, message: Message) -> None:
        assert isinstance(message, MaskedInput)
        p = self.params
        sender = message.sender
        if sender in self._uploaded:
            raise RemoteProtocolError(f"client {sender} uploaded twice")
        vector = message.vector
        if message.modulus_bits != p.modulus_bits or vector.dtype != self._dtype:
            raise RemoteProtocolError(
                f"client {sender} used a {message.modulus_bits}-bit ring, expected {p.modulus_bits}"
            )
        if vector.shape != (p.vector_length,):
            raise RemoteProtocolError(
                f"client {sender} uploaded {vector.shape[0]} values, expected {p.vector_length}"
            )
        if p.modulus_bits < 8 * self._dtype.itemsize and int(vector.max()) >> p.modulus_bits:
            raise RemoteProtocolError(f"client {sender} uploaded values outside the ring")
        if not set(message.rejected) <= self._mask_peers[sender]:
            raise RemoteProtocolError(
                f"client {sender} rejected bundles it was never sent: {list(message.rejected)}"
            )
        np.add(self._sum, vector, out=self._sum)
        self._uploaded.add(sender)
        # It masked with every peer it was sent, but holds no share of those it rejected.
        self._holds[sender] = self._mask_peers[sender] - set(message.rejected)
        for accused in message.rejected:
            self._culprits.setdefault(
                accused,
                f"sent client {sender} a share bundle that did not open (reported by client "
                f"{sender}; either may have lied): client {sender} holds none of its shares",
            )

    def _close_inputs(self) -> list[Message]:
        self._keep_responders(self._uploaded)
        survivors = set(self._uploaded)
        self._check_floor(survivors)
        self._check_recoverable(survivors)
        self._survivors = frozenset(survivors)
        if self.roster is None:
            return self._unmask_requests(survivors, ())
        return [
            ConsistencyRequest(**self._header(v), survivors=tuple(sorted(survivors)))
            for v in sorted(survivors)
        ]

    def _check_floor(self, survivors: Iterable[int]) -> None:
        """Abort, before any unmask request, when fewer uploads than the floor survived."""
        count = len(set(survivors))
        floor = self.params.min_survivors
        if count < floor:
            raise self._abort(
                f"{count} masked inputs survived, below the round's minimum of {floor} "
                "survivors: the round is aborted before any unmask request, so the sum is "
                "never unmasked"
            )

    def _check_recoverable(self, survivors: set[int]) -> None:
        """Abort now, before any share is asked for, if some mask could not be removed.

        Every survivor's self-mask seed, and the mask key of every other client a survivor
        masked with, needs t holders among the survivors (a client holds its own shares and
        those of the peers whose bundles it opened).
        """
        t = self.params.threshold
        if len(survivors) < t:
            raise self._abort(f"{len(survivors)} masked inputs arrived, below the threshold {t}")
        holders: dict[int, set[int]] = {}
        needed = set(survivors)  # every survivor's seed, and the mask key of its dropped peers
        for w in survivors:
            needed.update(self._mask_peers[w])
            for owner in self._holds[w]:
                holders.setdefault(owner, set()).add(w)
        for owner in sorted(needed):
            count = len(holders.get(owner, ())) + (owner in survivors)
            if count < t:
                what = "self-mask seed" if owner in survivors else "mask key"
                raise self._abort(
                    f"only {count} surviving clients hold shares of client {owner}'s {what}, "
                    f"below the threshold {t}"
                )

    # -- round 3 (active model) ---------------------------------------------------------------

    def _on_signature(self, message: Message) -> None:
        assert isinstance(message, ConsistencySignature) and self.roster is not None
        p = self.params
        sender = message.sender
        if sender in self._signatures:
            raise RemoteProtocolError(f"client {sender} signed the survivor set twice")
        signed = consistency_message(p.session_id, p.round_id, sender, self._survivors)
        try:
            self.roster.check_signature(sender, signed, message.signature)
        except InvalidSignatureError:
            raise self._refuse(
                sender, "sent a consistency signature that does not verify"
            ) from None
        self._signatures[sender] = message.signature

    def _close_consistency(self) -> list[Message]:
        # A survivor that does not sign stays in the sum (its input arrived); it is not asked.
        self._keep_responders(self._signatures)
        signers = set(self._signatures)
        t = self.params.threshold
        if len(signers) < t:
            raise self._abort(f"{len(signers)} clients signed the survivor set, below {t}")
        entries = tuple(
            SignatureEntry(signer=u, signature=self._signatures[u]) for u in sorted(signers)
        )
        return self._unmask_requests(signers, entries)

    def _unmask_requests(
        self, recipients: Iterable[int], signatures: tuple[SignatureEntry, ...]
    ) -> list[Message]:
        # The last point before any share is asked for (the active model's signers included).
        self._check_floor(self._survivors)
        messages: list[Message] = []
        complete = self.params.graph.is_complete()
        for v in sorted(recipients):
            peers = self._holds[v]
            relayed = signatures
            if not complete:
                wanted = set().union(*(self._neighbours[o] | {o} for o in peers | {v}))
                relayed = tuple(s for s in signatures if s.signer in wanted)
            request = UnmaskRequest(
                **self._header(v),
                survivors=tuple(sorted((peers & self._survivors) | {v})),
                dropped=tuple(sorted(peers - self._survivors)),
                signatures=relayed,
            )
            self._requests[v] = request
            messages.append(request)
        return messages

    # -- round 4 ------------------------------------------------------------------------------

    def _on_unmask(self, message: Message) -> None:
        assert isinstance(message, UnmaskResponse)
        sender = message.sender
        if sender in self._responders:
            raise RemoteProtocolError(f"client {sender} answered the unmask request twice")
        request = self._requests[sender]
        seed_owners = {share.owner for share in message.self_mask_shares}
        key_owners = {share.owner for share in message.mask_key_shares}
        if seed_owners != set(request.survivors) or key_owners != set(request.dropped):
            raise RemoteProtocolError(f"client {sender} answered a different unmask request")
        for kind, shares in (
            (ShareKind.SELF_MASK_SEED, message.self_mask_shares),
            (ShareKind.MASK_KEY, message.mask_key_shares),
        ):
            store = self._seed_shares if kind is ShareKind.SELF_MASK_SEED else self._key_shares
            for share in self._matching(sender, shares, kind):
                store.setdefault(share.owner, {})[shamir_x(sender)] = share.value
        self._responders.add(sender)

    def _matching(
        self, holder: int, shares: Iterable[ShareEntry], kind: ShareKind
    ) -> list[ShareEntry]:
        """The shares that match the digests their dealers sent; the others are recorded.

        A mismatch means the holder returned a wrong share or the dealer sent a wrong digest;
        the server cannot tell which, so the share is simply not used (the other holders'
        shares are), and both are named.
        """
        p = self.params
        kept = []
        for share in shares:
            digest = self._digests[share.owner][holder]
            expected = digest.seed_share if kind is ShareKind.SELF_MASK_SEED else digest.key_share
            actual = share_digest(share.value, kind, p.session_id, p.round_id, share.owner, holder)
            if actual == expected:
                kept.append(share)
                continue
            what = "self-mask seed" if kind is ShareKind.SELF_MASK_SEED else "mask key"
            self._culprits.setdefault(
                holder,
                f"returned a share of client {share.owner}'s {what} that does not match the "
                f"digest client {share.owner} sent (one of the two misbehaved); the share was "
                "not used",
            )
        return kept

    def _close_unmask(self) -> list[Message]:
        # Clients that uploaded but do not answer now stay in the sum: their input arrived.
        for client in sorted(self._expected - self._responders):
            self._dropped_at.setdefault(client, SERVER_ROUND_INDEX[self._phase])
        total = self._sum
        for v in sorted(self._survivors):
            seed = self._recover(v, self._seed_shares.get(v, {}), ShareKind.SELF_MASK_SEED)
            add_mask(total, self._self_mask(v, seed), subtract=True)
        for u in sorted(set(self._mask_peers) - self._survivors):
            partners = [w for w in sorted(self._survivors) if u in self._mask_peers[w]]
            if partners:
                self._remove_pair_masks(total, u, partners)
        reduce_ring(total, self.params.modulus_bits)
        self._seed_shares.clear()
        self._key_shares.clear()
        self._result = AggregateResult(
            vector=total,
            survivors=tuple(sorted(self._survivors)),
            dropped=tuple(sorted(set(self.params.graph.nodes) - self._survivors)),
            dropped_at=dict(self._dropped_at),
            misbehaved=dict(self._culprits),
        )
        return []

    def _self_mask(self, owner: int, seed: bytes) -> bytes:
        p = self.params
        if (
            seed_commitment(seed, p.session_id, p.round_id, owner)
            != self._keys[owner].seed_commitment
        ):
            raise self._abort(
                f"client {owner}'s self-mask shares do not reconstruct the seed it committed "
                "to: it dealt inconsistent shares",
                culprit=owner,
            )
        return self_mask_key(seed, p.session_id, p.round_id, owner)

    def _remove_pair_masks(self, total: RingArray, u: int, partners: list[int]) -> None:
        """Undo the masks the dropped client ``u`` shares with each of ``partners``."""
        p = self.params
        private = keypair_from_private_bytes(
            self._recover(u, self._key_shares.get(u, {}), ShareKind.MASK_KEY)
        )
        if private.public_bytes != self._keys[u].mask_public_key:
            raise self._abort(
                f"client {u}'s mask-key shares do not reconstruct its public key: it dealt "
                "inconsistent shares",
                culprit=u,
            )
        for v in partners:
            key = pairwise_mask_key(
                private, self._keys[v].mask_public_key, p.session_id, p.round_id, u, v
            )
            # v added +PRG(s_uv) when v < u and -PRG(s_uv) when v > u; undo it.
            add_mask(total, key, subtract=v < u)

    def _recover(self, owner: int, shares: dict[int, int], kind: ShareKind) -> bytes:
        t = self.params.threshold
        what = "self-mask seed" if kind is ShareKind.SELF_MASK_SEED else "mask key"
        if len(shares) < t:
            raise self._abort(
                f"only {len(shares)} shares of client {owner}'s {what} arrived that match its "
                f"digests, below the threshold {t}"
            )
        holders = tuple(sorted(shares)[:t])
        try:
            secret = shamir.Reconstructor(holders).combine({x: shares[x] for x in holders})
            return shamir.secret_to_bytes(secret)
        except ReconstructionError:
            raise self._abort(
                f"the shares of client {owner}'s {what} do not reconstruct a secret: it dealt "
                "inconsistent shares",
                culprit=owner,
            ) from None


def _roster_entry(advert: KeyAdvertisement) -> RosterEntry:
    return RosterEntry(
        client_id=advert.sender,
        mask_public_key=advert.mask_public_key,
        share_public_key=advert.share_public_key,
        seed_commitment=advert.seed_commitment,
        signature=advert.signature,
    )


def _check_active_setup(params: MaskingParams, roster: TrustedRoster | None) -> None:
    """An active-model round needs the roster, and the roster's public graph."""
    if roster is None:
        raise ParameterError(
            "an active-model round needs the trusted roster (MaskingServer(params, roster)); "
            "use threat_model='semi-honest' to run without one"
        )
    if roster.ids != params.graph.nodes:
        raise ParameterError("the round's clients must be exactly the trusted roster's clients")
    if params.graph.max_degree != roster.round_degree or params.threshold < (roster.threshold or 0):
        raise ParameterError(
            f"the trusted roster pins degree {roster.round_degree} and threshold >= "
            f"{roster.threshold or 2}; this round has degree {params.graph.max_degree} and "
            f"threshold {params.threshold} (its clients would refuse it)"
        )
    seed = roster.order_seed(params.session_id, params.round_id)
    public = harary_graph(roster.ids, params.graph.max_degree, seed=seed)
    if dict(public.neighbours) != dict(params.graph.neighbours):
        raise ParameterError(
            "against an active server the graph must be the roster's public graph: plan the "
            "round with order_seed=roster.order_seed(session_id, round_id)"
        )
