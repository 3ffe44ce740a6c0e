"""``SecAggFedAvg`` under Flower's own ``Strategy.start`` over an in-process grid."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from flower_loopback import (
    NODE_BASE,
    LoopbackGrid,
    assert_close_to_fedavg,
    global_arrays,
    make_client_app,
    make_workflow,
    plain_fedavg,
)

from protocols.flower import SecAggFedAvg
from secagg.hazmat import paillier as hazmat_paillier

pytestmark = pytest.mark.usefixtures("serverapp_identity")


@pytest.mark.parametrize("protocol", ["secagg+", "paillier"])
def test_strategy_start_runs_secure_fedavg_rounds(
    protocol: str, paillier_keys: hazmat_paillier.PaillierKeypair
) -> None:
    # Node 4 goes silent in the second round: at its unmasking (train message 7) under masking,
    # at its upload (train message 1) under Paillier, which needs one message per round.
    silent = {NODE_BASE + 4: 1 if protocol == "paillier" else 7}
    grid = LoopbackGrid(make_client_app(), 5, silent_from=silent)
    workflow = make_workflow(protocol, paillier_keys)
    strategy = SecAggFedAvg(workflow, fraction_evaluate=0.0, min_available_nodes=5)
    initial = global_arrays(5)
    result = strategy.start(grid, initial, num_rounds=2, timeout=5.0)
    assert set(strategy.results) == {1, 2}
    expected = plain_fedavg(initial, grid.nodes, 1)
    assert_close_to_fedavg(strategy.results[1].arrays, expected, workflow, 5)
    assert result.arrays is strategy.results[2].arrays
    metrics = result.train_metrics_clientapp[1]
    assert metrics["train-loss"] == pytest.approx(0.5)
    assert metrics["secagg-survivors"] == 5


def test_strategy_keeps_the_model_when_a_round_aborts() -> None:
    grid = LoopbackGrid(make_client_app(), 3, silent_from={NODE_BASE: 0, NODE_BASE + 1: 0})
    strategy = SecAggFedAvg(make_workflow("secagg"), fraction_evaluate=0.0, min_available_nodes=3)
    initial = global_arrays(6)
    result = strategy.start(grid, initial, num_rounds=1, timeout=5.0)
    assert strategy.results == {}
    assert result.train_metrics_clientapp == {}
