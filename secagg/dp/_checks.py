"""Argument checks shared by the distributed-DP modules (TFF ``distributed_dp.py`` style).

Every entry point of :mod:`secagg.dp` validates its arguments where they come in, with these
named helpers, so that a bad value fails at once with a message that names the argument and,
where possible, the fix: a wrong type raises ``TypeError``, a value out of range raises
:class:`~secagg.errors.ParameterError`. They sit in one private module because the samplers,
the rotation, the rounding, the mechanism and the accountant all need the same checks.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]


def _check_type(name: str, value: object, expected: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    _check_type(name, value, (int, np.integer))
    checked = int(cast("int", value))
    if checked < low or (high is not None and checked > high):
        upper = "" if high is None else f", {high}"
        raise ParameterError(f"{name} must be in [{low}{upper}], got {checked}")
    return checked


def _check_real(
    name: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    fix: str = "",
) -> float:
    _check_type(name, value, (int, float, np.integer, np.floating))
    checked = float(cast("float", value))
    too_low = checked <= low if low_open else checked < low
    too_high = checked >= high if high_open else checked > high
    if not math.isfinite(checked) or too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        hint = f"; {fix}" if fix else ""
        raise ParameterError(f"{name} must be in {left}{low}, {high}{right}, got {value}{hint}")
    return checked


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {choices}, got {value!r}")
    return str(value)


def _check_vector(name: str, vector: npt.ArrayLike, length: int | None = None) -> FloatArray:
    array = np.asarray(vector, dtype=np.float64)
    if array.ndim != 1:
        raise ParameterError(f"{name} must be 1-D, got shape {array.shape}; flatten it first")
    if length is not None and array.shape[0] != length:
        raise ParameterError(f"{name} has {array.shape[0]} values, expected {length}")
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{name} contains NaN or infinity")
    return array
