"""The server workflow over an in-process Flower grid: exactness, dropouts, aborts, settings.

Each test runs real rounds through :class:`~flower_loopback.LoopbackGrid` (a real ``ClientApp``
with ``secagg_mod`` per node) and compares with Flower's own FedAvg arithmetic, or with the plain
weighted sum of the clipped updates.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from flower_loopback import (
    NODE_BASE,
    RUN_ID,
    SHAPES,
    LoopbackGrid,
    assert_close_to_fedavg,
    global_arrays,
    make_client_app,
    make_workflow,
    node_update,
    node_weight,
    plain_fedavg,
    train_content,
    wire_messages,
    write_keys,
)
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from protocols import wire
from protocols.flower import STATE_RECORD, SecureAggregationWorkflow, flower_session_id
from protocols.identity import trusted_setup
from protocols.masking import ClientPhase, MaskingClient
from protocols.messages import KeyAdvertisement, MaskedInput
from protocols.paillier import KeyHolder
from protocols.rounds import RoundPolicy
from secagg.encoding import QuantizationScheme, UpdateEncoding
from secagg.errors import InsufficientSurvivorsError, ParameterError
from secagg.hazmat import paillier as hazmat_paillier

pytestmark = pytest.mark.usefixtures("serverapp_identity")


def _grid_and_workflow(
    protocol: str,
    num_nodes: int,
    tmp_path: Path,
    paillier_keys: hazmat_paillier.PaillierKeypair,
    **kwargs: object,
) -> tuple[LoopbackGrid, SecureAggregationWorkflow]:
    """Semi-honest masking, or Paillier over key files (its nodes sign their uploads)."""
    if protocol != "paillier":
        return LoopbackGrid(make_client_app(), num_nodes), make_workflow(protocol, **kwargs)
    keys = write_keys(tmp_path / "keys", num_nodes, paillier_keys)
    grid = LoopbackGrid(make_client_app(), num_nodes, keys=keys)
    return grid, make_workflow("paillier", keys, **kwargs)


@pytest.mark.parametrize("protocol", ["secagg", "secagg+", "paillier"])
def test_workflow_result_equals_plain_fedavg_up_to_quantization(
    protocol: str, paillier_keys: hazmat_paillier.PaillierKeypair, tmp_path: Path
) -> None:
    grid, workflow = _grid_and_workflow(protocol, 6, tmp_path, paillier_keys)
    arrays = global_arrays()
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    assert result.survivors == tuple(grid.nodes)
    assert result.dropped == {}
    assert result.total_weight == pytest.approx(sum(node_weight(n) for n in grid.nodes), rel=1e-4)
    assert_close_to_fedavg(result.arrays, plain_fedavg(arrays, grid.nodes, 1), workflow, 6)
    # The weight is summed securely; the other train metrics travel in the clear.
    assert [dict(m) for m in result.metrics] == [{"train-loss": 0.5}] * 6


@pytest.mark.parametrize("protocol", ["secagg", "secagg+", "paillier"])
def test_workflow_weighted_round_gives_the_weighted_sum_of_the_clipped_updates(
    protocol: str,
    paillier_keys: hazmat_paillier.PaillierKeypair,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # Each node clips its update x to [-clip, clip] itself and then weights it, so the round
    # yields sum_i w_i * clip(x_i); clipping (w_i / max_weight) * x_i instead (the rule before
    # UpdateEncoding) would clip nothing here and give sum_i w_i * x_i.
    clip, num_nodes = 0.25, 5
    grid, workflow = _grid_and_workflow(protocol, num_nodes, tmp_path, paillier_keys, clip=clip)
    rng = np.random.default_rng(7)
    arrays = ArrayRecord({k: Array(rng.normal(0, 1.0, size=s)) for k, s in SHAPES.items()})
    caplog.set_level(logging.WARNING, logger="protocols.flower")
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    assert result.survivors == tuple(grid.nodes)

    num_clients = 1024 if protocol == "paillier" else num_nodes
    scheme = QuantizationScheme(clip=clip, value_bits=22, num_clients=num_clients)
    bound = UpdateEncoding(scheme, workflow.max_weight).error_bound(num_nodes)
    weights = {node: node_weight(node) for node in grid.nodes}
    assert abs(result.total_weight - sum(weights.values())) <= bound
    for key, array in arrays.items():
        updates = {n: array.numpy() + node_update(n, 1, array.shape) for n in grid.nodes}
        clipped_sum = sum(w * np.clip(updates[n], -clip, clip) for n, w in weights.items())
        unclipped_sum = sum(w * updates[n] for n, w in weights.items())
        got = result.arrays[key].numpy() * result.total_weight
        assert result.arrays[key].numpy().dtype == np.float64
        assert np.max(np.abs(got - clipped_sum)) <= bound + 1e-9
        assert np.max(np.abs(got - unclipped_sum)) > 100 * bound
    # Each node logs how many of its values it clipped.
    clipped_logs = [r for r in caplog.records if "are clipped" in r.getMessage()]
    assert len(clipped_logs) == num_nodes


@pytest.mark.parametrize("drop_round", [0, 1, 2, 4])
@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_workflow_recovers_from_a_dropout_in_every_protocol_round(
    protocol: str, drop_round: int
) -> None:
    # Semi-honest: no consistency round (3), so the unmasking round is the 4th train message.
    message_index = min(drop_round, 3)
    grid = LoopbackGrid(make_client_app(), 7, silent_from={NODE_BASE + 3: message_index})
    workflow = (
        make_workflow(protocol, degree=4) if protocol == "secagg+" else make_workflow(protocol)
    )
    arrays = global_arrays(1)
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    # A node lost after its upload (at unmasking) stays in the sum; its self-mask is rebuilt.
    expected = grid.nodes if drop_round == 4 else [n for n in grid.nodes if n != NODE_BASE + 3]
    assert result.survivors == tuple(expected)
    assert result.dropped == {NODE_BASE + 3: drop_round}
    plain = plain_fedavg(arrays, expected, 1)
    assert_close_to_fedavg(result.arrays, plain, workflow, len(expected))


def _assert_fedavg_without(
    grid: LoopbackGrid, workflow: SecureAggregationWorkflow, lost: int, *, seed: int
) -> None:
    """One round in which node ``lost`` falls out at the upload: FedAvg of the others."""
    arrays = global_arrays(seed)
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    survivors = [n for n in grid.nodes if n != lost]
    assert result.survivors == tuple(survivors)
    assert result.dropped == {lost: 2}
    plain = plain_fedavg(arrays, survivors, 1)
    assert_close_to_fedavg(result.arrays, plain, workflow, len(survivors))


def test_workflow_paillier_drops_a_silent_node(
    paillier_keys: hazmat_paillier.PaillierKeypair, tmp_path: Path
) -> None:
    # Train message 0 identifies the node; it goes silent at the upload (message 1).
    keys = write_keys(tmp_path / "keys", 4, paillier_keys)
    grid = LoopbackGrid(make_client_app(), 4, silent_from={NODE_BASE + 1: 1}, keys=keys)
    _assert_fedavg_without(grid, make_workflow("paillier", keys), NODE_BASE + 1, seed=2)


def test_workflow_aborts_cleanly_below_threshold_and_tells_the_rest() -> None:
    # SecAgg over 5 nodes needs 3; three go silent after advertising keys.
    silent = {NODE_BASE + i: 1 for i in range(3)}
    grid = LoopbackGrid(make_client_app(), 5, silent_from=silent)
    workflow = make_workflow("secagg")
    with pytest.raises(InsufficientSurvivorsError):
        workflow.aggregate(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    # The two nodes still in the round received an Abort, which poisons their machines.
    for node in grid.nodes[3:]:
        state = grid.contexts[node].state[STATE_RECORD]
        assert MaskingClient.from_state(state["machine"]).phase is ClientPhase.ABORTED
    # Nobody was ever asked to train: the abort came before the upload round, and the Abort
    # notices got empty answers.
    for node in grid.nodes[3:]:
        assert len(grid.replies_by_node[node]) == 3
        assert wire_messages(grid.replies_by_node[node][2]) == []
        assert not any(reply.content.metric_records for reply in grid.replies_by_node[node])


def test_workflow_drops_a_node_whose_training_crashes() -> None:
    grid = LoopbackGrid(make_client_app(failing=[NODE_BASE + 2]), 5)
    _assert_fedavg_without(grid, make_workflow("secagg"), NODE_BASE + 2, seed=3)
    # The crashed round is spent: its machine is poisoned, so it can never be trained or
    # uploaded again, and none of the round's keys, seed or shares survive in the state.
    state = grid.contexts[NODE_BASE + 2].state[STATE_RECORD]
    machine = MaskingClient.from_state(state["machine"])
    assert machine.phase is ClientPhase.ABORTED
    assert machine._mask_keys is None and machine._share_keys is None
    assert machine._self_mask_seed is None and machine._held_shares == {}


def test_workflow_uploads_are_packed_ring_words_not_int64() -> None:
    grid = LoopbackGrid(make_client_app(), 4)
    workflow = make_workflow("secagg")
    workflow.aggregate(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    upload = [m for m in wire_messages(grid.replies_by_node[NODE_BASE][2])]
    assert len(upload) == 1 and isinstance(upload[0], MaskedInput)
    masked = upload[0]
    values = sum(int(np.prod(s)) for s in SHAPES.values()) + 1
    assert masked.modulus_bits == 22 + 2 and masked.vector.dtype == np.uint32
    assert len(wire.encode(masked)) == wire.encoded_size(masked) < 38 + 9 + 3 * values + 1


def test_workflow_maps_64_bit_node_ids_to_dense_protocol_ids() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    make_workflow("secagg").aggregate(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    for index, node in enumerate(grid.nodes):
        (advert,) = wire_messages(grid.replies_by_node[node][0])
        assert isinstance(advert, KeyAdvertisement) and advert.sender == index


def test_workflow_round_ids_count_up_within_the_run() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    workflow = make_workflow("secagg")
    arrays = global_arrays()
    for server_round in (1, 2):
        result = workflow.aggregate(
            grid, grid.nodes, train_content(arrays, server_round), server_round=server_round
        )
        arrays = result.arrays
    for node in grid.nodes:
        record = grid.contexts[node].state[STATE_RECORD]
        assert int.from_bytes(record["last-round"], "big") - 1 == 1


def test_workflow_rejects_a_node_speaking_for_another() -> None:
    grid = LoopbackGrid(make_client_app(), 5)
    workflow = make_workflow("secagg")
    secure_round = workflow.begin(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    upload = secure_round.prepare()
    replies = grid.send_and_receive(upload, timeout=5.0)
    # Node 0's reply is re-addressed as if it answered node 1's message.
    by_node = {r.metadata.src_node_id: r for r in replies}
    forged = copy.deepcopy(by_node[NODE_BASE])
    forged.metadata.__dict__["_reply_to_message_id"] = by_node[
        NODE_BASE + 1
    ].metadata.reply_to_message_id
    others = [r for n, r in by_node.items() if n not in (NODE_BASE, NODE_BASE + 1)]
    result = secure_round.finish([forged, *others])
    assert NODE_BASE not in result.survivors and NODE_BASE + 1 not in result.survivors


@pytest.mark.parametrize(
    ("protocol", "degree", "threshold", "expected"),
    [
        ("secagg", None, None, (8, 5)),
        ("secagg+", None, None, (8, 5)),
        ("secagg+", 4, None, (4, 3)),
        ("secagg", None, 7, (8, 7)),
    ],
)
def test_workflow_round_graph_and_threshold_come_from_the_round_planner(
    protocol: str, degree: int | None, threshold: int | None, expected: tuple[int, int]
) -> None:
    # ``expected`` (degree, threshold) over 9 nodes is what the workflow chose before the round
    # planner existed: the numbers must not change.
    grid = LoopbackGrid(make_client_app(), 9)
    workflow = make_workflow(protocol, degree=degree, threshold=threshold)
    assert workflow.policy == RoundPolicy(
        protocol,  # type: ignore[arg-type]
        degree=degree,
        threshold=threshold,
        value_bits=22,
    )
    secure_round = workflow.begin(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    params = secure_round.server.params
    assert (params.graph.max_degree, params.threshold) == expected
    assert params.graph.nodes == tuple(range(9))
    assert params.modulus_bits == 22 + 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"protocol": "sum"}, "protocol"),
        ({"protocol": "secagg", "timeout": 0}, "timeout"),
        ({"protocol": "secagg", "max_weight": -1.0}, "max_weight"),
        ({"protocol": "paillier"}, "'paillier' needs the deployment's trusted roster"),
        ({"protocol": "paillier", "threat_model": "semi-honest"}, "trusted roster"),
        ({"protocol": "secagg", "degree": 4}, "degree"),
        ({"protocol": "secagg", "value_bits": 0}, "value_bits"),
        ({"protocol": "secagg+"}, "needs the deployment's trusted roster"),
        ({"protocol": "secagg", "threat_model": "malicious"}, "threat_model"),
        ({"protocol": "secagg", "threat_model": "semi-honest", "roster": "r.txt"}, "active"),
        ({"protocol": "secagg", "roster": "/nonexistent/roster.txt"}, "cannot read the roster"),
    ],
)
def test_workflow_rejects_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        SecureAggregationWorkflow(**kwargs)  # type: ignore[arg-type]


def test_workflow_rejects_a_key_holder_packing_for_other_settings(
    paillier_keys: hazmat_paillier.PaillierKeypair,
) -> None:
    roster, _ = trusted_setup(range(3))
    key_holder = KeyHolder(
        paillier_keys,
        session_id=flower_session_id(RUN_ID),
        roster=roster,
        value_bits=16,
        max_clients=1024,
    )
    with pytest.raises(ParameterError, match="value_bits=22"):
        SecureAggregationWorkflow("paillier", decryptors=[key_holder], roster=roster)
    with pytest.raises(ParameterError, match="needs its decryptors"):
        SecureAggregationWorkflow("paillier", roster=roster)


def test_workflow_needs_two_nodes_and_some_arrays() -> None:
    grid = LoopbackGrid(make_client_app(), 2)
    workflow = make_workflow("secagg")
    with pytest.raises(ParameterError, match="at least 2 nodes"):
        workflow.begin(grid, grid.nodes[:1], train_content(global_arrays()), server_round=1)
    empty = RecordDict({"config": ConfigRecord({"server-round": 1})})
    with pytest.raises(ParameterError, match="no ArrayRecord"):
        workflow.begin(grid, grid.nodes, empty, server_round=1)
