"""In-process tests of the Flower integration: the server workflow, the strategy and the client mod.

No SuperLink, no Ray: :class:`LoopbackGrid` is a Flower ``Grid`` that hands every message (a deep
copy, as a network would) straight to a real ``ClientApp`` with :data:`secagg_mod` installed, one
``Context`` per node kept across messages exactly as a SuperNode keeps it. A node can go silent
from its k-th train message on (a dropout at protocol round k), and an interceptor can replace a
message on its way to a node (how a malicious server is played). The oracle is Flower's own FedAvg
arithmetic (``aggregate_arrayrecords``) over the same replies.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from protocols import wire
from protocols.flower import (
    SETUP_RECORD,
    STATE_RECORD,
    WIRE_RECORD,
    SecAggFedAvg,
    SecAggMod,
    SecureAggregationWorkflow,
    flower_session_id,
    secagg_mod,
)
from protocols.masking import ClientPhase, MaskingClient
from protocols.messages import (
    Abort,
    KeyAdvertisement,
    MaskedInput,
    RoundSetup,
    UnmaskRequest,
    UnmaskResponse,
)
from protocols.messages import (
    Message as ProtocolMessage,
)
from protocols.paillier import KeyHolder
from secagg.encoding import QuantizationScheme
from secagg.errors import InsufficientSurvivorsError, ParameterError
from secagg.hazmat import paillier as hazmat_paillier

RUN_ID = 4242
SHAPES = {"w": (3, 5), "b": (5,)}
# Flower node ids are 64-bit; the workflow must map them to dense protocol ids.
NODE_BASE = 2**63 + 12345

Interceptor = Callable[[int, int, Message], Message | None]


# --------------------------------------------------------------------------------------------
# A ClientApp and a Grid that runs it in-process
# --------------------------------------------------------------------------------------------


def _node_update(node_id: int, server_round: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng([node_id % 2**32, server_round, len(shape)])
    return rng.uniform(-0.5, 0.5, size=shape).astype(np.float32)


def _weight(node_id: int) -> int:
    return 10 + (node_id % 7) * 13


def make_client_app(*, mod: SecAggMod = secagg_mod, failing: Iterable[int] = ()) -> ClientApp:
    """A FedAvg ClientApp: returns global + a node-specific delta, weighted by num-examples."""
    app = ClientApp()
    broken = set(failing)

    @app.train(mods=[mod])
    def train(message: Message, context: Context) -> Message:
        assert WIRE_RECORD not in message.content and SETUP_RECORD not in message.content
        if context.node_id in broken:
            raise RuntimeError("local training crashed")
        server_round = int(message.content["config"]["server-round"])
        arrays = message.content["arrays"]
        trained = ArrayRecord(
            {
                key: Array(array.numpy() + _node_update(context.node_id, server_round, array.shape))
                for key, array in arrays.items()
            }
        )
        metrics = MetricRecord({"num-examples": _weight(context.node_id), "train-loss": 0.5})
        return Message(RecordDict({"arrays": trained, "metrics": metrics}), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        metrics = MetricRecord({"num-examples": 1, "eval-loss": 0.25})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    return app


class LoopbackGrid(Grid):
    """Delivers each message to an in-process ClientApp; nodes may go silent or be intercepted.

    Args:
        app: the ClientApp every node runs.
        num_nodes: nodes ``NODE_BASE + 0 .. NODE_BASE + num_nodes - 1``.
        silent_from: node -> index of the first train message it leaves unanswered (its
            protocol round of dropout: 0 setup, 1 share keys, 2 upload, 3 unmasking).
        intercept: ``(node, train message index, message) -> message or None`` on the way in.
    """

    def __init__(
        self,
        app: ClientApp,
        num_nodes: int,
        *,
        silent_from: Mapping[int, int] | None = None,
        intercept: Interceptor | None = None,
    ) -> None:
        self.app = app
        self.nodes = [NODE_BASE + i for i in range(num_nodes)]
        self.contexts = {
            node: Context(
                run_id=RUN_ID,
                node_id=node,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i, node in enumerate(self.nodes)
        }
        self.silent_from = dict(silent_from or {})
        self.intercept = intercept
        self.train_messages = dict.fromkeys(self.nodes, 0)
        self.replies_by_node: dict[int, list[Message]] = {node: [] for node in self.nodes}
        self._pending: dict[str, Message] = {}
        self._run = Run.create_empty(RUN_ID)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            ids.append(message.metadata.message_id)
            node = message.metadata.dst_node_id
            index = self.train_messages[node]
            if message.metadata.message_type == MessageType.TRAIN:
                self.train_messages[node] += 1
                if index >= self.silent_from.get(node, 10**9):
                    continue
            delivered: Message | None = copy.deepcopy(message)
            if self.intercept is not None and delivered is not None:
                delivered = self.intercept(node, index, delivered)
            if delivered is None:
                continue
            try:
                reply = self.app(delivered, self.contexts[node])
            except Exception as error:  # what Flower's ClientApp runtime does with a crash
                reply = Message(Error(code=2, reason=repr(error)), reply_to=delivered)
            self.replies_by_node[node].append(reply)
            self._pending[message.metadata.message_id] = copy.deepcopy(reply)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._pending.pop(i) for i in message_ids if i in self._pending]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        assert timeout is not None and timeout > 0, "secure rounds must never wait forever"
        return self.pull_messages(self.push_messages(list(messages)))


def _global_arrays(seed: int = 0) -> ArrayRecord:
    rng = np.random.default_rng(seed)
    return ArrayRecord(
        {k: Array(rng.normal(0, 0.3, size=s).astype(np.float32)) for k, s in SHAPES.items()}
    )


def _train_content(arrays: ArrayRecord, server_round: int = 1) -> RecordDict:
    return RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})


def _plain_fedavg(arrays: ArrayRecord, nodes: Iterable[int], server_round: int) -> ArrayRecord:
    """Flower's own FedAvg arithmetic over what each node's train function returns."""
    replies = []
    for node in nodes:
        trained = ArrayRecord(
            {
                key: Array(array.numpy() + _node_update(node, server_round, array.shape))
                for key, array in arrays.items()
            }
        )
        metrics = MetricRecord({"num-examples": _weight(node)})
        replies.append(RecordDict({"arrays": trained, "metrics": metrics}))
    return aggregate_arrayrecords(replies, "num-examples")


def _assert_close_to_fedavg(
    secure: ArrayRecord, plain: ArrayRecord, workflow: SecureAggregationWorkflow, count: int
) -> None:
    """Equal up to quantization: n steps of the weighted values over the total weight ratio."""
    scheme = QuantizationScheme(clip=workflow.clip, value_bits=workflow.value_bits, num_clients=2)
    assert list(secure) == list(plain)
    for key in plain:
        got, want = secure[key].numpy(), plain[key].numpy()
        assert got.dtype == want.dtype and got.shape == want.shape
        # Per value: count rounding steps of r * x, divided by the total ratio (>= the smallest
        # weight / max_weight), plus the rounding of the ratio slot itself.
        total_ratio = count * 10 / workflow.max_weight
        bound = count * scheme.step / total_ratio + count / scheme.levels / total_ratio + 1e-6
        assert np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))) <= bound


def _wire_messages(reply: Message) -> list[ProtocolMessage]:
    record = reply.content[WIRE_RECORD]
    return [wire.decode(record[str(i)].numpy().tobytes()) for i in range(len(record))]


@pytest.fixture(autouse=True)
def serverapp_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower sets in a ServerApp process, and Message() reads."""
    monkeypatch.setattr(TaskIdentity, "_run_id", RUN_ID)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


@pytest.fixture(scope="module")
def paillier_keys() -> hazmat_paillier.PaillierKeypair:
    return hazmat_paillier._generate_keypair_unchecked_size(1024)


def _workflow(protocol: str, keys: hazmat_paillier.PaillierKeypair | None = None, **kwargs: object):
    if protocol != "paillier":
        return SecureAggregationWorkflow(protocol, timeout=5.0, **kwargs)  # type: ignore[arg-type]
    assert keys is not None
    key_holder = KeyHolder(
        keys, session_id=flower_session_id(RUN_ID), value_bits=22, max_clients=1024
    )
    return SecureAggregationWorkflow("paillier", timeout=5.0, key_holder=key_holder, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The workflow: exactness, dropouts, aborts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["secagg", "secagg+", "paillier"])
def test_workflow_result_equals_plain_fedavg_up_to_quantization(
    protocol: str, paillier_keys: hazmat_paillier.PaillierKeypair
) -> None:
    grid = LoopbackGrid(make_client_app(), 6)
    workflow = _workflow(protocol, paillier_keys)
    arrays = _global_arrays()
    result = workflow.aggregate(grid, grid.nodes, _train_content(arrays), server_round=1)
    assert result.survivors == tuple(grid.nodes)
    assert result.dropped == {}
    assert result.total_weight == pytest.approx(sum(_weight(n) for n in grid.nodes), rel=1e-4)
    _assert_close_to_fedavg(result.arrays, _plain_fedavg(arrays, grid.nodes, 1), workflow, 6)
    # The weight is summed securely; the other train metrics travel in the clear.
    assert [dict(m) for m in result.metrics] == [{"train-loss": 0.5}] * 6


@pytest.mark.parametrize("drop_round", [0, 1, 2, 3])
@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_workflow_recovers_from_a_dropout_in_every_protocol_round(
    protocol: str, drop_round: int
) -> None:
    grid = LoopbackGrid(make_client_app(), 7, silent_from={NODE_BASE + 3: drop_round})
    workflow = _workflow(protocol, degree=4) if protocol == "secagg+" else _workflow(protocol)
    arrays = _global_arrays(1)
    result = workflow.aggregate(grid, grid.nodes, _train_content(arrays), server_round=1)
    # A node lost after its upload (round 3) stays in the sum; its self-mask is rebuilt.
    expected = grid.nodes if drop_round == 3 else [n for n in grid.nodes if n != NODE_BASE + 3]
    assert result.survivors == tuple(expected)
    assert result.dropped == {NODE_BASE + 3: drop_round}
    plain = _plain_fedavg(arrays, expected, 1)
    _assert_close_to_fedavg(result.arrays, plain, workflow, len(expected))


def test_workflow_paillier_drops_a_silent_node(
    paillier_keys: hazmat_paillier.PaillierKeypair,
) -> None:
    grid = LoopbackGrid(make_client_app(), 4, silent_from={NODE_BASE + 1: 0})
    workflow = _workflow("paillier", paillier_keys)
    arrays = _global_arrays(2)
    result = workflow.aggregate(grid, grid.nodes, _train_content(arrays), server_round=1)
    survivors = [n for n in grid.nodes if n != NODE_BASE + 1]
    assert result.survivors == tuple(survivors)
    assert result.dropped == {NODE_BASE + 1: 2}
    _assert_close_to_fedavg(result.arrays, _plain_fedavg(arrays, survivors, 1), workflow, 3)


def test_workflow_aborts_cleanly_below_threshold_and_tells_the_rest() -> None:
    # SecAgg over 5 nodes needs 3; three go silent after advertising keys.
    silent = {NODE_BASE + i: 1 for i in range(3)}
    grid = LoopbackGrid(make_client_app(), 5, silent_from=silent)
    workflow = _workflow("secagg")
    with pytest.raises(InsufficientSurvivorsError):
        workflow.aggregate(grid, grid.nodes, _train_content(_global_arrays()), server_round=1)
    # The two nodes still in the round received an Abort, which poisons their machines.
    for node in grid.nodes[3:]:
        state = grid.contexts[node].state[STATE_RECORD]
        assert MaskingClient.from_state(state["machine"]).phase is ClientPhase.ABORTED
    # Nobody was ever asked to train: the abort came before the upload round, and the Abort
    # notices got empty answers.
    for node in grid.nodes[3:]:
        assert len(grid.replies_by_node[node]) == 3
        assert _wire_messages(grid.replies_by_node[node][2]) == []
        assert not any(reply.content.metric_records for reply in grid.replies_by_node[node])


def test_workflow_drops_a_node_whose_training_crashes() -> None:
    grid = LoopbackGrid(make_client_app(failing=[NODE_BASE + 2]), 5)
    workflow = _workflow("secagg")
    arrays = _global_arrays(3)
    result = workflow.aggregate(grid, grid.nodes, _train_content(arrays), server_round=1)
    survivors = [n for n in grid.nodes if n != NODE_BASE + 2]
    assert result.survivors == tuple(survivors)
    assert result.dropped == {NODE_BASE + 2: 2}
    _assert_close_to_fedavg(result.arrays, _plain_fedavg(arrays, survivors, 1), workflow, 4)
    # The crashed round is spent: its machine can never be trained or uploaded again.
    state = grid.contexts[NODE_BASE + 2].state[STATE_RECORD]
    assert MaskingClient.from_state(state["machine"]).phase is ClientPhase.AWAIT_INPUT


def test_workflow_uploads_are_packed_ring_words_not_int64() -> None:
    grid = LoopbackGrid(make_client_app(), 4)
    workflow = _workflow("secagg")
    workflow.aggregate(grid, grid.nodes, _train_content(_global_arrays()), server_round=1)
    upload = [m for m in _wire_messages(grid.replies_by_node[NODE_BASE][2])]
    assert len(upload) == 1 and isinstance(upload[0], MaskedInput)
    masked = upload[0]
    values = sum(int(np.prod(s)) for s in SHAPES.values()) + 1
    assert masked.modulus_bits == 22 + 2 and masked.vector.dtype == np.uint32
    assert len(wire.encode(masked)) == wire.encoded_size(masked) < 38 + 5 + 3 * values + 1


def test_workflow_maps_64_bit_node_ids_to_dense_protocol_ids() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    _workflow("secagg").aggregate(
        grid, grid.nodes, _train_content(_global_arrays()), server_round=1
    )
    for index, node in enumerate(grid.nodes):
        (advert,) = _wire_messages(grid.replies_by_node[node][0])
        assert isinstance(advert, KeyAdvertisement) and advert.sender == index


def test_workflow_round_ids_count_up_within_the_run() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    workflow = _workflow("secagg")
    arrays = _global_arrays()
    for server_round in (1, 2):
        result = workflow.aggregate(
            grid, grid.nodes, _train_content(arrays, server_round), server_round=server_round
        )
        arrays = result.arrays
    for node in grid.nodes:
        record = grid.contexts[node].state[STATE_RECORD]
        assert int.from_bytes(record["last-round"], "big") - 1 == 1


def test_workflow_rejects_a_node_speaking_for_another() -> None:
    grid = LoopbackGrid(make_client_app(), 5)
    workflow = _workflow("secagg")
    secure_round = workflow.begin(
        grid, grid.nodes, _train_content(_global_arrays()), server_round=1
    )
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
    ("kwargs", "match"),
    [
        ({"protocol": "sum"}, "protocol"),
        ({"protocol": "secagg", "timeout": 0}, "timeout"),
        ({"protocol": "secagg", "max_weight": -1.0}, "max_weight"),
        ({"protocol": "paillier"}, "key_holder"),
        ({"protocol": "secagg", "degree": 4}, "degree"),
        ({"protocol": "secagg", "value_bits": 0}, "value_bits"),
    ],
)
def test_workflow_rejects_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        SecureAggregationWorkflow(**kwargs)  # type: ignore[arg-type]


def test_workflow_rejects_a_key_holder_packing_for_other_settings(
    paillier_keys: hazmat_paillier.PaillierKeypair,
) -> None:
    key_holder = KeyHolder(
        paillier_keys, session_id=flower_session_id(RUN_ID), value_bits=16, max_clients=1024
    )
    with pytest.raises(ParameterError, match="value_bits=22"):
        SecureAggregationWorkflow("paillier", key_holder=key_holder)


def test_workflow_needs_two_nodes_and_some_arrays() -> None:
    grid = LoopbackGrid(make_client_app(), 2)
    workflow = _workflow("secagg")
    with pytest.raises(ParameterError, match="at least 2 nodes"):
        workflow.begin(grid, grid.nodes[:1], _train_content(_global_arrays()), server_round=1)
    empty = RecordDict({"config": ConfigRecord({"server-round": 1})})
    with pytest.raises(ParameterError, match="no ArrayRecord"):
        workflow.begin(grid, grid.nodes, empty, server_round=1)


# --------------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["secagg+", "paillier"])
def test_strategy_start_runs_secure_fedavg_rounds(
    protocol: str, paillier_keys: hazmat_paillier.PaillierKeypair
) -> None:
    # Node 4 goes silent in the second round: at its unmasking (train message 7) under masking,
    # at its upload (train message 1) under Paillier, which needs one message per round.
    silent = {NODE_BASE + 4: 1 if protocol == "paillier" else 7}
    grid = LoopbackGrid(make_client_app(), 5, silent_from=silent)
    workflow = _workflow(protocol, paillier_keys)
    strategy = SecAggFedAvg(workflow, fraction_evaluate=0.0, min_available_nodes=5)
    initial = _global_arrays(5)
    result = strategy.start(grid, initial, num_rounds=2, timeout=5.0)
    assert set(strategy.results) == {1, 2}
    expected = _plain_fedavg(initial, grid.nodes, 1)
    _assert_close_to_fedavg(strategy.results[1].arrays, expected, workflow, 5)
    assert result.arrays is strategy.results[2].arrays
    metrics = result.train_metrics_clientapp[1]
    assert metrics["train-loss"] == pytest.approx(0.5)
    assert metrics["secagg-survivors"] == 5


def test_strategy_keeps_the_model_when_a_round_aborts() -> None:
    grid = LoopbackGrid(make_client_app(), 3, silent_from={NODE_BASE: 0, NODE_BASE + 1: 0})
    strategy = SecAggFedAvg(_workflow("secagg"), fraction_evaluate=0.0, min_available_nodes=3)
    initial = _global_arrays(6)
    result = strategy.start(grid, initial, num_rounds=1, timeout=5.0)
    assert strategy.results == {}
    assert result.train_metrics_clientapp == {}


# --------------------------------------------------------------------------------------------
# The client mod against a malicious or confused server
# --------------------------------------------------------------------------------------------


def _decode_single(message: Message) -> ProtocolMessage:
    (decoded,) = _wire_messages(message)
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
    result = _workflow("secagg").aggregate(
        grid, grid.nodes, _train_content(_global_arrays()), server_round=1
    )
    (answer,) = _wire_messages(grid.replies_by_node[victim][3])
    assert isinstance(answer, Abort) and not isinstance(answer, UnmaskResponse)
    assert "both" in answer.reason
    state = grid.contexts[victim].state[STATE_RECORD]
    assert MaskingClient.from_state(state["machine"]).phase is ClientPhase.ABORTED
    # The other four answered honestly, so the round still completes with every upload.
    assert result.survivors == tuple(grid.nodes)


def test_mod_rejects_a_replayed_setup_and_a_setup_from_another_run() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    workflow = _workflow("secagg")
    secure_round = workflow.begin(
        grid, grid.nodes, _train_content(_global_arrays()), server_round=1
    )
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
    (answer,) = _wire_messages(replayed)
    assert isinstance(answer, Abort) and "replay" in answer.reason

    foreign = copy.deepcopy(setup_message)
    other_run = Context(
        run_id=RUN_ID + 1, node_id=node, node_config={}, state=RecordDict(), run_config={}
    )
    (answer,) = _wire_messages(grid.app(foreign, other_run))
    assert isinstance(answer, Abort) and "another Flower run" in answer.reason


def test_mod_keeps_its_machine_in_context_state_between_messages() -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    secure_round = _workflow("secagg").begin(
        grid, grid.nodes, _train_content(_global_arrays()), server_round=1
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
    secure_round = _workflow("secagg").begin(
        grid, grid.nodes, _train_content(_global_arrays()), server_round=1
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
    (answer,) = _wire_messages(grid.app(message, fresh))
    assert isinstance(answer, Abort) and "outside any round" in answer.reason


def test_mod_rejects_a_paillier_key_other_than_the_pinned_one(
    paillier_keys: hazmat_paillier.PaillierKeypair,
) -> None:
    other = hazmat_paillier._generate_keypair_unchecked_size(1024)
    pinned = SecAggMod(paillier_public_key=other.public_key)
    grid = LoopbackGrid(make_client_app(mod=pinned), 3)
    workflow = _workflow("paillier", paillier_keys)
    with pytest.raises(InsufficientSurvivorsError):
        workflow.aggregate(grid, grid.nodes, _train_content(_global_arrays()), server_round=1)
    (answer,) = _wire_messages(grid.replies_by_node[grid.nodes[0]][0])
    assert isinstance(answer, Abort) and "pinned" in answer.reason


def test_mod_pins_the_first_paillier_key_of_the_run(
    paillier_keys: hazmat_paillier.PaillierKeypair,
) -> None:
    grid = LoopbackGrid(make_client_app(), 3)
    _workflow("paillier", paillier_keys).aggregate(
        grid, grid.nodes, _train_content(_global_arrays()), server_round=1
    )
    other = hazmat_paillier._generate_keypair_unchecked_size(1024)
    key_holder = KeyHolder(
        other, session_id=flower_session_id(RUN_ID), value_bits=22, max_clients=1024
    )
    swapped = SecureAggregationWorkflow("paillier", timeout=5.0, key_holder=key_holder)
    swapped._next_round = 5
    with pytest.raises(InsufficientSurvivorsError):
        swapped.aggregate(grid, grid.nodes, _train_content(_global_arrays()), server_round=2)
    (answer,) = _wire_messages(grid.replies_by_node[grid.nodes[0]][-1])
    assert isinstance(answer, Abort) and "pinned" in answer.reason


def test_mod_rejects_a_weight_above_max_weight() -> None:
    grid = LoopbackGrid(make_client_app(), 4)
    workflow = SecureAggregationWorkflow("secagg", timeout=5.0, max_weight=80.0)
    heavy = [n for n in grid.nodes if _weight(n) > 80.0]
    assert len(heavy) == 1
    result = workflow.aggregate(grid, grid.nodes, _train_content(_global_arrays()), server_round=1)
    assert set(heavy).isdisjoint(result.survivors)
    for node in heavy:
        (answer,) = _wire_messages(grid.replies_by_node[node][2])
        assert isinstance(answer, Abort) and "max_weight" in answer.reason
