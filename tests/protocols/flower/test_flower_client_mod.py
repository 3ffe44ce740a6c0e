"""The client Mod against a malicious or confused server, and its state in ``context.state``."""

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
    LoopbackGrid,
    global_arrays,
    make_client_app,
    make_workflow,
    node_weight,
    train_content,
    wire_messages,
    write_keys,
)
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from protocols import wire
from protocols.flower import (
    NODE_PAILLIER_KEY,
    STATE_RECORD,
    WIRE_RECORD,
    SecAggMod,
    flower_session_id,
)
from protocols.identity import TrustedRoster
from protocols.masking import ClientPhase, MaskingClient
from protocols.messages import (
    Abort,
    EncryptedInput,
    PaillierSetup,
    RoundSetup,
    UnmaskRequest,
    UnmaskResponse,
)
from protocols.messages import Message as ProtocolMessage
from protocols.paillier import KeyHolder
from secagg.errors import InsufficientSurvivorsError, LocalProtocolError, ParameterError
from secagg.hazmat import paillier as hazmat_paillier

pytestmark = pytest.mark.usefixtures("serverapp_identity")


def _decode_single(message: Message) -> ProtocolMessage:
    (decoded,) = wire_messages(message)
    return decoded


def _replace_wire(message: Message, replacement: ProtocolMessage) -> Message:
    message.content[WIRE_RECORD] = ArrayRecord(
        {"0": Array(np.frombuffer(wire.encode(replacement), dtype=np.uint8))}
    )
    return message


def test_mod_refuses_to_reveal_both_shares_of_a_neighbour() -> None:
    victim, target = NODE_BASE + 2, 0  # the server wants both secrets of protocol party 0

    def both_shares(node: int, index: int, message: Message) -> Message | None:
        if node != victim or index != 3:
            return message
        honest = _decode_single(message)
        assert isinstance(honest, UnmaskRequest)
        forged = UnmaskRequest(
            session_id=honest.session_id,
            round_id=honest.round_id,
            sender=honest.sender,
            recipient=honest.recipient,
            survivors=honest.survivors,
            dropped=(target,),
        )
        return _replace_wire(message, forged)

    grid = LoopbackGrid(make_client_app(), 5, intercept=both_shares)
    result = make_workflow("secagg").aggregate(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    (answer,) = wire_messages(grid.replies_by_node[victim][3])
    assert isinstance(answer, Abort) and not isinstance(answer, UnmaskResponse)
    assert "both" in answer.reason
    state = grid.contexts[victim].state[STATE_RECORD]
    assert MaskingClient.from_state(state["machine"]).phase is ClientPhase.ABORTED
    # The other four answered honestly, so the round still completes with every upload.
    assert result.survivors == tuple(grid.nodes)


def test_mod_rejects_a_replayed_setup_and_a_setup_from_another_run() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    workflow = make_workflow("secagg")
    secure_round = workflow.begin(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    secure_round.prepare()
    node = grid.nodes[0]
    context = grid.contexts[node]
    setup_message = secure_round._flower_messages(
        [
            RoundSetup(
                session_id=flower_session_id(RUN_ID),
                round_id=0,
                sender=2**32 - 1,
                recipient=0,
                threshold=2,
                vector_length=21,
                modulus_bits=24,
                neighbours=(1, 2),
            )
        ],
        with_setup=True,
        with_content=False,
    )[0]
    setup_message.metadata.__dict__["_message_id"] = "replay"
    replayed = grid.app(copy.deepcopy(setup_message), context)
    (answer,) = wire_messages(replayed)
    assert isinstance(answer, Abort) and "replay" in answer.reason

    foreign = copy.deepcopy(setup_message)
    other_run = Context(
        run_id=RUN_ID + 1, node_id=node, node_config={}, state=RecordDict(), run_config={}
    )
    (answer,) = wire_messages(grid.app(foreign, other_run))
    assert isinstance(answer, Abort) and "another Flower run" in answer.reason


def test_mod_keeps_its_machine_in_context_state_between_messages() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    secure_round = make_workflow("secagg").begin(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    secure_round.prepare()  # rounds 0 and 1 done; the upload has not been sent
    for node in grid.nodes:
        record = grid.contexts[node].state[STATE_RECORD]
        machine = MaskingClient.from_state(record["machine"])
        assert machine.phase is ClientPhase.AWAIT_SHARES
        assert record["clip"] == 8.0 and record["value-bits"] == 22


def test_mod_passes_other_messages_through() -> None:
    app = make_client_app()
    context = Context(run_id=RUN_ID, node_id=1, node_config={}, state=RecordDict(), run_config={})
    message = Message(RecordDict({"config": ConfigRecord()}), 1, MessageType.EVALUATE)
    message.metadata.__dict__["_message_id"] = "eval"
    reply = app(message, context)
    assert reply.content["metrics"]["eval-loss"] == 0.25
    assert STATE_RECORD not in context.state


def test_mod_answers_a_message_outside_any_round_with_an_abort() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    fresh = Context(run_id=RUN_ID, node_id=1, node_config={}, state=RecordDict(), run_config={})
    secure_round = make_workflow("secagg").begin(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    request = UnmaskRequest(
        session_id=flower_session_id(RUN_ID),
        round_id=0,
        sender=2**32 - 1,
        recipient=0,
        survivors=(0, 1),
        dropped=(),
    )
    message = secure_round._flower_messages([request], with_setup=False, with_content=False)[0]
    message.metadata.__dict__["_message_id"] = "stray"
    (answer,) = wire_messages(grid.app(message, fresh))
    assert isinstance(answer, Abort) and "outside any round" in answer.reason


def _paillier_replies(grid: LoopbackGrid, node: int) -> list[ProtocolMessage]:
    """What a node answered to the Paillier setups (its train messages after the claim)."""
    return [m for reply in grid.replies_by_node[node][1:] for m in wire_messages(reply)]


def test_mod_rejects_a_paillier_key_other_than_the_pinned_one(
    paillier_keys: hazmat_paillier.PaillierKeypair, tmp_path: Path
) -> None:
    # The argument pins another key than the node config's file: the argument wins.
    other = hazmat_paillier._generate_keypair_unchecked_size(1024)
    pinned = SecAggMod(paillier_public_key=other.public_key)
    keys = write_keys(tmp_path / "keys", 3, paillier_keys)
    grid = LoopbackGrid(make_client_app(mod=pinned), 3, keys=keys)
    workflow = make_workflow("paillier", keys)
    with pytest.raises(InsufficientSurvivorsError):
        workflow.aggregate(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    for node in grid.nodes:
        (answer,) = _paillier_replies(grid, node)
        assert isinstance(answer, Abort) and "pinned" in answer.reason


def test_mod_refuses_a_server_that_sends_its_own_paillier_key(
    paillier_keys: hazmat_paillier.PaillierKeypair, tmp_path: Path
) -> None:
    # The nodes pin the decryptors' key from their key file. The server substitutes a key whose
    # secret it holds itself (its own "key holder"): no node encrypts anything under it.
    keys = write_keys(tmp_path / "keys", 4, paillier_keys)
    grid = LoopbackGrid(make_client_app(), 4, keys=keys)
    own = hazmat_paillier._generate_keypair_unchecked_size(1024)
    servers_key_holder = KeyHolder(
        own,
        session_id=flower_session_id(RUN_ID),
        roster=TrustedRoster.load(keys.roster_path),
        value_bits=22,
        max_clients=1024,
    )
    workflow = make_workflow("paillier", keys, decryptors=[servers_key_holder])
    with pytest.raises(InsufficientSurvivorsError, match="0 encrypted inputs"):
        workflow.aggregate(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    assert servers_key_holder.last_round is None  # nothing ever reached it
    for node in grid.nodes:
        (answer,) = _paillier_replies(grid, node)
        assert isinstance(answer, Abort) and "pinned key" in answer.reason
        assert not any(isinstance(m, EncryptedInput) for m in _paillier_replies(grid, node))


def test_mod_refuses_a_paillier_setup_without_a_pinned_key(
    paillier_keys: hazmat_paillier.PaillierKeypair,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = write_keys(tmp_path / "keys", 3, paillier_keys)
    grid = LoopbackGrid(make_client_app(), 3, keys=keys)
    for context in grid.contexts.values():
        del context.node_config[NODE_PAILLIER_KEY]  # no trust on first use to fall back on
    caplog.set_level(logging.WARNING, logger="protocols.flower")
    with pytest.raises(InsufficientSurvivorsError):
        make_workflow("paillier", keys).aggregate(
            grid, grid.nodes, train_content(global_arrays()), server_round=1
        )
    for node in grid.nodes:
        (answer,) = _paillier_replies(grid, node)
        assert isinstance(answer, Abort) and "no pinned Paillier public key" in answer.reason
        assert NODE_PAILLIER_KEY in answer.reason and "paillier_public_key=" in answer.reason
    refusals = [r for r in caplog.records if "no pinned Paillier public key" in r.getMessage()]
    assert len(refusals) == 3
    # A configuration error, said in one line: no traceback in the node's log.
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in refusals)


def test_mod_names_an_unusable_paillier_key_file(tmp_path: Path) -> None:
    absent, foreign = tmp_path / "absent.key", tmp_path / "roster.txt"
    foreign.write_text("# secagg roster v1\n")
    context = Context(
        run_id=RUN_ID,
        node_id=1,
        node_config={NODE_PAILLIER_KEY: str(absent)},
        state=RecordDict(),
        run_config={},
    )
    with pytest.raises(LocalProtocolError, match=r"Paillier public key file .*absent\.key"):
        SecAggMod().paillier_key(context)
    with pytest.raises(LocalProtocolError, match=r"roster\.txt is not a secagg Paillier public"):
        SecAggMod(paillier_public_key=foreign).paillier_key(context)


def test_mod_refuses_paillier_on_a_semi_honest_node(
    paillier_keys: hazmat_paillier.PaillierKeypair,
) -> None:
    # A Paillier upload must be signed: a node without its identity key cannot take part.
    setup = PaillierSetup(
        session_id=flower_session_id(RUN_ID),
        round_id=0,
        sender=2**32 - 1,
        recipient=0,
        public_key_n=int(paillier_keys.public_key.n),
        vector_length=21,
        value_bits=22,
        max_clients=1024,
    )
    grid = LoopbackGrid(
        make_client_app(mod=SecAggMod(paillier_public_key=paillier_keys.public_key)), 2
    )
    secure_round = make_workflow("secagg").begin(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    message = secure_round._flower_messages([setup], with_setup=True, with_content=True)[0]
    message.metadata.__dict__["_message_id"] = "paillier"
    (answer,) = wire_messages(grid.app(message, grid.contexts[grid.nodes[0]]))
    assert isinstance(answer, Abort) and "Paillier uploads are signed" in answer.reason


def test_mod_rejects_a_weight_above_max_weight() -> None:
    grid = LoopbackGrid(make_client_app(), 4)
    workflow = make_workflow("secagg", max_weight=80.0)
    heavy = [n for n in grid.nodes if node_weight(n) > 80.0]
    assert len(heavy) == 1
    result = workflow.aggregate(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    assert set(heavy).isdisjoint(result.survivors)
    for node in heavy:
        (answer,) = wire_messages(grid.replies_by_node[node][2])
        assert isinstance(answer, Abort) and "max_weight" in answer.reason
        assert "must lie in (0, 80]" in answer.reason


@pytest.mark.parametrize("bad_weight", [0.0, -3.0, float("nan")])
def test_mod_rejects_a_weight_that_is_not_positive(bad_weight: float) -> None:
    light = NODE_BASE + 1
    app = make_client_app(weight=lambda node: bad_weight if node == light else node_weight(node))
    grid = LoopbackGrid(app, 4)
    result = make_workflow("secagg").aggregate(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    assert light not in result.survivors and len(result.survivors) == 3
    (answer,) = wire_messages(grid.replies_by_node[light][2])
    assert isinstance(answer, Abort) and "must lie in (0, 1000]" in answer.reason


def test_mod_needs_a_threshold_of_at_least_two_and_a_pinnable_key() -> None:
    with pytest.raises(ParameterError, match="min_threshold"):
        SecAggMod(min_threshold=1)
    with pytest.raises(ParameterError, match="paillier_public_key must be a phe key"):
        SecAggMod(paillier_public_key=12345)  # type: ignore[arg-type]


def test_mod_says_when_the_train_function_itself_fails_with_a_secagg_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The user's training raises one of our own errors (here: a model setting it refuses). The
    # node must say that its training failed, not that it refused the server's message.
    broken = NODE_BASE + 2
    reason = "need 2 <= min_per_user (20) <= max_per_user (60) <= num_items (40)"

    def weight(node: int) -> float:
        if node == broken:
            raise ParameterError(reason)
        return node_weight(node)

    grid = LoopbackGrid(make_client_app(weight=weight), 4)
    caplog.set_level(logging.WARNING, logger="protocols.flower")
    result = make_workflow("secagg").aggregate(
        grid, grid.nodes, train_content(global_arrays()), server_round=1
    )
    assert broken not in result.survivors and len(result.survivors) == 3
    (answer,) = wire_messages(grid.replies_by_node[broken][2])
    assert isinstance(answer, Abort)
    assert answer.reason == f"the train function failed: {reason}"
    (logged,) = [r.getMessage() for r in caplog.records if reason in r.getMessage()]
    assert logged == f"secagg: no upload from this node: the train function failed: {reason}"
