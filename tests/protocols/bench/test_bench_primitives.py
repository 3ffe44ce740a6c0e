"""The primitive micro-benchmarks the demos call: structure and exactness, never timing values.

Paillier rows use 512-bit keys through hazmat's private size-unchecked seam, so the module runs
in about a second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from protocols.bench import primitives
from protocols.bench.primitives import (
    MaskTiming,
    PaillierRow,
    Rates,
    Seconds,
    bench_packed,
    bench_phe,
    median_seconds,
    time_djn_table,
    time_pairwise_mask,
    timed,
)
from secagg.hazmat import paillier as hazmat_paillier
from secagg.packing import SlotLayout
from secagg.paillier_keys import PaillierKeypair, RandomnessMode

VALUE_BITS = 16


@pytest.fixture(scope="module")
def keys() -> PaillierKeypair:
    """A small DJN key pair (fast to generate; not a secure size)."""
    return hazmat_paillier._generate_keypair_unchecked_size(512, djn=True)


@pytest.fixture(scope="module")
def inputs() -> npt.NDArray[np.uint64]:
    """Three clients, ten 16-bit values each."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 2**VALUE_BITS, size=(3, 10), dtype=np.uint64)


def _assert_rates(row: PaillierRow) -> None:
    for rates in (row.wall, row.cpu):
        assert isinstance(rates, Rates)
        for value in dataclasses.astuple(rates):
            assert isinstance(value, float)
            assert value > 0


def test_time_pairwise_mask_reports_every_key() -> None:
    timing = time_pairwise_mask(64, 1)
    assert set(timing) == set(MaskTiming.__annotations__)
    assert timing["d"] == 64
    assert timing["ratio_to_raw"] == pytest.approx(
        timing["add_mask_ms"] / timing["raw_aes_ctr_plus_add_ms"]
    )


class _FakeClock:
    """Stands in for the ``time`` module: ``perf_counter`` walks through preset readings."""

    def __init__(self, readings: list[float]) -> None:
        self._readings: Iterator[float] = iter(readings)

    def perf_counter(self) -> float:
        return next(self._readings)


def test_median_seconds_warms_up_once_then_takes_the_median(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    # Three timed calls lasting 3, 1 and 2 seconds: the median is 2 (the minimum would be 1).
    monkeypatch.setattr(primitives, "time", _FakeClock([0.0, 3.0, 10.0, 11.0, 20.0, 22.0]))
    assert median_seconds(3, lambda: calls.append(1)) == 2.0
    assert len(calls) == 4


def test_timed_passes_arguments_and_returns_both_clocks() -> None:
    result, seconds = timed(divmod, 17, 5)
    assert result == (3, 2)
    assert isinstance(seconds, Seconds)
    assert seconds.wall >= 0
    assert seconds.cpu >= 0


def test_time_djn_table_times_one_encryption(keys: PaillierKeypair) -> None:
    seconds = time_djn_table(keys)
    assert isinstance(seconds, Seconds)
    assert seconds.wall >= 0


def test_bench_phe_row_is_exact(keys: PaillierKeypair, inputs: npt.NDArray[np.uint64]) -> None:
    row = bench_phe(keys, inputs[0, :3], clients=3)
    assert row.exact
    assert row.path == "phe 1.5.0, one value per ciphertext"
    assert row.values_per_ciphertext == 1
    assert row.bytes_per_value == hazmat_paillier.ciphertext_byte_length(keys.public_key)
    assert row.note.startswith("sample of 3 values")
    _assert_rates(row)


@pytest.mark.parametrize("layout", [SlotLayout.BITS, SlotLayout.RADIX])
def test_bench_packed_djn_row_is_exact(
    keys: PaillierKeypair, inputs: npt.NDArray[np.uint64], layout: SlotLayout
) -> None:
    row, others = bench_packed(keys, inputs, VALUE_BITS, layout, RandomnessMode.DJN, 1)
    assert row.exact
    assert row.path == f"packed, {layout.value} layout, DJN r^n"
    assert row.values_per_ciphertext >= 2
    assert row.bytes_per_value > 0
    assert len(others) == inputs.shape[0] - 1
    _assert_rates(row)


def test_bench_packed_fresh_row_reuses_the_other_clients(
    keys: PaillierKeypair, inputs: npt.NDArray[np.uint64]
) -> None:
    _, others = bench_packed(keys, inputs, VALUE_BITS, SlotLayout.BITS, RandomnessMode.DJN, 1)
    row, returned = bench_packed(
        keys, inputs, VALUE_BITS, SlotLayout.BITS, RandomnessMode.FRESH, 1, others
    )
    assert returned is others
    assert row.exact
    assert row.path == "packed, bits layout, fresh r^n"
    assert row.note.endswith("; other clients DJN-encrypted")


def test_bench_packed_flags_an_aggregate_that_is_not_the_plain_sum(
    keys: PaillierKeypair, inputs: npt.NDArray[np.uint64]
) -> None:
    _, foreign = bench_packed(
        keys, inputs[::-1].copy(), VALUE_BITS, SlotLayout.BITS, RandomnessMode.DJN, 1
    )
    row, _ = bench_packed(keys, inputs, VALUE_BITS, SlotLayout.BITS, RandomnessMode.DJN, 1, foreign)
    assert not row.exact
