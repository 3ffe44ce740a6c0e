"""protocols: sans-I/O state machines, wire codec, simulator and aggregation backends."""

from protocols.aggregators import (
    AggregationResult,
    Aggregator,
    MaskingAggregator,
    PlainAggregator,
    RoundStats,
)
from protocols.graph import (
    GraphParameters,
    NeighbourGraph,
    complete_graph,
    harary_graph,
    secagg_plus_parameters,
    secagg_threshold,
)
from protocols.masking import (
    AggregateResult,
    ClientPhase,
    MaskingClient,
    MaskingParams,
    MaskingServer,
    ServerPhase,
)
from protocols.simulate import ROUND_NAMES, SimulationReport, Simulator

__all__ = [
    "ROUND_NAMES",
    "AggregateResult",
    "AggregationResult",
    "Aggregator",
    "ClientPhase",
    "GraphParameters",
    "MaskingAggregator",
    "MaskingClient",
    "MaskingParams",
    "MaskingServer",
    "NeighbourGraph",
    "PlainAggregator",
    "RoundStats",
    "ServerPhase",
    "SimulationReport",
    "Simulator",
    "complete_graph",
    "harary_graph",
    "secagg_plus_parameters",
    "secagg_threshold",
]
