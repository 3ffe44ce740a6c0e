"""The public aggregation backends behind one small interface.

``models.federated``, the Flower adapter and outside users all talk to an :class:`Aggregator`:
hand it each client's float update (and optionally a weight), say who drops out when, and get
back the float sum over the clients that finished, the summed weight, and what the round cost.
The secure backends run the real protocol in-process; the server-side code that calls
``aggregate`` receives only the sum (TFF ``factory.py`` style: small contract, stackable).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from protocols.graph import (
    NeighbourGraph,
    complete_graph,
    harary_graph,
    secagg_plus_parameters,
    secagg_threshold,
)
from protocols.masking import MaskingParams
from protocols.paillier import KeyHolder, PaillierParams
from protocols.simulate import ROUND_NAMES, PaillierSimulator, SimulationReport, Simulator
from secagg.encoding import QuantizationScheme
from secagg.errors import InsufficientSurvivorsError, ParameterError
from secagg.hazmat import paillier as hazmat_paillier

__all__ = [
    "AggregationResult",
    "Aggregator",
    "MaskingAggregator",
    "PaillierAggregator",
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


def check_round_inputs(
    updates: Mapping[int, npt.ArrayLike],
    weights: Mapping[int, float] | None,
    dropouts: Mapping[int, int] | None,
) -> tuple[dict[int, FloatArray], dict[int, float] | None, dict[int, int]]:
    """Validate one ``aggregate`` call's arguments: (arrays, weights, dropout schedule)."""
    arrays = check_updates(updates)
    return arrays, check_weights(weights, arrays), check_dropouts(dropouts, arrays)


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
    """Sums the float updates in the clear: the baseline the secure backends are measured by."""

    name = "plain"

    def aggregate(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        weights: Mapping[int, float] | None = None,
        dropouts: Mapping[int, int] | None = None,
    ) -> AggregationResult:
        """Sum the updates of clients that did not drop before uploading (round 2)."""
        arrays, checked_weights, schedule = check_round_inputs(updates, weights, dropouts)
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


GraphChoice = Literal["complete", "harary"] | Callable[[Sequence[int]], NeighbourGraph]


class MaskingAggregator:
    """Secure aggregation by masking: SecAgg on the complete graph, SecAgg+ on a Harary graph.

    Each client clips its (weighted) update to [-clip, clip], quantizes it with stochastic
    rounding into ``value_bits`` bits, appends its weight as one more ring coordinate when
    weights are given, and runs the real protocol in-process against a :class:`MaskingServer`.
    The caller gets back only what the server learns: the float sum (and summed weight).

    Args:
        graph: ``"complete"`` (SecAgg), ``"harary"`` (SecAgg+, k and t from
            :func:`~protocols.graph.secagg_plus_parameters`) or a function ids -> graph.
        clip: per-coordinate clipping bound of the updates.
        value_bits: quantization bits per value; the ring adds ceil(log2 n) bits of headroom.
        threshold: Shamir threshold; defaults to the graph's recommended value.
        degree: Harary degree override (SecAgg+ only).
        dropout_fraction, corrupt_fraction: tolerances used to pick k and t for SecAgg+.
        through_wire: round-trip every message through the binary codec (as a real transport).
    """

    def __init__(
        self,
        graph: GraphChoice = "complete",
        *,
        clip: float = 1.0,
        value_bits: int = 16,
        threshold: int | None = None,
        degree: int | None = None,
        dropout_fraction: float = 0.05,
        corrupt_fraction: float = 0.05,
        through_wire: bool = False,
    ) -> None:
        if not callable(graph) and graph not in ("complete", "harary"):
            raise ParameterError(f"graph must be 'complete', 'harary' or a callable, not {graph!r}")
        if degree is not None and graph != "harary":
            raise ParameterError("degree applies only to graph='harary'")
        self.graph = graph
        self.clip = clip
        self.value_bits = value_bits
        self.threshold = threshold
        self.degree = degree
        self.dropout_fraction = dropout_fraction
        self.corrupt_fraction = corrupt_fraction
        self.through_wire = through_wire
        self.name = "secagg+" if graph == "harary" else "secagg"
        self.session_id = secrets.token_bytes(16)
        self._next_round = 0
        self.last_report: SimulationReport | None = None
        # Fail on bad clip / bits now rather than at the first round.
        QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=2)

    def build_graph(self, ids: Sequence[int]) -> tuple[NeighbourGraph, int]:
        """The neighbour graph and threshold this aggregator uses for ``ids``."""
        n = len(ids)
        if callable(self.graph):
            graph = self.graph(ids)
            threshold = self.threshold or secagg_threshold(graph.max_degree + 1)
        elif self.graph == "complete":
            graph = complete_graph(ids)
            threshold = self.threshold or secagg_threshold(n)
        else:
            chosen = secagg_plus_parameters(
                n,
                dropout_fraction=self.dropout_fraction,
                corrupt_fraction=self.corrupt_fraction,
            )
            degree = self.degree or chosen.degree
            graph = harary_graph(ids, degree)
            threshold = self.threshold or (
                chosen.threshold if degree == chosen.degree else secagg_threshold(degree + 1)
            )
        return graph, threshold

    def aggregate(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        weights: Mapping[int, float] | None = None,
        dropouts: Mapping[int, int] | None = None,
    ) -> AggregationResult:
        """Run one secure round over ``updates``; see :class:`Aggregator`.

        Raises:
            InsufficientSurvivorsError: fewer than ``threshold`` clients were left at some round.
        """
        arrays, checked_weights, schedule = check_round_inputs(updates, weights, dropouts)
        ids = sorted(arrays)
        scheme = QuantizationScheme(
            clip=self.clip, value_bits=self.value_bits, num_clients=len(ids)
        )
        length = next(iter(arrays.values())).shape[0]
        inputs = _encode_all(scheme, arrays, checked_weights)
        graph, threshold = self.build_graph(ids)
        params = MaskingParams(
            session_id=self.session_id,
            round_id=self._next_round,
            graph=graph,
            threshold=threshold,
            vector_length=length + (checked_weights is not None),
            modulus_bits=scheme.modulus_bits,
        )
        self._next_round += 1
        started = time.perf_counter()
        report = Simulator(params, inputs, dropouts=schedule, through_wire=self.through_wire).run()
        self.last_report = report
        return _decode_result(report, scheme, length, checked_weights is not None, started)


def _encode_all(
    scheme: QuantizationScheme,
    arrays: Mapping[int, FloatArray],
    weights: Mapping[int, float] | None,
) -> dict[int, npt.NDArray[np.unsignedinteger]]:
    return {
        u: _client_encode(scheme, arrays[u], None if weights is None else weights[u])
        for u in sorted(arrays)
    }


def _decode_result(
    report: SimulationReport,
    scheme: QuantizationScheme,
    length: int,
    weighted: bool,
    started: float,
) -> AggregationResult:
    """What the server-side caller gets: the decoded float sum, never a single input."""
    if report.error is not None:
        raise report.error
    assert report.result is not None
    integer_sum = report.result.vector
    survivors = report.result.survivors
    total = scheme.dequantize_sum(integer_sum[:length], len(survivors))
    total_weight = float(integer_sum[length]) if weighted else None
    stats = RoundStats(
        seconds=_seconds_table(report),
        bytes_sent={str(u): b for u, b in report.bytes_sent.items()},
        bytes_received={str(u): b for u, b in report.bytes_received.items()},
        wall_seconds=time.perf_counter() - started,
    )
    return AggregationResult(total, survivors, report.result.dropped, total_weight, stats)


def _client_encode(
    scheme: QuantizationScheme, update: FloatArray, weight: float | None
) -> npt.NDArray[np.unsignedinteger]:
    """What each client does before masking: weight, clip, quantize, append the weight."""
    if weight is None:
        return scheme.quantize(update)
    if weight > scheme.levels:
        raise ParameterError(
            f"weight {weight} exceeds {scheme.levels}, the largest value of a "
            f"{scheme.value_bits}-bit coordinate; rescale the weights"
        )
    encoded_weight = np.floor(weight + _uniform_rounding()).astype(scheme.dtype)
    return np.concatenate([scheme.quantize(weight * update), [encoded_weight]]).astype(scheme.dtype)


class PaillierAggregator:
    """Secure aggregation with packed Paillier encryption and a separate key holder.

    Clients quantize exactly as for masking, pack their values into slots with headroom for
    ``max_clients`` inputs and encrypt under the key holder's public key; the in-process server
    multiplies ciphertexts and the key holder decrypts only the aggregate (one per round).

    Args:
        clip, value_bits: quantization, as for :class:`MaskingAggregator`.
        key_bits: 2048 (default) or 3072.
        mode: ``RandomnessMode.FRESH`` (default, standard assumption) or ``DJN`` (faster,
            extra assumption; see :class:`secagg.hazmat.paillier.DJNParameters`).
        max_clients: slot headroom: the most inputs one aggregate may sum.
        min_contributors: the key holder refuses aggregates of fewer inputs.
        processes: worker processes for encryption and decryption (None: every core).
        keypair: an existing key pair (tests pass small keys); generated when omitted.
        through_wire: round-trip every message through the binary codec.
    """

    name = "paillier"

    def __init__(
        self,
        *,
        clip: float = 1.0,
        value_bits: int = 16,
        key_bits: int = 2048,
        mode: hazmat_paillier.RandomnessMode = hazmat_paillier.RandomnessMode.FRESH,
        max_clients: int = 1024,
        min_contributors: int = 2,
        processes: int | None = 1,
        keypair: hazmat_paillier.PaillierKeypair | None = None,
        through_wire: bool = False,
    ) -> None:
        QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=max_clients)
        self.clip = clip
        self.value_bits = value_bits
        self.mode = mode
        self.max_clients = max_clients
        self.min_contributors = min_contributors
        self.processes = processes
        self.through_wire = through_wire
        self.session_id = secrets.token_bytes(16)
        keys = keypair or hazmat_paillier.generate_keypair(
            key_bits, djn=mode is hazmat_paillier.RandomnessMode.DJN
        )
        # In production the key holder is a separate party; here it runs in-process.
        self.key_holder = KeyHolder(
            keys,
            session_id=self.session_id,
            value_bits=value_bits,
            max_clients=max_clients,
            min_contributors=min_contributors,
            processes=processes,
        )
        self._next_round = 0
        self.last_report: SimulationReport | None = None

    def aggregate(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        weights: Mapping[int, float] | None = None,
        dropouts: Mapping[int, int] | None = None,
    ) -> AggregationResult:
        """Run one Paillier round over ``updates``; see :class:`Aggregator`."""
        arrays, checked_weights, schedule = check_round_inputs(updates, weights, dropouts)
        ids = tuple(sorted(arrays))
        if len(ids) > self.max_clients:
            raise ParameterError(
                f"{len(ids)} clients exceed max_clients={self.max_clients}, the packing headroom"
            )
        scheme = QuantizationScheme(
            clip=self.clip, value_bits=self.value_bits, num_clients=self.max_clients
        )
        length = next(iter(arrays.values())).shape[0]
        inputs = _encode_all(scheme, arrays, checked_weights)
        params = PaillierParams(
            session_id=self.session_id,
            round_id=self._next_round,
            clients=ids,
            vector_length=length + (checked_weights is not None),
            value_bits=self.value_bits,
            max_clients=self.max_clients,
            min_contributors=min(self.min_contributors, len(ids)),
        )
        self._next_round += 1
        started = time.perf_counter()
        report = PaillierSimulator(
            params,
            inputs,
            self.key_holder,
            mode=self.mode,
            processes=self.processes,
            dropouts=schedule,
            through_wire=self.through_wire,
        ).run()
        self.last_report = report
        return _decode_result(report, scheme, length, checked_weights is not None, started)


def _uniform_rounding() -> float:
    return secrets.randbits(53) / 2**53


def _seconds_table(report: SimulationReport) -> dict[str, dict[str, float]]:
    """Seconds per party and round: the server, and the mean and max over clients."""
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
