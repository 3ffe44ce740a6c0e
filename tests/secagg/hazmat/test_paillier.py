"""Tests for secagg.hazmat.paillier: known answers, phe interoperability, packing properties.

Most tests use one 1024-bit key from the private `_generate_keypair_unchecked_size` seam for
speed; the phe interoperability and end-to-end tests use a real 2048-bit key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import phe
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg.errors import (
    InvalidCiphertextError,
    KeyReuseError,
    ParameterError,
    SlotOverflowError,
)
from secagg.hazmat import paillier
from secagg.hazmat.paillier import (
    DJNParameters,
    PackingScheme,
    PaillierKeypair,
    RandomnessMode,
    RandomnessPool,
    SlotLayout,
    add_ciphertext_vectors,
    check_ciphertext,
    ciphertext_byte_length,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    decrypt_vector,
    encrypt_vector,
    generate_keypair,
    sum_ciphertext_vectors,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "paillier.json"
DJN = RandomnessMode.DJN


@pytest.fixture(scope="module")
def small_keys() -> PaillierKeypair:
    return paillier._generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="module")
def keys_2048() -> PaillierKeypair:
    return generate_keypair(2048)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VECTORS.read_text())
    return document


def _hex(value: str) -> int:
    return int(value, 16)


def _djn_encrypt(keys: PaillierKeypair, plaintexts: list[int]) -> list[int]:
    return encrypt_vector(keys.public_key, plaintexts, mode=DJN, djn=keys.djn, processes=1)


# --- known answers (tests/vectors/paillier.json, computed with phe and plain pow) -----------


def test_known_answer_keys(vectors: dict[str, Any]) -> None:
    p, q = _hex(vectors["p"]), _hex(vectors["q"])
    public_key, private_key, djn = paillier._keypair_from_parts(
        p, q, djn_x=_hex(vectors["djn"]["x"])
    )
    assert public_key.n == _hex(vectors["n"])
    assert (private_key.hp, private_key.hq) == (_hex(vectors["hp"]), _hex(vectors["hq"]))
    crt = paillier._crt_key(p, q)
    assert (crt.hp, crt.hq) == (private_key.hp, private_key.hq)
    assert djn is not None
    assert djn.hs == _hex(vectors["djn"]["hs"])
    assert djn.exponent_bits == 256


def test_known_answer_fresh_encryption(vectors: dict[str, Any]) -> None:
    public_key, private_key, _ = paillier._keypair_from_parts(
        _hex(vectors["p"]), _hex(vectors["q"]), djn_x=None
    )
    n_square = public_key.nsquare
    for case in vectors["fresh"]:
        plaintext, r = _hex(case["plaintext"]), _hex(case["r"])
        factor = pow(r, public_key.n, n_square)
        ciphertext = paillier._encrypt_from_parts(public_key, plaintext, factor)
        assert ciphertext == _hex(case["ciphertext"])
        assert decrypt_vector(private_key, [ciphertext], processes=1) == [plaintext]


def test_known_answer_djn_encryption(vectors: dict[str, Any]) -> None:
    public_key, private_key, djn = paillier._keypair_from_parts(
        _hex(vectors["p"]), _hex(vectors["q"]), djn_x=_hex(vectors["djn"]["x"])
    )
    assert djn is not None
    for case in vectors["djn"]["cases"]:
        factor = paillier._djn_factor_from_exponent(djn, _hex(case["exponent"]))
        assert factor == _hex(case["factor"])
        plaintext = _hex(case["plaintext"])
        ciphertext = paillier._encrypt_from_parts(public_key, plaintext, factor)
        assert ciphertext == _hex(case["ciphertext"])
        assert decrypt_vector(private_key, [ciphertext], processes=1) == [plaintext]


@pytest.mark.parametrize("layout", list(SlotLayout))
def test_known_answer_packing(vectors: dict[str, Any], layout: SlotLayout) -> None:
    spec = vectors["packing"]
    scheme = PackingScheme(spec["value_bits"], spec["num_clients"], spec["key_bits"], layout)
    expected = spec[layout.value]
    assert scheme.slots_per_plaintext == expected["slots_per_plaintext"]
    values = np.array(spec["values"], dtype=np.uint64)
    plaintexts = scheme.pack(values)
    assert plaintexts == [_hex(m) for m in expected["plaintexts"]]
    assert scheme.unpack(plaintexts, len(values), 1).tolist() == spec["values"]


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
    keys = paillier._generate_keypair_unchecked_size(512, djn=False)
    assert keys.djn is None and keys.public_key.n.bit_length() == 512


def test_keypair_from_parts_rejects_primes_unfit_for_djn() -> None:
    with pytest.raises(ParameterError):
        paillier._keypair_from_parts(13, 13, djn_x=None)
    with pytest.raises(ParameterError):
        paillier._keypair_from_parts(13, 19, djn_x=None)  # 13 ≡ 1 (mod 4)
    with pytest.raises(ParameterError):
        paillier._keypair_from_parts(15, 19, djn_x=None)  # not prime


def test_djn_parameters_validate_base(small_keys: PaillierKeypair) -> None:
    n = small_keys.public_key.n
    with pytest.raises(ParameterError):
        DJNParameters(n=n, hs=1)
    with pytest.raises(ParameterError):
        DJNParameters(n=n, hs=n * n)
    with pytest.raises(ParameterError):
        DJNParameters(n=n, hs=small_keys.private_key.p)


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


# --- the packing property -------------------------------------------------------------------


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


@pytest.mark.parametrize("layout", list(SlotLayout))
def test_pack_unpack_large_vector_round_trips(layout: SlotLayout) -> None:
    scheme = PackingScheme(32, 10, 2048, layout)
    values = np.random.default_rng(0).integers(0, 2**32, size=10_000, dtype=np.uint64)
    values[:3] = [0, 2**32 - 1, 1]
    plaintexts = scheme.pack(values)
    assert len(plaintexts) == scheme.num_plaintexts(10_000)
    assert all(m < 2**2047 for m in plaintexts)
    assert np.array_equal(scheme.unpack(plaintexts, 10_000, 1), values)


def test_packing_geometry_for_32_bit_values_and_10_clients() -> None:
    bits = PackingScheme(32, 10, 2048)
    assert (bits.headroom_bits, bits.slot_bits, bits.slots_per_plaintext) == (4, 36, 56)
    radix = PackingScheme(32, 10, 2048, SlotLayout.RADIX)
    assert radix.slot_radix == 10 * (2**32 - 1) + 1
    assert radix.slots_per_plaintext == 57
    assert PackingScheme(32, 1, 2048).slot_bits == 32
    assert PackingScheme(32, 8, 2048).slot_bits == 35


# --- limits and rejections ------------------------------------------------------------------


def test_headroom_limit_is_enforced() -> None:
    scheme = PackingScheme(16, 4, 1024)
    plaintexts = scheme.pack(np.arange(10))
    with pytest.raises(ParameterError, match="num_clients"):
        scheme.unpack(plaintexts, 10, 5)
    with pytest.raises(ParameterError):
        scheme.unpack(plaintexts, 10, 0)


@pytest.mark.parametrize(
    ("value_bits", "num_clients", "key_bits"),
    [(60, 1024, 2048), (64, 2, 2048), (32, 10, 36), (0, 10, 2048), (32, 0, 2048)],
)
def test_scheme_rejects_slots_that_cannot_fit(
    value_bits: int, num_clients: int, key_bits: int
) -> None:
    with pytest.raises(ParameterError):
        PackingScheme(value_bits, num_clients, key_bits)


def test_pack_rejects_out_of_range_values() -> None:
    scheme = PackingScheme(8, 2, 1024)
    with pytest.raises(ParameterError, match="2\\^8"):
        scheme.pack(np.array([1, 256]))
    with pytest.raises(ParameterError, match="non-negative"):
        scheme.pack(np.array([1, -1]))
    with pytest.raises(ParameterError):
        scheme.pack(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(TypeError):
        scheme.pack(np.array([0.5]))
    assert scheme.pack(np.array([], dtype=np.uint64)) == []


def test_unpack_rejects_wrong_plaintext_count() -> None:
    scheme = PackingScheme(8, 2, 1024)
    with pytest.raises(ParameterError, match="plaintexts"):
        scheme.unpack([0, 0], 3, 1)


def test_oversized_slot_is_detected_after_decryption(small_keys: PaillierKeypair) -> None:
    public_key, private_key, _ = small_keys
    scheme = PackingScheme.for_public_key(public_key, value_bits=16, num_clients=10)
    honest = [
        _djn_encrypt(small_keys, scheme.pack(np.full(30, 1000, dtype=np.uint64))) for _ in range(3)
    ]
    # A malicious client puts 2^19 into slot 4: far above 2^16 - 1, but small enough not to carry
    # into slot 5 (a carry could leave every slot legal: see the module docstring).
    crafted = scheme.pack(np.zeros(30, dtype=np.uint64))
    crafted[0] |= 2**19 << (4 * scheme.slot_bits)
    aggregate = sum_ciphertext_vectors(public_key, [*honest, _djn_encrypt(small_keys, crafted)])
    plaintexts = decrypt_vector(private_key, aggregate)
    with pytest.raises(SlotOverflowError, match="slot 4"):
        scheme.unpack(plaintexts, 30, 4)


def test_corrupted_padding_and_high_bits_are_detected() -> None:
    for layout in SlotLayout:
        scheme = PackingScheme(16, 4, 1024, layout)
        [plaintext] = scheme.pack(np.ones(3, dtype=np.uint64))
        padding = plaintext + scheme.slot_radix**5  # slot 5 of 3 used slots
        with pytest.raises(SlotOverflowError):
            scheme.unpack([padding], 3, 1)
        too_high = plaintext + scheme.slot_radix**scheme.slots_per_plaintext
        with pytest.raises(SlotOverflowError):
            scheme.unpack([too_high], 3, 1)
    # With fewer summands than the headroom allows, the range shrinks with them.
    scheme = PackingScheme(16, 4, 1024, SlotLayout.RADIX)
    plaintexts = scheme.pack(np.full(3, 2**16 - 1, dtype=np.uint64))
    doubled = [2 * m for m in plaintexts]
    assert scheme.unpack(doubled, 3, 2).tolist() == [2 * (2**16 - 1)] * 3
    with pytest.raises(SlotOverflowError):
        scheme.unpack(doubled, 3, 1)


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
    other = paillier._generate_keypair_unchecked_size(512)
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


# --- randomness modes and the pool ----------------------------------------------------------


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
    spare = paillier._randomness_chunk(public_key.n, djn.hs, 1)
    with pytest.raises(ParameterError):
        pool.add([*spare, 0])
    pool.add(spare)
    assert pool.take(1) == spare
    with pytest.raises(ParameterError):
        encrypt_vector(public_key, [1], pool=pool, mode=DJN, djn=djn)
    other = paillier._generate_keypair_unchecked_size(512)
    with pytest.raises(ParameterError):
        encrypt_vector(other.public_key, [1], pool=pool)
    fresh_pool = RandomnessPool.generate(public_key, 2, processes=1)
    assert decrypt_vector(private_key, encrypt_vector(public_key, [7, 8], pool=fresh_pool)) == [
        7,
        8,
    ]


# --- process pool ---------------------------------------------------------------------------


def test_process_pool_matches_serial_path(
    small_keys: PaillierKeypair, monkeypatch: pytest.MonkeyPatch
) -> None:
    public_key, private_key, djn = small_keys
    monkeypatch.setattr(paillier, "_MIN_CIPHERTEXTS_PER_PROCESS", 4)
    plaintexts = [(i * 7919) ** 5 % public_key.n for i in range(40)]
    parallel = encrypt_vector(public_key, plaintexts, mode=DJN, djn=djn, processes=2)
    fresh = encrypt_vector(public_key, plaintexts[:10], processes=2)
    assert decrypt_vector(private_key, parallel, processes=2) == plaintexts
    assert decrypt_vector(private_key, parallel, processes=1) == plaintexts
    assert decrypt_vector(private_key, fresh, processes=2) == plaintexts[:10]
    pool = RandomnessPool.generate(public_key, 12, mode=DJN, djn=djn, processes=2)
    assert len(pool) == 12 and len(set(pool.take(12))) == 12


def test_keys_and_parameters_pickle(small_keys: PaillierKeypair) -> None:
    import pickle

    restored = pickle.loads(pickle.dumps(small_keys))
    assert restored.public_key == small_keys.public_key
    assert restored.private_key == small_keys.private_key
    assert restored.djn == small_keys.djn


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
