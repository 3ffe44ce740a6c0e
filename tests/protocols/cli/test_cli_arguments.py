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


@pytest.mark.parametrize(
    ("convert", "text", "expected"),
    [
        (arguments.positive_int, "100000", 100_000),
        (arguments.positive_int, "1e5", 100_000),
        (arguments.positive_int, "1E5", 100_000),
        (arguments.positive_int, "2.5e3", 2_500),
        (arguments.positive_int, "100.0", 100),
        (arguments.positive_int, "123456789012345678901", 123_456_789_012_345_678_901),
        (arguments.non_negative_int, "0e0", 0),
        (arguments.non_negative_int, "1e3", 1_000),
        (arguments.value_bits, "2.2e1", 22),
    ],
)
def test_arguments_integers_take_exact_scientific_notation(
    convert: Callable[[str], int], text: str, expected: int
) -> None:
    assert convert(text) == expected


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (
            arguments.positive_int,
            "1.5",
            "must be a positive integer (a whole number such as 100000 or 1e5), got '1.5'",
        ),
        (
            arguments.positive_int,
            "1e-3",
            "must be a positive integer (a whole number such as 100000 or 1e5), got '1e-3'",
        ),
        (
            arguments.positive_int,
            "abc",
            "must be a positive integer (a whole number such as 100000 or 1e5), got 'abc'",
        ),
        (
            arguments.non_negative_int,
            "inf",
            "must be an integer >= 0 (a whole number such as 100000 or 1e5), got 'inf'",
        ),
        (arguments.non_negative_int, "-1e2", "must be an integer >= 0, got -1e2"),
        (
            arguments.value_bits,
            "64",
            "must be an integer in 1 .. 53 (the precision of a float64), got 64",
        ),
        (
            arguments.value_bits,
            "0",
            "must be an integer in 1 .. 53 (the precision of a float64), got 0",
        ),
    ],
)
def test_arguments_integers_refuse_fractions_with_a_clear_message(
    convert: Callable[[str], int], text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as error:
        convert(text)
    assert str(error.value) == message


def test_arguments_fraction_given_to_an_integer_option_names_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(prog="secagg demo")
    parser.add_argument("--dim", type=arguments.positive_int)
    assert parser.parse_args(["--dim", "1e5"]).dim == 100_000
    with pytest.raises(SystemExit):
        parser.parse_args(["--dim", "1e-3"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "secagg demo: error: argument --dim: must be a positive integer (a whole number such as "
        "100000 or 1e5), got '1e-3'"
    )


def test_arguments_check_ring_names_value_bits_and_the_clients_option() -> None:
    arguments.check_ring(53, 2048, "--clients")  # 53 + 11 bits: the largest ring exactly
    with pytest.raises(ParameterError) as error:
        arguments.check_ring(53, 4096, "--clients-per-round")
    assert str(error.value) == (
        "--value-bits 53 with --clients-per-round 4096 needs a 65-bit ring, and the largest is "
        "64: lower --value-bits to 52 or fewer"
    )


@pytest.mark.parametrize(
    ("decryptors", "threshold", "message"),
    [
        (0, None, "--decryptors must be in 1 .. 64, got 0"),
        (
            1,
            2,
            "--decryption-threshold 2 needs a committee: with --decryptors 1 the single key "
            "holder decrypts alone",
        ),
        (
            4,
            2,
            "--decryption-threshold must be in 3 .. 4 for --decryptors 4, got 2: with at most "
            "half the members, two disjoint groups could each decrypt a different subset of one "
            "round",
        ),
    ],
)
def test_arguments_check_committee_options_names_the_flags(
    decryptors: int, threshold: int | None, message: str
) -> None:
    with pytest.raises(ParameterError) as error:
        arguments.check_committee_options(decryptors, threshold)
    assert str(error.value) == message
    arguments.check_committee_options(4, 3)
    arguments.check_committee_options(1, None)


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
    assert arguments.parse_int("--dims", "12345678901234567891") == 12_345_678_901_234_567_891
    for text in ("1.5", "1e-3", "inf", "ten"):
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
