"""Tests for secagg.paillier_keys, the safe key-generation recipe.

Real keys of a supported size take seconds, so the fast tests widen the hazmat key-size policy
to 512-bit keys for the duration of one test (the recipe still runs the real generator); the
tests at the real sizes are marked slow.
"""

from __future__ import annotations

import math

import pytest

from secagg.errors import ParameterError
from secagg.hazmat import paillier as hazmat_paillier
from secagg.hazmat.paillier import decrypt_vector, encrypt_vector, keys
from secagg.paillier_keys import PaillierKeypair, RandomnessMode, generate_paillier_keypair


@pytest.fixture
def small_sizes_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "SUPPORTED_KEY_BITS", frozenset({512, 2048, 3072}))


def _check_round_trip(keypair: PaillierKeypair, mode: RandomnessMode) -> None:
    public_key, private_key, djn = keypair
    plaintexts = [0, 1, 2**100, public_key.n - 1]
    ciphertexts = encrypt_vector(public_key, plaintexts, mode=mode, djn=djn, processes=1)
    assert decrypt_vector(private_key, ciphertexts, processes=1) == plaintexts


def test_recipe_names_are_the_hazmat_ones() -> None:
    assert PaillierKeypair is hazmat_paillier.PaillierKeypair
    assert RandomnessMode is hazmat_paillier.RandomnessMode


@pytest.mark.usefixtures("small_sizes_allowed")
def test_generate_paillier_keypair_fresh_has_no_djn_parameters() -> None:
    keypair = generate_paillier_keypair(512)
    assert isinstance(keypair, PaillierKeypair)
    assert keypair.djn is None
    assert keypair.public_key.n.bit_length() == 512
    _check_round_trip(keypair, RandomnessMode.FRESH)


@pytest.mark.usefixtures("small_sizes_allowed")
def test_generate_paillier_keypair_djn_draws_matching_parameters() -> None:
    keypair = generate_paillier_keypair(512, mode=RandomnessMode.DJN)
    public_key, private_key, djn = keypair
    assert djn is not None and djn.matches(public_key) and djn.exponent_bits == 256
    p, q = private_key.p, private_key.q
    assert p % 4 == 3 and q % 4 == 3 and math.gcd(p - 1, q - 1) == 2
    _check_round_trip(keypair, RandomnessMode.DJN)


def test_generate_paillier_keypair_enforces_the_key_size_policy() -> None:
    for bits in (512, 1024, 4096):
        with pytest.raises(ParameterError, match="2048"):
            generate_paillier_keypair(bits)
    with pytest.raises(TypeError, match="bits"):
        generate_paillier_keypair(True)
    with pytest.raises(TypeError, match="bits"):
        generate_paillier_keypair(2048.0)  # type: ignore[arg-type]


def test_generate_paillier_keypair_rejects_a_mode_that_is_not_a_randomness_mode() -> None:
    with pytest.raises(TypeError, match="mode"):
        generate_paillier_keypair(2048, mode="djn")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mode"):
        generate_paillier_keypair(2048, mode=True)  # type: ignore[arg-type]


@pytest.mark.slow
def test_generate_paillier_keypair_default_is_a_fresh_2048_bit_key() -> None:
    keypair = generate_paillier_keypair()
    assert keypair.public_key.n.bit_length() == 2048
    assert keypair.djn is None
    _check_round_trip(keypair, RandomnessMode.FRESH)


@pytest.mark.slow
def test_generate_paillier_keypair_3072_with_djn() -> None:
    keypair = generate_paillier_keypair(3072, mode=RandomnessMode.DJN)
    assert keypair.public_key.n.bit_length() == 3072
    assert keypair.djn is not None and keypair.djn.exponent_bits == 1536
    _check_round_trip(keypair, RandomnessMode.DJN)
