"""The accountant's per-round record: each released sum charged at its own noise (issue 12).

A sum of s of the n noise shares has noise multiplier z * sqrt(s / n); the accountant composes
exactly the charged rounds. Every expected value here is recomputed with ``dp-accounting``
directly, one event per round, from the survivor counts alone. Most tests use sampling rate 1,
whose Gaussian RDP is analytic and fast; one checks the Poisson-sampled case.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.dp import DistributedDPConfig, PrivacyAccountant
from secagg.errors import ParameterError

DELTA = 1e-5
Z = 1.3
N = 4


def _independent(
    library: Any, survivors: list[int], *, sampling_rate: float = 1.0, kind: str = "rdp"
) -> float:
    adjacency = library.NeighboringRelation.ADD_OR_REMOVE_ONE
    accountant = (
        library.rdp.RdpAccountant(neighboring_relation=adjacency)
        if kind == "rdp"
        else library.pld.PLDAccountant(neighboring_relation=adjacency)
    )
    for s in survivors:
        event = library.GaussianDpEvent(Z * math.sqrt(s / N))
        if sampling_rate < 1.0:
            event = library.PoissonSampledDpEvent(sampling_rate, event)
        accountant.compose(event)
    return float(accountant.get_epsilon(DELTA))


def _accountant(sampling_rate: float = 1.0, kind: str = "rdp") -> PrivacyAccountant:
    return PrivacyAccountant(
        noise_multiplier=Z,
        sampling_rate=sampling_rate,
        delta=DELTA,
        accountant=kind,  # type: ignore[arg-type]
        expected_clients=N,
    )


@pytest.mark.usefixtures("dp_accounting")
def test_nothing_charged_spends_nothing() -> None:
    accountant = _accountant()
    assert accountant.epsilon_spent() == 0.0
    assert accountant.released == ()
    report = accountant.spent_report()
    assert report["epsilon"] == 0.0 and report["rounds"] == 0
    assert report["survivors"] == [] and report["expected_clients"] == N


def test_a_full_round_costs_one_planned_round(dp_accounting: Any) -> None:
    accountant = _accountant()
    assert accountant.charge(N) == accountant.epsilon_after(1)
    assert accountant.round_noise_multiplier(N) == Z
    accountant.charge(N)
    assert accountant.epsilon_spent() == pytest.approx(accountant.epsilon_after(2), rel=1e-12)


def test_each_round_is_charged_at_the_noise_of_its_survivors(dp_accounting: Any) -> None:
    charged = [4, 6, 3, 5]
    accountant = _accountant()
    spent = [accountant.charge(s) for s in charged]
    assert accountant.released == tuple(charged)
    assert spent == sorted(spent)  # every release costs something
    assert spent[-1] == pytest.approx(_independent(dp_accounting, charged), rel=1e-12)
    report = accountant.spent_report()
    assert report["survivors"] == charged
    assert report["round_noise_multipliers"] == [Z * math.sqrt(s / N) for s in charged]
    assert report["epsilon"] == spent[-1] and report["rounds"] == 4
    assert report["noise_multiplier"] == Z
    assert isinstance(report["rdp_order"], float)


def test_fewer_noise_shares_cost_more(dp_accounting: Any) -> None:
    costs = []
    for survivors in (2, 3, 4, 6, 8):
        accountant = _accountant()
        costs.append(accountant.charge(survivors))
    assert costs == sorted(costs, reverse=True)
    assert len(set(costs)) == len(costs)


def test_poisson_sampled_rounds_match_the_library(dp_accounting: Any) -> None:
    accountant = _accountant(sampling_rate=0.3)
    accountant.charge(5)
    accountant.charge(4)
    expected = _independent(dp_accounting, [5, 4], sampling_rate=0.3)
    assert accountant.epsilon_spent() == pytest.approx(expected, rel=1e-12)


def test_pld_rounds_match_the_library(dp_accounting: Any) -> None:
    accountant = _accountant(kind="pld")
    accountant.charge(6)
    accountant.charge(3)
    expected = _independent(dp_accounting, [6, 3], kind="pld")
    assert accountant.epsilon_spent() == pytest.approx(expected, rel=1e-9)
    assert accountant.spent_report()["rdp_order"] is None


@pytest.mark.usefixtures("dp_accounting")
def test_zero_noise_spends_everything() -> None:
    accountant = PrivacyAccountant(
        noise_multiplier=0.0, sampling_rate=1.0, delta=DELTA, expected_clients=N
    )
    assert accountant.charge(N) == math.inf
    assert accountant.charge(N) == math.inf and accountant.released == (N, N)


def test_charging_needs_the_number_of_noise_shares() -> None:
    accountant = PrivacyAccountant(noise_multiplier=Z, sampling_rate=1.0, delta=DELTA)
    with pytest.raises(ParameterError, match="expected_clients"):
        accountant.charge(3)
    assert accountant.released == ()
    with pytest.raises(ParameterError, match="survivors"):
        _accountant().charge(0)
    with pytest.raises(TypeError):
        _accountant().charge(True)
    with pytest.raises(ParameterError, match="expected_clients"):
        PrivacyAccountant(noise_multiplier=Z, sampling_rate=1.0, delta=DELTA, expected_clients=0)


def test_for_config_knows_the_noise_shares(dgauss_config: DistributedDPConfig) -> None:
    accountant = PrivacyAccountant.for_config(dgauss_config, sampling_rate=0.05, delta=DELTA)
    assert accountant.expected_clients == dgauss_config.expected_clients == 20
    assert accountant.round_noise_multiplier(20) == dgauss_config.noise_multiplier


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 3 * N), max_size=12))
def test_reported_epsilon_is_never_below_the_released_rounds(survivors: list[int]) -> None:
    """Property: whatever the survivor counts of the released rounds, the epsilon reported is
    the library's for exactly those rounds, and never below it; nothing charged costs 0."""
    library = pytest.importorskip("dp_accounting")
    accountant = _accountant()
    previous = 0.0
    for s in survivors:
        spent = accountant.charge(s)
        assert spent > previous
        previous = spent
    independent = _independent(library, survivors) if survivors else 0.0
    assert accountant.epsilon_spent() >= independent * (1.0 - 1e-12)
    assert accountant.epsilon_spent() == pytest.approx(independent, rel=1e-12, abs=0.0)
