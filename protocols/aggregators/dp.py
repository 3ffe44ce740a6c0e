"""Distributed differential privacy on top of a real masking round, with library accounting.

:class:`DistributedDPAggregator` is the :class:`~protocols.aggregators.Aggregator` that gives
client-level (epsilon, delta) differential privacy without trusting the server with any noise:

1. each client clips its update to L2 norm ``clip_norm`` and encodes it with
   :class:`secagg.dp.DistributedDPMechanism` under the round's fresh shared rotation seed
   (rotate, scale, round conditionally, add its own discrete Gaussian or Skellam noise share,
   wrap into Z_{2^k});
2. the ring vectors go through a real SecAgg / SecAgg+ round (:class:`protocols.simulate.Simulator`
   on a complete or Harary graph, ``vector_length`` = the padded dimension, ``modulus_bits`` from
   the DP configuration), so the server sees only their modular sum;
3. the server decodes the ring sum into the noisy float sum, and the accountant
   (:class:`secagg.dp.PrivacyAccountant`, Google's ``dp-accounting``) reports the epsilon spent by
   the rounds released so far (:meth:`DistributedDPAggregator.privacy_report`).

Rules of this module:

* The noise is calibrated once, at construction, for the planned number of rounds
  (:func:`secagg.dp.choose_parameters`). Running more rounds than planned is allowed and
  reported (:class:`PrivacyBudgetWarning`); the epsilon then exceeds its target.
* Every sum that is unmasked holds at least ``expected_clients`` noise shares: the masking
  round's survivor floor (``min_survivors``) is ``expected_clients``, which the server enforces
  after MaskedInputCollection (and after the consistency round), before any unmask request, and
  each client enforces before it releases a share. A round with fewer survivors aborts with
  :class:`~secagg.errors.InsufficientSurvivorsError` before anything is unmasked: nothing of it
  is readable afterwards (``last_report.result`` is ``None``) and it costs nothing. A server that
  names fewer survivors to shrink the noise is refused by the clients
  (:class:`~secagg.errors.ServerMisbehaviourError`).
* Every unmasked sum is charged the moment it is unmasked, at its own noise: s survivors of
  n = ``expected_clients`` carry noise multiplier z * sqrt(s / n) >= z
  (:meth:`secagg.dp.PrivacyAccountant.charge`), so the reported epsilon composes exactly the
  released rounds. A round with more survivors, up to ``max_clients``, carries more noise than
  needed; the granularity leaves room for ``max_clients`` inputs in the ring.
* Noise shares count only from clients that follow the protocol: a client colluding with the
  server can leave its share out (or reveal it), as in every distributed-DP design; calibrate
  ``expected_clients`` for the honest clients a round is sure to hold.
* The accountant assumes that each client takes part in a round independently with probability
  ``sampling_rate`` (Poisson sampling). A trainer that samples a fixed number of clients without
  replacement, as :class:`models.federated.FederatedTrainer` does, is accounted with the usual
  approximation q = clients per round / population.
* Weights are not supported: a weight would change a client's sensitivity, which the accountant
  does not model. Passing weights raises :class:`~secagg.errors.ParameterError`.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from protocols.aggregators.inputs import RoundInputs
from protocols.aggregators.masking import (
    MaskingBackend,
    MaskingRoundSettings,
    MaskingSum,
    masking_choice,
    masking_policy,
)
from protocols.aggregators.pipeline import Pipeline, SumOutcome, Vector
from protocols.aggregators.result import FloatArray
from protocols.graph import ThreatModel
from protocols.rounds import DEFAULT_CORRUPT_FRACTION, DEFAULT_DROPOUT_FRACTION
from protocols.simulate import SimulationReport
from secagg.dp import (
    AccountantKind,
    DistributedDPConfig,
    DistributedDPMechanism,
    Mechanism,
    PrivacyAccountant,
    SpentReport,
    choose_parameters,
    new_rotation_seed,
    rounded_l2_bound,
    wrap_probability,
)
from secagg.encoding import EncodedUpdate
from secagg.errors import InsufficientSurvivorsError, ParameterError

__all__ = [
    "DEFAULT_MODULUS_BITS",
    "DistributedDPAggregator",
    "PrivacyBudgetWarning",
    "PrivacyReport",
]

#: JSON-ready privacy report: string keys, numbers, names, per-round lists, or ``None``.
PrivacyReport = SpentReport

#: The default ring: 32 bits keeps the ring vectors uint32 and leaves room for fine grids.
DEFAULT_MODULUS_BITS: Final = 32
#: Coarsening step of the granularity when it must leave room for ``max_clients`` inputs.
_GRANULARITY_STEP: Final = 1.01
_MAX_GRANULARITY_STEPS: Final = 2000


class PrivacyBudgetWarning(UserWarning):
    """More rounds were released than the noise was calibrated for.

    The accountant keeps composing, so :meth:`DistributedDPAggregator.privacy_report` still gives
    the true epsilon; it is simply above ``target_epsilon``.
    """


@dataclass(frozen=True, slots=True)
class DPCodec:
    """The DP transform around the secure sum: rotate, scale, round and noise; and back.

    One codec per round: the rotation seed is fresh every round. An update whose L2 norm
    exceeds ``clip_norm`` is scaled down and counts as one clipped value.
    """

    mechanism: DistributedDPMechanism
    rotation_seed: bytes

    @property
    def modulus_bits(self) -> int:
        """The DP configuration's ring."""
        return self.mechanism.config.modulus_bits

    def vector_length(self, dimension: int) -> int:
        """The padded (power-of-two) dimension the rotation works in."""
        del dimension
        return self.mechanism.config.padded_dimension

    def encode(self, update: FloatArray, weight: float | None) -> EncodedUpdate:
        """One client's noised ring vector."""
        del weight  # Refused earlier: DP sums are unweighted.
        clipped = int(float(np.linalg.norm(update)) > self.mechanism.config.clip_norm)
        return EncodedUpdate(self.mechanism.encode(update, self.rotation_seed), clipped)

    def decode_sum(self, total: Vector, count: int) -> tuple[FloatArray, float | None]:
        """The noisy float sum of ``count`` inputs."""
        return self.mechanism.decode(total, count, self.rotation_seed), None


class DistributedDPAggregator(MaskingRoundSettings, Pipeline):
    """Client-level distributed DP (discrete Gaussian or Skellam) over SecAgg / SecAgg+.

    The noise multiplier z is the smallest for which ``dp-accounting`` reports at most
    ``target_epsilon`` after ``rounds`` rounds that each sample clients with probability
    ``sampling_rate`` (RDP accountant by default); the granularity is the finest whose sum of
    ``max_clients`` noised vectors stays inside Z_{2^k} with probability at least 1 - 1e-4.

    Args:
        target_epsilon: epsilon to spend over ``rounds`` rounds, > 0.
        target_delta: delta, in (0, 1); typically below 1 / population.
        rounds: the number of rounds the noise is calibrated for, >= 1.
        sampling_rate: q, each client's probability of taking part in a round, in (0, 1].
        expected_clients: n, the fewest inputs a released sum may hold; each client adds 1 / n
            of the noise variance, so every released sum carries at least the full noise. It
            is the masking round's survivor floor: the server and every client refuse to
            unmask fewer.
        dimension: d, the length of a float update.
        clip_norm: c, the L2 norm each client clips its update to.
        mechanism: ``"discrete_gaussian"`` (Kairouz et al. 2021) or ``"skellam"`` (Agarwal et
            al. 2021).
        modulus_bits: k, the ring Z_{2^k} of the masking round.
        max_clients: the most inputs one round may sum (default ``expected_clients``).
        protocol: ``"secagg"`` (the complete graph) or ``"secagg+"`` (a Harary graph, degree
            and threshold from :func:`~protocols.graph.secagg_plus_parameters`). The graph
            names ``"complete"`` and ``"harary"`` of earlier releases still work for one
            release, with a ``DeprecationWarning``.
        graph: deprecated spelling of ``protocol`` (one release, with a ``DeprecationWarning``).
        threshold: Shamir threshold override.
        dropout_fraction, corrupt_fraction: tolerances used to pick the SecAgg+ graph.
        accountant: ``"rdp"`` (default) or ``"pld"`` for ``dp-accounting``.
        threat_model: ``"active"`` (default) or ``"semi-honest"``, as for
            :class:`~protocols.aggregators.masking.MaskingAggregator`.
        through_wire: round-trip every protocol message through the binary codec.

    Raises:
        ParameterError: an argument is out of range.
        ImportError: ``dp-accounting`` is not installed.
    """

    #: Scaling updates down to clip_norm is part of the mechanism, not a loss to warn of.
    clipping_log_level = logging.INFO

    def __init__(
        self,
        *,
        target_epsilon: float,
        target_delta: float,
        rounds: int,
        sampling_rate: float,
        expected_clients: int,
        dimension: int,
        clip_norm: float = 1.0,
        mechanism: Mechanism = "discrete_gaussian",
        modulus_bits: int = DEFAULT_MODULUS_BITS,
        max_clients: int | None = None,
        protocol: MaskingBackend = "secagg",
        graph: MaskingBackend | None = None,
        threshold: int | None = None,
        dropout_fraction: float = DEFAULT_DROPOUT_FRACTION,
        corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
        accountant: AccountantKind = "rdp",
        threat_model: ThreatModel = "active",
        through_wire: bool = False,
    ) -> None:
        # Called here, not in a helper: a deprecated spelling's warning names our caller.
        backend, builder = masking_choice(protocol, graph)
        _check_backend_and_ring(builder, modulus_bits)
        largest = _largest_round(expected_clients, max_clients)
        # Fails on impossible SecAgg+ tolerances now rather than at the first round.
        policy = masking_policy(
            backend,
            threshold=threshold,
            dropout_fraction=dropout_fraction,
            corrupt_fraction=corrupt_fraction,
            modulus_bits=modulus_bits,
            threat_model=threat_model,
            min_survivors=expected_clients,
        )
        calibrated = choose_parameters(
            target_epsilon=target_epsilon,
            target_delta=target_delta,
            rounds=rounds,
            sampling_rate=sampling_rate,
            expected_clients=expected_clients,
            dimension=dimension,
            modulus_bits=modulus_bits,
            clip_norm=clip_norm,
            mechanism=mechanism,
            accountant=accountant,
        )
        self.config: Final[DistributedDPConfig] = _leave_room_for(calibrated, largest)
        self.mechanism: Final = DistributedDPMechanism(self.config)
        self.accountant: Final = PrivacyAccountant.for_config(
            self.config, sampling_rate=sampling_rate, delta=target_delta, accountant=accountant
        )
        self.target_epsilon = float(target_epsilon)
        self.planned_rounds = rounds
        self.max_clients = largest
        self.protocol: Final[MaskingBackend] = backend
        self.name = f"dp-{backend}"
        self.secure_sum: MaskingSum = MaskingSum(policy, through_wire=through_wire)
        self.last_rotation_seed: bytes | None = None

    # -- accounting ---------------------------------------------------------------------------

    @property
    def clip_norm(self) -> float:
        """c, the L2 norm every client clips its update to."""
        return self.config.clip_norm

    @property
    def sampling_rate(self) -> float:
        """q, the per-round participation probability the accountant assumes."""
        return self.accountant.sampling_rate

    @property
    def delta(self) -> float:
        """The delta at which epsilon is reported."""
        return self.accountant.delta

    @property
    def rounds_done(self) -> int:
        """The rounds released (unmasked, and charged) so far."""
        return len(self.accountant.released)

    @property
    def round_survivors(self) -> tuple[int, ...]:
        """The survivor count (noise shares) of every released round, in order."""
        return self.accountant.released

    @property
    def epsilon_spent(self) -> float:
        """Epsilon spent by the rounds released so far, each at its own noise (0 before any)."""
        return self.accountant.epsilon_spent()

    def privacy_report(self) -> PrivacyReport:
        """The privacy spent by the rounds released so far, as ``dp-accounting`` computes it.

        The keys of :meth:`secagg.dp.PrivacyAccountant.spent_report` (``epsilon``, ``delta``,
        ``rounds``, ``noise_multiplier``, ``sampling_rate``, ``accountant``, ``library``,
        ``rdp_order``, ``neighboring``, ``survivors``: each released round's survivor count,
        ``round_noise_multipliers``, ``expected_clients``), plus ``target_epsilon``,
        ``planned_rounds``, ``mechanism``, ``clip_norm``, ``max_clients``, ``modulus_bits``,
        ``granularity`` and ``noise_inflation``.

        Returns:
            A JSON-ready dictionary.
        """
        report: PrivacyReport = self.accountant.spent_report()
        report.update(
            target_epsilon=self.target_epsilon,
            planned_rounds=self.planned_rounds,
            mechanism=self.config.mechanism,
            clip_norm=self.config.clip_norm,
            expected_clients=self.config.expected_clients,
            max_clients=self.max_clients,
            modulus_bits=self.config.modulus_bits,
            granularity=self.config.granularity,
            noise_inflation=self.config.noise_inflation,
        )
        return report

    # -- one round ----------------------------------------------------------------------------

    def codec(self, inputs: RoundInputs) -> DPCodec:
        """Check the round against the configuration and draw its fresh rotation seed.

        Raises:
            ParameterError: weights were given, or the updates do not fit the configuration.
            InsufficientSurvivorsError: fewer than ``expected_clients`` clients take part.
        """
        if inputs.weights is not None:
            raise ParameterError(
                "DistributedDPAggregator does not support weights: a weight changes a client's "
                "sensitivity, which the accountant does not model; aggregate unweighted updates"
            )
        config = self.config
        if inputs.dimension != config.dimension:
            raise ParameterError(
                f"updates have {inputs.dimension} values, the DP configuration expects "
                f"{config.dimension}"
            )
        count = len(inputs.updates)
        if count < config.expected_clients:
            raise InsufficientSurvivorsError(
                f"only {count} clients take part, fewer than the {config.expected_clients} "
                "noise shares every released sum needs; sample more clients"
            )
        if count > self.max_clients:
            raise ParameterError(
                f"{count} clients exceed max_clients={self.max_clients}, the most inputs the "
                "ring was sized for; construct the aggregator with a larger max_clients"
            )
        # The server draws the round's rotation seed and sends it with the round setup; it is
        # public, and fresh every round so that no rotation is reused.
        self.last_rotation_seed = new_rotation_seed()
        return DPCodec(self.mechanism, self.last_rotation_seed)

    def on_release(self, outcome: SumOutcome) -> None:
        """Charge the unmasked round to the accountant at its own noise, before decoding."""
        self._charge_round(len(outcome.survivors))

    def seconds_table(
        self, report: SimulationReport | None, encode_seconds: float, decode_seconds: float
    ) -> dict[str, dict[str, float]]:
        """The masking round's seconds, plus the DP transform's client and server cost."""
        table = super().seconds_table(report, encode_seconds, decode_seconds)
        table["dp"] = {"client_encode_mean": encode_seconds, "server_decode": decode_seconds}
        return table

    def _charge_round(self, survivors: int) -> None:
        self.accountant.charge(survivors)
        if self.rounds_done == self.planned_rounds + 1:
            warnings.warn(
                f"round {self.rounds_done} exceeds the {self.planned_rounds} rounds the noise was "
                f"calibrated for; epsilon is now above its target {self.target_epsilon:g} "
                "(privacy_report() gives the true value)",
                PrivacyBudgetWarning,
                stacklevel=4,
            )


def _check_backend_and_ring(builder: object, modulus_bits: object) -> None:
    """Distributed DP runs on a named masking backend (no custom graph), over an int ring."""
    if builder is not None:
        raise ParameterError(
            "distributed DP runs on protocol='secagg' or 'secagg+', not on a custom graph"
        )
    if isinstance(modulus_bits, bool) or not isinstance(modulus_bits, int):
        raise ParameterError(f"modulus_bits must be an int, got {modulus_bits!r}")


def _largest_round(expected_clients: int, max_clients: int | None) -> int:
    """The most inputs a round may sum; at least ``expected_clients``."""
    _check_count("expected_clients", expected_clients)
    largest = expected_clients if max_clients is None else max_clients
    _check_count("max_clients", largest)
    if largest < expected_clients:
        raise ParameterError(
            f"max_clients={largest} is below expected_clients={expected_clients}; a round "
            "cannot sum fewer inputs than the noise needs and more than it may hold"
        )
    return largest


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be a positive int, got {value!r}")


def _leave_room_for(config: DistributedDPConfig, max_clients: int) -> DistributedDPConfig:
    """``config`` with a granularity coarse enough for sums of up to ``max_clients`` inputs.

    :func:`~secagg.dp.choose_parameters` sizes the grid for ``expected_clients`` inputs; a round
    with more survivors adds more data and more noise shares, so the grid is coarsened in 1%
    steps until the wrap-around bound of ``max_clients`` inputs meets the limit again (the
    noise inflation gamma Delta_2 / c hardly moves). If no grid up to c / sqrt(D) works, the
    configuration's own :class:`~secagg.dp.DPWrapAroundWarning` names a larger ring.
    """
    if max_clients <= config.expected_clients:
        return config
    limit = config.max_wrap_probability
    coarsest = config.clip_norm / math.sqrt(config.padded_dimension)
    granularity = config.granularity
    for _ in range(_MAX_GRANULARITY_STEPS):
        if _wrap_bound(config, granularity, max_clients) <= limit or granularity >= coarsest:
            break
        granularity *= _GRANULARITY_STEP
    return replace(config, granularity=granularity)


def _wrap_bound(config: DistributedDPConfig, granularity: float, num_clients: int) -> float:
    """The wrap-around bound of ``num_clients`` inputs, each with a 1 / n noise share."""
    scaled = config.clip_norm / granularity
    sensitivity = rounded_l2_bound(scaled, config.padded_dimension, config.rounding_beta)
    noise_variance_scale = num_clients / config.expected_clients
    return wrap_probability(
        modulus_bits=config.modulus_bits,
        padded_dimension=config.padded_dimension,
        num_clients=num_clients,
        scaled_clip_norm=scaled,
        central_stddev=config.noise_multiplier * sensitivity * math.sqrt(noise_variance_scale),
    )
