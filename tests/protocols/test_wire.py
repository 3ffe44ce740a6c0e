"""Tests of the binary codec ``protocols.wire``: round trips, sizes, golden bytes and fuzzing."""

from __future__ import annotations

import importlib.util
import json
import math
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import wire
from protocols.messages import (
    MAX_PARTY_ID,
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
    ShareDigest,
    ShareEntry,
    SignatureEntry,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.encoding import ring_dtype
from secagg.errors import SecAggError, WireFormatError
from secagg.hazmat.shamir import FIELD_PRIME

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
GOLDEN_PATH = VECTORS_DIR / "wire_golden.json"
HEADER_BYTES = 38
MASKED_INPUT_PREFIX = 5  # modulus_bits u8 | length u32
MASKED_INPUT_SUFFIX = 4  # the count of the (here empty) rejected ids
SIGNATURE_BYTES = 64
SESSION = bytes(range(16))
#: The eleven messages of the masking protocol (SecAgg / SecAgg+, the consistency round of the
#: active model included), the subject of these tests.
MASKING_TYPES = (
    "RoundSetup",
    "KeyAdvertisement",
    "KeyRoster",
    "EncryptedShares",
    "ForwardedShares",
    "MaskedInput",
    "UnmaskRequest",
    "UnmaskResponse",
    "Abort",
    "ConsistencyRequest",
    "ConsistencySignature",
)
#: Their wire type codes (10 to 13 and 16 are the Paillier messages').
MASKING_TYPE_CODES = [*range(1, 10), 14, 15]
_CLASSES: dict[str, type] = {
    cls.__name__: cls for cls in wire._TYPE_CODES if cls.__name__ in MASKING_TYPES
}

# --------------------------------------------------------------------------------------------
# Strategies: valid messages of every type
# --------------------------------------------------------------------------------------------

client_ids = st.integers(0, MAX_PARTY_ID)
party_ids = st.integers(0, SERVER_ID)
public_keys = st.binary(min_size=32, max_size=32)
digests = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=SIGNATURE_BYTES, max_size=SIGNATURE_BYTES)
#: A key advertisement's signature: absent (semi-honest) or one Ed25519 signature.
optional_signatures = st.one_of(st.just(b""), signatures)
id_tuples = st.lists(client_ids, unique=True, max_size=12).map(tuple)


@st.composite
def headers(draw: st.DrawFn, *, client_to_server: bool) -> dict[str, Any]:
    client = draw(client_ids)
    return {
        "session_id": draw(st.binary(min_size=16, max_size=16)),
        "round_id": draw(st.integers(0, 2**64 - 1)),
        "sender": client if client_to_server else SERVER_ID,
        "recipient": SERVER_ID if client_to_server else client,
    }


def _to_client() -> st.SearchStrategy[dict[str, Any]]:
    return headers(client_to_server=False)


def _to_server() -> st.SearchStrategy[dict[str, Any]]:
    return headers(client_to_server=True)


roster_entries = st.builds(
    RosterEntry,
    client_id=client_ids,
    mask_public_key=public_keys,
    share_public_key=public_keys,
    seed_commitment=digests,
    signature=optional_signatures,
)
share_digests = st.builds(ShareDigest, holder=client_ids, seed_share=digests, key_share=digests)
signature_entries = st.lists(
    st.builds(SignatureEntry, signer=client_ids, signature=signatures),
    max_size=6,
    unique_by=lambda e: e.signer,
).map(tuple)
sealed = st.builds(SealedShares, peer=client_ids, ciphertext=st.binary(min_size=1, max_size=1024))
share_values = st.integers(0, FIELD_PRIME - 1)


def _share_entries() -> st.SearchStrategy[tuple[ShareEntry, ...]]:
    return st.lists(
        st.builds(ShareEntry, owner=client_ids, value=share_values),
        max_size=8,
        unique_by=lambda e: e.owner,
    ).map(tuple)


@st.composite
def ring_vectors(draw: st.DrawFn, modulus_bits: int, max_size: int = 40) -> np.ndarray:
    values = draw(st.lists(st.integers(0, 2**modulus_bits - 1), max_size=max_size))
    return np.array(values, dtype=ring_dtype(modulus_bits))


@st.composite
def masked_inputs(draw: st.DrawFn) -> MaskedInput:
    modulus_bits = draw(st.integers(1, 64))
    return MaskedInput(
        **draw(_to_server()),
        modulus_bits=modulus_bits,
        vector=draw(ring_vectors(modulus_bits)),
        rejected=draw(id_tuples),
    )


@st.composite
def _with_header(draw: st.DrawFn, /, cls: type, header: st.SearchStrategy, **fields: Any) -> Any:
    return cls(**draw(header), **{name: draw(s) for name, s in fields.items()})


MESSAGE_STRATEGIES: dict[str, st.SearchStrategy[Message]] = {
    "RoundSetup": _with_header(
        RoundSetup,
        _to_client(),
        threshold=st.integers(1, 2**32 - 1),
        vector_length=st.integers(1, 2**32 - 1),
        modulus_bits=st.integers(1, 64),
        neighbours=id_tuples,
    ),
    "KeyAdvertisement": _with_header(
        KeyAdvertisement,
        _to_server(),
        mask_public_key=public_keys,
        share_public_key=public_keys,
        seed_commitment=digests,
        signature=optional_signatures,
    ),
    "KeyRoster": _with_header(
        KeyRoster, _to_client(), entries=st.lists(roster_entries, max_size=8).map(tuple)
    ),
    "EncryptedShares": _with_header(
        EncryptedShares,
        _to_server(),
        bundles=st.lists(sealed, max_size=6).map(tuple),
        digests=st.lists(share_digests, max_size=6).map(tuple),
    ),
    "ForwardedShares": _with_header(
        ForwardedShares, _to_client(), bundles=st.lists(sealed, max_size=6).map(tuple)
    ),
    "MaskedInput": masked_inputs(),
    "ConsistencyRequest": _with_header(ConsistencyRequest, _to_client(), survivors=id_tuples),
    "ConsistencySignature": _with_header(ConsistencySignature, _to_server(), signature=signatures),
    "UnmaskRequest": _with_header(
        UnmaskRequest,
        _to_client(),
        survivors=id_tuples,
        dropped=id_tuples,
        signatures=signature_entries,
    ),
    "UnmaskResponse": _with_header(
        UnmaskResponse,
        _to_server(),
        self_mask_shares=_share_entries(),
        mask_key_shares=_share_entries(),
    ),
    "Abort": _with_header(
        Abort, st.one_of(_to_client(), _to_server()), reason=st.text(max_size=1024)
    ),
}
any_message = st.one_of(*MESSAGE_STRATEGIES.values())


def _header(*, to_server: bool = True, client: int = 7) -> dict[str, Any]:
    return {
        "session_id": SESSION,
        "round_id": 42,
        "sender": client if to_server else SERVER_ID,
        "recipient": SERVER_ID if to_server else client,
    }


def _masked(modulus_bits: int, values: Any, rejected: tuple[int, ...] = ()) -> MaskedInput:
    vector = np.asarray(values, dtype=ring_dtype(modulus_bits))
    return MaskedInput(**_header(), modulus_bits=modulus_bits, vector=vector, rejected=rejected)


def _decode_checked(data: bytes) -> Message | None:
    """Decode ``data``; WireFormatError is the only legal failure (anything else propagates).

    A successful decode of a masking message must be canonical: re-encoding gives the very same
    bytes, so no two byte strings carry the same message.
    """
    try:
        message = wire.decode(data)
    except WireFormatError:
        return None
    if type(message).__name__ in MASKING_TYPES:
        assert wire.encode(message) == data
    return message


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def test_wire_strategies_cover_every_masking_message_type() -> None:
    assert set(MESSAGE_STRATEGIES) == set(MASKING_TYPES)
    assert set(MASKING_TYPES) <= {cls.__name__ for cls in wire._TYPE_CODES}
    # The masking messages keep their wire type codes 1..9; the consistency round's are 14, 15.
    assert sorted(wire._TYPE_CODES[_CLASSES[name]] for name in MASKING_TYPES) == MASKING_TYPE_CODES


@pytest.mark.parametrize("type_name", sorted(MESSAGE_STRATEGIES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_wire_round_trip_each_type(type_name: str, data: st.DataObject) -> None:
    message = data.draw(MESSAGE_STRATEGIES[type_name])
    encoded = wire.encode(message)
    assert isinstance(encoded, bytes)
    assert wire.encoded_size(message) == len(encoded)
    decoded = wire.decode(encoded)
    assert type(decoded) is type(message)
    assert decoded == message


@settings(max_examples=200, deadline=None)
@given(message=masked_inputs())
def test_wire_round_trip_masked_input_keeps_ring_dtype(message: MaskedInput) -> None:
    decoded = wire.decode(wire.encode(message))
    assert isinstance(decoded, MaskedInput)
    assert decoded == message
    assert decoded.vector.dtype == ring_dtype(message.modulus_bits)
    assert decoded.vector.dtype == (np.uint32 if message.modulus_bits <= 32 else np.uint64)
    assert decoded.vector.flags.writeable


@pytest.mark.parametrize("modulus_bits", [1, 7, 8, 9, 16, 31, 32, 33, 40, 63, 64])
def test_wire_round_trip_masked_input_extreme_values(modulus_bits: int) -> None:
    top = 2**modulus_bits - 1
    message = _masked(modulus_bits, [0, top, top >> 1, 1, top])
    assert wire.decode(wire.encode(message)) == message


def test_wire_round_trip_empty_collections() -> None:
    messages: list[Message] = [
        RoundSetup(
            **_header(to_server=False),
            threshold=1,
            vector_length=1,
            modulus_bits=1,
            neighbours=(),
        ),
        KeyRoster(**_header(to_server=False), entries=()),
        EncryptedShares(**_header(), bundles=(), digests=()),
        ForwardedShares(**_header(to_server=False), bundles=()),
        _masked(16, []),
        ConsistencyRequest(**_header(to_server=False), survivors=()),
        UnmaskRequest(**_header(to_server=False), survivors=(), dropped=(), signatures=()),
        UnmaskResponse(**_header(), self_mask_shares=(), mask_key_shares=()),
        Abort(**_header(), reason=""),
    ]
    for message in messages:
        assert wire.decode(wire.encode(message)) == message


def test_wire_decode_accepts_bytearray_and_memoryview() -> None:
    message = _masked(12, [1, 2, 4095])
    encoded = wire.encode(message)
    # decode() is annotated ``bytes`` but documented (and checked) to take any of the three.
    assert wire.decode(bytearray(encoded)) == message
    assert wire.decode(memoryview(encoded)) == message


# --------------------------------------------------------------------------------------------
# Upload size
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modulus_bits", range(1, 65))
def test_wire_masked_input_costs_ceil_k_over_8_bytes_per_value(modulus_bits: int) -> None:
    length = 100_000
    rng = np.random.default_rng(modulus_bits)
    values = rng.integers(0, 2**modulus_bits - 1, size=length, dtype=np.uint64, endpoint=True)
    message = _masked(modulus_bits, values)
    encoded = wire.encode(message)
    width = math.ceil(modulus_bits / 8)
    assert wire.packed_size(length, modulus_bits) == length * width
    framing = HEADER_BYTES + MASKED_INPUT_PREFIX + MASKED_INPUT_SUFFIX
    assert len(encoded) == framing + length * width
    assert len(encoded) / length <= 1.02 * width
    assert wire.encoded_size(message) == len(encoded)
    assert wire.decode(encoded) == message


def test_wire_masked_input_rejected_ids_cost_four_bytes_each() -> None:
    plain = _masked(20, [1, 2, 3])
    accusing = _masked(20, [1, 2, 3], rejected=(9, 4, 11))
    encoded = wire.encode(accusing)
    assert len(encoded) == len(wire.encode(plain)) + 3 * 4
    assert wire.encoded_size(accusing) == len(encoded)
    decoded = wire.decode(encoded)
    assert isinstance(decoded, MaskedInput)
    assert decoded.rejected == (9, 4, 11)
    # ``rejected`` is part of the message: the same vector with other accusations differs.
    assert decoded == accusing
    assert decoded != plain


# --------------------------------------------------------------------------------------------
# Golden bytes
# --------------------------------------------------------------------------------------------

_BYTES_FIELDS = {
    "session_id",
    "mask_public_key",
    "share_public_key",
    "seed_commitment",
    "signature",
    "ciphertext",
}


def _from_json(type_name: str, fields: dict[str, Any]) -> Message:
    """Rebuild a message from the golden file's JSON ``fields``."""
    kwargs: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _BYTES_FIELDS:
            kwargs[name] = bytes.fromhex(value)
        elif name == "entries":
            kwargs[name] = tuple(
                RosterEntry(
                    client_id=e["client_id"],
                    mask_public_key=bytes.fromhex(e["mask_public_key"]),
                    share_public_key=bytes.fromhex(e["share_public_key"]),
                    seed_commitment=bytes.fromhex(e["seed_commitment"]),
                    signature=bytes.fromhex(e["signature"]),
                )
                for e in value
            )
        elif name == "digests":
            kwargs[name] = tuple(
                ShareDigest(
                    holder=d["holder"],
                    seed_share=bytes.fromhex(d["seed_share"]),
                    key_share=bytes.fromhex(d["key_share"]),
                )
                for d in value
            )
        elif name == "signatures":
            kwargs[name] = tuple(
                SignatureEntry(signer=e["signer"], signature=bytes.fromhex(e["signature"]))
                for e in value
            )
        elif name == "bundles":
            kwargs[name] = tuple(
                SealedShares(peer=b["peer"], ciphertext=bytes.fromhex(b["ciphertext"]))
                for b in value
            )
        elif name in ("self_mask_shares", "mask_key_shares"):
            kwargs[name] = tuple(ShareEntry(owner=s["owner"], value=s["value"]) for s in value)
        elif name in ("neighbours", "survivors", "dropped", "rejected"):
            kwargs[name] = tuple(value)
        elif name == "vector":
            kwargs[name] = np.array(value, dtype=ring_dtype(fields["modulus_bits"]))
        else:
            kwargs[name] = value
    return _CLASSES[type_name](**kwargs)  # type: ignore[no-any-return]


def _golden() -> dict[str, Any]:
    return json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _golden_ids() -> list[str]:
    return [v["name"] for v in _golden()["vectors"]]


def test_wire_golden_file_covers_all_eleven_types() -> None:
    golden = _golden()
    assert golden["wire_version"] == wire.VERSION == 3
    assert golden["header_bytes"] == HEADER_BYTES
    assert {v["type"] for v in golden["vectors"]} == set(_CLASSES)
    assert len(_CLASSES) == 11


def test_wire_golden_file_covers_every_optional_field_both_ways() -> None:
    """Signed and unsigned adverts and roster entries, accusations, digests and relayed
    signatures: each new field of wire version 2 appears both filled and empty."""
    messages = [_from_json(v["type"], v["fields"]) for v in _golden()["vectors"]]
    adverts = [m for m in messages if isinstance(m, KeyAdvertisement)]
    entries = [e for m in messages if isinstance(m, KeyRoster) for e in m.entries]
    inputs = [m for m in messages if isinstance(m, MaskedInput)]
    requests = [m for m in messages if isinstance(m, UnmaskRequest)]
    shares = [m for m in messages if isinstance(m, EncryptedShares)]
    assert {len(m.signature) for m in adverts} == {0, SIGNATURE_BYTES}
    assert {len(e.signature) for e in entries} == {0, SIGNATURE_BYTES}
    assert {bool(m.rejected) for m in inputs} == {False, True}
    assert {bool(m.signatures) for m in requests} == {False, True}
    assert all(m.digests for m in shares) and shares


@pytest.mark.parametrize("name", _golden_ids())
def test_wire_golden_bytes(name: str) -> None:
    (vector,) = [v for v in _golden()["vectors"] if v["name"] == name]
    message = _from_json(vector["type"], vector["fields"])
    expected = bytes.fromhex(vector["hex"])
    assert wire.encode(message).hex() == vector["hex"]
    assert wire.decode(expected) == message
    assert expected[:4] == b"SAGG"
    assert expected[4] == wire.VERSION


def test_wire_golden_file_matches_its_generator() -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_wire_golden", VECTORS_DIR / "generate_wire_golden.py"
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.build() == _golden()


# --------------------------------------------------------------------------------------------
# Rejections
# --------------------------------------------------------------------------------------------


def _sample_encodings() -> dict[str, bytes]:
    """One valid, non-trivial encoding per message type, keyed by type name."""
    golden = _golden()
    first: dict[str, bytes] = {}
    for vector in golden["vectors"]:
        first.setdefault(vector["type"], bytes.fromhex(vector["hex"]))
    return first


@pytest.mark.parametrize("type_name", sorted(_CLASSES))
def test_wire_decode_rejects_trailing_bytes(type_name: str) -> None:
    encoded = _sample_encodings()[type_name]
    for extra in (b"\x00", b"\xff" * 7):
        with pytest.raises(WireFormatError, match="trailing"):
            wire.decode(encoded + extra)


@pytest.mark.parametrize("type_name", sorted(_CLASSES))
def test_wire_decode_rejects_every_truncation(type_name: str) -> None:
    encoded = _sample_encodings()[type_name]
    for cut in range(len(encoded)):
        with pytest.raises(WireFormatError):
            wire.decode(encoded[:cut])


@pytest.mark.parametrize("magic", [b"SAGH", b"\x00\x00\x00\x00", b"sagg", b"GGAS"])
def test_wire_decode_rejects_bad_magic(magic: bytes) -> None:
    encoded = _sample_encodings()["KeyAdvertisement"]
    with pytest.raises(WireFormatError, match="magic"):
        wire.decode(magic + encoded[4:])


@pytest.mark.parametrize("version", [0, 1, 2, 4, 127, 255])
def test_wire_decode_rejects_unsupported_version(version: int) -> None:
    encoded = bytearray(_sample_encodings()["KeyAdvertisement"])
    encoded[4] = version
    with pytest.raises(WireFormatError, match="version"):
        wire.decode(bytes(encoded))


@pytest.mark.parametrize("code", [0, 99, 200, 255])
def test_wire_decode_rejects_unknown_type(code: int) -> None:
    encoded = bytearray(_sample_encodings()["KeyAdvertisement"])
    encoded[5] = code
    with pytest.raises(WireFormatError, match="type"):
        wire.decode(bytes(encoded))


#: Every pair of distinct types, EncryptedShares and ForwardedShares included: since wire
#: version 2 the dealer's share digests follow its bundles, so neither body decodes under the
#: other's type code (in version 1 they shared one layout).
_SWAPPED_TYPE_PAIRS = [
    (source, target)
    for source in sorted(_CLASSES)
    for target in sorted(_CLASSES)
    if source != target
]


def _swap_type_code(encoded: bytes, target: str) -> bytes:
    return encoded[:5] + bytes([wire._TYPE_CODES[_CLASSES[target]]]) + encoded[6:]


@pytest.mark.parametrize(
    ("source", "target"), _SWAPPED_TYPE_PAIRS, ids=[f"{s}-as-{t}" for s, t in _SWAPPED_TYPE_PAIRS]
)
def test_wire_decode_rejects_valid_body_under_another_type_code(source: str, target: str) -> None:
    swapped = _swap_type_code(_sample_encodings()[source], target)
    with pytest.raises(WireFormatError):
        wire.decode(swapped)


def test_wire_share_bundle_messages_differ_only_by_the_digests() -> None:
    """A ForwardedShares body plus an empty digest list is an EncryptedShares body."""
    encoded = _sample_encodings()["ForwardedShares"]
    original = wire.decode(encoded)
    assert isinstance(original, ForwardedShares)
    swapped = _swap_type_code(encoded, "EncryptedShares") + struct.pack(">I", 0)
    decoded = wire.decode(swapped)
    assert decoded == EncryptedShares(
        session_id=original.session_id,
        round_id=original.round_id,
        sender=original.sender,
        recipient=original.recipient,
        bundles=original.bundles,
        digests=(),
    )
    assert wire.encode(decoded) == swapped


@pytest.mark.parametrize("payload", ["not bytes", None, 12, [1, 2, 3]])
def test_wire_decode_rejects_non_bytes(payload: object) -> None:
    with pytest.raises(WireFormatError):
        wire.decode(payload)  # type: ignore[arg-type]


@pytest.mark.parametrize("modulus_bits", [1, 2, 7, 12, 20, 31, 33, 47, 63])
def test_wire_decode_rejects_values_outside_the_ring(modulus_bits: int) -> None:
    width = math.ceil(modulus_bits / 8)
    encoded = bytearray(wire.encode(_masked(modulus_bits, [0, 1, 0])))
    # Set every bit of the top byte of the middle value: that value is then >= 2^k.
    encoded[HEADER_BYTES + MASKED_INPUT_PREFIX + 2 * width - 1] = 0xFF
    with pytest.raises(WireFormatError, match="outside"):
        wire.decode(bytes(encoded))


@pytest.mark.parametrize("modulus_bits", [0, 65, 128, 255])
def test_wire_decode_rejects_bad_modulus_bits(modulus_bits: int) -> None:
    encoded = bytearray(wire.encode(_masked(8, [1, 2])))
    encoded[HEADER_BYTES] = modulus_bits
    with pytest.raises(WireFormatError):
        wire.decode(bytes(encoded))


def test_wire_decode_rejects_invalid_header_fields() -> None:
    encoded = wire.encode(_masked(8, [1]))
    both_clients = encoded[:30] + struct.pack(">II", 3, 4) + encoded[38:]
    both_server = encoded[:30] + struct.pack(">II", SERVER_ID, SERVER_ID) + encoded[38:]
    for data in (both_clients, both_server):
        with pytest.raises(WireFormatError):
            wire.decode(data)


def test_wire_decode_rejects_non_utf8_abort_reason() -> None:
    encoded = wire.encode(Abort(**_header(), reason="ab"))
    with pytest.raises(WireFormatError, match="UTF-8"):
        wire.decode(encoded[:-2] + b"\xff\xfe")


def test_wire_decode_rejects_overlong_abort_reason() -> None:
    encoded = bytearray(wire.encode(Abort(**_header(), reason="")))
    reason = b"x" * 2000
    data = bytes(encoded[:HEADER_BYTES]) + struct.pack(">H", len(reason)) + reason
    with pytest.raises(WireFormatError):
        wire.decode(data)


def test_wire_decode_rejects_invalid_message_contents() -> None:
    # Duplicate neighbour ids, a zero-length ciphertext, a share outside the field, a zero
    # threshold: each a well-formed byte layout whose message cannot be built.
    to_client = _header(to_server=False)
    setup = wire.encode(
        RoundSetup(**to_client, threshold=2, vector_length=3, modulus_bits=8, neighbours=(1, 2))
    )
    duplicate = setup[:-4] + struct.pack(">I", 1)
    zero_threshold = setup[:HEADER_BYTES] + struct.pack(">I", 0) + setup[HEADER_BYTES + 4 :]
    bundle = SealedShares(peer=1, ciphertext=b"x")
    shares = wire.encode(EncryptedShares(**_header(), bundles=(bundle,), digests=()))
    # The bundle's size field, its one ciphertext byte, then the (empty) digest count.
    empty_bundle = shares[:-7] + struct.pack(">H", 0) + shares[-4:]
    share = ShareEntry(owner=1, value=5)
    response = wire.encode(
        UnmaskResponse(**_header(), self_mask_shares=(share,), mask_key_shares=())
    )
    offset = HEADER_BYTES + 4 + 4
    big_share = response[:offset] + b"\xff" * 33 + response[offset + 33 :]
    for data in (duplicate, zero_threshold, empty_bundle, big_share, *_invalid_v2_contents()):
        with pytest.raises(WireFormatError):
            wire.decode(data)


def _invalid_v2_contents() -> list[bytes]:
    """Well-formed layouts of wire version 2's new fields whose messages cannot be built: a
    client accused twice, a signer relayed twice, a survivor named twice, a signature presence
    flag other than 0 or 1, and a digest naming the server as a share holder."""
    accusing = wire.encode(_masked(8, [1], rejected=(3, 4)))
    accused_twice = accusing[:-4] + struct.pack(">I", 3)
    signed = SignatureEntry(signer=3, signature=bytes(SIGNATURE_BYTES))
    request = wire.encode(
        UnmaskRequest(
            **_header(to_server=False),
            survivors=(3, 7),
            dropped=(),
            signatures=(signed, SignatureEntry(signer=4, signature=bytes(SIGNATURE_BYTES))),
        )
    )
    second_signer = len(request) - (4 + SIGNATURE_BYTES)
    signer_twice = request[:second_signer] + struct.pack(">I", 3) + request[second_signer + 4 :]
    consistency = wire.encode(ConsistencyRequest(**_header(to_server=False), survivors=(3, 4)))
    survivor_twice = consistency[:-4] + struct.pack(">I", 3)
    advert = KeyAdvertisement(
        **_header(),
        mask_public_key=bytes(32),
        share_public_key=b"1" * 32,
        seed_commitment=b"2" * 32,
    )
    unsigned = wire.encode(advert)
    bad_flag = unsigned[:-1] + b"\x02" + bytes(2 * SIGNATURE_BYTES)
    digest = ShareDigest(holder=3, seed_share=bytes(32), key_share=bytes(32))
    shares = wire.encode(EncryptedShares(**_header(), bundles=(), digests=(digest,)))
    holder_offset = HEADER_BYTES + 4 + 4
    server_holder = (
        shares[:holder_offset] + struct.pack(">I", SERVER_ID) + shares[holder_offset + 4 :]
    )
    # Each mutation alone is what makes its message invalid: the originals decode.
    for original in (accusing, request, consistency, unsigned, shares):
        wire.decode(original)
    return [accused_twice, signer_twice, survivor_twice, bad_flag, server_holder]


@pytest.mark.parametrize("value", ["not a message", None, b"SAGG", 42, {"round_id": 1}], ids=repr)
def test_wire_encode_rejects_non_message(value: object) -> None:
    with pytest.raises(TypeError, match="not a protocol message"):
        wire.encode(value)  # type: ignore[arg-type]


def test_wire_encode_rejects_message_parts() -> None:
    parts: list[object] = [
        RosterEntry(
            client_id=1,
            mask_public_key=bytes(32),
            share_public_key=bytes(32),
            seed_commitment=bytes(32),
        ),
        SealedShares(peer=1, ciphertext=b"x"),
        ShareEntry(owner=1, value=1),
        ShareDigest(holder=1, seed_share=bytes(32), key_share=bytes(32)),
        SignatureEntry(signer=1, signature=bytes(SIGNATURE_BYTES)),
    ]
    for part in parts:
        with pytest.raises(TypeError):
            wire.encode(part)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Huge declared lengths fail fast without allocating
# --------------------------------------------------------------------------------------------


def _length_field_cases() -> list[tuple[str, bytes, int, str]]:
    """(label, valid encoding, offset of a length field, struct format of that field)."""
    h = HEADER_BYTES
    to_client = _header(to_server=False)
    setup = RoundSetup(**to_client, threshold=2, vector_length=3, modulus_bits=8, neighbours=(1,))
    entry = RosterEntry(
        client_id=1,
        mask_public_key=bytes(32),
        share_public_key=b"1" * 32,
        seed_commitment=b"2" * 32,
        signature=b"3" * SIGNATURE_BYTES,
    )
    roster = KeyRoster(**to_client, entries=(entry,))
    bundles = (SealedShares(peer=1, ciphertext=b"abc"),)
    digests = (ShareDigest(holder=1, seed_share=bytes(32), key_share=b"4" * 32),)
    shares = wire.encode(EncryptedShares(**_header(), bundles=bundles, digests=digests))
    signed = (SignatureEntry(signer=1, signature=b"5" * SIGNATURE_BYTES),)
    request = UnmaskRequest(**to_client, survivors=(1, 7), dropped=(2,), signatures=signed)
    consistency = ConsistencyRequest(**to_client, survivors=(1, 7))
    accusing = wire.encode(_masked(64, [1, 2], rejected=(3,)))
    response = UnmaskResponse(
        **_header(),
        self_mask_shares=(ShareEntry(owner=1, value=3),),
        mask_key_shares=(ShareEntry(owner=2, value=4),),
    )
    return [
        ("setup.neighbours", wire.encode(setup), h + 9, "I"),
        ("roster.entries", wire.encode(roster), h, "I"),
        ("encrypted.count", shares, h, "I"),
        ("encrypted.size", shares, h + 8, "H"),
        ("encrypted.digests", shares, h + 4 + 6 + 3, "I"),
        ("forwarded.count", wire.encode(ForwardedShares(**to_client, bundles=bundles)), h, "I"),
        ("masked.length", wire.encode(_masked(64, [1, 2])), h + 1, "I"),
        ("masked.length_k1", wire.encode(_masked(1, [1, 0])), h + 1, "I"),
        ("masked.rejected", accusing, h + 5 + 2 * 8, "I"),
        ("consistency.survivors", wire.encode(consistency), h, "I"),
        ("request.survivors", wire.encode(request), h, "I"),
        ("request.dropped", wire.encode(request), h + 12, "I"),
        ("request.signatures", wire.encode(request), h + 12 + 8, "I"),
        ("response.self_mask", wire.encode(response), h, "I"),
        ("response.mask_key", wire.encode(response), h + 4 + 37, "I"),
        ("abort.reason", wire.encode(Abort(**_header(), reason="hi")), h, "H"),
    ]


@pytest.mark.parametrize("case", _length_field_cases(), ids=lambda c: c[0])
def test_wire_decode_huge_length_fails_fast_without_allocating(
    case: tuple[str, bytes, int, str],
) -> None:
    _, encoded, offset, fmt = case
    size = struct.calcsize(">" + fmt)
    # The field really is where we think: the unmodified encoding decodes.
    assert wire.decode(encoded) is not None
    huge_values = [2**31, 2**32 - 1, wire.MAX_ENTRIES + 1] if fmt == "I" else [2**16 - 1]
    for huge in huge_values:
        data = encoded[:offset] + struct.pack(">" + fmt, huge) + encoded[offset + size :]
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(WireFormatError):
                wire.decode(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert time.perf_counter() - started < 0.5
        assert peak < 1 << 20, f"decoding allocated {peak} bytes for a {len(data)}-byte message"


def test_wire_decode_maximum_vector_length_without_data_fails_fast() -> None:
    data = wire.encode(_masked(64, []))
    declared = data[: HEADER_BYTES + 1] + struct.pack(">I", wire.MAX_VECTOR_LENGTH)
    tracemalloc.start()
    try:
        with pytest.raises(WireFormatError, match="truncated"):
            wire.decode(declared + bytes(64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    too_long = data[: HEADER_BYTES + 1] + struct.pack(">I", wire.MAX_VECTOR_LENGTH + 1)
    with pytest.raises(WireFormatError, match="exceeds"):
        wire.decode(too_long)


# --------------------------------------------------------------------------------------------
# Fuzzing: only WireFormatError may escape decode
# --------------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=512))
def test_wire_decode_random_bytes_raise_only_wire_format_error(data: bytes) -> None:
    _decode_checked(data)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=256), code=st.integers(0, 255), version=st.sampled_from([3, 3, 0, 2])
)
def test_wire_decode_random_bodies_behind_valid_header(
    body: bytes, code: int, version: int
) -> None:
    header = struct.pack(">4sBB16sQII", b"SAGG", version, code, SESSION, 1, 5, SERVER_ID)
    _decode_checked(header + body)


_HUGE_WORDS = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x10\x00\x01"]


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    data = bytearray(wire.encode(draw(any_message)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["flip", "insert", "delete", "truncate", "huge", "version", "type"])
        )
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[position:]
        elif kind == "huge":
            # Overwrite a would-be length field (anywhere in the body) with a huge value.
            start = draw(st.integers(HEADER_BYTES, max(HEADER_BYTES, len(data) - 1)))
            data[start : start + 4] = draw(st.sampled_from(_HUGE_WORDS))
        elif kind == "version" and len(data) > 4:
            data[4] = draw(st.integers(0, 255))
        elif kind == "type" and len(data) > 5:
            data[5] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_encodings())
def test_wire_decode_mutated_encodings_raise_only_wire_format_error(data: bytes) -> None:
    _decode_checked(data)


@settings(max_examples=200, deadline=None)
@given(message=any_message, position=st.integers(0, 10_000), value=st.integers(1, 255))
def test_wire_decode_single_byte_flip_never_crashes(
    message: Message, position: int, value: int
) -> None:
    data = bytearray(wire.encode(message))
    data[position % len(data)] ^= value
    decoded = _decode_checked(bytes(data))
    assert decoded != message


def test_wire_format_error_is_a_secagg_error() -> None:
    assert issubclass(WireFormatError, SecAggError)
    with pytest.raises(SecAggError):
        wire.decode(b"")


# --------------------------------------------------------------------------------------------
# Defects found by these tests and fixed since: they stay as regression tests
# --------------------------------------------------------------------------------------------


def test_wire_encodes_non_contiguous_masked_vector() -> None:
    strided = np.arange(20, dtype=np.uint32)[::2]
    message = MaskedInput(**_header(), modulus_bits=12, vector=strided)
    assert wire.decode(wire.encode(message)) == message


def test_wire_masked_input_values_outside_ring_are_refused_not_truncated() -> None:
    with pytest.raises(WireFormatError, match="outside Z_2"):
        MaskedInput(**_header(), modulus_bits=8, vector=np.array([300], dtype=np.uint32))


def test_wire_masked_input_dtype_must_match_ring() -> None:
    with pytest.raises(WireFormatError, match="travels as uint32"):
        MaskedInput(**_header(), modulus_bits=8, vector=np.array([3], dtype=np.uint64))


@pytest.mark.parametrize("field", ["threshold", "vector_length"])
def test_wire_round_setup_counts_beyond_u32_are_refused(field: str) -> None:
    fields: dict[str, Any] = {"threshold": 2, "vector_length": 3, field: 2**32}
    with pytest.raises(WireFormatError, match=field):
        RoundSetup(**_header(to_server=False), modulus_bits=8, neighbours=(1,), **fields)


@pytest.mark.parametrize("field", ["threshold", "vector_length"])
def test_wire_round_setup_counts_at_u32_max_round_trip(field: str) -> None:
    fields: dict[str, Any] = {"threshold": 2, "vector_length": 3, field: 2**32 - 1}
    message = RoundSetup(**_header(to_server=False), modulus_bits=8, neighbours=(1,), **fields)
    assert wire.decode(wire.encode(message)) == message


def test_wire_abort_reason_must_be_utf8_encodable() -> None:
    with pytest.raises(WireFormatError, match="UTF-8"):
        Abort(**_header(), reason="bad \ud800 surrogate")
