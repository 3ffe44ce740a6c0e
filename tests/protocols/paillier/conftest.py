"""Shared fixtures and helpers of the Paillier protocol tests.

Keys are generated once per test session: 1024-bit (``_generate_keypair_unchecked_size``) for
speed, except :func:`real_keys`, a real 2048-bit key for the tests that need one. The helpers
build parameters, inputs, the plaintext oracle, honest and hand-made uploads and one-off messages;
test modules reach them through the ``kit`` fixture (the :class:`PaillierKit` class), so no test
imports ``conftest`` by name.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pytest

from protocols.messages import SERVER_ID, Abort, EncryptedInput, Message, PaillierSetup
from protocols.paillier import (
    KeyHolder,
    PaillierClient,
    PaillierParams,
    PaillierResult,
    PaillierServer,
    PaillierSimulator,
)
from protocols.simulate import SimulationReport
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import PaillierKeypair
from secagg.packing import PackingScheme

_ROUND: Final = 7  # The round id of every test round.

Inputs = dict[int, npt.NDArray[np.unsignedinteger]]


@pytest.fixture(scope="session")
def keys() -> PaillierKeypair:
    return hazmat._generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="session")
def real_keys() -> PaillierKeypair:
    return hazmat.generate_keypair(2048)


@pytest.fixture(scope="session")
def smaller_same_width_keys(keys: PaillierKeypair) -> PaillierKeypair:
    """Another 1024-bit key whose n is below ours, so all its ciphertexts lie below our n^2."""
    while True:
        other = hazmat._generate_keypair_unchecked_size(1024)
        if other.public_key.n < keys.public_key.n:
            return other


@pytest.fixture(scope="session")
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
        round_id=_ROUND,
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
    packing = PackingScheme.for_public_key(
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


class PaillierKit:
    """The helpers above, as one namespace handed to tests by the :func:`kit` fixture."""

    ROUND: Final = _ROUND
    session = staticmethod(_session)
    params = staticmethod(_params)
    key_holder = staticmethod(_key_holder)
    inputs = staticmethod(_inputs)
    plain_sum = staticmethod(_plain_sum)
    assert_exact = staticmethod(_assert_exact)
    simulate = staticmethod(_simulate)
    result = staticmethod(_result)
    chunks = staticmethod(_chunks)
    with_chunk = staticmethod(_with_chunk)
    encrypted_input = staticmethod(_encrypted_input)
    honest_upload_under = staticmethod(_honest_upload_under)
    replacing = staticmethod(_replacing)
    server_with_uploads = staticmethod(_server_with_uploads)
    client = staticmethod(_client)
    setup = staticmethod(_setup)
    abort = staticmethod(_abort)


@pytest.fixture(scope="session")
def kit() -> type[PaillierKit]:
    """The shared helpers: :class:`PaillierKit`."""
    return PaillierKit
