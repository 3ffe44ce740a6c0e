"""Sparse rounds of ``SecAggFedAvg``: a support round, then the announced rows only.

Each node of the in-process grid trains rows of an item table of its own (its "items") and a
dense bias; the sparse result must be Flower's FedAvg of the same replies up to quantization,
every node's upload of one round must have one length, and nothing a node sends may name a row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from flower_loopback import (
    NODE_BASE,
    LoopbackGrid,
    assert_close_to_fedavg,
    make_workflow,
    node_weight,
    wire_messages,
    write_keys,
)
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from protocols.aggregators.sparse import SparseConfig
from protocols.flower import ROWS_RECORD, SecAggFedAvg, SecAggMod, SparseTables
from protocols.flower.records import RowSelection, SupportSettings
from protocols.messages import MaskedInput
from secagg.errors import ParameterError, RemoteProtocolError

pytestmark = pytest.mark.usefixtures("serverapp_identity")

CATALOGUE, WIDTH = 400, 4
#: The announced rows each train function was given (one entry per distinct selection).
ANNOUNCED: list[np.ndarray] = []


def _rows(node: int) -> np.ndarray:
    """The items node ``node`` holds: a few of the first 60 rows."""
    rng = np.random.default_rng(node % 2**32)
    return np.sort(rng.choice(60, size=5, replace=False))


def _trained(
    node: int, arrays: ArrayRecord, server_round: int, announced: np.ndarray
) -> ArrayRecord:
    """The node's arrays after training: its rows and the bias move; nothing else."""
    rng = np.random.default_rng([node % 2**32, server_round])
    items = arrays["items"].numpy().copy()
    own = _rows(node)
    assert np.isin(own, announced).all()  # every row it trains was announced
    items[own] += rng.uniform(-0.5, 0.5, size=(own.size, WIDTH)).astype(np.float32)
    bias = arrays["bias"].numpy() + rng.uniform(-0.5, 0.5, size=WIDTH).astype(np.float32)
    return ArrayRecord({"items": Array(items), "bias": Array(bias)})


def _app(trained: dict[int, ArrayRecord], with_support: bool = True) -> ClientApp:
    mod = SecAggMod(support=(lambda context: _rows(context.node_id)) if with_support else None)
    app = ClientApp()

    @app.train(mods=[mod])
    def train(message: Message, context: Context) -> Message:
        server_round = int(message.content["config"]["server-round"])
        selection = RowSelection.from_content(message.content)
        assert selection is not None and selection.tables == ("items",)
        if not any(np.array_equal(a, selection.indices) for a in ANNOUNCED):
            ANNOUNCED.append(selection.indices)
        arrays = _trained(
            context.node_id, message.content["arrays"], server_round, selection.indices
        )
        trained[context.node_id] = arrays
        metrics = MetricRecord({"num-examples": node_weight(context.node_id)})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    return app


def _initial() -> ArrayRecord:
    rng = np.random.default_rng(7)
    return ArrayRecord(
        {
            "items": Array(rng.normal(0, 0.3, size=(CATALOGUE, WIDTH)).astype(np.float32)),
            "bias": Array(rng.normal(0, 0.3, size=WIDTH).astype(np.float32)),
        }
    )


def _fedavg(trained: dict[int, ArrayRecord], nodes: tuple[int, ...]) -> ArrayRecord:
    replies = [
        RecordDict(
            {"arrays": trained[n], "metrics": MetricRecord({"num-examples": node_weight(n)})}
        )
        for n in nodes
    ]
    return aggregate_arrayrecords(replies, "num-examples")


SPARSE = SparseTables(("items",), CATALOGUE, SparseConfig(pool=20, rows_per_client=8))


@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_a_sparse_round_is_flowers_fedavg_on_every_row_with_dropouts_in_both_sums(
    protocol: str,
) -> None:
    # Node 5 goes silent at the support round's upload (its train message 2), node 6 at the
    # row round's share keys (message 5 = 4 support-round messages + 1).
    trained: dict[int, ArrayRecord] = {}
    ANNOUNCED.clear()
    grid = LoopbackGrid(_app(trained), 7, silent_from={NODE_BASE + 5: 2, NODE_BASE + 6: 5})
    workflow = make_workflow(protocol)
    strategy = SecAggFedAvg(workflow, fraction_evaluate=0.0, min_available_nodes=7, sparse=SPARSE)
    initial = _initial()
    strategy.start(grid, initial, num_rounds=1, timeout=5.0)
    support, result = strategy.supports[1], strategy.results[1]
    assert NODE_BASE + 5 not in support.survivors and NODE_BASE + 5 not in trained
    assert result.survivors == tuple(NODE_BASE + i for i in range(5))
    assert support.support is not None
    union = np.unique(np.concatenate([_rows(n) for n in support.survivors]))
    assert np.isin(union, support.support.rows).all()
    assert_close_to_fedavg(result.arrays, _fedavg(trained, result.survivors), workflow, 5)
    # Rows outside the announced ones travel nowhere and keep their broadcast values exactly.
    assert len(ANNOUNCED) == 1
    silent = np.setdiff1d(np.arange(CATALOGUE), ANNOUNCED[0])
    assert silent.size > 0 and np.isin(support.support.rows, ANNOUNCED[0]).all()
    np.testing.assert_array_equal(
        result.arrays["items"].numpy()[silent], initial["items"].numpy()[silent]
    )


def test_no_node_message_carries_a_row_id_and_uploads_have_one_length() -> None:
    trained: dict[int, ArrayRecord] = {}
    grid = LoopbackGrid(_app(trained), 5)
    strategy = SecAggFedAvg(
        make_workflow("secagg"), fraction_evaluate=0.0, min_available_nodes=5, sparse=SPARSE
    )
    strategy.start(grid, _initial(), num_rounds=1, timeout=5.0)
    lengths: list[set[int]] = [set(), set()]
    for node, replies in grid.replies_by_node.items():
        uploads = []
        for reply in replies:
            assert ROWS_RECORD not in reply.content
            assert not reply.content.array_records.keys() - {"secagg-wire"}
            for message in wire_messages(reply):
                if isinstance(message, MaskedInput):
                    uploads.append(message)
        assert len(uploads) == 2, node
        for phase, upload in enumerate(uploads):
            lengths[phase].add(upload.vector.shape[0])
    assert all(len(phase) == 1 for phase in lengths)


def test_a_node_without_a_support_function_leaves_the_round() -> None:
    trained: dict[int, ArrayRecord] = {}
    grid = LoopbackGrid(_app(trained, with_support=False), 3)
    strategy = SecAggFedAvg(
        make_workflow("secagg"), fraction_evaluate=0.0, min_available_nodes=3, sparse=SPARSE
    )
    strategy.start(grid, _initial(), num_rounds=1, timeout=5.0)
    assert strategy.results == {} and trained == {}


def test_sparse_rounds_refuse_paillier_and_bad_tables(
    tmp_path: Path, paillier_keys: object
) -> None:
    keys = write_keys(tmp_path / "keys", 3, paillier_keys)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="not Paillier"):
        SecAggFedAvg(make_workflow("paillier", keys), sparse=SPARSE)
    with pytest.raises(ParameterError, match="table"):
        SparseTables((), CATALOGUE)
    with pytest.raises(ParameterError, match="sorted"):
        RowSelection(("items",), (3, 1))


def test_the_sparse_records_round_trip_and_malformed_ones_are_the_servers_fault() -> None:
    selection = RowSelection(("items", "bias_rows"), (0, 5, 9))
    content = RecordDict({ROWS_RECORD: selection.to_record()})
    assert RowSelection.from_content(content) == selection
    assert RowSelection.from_content(RecordDict()) is None
    settings = SupportSettings(CATALOGUE, 5, 600, 4)
    assert SupportSettings.from_record(settings.to_record()) == settings
    for bad in ({"tables": ["items"], "rows": [3, 2]}, {"tables": "items", "rows": [1]}, {}):
        with pytest.raises(RemoteProtocolError, match="announced rows"):
            RowSelection.from_content(RecordDict({ROWS_RECORD: ConfigRecord(bad)}))
    with pytest.raises(RemoteProtocolError, match="support round"):
        SupportSettings.from_record(
            ConfigRecord({"catalogue": 0, "cohort": 5, "lanes": 9, "hashes": 4})
        )


def test_a_sparse_round_against_an_active_server(tmp_path: Path) -> None:
    # Active model: the nodes claim roster ids first (train message 0); node 3 goes silent at
    # the row round's upload (messages 1-5 are the support round's, 6 and 7 the row round's
    # setup and share keys).
    keys = write_keys(tmp_path / "keys", 4)
    trained: dict[int, ArrayRecord] = {}
    grid = LoopbackGrid(_app(trained), 4, keys=keys, silent_from={NODE_BASE + 3: 8})
    workflow = make_workflow("secagg+", roster=keys.roster_path)
    strategy = SecAggFedAvg(workflow, fraction_evaluate=0.0, min_available_nodes=4, sparse=SPARSE)
    strategy.start(grid, _initial(), num_rounds=1, timeout=5.0)
    result = strategy.results[1]
    assert len(strategy.supports[1].survivors) == 4
    assert result.survivors == tuple(NODE_BASE + i for i in range(3))
    assert_close_to_fedavg(result.arrays, _fedavg(trained, result.survivors), workflow, 3)


def test_the_demo_app_trains_its_recommender_in_sparse_rounds() -> None:
    """The demo's own ClientApp and strategy (``sparse = 1``), in process: the secure result is
    FedAvg of the nodes' models trained with negatives from the announced rows, recomputed
    offline, and the item rows nobody announced keep their broadcast values."""
    pytest.importorskip("torch", reason="the demo app trains with torch")
    import sys

    app_dir = Path(__file__).resolve().parents[3] / "demos" / "flower_app"
    sys.path.insert(0, str(app_dir))
    try:
        from secagg_mf import client_app, server_app, task
    finally:
        sys.path.remove(str(app_dir))
    run_config = {"backend": "secagg", "threat-model": "semi-honest", "sparse": 1,
                  "sparse-pool": 10, "num-users": 40, "num-items": 500, "dim": 4,
                  "local-epochs": 1}  # fmt: skip
    settings = task.Settings.from_run_config(run_config)
    seen: list[RowSelection] = []

    def spy(node: int, index: int, message: Message) -> Message:
        selection = RowSelection.from_content(message.content)
        if selection is not None and selection not in seen:
            seen.append(selection)
        return message

    grid = LoopbackGrid(client_app.app, 4, intercept=spy)
    for context in grid.contexts.values():
        context.run_config.update(run_config)
    strategy = server_app.make_strategy(settings, run_id=1)
    initial = task.shared_arrays(task.build_model(settings))
    strategy.start(grid, initial, num_rounds=1, timeout=5.0)
    (selection,) = seen
    assert selection.tables == task.item_tables(settings) and len(selection.rows) < 500
    result = strategy.results[1]
    expected, _ = task.fedavg_reference(settings, initial, 4, candidates=selection.indices)
    plain = ArrayRecord({k: Array(v.astype(np.float32)) for k, v in expected.items()})
    assert_close_to_fedavg(result.arrays, plain, strategy.workflow, 4)
    silent = np.setdiff1d(np.arange(500), selection.indices)
    for table in selection.tables:
        np.testing.assert_array_equal(
            result.arrays[table].numpy()[silent], initial[table].numpy()[silent]
        )
