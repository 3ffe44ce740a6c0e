"""Tests for secagg.packing: known answers, geometry, round trips and every rejection.

The sums through real encryption (headroom, the packing property, detection of an oversized
slot after decryption) live with the cipher in tests/secagg/hazmat/paillier/test_cipher.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secagg import packing
from secagg.errors import ParameterError, SlotOverflowError
from secagg.hazmat import paillier as hazmat_paillier
from secagg.packing import PackingScheme, SlotLayout

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "paillier.json"


def _hex(value: str) -> int:
    return int(value, 16)


@pytest.mark.parametrize("layout", list(SlotLayout))
def test_known_answer_packing(layout: SlotLayout) -> None:
    spec: dict[str, Any] = json.loads(VECTORS.read_text())["packing"]
    scheme = PackingScheme(spec["value_bits"], spec["num_clients"], spec["key_bits"], layout)
    expected = spec[layout.value]
    assert scheme.slots_per_plaintext == expected["slots_per_plaintext"]
    values = np.array(spec["values"], dtype=np.uint64)
    plaintexts = scheme.pack(values)
    assert plaintexts == [_hex(m) for m in expected["plaintexts"]]
    assert scheme.unpack(plaintexts, len(values), 1).tolist() == spec["values"]


def test_packing_is_reexported_by_the_hazmat_module() -> None:
    assert hazmat_paillier.PackingScheme is PackingScheme
    assert hazmat_paillier.SlotLayout is SlotLayout
    assert sorted(packing.__all__) == ["PackingScheme", "SlotLayout"]


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


def test_scheme_rejects_arguments_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="value_bits"):
        PackingScheme(True, 10, 2048)
    with pytest.raises(TypeError, match="layout"):
        PackingScheme(32, 10, 2048, "bits")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="public_key"):
        PackingScheme.for_public_key(2048, value_bits=32, num_clients=10)  # type: ignore[arg-type]


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
