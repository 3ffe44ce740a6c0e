"""X25519 agreement and context-bound HKDF-SHA256 (secagg.hazmat.kex) against RFC vectors."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from secagg.errors import InvalidCiphertextError, ParameterError
from secagg.hazmat.kex import (
    PUBLIC_KEY_BYTES,
    SESSION_ID_BYTES,
    KeyPair,
    Purpose,
    agree,
    derive_key,
    generate_keypair,
    hkdf_sha256,
    keypair_from_private_bytes,
)

_VECTORS_DIR = Path(__file__).resolve().parents[2] / "vectors"
_X25519: dict[str, Any] = json.loads((_VECTORS_DIR / "x25519_rfc7748.json").read_text())
_HKDF: dict[str, Any] = json.loads((_VECTORS_DIR / "hkdf_rfc5869.json").read_text())

_SECRET = bytes(range(32))
_SESSION = bytes(range(SESSION_ID_BYTES))
_BASE: dict[str, Any] = {
    "purpose": Purpose.PAIRWISE_MASK,
    "session_id": _SESSION,
    "round_id": 7,
    "party_a": 3,
    "party_b": 11,
}

# Points of small order on Curve25519 (and non-canonical encodings of them): an honest peer
# never sends one, and the shared secret they give is all zeros, independent of our key.
_LOW_ORDER_POINTS = [
    "0000000000000000000000000000000000000000000000000000000000000000",  # 0
    "0100000000000000000000000000000000000000000000000000000000000000",  # 1
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  # order 8
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",  # order 8
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p - 1
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p, i.e. 0
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p + 1, i.e. 1
]


def _derive(**changes: Any) -> bytes:
    return derive_key(_SECRET, **{**_BASE, **changes})


# --- X25519 -------------------------------------------------------------------------------------


def test_keypair_rfc7748_section_6_1_public_keys() -> None:
    vector = _X25519["diffie_hellman"]
    for name in ("alice", "bob"):
        private = bytes.fromhex(vector[f"{name}_private"])
        pair = keypair_from_private_bytes(private)
        assert pair.public_bytes.hex() == vector[f"{name}_public"]
        assert pair.private_bytes == private


def test_agree_rfc7748_section_6_1_shared_secret() -> None:
    vector = _X25519["diffie_hellman"]
    alice = bytes.fromhex(vector["alice_private"])
    bob = bytes.fromhex(vector["bob_private"])
    expected = vector["shared_secret"]
    assert agree(alice, bytes.fromhex(vector["bob_public"])).hex() == expected
    assert agree(bob, bytes.fromhex(vector["alice_public"])).hex() == expected


@pytest.mark.parametrize("vector", _X25519["scalar_multiplication"], ids=["first", "second"])
def test_agree_rfc7748_section_5_2_scalar_multiplication(vector: dict[str, str]) -> None:
    scalar = bytes.fromhex(vector["scalar"])
    u_coordinate = bytes.fromhex(vector["u_coordinate"])
    assert agree(scalar, u_coordinate).hex() == vector["output"]


def test_generate_keypair_is_fresh_and_consistent() -> None:
    first, second = generate_keypair(), generate_keypair()
    assert len(first.private_bytes) == len(first.public_bytes) == PUBLIC_KEY_BYTES
    assert first.private_bytes != second.private_bytes
    assert first.public_bytes != second.public_bytes
    rebuilt = keypair_from_private_bytes(first.private_bytes)
    assert rebuilt.private_bytes == first.private_bytes
    assert rebuilt.public_bytes == first.public_bytes


def test_agree_is_symmetric_for_generated_keys() -> None:
    alice, bob = generate_keypair(), generate_keypair()
    shared = agree(alice.private_bytes, bob.public_bytes)
    assert shared == agree(bob.private_bytes, alice.public_bytes)
    assert len(shared) == 32


def test_agree_accepts_a_keypair_or_its_private_bytes() -> None:
    vector = _X25519["diffie_hellman"]
    alice = keypair_from_private_bytes(bytes.fromhex(vector["alice_private"]))
    bob_public = bytes.fromhex(vector["bob_public"])
    assert agree(alice, bob_public).hex() == vector["shared_secret"]
    assert agree(alice, bob_public) == agree(alice.private_bytes, bob_public)


@pytest.mark.parametrize("private", [b"", bytes(31), bytes(33), bytearray(32)])
def test_agree_rejects_a_malformed_private_key(private: object) -> None:
    with pytest.raises(ParameterError, match="32 bytes"):
        agree(private, generate_keypair().public_bytes)  # type: ignore[arg-type]


def test_keypair_repr_hides_the_private_key() -> None:
    pair = keypair_from_private_bytes(bytes.fromhex(_X25519["diffie_hellman"]["alice_private"]))
    text = repr(pair)
    assert pair.private_bytes.hex() not in text
    assert "hidden" in text
    assert pair.public_bytes.hex() in text


def test_keypair_is_immutable() -> None:
    pair = generate_keypair()
    with pytest.raises(AttributeError):
        pair.public_bytes = bytes(32)  # type: ignore[misc]
    assert isinstance(pair, KeyPair)


@pytest.mark.parametrize("private", [b"", bytes(31), bytes(33), bytearray(32), "a" * 32])
def test_keypair_from_private_bytes_rejects_a_malformed_key(private: object) -> None:
    with pytest.raises(ParameterError, match="32 bytes"):
        keypair_from_private_bytes(private)  # type: ignore[arg-type]


@pytest.mark.parametrize("point", _LOW_ORDER_POINTS)
def test_agree_rejects_a_low_order_public_key(point: str) -> None:
    private = generate_keypair().private_bytes
    with pytest.raises(InvalidCiphertextError):
        agree(private, bytes.fromhex(point))


@pytest.mark.parametrize("public", [b"", bytes(31), bytes(33), bytearray(32), None])
def test_agree_rejects_a_malformed_public_key(public: object) -> None:
    private = generate_keypair().private_bytes
    with pytest.raises(InvalidCiphertextError):
        agree(private, public)  # type: ignore[arg-type]


def test_agree_failures_are_opaque() -> None:
    private = generate_keypair().private_bytes
    messages = set()
    for public in (bytes(32), bytes(31)):
        with pytest.raises(InvalidCiphertextError) as raised:
            agree(private, public)
        messages.add(str(raised.value))
    assert len(messages) == 1


# --- HKDF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _HKDF["vectors"], ids=lambda vector: vector["name"][:3])
def test_hkdf_sha256_rfc5869_test_cases(vector: dict[str, Any]) -> None:
    okm = hkdf_sha256(
        bytes.fromhex(vector["ikm"]),
        salt=bytes.fromhex(vector["salt"]),
        info=bytes.fromhex(vector["info"]),
        length=vector["length"],
    )
    assert okm.hex() == vector["okm"]


@pytest.mark.parametrize("vector", _HKDF["vectors"], ids=lambda vector: vector["name"][:3])
def test_hkdf_rfc5869_vector_prk_is_hmac_of_ikm(vector: dict[str, Any]) -> None:
    # Checks the transcription of the vector file itself: PRK = HMAC-SHA256(salt, IKM).
    prk = hmac.new(bytes.fromhex(vector["salt"]), bytes.fromhex(vector["ikm"]), hashlib.sha256)
    assert prk.hexdigest() == vector["prk"]


def test_hkdf_sha256_absent_salt_equals_the_empty_salt_of_test_case_3() -> None:
    vector = _HKDF["vectors"][2]
    assert vector["salt"] == ""
    okm = hkdf_sha256(bytes.fromhex(vector["ikm"]), salt=None, info=b"", length=42)
    assert okm.hex() == vector["okm"]


# --- derive_key ---------------------------------------------------------------------------------


def test_derive_key_matches_the_documented_info_layout() -> None:
    # info = "secagg/v1" || len(purpose) || purpose || session_id || round || low id || high id
    purpose = Purpose.PAIRWISE_MASK.value
    info = b"secagg/v1" + bytes([len(purpose)]) + purpose + _SESSION + struct.pack(">QII", 7, 3, 11)
    assert _derive() == hkdf_sha256(_SECRET, salt=None, info=info, length=16)


def test_derive_key_is_symmetric_in_the_two_parties() -> None:
    assert _derive(party_a=3, party_b=11) == _derive(party_a=11, party_b=3)


@pytest.mark.parametrize("length", [16, 32, 64])
def test_derive_key_returns_the_requested_length(length: int) -> None:
    assert len(_derive(length=length)) == length


@pytest.mark.parametrize(
    "change",
    [
        {"purpose": Purpose.SELF_MASK},
        {"purpose": Purpose.SHARE_ENCRYPTION},
        {"session_id": bytes([1]) + _SESSION[1:]},
        {"session_id": bytes(SESSION_ID_BYTES)},
        {"round_id": 8},
        {"round_id": 0},
        {"party_a": 4},
        {"party_b": 12},
        {"party_a": 11, "party_b": 11},
        {"party_a": 3, "party_b": 3},
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items()),
)
def test_derive_key_changes_with_every_context_field(change: dict[str, Any]) -> None:
    assert _derive(**change) != _derive()


def test_derive_key_changes_with_the_secret() -> None:
    assert derive_key(bytes(32), **_BASE) != _derive()


def test_derive_key_purposes_give_pairwise_distinct_keys() -> None:
    keys = {_derive(purpose=purpose) for purpose in Purpose}
    assert len(keys) == len(Purpose) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"round_id": 0},
        {"round_id": 2**64 - 1},
        {"party_a": 0, "party_b": 0},
        {"party_a": 2**32 - 1, "party_b": 2**32 - 1},
    ],
)
def test_derive_key_accepts_the_range_bounds(change: dict[str, Any]) -> None:
    assert len(_derive(**change)) == 16


@pytest.mark.parametrize(
    "session_id", [b"", bytes(SESSION_ID_BYTES - 1), bytes(SESSION_ID_BYTES + 1), bytearray(16)]
)
def test_derive_key_rejects_a_malformed_session_id(session_id: object) -> None:
    with pytest.raises(ParameterError, match="session_id"):
        _derive(session_id=session_id)


@pytest.mark.parametrize("round_id", [-1, 2**64])
def test_derive_key_rejects_a_round_outside_64_bits(round_id: int) -> None:
    with pytest.raises(ParameterError, match="round_id"):
        _derive(round_id=round_id)


@pytest.mark.parametrize(
    "parties", [(-1, 3), (3, -1), (2**32, 3), (3, 2**32)], ids=["a<0", "b<0", "a big", "b big"]
)
def test_derive_key_rejects_a_party_outside_32_bits(parties: tuple[int, int]) -> None:
    with pytest.raises(ParameterError, match="party ids"):
        _derive(party_a=parties[0], party_b=parties[1])
