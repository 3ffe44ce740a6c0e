"""What a masking round is configured with, and what its server outputs.

:class:`MaskingParams` is checked at construction (session, ids, threshold against the smallest
neighbourhood, ring size, survivor floor), so a server can only be built for a round that can
complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols._machine import check_session
from protocols.graph import NeighbourGraph, ThreatModel
from protocols.masking.keys import RingArray
from protocols.messages import MAX_PARTY_ID
from protocols.rounds import check_min_survivors, check_threat_model
from secagg.encoding import ring_dtype
from secagg.errors import ParameterError

__all__ = ["AggregateResult", "MaskingParams"]


@dataclass(frozen=True, slots=True)
class MaskingParams:
    """The server's configuration of one masking round.

    Attributes:
        session_id: 16 random bytes naming the session (e.g. ``secrets.token_bytes(16)``).
        round_id: the protocol instance within the session; never reuse one.
        graph: the neighbour graph; complete for SecAgg, Harary for SecAgg+.
        threshold: Shamir threshold t; every neighbourhood (with its owner) must keep t members.
        vector_length: number of ring values each client uploads.
        modulus_bits: k, the ring Z_{2^k} (from :class:`secagg.encoding.QuantizationScheme`).
        threat_model: ``"active"`` (default: signed keys against a trusted roster, the public
            graph, the consistency round) or ``"semi-honest"`` (the server follows the
            protocol; no PKI). See docs/threat-model.md.
        min_survivors: the fewest uploads the server unmasks: with fewer, it aborts before any
            unmask request (0: no floor beyond the threshold). Distributed DP sets it to the
            noise shares every released sum needs.
    """

    session_id: bytes
    round_id: int
    graph: NeighbourGraph
    threshold: int
    vector_length: int
    modulus_bits: int
    threat_model: ThreatModel = "active"
    min_survivors: int = 0

    def __post_init__(self) -> None:
        check_session(self.session_id, self.round_id)
        check_threat_model(self.threat_model)
        check_min_survivors(self.min_survivors)
        nodes = self.graph.nodes
        if len(nodes) < 2 or nodes[0] < 0 or nodes[-1] > MAX_PARTY_ID:
            raise ParameterError(f"client ids must be in [0, {MAX_PARTY_ID}], at least two")
        smallest = min(len(p) for p in self.graph.neighbours.values()) + 1
        if not 2 <= self.threshold <= smallest:
            raise ParameterError(
                f"threshold {self.threshold} must be in [2, {smallest}] (the smallest "
                "neighbourhood including its owner)"
            )
        if self.min_survivors > len(nodes):
            raise ParameterError(
                f"min_survivors {self.min_survivors} exceeds the {len(nodes)} clients of the "
                "round: it could never be unmasked"
            )
        if self.vector_length < 1:
            raise ParameterError(f"vector_length must be >= 1, got {self.vector_length}")
        ring_dtype(self.modulus_bits)


@dataclass(frozen=True, slots=True, eq=False)
class AggregateResult:
    """The server's output: the ring sum of the survivors' inputs, and who they are.

    Attributes:
        vector: the sum, mod 2^k, of the inputs of ``survivors``.
        survivors: the clients whose inputs are in the sum.
        dropped: every other client of the round.
        dropped_at: client id -> protocol round (0-4) in which it fell out.
        misbehaved: client id -> what it did wrong (left out, or its bad shares unused).
    """

    vector: RingArray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    dropped_at: dict[int, int] = field(default_factory=dict)
    misbehaved: dict[int, str] = field(default_factory=dict)
