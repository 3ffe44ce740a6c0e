"""The Flower integration in the active threat model: key files, identity claims, and refusals.

Each test runs real rounds through :class:`~flower_loopback.LoopbackGrid`, whose nodes hold the
identity keys and roster written by :func:`~protocols.flower.keys.write_deployment_keys`, in the
reverse of the sorted node order, so the workflow must learn from the nodes' signed claims which
roster client each node is. A malicious server is played by an interceptor that rewrites the
server's messages on their way to a node.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from flower_loopback import (
    NODE_BASE,
    RUN_ID,
    LoopbackGrid,
    assert_close_to_fedavg,
    global_arrays,
    make_client_app,
    make_workflow,
    plain_fedavg,
    train_content,
    wire_messages,
)
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict

from protocols import wire
from protocols.flower import STATE_RECORD, WIRE_RECORD, SecAggFedAvg, SecAggMod
from protocols.flower.client_mod import NODE_IDENTITY_KEY, NODE_ROSTER, NODE_THREAT_MODEL
from protocols.flower.keys import DeploymentKeys, load_node_identity, write_deployment_keys
from protocols.flower.records import IDENTIFY_RECORD
from protocols.masking import ClientPhase, MaskingClient
from protocols.messages import (
    Abort,
    ConsistencySignature,
    KeyAdvertisement,
    KeyRoster,
    RoundSetup,
    UnmaskResponse,
)
from protocols.messages import Message as ProtocolMessage
from secagg.errors import InsufficientSurvivorsError, LocalProtocolError
from secagg.hazmat.kex import generate_keypair

pytestmark = pytest.mark.usefixtures("serverapp_identity")

#: Train message index of each protocol round at a node's first active round (0 identifies).
IDENTIFY, SETUP, SHARES, UPLOAD, CONSISTENCY, UNMASK = range(6)


def _keys(tmp_path: Path, num_clients: int, degree: int | None = None) -> DeploymentKeys:
    return write_deployment_keys(tmp_path / "keys", range(num_clients), degree=degree)


def _replace_wire(message: Message, replacement: ProtocolMessage) -> Message:
    message.content[WIRE_RECORD] = ArrayRecord(
        {"0": Array(np.frombuffer(wire.encode(replacement), dtype=np.uint8))}
    )
    return message


def _machine(grid: LoopbackGrid, keys: DeploymentKeys, node: int) -> MaskingClient:
    """The node's saved client machine, rebuilt with its own key and roster."""
    trust = load_node_identity(keys.key_paths[grid.client_of[node]], keys.roster_path)
    machine = grid.contexts[node].state.config_records[STATE_RECORD]["machine"]
    assert isinstance(machine, bytes)
    return MaskingClient.from_state(machine, identity=trust.identity, roster=trust.roster)


@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_active_round_equals_plain_fedavg_with_nodes_mapped_by_their_claims(
    protocol: str, tmp_path: Path
) -> None:
    keys = _keys(tmp_path, 6)
    grid = LoopbackGrid(make_client_app(), 6, keys=keys)
    workflow = make_workflow(protocol, roster=keys.roster_path)
    arrays = global_arrays()
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    assert result.survivors == tuple(grid.nodes)
    assert (result.dropped, result.unreachable, result.misbehaved) == ({}, (), {})
    assert_close_to_fedavg(result.arrays, plain_fedavg(arrays, grid.nodes, 1), workflow, 6)
    # The workflow learnt the reversed mapping from the claims, not from the sorted node ids.
    assert workflow.node_of_client == {c: n for n, c in grid.client_of.items()}
    for node in grid.nodes:
        replies = grid.replies_by_node[node]
        assert IDENTIFY_RECORD in replies[IDENTIFY].content
        (advert,) = wire_messages(replies[SETUP])
        assert isinstance(advert, KeyAdvertisement) and advert.sender == grid.client_of[node]
        assert len(advert.signature) == 64
        (signed,) = wire_messages(replies[CONSISTENCY])
        assert isinstance(signed, ConsistencySignature)
        assert isinstance(wire_messages(replies[UNMASK])[0], UnmaskResponse)


@pytest.mark.parametrize("drop_round", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_active_round_recovers_from_a_dropout_in_every_protocol_round(
    protocol: str, drop_round: int, tmp_path: Path
) -> None:
    # SecAgg+ with k = 4: the roster pins the degree, so every node checks it gets k = 4.
    keys = _keys(tmp_path, 7, degree=4 if protocol == "secagg+" else None)
    lost = NODE_BASE + 3
    grid = LoopbackGrid(make_client_app(), 7, silent_from={lost: drop_round + 1}, keys=keys)
    degree: dict[str, object] = {"degree": 4} if protocol == "secagg+" else {}
    workflow = make_workflow(protocol, None, roster=keys.roster_path, **degree)
    arrays = global_arrays(1)
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    # A node lost after its upload (consistency or unmasking) stays in the sum.
    expected = grid.nodes if drop_round >= 3 else [n for n in grid.nodes if n != lost]
    assert result.survivors == tuple(expected)
    assert result.dropped == {lost: drop_round}
    assert_close_to_fedavg(
        result.arrays, plain_fedavg(arrays, expected, 1), workflow, len(expected)
    )


@pytest.mark.parametrize("threat_model", ["active", "semi-honest"])
def test_node_refuses_a_roster_whose_keys_the_server_substituted_only_when_active(
    threat_model: str, tmp_path: Path
) -> None:
    keys = _keys(tmp_path, 5)
    victim = NODE_BASE + 1
    roster_index = SHARES if threat_model == "active" else SHARES - 1
    server_key = generate_keypair().public_bytes  # the server's own key, in a peer's name

    def substitute(node: int, index: int, message: Message) -> Message | None:
        if node != victim or index != roster_index:
            return message
        (roster,) = wire_messages(message)
        assert isinstance(roster, KeyRoster)
        peer = next(e.client_id for e in roster.entries if e.client_id != roster.recipient)
        entries = tuple(
            replace(e, mask_public_key=server_key) if e.client_id == peer else e
            for e in roster.entries
        )
        return _replace_wire(message, replace(roster, entries=entries))

    grid = LoopbackGrid(
        make_client_app(), 5, intercept=substitute, keys=keys if threat_model == "active" else None
    )
    roster_file: dict[str, object] = (
        {"roster": keys.roster_path} if threat_model == "active" else {}
    )
    result = make_workflow("secagg", None, **roster_file).aggregate(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    (answer,) = wire_messages(grid.replies_by_node[victim][roster_index])
    if threat_model == "semi-honest":  # documented: a semi-honest node takes the server's word
        assert not isinstance(answer, Abort)
        return
    assert isinstance(answer, Abort) and "keys were substituted" in answer.reason
    assert _machine(grid, keys, victim).phase is ClientPhase.ABORTED
    # The victim never trained nor uploaded; the four others complete the round.
    assert len(grid.replies_by_node[victim]) == roster_index + 1
    assert result.survivors == tuple(n for n in grid.nodes if n != victim)
    assert result.dropped == {victim: 1}


def test_active_node_refuses_a_setup_for_another_roster_client(tmp_path: Path) -> None:
    keys = _keys(tmp_path, 5)
    victim, other = NODE_BASE, NODE_BASE + 1

    def readdress(node: int, index: int, message: Message) -> Message | None:
        if node != victim or index != SETUP:
            return message
        (setup,) = wire_messages(message)
        assert isinstance(setup, RoundSetup)
        target = grid.client_of[other]
        neighbours = tuple(sorted((set(setup.neighbours) | {setup.recipient}) - {target}))
        return _replace_wire(message, replace(setup, recipient=target, neighbours=neighbours))

    grid = LoopbackGrid(make_client_app(), 5, intercept=readdress, keys=keys)
    result = make_workflow("secagg", roster=keys.roster_path).aggregate(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    (answer,) = wire_messages(grid.replies_by_node[victim][SETUP])
    assert isinstance(answer, Abort) and "this node's identity key is client" in answer.reason
    assert result.survivors == tuple(grid.nodes[1:])


def test_active_round_leaves_out_nodes_that_cannot_prove_a_roster_identity(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = _keys(tmp_path, 5)
    foreign = write_deployment_keys(tmp_path / "foreign", range(5))
    grid = LoopbackGrid(make_client_app(), 5, keys=keys)
    impostor, keyless = grid.nodes[0], grid.nodes[1]
    # The impostor signs its claim with a key of another deployment; the other has no key.
    grid.contexts[impostor].node_config.update(
        {
            NODE_IDENTITY_KEY: str(foreign.key_paths[grid.client_of[impostor]]),
            NODE_ROSTER: str(foreign.roster_path),
        }
    )
    del grid.contexts[keyless].node_config[NODE_IDENTITY_KEY]
    workflow = make_workflow("secagg", roster=keys.roster_path)
    caplog.set_level(logging.WARNING, logger="protocols.flower")
    arrays = global_arrays(2)
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    assert result.survivors == tuple(grid.nodes[2:])
    assert sorted(result.unreachable) == sorted(grid.client_of[n] for n in (impostor, keyless))
    assert set(workflow.node_of_client.values()) == set(grid.nodes[2:])
    assert f"node {impostor} is no client of the roster" in caplog.text
    assert_close_to_fedavg(result.arrays, plain_fedavg(arrays, grid.nodes[2:], 1), workflow, 3)


def test_a_semi_honest_server_cannot_downgrade_active_nodes(tmp_path: Path) -> None:
    # The server skips the identification, the signatures and the consistency round; each
    # active node runs its own checks anyway, so the round aborts and no share is released.
    keys = _keys(tmp_path, 5)
    grid = LoopbackGrid(make_client_app(), 5, keys=keys)
    with pytest.raises(InsufficientSurvivorsError):
        make_workflow("secagg").aggregate(
            grid, grid.nodes, train_content(global_arrays()), server_round=1
        )
    for node in grid.nodes:
        for reply in grid.replies_by_node[node]:
            assert not any(isinstance(m, UnmaskResponse) for m in wire_messages(reply))


def test_strategy_runs_active_rounds_and_identifies_each_node_once(tmp_path: Path) -> None:
    keys = _keys(tmp_path, 5)
    # Round 1: identify + 5 protocol messages (0-5); round 2: 5 more, the unmasking is 10.
    silent = {NODE_BASE + 4: 10}
    grid = LoopbackGrid(make_client_app(), 5, silent_from=silent, keys=keys)
    workflow = make_workflow("secagg+", roster=keys.roster_path)
    strategy = SecAggFedAvg(workflow, fraction_evaluate=0.0, min_available_nodes=5)
    initial = global_arrays(5)
    strategy.start(grid, initial, num_rounds=2, timeout=5.0)
    assert set(strategy.results) == {1, 2}
    expected = plain_fedavg(initial, grid.nodes, 1)
    assert_close_to_fedavg(strategy.results[1].arrays, expected, workflow, 5)
    assert strategy.results[2].survivors == tuple(grid.nodes)
    assert strategy.results[2].dropped == {NODE_BASE + 4: 4}
    assert all(grid.train_messages[node] == 11 for node in grid.nodes)


def test_mod_trust_comes_from_the_node_config_files_only(tmp_path: Path) -> None:
    keys = _keys(tmp_path, 3)

    def context(config: dict[str, bool | float | int | str]) -> Context:
        return Context(
            run_id=RUN_ID, node_id=7, node_config=config, state=RecordDict(), run_config={}
        )

    files: dict[str, bool | float | int | str] = {
        NODE_IDENTITY_KEY: str(keys.key_paths[2]),
        NODE_ROSTER: str(keys.roster_path),
    }
    node = SecAggMod().node_identity(context(files))
    assert node is not None and node.client_id == 2
    assert node.roster.keys == load_node_identity(keys.key_paths[2], keys.roster_path).roster.keys
    assert SecAggMod().node_identity(context({NODE_THREAT_MODEL: "semi-honest"})) is None
    assert SecAggMod(threat_model="semi-honest").node_identity(context(files)) is None
    with pytest.raises(LocalProtocolError, match=NODE_IDENTITY_KEY):
        SecAggMod().node_identity(context({NODE_ROSTER: str(keys.roster_path)}))
    with pytest.raises(LocalProtocolError, match="must be 'active' or 'semi-honest'"):
        SecAggMod().node_identity(context({NODE_THREAT_MODEL: "trusting"}))
    with pytest.raises(LocalProtocolError, match="belongs to no client"):
        foreign = write_deployment_keys(tmp_path / "foreign", range(3))
        SecAggMod(identity_key=foreign.key_paths[0]).node_identity(context(files))
