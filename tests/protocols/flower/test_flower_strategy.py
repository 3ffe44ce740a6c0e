"""``SecAggFedAvg`` under Flower's own ``Strategy.start`` over an in-process grid."""

from __future__ import annotations

from pathlib import Path

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
    write_keys,
)

from protocols.flower import SecAggFedAvg
from secagg.hazmat import paillier as hazmat_paillier

pytestmark = pytest.mark.usefixtures("serverapp_identity")


@pytest.mark.parametrize("protocol", ["secagg+", "paillier"])
def test_strategy_start_runs_secure_fedavg_rounds(
    protocol: str, committee_keys: hazmat_paillier.ThresholdKeyset, tmp_path: Path
) -> None:
    # Node 4 goes silent in the second round: at its unmasking (train message 7) under masking,
    # at its upload (train message 2) under Paillier, which needs one message per round after
    # the identity claim (message 0). Paillier runs a 3-of-5 committee loaded from key files.
    if protocol == "paillier":
        keys = write_keys(tmp_path / "keys", 5, committee_keys)
        grid = LoopbackGrid(make_client_app(), 5, silent_from={NODE_BASE + 4: 2}, keys=keys)
        workflow = make_workflow(protocol, keys)
    else:
        grid = LoopbackGrid(make_client_app(), 5, silent_from={NODE_BASE + 4: 7})
        workflow = make_workflow(protocol)
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
    if protocol == "paillier":
        assert strategy.results[2].survivors == tuple(grid.nodes[:4])
        assert [r.decryptors for r in strategy.results.values()] == [(1, 2, 3)] * 2


def test_strategy_keeps_the_model_when_a_round_aborts() -> None:
    grid = LoopbackGrid(make_client_app(), 3, silent_from={NODE_BASE: 0, NODE_BASE + 1: 0})
    strategy = SecAggFedAvg(make_workflow("secagg"), fraction_evaluate=0.0, min_available_nodes=3)
    initial = global_arrays(6)
    result = strategy.start(grid, initial, num_rounds=1, timeout=5.0)
    assert strategy.results == {}
    assert result.train_metrics_clientapp == {}
