"""The server side of the Flower integration: secure weighted FedAvg driven through a ``Grid``.

Why this module exists: a Message-API ``ServerApp`` owns a Flower ``Grid``, and the server state
machines (:class:`~protocols.masking.MaskingServer`, :class:`~protocols.paillier.PaillierServer`)
own every protocol decision. :class:`SecureRound` is the thin loop between the two: each
protocol round is one ``grid.send_and_receive(..., timeout=...)``; a node that has not answered
when it returns (or answered with an error) is silent and the machine drops it
(``close_phase``), so no round waits forever. The round's graph and threshold come from the
round planner (:class:`~protocols.rounds.RoundPolicy`), and the float <-> ring rule from
:class:`~secagg.encoding.UpdateEncoding`; this module chooses neither.

Threat models (masking only). ``"active"`` (the default): the round's graph is over exactly the
clients of the trusted roster (:class:`~protocols.identity.TrustedRoster`, from the deployment's
roster file), ordered by its public seed, and :class:`~protocols.masking.MaskingServer` checks
every signature; the consistency round (round 3) runs between the upload and the unmasking. Flower
assigns node ids when nodes connect, so the workflow asks each node it has not seen yet in the run
which roster client it is, once (:class:`~protocols.flower.records.NodeClaim`, checked against the
roster); a roster client that no sampled node speaks for is simply silent and dropped in round 0.
``"semi-honest"``: no roster; Flower node ids (64-bit) are mapped to dense protocol ids 0..n-1 in
sorted order. Either way a node learns its id as the recipient of its setup message. The server
divides the decoded weighted sum by the
decoded total weight; the result equals Flower's plain FedAvg of the clipped updates up to
quantization. The weight itself never travels in the clear; other train metrics do (as in
Flower).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol, TypeVar

import phe
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from protocols.flower.keys import check_claim
from protocols.flower.records import (
    IDENTIFY_RECORD,
    SETUP_RECORD,
    WIRE_RECORD,
    ArrayLayout,
    EncodingSettings,
    NodeClaim,
    flower_session_id,
    read_wire,
    wire_record,
    without_weight,
)
from protocols.graph import ThreatModel
from protocols.identity import TrustedRoster
from protocols.masking import MaskingParams, MaskingServer
from protocols.messages import Message as ProtocolMessage
from protocols.paillier import KeyHolder, PaillierParams, PaillierServer
from protocols.rounds import DEFAULT_CORRUPT_FRACTION, RoundPolicy, check_threat_model
from protocols.simulate import ROUND_NAMES
from secagg.encoding import QuantizationScheme, UpdateEncoding
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidSignatureError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    SecAggError,
)

__all__ = [
    "KeyHolderEndpoint",
    "SecureAggregationWorkflow",
    "SecureRound",
    "SecureRoundResult",
]

logger = logging.getLogger(__name__)

ProtocolName = Literal["secagg", "secagg+", "paillier"]
_T = TypeVar("_T")

_UPLOAD_ROUND: Final = ROUND_NAMES.index("masked_input")
_CONSISTENCY_ROUND: Final = ROUND_NAMES.index("consistency")
_UNMASK_ROUND: Final = ROUND_NAMES.index("unmasking")
#: Seconds a protocol message stays deliverable after its round's deadline (Flower polls every 3 s).
_TTL_MARGIN_SECONDS: Final = 30.0


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
        survivors: Flower node ids whose upload is in the average, sorted.
        dropped: Flower node id -> protocol round (0-4, :data:`~protocols.simulate.ROUND_NAMES`)
            at which it fell out; a node dropping at round 3 (consistency, active model only)
            or 4 (unmasking) had uploaded and is among the survivors too.
        metrics: the survivors' train metrics except the weight (these travel in the clear).
        seconds: protocol round name -> wall-clock seconds, waiting included (under
            :class:`~protocols.flower.SecAggFedAvg`, Flower's ``Strategy.start`` sends the
            upload, so ``masked_input`` counts only the server's work on it); ``identify`` is
            the active model's identification of new nodes.
        unreachable: roster client ids (active model) that no sampled node spoke for; they
            were dropped in round 0.
        misbehaved: Flower node id -> what the server machine caught it doing wrong.
    """

    arrays: ArrayRecord
    total_weight: float
    survivors: tuple[int, ...]
    dropped: dict[int, int]
    metrics: tuple[MetricRecord, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    unreachable: tuple[int, ...] = ()
    misbehaved: dict[int, str] = field(default_factory=dict)


class SecureAggregationWorkflow:
    """Secure weighted FedAvg over a Flower grid: SecAgg, SecAgg+ or Paillier.

    Use one instance per Flower run (round ids count up within the run's session).

    Args:
        protocol: ``"secagg"`` (complete graph), ``"secagg+"`` (Harary graph, k and t from
            :func:`~protocols.graph.secagg_plus_parameters`) or ``"paillier"``.
        timeout: deadline in seconds of each protocol round; silent nodes are dropped. Flower's
            SuperLink and SuperNodes poll every 3 s, so keep it well above 6.
        upload_timeout: deadline of the round that includes local training (default ``timeout``).
        clip: each node clips its values to ``[-clip, clip]`` before weighting them.
        value_bits: quantization bits; the ring adds ceil(log2 n) bits of headroom, so 22 bits
            keep uploads in uint32 up to 1024 nodes (Flower's SecAgg+ default precision).
        max_weight: the largest FedAvg weight a node may report.
        weighted_by_key: the train metric holding the weight (FedAvg's ``weighted_by_key``).
        threshold, degree, dropout_fraction, corrupt_fraction: as for
            :class:`~protocols.rounds.RoundPolicy` (masking only).
        threat_model: ``"active"`` (default: no trust in the server, needs ``roster``) or
            ``"semi-honest"`` (masking only; Paillier ignores it).
        roster: the trusted roster, or the path of its file (active model; the same file the
            nodes hold, see :func:`protocols.flower.keys.write_deployment_keys`).
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
        corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
        key_holder: KeyHolderEndpoint | None = None,
        max_clients: int = 1024,
        min_contributors: int = 2,
        threat_model: ThreatModel = "active",
        roster: TrustedRoster | str | Path | None = None,
    ) -> None:
        _check_protocol_and_deadlines(protocol, timeout, upload_timeout)
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
        # Fail on a bad clip, value_bits or max_weight now rather than at the first round.
        scheme_clients = max_clients if protocol == "paillier" else 2
        UpdateEncoding(
            QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=scheme_clients),
            self.max_weight,
        )
        #: The round planner of a masking round (``None`` under Paillier, which has no graph).
        self.policy: Final = (
            None
            if protocol == "paillier"
            else RoundPolicy(
                protocol,
                dropout_fraction=dropout_fraction,
                corrupt_fraction=corrupt_fraction,
                degree=degree,
                threshold=threshold,
                value_bits=value_bits,
                threat_model=threat_model,
            )
        )
        #: The trusted roster of an active-model masking round (else ``None``).
        self.roster: Final = _trusted_roster(protocol, check_threat_model(threat_model), roster)
        if protocol == "paillier":
            _check_key_holder(key_holder, value_bits, max_clients)
        self._next_round = 0
        #: Roster client id -> the Flower node that proved it speaks for it (active model).
        self.node_of_client: dict[int, int] = {}

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


def _check_protocol_and_deadlines(
    protocol: ProtocolName, timeout: float, upload_timeout: float | None
) -> None:
    if protocol not in ("secagg", "secagg+", "paillier"):
        raise ParameterError(f"protocol must be secagg, secagg+ or paillier, not {protocol!r}")
    for name, value in (("timeout", timeout), ("upload_timeout", upload_timeout)):
        if value is not None and not value > 0:
            raise ParameterError(f"{name} must be a positive number of seconds, got {value}")


def _trusted_roster(
    protocol: ProtocolName,
    threat_model: ThreatModel,
    roster: TrustedRoster | str | Path | None,
) -> TrustedRoster | None:
    """The roster an active masking workflow runs with (loaded from its file if a path)."""
    if protocol == "paillier" or threat_model == "semi-honest":
        if roster is not None:
            raise ParameterError(
                "a roster applies to the active threat model of secagg and secagg+ only"
            )
        return None
    if roster is None:
        raise ParameterError(
            "the active threat model needs the deployment's trusted roster (roster='roster.txt',"
            " written with the nodes' key files by protocols.flower.keys.write_deployment_keys);"
            " threat_model='semi-honest' trusts the server instead"
        )
    return roster if isinstance(roster, TrustedRoster) else TrustedRoster.load(roster)


def _check_key_holder(
    key_holder: KeyHolderEndpoint | None, value_bits: int, max_clients: int
) -> None:
    """A Paillier workflow needs a key holder whose packing matches its quantization."""
    if key_holder is None:
        raise ParameterError("protocol='paillier' needs a key_holder")
    if isinstance(key_holder, KeyHolder) and (
        key_holder.packing.value_bits,
        key_holder.packing.num_clients,
    ) != (value_bits, max_clients):
        raise ParameterError(
            "the key holder packs for value_bits="
            f"{key_holder.packing.value_bits}, max_clients={key_holder.packing.num_clients}"
            f"; build it with value_bits={value_bits}, max_clients={max_clients}"
        )


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
        self.nodes: Final = tuple(nodes)
        self.layout = ArrayLayout.of(content)
        roster = workflow.roster
        #: Protocol id -> Flower node (in the active model, filled in by :meth:`prepare`).
        self.node_of: dict[int, int] = {} if roster is not None else dict(enumerate(nodes))
        self.id_of: dict[int, int] = {node: index for index, node in self.node_of.items()}
        self.seconds: dict[str, float] = {}
        self._metrics: dict[int, list[tuple[str, MetricRecord]]] = {}
        self._upload: list[Message] = []
        ids = roster.ids if roster is not None else tuple(self.node_of)
        num_clients = workflow.max_clients if workflow.policy is None else len(ids)
        #: The quantization this round's nodes receive with their setup.
        self.settings: Final = EncodingSettings(
            workflow.clip,
            workflow.value_bits,
            num_clients,
            workflow.max_weight,
            workflow.weighted_by_key,
        )
        vector_length = self.settings.update_encoding().vector_length(self.layout.size)
        self.session_id: Final = flower_session_id(grid.run.run_id)
        self.server: MaskingServer | PaillierServer
        if workflow.policy is None:
            self.server = self._paillier_server(self.session_id, round_id, vector_length)
        else:
            self.server = self._masking_server(workflow.policy, ids, round_id, vector_length)

    def _masking_server(
        self, policy: RoundPolicy, ids: Sequence[int], round_id: int, vector_length: int
    ) -> MaskingServer:
        """The masking server of this round, its graph and threshold from the round planner.

        In the active model the graph is over the whole roster, in its public order.
        """
        roster = self.workflow.roster
        order_seed = None if roster is None else roster.order_seed(self.session_id, round_id)
        plan = policy.plan(ids, order_seed=order_seed)
        assert plan.graph is not None  # a masking policy always plans a graph
        params = MaskingParams(
            session_id=self.session_id,
            round_id=round_id,
            graph=plan.graph,
            threshold=plan.threshold,
            vector_length=vector_length,
            modulus_bits=plan.modulus_bits,
            threat_model=policy.threat_model,
        )
        return MaskingServer(params, roster)

    def _paillier_server(
        self, session_id: bytes, round_id: int, vector_length: int
    ) -> PaillierServer:
        """The Paillier server of this round, under the key holder's public key."""
        key_holder = self.workflow.key_holder
        assert key_holder is not None  # checked when the workflow was built
        if key_holder.session_id != session_id:
            raise ParameterError("the key holder's session_id must be flower_session_id(run_id)")
        ids = tuple(self.node_of)
        return PaillierServer(
            PaillierParams(
                session_id=session_id,
                round_id=round_id,
                clients=ids,
                vector_length=vector_length,
                value_bits=self.workflow.value_bits,
                max_clients=self.workflow.max_clients,
                min_contributors=min(self.workflow.min_contributors, len(ids)),
            ),
            key_holder.public_key,
        )

    # -- the driver: every decision below is the machine's -------------------------------------

    def prepare(self) -> list[Message]:
        """Run the rounds before the upload; return the upload messages (with the train content).

        Raises:
            InsufficientSurvivorsError: the round aborted (the nodes still in it were told).
        """
        if self.workflow.roster is not None:
            self._identify(self.workflow.roster)
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
            rounds: tuple[int, ...] = (_UNMASK_ROUND,)
            if self.server.params.threat_model == "active":
                rounds = (_CONSISTENCY_ROUND, _UNMASK_ROUND)
            for round_index in rounds:
                self._exchange(round_index, outbox)
                outbox = self._close(round_index)
        return self._result()

    def _identify(self, roster: TrustedRoster) -> None:
        """Learn which roster client each sampled node is: ask the nodes not seen yet in the run.

        A node's answer counts only if its identity key signed it (:func:`check_claim`), so no
        node can take another client's place; a newer valid claim for a client replaces an old
        one (a node that reconnected under a new Flower id).
        """
        known = self.workflow.node_of_client
        seen = set(known.values())
        ask = [node for node in self.nodes if node not in seen]
        messages = [
            Message(
                content=RecordDict({IDENTIFY_RECORD: ConfigRecord()}),
                dst_node_id=node,
                message_type=MessageType.TRAIN,
                group_id=str(self.server_round),
                ttl=self.workflow.timeout + _TTL_MARGIN_SECONDS,
            )
            for node in ask
        ]
        replies: list[Message] = []
        if ask:
            started = time.perf_counter()
            replies = list(self.grid.send_and_receive(messages, timeout=self.workflow.timeout))
            self._add_seconds("identify", started)
        node_of_message = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        for reply in replies:
            node = node_of_message.get(reply.metadata.reply_to_message_id)
            if node is None or reply.has_error():
                continue
            try:
                claim = NodeClaim.from_content(reply.content)
                check_claim(roster, self.session_id, node, claim.client_id, claim.signature)
            except (RemoteProtocolError, InvalidSignatureError, ParameterError) as error:
                logger.warning("node %d is no client of the roster: %s", node, error)
                continue
            known[claim.client_id] = node
        sampled = set(self.nodes)
        self.node_of.update({c: n for c, n in known.items() if n in sampled})
        self.id_of.update({n: c for c, n in self.node_of.items()})
        if len(self.id_of) < len(sampled):
            logger.warning(
                "secure round %d: nodes %s are not identified as roster clients and sit out",
                self.server_round,
                sorted(sampled - set(self.id_of)),
            )

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
                for message in read_wire(reply.content):
                    if message.sender != self.id_of[node]:
                        raise RemoteProtocolError(
                            f"node {node} sent a message as protocol party {message.sender}"
                        )
                    self._timed(ROUND_NAMES[round_index], self.server.receive, message)
            except LocalProtocolError:
                raise  # the server machine itself failed: the round is over
            except SecAggError as error:
                logger.warning("rejected node %d in %s: %s", node, ROUND_NAMES[round_index], error)
                continue
            if round_index == _UPLOAD_ROUND:
                self._metrics[node] = without_weight(reply.content, self.settings.weight_key)

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
            node = self.node_of.get(protocol_message.recipient)
            if node is None:  # a roster client no sampled node speaks for: it stays silent
                continue
            content = RecordDict()
            if with_content:
                for key, record in self.content.items():
                    content[key] = record
            content[WIRE_RECORD] = wire_record([protocol_message])
            if with_setup:
                content[SETUP_RECORD] = self.settings.to_record()
            messages.append(
                Message(
                    content=content,
                    dst_node_id=node,
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
        count = len(result.survivors)
        total, total_weight = self.settings.update_encoding().decode_sum(result.vector, count)
        if not total_weight:
            raise InsufficientSurvivorsError(
                "the survivors' weights sum to zero; no average exists"
            )
        survivors = tuple(sorted(self.node_of[u] for u in result.survivors))
        dropped = {self.node_of[u]: r for u, r in result.dropped_at.items() if u in self.node_of}
        logger.info(
            "secure round %d: %d of %d nodes in the sum, dropped %s",
            self.server_round,
            count,
            len(self.nodes),
            {node: ROUND_NAMES[r] for node, r in dropped.items()} or "none",
        )
        misbehaved = self.server.misbehaved if isinstance(self.server, MaskingServer) else {}
        return SecureRoundResult(
            arrays=self.layout.unflatten(total / total_weight),
            total_weight=total_weight,
            survivors=survivors,
            dropped=dropped,
            metrics=tuple(
                record for node in survivors for _, record in self._metrics.get(node, [])
            ),
            seconds=dict(self.seconds),
            unreachable=tuple(u for u in result.dropped_at if u not in self.node_of),
            misbehaved={self.node_of[u]: why for u, why in misbehaved.items() if u in self.node_of},
        )
