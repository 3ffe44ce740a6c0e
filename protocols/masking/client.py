"""One client's side of a masking round (SecAgg or SecAgg+, whichever graph the server uses).

Bonawitz et al. 2017, Fig. 4: the client advertises two fresh X25519 keys (round 0), shares its
self-mask seed and mask key among its roster and seals each peer's pair of shares (round 1),
uploads y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv) mod 2^k (round 2),
and answers the unmask request with the b-share of each survivor or the s-share of each dropped
peer, never both (round 3). Every client-side defence lives here, not in the transport.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
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
    CLIENT_TRANSITIONS,
    ClientPhase,
)
from protocols.masking.keys import (
    BUNDLE,
    BUNDLE_BYTES,
    SEED_BYTES,
    RingArray,
    pairwise_mask_key,
    reduce_ring,
    self_mask_key,
    shamir_x,
    share_key,
)
from protocols.masking.state import STATE_VERSION, MaskingClientState
from protocols.messages import (
    SERVER_ID,
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
    generate_keypair,
    keypair_from_private_bytes,
)
from secagg.hazmat.prg import add_mask

__all__ = ["MaskingClient"]


class MaskingClient(ClientMachine[ClientPhase]):
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
        self._mask_peers: tuple[int, ...] = ()

    # -- public entry points -----------------------------------------------------------------

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

    def _handle(self, message: Message) -> list[Message]:
        if isinstance(message, RoundSetup):
            replies = self._on_setup(message)
        elif isinstance(message, KeyRoster):
            replies = self._on_roster(message)
        elif isinstance(message, ForwardedShares):
            replies = self._on_forwarded_shares(message)
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
        self._self_mask_seed = secrets.token_bytes(SEED_BYTES)
        holders = [shamir_x(u) for u in sorted(by_id)]
        seed_shares = shamir.split(
            shamir.secret_from_bytes(self._self_mask_seed), self._threshold, holders
        )
        key_shares = shamir.split(
            shamir.secret_from_bytes(self._mask_keys.private_bytes), self._threshold, holders
        )
        bundles = []
        for peer in sorted(by_id):
            pair = (seed_shares[shamir_x(peer)], key_shares[shamir_x(peer)])
            if peer == self.client_id:
                self._held_shares[peer] = pair
                continue
            plaintext = (
                BUNDLE.pack(self.client_id, peer)
                + shamir.share_to_bytes(pair[0])
                + shamir.share_to_bytes(pair[1])
            )
            key = share_key(
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
        # Every share key is derived: the share private key c_u is never needed again.
        self._share_keys = None
        return [EncryptedShares(**self._header(), bundles=tuple(bundles))]

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
        for bundle in forwarded.bundles:
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
            self_mask_key(self._self_mask_seed, self.session_id, self.round_id, self.client_id),
        )
        for peer in self._mask_peers:
            key = pairwise_mask_key(
                self._mask_keys,
                self._roster[peer].mask_public_key,
                self.session_id,
                self.round_id,
                self.client_id,
                peer,
            )
            add_mask(masked, key, subtract=peer < self.client_id)
        reduce_ring(masked, self._modulus_bits)
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
