"""Two-phase sparse secure aggregation: the same sums as dense on the rows, no row ids in view."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from protocols import wire
from protocols.aggregators import MaskingAggregator, PaillierAggregator, PlainAggregator
from protocols.aggregators.pipeline import Pipeline
from protocols.aggregators.sparse import SparseRowAggregator
from protocols.messages import SERVER_ID, Message
from secagg.errors import ParameterError
from secagg.hazmat.paillier import _generate_keypair_unchecked_size
from secagg.support import lanes_for

VALUE_BITS = 22
LEVELS = (1 << VALUE_BITS) - 1
CLIP = LEVELS * 2.0 ** -(VALUE_BITS - 1)  # quantization step exactly 2^-20
STEP = 2.0 ** -(VALUE_BITS - 2)
BLANK = (LEVELS - 1) // 2  # the grid level next to zero: an untouched value
CATALOGUE, WIDTH, CLIENTS = 300, 3, 9


def _grid(levels: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    return -CLIP + levels.astype(np.float64) * STEP


def _backend(name: str, threat_model: str = "active") -> Pipeline:
    if name == "plain":
        return PlainAggregator(clip=CLIP)
    return MaskingAggregator(
        name, clip=CLIP, value_bits=VALUE_BITS, threat_model=threat_model, through_wire=True
    )


def _round(rng: np.random.Generator) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Each client's touched rows and its dense table update (grid values, blank elsewhere)."""
    touched, tables = {}, {}
    for client in range(1, CLIENTS + 1):
        rows = rng.choice(CATALOGUE, size=int(rng.integers(1, 12)), replace=False)
        levels = np.full((CATALOGUE, WIDTH), BLANK, dtype=np.int64)
        levels[rows] += rng.integers(-40_000, 40_000, size=(rows.shape[0], WIDTH))
        touched[client], tables[client] = rows, _grid(levels)
    return touched, tables


@pytest.mark.parametrize(
    ("backend", "threat_model"),
    [("plain", "active"), ("secagg", "active"), ("secagg+", "active"), ("secagg+", "semi-honest")],
)
def test_sparse_sum_equals_the_dense_sum_on_the_rows_with_dropouts_in_both_phases(
    backend: str, threat_model: str
) -> None:
    rng = np.random.default_rng(4)
    for _ in range(2):
        touched, tables = _round(rng)
        sparse = SparseRowAggregator(
            _backend(backend, threat_model), catalogue=CATALOGUE, lanes=400
        )
        pool = rng.choice(CATALOGUE, size=5, replace=False)
        # Client 2 is gone before uploading its sketch; client 5 after it (it is in the sum).
        announced = sparse.support(touched, pool=pool, dropouts={2: 1, 5: 3})
        assert 2 not in announced.survivors and 5 in announced.survivors
        union = np.unique(np.concatenate([touched[c] for c in announced.survivors]))
        assert np.isin(union, announced.rows).all() and np.isin(pool, announced.rows).all()

        members = [c for c in announced.survivors]
        uploads = {c: tables[c][announced.rows].reshape(-1) for c in members}
        # In the row phase client 7 drops before uploading, client 8 after.
        result = sparse.aggregate(uploads, announced, dropouts={7: 1, 8: 3})
        dense = _backend(backend, threat_model).aggregate(
            {c: tables[c].reshape(-1) for c in result.survivors}
        )
        on_rows = dense.total.reshape(CATALOGUE, WIDTH)[announced.rows]
        assert np.array_equal(result.total.reshape(-1, WIDTH), on_rows)
        # Off the rows, the dense sum holds nothing but every survivor's blank.
        off = np.setdiff1d(np.arange(CATALOGUE), announced.rows)
        blank = _grid(np.array([BLANK]))[0] * len(result.survivors)
        assert np.all(dense.total.reshape(CATALOGUE, WIDTH)[off] == blank)


def _values(value: object) -> Iterator[object]:
    """Every int, array and bytes inside a message, through nested dataclasses and tuples."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _values(getattr(value, field.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _values(item)
    else:
        yield value


def test_the_server_never_receives_a_clients_row_ids() -> None:
    """Every message the server receives, in both phases, decoded from its wire bytes."""
    backend = _backend("secagg+")
    received: list[Message] = []

    def tap(round_index: int, message: Message) -> Message:
        if message.recipient == SERVER_ID:
            received.append(wire.decode(wire.encode(message)))
        return message

    backend.secure_sum.interceptor = tap  # type: ignore[attr-defined]
    sparse = SparseRowAggregator(backend, catalogue=100_000, lanes=2_000)
    rng = np.random.default_rng(9)
    # Row ids far from every client id, round, length and count a message carries.
    touched = {c: rng.choice(np.arange(50_000, 100_000), 8, replace=False) for c in range(1, 10)}
    announced = sparse.support(touched)
    uploads = {c: np.zeros(announced.rows.shape[0] * WIDTH) for c in announced.survivors}
    for client, rows in touched.items():
        block = uploads[client].reshape(-1, WIDTH)
        block[announced.positions(rows)] = rng.uniform(-0.5, 0.5, size=(rows.shape[0], WIDTH))
    sparse.aggregate(uploads, announced)

    secret = {int(r) for rows in touched.values() for r in rows}
    kinds: dict[str, set[int]] = {}
    assert "MaskedInput" in {type(m).__name__ for m in received}
    for message in received:
        kinds.setdefault(type(message).__name__, set()).add(len(wire.encode(message)))
        for value in _values(message):
            if isinstance(value, int):
                assert value not in secret
            elif isinstance(value, np.ndarray):
                assert not np.isin(value, list(secret)).any()
    # Within each phase a message kind has one length for every client: no size leaks a count.
    assert all(len(sizes) <= 2 for sizes in kinds.values()), kinds


def test_only_the_support_survivors_may_upload_rows() -> None:
    sparse = SparseRowAggregator(_backend("plain"), catalogue=50, lanes=64)
    touched = {1: np.array([3]), 2: np.array([4]), 3: np.array([5])}
    announced = sparse.support(touched, dropouts={3: 0})
    with pytest.raises(ParameterError, match=r"\[3\]"):
        sparse.aggregate({c: np.zeros(announced.rows.shape[0]) for c in (1, 2, 3)}, announced)


def test_bad_support_input_is_refused() -> None:
    sparse = SparseRowAggregator(_backend("plain"), catalogue=50, lanes=64)
    with pytest.raises(ParameterError, match="at least 2"):
        sparse.support({1: np.array([1])})
    with pytest.raises(ParameterError, match="pool"):
        sparse.support({1: np.array([1]), 2: np.array([2])}, pool=[50])
    with pytest.raises(ParameterError):
        sparse.support({1: np.array([1]), 2: np.array([60])})
    announced = sparse.support({1: np.array([1]), 2: np.array([2])})
    with pytest.raises(ParameterError, match="does not cover"):
        announced.positions([7])


def _traced_peak_of_a_sparse_round(catalogue: int, rows_per_client: int) -> int:
    """Peak bytes Python allocated during one whole sparse SecAgg round (all parties)."""
    rng = np.random.default_rng(1)
    clients, width = 6, 64
    touched = {c: rng.choice(20_000, size=rows_per_client, replace=False) for c in range(clients)}
    lanes = lanes_for(clients * rows_per_client, catalogue=catalogue)
    sparse = SparseRowAggregator(
        MaskingAggregator("secagg", clip=1.0, value_bits=16), catalogue=catalogue, lanes=lanes
    )
    tracemalloc.start()
    try:
        announced = sparse.support(touched, dropouts={0: 1})
        uploads = {
            c: rng.uniform(-1, 1, size=announced.rows.shape[0] * width) for c in announced.survivors
        }
        sparse.aggregate(uploads, announced, dropouts={1: 1})
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_sparse_rounds_memory_grows_with_the_touched_rows_not_with_the_catalogue() -> None:
    """A whole simulated round (6 clients, 64 values a row): ten times the catalogue adds no
    more than the sketch decoder's fixed chunk, while a dense round would hold 6 x 900,000
    more rows x 64 values (2.8 GB in float64); four times the touched rows, about 3 times the
    memory (every client's upload is a rows x 64 vector)."""
    peak = {
        (catalogue, rows): _traced_peak_of_a_sparse_round(catalogue, rows)
        for catalogue, rows in ((100_000, 300), (1_000_000, 300), (100_000, 1_200))
    }
    assert peak[1_000_000, 300] - peak[100_000, 300] < 2_000_000
    assert peak[100_000, 1_200] > 2.5 * peak[100_000, 300]


def test_paillier_is_refused_in_the_callers_terms() -> None:
    with pytest.raises(ParameterError, match="not the support sketch's 32-bit words"):
        SparseRowAggregator(
            PaillierAggregator(max_clients=8, keypair=_generate_keypair_unchecked_size(1024)),
            catalogue=10,
            lanes=8,
        )
