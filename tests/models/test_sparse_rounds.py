"""Sparse federated rounds: the row layout, and the trainer's two secure sums.

The layout is the dense upload restricted to the announced rows, so a sparse round's decoded sum
must be the dense one wherever a row is announced and zero elsewhere; the trainer must train
each client only on announced rows, lose clients in both sums, and refuse what it cannot cover.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import (
    FederatedConfig,
    FederatedTrainer,
    LocalTrainingConfig,
    MatrixFactorization,
    NeuMF,
    RowUploadLayout,
    SharedLayout,
    SparseConfig,
    UploadLayout,
    flatten_shared,
    synthetic_interactions,
)
from models.cohort import RowDelta
from models.factory import make_dp_aggregator
from models.sparse_rounds import DROPOUT_ROUNDS, SparseRounds, split_dropouts
from protocols.aggregators import PlainAggregator, make_aggregator
from secagg.errors import ParameterError

ITEMS = 600
LOCAL = LocalTrainingConfig(objective="bpr", epochs=1, learning_rate=0.5, l2=1e-3)


def _neumf(items: int = 30) -> NeuMF:
    return NeuMF(5, items, gmf_dim=4, mlp_dim=3, hidden=(6,))


def _change(model: NeuMF, rows: np.ndarray, rng: np.random.Generator) -> RowDelta:
    layout = SharedLayout.of(model)
    tables = {
        s.name: rng.normal(size=(rows.shape[0], s.size // s.shape[0]))
        for s in layout.slots
        if s.per_item
    }
    dense = {s.name: rng.normal(size=s.shape) for s in layout.slots if not s.per_item}
    return RowDelta(rows, tables, dense)


@settings(max_examples=30, deadline=None)
@given(
    announced=st.sets(st.integers(0, 29), min_size=1, max_size=30),
    seed=st.integers(0, 2**31),
    counts=st.booleans(),
)
def test_the_row_layout_is_the_dense_upload_on_the_announced_rows(
    announced: set[int], seed: int, counts: bool
) -> None:
    model = _neumf()
    dense = UploadLayout(SharedLayout.of(model), model.num_items, counts, 0.5)
    rows = np.array(sorted(announced))
    layout = RowUploadLayout.of(dense, rows)
    rng = np.random.default_rng(seed)
    changes = [
        _change(
            model,
            np.sort(rng.choice(rows, size=rng.integers(0, rows.size + 1), replace=False)),
            rng,
        )
        for _ in range(3)
    ]
    sparse_total = np.zeros(layout.size)
    dense_total = np.zeros(dense.size)
    for change in changes:
        restricted = layout.gather(change)
        np.testing.assert_array_equal(restricted, layout.restrict(change.flat(model)))
        sparse_total += layout.encode(restricted)
        dense_total += dense.encode(change.flat(model))
    sparse_shared, sparse_counts = layout.decode(sparse_total)
    dense_shared, dense_counts = dense.decode(dense_total)
    np.testing.assert_array_equal(sparse_shared, dense_shared)
    if counts:
        assert sparse_counts is not None and dense_counts is not None
        np.testing.assert_array_equal(sparse_counts, dense_counts)
    else:
        assert sparse_counts is None and dense_counts is None


def test_a_change_outside_the_announced_rows_is_refused() -> None:
    model = _neumf()
    dense = UploadLayout(SharedLayout.of(model), model.num_items, True, 1.0)
    layout = RowUploadLayout.of(dense, np.array([1, 4, 9]))
    with pytest.raises(ParameterError, match="does not announce"):
        layout.gather(_change(model, np.array([4, 5]), np.random.default_rng(0)))
    for bad in ([4, 1], [1, 1], [-1, 3], [3, 30]):
        with pytest.raises(ParameterError, match="sorted, distinct"):
            RowUploadLayout.of(dense, np.array(bad))
    with pytest.raises(ParameterError, match="expects"):
        layout.decode(np.zeros(layout.size + 1))


def test_dropouts_are_split_over_the_two_sums() -> None:
    schedule = {1: 0, 2: DROPOUT_ROUNDS - 1, 3: DROPOUT_ROUNDS, 4: 2 * DROPOUT_ROUNDS - 1}
    support, rows = split_dropouts(schedule)
    assert support == {1: 0, 2: DROPOUT_ROUNDS - 1}
    assert rows == {3: 0, 4: DROPOUT_ROUNDS - 1}


def _trainer(
    aggregator: object, *, sparse: SparseConfig | None, cohort: bool = True, dropout: float = 0.0
) -> FederatedTrainer:
    data = synthetic_interactions(40, ITEMS, seed=3)
    model = MatrixFactorization(40, ITEMS, 8)
    config = FederatedConfig(
        rounds=4,
        clients_per_round=8,
        local=LOCAL,
        clip=1.0,
        dropout_fraction=dropout,
        eval_every=0,
        counts=True,
        sparse=sparse,
        cohort_training=cohort,
    )
    return FederatedTrainer(model, data, aggregator, config)  # type: ignore[arg-type]


@pytest.mark.parametrize("cohort", [True, False])
def test_a_sparse_round_over_the_whole_catalogue_is_the_dense_round(cohort: bool) -> None:
    dense = _trainer(PlainAggregator(), sparse=None, cohort=cohort)
    sparse = _trainer(PlainAggregator(), sparse=SparseConfig(pool=ITEMS), cohort=cohort)
    dense.run_round()
    record = sparse.run_round()
    assert record.announced_rows == ITEMS
    np.testing.assert_array_equal(flatten_shared(sparse.model), flatten_shared(dense.model))


@pytest.mark.parametrize("threat_model", ["active", "semi-honest"])
def test_sparse_rounds_move_only_announced_rows_with_dropouts(threat_model: str) -> None:
    aggregator = make_aggregator("secagg+", clip=1.0, threat_model=threat_model)  # type: ignore[arg-type]
    trainer = _trainer(aggregator, sparse=SparseConfig(pool=10), dropout=0.25)
    upload = trainer.server.upload
    dropped = 0
    for _ in range(4):
        before = flatten_shared(trainer.model).astype(np.float64)
        record = trainer.run_round()
        assert not record.aborted and record.announced_rows is not None
        assert set(record.survivors) | set(record.dropped) == set(record.sampled)
        moved = upload.touched(flatten_shared(trainer.model).astype(np.float64) - before)
        assert 0 < moved.sum() <= record.announced_rows < ITEMS
        assert record.touched_items is not None and moved.sum() <= record.touched_items
        dropped += len(record.dropped)
    assert dropped > 0


def test_a_client_lost_in_the_support_sum_never_trains_and_one_lost_later_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trainer = _trainer(make_aggregator("secagg", clip=1.0), sparse=SparseConfig(pool=10))
    trained: list[tuple[int, ...]] = []
    local_updates = trainer._local_updates

    def spy(sampled: tuple[int, ...], *args: object) -> object:
        trained.append(sampled)
        return local_updates(sampled, *args)  # type: ignore[arg-type]

    def schedule(sampled: tuple[int, ...]) -> dict[int, int]:
        return {sampled[0]: 1, sampled[1]: DROPOUT_ROUNDS + 1}

    monkeypatch.setattr(trainer, "_local_updates", spy)
    monkeypatch.setattr(trainer, "_dropout_schedule", schedule)
    record = trainer.run_round()
    early, late = record.sampled[0], record.sampled[1]
    assert early not in trained[0] and late in trained[0]
    assert {early, late} <= set(record.dropped)
    assert not {early, late} & set(record.survivors)
    assert len(record.survivors) == len(record.sampled) - 2


def test_sparse_rounds_refuse_dp_and_foreign_backends() -> None:
    private = make_dp_aggregator(
        "secagg",
        epsilon=8.0,
        delta=1e-5,
        rounds=4,
        clients_per_round=8,
        population=40,
        dropout=0.0,
        dimension=ITEMS * 9 + 1,
        clip_norm=0.1,
    )
    with pytest.raises(ParameterError, match="distributed DP"):
        _trainer(private, sparse=SparseConfig())

    class Foreign:
        name = "foreign"

        def aggregate(self, updates: object, **_: object) -> object:
            raise AssertionError("never called")

    with pytest.raises(ParameterError, match="pipeline backend"):
        _trainer(Foreign(), sparse=SparseConfig())


@pytest.mark.parametrize(
    ("field", "value"),
    [("pool", -1), ("rows_per_client", 0), ("hashes", 0), ("extra_rows", 0.0), ("pool", True)],
)
def test_bad_sparse_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ParameterError, match=field):
        SparseConfig(**{field: value})  # type: ignore[arg-type]


def test_the_sketch_is_sized_by_the_cohort_not_only_the_catalogue() -> None:
    small, large = SparseConfig().lanes(10, 10**6), SparseConfig().lanes(100, 10**6)
    assert small < large < 10**6
    rounds = SparseRounds(
        PlainAggregator(),
        UploadLayout(SharedLayout.of(_neumf()), 30, True, 1.0),
        SparseConfig(),
        10,
    )
    assert rounds.lanes == SparseConfig().lanes(10, 30)
