"""A malicious server against the decryptors: every attack is refused with a specific error.

Each attack is played against the single key holder and against one committee member, which
apply the same admission rules: a made-up round (whose uploads no client signed), a second
decryption in one round, an older round after a newer one, one client's ciphertext presented as
several contributors, forged senders, uploads signed by nobody, by someone else or for another
key, and too few contributors. Each raises :class:`ServerMisbehaviourError` from ``receive`` (so
no plaintext and no partial decryption leaves the decryptor), and leaves the decryptor as it
was: the honest request of the round is still decrypted afterwards. The decryptor's memory is
one round number, however many rounds it serves.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pytest

from protocols.aggregators.paillier import check_committee
from protocols.identity import trusted_setup
from protocols.messages import (
    KEY_HOLDER_ID,
    DecryptedAggregate,
    DecryptionRequest,
    DecryptionShare,
    EncryptedInput,
    Message,
    decryptor_id,
)
from protocols.paillier import Decryptor, KeyHolder, PaillierParams
from secagg.errors import InsufficientSurvivorsError, ParameterError, ServerMisbehaviourError
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import PaillierKeypair, ThresholdKeyset

if TYPE_CHECKING:
    from conftest import Keys, PaillierKit

KINDS = ["key_holder", "member"]


class Target(NamedTuple):
    """The decryptor under attack, the keys its uploads are under, and its party id."""

    party: KeyHolder | Decryptor
    keys: PaillierKeypair | ThresholdKeyset
    recipient: int


def _target(
    kit: type[PaillierKit],
    kind: str,
    keys: PaillierKeypair,
    committee_keys: ThresholdKeyset,
    params: PaillierParams,
) -> Target:
    if kind == "key_holder":
        return Target(kit.key_holder(keys, params), keys, KEY_HOLDER_ID)
    return Target(kit.committee(committee_keys, params)[1], committee_keys, decryptor_id(2))


def _decrypted(kit: type[PaillierKit], target: Target, replies: list[Message]) -> object:
    """What the decryptor returned: the sums, or its (verified) partial decryption."""
    (reply,) = replies
    if isinstance(target.party, KeyHolder):
        assert isinstance(reply, DecryptedAggregate)
        return reply.vector
    assert isinstance(reply, DecryptionShare) and isinstance(target.keys, ThresholdKeyset)
    assert reply.index == target.party.index
    return hazmat.PartialDecryption.from_bytes(target.keys.public, reply.partial)


class Attack(NamedTuple):
    """Requests the decryptor accepts first, then the attack and the refusal it must meet."""

    before: list[DecryptionRequest]
    message: DecryptionRequest
    match: str


class Scene(NamedTuple):
    """One round's honest material: its parameters, signed uploads and request."""

    params: PaillierParams
    uploads: list[EncryptedInput]
    request: DecryptionRequest


def _scene(kit: type[PaillierKit], keys: Keys, recipient: int, params: PaillierParams) -> Scene:
    inputs = kit.inputs(params, seed=params.round_id)
    uploads = kit.uploads(keys, params, inputs, params.clients)
    return Scene(params, uploads, kit.request(params, uploads, recipient=recipient))


def _relabelled(request: DecryptionRequest, round_id: int) -> DecryptionRequest:
    """The request, and every upload in it, relabelled to ``round_id`` (signatures unchanged)."""
    uploads = tuple(dataclasses.replace(u, round_id=round_id) for u in request.uploads)
    return dataclasses.replace(request, round_id=round_id, uploads=uploads)


def _attacks(kit: type[PaillierKit], target: Target, now: Scene) -> dict[str, Attack]:
    request, (u0, u1, u2) = now.request, now.uploads
    keys, params = target.keys, now.params
    newer = _scene(kit, keys, target.recipient, dataclasses.replace(params, round_id=8))
    other_session = _scene(
        kit, keys, target.recipient, dataclasses.replace(params, session_id=kit.session())
    )
    other_key = hazmat._generate_keypair_unchecked_size(512)

    def uploads(*items: EncryptedInput) -> DecryptionRequest:
        return dataclasses.replace(request, uploads=items)

    def signed(upload: EncryptedInput, **options: Any) -> EncryptedInput:
        fields: dict[str, Any] = {
            "keys": keys,
            "session_id": upload.session_id,
            "round_id": upload.round_id,
            "sender": upload.sender,
            "ciphertexts": upload.ciphertexts,
        }
        fields.update(options)
        return dataclasses.replace(upload, signature=kit.signature(**fields))

    data = u1.ciphertexts
    altered = dataclasses.replace(u1, ciphertexts=data[:-1] + bytes([data[-1] ^ 1]))
    another_round = "client 0's upload belongs to another round: replay refused"
    unsigned = "client {}'s upload is not signed by its identity key for round {}"
    attacks = {
        "made_up_round_2_63": Attack(
            [], dataclasses.replace(request, round_id=2**63), another_round
        ),
        "made_up_round_10_9": Attack(
            [], dataclasses.replace(request, round_id=10**9), another_round
        ),
        "made_up_round_2_63_relabelled": Attack(
            [], _relabelled(request, 2**63), unsigned.format(0, 2**63)
        ),
        "made_up_round_10_9_relabelled": Attack(
            [], _relabelled(request, 10**9), unsigned.format(0, 10**9)
        ),
        "second_decryption_of_a_subset": Attack(
            [request], uploads(u1, u2), "round 7 was already decrypted"
        ),
        "second_decryption_of_the_same": Attack(
            [request], request, "round 7 was already decrypted"
        ),
        "older_round_after_newer": Attack(
            [newer.request], request, "round 7 is older than round 8"
        ),
        "one_ciphertext_as_three_contributors": Attack(
            [], uploads(u0, u0, u0), "the aggregate counts one client's upload more than once"
        ),
        "one_ciphertext_under_forged_senders": Attack(
            [],
            uploads(u0, dataclasses.replace(u0, sender=1), dataclasses.replace(u0, sender=2)),
            unsigned.format(1, 7),
        ),
        "upload_signed_by_nobody": Attack(
            [],
            uploads(u0, dataclasses.replace(u1, signature=bytes(64)), u2),
            unsigned.format(1, 7),
        ),
        "upload_with_altered_ciphertexts": Attack(
            [], uploads(u0, altered, u2), unsigned.format(1, 7)
        ),
        "upload_signed_by_another_client": Attack(
            [], uploads(u0, signed(u1, signer=2), u2), unsigned.format(1, 7)
        ),
        "upload_signed_for_another_key": Attack(
            [], uploads(u0, signed(u1, keys=other_key.public_key), u2), unsigned.format(1, 7)
        ),
        "upload_from_a_stranger": Attack(
            [], uploads(u0, u1, dataclasses.replace(u2, sender=99)), unsigned.format(99, 7)
        ),
        "upload_of_another_session": Attack(
            [], uploads(other_session.uploads[0], u1, u2), another_round
        ),
        "too_few_contributors": Attack(
            [],
            uploads(u0),
            "the aggregate holds 1 signed upload(s); at least 2 distinct clients are needed",
        ),
    }
    assert set(attacks) == set(ATTACKS)
    return attacks


ATTACKS = [
    "made_up_round_2_63",
    "made_up_round_10_9",
    "made_up_round_2_63_relabelled",
    "made_up_round_10_9_relabelled",
    "second_decryption_of_a_subset",
    "second_decryption_of_the_same",
    "older_round_after_newer",
    "one_ciphertext_as_three_contributors",
    "one_ciphertext_under_forged_senders",
    "upload_signed_by_nobody",
    "upload_with_altered_ciphertexts",
    "upload_signed_by_another_client",
    "upload_signed_for_another_key",
    "upload_from_a_stranger",
    "upload_of_another_session",
    "too_few_contributors",
]


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("kind", KINDS)
def test_decryptor_refuses_the_servers_attack(
    kit: type[PaillierKit],
    keys: PaillierKeypair,
    committee_keys: ThresholdKeyset,
    kind: str,
    name: str,
) -> None:
    params = kit.params(3, vector_length=30)
    target = _target(kit, kind, keys, committee_keys, params)
    now = _scene(kit, target.keys, target.recipient, params)
    attack = _attacks(kit, target, now)[name]
    for accepted in attack.before:
        _decrypted(kit, target, target.party.receive(accepted))
    last_round = target.party.last_round
    with pytest.raises(ServerMisbehaviourError) as refusal:
        target.party.receive(attack.message)
    assert refusal.type is ServerMisbehaviourError
    assert str(refusal.value).startswith(attack.match)
    # The refusal changed nothing: the round is not used up, nothing older opens.
    assert target.party.last_round == last_round
    if last_round is None:
        _decrypted(kit, target, target.party.receive(now.request))
        assert target.party.last_round == kit.ROUND


@pytest.mark.parametrize("made_up", [2**63, 10**9])
@pytest.mark.parametrize("kind", KINDS)
def test_made_up_round_in_a_simulated_round_yields_nothing(
    kit: type[PaillierKit],
    keys: PaillierKeypair,
    committee_keys: ThresholdKeyset,
    kind: str,
    made_up: int,
) -> None:
    params = kit.params(3, vector_length=30)
    inputs = kit.inputs(params, seed=40)
    answers: list[Message] = []

    def make_up(round_index: int, message: Message) -> Message:
        if isinstance(message, DecryptedAggregate | DecryptionShare):
            answers.append(message)
        if isinstance(message, DecryptionRequest):
            return _relabelled(message, made_up)
        return message

    if kind == "key_holder":
        report, holder = kit.simulate(keys, params, inputs, interceptor=make_up)
        parties: list[KeyHolder | Decryptor] = [holder]
    else:
        report, members = kit.simulate_committee(
            committee_keys, params, inputs, interceptor=make_up
        )
        parties = list(members)
        assert isinstance(report.error, InsufficientSurvivorsError)
        assert str(report.error).startswith("0 of 5 decryptors sent a valid partial decryption")
    assert answers == []
    assert report.result is None
    ids = [KEY_HOLDER_ID] if kind == "key_holder" else [decryptor_id(i) for i in range(1, 6)]
    assert sorted(report.client_errors) == sorted(ids)
    for error in report.client_errors.values():
        assert isinstance(error, ServerMisbehaviourError)
        assert f"for round {made_up}" in str(error)
    assert all(party.last_round is None for party in parties)


@pytest.mark.parametrize("kind", KINDS)
def test_decryptor_memory_is_one_round_number_over_many_rounds(
    kit: type[PaillierKit], keys: PaillierKeypair, committee_keys: ThresholdKeyset, kind: str
) -> None:
    session = kit.session()

    def params(round_id: int) -> PaillierParams:
        return kit.params(2, vector_length=4, session_id=session, round_id=round_id)

    target = _target(kit, kind, keys, committee_keys, params(0))
    footprints: list[int] = []
    # Round ids above 256, so that no round number is an interned int shared with the graph.
    rounds = list(range(1000, 1120, 3))
    for round_id in rounds:
        scene = _scene(kit, target.keys, target.recipient, params(round_id))
        _decrypted(kit, target, target.party.receive(scene.request))
        assert target.party.last_round == round_id
        footprints.append(sum(1 for _ in kit.object_graph(target.party)))
        if round_id == rounds[0]:
            first = scene
    # As many objects after 40 rounds as after one: nothing per round is kept.
    assert len(set(footprints)) == 1, footprints
    # And every earlier round stays refused, with only the last one remembered.
    with pytest.raises(ServerMisbehaviourError, match=f"is older than round {rounds[-1]}"):
        target.party.receive(first.request)


def test_object_count_grows_if_a_decryptor_keeps_requests(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # Positive control for the footprint measure: one kept request is counted.
    params = kit.params(2, vector_length=4)
    holder = kit.key_holder(keys, params)
    scene = _scene(kit, keys, KEY_HOLDER_ID, params)
    alone = sum(1 for _ in kit.object_graph(holder))
    assert sum(1 for _ in kit.object_graph([holder, scene.request])) > alone + 1


def test_committee_without_a_majority_is_refused() -> None:
    # With t <= m / 2, two disjoint groups of members could each decrypt one subset of a round.
    keys = hazmat._generate_threshold_keypair_unchecked_size(512, decryptors=5, threshold=2)
    with pytest.raises(ParameterError, match="two disjoint groups"):
        Decryptor(
            keys.shares[0],
            session_id=bytes(16),
            roster=trusted_setup(range(3))[0],
            value_bits=16,
            max_clients=3,
        )
    with pytest.raises(ParameterError, match="two disjoint groups"):
        check_committee(5, 2)


def _differencing_attack(
    kit: type[PaillierKit], threshold: int, colluders: tuple[int, ...]
) -> bool:
    """The server, holding the shares of ``colluders``, asks two groups for two subsets of one
    round: everyone's uploads, then all but client 0's. True if it learns client 0's input."""
    params = kit.params(3, vector_length=12, max_clients=3)
    inputs = kit.inputs(params, seed=41)
    keys = hazmat._generate_threshold_keypair_unchecked_size(512, decryptors=5, threshold=threshold)
    members = kit.committee(keys, params)
    uploads = kit.uploads(keys, params, inputs, params.clients)
    honest = [i for i in range(1, 6) if i not in colluders]
    sums = []
    for chosen in (uploads, uploads[1:]):
        public_key = keys.public.public_key
        ciphertexts = hazmat.sum_ciphertext_vectors(
            public_key,
            [hazmat.ciphertexts_from_bytes(public_key, upload.ciphertexts) for upload in chosen],
        )
        partials = [
            hazmat.partial_decrypt(keys.shares[i - 1], ciphertexts, context=b"colluder")
            for i in colluders
        ]
        for index in honest:
            if len(partials) == threshold:
                break
            request = kit.request(params, chosen, recipient=decryptor_id(index))
            try:
                (share,) = members[index - 1].receive(request)
            except ServerMisbehaviourError:
                continue  # this member decrypted the round already
            assert isinstance(share, DecryptionShare)
            partials.append(hazmat.PartialDecryption.from_bytes(keys.public, share.partial))
        if len(partials) < threshold:
            return False
        plaintexts = hazmat.combine_partial_decryptions(keys.public, partials)
        sums.append(members[0].packing.unpack(plaintexts, 12, len(chosen)))
        honest = honest[::-1]  # the second subset goes to the members not yet used
    return bool(np.array_equal(sums[0] - sums[1], inputs[0]))


def test_committee_keeps_one_decryption_per_round_up_to_its_collusion_bound(
    kit: type[PaillierKit],
) -> None:
    # The documented bound: a t-of-m committee resists c <= 2t - m - 1 colluding members.
    assert not _differencing_attack(kit, threshold=3, colluders=())  # 3-of-5, c = 0
    assert not _differencing_attack(kit, threshold=4, colluders=(4, 5))  # 4-of-5, c = 2


def test_committee_past_its_collusion_bound_lets_the_server_isolate_a_client(
    kit: type[PaillierKit],
) -> None:
    # One colluding member of a 3-of-5 committee (2t - m - 1 = 0) is enough: members 1-2 and
    # 3-4 each decrypt once, with the colluder's share in both groups.
    assert _differencing_attack(kit, threshold=3, colluders=(5,))


def test_a_client_given_another_packing_is_refused_by_the_decryptor(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # The server gives client 2 wider slots (max_clients 2^20: 36-bit instead of 18-bit) and
    # asks for twice the values: without the packing in the signature, the upper half of the
    # victim's vector would come back alone in the odd slots of the sum.
    params = kit.params(3, vector_length=14, max_clients=4)
    inputs = kit.inputs(params, seed=43)
    holder = kit.key_holder(keys, params)
    uploads: list[EncryptedInput] = []
    for u in params.clients:
        client = kit.client(keys, params, u)
        setup = kit.setup(keys, params, recipient=u)
        if u == 2:
            setup = dataclasses.replace(setup, max_clients=2**20)
        client.receive(setup)
        (upload,) = client.submit_input(inputs[u])
        assert isinstance(upload, EncryptedInput)
        uploads.append(upload)
    doubled = kit.request(params, uploads, vector_length=2 * params.vector_length)
    with pytest.raises(ServerMisbehaviourError, match=r"not signed .* this public key and packing"):
        holder.receive(doubled)
    # At the honest length the others' uploads check out, and the victim's is the one refused.
    with pytest.raises(ServerMisbehaviourError, match="client 2's upload is not signed"):
        holder.receive(kit.request(params, uploads))
    assert holder.last_round is None


def test_a_restarted_decryptor_given_its_last_round_refuses_that_round_again(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=8)
    uploads = kit.uploads(keys, params, kit.inputs(params, seed=44), params.clients)
    first = kit.key_holder(keys, params)
    first.receive(kit.request(params, uploads))
    restarted = KeyHolder(
        keys,
        session_id=params.session_id,
        roster=kit.roster,
        value_bits=params.value_bits,
        max_clients=params.max_clients,
        last_round=first.last_round,
    )
    with pytest.raises(ServerMisbehaviourError, match="already decrypted"):
        restarted.receive(kit.request(params, uploads[1:]))
