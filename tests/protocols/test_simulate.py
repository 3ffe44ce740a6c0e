"""Tests of the in-memory round driver ``protocols.simulate.Simulator``.

Rounds run the default, active protocol (the simulator plays the trusted setup) unless a test
says otherwise; the semi-honest one skips the consistency round 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.graph import (
    NeighbourGraph,
    ThreatModel,
    complete_graph,
    harary_graph,
    secagg_threshold,
)
from protocols.identity import trusted_setup
from protocols.masking import ClientPhase, MaskingParams
from protocols.messages import (
    SERVER_ID,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    ForwardedShares,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    Message,
    RoundSetup,
    UnmaskRequest,
    UnmaskResponse,
)
from protocols.simulate import ROUND_NAMES, SimulationReport, Simulator
from secagg.encoding import ring_dtype
from secagg.errors import InsufficientSurvivorsError, ParameterError, RemoteProtocolError

SESSION = bytes(range(16))
ROUND_ID = 3
LENGTH = 6


def _round(
    n: int,
    *,
    modulus_bits: int = 20,
    seed: int = 0,
    threshold: int | None = None,
    graph: NeighbourGraph | None = None,
    threat_model: ThreatModel = "active",
) -> tuple[MaskingParams, dict[int, Any]]:
    graph = graph if graph is not None else complete_graph(range(n))
    params = MaskingParams(
        session_id=SESSION,
        round_id=ROUND_ID,
        graph=graph,
        threshold=threshold or secagg_threshold(n),
        vector_length=LENGTH,
        modulus_bits=modulus_bits,
        threat_model=threat_model,
    )
    rng = np.random.default_rng(seed)
    dtype = ring_dtype(modulus_bits)
    inputs = {
        u: rng.integers(0, 2**modulus_bits - 1, size=LENGTH, dtype=np.uint64, endpoint=True).astype(
            dtype
        )
        for u in graph.nodes
    }
    return params, inputs


def _ring_sum(inputs: dict[int, Any], ids: Sequence[int], modulus_bits: int) -> list[int]:
    return [sum(int(inputs[u][i]) for u in ids) % 2**modulus_bits for i in range(LENGTH)]


def _assert_sum(report: SimulationReport, inputs: dict[int, Any], modulus_bits: int) -> None:
    assert report.error is None
    assert report.result is not None
    expected = _ring_sum(inputs, report.result.survivors, modulus_bits)
    assert [int(v) for v in report.result.vector] == expected


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def test_simulator_report_fields_without_dropouts() -> None:
    n = 6
    params, inputs = _round(n)
    report = Simulator(params, inputs).run()
    _assert_sum(report, inputs, 20)
    assert report.result is not None
    assert report.result.survivors == tuple(range(n))
    assert report.result.dropped == ()
    assert report.result.vector.dtype == ring_dtype(20)
    assert set(report.server_seconds) == set(ROUND_NAMES)
    assert all(s >= 0.0 for s in report.server_seconds.values())
    assert set(report.client_seconds) == set(range(n))
    for seconds in report.client_seconds.values():
        assert set(seconds) == set(ROUND_NAMES)
    assert set(report.bytes_sent) == set(range(n))
    assert all(b > 0 for b in report.bytes_sent.values())
    assert all(b > 0 for b in report.bytes_received.values())
    assert report.server_bytes_sent == sum(report.bytes_received.values())
    assert report.server_bytes_received == sum(report.bytes_sent.values())
    assert report.client_errors == {}
    assert report.server_rejections == []
    assert report.dropped_at == {}
    assert report.wall_seconds > 0.0


def test_simulator_masked_upload_costs_packed_bytes() -> None:
    # A client's bytes are its five messages; only the MaskedInput depends on k, by the
    # packed width: 20 bits -> 3 bytes per value, 33 bits -> 5 bytes per value.
    sent = {}
    for bits in (20, 33):
        params, inputs = _round(4, modulus_bits=bits)
        sent[bits] = Simulator(params, inputs).run().bytes_sent[0]
    assert sent[33] - sent[20] == LENGTH * (5 - 3)


def test_simulator_dropped_at_matches_schedule() -> None:
    n = 10
    params, inputs = _round(n)
    schedule = {1: 0, 2: 1, 3: 2, 4: 3}
    report = Simulator(params, inputs, dropouts=schedule).run()
    _assert_sum(report, inputs, 20)
    assert report.dropped_at == schedule
    assert report.result is not None
    assert report.result.dropped == (1, 2, 3)
    assert report.result.survivors == (0, 4, 5, 6, 7, 8, 9)
    assert report.bytes_sent.get(1, 0) == 0
    assert report.bytes_received.get(1, 0) == 0
    assert set(report.client_seconds[2]) == {"advertise_keys"}
    assert set(report.client_seconds[4]) == set(ROUND_NAMES[:3])
    # Clients that uploaded sent more than those that did not.
    assert report.bytes_sent[4] > report.bytes_sent[3] > report.bytes_sent[2] > 0


@pytest.mark.parametrize("modulus_bits", [8, 20, 32, 33, 64])
def test_simulator_through_wire_gives_same_result(modulus_bits: int) -> None:
    n = 7
    params, inputs = _round(n, modulus_bits=modulus_bits)
    schedule = {0: 1, 5: 2, 6: 3}
    direct = Simulator(params, inputs, dropouts=schedule).run()
    wired = Simulator(params, inputs, dropouts=schedule, through_wire=True).run()
    _assert_sum(direct, inputs, modulus_bits)
    _assert_sum(wired, inputs, modulus_bits)
    assert direct.result is not None and wired.result is not None
    assert np.array_equal(direct.result.vector, wired.result.vector)
    assert wired.result.survivors == direct.result.survivors
    assert wired.dropped_at == direct.dropped_at == schedule
    assert dict(wired.bytes_sent) == dict(direct.bytes_sent)
    assert dict(wired.bytes_received) == dict(direct.bytes_received)


@settings(max_examples=25, deadline=None)
@given(
    schedule=st.dictionaries(st.integers(0, 7), st.integers(0, len(ROUND_NAMES) - 1), max_size=5),
    sparse=st.booleans(),
)
def test_simulator_result_is_survivors_sum_or_clean_abort(
    schedule: dict[int, int], sparse: bool
) -> None:
    n = 8
    # An active SecAgg+ round runs on the roster's public graph.
    roster, identities = trusted_setup(range(n))
    seed = roster.order_seed(SESSION, ROUND_ID)
    graph = harary_graph(range(n), 4, seed=seed) if sparse else complete_graph(range(n))
    threshold = 3 if sparse else secagg_threshold(n)
    params, inputs = _round(n, graph=graph, threshold=threshold, seed=len(schedule))
    simulator = Simulator(params, inputs, dropouts=schedule, roster=roster, identities=identities)
    report = simulator.run()
    if report.error is not None:
        assert isinstance(report.error, InsufficientSurvivorsError)
        assert report.result is None
        return
    _assert_sum(report, inputs, 20)
    assert report.result is not None
    survivors = set(report.result.survivors)
    assert not survivors & {u for u, r in schedule.items() if r < 3}
    if not sparse:
        # On the complete graph nobody is pruned: exactly the clients that uploaded count.
        assert survivors == {u for u in range(n) if schedule.get(u, len(ROUND_NAMES)) >= 3}
    for u in report.result.dropped:
        assert report.dropped_at[u] <= 2
    for u, r in schedule.items():
        assert report.dropped_at.get(u, r) <= r


def test_simulator_too_many_dropouts_abort_and_notify_clients() -> None:
    n = 6
    params, inputs = _round(n)
    report = Simulator(params, inputs, dropouts={0: 1, 1: 1, 2: 1}).run()
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert report.result is None
    assert set(report.dropped_at) >= {0, 1, 2}


def test_simulator_abort_reaches_remaining_clients() -> None:
    n = 6
    params, inputs = _round(n)
    simulator = Simulator(params, inputs, dropouts={0: 2, 1: 2, 2: 2})
    report = simulator.run()
    assert isinstance(report.error, InsufficientSurvivorsError)
    for u in (3, 4, 5):
        assert simulator.clients[u].phase is ClientPhase.ABORTED


# --------------------------------------------------------------------------------------------
# on_step and interceptors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("threat_model", "rounds"), [("active", 5), ("semi-honest", 4)])
def test_simulator_calls_on_step_after_each_client_step(
    threat_model: ThreatModel, rounds: int
) -> None:
    n = 5
    params, inputs = _round(n, threat_model=threat_model)
    calls: list[int] = []
    report = Simulator(params, inputs, on_step=lambda: calls.append(1)).run()
    assert report.error is None
    # One delivery per client in each round (the semi-honest round has no round 3).
    assert len(calls) == rounds * n


_EVERY_MESSAGE: set[tuple[int, type]] = {
    (0, RoundSetup),
    (0, KeyAdvertisement),
    (1, KeyRoster),
    (1, EncryptedShares),
    (2, ForwardedShares),
    (2, MaskedInput),
    (3, ConsistencyRequest),
    (3, ConsistencySignature),
    (4, UnmaskRequest),
    (4, UnmaskResponse),
}


@pytest.mark.parametrize(
    ("threat_model", "rounds"), [("active", (0, 1, 2, 3, 4)), ("semi-honest", (0, 1, 2, 4))]
)
def test_simulator_interceptor_sees_every_message_with_its_round(
    threat_model: ThreatModel, rounds: tuple[int, ...]
) -> None:
    n = 4
    params, inputs = _round(n, threat_model=threat_model)
    seen: set[tuple[int, type]] = set()
    counts: dict[int, int] = {}

    def spy(round_index: int, message: Message) -> Message:
        seen.add((round_index, type(message)))
        counts[round_index] = counts.get(round_index, 0) + 1
        return message

    report = Simulator(params, inputs, interceptor=spy).run()
    _assert_sum(report, inputs, 20)
    assert seen == {(r, kind) for r, kind in _EVERY_MESSAGE if r in rounds}
    assert counts == {r: 2 * n for r in rounds}


def test_simulator_interceptor_dropping_all_messages_to_a_client_drops_it() -> None:
    n = 6
    params, inputs = _round(n)
    victim = 3

    def cut_off(_round: int, message: Message) -> Message | None:
        return None if message.recipient == victim else message

    simulator = Simulator(params, inputs, interceptor=cut_off)
    report = simulator.run()
    _assert_sum(report, inputs, 20)
    assert report.dropped_at == {victim: 0}
    assert report.result is not None
    assert report.result.dropped == (victim,)
    assert victim not in report.result.survivors
    assert report.bytes_received.get(victim, 0) == 0
    assert report.bytes_sent.get(victim, 0) == 0
    assert simulator.clients[victim].phase is ClientPhase.AWAIT_SETUP


def test_simulator_interceptor_returning_empty_sequence_drops() -> None:
    n = 6
    params, inputs = _round(n)

    def swallow_uploads(_round: int, message: Message) -> Message | list[Message]:
        if isinstance(message, MaskedInput) and message.sender == 2:
            return []
        return message

    report = Simulator(params, inputs, interceptor=swallow_uploads).run()
    _assert_sum(report, inputs, 20)
    assert report.dropped_at == {2: 2}
    assert report.result is not None
    assert 2 in report.result.dropped


def test_simulator_interceptor_list_injects_messages_to_server() -> None:
    n = 5
    params, inputs = _round(n)

    def duplicate_keys(_round: int, message: Message) -> Message | list[Message]:
        if isinstance(message, KeyAdvertisement):
            return [message, message]
        return message

    report = Simulator(params, inputs, interceptor=duplicate_keys).run()
    _assert_sum(report, inputs, 20)
    assert report.result is not None
    assert report.result.survivors == tuple(range(n))
    assert len(report.server_rejections) == n
    assert all(isinstance(e, RemoteProtocolError) for e in report.server_rejections)
    baseline = Simulator(params, inputs).run()
    advertisement = report.bytes_sent[0] - baseline.bytes_sent[0]
    assert advertisement > 0  # the injected copy was transmitted and counted


def test_simulator_interceptor_tuple_injects_messages_to_client() -> None:
    n = 6
    params, inputs = _round(n)
    target = 2

    def replay_setup(_round: int, message: Message) -> Message | tuple[Message, ...]:
        if isinstance(message, RoundSetup) and message.recipient == target:
            return (message, message)
        return message

    simulator = Simulator(params, inputs, interceptor=replay_setup)
    report = simulator.run()
    _assert_sum(report, inputs, 20)
    # The second setup is illegal in AWAIT_ROSTER: the client aborts and falls silent.
    assert isinstance(report.client_errors[target], RemoteProtocolError)
    assert simulator.clients[target].phase is ClientPhase.ABORTED
    assert report.dropped_at == {target: 1}


def test_simulator_interceptor_can_redirect_to_unknown_party() -> None:
    n = 5
    params, inputs = _round(n)

    def misroute(_round: int, message: Message) -> Message:
        if isinstance(message, RoundSetup) and message.recipient == 4:
            return RoundSetup(
                session_id=message.session_id,
                round_id=message.round_id,
                sender=SERVER_ID,
                recipient=77,
                threshold=message.threshold,
                vector_length=message.vector_length,
                modulus_bits=message.modulus_bits,
                neighbours=message.neighbours,
            )
        return message

    report = Simulator(params, inputs, interceptor=misroute).run()
    _assert_sum(report, inputs, 20)
    assert report.dropped_at == {4: 0}


# --------------------------------------------------------------------------------------------
# Construction errors
# --------------------------------------------------------------------------------------------


def test_simulator_rejects_missing_input() -> None:
    params, inputs = _round(5)
    del inputs[3]
    with pytest.raises(ParameterError, match=r"\[3\]"):
        Simulator(params, inputs)


@pytest.mark.parametrize("entry", [{9: 1}, {0: 5}, {0: -1}, {1: 17}], ids=repr)
def test_simulator_rejects_bad_dropout_entry(entry: dict[int, int]) -> None:
    params, inputs = _round(5)
    with pytest.raises(ParameterError, match=r"not in this round|rounds are 0 to 4"):
        Simulator(params, inputs, dropouts=entry)


@pytest.mark.parametrize("threat_model", ["active", "semi-honest"])
def test_simulator_accepts_every_round_of_the_schedule(threat_model: ThreatModel) -> None:
    """Dropping at 3 (consistency) or 4 (unmasking) keeps an uploaded input in the sum."""
    params, inputs = _round(6, threat_model=threat_model)
    report = Simulator(params, inputs, dropouts={0: 3, 1: 4}).run()
    _assert_sum(report, inputs, 20)
    assert report.result is not None
    assert report.result.survivors == tuple(range(6))
    # Semi-honest, silent from round 3 on is silent at the unmasking.
    assert report.dropped_at == ({0: 3, 1: 4} if threat_model == "active" else {0: 4, 1: 4})
