"""Flower integration: secagg's state machines as the secure-aggregation backend of a Flower app.

Why this module exists: Flower's own SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``) masks
with a 32-bit-seeded Mersenne Twister, aborts when a client drops before the upload, waits forever
without a timeout, wraps sums silently, uploads int64 words and hands over both shares of a client
when a server asks. Here the same sans-I/O machines that :mod:`protocols.simulate` drives
(:class:`~protocols.masking.MaskingServer` / :class:`~protocols.masking.MaskingClient`, and the
Paillier roles) run over a real Flower deployment, so a Flower user gets AES-CTR masks, recovery
from dropouts in every round, the client's refusal to reveal both shares, Paillier, wrap-free
rings and ``ceil(k / 8)``-byte uploads. This module is only transport: every protocol decision
stays in the machines.

Pieces:

* :class:`SecureAggregationWorkflow` (server): one secure, weighted FedAvg aggregation per call of
  :meth:`~SecureAggregationWorkflow.aggregate`, driven through a Flower ``Grid`` from a Message-API
  ``ServerApp`` (``@app.main()``). Each protocol round is one ``grid.send_and_receive(...,
  timeout=...)``; a node that has not answered when it returns (or answered with an error) is
  silent and the machine drops it (``close_phase``): no round waits forever.
* :class:`SecAggFedAvg` (server): Flower's ``FedAvg`` whose ``configure_train`` runs the rounds
  before the upload and whose ``aggregate_train`` runs the rest, so ``strategy.start(...)`` works.
* :data:`secagg_mod` / :class:`SecAggMod` (client): a Flower Mod answering the protocol messages
  with the client machine, calling the user's ``@app.train()`` function for the upload and keeping
  the machine in ``context.state`` between messages (:meth:`MaskingClient.export_state`).

On the wire, each protocol message is the :mod:`protocols.wire` encoding carried as one uint8
``Array`` in the ``ArrayRecord`` :data:`WIRE_RECORD` of a Flower ``train`` message (Flower chunks
large arrays; nothing is pickled). The setup message also carries a ``ConfigRecord``
:data:`SETUP_RECORD` with the quantization. Flower node ids (64-bit) are mapped to dense protocol
ids 0..n-1 in sorted order; a node learns its id as the recipient of its setup message. The
session id is derived from Flower's run id (:func:`flower_session_id`), so both sides know it
without a message and a node refuses a setup from another run or a round id it has seen.

What a client uploads for weighted FedAvg (as Flower's SecAgg+ does): with weight ``w`` (the
metric ``weighted_by_key``, e.g. ``num-examples``) and ``r = w / max_weight`` in (0, 1], the
quantized ``r * x`` (clipped to ``[-clip, clip]``) followed by ``round(r * (2^value_bits - 1))``.
The server divides the decoded sum by the decoded total of ``r``; the result equals Flower's plain
FedAvg up to quantization (and clipping). The weight itself never travels in the clear; other
train metrics do (as in Flower), and the strategy averages them without weights.

Paillier: the key holder (:class:`~protocols.paillier.KeyHolder`) must be a party apart from the
server in production; :class:`SecureAggregationWorkflow` accepts any object with its three members
(:class:`KeyHolderEndpoint`), and the demo runs one inside the ServerApp for convenience only.
A client pins the public key given to :class:`SecAggMod`, or else the first key it sees in the run
(trust on first use), and refuses any other key afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import phe
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from protocols import wire
from protocols.aggregators import MaskingAggregator
from protocols.masking import ClientPhase, MaskingClient, MaskingParams, MaskingServer
from protocols.messages import (
    MAX_PARTY_ID,
    MAX_REASON_CHARS,
    SERVER_ID,
    Abort,
    PaillierSetup,
    RoundSetup,
)
from protocols.messages import Message as ProtocolMessage
from protocols.paillier import KeyHolder, PaillierClient, PaillierParams, PaillierServer
from protocols.simulate import ROUND_NAMES
from secagg.encoding import QuantizationScheme
from secagg.errors import (
    InsufficientSurvivorsError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    SecAggError,
)

__all__ = [
    "SETUP_RECORD",
    "STATE_RECORD",
    "WIRE_RECORD",
    "KeyHolderEndpoint",
    "SecAggFedAvg",
    "SecAggMod",
    "SecureAggregationWorkflow",
    "SecureRound",
    "SecureRoundResult",
    "flower_session_id",
    "secagg_mod",
]

logger = logging.getLogger(__name__)

#: ArrayRecord key of the wire-encoded protocol messages in a Flower message (both directions).
WIRE_RECORD: Final = "secagg-wire"
#: ConfigRecord key of the quantization settings sent with each setup message.
SETUP_RECORD: Final = "secagg-setup"
#: ConfigRecord key under which :class:`SecAggMod` keeps its memory in ``context.state``.
STATE_RECORD: Final = "secagg-client"

ProtocolName = Literal["secagg", "secagg+", "paillier"]
FloatArray = npt.NDArray[np.float64]
RingArray = npt.NDArray[np.unsignedinteger]
CallNext = Callable[[Message, Context], Message]
_T = TypeVar("_T")
_V = TypeVar("_V")

_UPLOAD_ROUND: Final = ROUND_NAMES.index("masked_input")
_UNMASK_ROUND: Final = ROUND_NAMES.index("unmasking")
#: Seconds a protocol message stays deliverable after its round's deadline (Flower polls every 3 s).
_TTL_MARGIN_SECONDS: Final = 30.0


def flower_session_id(run_id: int) -> bytes:
    """The 16-byte protocol session id of a Flower run: SHA-256 of a label and the run id.

    Server and nodes both derive it, so a node can refuse setups that belong to another run.

    Args:
        run_id: Flower's run id (``context.run_id`` / ``grid.run.run_id``).

    Returns:
        16 bytes.
    """
    if not isinstance(run_id, int) or not 0 <= run_id < 2**64:
        raise ParameterError(f"run_id must be an int in [0, 2^64), got {run_id!r}")
    digest = hashlib.sha256(b"secagg/flower/session/v1" + run_id.to_bytes(8, "big")).digest()
    return digest[:16]


# --------------------------------------------------------------------------------------------
# What travels besides protocol messages: the quantization and the model's array layout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Encoding:
    """How a node turns its float model and weight into ring values (sent with the setup)."""

    clip: float
    value_bits: int
    num_clients: int
    max_weight: float
    weight_key: str

    def scheme(self) -> QuantizationScheme:
        return QuantizationScheme(
            clip=self.clip, value_bits=self.value_bits, num_clients=self.num_clients
        )

    def to_record(self) -> ConfigRecord:
        return ConfigRecord(
            {
                "clip": float(self.clip),
                "value-bits": self.value_bits,
                "num-clients": self.num_clients,
                "max-weight": float(self.max_weight),
                "weight-key": self.weight_key,
            }
        )

    @classmethod
    def from_record(cls, record: ConfigRecord | None) -> _Encoding:
        """Parse the server's settings; anything malformed is the server's fault."""
        try:
            if record is None:
                raise TypeError("missing")
            encoding = cls(
                clip=_typed(record["clip"], float),
                value_bits=_typed(record["value-bits"], int),
                num_clients=_typed(record["num-clients"], int),
                max_weight=_typed(record["max-weight"], float),
                weight_key=_typed(record["weight-key"], str),
            )
            encoding.scheme()
        except (KeyError, TypeError, ParameterError) as error:
            raise RemoteProtocolError(
                f"the setup's quantization settings are unusable: {error}"
            ) from None
        if not encoding.max_weight > 0:
            raise RemoteProtocolError("the setup's max-weight must be positive")
        return encoding

    def encode(self, values: FloatArray, weight: float) -> RingArray:
        """Quantize ``(weight / max_weight) * values`` and append the quantized ratio."""
        if not 0 < weight <= self.max_weight:
            raise LocalProtocolError(
                f"the train reply's weight {self.weight_key}={weight} must lie in (0, "
                f"{self.max_weight}]; raise max_weight on the server"
            )
        scheme = self.scheme()
        ratio = weight / self.max_weight
        scaled = ratio * values
        clipped = int(np.count_nonzero(np.abs(scaled) > self.clip))
        if clipped:
            logger.warning(
                "%d of %d weighted values exceed clip=%g and are clipped",
                clipped,
                scaled.size,
                self.clip,
            )
        encoded_ratio = np.asarray([round(ratio * scheme.levels)], dtype=scheme.dtype)
        return np.concatenate([scheme.quantize(scaled), encoded_ratio])


def _typed(value: object, expected: type[_V]) -> _V:
    if type(value) is not expected:
        raise TypeError(f"expected {expected.__name__}, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class _Layout:
    """Names, shapes and dtypes of the arrays a round averages, in the order they are flattened."""

    entries: tuple[tuple[str, tuple[int, ...], str], ...]

    @classmethod
    def of(cls, content: RecordDict) -> _Layout:
        entries = [
            (key, tuple(array.shape), array.dtype)
            for record in content.array_records.values()
            for key, array in record.items()
        ]
        if not entries:
            raise ParameterError("the train content carries no ArrayRecord to aggregate")
        if len({key for key, _, _ in entries}) != len(entries):
            raise ParameterError("two ArrayRecords of the train content share an array name")
        return cls(tuple(entries))

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape, dtype=np.int64)) for _, shape, _ in self.entries)

    def flatten(self, content: RecordDict) -> FloatArray:
        """The reply's arrays as one float64 vector; they must match the broadcast model."""
        arrays = {
            key: array for record in content.array_records.values() for key, array in record.items()
        }
        expected = {key: shape for key, shape, _ in self.entries}
        if {key: tuple(array.shape) for key, array in arrays.items()} != expected:
            raise LocalProtocolError(
                "the train function must return the broadcast arrays (same names and shapes); "
                f"expected {expected}"
            )
        return np.concatenate(
            [np.asarray(arrays[key].numpy(), dtype=np.float64).reshape(-1) for key in expected]
        )

    def unflatten(self, vector: FloatArray) -> ArrayRecord:
        record = ArrayRecord()
        offset = 0
        for key, shape, dtype in self.entries:
            size = int(np.prod(shape, dtype=np.int64))
            part = vector[offset : offset + size].reshape(shape).astype(np.dtype(dtype))
            record[key] = Array(part)
            offset += size
        return record


def _wire_record(messages: Iterable[ProtocolMessage]) -> ArrayRecord:
    return ArrayRecord(
        {
            str(index): Array(np.frombuffer(wire.encode(message), dtype=np.uint8))
            for index, message in enumerate(messages)
        }
    )


def _read_wire(content: RecordDict) -> list[ProtocolMessage]:
    """Decode the protocol messages of a Flower message; raises a ``SecAggError`` if malformed."""
    record = content.get(WIRE_RECORD)
    if not isinstance(record, ArrayRecord):
        raise RemoteProtocolError(
            f"the message has no {WIRE_RECORD!r} ArrayRecord; is secagg_mod installed on the "
            "ClientApp?"
        )
    decoded = []
    for index in range(len(record)):
        array = record.get(str(index))
        if array is None or array.dtype != "uint8" or len(array.shape) != 1:
            raise RemoteProtocolError(f"protocol message {index} is not a uint8 vector")
        try:
            data = array.numpy().tobytes()
        except (TypeError, ValueError, OSError, EOFError):
            raise RemoteProtocolError(f"protocol message {index} is not a numpy array") from None
        decoded.append(wire.decode(data))
    return decoded


def _without_weight(content: RecordDict, weight_key: str) -> list[tuple[str, MetricRecord]]:
    """The reply's metric records minus the weight, which the protocol sums securely."""
    kept = []
    for key, record in content.metric_records.items():
        stripped = MetricRecord({k: v for k, v in record.items() if k != weight_key})
        kept.append((key, stripped))
    return kept


def _weight_of(content: RecordDict, weight_key: str) -> float:
    for record in content.metric_records.values():
        if weight_key in record:
            value = record[weight_key]
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    raise LocalProtocolError(
        f"the train reply needs a numeric metric {weight_key!r} (the FedAvg weight) in a "
        "MetricRecord"
    )


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class KeyHolderEndpoint(Protocol):
    """What the server needs from the Paillier key holder (a :class:`KeyHolder` or a proxy)."""

    @property
    def session_id(self) -> bytes:
        """The session whose aggregates it decrypts; :func:`flower_session_id` of the run."""
        ...

    @property
    def public_key(self) -> phe.PaillierPublicKey:
        """The public key clients encrypt under."""
        ...

    def receive(self, message: ProtocolMessage) -> list[ProtocolMessage]:
        """Decrypt one :class:`~protocols.messages.AggregateCiphertext`."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class SecureRoundResult:
    """One secure aggregation over Flower.

    Attributes:
        arrays: the weighted average of the survivors' arrays (the FedAvg result), in the
            names, shapes and dtypes of the broadcast arrays.
        total_weight: the survivors' summed weight (decoded from the secure sum).
        survivors: Flower node ids whose upload is in the average.
        dropped: Flower node id -> protocol round (0-3) at which it fell out; a node dropping at
            round 3 had uploaded and is among the survivors too.
        metrics: the survivors' train metrics except the weight (these travel in the clear).
        seconds: protocol round name -> wall-clock seconds, waiting included (under
            :class:`SecAggFedAvg`, Flower's ``Strategy.start`` sends the upload, so
            ``masked_input`` counts only the server's work on it).
    """

    arrays: ArrayRecord
    total_weight: float
    survivors: tuple[int, ...]
    dropped: dict[int, int]
    metrics: tuple[MetricRecord, ...]
    seconds: dict[str, float] = field(default_factory=dict)


class SecureAggregationWorkflow:
    """Secure weighted FedAvg over a Flower grid: SecAgg, SecAgg+ or Paillier.

    Use one instance per Flower run (round ids count up within the run's session).

    Args:
        protocol: ``"secagg"`` (complete graph), ``"secagg+"`` (Harary graph, k and t from
            :func:`~protocols.graph.secagg_plus_parameters`) or ``"paillier"``.
        timeout: deadline in seconds of each protocol round; silent nodes are dropped. Flower's
            SuperLink and SuperNodes poll every 3 s, so keep it well above 6.
        upload_timeout: deadline of the round that includes local training (default ``timeout``).
        clip: values (weighted by ``w / max_weight``) are clipped to ``[-clip, clip]``.
        value_bits: quantization bits; the ring adds ceil(log2 n) bits of headroom, so 22 bits
            keep uploads in uint32 up to 1024 nodes (Flower's SecAgg+ default precision).
        max_weight: the largest FedAvg weight a node may report.
        weighted_by_key: the train metric holding the weight (FedAvg's ``weighted_by_key``).
        threshold, degree, dropout_fraction, corrupt_fraction: as for
            :class:`~protocols.aggregators.MaskingAggregator` (masking only).
        key_holder: the Paillier key holder (required for ``"paillier"``); its ``session_id`` must
            be :func:`flower_session_id` of the run and its packing must use ``value_bits`` and
            ``max_clients``.
        max_clients: Paillier slot headroom: the most nodes in one aggregate.
        min_contributors: Paillier: the fewest uploads that are aggregated.

    Raises:
        ParameterError: inconsistent settings.
    """

    def __init__(
        self,
        protocol: ProtocolName = "secagg+",
        *,
        timeout: float = 30.0,
        upload_timeout: float | None = None,
        clip: float = 8.0,
        value_bits: int = 22,
        max_weight: float = 1000.0,
        weighted_by_key: str = "num-examples",
        threshold: int | None = None,
        degree: int | None = None,
        dropout_fraction: float = 0.05,
        corrupt_fraction: float = 0.05,
        key_holder: KeyHolderEndpoint | None = None,
        max_clients: int = 1024,
        min_contributors: int = 2,
    ) -> None:
        if protocol not in ("secagg", "secagg+", "paillier"):
            raise ParameterError(f"protocol must be secagg, secagg+ or paillier, not {protocol!r}")
        for name, value in (("timeout", timeout), ("upload_timeout", upload_timeout)):
            if value is not None and not value > 0:
                raise ParameterError(f"{name} must be a positive number of seconds, got {value}")
        if not max_weight > 0:
            raise ParameterError(f"max_weight must be positive, got {max_weight}")
        self.protocol: Final = protocol
        self.timeout = float(timeout)
        self.upload_timeout = float(upload_timeout if upload_timeout is not None else timeout)
        self.clip = float(clip)
        self.value_bits = value_bits
        self.max_weight = float(max_weight)
        self.weighted_by_key = weighted_by_key
        self.max_clients = max_clients
        self.min_contributors = min_contributors
        self.key_holder = key_holder
        self._graphs: MaskingAggregator | None = None
        if protocol == "paillier":
            if key_holder is None:
                raise ParameterError("protocol='paillier' needs a key_holder")
            QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=max_clients)
            if isinstance(key_holder, KeyHolder) and (
                key_holder.packing.value_bits,
                key_holder.packing.num_clients,
            ) != (value_bits, max_clients):
                raise ParameterError(
                    "the key holder packs for value_bits="
                    f"{key_holder.packing.value_bits}, max_clients={key_holder.packing.num_clients}"
                    f"; build it with value_bits={value_bits}, max_clients={max_clients}"
                )
        else:
            self._graphs = MaskingAggregator(
                "harary" if protocol == "secagg+" else "complete",
                clip=clip,
                value_bits=value_bits,
                threshold=threshold,
                degree=degree,
                dropout_fraction=dropout_fraction,
                corrupt_fraction=corrupt_fraction,
            )
        self._next_round = 0

    def begin(
        self, grid: Grid, node_ids: Iterable[int], content: RecordDict, *, server_round: int
    ) -> SecureRound:
        """Set up one aggregation over ``node_ids`` of the arrays in ``content``.

        Args:
            grid: the ServerApp's grid.
            node_ids: the sampled Flower nodes (at least 2).
            content: what a plain FedAvg train message would carry (arrays and config); it is
                delivered to each node's train function with the upload round.
            server_round: Flower's round number (the messages' group id).

        Returns:
            The round; call :meth:`SecureRound.prepare` then :meth:`SecureRound.finish`.
        """
        round_id = self._next_round
        self._next_round += 1
        return SecureRound(self, grid, tuple(node_ids), content, server_round, round_id)

    def aggregate(
        self, grid: Grid, node_ids: Iterable[int], content: RecordDict, *, server_round: int
    ) -> SecureRoundResult:
        """Run one secure aggregation to the end (see :meth:`begin` for the arguments).

        Raises:
            InsufficientSurvivorsError: too few nodes were left at some protocol round; nothing
                was revealed and the nodes were told to abort.
        """
        secure_round = self.begin(grid, node_ids, content, server_round=server_round)
        upload = secure_round.prepare()
        started = time.perf_counter()
        replies = grid.send_and_receive(upload, timeout=self.upload_timeout)
        secure_round._add_seconds(ROUND_NAMES[_UPLOAD_ROUND], started)
        return secure_round.finish(replies)


class SecureRound:
    """One aggregation in progress: moves protocol messages between the grid and the server machine.

    Built by :meth:`SecureAggregationWorkflow.begin`. :meth:`prepare` runs the protocol rounds
    before the upload and returns the upload messages (the caller sends them, e.g. Flower's
    ``Strategy.start``); :meth:`finish` takes their replies and runs the rest.
    """

    def __init__(
        self,
        workflow: SecureAggregationWorkflow,
        grid: Grid,
        node_ids: Sequence[int],
        content: RecordDict,
        server_round: int,
        round_id: int,
    ) -> None:
        nodes = sorted(set(node_ids))
        if len(nodes) < 2:
            raise ParameterError(f"secure aggregation needs at least 2 nodes, got {len(nodes)}")
        self.workflow = workflow
        self.grid = grid
        self.content = content
        self.server_round = server_round
        self.layout = _Layout.of(content)
        self.node_of: Final = dict(enumerate(nodes))
        self.id_of: Final = {node: index for index, node in self.node_of.items()}
        self.seconds: dict[str, float] = {}
        self._metrics: dict[int, list[tuple[str, MetricRecord]]] = {}
        self._upload: list[Message] = []
        session_id = flower_session_id(grid.run.run_id)
        ids = tuple(self.node_of)
        self.server: MaskingServer | PaillierServer
        if workflow.protocol == "paillier":
            assert workflow.key_holder is not None
            if workflow.key_holder.session_id != session_id:
                raise ParameterError(
                    "the key holder's session_id must be flower_session_id(run_id)"
                )
            num_clients = workflow.max_clients
            self.server = PaillierServer(
                PaillierParams(
                    session_id=session_id,
                    round_id=round_id,
                    clients=ids,
                    vector_length=self.layout.size + 1,
                    value_bits=workflow.value_bits,
                    max_clients=num_clients,
                    min_contributors=min(workflow.min_contributors, len(ids)),
                ),
                workflow.key_holder.public_key,
            )
        else:
            assert workflow._graphs is not None
            num_clients = len(ids)
            graph, threshold = workflow._graphs.build_graph(ids)
            self.server = MaskingServer(
                MaskingParams(
                    session_id=session_id,
                    round_id=round_id,
                    graph=graph,
                    threshold=threshold,
                    vector_length=self.layout.size + 1,
                    modulus_bits=QuantizationScheme(
                        clip=workflow.clip, value_bits=workflow.value_bits, num_clients=num_clients
                    ).modulus_bits,
                )
            )
        self.encoding = _Encoding(
            workflow.clip,
            workflow.value_bits,
            num_clients,
            workflow.max_weight,
            workflow.weighted_by_key,
        )

    # -- the driver: every decision below is the machine's -------------------------------------

    def prepare(self) -> list[Message]:
        """Run the rounds before the upload; return the upload messages (with the train content).

        Raises:
            InsufficientSurvivorsError: the round aborted (the nodes still in it were told).
        """
        outbox = self._timed("setup", self.server.start)
        if isinstance(self.server, MaskingServer):
            for round_index in range(_UPLOAD_ROUND):
                self._exchange(round_index, outbox, with_setup=round_index == 0)
                outbox = self._close(round_index)
        self._upload = self._flower_messages(
            outbox, with_setup=isinstance(self.server, PaillierServer), with_content=True
        )
        return self._upload

    def finish(self, replies: Iterable[Message]) -> SecureRoundResult:
        """Take the upload replies and complete the round (unmasking or decryption).

        Raises:
            InsufficientSurvivorsError: the round aborted (the nodes still in it were told).
        """
        self._deliver(_UPLOAD_ROUND, self._upload, replies)
        outbox = self._close(_UPLOAD_ROUND)
        if isinstance(self.server, PaillierServer):
            key_holder = self.workflow.key_holder
            assert key_holder is not None
            for message in outbox:
                for reply in self._timed("decryption", key_holder.receive, message):
                    self.server.receive(reply)
        else:
            self._exchange(_UNMASK_ROUND, outbox)
            self._close(_UNMASK_ROUND)
        return self._result()

    def _exchange(
        self, round_index: int, outbox: list[ProtocolMessage], *, with_setup: bool = False
    ) -> None:
        messages = self._flower_messages(outbox, with_setup=with_setup, with_content=False)
        started = time.perf_counter()
        replies = self.grid.send_and_receive(messages, timeout=self.workflow.timeout)
        self._add_seconds(ROUND_NAMES[round_index], started)
        self._deliver(round_index, messages, replies)

    def _deliver(
        self, round_index: int, sent: Sequence[Message], replies: Iterable[Message]
    ) -> None:
        """Feed each node's protocol messages to the server machine; bad ones are discarded."""
        node_of_message = {m.metadata.message_id: m.metadata.dst_node_id for m in sent}
        for reply in replies:
            node = node_of_message.get(reply.metadata.reply_to_message_id)
            if node is None:
                continue
            if reply.has_error():
                logger.info("node %d failed in %s: %s", node, ROUND_NAMES[round_index], reply.error)
                continue
            try:
                for message in _read_wire(reply.content):
                    if message.sender != self.id_of[node]:
                        raise RemoteProtocolError(
                            f"node {node} sent a message as protocol party {message.sender}"
                        )
                    self._timed(ROUND_NAMES[round_index], self.server.receive, message)
            except SecAggError as error:
                logger.warning("rejected node %d in %s: %s", node, ROUND_NAMES[round_index], error)
                continue
            if round_index == _UPLOAD_ROUND:
                self._metrics[node] = _without_weight(reply.content, self.encoding.weight_key)

    def _close(self, round_index: int) -> list[ProtocolMessage]:
        """The round's deadline passed: the machine drops the silent and moves on (or aborts)."""
        try:
            return self._timed(ROUND_NAMES[round_index], self.server.close_phase)
        except InsufficientSurvivorsError:
            if isinstance(self.server, MaskingServer):
                notices = self._flower_messages(
                    self.server.abort_messages(), with_setup=False, with_content=False
                )
                self.grid.push_messages(notices)
            raise

    # -- plumbing ---------------------------------------------------------------------------------

    def _flower_messages(
        self, outbox: Sequence[ProtocolMessage], *, with_setup: bool, with_content: bool
    ) -> list[Message]:
        timeout = self.workflow.upload_timeout if with_content else self.workflow.timeout
        messages = []
        for protocol_message in outbox:
            content = RecordDict()
            if with_content:
                for key, record in self.content.items():
                    content[key] = record
            content[WIRE_RECORD] = _wire_record([protocol_message])
            if with_setup:
                content[SETUP_RECORD] = self.encoding.to_record()
            messages.append(
                Message(
                    content=content,
                    dst_node_id=self.node_of[protocol_message.recipient],
                    message_type=MessageType.TRAIN,
                    group_id=str(self.server_round),
                    ttl=timeout + _TTL_MARGIN_SECONDS,
                )
            )
        return messages

    def _timed(self, name: str, step: Callable[..., _T], *args: object) -> _T:
        started = time.perf_counter()
        try:
            return step(*args)
        finally:
            self._add_seconds(name, started)

    def _add_seconds(self, name: str, started: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def _result(self) -> SecureRoundResult:
        """Decode the ring sum into the weighted average of the survivors' arrays."""
        result = self.server.result
        scheme = self.encoding.scheme()
        size = self.layout.size
        count = len(result.survivors)
        weight_units = int(result.vector[size])
        if weight_units == 0:
            raise InsufficientSurvivorsError(
                "the survivors' weights sum to zero; no average exists"
            )
        total_ratio = weight_units / scheme.levels
        average = scheme.dequantize_sum(result.vector[:size], count) / total_ratio
        survivors = tuple(self.node_of[u] for u in result.survivors)
        dropped_at = result.dropped_at
        logger.info(
            "secure round %d: %d of %d nodes in the sum, dropped %s",
            self.server_round,
            count,
            len(self.node_of),
            {self.node_of[u]: ROUND_NAMES[r] for u, r in dropped_at.items()} or "none",
        )
        return SecureRoundResult(
            arrays=self.layout.unflatten(average),
            total_weight=total_ratio * self.encoding.max_weight,
            survivors=survivors,
            dropped={self.node_of[u]: r for u, r in dropped_at.items()},
            metrics=tuple(
                record for node in survivors for _, record in self._metrics.get(node, [])
            ),
            seconds=dict(self.seconds),
        )


class SecAggFedAvg(FedAvg):
    """Flower's FedAvg with the train aggregation run by a :class:`SecureAggregationWorkflow`.

    ``configure_train`` samples nodes as FedAvg does, runs the protocol rounds before the upload
    through the grid and returns the upload messages, which ``Strategy.start`` sends with its own
    ``timeout`` (the upload deadline; pass e.g. ``timeout=60``, never rely on the hour-long
    default); ``aggregate_train`` runs the remaining rounds. An aborted round (too few survivors,
    or any other protocol failure, logged) keeps the previous global arrays. Train metrics are
    averaged without weights (the weight is secret); evaluation is FedAvg's, in the clear.

    Args:
        workflow: the secure aggregation backend.
        fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes,
            min_available_nodes, arrayrecord_key, configrecord_key, evaluate_metrics_aggr_fn:
            as for ``flwr.serverapp.strategy.FedAvg`` (the weight key is the workflow's).
    """

    def __init__(
        self,
        workflow: SecureAggregationWorkflow,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key=workflow.weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        self.workflow = workflow
        self._rounds: dict[int, SecureRound] = {}
        #: server round -> the result of its secure aggregation (for logs and tests).
        self.results: dict[int, SecureRoundResult] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample nodes, run the protocol up to the upload, return the upload messages."""
        planned = list(super().configure_train(server_round, arrays, config, grid))
        if not planned:
            return []
        secure_round = self.workflow.begin(
            grid,
            [message.metadata.dst_node_id for message in planned],
            planned[0].content,
            server_round=server_round,
        )
        try:
            upload = secure_round.prepare()
        except SecAggError as error:
            logger.warning("round %d aborted before the upload: %s", server_round, error)
            return []
        self._rounds[server_round] = secure_round
        return upload

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Finish the secure round; return the weighted average and the mean train metrics."""
        secure_round = self._rounds.pop(server_round, None)
        if secure_round is None:
            return None, None
        try:
            result = secure_round.finish(replies)
        except SecAggError as error:
            logger.warning("round %d aborted: %s", server_round, error)
            return None, None
        self.results[server_round] = result
        metrics = _mean_metrics(result.metrics)
        metrics["secagg-survivors"] = len(result.survivors)
        metrics["secagg-dropped"] = len(set(result.dropped) - set(result.survivors))
        return result.arrays, metrics


def _mean_metrics(records: Sequence[MetricRecord]) -> MetricRecord:
    """Unweighted mean of each scalar metric over the records that report it."""
    sums: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                sums.setdefault(key, []).append(float(value))
    return MetricRecord({key: sum(values) / len(values) for key, values in sums.items()})


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


@dataclass
class _ClientMemory:
    """What a node keeps between messages of one run, in ``context.state[STATE_RECORD]``."""

    last_round: int = -1
    machine: bytes = b""
    encoding: _Encoding | None = None
    paillier_n: int | None = None

    @classmethod
    def load(cls, state: RecordDict) -> _ClientMemory:
        record = state.config_records.get(STATE_RECORD)
        if record is None:
            return cls()
        try:
            encoding = None
            if record["has-encoding"]:
                encoding = _Encoding.from_record(record)
            paillier = _typed(record["paillier-n"], bytes)
            return cls(
                last_round=int.from_bytes(_typed(record["last-round"], bytes), "big") - 1,
                machine=_typed(record["machine"], bytes),
                encoding=encoding,
                paillier_n=int.from_bytes(paillier, "big") if paillier else None,
            )
        except (KeyError, TypeError, RemoteProtocolError):
            raise LocalProtocolError("the saved secagg client state is malformed") from None

    def store(self, state: RecordDict) -> None:
        record = self.encoding.to_record() if self.encoding is not None else ConfigRecord()
        record["has-encoding"] = self.encoding is not None
        # Round ids may exceed int64, the widest integer a ConfigRecord holds: store bytes.
        record["last-round"] = (self.last_round + 1).to_bytes(9, "big")
        record["machine"] = self.machine
        n = self.paillier_n
        record["paillier-n"] = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
        state[STATE_RECORD] = record


class SecAggMod:
    """Client side: a Flower Mod that answers secagg protocol messages with the client machines.

    Install it on the train function (``@app.train(mods=[secagg_mod])``) or on the whole
    ``ClientApp(mods=[secagg_mod])``; messages without a :data:`WIRE_RECORD` pass through. The
    user's train function is called once per round, with the upload message (without the secagg
    records); its reply must hold the broadcast arrays and the weight metric. Its arrays never
    leave the node: only the masked (or encrypted) vector and the other metrics do.

    Protocol failures (a malicious or confused server, a replay, a bad setup) poison the machine,
    are logged and answered with an :class:`~protocols.messages.Abort`; the poisoned state is kept
    in ``context.state`` so no later message of that round gets an answer.

    Args:
        min_threshold: the smallest Shamir threshold this node accepts from the server.
        paillier_public_key: the key holder's public key, obtained out of band; when ``None``
            the node pins the first key it is sent in the run (trust on first use).
    """

    def __init__(
        self, *, min_threshold: int = 2, paillier_public_key: phe.PaillierPublicKey | None = None
    ) -> None:
        if min_threshold < 2:
            raise ParameterError("min_threshold must be >= 2: one share must never reveal a key")
        self.min_threshold = min_threshold
        self.paillier_public_key = paillier_public_key

    def __call__(self, message: Message, context: Context, call_next: CallNext) -> Message:
        """Handle one message (see the class docstring)."""
        content = message.content
        if message.metadata.message_type != MessageType.TRAIN or WIRE_RECORD not in content:
            return call_next(message, context)
        wire_content = RecordDict({WIRE_RECORD: content[WIRE_RECORD]})
        setup = content.get(SETUP_RECORD)
        for key in (WIRE_RECORD, SETUP_RECORD):
            if key in content:
                del content[key]
        memory = _ClientMemory.load(context.state)
        incoming: ProtocolMessage | None = None
        outgoing: list[ProtocolMessage] = []
        metrics: list[tuple[str, MetricRecord]] = []
        try:
            messages = _read_wire(wire_content)
            if len(messages) != 1:
                raise RemoteProtocolError(f"expected one protocol message, got {len(messages)}")
            incoming = messages[0]
            if setup is not None and not isinstance(setup, ConfigRecord):
                raise RemoteProtocolError(f"{SETUP_RECORD!r} must be a ConfigRecord")
            outgoing, metrics = self._step(incoming, setup, memory, message, context, call_next)
        except SecAggError as error:
            logger.warning("secagg: refused %s: %s", type(incoming).__name__, error)
            outgoing = _abort_reply(incoming, str(error))
        finally:
            memory.store(context.state)
        reply = RecordDict({WIRE_RECORD: _wire_record(outgoing)})
        for key, record in metrics:
            reply[key] = record
        return Message(reply, reply_to=message)

    def _step(
        self,
        incoming: ProtocolMessage,
        setup: ConfigRecord | None,
        memory: _ClientMemory,
        message: Message,
        context: Context,
        call_next: CallNext,
    ) -> tuple[list[ProtocolMessage], list[tuple[str, MetricRecord]]]:
        if isinstance(incoming, RoundSetup | PaillierSetup):
            _begin_round(incoming, setup, memory, context.run_id)
        if isinstance(incoming, PaillierSetup):
            client = PaillierClient(
                incoming.recipient,
                session_id=incoming.session_id,
                round_id=incoming.round_id,
                public_key=self._paillier_key(incoming, memory),
            )
            client.receive(incoming)
            vector, metrics = _train_and_encode(memory, message, context, call_next)
            return client.submit_input(vector), metrics
        if isinstance(incoming, RoundSetup):
            machine = MaskingClient(
                incoming.recipient,
                session_id=incoming.session_id,
                round_id=incoming.round_id,
                min_threshold=self.min_threshold,
            )
        elif memory.machine:
            machine = MaskingClient.from_state(memory.machine)
        else:
            raise RemoteProtocolError(f"{type(incoming).__name__} arrived outside any round")
        try:
            outgoing = machine.receive(incoming)
            if machine.phase is not ClientPhase.AWAIT_INPUT:
                return outgoing, []
            vector, metrics = _train_and_encode(memory, message, context, call_next)
            return outgoing + machine.submit_input(vector), metrics
        finally:
            # Saved even when something failed: a poisoned machine stays poisoned, and a round
            # whose training failed is never trained (hence uploaded) a second time.
            memory.machine = machine.export_state()

    def _paillier_key(self, setup: PaillierSetup, memory: _ClientMemory) -> phe.PaillierPublicKey:
        if self.paillier_public_key is not None:
            return self.paillier_public_key
        if memory.paillier_n is None:
            logger.info("secagg: pinning the Paillier key of this run (trust on first use)")
            memory.paillier_n = setup.public_key_n
        return phe.PaillierPublicKey(memory.paillier_n)


def _begin_round(
    setup: RoundSetup | PaillierSetup,
    record: ConfigRecord | None,
    memory: _ClientMemory,
    run_id: int,
) -> None:
    """Accept a new round only for this run's session and a round id never seen before."""
    if setup.session_id != flower_session_id(run_id):
        raise RemoteProtocolError("the setup belongs to another Flower run: replay rejected")
    if setup.round_id <= memory.last_round:
        raise RemoteProtocolError(
            f"round {setup.round_id} is not newer than round {memory.last_round}: replay rejected"
        )
    # The round is consumed before anything else can fail: it can never be started twice.
    memory.last_round = setup.round_id
    memory.machine = b""
    memory.encoding = None
    memory.encoding = _Encoding.from_record(record)


def _train_and_encode(
    memory: _ClientMemory, message: Message, context: Context, call_next: CallNext
) -> tuple[RingArray, list[tuple[str, MetricRecord]]]:
    """Call the user's train function and turn its reply into the ring vector to protect."""
    encoding = memory.encoding
    if encoding is None:
        raise LocalProtocolError("no quantization settings were received for this round")
    layout = _Layout.of(message.content)
    reply = call_next(message, context)
    if reply.has_error():
        raise LocalProtocolError(f"the train function failed: {reply.error.reason}")
    weight = _weight_of(reply.content, encoding.weight_key)
    vector = encoding.encode(layout.flatten(reply.content), weight)
    return vector, _without_weight(reply.content, encoding.weight_key)


def _abort_reply(incoming: ProtocolMessage | None, reason: str) -> list[ProtocolMessage]:
    """An Abort for the server, when we know whom the refused message was for."""
    if incoming is None or incoming.sender != SERVER_ID or incoming.recipient > MAX_PARTY_ID:
        return []
    return [
        Abort(
            session_id=incoming.session_id,
            round_id=incoming.round_id,
            sender=incoming.recipient,
            recipient=SERVER_ID,
            reason=reason[:MAX_REASON_CHARS],
        )
    ]


#: The client Mod with default settings (threshold >= 2, Paillier key pinned on first use).
secagg_mod: Final = SecAggMod()
