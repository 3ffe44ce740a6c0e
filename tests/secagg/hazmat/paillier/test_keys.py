"""Tests for secagg.hazmat.paillier.keys: known-answer keys, the size policy, DJN conditions."""

from __future__ import annotations

import math
import pickle
from typing import Any

import phe
import pytest

from secagg.errors import ParameterError
from secagg.hazmat.paillier import (
    DJNParameters,
    PaillierKeypair,
    decrypt_vector,
    encrypt_vector,
    generate_keypair,
)
from secagg.hazmat.paillier.cipher import _crt_key
from secagg.hazmat.paillier.keys import _generate_keypair_unchecked_size, _keypair_from_parts


def _hex(value: str) -> int:
    return int(value, 16)


# --- known answers (tests/vectors/paillier.json, computed with phe and plain pow) -----------


def test_known_answer_keys(vectors: dict[str, Any]) -> None:
    p, q = _hex(vectors["p"]), _hex(vectors["q"])
    public_key, private_key, djn = _keypair_from_parts(p, q, djn_x=_hex(vectors["djn"]["x"]))
    assert public_key.n == _hex(vectors["n"])
    assert (private_key.hp, private_key.hq) == (_hex(vectors["hp"]), _hex(vectors["hq"]))
    crt = _crt_key(p, q)
    assert (crt.hp, crt.hq) == (private_key.hp, private_key.hq)
    assert djn is not None
    assert djn.hs == _hex(vectors["djn"]["hs"])
    assert djn.exponent_bits == 256


# --- key generation -------------------------------------------------------------------------


def test_generate_keypair_2048_meets_djn_conditions(keys_2048: PaillierKeypair) -> None:
    public_key, private_key, djn = keys_2048
    assert isinstance(public_key, phe.PaillierPublicKey)
    assert isinstance(private_key, phe.PaillierPrivateKey)
    p, q = private_key.p, private_key.q
    assert public_key.n.bit_length() == 2048
    assert p.bit_length() == q.bit_length() == 1024
    assert p % 4 == 3 and q % 4 == 3
    assert math.gcd(p - 1, q - 1) == 2
    assert djn is not None and djn.matches(public_key) and djn.exponent_bits == 1024


def test_generate_keypair_rejects_unsupported_sizes() -> None:
    with pytest.raises(ParameterError, match="2048"):
        generate_keypair(1024)
    with pytest.raises(TypeError):
        generate_keypair(True)


@pytest.mark.slow
def test_generate_keypair_3072() -> None:
    public_key, private_key, djn = generate_keypair(3072)
    assert public_key.n.bit_length() == 3072
    assert djn is not None and djn.exponent_bits == 1536
    ciphertexts = encrypt_vector(public_key, [0, 12345], processes=1)
    assert decrypt_vector(private_key, ciphertexts) == [0, 12345]


def test_generate_keypair_without_djn() -> None:
    keys = _generate_keypair_unchecked_size(512, djn=False)
    assert keys.djn is None and keys.public_key.n.bit_length() == 512


def test_keypair_from_parts_rejects_primes_unfit_for_djn() -> None:
    with pytest.raises(ParameterError):
        _keypair_from_parts(13, 13, djn_x=None)
    with pytest.raises(ParameterError):
        _keypair_from_parts(13, 19, djn_x=None)  # 13 ≡ 1 (mod 4)
    with pytest.raises(ParameterError):
        _keypair_from_parts(15, 19, djn_x=None)  # not prime


def test_djn_parameters_validate_base(small_keys: PaillierKeypair) -> None:
    n = small_keys.public_key.n
    with pytest.raises(ParameterError):
        DJNParameters(n=n, hs=1)
    with pytest.raises(ParameterError):
        DJNParameters(n=n, hs=n * n)
    with pytest.raises(ParameterError):
        DJNParameters(n=n, hs=small_keys.private_key.p)
    # Bases that are +-1 mod n would let anyone read a plaintext's high bits: refused.
    for opening in (1 + n, n * n - 1, (1 + n) * (1 + n) % (n * n)):
        with pytest.raises(ParameterError, match="not of the form"):
            DJNParameters(n=n, hs=opening)
    assert small_keys.djn is not None
    DJNParameters(n=n, hs=small_keys.djn.hs)  # the generated base passes


def test_keys_and_parameters_pickle(small_keys: PaillierKeypair) -> None:
    restored = pickle.loads(pickle.dumps(small_keys))
    assert restored.public_key == small_keys.public_key
    assert restored.private_key == small_keys.private_key
    assert restored.djn == small_keys.djn
