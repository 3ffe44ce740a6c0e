"""Adversarial-server suite: a server that lies to a client never gets a secret out of it.

Each attack is fed to one honest client in the phase where it bites. The client must raise a
specific error instead of returning messages (so nothing was sent), end ``ABORTED`` with its
keys, seed and held shares dropped, and refuse every later call with ``LocalProtocolError``
(DESIGN.md section 3, invariants 2 and 3; STYLE.md section 3, "Client-side defences").

One attack is answered without aborting: a forwarded share bundle that does not open (tampered,
truncated, relabelled, meant for another client or another round). The client cannot tell a
lying server from a lying peer, so it keeps no share from that sender, leaves it out of its
masks and names it in ``MaskedInput.rejected``; the server then leaves the sender out of the
sum. It aborts only when fewer than a threshold of share holders would remain.

These tests run the semi-honest protocol (the harness's clients and ``make_params``); the
active model's own defences are tested elsewhere.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocols._transitions import ClientPhase
from protocols.masking import MaskingClient
from protocols.messages import (
    SERVER_ID,
    ForwardedShares,
    KeyRoster,
    MaskedInput,
    Message,
    RosterEntry,
    RoundSetup,
    SealedShares,
    UnmaskRequest,
    UnmaskResponse,
)
from protocols.simulate import Simulator
from secagg.errors import (
    InsufficientSurvivorsError,
    RemoteProtocolError,
    ServerMisbehaviourError,
    WireFormatError,
)
from secagg.hazmat.kex import generate_keypair

VICTIM = 0


def _fresh_key() -> bytes:
    return generate_keypair().public_bytes


# --------------------------------------------------------------------------------------------
# Unmask requests (round 4): never both shares of one peer
# --------------------------------------------------------------------------------------------


@pytest.fixture
def at_unmask(make_params, harness):
    """Five clients, t = 3; client 4 drops before uploading, so requests name it dropped."""
    h = harness(make_params(5, threshold=3)).advance_to(ClientPhase.AWAIT_SHARES)
    h.advance(silent={4})
    request = h.pending[VICTIM]
    assert isinstance(request, UnmaskRequest)
    assert request.survivors == (0, 1, 2, 3) and request.dropped == (4,)
    assert set(h.clients[VICTIM]._held_shares) == {0, 1, 2, 3, 4}
    return h


def test_client_rejects_overlapping_unmask_sets(at_unmask, check_aborted):
    request = at_unmask.pending[VICTIM]
    attack = dataclasses.replace(request, dropped=(*request.dropped, 2))
    client = at_unmask.clients[VICTIM]
    with pytest.raises(ServerMisbehaviourError):
        client.receive(attack)
    check_aborted(client, request)


def test_client_rejects_unmask_request_naming_itself_dropped(at_unmask, check_aborted):
    request = at_unmask.pending[VICTIM]
    attack = dataclasses.replace(
        request, survivors=tuple(u for u in request.survivors if u != VICTIM), dropped=(VICTIM, 4)
    )
    client = at_unmask.clients[VICTIM]
    with pytest.raises(ServerMisbehaviourError):
        client.receive(attack)
    check_aborted(client, request)


def test_client_rejects_unmask_request_naming_itself_survivor_and_dropped(at_unmask, check_aborted):
    request = at_unmask.pending[VICTIM]
    attack = dataclasses.replace(request, dropped=(VICTIM, 4))
    client = at_unmask.clients[VICTIM]
    with pytest.raises(ServerMisbehaviourError):
        client.receive(attack)
    check_aborted(client, request)


@pytest.mark.parametrize("field", ["survivors", "dropped"])
def test_client_rejects_unmask_request_with_unknown_ids(at_unmask, check_aborted, field):
    request = at_unmask.pending[VICTIM]
    attack = dataclasses.replace(request, **{field: (*getattr(request, field), 99)})
    client = at_unmask.clients[VICTIM]
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(attack)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, request)


@pytest.mark.parametrize("field", ["survivors", "dropped"])
def test_client_rejects_unmask_request_with_duplicate_ids(at_unmask, check_aborted, field):
    request = at_unmask.pending[VICTIM]
    doubled = (*getattr(request, field), getattr(request, field)[-1])
    with pytest.raises(WireFormatError):
        dataclasses.replace(request, **{field: doubled})
    # Reach the client's own check by smuggling the duplicate past the message constructor.
    attack = dataclasses.replace(request)
    object.__setattr__(attack, field, doubled)
    client = at_unmask.clients[VICTIM]
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(attack)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, request)


def test_client_rejects_unmask_request_below_threshold(at_unmask, check_aborted):
    request = at_unmask.pending[VICTIM]
    attack = dataclasses.replace(request, survivors=(VICTIM, 1))
    client = at_unmask.clients[VICTIM]
    with pytest.raises(InsufficientSurvivorsError):
        client.receive(attack)
    check_aborted(client, request)


def test_client_rejects_unmask_request_calling_survivors_dropped(at_unmask, check_aborted):
    # Calling survivors dropped would hand the server their mask keys: t survivors must remain.
    request = at_unmask.pending[VICTIM]
    attack = dataclasses.replace(request, survivors=(VICTIM, 1), dropped=(2, 3, 4))
    client = at_unmask.clients[VICTIM]
    with pytest.raises(InsufficientSurvivorsError):
        client.receive(attack)
    check_aborted(client, request)


def test_client_rejects_unmask_request_leaving_itself_out(at_unmask, check_aborted):
    request = at_unmask.pending[VICTIM]
    attack = dataclasses.replace(request, survivors=(1, 2, 3))
    client = at_unmask.clients[VICTIM]
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(attack)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, request)


@pytest.mark.parametrize("phase", [ClientPhase.AWAIT_SHARES, ClientPhase.AWAIT_INPUT])
def test_client_rejects_early_unmask_request(make_params, harness, check_aborted, phase):
    h = harness(make_params(4)).advance_to(phase)
    client = h.clients[VICTIM]
    early = UnmaskRequest(
        session_id=client.session_id,
        round_id=client.round_id,
        sender=SERVER_ID,
        recipient=VICTIM,
        survivors=(0, 1, 2, 3),
        dropped=(),
    )
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(early)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client)


def test_client_answers_one_unmask_request_only(at_unmask, check_aborted):
    request = at_unmask.pending[VICTIM]
    client = at_unmask.clients[VICTIM]
    (response,) = client.receive(request)
    assert isinstance(response, UnmaskResponse)
    assert client.phase is ClientPhase.DONE
    assert client._held_shares == {}
    # A second request asking for the other share of the same peer is out of order.
    second = dataclasses.replace(request, survivors=(0, 1, 3), dropped=(2, 4))
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(second)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, request)


# --------------------------------------------------------------------------------------------
# Rosters (end of round 0)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def at_roster(make_params, harness):
    """Four clients on the complete graph, t = 3, waiting for their rosters."""
    h = harness(make_params(4)).advance_to(ClientPhase.AWAIT_ROSTER)
    roster = h.pending[VICTIM]
    assert isinstance(roster, KeyRoster)
    assert [e.client_id for e in roster.entries] == [0, 1, 2, 3]
    return h


def _feed_roster(h, entries, check_aborted, error):
    roster = h.pending[VICTIM]
    attack = dataclasses.replace(roster, entries=tuple(entries))
    client = h.clients[VICTIM]
    with pytest.raises(error) as caught:
        client.receive(attack)
    assert type(caught.value) is error
    check_aborted(client, roster)


def _entry(client_id: int) -> RosterEntry:
    return RosterEntry(
        client_id=client_id,
        mask_public_key=_fresh_key(),
        share_public_key=_fresh_key(),
        seed_commitment=bytes(32),
    )


def test_client_rejects_roster_with_duplicate_id(at_roster, check_aborted):
    entries = list(at_roster.pending[VICTIM].entries)
    entries.append(_entry(2))
    _feed_roster(at_roster, entries, check_aborted, ServerMisbehaviourError)


@pytest.mark.parametrize(
    ("field", "source"),
    [
        ("mask_public_key", "mask_public_key"),
        ("share_public_key", "share_public_key"),
        ("share_public_key", "mask_public_key"),
    ],
)
def test_client_rejects_roster_with_duplicated_key(at_roster, check_aborted, field, source):
    entries = list(at_roster.pending[VICTIM].entries)
    entries[1] = dataclasses.replace(entries[1], **{field: getattr(entries[2], source)})
    _feed_roster(at_roster, entries, check_aborted, ServerMisbehaviourError)


def test_client_rejects_roster_copying_its_own_key_to_a_peer(at_roster, check_aborted):
    entries = list(at_roster.pending[VICTIM].entries)
    entries[1] = dataclasses.replace(entries[1], share_public_key=entries[VICTIM].share_public_key)
    _feed_roster(at_roster, entries, check_aborted, ServerMisbehaviourError)


@pytest.mark.parametrize("field", ["mask_public_key", "share_public_key"])
def test_client_rejects_roster_altering_its_own_key(at_roster, check_aborted, field):
    entries = list(at_roster.pending[VICTIM].entries)
    entries[VICTIM] = dataclasses.replace(entries[VICTIM], **{field: _fresh_key()})
    _feed_roster(at_roster, entries, check_aborted, ServerMisbehaviourError)


def test_client_rejects_roster_swapping_its_own_keys(at_roster, check_aborted):
    entries = list(at_roster.pending[VICTIM].entries)
    own = entries[VICTIM]
    entries[VICTIM] = dataclasses.replace(
        own, mask_public_key=own.share_public_key, share_public_key=own.mask_public_key
    )
    _feed_roster(at_roster, entries, check_aborted, ServerMisbehaviourError)


def _with_low_order_key(roster: KeyRoster, field: str) -> KeyRoster:
    # The all-zero point makes the agreed secret zero, i.e. known to the server.
    entries = list(roster.entries)
    entries[2] = dataclasses.replace(entries[2], **{field: bytes(32)})
    return dataclasses.replace(roster, entries=tuple(entries))


@pytest.mark.parametrize("field", ["share_public_key", "mask_public_key"])
def test_client_rejects_roster_with_low_order_key(at_roster, check_aborted, field):
    # Both keys are agreed with on the roster, before any share leaves the client: a
    # low-order key of either kind is the server's doing (an honest one never relays it).
    _feed_roster(
        at_roster,
        _with_low_order_key(at_roster.pending[VICTIM], field).entries,
        check_aborted,
        ServerMisbehaviourError,
    )


def test_client_rejects_roster_missing_its_own_entry(at_roster, check_aborted):
    entries = [e for e in at_roster.pending[VICTIM].entries if e.client_id != VICTIM]
    _feed_roster(at_roster, entries, check_aborted, ServerMisbehaviourError)


def test_client_rejects_roster_with_foreign_id(at_roster, check_aborted):
    entries = list(at_roster.pending[VICTIM].entries)
    entries.append(_entry(99))
    _feed_roster(at_roster, entries, check_aborted, ServerMisbehaviourError)


def test_client_rejects_roster_with_non_neighbour(make_params, harness, check_aborted):
    h = harness(make_params(6, graph="harary", degree=2)).advance_to(ClientPhase.AWAIT_ROSTER)
    neighbours = h.params.graph.neighbours[VICTIM]
    stranger = min(set(h.params.graph.nodes) - neighbours - {VICTIM})
    # The stranger's real roster entry, taken from the roster the server made for it.
    real = next(e for e in h.pending[stranger].entries if e.client_id == stranger)
    entries = sorted((*h.pending[VICTIM].entries, real), key=lambda e: e.client_id)
    _feed_roster(h, entries, check_aborted, ServerMisbehaviourError)


def test_client_rejects_roster_below_threshold(at_roster, check_aborted):
    # t = 3: the client itself and one peer are too few to hold its shares.
    entries = [e for e in at_roster.pending[VICTIM].entries if e.client_id in (VICTIM, 1)]
    _feed_roster(at_roster, entries, check_aborted, InsufficientSurvivorsError)


# --------------------------------------------------------------------------------------------
# Forwarded shares (end of round 1)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def at_shares(make_params, harness):
    """Five clients on the complete graph, t = 3, waiting for their forwarded shares: the
    victim can lose two of its four peers' bundles and still keep a threshold of holders."""
    h = harness(make_params(5, threshold=3)).advance_to(ClientPhase.AWAIT_SHARES)
    forwarded = h.pending[VICTIM]
    assert isinstance(forwarded, ForwardedShares)
    assert [b.peer for b in forwarded.bundles] == [1, 2, 3, 4]
    return h


def _feed_bundles(h, bundles, check_aborted, error):
    forwarded = h.pending[VICTIM]
    attack = dataclasses.replace(forwarded, bundles=tuple(bundles))
    client = h.clients[VICTIM]
    with pytest.raises(error) as caught:
        client.receive(attack)
    assert type(caught.value) is error
    check_aborted(client, forwarded)


def _feed_unopenable_bundles(h, bundles, rejected) -> MaskedInput:
    """The victim gets bundles of which those from ``rejected`` do not open: it keeps going,
    sends nothing yet, keeps no share from those senders, and names them in its upload."""
    forwarded = h.pending[VICTIM]
    attack = dataclasses.replace(forwarded, bundles=tuple(bundles))
    client = h.clients[VICTIM]
    assert client.receive(attack) == []
    assert client.phase is ClientPhase.AWAIT_INPUT
    senders = {b.peer for b in forwarded.bundles}
    assert set(client._held_shares) == (senders - set(rejected)) | {VICTIM}
    (upload,) = client.submit_input(h.inputs[VICTIM])
    assert isinstance(upload, MaskedInput)
    assert upload.rejected == tuple(sorted(rejected))
    assert client.phase is ClientPhase.AWAIT_UNMASK_REQUEST
    return upload


def _flip(bundle: SealedShares, position: int) -> SealedShares:
    flipped = bytearray(bundle.ciphertext)
    flipped[position] ^= 0x01
    return dataclasses.replace(bundle, ciphertext=bytes(flipped))


@pytest.mark.parametrize("position", [0, 20, -1])
def test_client_rejects_share_bundle_failing_authentication(at_shares, position):
    bundles = list(at_shares.pending[VICTIM].bundles)
    bundles[1] = _flip(bundles[1], position)
    _feed_unopenable_bundles(at_shares, bundles, rejected=(2,))


def test_client_rejects_truncated_share_bundle(at_shares):
    bundles = list(at_shares.pending[VICTIM].bundles)
    bundles[0] = dataclasses.replace(bundles[0], ciphertext=bundles[0].ciphertext[:-1])
    _feed_unopenable_bundles(at_shares, bundles, rejected=(1,))


def test_client_rejects_bundle_forwarded_to_the_wrong_client(at_shares):
    # Client 2's bundle for client 1 is forwarded to client 0, still labelled "from 2".
    for_other = next(b for b in at_shares.pending[1].bundles if b.peer == 2)
    bundles = [for_other if b.peer == 2 else b for b in at_shares.pending[VICTIM].bundles]
    _feed_unopenable_bundles(at_shares, bundles, rejected=(2,))


def test_client_rejects_bundle_relabelled_with_another_sender(at_shares):
    by_sender = {b.peer: b for b in at_shares.pending[VICTIM].bundles}
    bundles = [
        by_sender[1],
        SealedShares(peer=2, ciphertext=by_sender[3].ciphertext),
        SealedShares(peer=3, ciphertext=by_sender[2].ciphertext),
        by_sender[4],
    ]
    _feed_unopenable_bundles(at_shares, bundles, rejected=(2, 3))


def test_client_keeps_masking_with_peers_whose_bundles_do_not_open(at_shares):
    # Three of four bundles are garbage: the victim holds only its own and client 4's shares,
    # but the pair masks need no bundle, so it masks with all four and the round goes on.
    bundles = [_flip(b, 0) if b.peer != 4 else b for b in at_shares.pending[VICTIM].bundles]
    upload = _feed_unopenable_bundles(at_shares, bundles, rejected=(1, 2, 3))
    assert at_shares.clients[VICTIM]._mask_peers == (1, 2, 3, 4)
    assert upload.rejected == (1, 2, 3)


def test_unopenable_bundle_costs_its_sender_one_holder_only(at_shares, ring_sum):
    """The server names the accused sender and asks the victim for none of its shares; both
    still mask with each other, so every input stays in the exact sum."""
    bundles = list(at_shares.pending[VICTIM].bundles)
    bundles[1] = _flip(bundles[1], 0)
    at_shares.pending[VICTIM] = dataclasses.replace(
        at_shares.pending[VICTIM], bundles=tuple(bundles)
    )
    at_shares.advance()
    accused = 2
    request = at_shares.pending[VICTIM]
    assert isinstance(request, UnmaskRequest)
    assert accused not in request.survivors and accused not in request.dropped
    assert accused in at_shares.pending  # it is asked for the shares it holds
    assert set(at_shares.server.misbehaved) == {accused}
    assert f"client {VICTIM}" in at_shares.server.misbehaved[accused]
    at_shares.advance()
    result = at_shares.server.result
    assert result.survivors == (0, 1, 2, 3, 4)
    assert set(result.misbehaved) == {accused}
    expected = ring_sum(at_shares.inputs, result.survivors, at_shares.params.modulus_bits)
    assert np.array_equal(result.vector, expected)
    assert all(at_shares.clients[u].phase is ClientPhase.DONE for u in result.survivors)


def test_client_rejects_shares_from_non_roster_id(at_shares, check_aborted):
    bundles = list(at_shares.pending[VICTIM].bundles)
    bundles[2] = SealedShares(peer=99, ciphertext=bundles[2].ciphertext)
    _feed_bundles(at_shares, bundles, check_aborted, RemoteProtocolError)


def test_client_rejects_shares_claiming_to_come_from_itself(at_shares, check_aborted):
    bundles = list(at_shares.pending[VICTIM].bundles)
    bundles[2] = SealedShares(peer=VICTIM, ciphertext=bundles[2].ciphertext)
    _feed_bundles(at_shares, bundles, check_aborted, RemoteProtocolError)


def test_client_rejects_shares_with_duplicated_sender(at_shares, check_aborted):
    bundles = list(at_shares.pending[VICTIM].bundles)
    bundles.append(bundles[0])
    _feed_bundles(at_shares, bundles, check_aborted, RemoteProtocolError)


def test_client_rejects_too_few_forwarded_shares(at_shares, check_aborted):
    bundles = list(at_shares.pending[VICTIM].bundles)[:1]
    _feed_bundles(at_shares, bundles, check_aborted, InsufficientSurvivorsError)


# --------------------------------------------------------------------------------------------
# Binding: other session, other round, other recipient, replays
# --------------------------------------------------------------------------------------------


def test_client_rejects_setup_from_another_session(make_params, harness, check_aborted):
    h = harness(make_params(4)).start()
    setup = h.pending[VICTIM]
    foreign = dataclasses.replace(setup, session_id=bytes(16))
    client = h.clients[VICTIM]
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(foreign)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, setup)


def test_client_rejects_message_from_another_session(make_params, harness, check_aborted):
    params = make_params(4)
    other = harness(dataclasses.replace(params, session_id=bytes(16))).advance_to(
        ClientPhase.AWAIT_SHARES
    )
    h = harness(params).advance_to(ClientPhase.AWAIT_SHARES)
    client = h.clients[VICTIM]
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(other.pending[VICTIM])
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, h.pending[VICTIM])


@pytest.mark.parametrize(
    "phase",
    [
        ClientPhase.AWAIT_SETUP,
        ClientPhase.AWAIT_ROSTER,
        ClientPhase.AWAIT_SHARES,
        ClientPhase.AWAIT_UNMASK_REQUEST,
    ],
)
def test_client_rejects_replay_of_an_earlier_round(make_params, harness, check_aborted, phase):
    first_params = make_params(4, round_id=1)
    first = harness(first_params).advance_to(phase)
    replayed = first.pending[VICTIM]
    second = harness(dataclasses.replace(first_params, round_id=2)).advance_to(phase)
    client = second.clients[VICTIM]
    assert type(second.pending[VICTIM]) is type(replayed)
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(replayed)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, second.pending[VICTIM])


@pytest.mark.parametrize("replaced", [(2,), (1, 2, 3, 4)], ids=["one", "all"])
def test_client_rejects_earlier_round_ciphertexts_under_a_new_header(
    make_params, harness, check_aborted, replaced
):
    # Even re-wrapped in a header of the new round, old bundles fail: AAD and keys bind the round.
    first_params = make_params(5, threshold=3, round_id=1)
    first = harness(first_params).advance_to(ClientPhase.AWAIT_SHARES)
    second = harness(dataclasses.replace(first_params, round_id=2))
    second.advance_to(ClientPhase.AWAIT_SHARES)
    old = {b.peer: b for b in first.pending[VICTIM].bundles}
    bundles = [old[b.peer] if b.peer in replaced else b for b in second.pending[VICTIM].bundles]
    # None of them opens; the victim holds none of those senders' shares.
    _feed_unopenable_bundles(second, bundles, rejected=replaced)


@pytest.mark.parametrize(
    "phase", [ClientPhase.AWAIT_SETUP, ClientPhase.AWAIT_ROSTER, ClientPhase.AWAIT_SHARES]
)
def test_client_rejects_message_for_another_client(make_params, harness, check_aborted, phase):
    h = harness(make_params(4)).advance_to(phase)
    client = h.clients[VICTIM]
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(h.pending[1])
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, h.pending[VICTIM])


@pytest.mark.parametrize("phase", [ClientPhase.AWAIT_SETUP, ClientPhase.AWAIT_ROSTER])
def test_client_rejects_replay_within_the_round(make_params, harness, check_aborted, phase):
    h = harness(make_params(4)).advance_to(phase)
    message = h.pending[VICTIM]
    client = h.clients[VICTIM]
    assert client.receive(message)
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(message)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, message)


# --------------------------------------------------------------------------------------------
# Round setup
# --------------------------------------------------------------------------------------------


def test_client_rejects_threshold_of_one(make_params, harness, check_aborted):
    h = harness(make_params(4)).start()
    setup = h.pending[VICTIM]
    attack = dataclasses.replace(setup, threshold=1)
    client = h.clients[VICTIM]
    with pytest.raises(ServerMisbehaviourError):
        client.receive(attack)
    check_aborted(client, setup)


def test_client_rejects_threshold_below_its_minimum(make_params):
    params = make_params(4)
    client = MaskingClient(
        VICTIM,
        session_id=params.session_id,
        round_id=params.round_id,
        min_threshold=3,
        threat_model="semi-honest",
    )
    setup = RoundSetup(
        session_id=params.session_id,
        round_id=params.round_id,
        sender=SERVER_ID,
        recipient=VICTIM,
        threshold=2,
        vector_length=4,
        modulus_bits=16,
        neighbours=(1, 2, 3),
    )
    with pytest.raises(ServerMisbehaviourError):
        client.receive(setup)
    assert client.phase is ClientPhase.ABORTED


# --------------------------------------------------------------------------------------------
# Whole rounds through the simulator, with the server's messages rewritten
# --------------------------------------------------------------------------------------------


def _capture(log: list[Message]):
    def record(round_index: int, message: Message) -> Message:
        log.append(message)
        return message

    return record


@pytest.mark.parametrize("graph", ["complete", "harary"])
def test_server_asking_for_both_shares_gets_nothing(make_params, make_inputs, graph):
    params = make_params(8, graph=graph, degree=4, vector_length=16)
    log: list[Message] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, UnmaskRequest):
            # Also call a surviving neighbour dropped, hoping for its mask key share.
            victim = min(u for u in message.survivors if u != message.recipient)
            message = dataclasses.replace(message, dropped=(*message.dropped, victim))
        log.append(message)
        return message

    report = Simulator(params, make_inputs(params), dropouts={7: 2}, interceptor=interceptor).run()
    honest = set(params.graph.nodes) - {7}
    assert set(report.client_errors) == honest
    assert all(type(e) is ServerMisbehaviourError for e in report.client_errors.values())
    assert not [m for m in log if isinstance(m, UnmaskResponse)]
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert report.result is None


def test_server_calling_every_client_dropped_gets_nothing(make_params, make_inputs):
    params = make_params(6, vector_length=4)
    log: list[Message] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, UnmaskRequest):
            message = dataclasses.replace(message, survivors=(), dropped=message.survivors)
        log.append(message)
        return message

    report = Simulator(params, make_inputs(params), interceptor=interceptor).run()
    assert set(report.client_errors) == set(params.graph.nodes)
    assert all(type(e) is ServerMisbehaviourError for e in report.client_errors.values())
    assert not [m for m in log if isinstance(m, UnmaskResponse)]
    assert report.result is None


def test_honest_round_never_releases_both_shares_of_a_client(make_params, make_inputs):
    params = make_params(7, vector_length=4)
    log: list[Message] = []
    report = Simulator(
        params, make_inputs(params), dropouts={5: 2, 6: 3}, interceptor=_capture(log)
    ).run()
    assert report.result is not None
    survivors = set(report.result.survivors)
    responses = [m for m in log if isinstance(m, UnmaskResponse)]
    assert len(responses) == 5
    for response in responses:
        assert {s.owner for s in response.self_mask_shares} <= survivors
        assert not {s.owner for s in response.mask_key_shares} & survivors
        assert {s.owner for s in response.mask_key_shares} == {5}


@pytest.mark.parametrize("told_dropped", range(7))
def test_server_splitting_unmask_requests_cannot_collect_both_thresholds(
    make_params, make_inputs, told_dropped
):
    # The server tells some clients the victim survived and the rest that it dropped; no
    # single request overlaps, but with t > n/2 it can never gather t shares of both kinds.
    params = make_params(8, vector_length=4)
    victim = 7
    t = params.threshold
    liars = set(range(told_dropped))
    log: list[Message] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, UnmaskRequest) and message.recipient in liars:
            message = dataclasses.replace(
                message,
                survivors=tuple(u for u in message.survivors if u != victim),
                dropped=(*message.dropped, victim),
            )
        log.append(message)
        return message

    Simulator(params, make_inputs(params), interceptor=interceptor).run()
    responses = [m for m in log if isinstance(m, UnmaskResponse)]
    seed_shares = sum(victim in {s.owner for s in r.self_mask_shares} for r in responses)
    key_shares = sum(victim in {s.owner for s in r.mask_key_shares} for r in responses)
    assert (seed_shares, key_shares) == (8 - told_dropped, told_dropped)
    assert min(seed_shares, key_shares) < t
    for response in responses:
        assert not {s.owner for s in response.self_mask_shares} & {
            s.owner for s in response.mask_key_shares
        }


def test_malicious_roster_in_simulation_aborts_the_victim_only(make_params, make_inputs):
    params = make_params(6, vector_length=8)
    inputs = make_inputs(params)

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, KeyRoster) and message.recipient == VICTIM:
            entries = list(message.entries)
            entries[VICTIM] = dataclasses.replace(entries[VICTIM], mask_public_key=_fresh_key())
            return dataclasses.replace(message, entries=tuple(entries))
        return message

    report = Simulator(params, inputs, interceptor=interceptor).run()
    assert list(report.client_errors) == [VICTIM]
    assert type(report.client_errors[VICTIM]) is ServerMisbehaviourError
    assert report.result is not None
    assert report.result.survivors == (1, 2, 3, 4, 5)
    expected = sum(inputs[u].astype(np.uint64) for u in range(1, 6)) % 2**16
    assert np.array_equal(report.result.vector, expected.astype(np.uint32))
