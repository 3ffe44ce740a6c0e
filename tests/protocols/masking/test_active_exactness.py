"""Exactness in both threat models, hypothesis-driven, over dropouts in every round 0..4.

A round either returns the exact plain sum of its survivors' inputs (mod 2^k, bit for bit) or
aborts with :class:`InsufficientSurvivorsError`; no client that dropped before uploading is in
the sum, every client that uploaded and stayed in the round is, and with few enough drops (at
most k + 1 - t, so that no neighbourhood falls below the threshold) it always completes. On the
complete graph the outcome is known exactly: it completes if and only if n - drops >= t.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.simulate import ROUND_NAMES
from secagg.errors import InsufficientSurvivorsError

UPLOAD = ROUND_NAMES.index("masked_input")
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MODES = st.sampled_from(["semi-honest", "active"])
#: (protocol, n, degree override): the complete graph, and a sparse Harary graph (k = 6 < n - 1).
GRAPHS = {"complete": ("secagg", 7, None), "sparse": ("secagg+", 12, 6)}


def _schedules(n: int, max_drops: int) -> st.SearchStrategy[dict[int, int]]:
    return st.dictionaries(
        st.integers(0, n - 1), st.integers(0, len(ROUND_NAMES) - 1), max_size=max_drops
    )


def _play(active_round, graph: str, threat_model: str, dropouts: dict[int, int], seed: int):
    protocol, n, degree = GRAPHS[graph]
    game = active_round(protocol, n, threat_model, seed=seed, degree=degree)
    outcome = game.run(dropouts=dropouts)
    report = outcome.report
    if report.error is not None:
        assert type(report.error) is InsufficientSurvivorsError, repr(report.error)
        assert report.result is None
        return game, outcome, False
    outcome.assert_exact()
    survivors = set(report.result.survivors)
    never_uploaded = {u for u, r in dropouts.items() if r <= UPLOAD}
    assert not survivors & never_uploaded
    assert report.misbehaved == {}
    assert report.client_errors == {}
    return game, outcome, True


@SETTINGS
@given(
    threat_model=MODES,
    dropouts=_schedules(7, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_complete_graph_is_exact_or_aborts_exactly_when_too_few_remain(
    active_round, threat_model, dropouts, seed
):
    game, outcome, completed = _play(active_round, "complete", threat_model, dropouts, seed)
    assert completed is (7 - len(dropouts) >= game.threshold)
    if completed:
        uploaded = {u for u in range(7) if dropouts.get(u, len(ROUND_NAMES)) > UPLOAD}
        assert set(outcome.report.result.survivors) == uploaded


@SETTINGS
@given(
    threat_model=MODES,
    dropouts=_schedules(12, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_sparse_graph_is_exact_or_aborts(active_round, threat_model, dropouts, seed):
    game, outcome, completed = _play(active_round, "sparse", threat_model, dropouts, seed)
    holders = game.params.graph.max_degree + 1
    if len(dropouts) <= holders - game.threshold:
        assert completed
        uploaded = {u for u in range(12) if dropouts.get(u, len(ROUND_NAMES)) > UPLOAD}
        assert set(outcome.report.result.survivors) == uploaded


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    graph=st.sampled_from(sorted(GRAPHS)),
    threat_model=MODES,
    drop_round=st.integers(0, len(ROUND_NAMES) - 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_large_values_wrap_mod_2k_exactly(active_round, graph, threat_model, drop_round, seed):
    """Inputs near 2^k: the sum wraps in the ring and is still exact, bit for bit."""
    protocol, n, degree = GRAPHS[graph]
    game = active_round(protocol, n, threat_model, seed=seed, degree=degree)
    top = (1 << game.params.modulus_bits) - 1
    rng = np.random.default_rng(seed)
    for vector in game.inputs.values():
        vector[:] = top - rng.integers(0, 4, size=vector.shape[0]).astype(vector.dtype)
    outcome = game.run(dropouts={n - 1: drop_round})
    outcome.assert_exact()
    assert outcome.expected is not None and int(outcome.expected.max()) <= top
