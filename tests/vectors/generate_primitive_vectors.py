"""Regenerate the known-answer vectors ``prg.json`` and ``shamir.json`` beside this script.

The expected values are computed *without* the code under test, so that the vectors check
``secagg.hazmat`` rather than restate it:

- PRG: our mask keystream is AES-128-CTR with an all-zero initial counter block, so its i-th
  16-byte block is AES-128-ECB applied to the big-endian 128-bit integer i. This script computes
  exactly that with ``cryptography``'s ECB mode (never with CTR, which is what ``secagg`` uses).
- Shamir: shares are evaluated with plain Python integers, term by term (sum of c_j * x^j mod p),
  not with Horner's rule and gmpy2 as ``secagg.hazmat.shamir`` does.

Usage::

    python tests/vectors/generate_primitive_vectors.py          # rewrite the two files
    python tests/vectors/generate_primitive_vectors.py --check  # exit 1 if they are stale

See ``PRIMITIVES.md`` for the provenance of every vector.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = Path(__file__).resolve().parent

# 2^256 + 297, the smallest prime above 2^256 (re-checked by tests/secagg/hazmat/test_shamir.py).
FIELD_PRIME = 2**256 + 297

# NIST SP 800-38A (2001), Appendix F.5.1 CTR-AES128.Encrypt.
NIST_CTR_AES128 = {
    "key": "2b7e151628aed2a6abf7158809cf4f3c",
    "initial_counter": "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
    "plaintext": (
        "6bc1bee22e409f96e93d7e117393172a"
        "ae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52ef"
        "f69f2445df4f9b17ad2b417be66c3710"
    ),
    "ciphertext": (
        "874d6191b620e3261bef6864990db6ce"
        "9806f66b7970fdff8617187bb9fffdff"
        "5ae4df3edbd5d35e5b4f09020db03eab"
        "1e031dda2fbe03d1792170a0f3009cee"
    ),
    "provenance": "NIST SP 800-38A (2001), Appendix F.5.1, CTR-AES128.Encrypt",
}

# Crosses chunk boundaries of secagg.hazmat.prg.CHUNK_BYTES (131072; 65536 when it was written)
# and ends mid-block; a whole
# number of uint64 words, so both word sizes can be checked against it.
_LONG_LENGTH = 3 * 65536 + 24


def zero_counter_keystream(key: bytes, length: int) -> bytes:
    """AES-128-CTR keystream from a zero counter, built block by block from AES-ECB."""
    blocks = -(-length // 16)
    counters = b"".join(i.to_bytes(16, "big") for i in range(blocks))
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (encryptor.update(counters) + encryptor.finalize())[:length]


def build_prg_vectors() -> dict[str, Any]:
    """The content of ``prg.json``."""
    nist_key = bytes.fromhex(NIST_CTR_AES128["key"])
    counting_key = bytes(range(16))
    ecb = "AES-128-ECB (pyca/cryptography) of the big-endian 128-bit counter blocks"
    return {
        "description": (
            "Known answers for secagg.hazmat.prg: AES-128-CTR keystream with an all-zero "
            "initial counter block. Regenerate with generate_primitive_vectors.py."
        ),
        "vectors": [
            {
                "name": "nist-key-4-blocks",
                "key": nist_key.hex(),
                "length": 64,
                "keystream": zero_counter_keystream(nist_key, 64).hex(),
                "provenance": f"{ecb} 0..3 under the NIST SP 800-38A F.5.1 key",
            },
            {
                "name": "counting-key-partial-block",
                "key": counting_key.hex(),
                "length": 100,
                "keystream": zero_counter_keystream(counting_key, 100).hex(),
                "provenance": f"{ecb} 0..6 under key 00..0f, truncated to 100 bytes",
            },
        ],
        "digest_vectors": [
            {
                "name": "counting-key-across-chunks",
                "key": counting_key.hex(),
                "length": _LONG_LENGTH,
                "keystream_sha256": hashlib.sha256(
                    zero_counter_keystream(counting_key, _LONG_LENGTH)
                ).hexdigest(),
                "provenance": (
                    f"SHA-256 of {ecb} 0, 1, ... under key 00..0f, truncated to the length"
                ),
            }
        ],
        "nist_sp800_38a_f_5_1": NIST_CTR_AES128,
    }


def _evaluate(coefficients: list[int], x: int) -> int:
    """sum_j coefficients[j] * x^j mod p, written out term by term."""
    return sum(c * pow(x, j, FIELD_PRIME) for j, c in enumerate(coefficients)) % FIELD_PRIME


def _split_vector(
    name: str, provenance: str, secret: int, coefficients: list[int], xs: list[int]
) -> dict[str, Any]:
    polynomial = [secret, *coefficients]
    shares = []
    for x in xs:
        y = _evaluate(polynomial, x)
        shares.append({"x": x, "y": str(y), "y_bytes": y.to_bytes(33, "big").hex()})
    return {
        "name": name,
        "provenance": provenance,
        "secret": str(secret),
        "secret_bytes": secret.to_bytes(32, "big").hex(),
        "threshold": len(coefficients) + 1,
        "coefficients": [str(c) for c in coefficients],
        "shares": shares,
    }


def _labelled_element(label: str) -> int:
    """A reproducible 256-bit field element: SHA-256 of a label, read big-endian."""
    return int.from_bytes(hashlib.sha256(label.encode()).digest(), "big")


def build_shamir_vectors() -> dict[str, Any]:
    """The content of ``shamir.json``."""
    p = FIELD_PRIME
    full_secret = _labelled_element("secagg/vectors/shamir/secret")
    full_coefficients = [_labelled_element(f"secagg/vectors/shamir/c{j}") for j in range(1, 5)]
    return {
        "description": (
            "Known answers for secagg.hazmat.shamir over GF(2^256 + 297): shares of a polynomial "
            "f(x) = secret + c1 x + c2 x^2 + ... with fixed coefficients. Integers are decimal "
            "strings; y_bytes is the 33-byte big-endian share encoding. Regenerate with "
            "generate_primitive_vectors.py."
        ),
        "field_prime": str(p),
        "field_prime_expression": "2**256 + 297",
        "split_vectors": [
            _split_vector(
                "wikipedia-1234",
                "The worked example of the Wikipedia article 'Shamir's secret sharing' "
                "(f(x) = 1234 + 166 x + 94 x^2); every value is below p, so no reduction occurs",
                1234,
                [166, 94],
                [1, 2, 3, 4, 5, 6],
            ),
            _split_vector(
                "wraparound",
                "Largest 32-byte secret 2^256 - 1 = p - 298 with coefficients p - 1 and p - 2 "
                "(that is -1 and -2), so f(x) = p - (298 + x + 2 x^2): checkable by hand",
                2**256 - 1,
                [p - 1, p - 2],
                [1, 2, 3, 4, 5],
            ),
            _split_vector(
                "full-size",
                "Secret and 4 coefficients are SHA-256 of the labels "
                "'secagg/vectors/shamir/secret' and 'secagg/vectors/shamir/c1'..'c4'; shares "
                "evaluated term by term with Python integers",
                full_secret,
                full_coefficients,
                [1, 2, 3, 5, 8, 13, 21, 255],
            ),
        ],
        "lagrange_at_zero_vectors": [
            {
                "xs": [1, 2, 3],
                "coefficients": [str(3), str(p - 3), str(1)],
                "provenance": "L_i(0) = prod_{j != i} x_j / (x_j - x_i) = 3, -3, 1",
            },
            {
                "xs": [1, 2, 3, 4],
                "coefficients": [str(4), str(p - 6), str(4), str(p - 1)],
                "provenance": "L_i(0) for x = 1..4 is (-1)^(i+1) C(4, i) = 4, -6, 4, -1",
            },
        ],
    }


def _render(content: dict[str, Any]) -> str:
    return json.dumps(content, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, build in (("prg.json", build_prg_vectors), ("shamir.json", build_shamir_vectors)):
        path = HERE / name
        text = _render(build())
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale vector files: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
