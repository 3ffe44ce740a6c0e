"""What one aggregation round gives back: the sum, who is in it, and what the round cost.

:class:`AggregationResult` is everything the server-side caller of an aggregator learns; it
never holds a single client's input. :class:`Aggregator` is the small contract that
``models.federated``, the Flower adapter and outside users program against (TFF ``factory.py``
style: one method, stackable backends). A client's update may be a 1-D array, a PyTorch
``state_dict`` or Flower's ``NDArrays`` (:data:`UpdateLike`); :attr:`AggregationResult.total`
is always the flat float64 sum, and :attr:`AggregationResult.structured_total` the same sum in
the form the clients sent (see :mod:`protocols.aggregators.structure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from secagg.errors import InsufficientSurvivorsError

if TYPE_CHECKING:
    from protocols.aggregators.structure import UpdateStructure

__all__ = [
    "AggregationResult",
    "Aggregator",
    "FloatArray",
    "RoundStats",
    "StructuredSum",
    "UpdateLike",
]

FloatArray = npt.NDArray[np.float64]
#: One client's update: a 1-D array-like of real numbers, a mapping of names to arrays or
#: tensors (a PyTorch ``state_dict``), or a list of numpy arrays (Flower's ``NDArrays``).
UpdateLike = npt.ArrayLike | Mapping[str, object] | Sequence[object]
#: A round's sum in the clients' own form: a 1-D float64 array for 1-D updates, a list of arrays
#: (or tensors) for ``NDArrays``, a dict of names -> tensors (or arrays) for a ``state_dict``.
StructuredSum = FloatArray | list[object] | dict[str, object]


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
        total: float64 sum over ``survivors`` of their clipped (and weighted) updates, always
            flat: for ``state_dict`` or ``NDArrays`` updates, the entries flattened in order and
            concatenated (:attr:`structured_total` gives it back in their form).
        survivors: ids whose input is in ``total``.
        dropped: ids that dropped before their input counted.
        total_weight: the summed weight when weights were given, else ``None``.
        stats: timing, traffic and clipping of the round.
        structure: the structure the clients' updates shared (``None`` for 1-D updates).
    """

    total: FloatArray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    total_weight: float | None = None
    stats: RoundStats = field(default_factory=RoundStats)
    structure: UpdateStructure | None = None

    @property
    def mean(self) -> FloatArray:
        """Weighted mean if weights were given, else the plain mean over survivors."""
        denominator = self.total_weight if self.total_weight is not None else len(self.survivors)
        if not denominator:
            raise InsufficientSurvivorsError("no weight survived the round; the mean is undefined")
        return self.total / float(denominator)

    @property
    def structured_total(self) -> StructuredSum:
        """:attr:`total` in the form the clients sent their updates.

        A ``state_dict`` comes back as a ``dict`` with the same names in the same order, and
        ``NDArrays`` as a ``list``, each entry of its shape: a CPU tensor for a tensor entry, a
        numpy array otherwise, float32 where the first client's entry was float32 and float64
        for every other dtype. For 1-D updates it is :attr:`total` itself. Each access builds
        new arrays.
        """
        return self.total if self.structure is None else self.structure.unflatten(self.total)

    @property
    def structured_mean(self) -> StructuredSum:
        """:attr:`mean` in the form the clients sent their updates, as
        :attr:`structured_total` is."""
        mean = self.mean
        return mean if self.structure is None else self.structure.unflatten(mean)


@runtime_checkable
class Aggregator(Protocol):
    """Anything that turns per-client updates into their sum without showing them to the caller."""

    name: str

    def aggregate(
        self,
        updates: Mapping[int, UpdateLike],
        *,
        weights: Mapping[int, float] | None = None,
        dropouts: Mapping[int, int] | None = None,
    ) -> AggregationResult:
        """Sum ``updates`` (each clipped, then multiplied by its weight when ``weights`` is given).

        Args:
            updates: client id -> update: a 1-D float array, all of one length, or a PyTorch
                ``state_dict`` or Flower ``NDArrays``, all with the same names (or number of
                arrays) and shapes; :attr:`AggregationResult.structured_total` gives the sum
                back in that form.
            weights: client id -> weight in [0, max_weight]; the server learns only their sum.
            dropouts: client id -> protocol round (0-3) at which the client goes silent.
        """
        ...
