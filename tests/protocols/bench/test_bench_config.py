"""``protocols.bench.config``: presets, comma lists, bad arguments refused naming the flag."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable, Sequence

import pytest

from protocols import bench
from protocols.graph import secagg_plus_parameters, secagg_threshold
from secagg.errors import ParameterError

Namespace = Callable[[Sequence[str]], argparse.Namespace]

BAD_ARGUMENTS = [
    (["--protocols", "rot13"], "unknown protocol 'rot13'"),
    (["--dims", "0"], "d must be a positive integer, got 0"),
    (["--dims", "-5"], "d must be a positive integer"),
    (["--dims", "ten"], "'ten' is not an integer"),
    (["--dropouts", "1"], "must be in [0, 1), got 1.0"),
    (["--dropouts", "-0.1"], "must be in [0, 1)"),
    (["--clients", "1"], "needs n >= 2, got 1"),
    (["--clients", "4", "--threshold", "5"], "n=4 is below the threshold t=5"),
    (["--clients", "4", "--dropouts", "0.5"], "leaves 2 clients, below the threshold t=3"),
    (["--drop-at", "4"], "rounds are 0 (AdvertiseKeys) to 3 (Unmasking)"),
    (["--repeats", "0"], "repeats must be a positive integer"),
    (["--key-bits", "1024"], "--key-bits: use one of [2048, 3072]"),
    (["--time-budget", "0"], "--time-budget must be positive"),
    (["--threshold", "1"], "--threshold: threshold must be >= 2"),
    (["--dropouts", "0.45"], "--dropouts 0.45: SecAgg+ cannot choose a degree"),
    (["--clients", "10", "--degree", "3"], "--degree must be even and >= 2, got 3"),
    (["--clients", "4", "--degree", "4"], "--degree 4 needs more than 4 clients"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS)
def test_bench_bad_argument_raises_parameter_error(
    argv: list[str], message: str, bench_namespace: Namespace
) -> None:
    with pytest.raises(ParameterError) as raised:
        bench.run_bench(bench_namespace(argv))
    assert message in str(raised.value)


def test_bench_unknown_preset_is_refused() -> None:
    with pytest.raises(ParameterError, match="unknown preset"):
        bench.config_from_args(argparse.Namespace(preset="huge"))


def test_bench_presets_match_the_issue(bench_namespace: Namespace) -> None:
    paper = bench.config_from_args(bench_namespace(["--preset", "paper"]))
    assert paper.clients == (100, 300, 500) and paper.dims == (100_000,)
    assert paper.dropouts == (0.0, 0.1, 0.3)
    quick = bench.config_from_args(bench_namespace(["--preset", "quick"]))
    assert set(quick.protocols) == set(bench.PROTOCOLS)
    assert max(quick.clients) * max(quick.dims) <= 200_000  # what keeps it under a minute


def test_bench_comma_lists_and_scientific_notation(bench_namespace: Namespace) -> None:
    config = bench.config_from_args(bench_namespace(["--clients", "10,20", "--dims", "1e3", "1e2"]))
    assert config.clients == (10, 20) and config.dims == (100, 1000)


def test_bench_plot_dir_without_matplotlib_is_refused(
    monkeypatch: pytest.MonkeyPatch, bench_namespace: Namespace
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    with pytest.raises(ParameterError, match=r"pip install secagg\[plot\]"):
        bench.config_from_args(bench_namespace(["--plot-dir", "somewhere"]))


@pytest.mark.parametrize("n", [5, 10, 40, 100])
@pytest.mark.parametrize("dropout", [0.0, 0.2, 0.3])
def test_bench_round_policy_keeps_the_bench_numbers(
    n: int, dropout: float, bench_namespace: Namespace
) -> None:
    """The planner picks what the bench picked itself before it asked the planner."""
    config = bench.config_from_args(bench_namespace(["--clients", str(n)]))
    chosen = secagg_plus_parameters(n, dropout_fraction=max(0.05, dropout), corrupt_fraction=0.05)
    plus = config.round_policy("secagg+", dropout)
    assert (plus.degree_for(n), plus.threshold_for(n)) == (chosen.degree, chosen.threshold)
    flower = config.round_policy(bench.FLOWER, dropout)
    assert (flower.degree_for(n), flower.threshold_for(n)) == (chosen.degree, chosen.threshold)
    for protocol in ("secagg", "paillier-fresh", "paillier-djn"):
        assert config.round_policy(protocol, dropout).threshold_for(n) == secagg_threshold(n)


def test_bench_round_policy_applies_degree_and_threshold_overrides(
    bench_namespace: Namespace,
) -> None:
    config = bench.config_from_args(bench_namespace(["--clients", "40", "--degree", "10"]))
    plus = config.round_policy("secagg+", 0.2)
    assert (plus.degree_for(40), plus.threshold_for(40)) == (10, secagg_threshold(11))
    config = bench.config_from_args(bench_namespace(["--clients", "40", "--threshold", "7"]))
    assert config.round_policy("secagg+", 0.2).threshold_for(40) == 7
    assert config.round_policy("paillier-djn").threshold_for(40) == 7
