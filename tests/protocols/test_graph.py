"""Tests of the neighbour graphs (complete for SecAgg, Harary for SecAgg+) and their parameters."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.graph import (
    GraphParameters,
    NeighbourGraph,
    complete_graph,
    harary_graph,
    secagg_plus_parameters,
    secagg_threshold,
)
from secagg.errors import ParameterError


def _assert_undirected_simple(graph: NeighbourGraph) -> None:
    for u, peers in graph.neighbours.items():
        assert u not in peers
        for v in peers:
            assert u in graph.neighbours[v]


def _is_connected(graph: NeighbourGraph) -> bool:
    nodes = graph.nodes
    seen = {nodes[0]}
    frontier = [nodes[0]]
    while frontier:
        u = frontier.pop()
        for v in graph.neighbours[u] - seen:
            seen.add(v)
            frontier.append(v)
    return len(seen) == len(nodes)


# --------------------------------------------------------------------------------------------
# complete_graph
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [[0, 1], [3, 1, 2], list(range(17)), [10, 500, 7, 2**32 - 3]])
def test_complete_graph_links_every_pair(ids: list[int]) -> None:
    graph = complete_graph(ids)
    _assert_undirected_simple(graph)
    assert graph.nodes == tuple(sorted(ids))
    assert graph.is_complete()
    assert graph.max_degree == len(ids) - 1
    for u in ids:
        assert graph.neighbours[u] == frozenset(ids) - {u}


def test_complete_graph_accepts_any_iterable() -> None:
    assert complete_graph(iter(range(4))) == complete_graph([3, 2, 1, 0])


@pytest.mark.parametrize("ids", [[], [5]])
def test_complete_graph_rejects_fewer_than_two_clients(ids: list[int]) -> None:
    with pytest.raises(ParameterError, match="at least 2 clients"):
        complete_graph(ids)


def test_complete_graph_rejects_duplicate_ids() -> None:
    with pytest.raises(ParameterError, match="distinct"):
        complete_graph([1, 2, 2])


# --------------------------------------------------------------------------------------------
# harary_graph
# --------------------------------------------------------------------------------------------


@st.composite
def harary_cases(draw: st.DrawFn) -> tuple[list[int], int]:
    n = draw(st.integers(4, 80))
    degree = 2 * draw(st.integers(1, (n - 2) // 2))
    ids = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    return ids, degree


@settings(max_examples=80, deadline=None)
@given(case=harary_cases())
def test_harary_graph_is_regular_symmetric_and_loop_free(case: tuple[list[int], int]) -> None:
    ids, degree = case
    graph = harary_graph(ids, degree)
    _assert_undirected_simple(graph)
    assert graph.nodes == tuple(sorted(ids))
    assert all(len(peers) == degree for peers in graph.neighbours.values())
    assert graph.max_degree == degree
    assert not graph.is_complete()
    assert _is_connected(graph)
    edges = sum(len(p) for p in graph.neighbours.values())
    assert edges == len(ids) * degree


@pytest.mark.parametrize(("n", "degree"), [(10, 2), (11, 4), (30, 24), (100, 26)])
def test_harary_graph_is_a_ring_lattice(n: int, degree: int) -> None:
    # Walking the ring along each node's two nearest neighbours visits every node once, and in
    # that order every node's neighbours are exactly the degree/2 nodes on either side.
    graph = harary_graph(range(n), degree)
    start = 0
    ring = [start]
    previous, current = None, start
    for _ in range(n - 1):
        candidates = sorted(
            graph.neighbours[current],
            key=lambda v: -len(graph.neighbours[current] & graph.neighbours[v]),
        )
        step = next(v for v in candidates if v != previous and v not in ring)
        ring.append(step)
        previous, current = current, step
    position = {u: i for i, u in enumerate(ring)}
    half = degree // 2
    for u in range(n):
        i = position[u]
        expected = {ring[(i + offset) % n] for offset in range(-half, half + 1) if offset}
        assert graph.neighbours[u] == expected


def test_harary_graph_relabels_randomly_on_each_call() -> None:
    ids = list(range(40))
    graphs = [harary_graph(ids, 4) for _ in range(5)]
    distinct = {tuple(sorted(g.neighbours[0])) for g in graphs}
    assert len(distinct) >= 2
    assert graphs[0] != graphs[1]


def test_harary_graph_neighbours_are_not_fixed_by_id_order() -> None:
    # Without relabelling, node 0's neighbours would always be {1, 2, n-2, n-1}.
    sequential = frozenset({1, 2, 48, 49})
    hits = sum(harary_graph(range(50), 4).neighbours[0] == sequential for _ in range(20))
    assert hits < 20


@pytest.mark.parametrize(("n", "degree"), [(2, 1), (2, 2), (5, 4), (6, 5), (6, 8), (9, 100)])
def test_harary_graph_with_degree_at_least_n_minus_1_is_complete(n: int, degree: int) -> None:
    graph = harary_graph(range(n), degree)
    assert graph.is_complete()
    assert graph == complete_graph(range(n))


@pytest.mark.parametrize("degree", [3, 5, 1, 0, -2, -1])
def test_harary_graph_rejects_odd_or_too_small_degree(degree: int) -> None:
    with pytest.raises(ParameterError, match="even"):
        harary_graph(range(10), degree)


@pytest.mark.parametrize("ids", [[], [1]])
def test_harary_graph_rejects_fewer_than_two_clients(ids: list[int]) -> None:
    with pytest.raises(ParameterError, match="at least 2 clients"):
        harary_graph(ids, 2)


def test_harary_graph_rejects_duplicate_ids() -> None:
    with pytest.raises(ParameterError, match="distinct"):
        harary_graph([1, 2, 3, 4, 5, 1], 2)


# --------------------------------------------------------------------------------------------
# NeighbourGraph
# --------------------------------------------------------------------------------------------


def test_neighbour_graph_rejects_asymmetric_graph() -> None:
    with pytest.raises(ParameterError, match="symmetric"):
        NeighbourGraph({1: frozenset({2}), 2: frozenset()})


def test_neighbour_graph_rejects_neighbour_outside_graph() -> None:
    with pytest.raises(ParameterError, match="symmetric"):
        NeighbourGraph({1: frozenset({2})})


def test_neighbour_graph_rejects_self_loop() -> None:
    with pytest.raises(ParameterError, match="own neighbour"):
        NeighbourGraph({1: frozenset({1, 2}), 2: frozenset({1})})


def test_neighbour_graph_properties() -> None:
    graph = NeighbourGraph({3: frozenset({1}), 1: frozenset({3, 2}), 2: frozenset({1})})
    assert graph.nodes == (1, 2, 3)
    assert graph.max_degree == 2
    assert not graph.is_complete()
    assert NeighbourGraph({}).max_degree == 0


# --------------------------------------------------------------------------------------------
# secagg_threshold / secagg_plus_parameters
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "t"), [(2, 2), (3, 2), (4, 3), (10, 6), (11, 6), (1000, 501)])
def test_secagg_threshold_is_strict_majority(n: int, t: int) -> None:
    assert secagg_threshold(n) == t


@pytest.mark.parametrize("n", [1, 0, -5])
def test_secagg_threshold_rejects_fewer_than_two_clients(n: int) -> None:
    with pytest.raises(ParameterError):
        secagg_threshold(n)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 20_000))
def test_secagg_plus_parameters_degree_even_and_threshold_reachable(n: int) -> None:
    params = secagg_plus_parameters(n)
    assert isinstance(params, GraphParameters)
    # Either a proper even Harary degree, or the complete graph as fallback.
    assert params.degree == n - 1 or (params.degree % 2 == 0 and 2 <= params.degree < n - 1)
    assert 2 <= params.threshold <= params.degree + 1


def test_secagg_plus_parameters_degree_grows_with_n() -> None:
    sizes = (100, 1000, 10**4, 10**6)
    chosen = [secagg_plus_parameters(n) for n in sizes]
    degrees = [p.degree for p in chosen]
    assert degrees == sorted(degrees)
    assert all(p.degree % 2 == 0 for p in chosen)
    # Logarithmic growth: a million clients still need only a few dozen neighbours.
    assert degrees[-1] < 4 * math.log2(10**6)


def test_secagg_plus_parameters_match_reference_at_1000_clients() -> None:
    # Bell et al. / Google's reference table gives k = 30, t = 17 for n = 1000 at 5% / 5%; our
    # union bound is a little more conservative on the threshold.
    params = secagg_plus_parameters(1000, dropout_fraction=0.05, corrupt_fraction=0.05)
    assert params.degree == 30
    assert 17 <= params.threshold <= 18


def test_secagg_plus_parameters_match_reference_at_a_million_clients() -> None:
    params = secagg_plus_parameters(10**6, dropout_fraction=0.05, corrupt_fraction=0.05)
    assert (params.degree, params.threshold) == (38, 22)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 20])
def test_secagg_plus_parameters_small_n_falls_back_to_complete_graph(n: int) -> None:
    params = secagg_plus_parameters(n)
    assert params == GraphParameters(degree=n - 1, threshold=secagg_threshold(n))
    assert harary_graph(range(n), params.degree).is_complete()


def test_secagg_plus_parameters_more_corruption_needs_higher_threshold() -> None:
    low = secagg_plus_parameters(10**4, corrupt_fraction=0.01)
    high = secagg_plus_parameters(10**4, corrupt_fraction=0.2)
    assert high.threshold > low.threshold
    assert high.degree >= low.degree


@pytest.mark.parametrize(
    ("dropout", "corrupt"),
    [
        (-0.1, 0.05),
        (1.0, 0.0),
        (0.05, -0.01),
        (0.0, 1.0),
        (0.25, 0.25),
        (0.4, 0.2),
        (float("nan"), 0.05),
        (0.05, float("nan")),
    ],
)
def test_secagg_plus_parameters_rejects_bad_fractions(dropout: float, corrupt: float) -> None:
    with pytest.raises(ParameterError):
        secagg_plus_parameters(1000, dropout_fraction=dropout, corrupt_fraction=corrupt)


@pytest.mark.parametrize("n", [1, 0, -3])
def test_secagg_plus_parameters_rejects_fewer_than_two_clients(n: int) -> None:
    with pytest.raises(ParameterError):
        secagg_plus_parameters(n)
