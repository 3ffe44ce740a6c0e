"""The plaintext baseline: the same clipping and weighting as every secure backend, no protection.

``PlainAggregator`` follows the one weight rule of :class:`secagg.encoding.UpdateEncoding`
(clip the update, bound the weight by ``max_weight``) but adds the float vectors directly, so
the secure backends can be measured against it: they must return its total and mean within their
quantization bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protocols.aggregators.inputs import UPLOAD_ROUND, RoundInputs
from protocols.aggregators.pipeline import (
    Pipeline,
    SumOutcome,
    SumRequest,
    Vector,
    declared_max_weight,
)
from protocols.aggregators.result import FloatArray
from protocols.defaults import DEFAULT_CLIP
from protocols.simulate import SimulationReport
from secagg.encoding import (
    EncodedUpdate,
    check_clip,
    check_max_weight,
    check_weight,
    clip_update,
)
from secagg.errors import ParameterError

__all__ = ["PlainAggregator", "PlainCodec", "PlainSum"]


@dataclass(frozen=True, slots=True)
class PlainCodec:
    """Clip and weight in floats; the weight rides along as one more coordinate."""

    clip: float
    max_weight: float | None

    def __post_init__(self) -> None:
        check_clip(self.clip)
        check_max_weight(self.max_weight)

    @property
    def modulus_bits(self) -> int:
        """A float sum has no ring."""
        return 0

    def vector_length(self, dimension: int) -> int:
        """``dimension``, plus one coordinate for the weight when weighted."""
        return dimension + (self.max_weight is not None)

    def encode(self, update: FloatArray, weight: float | None) -> EncodedUpdate:
        """w * clip(x), followed by w (or clip(x) alone when unweighted)."""
        clipped_update, clipped = clip_update(update, self.clip)
        if self.max_weight is None:
            return EncodedUpdate(clipped_update, clipped)
        checked = check_weight(_weight(weight), self.max_weight)
        return EncodedUpdate(np.append(checked * clipped_update, checked), clipped)

    def decode_sum(self, total: Vector, count: int) -> tuple[FloatArray, float | None]:
        """Split the summed weight off the summed update."""
        del count
        values = np.asarray(total, dtype=np.float64)
        if self.max_weight is None:
            return values, None
        return values[:-1], float(values[-1])


def _weight(weight: float | None) -> float:
    if weight is None:
        raise ParameterError("this aggregator is weighted: every client needs a weight")
    return weight


class PlainSum:
    """Adds the float vectors of the clients that did not drop before uploading (round 2)."""

    session_id: bytes | None = None
    last_report: SimulationReport | None = None

    def run(self, request: SumRequest) -> SumOutcome:
        """The float sum of the uploads."""
        ids = sorted(request.inputs)
        survivors = tuple(u for u in ids if request.dropouts.get(u, 4) > UPLOAD_ROUND)
        total: npt.NDArray[np.float64] = np.zeros(request.vector_length, dtype=np.float64)
        for u in survivors:
            total += np.asarray(request.inputs[u], dtype=np.float64)
        return SumOutcome(total, survivors, tuple(sorted(set(ids) - set(survivors))))


class PlainAggregator(Pipeline):
    """Sums the float updates in the clear: the baseline the secure backends are measured by.

    Args:
        clip: per-coordinate clipping bound of the updates (as for the secure backends;
            default :data:`~protocols.defaults.DEFAULT_CLIP`).
        max_weight: the largest weight a client may have; required when weights are given.
    """

    name = "plain"

    def __init__(self, *, clip: float = DEFAULT_CLIP, max_weight: float | None = None) -> None:
        self.clip = clip
        self.max_weight = max_weight
        self.secure_sum = PlainSum()
        PlainCodec(clip, max_weight)

    def codec(self, inputs: RoundInputs) -> PlainCodec:
        """Clipping and weighting in floats."""
        return PlainCodec(self.clip, declared_max_weight(self.max_weight, inputs))
