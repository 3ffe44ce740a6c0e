"""The round planner: the one place that turns a protocol choice into round parameters.

Every caller (the aggregators, distributed DP, the CLI, ``secagg bench``, the Flower workflow and
the demos) asks :func:`plan_round` which neighbour graph, degree, Shamir threshold and ring size
a round over a given set of clients uses. A threat-model change (for instance a larger
threshold against an active server) is therefore made here and nowhere else.

The rules, in order:

- ``"secagg"``: the complete graph (Bonawitz et al. 2017) with a strict-majority threshold
  t = floor(n / 2) + 1 (:func:`~protocols.graph.secagg_threshold`); against an active server
  at least t > (n + c) / 2 for the c = floor(corrupt_fraction * n) colluding clients.
- ``"secagg+"``: a Harary graph (Bell et al. 2020) whose degree k and threshold t come from
  :func:`~protocols.graph.secagg_plus_parameters` for the tolerated dropout and corruption
  fractions. A degree override keeps the computed t when it equals the computed k, and otherwise
  takes a strict majority of the k + 1 holders of each neighbourhood.
- a callable ``ids -> NeighbourGraph``: that graph, with a strict majority of its largest
  neighbourhood.
- ``"paillier"`` and ``"plain"``: no graph; the threshold is the fewest contributors an aggregate
  may hold (a strict majority of the clients, at least 2).

Against an active server (``threat_model="active"``) the Harary ring order is public
(:func:`~protocols.graph.public_order`, from the trusted roster's seed and the round), a custom
graph is refused (no client could check it), and :func:`minimum_threshold` is the rule each
client applies to its own neighbourhood: it refuses any smaller t, whoever chose it.

A policy may carry a survivor floor (``min_survivors``): a masking round planned with it aborts
before any unmask request if fewer clients uploaded, and its clients refuse a survivor set
below it (distributed DP sets it to the number of noise shares each released sum needs).

An explicit ``threshold`` overrides every default. The ring holds ``value_bits`` plus
ceil(log2 n) bits of headroom so that the sum of n inputs never wraps, unless
``modulus_bits`` is given (distributed DP sizes its own ring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from protocols.defaults import DEFAULT_VALUE_BITS
from protocols.graph import (
    NeighbourGraph,
    ThreatModel,
    active_threshold,
    complete_graph,
    complete_threshold,
    corruption_bound,
    harary_graph,
    secagg_plus_parameters,
    secagg_threshold,
)
from secagg.encoding import QuantizationScheme, ring_dtype
from secagg.errors import ParameterError

__all__ = [
    "DEFAULT_CORRUPT_FRACTION",
    "DEFAULT_DROPOUT_FRACTION",
    "THREAT_MODELS",
    "GraphBuilder",
    "ProtocolName",
    "RoundPlan",
    "RoundPolicy",
    "ThreatModel",
    "check_min_survivors",
    "check_threat_model",
    "minimum_threshold",
    "plan_round",
    "tolerated_dropout",
]

ProtocolName = Literal["plain", "secagg", "secagg+", "paillier"]
#: A custom neighbour graph: client ids -> graph.
GraphBuilder = Callable[[Sequence[int]], NeighbourGraph]

PROTOCOL_NAMES: Final[tuple[str, ...]] = get_args(ProtocolName)
DEFAULT_DROPOUT_FRACTION: Final = 0.05
DEFAULT_CORRUPT_FRACTION: Final = 0.05
MASKING_PROTOCOLS: Final = frozenset({"secagg", "secagg+"})
THREAT_MODELS: Final[tuple[str, ...]] = get_args(ThreatModel)


def check_threat_model(threat_model: object) -> ThreatModel:
    """Return ``threat_model`` after checking it is ``"semi-honest"`` or ``"active"``."""
    if threat_model == "semi-honest":
        return "semi-honest"
    if threat_model == "active":
        return "active"
    raise ParameterError(f"threat_model must be 'semi-honest' or 'active', not {threat_model!r}")


def check_min_survivors(min_survivors: object) -> int:
    """Return ``min_survivors`` after checking it is a non-negative int (0: no floor)."""
    if isinstance(min_survivors, bool) or not isinstance(min_survivors, int) or min_survivors < 0:
        raise ParameterError(
            f"min_survivors must be a non-negative int (0: no floor), got {min_survivors!r}"
        )
    return min_survivors


def minimum_threshold(
    threat_model: ThreatModel, holders: int, num_clients: int, corrupt_fraction: float
) -> int:
    """The smallest threshold a client accepts for a neighbourhood of ``holders`` members.

    Semi-honest: 2 (one share never reveals a key; the server is trusted to pick the rest).
    Active: t > (holders + c) / 2, with c the :func:`~protocols.graph.corruption_bound` of a
    neighbourhood of that size among ``num_clients`` clients. The client computes this from
    what it checked itself, never from the server's word.
    """
    if threat_model == "semi-honest":
        return 2
    corrupted = corruption_bound(holders, num_clients, corrupt_fraction)
    return active_threshold(holders, corrupted)


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """The parameters of one round over ``num_clients`` clients.

    Attributes:
        protocol: the protocol the round runs.
        num_clients: n, the clients invited to the round.
        graph: the neighbour graph of a masking round (``None`` for Paillier and plain).
        degree: neighbours per client (n - 1 on the complete graph, 0 without a graph).
        threshold: Shamir threshold t of a masking round; the fewest contributors otherwise.
        value_bits: bits of one quantized value.
        modulus_bits: k, the ring Z_{2^k} the round sums in.
    """

    protocol: ProtocolName
    num_clients: int
    graph: NeighbourGraph | None
    degree: int
    threshold: int
    value_bits: int
    modulus_bits: int


@dataclass(frozen=True, slots=True)
class RoundPolicy:
    """What a caller chooses once and then plans every round with.

    Attributes:
        protocol: ``"plain"``, ``"secagg"``, ``"secagg+"`` or ``"paillier"``.
        dropout_fraction: the fraction of clients a SecAgg+ round must survive losing.
        corrupt_fraction: the fraction of clients assumed to collude with the server.
        degree: SecAgg+ degree override (even, >= 2).
        threshold: threshold override.
        value_bits: bits of one quantized value (default
            :data:`~protocols.defaults.DEFAULT_VALUE_BITS`).
        modulus_bits: ring override (default: value_bits + ceil(log2 n)).
        graph_builder: a custom neighbour graph for a masking round (replaces the protocol's).
        threat_model: ``"semi-honest"`` or ``"active"`` (see :mod:`protocols.rounds`).
        min_survivors: the fewest uploads a masking round may unmask, enforced by the server
            before any unmask request and by each client before it releases a share (0: no
            floor beyond the threshold).
    """

    protocol: ProtocolName = "secagg+"
    dropout_fraction: float = DEFAULT_DROPOUT_FRACTION
    corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION
    degree: int | None = None
    threshold: int | None = None
    value_bits: int = DEFAULT_VALUE_BITS
    modulus_bits: int | None = None
    graph_builder: GraphBuilder | None = None
    threat_model: ThreatModel = "semi-honest"
    min_survivors: int = 0

    def __post_init__(self) -> None:
        check_threat_model(self.threat_model)
        check_min_survivors(self.min_survivors)
        if self.graph_builder is not None and self.threat_model == "active":
            raise ParameterError(
                "a custom graph cannot be checked by the clients, so it is refused against an "
                "active server: use threat_model='semi-honest' or the 'secagg'/'secagg+' graph"
            )
        if self.protocol not in PROTOCOL_NAMES:
            raise ParameterError(
                f"protocol must be one of {', '.join(PROTOCOL_NAMES)}, not {self.protocol!r}"
            )
        if self.degree is not None and self.protocol != "secagg+":
            raise ParameterError("a degree applies only to SecAgg+ (protocol 'secagg+')")
        if self.graph_builder is not None and self.protocol not in MASKING_PROTOCOLS:
            raise ParameterError("a custom graph applies only to a masking protocol")
        if self.threshold is not None and (
            isinstance(self.threshold, bool) or not isinstance(self.threshold, int)
        ):
            raise ParameterError(f"threshold must be an int, got {self.threshold!r}")
        if self.threshold is not None and self.threshold < 2:
            raise ParameterError(
                f"threshold must be >= 2 (one share must never reveal a key), got {self.threshold}"
            )
        if self.protocol == "secagg+" and self.graph_builder is None:
            # Fail on impossible tolerances now rather than at the first round.
            secagg_plus_parameters(
                2,
                dropout_fraction=self.dropout_fraction,
                corrupt_fraction=self.corrupt_fraction,
            )

    @property
    def is_masking(self) -> bool:
        """Whether rounds run the masking protocol (SecAgg or SecAgg+)."""
        return self.protocol in MASKING_PROTOCOLS

    def plan(self, ids: Sequence[int], *, order_seed: bytes | None = None) -> RoundPlan:
        """The plan of one round over the clients ``ids``; see :func:`plan_round`."""
        return plan_round(self, ids, order_seed=order_seed)

    def threshold_for(self, num_clients: int) -> int:
        """The threshold a round over ``num_clients`` clients uses, without building its graph."""
        if self.threshold is not None:
            return self.threshold
        if self.protocol == "secagg+" and self.graph_builder is None:
            return _secagg_plus_choice(self, num_clients)[1]
        return complete_threshold(num_clients, self.corrupt_fraction, self.threat_model)

    def modulus_bits_for(self, num_clients: int) -> int:
        """The ring of a round over ``num_clients`` clients: value bits plus ceil(log2 n),
        or the ``modulus_bits`` override as given (distributed DP sizes its own ring)."""
        if self.modulus_bits is not None:
            ring_dtype(self.modulus_bits)  # Refuses a ring outside [1, 64] bits.
            return self.modulus_bits
        scheme = QuantizationScheme(clip=1.0, value_bits=self.value_bits, num_clients=num_clients)
        return scheme.modulus_bits

    def degree_for(self, num_clients: int) -> int:
        """The degree a round over ``num_clients`` clients uses (n - 1 on the complete graph)."""
        if self.protocol == "secagg+" and self.graph_builder is None:
            return _secagg_plus_choice(self, num_clients)[0]
        return num_clients - 1 if self.is_masking else 0


def tolerated_dropout(expected_rate: float) -> float:
    """The dropout fraction to plan a run for that expects ``expected_rate`` of its clients to
    drop: that rate, and never less than the default tolerance."""
    return max(DEFAULT_DROPOUT_FRACTION, expected_rate)


def plan_round(
    policy: RoundPolicy, ids: Sequence[int], *, order_seed: bytes | None = None
) -> RoundPlan:
    """Turn ``policy`` and the invited clients ``ids`` into the round's parameters.

    Args:
        policy: what the caller chose.
        ids: the invited clients.
        order_seed: the public seed of the Harary ring order (required against an active
            server: its clients check their neighbourhoods against it); ``None`` draws a
            private random order.

    Raises:
        ParameterError: fewer than 2 clients, a threshold above the number of share holders,
            or a ring that cannot hold the sum.
    """
    n = len(ids)
    if n < 2:
        raise ParameterError(f"secure aggregation needs at least 2 clients, got {n}")
    if policy.threat_model == "active" and policy.protocol == "secagg+" and order_seed is None:
        raise ParameterError("an active-model SecAgg+ round needs the public order seed")
    graph, default_threshold = _graph_and_threshold(policy, ids, order_seed)
    if graph is not None:
        degree = graph.max_degree
        threshold = policy.threshold or default_threshold
        holders = min(len(p) for p in graph.neighbours.values()) + 1
        if threshold > holders:
            raise ParameterError(
                f"threshold {threshold} exceeds the {holders} share holders of the smallest "
                "neighbourhood: lower the threshold or raise the degree"
            )
    else:
        degree = 0
        threshold = policy.threshold or default_threshold
        if threshold > n:
            raise ParameterError(f"threshold {threshold} exceeds the {n} clients of the round")
    return RoundPlan(
        protocol=policy.protocol,
        num_clients=n,
        graph=graph,
        degree=degree,
        threshold=threshold,
        value_bits=policy.value_bits,
        modulus_bits=policy.modulus_bits_for(n),
    )


def _graph_and_threshold(
    policy: RoundPolicy, ids: Sequence[int], order_seed: bytes | None
) -> tuple[NeighbourGraph | None, int]:
    """The round's graph (``None`` without masking) and its default threshold."""
    if not policy.is_masking:
        return None, secagg_threshold(len(ids))
    if policy.protocol == "secagg+" and policy.graph_builder is None:
        degree, threshold = _secagg_plus_choice(policy, len(ids))
        return harary_graph(ids, degree, seed=order_seed), threshold
    if policy.graph_builder is None:
        graph = complete_graph(ids)
        return graph, complete_threshold(len(ids), policy.corrupt_fraction, policy.threat_model)
    graph = policy.graph_builder(ids)
    return graph, secagg_threshold(graph.max_degree + 1)


def _secagg_plus_choice(policy: RoundPolicy, num_clients: int) -> tuple[int, int]:
    """SecAgg+ (degree, threshold) for n clients, overrides applied."""
    chosen = secagg_plus_parameters(
        num_clients,
        dropout_fraction=policy.dropout_fraction,
        corrupt_fraction=policy.corrupt_fraction,
        threat_model=policy.threat_model,
    )
    degree = policy.degree or chosen.degree
    if degree == chosen.degree:
        threshold = chosen.threshold
    else:
        holders = min(degree, num_clients - 1) + 1
        threshold = max(
            secagg_threshold(holders),
            minimum_threshold(policy.threat_model, holders, num_clients, policy.corrupt_fraction),
        )
    return degree, policy.threshold or threshold
