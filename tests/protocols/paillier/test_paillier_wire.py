"""The Paillier messages on the wire: EncryptedInput, DecryptionRequest and DecryptionShare.

Any well-formed message survives encode/decode unchanged (property tests); a malformed nested
upload inside a DecryptionRequest (truncated, padded, of another type or version, or counted
wrongly) is refused with :class:`WireFormatError`, and so is every corruption of an encoded
request: the decoder raises nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import wire
from protocols.messages import (
    KEY_HOLDER_ID,
    MAX_DECRYPTORS,
    MAX_PARTY_ID,
    SERVER_ID,
    Abort,
    DecryptionRequest,
    DecryptionShare,
    EncryptedInput,
    decryptor_id,
)
from secagg.errors import WireFormatError
from secagg.hazmat.sign import SIGNATURE_BYTES

SESSION: Final = bytes(range(16))
#: Offset of the type code in a message header (magic, version, then the code).
CODE_OFFSET: Final = 5
#: Bytes of a DecryptionRequest body before its first nested upload: vector length, count.
REQUEST_PREFIX: Final = 8

sessions = st.binary(min_size=16, max_size=16)
rounds = st.integers(0, 2**64 - 1)


@st.composite
def encrypted_inputs(draw: st.DrawFn, session: bytes | None = None) -> EncryptedInput:
    width = draw(st.integers(1, 1024))
    count = draw(st.integers(0, 3))
    return EncryptedInput(
        session_id=session if session is not None else draw(sessions),
        round_id=draw(rounds),
        sender=draw(st.integers(0, MAX_PARTY_ID)),
        recipient=SERVER_ID,
        ciphertext_bytes=width,
        ciphertexts=draw(st.binary(min_size=width * count, max_size=width * count)),
        signature=draw(st.binary(min_size=SIGNATURE_BYTES, max_size=SIGNATURE_BYTES)),
    )


@st.composite
def decryption_requests(draw: st.DrawFn) -> DecryptionRequest:
    index = draw(st.integers(1, MAX_DECRYPTORS))
    return DecryptionRequest(
        session_id=draw(sessions),
        round_id=draw(rounds),
        sender=SERVER_ID,
        recipient=draw(st.sampled_from([decryptor_id(index), KEY_HOLDER_ID])),
        vector_length=draw(st.integers(1, 2**31)),
        uploads=tuple(draw(st.lists(encrypted_inputs(), min_size=1, max_size=4))),
    )


@st.composite
def decryption_shares(draw: st.DrawFn) -> DecryptionShare:
    index = draw(st.integers(1, MAX_DECRYPTORS))
    return DecryptionShare(
        session_id=draw(sessions),
        round_id=draw(rounds),
        sender=decryptor_id(index),
        recipient=SERVER_ID,
        index=index,
        partial=draw(st.binary(min_size=1, max_size=3000)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.one_of(encrypted_inputs(), decryption_requests(), decryption_shares()))
def test_paillier_messages_round_trip(
    message: EncryptedInput | DecryptionRequest | DecryptionShare,
) -> None:
    data = wire.encode(message)
    assert len(data) == wire.encoded_size(message)
    decoded = wire.decode(data)
    assert type(decoded) is type(message)
    assert decoded == message
    assert wire.encode(decoded) == data


def _upload(sender: int = 0, *, count: int = 2) -> EncryptedInput:
    return EncryptedInput(
        session_id=SESSION,
        round_id=7,
        sender=sender,
        recipient=SERVER_ID,
        ciphertext_bytes=8,
        ciphertexts=bytes(range(8 * count)),
        signature=bytes([sender + 1]) * SIGNATURE_BYTES,
    )


def _request(*uploads: EncryptedInput) -> DecryptionRequest:
    return DecryptionRequest(
        session_id=SESSION,
        round_id=7,
        sender=SERVER_ID,
        recipient=decryptor_id(1),
        vector_length=4,
        uploads=uploads,
    )


def _request_from(nested: list[bytes], *, count: int | None = None) -> bytes:
    """A DecryptionRequest on the wire whose uploads are the given byte strings."""
    header = wire.encode(_request(_upload()))[: -REQUEST_PREFIX - 4 - len(wire.encode(_upload()))]
    body = struct.pack(">II", 4, len(nested) if count is None else count)
    return header + body + b"".join(struct.pack(">I", len(n)) + n for n in nested)


def test_request_builder_makes_the_encoder_output() -> None:
    # Control for the hand-made requests below: with honest uploads they equal encode()'s.
    uploads = (_upload(0), _upload(1))
    honest = _request(*uploads)
    data = _request_from([wire.encode(u) for u in uploads])
    assert data == wire.encode(honest)
    assert wire.decode(data) == honest


def _other_version(data: bytes) -> bytes:
    return data[:4] + bytes([data[4] + 1]) + data[5:]


def _other_type(data: bytes) -> bytes:
    return data[:CODE_OFFSET] + bytes([99]) + data[CODE_OFFSET + 1 :]


MALFORMED: Final[dict[str, Callable[[bytes], list[bytes]]]] = {
    "truncated_upload": lambda u: [u[:-1]],
    "padded_upload": lambda u: [u + b"\x00"],
    "upload_without_signature": lambda u: [u[:-SIGNATURE_BYTES]],
    "empty_upload": lambda u: [b""],
    "bad_magic": lambda u: [b"XXXX" + u[4:]],
    "other_version": lambda u: [_other_version(u)],
    "unknown_type": lambda u: [_other_type(u)],
    "abort_instead_of_upload": lambda u: [
        wire.encode(
            Abort(session_id=SESSION, round_id=7, sender=0, recipient=SERVER_ID, reason="x")
        )
    ],
    "request_inside_request": lambda u: [wire.encode(_request(_upload()))],
    "no_uploads": lambda u: [],
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_nested_upload_is_a_wire_format_error(name: str) -> None:
    nested = MALFORMED[name](wire.encode(_upload()))
    with pytest.raises(WireFormatError):
        wire.decode(_request_from(nested))


@pytest.mark.parametrize(
    ("count", "present"),
    [(2, 1), (5, 1), (2**32 - 1, 1), (0, 1), (1, 2)],
    ids=["one_missing", "four_missing", "huge_count", "zero_count_with_data", "extra_upload"],
)
def test_upload_count_that_disagrees_with_the_body_is_a_wire_format_error(
    count: int, present: int
) -> None:
    nested = [wire.encode(_upload(u)) for u in range(present)]
    with pytest.raises(WireFormatError):
        wire.decode(_request_from(nested, count=count))


def test_nested_length_beyond_the_message_is_a_wire_format_error() -> None:
    upload = wire.encode(_upload())
    data = _request_from([upload])
    prefix = len(data) - len(upload) - 4
    lying = data[:prefix] + struct.pack(">I", len(upload) + 1) + upload
    with pytest.raises(WireFormatError, match="truncated"):
        wire.decode(lying)


def test_deeply_nested_requests_are_a_wire_format_error() -> None:
    data = _request_from([])
    for _ in range(3000):
        data = _request_from([data])
    with pytest.raises(WireFormatError):
        wire.decode(data)


@settings(max_examples=200, deadline=None)
@given(
    request=decryption_requests(),
    cut=st.integers(0, 2**20),
    flips=st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), max_size=3),
)
def test_corrupted_request_decodes_or_raises_only_wire_format_error(
    request: DecryptionRequest, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(wire.encode(request))
    for offset, mask in flips:
        data[offset % len(data)] ^= mask
    data = data[: len(data) - cut % 8] if cut % 2 else data
    try:
        decoded = wire.decode(bytes(data))
    except WireFormatError:
        return
    # Whatever decodes is a whole, valid message that encodes back to the same bytes.
    assert wire.encode(decoded) == bytes(data)
