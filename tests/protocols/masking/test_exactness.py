"""Exactness: the unmasked sum equals the survivors' plain sum mod 2^k, bit for bit.

For random sizes, rings, graphs (complete and Harary), inputs and dropout schedules, the
simulator's result must match an independent oracle: which clients the server keeps (it drops
silent clients and prunes those whose live neighbourhood fell below the threshold), whether the
round must abort for lack of shares, and the ring sum of the survivors' inputs (DESIGN.md
section 3, invariants 1 and 4). The random rounds run both protocols: semi-honest, and active
(trusted roster, public SecAgg+ graph, thresholds the clients accept, and the consistency
round 3, whose silent clients stay in the sum but release no share).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocols._transitions import ServerPhase
from protocols.graph import NeighbourGraph, ThreatModel, complete_graph, harary_graph
from protocols.identity import TrustedRoster, trusted_setup
from protocols.masking import MaskingParams
from protocols.rounds import DEFAULT_CORRUPT_FRACTION, minimum_threshold
from protocols.simulate import ROUND_NAMES, Simulator
from secagg.encoding import ring_dtype
from secagg.errors import InsufficientSurvivorsError
from secagg.hazmat.sign import IdentityKey

NOT_DROPPED = len(ROUND_NAMES)
CONSISTENCY, UNMASKING = ROUND_NAMES.index("consistency"), ROUND_NAMES.index("unmasking")
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Outcome:
    """The oracle's verdict: whose inputs the result sums (``None``: the round aborts), and
    which clients abort on their own (active model: too few consistency signatures)."""

    survivors: frozenset[int] | None
    client_aborts: frozenset[int] = frozenset()


def expected_outcome(
    graph: NeighbourGraph,
    threshold: int,
    dropouts: Mapping[int, int],
    threat_model: ThreatModel = "semi-honest",
) -> Outcome:
    """The oracle: whose inputs the result sums, or ``None`` if the round must abort.

    A client dropping at round r answers nothing from round r on. After rounds 0 and 1 the
    server keeps only clients whose live neighbourhood (with themselves) still holds
    ``threshold`` members; round 2 needs ``threshold`` uploads, every uploader ``threshold``
    live share holders, and every mask the server must remove ``threshold`` holders among the
    uploaders. Active only, round 3 needs ``threshold`` signers; a signer refuses to
    unmask (and aborts) if an owner whose share it would release has fewer than ``threshold``
    signers in its closed neighbourhood. The unmasking (round 4) needs ``threshold`` shares of
    each survivor's self-mask seed and of each dropped client's mask key that a survivor used.
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
        return Outcome(None)
    shared = pruned(keyed & answering(1))
    if shared is None:
        return Outcome(None)
    uploaded = shared & answering(2)
    if len(uploaded) < t or any(len(nbrs[v] & uploaded) + 1 < t for v in uploaded):
        return Outcome(None)
    # Before asking for any share, the server checks that every mask it must remove has t
    # holders among the uploaders: each survivor's seed, each used dropped client's mask key.
    needed = uploaded.union(*(nbrs[v] & shared for v in uploaded))
    if any(len(nbrs[o] & uploaded) + (o in uploaded) < t for o in needed):
        return Outcome(None)
    asked, aborts = uploaded, frozenset[int]()
    if threat_model == "active":
        asked = uploaded & answering(CONSISTENCY)
        if len(asked) < t:
            return Outcome(None)
        aborts = frozenset(
            v
            for v in asked & answering(UNMASKING)
            if any(len(asked & (nbrs[o] | {o})) < t for o in (nbrs[v] & shared) | {v})
        )
    responders = asked & answering(UNMASKING) - aborts
    outcome = Outcome(frozenset(uploaded), aborts)
    for v in uploaded:
        if len(responders & (nbrs[v] | {v})) < t:
            outcome = Outcome(None, aborts)
    for u in shared - uploaded:
        if nbrs[u] & uploaded and len(nbrs[u] & responders) < t:
            outcome = Outcome(None, aborts)
    return outcome


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


@dataclass
class RoundConfig:
    """One random round: its parameters, inputs and dropout schedule, and (active model) the
    trusted setup the simulator's parties hold."""

    params: MaskingParams
    inputs: dict[int, np.ndarray]
    dropouts: dict[int, int]
    roster: TrustedRoster | None = None
    identities: dict[int, IdentityKey] | None = None


def _smallest_threshold(threat_model: ThreatModel, graph: NeighbourGraph) -> int:
    """The least threshold every client of ``graph`` accepts under ``threat_model``."""
    n = len(graph.nodes)
    holders = {len(p) + 1 for p in graph.neighbours.values()}
    return max(minimum_threshold(threat_model, k, n, DEFAULT_CORRUPT_FRACTION) for k in holders)


@st.composite
def round_configs(
    draw: st.DrawFn,
    *,
    bounded_dropouts: bool = True,
    threat_models: tuple[ThreatModel, ...] = ("semi-honest", "active"),
) -> RoundConfig:
    """A random :class:`RoundConfig`; droppers <= n - t unless told otherwise.

    Active rounds run on the roster's public graph (SecAgg+) with a threshold every client
    accepts; semi-honest ones on a privately ordered graph with any threshold from 2.
    """
    n = draw(st.integers(3, 12))
    threat_model = draw(st.sampled_from(threat_models))
    session_id = draw(st.binary(min_size=16, max_size=16))
    round_id = draw(st.integers(0, 2**64 - 1))
    roster, identities = trusted_setup(range(n)) if threat_model == "active" else (None, None)
    kind = draw(st.sampled_from(["complete", "harary"]))
    degrees = list(range(2, n - 1, 2))
    if kind == "harary" and degrees:
        seed = None if roster is None else roster.order_seed(session_id, round_id)
        graph = harary_graph(range(n), draw(st.sampled_from(degrees)), seed=seed)
    else:
        graph = complete_graph(range(n))
    smallest = min(len(p) for p in graph.neighbours.values()) + 1
    threshold = draw(st.integers(_smallest_threshold(threat_model, graph), smallest))
    modulus_bits = draw(st.integers(1, 64))
    value_bits = draw(st.integers(1, modulus_bits))
    params = MaskingParams(
        session_id=session_id,
        round_id=round_id,
        graph=graph,
        threshold=threshold,
        vector_length=draw(st.integers(1, 50)),
        modulus_bits=modulus_bits,
        threat_model=threat_model,
    )
    most = n - threshold if bounded_dropouts else n
    droppers = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=most))
    dropouts = {u: draw(st.integers(0, NOT_DROPPED - 1)) for u in droppers}
    inputs = random_inputs(params, draw(st.integers(0, 2**32 - 1)), value_bits)
    return RoundConfig(params, inputs, dropouts, roster, identities)


def uploaders(params: MaskingParams, dropouts: Mapping[int, int]) -> set[int]:
    """Clients the schedule lets upload a masked input (those not silent from round 2 on)."""
    return {u for u in params.graph.nodes if dropouts.get(u, NOT_DROPPED) >= 3}


def note_outcome(params: MaskingParams, dropouts: Mapping[int, int], expected) -> None:
    """Hypothesis statistics: which graphs and outcomes the examples covered."""
    event(params.threat_model)
    event("complete graph" if params.graph.is_complete() else "Harary graph")
    if expected is None:
        event("aborted")
    elif expected == uploaders(params, dropouts):
        event("completed")
    else:
        event("completed after pruning")


def check_round(params, inputs, dropouts, *, through_wire: bool, roster=None, identities=None):
    """Run the round and compare everything with the oracle; returns the expected survivors."""
    simulator = Simulator(
        params,
        inputs,
        dropouts=dropouts,
        through_wire=through_wire,
        roster=roster,
        identities=identities,
    )
    report = simulator.run()
    outcome = expected_outcome(params.graph, params.threshold, dropouts, params.threat_model)
    expected = outcome.survivors
    if outcome.client_aborts:
        event("clients refused to unmask")
    assert set(report.client_errors) == outcome.client_aborts
    assert all(type(e) is InsufficientSurvivorsError for e in report.client_errors.values())
    assert report.server_rejections == []
    assert report.misbehaved == {}
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


def check_config(config: RoundConfig, *, through_wire: bool):
    """:func:`check_round` on a random round, with its trusted setup."""
    return check_round(
        config.params,
        config.inputs,
        config.dropouts,
        through_wire=through_wire,
        roster=config.roster,
        identities=config.identities,
    )


@pytest.mark.parametrize("through_wire", [False, True], ids=["in-memory", "through-wire"])
@SETTINGS
@given(config=round_configs())
def test_simulator_result_equals_survivors_plain_sum(config, through_wire):
    params, dropouts = config.params, config.dropouts
    expected = check_config(config, through_wire=through_wire)
    note_outcome(params, dropouts, expected)
    if params.graph.is_complete():
        # On the complete graph n - t dropouts can never abort a round, nor prune anyone.
        assert expected == uploaders(params, dropouts)


@SETTINGS
@given(config=round_configs(bounded_dropouts=False))
def test_simulator_outcome_matches_oracle_for_any_schedule(config):
    expected = check_config(config, through_wire=False)
    note_outcome(config.params, config.dropouts, expected)


@SETTINGS
@given(
    n=st.integers(3, 12),
    round_index=st.integers(0, NOT_DROPPED - 1),
    through_wire=st.booleans(),
    threat_model=st.sampled_from(["semi-honest", "active"]),
    data=st.data(),
)
def test_simulator_aborts_below_threshold(n, round_index, through_wire, threat_model, data):
    graph = complete_graph(range(n))
    threshold = data.draw(st.integers(_smallest_threshold(threat_model, graph), n))
    params = MaskingParams(
        session_id=bytes(16),
        round_id=data.draw(st.integers(0, 2**64 - 1)),
        graph=graph,
        threshold=threshold,
        vector_length=data.draw(st.integers(1, 50)),
        modulus_bits=data.draw(st.integers(1, 64)),
        threat_model=threat_model,
    )
    droppers = data.draw(
        st.lists(st.integers(0, n - 1), unique=True, min_size=n - threshold + 1, max_size=n)
    )
    # Everyone in the set is gone by ``round_index``; some may have left earlier.
    dropouts = {u: data.draw(st.integers(0, round_index)) for u in droppers}
    inputs = random_inputs(params, data.draw(st.integers(0, 2**32 - 1)), params.modulus_bits)
    assert expected_outcome(params.graph, threshold, dropouts, threat_model) == Outcome(None)
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
        # t = 5 is below what an active client accepts here: this is the semi-honest protocol.
        threat_model="semi-honest",
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
        # A hand-built graph: the active model accepts only the roster's public graph.
        threat_model="semi-honest",
    )
    inputs = random_inputs(params, seed=round_index, value_bits=20)
    simulator = Simulator(params, inputs, dropouts={0: round_index})
    expected = check_round(params, inputs, {0: round_index}, through_wire=False)
    assert expected == {1, 2, 3, 4}
    assert simulator.run().dropped_at == {0: round_index, 5: round_index}
