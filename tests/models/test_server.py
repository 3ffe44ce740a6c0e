"""The server side of federated training: the upload layout and the step from the aggregate.

:class:`models.server.UploadLayout` must mark exactly the items a client's delta touched and
give the server exact per-item counts, even after a real secure sum (the indicators travel
through the same quantizer as the delta). :class:`models.server.FederatedServer` must turn the
sum into a mean per touched row (with counts) or keep the legacy sum rule (without).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from models.mf import MatrixFactorization
from models.parameters import ParameterSlot, SharedLayout, flatten_shared
from models.server import FederatedServer, UploadLayout
from models.server_optimizers import ServerOptimizerConfig
from protocols.aggregators import AggregationResult, make_aggregator
from protocols.defaults import DEFAULT_VALUE_BITS
from secagg.encoding import QuantizationScheme
from secagg.errors import ParameterError

FloatArray = npt.NDArray[np.float64]

USERS, ITEMS, DIM = 5, 7, 3
EMBEDDING, BIAS, GLOBAL = "item_embedding.weight", "item_bias.weight", "global_bias"


def _model() -> MatrixFactorization:
    return MatrixFactorization(USERS, ITEMS, DIM, seed=0)


def _slot(layout: SharedLayout, name: str) -> ParameterSlot:
    return next(slot for slot in layout.slots if slot.name == name)


def _entries(layout: SharedLayout, name: str, row: int = 0) -> slice:
    """The flat indices of row ``row`` of parameter ``name`` (the whole of a dense one)."""
    slot = _slot(layout, name)
    width = slot.size // slot.shape[0] if slot.per_item else slot.size
    start = slot.offset + row * width
    return slice(start, start + width)


def _delta(
    layout: SharedLayout,
    rng: np.random.Generator,
    *,
    embedding_rows: list[int],
    bias_rows: list[int],
    dense: bool = True,
) -> FloatArray:
    """A delta that is non-zero on exactly the given item rows (and on the dense weight)."""
    delta = np.zeros(layout.size)
    for name, rows in ((EMBEDDING, embedding_rows), (BIAS, bias_rows)):
        for row in rows:
            entries = _entries(layout, name, row)
            delta[entries] = rng.uniform(0.1, 0.9, entries.stop - entries.start) * rng.choice(
                [-1.0, 1.0]
            )
    if dense:
        delta[_entries(layout, GLOBAL)] = rng.uniform(-0.9, 0.9)
    return delta


@pytest.fixture()
def layout() -> SharedLayout:
    return SharedLayout.of(_model())


def test_layout_of_mf_has_item_tables_and_one_dense_weight(layout: SharedLayout) -> None:
    """The premises of the tests below: two item tables of 7 rows, and ``mu``."""
    assert layout.size == ITEMS * DIM + ITEMS + 1
    per_item = {slot.name: slot.per_item for slot in layout.slots}
    assert per_item == {EMBEDDING: True, BIAS: True, GLOBAL: False}


# --- UploadLayout ------------------------------------------------------------------------------


def test_touched_marks_rows_changed_in_any_item_table(layout: SharedLayout) -> None:
    upload = UploadLayout(layout, ITEMS, counts=True, clip=0.5)
    delta = np.zeros(layout.size)
    delta[_entries(layout, EMBEDDING, 1).start + 2] = -1e-6  # one coordinate of row 1
    delta[_entries(layout, BIAS, 4)] = 0.3  # the bias only of item 4
    delta[_entries(layout, EMBEDDING, 6)] = 0.2  # both tables of item 6
    delta[_entries(layout, BIAS, 6)] = 0.2
    delta[_entries(layout, GLOBAL)] = 0.7  # dense: touches no item
    expected = np.zeros(ITEMS, dtype=bool)
    expected[[1, 4, 6]] = True
    np.testing.assert_array_equal(upload.touched(delta), expected)
    np.testing.assert_array_equal(upload.touched(np.zeros(layout.size)), np.zeros(ITEMS, bool))


def test_encode_appends_clip_exactly_at_the_touched_items(layout: SharedLayout) -> None:
    upload = UploadLayout(layout, ITEMS, counts=True, clip=0.5)
    delta = _delta(layout, np.random.default_rng(0), embedding_rows=[0, 3], bias_rows=[3, 5])
    encoded = upload.encode(delta)
    assert upload.size == layout.size + ITEMS
    assert encoded.shape == (upload.size,)
    np.testing.assert_array_equal(encoded[: layout.size], delta)
    np.testing.assert_array_equal(encoded[layout.size :], [0.5, 0, 0, 0.5, 0, 0.5, 0])


def test_without_counts_the_upload_is_the_delta(layout: SharedLayout) -> None:
    upload = UploadLayout(layout, ITEMS, counts=False, clip=0.5)
    delta = _delta(layout, np.random.default_rng(1), embedding_rows=[2], bias_rows=[])
    assert upload.size == layout.size
    np.testing.assert_array_equal(upload.encode(delta), delta)
    shared, counts = upload.decode(delta)
    assert counts is None
    np.testing.assert_array_equal(shared, delta)


def test_decode_returns_exact_integer_counts(layout: SharedLayout) -> None:
    """The counts are rounded: an error below half an indicator changes nothing."""
    upload = UploadLayout(layout, ITEMS, counts=True, clip=0.25)
    rng = np.random.default_rng(2)
    touched_rows = [[0, 1], [1], [1, 6], [], [6, 1, 0]]
    deltas = [_delta(layout, rng, embedding_rows=rows, bias_rows=[]) for rows in touched_rows]
    total = np.sum([upload.encode(d) for d in deltas], axis=0)
    noise = rng.uniform(-0.4, 0.4, size=ITEMS) * 0.25  # below half a count, either way
    total[layout.size :] += noise
    shared, counts = upload.decode(total)
    assert counts is not None and counts.dtype == np.int64
    assert counts.tolist() == [2, 4, 0, 0, 0, 0, 2]
    np.testing.assert_array_equal(shared, total[: layout.size])


@pytest.mark.parametrize("counts", [True, False])
def test_decode_refuses_an_aggregate_of_the_wrong_length(
    layout: SharedLayout, counts: bool
) -> None:
    upload = UploadLayout(layout, ITEMS, counts=counts, clip=1.0)
    for length in (upload.size - 1, upload.size + 1):
        with pytest.raises(ParameterError, match="aggregate has shape"):
            upload.decode(np.zeros(length))
    with pytest.raises(ParameterError, match="aggregate has shape"):
        upload.decode(np.zeros((1, upload.size)))


def test_counts_survive_a_real_secure_sum(layout: SharedLayout) -> None:
    """Six uploads through SecAgg+, one client dropping before it uploads.

    The decoded counts equal the true counts over the survivors exactly, on the secure and the
    plain backend alike. The plain backend's shared part is the float64 sum of the survivors'
    deltas bit for bit; the secure backend quantizes stochastically (fresh randomness per
    round), so its shared part can only match within one quantization step per survivor.
    """
    upload = UploadLayout(layout, ITEMS, counts=True, clip=1.0)
    rng = np.random.default_rng(3)
    rows = {0: [0, 2], 1: [2], 2: [2, 4, 5], 3: [], 4: [6, 0], 5: [2, 3]}
    deltas = {u: _delta(layout, rng, embedding_rows=r, bias_rows=r[:1]) for u, r in rows.items()}
    uploads = {u: upload.encode(d) for u, d in deltas.items()}
    dropouts = {2: 1}
    secure = make_aggregator("secagg+", clip=1.0).aggregate(uploads, dropouts=dropouts)
    plain = make_aggregator("plain", clip=1.0).aggregate(uploads, dropouts=dropouts)
    survivors = (0, 1, 3, 4, 5)
    assert secure.survivors == plain.survivors == survivors
    true_counts = np.zeros(ITEMS, dtype=np.int64)
    for u in survivors:
        true_counts[rows[u]] += 1
    assert true_counts.tolist() == [2, 0, 3, 1, 0, 0, 1]
    exact_sum = np.zeros(layout.size)
    for u in survivors:
        exact_sum += deltas[u]
    step = QuantizationScheme(1.0, DEFAULT_VALUE_BITS, len(uploads)).step
    for result in (secure, plain):
        shared, counts = upload.decode(result.total)
        assert counts is not None
        np.testing.assert_array_equal(counts, true_counts)
        assert np.max(np.abs(shared - exact_sum)) <= len(survivors) * step
    plain_shared, _ = upload.decode(plain.total)
    np.testing.assert_array_equal(plain_shared, exact_sum)


def test_two_servers_fed_the_same_aggregate_take_identical_steps(layout: SharedLayout) -> None:
    """The step is a deterministic function of the aggregate (what makes replays exact)."""
    upload = UploadLayout(layout, ITEMS, counts=True, clip=1.0)
    rng = np.random.default_rng(4)
    uploads = {
        u: upload.encode(_delta(layout, rng, embedding_rows=[u, 6], bias_rows=[u]))
        for u in range(6)
    }
    result = make_aggregator("secagg+", clip=1.0).aggregate(uploads, dropouts={5: 0})
    config = ServerOptimizerConfig(name="fedadam")
    servers = [FederatedServer(_model(), optimizer=config, counts=True) for _ in range(2)]
    steps = [server.apply(result) for server in servers]
    assert steps[0] == steps[1]
    assert steps[0].survivors == 5 and steps[0].touched_items == 6
    np.testing.assert_array_equal(servers[0].broadcast(), servers[1].broadcast())


# --- FederatedServer ---------------------------------------------------------------------------


def _item_rows(layout: SharedLayout, vector: FloatArray, row: int) -> FloatArray:
    """The entries of item ``row`` in both item tables."""
    return np.concatenate(
        [vector[_entries(layout, EMBEDDING, row)], vector[_entries(layout, BIAS, row)]]
    )


def test_counts_turn_item_sums_into_means_over_the_touching_clients() -> None:
    server = FederatedServer(
        _model(), item_learning_rate=0.5, dense_learning_rate=2.0, counts=True, clip=1.0
    )
    layout = server.layout
    before = server.broadcast().astype(np.float64)
    rng = np.random.default_rng(5)
    shared = rng.uniform(-2.0, 2.0, size=layout.size)  # non-zero on the count-0 rows too
    counts = np.array([2, 0, 1, 3, 0, 0, 4], dtype=np.float64)
    total = np.concatenate([shared, counts * 1.0])
    applied = server.apply(AggregationResult(total, survivors=(0, 1, 2, 3), dropped=(9,)))
    after = server.broadcast().astype(np.float64)

    expected = before.copy()
    for row, count in enumerate(counts):
        for name in (EMBEDDING, BIAS):
            entries = _entries(layout, name, row)
            if count:
                expected[entries] += 0.5 * shared[entries] / count
    expected[_entries(layout, GLOBAL)] += 2.0 * shared[_entries(layout, GLOBAL)] / 4
    np.testing.assert_allclose(after, expected, rtol=0, atol=1e-6)
    for row in (1, 4, 5):  # inactive rows do not move at all
        np.testing.assert_array_equal(
            _item_rows(layout, after, row), _item_rows(layout, before, row)
        )
    assert applied.survivors == 4
    assert applied.touched_items == 4
    assert applied.update_norm == pytest.approx(float(np.linalg.norm(expected - before)), 1e-5)


def test_without_counts_sgd_keeps_the_legacy_rule() -> None:
    """item_lr * sum on item rows, dense_lr * sum / survivors on dense weights."""
    server = FederatedServer(_model(), item_learning_rate=0.5, dense_learning_rate=3.0)
    layout = server.layout
    before = server.broadcast().astype(np.float64)
    total = np.random.default_rng(6).uniform(-1.0, 1.0, size=layout.size)
    applied = server.apply(AggregationResult(total, survivors=(1, 2, 3), dropped=()))
    mask = layout.per_item_mask()
    expected = before + np.where(mask, 0.5 * total, 3.0 * total / 3)
    np.testing.assert_allclose(server.broadcast(), expected, rtol=0, atol=1e-6)
    assert applied.touched_items is None


def test_a_weighted_aggregate_averages_dense_weights_over_the_total_weight() -> None:
    server = FederatedServer(_model(), dense_learning_rate=1.0)
    layout = server.layout
    before = server.broadcast().astype(np.float64)
    total = np.zeros(layout.size)
    total[_entries(layout, GLOBAL)] = 3.0
    server.apply(AggregationResult(total, survivors=(0, 1), dropped=(), total_weight=6.0))
    mu = _entries(layout, GLOBAL)
    assert server.broadcast()[mu][0] == pytest.approx(before[mu][0] + 0.5)


def test_counts_refuse_a_weighted_aggregate() -> None:
    """Weights scale the touch indicators too, so no count can be read off the sum."""
    server = FederatedServer(_model(), counts=True)
    before = server.broadcast()
    total = np.zeros(server.upload.size)
    result = AggregationResult(total, survivors=(0, 1), dropped=(), total_weight=6.0)
    with pytest.raises(ParameterError, match="unweighted aggregate"):
        server.apply(result)
    assert np.array_equal(server.broadcast(), before)


def test_an_untouched_row_does_not_move_on_stale_momentum() -> None:
    """With counts, a row nobody touched keeps still under FedAvgM; without, it drifts."""
    momentum = ServerOptimizerConfig(name="fedavgm", momentum=0.9)
    lazy = FederatedServer(_model(), optimizer=momentum, counts=True)
    eager = FederatedServer(_model(), optimizer=momentum, counts=False)
    layout = lazy.layout
    first = np.zeros(layout.size)
    first[_entries(layout, EMBEDDING, 3)] = 0.4
    count_row_3 = np.zeros(ITEMS)
    count_row_3[3] = 1.0
    for server, counts in ((lazy, count_row_3), (eager, None)):
        total = first if counts is None else np.concatenate([first, counts])
        server.apply(AggregationResult(total, survivors=(0,), dropped=()))
    lazy_before, eager_before = lazy.broadcast(), eager.broadcast()
    quiet = np.zeros(layout.size)
    lazy.apply(AggregationResult(np.concatenate([quiet, np.zeros(ITEMS)]), (0,), ()))
    eager.apply(AggregationResult(quiet, (0,), ()))
    row = _entries(layout, EMBEDDING, 3)
    np.testing.assert_array_equal(lazy.broadcast()[row], lazy_before[row])
    np.testing.assert_allclose(eager.broadcast()[row], eager_before[row] + 0.9 * 0.4, atol=1e-6)


def test_server_refuses_an_aggregate_of_the_wrong_length() -> None:
    server = FederatedServer(_model(), counts=True)
    before = server.broadcast()
    shared_only = np.zeros(server.layout.size)  # the indicators are missing
    with pytest.raises(ParameterError, match="aggregate has shape"):
        server.apply(AggregationResult(shared_only, survivors=(0, 1), dropped=()))
    with pytest.raises(ParameterError, match="aggregate has shape"):
        server.apply(AggregationResult(shared_only, survivors=(), dropped=(0, 1)))
    np.testing.assert_array_equal(server.broadcast(), before)
    assert server.optimizer.rounds_applied == 0


def test_an_empty_round_changes_nothing() -> None:
    server = FederatedServer(_model(), counts=True)
    before = server.broadcast()
    total = np.zeros(server.upload.size)
    applied = server.apply(AggregationResult(total, survivors=(), dropped=(0, 1)))
    assert (applied.survivors, applied.update_norm, applied.touched_items) == (0, 0.0, None)
    np.testing.assert_array_equal(server.broadcast(), before)
    assert server.optimizer.rounds_applied == 0


def test_broadcast_is_a_copy_of_the_shared_parameters() -> None:
    server = FederatedServer(_model())
    sent = server.broadcast()
    sent += 1.0
    np.testing.assert_array_equal(server.broadcast(), flatten_shared(server.model))
    assert not np.array_equal(server.broadcast(), sent)
