"""One client's side of a masking round (SecAgg or SecAgg+, whichever graph the server uses).

Bonawitz et al. 2017, Fig. 4: the client advertises two fresh X25519 keys and a commitment to
its self-mask seed (round 0), shares the seed and its mask key among its roster and seals each
peer's pair of shares (round 1), uploads
y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv) mod 2^k (round 2), and
answers the unmask request with the b-share of each survivor or the s-share of each dropped
peer, never both (round 4). Against an active server (``threat_model="active"``) it also signs
its advertisement, checks every peer's signature, its neighbourhood and the threshold itself
(:mod:`protocols.masking.trust`), and signs the survivor set in the consistency round (round 3)
before it releases any share. A client given a survivor floor (``min_survivors``, its own
setting, as ``min_threshold`` is) refuses a survivor set below it before any share leaves it, so
a server cannot shrink the sum to fewer inputs (and fewer noise shares) than the client agreed
to. A peer whose share bundle does not open is named to the server:
the client still masks with it (the pair mask needs no bundle) but holds none of its shares,
instead of aborting the round. Every client-side defence lives here
and in :mod:`protocols.masking.trust`, not in the transport.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from protocols._machine import (
    ClientMachine,
    SubmitInput,
    check_client_id,
    check_session,
)
from protocols._transitions import (
    ACTIVE_CLIENT_TRANSITIONS,
    CLIENT_TRANSITIONS,
    ClientPhase,
)
from protocols.graph import ThreatModel
from protocols.identity import TrustedRoster
from protocols.masking.keys import (
    BUNDLE,
    BUNDLE_BYTES,
    SEED_BYTES,
    RingArray,
    ShareKind,
    pairwise_mask_key,
    reduce_ring,
    seed_commitment,
    self_mask_key,
    shamir_x,
    share_digest,
    share_key,
)
from protocols.masking.state import STATE_VERSION, MaskingClientState
from protocols.masking.trust import ActiveChecks
from protocols.messages import (
    SERVER_ID,
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
    UnmaskRequest,
    UnmaskResponse,
    header,
)
from protocols.rounds import DEFAULT_CORRUPT_FRACTION, check_min_survivors, check_threat_model
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
    generate_keypair,
    keypair_from_private_bytes,
)
from secagg.hazmat.prg import add_mask
from secagg.hazmat.sign import IdentityKey

__all__ = ["MaskingClient"]


class MaskingClient(ClientMachine[ClientPhase]):
    """One client's side of a masking round (SecAgg or SecAgg+, whichever graph the server uses).

    Args:
        client_id: this client's id, in [0, 2^32 - 2].
        session_id: the 16-byte session this client expects to take part in.
        round_id: the round (protocol instance) it expects; anything else is a replay.
        min_threshold: the smallest Shamir threshold the client accepts from the server
            (against an active server the client's own, larger minimum applies as well).
        threat_model: ``"active"`` (the default: trust only the roster and the identity key)
            or ``"semi-honest"`` (trust the server to follow the protocol; no PKI).
        identity: the client's long-term Ed25519 key (active model).
        roster: the trusted roster of every client's identity key (active model).
        corrupt_fraction: the declared bound on clients colluding with the server, as a
            fraction of the roster (active model; it sets the client's minimum threshold).
        min_survivors: the fewest survivors this client accepts before it releases a share (0:
            no floor beyond the threshold). Against an active server it counts the consistency
            round's survivor set (every survivor, each on the roster). A semi-honest client
            counts the survivors its unmask request names, its neighbourhood's: the whole
            round on the complete graph only, so set it there only (on a sparse graph the
            semi-honest server enforces the floor alone).
    """

    ABORTED = ClientPhase.ABORTED
    role = "client"
    HINTS: ClassVar[Mapping[type, str]] = {SubmitInput: "after the shares arrive"}

    def __init__(
        self,
        client_id: int,
        *,
        session_id: bytes,
        round_id: int,
        min_threshold: int = 2,
        threat_model: ThreatModel = "active",
        identity: IdentityKey | None = None,
        roster: TrustedRoster | None = None,
        corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
        min_survivors: int = 0,
    ) -> None:
        check_client_id(client_id)
        check_session(session_id, round_id)
        if min_threshold < 2:
            raise ParameterError("min_threshold must be >= 2: one share must never reveal a key")
        self.min_survivors = check_min_survivors(min_survivors)
        self.threat_model: ThreatModel = check_threat_model(threat_model)
        self._active: ActiveChecks | None = None
        if self.threat_model == "active":
            if identity is None or roster is None:
                raise ParameterError(
                    "an active-model client needs its identity key and the trusted roster "
                    "(identity=, roster=); pass threat_model='semi-honest' to trust the server"
                )
            self._active = ActiveChecks(client_id, identity, roster, corrupt_fraction)
        self.TRANSITIONS = (
            ACTIVE_CLIENT_TRANSITIONS if self._active is not None else CLIENT_TRANSITIONS
        )
        self.corrupt_fraction = corrupt_fraction
        self.client_id = client_id
        self.session_id = session_id
        self.round_id = round_id
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
        self._pair_keys: dict[int, bytes] = {}  # peer -> s_uv, derived in round 1
        self._mask_peers: tuple[int, ...] = ()
        self._rejected: tuple[int, ...] = ()
        self._survivors: tuple[int, ...] = ()

    # -- public entry points -----------------------------------------------------------------

    # -- persistence ----------------------------------------------------------------------------

    def export_state(self) -> bytes:
        """Serialise the whole machine, secrets included, for transports that do not keep
        objects alive between messages (e.g. a Flower ClientApp's ``context.state``).

        The bytes hold this round's private keys and shares: keep them where the client's own
        memory would be, never send them anywhere. The identity key and the roster are not in
        them: :meth:`from_state` takes them again, as the constructor does.
        """
        return MaskingClientState(
            version=STATE_VERSION,
            client_id=self.client_id,
            session_id=self.session_id.hex(),
            round_id=self.round_id,
            min_threshold=self._min_threshold,
            min_survivors=self.min_survivors,
            threat_model=self.threat_model,
            corrupt_fraction=self.corrupt_fraction,
            phase=self._phase.value,
            threshold=self._threshold,
            vector_length=self._vector_length,
            modulus_bits=self._modulus_bits,
            neighbours=sorted(self._neighbours),
            mask_key=None if self._mask_keys is None else self._mask_keys.private_bytes.hex(),
            share_key=None if self._share_keys is None else self._share_keys.private_bytes.hex(),
            roster=[
                [
                    e.client_id,
                    e.mask_public_key.hex(),
                    e.share_public_key.hex(),
                    e.seed_commitment.hex(),
                    e.signature.hex(),
                ]
                for e in self._roster.values()
            ],
            self_mask_seed=None if self._self_mask_seed is None else self._self_mask_seed.hex(),
            held_shares=[[u, b, s] for u, (b, s) in self._held_shares.items()],
            share_keys_by_peer=[[u, k.hex()] for u, k in self._share_keys_by_peer.items()],
            pair_keys=[[u, k.hex()] for u, k in self._pair_keys.items()],
            mask_peers=list(self._mask_peers),
            rejected=list(self._rejected),
            survivors=list(self._survivors),
        ).to_json()

    @classmethod
    def from_state(
        cls,
        data: bytes,
        *,
        identity: IdentityKey | None = None,
        roster: TrustedRoster | None = None,
    ) -> MaskingClient:
        """Rebuild a machine from :meth:`export_state` output; malformed state is rejected.

        Args:
            data: what :meth:`export_state` returned.
            identity, roster: the client's identity key and the trusted roster (active model).

        Raises:
            LocalProtocolError: the state is malformed or of another version.
            ParameterError: an active-model state without its identity key or roster.
        """
        state = MaskingClientState.from_json(data)
        # The state's own fields were checked: a ParameterError here is the caller's (no
        # identity or roster for an active state, or another client's identity).
        client = cls(
            state.client_id,
            session_id=bytes.fromhex(state.session_id),
            round_id=state.round_id,
            min_threshold=state.min_threshold,
            min_survivors=state.min_survivors,
            threat_model=check_threat_model(state.threat_model),
            identity=identity,
            roster=roster,
            corrupt_fraction=state.corrupt_fraction,
        )
        try:
            client._restore(state)
        except ValueError:
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
                seed_commitment=bytes.fromhex(str(commitment)),
                signature=bytes.fromhex(str(signature)),
            )
            for u, mask, share, commitment, signature in state.roster
        }
        if state.self_mask_seed is not None:
            self._self_mask_seed = bytes.fromhex(state.self_mask_seed)
        self._held_shares = {u: (b, s) for u, b, s in state.held_shares}
        self._share_keys_by_peer = {
            int(u): bytes.fromhex(str(k)) for u, k in state.share_keys_by_peer
        }
        self._pair_keys = {int(u): bytes.fromhex(str(k)) for u, k in state.pair_keys}
        self._mask_peers = tuple(state.mask_peers)
        self._rejected = tuple(state.rejected)
        self._survivors = tuple(state.survivors)
        if self._active is not None and self._phase not in (
            ClientPhase.AWAIT_SETUP,
            ClientPhase.ABORTED,
        ):
            # The public graph is a function of the roster, the session and the round.
            self._active.graph = self._active.public_graph(
                len(self._neighbours), self.session_id, self.round_id
            )

    # -- machinery ------------------------------------------------------------------------------

    def forget_secrets(self) -> None:
        """Drop every key, seed and share (h11 ``_process_error``)."""
        self._mask_keys = None
        self._share_keys = None
        self._self_mask_seed = None
        self._held_shares = {}
        self._share_keys_by_peer = {}
        self._pair_keys = {}

    def _handle(self, message: Message) -> list[Message]:
        if isinstance(message, RoundSetup):
            replies = self._on_setup(message)
        elif isinstance(message, KeyRoster):
            replies = self._on_roster(message)
        elif isinstance(message, ForwardedShares):
            replies = self._on_forwarded_shares(message)
        elif isinstance(message, ConsistencyRequest):
            replies = self._on_consistency(message)
        else:
            assert isinstance(message, UnmaskRequest)  # the only other move in the table
            replies = self._on_unmask_request(message)
        return replies

    def _header(self) -> Header:
        return header(self.session_id, self.round_id, self.client_id, SERVER_ID)

    # -- round 0 ----------------------------------------------------------------------------

    def _on_setup(self, setup: RoundSetup) -> list[Message]:
        if self.client_id in setup.neighbours:
            raise RemoteProtocolError("the setup lists this client as its own neighbour")
        minimum = self._min_threshold
        if self._active is not None:
            minimum = max(minimum, self._active.check_setup(setup, self.session_id, self.round_id))
        if setup.threshold < minimum:
            raise ServerMisbehaviourError(
                f"threshold {setup.threshold} is below the minimum {minimum}: "
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
        self._self_mask_seed = secrets.token_bytes(SEED_BYTES)
        keys = (self._mask_keys.public_bytes, self._share_keys.public_bytes)
        commitment = seed_commitment(
            self._self_mask_seed, self.session_id, self.round_id, self.client_id
        )
        signature = b""
        if self._active is not None:
            signature = self._active.sign_advertisement(
                self.session_id, self.round_id, *keys, commitment
            )
        return [
            KeyAdvertisement(
                **self._header(),
                mask_public_key=keys[0],
                share_public_key=keys[1],
                seed_commitment=commitment,
                signature=signature,
            )
        ]

    # -- round 1 ----------------------------------------------------------------------------

    def _check_roster(self, roster: KeyRoster) -> dict[int, RosterEntry]:
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
        if self._active is not None:
            self._active.check_roster(roster.entries, self.session_id, self.round_id)
        return by_id

    def _on_roster(self, roster: KeyRoster) -> list[Message]:
        by_id = self._check_roster(roster)
        assert self._mask_keys is not None and self._share_keys is not None
        assert self._self_mask_seed is not None
        self._roster = by_id
        self._pair_keys = self._derive_pair_keys(by_id)
        holders = [shamir_x(u) for u in sorted(by_id)]
        seed_shares = shamir.split(
            shamir.secret_from_bytes(self._self_mask_seed), self._threshold, holders
        )
        key_shares = shamir.split(
            shamir.secret_from_bytes(self._mask_keys.private_bytes), self._threshold, holders
        )
        bundles = []
        digests = []
        for peer in sorted(by_id):
            pair = (seed_shares[shamir_x(peer)], key_shares[shamir_x(peer)])
            digests.append(self._digest(peer, pair))
            if peer == self.client_id:
                self._held_shares[peer] = pair
                continue
            bundles.append(self._seal(peer, pair, by_id[peer].share_public_key))
        # Every share and pair key is derived: neither private key is needed again.
        self._share_keys = None
        self._mask_keys = None
        return [EncryptedShares(**self._header(), bundles=tuple(bundles), digests=tuple(digests))]

    def _derive_pair_keys(self, by_id: Mapping[int, RosterEntry]) -> dict[int, bytes]:
        """s_uv with every roster peer (X25519 refuses a low-order key: the roster is bad)."""
        assert self._mask_keys is not None
        mask_keys = self._mask_keys
        return {
            peer: _agreed_with(
                pairwise_mask_key, mask_keys, entry.mask_public_key, "mask", self._context(peer)
            )
            for peer, entry in sorted(by_id.items())
            if peer != self.client_id
        }

    def _context(self, peer: int) -> tuple[bytes, int, int, int]:
        """(session, round, this client, peer): what every pairwise key is bound to."""
        return self.session_id, self.round_id, self.client_id, peer

    def _digest(self, holder: int, pair: tuple[int, int]) -> ShareDigest:
        context = (self.session_id, self.round_id, self.client_id, holder)
        return ShareDigest(
            holder=holder,
            seed_share=share_digest(pair[0], ShareKind.SELF_MASK_SEED, *context),
            key_share=share_digest(pair[1], ShareKind.MASK_KEY, *context),
        )

    def _seal(self, peer: int, pair: tuple[int, int], peer_share_key: bytes) -> SealedShares:
        assert self._share_keys is not None
        plaintext = (
            BUNDLE.pack(self.client_id, peer)
            + shamir.share_to_bytes(pair[0])
            + shamir.share_to_bytes(pair[1])
        )
        key = _agreed_with(
            share_key, self._share_keys, peer_share_key, "share", self._context(peer)
        )
        # The same key opens the peer's bundle to us in the next round.
        self._share_keys_by_peer[peer] = key
        ad = aead.associated_data(self.session_id, self.round_id, self.client_id, peer)
        return SealedShares(peer=peer, ciphertext=aead.seal(key, plaintext, ad))

    # -- round 2 ----------------------------------------------------------------------------

    def _on_forwarded_shares(self, forwarded: ForwardedShares) -> list[Message]:
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
        rejected = []
        for bundle in forwarded.bundles:
            try:
                self._held_shares[bundle.peer] = self._open(bundle)
            except InvalidCiphertextError:
                # Named to the server. The pair mask needs no bundle, so the client still
                # masks with the peer; it just holds none of the peer's shares.
                rejected.append(bundle.peer)
        self._mask_peers = tuple(sorted(senders))
        self._rejected = tuple(sorted(rejected))
        self._share_keys_by_peer = {}
        return []

    def _open(self, bundle: SealedShares) -> tuple[int, int]:
        """The (seed share, mask-key share) a peer sealed for us.

        Raises:
            InvalidCiphertextError: the bundle does not authenticate or is malformed.
        """
        key = self._share_keys_by_peer[bundle.peer]
        ad = aead.associated_data(self.session_id, self.round_id, bundle.peer, self.client_id)
        plaintext = aead.open_(key, bundle.ciphertext, ad)
        if len(plaintext) != BUNDLE_BYTES:
            raise InvalidCiphertextError("invalid ciphertext")
        owner, recipient = BUNDLE.unpack_from(plaintext)
        if (owner, recipient) != (bundle.peer, self.client_id):
            raise InvalidCiphertextError("invalid ciphertext")
        try:
            seed_share = shamir.share_from_bytes(plaintext[BUNDLE.size : -shamir.SHARE_BYTES])
            key_share = shamir.share_from_bytes(plaintext[-shamir.SHARE_BYTES :])
        except ReconstructionError:
            raise InvalidCiphertextError("invalid ciphertext") from None
        return seed_share, key_share

    def _submit_input(self, vector: npt.ArrayLike) -> list[Message]:
        next_phase = self.advance(SubmitInput, remote=False)
        assert self._self_mask_seed is not None
        masked = self._checked_input(vector)
        add_mask(
            masked,
            self_mask_key(self._self_mask_seed, self.session_id, self.round_id, self.client_id),
        )
        for peer in self._mask_peers:
            add_mask(masked, self._pair_keys[peer], subtract=peer < self.client_id)
        reduce_ring(masked, self._modulus_bits)
        # The seed and the pair keys are no longer needed here; only the shares are.
        self._self_mask_seed = None
        self._pair_keys = {}
        self._phase = next_phase
        return [
            MaskedInput(
                **self._header(),
                modulus_bits=self._modulus_bits,
                vector=masked,
                rejected=self._rejected,
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

    # -- round 3 (active model) -----------------------------------------------------------------

    def _on_consistency(self, request: ConsistencyRequest) -> list[Message]:
        assert self._active is not None  # only the active table has this move
        survivors = set(request.survivors)
        if self.client_id not in survivors:
            raise RemoteProtocolError("the survivor set leaves out this client, which uploaded")
        strangers = (survivors & self._neighbours) - set(self._mask_peers)
        if strangers:
            raise ServerMisbehaviourError(
                f"the survivor set names neighbours {sorted(strangers)} whose shares this client "
                "never got"
            )
        self._active.check_survivors_known(survivors)
        self._check_floor(len(survivors), "the consistency round's survivor set")
        alive = len(survivors & set(self._mask_peers)) + 1
        if alive < self._threshold:
            raise InsufficientSurvivorsError(
                f"{alive} of this client's share holders survived, below the threshold "
                f"{self._threshold}"
            )
        self._survivors = tuple(sorted(survivors))
        signature = self._active.sign_survivors(self.session_id, self.round_id, self._survivors)
        return [ConsistencySignature(**self._header(), signature=signature)]

    # -- round 4 ----------------------------------------------------------------------------

    def _on_unmask_request(self, request: UnmaskRequest) -> list[Message]:
        survivors, dropped = request.survivors, request.dropped
        self._check_unmask_request(survivors, dropped)
        if self._active is None:
            self._check_floor(len(survivors), "the unmask request")
        else:
            self._check_floor(len(self._survivors), "the survivor set this client signed")
            owners = self._share_owners()
            alive = set(self._survivors) & owners
            if (set(survivors), set(dropped)) != (alive | {self.client_id}, owners - alive):
                raise ServerMisbehaviourError(
                    "the unmask request disagrees with the survivor set this client signed"
                )
            self._active.check_consistency(
                request.signatures,
                self._survivors,
                (*sorted(owners), self.client_id),
                self._threshold,
                self.session_id,
                self.round_id,
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

    def _check_unmask_request(self, survivors: tuple[int, ...], dropped: tuple[int, ...]) -> None:
        """The request must never ask for both secrets of one client, nor for too few."""
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
        known = self._share_owners() | {self.client_id}
        unknown = (set(survivors) | set(dropped)) - known
        if unknown:
            raise RemoteProtocolError(
                f"the unmask request names {sorted(unknown)}, whose shares this client never held"
            )
        if self.client_id not in survivors:
            raise RemoteProtocolError("the unmask request leaves out this client, which uploaded")
        # A peer whose bundle did not open is in neither list: this client holds nothing of it.
        if len(survivors) + len(self._rejected) < self._threshold:
            raise InsufficientSurvivorsError(
                f"{len(survivors)} survivors named, below the threshold {self._threshold}"
            )

    def _check_floor(self, survivors: int, where: str) -> None:
        """Refuse, before any share leaves, a survivor set below this client's floor."""
        floor = self.min_survivors
        if survivors < floor:
            raise ServerMisbehaviourError(
                f"{where} names {survivors} survivors, below the {floor} this client requires "
                "before it releases a share: the sum would hold fewer inputs (and noise "
                "shares) than agreed, so no share is released"
            )

    def _share_owners(self) -> set[int]:
        """The peers whose shares this client holds (their bundles opened)."""
        return set(self._mask_peers) - set(self._rejected)


def _agreed_with(
    derive: Callable[[KeyPair, bytes, bytes, int, int, int], bytes],
    private: KeyPair,
    peer_public: bytes,
    kind: str,
    context: tuple[bytes, int, int, int],
) -> bytes:
    """A key agreed with a roster peer; X25519 refuses a low-order point: the roster is bad."""
    try:
        return derive(private, peer_public, *context)
    except InvalidCiphertextError:
        raise ServerMisbehaviourError(
            f"the roster relays a low-order {kind} key of client {context[3]}"
        ) from None
