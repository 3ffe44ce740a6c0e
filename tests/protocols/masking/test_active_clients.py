"""One malicious client never breaks a round, and never makes it return a wrong sum (issue 11).

Each case is played by a :class:`Simulator` interceptor on the culprit's messages (in the
active model it re-signs what it alters with the culprit's own identity key: a malicious client
holds that key). Every case, in both threat models, must end either with the exact sum over the
remaining clients and the culprit named in ``report.misbehaved`` and
``report.result.misbehaved``, or with a specific abort: :class:`ClientMisbehaviourError`
naming the culprit, or :class:`InsufficientSurvivorsError`. Which of the two each case ends in is
asserted too (the server's design, docs/threat-model.md).
"""

from __future__ import annotations

import dataclasses
import secrets

import pytest

from protocols.masking.keys import (
    BUNDLE,
    ShareKind,
    advertisement_message,
    share_digest,
    share_key,
)
from protocols.messages import (
    ConsistencySignature,
    EncryptedShares,
    ForwardedShares,
    KeyAdvertisement,
    KeyRoster,
    Message,
    SealedShares,
    ShareEntry,
    UnmaskResponse,
)
from secagg.errors import ClientMisbehaviourError, InsufficientSurvivorsError
from secagg.hazmat import aead, shamir
from secagg.hazmat.kex import KeyPair
from secagg.hazmat.sign import sign

CULPRIT = 3
OTHER = 1  # the honest client whose key the culprit copies
DROPPED = 5  # silent from the masked-input round on, so its mask key is reconstructed
MODES = ["semi-honest", "active"]
GRAPHS = [("secagg", 7), ("secagg+", 30)]
GRAPH_IDS = ["complete-7", "harary-30"]

#: Curve25519 points of low order (RFC 7748 section 7): 0, 1 and a point of order 8.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


def _assert_completed_without_wrong_sum(outcome, culprit: int, *, in_sum: bool) -> None:
    """The round completed, exactly, with the culprit named (and in the sum or not)."""
    report = outcome.report
    outcome.assert_exact()
    assert culprit in report.misbehaved, report.misbehaved
    assert culprit in report.result.misbehaved
    assert report.misbehaved[culprit]  # a reason, in words
    assert (culprit in report.result.survivors) is in_sum
    honest_errors = {u: e for u, e in report.client_errors.items() if u != culprit}
    assert honest_errors == {}


def _resign(game, advert: KeyAdvertisement) -> KeyAdvertisement:
    """The culprit signs what it advertises (active model), as a malicious client can."""
    if game.threat_model != "active":
        return advert
    message = advertisement_message(
        advert.session_id,
        advert.round_id,
        advert.sender,
        advert.mask_public_key,
        advert.share_public_key,
        advert.seed_commitment,
    )
    return dataclasses.replace(advert, signature=sign(game.identities[advert.sender], message))


# --------------------------------------------------------------------------------------------
# Round 0: the culprit's key advertisement
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threat_model", MODES)
@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
@pytest.mark.parametrize("field", ["mask_public_key", "share_public_key"])
def test_copied_public_key_leaves_the_copier_out(active_round, protocol, n, threat_model, field):
    game = active_round(protocol, n, threat_model)
    stolen: dict[str, bytes] = {}

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, KeyAdvertisement) and message.sender == OTHER:
            stolen["key"] = getattr(message, field)
        if isinstance(message, KeyAdvertisement) and message.sender == CULPRIT:
            return _resign(game, dataclasses.replace(message, **{field: stolen["key"]}))
        return message

    outcome = game.run(interceptor=interceptor)
    _assert_completed_without_wrong_sum(outcome, CULPRIT, in_sum=False)
    assert OTHER in outcome.report.result.survivors
    assert outcome.report.dropped_at[CULPRIT] == 0
    assert f"client {OTHER}" in outcome.report.misbehaved[CULPRIT]


@pytest.mark.parametrize("threat_model", MODES)
@pytest.mark.parametrize("point", LOW_ORDER, ids=["zero", "one", "order-8"])
@pytest.mark.parametrize("field", ["mask_public_key", "share_public_key"])
def test_low_order_public_key_leaves_its_sender_out(active_round, threat_model, point, field):
    game = active_round("secagg", 7, threat_model)

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, KeyAdvertisement) and message.sender == CULPRIT:
            return _resign(game, dataclasses.replace(message, **{field: point}))
        return message

    outcome = game.run(interceptor=interceptor)
    _assert_completed_without_wrong_sum(outcome, CULPRIT, in_sum=False)
    assert "low-order" in outcome.report.misbehaved[CULPRIT]


@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
def test_badly_signed_advertisement_leaves_its_sender_out(active_round, protocol, n):
    game = active_round(protocol, n, "active")

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, KeyAdvertisement) and message.sender == CULPRIT:
            forged = bytes([message.signature[0] ^ 1]) + message.signature[1:]
            return dataclasses.replace(message, signature=forged)
        return message

    outcome = game.run(interceptor=interceptor)
    _assert_completed_without_wrong_sum(outcome, CULPRIT, in_sum=False)
    assert outcome.report.dropped_at[CULPRIT] == 0
    assert "sign" in outcome.report.misbehaved[CULPRIT]


def test_advertisement_signed_by_another_identity_leaves_its_sender_out(active_round):
    game = active_round("secagg", 7, "active")

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, KeyAdvertisement) and message.sender == CULPRIT:
            signed = advertisement_message(
                message.session_id,
                message.round_id,
                CULPRIT,
                message.mask_public_key,
                message.share_public_key,
                message.seed_commitment,
            )
            return dataclasses.replace(message, signature=sign(game.identities[OTHER], signed))
        return message

    outcome = game.run(interceptor=interceptor)
    _assert_completed_without_wrong_sum(outcome, CULPRIT, in_sum=False)


# --------------------------------------------------------------------------------------------
# Round 1: the culprit's share bundles
# --------------------------------------------------------------------------------------------


def _garbage_from_culprit(victims: int | None):
    """An interceptor: the culprit seals garbage for its first ``victims`` peers (all: None)."""

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, EncryptedShares) and message.sender == CULPRIT:
            hit = {b.peer for b in message.bundles[:victims]}
            garbage = tuple(
                SealedShares(peer=b.peer, ciphertext=secrets.token_bytes(len(b.ciphertext)))
                if b.peer in hit
                else b
                for b in message.bundles
            )
            return dataclasses.replace(message, bundles=garbage)
        return message

    return interceptor


@pytest.mark.parametrize("threat_model", MODES)
@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
def test_garbage_share_bundles_to_a_few_peers_cost_the_dealer_only_those_holders(
    active_round, protocol, n, threat_model
):
    """Its recipients name it and still mask with it (the pair mask needs no bundle); they hold
    none of its shares, the others do: its input stays in the exact sum."""
    game = active_round(protocol, n, threat_model)
    outcome = game.run(interceptor=_garbage_from_culprit(2))
    _assert_completed_without_wrong_sum(outcome, CULPRIT, in_sum=True)
    assert "did not open" in outcome.report.misbehaved[CULPRIT]


@pytest.mark.parametrize("threat_model", MODES)
@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
def test_garbage_share_bundles_to_every_peer_abort_before_any_share_is_asked_for(
    active_round, protocol, n, threat_model
):
    """With fewer than t holders of its seed its mask cannot be removed. The server cannot tell
    whether the dealer or its accusers lie, so it aborts, naming the dealer, before unmasking."""
    game = active_round(protocol, n, threat_model)
    garbage = _garbage_from_culprit(None)
    responses: list[Message] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, UnmaskResponse):
            responses.append(message)
        return garbage(round_index, message)

    report = game.run(interceptor=interceptor).report
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert f"client {CULPRIT}'s self-mask seed" in str(report.error)
    assert "did not open" in report.misbehaved[CULPRIT]
    assert report.result is None
    assert responses == []


class InconsistentDealer:
    """The culprit re-deals one holder a share off its polynomial, with a matching digest.

    A malicious client knows its own share key: the interceptor takes it before the culprit
    handles its roster, opens the culprit's bundle to ``holder``, shifts the seed share (or
    mask-key share) by one, seals it again and sends the digest of the shifted share.
    """

    def __init__(self, game, kind: ShareKind) -> None:
        self.game = game
        self.kind = kind
        self.simulator = None
        self.keys: KeyPair | None = None
        self.share_public: dict[int, bytes] = {}
        self.holder = -1

    def __call__(self, round_index: int, message: Message) -> Message:
        if isinstance(message, KeyRoster) and message.recipient == CULPRIT:
            assert self.simulator is not None
            self.keys = self.simulator.clients[CULPRIT]._share_keys
            self.share_public = {e.client_id: e.share_public_key for e in message.entries}
            # The server reconstructs from the smallest x-coordinates: shift one of those.
            self.holder = min(u for u in self.share_public if u != CULPRIT)
        if isinstance(message, EncryptedShares) and message.sender == CULPRIT:
            return self._redeal(message)
        return message

    def _redeal(self, message: EncryptedShares) -> EncryptedShares:
        assert self.keys is not None
        p = self.game.params
        context = (p.session_id, p.round_id, CULPRIT, self.holder)
        key = share_key(self.keys, self.share_public[self.holder], *context)
        ad = aead.associated_data(*context)
        bundle = next(b for b in message.bundles if b.peer == self.holder)
        plaintext = aead.open_(key, bundle.ciphertext, ad)
        size = shamir.SHARE_BYTES
        seed = shamir.share_from_bytes(plaintext[BUNDLE.size : BUNDLE.size + size])
        mask = shamir.share_from_bytes(plaintext[BUNDLE.size + size :])
        if self.kind is ShareKind.SELF_MASK_SEED:
            seed = (seed + 1) % shamir.FIELD_PRIME
        else:
            mask = (mask + 1) % shamir.FIELD_PRIME
        forged = (
            plaintext[: BUNDLE.size] + shamir.share_to_bytes(seed) + shamir.share_to_bytes(mask)
        )
        bundles = tuple(
            SealedShares(peer=b.peer, ciphertext=aead.seal(key, forged, ad))
            if b.peer == self.holder
            else b
            for b in message.bundles
        )
        digests = tuple(
            dataclasses.replace(
                d,
                seed_share=share_digest(seed, ShareKind.SELF_MASK_SEED, *context),
                key_share=share_digest(mask, ShareKind.MASK_KEY, *context),
            )
            if d.holder == self.holder
            else d
            for d in message.digests
        )
        return dataclasses.replace(message, bundles=bundles, digests=digests)


@pytest.mark.parametrize("threat_model", MODES)
@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
@pytest.mark.parametrize("kind", list(ShareKind), ids=["seed", "mask-key"])
def test_inconsistent_dealer_aborts_naming_it(active_round, protocol, n, threat_model, kind):
    """Shares off one polynomial, with matching digests: an abort naming the dealer."""
    game = active_round(protocol, n, threat_model)
    dealer = InconsistentDealer(game, kind)
    simulator = game.simulator(
        interceptor=dealer,
        # The mask key is reconstructed only for a client that dropped after sharing.
        dropouts={CULPRIT: 2} if kind is ShareKind.MASK_KEY else None,
    )
    dealer.simulator = simulator
    outcome = game.play(simulator)
    report = outcome.report
    assert report.result is None
    assert type(report.error) is ClientMisbehaviourError, report.error
    assert report.error.culprit == CULPRIT
    assert "inconsistent" in str(report.error)


# --------------------------------------------------------------------------------------------
# Rounds 3 and 4: the culprit's consistency signature and unmask response
# --------------------------------------------------------------------------------------------


def _shift(entries: tuple[ShareEntry, ...], owner: int) -> tuple[ShareEntry, ...]:
    assert any(e.owner == owner for e in entries)
    return tuple(
        ShareEntry(owner=e.owner, value=(e.value + 1) % shamir.FIELD_PRIME)
        if e.owner == owner
        else e
        for e in entries
    )


@pytest.mark.parametrize("threat_model", MODES)
@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
@pytest.mark.parametrize("kind", ["mask-key", "self-mask"])
def test_wrong_share_in_unmask_response_is_not_used(active_round, protocol, n, threat_model, kind):
    game = active_round(protocol, n, threat_model)
    graph = game.params.graph
    dropped = min(graph.neighbours[CULPRIT] - {OTHER})
    victim = min(graph.neighbours[CULPRIT] - {dropped})
    seen: list[UnmaskResponse] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, UnmaskResponse) and message.sender == CULPRIT:
            seen.append(message)
            if kind == "mask-key":
                return dataclasses.replace(
                    message, mask_key_shares=_shift(message.mask_key_shares, dropped)
                )
            return dataclasses.replace(
                message, self_mask_shares=_shift(message.self_mask_shares, victim)
            )
        return message

    outcome = game.run(interceptor=interceptor, dropouts={dropped: 2})
    assert seen, "the culprit was never asked for shares"
    # Its upload arrived, so its input stays in the sum; only its shares are not used.
    _assert_completed_without_wrong_sum(outcome, CULPRIT, in_sum=True)
    assert dropped not in outcome.report.result.survivors
    assert "share" in outcome.report.misbehaved[CULPRIT]


@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
def test_bad_consistency_signature_is_not_relayed(active_round, protocol, n):
    game = active_round(protocol, n, "active")

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, ConsistencySignature) and message.sender == CULPRIT:
            forged = message.signature[:-1] + bytes([message.signature[-1] ^ 0x80])
            return dataclasses.replace(message, signature=forged)
        return message

    outcome = game.run(interceptor=interceptor)
    # Its input arrived before it signed, so it stays in the sum.
    _assert_completed_without_wrong_sum(outcome, CULPRIT, in_sum=True)
    assert "consistency signature" in outcome.report.misbehaved[CULPRIT]


@pytest.mark.parametrize("threat_model", MODES)
def test_too_many_garbage_dealers_abort_instead_of_a_wrong_sum(active_round, threat_model):
    """When too few clients remain after excluding the culprits, the round aborts."""
    game = active_round("secagg", 7, threat_model)
    culprits = {2, 3, 4, 5}  # t = 4: only 3 honest clients would be left

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, EncryptedShares) and message.sender in culprits:
            garbage = tuple(
                SealedShares(peer=b.peer, ciphertext=secrets.token_bytes(len(b.ciphertext)))
                for b in message.bundles
            )
            return dataclasses.replace(message, bundles=garbage)
        return message

    outcome = game.run(interceptor=interceptor)
    report = outcome.report
    assert report.result is None
    assert isinstance(report.error, InsufficientSurvivorsError | ClientMisbehaviourError)
    if isinstance(report.error, ClientMisbehaviourError):
        assert report.error.culprit in culprits
    assert set(report.misbehaved) <= culprits


@pytest.mark.parametrize("threat_model", MODES)
def test_false_accusation_costs_the_accused_one_holder_never_the_sum(active_round, threat_model):
    """The culprit throws away an honest peer's good bundle and accuses it (MaskedInput.rejected).

    The server cannot tell which end lies: it names the accused (with the accuser in the
    reason) and asks the accuser for none of the accused's shares. Both still mask with each
    other, so both inputs stay in the exact sum.
    """
    game = active_round("secagg", 7, threat_model)

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, ForwardedShares) and message.recipient == CULPRIT:
            bundles = tuple(
                SealedShares(peer=b.peer, ciphertext=bytes(len(b.ciphertext)))
                if b.peer == OTHER
                else b
                for b in message.bundles
            )
            return dataclasses.replace(message, bundles=bundles)
        return message

    outcome = game.run(interceptor=interceptor)
    outcome.assert_exact()
    report = outcome.report
    assert OTHER in report.result.survivors and CULPRIT in report.result.survivors
    assert f"client {CULPRIT}" in report.misbehaved[OTHER]
