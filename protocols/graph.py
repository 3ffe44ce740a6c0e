"""Neighbour graphs: who shares keys and masks with whom.

SecAgg (Bonawitz et al. 2017) uses the complete graph. SecAgg+ (Bell et al. 2020) uses a sparse
k-regular Harary graph: nodes sit on a ring in a *random* order (the relabelling is what makes
an adversary unable to choose its neighbourhoods) and each is linked to k/2 nodes on each side.
:func:`secagg_plus_parameters` picks k and the Shamir threshold t from n and the tolerated
dropout and corruption fractions by a per-neighbourhood binomial tail bound with a union bound
over clients, in the spirit of Bell et al. 2020, Section 4; both can be overridden.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from secagg.errors import ParameterError

__all__ = [
    "GraphParameters",
    "NeighbourGraph",
    "complete_graph",
    "harary_graph",
    "secagg_plus_parameters",
    "secagg_threshold",
]

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


def harary_graph(ids: Iterable[int], degree: int) -> NeighbourGraph:
    """A k-regular Harary graph over ``ids`` in a uniformly random ring order (SecAgg+).

    Args:
        ids: the client ids.
        degree: k, even, 2 <= k < n. With k >= n - 1 the result is the complete graph.
    """
    nodes = _check_ids(ids)
    n = len(nodes)
    if degree >= n - 1:
        return complete_graph(nodes)
    if degree < 2 or degree % 2:
        raise ParameterError(f"the Harary degree must be even and >= 2, got {degree}")
    order = list(nodes)
    secrets.SystemRandom().shuffle(order)
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


def secagg_plus_parameters(
    num_clients: int,
    *,
    dropout_fraction: float = 0.05,
    corrupt_fraction: float = 0.05,
    correctness_bits: int = CORRECTNESS_BITS,
    security_bits: int = SECURITY_BITS,
) -> GraphParameters:
    """Choose the smallest even degree k and a threshold t for n clients.

    A client's k neighbours are a random subset of the others. Per client and union-bounded
    over all n clients we require: (security) fewer than t of its neighbours are corrupt, except
    with probability 2^-security_bits; (correctness) at least t - 1 neighbours survive, except
    with probability 2^-correctness_bits. t is the smallest secure value. When no k < n - 1
    works, the complete graph with t = floor(n / 2) + 1 is returned (that is, SecAgg).
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
    security_target = 2.0**-security_bits / num_clients
    correctness_target = 2.0**-correctness_bits / num_clients
    for degree in range(2, num_clients - 1, 2):
        threshold = next(
            (
                t
                for t in range(2, degree + 2)
                if _binomial_tail_at_least(degree, corrupt_fraction, t) <= security_target
            ),
            None,
        )
        if threshold is None:
            continue
        # Failing correctness means fewer than t - 1 of the k neighbours survive, i.e. at
        # least k - t + 2 of them drop out.
        failure = _binomial_tail_at_least(degree, dropout_fraction, degree - threshold + 2)
        if failure <= correctness_target:
            return GraphParameters(degree=degree, threshold=threshold)
    return GraphParameters(degree=num_clients - 1, threshold=secagg_threshold(num_clients))
