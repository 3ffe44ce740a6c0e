"""``protocols.bench.config``: the round policy a configuration hands the planner, and its checks.

How flags become a configuration (comma lists, presets, bad values refused naming the flag) is
tested with the command line, in ``tests/protocols/cli/test_cli_bench_options.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from protocols import bench
from protocols.bench.config import check_config
from protocols.cli.bench_options import config_from_options
from protocols.graph import secagg_plus_parameters, secagg_threshold
from secagg.errors import ParameterError


@pytest.mark.parametrize("n", [5, 10, 40, 100])
@pytest.mark.parametrize("dropout", [0.0, 0.2, 0.3])
def test_bench_round_policy_keeps_the_bench_numbers(n: int, dropout: float) -> None:
    """The planner picks what the bench picked itself before it asked the planner."""
    config = config_from_options({"clients": [str(n)]})
    chosen = secagg_plus_parameters(n, dropout_fraction=max(0.05, dropout), corrupt_fraction=0.05)
    plus = config.round_policy("secagg+", dropout)
    assert (plus.degree_for(n), plus.threshold_for(n)) == (chosen.degree, chosen.threshold)
    flower = config.round_policy(bench.FLOWER, dropout)
    assert (flower.degree_for(n), flower.threshold_for(n)) == (chosen.degree, chosen.threshold)
    for protocol in ("secagg", "paillier-fresh", "paillier-djn"):
        assert config.round_policy(protocol, dropout).threshold_for(n) == secagg_threshold(n)


def test_bench_round_policy_applies_degree_and_threshold_overrides() -> None:
    config = config_from_options({"clients": ["40"], "degree": "10"})
    plus = config.round_policy("secagg+", 0.2)
    assert (plus.degree_for(40), plus.threshold_for(40)) == (10, secagg_threshold(11))
    config = config_from_options({"clients": ["40"], "threshold": "7"})
    assert config.round_policy("secagg+", 0.2).threshold_for(40) == 7
    assert config.round_policy("paillier-djn").threshold_for(40) == 7


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"degree": 3}, "--degree must be even and >= 2, got 3"),
        ({"clients": (4,), "dropouts": (0.5,)}, "leaves 2 clients, below the threshold t=3"),
        ({"clients": (1,)}, "needs n >= 2, got 1"),
        ({"value_bits": 0}, "value_bits"),
    ],
)
def test_bench_check_config_refuses_a_grid_that_cannot_run(
    change: dict[str, Any], message: str
) -> None:
    """The library checks a configuration however it was built, not only from flags."""
    config = config_from_options({"clients": ["10"]})
    check_config(config)
    with pytest.raises(ParameterError) as raised:
        check_config(dataclasses.replace(config, **change))
    assert message in str(raised.value)
