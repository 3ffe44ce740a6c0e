"""Support sketches: the packed counting Bloom filter that finds a cohort's touched rows."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.hazmat.prg import keystream, keystream_blocks
from secagg.support import SupportSketch, lanes_for

SESSION = bytes(range(16))


def _sketch(catalogue: int = 500, lanes: int = 4000, cohort: int = 10, hashes: int = 4):
    return SupportSketch.for_round(
        SESSION, 7, catalogue=catalogue, cohort=cohort, lanes=lanes, hashes=hashes
    )


def _ring_sum(vectors: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(vectors[0])
    for vector in vectors:
        total += vector  # uint32 wrap-around: the ring the secure sum adds in
    return total


def test_keystream_blocks_are_the_ctr_keystream_at_those_counters() -> None:
    key = bytes(range(100, 116))
    stream = np.frombuffer(keystream(key, 16 * 40), np.uint8).reshape(40, 16)
    counters = np.array([0, 39, 5, 5, 17], np.uint64)
    assert np.array_equal(keystream_blocks(key, counters), stream[counters.astype(int)])


def test_positions_known_answer_from_aes_directly() -> None:
    """Row r's lanes are AES_key(r as a 128-bit big-endian block), read as 4 LE uint32 mod lanes."""
    sketch = _sketch(lanes=1000)
    row = 123
    block = struct.pack(">QQ", 0, row)
    encrypted = Cipher(algorithms.AES(sketch.key), modes.ECB()).encryptor().update(block)
    expected = [word % 1000 for word in struct.unpack("<4I", encrypted)]
    assert sketch.positions([row]).tolist() == [expected]


def test_eight_hashes_take_two_blocks_per_row() -> None:
    sketch = _sketch(lanes=1000, hashes=8)
    blocks = keystream_blocks(sketch.key, np.array([2 * 9, 2 * 9 + 1], np.uint64))
    expected = np.frombuffer(blocks.tobytes(), "<u4").astype(np.int64) % 1000
    assert sketch.positions([9]).tolist() == [expected.tolist()]


def test_the_key_is_fresh_per_session_round_and_catalogue() -> None:
    keys = {
        SupportSketch.for_round(s, r, catalogue=c, cohort=3, lanes=10).key
        for s in (SESSION, bytes(16))
        for r in (0, 1)
        for c in (100, 101)
    }
    assert len(keys) == 8


@settings(max_examples=60, deadline=None)
@given(
    clients=st.lists(
        st.lists(st.integers(0, 499), min_size=0, max_size=40), min_size=1, max_size=12
    ),
    lanes=st.integers(50, 3000),
)
def test_decoded_support_holds_every_touched_row_and_counts_bound_from_above(
    clients: list[list[int]], lanes: int
) -> None:
    sketch = _sketch(lanes=lanes, cohort=len(clients))
    total = _ring_sum([sketch.encode(np.array(rows, np.int64)) for rows in clients])
    support = sketch.decode(total)
    touched = sorted({r for rows in clients for r in rows})
    assert set(touched) <= set(support.rows.tolist())
    assert np.all(np.diff(support.rows) > 0)
    truth = {r: sum(r in set(rows) for rows in clients) for r in touched}
    found = dict(zip(support.rows.tolist(), support.counts.tolist(), strict=True))
    assert all(found[r] >= truth[r] for r in touched)


def test_counts_are_exact_without_collisions() -> None:
    sketch = _sketch(catalogue=50, lanes=1 << 20, cohort=3)
    clients = [np.array([1, 2, 3]), np.array([2, 3]), np.array([3, 40])]
    support = sketch.decode(_ring_sum([sketch.encode(c) for c in clients]))
    assert support.rows.tolist() == [1, 2, 3, 40]
    assert support.counts.tolist() == [1, 2, 3, 1]


@pytest.mark.parametrize("cohort, bits", [(1, 8), (255, 8), (256, 16), (65535, 16), (65536, 32)])
def test_lanes_are_wide_enough_for_the_cohort_and_never_carry(cohort: int, bits: int) -> None:
    sketch = _sketch(catalogue=20, lanes=64, cohort=cohort)
    assert sketch.lane_bits == bits
    one = sketch.encode(np.arange(20))
    total = (one.astype(np.uint64) * cohort % 2**32).astype(np.uint32)
    counts = sketch.lane_counts(total)
    assert set(np.unique(counts).tolist()) <= {0, cohort}
    assert sketch.decode(total).rows.tolist() == list(range(20))


def test_a_clients_colliding_rows_set_a_lane_once() -> None:
    sketch = _sketch(catalogue=200, lanes=3, cohort=4)
    counts = sketch.lane_counts(sketch.encode(np.arange(200)))
    assert counts.tolist() == [1, 1, 1]


def test_threshold_drops_rows_few_clients_touched() -> None:
    sketch = _sketch(catalogue=30, lanes=1 << 18, cohort=5)
    clients = [np.array([4, 9]), np.array([4]), np.array([4, 9, 20])]
    support = sketch.decode(_ring_sum([sketch.encode(c) for c in clients]), threshold=2)
    assert support.rows.tolist() == [4, 9]


def test_extra_rows_stay_near_the_sizing_target() -> None:
    catalogue, touched = 200_000, 2_000
    lanes = lanes_for(touched, catalogue=catalogue, extra_rows=0.05)
    sketch = _sketch(catalogue=catalogue, lanes=lanes, cohort=20)
    rng = np.random.default_rng(3)
    rows = rng.choice(catalogue, touched, replace=False)
    total = _ring_sum([sketch.encode(part) for part in np.array_split(rows, 20)])
    extra = sketch.decode(total).rows.shape[0] - touched
    assert 0 <= extra <= 3 * 0.05 * touched


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.encode(np.array([500])),
        lambda s: s.encode(np.array([-1])),
        lambda s: s.encode(np.array([0.5])),
        lambda s: s.encode(np.zeros((2, 2), np.int64)),
        lambda s: s.lane_counts(np.zeros(3, np.uint32)),
        lambda s: s.lane_counts(np.zeros(s.words, np.int64)),
        lambda s: s.decode(np.zeros(s.words, np.uint32), threshold=0),
    ],
)
def test_bad_input_is_refused_in_the_callers_terms(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError):
        call(_sketch())


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ParameterError, match="session_id"):
        SupportSketch.for_round(b"short", 0, catalogue=10, cohort=2, lanes=10)
    with pytest.raises(ParameterError, match="hashes"):
        _sketch(hashes=17)
    with pytest.raises(ParameterError, match="32-bit lane"):
        _sketch(cohort=2**32)
    with pytest.raises(ParameterError):
        lanes_for(0, catalogue=10)
