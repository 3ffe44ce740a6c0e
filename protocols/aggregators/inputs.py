"""Validation of one ``aggregate`` call: the same checks, and the same messages, for every backend.

Every check names the client and says what to change. Updates must be 1-D arrays of finite real
numbers of one length (strings, bytes, objects, booleans, dates, complex numbers and ragged
sequences are refused with :class:`~secagg.errors.ParameterError` rather than coerced, silently
truncated or left to fail later with a bare ``ValueError``); weights must be finite and
non-negative; a dropout schedule names known clients and protocol rounds 0-4. Every backend runs
these checks through :meth:`protocols.aggregators.pipeline.Pipeline.aggregate`, before anything
is encoded; a ``state_dict`` or ``NDArrays`` update reaches them flattened by
:mod:`protocols.aggregators.structure`, whose entries :func:`real_values` checks alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import SupportsFloat

import numpy as np
import numpy.typing as npt

from protocols.aggregators.result import FloatArray
from secagg.errors import ParameterError

__all__ = [
    "RoundInputs",
    "check_dropouts",
    "check_round_inputs",
    "check_updates",
    "check_weights",
    "real_values",
]

#: Index of the protocol round at which a client stops answering (see ``dropouts``).
#: 0 AdvertiseKeys, 1 ShareKeys, 2 MaskedInputCollection, 3 Unmasking. A client that drops at
#: round 3 has already uploaded its input, so it is still counted in the sum.
UPLOAD_ROUND = 2
#: The last protocol round (unmasking); see :data:`protocols.simulate.ROUND_NAMES`.
LAST_ROUND = 4
#: numpy dtype kinds of real numbers: signed and unsigned integers, floats. Booleans ("b") are
#: refused, as they are for weights: True is not a coordinate value.
_REAL_KINDS = "iuf"


@dataclass(frozen=True, slots=True)
class RoundInputs:
    """One checked ``aggregate`` call.

    Attributes:
        updates: client id -> 1-D float64 update, all of length ``dimension``.
        weights: client id -> weight, or ``None`` for an unweighted sum.
        dropouts: client id -> protocol round at which it goes silent.
    """

    updates: Mapping[int, FloatArray]
    weights: Mapping[int, float] | None
    dropouts: Mapping[int, int]

    @property
    def ids(self) -> list[int]:
        """The clients of the round, sorted."""
        return sorted(self.updates)

    @property
    def dimension(self) -> int:
        """The length of every update."""
        return int(next(iter(self.updates.values())).shape[0])

    def weight(self, client: int) -> float | None:
        """The weight of ``client``, or ``None`` for an unweighted sum."""
        return None if self.weights is None else self.weights[client]


def check_round_inputs(
    updates: Mapping[int, object],
    weights: Mapping[int, float] | None,
    dropouts: Mapping[int, int] | None,
) -> RoundInputs:
    """Validate one ``aggregate`` call's arguments."""
    arrays = check_updates(updates)
    return RoundInputs(arrays, check_weights(weights, arrays), check_dropouts(dropouts, arrays))


def check_updates(updates: Mapping[int, object]) -> dict[int, FloatArray]:
    """Validate and normalise a mapping of client updates to 1-D float64 arrays of equal length."""
    if not isinstance(updates, Mapping):
        raise ParameterError(
            f"updates must be a mapping of client id -> 1-D update, not {type(updates).__name__}"
        )
    if not updates:
        raise ParameterError("updates is empty: at least one client must take part")
    arrays: dict[int, FloatArray] = {}
    length: int | None = None
    for client_id, update in updates.items():
        if not isinstance(client_id, int) or isinstance(client_id, bool) or client_id < 0:
            raise ParameterError(f"client ids must be non-negative ints, got {client_id!r}")
        array = _real_array(client_id, update)
        if length is None:
            length = array.shape[0]
        elif array.shape[0] != length:
            raise ParameterError(
                f"update of client {client_id} has {array.shape[0]} values, expected {length}"
            )
        arrays[client_id] = array
    return arrays


def _real_array(client_id: int, update: object) -> FloatArray:
    array = real_values(update, f"update of client {client_id}")
    if array.ndim != 1:
        raise ParameterError(
            f"update of client {client_id} has shape {array.shape}; flatten it to 1-D, or pass "
            "every client's update as a mapping of names to arrays (a state_dict) or a list of "
            "arrays (Flower's NDArrays)"
        )
    return array


def real_values(values: object, what: str) -> npt.NDArray[np.float64]:
    """``values`` as a float64 array of any shape, refusing what is not finite real numbers.

    Args:
        values: an array-like of numbers (a CPU tensor that does not require grad is one).
        what: how the messages name it, e.g. ``"update of client 3"``.

    Raises:
        ParameterError: not an array of numbers, booleans, a non-real dtype, NaN or infinity.
    """
    try:
        given = np.asarray(values)
    except (TypeError, ValueError, RuntimeError) as error:
        # Ragged nested lists (ValueError), a tensor that still requires grad (RuntimeError).
        raise ParameterError(
            f"{what} is not an array of numbers ({error}); pass a 1-D "
            "sequence or array of real numbers (detach tensors and call .numpy())"
        ) from None
    if given.dtype.kind == "b":
        raise ParameterError(
            f"{what} has dtype bool; updates must be real numbers "
            "(convert with .astype(float) if 0/1 values are intended)"
        )
    if given.dtype.kind not in _REAL_KINDS:
        raise ParameterError(
            f"{what} has dtype {given.dtype}; updates must be real numbers "
            "(convert tensors with .numpy(), and take the real part explicitly if intended)"
        )
    array = given.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{what} contains NaN or infinity")
    return array


def check_weights(
    weights: Mapping[int, float] | None, client_ids: Mapping[int, object]
) -> dict[int, float] | None:
    """Validate optional weights: one non-negative finite number per client."""
    if weights is None:
        return None
    if not isinstance(weights, Mapping) or set(weights) != set(client_ids):
        raise ParameterError("weights must name exactly the clients in updates")
    return {u: _real_weight(u, w) for u, w in weights.items()}


def _real_weight(client_id: int, weight: object) -> float:
    """A real scalar as a float: ints, floats, numpy and torch scalars, Fraction, Decimal.

    Strings, booleans, complex numbers and arrays of more than one value are refused; the range
    (0 <= w <= max_weight) is checked by the encoding, the one place of the weight rule.
    """
    if (
        isinstance(weight, SupportsFloat)
        and not isinstance(weight, str | bytes | bool)
        and getattr(weight, "ndim", 0) == 0
        and getattr(getattr(weight, "dtype", None), "kind", "f") != "c"  # numpy complex
    ):
        try:
            return float(weight)
        except (TypeError, ValueError):
            pass
    raise ParameterError(
        f"weight of client {client_id} is {weight!r}; weights must be real numbers"
    )


def check_dropouts(
    dropouts: Mapping[int, int] | None, client_ids: Mapping[int, object]
) -> dict[int, int]:
    """Validate a dropout schedule: known client ids, rounds in 0..4 (3: the consistency round
    of the active model; in a semi-honest round a client dropping at 3 is silent at 4)."""
    if dropouts is None:
        return {}
    for u, r in dropouts.items():
        if u not in client_ids:
            raise ParameterError(f"dropout schedule names unknown client {u}")
        if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r <= LAST_ROUND:
            raise ParameterError(
                f"client {u} drops at round {r!r}; rounds are 0 to {LAST_ROUND} (advertise keys, "
                "share keys, masked input, consistency, unmasking)"
            )
    return dict(dropouts)
