"""The masking client as a state machine: legal moves, illegal moves, local input, its output.

Every (phase, message type) pair outside ``CLIENT_TRANSITIONS`` (the semi-honest client, which
the harness builds; the consistency round's messages are never legal for it) must raise exactly
``RemoteProtocolError``; every failure poisons the client (``ABORTED``, secrets dropped, later
calls refused with ``LocalProtocolError``). The masked input the server sees must look uniform
and must change with the session, the round and the client (DESIGN.md section 3, 3 and 5).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from scipy.stats import chisquare

from protocols._machine import SubmitInput
from protocols._transitions import (
    ACTIVE_CLIENT_TRANSITIONS,
    CLIENT_TRANSITIONS,
    SERVER_ROUND_INDEX,
    ClientPhase,
)
from protocols.graph import ThreatModel
from protocols.masking import MaskingClient
from protocols.messages import (
    SERVER_ID,
    Abort,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    ForwardedShares,
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
)
from protocols.simulate import Simulator
from secagg.errors import (
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    ServerMisbehaviourError,
)
from secagg.hazmat.kex import generate_keypair

CLIENT = 0
MESSAGE_TYPES: tuple[type, ...] = (
    RoundSetup,
    KeyAdvertisement,
    KeyRoster,
    EncryptedShares,
    ForwardedShares,
    MaskedInput,
    ConsistencyRequest,
    ConsistencySignature,
    UnmaskRequest,
    UnmaskResponse,
    Abort,
)
LIVE_PHASES = tuple(p for p in CLIENT_TRANSITIONS if p is not ClientPhase.ABORTED)
ILLEGAL_MOVES = [
    (phase, kind)
    for phase, kind in itertools.product(LIVE_PHASES, MESSAGE_TYPES)
    if kind is not Abort and kind not in CLIENT_TRANSITIONS[phase]
]


def _key() -> bytes:
    return generate_keypair().public_bytes


def build_message(kind: type, client: MaskingClient) -> Message:
    """A well-formed server -> client message of type ``kind`` for this client's session."""
    header = {
        "session_id": client.session_id,
        "round_id": client.round_id,
        "sender": SERVER_ID,
        "recipient": client.client_id,
    }
    bundle = SealedShares(peer=1, ciphertext=bytes(60))
    builders = {
        RoundSetup: lambda: RoundSetup(
            **header, threshold=2, vector_length=4, modulus_bits=16, neighbours=(1, 2, 3)
        ),
        KeyAdvertisement: lambda: KeyAdvertisement(
            **header, mask_public_key=_key(), share_public_key=_key(), seed_commitment=bytes(32)
        ),
        KeyRoster: lambda: KeyRoster(
            **header,
            entries=(
                RosterEntry(
                    client_id=client.client_id,
                    mask_public_key=_key(),
                    share_public_key=_key(),
                    seed_commitment=bytes(32),
                ),
            ),
        ),
        EncryptedShares: lambda: EncryptedShares(**header, bundles=(bundle,)),
        ConsistencyRequest: lambda: ConsistencyRequest(**header, survivors=(0, 1, 2, 3)),
        ConsistencySignature: lambda: ConsistencySignature(**header, signature=bytes(64)),
        ForwardedShares: lambda: ForwardedShares(**header, bundles=(bundle,)),
        MaskedInput: lambda: MaskedInput(
            **header, modulus_bits=16, vector=np.zeros(4, dtype=np.uint32)
        ),
        UnmaskRequest: lambda: UnmaskRequest(**header, survivors=(0, 1, 2, 3), dropped=()),
        UnmaskResponse: lambda: UnmaskResponse(
            **header, self_mask_shares=(ShareEntry(owner=1, value=5),), mask_key_shares=()
        ),
        Abort: lambda: Abort(**header, reason="test"),
    }
    return builders[kind]()


@pytest.fixture
def at_phase(make_params, harness):
    """Factory: a four-client harness whose clients wait in ``phase``."""

    def build(phase: ClientPhase):
        return harness(make_params(4)).advance_to(phase)

    return build


# --------------------------------------------------------------------------------------------
# The transition table
# --------------------------------------------------------------------------------------------


def test_client_transition_table_is_the_documented_one():
    aborted = ClientPhase.ABORTED
    assert {p: dict(m) for p, m in CLIENT_TRANSITIONS.items()} == {
        ClientPhase.AWAIT_SETUP: {RoundSetup: ClientPhase.AWAIT_ROSTER, Abort: aborted},
        ClientPhase.AWAIT_ROSTER: {KeyRoster: ClientPhase.AWAIT_SHARES, Abort: aborted},
        ClientPhase.AWAIT_SHARES: {ForwardedShares: ClientPhase.AWAIT_INPUT, Abort: aborted},
        ClientPhase.AWAIT_INPUT: {SubmitInput: ClientPhase.AWAIT_UNMASK_REQUEST, Abort: aborted},
        ClientPhase.AWAIT_UNMASK_REQUEST: {UnmaskRequest: ClientPhase.DONE, Abort: aborted},
        ClientPhase.DONE: {Abort: aborted},
        ClientPhase.ABORTED: {},
    }
    # The active client signs the survivor set (round 3) between its upload and the unmasking.
    assert {p: dict(m) for p, m in ACTIVE_CLIENT_TRANSITIONS.items()} == {
        **{p: dict(m) for p, m in CLIENT_TRANSITIONS.items()},
        ClientPhase.AWAIT_INPUT: {SubmitInput: ClientPhase.AWAIT_CONSISTENCY, Abort: aborted},
        ClientPhase.AWAIT_CONSISTENCY: {
            ConsistencyRequest: ClientPhase.AWAIT_UNMASK_REQUEST,
            Abort: aborted,
        },
    }
    assert ClientPhase.AWAIT_CONSISTENCY not in CLIENT_TRANSITIONS


def test_client_honest_round_follows_the_transition_table(make_params, harness):
    h = harness(make_params(4)).start()
    client = h.clients[CLIENT]
    assert client.phase is ClientPhase.AWAIT_SETUP
    expected_replies = {
        RoundSetup: [KeyAdvertisement],
        KeyRoster: [EncryptedShares],
        ForwardedShares: [MaskedInput],  # the harness submits the input on AWAIT_INPUT
        UnmaskRequest: [UnmaskResponse],
    }
    while h.pending:
        message = h.pending[CLIENT]
        before = client.phase
        already_sent = len(h.sent)
        h.advance()
        replies = [type(m) for m in h.sent[already_sent:] if m.sender == CLIENT]
        assert replies == expected_replies[type(message)]
        after = CLIENT_TRANSITIONS[before][type(message)]
        if after is ClientPhase.AWAIT_INPUT:
            after = ClientPhase.AWAIT_UNMASK_REQUEST
        assert client.phase is after
    assert client.phase is ClientPhase.DONE
    assert h.server.result.survivors == (0, 1, 2, 3)


def test_client_forgets_its_secrets_once_done(at_phase):
    client = at_phase(ClientPhase.DONE).clients[CLIENT]
    assert client._held_shares == {}
    assert client._mask_keys is None
    assert client._share_keys is None
    assert client._self_mask_seed is None


@pytest.mark.parametrize(
    ("phase", "kind"), ILLEGAL_MOVES, ids=[f"{p.name}-{k.__name__}" for p, k in ILLEGAL_MOVES]
)
def test_client_rejects_out_of_order_message(at_phase, check_aborted, phase, kind):
    client = at_phase(phase).clients[CLIENT]
    assert client.phase is phase
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(build_message(kind, client))
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client)


@pytest.mark.parametrize("kind", MESSAGE_TYPES, ids=[k.__name__ for k in MESSAGE_TYPES])
def test_client_aborted_refuses_every_message_locally(at_phase, kind):
    client = at_phase(ClientPhase.AWAIT_SHARES).clients[CLIENT]
    client.receive(build_message(Abort, client))
    assert client.phase is ClientPhase.ABORTED
    with pytest.raises(LocalProtocolError):
        client.receive(build_message(kind, client))
    assert client.phase is ClientPhase.ABORTED


def test_client_rejects_second_round_setup(at_phase, check_aborted):
    h = at_phase(ClientPhase.AWAIT_ROSTER)
    client = h.clients[CLIENT]
    second = next(m for m in h.delivered if m.recipient == CLIENT)
    assert isinstance(second, RoundSetup)
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(second)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client, h.pending[CLIENT])


def test_client_rejects_unmask_request_before_shares(at_phase, check_aborted):
    client = at_phase(ClientPhase.AWAIT_SHARES).clients[CLIENT]
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(build_message(UnmaskRequest, client))
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client)


@pytest.mark.parametrize("kind", MESSAGE_TYPES[:-1], ids=[k.__name__ for k in MESSAGE_TYPES[:-1]])
def test_client_rejects_anything_after_done(at_phase, check_aborted, kind):
    client = at_phase(ClientPhase.DONE).clients[CLIENT]
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(build_message(kind, client))
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client)


def test_client_rejects_message_sent_by_a_client(at_phase, check_aborted):
    client = at_phase(ClientPhase.AWAIT_ROSTER).clients[CLIENT]
    from_peer = KeyAdvertisement(
        session_id=client.session_id,
        round_id=client.round_id,
        sender=1,
        recipient=SERVER_ID,
        mask_public_key=_key(),
        share_public_key=_key(),
        seed_commitment=bytes(32),
    )
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(from_peer)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client)


# --------------------------------------------------------------------------------------------
# Abort
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", LIVE_PHASES, ids=[p.name for p in LIVE_PHASES])
def test_client_abort_message_aborts_silently(at_phase, check_aborted, phase):
    client = at_phase(phase).clients[CLIENT]
    assert client.receive(build_message(Abort, client)) == []
    check_aborted(client)


def test_client_abort_from_another_session_is_rejected(at_phase, check_aborted):
    client = at_phase(ClientPhase.AWAIT_UNMASK_REQUEST).clients[CLIENT]
    foreign = dataclasses.replace(build_message(Abort, client), session_id=bytes(16))
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(foreign)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client)


# --------------------------------------------------------------------------------------------
# Round setup and construction
# --------------------------------------------------------------------------------------------


def test_client_rejects_setup_listing_itself_as_neighbour(at_phase, check_aborted):
    client = at_phase(ClientPhase.AWAIT_SETUP).clients[CLIENT]
    setup = dataclasses.replace(build_message(RoundSetup, client), neighbours=(0, 1, 2))
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(setup)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client)


def test_client_rejects_setup_threshold_above_holders(at_phase, check_aborted):
    client = at_phase(ClientPhase.AWAIT_SETUP).clients[CLIENT]
    setup = dataclasses.replace(build_message(RoundSetup, client), threshold=5)
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(setup)
    assert type(caught.value) is RemoteProtocolError
    check_aborted(client)


def test_client_rejects_setup_threshold_of_one(at_phase, check_aborted):
    client = at_phase(ClientPhase.AWAIT_SETUP).clients[CLIENT]
    setup = dataclasses.replace(build_message(RoundSetup, client), threshold=1)
    with pytest.raises(ServerMisbehaviourError):
        client.receive(setup)
    check_aborted(client)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": -1},
        {"client_id": SERVER_ID},
        {"session_id": bytes(15)},
        {"round_id": -1},
        {"round_id": 2**64},
        {"min_threshold": 1},
        {"threat_model": "malicious"},
        # An active-model client needs its identity key and the trusted roster.
        {"threat_model": "active"},
    ],
)
def test_client_constructor_rejects_bad_parameters(kwargs):
    arguments = {
        "client_id": 0,
        "session_id": bytes(16),
        "round_id": 1,
        "threat_model": "semi-honest",
        **kwargs,
    }
    client_id = arguments.pop("client_id")
    with pytest.raises(ParameterError):
        MaskingClient(client_id, **arguments)


# --------------------------------------------------------------------------------------------
# submit_input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    [
        np.zeros(7, dtype=np.uint32),
        np.zeros(9, dtype=np.uint32),
        np.zeros((2, 4), dtype=np.uint32),
        np.uint32(0),
        np.zeros(8, dtype=np.float64),
        np.zeros(8, dtype=np.float32),
        np.zeros(8, dtype=bool),
        np.full(8, -1, dtype=np.int64),
        np.full(8, 2**16, dtype=np.uint32),
        np.array([0] * 7 + [2**16]),
        np.array([0] * 7 + [2**64 - 1], dtype=np.uint64),
        ["0"] * 8,
    ],
    ids=[
        "short",
        "long",
        "2d",
        "scalar",
        "float64",
        "float32",
        "bool",
        "negative",
        "ring-overflow",
        "one-value-overflow",
        "uint64-max",
        "strings",
    ],
)
def test_client_submit_input_rejects_bad_vector(at_phase, check_aborted, vector):
    client = at_phase(ClientPhase.AWAIT_INPUT).clients[CLIENT]
    assert client.phase is ClientPhase.AWAIT_INPUT
    with pytest.raises(LocalProtocolError) as caught:
        client.submit_input(vector)
    assert type(caught.value) is LocalProtocolError
    check_aborted(client)


@pytest.mark.parametrize(
    "vector",
    [
        np.arange(8, dtype=np.uint8),
        np.full(8, 2**16 - 1, dtype=np.int64),
        [1, 2, 3, 4, 5, 6, 7, 8],
        np.zeros(8, dtype=np.uint64),
    ],
    ids=["uint8", "int64-max-in-ring", "list", "uint64"],
)
def test_client_submit_input_accepts_integers_in_the_ring(at_phase, vector):
    client = at_phase(ClientPhase.AWAIT_INPUT).clients[CLIENT]
    (masked,) = client.submit_input(vector)
    assert isinstance(masked, MaskedInput)
    assert masked.vector.dtype == np.uint32 and masked.vector.shape == (8,)
    assert int(masked.vector.max()) < 2**16
    assert client.phase is ClientPhase.AWAIT_UNMASK_REQUEST
    assert client._mask_keys is None and client._self_mask_seed is None


@pytest.mark.parametrize(
    "phase",
    [
        ClientPhase.AWAIT_SETUP,
        ClientPhase.AWAIT_ROSTER,
        ClientPhase.AWAIT_SHARES,
        ClientPhase.AWAIT_UNMASK_REQUEST,
        ClientPhase.DONE,
    ],
    ids=lambda p: p.name,
)
def test_client_submit_input_in_wrong_phase_is_refused(at_phase, check_aborted, phase):
    client = at_phase(phase).clients[CLIENT]
    with pytest.raises(LocalProtocolError) as caught:
        client.submit_input(np.zeros(8, dtype=np.uint32))
    assert type(caught.value) is LocalProtocolError
    check_aborted(client)


def test_client_submit_input_twice_is_refused(at_phase, check_aborted):
    client = at_phase(ClientPhase.AWAIT_INPUT).clients[CLIENT]
    assert client.submit_input(np.zeros(8, dtype=np.uint32))
    with pytest.raises(LocalProtocolError):
        client.submit_input(np.zeros(8, dtype=np.uint32))
    check_aborted(client)


# --------------------------------------------------------------------------------------------
# What the server sees: masks bound to session, round and client, and uniform
# --------------------------------------------------------------------------------------------


def _masked_inputs(params, inputs) -> dict[int, np.ndarray]:
    captured: dict[int, np.ndarray] = {}

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, MaskedInput):
            captured[message.sender] = message.vector.copy()
        return message

    report = Simulator(params, inputs, interceptor=interceptor).run()
    assert report.result is not None
    return captured


def _constant_inputs(params, value: int) -> dict[int, np.ndarray]:
    return {u: np.full(params.vector_length, value, np.uint32) for u in params.graph.nodes}


@pytest.mark.parametrize("changed", ["round_id", "session_id"])
def test_client_masks_differ_across_rounds_and_sessions(make_params, changed):
    first = make_params(4, vector_length=256, round_id=1)
    other = {"round_id": 2, "session_id": bytes(range(16))}[changed]
    second = dataclasses.replace(first, **{changed: other})
    inputs = _constant_inputs(first, 7)
    a, b = _masked_inputs(first, inputs), _masked_inputs(second, inputs)
    for u in first.graph.nodes:
        assert not np.array_equal(a[u], b[u])
        assert np.count_nonzero(a[u] == b[u]) < 8


def test_client_masks_differ_between_clients_of_one_round(make_params):
    params = make_params(4, vector_length=256)
    masked = _masked_inputs(params, _constant_inputs(params, 7))
    for u, v in itertools.combinations(params.graph.nodes, 2):
        assert np.count_nonzero(masked[u] == masked[v]) < 8
    for vector in masked.values():
        assert np.count_nonzero(vector == 7) < 8


def _top_byte_counts(vector: np.ndarray, modulus_bits: int) -> np.ndarray:
    return np.bincount((vector >> (modulus_bits - 8)).astype(np.int64), minlength=256)


def test_client_masked_input_looks_uniform(make_params):
    params = make_params(3, vector_length=200_000, modulus_bits=16)
    inputs = {u: np.zeros(params.vector_length, np.uint32) for u in params.graph.nodes}
    inputs[CLIENT] = np.full(params.vector_length, 0x1234, np.uint32)
    masked = _masked_inputs(params, inputs)[CLIENT]
    assert int(masked.max()) < 2**16
    assert chisquare(_top_byte_counts(masked, 16)).pvalue > 1e-4
    assert chisquare(np.bincount(masked & 0xFF, minlength=256)).pvalue > 1e-4
    # The test has power: the plain input, and even a uniform value of one bit less, fail it.
    assert chisquare(_top_byte_counts(inputs[CLIENT], 16)).pvalue < 1e-12
    half_ring = np.random.default_rng(1).integers(0, 2**15, params.vector_length)
    assert chisquare(_top_byte_counts(half_ring, 16)).pvalue < 1e-12


@pytest.mark.parametrize("threat_model", ["semi-honest", "active"])
def test_client_state_round_trips_through_export_at_every_phase(
    threat_model: ThreatModel,
) -> None:
    """A transport that keeps no objects alive (Flower) can save and restore the machine, in
    every phase of either protocol (the active one's consistency round included)."""
    import secrets as _secrets

    import numpy as _np

    from protocols.graph import complete_graph
    from protocols.identity import trusted_setup
    from protocols.masking import MaskingClient, MaskingParams, MaskingServer

    session = _secrets.token_bytes(16)
    params = MaskingParams(
        session_id=session,
        round_id=3,
        graph=complete_graph(range(5)),
        threshold=3,
        vector_length=16,
        modulus_bits=20,
        threat_model=threat_model,
    )
    active = threat_model == "active"
    roster, identities = trusted_setup(range(5)) if active else (None, {})
    server = MaskingServer(params, roster)
    clients = {
        u: MaskingClient(
            u,
            session_id=session,
            round_id=3,
            threat_model=threat_model,
            identity=identities.get(u),
            roster=roster,
        )
        for u in range(5)
    }
    inputs = {u: _np.full(16, u, dtype=_np.uint32) for u in range(5)}
    outbox = server.start()
    phases_seen = set()
    while server.phase in SERVER_ROUND_INDEX:
        replies = []
        for message in outbox:
            u = message.recipient
            # Save and restore before every step, as a stateless transport would.
            clients[u] = MaskingClient.from_state(
                clients[u].export_state(), identity=identities.get(u), roster=roster
            )
            phases_seen.add(clients[u].phase)
            out = clients[u].receive(message)
            if clients[u].phase.name == "AWAIT_INPUT":
                clients[u] = MaskingClient.from_state(
                    clients[u].export_state(), identity=identities.get(u), roster=roster
                )
                out += clients[u].submit_input(inputs[u])
            replies += out
        for reply in replies:
            server.receive(reply)
        outbox = server.close_phase()
    assert server.result.vector.tolist() == [sum(range(5))] * 16
    assert server.result.survivors == tuple(range(5))
    table = ACTIVE_CLIENT_TRANSITIONS if active else CLIENT_TRANSITIONS
    live = {p for p in table if p not in (ClientPhase.ABORTED, ClientPhase.DONE)}
    assert phases_seen == live - {ClientPhase.AWAIT_INPUT}
    assert all(c.phase is ClientPhase.DONE for c in clients.values())


def test_client_from_state_rejects_malformed_state() -> None:
    from protocols.masking import MaskingClient
    from secagg.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        MaskingClient.from_state(b"{not json")
    with pytest.raises(LocalProtocolError):
        MaskingClient.from_state(b'{"version": 99}')
