"""The round planner: one rule for graph, degree, threshold and ring bits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.defaults import DEFAULT_VALUE_BITS
from protocols.graph import NeighbourGraph, complete_graph, secagg_plus_parameters
from protocols.rounds import RoundPolicy, plan_round
from secagg.errors import ParameterError


@given(n=st.integers(2, 200))
@settings(max_examples=40, deadline=None)
def test_plan_secagg_is_complete_with_majority_threshold(n: int) -> None:
    plan = plan_round(RoundPolicy("secagg"), list(range(n)))
    assert plan.graph is not None and plan.graph.is_complete()
    assert plan.degree == n - 1
    assert plan.threshold == max(2, n // 2 + 1)
    assert plan.value_bits == DEFAULT_VALUE_BITS  # the shared default
    assert plan.modulus_bits == DEFAULT_VALUE_BITS + (n - 1).bit_length()


@given(n=st.integers(3, 300))
@settings(max_examples=40, deadline=None)
def test_plan_secagg_plus_uses_the_computed_degree_and_threshold(n: int) -> None:
    chosen = secagg_plus_parameters(n)
    plan = plan_round(RoundPolicy("secagg+"), list(range(n)))
    assert plan.graph is not None
    assert plan.degree == min(chosen.degree, n - 1)
    assert plan.threshold == chosen.threshold
    assert plan.threshold == RoundPolicy("secagg+").threshold_for(n)


def test_plan_secagg_plus_degree_override_takes_a_neighbourhood_majority() -> None:
    plan = plan_round(RoundPolicy("secagg+", degree=12), list(range(50)))
    assert plan.degree == 12
    assert plan.threshold == 7


def test_plan_threshold_override_wins() -> None:
    assert plan_round(RoundPolicy("secagg", threshold=3), list(range(10))).threshold == 3
    assert plan_round(RoundPolicy("paillier", threshold=4), list(range(10))).threshold == 4


def test_plan_paillier_has_no_graph_and_majority_contributors() -> None:
    plan = plan_round(RoundPolicy("paillier"), list(range(9)))
    assert plan.graph is None and plan.degree == 0 and plan.threshold == 5


def test_plan_custom_graph_takes_majority_of_largest_neighbourhood() -> None:
    def ring(ids: object) -> NeighbourGraph:
        return complete_graph(list(range(6)))

    plan = plan_round(RoundPolicy("secagg", graph_builder=ring), list(range(6)))
    assert plan.threshold == 4


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"protocol": "fedavg"}, "protocol must be one of"),
        ({"protocol": "secagg", "degree": 4}, "degree applies only to SecAgg+"),
        ({"protocol": "secagg", "threshold": 1}, "threshold must be >= 2"),
        ({"protocol": "secagg+", "dropout_fraction": 0.3, "corrupt_fraction": 0.3}, "below 0.5"),
    ],
)
def test_policy_rejects_bad_choices(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ParameterError, match=fragment):
        RoundPolicy(**kwargs)  # type: ignore[arg-type]


def test_plan_rejects_threshold_above_holders() -> None:
    with pytest.raises(ParameterError, match="exceeds"):
        plan_round(RoundPolicy("secagg", threshold=9), list(range(5)))
    with pytest.raises(ParameterError, match="at least 2 clients"):
        plan_round(RoundPolicy("secagg"), [0])
