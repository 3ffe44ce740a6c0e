"""Neighbour graphs: who shares keys and masks with whom.

SecAgg (Bonawitz et al. 2017) uses the complete graph. SecAgg+ (Bell et al. 2020) uses a sparse
k-regular Harary graph: nodes sit on a ring in a *random* order (the relabelling is what makes
an adversary unable to choose its neighbourhoods) and each is linked to k/2 nodes on each side.
:func:`secagg_plus_parameters` picks k and the Shamir threshold t from n and the tolerated
dropout and corruption fractions by a per-neighbourhood binomial tail bound with a union bound
over clients, in the spirit of Bell et al. 2020, Section 4; both can be overridden.
"""

from __future__ import annotations

import functools
import math
import secrets
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes

from secagg.errors import ParameterError

__all__ = [
    "ORDER_SEED_BYTES",
    "GraphParameters",
    "NeighbourGraph",
    "ThreatModel",
    "active_threshold",
    "complete_graph",
    "complete_threshold",
    "corruption_bound",
    "harary_graph",
    "public_order",
    "secagg_plus_parameters",
    "secagg_threshold",
]

#: ``"semi-honest"``: the server follows the protocol; ``"active"``: it may deviate at will.
ThreatModel = Literal["semi-honest", "active"]
#: Bytes of the public seed that orders a Harary ring (see :func:`public_order`).
ORDER_SEED_BYTES: Final = 32
_ORDER_DOMAIN: Final = b"secagg/v1/ring-order"

#: log2 of the tolerated probability that a round fails for lack of shares (correctness).
CORRECTNESS_BITS: Final = 20
#: log2 of the tolerated probability that colluders can reconstruct an honest secret (security).
SECURITY_BITS: Final = 40


@dataclass(frozen=True, slots=True)
class NeighbourGraph:
    """An undirected graph over client ids; ``neighbours[u]`` never contains ``u``."""

    neighbours: Mapping[int, frozenset[int]]

    def __post_init__(self) -> None:
        for u, peers in self.neighbours.items():
            if u in peers:
                raise ParameterError(f"client {u} cannot be its own neighbour")
            for v in peers:
                if u not in self.neighbours.get(v, frozenset()):
                    raise ParameterError(f"the graph is not symmetric: {u} -> {v} only")

    @property
    def nodes(self) -> tuple[int, ...]:
        """All client ids, sorted."""
        return tuple(sorted(self.neighbours))

    @property
    def max_degree(self) -> int:
        """The largest number of neighbours of any client."""
        return max((len(p) for p in self.neighbours.values()), default=0)

    def is_complete(self) -> bool:
        """Whether every client neighbours every other (plain SecAgg)."""
        return all(len(p) == len(self.neighbours) - 1 for p in self.neighbours.values())


def _check_ids(ids: Iterable[int]) -> list[int]:
    nodes = list(ids)
    if len(set(nodes)) != len(nodes):
        raise ParameterError("client ids must be distinct")
    if len(nodes) < 2:
        raise ParameterError(f"secure aggregation needs at least 2 clients, got {len(nodes)}")
    return nodes


def complete_graph(ids: Iterable[int]) -> NeighbourGraph:
    """The complete graph over ``ids``: the neighbourhood of SecAgg."""
    nodes = _check_ids(ids)
    everyone = frozenset(nodes)
    return NeighbourGraph({u: everyone - {u} for u in nodes})


def public_order(ids: Iterable[int], seed: bytes) -> tuple[int, ...]:
    """The ring order of ``ids`` that ``seed`` fixes: ids sorted by SHA-256(domain, seed, id).

    Anyone holding the seed computes the same order, so a client can check the neighbourhood a
    server hands it; whoever cannot choose the seed cannot choose anyone's neighbours (the
    public randomness Bell et al. 2020 require against an active server).
    """
    if not isinstance(seed, bytes) or not seed:
        raise ParameterError("an order seed must be non-empty bytes")
    return _public_order(tuple(sorted(ids)), seed)


@functools.lru_cache(maxsize=16)
def _public_order(ids: tuple[int, ...], seed: bytes) -> tuple[int, ...]:
    def rank(u: int) -> bytes:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(_ORDER_DOMAIN + struct.pack(">I", len(seed)) + seed + struct.pack(">Q", u))
        return digest.finalize()

    return tuple(sorted(ids, key=rank))


def harary_graph(ids: Iterable[int], degree: int, *, seed: bytes | None = None) -> NeighbourGraph:
    """A k-regular Harary graph over ``ids`` (SecAgg+).

    Args:
        ids: the client ids.
        degree: k, even, 2 <= k < n. With k >= n - 1 the result is the complete graph.
        seed: ``None`` places the ids on the ring in a uniformly random order only the caller
            knows (enough against a server that follows the protocol); bytes place them in
            :func:`public_order`, which every client can recompute (needed against an active
            server, which must not choose neighbourhoods).
    """
    nodes = _check_ids(ids)
    if seed is not None:
        return _public_harary(tuple(sorted(nodes)), degree, seed)
    order = list(nodes)
    secrets.SystemRandom().shuffle(order)
    return _ring_graph(order, degree)


@functools.lru_cache(maxsize=16)
def _public_harary(ids: tuple[int, ...], degree: int, seed: bytes) -> NeighbourGraph:
    # Cached: every client of a round (and its server) derives this same graph.
    return _ring_graph(list(public_order(ids, seed)), degree)


def _ring_graph(order: list[int], degree: int) -> NeighbourGraph:
    n = len(order)
    if degree >= n - 1:
        return complete_graph(order)
    if degree < 2 or degree % 2:
        raise ParameterError(f"the Harary degree must be even and >= 2, got {degree}")
    half = degree // 2
    neighbours: dict[int, set[int]] = {u: set() for u in order}
    for position, u in enumerate(order):
        for offset in range(1, half + 1):
            v = order[(position + offset) % n]
            neighbours[u].add(v)
            neighbours[v].add(u)
    return NeighbourGraph({u: frozenset(p) for u, p in neighbours.items()})


def secagg_threshold(num_clients: int) -> int:
    """The default SecAgg threshold: a strict majority, t = floor(n / 2) + 1 (at least 2)."""
    if num_clients < 2:
        raise ParameterError(f"secure aggregation needs at least 2 clients, got {num_clients}")
    return max(2, num_clients // 2 + 1)


@dataclass(frozen=True, slots=True)
class GraphParameters:
    """A SecAgg+ choice: neighbour count ``degree`` (k) and Shamir ``threshold`` (t)."""

    degree: int
    threshold: int


def _binomial_tail_at_least(trials: int, p: float, at_least: int) -> float:
    """P[Binomial(trials, p) >= at_least], summed exactly."""
    if at_least <= 0:
        return 1.0
    return math.fsum(
        math.comb(trials, i) * p**i * (1 - p) ** (trials - i) for i in range(at_least, trials + 1)
    )


def corruption_bound(
    holders: int,
    num_clients: int,
    corrupt_fraction: float,
    *,
    security_bits: int = SECURITY_BITS,
) -> int:
    """The most corrupt clients one neighbourhood of ``holders`` members is assumed to hold.

    At most floor(corrupt_fraction * n) clients are corrupt in all. On the complete graph that
    is the bound; in a sparse graph whose ring order the adversary could not choose, the
    corrupt members of a neighbourhood are Binomial(holders, corrupt_fraction), and the bound
    is exceeded in some neighbourhood with probability at most 2^-security_bits (a union bound
    over the n neighbourhoods).
    """
    if not 0 <= corrupt_fraction < 1:
        raise ParameterError(f"corrupt_fraction must be in [0, 1), got {corrupt_fraction}")
    overall = math.floor(corrupt_fraction * num_clients + 1e-9)
    if holders >= num_clients or overall == 0:
        return min(overall, holders)
    target = 2.0**-security_bits / num_clients
    bound = next(
        c
        for c in range(holders + 1)
        if _binomial_tail_at_least(holders, corrupt_fraction, c + 1) <= target
    )
    return min(overall, bound)


def active_threshold(holders: int, corrupted: int) -> int:
    """The smallest t with t > (holders + corrupted) / 2 (Bonawitz et al. 2017, active model).

    Two disjoint sets of honest holders can then never both reach t with the corrupt holders'
    help, so at most one survivor set gathers t consistency signatures in a neighbourhood.
    """
    return max(2, (holders + corrupted) // 2 + 1)


def secagg_plus_parameters(
    num_clients: int,
    *,
    dropout_fraction: float = 0.05,
    corrupt_fraction: float = 0.05,
    correctness_bits: int = CORRECTNESS_BITS,
    security_bits: int = SECURITY_BITS,
    threat_model: ThreatModel = "semi-honest",
) -> GraphParameters:
    """Choose the smallest even degree k and a threshold t for n clients.

    A client's k neighbours are a random subset of the others. Per client and union-bounded
    over all n clients we require: (security) fewer than t of its neighbours are corrupt, except
    with probability 2^-security_bits, and, against an active server, t > (k + 1 + c) / 2 for
    the :func:`corruption_bound` c of a neighbourhood; (correctness) at least t - 1 neighbours
    survive, except with probability 2^-correctness_bits. t is the smallest secure value. When
    no k < n - 1 works, the complete graph is returned (that is, SecAgg) with a strict majority,
    raised to :func:`active_threshold` against an active server.
    """
    if num_clients < 2:
        raise ParameterError(f"secure aggregation needs at least 2 clients, got {num_clients}")
    for name, value in (("dropout_fraction", dropout_fraction), ("corrupt", corrupt_fraction)):
        if not 0 <= value < 1:
            raise ParameterError(f"{name} must be in [0, 1), got {value}")
    if dropout_fraction + corrupt_fraction >= 0.5:
        raise ParameterError(
            "dropout_fraction + corrupt_fraction must stay below 0.5 for any threshold to be "
            "both reachable and secure"
        )
    correctness_target = 2.0**-correctness_bits / num_clients
    for degree in range(2, num_clients - 1, 2):
        threshold = _secure_threshold(
            degree, num_clients, corrupt_fraction, security_bits, threat_model
        )
        if threshold is None:
            continue
        # Failing correctness means fewer than t - 1 of the k neighbours survive, i.e. at
        # least k - t + 2 of them drop out.
        failure = _binomial_tail_at_least(degree, dropout_fraction, degree - threshold + 2)
        if failure <= correctness_target:
            return GraphParameters(degree=degree, threshold=threshold)
    return GraphParameters(
        degree=num_clients - 1,
        threshold=complete_threshold(num_clients, corrupt_fraction, threat_model),
    )


def complete_threshold(num_clients: int, corrupt_fraction: float, threat_model: ThreatModel) -> int:
    """The complete graph's threshold: a strict majority, and t > (n + c) / 2 if active."""
    threshold = secagg_threshold(num_clients)
    if threat_model == "active":
        corrupted = corruption_bound(num_clients, num_clients, corrupt_fraction)
        threshold = max(threshold, active_threshold(num_clients, corrupted))
    return threshold


def _secure_threshold(
    degree: int,
    num_clients: int,
    corrupt_fraction: float,
    security_bits: int,
    threat_model: ThreatModel,
) -> int | None:
    """The smallest secure t for k = ``degree`` neighbours, or ``None`` if none is."""
    security_target = 2.0**-security_bits / num_clients
    threshold = next(
        (
            t
            for t in range(2, degree + 2)
            if _binomial_tail_at_least(degree, corrupt_fraction, t) <= security_target
        ),
        None,
    )
    if threshold is None or threat_model == "semi-honest":
        return threshold
    holders = degree + 1
    corrupted = corruption_bound(
        holders, num_clients, corrupt_fraction, security_bits=security_bits
    )
    threshold = max(threshold, active_threshold(holders, corrupted))
    return threshold if threshold <= holders else None
