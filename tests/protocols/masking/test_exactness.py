"""Exactness: the unmasked sum equals the survivors' plain sum mod 2^k, bit for bit.

For random sizes, rings, graphs (complete and Harary), inputs and dropout schedules, the
simulator's result must match an independent oracle: which clients the server keeps (it drops
silent clients and prunes those whose live neighbourhood fell below the threshold), whether the
round must abort for lack of shares, and the ring sum of the survivors' inputs (DESIGN.md
section 3, invariants 1 and 4).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocols._transitions import ServerPhase
from protocols.graph import NeighbourGraph, complete_graph, harary_graph
from protocols.masking import MaskingParams
from protocols.simulate import Simulator
from secagg.encoding import ring_dtype
from secagg.errors import InsufficientSurvivorsError

NOT_DROPPED = 4
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def expected_survivors(
    graph: NeighbourGraph, threshold: int, dropouts: Mapping[int, int]
) -> frozenset[int] | None:
    """The oracle: whose inputs the result sums, or ``None`` if the round must abort.

    A client dropping at round r answers nothing from round r on. After rounds 0 and 1 the
    server keeps only clients whose live neighbourhood (with themselves) still holds
    ``threshold`` members; round 2 needs ``threshold`` uploads and every uploader ``threshold``
    live share holders; round 3 needs ``threshold`` shares of each survivor's self-mask seed and
    of each dropped client's mask key that a survivor used.
    """
    nbrs = graph.neighbours
    t = threshold

    def answering(round_index: int) -> set[int]:
        return {u for u in graph.nodes if dropouts.get(u, NOT_DROPPED) > round_index}

    def pruned(live: set[int]) -> set[int] | None:
        changed = True
        while changed:
            changed = False
            for u in sorted(live):
                if len(nbrs[u] & live) + 1 < t:
                    live.discard(u)
                    changed = True
        return live if len(live) >= t else None

    keyed = pruned(answering(0))
    if keyed is None:
        return None
    shared = pruned(keyed & answering(1))
    if shared is None:
        return None
    uploaded = shared & answering(2)
    if len(uploaded) < t or any(len(nbrs[v] & uploaded) + 1 < t for v in uploaded):
        return None
    responders = uploaded & answering(3)
    for v in uploaded:
        if len(responders & (nbrs[v] | {v})) < t:
            return None
    for u in shared - uploaded:
        if nbrs[u] & uploaded and len(nbrs[u] & responders) < t:
            return None
    return frozenset(uploaded)


def ring_sum(inputs: Mapping[int, np.ndarray], ids, modulus_bits: int) -> np.ndarray:
    """Sum mod 2^modulus_bits with Python integers: independent of any numpy wrap-around."""
    modulus = 1 << modulus_bits
    length = len(next(iter(inputs.values())))
    total = [0] * length
    for u in ids:
        total = [(a + int(b)) % modulus for a, b in zip(total, inputs[u], strict=True)]
    return np.array(total, dtype=ring_dtype(modulus_bits))


def random_inputs(params: MaskingParams, seed: int, value_bits: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = ring_dtype(params.modulus_bits)
    return {
        u: rng.integers(0, 2**value_bits, size=params.vector_length, dtype=np.uint64).astype(dtype)
        for u in params.graph.nodes
    }


@st.composite
def round_configs(draw, *, bounded_dropouts: bool = True):
    """(params, inputs, dropouts) for a random round; droppers <= n - t unless told otherwise."""
    n = draw(st.integers(3, 12))
    kind = draw(st.sampled_from(["complete", "harary"]))
    degrees = list(range(2, n - 1, 2))
    if kind == "harary" and degrees:
        graph = harary_graph(range(n), draw(st.sampled_from(degrees)))
    else:
        graph = complete_graph(range(n))
    smallest = min(len(p) for p in graph.neighbours.values()) + 1
    threshold = draw(st.integers(2, smallest))
    modulus_bits = draw(st.integers(1, 64))
    value_bits = draw(st.integers(1, modulus_bits))
    params = MaskingParams(
        session_id=draw(st.binary(min_size=16, max_size=16)),
        round_id=draw(st.integers(0, 2**64 - 1)),
        graph=graph,
        threshold=threshold,
        vector_length=draw(st.integers(1, 50)),
        modulus_bits=modulus_bits,
    )
    most = n - threshold if bounded_dropouts else n
    droppers = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=most))
    dropouts = {u: draw(st.integers(0, 3)) for u in droppers}
    inputs = random_inputs(params, draw(st.integers(0, 2**32 - 1)), value_bits)
    return params, inputs, dropouts


def uploaders(params: MaskingParams, dropouts: Mapping[int, int]) -> set[int]:
    """Clients the schedule lets upload a masked input (those not silent from round 2 on)."""
    return {u for u in params.graph.nodes if dropouts.get(u, NOT_DROPPED) >= 3}


def note_outcome(params: MaskingParams, dropouts: Mapping[int, int], expected) -> None:
    """Hypothesis statistics: which graphs and outcomes the examples covered."""
    event("complete graph" if params.graph.is_complete() else "Harary graph")
    if expected is None:
        event("aborted")
    elif expected == uploaders(params, dropouts):
        event("completed")
    else:
        event("completed after pruning")


def check_round(params, inputs, dropouts, *, through_wire: bool):
    """Run the round and compare everything with the oracle; returns the expected survivors."""
    simulator = Simulator(params, inputs, dropouts=dropouts, through_wire=through_wire)
    report = simulator.run()
    expected = expected_survivors(params.graph, params.threshold, dropouts)
    assert report.client_errors == {}
    assert report.server_rejections == []
    if expected is None:
        assert isinstance(report.error, InsufficientSurvivorsError)
        assert report.result is None
        assert simulator.server.phase is ServerPhase.ABORTED
        return None
    assert report.error is None
    result = report.result
    assert result is not None
    assert result.survivors == tuple(sorted(expected))
    assert result.dropped == tuple(sorted(set(params.graph.nodes) - expected))
    assert expected <= uploaders(params, dropouts)
    assert result.vector.dtype == ring_dtype(params.modulus_bits)
    assert result.vector.shape == (params.vector_length,)
    assert np.array_equal(result.vector, ring_sum(inputs, expected, params.modulus_bits))
    return expected


@pytest.mark.parametrize("through_wire", [False, True], ids=["in-memory", "through-wire"])
@SETTINGS
@given(config=round_configs())
def test_simulator_result_equals_survivors_plain_sum(config, through_wire):
    params, inputs, dropouts = config
    expected = check_round(params, inputs, dropouts, through_wire=through_wire)
    note_outcome(params, dropouts, expected)
    if params.graph.is_complete():
        # On the complete graph n - t dropouts can never abort a round, nor prune anyone.
        assert expected == uploaders(params, dropouts)


@SETTINGS
@given(config=round_configs(bounded_dropouts=False))
def test_simulator_outcome_matches_oracle_for_any_schedule(config):
    params, inputs, dropouts = config
    note_outcome(params, dropouts, check_round(params, inputs, dropouts, through_wire=False))


@SETTINGS
@given(
    n=st.integers(3, 12),
    round_index=st.integers(0, 3),
    through_wire=st.booleans(),
    data=st.data(),
)
def test_simulator_aborts_below_threshold(n, round_index, through_wire, data):
    threshold = data.draw(st.integers(2, n))
    params = MaskingParams(
        session_id=bytes(16),
        round_id=data.draw(st.integers(0, 2**64 - 1)),
        graph=complete_graph(range(n)),
        threshold=threshold,
        vector_length=data.draw(st.integers(1, 50)),
        modulus_bits=data.draw(st.integers(1, 64)),
    )
    droppers = data.draw(
        st.lists(st.integers(0, n - 1), unique=True, min_size=n - threshold + 1, max_size=n)
    )
    # Everyone in the set is gone by ``round_index``; some may have left earlier.
    dropouts = {u: data.draw(st.integers(0, round_index)) for u in droppers}
    inputs = random_inputs(params, data.draw(st.integers(0, 2**32 - 1)), params.modulus_bits)
    assert expected_survivors(params.graph, threshold, dropouts) is None
    simulator = Simulator(params, inputs, dropouts=dropouts, through_wire=through_wire)
    report = simulator.run()
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert report.result is None
    assert simulator.server.phase is ServerPhase.ABORTED
    assert report.client_errors == {}


@pytest.mark.parametrize("modulus_bits", [1, 8, 31, 32, 33, 63, 64])
def test_simulator_sum_wraps_around_the_ring(modulus_bits):
    params = MaskingParams(
        session_id=bytes(range(16)),
        round_id=7,
        graph=complete_graph(range(5)),
        threshold=3,
        vector_length=16,
        modulus_bits=modulus_bits,
    )
    top = np.array([2**modulus_bits - 1], dtype=ring_dtype(modulus_bits))
    inputs = {u: np.repeat(top, 16) for u in params.graph.nodes}
    expected = check_round(params, inputs, {4: 2}, through_wire=False)
    assert expected == {0, 1, 2, 3}
    # Four copies of -1 in Z_{2^k} sum to -4.
    assert int(ring_sum(inputs, expected, modulus_bits)[0]) == (-4) % 2**modulus_bits


@pytest.mark.parametrize("through_wire", [False, True], ids=["in-memory", "through-wire"])
def test_simulator_large_secagg_plus_round_is_exact(through_wire):
    graph = harary_graph(range(40), 8)
    params = MaskingParams(
        session_id=bytes(range(16)),
        round_id=2024,
        graph=graph,
        threshold=5,
        vector_length=10_000,
        modulus_bits=32,
    )
    inputs = random_inputs(params, seed=12345, value_bits=26)
    # Four dropouts can never cost a 9-member neighbourhood more than 4 of its members, so with
    # t = 5 nobody is pruned and every share threshold is met, wherever the four sit.
    dropouts = {0: 0, 1: 1, 2: 2, 3: 3}
    expected = check_round(params, inputs, dropouts, through_wire=through_wire)
    assert expected == set(graph.nodes) - {0, 1, 2}


@pytest.mark.parametrize("round_index", [0, 1])
def test_simulator_prunes_client_whose_neighbourhood_fell_below_threshold(round_index):
    # Client 5 hangs off the clique {0..4} by two edges; with t = 3 it cannot lose one of them.
    clique = set(range(5))
    neighbours = {u: frozenset(clique - {u}) for u in clique}
    neighbours[0] |= {5}
    neighbours[1] |= {5}
    neighbours[5] = frozenset({0, 1})
    params = MaskingParams(
        session_id=bytes(16),
        round_id=1,
        graph=NeighbourGraph(neighbours),
        threshold=3,
        vector_length=20,
        modulus_bits=20,
    )
    inputs = random_inputs(params, seed=round_index, value_bits=20)
    simulator = Simulator(params, inputs, dropouts={0: round_index})
    expected = check_round(params, inputs, {0: round_index}, through_wire=False)
    assert expected == {1, 2, 3, 4}
    assert simulator.run().dropped_at == {0: round_index, 5: round_index}
