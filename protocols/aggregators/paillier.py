"""Packed Paillier behind the aggregator contract, with a separate (in-process) key holder.

:class:`PaillierSum` is the secure-sum step: clients pack their ring vectors into slots with
headroom for ``max_clients`` inputs and encrypt them, the server multiplies ciphertexts and the
key holder decrypts only the aggregate. :class:`PaillierAggregator` plugs it into the shared
pipeline with the shared :class:`~secagg.encoding.UpdateEncoding`.
"""

from __future__ import annotations

import secrets

from protocols.aggregators.inputs import RoundInputs
from protocols.aggregators.pipeline import (
    Pipeline,
    SumOutcome,
    SumRequest,
    declared_max_weight,
    ring_inputs,
)
from protocols.paillier import KeyHolder, PaillierParams, PaillierSimulator
from protocols.simulate import SimulationReport
from secagg.encoding import QuantizationScheme, UpdateEncoding
from secagg.errors import ParameterError
from secagg.paillier_keys import PaillierKeypair, RandomnessMode, generate_paillier_keypair

__all__ = ["PaillierAggregator", "PaillierSum"]


class PaillierSum:
    """The secure-sum step of a Paillier round (one session, a fresh round id per call).

    Args:
        key_holder: the party that decrypts aggregates (in-process here).
        value_bits, max_clients, min_contributors: the packing and the key holder's rule.
        mode, processes: encryption randomness and worker processes.
        through_wire: round-trip every message through the binary codec.
    """

    def __init__(
        self,
        key_holder: KeyHolder,
        *,
        value_bits: int,
        max_clients: int,
        min_contributors: int,
        mode: RandomnessMode,
        processes: int | None,
        through_wire: bool,
    ) -> None:
        self.key_holder = key_holder
        self.session_id = key_holder.session_id
        self.value_bits = value_bits
        self.max_clients = max_clients
        self.min_contributors = min_contributors
        self.mode = mode
        self.processes = processes
        self.through_wire = through_wire
        self.last_report: SimulationReport | None = None
        self._next_round = 0

    def run(self, request: SumRequest) -> SumOutcome:
        """One Paillier round over the encoded inputs; the caller learns only the sum."""
        ids = tuple(sorted(request.inputs))
        params = PaillierParams(
            session_id=self.session_id,
            round_id=self._next_round,
            clients=ids,
            vector_length=request.vector_length,
            value_bits=self.value_bits,
            max_clients=self.max_clients,
            min_contributors=min(self.min_contributors, len(ids)),
        )
        self._next_round += 1
        report = PaillierSimulator(
            params,
            ring_inputs(request),
            self.key_holder,
            mode=self.mode,
            processes=self.processes,
            dropouts=request.dropouts,
            through_wire=self.through_wire,
        ).run()
        self.last_report = report
        if report.error is not None:
            raise report.error
        assert report.result is not None
        return SumOutcome(
            report.result.vector, report.result.survivors, report.result.dropped, report
        )


class PaillierAggregator(Pipeline):
    """Secure aggregation with packed Paillier encryption and a separate key holder.

    Clients clip, weight and quantize exactly as for masking, pack their values into slots with
    headroom for ``max_clients`` inputs and encrypt under the key holder's public key; the
    in-process server multiplies ciphertexts and the key holder decrypts only the aggregate
    (one per round).

    Args:
        clip, value_bits: quantization, as for :class:`MaskingAggregator`.
        max_weight: the largest weight a client may have; required when weights are given.
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
        max_weight: float | None = None,
        key_bits: int = 2048,
        mode: RandomnessMode = RandomnessMode.FRESH,
        max_clients: int = 1024,
        min_contributors: int = 2,
        processes: int | None = 1,
        keypair: PaillierKeypair | None = None,
        through_wire: bool = False,
    ) -> None:
        self.scheme = QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=max_clients)
        UpdateEncoding(self.scheme, max_weight)
        self.clip = clip
        self.value_bits = value_bits
        self.max_weight = max_weight
        keys = keypair or generate_paillier_keypair(key_bits, mode=mode)
        # In production the key holder is a separate party; here it runs in-process.
        self.key_holder = KeyHolder(
            keys,
            session_id=secrets.token_bytes(16),
            value_bits=value_bits,
            max_clients=max_clients,
            min_contributors=min_contributors,
            processes=processes,
        )
        self.secure_sum: PaillierSum = PaillierSum(
            self.key_holder,
            value_bits=value_bits,
            max_clients=max_clients,
            min_contributors=min_contributors,
            mode=mode,
            processes=processes,
            through_wire=through_wire,
        )

    @property
    def max_clients(self) -> int:
        """Slot headroom: the most inputs one aggregate may sum."""
        return self.secure_sum.max_clients

    @property
    def min_contributors(self) -> int:
        """The fewest inputs the key holder decrypts an aggregate of."""
        return self.secure_sum.min_contributors

    @property
    def mode(self) -> RandomnessMode:
        """How clients draw their encryption randomness."""
        return self.secure_sum.mode

    @property
    def processes(self) -> int | None:
        """Worker processes for encryption and decryption."""
        return self.secure_sum.processes

    @property
    def through_wire(self) -> bool:
        """Whether every message round-trips through the binary codec."""
        return self.secure_sum.through_wire

    def codec(self, inputs: RoundInputs) -> UpdateEncoding:
        """The shared update encoding, with headroom for ``max_clients`` inputs."""
        most = self.max_clients
        if len(inputs.updates) > most:
            raise ParameterError(
                f"{len(inputs.updates)} clients exceed max_clients={most}, the packing headroom"
            )
        return UpdateEncoding(self.scheme, declared_max_weight(self.max_weight, inputs))
