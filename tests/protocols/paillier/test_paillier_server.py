"""Tests of :class:`PaillierServer`: it never holds the secret key, rejects each bad upload on its
own while keeping the other clients' contributions, aborts below the minimum number of
contributors, and refuses messages out of turn."""

from __future__ import annotations

import dataclasses
import enum
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import gmpy2
import numpy as np
import numpy.typing as npt
import phe
import pytest

from protocols._transitions import ClientPhase, ServerPhase
from protocols.messages import (
    SERVER_ID,
    Abort,
    AggregateCiphertext,
    DecryptedAggregate,
    EncryptedInput,
    Message,
)
from protocols.paillier import KeyHolder, PaillierParams, PaillierServer, PaillierSimulator
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    LocalProtocolError,
    RemoteProtocolError,
    SlotOverflowError,
)
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import PaillierKeypair, RandomnessMode

if TYPE_CHECKING:
    from conftest import PaillierKit


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


def test_object_graph_walk_finds_the_key_holder_secret(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # Positive control: the walk does reach a private key and its primes where they are.
    holder = KeyHolder(keys, session_id=kit.session(), value_bits=16, max_clients=4)
    found = _secrets_in(holder, keys)
    assert any(isinstance(obj, phe.PaillierPrivateKey) for obj in found)
    p = int(keys.private_key.p)
    assert any(isinstance(obj, int | _MPZ) and obj == p for obj in found)


@pytest.mark.parametrize("mode", list(RandomnessMode))
def test_server_and_clients_never_hold_the_secret_key(
    kit: type[PaillierKit], real_keys: PaillierKeypair, mode: RandomnessMode
) -> None:
    params = kit.params(3, vector_length=30, max_clients=4)
    inputs = kit.inputs(params, seed=12)
    holder = kit.key_holder(real_keys, params)
    simulator = PaillierSimulator(params, inputs, holder, mode=mode)
    assert _secrets_in(simulator.server, real_keys) == []
    report = simulator.run()
    assert kit.result(report).contributors == (0, 1, 2)
    assert simulator.server.phase is ServerPhase.DONE
    assert _secrets_in(simulator.server, real_keys) == []
    assert isinstance(vars(simulator.server), dict)
    for client in simulator.clients.values():
        assert client.phase is ClientPhase.DONE
        assert _secrets_in(client, real_keys) == []


def test_server_mid_round_holds_no_secret_key(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=30)
    server, uploads = kit.server_with_uploads(keys, params, kit.inputs(params), (0, 1))
    assert server.phase is ServerPhase.COLLECT_INPUTS
    assert _secrets_in(server, keys) == []
    assert _secrets_in(uploads, keys) == []


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
    kit: type[PaillierKit],
    keys: PaillierKeypair,
    narrower: PaillierKeypair,
    params: PaillierParams,
    inputs: Mapping[int, npt.NDArray[np.unsignedinteger]],
) -> dict[str, BadUpload]:
    p, q = int(keys.private_key.p), int(keys.private_key.q)
    nsquare = int(keys.public_key.nsquare)
    all_ones = (1 << (8 * hazmat.ciphertext_byte_length(keys.public_key))) - 1

    def chunk(index: int, value: Callable[[int], int]) -> Callable[[EncryptedInput], list[Message]]:
        def replace(m: EncryptedInput) -> list[Message]:
            original = int.from_bytes(kit.chunks(m.ciphertexts, m.ciphertext_bytes)[index], "big")
            return [kit.with_chunk(m, index, value(original))]

        return replace

    def narrow_key(m: EncryptedInput) -> list[Message]:
        return [kit.honest_upload_under(narrower, params, 0, inputs[0])]

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
        "wrong_round": BadUpload(replaced(round_id=kit.ROUND + 1), remote, REPLAY, False),
        "wrong_session": BadUpload(replaced(session_id=bytes(16)), remote, REPLAY, False),
        "replayed_earlier_round": BadUpload(
            lambda m: [dataclasses.replace(m, round_id=kit.ROUND - 1), m], remote, REPLAY, True
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
    kit: type[PaillierKit], keys: PaillierKeypair, narrower_keys: PaillierKeypair, name: str
) -> None:
    # 60 values in 56-slot plaintexts: two ciphertexts per client.
    params = kit.params(4, vector_length=60, value_bits=16, max_clients=4)
    inputs = kit.inputs(params, seed=14)
    bad = _bad_uploads(kit, keys, narrower_keys, params, inputs)[name]
    report, holder = kit.simulate(keys, params, inputs, interceptor=kit.replacing(0, bad.replace))
    assert [type(e) for e in report.server_rejections] == [bad.error]
    assert re.search(bad.match, str(report.server_rejections[0]))
    result = kit.result(report)
    expected = (0, 1, 2, 3) if bad.counted else (1, 2, 3)
    assert result.contributors == expected
    assert result.dropped == (() if bad.counted else (0,))
    kit.assert_exact(result.vector, kit.plain_sum(inputs, expected))
    assert [m.contributors for m in holder.seen] == [len(expected)]


def test_server_accepts_same_width_foreign_key_which_key_holder_catches(
    kit: type[PaillierKit], keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    # A ciphertext under another key of the same width (with a smaller n) is a unit below our
    # n^2: the server cannot tell it from a genuine one and multiplies it in. The aggregate
    # then decrypts to garbage, which the key holder's slot check rejects; the round is lost,
    # honest contributions included (telling the keys apart needs proofs of plaintext knowledge).
    params = kit.params(4, vector_length=60, value_bits=16, max_clients=4)
    inputs = kit.inputs(params, seed=15)

    def foreign(m: EncryptedInput) -> list[Message]:
        return [kit.honest_upload_under(smaller_same_width_keys, params, 0, inputs[0])]

    report, holder = kit.simulate(keys, params, inputs, interceptor=kit.replacing(0, foreign))
    assert report.server_rejections == []
    assert isinstance(report.error, SlotOverflowError)
    assert report.result is None
    assert [m.contributors for m in holder.seen] == [4]


def test_server_below_min_contributors_aborts(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(4, vector_length=20, min_contributors=3)
    inputs = kit.inputs(params)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 2))
    with pytest.raises(InsufficientSurvivorsError, match="below the minimum 3"):
        server.close_phase()
    assert server.phase is ServerPhase.ABORTED
    assert server.abort_reason is not None
    with pytest.raises(LocalProtocolError):
        _ = server.result
    with pytest.raises(LocalProtocolError):
        server.close_phase()


def test_server_result_before_done_raises(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    params = kit.params(3, vector_length=20)
    server, _ = kit.server_with_uploads(keys, params, kit.inputs(params), (0, 1, 2))
    with pytest.raises(LocalProtocolError):
        _ = server.result
    server.close_phase()
    assert server.phase is ServerPhase.COLLECT_UNMASK
    with pytest.raises(LocalProtocolError):
        _ = server.result


def test_server_rejects_late_upload_after_close(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=20)
    inputs = kit.inputs(params, seed=16)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 1))
    _, (late,) = kit.server_with_uploads(keys, params, inputs, (2,))
    (aggregate,) = server.close_phase()
    with pytest.raises(RemoteProtocolError) as excinfo:
        server.receive(late)
    assert excinfo.type is RemoteProtocolError
    assert isinstance(aggregate, AggregateCiphertext)
    assert aggregate.contributors == 2


def _phase(server: PaillierServer) -> ServerPhase:
    return server.phase


def test_server_rejects_decrypted_aggregate_for_other_contributor_count(
    kit: type[PaillierKit],
    keys: PaillierKeypair,
) -> None:
    params = kit.params(3, vector_length=20)
    inputs = kit.inputs(params, seed=17)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    (reply,) = kit.key_holder(keys, params).receive(aggregate)
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
    kit.assert_exact(server.result.vector, kit.plain_sum(inputs, (0, 1, 2)))


def test_server_start_twice_raises(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    server = PaillierServer(kit.params(3), keys.public_key)
    assert len(server.start()) == 3
    with pytest.raises(LocalProtocolError):
        server.start()
