"""AES-128-CTR mask expansion (secagg.hazmat.prg) against NIST and ECB-derived known answers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.errors import ParameterError
from secagg.hazmat.prg import CHUNK_BYTES, MASK_KEY_BYTES, add_mask, expand_mask, keystream

_VECTORS_DIR = Path(__file__).resolve().parents[2] / "vectors"
_VECTORS: dict[str, Any] = json.loads((_VECTORS_DIR / "prg.json").read_text())
_KEY = bytes(range(16))
_OTHER_KEY = bytes(range(16, 32))
_DTYPES = (np.uint32, np.uint64)


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_primitive_vectors", _VECTORS_DIR / "generate_primitive_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _boundary_lengths() -> list[int]:
    """Word counts at and around 1-3 chunks of either word size, plus the trivial ones."""
    lengths = {0, 1, 2, 3, 4, 5}
    for words_per_chunk in (CHUNK_BYTES // 4, CHUNK_BYTES // 8):
        for multiple in (1, 2, 3):
            lengths.update(multiple * words_per_chunk + delta for delta in (-1, 0, 1))
    return sorted(lengths)


def _reference_words(key: bytes, length: int, dtype: type[np.unsignedinteger]) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    little_endian = np.dtype(dtype).newbyteorder("<")
    return np.frombuffer(keystream(key, length * itemsize), dtype=little_endian).astype(dtype)


# --- known answers ------------------------------------------------------------------------------


def test_keystream_nist_sp800_38a_ctr_vector_through_the_library_construction() -> None:
    # Pins the library behaviour keystream() relies on: Cipher(AES(key), CTR(counter)) with a
    # full 128-bit big-endian counter (the NIST counter carries from byte 15 into byte 14).
    vector = _VECTORS["nist_sp800_38a_f_5_1"]
    key = bytes.fromhex(vector["key"])
    counter = bytes.fromhex(vector["initial_counter"])
    plaintext = bytes.fromhex(vector["plaintext"])
    ciphertext = bytes.fromhex(vector["ciphertext"])
    encryptor = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    assert encryptor.update(plaintext) + encryptor.finalize() == ciphertext
    decryptor = Cipher(algorithms.AES(key), modes.CTR(counter)).decryptor()
    assert decryptor.update(ciphertext) + decryptor.finalize() == plaintext


@pytest.mark.parametrize("vector", _VECTORS["vectors"], ids=lambda vector: vector["name"])
def test_keystream_matches_the_known_answer_vectors(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key"])
    assert keystream(key, vector["length"]).hex() == vector["keystream"]


@pytest.mark.parametrize("vector", _VECTORS["vectors"], ids=lambda vector: vector["name"])
def test_keystream_is_ecb_of_zero_based_counter_blocks(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key"])
    length = vector["length"]
    blocks = -(-length // 16)
    counters = b"".join(i.to_bytes(16, "big") for i in range(blocks))
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    expected = (encryptor.update(counters) + encryptor.finalize())[:length]
    assert keystream(key, length) == expected


def test_keystream_first_block_is_aes_of_the_zero_block() -> None:
    # AES-128(2b7e1516..., 0^128) = 7df76b0c..., also published as "AES-128(key,0)" in the
    # subkey generation example of RFC 4493, section 4: an independent check of the zero counter.
    nist_key = bytes.fromhex(_VECTORS["nist_sp800_38a_f_5_1"]["key"])
    assert keystream(nist_key, 16).hex() == "7df76b0c1ab899b33e42f047b91b546f"


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("vector", _VECTORS["digest_vectors"], ids=lambda vector: vector["name"])
def test_expand_mask_matches_the_digest_vectors_across_chunks(
    vector: dict[str, Any], dtype: type[np.unsignedinteger]
) -> None:
    key = bytes.fromhex(vector["key"])
    itemsize = np.dtype(dtype).itemsize
    words = vector["length"] // itemsize
    assert words * itemsize == vector["length"]
    mask = expand_mask(key, words, dtype)
    little_endian = mask.astype(np.dtype(dtype).newbyteorder("<"))
    assert hashlib.sha256(little_endian.tobytes()).hexdigest() == vector["keystream_sha256"]
    assert (
        hashlib.sha256(keystream(key, vector["length"])).hexdigest() == (vector["keystream_sha256"])
    )


def test_prg_vector_file_matches_its_generator() -> None:
    generator = _load_generator()
    assert generator.build_prg_vectors() == _VECTORS


# --- keystream ----------------------------------------------------------------------------------


def test_keystream_of_length_zero_is_empty() -> None:
    assert keystream(_KEY, 0) == b""


@pytest.mark.parametrize("length", [1, 15, 16, 17, 100, CHUNK_BYTES + 3])
def test_keystream_shorter_output_is_a_prefix_of_longer(length: int) -> None:
    long = keystream(_KEY, CHUNK_BYTES + 64)
    assert keystream(_KEY, length) == long[:length]
    assert len(keystream(_KEY, length)) == length


def test_keystream_accepts_a_bytearray_key() -> None:
    assert keystream(bytearray(_KEY), 48) == keystream(_KEY, 48)  # type: ignore[arg-type]


def test_keystream_rejects_a_negative_length() -> None:
    with pytest.raises(ParameterError, match="length"):
        keystream(_KEY, -1)


# --- expand_mask --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("length", _boundary_lengths())
def test_expand_mask_is_the_little_endian_word_view_of_the_keystream(
    dtype: type[np.unsignedinteger], length: int
) -> None:
    mask = expand_mask(_KEY, length, dtype)
    assert mask.dtype == np.dtype(dtype)
    assert mask.shape == (length,)
    assert np.array_equal(mask, _reference_words(_KEY, length, dtype))


def test_expand_mask_known_words() -> None:
    vector = _VECTORS["vectors"][0]
    key = bytes.fromhex(vector["key"])
    raw = bytes.fromhex(vector["keystream"])
    words32 = [int.from_bytes(raw[i : i + 4], "little") for i in range(0, 64, 4)]
    words64 = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, 64, 8)]
    assert expand_mask(key, 16, np.uint32).tolist() == words32
    assert expand_mask(key, 8, np.uint64).tolist() == words64


def test_expand_mask_defaults_to_uint32() -> None:
    assert expand_mask(_KEY, 4).dtype == np.uint32


def test_expand_mask_uint64_words_pair_the_uint32_words() -> None:
    narrow = expand_mask(_KEY, 2 * 1000, np.uint32).astype(np.uint64)
    wide = expand_mask(_KEY, 1000, np.uint64)
    assert np.array_equal(wide, narrow[0::2] | (narrow[1::2] << np.uint64(32)))


@pytest.mark.parametrize("dtype", _DTYPES)
def test_expand_mask_differs_between_keys(dtype: type[np.unsignedinteger]) -> None:
    first = expand_mask(_KEY, 64, dtype)
    assert not np.array_equal(first, expand_mask(_OTHER_KEY, 64, dtype))
    flipped = bytes([_KEY[0] ^ 1, *_KEY[1:]])
    assert not np.array_equal(first, expand_mask(flipped, 64, dtype))


def test_expand_mask_is_deterministic_per_key() -> None:
    assert np.array_equal(expand_mask(_KEY, 1000), expand_mask(_KEY, 1000))


def test_expand_mask_rejects_a_negative_length() -> None:
    with pytest.raises(ParameterError, match="length"):
        expand_mask(_KEY, -1)


# --- add_mask -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("length", _boundary_lengths())
def test_add_mask_adds_and_subtracts_modulo_the_word(
    dtype: type[np.unsignedinteger], length: int
) -> None:
    rng = np.random.default_rng(length)
    start = rng.integers(0, np.iinfo(dtype).max, size=length, dtype=dtype, endpoint=True)
    mask = _reference_words(_KEY, length, dtype)

    added = start.copy()
    add_mask(added, _KEY)
    assert np.array_equal(added, start + mask)  # numpy words wrap: the ring sum

    subtracted = start.copy()
    add_mask(subtracted, _KEY, subtract=True)
    assert np.array_equal(subtracted, start - mask)

    add_mask(added, _KEY, subtract=True)
    assert np.array_equal(added, start)


@pytest.mark.parametrize("dtype", _DTYPES)
def test_add_mask_pairwise_masks_cancel(dtype: type[np.unsignedinteger]) -> None:
    length = CHUNK_BYTES // 4 + 7
    start = np.arange(length, dtype=dtype)
    accumulator = start.copy()
    add_mask(accumulator, _KEY)
    add_mask(accumulator, _OTHER_KEY)
    assert not np.array_equal(accumulator, start)
    add_mask(accumulator, _KEY, subtract=True)
    add_mask(accumulator, _OTHER_KEY, subtract=True)
    assert np.array_equal(accumulator, start)


def test_add_mask_into_zeros_equals_expand_mask() -> None:
    accumulator = np.zeros(CHUNK_BYTES // 8 + 1, dtype=np.uint64)
    add_mask(accumulator, _KEY)
    assert np.array_equal(accumulator, expand_mask(_KEY, accumulator.size, np.uint64))


def test_add_mask_extra_memory_is_about_one_chunk() -> None:
    # DESIGN.md invariant 6: masking streams its keystream, so a 16 MiB vector costs one chunk.
    accumulator = np.zeros(4 * 1024 * 1024, dtype=np.uint32)
    tracemalloc.start()
    try:
        add_mask(accumulator, _KEY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * CHUNK_BYTES
    assert accumulator.any()


# --- argument checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", bytes(15), bytes(17), bytes(32)])
def test_prg_rejects_a_key_of_the_wrong_length(key: bytes) -> None:
    assert len(key) != MASK_KEY_BYTES
    with pytest.raises(ParameterError, match="16 bytes"):
        keystream(key, 16)
    with pytest.raises(ParameterError, match="16 bytes"):
        expand_mask(key, 4)
    with pytest.raises(ParameterError, match="16 bytes"):
        add_mask(np.zeros(4, dtype=np.uint32), key)


@pytest.mark.parametrize("key", ["0123456789abcdef", None, 12345, list(range(16))])
def test_prg_rejects_a_key_that_is_not_bytes(key: object) -> None:
    with pytest.raises(ParameterError):
        keystream(key, 16)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        add_mask(np.zeros(4, dtype=np.uint32), key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "dtype", [np.int32, np.int64, np.uint8, np.uint16, np.float32, np.float64, ">u4", ">u8"]
)
def test_prg_rejects_unsupported_dtypes(dtype: Any) -> None:
    with pytest.raises(ParameterError, match="uint32 or uint64"):
        expand_mask(_KEY, 4, dtype)
    with pytest.raises(ParameterError, match="uint32 or uint64"):
        add_mask(np.zeros(4, dtype=dtype), _KEY)


@pytest.mark.parametrize("dtype", _DTYPES)
def test_add_mask_rejects_a_non_contiguous_accumulator(dtype: type[np.unsignedinteger]) -> None:
    strided = np.zeros(16, dtype=dtype)[::2]
    with pytest.raises(ParameterError, match="contiguous 1-D"):
        add_mask(strided, _KEY)


@pytest.mark.parametrize("shape", [(), (2, 3), (4, 1)])
def test_add_mask_rejects_an_accumulator_that_is_not_one_dimensional(
    shape: tuple[int, ...],
) -> None:
    with pytest.raises(ParameterError, match="contiguous 1-D"):
        add_mask(np.zeros(shape, dtype=np.uint32), _KEY)


def test_add_mask_leaves_a_rejected_accumulator_untouched() -> None:
    accumulator = np.arange(8, dtype=np.uint32).reshape(2, 4)
    with pytest.raises(ParameterError):
        add_mask(accumulator, _KEY)
    assert accumulator.ravel().tolist() == list(range(8))
