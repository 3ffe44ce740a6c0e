"""Tests of the Paillier roles (``protocols.paillier``) and their in-memory driver.

What is checked, following the issue: exact sums (bit for bit after unpacking) for random
inputs, client counts up to the headroom limit and any dropout schedule; the headroom limit is
enforced; the key holder sees only aggregates and decrypts one per round; the server never holds
the secret key; decrypted slots out of range are detected; and every kind of bad input is
rejected with a specific :mod:`secagg.errors` exception while the other clients' contributions
are kept. Keys are 1024-bit (``_generate_keypair_unchecked_size``) for speed, except where a test
needs a real 2048-bit key.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import secrets
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import gmpy2
import numpy as np
import numpy.typing as npt
import phe
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import wire
from protocols._transitions import ClientPhase, ServerPhase
from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    Abort,
    AggregateCiphertext,
    DecryptedAggregate,
    EncryptedInput,
    Message,
    PaillierSetup,
)
from protocols.paillier import (
    KeyHolder,
    PaillierClient,
    PaillierParams,
    PaillierResult,
    PaillierServer,
)
from protocols.simulate import PaillierSimulator, SimulationReport
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    ServerMisbehaviourError,
    SlotOverflowError,
)
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import PaillierKeypair, RandomnessMode

UPLOAD = 2  # Protocol round index of the upload (as in dropout schedules).
DECRYPT = 3  # Round index the simulator uses for server <-> key holder traffic.
ROUND = 7

Inputs = dict[int, npt.NDArray[np.unsignedinteger]]


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> PaillierKeypair:
    return hazmat._generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="module")
def real_keys() -> PaillierKeypair:
    return hazmat.generate_keypair(2048)


@pytest.fixture(scope="module")
def smaller_same_width_keys(keys: PaillierKeypair) -> PaillierKeypair:
    """Another 1024-bit key whose n is below ours, so all its ciphertexts lie below our n^2."""
    while True:
        other = hazmat._generate_keypair_unchecked_size(1024)
        if other.public_key.n < keys.public_key.n:
            return other


@pytest.fixture(scope="module")
def narrower_keys() -> PaillierKeypair:
    return hazmat._generate_keypair_unchecked_size(768)


def _session() -> bytes:
    return secrets.token_bytes(16)


def _params(
    n: int,
    *,
    vector_length: int = 60,
    value_bits: int = 16,
    max_clients: int | None = None,
    min_contributors: int = 2,
    session_id: bytes | None = None,
) -> PaillierParams:
    return PaillierParams(
        session_id=session_id if session_id is not None else _session(),
        round_id=ROUND,
        clients=tuple(range(n)),
        vector_length=vector_length,
        value_bits=value_bits,
        max_clients=max_clients if max_clients is not None else n + 1,
        min_contributors=min_contributors,
    )


def _key_holder(
    keys: PaillierKeypair, params: PaillierParams, *, min_contributors: int | None = None
) -> KeyHolder:
    return KeyHolder(
        keys,
        session_id=params.session_id,
        value_bits=params.value_bits,
        max_clients=params.max_clients,
        min_contributors=params.min_contributors if min_contributors is None else min_contributors,
    )


def _inputs(params: PaillierParams, *, seed: int = 0, fill: str = "random") -> Inputs:
    rng = np.random.default_rng(seed)
    top = 1 << params.value_bits
    length = params.vector_length
    if fill == "max":
        return {u: np.full(length, top - 1, dtype=np.uint64) for u in params.clients}
    if fill == "zero":
        return {u: np.zeros(length, dtype=np.uint64) for u in params.clients}
    return {u: rng.integers(0, top, size=length, dtype=np.uint64) for u in params.clients}


def _plain_sum(inputs: Mapping[int, npt.ArrayLike], ids: Sequence[int]) -> npt.NDArray[np.uint64]:
    """The oracle, in exact Python integers; fails if a sum does not fit 64 bits."""
    length = len(np.asarray(next(iter(inputs.values()))))
    totals = [0] * length
    for u in ids:
        for i, value in enumerate(np.asarray(inputs[u]).tolist()):
            totals[i] += int(value)
    return np.array(totals, dtype=np.uint64)


def _assert_exact(vector: npt.NDArray[np.uint64], expected: npt.NDArray[np.uint64]) -> None:
    assert vector.dtype == np.dtype(np.uint64)
    assert vector.shape == expected.shape
    assert vector.tobytes() == expected.tobytes()


def _simulate(
    keys: PaillierKeypair,
    params: PaillierParams,
    inputs: Inputs,
    *,
    key_holder: KeyHolder | None = None,
    **options: Any,
) -> tuple[SimulationReport, KeyHolder]:
    holder = key_holder if key_holder is not None else _key_holder(keys, params)
    report = PaillierSimulator(params, inputs, holder, **options).run()
    return report, holder


def _result(report: SimulationReport) -> PaillierResult:
    """The report's result, which must exist and be a Paillier one."""
    assert report.error is None, report.error
    assert isinstance(report.result, PaillierResult)
    return report.result


def _chunks(data: bytes, width: int) -> list[bytes]:
    return [data[i : i + width] for i in range(0, len(data), width)]


def _with_chunk(message: EncryptedInput, index: int, value: int) -> EncryptedInput:
    """``message`` with its ``index``-th ciphertext replaced by the integer ``value``."""
    width = message.ciphertext_bytes
    chunks = _chunks(message.ciphertexts, width)
    chunks[index] = value.to_bytes(width, "big")
    return dataclasses.replace(message, ciphertexts=b"".join(chunks))


def _encrypted_input(
    keys: PaillierKeypair, params: PaillierParams, sender: int, plaintexts: Sequence[int]
) -> EncryptedInput:
    """An upload built by hand: any plaintexts, encrypted with the hazmat layer, no checks."""
    public_key = keys.public_key
    ciphertexts = hazmat.encrypt_vector(public_key, plaintexts, processes=1)
    return EncryptedInput(
        session_id=params.session_id,
        round_id=params.round_id,
        sender=sender,
        recipient=SERVER_ID,
        ciphertext_bytes=hazmat.ciphertext_byte_length(public_key),
        ciphertexts=hazmat.ciphertexts_to_bytes(public_key, ciphertexts),
    )


def _honest_upload_under(
    keys: PaillierKeypair, params: PaillierParams, sender: int, vector: npt.ArrayLike
) -> EncryptedInput:
    """What an honest client pinned to ``keys`` would upload for ``vector``."""
    packing = hazmat.PackingScheme.for_public_key(
        keys.public_key, value_bits=params.value_bits, num_clients=params.max_clients
    )
    return _encrypted_input(keys, params, sender, packing.pack(vector))


def _replacing(
    sender: int, replace: Callable[[EncryptedInput], Sequence[Message]]
) -> Callable[[int, Message], Message | Sequence[Message] | None]:
    """An interceptor that delivers ``replace(upload)`` instead of ``sender``'s upload."""

    def interceptor(round_index: int, message: Message) -> Message | Sequence[Message] | None:
        if isinstance(message, EncryptedInput) and message.sender == sender:
            return replace(message)
        return message

    return interceptor


def _aggregate(
    params: PaillierParams,
    ciphertexts: bytes,
    *,
    width: int,
    contributors: int = 2,
    **overrides: Any,
) -> AggregateCiphertext:
    fields: dict[str, Any] = {
        "session_id": params.session_id,
        "round_id": params.round_id,
        "sender": SERVER_ID,
        "recipient": KEY_HOLDER_ID,
        "contributors": contributors,
        "vector_length": params.vector_length,
        "ciphertext_bytes": width,
        "ciphertexts": ciphertexts,
    }
    fields.update(overrides)
    return AggregateCiphertext(**fields)


def _server_with_uploads(
    keys: PaillierKeypair, params: PaillierParams, inputs: Inputs, senders: Sequence[int]
) -> tuple[PaillierServer, list[EncryptedInput]]:
    """A server that started and received honest uploads from ``senders``."""
    server = PaillierServer(params, keys.public_key)
    setups = {m.recipient: m for m in server.start()}
    uploads: list[EncryptedInput] = []
    for u in senders:
        client = PaillierClient(
            u, session_id=params.session_id, round_id=params.round_id, public_key=keys.public_key
        )
        client.receive(setups[u])
        (upload,) = client.submit_input(inputs[u])
        assert isinstance(upload, EncryptedInput)
        server.receive(upload)
        uploads.append(upload)
    return server, uploads


def _client(keys: PaillierKeypair, params: PaillierParams, client_id: int = 0) -> PaillierClient:
    return PaillierClient(
        client_id,
        session_id=params.session_id,
        round_id=params.round_id,
        public_key=keys.public_key,
    )


def _setup(keys: PaillierKeypair, params: PaillierParams, **overrides: Any) -> PaillierSetup:
    fields: dict[str, Any] = {
        "session_id": params.session_id,
        "round_id": params.round_id,
        "sender": SERVER_ID,
        "recipient": 0,
        "public_key_n": int(keys.public_key.n),
        "vector_length": params.vector_length,
        "value_bits": params.value_bits,
        "max_clients": params.max_clients,
    }
    fields.update(overrides)
    return PaillierSetup(**fields)


def _abort(params: PaillierParams, **overrides: Any) -> Abort:
    fields: dict[str, Any] = {
        "session_id": params.session_id,
        "round_id": params.round_id,
        "sender": SERVER_ID,
        "recipient": 0,
        "reason": "deadline",
    }
    fields.update(overrides)
    return Abort(**fields)


# --------------------------------------------------------------------------------------------
# Exactness: bit-for-bit sums, dropouts, the headroom limit
# --------------------------------------------------------------------------------------------


@st.composite
def paillier_rounds(draw: st.DrawFn) -> dict[str, Any]:
    """A round: n clients, headroom, value bits, input fill, dropout schedule, mode, transport."""
    n = draw(st.integers(2, 12))
    max_clients = draw(st.integers(n, 16))
    headroom = (max_clients - 1).bit_length()
    value_bits = draw(st.integers(1, min(63, 64 - headroom)))
    vector_length = draw(st.integers(1, 300))
    schedule = draw(
        st.dictionaries(st.integers(0, n - 1), st.integers(0, 3), max_size=n),
    )
    return {
        "n": n,
        "max_clients": max_clients,
        "value_bits": value_bits,
        "vector_length": vector_length,
        "dropouts": schedule,
        "fill": draw(st.sampled_from(["random", "random", "max", "zero"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "mode": draw(st.sampled_from(RandomnessMode)),
        "through_wire": draw(st.booleans()),
        "narrow_dtype": draw(st.booleans()),
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=paillier_rounds())
def test_simulator_sum_is_exact_for_random_rounds(
    keys: PaillierKeypair, config: dict[str, Any]
) -> None:
    params = _params(
        config["n"],
        vector_length=config["vector_length"],
        value_bits=config["value_bits"],
        max_clients=config["max_clients"],
    )
    inputs = _inputs(params, seed=config["seed"], fill=config["fill"])
    if config["narrow_dtype"] and config["value_bits"] <= 32:
        inputs = {u: v.astype(np.uint32) for u, v in inputs.items()}
    schedule: dict[int, int] = config["dropouts"]
    contributors = tuple(u for u in params.clients if schedule.get(u, 4) > UPLOAD)
    dropped = tuple(u for u in params.clients if u not in contributors)

    report, holder = _simulate(
        keys,
        params,
        inputs,
        mode=config["mode"],
        dropouts=schedule,
        through_wire=config["through_wire"],
    )

    assert report.dropped_at == {u: r for u, r in schedule.items() if r <= UPLOAD}
    assert report.client_errors == {}
    assert report.server_rejections == []
    if len(contributors) < params.min_contributors:
        assert isinstance(report.error, InsufficientSurvivorsError)
        assert report.result is None
        assert holder.seen == []
        return
    result = _result(report)
    assert result.contributors == contributors
    assert result.survivors == contributors
    assert result.dropped == dropped
    _assert_exact(result.vector, _plain_sum(inputs, contributors))
    assert [m.contributors for m in holder.seen] == [len(contributors)]


def test_simulator_round3_dropout_still_counts(keys: PaillierKeypair) -> None:
    params = _params(5, vector_length=20)
    inputs = _inputs(params, seed=3)
    report, _ = _simulate(keys, params, inputs, dropouts={0: 0, 1: 1, 2: 2, 3: 3})
    result = _result(report)
    # Rounds 0-2 come before the upload; a client leaving at round 3 had already uploaded.
    assert result.contributors == (3, 4)
    assert result.dropped == (0, 1, 2)
    assert report.dropped_at == {0: 0, 1: 1, 2: 2}
    _assert_exact(result.vector, _plain_sum(inputs, (3, 4)))


@pytest.mark.parametrize(
    ("n", "value_bits"),
    [(2, 63), (5, 13), (8, 16), (12, 60), (16, 60), (3, 1)],
)
@pytest.mark.parametrize("through_wire", [False, True])
def test_simulator_sum_is_exact_at_headroom_limit_with_max_inputs(
    keys: PaillierKeypair, n: int, value_bits: int, through_wire: bool
) -> None:
    # n == max_clients and every value at 2^value_bits - 1: the largest sum a slot must hold.
    params = _params(n, vector_length=70, value_bits=value_bits, max_clients=n)
    inputs = _inputs(params, fill="max")
    report, _ = _simulate(keys, params, inputs, through_wire=through_wire)
    result = _result(report)
    expected = np.full(70, n * ((1 << value_bits) - 1), dtype=np.uint64)
    _assert_exact(result.vector, expected)
    _assert_exact(expected, _plain_sum(inputs, params.clients))


def test_simulator_sum_is_exact_with_real_2048_bit_key(real_keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=150, value_bits=20, max_clients=4)
    inputs = _inputs(params, seed=11)
    report, holder = _simulate(real_keys, params, inputs, dropouts={1: 2}, through_wire=True)
    result = _result(report)
    assert result.contributors == (0, 2)
    _assert_exact(result.vector, _plain_sum(inputs, (0, 2)))
    assert holder.seen[0].ciphertext_bytes == 512


def test_params_more_clients_than_max_clients_raises() -> None:
    with pytest.raises(ParameterError, match="max_clients"):
        _params(5, max_clients=4)


def test_params_at_max_clients_is_accepted() -> None:
    assert _params(4, max_clients=4).max_clients == 4


def test_key_holder_packing_beyond_64_bit_slots_raises(keys: PaillierKeypair) -> None:
    # 62 value bits + 2 headroom bits fit a 64-bit slot; 5 clients need 3 headroom bits.
    KeyHolder(keys, session_id=_session(), value_bits=62, max_clients=4)
    with pytest.raises(ParameterError, match="slot"):
        KeyHolder(keys, session_id=_session(), value_bits=62, max_clients=5)


def test_key_holder_aggregate_above_headroom_raises(keys: PaillierKeypair) -> None:
    params = _params(3, max_clients=3)
    inputs = _inputs(params)
    server, _ = _server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    assert isinstance(aggregate, AggregateCiphertext)
    holder = _key_holder(keys, params)
    with pytest.raises(RemoteProtocolError, match="headroom") as excinfo:
        holder.receive(dataclasses.replace(aggregate, contributors=4))
    assert excinfo.type is RemoteProtocolError
    assert holder.seen == []
    # The refusal did not use up the round: the honest aggregate is still decrypted.
    (reply,) = holder.receive(aggregate)
    assert isinstance(reply, DecryptedAggregate)
    _assert_exact(reply.vector, _plain_sum(inputs, (0, 1, 2)))


# --------------------------------------------------------------------------------------------
# The key holder sees only aggregates, one per round
# --------------------------------------------------------------------------------------------


def test_key_holder_sees_only_aggregates(keys: PaillierKeypair) -> None:
    params = _params(6, vector_length=120, min_contributors=3)
    inputs = _inputs(params, seed=5)
    uploads: list[EncryptedInput] = []
    to_key_holder: list[Message] = []

    def record(round_index: int, message: Message) -> Message:
        if isinstance(message, EncryptedInput):
            uploads.append(message)
        if message.recipient == KEY_HOLDER_ID:
            to_key_holder.append(message)
        return message

    report, holder = _simulate(
        keys, params, inputs, dropouts={0: 1, 4: 2}, interceptor=record, through_wire=True
    )
    assert _result(report).contributors == (1, 2, 3, 5)
    assert len(uploads) == 4
    assert len(to_key_holder) == 1
    assert holder.seen == to_key_holder
    width = hazmat.ciphertext_byte_length(keys.public_key)
    client_chunks = {chunk for m in uploads for chunk in _chunks(m.ciphertexts, width)}
    for message in holder.seen:
        assert isinstance(message, AggregateCiphertext)
        assert message.contributors >= holder.min_contributors
        assert all(message.ciphertexts != upload.ciphertexts for upload in uploads)
        assert client_chunks.isdisjoint(_chunks(message.ciphertexts, width))


def test_key_holder_refuses_second_aggregate_of_round(keys: PaillierKeypair) -> None:
    # A server that decrypts all three inputs, then the two others, learns client 0's input
    # by subtraction: the key holder must refuse the second aggregate of the round.
    params = _params(3, vector_length=40)
    inputs = _inputs(params, seed=6)
    everyone, _ = _server_with_uploads(keys, params, inputs, (0, 1, 2))
    subset, _ = _server_with_uploads(keys, params, inputs, (1, 2))
    (first,) = everyone.close_phase()
    (second,) = subset.close_phase()
    holder = _key_holder(keys, params)
    holder.receive(first)
    with pytest.raises(ServerMisbehaviourError, match="already decrypted"):
        holder.receive(second)
    # Not even the very same aggregate twice.
    with pytest.raises(ServerMisbehaviourError):
        holder.receive(first)
    assert holder.seen == [first]


def test_key_holder_refuses_duplicated_aggregate_in_simulation(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=40)
    inputs = _inputs(params, seed=7)
    subset, _ = _server_with_uploads(keys, params, inputs, (1, 2))
    (difference_probe,) = subset.close_phase()

    def send_two(round_index: int, message: Message) -> Message | Sequence[Message]:
        if isinstance(message, AggregateCiphertext):
            return [message, difference_probe]
        return message

    report, holder = _simulate(keys, params, inputs, interceptor=send_two)
    assert isinstance(report.error, ServerMisbehaviourError)
    assert report.result is None
    assert len(holder.seen) == 1
    assert holder.seen[0].contributors == 3


def test_key_holder_refuses_aggregate_below_min_contributors(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=40, min_contributors=1)
    inputs = _inputs(params, seed=8)
    server, _ = _server_with_uploads(keys, params, inputs, (0,))
    (single,) = server.close_phase()
    assert isinstance(single, AggregateCiphertext)
    assert single.contributors == 1
    holder = _key_holder(keys, params, min_contributors=2)
    with pytest.raises(ServerMisbehaviourError, match="at least 2"):
        holder.receive(single)
    assert holder.seen == []


def _refused_messages(
    params: PaillierParams, aggregate: AggregateCiphertext, upload: EncryptedInput
) -> dict[str, Message]:
    session, round_id = params.session_id, params.round_id
    header: dict[str, Any] = {"session_id": session, "round_id": round_id}
    width = aggregate.ciphertext_bytes
    return {
        "upload": upload,
        "setup": PaillierSetup(
            **header,
            sender=SERVER_ID,
            recipient=0,
            public_key_n=3,
            vector_length=1,
            value_bits=1,
            max_clients=1,
        ),
        "decrypted": DecryptedAggregate(
            **header,
            sender=KEY_HOLDER_ID,
            recipient=SERVER_ID,
            contributors=2,
            vector=np.zeros(1, dtype=np.uint64),
        ),
        "abort": _abort(params),
        "other_session": dataclasses.replace(aggregate, session_id=_session()),
        "from_client": dataclasses.replace(aggregate, sender=0, recipient=SERVER_ID),
        "to_client": dataclasses.replace(aggregate, recipient=0),
        "wrong_width": dataclasses.replace(
            aggregate, ciphertext_bytes=width // 2, ciphertexts=aggregate.ciphertexts
        ),
        "too_short": dataclasses.replace(aggregate, ciphertexts=aggregate.ciphertexts[width:]),
        "wrong_vector_length": dataclasses.replace(
            aggregate, vector_length=params.vector_length * 100
        ),
    }


def test_key_holder_refuses_everything_but_the_aggregate(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=120)
    inputs = _inputs(params, seed=9)
    server, uploads = _server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    assert isinstance(aggregate, AggregateCiphertext)
    holder = _key_holder(keys, params)
    for name, message in _refused_messages(params, aggregate, uploads[0]).items():
        with pytest.raises(RemoteProtocolError) as excinfo:
            holder.receive(message)
        assert excinfo.type is RemoteProtocolError, name
    assert holder.seen == []
    (reply,) = holder.receive(aggregate)
    assert isinstance(reply, DecryptedAggregate)
    assert (reply.sender, reply.recipient, reply.contributors) == (KEY_HOLDER_ID, SERVER_ID, 3)
    _assert_exact(reply.vector, _plain_sum(inputs, (0, 1, 2)))


def test_key_holder_invalid_aggregate_ciphertext_raises(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=120)
    inputs = _inputs(params, seed=10)
    server, _ = _server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    assert isinstance(aggregate, AggregateCiphertext)
    width = aggregate.ciphertext_bytes
    holder = _key_holder(keys, params)
    zero = bytes(width) + aggregate.ciphertexts[width:]
    with pytest.raises(InvalidCiphertextError):
        holder.receive(dataclasses.replace(aggregate, ciphertexts=zero))
    assert holder.seen == []
    holder.receive(aggregate)
    assert holder.seen == [aggregate]


# --------------------------------------------------------------------------------------------
# The server (and a client) never hold the secret key
# --------------------------------------------------------------------------------------------

_MPZ = type(gmpy2.mpz(0))
_LEAVES = (str, bytes, bytearray, float, complex, bool, type(None), np.ndarray, np.generic)
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    enum.Enum,
)


def _object_graph(root: object) -> Iterator[object]:
    """Every object reachable from ``root`` through attributes, slots and containers."""
    visited: dict[int, object] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in visited:
            continue
        visited[id(obj)] = obj  # Holding it keeps its id from being reused.
        yield obj
        if isinstance(obj, _LEAVES + _OPAQUE + (int, _MPZ)):
            continue
        if isinstance(obj, Mapping):
            stack.extend(obj.keys())
            stack.extend(obj.values())
            continue
        if isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
            continue
        if hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    stack.append(getattr(obj, name))


def _secrets_in(root: object, keys: PaillierKeypair) -> list[object]:
    p, q = int(keys.private_key.p), int(keys.private_key.q)
    phi = (p - 1) * (q - 1)
    found: list[object] = []
    for obj in _object_graph(root):
        if isinstance(obj, phe.PaillierPrivateKey):
            found.append(obj)
        elif isinstance(obj, int | _MPZ) and not isinstance(obj, bool) and obj in (p, q, phi):
            found.append(obj)
    return found


def test_object_graph_walk_finds_the_key_holder_secret(keys: PaillierKeypair) -> None:
    # Positive control: the walk does reach a private key and its primes where they are.
    holder = KeyHolder(keys, session_id=_session(), value_bits=16, max_clients=4)
    found = _secrets_in(holder, keys)
    assert any(isinstance(obj, phe.PaillierPrivateKey) for obj in found)
    p = int(keys.private_key.p)
    assert any(isinstance(obj, int | _MPZ) and obj == p for obj in found)


@pytest.mark.parametrize("mode", list(RandomnessMode))
def test_server_and_clients_never_hold_the_secret_key(
    real_keys: PaillierKeypair, mode: RandomnessMode
) -> None:
    params = _params(3, vector_length=30, max_clients=4)
    inputs = _inputs(params, seed=12)
    holder = _key_holder(real_keys, params)
    simulator = PaillierSimulator(params, inputs, holder, mode=mode)
    assert _secrets_in(simulator.server, real_keys) == []
    report = simulator.run()
    assert _result(report).contributors == (0, 1, 2)
    assert simulator.server.phase is ServerPhase.DONE
    assert _secrets_in(simulator.server, real_keys) == []
    assert isinstance(vars(simulator.server), dict)
    for client in simulator.clients.values():
        assert client.phase is ClientPhase.DONE
        assert _secrets_in(client, real_keys) == []


def test_server_mid_round_holds_no_secret_key(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=30)
    server, uploads = _server_with_uploads(keys, params, _inputs(params), (0, 1))
    assert server.phase is ServerPhase.COLLECT_INPUTS
    assert _secrets_in(server, keys) == []
    assert _secrets_in(uploads, keys) == []


# --------------------------------------------------------------------------------------------
# Client defences
# --------------------------------------------------------------------------------------------


def _assert_poisoned(client: PaillierClient, params: PaillierParams) -> None:
    assert client.phase is ClientPhase.ABORTED
    with pytest.raises(LocalProtocolError):
        client.receive(_abort(params, recipient=client.client_id))
    with pytest.raises(LocalProtocolError):
        client.submit_input(np.zeros(params.vector_length, dtype=np.uint64))
    assert client.phase is ClientPhase.ABORTED


def test_client_rejects_setup_with_substituted_public_key(
    keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    params = _params(3)
    client = _client(keys, params)
    substituted = _setup(keys, params, public_key_n=int(smaller_same_width_keys.public_key.n))
    with pytest.raises(ServerMisbehaviourError, match="pinned"):
        client.receive(substituted)
    _assert_poisoned(client, params)
    # Even the honest setup is refused now.
    with pytest.raises(LocalProtocolError):
        client.receive(_setup(keys, params))


@pytest.mark.parametrize(
    "overrides",
    [
        {"round_id": ROUND - 1},
        {"round_id": ROUND + 1},
        {"session_id": bytes(16)},
        {"recipient": 1},
    ],
    ids=["replayed_round", "future_round", "other_session", "other_recipient"],
)
def test_client_rejects_foreign_setup(keys: PaillierKeypair, overrides: dict[str, Any]) -> None:
    params = _params(3)
    client = _client(keys, params)
    with pytest.raises(RemoteProtocolError) as excinfo:
        client.receive(_setup(keys, params, **overrides))
    assert excinfo.type is RemoteProtocolError
    _assert_poisoned(client, params)


def test_client_rejects_second_setup(keys: PaillierKeypair) -> None:
    params = _params(3)
    client = _client(keys, params)
    assert client.receive(_setup(keys, params)) == []
    assert client.phase is ClientPhase.AWAIT_INPUT
    with pytest.raises(RemoteProtocolError) as excinfo:
        client.receive(_setup(keys, params, vector_length=5))
    assert excinfo.type is RemoteProtocolError
    _assert_poisoned(client, params)


def test_client_rejects_setup_after_upload(keys: PaillierKeypair) -> None:
    params = _params(3)
    client = _client(keys, params)
    client.receive(_setup(keys, params))
    (upload,) = client.submit_input(np.ones(params.vector_length, dtype=np.uint16))
    assert isinstance(upload, EncryptedInput)
    assert client.phase is ClientPhase.DONE
    with pytest.raises(RemoteProtocolError):
        client.receive(_setup(keys, params))
    _assert_poisoned(client, params)


def test_client_rejects_setup_with_unusable_packing(keys: PaillierKeypair) -> None:
    params = _params(3)
    client = _client(keys, params)
    with pytest.raises(RemoteProtocolError, match="packing") as excinfo:
        client.receive(_setup(keys, params, value_bits=63, max_clients=4))
    assert excinfo.type is RemoteProtocolError
    _assert_poisoned(client, params)


def test_client_rejects_message_not_from_server(keys: PaillierKeypair) -> None:
    params = _params(3)
    client = _client(keys, params)
    from_key_holder = DecryptedAggregate(
        session_id=params.session_id,
        round_id=params.round_id,
        sender=KEY_HOLDER_ID,
        recipient=SERVER_ID,
        contributors=2,
        vector=np.zeros(1, dtype=np.uint64),
    )
    with pytest.raises(RemoteProtocolError):
        client.receive(from_key_holder)
    _assert_poisoned(client, params)


def test_client_submit_input_before_setup_raises(keys: PaillierKeypair) -> None:
    params = _params(3)
    client = _client(keys, params)
    with pytest.raises(LocalProtocolError, match="after the setup"):
        client.submit_input(np.zeros(params.vector_length, dtype=np.uint64))
    _assert_poisoned(client, params)


@pytest.mark.parametrize(
    "vector",
    [
        np.zeros(59, dtype=np.uint64),
        np.zeros(61, dtype=np.uint64),
        np.zeros((2, 30), dtype=np.uint64),
        np.zeros(60, dtype=np.float64),
        np.zeros(60, dtype=bool),
        np.array(["0"] * 60),
        np.full(60, 1 << 16, dtype=np.uint64),
        np.full(60, 2**64 - 1, dtype=np.uint64),
        np.concatenate([np.zeros(59, dtype=np.int64), [-1]]),
    ],
    ids=[
        "too_short",
        "too_long",
        "two_dimensional",
        "float",
        "bool",
        "string",
        "value_2_to_value_bits",
        "uint64_max",
        "negative",
    ],
)
def test_client_submit_input_bad_vector_raises(keys: PaillierKeypair, vector: Any) -> None:
    params = _params(3, vector_length=60, value_bits=16)
    client = _client(keys, params)
    client.receive(_setup(keys, params))
    with pytest.raises(LocalProtocolError):
        client.submit_input(vector)
    _assert_poisoned(client, params)


def test_client_accepts_signed_and_narrow_in_range_input(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=60, value_bits=16)
    for vector in (np.full(60, 65535, dtype=np.int64), np.arange(60, dtype=np.uint16)):
        client = _client(keys, params)
        client.receive(_setup(keys, params))
        (upload,) = client.submit_input(vector)
        assert isinstance(upload, EncryptedInput)
        assert client.phase is ClientPhase.DONE


def test_client_second_submit_input_raises(keys: PaillierKeypair) -> None:
    params = _params(3)
    client = _client(keys, params)
    client.receive(_setup(keys, params))
    client.submit_input(np.zeros(params.vector_length, dtype=np.uint64))
    with pytest.raises(LocalProtocolError):
        client.submit_input(np.zeros(params.vector_length, dtype=np.uint64))
    _assert_poisoned(client, params)


def test_client_djn_mode_without_matching_parameters_raises(
    keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    params = _params(3)
    common = {"session_id": params.session_id, "round_id": ROUND, "public_key": keys.public_key}
    with pytest.raises(ParameterError, match="DJN"):
        PaillierClient(0, mode=RandomnessMode.DJN, **common)
    with pytest.raises(ParameterError, match="DJN"):
        PaillierClient(0, mode=RandomnessMode.DJN, djn=smaller_same_width_keys.djn, **common)
    client = PaillierClient(0, mode=RandomnessMode.DJN, djn=keys.djn, **common)
    assert client.phase is ClientPhase.AWAIT_SETUP


@pytest.mark.parametrize("before_setup", [True, False])
def test_client_abort_moves_to_aborted(keys: PaillierKeypair, before_setup: bool) -> None:
    params = _params(3)
    client = _client(keys, params)
    if not before_setup:
        client.receive(_setup(keys, params))
    assert client.receive(_abort(params)) == []
    _assert_poisoned(client, params)


def test_client_abort_from_other_round_raises(keys: PaillierKeypair) -> None:
    params = _params(3)
    client = _client(keys, params)
    with pytest.raises(RemoteProtocolError):
        client.receive(_abort(params, round_id=ROUND + 1))
    _assert_poisoned(client, params)


def test_simulator_client_with_substituted_key_is_left_out(
    keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    params = _params(4, vector_length=30)
    inputs = _inputs(params, seed=13)
    foreign_n = int(smaller_same_width_keys.public_key.n)

    def substitute(round_index: int, message: Message) -> Message:
        if isinstance(message, PaillierSetup) and message.recipient == 1:
            return dataclasses.replace(message, public_key_n=foreign_n)
        return message

    report, _ = _simulate(keys, params, inputs, interceptor=substitute)
    assert set(report.client_errors) == {1}
    assert isinstance(report.client_errors[1], ServerMisbehaviourError)
    result = _result(report)
    assert result.contributors == (0, 2, 3)
    _assert_exact(result.vector, _plain_sum(inputs, (0, 2, 3)))


# --------------------------------------------------------------------------------------------
# Server: bad inputs are rejected one by one, the rest of the sum is kept
# --------------------------------------------------------------------------------------------


class BadUpload(NamedTuple):
    """What replaces client 0's upload, the exact error, its message, whether client 0 counts."""

    replace: Callable[[EncryptedInput], Sequence[Message]]
    error: type[Exception]
    match: str
    counted: bool


# Every invalid Paillier ciphertext gets the same opaque message (no hint which check failed).
OPAQUE = r"^invalid Paillier ciphertext$"
REPLAY = "another session or round"


def _bad_uploads(
    keys: PaillierKeypair, narrower: PaillierKeypair, params: PaillierParams, inputs: Inputs
) -> dict[str, BadUpload]:
    p, q = int(keys.private_key.p), int(keys.private_key.q)
    nsquare = int(keys.public_key.nsquare)
    all_ones = (1 << (8 * hazmat.ciphertext_byte_length(keys.public_key))) - 1

    def chunk(index: int, value: Callable[[int], int]) -> Callable[[EncryptedInput], list[Message]]:
        def replace(m: EncryptedInput) -> list[Message]:
            original = int.from_bytes(_chunks(m.ciphertexts, m.ciphertext_bytes)[index], "big")
            return [_with_chunk(m, index, value(original))]

        return replace

    def narrow_key(m: EncryptedInput) -> list[Message]:
        return [_honest_upload_under(narrower, params, 0, inputs[0])]

    def drop_last(m: EncryptedInput) -> list[Message]:
        return [dataclasses.replace(m, ciphertexts=m.ciphertexts[: -m.ciphertext_bytes])]

    def add_one(m: EncryptedInput) -> list[Message]:
        extra = m.ciphertexts[: m.ciphertext_bytes]
        return [dataclasses.replace(m, ciphertexts=m.ciphertexts + extra)]

    def abort_first(m: EncryptedInput) -> list[Message]:
        notice = Abort(
            session_id=m.session_id, round_id=m.round_id, sender=0, recipient=SERVER_ID, reason="x"
        )
        return [notice, m]

    def replaced(**changes: Any) -> Callable[[EncryptedInput], list[Message]]:
        return lambda m: [dataclasses.replace(m, **changes)]

    invalid = InvalidCiphertextError
    remote = RemoteProtocolError
    return {
        "ciphertext_zero": BadUpload(chunk(0, lambda c: 0), invalid, OPAQUE, False),
        "ciphertext_n_squared": BadUpload(chunk(1, lambda c: nsquare), invalid, OPAQUE, False),
        "ciphertext_n_squared_plus_one": BadUpload(
            chunk(1, lambda c: nsquare + 1), invalid, OPAQUE, False
        ),
        "ciphertext_all_ones": BadUpload(chunk(0, lambda c: all_ones), invalid, OPAQUE, False),
        "ciphertext_multiple_of_p": BadUpload(
            chunk(1, lambda c: c * p % nsquare), invalid, OPAQUE, False
        ),
        "ciphertext_equal_to_q": BadUpload(chunk(0, lambda c: q), invalid, OPAQUE, False),
        "other_key_other_width": BadUpload(narrow_key, invalid, "not under the key", False),
        "too_few_ciphertexts": BadUpload(drop_last, remote, "sent 1 ciphertexts", False),
        "too_many_ciphertexts": BadUpload(add_one, remote, "sent 3 ciphertexts", False),
        "wrong_round": BadUpload(replaced(round_id=ROUND + 1), remote, REPLAY, False),
        "wrong_session": BadUpload(replaced(session_id=bytes(16)), remote, REPLAY, False),
        "replayed_earlier_round": BadUpload(
            lambda m: [dataclasses.replace(m, round_id=ROUND - 1), m], remote, REPLAY, True
        ),
        "replayed_same_client": BadUpload(lambda m: [m, m], remote, "uploaded twice", True),
        "uninvited_sender": BadUpload(
            lambda m: [m, dataclasses.replace(m, sender=99)], remote, "not invited", True
        ),
        "unexpected_type": BadUpload(abort_first, remote, "unexpected Abort", True),
        # A forgery in client 0's name does not lock the genuine upload out.
        "forged_then_genuine": BadUpload(
            lambda m: [*chunk(0, lambda c: 0)(m), m], invalid, OPAQUE, True
        ),
    }


BAD_UPLOAD_NAMES = [
    "ciphertext_zero",
    "ciphertext_n_squared",
    "ciphertext_n_squared_plus_one",
    "ciphertext_all_ones",
    "ciphertext_multiple_of_p",
    "ciphertext_equal_to_q",
    "other_key_other_width",
    "too_few_ciphertexts",
    "too_many_ciphertexts",
    "wrong_round",
    "wrong_session",
    "replayed_earlier_round",
    "replayed_same_client",
    "uninvited_sender",
    "unexpected_type",
    "forged_then_genuine",
]


@pytest.mark.parametrize("name", BAD_UPLOAD_NAMES)
def test_server_rejects_bad_upload_and_keeps_the_others(
    keys: PaillierKeypair, narrower_keys: PaillierKeypair, name: str
) -> None:
    # 60 values in 56-slot plaintexts: two ciphertexts per client.
    params = _params(4, vector_length=60, value_bits=16, max_clients=4)
    inputs = _inputs(params, seed=14)
    bad = _bad_uploads(keys, narrower_keys, params, inputs)[name]
    report, holder = _simulate(keys, params, inputs, interceptor=_replacing(0, bad.replace))
    assert [type(e) for e in report.server_rejections] == [bad.error]
    assert re.search(bad.match, str(report.server_rejections[0]))
    result = _result(report)
    expected = (0, 1, 2, 3) if bad.counted else (1, 2, 3)
    assert result.contributors == expected
    assert result.dropped == (() if bad.counted else (0,))
    _assert_exact(result.vector, _plain_sum(inputs, expected))
    assert [m.contributors for m in holder.seen] == [len(expected)]


def test_server_accepts_same_width_foreign_key_which_key_holder_catches(
    keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    # A ciphertext under another key of the same width (with a smaller n) is a unit below our
    # n^2: the server cannot tell it from a genuine one and multiplies it in. The aggregate
    # then decrypts to garbage, which the key holder's slot check rejects; the round is lost,
    # honest contributions included (telling the keys apart needs proofs of plaintext knowledge).
    params = _params(4, vector_length=60, value_bits=16, max_clients=4)
    inputs = _inputs(params, seed=15)

    def foreign(m: EncryptedInput) -> list[Message]:
        return [_honest_upload_under(smaller_same_width_keys, params, 0, inputs[0])]

    report, holder = _simulate(keys, params, inputs, interceptor=_replacing(0, foreign))
    assert report.server_rejections == []
    assert isinstance(report.error, SlotOverflowError)
    assert report.result is None
    assert [m.contributors for m in holder.seen] == [4]


def test_server_below_min_contributors_aborts(keys: PaillierKeypair) -> None:
    params = _params(4, vector_length=20, min_contributors=3)
    inputs = _inputs(params)
    server, _ = _server_with_uploads(keys, params, inputs, (0, 2))
    with pytest.raises(InsufficientSurvivorsError, match="below the minimum 3"):
        server.close_phase()
    assert server.phase is ServerPhase.ABORTED
    assert server.abort_reason is not None
    with pytest.raises(LocalProtocolError):
        _ = server.result
    with pytest.raises(LocalProtocolError):
        server.close_phase()


def test_simulator_below_min_contributors_reports_error(keys: PaillierKeypair) -> None:
    params = _params(4, vector_length=20, min_contributors=3)
    report, holder = _simulate(keys, params, _inputs(params), dropouts={0: 2, 3: 0})
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert report.result is None
    assert holder.seen == []


def test_server_result_before_done_raises(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=20)
    server, _ = _server_with_uploads(keys, params, _inputs(params), (0, 1, 2))
    with pytest.raises(LocalProtocolError):
        _ = server.result
    server.close_phase()
    assert server.phase is ServerPhase.COLLECT_UNMASK
    with pytest.raises(LocalProtocolError):
        _ = server.result


def test_server_rejects_late_upload_after_close(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=20)
    inputs = _inputs(params, seed=16)
    server, _ = _server_with_uploads(keys, params, inputs, (0, 1))
    _, (late,) = _server_with_uploads(keys, params, inputs, (2,))
    (aggregate,) = server.close_phase()
    with pytest.raises(RemoteProtocolError) as excinfo:
        server.receive(late)
    assert excinfo.type is RemoteProtocolError
    assert isinstance(aggregate, AggregateCiphertext)
    assert aggregate.contributors == 2


def _phase(server: PaillierServer) -> ServerPhase:
    return server.phase


def test_server_rejects_decrypted_aggregate_for_other_contributor_count(
    keys: PaillierKeypair,
) -> None:
    params = _params(3, vector_length=20)
    inputs = _inputs(params, seed=17)
    server, _ = _server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    (reply,) = _key_holder(keys, params).receive(aggregate)
    assert isinstance(reply, DecryptedAggregate)
    for bad in (
        dataclasses.replace(reply, contributors=2),
        dataclasses.replace(reply, vector=reply.vector[:-1]),
        dataclasses.replace(reply, sender=0),
    ):
        with pytest.raises(RemoteProtocolError):
            server.receive(bad)
    assert _phase(server) is ServerPhase.COLLECT_UNMASK
    server.receive(reply)
    assert _phase(server) is ServerPhase.DONE
    _assert_exact(server.result.vector, _plain_sum(inputs, (0, 1, 2)))


def test_server_start_twice_raises(keys: PaillierKeypair) -> None:
    server = PaillierServer(_params(3), keys.public_key)
    assert len(server.start()) == 3
    with pytest.raises(LocalProtocolError):
        server.start()


# --------------------------------------------------------------------------------------------
# Slot-range violations after decryption
# --------------------------------------------------------------------------------------------


def _malicious_plaintexts(packing: hazmat.PackingScheme, length: int, kind: str) -> list[int]:
    """Plaintexts no honest client produces; packing is BITS (slot i at bit i * slot_bits)."""
    count = packing.num_plaintexts(length)
    plaintexts = [0] * count
    if kind == "slot_above_limit":
        # 2^value_bits in slot 0: with the honest slot-0 sums at their maximum, one above.
        plaintexts[0] = 1 << packing.value_bits
    elif kind == "bits_above_last_slot":
        plaintexts[0] = 1 << (packing.slots_per_plaintext * packing.slot_bits)
    else:  # "padding_slot"
        used = length - (count - 1) * packing.slots_per_plaintext
        plaintexts[-1] = 1 << (used * packing.slot_bits)
    return plaintexts


@pytest.mark.parametrize("kind", ["slot_above_limit", "bits_above_last_slot", "padding_slot"])
def test_key_holder_detects_out_of_range_slot(keys: PaillierKeypair, kind: str) -> None:
    # Three of max_clients = 4: slots have room for 4 * 255, the legal sum is at most 3 * 255.
    params = _params(3, vector_length=60, value_bits=8, max_clients=4)
    inputs = _inputs(params, fill="max")
    holder = _key_holder(keys, params)
    plaintexts = _malicious_plaintexts(holder.packing, params.vector_length, kind)
    forged = _encrypted_input(keys, params, 0, plaintexts)

    report, _ = _simulate(
        keys, params, inputs, key_holder=holder, interceptor=_replacing(0, lambda m: [forged])
    )
    # The server cannot see inside ciphertexts; it is the key holder that refuses the sums.
    assert report.server_rejections == []
    assert isinstance(report.error, SlotOverflowError)
    assert report.result is None
    assert len(holder.seen) == 1


def test_key_holder_slot_overflow_still_uses_up_the_round(keys: PaillierKeypair) -> None:
    params = _params(3, vector_length=60, value_bits=8, max_clients=4)
    holder = _key_holder(keys, params)
    bad = _malicious_plaintexts(holder.packing, 60, "bits_above_last_slot")
    good = holder.packing.pack(np.ones(60, dtype=np.uint64))
    product = hazmat.add_ciphertext_vectors(
        keys.public_key,
        hazmat.encrypt_vector(keys.public_key, bad, processes=1),
        hazmat.encrypt_vector(keys.public_key, good, processes=1),
    )
    width = hazmat.ciphertext_byte_length(keys.public_key)
    aggregate = _aggregate(
        params, hazmat.ciphertexts_to_bytes(keys.public_key, product), width=width
    )
    with pytest.raises(SlotOverflowError):
        holder.receive(aggregate)
    # Decrypted once already (the plaintext was computed): no second try for this round.
    with pytest.raises(ServerMisbehaviourError):
        holder.receive(aggregate)


# --------------------------------------------------------------------------------------------
# Wire limits of the Paillier messages
# --------------------------------------------------------------------------------------------


def test_decrypted_aggregate_longer_than_max_entries_survives_wire() -> None:
    length = wire.MAX_ENTRIES + 1
    message = DecryptedAggregate(
        session_id=bytes(16),
        round_id=ROUND,
        sender=KEY_HOLDER_ID,
        recipient=SERVER_ID,
        contributors=2,
        vector=np.arange(length, dtype=np.uint64),
    )
    assert wire.decode(wire.encode(message)) == message
