"""Tests for secagg.hazmat.paillier.cipher: known answers, phe interoperability, packed sums.

Also covers the process pool (secagg.hazmat.paillier._parallel) through the vector functions
that use it, and the ciphertext byte codec.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg.errors import InvalidCiphertextError, ParameterError, SlotOverflowError
from secagg.hazmat.paillier import (
    PaillierKeypair,
    RandomnessMode,
    RandomnessPool,
    _parallel,
    add_ciphertext_vectors,
    check_ciphertext,
    ciphertext_byte_length,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    decrypt_vector,
    encrypt_vector,
    sum_ciphertext_vectors,
)
from secagg.hazmat.paillier.cipher import _encrypt_from_parts
from secagg.hazmat.paillier.keys import _generate_keypair_unchecked_size, _keypair_from_parts
from secagg.packing import PackingScheme, SlotLayout

DJN = RandomnessMode.DJN


def _hex(value: str) -> int:
    return int(value, 16)


def _djn_encrypt(keys: PaillierKeypair, plaintexts: list[int]) -> list[int]:
    return encrypt_vector(keys.public_key, plaintexts, mode=DJN, djn=keys.djn, processes=1)


# --- known answers (tests/vectors/paillier.json, computed with phe and plain pow) -----------


def test_known_answer_fresh_encryption(vectors: dict[str, Any]) -> None:
    public_key, private_key, _ = _keypair_from_parts(
        _hex(vectors["p"]), _hex(vectors["q"]), djn_x=None
    )
    n_square = public_key.nsquare
    for case in vectors["fresh"]:
        plaintext, r = _hex(case["plaintext"]), _hex(case["r"])
        factor = pow(r, public_key.n, n_square)
        ciphertext = _encrypt_from_parts(public_key, plaintext, factor)
        assert ciphertext == _hex(case["ciphertext"])
        assert decrypt_vector(private_key, [ciphertext], processes=1) == [plaintext]


# --- phe interoperability (real 2048-bit key) ------------------------------------------------


def test_packed_aggregate_matches_phe_encrypted_numbers(keys_2048: PaillierKeypair) -> None:
    public_key, private_key, djn = keys_2048
    scheme = PackingScheme.for_public_key(public_key, value_bits=16, num_clients=3)
    clients = [[5, 0, 65535, 1234, 7], [1, 2, 3, 4, 5], [65535, 65535, 0, 0, 9]]
    ours = [
        encrypt_vector(public_key, scheme.pack(np.array(values)), mode=DJN, djn=djn)
        for values in clients
    ]
    # Every packed ciphertext is an ordinary Paillier ciphertext: phe decrypts it.
    plaintexts = scheme.pack(np.array(clients[0]))
    assert [private_key.raw_decrypt(c) for c in ours[0]] == plaintexts
    aggregate = sum_ciphertext_vectors(public_key, ours)
    packed_sums = scheme.unpack(decrypt_vector(private_key, aggregate), 5, 3)

    phe_numbers = [[public_key.encrypt(v) for v in values] for values in clients]
    phe_sums = [private_key.decrypt(a + b + c) for a, b, c in zip(*phe_numbers, strict=True)]
    assert (
        packed_sums.tolist() == phe_sums == [sum(column) for column in zip(*clients, strict=True)]
    )
    # And the other way round: our decryption reads phe's ciphertexts.
    phe_ciphertexts = [number.ciphertext(be_secure=False) for number in phe_numbers[0]]
    assert decrypt_vector(private_key, phe_ciphertexts) == clients[0]


def test_fresh_encryption_with_2048_bit_key_round_trips(keys_2048: PaillierKeypair) -> None:
    public_key, private_key, _ = keys_2048
    plaintexts = [0, 1, public_key.n - 1]
    ciphertexts = encrypt_vector(public_key, plaintexts, processes=1)
    assert [private_key.raw_decrypt(c) for c in ciphertexts] == plaintexts
    assert decrypt_vector(private_key, ciphertexts) == plaintexts


# --- the packing property through encryption ------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_sum_of_packed_encryptions_is_exact(
    small_keys: PaillierKeypair, data: st.DataObject
) -> None:
    public_key, private_key, _ = small_keys
    value_bits = data.draw(st.integers(1, 48), label="value_bits")
    num_clients = data.draw(st.integers(1, 12), label="num_clients")
    layout = data.draw(st.sampled_from(list(SlotLayout)), label="layout")
    scheme = PackingScheme.for_public_key(
        public_key, value_bits=value_bits, num_clients=num_clients, layout=layout
    )
    num_summed = data.draw(st.integers(1, num_clients), label="num_summed")
    count = data.draw(st.integers(0, 2 * scheme.slots_per_plaintext + 3), label="count")
    value = st.integers(0, 2**value_bits - 1)
    inputs = [
        data.draw(st.lists(value, min_size=count, max_size=count), label=f"client {i}")
        for i in range(num_summed)
    ]
    ciphertexts = [
        _djn_encrypt(small_keys, scheme.pack(np.array(x, dtype=np.uint64))) for x in inputs
    ]
    aggregate = sum_ciphertext_vectors(public_key, ciphertexts)
    result = scheme.unpack(decrypt_vector(private_key, aggregate, processes=1), count, num_summed)
    assert result.dtype == np.uint64
    assert result.tolist() == [sum(column) for column in zip(*inputs, strict=True)]


@pytest.mark.parametrize("layout", list(SlotLayout))
@pytest.mark.parametrize("num_clients", [8, 10])
def test_headroom_holds_when_every_client_sends_the_largest_value(
    small_keys: PaillierKeypair, layout: SlotLayout, num_clients: int
) -> None:
    public_key, private_key, _ = small_keys
    scheme = PackingScheme.for_public_key(
        public_key, value_bits=32, num_clients=num_clients, layout=layout
    )
    count = scheme.slots_per_plaintext + 1
    largest = np.full(count, 2**32 - 1, dtype=np.uint64)
    ciphertexts = [_djn_encrypt(small_keys, scheme.pack(largest)) for _ in range(num_clients)]
    aggregate = sum_ciphertext_vectors(public_key, ciphertexts)
    result = scheme.unpack(decrypt_vector(private_key, aggregate), count, num_clients)
    assert result.tolist() == [num_clients * (2**32 - 1)] * count


def test_oversized_slot_is_detected_after_decryption(small_keys: PaillierKeypair) -> None:
    public_key, private_key, _ = small_keys
    scheme = PackingScheme.for_public_key(public_key, value_bits=16, num_clients=10)
    honest = [
        _djn_encrypt(small_keys, scheme.pack(np.full(30, 1000, dtype=np.uint64))) for _ in range(3)
    ]
    # A malicious client puts 2^19 into slot 4: far above 2^16 - 1, but small enough not to carry
    # into slot 5 (a carry could leave every slot legal: see the secagg.packing docstring).
    crafted = scheme.pack(np.zeros(30, dtype=np.uint64))
    crafted[0] |= 2**19 << (4 * scheme.slot_bits)
    aggregate = sum_ciphertext_vectors(public_key, [*honest, _djn_encrypt(small_keys, crafted)])
    plaintexts = decrypt_vector(private_key, aggregate)
    with pytest.raises(SlotOverflowError, match="slot 4"):
        scheme.unpack(plaintexts, 30, 4)


# --- limits and rejections ------------------------------------------------------------------


def test_ciphertexts_outside_the_unit_group_are_rejected(small_keys: PaillierKeypair) -> None:
    public_key, private_key, _ = small_keys
    n, p = public_key.n, private_key.p
    for bad in [0, -1, n * n, n * n + 1, n, 3 * p, p * p]:
        with pytest.raises(InvalidCiphertextError):
            check_ciphertext(public_key, bad)
        with pytest.raises(InvalidCiphertextError):
            decrypt_vector(private_key, [1, bad])
    with pytest.raises(TypeError):
        check_ciphertext(public_key, True)
    with pytest.raises(TypeError):
        decrypt_vector(private_key, [1.0])  # type: ignore[list-item]
    check_ciphertext(public_key, 1)


def test_encrypt_rejects_bad_plaintexts_and_mode_combinations(small_keys: PaillierKeypair) -> None:
    public_key, _, djn = small_keys
    other = _generate_keypair_unchecked_size(512)
    with pytest.raises(ParameterError):
        encrypt_vector(public_key, [public_key.n])
    with pytest.raises(ParameterError):
        encrypt_vector(public_key, [-1])
    with pytest.raises(TypeError):
        encrypt_vector(public_key, [1.5])  # type: ignore[list-item]
    with pytest.raises(ParameterError, match="DJNParameters"):
        encrypt_vector(public_key, [1], mode=DJN)
    with pytest.raises(ParameterError):
        encrypt_vector(public_key, [1], mode=DJN, djn=other.djn)
    with pytest.raises(ParameterError):
        encrypt_vector(public_key, [1], djn=djn)
    with pytest.raises(ParameterError):
        encrypt_vector(public_key, [1], processes=0)


# --- process pool ---------------------------------------------------------------------------


def test_process_pool_matches_serial_path(
    small_keys: PaillierKeypair, monkeypatch: pytest.MonkeyPatch
) -> None:
    public_key, private_key, djn = small_keys
    monkeypatch.setattr(_parallel, "_MIN_CIPHERTEXTS_PER_PROCESS", 4)
    plaintexts = [(i * 7919) ** 5 % public_key.n for i in range(40)]
    parallel = encrypt_vector(public_key, plaintexts, mode=DJN, djn=djn, processes=2)
    fresh = encrypt_vector(public_key, plaintexts[:10], processes=2)
    assert decrypt_vector(private_key, parallel, processes=2) == plaintexts
    assert decrypt_vector(private_key, parallel, processes=1) == plaintexts
    assert decrypt_vector(private_key, fresh, processes=2) == plaintexts[:10]
    pool = RandomnessPool.generate(public_key, 12, mode=DJN, djn=djn, processes=2)
    assert len(pool) == 12 and len(set(pool.take(12))) == 12


# --- aggregation and serialization ----------------------------------------------------------


def test_add_and_sum_ciphertext_vectors(small_keys: PaillierKeypair) -> None:
    public_key, private_key, _ = small_keys
    a = _djn_encrypt(small_keys, [1, 2, 3])
    b = _djn_encrypt(small_keys, [10, 20, 30])
    assert decrypt_vector(private_key, add_ciphertext_vectors(public_key, a, b)) == [11, 22, 33]
    assert decrypt_vector(private_key, sum_ciphertext_vectors(public_key, [a])) == [1, 2, 3]
    with pytest.raises(ParameterError):
        add_ciphertext_vectors(public_key, a, b[:2])
    with pytest.raises(ParameterError):
        sum_ciphertext_vectors(public_key, [])


def test_ciphertext_serialization_round_trips_and_checks_range(
    small_keys: PaillierKeypair, keys_2048: PaillierKeypair
) -> None:
    public_key, private_key, _ = small_keys
    assert ciphertext_byte_length(public_key) == 256
    assert ciphertext_byte_length(keys_2048.public_key) == 512
    ciphertexts = [*_djn_encrypt(small_keys, [5, 6, 7]), 1]
    data = ciphertexts_to_bytes(public_key, ciphertexts)
    assert len(data) == 4 * 256
    assert ciphertexts_from_bytes(public_key, data) == ciphertexts
    assert ciphertexts_from_bytes(public_key, data, check_units=False) == ciphertexts
    width = 256
    for bad in [
        data[:-1],
        bytes(width),
        (public_key.nsquare).to_bytes(width, "big"),
        (private_key.p * 5).to_bytes(width, "big"),
    ]:
        with pytest.raises(InvalidCiphertextError):
            ciphertexts_from_bytes(public_key, bad)
    with pytest.raises(InvalidCiphertextError):
        ciphertexts_to_bytes(public_key, [public_key.nsquare])
    with pytest.raises(TypeError):
        ciphertexts_from_bytes(public_key, "00")  # type: ignore[arg-type]
