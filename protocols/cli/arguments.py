"""Every argument type and option converter of the ``secagg`` commands, in one module.

Two kinds live here, so that no command grows its own copy of a range check:

- **argparse types** (:func:`positive_int`, :func:`non_negative_int`, :func:`value_bits`,
  :func:`unit_fraction`, :func:`positive_real`, :func:`probability`) are passed as ``type=`` to
  ``add_argument``; a value out of range raises :class:`argparse.ArgumentTypeError`, which
  argparse turns into a usage error (exit status 2). Every integer type takes ``100000`` and
  ``1e5`` alike (exact scientific notation, as :func:`parse_int` does) and refuses ``1.5`` or
  ``1e-3`` saying that a whole number is needed.
  A text that is not a number at all raises :class:`ValueError` from the real-number types,
  which argparse reports as ``invalid <type name> value``.
- **option converters** (:func:`split_values`, :func:`parse_int`, :func:`parse_float`,
  :func:`positive_ints`, :func:`optional_positive_int`, :func:`check_ring`,
  :func:`check_committee_options`) check values that a command validates after parsing (for
  instance grid options given as ``100,300``). They raise :class:`~secagg.errors.ParameterError`
  naming the option, which the ``secagg`` command prints as ``secagg <command>: error: ...``
  with exit status 2.

``models`` imports this module for ``secagg train`` (imports flow protocols <- models), and
``secagg bench``'s option parsing (:mod:`protocols.cli.bench_options`) takes its converters from
here: this module imports nothing of any command.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Final

from protocols.messages import MAX_DECRYPTORS
from secagg.encoding import MAX_MODULUS_BITS
from secagg.errors import ParameterError

__all__ = [
    "MAX_VALUE_BITS",
    "check_committee_options",
    "check_ring",
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
    "value_bits",
]

#: The most bits of one quantized value: a float64 holds integers exactly up to 2**53.
MAX_VALUE_BITS: Final = sys.float_info.mant_dig
#: Integers given with a decimal exponent above this are refused rather than expanded.
_MAX_EXPONENT = 30
_WHOLE_NUMBER = "a whole number such as 100000 or 1e5"


def _exact_int(text: str) -> int | None:
    """``text`` as an exact integer (``100000``, ``1e5``, ``100.0``), or ``None``."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or number.adjusted() > _MAX_EXPONENT:
        return None
    if number != number.to_integral_value():
        return None
    return int(number)


def _integer(text: str, needed: str) -> int:
    """The exact integer ``text``, or a usage error saying that ``needed`` is."""
    value = _exact_int(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"must be {needed} ({_WHOLE_NUMBER}), got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer > 0, given as ``100000`` or ``1e5``.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a whole number, or is 0 or negative.
    """
    value = _integer(text, "a positive integer")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0, given as ``100000`` or ``1e5``.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a whole number, or is negative.
    """
    value = _integer(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def value_bits(text: str) -> int:
    """argparse type: the bits of one quantized value, 1 .. :data:`MAX_VALUE_BITS`.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a whole number in that range.
    """
    needed = f"an integer in 1 .. {MAX_VALUE_BITS} (the precision of a float64)"
    value = _integer(text, needed)
    if not 1 <= value <= MAX_VALUE_BITS:
        raise argparse.ArgumentTypeError(f"must be {needed}, got {text}")
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
    value = _exact_int(text)
    if value is None:
        raise ParameterError(f"{option}: {text!r} is not an integer")
    return value


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


def check_ring(value_bits: int, clients: int, clients_option: str) -> None:
    """Refuse ``--value-bits`` that, summed over ``clients`` inputs, outgrow the largest ring.

    A ring holds the sum of n values of b bits without wrapping when it has b + ceil(log2 n)
    bits, and no ring has more than :data:`~secagg.encoding.MAX_MODULUS_BITS`.

    Args:
        value_bits: the ``--value-bits`` given.
        clients: the most inputs one sum holds.
        clients_option: the option that set ``clients`` (``"--clients"``), for the message.

    Raises:
        ParameterError: the ring would need more than ``MAX_MODULUS_BITS`` bits.
    """
    needed = value_bits + (clients - 1).bit_length()
    if needed > MAX_MODULUS_BITS:
        raise ParameterError(
            f"--value-bits {value_bits} with {clients_option} {clients} needs a {needed}-bit "
            f"ring, and the largest is {MAX_MODULUS_BITS}: lower --value-bits to "
            f"{MAX_MODULUS_BITS - needed + value_bits} or fewer"
        )


def check_committee_options(decryptors: int, decryption_threshold: int | None) -> None:
    """Refuse a Paillier committee that ``--decryptors`` / ``--decryption-threshold`` describe
    and no round accepts, naming those options (the library's own check names its parameters).

    A committee of m > 1 needs a majority, floor(m/2) + 1 .. m, so that two disjoint groups
    can never each decrypt a different subset of one round; a single key holder decrypts alone.

    Raises:
        ParameterError: m outside 1 .. ``MAX_DECRYPTORS``, or a threshold outside that range.
    """
    if not 1 <= decryptors <= MAX_DECRYPTORS:
        raise ParameterError(f"--decryptors must be in 1 .. {MAX_DECRYPTORS}, got {decryptors}")
    if decryption_threshold is None:
        return
    if decryptors == 1 and decryption_threshold != 1:
        raise ParameterError(
            f"--decryption-threshold {decryption_threshold} needs a committee: with --decryptors "
            "1 the single key holder decrypts alone"
        )
    majority = decryptors // 2 + 1
    if decryptors > 1 and not majority <= decryption_threshold <= decryptors:
        raise ParameterError(
            f"--decryption-threshold must be in {majority} .. {decryptors} for --decryptors "
            f"{decryptors}, got {decryption_threshold}: with at most half the members, two "
            "disjoint groups could each decrypt a different subset of one round"
        )
