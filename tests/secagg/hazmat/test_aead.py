"""AES-GCM sealing of share bundles bound to their context (secagg.hazmat.aead)."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg.errors import InvalidCiphertextError, ParameterError
from secagg.hazmat.aead import (
    AEAD_KEY_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    associated_data,
    open_,
    seal,
)

_KEY = bytes(range(AEAD_KEY_BYTES))
_SESSION = bytes(range(100, 116))
_CONTEXT = {"session_id": _SESSION, "round_id": 3, "sender": 5, "recipient": 9}
_AD = associated_data(**_CONTEXT)  # type: ignore[arg-type]
_PLAINTEXT = bytes(range(66))  # two 33-byte shares


def _sealed() -> bytes:
    return seal(_KEY, _PLAINTEXT, _AD)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- round trip and layout ----------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [b"", b"x", _PLAINTEXT, bytes(4096)])
def test_seal_open_round_trip(plaintext: bytes) -> None:
    sealed = seal(_KEY, plaintext, _AD)
    assert len(sealed) == NONCE_BYTES + len(plaintext) + TAG_BYTES
    assert open_(_KEY, sealed, _AD) == plaintext


def test_seal_output_is_nonce_then_aes_gcm_ciphertext_and_tag() -> None:
    sealed = _sealed()
    nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    assert AESGCM(_KEY).decrypt(nonce, body, _AD) == _PLAINTEXT
    assert AESGCM(_KEY).encrypt(nonce, _PLAINTEXT, _AD) == body


def test_seal_twice_gives_different_ciphertexts() -> None:
    first, second = _sealed(), _sealed()
    assert first[:NONCE_BYTES] != second[:NONCE_BYTES]
    assert first != second
    assert open_(_KEY, first, _AD) == open_(_KEY, second, _AD) == _PLAINTEXT


def test_seal_nonces_do_not_repeat() -> None:
    nonces = {seal(_KEY, b"", _AD)[:NONCE_BYTES] for _ in range(1000)}
    assert len(nonces) == 1000


def test_associated_data_layout() -> None:
    assert _AD == b"secagg/v1/shares" + _SESSION + struct.pack(">QII", 3, 5, 9)


# --- binding to the context ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"session_id": bytes(16)},
        {"session_id": bytes([_SESSION[0] ^ 1]) + _SESSION[1:]},
        {"round_id": 2},
        {"round_id": 4},
        {"sender": 6},
        {"recipient": 8},
        {"sender": 9, "recipient": 5},  # a reflected bundle
        {"sender": 5, "recipient": 5},
    ],
    ids=lambda change: "-".join(
        f"{k}={v if not isinstance(v, bytes) else v.hex()[:4]}" for k, v in change.items()
    ),
)
def test_open_rejects_a_bundle_under_another_context(change: dict[str, object]) -> None:
    other = associated_data(**{**_CONTEXT, **change})  # type: ignore[arg-type]
    assert other != _AD
    with pytest.raises(InvalidCiphertextError):
        open_(_KEY, _sealed(), other)


def test_open_rejects_empty_or_altered_associated_data() -> None:
    sealed = _sealed()
    for ad in (b"", _AD[:-1], _AD + b"\x00", _flip(_AD, 0)):
        with pytest.raises(InvalidCiphertextError):
            open_(_KEY, sealed, ad)


def test_open_rejects_the_wrong_key() -> None:
    with pytest.raises(InvalidCiphertextError):
        open_(bytes(AEAD_KEY_BYTES), _sealed(), _AD)


# --- tampering ----------------------------------------------------------------------------------


def test_open_rejects_every_single_bit_flip() -> None:
    # Covers the nonce (first 12 bytes), the ciphertext body and the tag (last 16 bytes).
    sealed = _sealed()
    for index in range(len(sealed)):
        with pytest.raises(InvalidCiphertextError):
            open_(_KEY, _flip(sealed, index), _AD)


@pytest.mark.parametrize(
    "region", ["nonce", "ciphertext", "tag"], ids=["nonce", "ciphertext", "tag"]
)
def test_open_rejects_a_replaced_region(region: str) -> None:
    sealed = _sealed()
    start, stop = {
        "nonce": (0, NONCE_BYTES),
        "ciphertext": (NONCE_BYTES, len(sealed) - TAG_BYTES),
        "tag": (len(sealed) - TAG_BYTES, len(sealed)),
    }[region]
    replaced = sealed[:start] + bytes(stop - start) + sealed[stop:]
    with pytest.raises(InvalidCiphertextError):
        open_(_KEY, replaced, _AD)


def test_open_rejects_every_truncation_and_an_extension() -> None:
    sealed = _sealed()
    for length in range(len(sealed)):
        with pytest.raises(InvalidCiphertextError):
            open_(_KEY, sealed[:length], _AD)
    with pytest.raises(InvalidCiphertextError):
        open_(_KEY, sealed + b"\x00", _AD)


def test_open_rejects_a_truncated_seal_of_the_empty_plaintext() -> None:
    sealed = seal(_KEY, b"", _AD)
    assert len(sealed) == NONCE_BYTES + TAG_BYTES
    assert open_(_KEY, sealed, _AD) == b""
    with pytest.raises(InvalidCiphertextError):
        open_(_KEY, sealed[:-1], _AD)


def test_open_failures_are_opaque() -> None:
    # One message for every cause, so a failure never says which check failed.
    sealed = _sealed()
    attempts = [
        (_KEY, _flip(sealed, 0), _AD),
        (_KEY, _flip(sealed, NONCE_BYTES), _AD),
        (_KEY, _flip(sealed, len(sealed) - 1), _AD),
        (_KEY, sealed[:5], _AD),
        (_KEY, sealed, b""),
        (bytes(AEAD_KEY_BYTES), sealed, _AD),
        (bytes(7), sealed, _AD),
    ]
    messages = set()
    for key, data, ad in attempts:
        with pytest.raises(InvalidCiphertextError) as raised:
            open_(key, data, ad)
        # No library exception is chained on for display (``raise ... from None``).
        error = raised.value
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
        messages.add(str(raised.value))
    assert len(messages) == 1


# --- argument checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", bytes(15), bytes(17), bytes(24), bytes(32)])
def test_seal_rejects_a_key_of_the_wrong_length(key: bytes) -> None:
    with pytest.raises(ParameterError, match="16 bytes"):
        seal(key, _PLAINTEXT, _AD)


@pytest.mark.parametrize("key", [b"", bytes(15), bytes(32)])
def test_open_rejects_a_key_of_the_wrong_length_opaquely(key: bytes) -> None:
    with pytest.raises(InvalidCiphertextError):
        open_(key, _sealed(), _AD)
