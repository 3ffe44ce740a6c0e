"""Fixtures for masking rounds in either threat model, driven by the :class:`Simulator`.

An :class:`ActiveRound` is one round's whole setup: the trusted setup
(:func:`protocols.identity.trusted_setup`), the planner's parameters for the chosen protocol and
threat model (the public graph, planned with the roster's order seed, in the active model; a
private ring order in the semi-honest one), and random inputs. :meth:`ActiveRound.run` plays the
round with an optional dropout schedule and interceptor (the malicious server of the attack
tests) and returns the report with the plain-sum oracle over the survivors. The factories are
reached through fixtures, as in ``tests/protocols/conftest.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from protocols.graph import ThreatModel
from protocols.identity import TrustedRoster, trusted_setup
from protocols.masking import MaskingParams
from protocols.rounds import ProtocolName, RoundPolicy
from protocols.simulate import Interceptor, SimulationReport, Simulator
from secagg.encoding import ring_dtype
from secagg.hazmat.sign import IdentityKey

RingArray = npt.NDArray[np.unsignedinteger]


def ring_sum(inputs: Mapping[int, RingArray], ids: Iterable[int], modulus_bits: int) -> RingArray:
    """Sum of the given clients' inputs mod 2^modulus_bits, in the ring's dtype (the oracle)."""
    total = np.zeros(len(next(iter(inputs.values()))), dtype=np.uint64)
    for u in ids:
        total += inputs[u].astype(np.uint64)  # wraps mod 2^64, a multiple of 2^modulus_bits
    if modulus_bits < 64:
        total &= np.uint64((1 << modulus_bits) - 1)
    return total.astype(ring_dtype(modulus_bits))


@dataclass
class Outcome:
    """A played round: the report, the simulator (its clients) and the oracle."""

    report: SimulationReport
    simulator: Simulator
    inputs: Mapping[int, RingArray]
    modulus_bits: int
    expected: RingArray | None = None  # the plain sum over the reported survivors

    def assert_exact(self) -> None:
        """The round completed with exactly the plain sum of its survivors' inputs."""
        assert self.report.error is None, repr(self.report.error)
        result = self.report.result
        assert result is not None
        assert self.expected is not None
        assert result.vector.dtype == self.expected.dtype
        assert np.array_equal(result.vector, self.expected)


@dataclass
class ActiveRound:
    """One round's trusted setup, plan and inputs, in either threat model.

    Args:
        protocol: ``"secagg"`` (complete graph) or ``"secagg+"`` (Harary graph).
        num_clients: n (ids 0 .. n-1).
        threat_model: ``"active"`` or ``"semi-honest"``.
        vector_length: values per client.
        seed: seeds the inputs (the keys are fresh every time).
        degree: SecAgg+ degree override (the planner's default otherwise).
    """

    protocol: ProtocolName
    num_clients: int
    threat_model: ThreatModel
    vector_length: int = 8
    seed: int = 0
    degree: int | None = None
    roster: TrustedRoster = field(init=False)
    identities: dict[int, IdentityKey] = field(init=False)
    params: MaskingParams = field(init=False)
    inputs: dict[int, RingArray] = field(init=False)

    def __post_init__(self) -> None:
        ids = list(range(self.num_clients))
        self.roster, self.identities = trusted_setup(ids)
        session_id, round_id = secrets.token_bytes(16), 1
        policy = RoundPolicy(self.protocol, threat_model=self.threat_model, degree=self.degree)
        # The semi-honest ring order is private (a random order only the server knows).
        order_seed = (
            self.roster.order_seed(session_id, round_id) if self.threat_model == "active" else None
        )
        plan = policy.plan(ids, order_seed=order_seed)
        assert plan.graph is not None
        self.params = MaskingParams(
            session_id=session_id,
            round_id=round_id,
            graph=plan.graph,
            threshold=plan.threshold,
            vector_length=self.vector_length,
            modulus_bits=plan.modulus_bits,
            threat_model=self.threat_model,
        )
        rng = np.random.default_rng(self.seed)
        dtype = ring_dtype(plan.modulus_bits)
        self.inputs = {
            u: rng.integers(0, 2**plan.value_bits, size=self.vector_length, dtype=np.uint64).astype(
                dtype
            )
            for u in ids
        }

    @property
    def threshold(self) -> int:
        """The round's Shamir threshold t."""
        return self.params.threshold

    def simulator(
        self,
        *,
        interceptor: Interceptor | None = None,
        dropouts: Mapping[int, int] | None = None,
        through_wire: bool = False,
        inputs: Mapping[int, RingArray] | None = None,
    ) -> Simulator:
        """A simulator of this round (the trusted setup handed over in the active model)."""
        active = self.threat_model == "active"
        return Simulator(
            self.params,
            self.inputs if inputs is None else inputs,
            dropouts=dropouts,
            interceptor=interceptor,
            through_wire=through_wire,
            roster=self.roster if active else None,
            identities=self.identities if active else None,
        )

    def run(
        self,
        *,
        interceptor: Interceptor | None = None,
        dropouts: Mapping[int, int] | None = None,
        through_wire: bool = False,
    ) -> Outcome:
        """Play the round; the oracle is the plain sum over the survivors the server reports."""
        simulator = self.simulator(
            interceptor=interceptor, dropouts=dropouts, through_wire=through_wire
        )
        return self.play(simulator)

    def play(self, simulator: Simulator) -> Outcome:
        """Run a simulator of this round (e.g. one whose interceptor reads its clients)."""
        report = simulator.run()
        outcome = Outcome(report, simulator, self.inputs, self.params.modulus_bits)
        if report.result is not None:
            outcome.expected = ring_sum(
                self.inputs, report.result.survivors, self.params.modulus_bits
            )
        return outcome


@pytest.fixture(scope="session")
def active_round() -> Callable[..., ActiveRound]:
    """Factory: :class:`ActiveRound` (protocol, num_clients, threat_model, ...)."""
    return ActiveRound


@pytest.fixture(scope="session")
def oracle() -> Callable[..., RingArray]:
    """The plain-sum oracle: :func:`ring_sum`."""
    return ring_sum
