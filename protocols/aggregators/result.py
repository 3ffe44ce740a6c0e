"""What one aggregation round gives back: the sum, who is in it, and what the round cost.

:class:`AggregationResult` is everything the server-side caller of an aggregator learns; it
never holds a single client's input. :class:`Aggregator` is the small contract that
``models.federated``, the Flower adapter and outside users program against (TFF ``factory.py``
style: one method, stackable backends).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from secagg.errors import InsufficientSurvivorsError

__all__ = ["AggregationResult", "Aggregator", "FloatArray", "RoundStats"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RoundStats:
    """What one aggregation round cost, and how much of the input was clipped.

    Attributes:
        seconds: seconds per party (``server``, ``client_mean``, ``client_max``) and round.
        bytes_sent: bytes each party sent (``"server"`` and client ids as strings).
        bytes_received: bytes each party received.
        wall_seconds: the whole call, encoding and decoding included.
        clipped_values: how many input values the clients clipped to the bound before encoding
            (each client counts its own; the in-process aggregator adds them up). Under
            distributed DP, which clips the L2 norm, it counts the updates scaled down.
    """

    seconds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    bytes_sent: Mapping[str, int] = field(default_factory=dict)
    bytes_received: Mapping[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    clipped_values: int = 0


@dataclass(frozen=True, slots=True)
class AggregationResult:
    """The outcome of one aggregation round.

    Attributes:
        total: float64 sum over ``survivors`` of their clipped (and weighted) updates.
        survivors: ids whose input is in ``total``.
        dropped: ids that dropped before their input counted.
        total_weight: the summed weight when weights were given, else ``None``.
        stats: timing, traffic and clipping of the round.
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
        """Sum ``updates`` (each clipped, then multiplied by its weight when ``weights`` is given).

        Args:
            updates: client id -> 1-D float update; all the same length.
            weights: client id -> weight in [0, max_weight]; the server learns only their sum.
            dropouts: client id -> protocol round (0-3) at which the client goes silent.
        """
        ...
