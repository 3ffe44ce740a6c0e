"""The public aggregation backends behind one small interface.

``models.federated``, the Flower adapter and outside users all talk to an :class:`Aggregator`:
hand it each client's float update (and optionally a weight), say who drops out when, and get
back the float sum over the clients that finished, the summed weight, and what the round cost.
The secure backends run the real protocol in-process; the server-side code that calls
``aggregate`` receives only the sum (TFF ``factory.py`` style: small contract, stackable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from secagg.errors import InsufficientSurvivorsError, ParameterError

__all__ = [
    "AggregationResult",
    "Aggregator",
    "PlainAggregator",
    "RoundStats",
]

FloatArray = npt.NDArray[np.float64]

#: Index of the protocol round at which a client stops answering (see ``dropouts``).
#: 0 AdvertiseKeys, 1 ShareKeys, 2 MaskedInputCollection, 3 Unmasking. A client that drops at
#: round 3 has already uploaded its input, so it is still counted in the sum.
UPLOAD_ROUND = 2


@dataclass(frozen=True, slots=True)
class RoundStats:
    """What one aggregation round cost: seconds and bytes per party and protocol round."""

    seconds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    bytes_sent: Mapping[str, int] = field(default_factory=dict)
    bytes_received: Mapping[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class AggregationResult:
    """The outcome of one aggregation round.

    Attributes:
        total: float64 sum over ``survivors`` of their (weighted) updates.
        survivors: ids whose input is in ``total``.
        dropped: ids that dropped before their input counted.
        total_weight: the summed weight when weights were given, else ``None``.
        stats: timing and traffic of the round.
    """

    total: FloatArray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    total_weight: float | None = None
    stats: RoundStats = field(default_factory=RoundStats)

    @property
    def mean(self) -> FloatArray:
        """Weighted mean if weights were given, else the plain mean over survivors."""
        denominator = self.total_weight if self.total_weight is not None else len(self.survivors)
        if not denominator:
            raise InsufficientSurvivorsError("no weight survived the round; the mean is undefined")
        return self.total / float(denominator)


@runtime_checkable
class Aggregator(Protocol):
    """Anything that turns per-client updates into their sum without showing them to the caller."""

    name: str

    def aggregate(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        weights: Mapping[int, float] | None = None,
        dropouts: Mapping[int, int] | None = None,
    ) -> AggregationResult:
        """Sum ``updates`` (each multiplied by its weight when ``weights`` is given).

        Args:
            updates: client id -> 1-D float update; all the same length.
            weights: client id -> non-negative weight; the server learns only their sum.
            dropouts: client id -> protocol round (0-3) at which the client goes silent.
        """
        ...


def check_updates(updates: Mapping[int, npt.ArrayLike]) -> dict[int, FloatArray]:
    """Validate and normalise a mapping of client updates to 1-D float64 arrays of equal length."""
    if not updates:
        raise ParameterError("updates is empty: at least one client must take part")
    arrays: dict[int, FloatArray] = {}
    length: int | None = None
    for client_id, update in updates.items():
        if not isinstance(client_id, int) or isinstance(client_id, bool) or client_id < 0:
            raise ParameterError(f"client ids must be non-negative ints, got {client_id!r}")
        array = np.asarray(update, dtype=np.float64)
        if array.ndim != 1:
            raise ParameterError(
                f"update of client {client_id} has shape {array.shape}; flatten it to 1-D"
            )
        if length is None:
            length = array.shape[0]
        elif array.shape[0] != length:
            raise ParameterError(
                f"update of client {client_id} has {array.shape[0]} values, expected {length}"
            )
        if not np.all(np.isfinite(array)):
            raise ParameterError(f"update of client {client_id} contains NaN or infinity")
        arrays[client_id] = array
    return arrays


def check_weights(
    weights: Mapping[int, float] | None, client_ids: Mapping[int, object]
) -> dict[int, float] | None:
    """Validate optional weights: one non-negative finite number per client."""
    if weights is None:
        return None
    if set(weights) != set(client_ids):
        raise ParameterError("weights must name exactly the clients in updates")
    checked = {u: float(w) for u, w in weights.items()}
    for u, w in checked.items():
        if not np.isfinite(w) or w < 0:
            raise ParameterError(f"weight of client {u} is {w}; weights must be finite and >= 0")
    return checked


def check_dropouts(
    dropouts: Mapping[int, int] | None, client_ids: Mapping[int, object]
) -> dict[int, int]:
    """Validate a dropout schedule: known client ids, rounds in 0..3."""
    if dropouts is None:
        return {}
    for u, r in dropouts.items():
        if u not in client_ids:
            raise ParameterError(f"dropout schedule names unknown client {u}")
        if not isinstance(r, int) or not 0 <= r <= 3:
            raise ParameterError(f"client {u} drops at round {r!r}; rounds are 0, 1, 2 or 3")
    return dict(dropouts)


class PlainAggregator:
    """Sums the float updates in the clear: the baseline every secure backend is measured against."""

    name = "plain"

    def aggregate(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        weights: Mapping[int, float] | None = None,
        dropouts: Mapping[int, int] | None = None,
    ) -> AggregationResult:
        """Sum the updates of clients that did not drop before uploading (round 2)."""
        arrays = check_updates(updates)
        checked_weights = check_weights(weights, arrays)
        schedule = check_dropouts(dropouts, arrays)
        survivors = tuple(sorted(u for u in arrays if schedule.get(u, 4) > UPLOAD_ROUND))
        dropped = tuple(sorted(set(arrays) - set(survivors)))
        length = next(iter(arrays.values())).shape[0]
        total = np.zeros(length, dtype=np.float64)
        for u in survivors:
            scale = 1.0 if checked_weights is None else checked_weights[u]
            total += scale * arrays[u]
        total_weight = (
            None if checked_weights is None else sum(checked_weights[u] for u in survivors)
        )
        return AggregationResult(total, survivors, dropped, total_weight)
