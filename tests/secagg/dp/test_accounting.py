"""Accounting against dp-accounting itself, and the parameters choose_parameters picks."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
import pytest

from secagg import dp
from secagg.dp import (
    DistributedDPConfig,
    DistributedDPMechanism,
    DPWrapAroundWarning,
    PrivacyAccountant,
)
from secagg.errors import ParameterError


def _library_epsilon(
    library: Any,
    accountant: object,
    noise_multiplier: float,
    sampling_rate: float,
    rounds: int,
    delta: float,
) -> float:
    event = library.SelfComposedDpEvent(
        library.PoissonSampledDpEvent(sampling_rate, library.GaussianDpEvent(noise_multiplier)),
        rounds,
    )
    return float(accountant.compose(event).get_epsilon(delta))  # type: ignore[attr-defined]


def test_privacy_report_matches_dp_accounting_rdp(dp_accounting: Any) -> None:
    accountant = PrivacyAccountant(noise_multiplier=1.1, sampling_rate=0.01, delta=1e-5)
    report = accountant.privacy_report(1000)
    expected = _library_epsilon(
        dp_accounting, dp_accounting.rdp.RdpAccountant(), 1.1, 0.01, 1000, 1e-5
    )
    assert report["epsilon"] == expected
    assert report["accountant"] == "RdpAccountant"
    assert report["delta"] == 1e-5 and report["rounds"] == 1000
    assert isinstance(report["rdp_order"], float)


def test_privacy_report_matches_dp_accounting_pld(dp_accounting: Any) -> None:
    accountant = PrivacyAccountant(
        noise_multiplier=1.0, sampling_rate=0.1, delta=1e-5, accountant="pld"
    )
    expected = _library_epsilon(
        dp_accounting, dp_accounting.pld.PLDAccountant(), 1.0, 0.1, 20, 1e-5
    )
    assert accountant.epsilon_after(20) == expected
    # PLD is tighter than RDP for the same mechanism.
    rdp = PrivacyAccountant(noise_multiplier=1.0, sampling_rate=0.1, delta=1e-5)
    assert expected < rdp.epsilon_after(20)


@pytest.mark.usefixtures("dp_accounting")
def test_epsilon_grows_with_rounds_and_starts_at_zero() -> None:
    accountant = PrivacyAccountant(noise_multiplier=0.9, sampling_rate=0.02, delta=1e-6)
    epsilons = [accountant.epsilon_after(r) for r in (0, 1, 10, 100, 1000)]
    assert epsilons[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(epsilons))
    assert (
        PrivacyAccountant(noise_multiplier=0.0, sampling_rate=1.0, delta=1e-5).epsilon_after(1)
        == math.inf
    )


def test_chosen_noise_achieves_the_target_epsilon(dgauss_config: DistributedDPConfig) -> None:
    accountant = PrivacyAccountant.for_config(dgauss_config, sampling_rate=0.05, delta=1e-5)
    epsilon = accountant.epsilon_after(50)
    assert 3.0 * 0.995 <= epsilon <= 3.0
    assert dgauss_config.wrap_probability <= dp.DEFAULT_MAX_WRAP_PROBABILITY
    assert dgauss_config.noise_inflation == pytest.approx(1.0, abs=1e-3)
    assert dgauss_config.discretization_gap < 1e-6
    report = dgauss_config.to_dict()
    assert report["noise_multiplier"] == dgauss_config.noise_multiplier


@pytest.mark.usefixtures("dp_accounting")
def test_choose_parameters_warns_about_wrap_around_for_a_small_ring() -> None:
    with pytest.warns(DPWrapAroundWarning, match="increase modulus_bits to at least") as caught:
        config = dp.choose_parameters(
            target_epsilon=1.0,
            target_delta=1e-5,
            rounds=20,
            sampling_rate=0.1,
            expected_clients=100,
            dimension=10_000,
            modulus_bits=12,
            clip_norm=1.0,
        )
    assert config.wrap_probability > dp.DEFAULT_MAX_WRAP_PROBABILITY
    suggested = int(str(caught[0].message).split("at least ")[1].split()[0])
    assert suggested > 12
    with warnings.catch_warnings():
        warnings.simplefilter("error", DPWrapAroundWarning)
        wider = DistributedDPConfig(
            mechanism="discrete_gaussian",
            dimension=10_000,
            clip_norm=1.0,
            expected_clients=100,
            modulus_bits=suggested,
            noise_multiplier=config.noise_multiplier,
            granularity=config.granularity,
        )
    assert wider.wrap_probability <= dp.DEFAULT_MAX_WRAP_PROBABILITY


@pytest.mark.parametrize("mechanism_name", ["discrete_gaussian", "skellam"])
@pytest.mark.usefixtures("dp_accounting")
def test_wide_rings_keep_noise_shares_inside_the_sampler_range(mechanism_name: str) -> None:
    config = dp.choose_parameters(
        target_epsilon=2.0,
        target_delta=1e-6,
        rounds=1,
        sampling_rate=1.0,
        expected_clients=3,
        dimension=1000,
        modulus_bits=64,
        clip_norm=1.0,
        mechanism=mechanism_name,  # type: ignore[arg-type]
    )
    assert config.local_stddev <= dp.MAX_SIGMA
    assert config.local_skellam_mu <= dp.MAX_POISSON_MEAN or mechanism_name != "skellam"
    assert config.noise_inflation == pytest.approx(1.0, abs=1e-6)
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    update = np.full(1000, 0.01)
    decoded = mechanism.decode(mechanism.encode(update, seed), 1, seed)
    noise = config.granularity * config.local_stddev
    assert np.sqrt(np.mean((decoded - update) ** 2)) == pytest.approx(noise, rel=0.15)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"target_epsilon": 0.0}, "target_epsilon"),
        ({"target_delta": 1.0}, "target_delta"),
        ({"rounds": 0}, "rounds"),
        ({"sampling_rate": 1.5}, "sampling_rate"),
        ({"mechanism": "gauss"}, "mechanism"),
        ({"accountant": "moments"}, "accountant"),
    ],
)
def test_choose_parameters_rejects_bad_targets(overrides: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {
        "target_epsilon": 1.0,
        "target_delta": 1e-5,
        "rounds": 10,
        "sampling_rate": 0.1,
        "expected_clients": 10,
        "dimension": 100,
        "modulus_bits": 32,
        "clip_norm": 1.0,
    }
    arguments.update(overrides)
    with pytest.raises(ParameterError, match=match):
        dp.choose_parameters(**arguments)  # type: ignore[arg-type]
