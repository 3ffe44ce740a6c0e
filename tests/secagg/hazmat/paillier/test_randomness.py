"""Tests for secagg.hazmat.paillier.randomness: DJN known answers, both modes, the pool."""

from __future__ import annotations

from typing import Any

import pytest

from secagg.errors import KeyReuseError, ParameterError
from secagg.hazmat.paillier import (
    PaillierKeypair,
    RandomnessMode,
    RandomnessPool,
    decrypt_vector,
    encrypt_vector,
)
from secagg.hazmat.paillier.cipher import _encrypt_from_parts
from secagg.hazmat.paillier.keys import _generate_keypair_unchecked_size, _keypair_from_parts
from secagg.hazmat.paillier.randomness import _djn_factor_from_exponent, _randomness_chunk

DJN = RandomnessMode.DJN


def _hex(value: str) -> int:
    return int(value, 16)


def test_known_answer_djn_encryption(vectors: dict[str, Any]) -> None:
    public_key, private_key, djn = _keypair_from_parts(
        _hex(vectors["p"]), _hex(vectors["q"]), djn_x=_hex(vectors["djn"]["x"])
    )
    assert djn is not None
    for case in vectors["djn"]["cases"]:
        factor = _djn_factor_from_exponent(djn, _hex(case["exponent"]))
        assert factor == _hex(case["factor"])
        plaintext = _hex(case["plaintext"])
        ciphertext = _encrypt_from_parts(public_key, plaintext, factor)
        assert ciphertext == _hex(case["ciphertext"])
        assert decrypt_vector(private_key, [ciphertext], processes=1) == [plaintext]


def test_djn_and_fresh_encryptions_both_decrypt(small_keys: PaillierKeypair) -> None:
    public_key, private_key, djn = small_keys
    plaintexts = [0, 1, 2**500, public_key.n - 1, 42, 42]
    fresh = encrypt_vector(public_key, plaintexts, mode=RandomnessMode.FRESH, processes=1)
    short = encrypt_vector(public_key, plaintexts, mode=DJN, djn=djn, processes=1)
    assert decrypt_vector(private_key, fresh) == plaintexts
    assert decrypt_vector(private_key, short) == plaintexts
    # Randomized: equal plaintexts give different ciphertexts in both modes.
    assert len(set(fresh)) == len(set(short)) == len(plaintexts)
    assert [private_key.raw_decrypt(c) for c in short] == plaintexts


def test_randomness_pool_hands_out_each_factor_once(small_keys: PaillierKeypair) -> None:
    public_key, private_key, djn = small_keys
    pool = RandomnessPool.generate(public_key, 6, mode=DJN, djn=djn, processes=1)
    assert len(pool) == 6
    ciphertexts = encrypt_vector(public_key, [1, 2, 3, 4], pool=pool)
    assert decrypt_vector(private_key, ciphertexts) == [1, 2, 3, 4]
    assert len(pool) == 2
    with pytest.raises(ParameterError, match="remain"):
        encrypt_vector(public_key, [1, 2, 3], pool=pool)
    [factor] = pool.take(1)
    with pytest.raises(KeyReuseError):
        pool.add([factor])
    with pytest.raises(KeyReuseError):
        RandomnessPool(public_key, [factor, factor])
    with pytest.raises(ParameterError):
        RandomnessPool(public_key, [0])
    # A rejected batch leaves no trace: its valid factor can still be added afterwards.
    assert djn is not None
    spare = _randomness_chunk(public_key.n, djn.hs, 1)
    with pytest.raises(ParameterError):
        pool.add([*spare, 0])
    pool.add(spare)
    assert pool.take(1) == spare
    with pytest.raises(ParameterError):
        encrypt_vector(public_key, [1], pool=pool, mode=DJN, djn=djn)
    other = _generate_keypair_unchecked_size(512)
    with pytest.raises(ParameterError):
        encrypt_vector(other.public_key, [1], pool=pool)
    fresh_pool = RandomnessPool.generate(public_key, 2, processes=1)
    assert decrypt_vector(private_key, encrypt_vector(public_key, [7, 8], pool=fresh_pool)) == [
        7,
        8,
    ]
