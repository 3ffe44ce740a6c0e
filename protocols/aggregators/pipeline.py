"""The one aggregation pipeline: validate -> encode -> secure sum -> decode -> stats.

Every backend (plain, SecAgg / SecAgg+ masking, Paillier, distributed DP) runs the same
:meth:`Pipeline.aggregate`. A backend supplies two parts:

- a :class:`RoundCodec`, the client-side transform from a float update (and weight) to the
  vector the secure sum adds, and the server-side transform from the sum back to floats. The
  quantizing backends use :class:`secagg.encoding.UpdateEncoding`, so weights follow one rule
  everywhere; distributed DP plugs in its own codec (rotate, noise, round) around the same sum;
- a :class:`SecureSum`, the step that adds the clients' vectors so that the caller learns only
  the sum (a real protocol round in-process, or a plain addition for the baseline).

The pipeline itself owns the checks on the inputs, the clipping count and the round's stats, so
they exist once. It withholds nothing after the fact: a sum the secure sum returns has been
unmasked, so :meth:`Pipeline.on_release` (where DP charges its accountant) runs at once, before
anything that could fail; a sum that must not be released is refused inside the secure sum,
before anyone unmasks it.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt

from protocols.aggregators.inputs import RoundInputs, check_round_inputs
from protocols.aggregators.result import AggregationResult, FloatArray, RoundStats, UpdateLike
from protocols.aggregators.structure import flatten_updates
from protocols.simulate import ROUND_NAMES, SimulationReport
from secagg.encoding import EncodedUpdate
from secagg.errors import ParameterError

__all__ = [
    "Pipeline",
    "RoundCodec",
    "SecureSum",
    "SumOutcome",
    "SumRequest",
    "declared_max_weight",
    "ring_inputs",
    "seconds_table",
]

logger = logging.getLogger("secagg.aggregators")

Vector = npt.NDArray[np.generic]


class RoundCodec(Protocol):
    """How one round turns float updates into summable vectors, and the sum back."""

    @property
    def modulus_bits(self) -> int:
        """The ring Z_{2^k} the sum lives in (0 for a float sum)."""
        ...

    def vector_length(self, dimension: int) -> int:
        """Values per client for a float update of ``dimension`` values."""
        ...

    def encode(self, update: FloatArray, weight: float | None) -> EncodedUpdate:
        """One client's transform: clip, weight, quantize (and noise, for DP)."""
        ...

    def decode_sum(self, total: Vector, count: int) -> tuple[FloatArray, float | None]:
        """The float sum of ``count`` inputs, and the summed weight (``None`` if unweighted)."""
        ...


@dataclass(frozen=True, slots=True)
class SumRequest:
    """What a secure sum is asked to add.

    Attributes:
        inputs: client id -> encoded vector (all of ``vector_length`` values).
        vector_length: values per client.
        modulus_bits: the ring of the sum (0 for floats).
        dropouts: client id -> protocol round at which it goes silent.
    """

    inputs: Mapping[int, Vector]
    vector_length: int
    modulus_bits: int
    dropouts: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class SumOutcome:
    """What the server learns from a secure sum: the sum and who is in it.

    Attributes:
        vector: the sum of the survivors' encoded vectors.
        survivors: ids whose input is in ``vector``.
        dropped: ids whose input is not.
        report: the protocol run (timings, bytes), when a protocol ran.
    """

    vector: Vector
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    report: SimulationReport | None = field(default=None)


def ring_inputs(request: SumRequest) -> dict[int, npt.NDArray[np.unsignedinteger]]:
    """The request's inputs as ring vectors, for a protocol that sums in Z_{2^k}.

    Raises:
        ParameterError: an input is not an unsigned-integer vector (a codec bug, not user input).
    """
    checked: dict[int, npt.NDArray[np.unsignedinteger]] = {}
    for u, vector in request.inputs.items():
        if vector.dtype.kind != "u":
            raise ParameterError(f"client {u}'s encoded input has dtype {vector.dtype}, not a ring")
        # Narrowed by the dtype check just above; no copy is made.
        checked[u] = cast(npt.NDArray[np.unsignedinteger], vector)
    return checked


class SecureSum(Protocol):
    """Adds the clients' vectors so that the caller learns only their sum."""

    @property
    def session_id(self) -> bytes | None:
        """The 16-byte session of the protocol's rounds (``None`` without one)."""
        ...

    @property
    def last_report(self) -> SimulationReport | None:
        """The last protocol run, for inspection (``None`` before the first)."""
        ...

    def run(self, request: SumRequest) -> SumOutcome:
        """One round over ``request.inputs``.

        Raises:
            InsufficientSurvivorsError: too few clients were left for the sum.
        """
        ...


class Pipeline(ABC):
    """The shared ``aggregate``: subclasses say how to encode (``codec``) and how to sum.

    A subclass sets ``name`` and ``secure_sum`` and implements :meth:`codec`.
    """

    name: str
    secure_sum: SecureSum
    #: Clipping loses information the user should hear of; DP clips by design (INFO there).
    clipping_log_level: int = logging.WARNING

    @abstractmethod
    def codec(self, inputs: RoundInputs) -> RoundCodec:
        """The codec of the round over ``inputs`` (fresh per round)."""

    def aggregate(
        self,
        updates: Mapping[int, UpdateLike],
        *,
        weights: Mapping[int, float] | None = None,
        dropouts: Mapping[int, int] | None = None,
    ) -> AggregationResult:
        """Sum ``updates`` (each clipped, then weighted); see :class:`Aggregator`.

        ``state_dict`` and ``NDArrays`` updates are flattened here, once, and the result carries
        their structure (:attr:`AggregationResult.structured_total`).

        Raises:
            StructureMismatchError: the clients' ``state_dict`` / ``NDArrays`` updates differ in
                names, number of arrays or shapes.
            ParameterError: malformed updates, weights or dropouts, or a weight above
                ``max_weight``.
            InsufficientSurvivorsError: too few clients were left at some round.
        """
        flat, structure = flatten_updates(updates)
        inputs = check_round_inputs(flat, weights, dropouts)
        started = time.perf_counter()
        codec = self.codec(inputs)
        encoded = {u: codec.encode(inputs.updates[u], inputs.weight(u)) for u in inputs.ids}
        encode_seconds = (time.perf_counter() - started) / len(encoded)
        clipped = _count_clipped(encoded, self.clipping_log_level)
        request = SumRequest(
            inputs={u: e.vector for u, e in encoded.items()},
            vector_length=codec.vector_length(inputs.dimension),
            modulus_bits=codec.modulus_bits,
            dropouts=inputs.dropouts,
        )
        outcome = self.secure_sum.run(request)
        # The sum is unmasked now: whatever happens next (a decode failure included), it has
        # been released, so it is accounted for first.
        self.on_release(outcome)
        decode_started = time.perf_counter()
        total, total_weight = codec.decode_sum(outcome.vector, len(outcome.survivors))
        decode_seconds = time.perf_counter() - decode_started
        stats = RoundStats(
            seconds=self.seconds_table(outcome.report, encode_seconds, decode_seconds),
            bytes_sent=_by_party(outcome.report, "sent"),
            bytes_received=_by_party(outcome.report, "received"),
            wall_seconds=time.perf_counter() - started,
            clipped_values=clipped,
        )
        return AggregationResult(
            total, outcome.survivors, outcome.dropped, total_weight, stats, structure
        )

    @property
    def session_id(self) -> bytes | None:
        """The session every round of this aggregator belongs to (``None`` for plain sums)."""
        return self.secure_sum.session_id

    @property
    def last_report(self) -> SimulationReport | None:
        """The last protocol run (what each party sent, timings), for inspection."""
        return self.secure_sum.last_report

    def on_release(self, outcome: SumOutcome) -> None:
        """A hook run the moment the secure sum returns an unmasked sum, before it is decoded.

        The sum exists from then on, so raising here cannot withhold it: a backend that must
        refuse a sum does so inside its secure sum, before unmasking (DP sets the masking
        round's survivor floor). DP charges its accountant here.
        """
        del outcome  # By default a release costs nothing.

    def seconds_table(
        self, report: SimulationReport | None, encode_seconds: float, decode_seconds: float
    ) -> dict[str, dict[str, float]]:
        """Seconds per party and round: the server, and the mean and max over clients."""
        del encode_seconds, decode_seconds  # Only DP reports its transform's cost.
        return {} if report is None else seconds_table(report)


def declared_max_weight(max_weight: float | None, inputs: RoundInputs) -> float | None:
    """The max_weight a round encodes with: ``None`` when unweighted; weighted rounds need one.

    Raises:
        ParameterError: weights were given to an aggregator built without ``max_weight``.
    """
    if inputs.weights is None:
        return None
    if max_weight is None:
        raise ParameterError(
            "weights were given but no max_weight was declared: construct the aggregator with "
            "max_weight= the largest weight any client may have (e.g. the most examples a "
            "client holds), so that the weighted sum cannot overflow"
        )
    return max_weight


def seconds_table(report: SimulationReport) -> dict[str, dict[str, float]]:
    """Seconds per party and round of a protocol run: server, client mean, client max."""
    table: dict[str, dict[str, float]] = {"server": dict(report.server_seconds)}
    per_client = list(report.client_seconds.values())
    table["client_mean"] = {
        name: sum(c.get(name, 0.0) for c in per_client) / max(1, len(per_client))
        for name in ROUND_NAMES
    }
    table["client_max"] = {
        name: max((c.get(name, 0.0) for c in per_client), default=0.0) for name in ROUND_NAMES
    }
    return table


def _by_party(report: SimulationReport | None, direction: str) -> dict[str, int]:
    if report is None:
        return {}
    counts = report.bytes_sent if direction == "sent" else report.bytes_received
    return {str(u): b for u, b in counts.items()}


def _count_clipped(encoded: Mapping[int, EncodedUpdate], level: int) -> int:
    clipped = sum(e.clipped for e in encoded.values())
    if clipped:
        clients = sum(1 for e in encoded.values() if e.clipped)
        logger.log(
            level,
            "%d clipped values (%d clients) exceeded the clipping bound",
            clipped,
            clients,
        )
    return clipped
