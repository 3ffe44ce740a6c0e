"""Shared fixtures and helpers of the Paillier protocol tests.

Keys are generated once per test session: 1024-bit single-holder keys
(``_generate_keypair_unchecked_size``) and a 512-bit 3-of-5 committee
(``_generate_threshold_keypair_unchecked_size``) for speed, except :func:`real_keys`, a real
2048-bit key for the tests that need one. Every client has an identity key from one trusted
setup (:data:`PaillierKit.roster`, :data:`PaillierKit.identities`) that the servers and the
decryptors of every test trust; each test round has a fresh session id, so one roster serves
them all. The helpers build parameters, inputs, the plaintext oracle, honest, hand-made and
re-signed uploads, decryption requests and one-off messages; test modules reach them through the
``kit`` fixture (the :class:`PaillierKit` class), so no test imports ``conftest`` by name.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

import gmpy2
import numpy as np
import numpy.typing as npt
import pytest

from protocols.identity import trusted_setup
from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    Abort,
    DecryptionRequest,
    EncryptedInput,
    Message,
    PaillierSetup,
)
from protocols.paillier import (
    Decryptor,
    KeyHolder,
    PaillierClient,
    PaillierParams,
    PaillierPublic,
    PaillierResult,
    PaillierServer,
    PaillierSimulator,
    key_fingerprint,
)
from protocols.paillier.trust import UploadShape, plain_key, sign_upload
from protocols.simulate import SimulationReport
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import PaillierKeypair, ThresholdKeyset
from secagg.packing import PackingScheme

_ROUND: Final = 7  # The round id of every test round.
#: Clients 0 .. 23 are on the trusted roster; 99 (and anything else) is not.
_ROSTER, _IDENTITIES = trusted_setup(range(24))

Inputs = dict[int, npt.NDArray[np.unsignedinteger]]
#: What a helper accepts as "the keys": a key pair, a committee key set, or a public key.
Keys = PaillierKeypair | ThresholdKeyset | PaillierPublic
Interceptor = Callable[[int, Message], Message | Sequence[Message] | None]


@pytest.fixture(scope="session")
def keys() -> PaillierKeypair:
    return hazmat._generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="session")
def real_keys() -> PaillierKeypair:
    return hazmat.generate_keypair(2048)


@pytest.fixture(scope="session")
def committee_keys() -> ThresholdKeyset:
    """A 3-of-5 committee over a 512-bit n, with DJN parameters."""
    return hazmat._generate_threshold_keypair_unchecked_size(512, decryptors=5, threshold=3)


@pytest.fixture(scope="session")
def other_committee_keys() -> ThresholdKeyset:
    """Another 3-of-5 committee of the same size: a key a server might substitute."""
    return hazmat._generate_threshold_keypair_unchecked_size(512, decryptors=5, threshold=3)


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


_MPZ: Final = type(gmpy2.mpz(0))
_GRAPH_LEAVES = (str, bytes, bytearray, float, complex, bool, type(None), np.ndarray, np.generic)


_GRAPH_OPAQUE = (
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
        if isinstance(obj, _GRAPH_LEAVES + _GRAPH_OPAQUE + (int, _MPZ)):
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


def _public(keys: Keys) -> PaillierPublic:
    """The key clients pin: the key holder's phe key, or the committee's public key."""
    if isinstance(keys, ThresholdKeyset):
        return keys.public
    if isinstance(keys, PaillierKeypair):
        return keys.public_key
    return keys


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
    round_id: int = _ROUND,
) -> PaillierParams:
    params = PaillierParams(
        session_id=session_id if session_id is not None else _session(),
        round_id=round_id,
        clients=tuple(range(n)),
        vector_length=vector_length,
        value_bits=value_bits,
        max_clients=max_clients if max_clients is not None else n + 1,
        min_contributors=min_contributors,
    )
    _SHAPES[params.session_id] = _shape_of(params)
    _SHAPES[b""] = _SHAPES[params.session_id]
    return params


#: Session id -> the packing its round's uploads are signed with (b"": the latest), so that a
#: test can re-sign an upload as a malicious client would, knowing only the message.
_SHAPES: dict[bytes, UploadShape] = {}


def _shape_of(params: PaillierParams) -> UploadShape:
    return UploadShape(params.vector_length, params.value_bits, params.max_clients)


def _key_holder(
    keys: PaillierKeypair, params: PaillierParams, *, min_contributors: int | None = None
) -> KeyHolder:
    return KeyHolder(
        keys,
        session_id=params.session_id,
        roster=_ROSTER,
        value_bits=params.value_bits,
        max_clients=params.max_clients,
        min_contributors=params.min_contributors if min_contributors is None else min_contributors,
    )


def _committee(
    keys: ThresholdKeyset, params: PaillierParams, *, min_contributors: int | None = None
) -> list[Decryptor]:
    """One :class:`Decryptor` per share of ``keys``, for ``params``' session and packing."""
    return [
        Decryptor(
            share,
            session_id=params.session_id,
            roster=_ROSTER,
            value_bits=params.value_bits,
            max_clients=params.max_clients,
            min_contributors=(
                params.min_contributors if min_contributors is None else min_contributors
            ),
        )
        for share in keys.shares
    ]


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
    """One round with the single key holder (a fresh one unless ``key_holder`` is given)."""
    holder = key_holder if key_holder is not None else _key_holder(keys, params)
    report = PaillierSimulator(
        params, inputs, holder, identities=_IDENTITIES, roster=_ROSTER, **options
    ).run()
    return report, holder


def _simulate_committee(
    keys: ThresholdKeyset,
    params: PaillierParams,
    inputs: Inputs,
    *,
    members: list[Decryptor] | None = None,
    **options: Any,
) -> tuple[SimulationReport, list[Decryptor]]:
    """One round decrypted by the committee of ``keys`` (fresh members unless given)."""
    committee = members if members is not None else _committee(keys, params)
    report = PaillierSimulator(
        params, inputs, committee, identities=_IDENTITIES, roster=_ROSTER, **options
    ).run()
    return report, committee


def _result(report: SimulationReport) -> PaillierResult:
    """The report's result, which must exist and be a Paillier one."""
    assert report.error is None, report.error
    assert isinstance(report.result, PaillierResult)
    return report.result


def _chunks(data: bytes, width: int) -> list[bytes]:
    return [data[i : i + width] for i in range(0, len(data), width)]


def _signature(
    keys: Keys,
    session_id: bytes,
    round_id: int,
    sender: int,
    ciphertexts: bytes,
    *,
    signer: int | None = None,
) -> bytes:
    """``signer``'s (default: ``sender``'s) identity signature of an upload under ``keys``."""
    identity = _IDENTITIES[sender if signer is None else signer]
    fingerprint = key_fingerprint(_public(keys))
    shape = _SHAPES.get(session_id, _SHAPES[b""])
    return sign_upload(identity, session_id, round_id, sender, fingerprint, ciphertexts, shape)


def _resigned(message: EncryptedInput, keys: Keys) -> EncryptedInput:
    """``message`` signed as it is by its sender: what a malicious *client* can always send."""
    signature = _signature(
        keys, message.session_id, message.round_id, message.sender, message.ciphertexts
    )
    return dataclasses.replace(message, signature=signature)


def _with_chunk(message: EncryptedInput, index: int, value: int, keys: Keys) -> EncryptedInput:
    """``message`` with its ``index``-th ciphertext replaced by ``value``, re-signed."""
    width = message.ciphertext_bytes
    chunks = _chunks(message.ciphertexts, width)
    chunks[index] = value.to_bytes(width, "big")
    return _resigned(dataclasses.replace(message, ciphertexts=b"".join(chunks)), keys)


def _encrypted_input(
    keys: Keys,
    params: PaillierParams,
    sender: int,
    plaintexts: Sequence[int],
    *,
    signed_for: Keys | None = None,
) -> EncryptedInput:
    """An upload built by hand: any plaintexts encrypted under ``keys`` with the hazmat layer,
    signed by ``sender`` for ``signed_for`` (default: ``keys``) and no other check."""
    public_key = plain_key(_public(keys))
    ciphertexts = hazmat.encrypt_vector(public_key, plaintexts, processes=1)
    data = hazmat.ciphertexts_to_bytes(public_key, ciphertexts)
    return EncryptedInput(
        session_id=params.session_id,
        round_id=params.round_id,
        sender=sender,
        recipient=SERVER_ID,
        ciphertext_bytes=hazmat.ciphertext_byte_length(public_key),
        ciphertexts=data,
        signature=_signature(
            keys if signed_for is None else signed_for,
            params.session_id,
            params.round_id,
            sender,
            data,
        ),
    )


def _honest_upload_under(
    keys: Keys,
    params: PaillierParams,
    sender: int,
    vector: npt.ArrayLike,
    *,
    signed_for: Keys | None = None,
) -> EncryptedInput:
    """What a client pinned to ``keys`` would upload for ``vector`` (signed for ``signed_for``)."""
    packing = PackingScheme.for_public_key(
        plain_key(_public(keys)), value_bits=params.value_bits, num_clients=params.max_clients
    )
    return _encrypted_input(keys, params, sender, packing.pack(vector), signed_for=signed_for)


def _replacing(sender: int, replace: Callable[[EncryptedInput], Sequence[Message]]) -> Interceptor:
    """An interceptor that delivers ``replace(upload)`` instead of ``sender``'s upload."""

    def interceptor(round_index: int, message: Message) -> Message | Sequence[Message] | None:
        if isinstance(message, EncryptedInput) and message.sender == sender:
            return replace(message)
        return message

    return interceptor


def _recorder(kind: type[Message]) -> tuple[list[Message], Interceptor]:
    """A list and an interceptor that appends every message of type ``kind`` to it."""
    seen: list[Message] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, kind):
            seen.append(message)
        return message

    return seen, interceptor


def _client(keys: Keys, params: PaillierParams, client_id: int = 0) -> PaillierClient:
    return PaillierClient(
        client_id,
        session_id=params.session_id,
        round_id=params.round_id,
        public_key=_public(keys),
        identity=_IDENTITIES[client_id],
    )


def _server_with_uploads(
    keys: Keys, params: PaillierParams, inputs: Inputs, senders: Sequence[int]
) -> tuple[PaillierServer, list[EncryptedInput]]:
    """A server that started and received honest, signed uploads from ``senders``."""
    server = PaillierServer(params, _public(keys), _ROSTER)
    setups = {m.recipient: m for m in server.start()}
    uploads: list[EncryptedInput] = []
    for u in senders:
        client = _client(keys, params, u)
        client.receive(setups[u])
        (upload,) = client.submit_input(inputs[u])
        assert isinstance(upload, EncryptedInput)
        server.receive(upload)
        uploads.append(upload)
    return server, uploads


def _uploads(
    keys: Keys, params: PaillierParams, inputs: Inputs, senders: Sequence[int]
) -> list[EncryptedInput]:
    """Honest, signed uploads of ``senders`` for ``params``' round (through a real server)."""
    return _server_with_uploads(keys, params, inputs, senders)[1]


def _request(
    params: PaillierParams,
    uploads: Sequence[EncryptedInput],
    *,
    recipient: int = KEY_HOLDER_ID,
    **overrides: Any,
) -> DecryptionRequest:
    """A decryption request for ``params``' round, as the server would send it."""
    fields: dict[str, Any] = {
        "session_id": params.session_id,
        "round_id": params.round_id,
        "sender": SERVER_ID,
        "recipient": recipient,
        "vector_length": params.vector_length,
        "uploads": tuple(uploads),
    }
    fields.update(overrides)
    return DecryptionRequest(**fields)


def _setup(keys: Keys, params: PaillierParams, **overrides: Any) -> PaillierSetup:
    fields: dict[str, Any] = {
        "session_id": params.session_id,
        "round_id": params.round_id,
        "sender": SERVER_ID,
        "recipient": 0,
        "public_key_n": int(plain_key(_public(keys)).n),
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
    roster: Final = _ROSTER
    identities: Final = _IDENTITIES
    public = staticmethod(_public)
    object_graph = staticmethod(_object_graph)
    session = staticmethod(_session)
    params = staticmethod(_params)
    key_holder = staticmethod(_key_holder)
    committee = staticmethod(_committee)
    inputs = staticmethod(_inputs)
    plain_sum = staticmethod(_plain_sum)
    assert_exact = staticmethod(_assert_exact)
    simulate = staticmethod(_simulate)
    simulate_committee = staticmethod(_simulate_committee)
    result = staticmethod(_result)
    chunks = staticmethod(_chunks)
    signature = staticmethod(_signature)
    resigned = staticmethod(_resigned)
    with_chunk = staticmethod(_with_chunk)
    encrypted_input = staticmethod(_encrypted_input)
    honest_upload_under = staticmethod(_honest_upload_under)
    replacing = staticmethod(_replacing)
    recorder = staticmethod(_recorder)
    server_with_uploads = staticmethod(_server_with_uploads)
    shape_of = staticmethod(_shape_of)
    uploads = staticmethod(_uploads)
    request = staticmethod(_request)
    client = staticmethod(_client)
    setup = staticmethod(_setup)
    abort = staticmethod(_abort)


@pytest.fixture(scope="session")
def kit() -> type[PaillierKit]:
    """The shared helpers: :class:`PaillierKit`."""
    return PaillierKit
