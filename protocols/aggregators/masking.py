"""SecAgg / SecAgg+ behind the aggregator contract: a real masking round, run in-process.

:class:`MaskingSum` is the secure-sum step: it asks the round planner for the graph and
threshold, runs :class:`protocols.simulate.Simulator` over the clients' ring vectors and returns
only what the server learns. :class:`MaskingAggregator` plugs it into the shared pipeline with
the shared :class:`~secagg.encoding.UpdateEncoding`; distributed DP reuses the same
:class:`MaskingSum` with its own codec.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Sequence
from typing import Final, Literal

from protocols.aggregators.inputs import RoundInputs
from protocols.aggregators.pipeline import (
    Pipeline,
    SumOutcome,
    SumRequest,
    declared_max_weight,
    ring_inputs,
)
from protocols.defaults import DEFAULT_CLIP, DEFAULT_VALUE_BITS
from protocols.graph import ORDER_SEED_BYTES, NeighbourGraph, ThreatModel
from protocols.identity import round_order_seed
from protocols.masking import AggregateResult
from protocols.rounds import (
    DEFAULT_CORRUPT_FRACTION,
    DEFAULT_DROPOUT_FRACTION,
    GraphBuilder,
    RoundPolicy,
)
from protocols.simulate import Interceptor, SimulationReport, plan_masking_round
from secagg.encoding import QuantizationScheme, UpdateEncoding
from secagg.errors import ParameterError
from secagg.hazmat.sign import IdentityKey

__all__ = [
    "MASKING_BACKENDS",
    "GraphChoice",
    "MaskingAggregator",
    "MaskingBackend",
    "MaskingRoundSettings",
    "MaskingSum",
    "masking_backend",
    "masking_choice",
    "masking_policy",
]

#: The masking backends: SecAgg on the complete graph, SecAgg+ on a Harary graph.
MaskingBackend = Literal["secagg", "secagg+"]
MASKING_BACKENDS: Final[tuple[MaskingBackend, ...]] = ("secagg", "secagg+")
#: A masking aggregator's first argument: a backend name, or a custom graph (ids -> graph).
GraphChoice = MaskingBackend | GraphBuilder
#: The graph names earlier releases took for a backend, and the backend each named. Kept for
#: one release, with a DeprecationWarning.
_DEPRECATED_NAMES: Final = {"complete": "secagg", "harary": "secagg+"}


def masking_backend(
    name: object, *, given_as: str = "protocol", stacklevel: int = 3
) -> MaskingBackend:
    """The masking backend ``name`` names: ``"secagg"`` or ``"secagg+"``.

    The one place that maps the graph names of earlier releases (``"complete"``,
    ``"harary"``) to the backend names; they still work for one release and warn.

    Args:
        name: the name the caller gave.
        given_as: the argument it came in, for the messages (e.g. ``"graph"``).
        stacklevel: the frame the warning names, as for :func:`warnings.warn` (3: the caller
            of the constructor that calls this function).

    Returns:
        The backend name.

    Raises:
        ParameterError: ``name`` is neither a backend name nor a deprecated graph name.
    """
    if isinstance(name, str) and name in _DEPRECATED_NAMES:
        replacement = _DEPRECATED_NAMES[name]
        warnings.warn(
            f"{given_as}={name!r} is deprecated and will be removed in the next release; use "
            f"protocol={replacement!r}",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        name = replacement
    if name == "secagg":
        return "secagg"
    if name == "secagg+":
        return "secagg+"
    raise ParameterError(
        f"{given_as} must be one of {', '.join(MASKING_BACKENDS)} (masking backends), not {name!r}"
    )


def masking_policy(
    protocol: MaskingBackend,
    *,
    graph_builder: GraphBuilder | None = None,
    value_bits: int = DEFAULT_VALUE_BITS,
    threshold: int | None = None,
    degree: int | None = None,
    dropout_fraction: float = DEFAULT_DROPOUT_FRACTION,
    corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
    modulus_bits: int | None = None,
    threat_model: ThreatModel = "active",
    min_survivors: int = 0,
) -> RoundPolicy:
    """The round policy of a masking aggregator (``min_survivors``: the survivor floor the
    server and every client enforce before any unmasking)."""
    return RoundPolicy(
        protocol=protocol,
        dropout_fraction=dropout_fraction,
        corrupt_fraction=corrupt_fraction,
        degree=degree,
        threshold=threshold,
        value_bits=value_bits,
        modulus_bits=modulus_bits,
        graph_builder=graph_builder,
        threat_model=threat_model,
        min_survivors=min_survivors,
    )


def masking_choice(
    protocol: GraphChoice, graph: GraphChoice | None
) -> tuple[MaskingBackend, GraphBuilder | None]:
    """A masking aggregator's backend and custom graph, from ``protocol`` or the deprecated
    ``graph=`` keyword.

    Call it from the constructor itself: a deprecated spelling warns once, naming the frame
    that called the constructor.

    Args:
        protocol: the backend name, or a custom graph builder (run on SecAgg's protocol).
        graph: the deprecated keyword's value, or ``None``.

    Returns:
        ``(backend, custom graph or None)``.

    Raises:
        ParameterError: an unknown name, or both ``protocol`` and ``graph`` given.
    """
    given_as = "protocol"
    if graph is not None:
        if protocol != "secagg":
            raise ParameterError("give the backend once, as protocol= (graph= is deprecated)")
        protocol, given_as = graph, "graph"
        if callable(graph) or graph not in _DEPRECATED_NAMES:
            warnings.warn(
                "the graph= keyword is deprecated and will be removed in the next release; "
                "pass the backend as protocol= (or first)",
                DeprecationWarning,
                stacklevel=3,
            )
    if callable(protocol):
        return "secagg", protocol
    return masking_backend(protocol, given_as=given_as, stacklevel=4), None


class MaskingSum:
    """The secure-sum step of a masking round (one session, a fresh round id per call).

    Against an active server it plays the trusted setup once per client: each client keeps one
    identity key for the whole session, and the roster of a round lists that round's clients.

    Args:
        policy: the round planner's policy (graph, degree, threshold, threat model, survivor
            floor).
        through_wire: round-trip every message through the binary codec.
        interceptor: sees (and may alter) every message of every round, as the
            :class:`~protocols.simulate.Simulator`'s interceptor does: a tap for inspection, or
            the malicious server of an attack test.
    """

    def __init__(
        self,
        policy: RoundPolicy,
        *,
        through_wire: bool = False,
        interceptor: Interceptor | None = None,
    ) -> None:
        self.policy = policy
        self.through_wire = through_wire
        self.interceptor = interceptor
        self.session_id = secrets.token_bytes(16)
        self.last_report: SimulationReport | None = None
        self._next_round = 0
        self._identities: dict[int, IdentityKey] = {}
        self._order_seed = secrets.token_bytes(ORDER_SEED_BYTES)

    def next_order_seed(self) -> bytes | None:
        """The public ring-order seed of the next round (``None`` when semi-honest)."""
        if self.policy.threat_model != "active":
            return None
        return round_order_seed(self._order_seed, self.session_id, self._next_round)

    def run(self, request: SumRequest) -> SumOutcome:
        """One masking round over the encoded inputs; the caller learns only the ring sum."""
        planned = plan_masking_round(
            self.policy,
            sorted(request.inputs),
            session_id=self.session_id,
            round_id=self._next_round,
            vector_length=request.vector_length,
            modulus_bits=request.modulus_bits,
            identities=self._identities,
            order_seed=self._order_seed,
        )
        self._next_round += 1
        if planned.identities is not None:
            self._identities.update(planned.identities)
        report = planned.simulator(
            ring_inputs(request),
            dropouts=request.dropouts,
            through_wire=self.through_wire,
            interceptor=self.interceptor,
        ).run()
        self.last_report = report
        if report.error is not None:
            raise report.error
        result = report.result
        assert isinstance(result, AggregateResult)
        return SumOutcome(result.vector, result.survivors, result.dropped, report)


class MaskingRoundSettings:
    """Read-only views of a masking backend's round settings, from its :class:`MaskingSum`."""

    secure_sum: MaskingSum

    @property
    def policy(self) -> RoundPolicy:
        """The round planner's policy (graph, degree, threshold, tolerated fractions)."""
        return self.secure_sum.policy

    @property
    def threshold(self) -> int | None:
        """The Shamir threshold override (``None``: the planner's value)."""
        return self.policy.threshold

    @property
    def degree(self) -> int | None:
        """The SecAgg+ degree override (``None``: the planner's value)."""
        return self.policy.degree

    @property
    def dropout_fraction(self) -> float:
        """The dropout fraction SecAgg+ rounds are planned to survive."""
        return self.policy.dropout_fraction

    @property
    def corrupt_fraction(self) -> float:
        """The fraction of clients assumed to collude with the server."""
        return self.policy.corrupt_fraction

    @property
    def threat_model(self) -> ThreatModel:
        """``"active"`` (signed keys, public graph, consistency round) or ``"semi-honest"``."""
        return self.policy.threat_model

    @property
    def min_survivors(self) -> int:
        """The fewest uploads a round unmasks (0: no floor beyond the threshold)."""
        return self.policy.min_survivors

    @property
    def through_wire(self) -> bool:
        """Whether every message round-trips through the binary codec."""
        return self.secure_sum.through_wire

    def build_graph(self, ids: Sequence[int]) -> tuple[NeighbourGraph, int]:
        """The neighbour graph and threshold a round over ``ids`` uses (from the planner; an
        active-model SecAgg+ ring is ordered by this session's public seed)."""
        plan = self.policy.plan(ids, order_seed=self.secure_sum.next_order_seed())
        assert plan.graph is not None
        return plan.graph, plan.threshold


class MaskingAggregator(MaskingRoundSettings, Pipeline):
    """Secure aggregation by masking: SecAgg (complete graph) or SecAgg+ (Harary graph).

    Each client clips its update to [-clip, clip], scales it by w / max_weight when weighted,
    quantizes it with stochastic rounding into ``value_bits`` bits (appending the weight ratio
    as one more coordinate) and runs the real protocol in-process against a
    :class:`~protocols.masking.MaskingServer`. The caller gets back only what the server
    learns: the float sum (and summed weight).

    Args:
        protocol: ``"secagg"`` (the complete graph), ``"secagg+"`` (a Harary graph, k and t
            from the round planner, :mod:`protocols.rounds`) or a function ids -> graph (a
            custom graph, semi-honest only). The graph names ``"complete"`` and ``"harary"`` of
            earlier releases still work for one release, with a ``DeprecationWarning``.
        graph: deprecated spelling of ``protocol`` (one release, with a ``DeprecationWarning``).
        clip: per-coordinate clipping bound of the updates (default
            :data:`~protocols.defaults.DEFAULT_CLIP`).
        value_bits: quantization bits per value (default
            :data:`~protocols.defaults.DEFAULT_VALUE_BITS`); the ring adds ceil(log2 n) bits of
            headroom.
        max_weight: the largest weight a client may have; required when weights are given.
        threshold: Shamir threshold; defaults to the planner's value.
        degree: Harary degree override (SecAgg+ only).
        dropout_fraction, corrupt_fraction: tolerances used to pick k and t for SecAgg+
            (against an active server, corrupt_fraction is also the bound each client assumes
            when it computes its own minimum threshold).
        threat_model: ``"active"`` (default: the in-process simulator plays the trusted
            setup, clients sign their keys, check the graph and threshold themselves and run
            the consistency round) or ``"semi-honest"`` (the server is trusted to follow the
            protocol). See docs/threat-model.md.
        through_wire: round-trip every message through the binary codec (as a real transport).
    """

    def __init__(
        self,
        protocol: GraphChoice = "secagg",
        *,
        graph: GraphChoice | None = None,
        clip: float = DEFAULT_CLIP,
        value_bits: int = DEFAULT_VALUE_BITS,
        max_weight: float | None = None,
        threshold: int | None = None,
        degree: int | None = None,
        dropout_fraction: float = DEFAULT_DROPOUT_FRACTION,
        corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
        threat_model: ThreatModel = "active",
        through_wire: bool = False,
    ) -> None:
        backend, graph_builder = masking_choice(protocol, graph)
        policy = masking_policy(
            backend,
            graph_builder=graph_builder,
            value_bits=value_bits,
            threshold=threshold,
            degree=degree,
            dropout_fraction=dropout_fraction,
            corrupt_fraction=corrupt_fraction,
            threat_model=threat_model,
        )
        self.protocol: MaskingBackend = backend
        self.clip = clip
        self.value_bits = value_bits
        self.max_weight = max_weight
        self.name = backend
        self.secure_sum: MaskingSum = MaskingSum(policy, through_wire=through_wire)
        # Fail on bad clip / bits / max_weight now rather than at the first round.
        UpdateEncoding(
            QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=2), max_weight
        )

    def codec(self, inputs: RoundInputs) -> UpdateEncoding:
        """The shared update encoding, with headroom for this round's clients."""
        plan_bits = self.policy.modulus_bits_for(len(inputs.updates))
        scheme = QuantizationScheme(
            clip=self.clip,
            value_bits=self.value_bits,
            num_clients=len(inputs.updates),
            modulus_bits=plan_bits,
        )
        return UpdateEncoding(scheme, declared_max_weight(self.max_weight, inputs))
