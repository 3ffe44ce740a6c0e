"""In-process Flower harness for the Flower integration's tests (imported by name, not a test).

No SuperLink, no Ray: :class:`LoopbackGrid` is a Flower ``Grid`` that hands every message (a deep
copy, as a network would) straight to a real ``ClientApp`` with :data:`secagg_mod` installed, one
``Context`` per node kept across messages exactly as a SuperNode keeps it. A node can go silent
from its k-th train message on (a dropout at protocol round k), and an interceptor can replace a
message on its way to a node (how a malicious server is played). The oracle is Flower's own FedAvg
arithmetic (``aggregate_arrayrecords``) over the same replies.

Threat models: by default every node's config says ``secagg-threat-model="semi-honest"``. Given
the :class:`~protocols.flower.keys.DeploymentKeys` of a roster instead, node ``NODE_BASE + i``
holds the identity key of roster client ``n - 1 - i`` (the reverse of the sorted order, so a
test sees the workflow learn the mapping from the nodes' claims rather than assume it) and the
roster file, in its node config, and runs the active model; when the keys include Paillier
files (:func:`write_keys`), the node config also names the public key file the node pins.

Test modules must ``pytest.importorskip("flwr")`` before importing this module.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
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

from protocols import wire
from protocols.flower import (
    SETUP_RECORD,
    WIRE_RECORD,
    SecAggMod,
    SecureAggregationWorkflow,
    flower_session_id,
    secagg_mod,
)
from protocols.flower.client_mod import (
    NODE_IDENTITY_KEY,
    NODE_PAILLIER_KEY,
    NODE_ROSTER,
    NODE_THREAT_MODEL,
)
from protocols.flower.keys import DeploymentKeys, write_deployment_keys
from protocols.keyfiles import (
    KEY_HOLDER_FILE,
    PAILLIER_PUBLIC_FILE,
    PaillierKeyFiles,
    decryptor_file_name,
    load_decryptors,
    save_key_holder,
    save_key_share,
    save_paillier_public,
)
from protocols.messages import Message as ProtocolMessage
from secagg.encoding import QuantizationScheme
from secagg.hazmat import paillier as hazmat_paillier

PaillierKeys = hazmat_paillier.PaillierKeypair | hazmat_paillier.ThresholdKeyset

RUN_ID = 4242
SHAPES = {"w": (3, 5), "b": (5,)}
# Flower node ids are 64-bit; the workflow must map them to dense protocol ids.
NODE_BASE = 2**63 + 12345

Interceptor = Callable[[int, int, Message], Message | None]


def node_update(node_id: int, server_round: int, shape: tuple[int, ...]) -> np.ndarray:
    """What node ``node_id`` adds to the global arrays in ``server_round`` (deterministic)."""
    rng = np.random.default_rng([node_id % 2**32, server_round, len(shape)])
    return rng.uniform(-0.5, 0.5, size=shape).astype(np.float32)


def node_weight(node_id: int) -> int:
    """The FedAvg weight (``num-examples``) node ``node_id`` reports."""
    return 10 + (node_id % 7) * 13


def make_client_app(
    *,
    mod: SecAggMod = secagg_mod,
    failing: Iterable[int] = (),
    weight: Callable[[int], float] = node_weight,
) -> ClientApp:
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
                key: Array(array.numpy() + node_update(context.node_id, server_round, array.shape))
                for key, array in arrays.items()
            }
        )
        metrics = MetricRecord({"num-examples": weight(context.node_id), "train-loss": 0.5})
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
        keys: the deployment's key files: the nodes run the active model (see the module
            docstring); ``None``: semi-honest.
    """

    def __init__(
        self,
        app: ClientApp,
        num_nodes: int,
        *,
        silent_from: Mapping[int, int] | None = None,
        intercept: Interceptor | None = None,
        keys: DeploymentKeys | None = None,
    ) -> None:
        self.app = app
        self.nodes = [NODE_BASE + i for i in range(num_nodes)]
        #: Flower node -> the roster client whose key it holds (active model).
        self.client_of = (
            {} if keys is None else {node: num_nodes - 1 - i for i, node in enumerate(self.nodes)}
        )
        self.contexts = {
            node: Context(
                run_id=RUN_ID,
                node_id=node,
                node_config={
                    "partition-id": i,
                    "num-partitions": num_nodes,
                    **trust_config(keys, self.client_of.get(node)),
                },
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


def trust_config(keys: DeploymentKeys | None, client: int | None) -> dict[str, str]:
    """The node config naming a node's key files (active), or choosing the semi-honest model."""
    if keys is None or client is None:
        return {NODE_THREAT_MODEL: "semi-honest"}
    config = {NODE_IDENTITY_KEY: str(keys.key_paths[client]), NODE_ROSTER: str(keys.roster_path)}
    if keys.paillier is not None:
        config[NODE_PAILLIER_KEY] = str(keys.paillier.public_path)
    return config


def write_keys(
    folder: Path, num_clients: int, paillier: PaillierKeys | None = None, **options: int
) -> DeploymentKeys:
    """The deployment's key files; with ``paillier``, also its files of test-size keys.

    ``write_deployment_keys`` deals 2048-bit Paillier keys; the tests deal smaller ones once
    per module and write them with the same functions, into the same file names.
    """
    keys = write_deployment_keys(folder, range(num_clients), **options)
    if paillier is None:
        return keys
    secrets: dict[int, Path] = {}
    if isinstance(paillier, hazmat_paillier.ThresholdKeyset):
        for share in paillier.shares:
            secrets[share.index] = folder / decryptor_file_name(share.index)
            save_key_share(secrets[share.index], share)
        save_paillier_public(folder / PAILLIER_PUBLIC_FILE, paillier.public)
    else:
        secrets[1] = folder / KEY_HOLDER_FILE
        save_key_holder(secrets[1], paillier)
        save_paillier_public(folder / PAILLIER_PUBLIC_FILE, paillier.public_key)
    files = PaillierKeyFiles(folder / PAILLIER_PUBLIC_FILE, secrets)
    return dataclasses.replace(keys, paillier=files)


def global_arrays(seed: int = 0) -> ArrayRecord:
    """The broadcast model: float32 arrays of :data:`SHAPES`."""
    rng = np.random.default_rng(seed)
    return ArrayRecord(
        {k: Array(rng.normal(0, 0.3, size=s).astype(np.float32)) for k, s in SHAPES.items()}
    )


def train_content(arrays: ArrayRecord, server_round: int = 1) -> RecordDict:
    """What a plain FedAvg train message carries."""
    return RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})


def plain_fedavg(arrays: ArrayRecord, nodes: Iterable[int], server_round: int) -> ArrayRecord:
    """Flower's own FedAvg arithmetic over what each node's train function returns."""
    replies = []
    for node in nodes:
        trained = ArrayRecord(
            {
                key: Array(array.numpy() + node_update(node, server_round, array.shape))
                for key, array in arrays.items()
            }
        )
        metrics = MetricRecord({"num-examples": node_weight(node)})
        replies.append(RecordDict({"arrays": trained, "metrics": metrics}))
    return aggregate_arrayrecords(replies, "num-examples")


def assert_close_to_fedavg(
    secure: ArrayRecord, plain: ArrayRecord, workflow: SecureAggregationWorkflow, count: int
) -> None:
    """Equal up to quantization: n steps of the weighted values over the total weight ratio."""
    scheme = QuantizationScheme(clip=workflow.clip, value_bits=workflow.value_bits, num_clients=2)
    assert list(secure) == list(plain)
    for key in plain:
        got, want = secure[key].numpy(), plain[key].numpy()
        assert got.dtype == want.dtype and got.shape == want.shape
        # Per value: count rounding steps of r * x, divided by the total ratio (>= the smallest
        # weight / max_weight), plus the rounding of the weight slot itself.
        total_ratio = count * 10 / workflow.max_weight
        bound = count * scheme.step / total_ratio + count / scheme.levels / total_ratio + 1e-6
        assert np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))) <= bound


def wire_messages(reply: Message) -> list[ProtocolMessage]:
    """The protocol messages a Flower message carries."""
    record = reply.content[WIRE_RECORD]
    return [wire.decode(record[str(i)].numpy().tobytes()) for i in range(len(record))]


def make_workflow(
    protocol: str, keys: DeploymentKeys | None = None, **kwargs: object
) -> SecureAggregationWorkflow:
    """A workflow with a 5 s deadline; under Paillier, over ``keys``' roster and decryptors.

    Masking workflows are semi-honest unless ``kwargs`` name a ``roster`` (then active).
    Paillier loads its decryptors from their files (:func:`write_keys`), as the demo does.
    """
    if protocol != "paillier":
        kwargs.setdefault("threat_model", "active" if "roster" in kwargs else "semi-honest")
        return SecureAggregationWorkflow(protocol, timeout=5.0, **kwargs)  # type: ignore[arg-type]
    assert keys is not None and keys.paillier is not None
    decryptors = load_decryptors(
        keys.paillier.public_path.parent,
        session_id=flower_session_id(RUN_ID),
        roster=keys.roster_path,
        value_bits=22,
        max_clients=1024,
    )
    kwargs.setdefault("decryptors", decryptors)
    return SecureAggregationWorkflow(
        "paillier",
        timeout=5.0,
        roster=keys.roster_path,
        **kwargs,  # type: ignore[arg-type]
    )
