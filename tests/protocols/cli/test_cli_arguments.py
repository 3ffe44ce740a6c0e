"""Argument types and option converters shared by every ``secagg`` command."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable

import pytest

from protocols.cli import arguments
from secagg.errors import ParameterError


@pytest.mark.parametrize(
    ("convert", "text", "expected"),
    [
        (arguments.positive_int, "7", 7),
        (arguments.unit_fraction, "0", 0.0),
        (arguments.unit_fraction, "0.25", 0.25),
        (arguments.positive_real, "1e-3", 1e-3),
        (arguments.probability, "1e-5", 1e-5),
    ],
)
def test_arguments_accept_values_in_range(
    convert: Callable[[str], float], text: str, expected: float
) -> None:
    assert convert(text) == expected


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (arguments.positive_int, "0", "must be a positive integer, got 0"),
        (arguments.positive_int, "-3", "must be a positive integer, got -3"),
        (arguments.unit_fraction, "1", "must be in [0, 1), got 1"),
        (arguments.unit_fraction, "-0.1", "must be in [0, 1), got -0.1"),
        (arguments.unit_fraction, "nan", "must be in [0, 1), got nan"),
        (arguments.positive_real, "0", "must be a positive number, got 0"),
        (arguments.positive_real, "inf", "must be a positive number, got inf"),
        (arguments.positive_real, "nan", "must be a positive number, got nan"),
        (arguments.probability, "1", "must be in (0, 1), got 1"),
        (arguments.probability, "0", "must be in (0, 1), got 0"),
    ],
)
def test_arguments_reject_values_out_of_range(
    convert: Callable[[str], float], text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as error:
        convert(text)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "convert",
    [
        arguments.positive_int,
        arguments.unit_fraction,
        arguments.positive_real,
        arguments.probability,
    ],
)
def test_arguments_non_numbers_are_value_errors_for_argparse(
    convert: Callable[[str], float],
) -> None:
    with pytest.raises(ValueError):
        convert("abc")


def test_arguments_usage_error_exits_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--delta", type=arguments.probability)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--delta", "2"])
    assert exit_info.value.code == 2
    assert "argument --delta: must be in (0, 1), got 2" in capsys.readouterr().err


def test_arguments_split_values_takes_spaces_and_commas() -> None:
    assert arguments.split_values(None) == []
    assert arguments.split_values("100, 300") == ["100", "300"]
    assert arguments.split_values(["100,300", " 1000 ", ","]) == ["100", "300", "1000"]
    assert arguments.split_values(5) == ["5"]


def test_arguments_parse_int_accepts_whole_floats_and_names_the_option() -> None:
    assert arguments.parse_int("--dims", "1e3") == 1000
    assert arguments.parse_int("--dims", "100.0") == 100
    for text in ("1.5", "inf", "ten"):
        with pytest.raises(ParameterError, match=r"--dims: .* is not an integer"):
            arguments.parse_int("--dims", text)


def test_arguments_parse_float_refuses_non_finite_numbers() -> None:
    assert arguments.parse_float("--clip", "0.5") == 0.5
    with pytest.raises(ParameterError, match="--clip: 'x' is not a number"):
        arguments.parse_float("--clip", "x")
    with pytest.raises(ParameterError, match="--clip: 'nan' is not a finite number"):
        arguments.parse_float("--clip", "nan")


def test_arguments_positive_ints_are_distinct_and_sorted() -> None:
    assert arguments.positive_ints("--clients", ["300", "100", "300"], "n") == (100, 300)
    with pytest.raises(ParameterError, match="--clients: n must be a positive integer, got 0"):
        arguments.positive_ints("--clients", ["100", "0"], "n")


def test_arguments_optional_positive_int() -> None:
    assert arguments.optional_positive_int("--threshold", None) is None
    assert arguments.optional_positive_int("--threshold", "7") == 7
    with pytest.raises(ParameterError, match="--threshold: the value must be a positive"):
        arguments.optional_positive_int("--threshold", "-1")


def test_arguments_old_public_names_stay_importable() -> None:
    from protocols.cli import main, positive_int, positive_real, probability, unit_fraction

    assert callable(main)
    assert positive_int is arguments.positive_int
    assert unit_fraction is arguments.unit_fraction
    assert positive_real is arguments.positive_real
    assert probability is arguments.probability


def test_arguments_import_nothing_of_bench() -> None:
    """``models`` and bench's option parsing take converters from here, without the benchmark."""
    code = (
        "import sys, protocols.cli.arguments; "
        "assert 'protocols.bench' not in sys.modules, sorted(sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
