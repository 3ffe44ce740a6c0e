"""One run of one grid point: the same inputs and dropouts for every protocol, then the round.

Why this module exists: an overhead ratio means something only when the plain sum and every
secure protocol ran on the same data, with the same clients dropping at the same round. A
:class:`RunContext` derives both from the benchmark's seed and the grid point alone, and each
runner plays one real round of its protocol through this project's code (the in-memory
simulators, the Paillier key holder, phe's own key objects), metered per party and round, then
checks the result against the plain sum of the same inputs.

Rules:

- Every protocol's client time includes quantizing its float update; the plain baseline is
  "quantize, send the ring vector in the clear, the server adds it".
- Graph, degree and threshold come from the round planner (:meth:`RunContext.policy`), in the
  grid point's threat model; a masking round is planned, and against an active server its
  trusted setup played (identity keys, roster: out of band, so untimed), by
  :func:`protocols.simulate.plan_masking_round`.
- Slow paths run on a smaller d and say by how much to scale: packed Paillier on about
  ``paillier_max_dim`` values (whole ciphertexts), scaled by the ratio of ciphertext counts;
  phe's per-value path on ``phe_max_dim`` values, scaled linearly, and only ``phe_clients``
  clients encrypt (a client's cost does not depend on the others).
- The Paillier key pair is generated once per benchmark (:class:`PaillierKeys`), not per round.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from protocols import wire
from protocols.bench.config import PLAIN, SEMI_HONEST, BenchConfig, dropped_count
from protocols.bench.metering import (
    KEY_HOLDER,
    SERVER,
    UPLOAD_ROUND,
    Meter,
    MeteredKeyHolder,
    MeteredPaillierSimulator,
    MeteredSimulator,
)
from protocols.identity import trusted_setup
from protocols.messages import SERVER_ID, MaskedInput
from protocols.paillier import PaillierParams
from protocols.rounds import RoundPolicy, ThreatModel
from protocols.simulate import ROUND_NAMES, UNMASKING_ROUND, SimulationReport, plan_masking_round
from secagg.encoding import QuantizationScheme
from secagg.hazmat.paillier import ciphertext_byte_length
from secagg.packing import PackingScheme
from secagg.paillier_keys import PaillierKeypair, RandomnessMode, generate_paillier_keypair

__all__ = [
    "RUNNERS",
    "FloatArray",
    "GridPoint",
    "Outcome",
    "PaillierKeys",
    "RingArray",
    "RunContext",
    "Runner",
    "Scenario",
    "report_outcome",
]

FloatArray = npt.NDArray[np.float64]
RingArray = npt.NDArray[np.unsignedinteger]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One cell of the grid without the protocol: every protocol runs on the same cell."""

    clients: int
    dim: int
    dropout: float
    drop_at: int

    def label(self) -> str:
        """Short text for tables and progress bars."""
        return f"n={self.clients} d={self.dim} drop={self.dropout:.0%}@r{self.drop_at}"


@dataclass(frozen=True, slots=True)
class GridPoint:
    """A scenario and the protocol run on it, in a threat model if it is a masking protocol.

    Attributes:
        scenario: the grid cell.
        protocol: the protocol.
        threat_model: ``"semi-honest"`` or ``"active"`` for SecAgg and SecAgg+; ``None`` for
            the protocols that have one protocol whatever the threat (plain, Paillier, phe,
            Flower's SecAgg+).
    """

    scenario: Scenario
    protocol: str
    threat_model: ThreatModel | None = None

    def label(self) -> str:
        """Protocol and threat model, for tables and progress bars (``secagg+/active``)."""
        return self.protocol + ("" if self.threat_model is None else f"/{self.threat_model}")


@dataclass(slots=True)
class Outcome:
    """One run of one grid point: the meter, what the round set up, and whether it was right."""

    meter: Meter
    finishers: frozenset[int]
    measured_dim: int
    setup: dict[str, object] = field(default_factory=dict)
    correct: bool = True
    error: str | None = None
    #: Factor from the measured run to the grid point's d; d / measured_dim unless set.
    scale: float | None = None


class PaillierKeys:
    """The Paillier key pair, generated once per benchmark (key generation is not per round).

    Args:
        bits: the key size.
    """

    def __init__(self, bits: int) -> None:
        self.bits = bits
        #: Seconds key generation took, once it ran.
        self.seconds: float | None = None
        self._keys: PaillierKeypair | None = None

    def __call__(self) -> PaillierKeypair:
        """The key pair, generated on first use."""
        if self._keys is None:
            started = time.perf_counter()
            self._keys = _generate_keypair(self.bits)
            self.seconds = time.perf_counter() - started
        return self._keys


def _generate_keypair(bits: int) -> PaillierKeypair:
    """Key generation (with DJN parameters, for paillier-djn); a seam tests replace."""
    return generate_paillier_keypair(bits, mode=RandomnessMode.DJN)


class RunContext:
    """Everything one run of one grid point needs: data, dropout schedule, keys, the meter.

    Args:
        config: the benchmark's configuration.
        point: the grid point.
        repeat: which repeat of the point this is (it seeds the data).
        meter: where the run's costs go.
        keys: the benchmark's Paillier key pair, on demand.
    """

    def __init__(
        self,
        config: BenchConfig,
        point: GridPoint,
        repeat: int,
        meter: Meter,
        keys: Callable[[], PaillierKeypair],
    ) -> None:
        self.config = config
        self.scenario = point.scenario
        self.protocol = point.protocol
        self.threat_model: ThreatModel = point.threat_model or SEMI_HONEST
        self.meter = meter
        self.keypair = keys
        s = point.scenario
        self.n, self.dim = s.clients, s.dim
        # Same data and same dropped clients for every protocol of a scenario and repeat.
        self._seed = [config.seed, s.clients, s.dim, round(s.dropout * 1000), s.drop_at, repeat]
        rng = np.random.default_rng(self._seed)
        lost = rng.choice(self.n, size=dropped_count(self.n, s.dropout), replace=False)
        self.schedule = {int(u): s.drop_at for u in lost}
        never = len(ROUND_NAMES)  # a client that never drops
        self.uploaders = [u for u in range(self.n) if self.schedule.get(u, never) > UPLOAD_ROUND]
        self.finishers = frozenset(u for u in range(self.n) if u not in self.schedule)

    def update(self, client: int, length: int) -> FloatArray:
        """Client ``client``'s float update (the first ``length`` values of it)."""
        rng = np.random.default_rng([*self._seed, client])
        return rng.standard_normal(length) * (self.config.clip / 3)

    def scheme(self) -> QuantizationScheme:
        """The quantization every protocol of this project uses for n clients."""
        return QuantizationScheme(
            clip=self.config.clip, value_bits=self.config.value_bits, num_clients=self.n
        )

    def policy(self) -> RoundPolicy:
        """The round planner's policy for this run's protocol at this grid point."""
        return self.config.round_policy(self.protocol, self.scenario.dropout, self.threat_model)

    def quantized_inputs(self, scheme: QuantizationScheme, length: int) -> dict[int, RingArray]:
        """Every client's quantized input; uploaders' quantization is timed as client work."""
        inputs: dict[int, RingArray] = {}
        for u in range(self.n):
            update = self.update(u, length)
            if u in self.schedule and self.schedule[u] <= UPLOAD_ROUND:
                inputs[u] = scheme.quantize(update)  # dropped first: prepared untimed
            else:
                inputs[u] = self.meter.measure(u, UPLOAD_ROUND, scheme.quantize, update)
        return inputs


def _ring_sum(inputs: Mapping[int, RingArray], clients: Iterable[int], bits: int) -> RingArray:
    total = np.zeros(next(iter(inputs.values())).shape[0], dtype=np.uint64)
    for u in clients:
        np.add(total, inputs[u], out=total, casting="unsafe")
    return total & np.uint64((1 << bits) - 1)


def _run_plain(ctx: RunContext) -> Outcome:
    """Quantize, send the ring vector in the clear through the same codec, add at the server."""
    meter, scheme = ctx.meter, ctx.scheme()
    inputs = ctx.quantized_inputs(scheme, ctx.dim)
    total = np.zeros(ctx.dim, dtype=np.uint64)
    for u in ctx.uploaders:
        message = MaskedInput(
            session_id=bytes(16),
            round_id=0,
            sender=u,
            recipient=SERVER_ID,
            modulus_bits=scheme.modulus_bits,
            vector=inputs[u],
        )
        meter.add_server_exchange(u, UPLOAD_ROUND, sent=wire.encoded_size(message))
        meter.measure(SERVER, UPLOAD_ROUND, np.add, total, message.vector, total)
    meter.measure(
        SERVER, UPLOAD_ROUND, np.bitwise_and, total, (1 << scheme.modulus_bits) - 1, total
    )
    expected = _ring_sum(inputs, ctx.uploaders, scheme.modulus_bits)
    return Outcome(
        meter,
        frozenset(ctx.uploaders),
        ctx.dim,
        setup={"modulus_bits": scheme.modulus_bits},
        correct=bool(np.array_equal(total, expected)),
    )


def _check_report_bytes(meter: Meter, report: SimulationReport) -> None:
    """The meter's per-round bytes must add up to the simulator's own per-party totals."""
    for client, sent in report.bytes_sent.items():
        metered = sum(c.bytes_sent for (p, _), c in meter.costs.items() if p == client)
        if metered != sent:
            raise RuntimeError(f"bench bug: client {client} sent {sent} B, metered {metered} B")
    metered_server = sum(c.bytes_received for (p, _), c in meter.costs.items() if p == SERVER)
    if metered_server != report.server_bytes_received:
        raise RuntimeError(
            f"bench bug: server received {report.server_bytes_received} B, metered "
            f"{metered_server} B"
        )


def report_outcome(
    ctx: RunContext,
    report: SimulationReport,
    inputs: Mapping[int, RingArray],
    modulus_bits: int,
    measured_dim: int,
    setup: dict[str, object],
) -> Outcome:
    """A simulated round's outcome: aborted, or right when it equals the survivors' plain sum.

    Args:
        ctx: the run.
        report: what the simulator reported.
        inputs: every client's quantized input.
        modulus_bits: the ring the aggregate is compared in.
        measured_dim: how many values the round actually summed.
        setup: the round's parameters, for the records.

    Returns:
        The outcome, with its error text when the round aborted, named an (honest) client as
        misbehaving, or gave a wrong sum.

    Raises:
        RuntimeError: the meter's bytes disagree with the simulator's (a bench bug).
    """
    _check_report_bytes(ctx.meter, report)
    outcome = Outcome(ctx.meter, ctx.finishers, measured_dim, setup=setup)
    if report.error is not None or report.result is None:
        outcome.correct = False
        outcome.error = f"round aborted: {report.error}"
        return outcome
    if report.misbehaved:
        outcome.correct = False
        outcome.error = f"honest clients named as misbehaving: {report.misbehaved}"
        return outcome
    survivors = report.result.survivors
    expected = _ring_sum(inputs, survivors, modulus_bits)
    outcome.correct = bool(np.array_equal(report.result.vector.astype(np.uint64), expected))
    if not outcome.correct:
        outcome.error = "the aggregate differs from the plain sum of the survivors' inputs"
    return outcome


def _run_masking(ctx: RunContext) -> Outcome:
    """One real SecAgg / SecAgg+ round, in the point's threat model, in the simulator."""
    scheme = ctx.scheme()
    policy = ctx.policy()
    planned = plan_masking_round(
        policy,
        list(range(ctx.n)),
        session_id=secrets.token_bytes(16),
        round_id=0,
        vector_length=ctx.dim,
        modulus_bits=scheme.modulus_bits,
    )
    params = planned.params
    inputs = ctx.quantized_inputs(scheme, ctx.dim)
    active: dict[str, Any] = {}
    if params.threat_model == "active":
        active["corrupt_fraction"] = policy.corrupt_fraction
    report = MeteredSimulator(
        ctx.meter,
        params,
        inputs,
        dropouts=ctx.schedule,
        roster=planned.roster,
        identities=planned.identities,
        **active,
    ).run()
    setup: dict[str, object] = {
        "threat_model": params.threat_model,
        "degree": params.graph.max_degree,
        "threshold": params.threshold,
        "modulus_bits": scheme.modulus_bits,
    }
    return report_outcome(ctx, report, inputs, scheme.modulus_bits, ctx.dim, setup)


def _run_paillier(ctx: RunContext) -> Outcome:
    """One packed-Paillier round (fresh or DJN randomness) on at most ``paillier_max_dim``.

    The measured length is a whole number of ciphertexts, and the run is scaled by the ratio of
    ciphertext counts, since encryption, aggregation, decryption and bytes are per ciphertext.
    """
    config, keys = ctx.config, ctx.keypair()
    packing = PackingScheme.for_public_key(
        keys.public_key, value_bits=config.value_bits, num_clients=ctx.n
    )
    slots = packing.slots_per_plaintext
    measured_dim = min(ctx.dim, slots * max(1, config.paillier_max_dim // slots))
    scheme = ctx.scheme()
    threshold = ctx.policy().threshold_for(ctx.n)
    session_id = secrets.token_bytes(16)
    inputs = ctx.quantized_inputs(scheme, measured_dim)
    # The trusted setup (identity keys for signed uploads) is not part of a round's cost.
    roster, identities = trusted_setup(range(ctx.n))
    key_holder = MeteredKeyHolder(
        ctx.meter,
        keys,
        session_id=session_id,
        roster=roster,
        value_bits=config.value_bits,
        max_clients=ctx.n,
        min_contributors=threshold,
        processes=1,
    )
    params = PaillierParams(
        session_id=session_id,
        round_id=0,
        clients=tuple(range(ctx.n)),
        vector_length=measured_dim,
        value_bits=config.value_bits,
        max_clients=ctx.n,
        min_contributors=threshold,
    )
    mode = RandomnessMode.DJN if ctx.protocol == "paillier-djn" else RandomnessMode.FRESH
    simulator = MeteredPaillierSimulator(
        ctx.meter,
        params,
        inputs,
        key_holder,
        identities=identities,
        roster=roster,
        mode=mode,
        processes=1,
        dropouts=ctx.schedule,
    )
    report = simulator.run()
    setup: dict[str, object] = {
        "threshold": threshold,
        "key_bits": config.key_bits,
        "values_per_ciphertext": key_holder.packing.slots_per_plaintext,
    }
    outcome = report_outcome(ctx, report, inputs, 64, measured_dim, setup)
    outcome.scale = packing.num_plaintexts(ctx.dim) / packing.num_plaintexts(measured_dim)
    return outcome


def _phe_encrypt(
    ctx: RunContext, measured_dim: int, width: int
) -> tuple[list[RingArray], list[list[Any]]]:
    """The encrypting clients quantize and encrypt value by value; returns both vectors."""
    meter, scheme, public_key = ctx.meter, ctx.scheme(), ctx.keypair().public_key
    values: list[RingArray] = []
    vectors: list[list[Any]] = []
    for u in ctx.uploaders[: ctx.config.phe_clients]:
        quantized = meter.measure(u, UPLOAD_ROUND, scheme.quantize, ctx.update(u, measured_dim))
        meter.add_bytes(u, UPLOAD_ROUND, received=width // 2, sent=width * measured_dim)
        values.append(quantized)
        vectors.append(
            meter.measure(
                u, UPLOAD_ROUND, lambda q: [public_key.encrypt(int(v)) for v in q], quantized
            )
        )
    return values, vectors


def _phe_add(meter: Meter, vectors: list[list[Any]], uploads: int) -> list[Any]:
    """The server adds one ciphertext vector per uploader, reusing the encrypted ones."""

    def add_all() -> list[Any]:
        total = vectors[0]
        for i in range(1, uploads):
            total = [a + b for a, b in zip(total, vectors[i % len(vectors)], strict=True)]
        return total

    return meter.measure(SERVER, UPLOAD_ROUND, add_all)


def _run_phe(ctx: RunContext) -> Outcome:
    """phe's per-value path: encrypt each value, add EncryptedNumbers, decrypt each sum.

    Only ``phe_clients`` uploaders encrypt (on ``phe_max_dim`` values); the server adds as many
    ciphertext vectors as there are uploaders, reusing theirs, and the key holder decrypts once.
    """
    config, meter, keys = ctx.config, ctx.meter, ctx.keypair()
    measured_dim = min(ctx.dim, config.phe_max_dim)
    width = ciphertext_byte_length(keys.public_key)
    values, vectors = _phe_encrypt(ctx, measured_dim, width)
    uploads = len(ctx.uploaders)
    meter.add_bytes(SERVER, UPLOAD_ROUND, received=width * measured_dim * uploads)
    total = _phe_add(meter, vectors, uploads)
    round_index = UNMASKING_ROUND
    meter.add_bytes(
        SERVER, round_index, sent=width * measured_dim, received=width // 2 * measured_dim
    )
    meter.add_bytes(
        KEY_HOLDER, round_index, received=width * measured_dim, sent=width // 2 * measured_dim
    )
    private_key = keys.private_key
    decrypted = meter.measure(
        KEY_HOLDER,
        round_index,
        lambda: [private_key.raw_decrypt(c.ciphertext(be_secure=False)) for c in total],
    )
    expected = sum(values[i % len(values)].astype(np.int64) for i in range(uploads))
    return Outcome(
        meter,
        frozenset(ctx.uploaders[: config.phe_clients]),
        measured_dim,
        setup={"key_bits": config.key_bits, "encrypting_clients": len(vectors)},
        correct=[int(v) for v in np.atleast_1d(expected)] == decrypted,
    )


#: A protocol's run of one grid point.
Runner = Callable[[RunContext], Outcome]

#: This project's protocols (and the plain baseline) by name.
RUNNERS: Final[Mapping[str, Runner]] = {
    PLAIN: _run_plain,
    "secagg": _run_masking,
    "secagg+": _run_masking,
    "paillier-fresh": _run_paillier,
    "paillier-djn": _run_paillier,
    "phe": _run_phe,
}
