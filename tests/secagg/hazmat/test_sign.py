"""Ed25519 identity signatures: RFC 8032 known answers, binding to context, one opaque error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import InvalidSignatureError, ParameterError
from secagg.hazmat.sign import (
    SIGNATURE_BYTES,
    SignaturePurpose,
    bound_message,
    generate_identity,
    identity_from_private_bytes,
    sign,
    verify,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "vectors" / "ed25519_rfc8032.json").read_text()
)["vectors"]
SESSION = bytes(range(16))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_sign_matches_rfc_8032(vector: dict[str, str]) -> None:
    key = identity_from_private_bytes(bytes.fromhex(vector["secret_key"]))
    message = bytes.fromhex(vector["message"])
    assert key.public_bytes.hex() == vector["public_key"]
    assert sign(key, message).hex() == vector["signature"]
    verify(bytes.fromhex(vector["public_key"]), message, bytes.fromhex(vector["signature"]))


@given(body=st.binary(max_size=64), round_id=st.integers(0, 2**64 - 1))
@settings(max_examples=25, deadline=None)
def test_sign_verifies_only_in_its_own_context(body: bytes, round_id: int) -> None:
    key = generate_identity()
    message = bound_message(SignaturePurpose.KEY_ADVERTISEMENT, SESSION, round_id, 7, body)
    signature = sign(key, message)
    assert len(signature) == SIGNATURE_BYTES
    verify(key.public_bytes, message, signature)
    others = [
        bound_message(SignaturePurpose.CONSISTENCY, SESSION, round_id, 7, body),
        bound_message(SignaturePurpose.KEY_ADVERTISEMENT, bytes(16), round_id, 7, body),
        bound_message(SignaturePurpose.KEY_ADVERTISEMENT, SESSION, round_id ^ 1, 7, body),
        bound_message(SignaturePurpose.KEY_ADVERTISEMENT, SESSION, round_id, 8, body),
        bound_message(SignaturePurpose.KEY_ADVERTISEMENT, SESSION, round_id, 7, body + b"\0"),
    ]
    for other in others:
        with pytest.raises(InvalidSignatureError):
            verify(key.public_bytes, other, signature)


def test_verify_fails_the_same_way_for_every_defect() -> None:
    key = generate_identity()
    message = b"roster"
    signature = sign(key, message)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    cases = [
        (key.public_bytes, message, flipped),
        (generate_identity().public_bytes, message, signature),
        (key.public_bytes[:31], message, signature),
        (key.public_bytes, message, signature[:63]),
        (bytes(32), message, signature),
        ("not bytes", message, signature),
    ]
    for public_bytes, text, sig in cases:
        with pytest.raises(InvalidSignatureError, match=r"^invalid signature$"):
            verify(public_bytes, text, sig)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("session_id", "round_id", "signer"),
    [(b"short", 0, 0), (SESSION, -1, 0), (SESSION, 2**64, 0), (SESSION, 0, 2**32)],
)
def test_bound_message_rejects_bad_context(session_id: bytes, round_id: int, signer: int) -> None:
    with pytest.raises(ParameterError):
        bound_message(SignaturePurpose.CONSISTENCY, session_id, round_id, signer, b"")


def test_identity_from_private_bytes_rejects_wrong_length() -> None:
    with pytest.raises(ParameterError, match="32 bytes"):
        identity_from_private_bytes(bytes(31))
