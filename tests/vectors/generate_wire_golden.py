"""Generate ``wire_golden.json``: fixed messages and their exact bytes on the wire.

The bytes are packed here by hand with :mod:`struct`, following the layout documented in
``protocols/wire.py`` (wire version 3), *without importing the project*, so the vectors are an
independent second implementation of the format rather than a snapshot of ``wire.encode``.
``tests/protocols/test_wire.py`` rebuilds each message from its ``fields`` and checks that
``wire.encode`` gives exactly ``hex`` and that ``wire.decode`` gives the message back.

Layout (all integers big-endian, vector words little-endian and truncated):

    header   b"SAGG" | version u8 | type u8 | session_id 16B | round_id u64 | sender u32 |
             recipient u32                                                        (38 bytes)
    1 RoundSetup        threshold u32 | vector_length u32 | modulus_bits u8 | ids
    2 KeyAdvertisement  mask_public_key 32B | share_public_key 32B | seed_commitment 32B | sig
    3 KeyRoster         count u32 | count x (client_id u32 | mask key 32B | share key 32B |
                        seed_commitment 32B | sig)
    4 EncryptedShares   bundles | count u32 | count x (holder u32 | seed-share digest 32B |
                        key-share digest 32B)
    5 ForwardedShares   bundles
    6 MaskedInput       modulus_bits u8 | length u32 | length x ceil(modulus_bits / 8) B |
                        ids (rejected)
    7 UnmaskRequest     ids (survivors) | ids (dropped) | count u32 | count x (signer u32 |
                        signature 64B)
    8 UnmaskResponse    2 x (count u32 | count x (owner u32 | share value 33B))
    9 Abort             size u16 | UTF-8 reason size B
    14 ConsistencyRequest    ids (survivors)
    15 ConsistencySignature  signature 64B
    ids                 count u32 | count x u32
    bundles             count u32 | count x (peer u32 | size u16 | ciphertext size B)
    sig                 present u8 (0 or 1) | present x signature 64B (an optional Ed25519
                        signature: absent in a semi-honest round)

Run from the repository root: ``python tests/vectors/generate_wire_golden.py``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

MAGIC = b"SAGG"
VERSION = 3
SERVER_ID = 2**32 - 1
#: The Shamir field of ``secagg.hazmat.shamir``; share values are written in 33 bytes.
FIELD_PRIME = 2**256 + 297
SHARE_BYTES = 33
TYPE_CODES = {
    "RoundSetup": 1,
    "KeyAdvertisement": 2,
    "KeyRoster": 3,
    "EncryptedShares": 4,
    "ForwardedShares": 5,
    "MaskedInput": 6,
    "UnmaskRequest": 7,
    "UnmaskResponse": 8,
    "Abort": 9,
    "ConsistencyRequest": 14,
    "ConsistencySignature": 15,
}

SESSION_ID = bytes(range(16)).hex()
ROUND_ID = 0x0102030405060708
CLIENT = 7
MASK_KEY = bytes(range(32)).hex()
SHARE_KEY = bytes(range(32, 64)).hex()
COMMITMENT = bytes(range(64, 96)).hex()
#: Ed25519 signatures are 64 bytes; the codec carries them without checking them.
SIGNATURE = bytes(range(96, 160)).hex()
SIGNATURE_BYTES = 64


def _header(client_to_server: bool) -> dict[str, Any]:
    return {
        "session_id": SESSION_ID,
        "round_id": ROUND_ID,
        "sender": CLIENT if client_to_server else SERVER_ID,
        "recipient": SERVER_ID if client_to_server else CLIENT,
    }


def vector_specs() -> list[dict[str, Any]]:
    """The fixed messages: one of each type (the active model's signed variants and the
    semi-honest, unsigned ones), plus MaskedInput at several ring sizes."""
    specs: list[dict[str, Any]] = [
        {
            "name": "round_setup",
            "type": "RoundSetup",
            "fields": {
                **_header(False),
                "threshold": 3,
                "vector_length": 1000,
                "modulus_bits": 20,
                "neighbours": [1, 2, 9],
            },
        },
        {
            "name": "key_advertisement",
            "type": "KeyAdvertisement",
            "fields": {
                **_header(True),
                "mask_public_key": MASK_KEY,
                "share_public_key": SHARE_KEY,
                "seed_commitment": COMMITMENT,
                "signature": SIGNATURE,
            },
        },
        {
            "name": "key_advertisement_unsigned",
            "type": "KeyAdvertisement",
            "fields": {
                **_header(True),
                "mask_public_key": MASK_KEY,
                "share_public_key": SHARE_KEY,
                "seed_commitment": COMMITMENT,
                "signature": "",
            },
        },
        {
            "name": "key_roster",
            "type": "KeyRoster",
            "fields": {
                **_header(False),
                "entries": [
                    {
                        "client_id": 1,
                        "mask_public_key": "11" * 32,
                        "share_public_key": "21" * 32,
                        "seed_commitment": "31" * 32,
                        "signature": "",
                    },
                    {
                        "client_id": CLIENT,
                        "mask_public_key": MASK_KEY,
                        "share_public_key": SHARE_KEY,
                        "seed_commitment": COMMITMENT,
                        "signature": SIGNATURE,
                    },
                ],
            },
        },
        {
            "name": "encrypted_shares",
            "type": "EncryptedShares",
            "fields": {
                **_header(True),
                "bundles": [
                    {"peer": 1, "ciphertext": bytes(range(0x40, 0x40 + 44)).hex()},
                    {"peer": 9, "ciphertext": "aa" * 5},
                ],
                "digests": [
                    {"holder": 1, "seed_share": "c1" * 32, "key_share": "d1" * 32},
                    {"holder": CLIENT, "seed_share": "c7" * 32, "key_share": "d7" * 32},
                    {"holder": 9, "seed_share": "c9" * 32, "key_share": "d9" * 32},
                ],
            },
        },
        {
            "name": "forwarded_shares",
            "type": "ForwardedShares",
            "fields": {
                **_header(False),
                "bundles": [
                    {"peer": 1, "ciphertext": bytes(range(0x80, 0x80 + 44)).hex()},
                    {"peer": 9, "ciphertext": "bb"},
                ],
            },
        },
        {
            "name": "masked_input_k20",
            "type": "MaskedInput",
            "fields": {
                **_header(True),
                "modulus_bits": 20,
                "vector": [0, 1, 0xABCDE, 2**20 - 1],
                "rejected": [9, 1],
            },
        },
        {
            "name": "consistency_request",
            "type": "ConsistencyRequest",
            "fields": {**_header(False), "survivors": [1, 2, CLIENT]},
        },
        {
            "name": "consistency_signature",
            "type": "ConsistencySignature",
            "fields": {**_header(True), "signature": SIGNATURE},
        },
        {
            "name": "unmask_request",
            "type": "UnmaskRequest",
            "fields": {
                **_header(False),
                "survivors": [1, CLIENT],
                "dropped": [9],
                "signatures": [
                    {"signer": 1, "signature": "e1" * SIGNATURE_BYTES},
                    {"signer": CLIENT, "signature": SIGNATURE},
                ],
            },
        },
        {
            "name": "unmask_request_unsigned",
            "type": "UnmaskRequest",
            "fields": {
                **_header(False),
                "survivors": [1, CLIENT],
                "dropped": [9],
                "signatures": [],
            },
        },
        {
            "name": "unmask_response",
            "type": "UnmaskResponse",
            "fields": {
                **_header(True),
                "self_mask_shares": [
                    {"owner": 1, "value": 12345},
                    {"owner": CLIENT, "value": FIELD_PRIME - 1},
                ],
                "mask_key_shares": [{"owner": 9, "value": 2**255 + 3}],
            },
        },
        {
            "name": "abort",
            "type": "Abort",
            "fields": {**_header(False), "reason": "zu wenige Überlebende: 2 < 3"},
        },
    ]
    for bits, vector in (
        (1, [0, 1, 1, 0]),
        (8, [0, 0x7F, 0xFF]),
        (32, [0, 0xDEADBEEF, 2**32 - 1]),
        (33, [2**33 - 1, 5]),
        (64, [2**64 - 1, 0x0102030405060708]),
    ):
        specs.append(
            {
                "name": f"masked_input_k{bits}",
                "type": "MaskedInput",
                "fields": {
                    **_header(True),
                    "modulus_bits": bits,
                    "vector": vector,
                    "rejected": [],
                },
            }
        )
    return specs


def _ids(ids: list[int]) -> bytes:
    return struct.pack(f">I{len(ids)}I", len(ids), *ids)


def _signature(hex_signature: str) -> bytes:
    """An optional signature: a presence byte, then the 64 bytes if present."""
    signature = bytes.fromhex(hex_signature)
    assert len(signature) in (0, SIGNATURE_BYTES)
    return struct.pack(">B", len(signature) // SIGNATURE_BYTES) + signature


def _keys(f: dict[str, Any]) -> bytes:
    """The advertised keys and commitment, then the optional signature (adverts and roster)."""
    out = b"".join(
        bytes.fromhex(f[name])
        for name in ("mask_public_key", "share_public_key", "seed_commitment")
    )
    return out + _signature(f["signature"])


def _bundles(bundles: list[dict[str, Any]]) -> bytes:
    out = struct.pack(">I", len(bundles))
    for b in bundles:
        ciphertext = bytes.fromhex(b["ciphertext"])
        out += struct.pack(">IH", b["peer"], len(ciphertext)) + ciphertext
    return out


def _masked_input(f: dict[str, Any]) -> bytes:
    bits = f["modulus_bits"]
    width = (bits + 7) // 8
    out = struct.pack(">BI", bits, len(f["vector"]))
    for value in f["vector"]:
        assert 0 <= value < 2**bits
        out += value.to_bytes(width, "little")
    return out + _ids(f["rejected"])


def _unmask_response(f: dict[str, Any]) -> bytes:
    out = b""
    for name in ("self_mask_shares", "mask_key_shares"):
        out += struct.pack(">I", len(f[name]))
        for share in f[name]:
            assert 0 <= share["value"] < FIELD_PRIME
            out += struct.pack(">I", share["owner"]) + share["value"].to_bytes(SHARE_BYTES, "big")
    return out


def _body(kind: str, f: dict[str, Any]) -> bytes:
    if kind == "RoundSetup":
        head = struct.pack(">IIB", f["threshold"], f["vector_length"], f["modulus_bits"])
        return head + _ids(f["neighbours"])
    if kind == "KeyAdvertisement":
        return _keys(f)
    if kind == "KeyRoster":
        out = struct.pack(">I", len(f["entries"]))
        for e in f["entries"]:
            out += struct.pack(">I", e["client_id"]) + _keys(e)
        return out
    if kind == "EncryptedShares":
        out = _bundles(f["bundles"]) + struct.pack(">I", len(f["digests"]))
        for d in f["digests"]:
            out += struct.pack(">I", d["holder"])
            out += bytes.fromhex(d["seed_share"]) + bytes.fromhex(d["key_share"])
        return out
    if kind == "ForwardedShares":
        return _bundles(f["bundles"])
    if kind == "MaskedInput":
        return _masked_input(f)
    if kind == "ConsistencyRequest":
        return _ids(f["survivors"])
    if kind == "ConsistencySignature":
        signature = bytes.fromhex(f["signature"])
        assert len(signature) == SIGNATURE_BYTES
        return signature
    if kind == "UnmaskRequest":
        out = _ids(f["survivors"]) + _ids(f["dropped"])
        out += struct.pack(">I", len(f["signatures"]))
        for s in f["signatures"]:
            signature = bytes.fromhex(s["signature"])
            assert len(signature) == SIGNATURE_BYTES
            out += struct.pack(">I", s["signer"]) + signature
        return out
    if kind == "UnmaskResponse":
        return _unmask_response(f)
    if kind == "Abort":
        reason: bytes = f["reason"].encode("utf-8")
        return struct.pack(">H", len(reason)) + reason
    raise AssertionError(f"unknown message type {kind}")


def pack(kind: str, fields: dict[str, Any]) -> bytes:
    """The wire bytes of one message, packed from the documented layout."""
    header = struct.pack(
        ">4sBB16sQII",
        MAGIC,
        VERSION,
        TYPE_CODES[kind],
        bytes.fromhex(fields["session_id"]),
        fields["round_id"],
        fields["sender"],
        fields["recipient"],
    )
    return header + _body(kind, fields)


def build() -> dict[str, Any]:
    """The whole golden file as a JSON-ready dict."""
    vectors = []
    for spec in vector_specs():
        vectors.append({**spec, "hex": pack(spec["type"], spec["fields"]).hex()})
    return {
        "description": (
            "Golden wire bytes of protocols.wire version 3; byte strings in fields are hex, "
            "share values and ids are integers, vectors are lists of ring values."
        ),
        "generator": "tests/vectors/generate_wire_golden.py",
        "wire_version": VERSION,
        "header_bytes": 38,
        "vectors": vectors,
    }


def main() -> None:
    target = Path(__file__).with_name("wire_golden.json")
    target.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
