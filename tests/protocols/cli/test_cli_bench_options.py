"""``secagg bench``'s flags: presets, comma lists, bad values refused naming the flag."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence

import pytest

from protocols import bench
from protocols.cli import bench as command
from secagg.errors import ParameterError

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


def _namespace(argv: Sequence[str]) -> argparse.Namespace:
    """Bench arguments (plus ``--no-progress``) parsed as ``secagg bench`` parses them."""
    parser = argparse.ArgumentParser()
    command.add_bench_arguments(parser)
    return parser.parse_args([*argv, "--no-progress"])


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS)
def test_bench_bad_argument_raises_parameter_error(argv: list[str], message: str) -> None:
    with pytest.raises(ParameterError) as raised:
        command.run_bench(_namespace(argv))
    assert message in str(raised.value)


def test_bench_unknown_preset_is_refused() -> None:
    with pytest.raises(ParameterError, match="unknown preset"):
        command.config_from_args(argparse.Namespace(preset="huge"))


def test_bench_presets_match_the_issue() -> None:
    paper = command.config_from_args(_namespace(["--preset", "paper"]))
    assert paper.clients == (100, 300, 500) and paper.dims == (100_000,)
    assert paper.dropouts == (0.0, 0.1, 0.3)
    quick = command.config_from_args(_namespace(["--preset", "quick"]))
    assert set(quick.protocols) == set(bench.PROTOCOLS)
    assert max(quick.clients) * max(quick.dims) <= 200_000  # what keeps it under a minute


def test_bench_comma_lists_and_scientific_notation() -> None:
    config = command.config_from_args(_namespace(["--clients", "10,20", "--dims", "1e3", "1e2"]))
    assert config.clients == (10, 20) and config.dims == (100, 1000)


def test_bench_plot_dir_without_matplotlib_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    with pytest.raises(ParameterError, match=r"pip install secagg\[plot\]"):
        command.config_from_args(_namespace(["--plot-dir", "somewhere"]))
