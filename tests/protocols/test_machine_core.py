"""The shared machine core: any failure poisons a machine, and only secagg.errors escape."""

from __future__ import annotations

import gc
import types
from dataclasses import replace

import numpy as np
import pytest

from protocols import masking
from protocols._machine import ClosePhase, Machine, SubmitInput, check_addressed, check_session
from protocols._transitions import ClientPhase, ServerPhase
from protocols.masking import MaskingClient, MaskingServer
from protocols.masking.state import MaskingClientState
from protocols.messages import (
    SERVER_ID,
    Abort,
    KeyRoster,
    Message,
    UnmaskRequest,
)
from protocols.simulate import Simulator
from secagg.errors import (
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    ServerMisbehaviourError,
)
from secagg.hazmat import shamir


def test_client_fed_a_non_message_is_poisoned_with_a_protocol_error(
    harness, make_params, check_aborted
):
    h = harness(make_params(4)).start()
    client = h.clients[0]
    with pytest.raises(RemoteProtocolError, match="expected a protocol message"):
        client.receive("not a message")  # type: ignore[arg-type]
    check_aborted(client)


def test_client_unexpected_exception_poisons_and_names_only_its_type(
    harness, make_params, check_aborted, monkeypatch
):
    h = harness(make_params(4)).start().advance()  # clients now await their rosters

    def broken_split(*args: object) -> object:
        raise ValueError("secret 0x1234 leaked into a message")

    monkeypatch.setattr(shamir, "split", broken_split)
    client = h.clients[0]
    with pytest.raises(RemoteProtocolError) as caught:
        h.deliver(0)
    assert "ValueError" in str(caught.value)
    assert "0x1234" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    _assert_detached(client._error)
    check_aborted(client)


def _assert_detached(error: BaseException | None) -> None:
    """A kept error reaches no frame (whose locals could hold shares, keys or inputs)."""
    assert error is not None
    assert error.__traceback__ is None
    assert error.__context__ is None and error.__cause__ is None


def _with_low_order_share_key(roster: KeyRoster) -> KeyRoster:
    """The roster with peer 1's share key replaced by the all-zero (low-order) point: the
    client's key agreement with it fails deep inside the crypto layer."""
    entries = tuple(
        replace(e, share_public_key=bytes(32)) if e.client_id == 1 else e for e in roster.entries
    )
    return replace(roster, entries=entries)


def test_client_poisoned_by_a_protocol_error_keeps_no_frames(harness, make_params):
    h = harness(make_params(4)).start().advance()  # clients await their rosters
    client = h.clients[0]
    roster = h.pending.pop(0)
    assert isinstance(roster, KeyRoster)
    # The client turns the crypto layer's InvalidCiphertextError into evidence against the
    # server: that error is the one a kept copy must not chain to.
    with pytest.raises(ServerMisbehaviourError) as caught:
        client.receive(_with_low_order_share_key(roster))
    assert caught.value.__context__ is None
    _assert_detached(client._error)


def test_simulator_keeps_detached_client_errors(make_params, make_inputs):
    params = make_params(5)
    inputs = make_inputs(params)

    def tamper(round_index: int, message: Message) -> Message:
        if isinstance(message, KeyRoster) and message.recipient == 0:
            return _with_low_order_share_key(message)
        return message

    report = Simulator(params, inputs, interceptor=tamper).run()
    assert 0 in report.client_errors
    for error in (*report.client_errors.values(), *report.server_rejections):
        _assert_detached(error)


def test_server_discards_a_bad_message_but_stays_live(harness, make_params):
    h = harness(make_params(4)).start()
    with pytest.raises(RemoteProtocolError):
        h.server.receive(object())  # type: ignore[arg-type]
    assert h.server.phase is ServerPhase.COLLECT_KEYS
    h.advance().advance().advance().advance()
    assert h.server.phase is ServerPhase.DONE


def test_server_unexpected_exception_poisons_the_round(harness, make_params, monkeypatch):
    h = harness(make_params(4)).start()
    replies = [r for u in range(4) for r in h.clients[u].receive(h.pending.pop(u))]

    def broken(*args: object) -> None:
        raise KeyError("internal")

    monkeypatch.setattr(MaskingServer, "_on_keys", broken)
    with pytest.raises(LocalProtocolError, match="KeyError"):
        h.server.receive(replies[0])
    assert h.server.phase is ServerPhase.ABORTED
    with pytest.raises(RemoteProtocolError):
        h.server.receive(replies[1])


def test_server_close_phase_when_done_keeps_the_result(harness, make_params):
    h = harness(make_params(4)).start().advance().advance().advance().advance()
    assert h.server.phase is ServerPhase.DONE
    with pytest.raises(LocalProtocolError, match=r"close_phase\(\) is not legal"):
        h.server.close_phase()
    assert h.server.phase is ServerPhase.DONE
    assert h.server.result.survivors == (0, 1, 2, 3)


def test_client_submit_input_too_early_names_when_it_is_legal(harness, make_params):
    client = harness(make_params(4)).start().clients[0]
    with pytest.raises(LocalProtocolError, match="legal after the shares arrive"):
        client.submit_input(np.zeros(8, dtype=np.uint32))
    assert client.phase is ClientPhase.ABORTED


TOY_TABLE = {ClientPhase.AWAIT_SETUP: {SubmitInput: ClientPhase.DONE}}


def test_advance_raises_remote_for_messages_and_local_for_caller_steps() -> None:
    class Toy(Machine[ClientPhase]):
        TRANSITIONS = TOY_TABLE
        ABORTED = ClientPhase.ABORTED

        def __init__(self) -> None:
            self._phase = ClientPhase.AWAIT_SETUP

    toy = Toy()
    assert toy.advance(SubmitInput, remote=False) is ClientPhase.DONE
    with pytest.raises(RemoteProtocolError, match="unexpected Abort"):
        toy.advance(Abort, remote=True)
    with pytest.raises(LocalProtocolError, match=r"close_phase\(\) is not legal"):
        toy.advance(ClosePhase, remote=False)


def test_check_addressed_rejects_other_rounds_and_senders() -> None:
    session = bytes(16)
    message = Abort(session_id=session, round_id=3, sender=SERVER_ID, recipient=5, reason="x")
    assert check_addressed(message, session_id=session, round_id=3, recipient=5) is message
    for kwargs in (
        {"session_id": bytes(range(16)), "round_id": 3, "recipient": 5},
        {"session_id": session, "round_id": 4, "recipient": 5},
        {"session_id": session, "round_id": 3, "recipient": 6},
        {"session_id": session, "round_id": 3, "recipient": 5, "sender": 7},
    ):
        with pytest.raises(RemoteProtocolError):
            check_addressed(message, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("session_id", "round_id"),
    [(b"short", 0), (bytes(16), -1), (bytes(16), 2**64), (bytes(16), True), ("x" * 16, 0)],
)
def test_check_session_rejects_bad_values(session_id: object, round_id: object) -> None:
    with pytest.raises(ParameterError):
        check_session(session_id, round_id)  # type: ignore[arg-type]


def test_client_state_round_trips_mid_round(harness, make_params):
    h = harness(make_params(4)).start().advance().advance()
    client = h.clients[1]
    state = MaskingClientState.from_json(client.export_state())
    assert state.phase == client.phase.value
    again = MaskingClient.from_state(client.export_state())
    assert again.export_state() == client.export_state()


@pytest.mark.parametrize(
    "field_value",
    [
        ("threshold", "3"),
        ("neighbours", [1, "2"]),
        ("mask_key", "zz"),
        ("held_shares", [[1, 2]]),
        ("roster", [[1, "00"]]),
        ("roster", [[1, "00" * 32, "11" * 32]]),  # a version 1 entry: no commitment
        ("threat_model", "malicious"),
        ("corrupt_fraction", "0.1"),
        ("rejected", [1, "2"]),
        ("survivors", [-1]),
        ("phase", "no-such-phase"),
        ("version", 1),  # version 1 states (before the seed commitments) are refused
        ("version", 3),
        ("threshold", 1),
        ("modulus_bits", 999),
        ("vector_length", -5),
        ("self_mask_seed", "00"),
        ("mask_key", "00" * 16),
        ("neighbours", [-1]),
        ("held_shares", [[1, 2**300, 3]]),
        ("session_id", "00"),
    ],
    ids=lambda fv: str(fv[0]),
)
def test_client_state_rejects_wrongly_typed_fields(harness, make_params, field_value):
    import json

    h = harness(make_params(4)).start().advance()
    raw = json.loads(h.clients[2].export_state())
    name, value = field_value
    raw[name] = value
    with pytest.raises(LocalProtocolError):
        MaskingClient.from_state(json.dumps(raw).encode("ascii"))


def test_masking_package_keeps_its_public_names() -> None:
    for name in masking.__all__:
        assert hasattr(masking, name)


def _reachable(*roots: object) -> list[object]:
    """Every object reachable from ``roots`` through references, short of modules and types."""
    seen: set[int] = set()
    found: list[object] = []
    stack = list(roots)
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(item))
        found.append(item)
        stack.extend(gc.get_referents(item))
    return found


def test_failed_client_keeps_no_share_seed_key_or_input(make_params, make_inputs):
    """A client refusing a malicious unmask request: nothing reachable from it, or from the
    error the simulator reports, holds one of its shares, keys, its seed or its input."""
    params = make_params(5)
    inputs = make_inputs(params)
    held: dict[str, object] = {}

    def both_secrets(round_index: int, message: Message) -> Message:
        if isinstance(message, UnmaskRequest) and message.recipient == 0:
            victim = simulator.clients[0]
            held["shares"] = {v for pair in victim._held_shares.values() for v in pair}
            peer = next(u for u in message.survivors if u != 0)
            return replace(message, dropped=(*message.dropped, peer))
        return message

    simulator = Simulator(params, inputs, interceptor=both_secrets)
    report = simulator.run()
    client = simulator.clients[0]
    assert client.phase is ClientPhase.ABORTED and 0 in report.client_errors
    secrets_ = held["shares"]
    assert isinstance(secrets_, set) and secrets_
    for item in _reachable(client, report.client_errors):
        if isinstance(item, int) and not isinstance(item, bool):
            assert item not in secrets_
        if isinstance(item, np.ndarray):
            assert not np.shares_memory(item, inputs[0])
            assert not (item.shape == inputs[0].shape and np.array_equal(item, inputs[0]))
        assert not isinstance(item, types.TracebackType | types.FrameType)
