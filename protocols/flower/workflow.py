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

Paillier: the server never holds the secret key. The decryptors are parties apart from it (the
single :class:`~protocols.paillier.KeyHolder`, or the members of a committee of which any t
decrypt together, :class:`~protocols.paillier.Decryptor`), reached through
:class:`DecryptorEndpoint`: an in-process decryptor, or a proxy to a remote one. Uploads are
signed, so a Paillier round always runs over the trusted roster and identifies its nodes as the
active model does. After the upload the round hands each decryptor its
:class:`~protocols.messages.DecryptionRequest` in committee order and feeds the replies to the
server machine until ``t`` of them verified (a decryptor that fails or whose partial decryption
does not verify is named in :attr:`SecureRoundResult.misbehaved`, and the next one is asked),
then the machine combines them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol, TypeVar

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from protocols.defaults import DEFAULT_VALUE_BITS, FLOWER_CLIP
from protocols.flower.keys import check_claim
from protocols.flower.records import (
    IDENTIFY_RECORD,
    SETUP_RECORD,
    SUPPORT_RECORD,
    WIRE_RECORD,
    ArrayLayout,
    EncodingSettings,
    NodeClaim,
    SupportSettings,
    flower_session_id,
    read_wire,
    wire_record,
    without_weight,
)
from protocols.graph import ThreatModel
from protocols.identity import TrustedRoster
from protocols.masking import MaskingParams, MaskingServer
from protocols.messages import KEY_HOLDER_ID, DecryptionRequest, decryptor_id, decryptor_index
from protocols.messages import Message as ProtocolMessage
from protocols.paillier import (
    Decryptor,
    KeyHolder,
    PaillierParams,
    PaillierPublic,
    PaillierServer,
    key_fingerprint,
)
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
from secagg.hazmat.paillier import ThresholdPublicKey
from secagg.support import RowSupport

__all__ = [
    "DecryptorEndpoint",
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


class DecryptorEndpoint(Protocol):
    """One decryptor as the server reaches it: a :class:`~protocols.paillier.Decryptor`, or a
    proxy to a decryptor in another process or on another machine.

    A :class:`~protocols.paillier.KeyHolder` is one as well (the committee of one, party
    :data:`~protocols.messages.KEY_HOLDER_ID`).
    """

    @property
    def party_id(self) -> int:
        """Its party id: :func:`~protocols.messages.decryptor_id` of its committee index."""
        ...

    @property
    def public(self) -> PaillierPublic:
        """The decryptors' public key (the one the nodes pinned)."""
        ...

    @property
    def session_id(self) -> bytes:
        """The session whose aggregates it decrypts; :func:`flower_session_id` of the run."""
        ...

    def receive(self, message: ProtocolMessage) -> list[ProtocolMessage]:
        """Answer one :class:`~protocols.messages.DecryptionRequest` (or raise)."""
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
        misbehaved: party -> what it was caught doing wrong: a Flower node id for a node
            (caught by the server machine), or the party id of a Paillier decryptor
            (:func:`~protocols.messages.decryptor_id`, or
            :data:`~protocols.messages.KEY_HOLDER_ID`) that failed or sent a partial
            decryption that did not verify.
        decryptors: Paillier: the committee indices whose verified partial decryptions gave
            the sum (empty for masking and for the single key holder).
        support: a support round's decoded support (its ``arrays`` are then empty and its
            ``total_weight`` 0); ``None`` for an aggregation of arrays.
    """

    arrays: ArrayRecord
    total_weight: float
    survivors: tuple[int, ...]
    dropped: dict[int, int]
    metrics: tuple[MetricRecord, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    unreachable: tuple[int, ...] = ()
    misbehaved: dict[int, str] = field(default_factory=dict)
    decryptors: tuple[int, ...] = ()
    support: RowSupport | None = None


class SecureAggregationWorkflow:
    """Secure weighted FedAvg over a Flower grid: SecAgg, SecAgg+ or Paillier.

    Use one instance per Flower run (round ids count up within the run's session).

    Args:
        protocol: ``"secagg"`` (complete graph), ``"secagg+"`` (Harary graph, k and t from
            :func:`~protocols.graph.secagg_plus_parameters`) or ``"paillier"``.
        timeout: deadline in seconds of each protocol round; silent nodes are dropped. Flower's
            SuperLink and SuperNodes poll every 3 s, so keep it well above 6.
        upload_timeout: deadline of the round that includes local training (default ``timeout``).
        clip: each node clips its values to ``[-clip, clip]`` before weighting them. The
            default, :data:`~protocols.defaults.FLOWER_CLIP`, is larger than the Python
            aggregators' :data:`~protocols.defaults.DEFAULT_CLIP` because this workflow sums
            the model *parameters* each ClientApp returns (FedAvg), not small update deltas;
            it is Flower SecAgg+'s own ``clipping_range``.
        value_bits: quantization bits (default :data:`~protocols.defaults.DEFAULT_VALUE_BITS`);
            the ring adds ceil(log2 n) bits of headroom, so 22 bits keep uploads in uint32 up to
            1024 nodes (Flower's SecAgg+ default precision).
        max_weight: the largest FedAvg weight a node may report.
        weighted_by_key: the train metric holding the weight (FedAvg's ``weighted_by_key``).
        threshold, degree, dropout_fraction, corrupt_fraction: as for
            :class:`~protocols.rounds.RoundPolicy` (masking only).
        threat_model: ``"active"`` (default: no trust in the server, needs ``roster``) or
            ``"semi-honest"`` (masking only; Paillier ignores it and always needs ``roster``).
        roster: the trusted roster, or the path of its file (the active model and Paillier; the
            same file the nodes hold, see :func:`protocols.flower.keys.write_deployment_keys`).
        decryptors: Paillier (required): every decryptor, each a :class:`DecryptorEndpoint`
            (or the single :class:`~protocols.paillier.KeyHolder`), e.g. from
            :func:`protocols.keyfiles.load_decryptors`; all under one public key, with the
            ``session_id`` :func:`flower_session_id` of the run, and packing for
            ``value_bits`` and ``max_clients``.
        max_clients: Paillier slot headroom: the most nodes in one aggregate (and the most
            clients the roster may list).
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
        clip: float = FLOWER_CLIP,
        value_bits: int = DEFAULT_VALUE_BITS,
        max_weight: float = 1000.0,
        weighted_by_key: str = "num-examples",
        threshold: int | None = None,
        degree: int | None = None,
        dropout_fraction: float = 0.05,
        corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
        decryptors: Sequence[DecryptorEndpoint | KeyHolder] | None = None,
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
        #: The trusted roster of an active-model masking round or of Paillier (else ``None``).
        self.roster: Final = _trusted_roster(protocol, check_threat_model(threat_model), roster)
        #: Paillier: party id -> its decryptor, in committee order (else empty).
        self.decryptors: Final = _decryptor_endpoints(protocol, decryptors, value_bits, max_clients)
        self._next_round = 0
        #: Roster client id -> the Flower node that proved it speaks for it (active model).
        self.node_of_client: dict[int, int] = {}

    def begin(
        self,
        grid: Grid,
        node_ids: Iterable[int],
        content: RecordDict,
        *,
        server_round: int,
        support: SupportSettings | None = None,
    ) -> SecureRound:
        """Set up one aggregation over ``node_ids`` of the arrays in ``content``.

        Args:
            grid: the ServerApp's grid.
            node_ids: the sampled Flower nodes (at least 2).
            content: what a plain FedAvg train message would carry (arrays and config); it is
                delivered to each node's train function with the upload round. With a
                :data:`~protocols.flower.records.ROWS_RECORD` only its announced rows of the
                named tables are summed (a sparse round).
            server_round: Flower's round number (the messages' group id).
            support: run a support round instead (masking only): each node uploads the
                support sketch of its rows (``SecAggMod(support=...)``), nobody trains.

        Returns:
            The round; call :meth:`SecureRound.prepare` then :meth:`SecureRound.finish`.
        """
        round_id = self._next_round
        self._next_round += 1
        return SecureRound(
            self, grid, tuple(node_ids), content, server_round, round_id, support=support
        )

    def aggregate(
        self,
        grid: Grid,
        node_ids: Iterable[int],
        content: RecordDict,
        *,
        server_round: int,
        support: SupportSettings | None = None,
    ) -> SecureRoundResult:
        """Run one secure aggregation to the end (see :meth:`begin` for the arguments).

        Raises:
            InsufficientSurvivorsError: too few nodes were left at some protocol round; nothing
                was revealed and the nodes were told to abort.
        """
        secure_round = self.begin(
            grid, node_ids, content, server_round=server_round, support=support
        )
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
    """The roster the workflow runs with (loaded from its file if a path), or ``None``."""
    if protocol != "paillier" and threat_model == "semi-honest":
        if roster is not None:
            raise ParameterError(
                "a roster applies to the active threat model of secagg and secagg+ only"
            )
        return None
    if roster is None:
        if protocol == "paillier":
            raise ParameterError(
                "protocol='paillier' needs the deployment's trusted roster (roster='roster.txt'): "
                "every upload is signed by its node's identity key"
            )
        raise ParameterError(
            "the active threat model needs the deployment's trusted roster (roster='roster.txt',"
            " written with the nodes' key files by protocols.flower.keys.write_deployment_keys);"
            " threat_model='semi-honest' trusts the server instead"
        )
    return roster if isinstance(roster, TrustedRoster) else TrustedRoster.load(roster)


def _decryptor_endpoints(
    protocol: ProtocolName,
    decryptors: Sequence[DecryptorEndpoint | KeyHolder] | None,
    value_bits: int,
    max_clients: int,
) -> dict[int, DecryptorEndpoint]:
    """Party id -> endpoint, checked: one public key, the right party ids, matching packing."""
    if protocol != "paillier":
        if decryptors:
            raise ParameterError("decryptors apply to protocol='paillier' only")
        return {}
    if not decryptors:
        raise ParameterError(
            "protocol='paillier' needs its decryptors (decryptors=[...], e.g. from "
            "protocols.keyfiles.load_decryptors)"
        )
    endpoints: dict[int, DecryptorEndpoint] = {}
    for decryptor in decryptors:
        _check_packing(decryptor, value_bits, max_clients)
        endpoint: DecryptorEndpoint = decryptor
        if endpoint.party_id in endpoints:
            raise ParameterError(f"two decryptors are party {endpoint.party_id}")
        endpoints[endpoint.party_id] = endpoint
    public = next(iter(endpoints.values())).public
    if any(key_fingerprint(e.public) != key_fingerprint(public) for e in endpoints.values()):
        raise ParameterError("the decryptors hold different public keys")
    expected = (
        {decryptor_id(i) for i in range(1, public.decryptors + 1)}
        if isinstance(public, ThresholdPublicKey)
        else {KEY_HOLDER_ID}
    )
    strangers = sorted(set(endpoints) - expected)
    if strangers:
        raise ParameterError(f"parties {strangers} are no decryptors of this public key")
    needed = public.threshold if isinstance(public, ThresholdPublicKey) else 1
    if len(endpoints) < needed:
        raise ParameterError(f"{len(endpoints)} decryptors can never decrypt: {needed} needed")
    return dict(sorted(endpoints.items(), key=lambda item: decryptor_index(item[0]) or 0))


def _check_packing(
    decryptor: DecryptorEndpoint | KeyHolder, value_bits: int, max_clients: int
) -> None:
    """An in-process decryptor must unpack for the workflow's quantization."""
    if not isinstance(decryptor, KeyHolder | Decryptor):
        return
    packing = decryptor.packing
    if (packing.value_bits, packing.num_clients) != (value_bits, max_clients):
        raise ParameterError(
            f"a decryptor packs for value_bits={packing.value_bits}, "
            f"max_clients={packing.num_clients}; build it with value_bits={value_bits}, "
            f"max_clients={max_clients}"
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
        *,
        support: SupportSettings | None = None,
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
        #: A support round's sketch settings (``None``: an aggregation of arrays).
        self.support = support
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
        self.session_id: Final = flower_session_id(grid.run.run_id)
        vector_length = self.settings.update_encoding().vector_length(self.layout.size)
        if support is not None:
            if workflow.policy is None:
                raise ParameterError("a support round runs over secagg or secagg+, not Paillier")
            vector_length = support.sketch(self.session_id, round_id).words
        #: Paillier: decryptor party id -> why it was left out of this round's decryption.
        self.decryptor_faults: dict[int, str] = {}
        self.server: MaskingServer | PaillierServer
        if workflow.policy is None:
            self.server = self._paillier_server(ids, round_id, vector_length)
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
            # A support sketch packs its lanes into 32-bit words that never carry.
            modulus_bits=plan.modulus_bits if self.support is None else 32,
            threat_model=policy.threat_model,
        )
        return MaskingServer(params, roster)

    def _paillier_server(
        self, ids: Sequence[int], round_id: int, vector_length: int
    ) -> PaillierServer:
        """The Paillier server of this round over the roster, under the decryptors' key."""
        workflow = self.workflow
        assert workflow.roster is not None  # a Paillier workflow always has one
        endpoints = list(workflow.decryptors.values())
        if any(endpoint.session_id != self.session_id for endpoint in endpoints):
            raise ParameterError("the decryptors' session_id must be flower_session_id(run_id)")
        return PaillierServer(
            PaillierParams(
                session_id=self.session_id,
                round_id=round_id,
                clients=tuple(ids),
                vector_length=vector_length,
                value_bits=workflow.value_bits,
                max_clients=workflow.max_clients,
                min_contributors=min(workflow.min_contributors, len(ids)),
            ),
            endpoints[0].public,
            workflow.roster,
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
            outbox,
            with_setup=isinstance(self.server, PaillierServer),
            with_content=self.support is None,
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
            self._decrypt(self.server, outbox)
        else:
            rounds: tuple[int, ...] = (_UNMASK_ROUND,)
            if self.server.params.threat_model == "active":
                rounds = (_CONSISTENCY_ROUND, _UNMASK_ROUND)
            for round_index in rounds:
                self._exchange(round_index, outbox)
                outbox = self._close(round_index)
        return self._result()

    def _decrypt(self, server: PaillierServer, requests: Sequence[ProtocolMessage]) -> None:
        """Ask the decryptors in committee order until enough replies verified; combine them.

        Raises:
            InsufficientSurvivorsError: fewer than the threshold of decryptors decrypted.
        """
        public = server.public
        needed = public.threshold if isinstance(public, ThresholdPublicKey) else 1
        valid = 0
        for request in requests:
            if valid == needed:
                break  # the others need not spend a partial decryption on this round
            assert isinstance(request, DecryptionRequest)  # all the server sends now
            valid += self._ask_decryptor(server, request)
        if isinstance(public, ThresholdPublicKey):
            self._close(_UNMASK_ROUND)
        elif valid == 0:
            raise InsufficientSurvivorsError(
                "the key holder did not decrypt the aggregate: "
                + (self.decryptor_faults.get(KEY_HOLDER_ID) or "no reply")
            )

    def _ask_decryptor(self, server: PaillierServer, request: DecryptionRequest) -> int:
        """Hand one request to its decryptor and its reply to the server; 1 if it verified."""
        party = request.recipient
        endpoint = self.workflow.decryptors.get(party)
        if endpoint is None:  # a committee member this server cannot reach
            return 0
        try:
            replies = self._timed("decryption", endpoint.receive, request)
            if len(replies) != 1 or replies[0].sender != party:
                raise RemoteProtocolError(f"decryptor {party} did not answer as itself, once")
            self._timed(ROUND_NAMES[_UNMASK_ROUND], server.receive, replies[0])
        except LocalProtocolError:
            raise  # the server machine itself failed: the round is over
        except Exception as error:
            # Another party failed (a refusal, a lie, a broken proxy): it sits this round out.
            reason = f"{type(error).__name__}: {error}"
            self.decryptor_faults[party] = reason
            logger.warning("decryptor %d left out of round %d: %s", party, request.round_id, reason)
            return 0
        return 1

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
                if self.support is not None:
                    content[SUPPORT_RECORD] = self.support.to_record()
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
        support = None
        total_weight: float | None
        if self.support is not None:
            sketch = self.support.sketch(self.session_id, self.server.params.round_id)
            support = sketch.decode(np.asarray(result.vector).astype(np.uint32))
            arrays, total_weight = ArrayRecord(), 0.0
        else:
            total, total_weight = self.settings.update_encoding().decode_sum(result.vector, count)
            if not total_weight:
                raise InsufficientSurvivorsError(
                    "the survivors' weights sum to zero; no average exists"
                )
            arrays = self.layout.unflatten(total / total_weight, self.content)
        survivors = tuple(sorted(self.node_of[u] for u in result.survivors))
        dropped = {self.node_of[u]: r for u, r in result.dropped_at.items() if u in self.node_of}
        logger.info(
            "secure round %d: %d of %d nodes in the sum, dropped %s",
            self.server_round,
            count,
            len(self.nodes),
            {node: ROUND_NAMES[r] for node, r in dropped.items()} or "none",
        )
        misbehaved = {
            self.node_of[u]: why for u, why in self.server.misbehaved.items() if u in self.node_of
        }
        misbehaved.update(self.decryptor_faults)
        return SecureRoundResult(
            arrays=arrays,
            total_weight=total_weight,
            survivors=survivors,
            dropped=dropped,
            metrics=tuple(
                record for node in survivors for _, record in self._metrics.get(node, [])
            ),
            seconds=dict(self.seconds),
            unreachable=tuple(u for u in result.dropped_at if u not in self.node_of),
            misbehaved=misbehaved,
            decryptors=getattr(result, "decryptors", ()),
            support=support,
        )
