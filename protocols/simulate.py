"""In-memory driver for one masking round: every party in one process, no sockets.

The simulator plays the transport: it hands each message to its recipient, applies a dropout
schedule (a client that drops at protocol round r answers nothing from round r on), lets an
*interceptor* drop, alter, replace or inject messages (how the adversarial-server tests are
written), optionally round-trips every message through :mod:`protocols.wire`, and measures the
seconds each party spends in each round and the bytes each sends and receives. All protocol
decisions stay in the state machines; this loop only moves messages.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from protocols import wire
from protocols._machine import detached
from protocols._transitions import SERVER_ROUND_INDEX, ServerPhase
from protocols.graph import ORDER_SEED_BYTES
from protocols.identity import TrustedRoster, trusted_setup
from protocols.masking import (
    AggregateResult,
    ClientPhase,
    MaskingClient,
    MaskingParams,
    MaskingServer,
)
from protocols.messages import Message
from protocols.rounds import RoundPolicy
from secagg.errors import (
    ClientMisbehaviourError,
    InsufficientSurvivorsError,
    LocalProtocolError,
    ParameterError,
    SecAggError,
)
from secagg.hazmat.sign import IdentityKey, generate_identity

if TYPE_CHECKING:
    from protocols.paillier import PaillierResult

__all__ = [
    "ROUND_NAMES",
    "UNMASKING_ROUND",
    "Driver",
    "Interceptor",
    "MaskingRound",
    "SimulationReport",
    "Simulator",
    "plan_masking_round",
]

#: Names of the protocol rounds, indexed like dropout schedules (Bonawitz et al. 2017, Fig. 4).
#: A semi-honest round skips the consistency round (3); a client that drops at 3 then stays
#: silent in the unmasking (4), as it would in an active round.
ROUND_NAMES: Final = ("advertise_keys", "share_keys", "masked_input", "consistency", "unmasking")
#: The index of the unmasking round (where a Paillier key holder decrypts, too).
UNMASKING_ROUND: Final = ROUND_NAMES.index("unmasking")

#: ``interceptor(round_index, message)`` returns the message to deliver (possibly altered),
#: ``None`` to drop it, or a sequence of messages to deliver instead.
Interceptor = Callable[[int, Message], Message | Sequence[Message] | None]
_T = TypeVar("_T")


@dataclass
class SimulationReport:
    """What happened in a simulated round.

    Attributes:
        result: the server's aggregate (masking: AggregateResult, Paillier: PaillierResult),
            or ``None`` if the round aborted.
        error: the abort (e.g. :class:`InsufficientSurvivorsError`), if any.
        server_seconds: round name -> seconds the server spent.
        client_seconds: client id -> round name -> seconds.
        bytes_sent / bytes_received: client id -> bytes; the server's are ``server_bytes_*``.
        client_errors: client id -> the error that made it abort.
        server_rejections: errors the server raised on individual bad messages.
        dropped_at: client id -> protocol round at which it fell out (server's view).
        misbehaved: client id -> what the server caught it doing (it was left out, or its bad
            shares were not used).
    """

    result: AggregateResult | PaillierResult | None = None
    error: SecAggError | None = None
    server_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    client_seconds: dict[int, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    bytes_sent: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    bytes_received: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    server_bytes_sent: int = 0
    server_bytes_received: int = 0
    client_errors: dict[int, SecAggError] = field(default_factory=dict)
    server_rejections: list[SecAggError] = field(default_factory=list)
    dropped_at: dict[int, int] = field(default_factory=dict)
    misbehaved: dict[int, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    key_holder_seconds: float = 0.0
    key_holder_bytes_sent: int = 0
    key_holder_bytes_received: int = 0


@dataclass(frozen=True, slots=True)
class MaskingRound:
    """A planned masking round: the server's parameters and, against an active server, the
    trusted setup its clients hold (``roster`` and ``identities`` are ``None`` when
    semi-honest)."""

    params: MaskingParams
    roster: TrustedRoster | None = None
    identities: Mapping[int, IdentityKey] | None = None

    def simulator(
        self, inputs: Mapping[int, npt.NDArray[np.unsignedinteger]], **options: Any
    ) -> Simulator:
        """A :class:`Simulator` of this round over ``inputs`` (``options``: its keywords)."""
        return Simulator(
            self.params, inputs, roster=self.roster, identities=self.identities, **options
        )


def plan_masking_round(
    policy: RoundPolicy,
    ids: Sequence[int],
    *,
    session_id: bytes,
    round_id: int,
    vector_length: int,
    modulus_bits: int,
    identities: Mapping[int, IdentityKey] | None = None,
    order_seed: bytes | None = None,
) -> MaskingRound:
    """Plan a masking round with ``policy`` and, against an active server, play its trusted
    setup: identity keys (``identities``, drawn where missing) and the roster, whose seed
    orders the SecAgg+ ring publicly.

    Args:
        policy: the round planner's policy; its ``threat_model`` picks the protocol.
        ids: the round's clients.
        session_id, round_id: the round's identity (fresh per round).
        vector_length, modulus_bits: what each client uploads.
        identities: long-term identity keys to reuse (e.g. across the rounds of a session).
        order_seed: the roster's 32-byte public seed to reuse (drawn when ``None``).

    The policy's survivor floor (``policy.min_survivors``) goes into the server's parameters;
    :meth:`MaskingRound.simulator` hands it to every client too.
    """
    roster = None
    keys: dict[int, IdentityKey] | None = None
    if policy.threat_model == "active":
        given = identities or {}
        # The trusted setup enrols each client once: reused keys stay, new clients get one.
        keys = {u: given[u] if u in given else generate_identity() for u in ids}
        roster = TrustedRoster(
            {u: keys[u].public_bytes for u in ids},
            order_seed if order_seed is not None else secrets.token_bytes(ORDER_SEED_BYTES),
        ).pinned(policy.degree_for(len(ids)), policy.threshold_for(len(ids)))
    seed = None if roster is None else roster.order_seed(session_id, round_id)
    plan = policy.plan(ids, order_seed=seed)
    if plan.graph is None:
        raise ParameterError(f"protocol {policy.protocol!r} is not a masking protocol")
    params = MaskingParams(
        session_id=session_id,
        round_id=round_id,
        graph=plan.graph,
        threshold=plan.threshold,
        vector_length=vector_length,
        modulus_bits=modulus_bits,
        threat_model=policy.threat_model,
        min_survivors=policy.min_survivors,
    )
    return MaskingRound(params, roster, keys)


def _client_floor(params: MaskingParams, min_survivors: int | None) -> int:
    """The survivor floor the simulated clients apply (see :class:`Simulator`)."""
    if min_survivors is not None:
        return min_survivors
    if params.threat_model == "semi-honest" and not params.graph.is_complete():
        return 0  # a semi-honest client's unmask request names its neighbourhood only
    return params.min_survivors


class Driver:
    """Moves messages between in-memory parties, timing and counting them (no decisions)."""

    clients: Mapping[int, Any]
    server: Any

    def __init__(
        self,
        nodes: Iterable[int],
        inputs: Mapping[int, npt.NDArray[np.unsignedinteger]],
        dropouts: Mapping[int, int] | None,
        interceptor: Interceptor | None,
        through_wire: bool,
        on_step: Callable[[], None] | None,
    ) -> None:
        members = set(nodes)
        missing = members - set(inputs)
        if missing:
            raise ParameterError(f"no input for clients {sorted(missing)}")
        schedule = dict(dropouts or {})
        for client, round_index in schedule.items():
            if client not in members:
                raise ParameterError(f"the dropout schedule names {client}, not in this round")
            if not isinstance(round_index, int) or not 0 <= round_index < len(ROUND_NAMES):
                raise ParameterError(
                    f"client {client} drops at round {round_index!r}; rounds are 0 to "
                    f"{len(ROUND_NAMES) - 1} ({', '.join(ROUND_NAMES)})"
                )
        self.inputs = inputs
        self.dropouts = schedule
        self.interceptor = interceptor
        self.through_wire = through_wire
        self.on_step = on_step
        self.report = SimulationReport()
        for client in sorted(members):
            self.report.bytes_sent[client] = 0
            self.report.bytes_received[client] = 0

    # -- transport ------------------------------------------------------------------------------

    def _intercept(self, round_index: int, message: Message) -> Iterable[Message]:
        if self.interceptor is None:
            return (message,)
        replaced = self.interceptor(round_index, message)
        if replaced is None:
            return ()
        return (replaced,) if not isinstance(replaced, Sequence) else replaced

    def _transmit(self, message: Message) -> tuple[Message, int]:
        if not self.through_wire:
            return message, wire.encoded_size(message)
        data = wire.encode(message)
        return wire.decode(data), len(data)

    def _deliver_to_client(self, round_index: int, message: Message) -> list[Message]:
        replies: list[Message] = []
        report = self.report
        for intercepted in self._intercept(round_index, message):
            client_id = intercepted.recipient
            client = self.clients.get(client_id)
            if client is None or self.dropouts.get(client_id, len(ROUND_NAMES)) <= round_index:
                continue
            if client_id in report.client_errors:
                continue
            delivered, size = self._transmit(intercepted)
            report.server_bytes_sent += size
            report.bytes_received[client_id] += size
            try:
                out = self._timed_client(client_id, round_index, client.receive, delivered)
                if client.phase is ClientPhase.AWAIT_INPUT:
                    out += self._timed_client(
                        client_id, round_index, client.submit_input, self.inputs[client_id]
                    )
            except SecAggError as error:
                report.client_errors[client_id] = detached(error)
                continue
            finally:
                if self.on_step is not None:
                    self.on_step()
            replies.extend(out)
        return replies

    def _deliver_to_server(self, round_index: int, message: Message) -> None:
        report = self.report
        for intercepted in self._intercept(round_index, message):
            delivered, size = self._transmit(intercepted)
            if intercepted.sender in self.clients:
                report.bytes_sent[intercepted.sender] += size
            else:
                report.key_holder_bytes_sent += size
            report.server_bytes_received += size
            try:
                self._timed_server(round_index, self.server.receive, delivered)
            except LocalProtocolError:
                raise  # the server itself failed: the round is over
            except SecAggError as error:
                report.server_rejections.append(detached(error))

    def _timed_server(self, round_index: int, step: Callable[..., _T], *args: object) -> _T:
        started = time.perf_counter()
        try:
            return step(*args)
        finally:
            self.report.server_seconds[ROUND_NAMES[round_index]] += time.perf_counter() - started

    def _timed_client(
        self, client_id: int, round_index: int, step: Callable[..., _T], *args: object
    ) -> _T:
        started = time.perf_counter()
        try:
            return step(*args)
        finally:
            elapsed = time.perf_counter() - started
            self.report.client_seconds[client_id][ROUND_NAMES[round_index]] += elapsed


class Simulator(Driver):
    """Runs one masking round in memory.

    Against an active adversary (``params.threat_model == "active"``, the default) the
    simulator plays the trusted setup: unless ``roster`` and ``identities`` are given, it draws
    an identity key per client and hands the roster to every party. A SecAgg+ round must then
    be planned with the roster's order seed, so pass the roster you planned with.

    Args:
        params: the server's round configuration.
        inputs: client id -> quantized input (integers in Z_{2^k}); every graph node needs one.
        dropouts: client id -> protocol round (0-4, :data:`ROUND_NAMES`) from which the client
            stays silent.
        interceptor: sees every message in both directions (see :data:`Interceptor`).
        through_wire: encode and decode every message with :mod:`protocols.wire`.
        on_step: called after each client step, e.g. to advance a progress bar.
        roster, identities: the trusted setup (active model): the roster, and each client's
            identity key.
        corrupt_fraction: the bound on colluding clients the clients declare (active model).
        min_survivors: the survivor floor every client applies (its own setting): by default
            the server's ``params.min_survivors``, except for semi-honest clients on a sparse
            graph, who see only their neighbourhood and cannot check it (0 there); a test of a
            lying server gives the server a lower floor than its clients.
    """

    def __init__(
        self,
        params: MaskingParams,
        inputs: Mapping[int, npt.NDArray[np.unsignedinteger]],
        *,
        dropouts: Mapping[int, int] | None = None,
        interceptor: Interceptor | None = None,
        through_wire: bool = False,
        on_step: Callable[[], None] | None = None,
        roster: TrustedRoster | None = None,
        identities: Mapping[int, IdentityKey] | None = None,
        corrupt_fraction: float | None = None,
        min_survivors: int | None = None,
    ) -> None:
        super().__init__(params.graph.nodes, inputs, dropouts, interceptor, through_wire, on_step)
        self.params = params
        active = params.threat_model == "active"
        if active and (roster is None) != (identities is None):
            raise ParameterError("give both the roster and the identities, or neither")
        if active and roster is None:
            roster, identities = trusted_setup(params.graph.nodes)
        if active and roster is not None and roster.degree is None and roster.threshold is None:
            # The simulator is the trusted setup: it pins the round's shape in the roster.
            roster = roster.pinned(params.graph.max_degree, params.threshold)
        # Every simulated party holds this one roster: it may remember verified signatures.
        self.roster = roster.shared_in_process() if active and roster is not None else None
        self.server = MaskingServer(params, self.roster)
        extra: dict[str, Any] = {
            "threat_model": params.threat_model,
            "min_survivors": _client_floor(params, min_survivors),
        }
        if corrupt_fraction is not None:
            extra["corrupt_fraction"] = corrupt_fraction
        self.clients = {
            u: MaskingClient(
                u,
                session_id=params.session_id,
                round_id=params.round_id,
                identity=None if identities is None or not active else identities[u],
                roster=self.roster,
                **extra,
            )
            for u in params.graph.nodes
        }

    def run(self) -> SimulationReport:
        """Play the rounds and return the report (the round may have aborted)."""
        report = self.report
        started = time.perf_counter()
        outbox = self._timed_server(0, self.server.start)
        while self.server.phase in SERVER_ROUND_INDEX:
            round_index = SERVER_ROUND_INDEX[self.server.phase]
            replies = [m for msg in outbox for m in self._deliver_to_client(round_index, msg)]
            for message in replies:
                self._deliver_to_server(round_index, message)
            try:
                outbox = self._timed_server(round_index, self.server.close_phase)
            except (InsufficientSurvivorsError, ClientMisbehaviourError) as error:
                report.error = error
                for notice in self.server.abort_messages():
                    self._deliver_to_client(round_index, notice)
                break
        if report.error is None and self.server.phase is ServerPhase.DONE:
            report.result = self.server.result
        report.dropped_at = self.server.dropped_at
        report.misbehaved = self.server.misbehaved
        report.wall_seconds = time.perf_counter() - started
        return report
