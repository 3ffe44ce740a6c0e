"""Every argument type and option converter of the ``secagg`` commands, in one module.

Two kinds live here, so that no command grows its own copy of a range check:

- **argparse types** (:func:`positive_int`, :func:`non_negative_int`, :func:`unit_fraction`,
  :func:`positive_real`, :func:`probability`) are passed as ``type=`` to ``add_argument``; a
  value out of range raises :class:`argparse.ArgumentTypeError`, which argparse turns into a
  usage error (exit status 2).
  A text that is not a number at all raises :class:`ValueError`, which argparse reports as
  ``invalid <type name> value``.
- **option converters** (:func:`split_values`, :func:`parse_int`, :func:`parse_float`,
  :func:`positive_ints`, :func:`optional_positive_int`) check values that a command validates
  after parsing (for instance grid options given as ``100,300``). They raise
  :class:`~secagg.errors.ParameterError` naming the option, which the ``secagg`` command prints
  as ``secagg: error: ...`` with exit status 2.

``models`` imports this module for ``secagg train`` (imports flow protocols <- models), and
``secagg bench``'s option parsing (:mod:`protocols.cli.bench_options`) takes its converters from
here: this module imports nothing of any command.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable

from secagg.errors import ParameterError

__all__ = [
    "non_negative_int",
    "optional_positive_int",
    "parse_float",
    "parse_int",
    "positive_int",
    "positive_ints",
    "positive_real",
    "probability",
    "split_values",
    "unit_fraction",
]


def positive_int(text: str) -> int:
    """argparse type: an integer > 0.

    Raises:
        argparse.ArgumentTypeError: the integer is 0 or negative.
        ValueError: ``text`` is not an integer.
    """
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0.

    Raises:
        argparse.ArgumentTypeError: the integer is negative.
        ValueError: ``text`` is not an integer.
    """
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def unit_fraction(text: str) -> float:
    """argparse type: a float in [0, 1).

    Raises:
        argparse.ArgumentTypeError: the number is outside [0, 1).
        ValueError: ``text`` is not a number.
    """
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def positive_real(text: str) -> float:
    """argparse type: a finite float > 0.

    Raises:
        argparse.ArgumentTypeError: the number is 0, negative, infinite or NaN.
        ValueError: ``text`` is not a number.
    """
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def probability(text: str) -> float:
    """argparse type: a float in the open interval (0, 1), such as a DP delta.

    Raises:
        argparse.ArgumentTypeError: the number is outside (0, 1).
        ValueError: ``text`` is not a number.
    """
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def split_values(values: object) -> list[str]:
    """The values of a multi-valued option, given space- or comma-separated.

    Args:
        values: what argparse stored: a list (``nargs="+"``), one value, or ``None``.

    Returns:
        Every non-empty comma-separated part, stripped: ``["10,20", "30"]`` gives
        ``["10", "20", "30"]``; ``[]`` for ``None``.
    """
    if values is None:
        return []
    items = values if isinstance(values, Iterable) and not isinstance(values, str) else [values]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def parse_int(option: str, text: str) -> int:
    """The integer ``text`` given to ``option``; ``1e3`` and ``100.0`` are accepted.

    Raises:
        ParameterError: ``text`` is not a finite whole number.
    """
    try:
        number = float(text)
    except ValueError:
        raise ParameterError(f"{option}: {text!r} is not an integer") from None
    if not math.isfinite(number) or number != int(number):
        raise ParameterError(f"{option}: {text!r} is not an integer")
    return int(number)


def parse_float(option: str, text: str) -> float:
    """The finite number ``text`` given to ``option``.

    Raises:
        ParameterError: ``text`` is not a number, or is infinite or NaN.
    """
    try:
        number = float(text)
    except ValueError:
        raise ParameterError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ParameterError(f"{option}: {text!r} is not a finite number")
    return number


def positive_ints(option: str, texts: Iterable[str], what: str) -> tuple[int, ...]:
    """The distinct positive integers given to ``option``, sorted.

    Args:
        option: the option's name, for the error message (``"--clients"``).
        texts: the values as given.
        what: what one value is, for the error message (``"n"``).

    Raises:
        ParameterError: a value is not an integer, or is 0 or negative.
    """
    values = tuple(parse_int(option, t) for t in texts)
    for value in values:
        if value <= 0:
            raise ParameterError(f"{option}: {what} must be a positive integer, got {value}")
    return tuple(sorted(set(values)))


def optional_positive_int(option: str, text: object) -> int | None:
    """The positive integer given to ``option``, or ``None`` when the option was left unset.

    Raises:
        ParameterError: the value is not an integer, or is 0 or negative.
    """
    if text is None:
        return None
    return positive_ints(option, [str(text)], "the value")[0]
