"""Regenerate the threshold-Paillier known answers ``paillier_threshold.json`` beside this script.

The expected values are computed *without* the code under test (this script does not import
``secagg``), straight from the scheme's definition in ``secagg/hazmat/paillier/threshold.py``:
shares by term-by-term polynomial evaluation with plain integers, every exponentiation with
Python's built-in ``pow`` (negative exponents included), the Lagrange coefficients as exact
fractions, the byte layouts written out field by field, and the Fiat-Shamir transcript hashed
with :mod:`hashlib`. Only :mod:`gmpy2` is used, to find primes.

What is fixed, all from SHA-256 in counter mode over the label
``"secagg tests/vectors/paillier_threshold.json <name> <counter>"`` (nothing up our sleeve):

- safe primes p < q of 256 bits (a 512-bit n): the first safe primes after two such numbers with
  the top two bits set; a 3-of-5 committee (Δ = 5! = 120);
- the polynomial coefficients a_1, a_2, the verification unit r (v = r^2 mod n^2) and DJN's x;
- six ciphertexts: five textbook encryptions (1 + M n) r_j^n mod n^2 and one DJN encryption
  (1 + M n) hs^a mod n^2;
- each decryptor's proof nonce, so the partial decryptions (values, challenge, response) are
  fixed too.

The file records the shares, verification keys, the canonical public-key, share and
partial-decryption bytes with the key fingerprint, every partial decryption, and the
plaintexts recombined from four different 3-subsets.

Usage::

    python tests/vectors/generate_threshold_vectors.py          # rewrite the file
    python tests/vectors/generate_threshold_vectors.py --check  # exit 1 if it is stale

Checked by ``tests/secagg/hazmat/paillier/test_threshold.py`` (``test_known_answer_*``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any

import gmpy2

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "paillier_threshold.json"
LABEL = "secagg tests/vectors/paillier_threshold.json"
CONTEXT = b"secagg threshold-paillier known answer, session 1, round 7"
DECRYPTORS = 5
THRESHOLD = 3
SUBSETS = [(1, 2, 3), (1, 3, 5), (2, 4, 5), (5, 4, 3)]


def expand(name: str, bits: int) -> int:
    """SHA-256 in counter mode: a nothing-up-my-sleeve integer of ``bits`` bits or fewer."""
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        out += hashlib.sha256(f"{LABEL} {name} {counter}".encode()).digest()
        counter += 1
    return int.from_bytes(out, "big") >> (len(out) * 8 - bits)


def safe_prime(name: str, bits: int) -> int:
    """The first safe prime 2p' + 1 above expand(name) with the top two bits set."""
    candidate = gmpy2.mpz(expand(name, bits) | (3 << (bits - 2)))
    while True:
        candidate = gmpy2.next_prime(candidate)
        if gmpy2.is_prime((candidate - 1) // 2, 64):
            assert candidate.bit_length() == bits and gmpy2.is_prime(candidate, 64)
            return int(candidate)


def unit(name: str, bits: int, modulus: int) -> int:
    value = expand(name, bits) % modulus
    assert value > 1 and math.gcd(value, modulus) == 1
    return value


def be(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


def public_key_bytes(key: dict[str, Any]) -> bytes:
    n, width = key["n"], key["width"]
    n_length = (n.bit_length() + 7) // 8
    values = [key["v"], *key["verification_keys"], key["hs"]]
    return (
        b"STPK"
        + bytes([1])
        + be(n_length, 2)
        + be(n, n_length)
        + be(DECRYPTORS, 2)
        + be(THRESHOLD, 2)
        + bytes([1])
        + b"".join(be(value, width) for value in values)
    )


def make_key() -> dict[str, Any]:
    p = safe_prime("p", 256)
    attempt = 0
    while True:
        q = safe_prime(f"q{attempt}", 256)
        if q != p:
            break
        attempt += 1
    p, q = min(p, q), max(p, q)
    n = p * q
    n_square = n * n
    order = (p - 1) // 2 * ((q - 1) // 2)
    share_modulus = n * order
    secret = order * pow(order, -1, n)
    assert secret % order == 0 and secret % n == 1
    coefficients = [expand(f"a{k}", 1100) % share_modulus for k in (1, 2)]
    shares = [
        (secret + sum(a * i**k for k, a in enumerate(coefficients, start=1))) % share_modulus
        for i in range(1, DECRYPTORS + 1)
    ]
    delta = math.factorial(DECRYPTORS)
    r = unit("verification unit", 1030, n_square)
    v = r * r % n_square
    x = unit("djn x", 511, n)
    key: dict[str, Any] = {
        "p": p,
        "q": q,
        "n": n,
        "width": (2 * n.bit_length() + 7) // 8,
        "delta": delta,
        "coefficients": coefficients,
        "shares": shares,
        "verification_unit": r,
        "v": v,
        "verification_keys": [pow(v, delta * s, n_square) for s in shares],
        "djn_x": x,
        "hs": pow((-x * x) % n, n, n_square),
    }
    key["public_bytes"] = public_key_bytes(key)
    key["fingerprint"] = hashlib.sha256(key["public_bytes"]).digest()
    return key


def make_ciphertexts(key: dict[str, Any]) -> tuple[list[int], list[int]]:
    n = key["n"]
    n_square = n * n
    plaintexts = [0, 1, 2**64 + 12345, n - 1, expand("m", 500), expand("djn m", 500)]
    ciphertexts = []
    for j, plaintext in enumerate(plaintexts[:5]):
        factor = pow(unit(f"r{j}", 511, n), n, n_square)
        ciphertexts.append((1 + plaintext * n) * factor % n_square)
    djn_factor = pow(key["hs"], expand("djn a", n.bit_length() // 2), n_square)
    ciphertexts.append((1 + plaintexts[5] * n) * djn_factor % n_square)
    return plaintexts, ciphertexts


def transcript(key: dict[str, Any], index: int, ciphertexts: list[int], values: list[int]) -> bytes:
    width = key["width"]
    data = (
        b"secagg threshold-paillier partial decryption v1"
        + be(len(CONTEXT), 8)
        + CONTEXT
        + key["fingerprint"]
        + be(index, 2)
        + be(len(ciphertexts), 8)
        + b"".join(be(c, width) for c in ciphertexts)
        + b"".join(be(value, width) for value in values)
    )
    return hashlib.sha256(data).digest()


def partial_decryption(key: dict[str, Any], index: int, ciphertexts: list[int]) -> dict[str, Any]:
    n, width, delta = key["n"], key["width"], key["delta"]
    n_square = n * n
    secret_exponent = delta * key["shares"][index - 1]
    raw = [pow(c, 2 * secret_exponent, n_square) for c in ciphertexts]
    values = [min(value, n_square - value) for value in raw]
    digest = transcript(key, index, ciphertexts, values)
    rhos = [
        int.from_bytes(hashlib.sha256(digest + b"rho" + be(j, 8)).digest()[:16], "big")
        for j in range(len(ciphertexts))
    ]
    batch_base = (
        math.prod(pow(c, rho, n_square) for c, rho in zip(ciphertexts, rhos, strict=True))
        % n_square
    )
    batch_value = (
        math.prod(pow(c, rho, n_square) for c, rho in zip(values, rhos, strict=True)) % n_square
    )
    nonce_bits = 2 * n.bit_length() + delta.bit_length() + 512
    nonce = expand(f"nonce {index}", nonce_bits)
    a = pow(batch_base, 4 * nonce, n_square)
    b = pow(key["v"], nonce, n_square)
    challenge_input = digest + b"challenge" + be(a, width) + be(b, width)
    challenge = int.from_bytes(hashlib.sha256(challenge_input).digest(), "big")
    response = nonce + challenge * secret_exponent
    # The verifier's equations, as a self-check of this script.
    assert (
        pow(batch_base, 4 * response, n_square)
        == a * pow(batch_value, 2 * challenge, n_square) % n_square
    )
    v_i = key["verification_keys"][index - 1]
    assert pow(key["v"], response, n_square) == b * pow(v_i, challenge, n_square) % n_square
    response_width = (nonce_bits + 1 + 7) // 8
    encoded = (
        b"STPD"
        + bytes([1])
        + be(index, 2)
        + be(len(values), 4)
        + be(challenge, 32)
        + be(response, response_width)
        + b"".join(be(value, width) for value in values)
    )
    return {
        "index": index,
        "nonce": nonce,
        "values": values,
        "challenge": challenge,
        "response": response,
        "bytes": encoded,
    }


def combine(
    key: dict[str, Any], partials: dict[int, dict[str, Any]], subset: tuple[int, ...]
) -> list[int]:
    n, delta = key["n"], key["delta"]
    n_square = n * n
    exponents = {}
    for i in subset:
        mu = delta * math.prod(Fraction(j, j - i) for j in subset if j != i)
        assert mu.denominator == 1
        exponents[i] = 2 * int(mu)
    inverse = pow(4 * delta * delta, -1, n)
    plaintexts = []
    for position in range(len(partials[subset[0]]["values"])):
        combined = (
            math.prod(pow(partials[i]["values"][position], exponents[i], n_square) for i in subset)
            % n_square
        )
        assert combined % n == 1
        plaintexts.append((combined - 1) // n * inverse % n)
    return plaintexts


def build() -> dict[str, Any]:
    key = make_key()
    plaintexts, ciphertexts = make_ciphertexts(key)
    partials = {i: partial_decryption(key, i, ciphertexts) for i in range(1, DECRYPTORS + 1)}
    combined = {subset: combine(key, partials, subset) for subset in SUBSETS}
    for result in combined.values():
        assert result == plaintexts
    # Fewer than threshold partial decryptions do not combine (the check above fails).
    for subset in combinations(range(1, DECRYPTORS + 1), THRESHOLD - 1):
        assert combine_fails(key, partials, subset)
    share_bytes = (
        b"STKS"
        + bytes([1])
        + be(len(key["public_bytes"]), 4)
        + key["public_bytes"]
        + be(1, 2)
        + be(key["shares"][0], key["width"])
    )
    return {
        "description": "threshold Paillier, 3-of-5, fixed safe primes (see the generator)",
        "context": CONTEXT.hex(),
        "decryptors": DECRYPTORS,
        "threshold": THRESHOLD,
        "p": hex(key["p"]),
        "q": hex(key["q"]),
        "n": hex(key["n"]),
        "coefficients": [hex(a) for a in key["coefficients"]],
        "verification_unit": hex(key["verification_unit"]),
        "djn_x": hex(key["djn_x"]),
        "hs": hex(key["hs"]),
        "verification_base": hex(key["v"]),
        "shares": [hex(s) for s in key["shares"]],
        "verification_keys": [hex(v) for v in key["verification_keys"]],
        "public_key_bytes": key["public_bytes"].hex(),
        "fingerprint": key["fingerprint"].hex(),
        "share_1_bytes": share_bytes.hex(),
        "plaintexts": [hex(m) for m in plaintexts],
        "ciphertexts": [hex(c) for c in ciphertexts],
        "partials": [
            {
                "index": item["index"],
                "nonce": hex(item["nonce"]),
                "values": [hex(value) for value in item["values"]],
                "challenge": hex(item["challenge"]),
                "response": hex(item["response"]),
            }
            for item in partials.values()
        ],
        "partial_1_bytes": partials[1]["bytes"].hex(),
        "combinations": [
            {"subset": list(subset), "plaintexts": [hex(m) for m in result]}
            for subset, result in combined.items()
        ],
    }


def combine_fails(
    key: dict[str, Any], partials: dict[int, dict[str, Any]], subset: tuple[int, ...]
) -> bool:
    try:
        combine(key, partials, subset)
    except AssertionError:
        return True
    return False


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    text = render(build())
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT.name} is stale: rerun without --check", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
