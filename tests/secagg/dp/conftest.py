"""Shared fixtures for the distributed-DP tests.

Test modules reach these through fixtures (each returns a plain function, a module or a value),
so no test imports ``conftest`` by name. Statistical tests draw from the private seeded seam
(AES-CTR under a fixed seed), so they are deterministic; the configuration chosen by
``dp-accounting`` is session-scoped because the mechanism and the accounting tests both read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from secagg.dp import DistributedDPConfig, choose_parameters
from secagg.dp.sampling import UniformSource, _seeded_uniforms


@pytest.fixture
def seeded() -> Callable[[str], UniformSource]:
    """A deterministic uniform source per label (AES-CTR under SHA-256 of the label)."""

    def uniforms(label: str) -> UniformSource:
        return _seeded_uniforms(label.encode())

    return uniforms


@pytest.fixture
def dp_accounting() -> Any:
    """dp-accounting (the ``dp`` extra); tests that need it are skipped without it."""
    return pytest.importorskip("dp_accounting")


@pytest.fixture(scope="session")
def dgauss_config() -> DistributedDPConfig:
    """A discrete Gaussian configuration calibrated to epsilon 3 over 50 rounds at q = 0.05."""
    pytest.importorskip("dp_accounting")
    return choose_parameters(
        target_epsilon=3.0,
        target_delta=1e-5,
        rounds=50,
        sampling_rate=0.05,
        expected_clients=20,
        dimension=500,
        modulus_bits=32,
        clip_norm=0.3,
    )
