"""The masking server as a state machine: thresholds, aborts, and robustness to bad clients.

A bad message from one client raises ``RemoteProtocolError`` and leaves the round's state as it
was, so the others still finish; too few survivors at any close aborts the round with
``InsufficientSurvivorsError`` and reveals nothing (DESIGN.md section 3, invariants 1, 4 and 7).

These tests run the semi-honest protocol, which has no consistency round: its rounds are 0, 1,
2 and 4 (the unmasking keeps its number, :data:`protocols.simulate.ROUND_NAMES`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocols._transitions import ClientPhase, ServerPhase
from protocols.masking import MaskingServer
from protocols.messages import (
    SERVER_ID,
    Abort,
    EncryptedShares,
    KeyAdvertisement,
    MaskedInput,
    Message,
    UnmaskResponse,
)
from protocols.simulate import Simulator
from secagg.errors import (
    InsufficientSurvivorsError,
    LocalProtocolError,
    RemoteProtocolError,
)

TARGET = 1
CLIENT_MESSAGE = {0: KeyAdvertisement, 1: EncryptedShares, 2: MaskedInput, 4: UnmaskResponse}
#: The rounds a semi-honest client speaks in.
ROUNDS = tuple(CLIENT_MESSAGE)
UNMASKING = 4
#: The server's phases in the semi-honest order (no COLLECT_CONSISTENCY).
SEMI_HONEST_PHASES = (
    ServerPhase.IDLE,
    ServerPhase.COLLECT_KEYS,
    ServerPhase.COLLECT_SHARES,
    ServerPhase.COLLECT_INPUTS,
    ServerPhase.COLLECT_UNMASK,
)


def _run(params, inputs, rewrite, **kwargs):
    """Simulate with ``rewrite(round_index, message)`` applied to what TARGET sends the server."""

    def interceptor(round_index: int, message: Message):
        if message.recipient == SERVER_ID and message.sender == TARGET:
            return rewrite(round_index, message)
        return message

    return Simulator(params, inputs, interceptor=interceptor, **kwargs).run()


def _assert_only_remote_rejections(report, count: int) -> None:
    assert len(report.server_rejections) == count
    assert all(type(e) is RemoteProtocolError for e in report.server_rejections)


# --------------------------------------------------------------------------------------------
# Thresholds and aborts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("round_index", range(4))
def test_server_aborts_below_threshold_in_every_round(
    make_params, harness, check_aborted, round_index
):
    params = make_params(5, threshold=3)
    h = harness(params).start()
    for _ in range(round_index):
        h.advance()
    server = h.server
    droppers = {2, 3, 4}
    with pytest.raises(InsufficientSurvivorsError):
        h.advance(silent=droppers)
    assert server.phase is ServerPhase.ABORTED
    assert server.abort_reason
    with pytest.raises(LocalProtocolError):
        _ = server.result
    assert server._sum.size == 0
    assert server._seed_shares == {} and server._key_shares == {}
    notices = server.abort_messages()
    assert notices
    assert all(isinstance(m, Abort) for m in notices)
    assert {0, 1} <= {m.recipient for m in notices} <= set(params.graph.nodes)
    for notice in notices:
        assert (notice.session_id, notice.round_id) == (params.session_id, params.round_id)
        assert notice.sender == SERVER_ID and notice.reason == server.abort_reason
        client = h.clients[notice.recipient]
        assert client.receive(notice) == []
        check_aborted(client)
    with pytest.raises(LocalProtocolError):
        server.close_phase()
    with pytest.raises(RemoteProtocolError):
        server.receive(h.sent[-1])


def test_server_abort_after_pruning_cascade_notifies_clients_that_answered(make_params, harness):
    # A ring (Harary degree 2) with t = 3: one silent client leaves its two neighbours short of
    # t, and the pruning cascades around the ring until nobody is left.
    params = make_params(6, graph="harary", degree=2, threshold=3)
    h = harness(params).start()
    with pytest.raises(InsufficientSurvivorsError):
        h.advance(silent={0})
    answered = {1, 2, 3, 4, 5}
    assert {m.recipient for m in h.server.abort_messages()} == answered


@pytest.mark.parametrize("round_index", ROUNDS)
def test_server_simulated_round_below_threshold_has_no_result(
    make_params, make_inputs, round_index
):
    params = make_params(5, threshold=3)
    dropouts = dict.fromkeys((0, 2, 4), round_index)
    report = Simulator(params, make_inputs(params), dropouts=dropouts).run()
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert report.result is None
    assert report.client_errors == {}


@pytest.mark.parametrize("phase", SEMI_HONEST_PHASES, ids=lambda p: p.name)
def test_server_result_before_done_is_refused(make_params, harness, phase):
    h = harness(make_params(4))
    steps = SEMI_HONEST_PHASES.index(phase)
    for _ in range(steps):
        h.advance()
    assert h.server.phase is phase
    with pytest.raises(LocalProtocolError):
        _ = h.server.result


@pytest.mark.parametrize("phase", [ServerPhase.IDLE, ServerPhase.DONE], ids=lambda p: p.name)
def test_server_close_phase_outside_a_round_is_refused(make_params, harness, phase):
    h = harness(make_params(4))
    if phase is ServerPhase.DONE:
        h.advance_to(ClientPhase.DONE)
    assert h.server.phase is phase
    with pytest.raises(LocalProtocolError):
        h.server.close_phase()
    assert h.server.phase is phase


def test_server_start_twice_is_refused(make_params):
    server = MaskingServer(make_params(4))
    assert len(server.start()) == 4
    with pytest.raises(LocalProtocolError):
        server.start()
    assert server.phase is ServerPhase.COLLECT_KEYS


def test_server_rejects_messages_while_idle(make_params, harness):
    params = make_params(4)
    h = harness(params).advance_to(ClientPhase.AWAIT_ROSTER)
    idle = MaskingServer(params)
    with pytest.raises(RemoteProtocolError):
        idle.receive(h.sent[0])
    assert idle.phase is ServerPhase.IDLE


# --------------------------------------------------------------------------------------------
# Replays, duplicates and foreign messages leave the round untouched
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("round_index", ROUNDS)
def test_server_rejects_duplicate_client_message(make_params, make_inputs, ring_sum, round_index):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)
    report = _run(params, inputs, lambda r, m: [m, m] if r == round_index else m)
    _assert_only_remote_rejections(report, 1)
    assert report.result is not None
    assert report.result.survivors == params.graph.nodes
    assert np.array_equal(report.result.vector, ring_sum(inputs, params.graph.nodes, 16))


def test_server_rejects_second_masked_input_with_other_values(make_params, make_inputs, ring_sum):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)

    def rewrite(round_index: int, message: Message):
        if isinstance(message, MaskedInput):
            return [message, dataclasses.replace(message, vector=np.zeros_like(message.vector))]
        return message

    report = _run(params, inputs, rewrite)
    _assert_only_remote_rejections(report, 1)
    assert np.array_equal(report.result.vector, ring_sum(inputs, params.graph.nodes, 16))


@pytest.mark.parametrize("round_index", ROUNDS)
@pytest.mark.parametrize("field", ["round_id", "session_id"])
def test_server_rejects_message_from_another_round_or_session(
    make_params, make_inputs, ring_sum, field, round_index
):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)
    foreign = {"round_id": params.round_id + 1, "session_id": bytes(16)}[field]

    def rewrite(r: int, message: Message):
        if r == round_index:
            return [dataclasses.replace(message, **{field: foreign}), message]
        return message

    report = _run(params, inputs, rewrite)
    _assert_only_remote_rejections(report, 1)
    assert report.result.survivors == params.graph.nodes
    assert np.array_equal(report.result.vector, ring_sum(inputs, params.graph.nodes, 16))


@pytest.mark.parametrize("replay_round", ROUNDS[1:])
def test_server_rejects_replay_of_an_earlier_round_message(
    make_params, make_inputs, ring_sum, replay_round
):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)
    earlier: list[Message] = []

    def rewrite(r: int, message: Message):
        if r == 0:
            earlier.append(message)
        if r == replay_round:
            return [earlier[0], message]
        return message

    report = _run(params, inputs, rewrite)
    _assert_only_remote_rejections(report, 1)
    assert np.array_equal(report.result.vector, ring_sum(inputs, params.graph.nodes, 16))


def test_server_rejects_replay_from_a_previous_round_instance(make_params, harness, ring_sum):
    first = harness(make_params(4, round_id=1)).advance_to(ClientPhase.DONE)
    params = dataclasses.replace(first.params, round_id=2)
    second = harness(params, first.inputs).start()
    for kind in CLIENT_MESSAGE.values():
        old = next(m for m in first.sent if isinstance(m, kind) and m.sender == TARGET)
        with pytest.raises(RemoteProtocolError):
            second.server.receive(old)
        second.advance()
    assert np.array_equal(
        second.server.result.vector, ring_sum(first.inputs, params.graph.nodes, 16)
    )


def test_server_rejects_late_messages_after_done(make_params, harness):
    h = harness(make_params(4)).advance_to(ClientPhase.DONE)
    server = h.server
    before = server.result.vector.copy()
    assert {type(m) for m in h.sent} == set(CLIENT_MESSAGE.values())
    for message in h.sent:
        with pytest.raises(RemoteProtocolError):
            server.receive(message)
    assert server.phase is ServerPhase.DONE
    assert np.array_equal(server.result.vector, before)


def test_server_rejects_message_not_addressed_to_it(make_params, harness):
    h = harness(make_params(4)).start()
    with pytest.raises(RemoteProtocolError):
        h.server.receive(h.pending[0])
    assert h.server.phase is ServerPhase.COLLECT_KEYS


def test_server_rejects_message_from_a_dropped_client(make_params, harness, ring_sum):
    params = make_params(5, threshold=3)
    h2 = harness(params).advance_to(ClientPhase.AWAIT_ROSTER)
    h2.advance(silent={3})
    assert h2.server.dropped_at == {3: 1}
    forged = MaskedInput(
        session_id=params.session_id,
        round_id=params.round_id,
        sender=3,
        recipient=SERVER_ID,
        modulus_bits=16,
        vector=np.zeros(params.vector_length, np.uint32),
    )
    with pytest.raises(RemoteProtocolError):
        h2.server.receive(forged)
    h2.advance().advance()
    result = h2.server.result
    assert result.survivors == (0, 1, 2, 4)
    assert np.array_equal(result.vector, ring_sum(h2.inputs, (0, 1, 2, 4), 16))


# --------------------------------------------------------------------------------------------
# Bad client messages: the sender is dropped, the others finish exactly
# --------------------------------------------------------------------------------------------


def _smuggled(message: MaskedInput, **changes: object) -> MaskedInput:
    """A copy of ``message`` with ``changes`` set past the constructor's own checks.

    The server must not rely on the message class (or the wire codec) having validated a
    vector: a transport may hand it any object.
    """
    copy = dataclasses.replace(message)
    for name, value in changes.items():
        object.__setattr__(copy, name, value)
    return copy


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda m: _smuggled(m, vector=m.vector[:-1].copy()),
        lambda m: _smuggled(m, vector=np.append(m.vector, np.uint32(0))),
        lambda m: _smuggled(m, modulus_bits=17),
        lambda m: _smuggled(m, modulus_bits=15),
        lambda m: _smuggled(m, vector=m.vector.astype(np.uint64)),
        lambda m: _smuggled(m, vector=m.vector | np.uint32(1 << 16)),
        lambda m: _smuggled(m, vector=np.full_like(m.vector, 2**32 - 1)),
    ],
    ids=["short", "long", "wider-ring", "narrower-ring", "uint64", "bit-16-set", "all-ones"],
)
def test_server_rejects_malformed_masked_input_and_finishes_without_it(
    make_params, make_inputs, ring_sum, corrupt
):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)
    report = _run(params, inputs, lambda r, m: corrupt(m) if isinstance(m, MaskedInput) else m)
    _assert_only_remote_rejections(report, 1)
    others = tuple(u for u in params.graph.nodes if u != TARGET)
    assert report.result.survivors == others
    assert report.result.dropped == (TARGET,)
    assert report.dropped_at == {TARGET: 2}
    assert np.array_equal(report.result.vector, ring_sum(inputs, others, 16))


def test_server_rejects_key_advertisement_reusing_one_key(make_params, make_inputs, ring_sum):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)

    def rewrite(r: int, message: Message):
        if isinstance(message, KeyAdvertisement):
            return dataclasses.replace(message, share_public_key=message.mask_public_key)
        return message

    report = _run(params, inputs, rewrite)
    _assert_only_remote_rejections(report, 1)
    assert report.dropped_at == {TARGET: 0}
    others = tuple(u for u in params.graph.nodes if u != TARGET)
    assert np.array_equal(report.result.vector, ring_sum(inputs, others, 16))


@pytest.mark.parametrize("field", ["bundles", "digests"])
def test_server_rejects_shares_missing_a_roster_member(make_params, make_inputs, ring_sum, field):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)

    def rewrite(r: int, message: Message):
        if isinstance(message, EncryptedShares):
            # One bundle per peer and one share digest per roster member: one of them missing.
            return dataclasses.replace(message, **{field: getattr(message, field)[1:]})
        return message

    report = _run(params, inputs, rewrite)
    _assert_only_remote_rejections(report, 1)
    assert report.dropped_at == {TARGET: 1}
    others = tuple(u for u in params.graph.nodes if u != TARGET)
    assert np.array_equal(report.result.vector, ring_sum(inputs, others, 16))


def test_server_rejects_unmask_response_to_a_different_request(make_params, make_inputs, ring_sum):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)

    def rewrite(r: int, message: Message):
        if isinstance(message, UnmaskResponse):
            return dataclasses.replace(message, self_mask_shares=message.self_mask_shares[1:])
        return message

    report = _run(params, inputs, rewrite)
    _assert_only_remote_rejections(report, 1)
    # The input arrived, so the client stays in the sum although its answer was refused.
    assert report.result.survivors == params.graph.nodes
    assert report.dropped_at == {TARGET: UNMASKING}
    assert np.array_equal(report.result.vector, ring_sum(inputs, params.graph.nodes, 16))


@pytest.mark.parametrize("round_index", ROUNDS)
def test_server_drops_client_that_sends_abort(make_params, make_inputs, ring_sum, round_index):
    params = make_params(5, threshold=3)
    inputs = make_inputs(params)

    def rewrite(r: int, message: Message):
        if r == round_index:
            return Abort(
                session_id=message.session_id,
                round_id=message.round_id,
                sender=TARGET,
                recipient=SERVER_ID,
                reason="client gives up",
            )
        return message

    report = _run(params, inputs, rewrite)
    assert report.server_rejections == []
    assert report.dropped_at == {TARGET: round_index}
    in_sum = params.graph.nodes if round_index == UNMASKING else (0, 2, 3, 4)
    assert report.result.survivors == in_sum
    assert np.array_equal(report.result.vector, ring_sum(inputs, in_sum, 16))


# A semi-honest round has no round 3: a client silent from round 3 on is silent at unmasking.
@pytest.mark.parametrize("silent_from", [3, UNMASKING])
def test_server_keeps_clients_dropping_in_unmasking_round_in_the_sum(
    make_params, make_inputs, ring_sum, silent_from
):
    params = make_params(6, threshold=4, vector_length=32)
    inputs = make_inputs(params)
    report = Simulator(params, inputs, dropouts={0: silent_from, 1: silent_from}).run()
    assert report.result is not None
    assert report.result.survivors == params.graph.nodes
    assert report.result.dropped == ()
    assert report.dropped_at == {0: UNMASKING, 1: UNMASKING}
    assert np.array_equal(report.result.vector, ring_sum(inputs, params.graph.nodes, 16))


def test_server_result_names_survivors_and_dropped(make_params, make_inputs, ring_sum):
    params = make_params(8, threshold=4, vector_length=32)
    inputs = make_inputs(params)
    report = Simulator(params, inputs, dropouts={0: 0, 1: 1, 2: 2, 3: UNMASKING}).run()
    result = report.result
    assert result.survivors == (3, 4, 5, 6, 7)
    assert result.dropped == (0, 1, 2)
    assert result.dropped_at == report.dropped_at == {0: 0, 1: 1, 2: 2, 3: UNMASKING}
    assert result.misbehaved == report.misbehaved == {}
    assert result.vector.dtype == np.uint32
    assert np.array_equal(result.vector, ring_sum(inputs, (3, 4, 5, 6, 7), 16))
