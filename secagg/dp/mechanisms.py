"""The distributed DP mechanisms: validated configuration, client encoding, server decoding.

Two mechanisms, both following TFF's ``distributed_dp.py`` pipeline:

* the distributed discrete Gaussian (Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian
  Mechanism for Federated Learning with Secure Aggregation", ICML 2021), and
* the Skellam mechanism (Agarwal, Kairouz, Liu, "The Skellam Mechanism for Differentially Private
  Federated Learning", NeurIPS 2021).

Client side (:meth:`DistributedDPMechanism.encode`): clip the update to L2 norm ``clip_norm``,
pad to a power of two and apply a randomized Hadamard rotation from a shared seed (it spreads
the norm evenly so that no coordinate is large), scale by 1 / ``granularity`` (gamma), round
every coordinate stochastically and retry until the rounded norm is below the bound of
Kairouz et al. 2021 (conditional randomized rounding), add this client's noise share, and
wrap into the ring. Server side (:meth:`DistributedDPMechanism.decode`): read the modular sum as
centred signed integers, multiply by gamma, rotate back and drop the padding.

:class:`DistributedDPConfig` is the one place where the parameters are checked and the derived
quantities (sensitivity, noise shares, wrap-around bound) are computed, so that the encoder, the
decoder and the accountant read the same numbers. It is also what warns, so both warning
classes live here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Final, Literal, cast

import numpy as np
import numpy.typing as npt

from secagg.dp._checks import (
    FloatArray,
    _check_choice,
    _check_int,
    _check_real,
    _check_type,
    _check_vector,
)
from secagg.dp.rotation import (
    _check_seed,
    hadamard_rotate,
    inverse_hadamard_rotate,
    padded_dimension,
)
from secagg.dp.rounding import DEFAULT_ROUNDING_BETA, clip_l2, conditional_round, rounded_l2_bound
from secagg.dp.sampling import (
    MAX_POISSON_MEAN,
    MAX_SIGMA,
    IntArray,
    sample_discrete_gaussian,
    sample_skellam,
)
from secagg.encoding import ring_dtype
from secagg.errors import ParameterError

__all__ = [
    "DEFAULT_MAX_WRAP_PROBABILITY",
    "DPApproximationWarning",
    "DPWrapAroundWarning",
    "DistributedDPConfig",
    "DistributedDPMechanism",
    "Mechanism",
    "wrap_probability",
]

RingArray = npt.NDArray[np.unsignedinteger]
Mechanism = Literal["discrete_gaussian", "skellam"]
#: Largest acceptable probability that some coordinate of the sum wraps around the ring.
DEFAULT_MAX_WRAP_PROBABILITY: Final = 1e-4
#: The scaled clip norm c / gamma is kept below 2^40: a finer grid gains no accuracy.
_MAX_SCALED_NORM: Final = float(2**40)
_MECHANISMS: Final = ("discrete_gaussian", "skellam")


class DPWrapAroundWarning(UserWarning):
    """The noised sum may wrap around the ring with probability above the configured limit.

    A wrapped coordinate of the rotated sum is off by 2^k * gamma, and the inverse rotation
    spreads that error over every decoded coordinate: the round's result is garbage. Increase
    ``modulus_bits`` (the message names the smallest that works).
    """


class DPApproximationWarning(UserWarning):
    """The Gaussian approximation used for accounting is not tight for these parameters.

    The accountant treats the sum of the discrete noise shares as a continuous Gaussian of the
    same variance; Kairouz et al. 2021 (Theorem 1) bound the gap by a term that is negligible
    only when every client's noise share has a standard deviation of a few integer units.
    """


def _check_mechanism(value: object) -> Mechanism:
    return cast(Mechanism, _check_choice("mechanism", value, _MECHANISMS))


def wrap_probability(
    *,
    modulus_bits: int,
    padded_dimension: int,
    num_clients: int,
    scaled_clip_norm: float,
    central_stddev: float,
) -> float:
    """Upper bound on the chance that some coordinate of the noised ring sum wraps around.

    Every coordinate of the integer sum is (approximately) sub-Gaussian: the rotated data term
    has variance proxy (n c / sqrt(D))^2, the rounding errors add at most sqrt(n) / 2 to its
    scale, and the independent noise adds sigma^2. A Gaussian tail per coordinate,
    P(|s_j| >= 2^(k-1)) <= 2 exp(-2^(2k-2) / (2 v)), and a union bound over the D coordinates
    give the result.

    Args:
        modulus_bits: k, the ring Z_{2^k}.
        padded_dimension: D, the number of ring coordinates.
        num_clients: n, the number of summed client vectors.
        scaled_clip_norm: c, the clip norm in integer units (clip_norm / gamma).
        central_stddev: sigma, the standard deviation of the summed noise (integer units).

    Returns:
        The bound, in [0, 1].
    """
    half_width = 2.0 ** (modulus_bits - 1)
    variance = _sum_coordinate_variance(
        padded_dimension, num_clients, scaled_clip_norm, central_stddev
    )
    per_coordinate = 2.0 * math.exp(-(half_width**2) / (2.0 * variance))
    return min(1.0, padded_dimension * per_coordinate)


def _sum_coordinate_variance(
    padded_dimension: int, num_clients: int, scaled_clip_norm: float, central_stddev: float
) -> float:
    data_scale = num_clients * scaled_clip_norm / math.sqrt(padded_dimension)
    return (data_scale + math.sqrt(num_clients) / 2.0) ** 2 + central_stddev**2


def _local_stddev_limit(mechanism: str) -> float:
    """The largest noise share each sampler draws exactly in float64, as a standard deviation."""
    return MAX_SIGMA if mechanism == "discrete_gaussian" else math.sqrt(2.0 * MAX_POISSON_MEAN)


def _bits_for_wrap(variance: float, padded_dimension: int, target: float) -> int:
    """Smallest k with 2 D exp(-2^(2k-2) / (2 v)) <= target."""
    half_width = math.sqrt(2.0 * variance * math.log(2.0 * padded_dimension / target))
    return max(1, math.ceil(math.log2(half_width)) + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributedDPConfig:
    """Validated parameters of one distributed DP mechanism.

    Integer units are the units after scaling by 1 / ``granularity``. The privacy guarantee is
    that of a Gaussian mechanism with noise multiplier ``noise_multiplier`` relative to the L2
    sensitivity of one client's rounded vector (:attr:`l2_sensitivity`); see
    :class:`~secagg.dp.accounting.PrivacyAccountant` for what that approximation assumes.

    Attributes:
        mechanism: ``"discrete_gaussian"`` (Kairouz et al. 2021) or ``"skellam"`` (Agarwal et
            al. 2021).
        dimension: d, the length of a client's float update.
        clip_norm: c, the L2 clipping bound of an update (float units).
        expected_clients: n, the number of clients whose noise shares add up to the full noise.
        modulus_bits: k, the ring Z_{2^k} of the secure sum.
        noise_multiplier: z, central noise standard deviation / L2 sensitivity; 0 adds no noise
            (no privacy: for tests and debugging only).
        granularity: gamma, the float value of one integer unit.
        rounding_beta: beta of conditional rounding, in [0, 1).
        max_wrap_probability: the wrap-around bound above which a warning is issued.
    """

    mechanism: Mechanism
    dimension: int
    clip_norm: float
    expected_clients: int
    modulus_bits: int
    noise_multiplier: float
    granularity: float
    rounding_beta: float = DEFAULT_ROUNDING_BETA
    max_wrap_probability: float = DEFAULT_MAX_WRAP_PROBABILITY

    def __post_init__(self) -> None:
        _check_mechanism(self.mechanism)
        _check_int("dimension", self.dimension, 1, 2**40)
        _check_real("clip_norm", self.clip_norm, low=0.0, low_open=True)
        _check_int("expected_clients", self.expected_clients, 1)
        ring_dtype(_check_int("modulus_bits", self.modulus_bits, 2, 64))
        _check_real("noise_multiplier", self.noise_multiplier, low=0.0)
        _check_real(
            "granularity",
            self.granularity,
            low=0.0,
            low_open=True,
            fix="choose it with choose_parameters()",
        )
        _check_real("rounding_beta", self.rounding_beta, low=0.0, high=1.0, high_open=True)
        _check_real(
            "max_wrap_probability", self.max_wrap_probability, low=0.0, high=1.0, low_open=True
        )
        if self.scaled_clip_norm > _MAX_SCALED_NORM:
            raise ParameterError(
                f"clip_norm / granularity = {self.scaled_clip_norm:.3g} exceeds 2^40, beyond "
                f"which float64 rounding is inexact; use granularity >= "
                f"{self.clip_norm / _MAX_SCALED_NORM:.3g}"
            )
        if self.local_stddev > _local_stddev_limit(self.mechanism):
            raise ParameterError(
                f"each client's noise standard deviation {self.local_stddev:.3g} exceeds "
                f"{_local_stddev_limit(self.mechanism):.3g} integer units, the {self.mechanism} "
                "sampler's float64 range; increase granularity (choose_parameters() does)"
            )
        # Warnings point at the caller of the generated __init__.
        self._warn_if_wraps(self.expected_clients, stacklevel=4)
        self._warn_if_too_discrete(stacklevel=4)

    # -- derived quantities -------------------------------------------------------------------

    @property
    def padded_dimension(self) -> int:
        """D, the ring vector length: ``dimension`` rounded up to a power of two."""
        return padded_dimension(self.dimension)

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger]:
        """The ring dtype: uint32 while k <= 32, else uint64."""
        return ring_dtype(self.modulus_bits)

    @property
    def scaled_clip_norm(self) -> float:
        """c / gamma: the clip norm in integer units."""
        return self.clip_norm / self.granularity

    @property
    def l2_sensitivity(self) -> float:
        """Delta_2: the L2 bound on one client's rounded vector, in integer units."""
        return rounded_l2_bound(self.scaled_clip_norm, self.padded_dimension, self.rounding_beta)

    @property
    def central_stddev(self) -> float:
        """sigma = z * Delta_2: the standard deviation of the summed noise, integer units."""
        return self.noise_multiplier * self.l2_sensitivity

    @property
    def local_stddev(self) -> float:
        """sigma / sqrt(n): the standard deviation of one client's noise share."""
        return self.central_stddev / math.sqrt(self.expected_clients)

    @property
    def local_skellam_mu(self) -> float:
        """mu of one client's Skellam share Sk(mu, mu), whose variance is 2 mu = sigma^2 / n."""
        return self.local_stddev**2 / 2.0

    @property
    def noise_inflation(self) -> float:
        """Float-space noise relative to an unquantized Gaussian: gamma Delta_2 / c (>= 1)."""
        return self.granularity * self.l2_sensitivity / self.clip_norm

    @property
    def wrap_probability(self) -> float:
        """Bound on the wrap-around probability of a round with ``expected_clients`` clients."""
        return self.wrap_probability_for(self.expected_clients)

    def wrap_probability_for(self, num_clients: int) -> float:
        """Bound on the wrap-around probability of a round that sums ``num_clients`` vectors.

        The noise of ``num_clients`` shares has variance sigma^2 num_clients / n.
        """
        num_clients = _check_int("num_clients", num_clients, 1)
        return wrap_probability(
            modulus_bits=self.modulus_bits,
            padded_dimension=self.padded_dimension,
            num_clients=num_clients,
            scaled_clip_norm=self.scaled_clip_norm,
            central_stddev=self.local_stddev * math.sqrt(num_clients),
        )

    def minimum_modulus_bits(self, num_clients: int | None = None) -> int:
        """The smallest ring that keeps the wrap probability under the limit at this gamma."""
        clients = self.expected_clients if num_clients is None else num_clients
        variance = _sum_coordinate_variance(
            self.padded_dimension,
            clients,
            self.scaled_clip_norm,
            self.local_stddev * math.sqrt(clients),
        )
        return _bits_for_wrap(variance, self.padded_dimension, self.max_wrap_probability)

    @property
    def discretization_gap(self) -> float:
        """tau * D of Kairouz et al. 2021, Theorem 1 (discrete Gaussian only, else 0).

        tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k / (k + 1)) with s the per-client standard
        deviation; the sum of the shares is then within this much of a Gaussian in the sense of
        the theorem. It is reported, not added to epsilon.
        """
        if self.mechanism != "discrete_gaussian" or self.noise_multiplier == 0.0:
            return 0.0
        decay = 2.0 * math.pi**2 * self.local_stddev**2
        # The terms grow with k towards exp(-decay); past 10^6 they are bounded by that limit.
        exact = np.arange(1, min(self.expected_clients, 1_000_001), dtype=np.float64)
        tail = max(0, self.expected_clients - 1 - exact.shape[0]) * math.exp(-decay)
        tau = 10.0 * (float(np.sum(np.exp(-decay * exact / (exact + 1.0)))) + tail)
        return tau * self.padded_dimension

    def to_dict(self) -> dict[str, float | int | str]:
        """A JSON-ready summary: the parameters and the derived quantities."""
        return {
            "mechanism": self.mechanism,
            "dimension": self.dimension,
            "padded_dimension": self.padded_dimension,
            "clip_norm": self.clip_norm,
            "expected_clients": self.expected_clients,
            "modulus_bits": self.modulus_bits,
            "noise_multiplier": self.noise_multiplier,
            "granularity": self.granularity,
            "rounding_beta": self.rounding_beta,
            "l2_sensitivity": self.l2_sensitivity,
            "central_stddev": self.central_stddev,
            "local_stddev": self.local_stddev,
            "noise_inflation": self.noise_inflation,
            "wrap_probability": self.wrap_probability,
        }

    def _warn_if_wraps(self, num_clients: int, *, stacklevel: int) -> None:
        probability = self.wrap_probability_for(num_clients)
        if probability > self.max_wrap_probability:
            warnings.warn(
                f"the noised sum of {num_clients} clients wraps around Z_2^{self.modulus_bits} "
                f"with probability up to {probability:.3g} (limit "
                f"{self.max_wrap_probability:.3g}); increase modulus_bits to at least "
                f"{self.minimum_modulus_bits(num_clients)} or the granularity",
                DPWrapAroundWarning,
                stacklevel=stacklevel,
            )

    def _warn_if_too_discrete(self, *, stacklevel: int) -> None:
        if self.noise_multiplier > 0.0 and (
            self.discretization_gap > 1e-6
            or (self.mechanism == "skellam" and self.local_skellam_mu < 1.0)
        ):
            warnings.warn(
                f"each client's noise share has standard deviation {self.local_stddev:.3g} "
                "integer units, too small for the Gaussian approximation of the accountant; "
                "use a finer granularity or more modulus_bits",
                DPApproximationWarning,
                stacklevel=stacklevel,
            )


class DistributedDPMechanism:
    """Client-side encoding and server-side decoding of one distributed DP mechanism.

    Every client of a round calls :meth:`encode` with the same ``rotation_seed`` and submits the
    result to secure aggregation (vector length :attr:`DistributedDPConfig.padded_dimension`,
    ring ``modulus_bits``); the server calls :meth:`decode` on the modular sum. The noise adds up
    to the full ``central_stddev`` only if ``expected_clients`` shares are summed: a round with
    fewer survivors (dropouts) carries proportionally less noise than the accountant assumes.
    Clients that collude with the server can subtract their own shares, so the guarantee holds
    against the server alone and weakens in proportion to the colluding fraction (Kairouz et al.
    2021, Section 1; the usual trust model of distributed DP).

    Args:
        config: the validated parameters.
    """

    def __init__(self, config: DistributedDPConfig) -> None:
        _check_type("config", config, DistributedDPConfig)
        self.config = config

    def encode(self, update: npt.ArrayLike, rotation_seed: bytes) -> RingArray:
        """Clip, rotate, scale, round, add this client's noise share and wrap into Z_{2^k}.

        Args:
            update: the client's 1-D float update of length ``dimension``.
            rotation_seed: the round's shared 16-byte seed.

        Returns:
            A ring vector of length ``padded_dimension`` and dtype ``config.dtype``.

        Raises:
            ParameterError: a malformed update or seed.
        """
        config = self.config
        seed = _check_seed(rotation_seed)
        array = _check_vector("update", update, config.dimension)
        clipped = clip_l2(array, config.clip_norm)
        scaled = hadamard_rotate(clipped, seed) * (1.0 / config.granularity)
        rounded = conditional_round(scaled, config.l2_sensitivity)
        noised = rounded + self._noise_share(rounded.shape[0])
        return self._wrap(noised)

    def decode(self, ring_sum: npt.ArrayLike, num_clients: int, rotation_seed: bytes) -> FloatArray:
        """Turn the modular sum of ``num_clients`` encoded vectors back into a float sum.

        Reads each coordinate as a centred integer in [-2^(k-1), 2^(k-1)), multiplies by gamma,
        undoes the rotation and drops the padding. Warns with :class:`DPWrapAroundWarning` when
        ``num_clients`` makes wrap-around likelier than the configured limit.

        Args:
            ring_sum: the sum mod 2^k, length ``padded_dimension``, unsigned integers.
            num_clients: how many encoded vectors the sum contains.
            rotation_seed: the seed the clients used.

        Returns:
            The noisy float64 sum of the clipped updates, length ``dimension``.

        Raises:
            ParameterError: a malformed sum, count or seed.
        """
        config = self.config
        seed = _check_seed(rotation_seed)
        num_clients = _check_int("num_clients", num_clients, 1)
        array = np.asarray(ring_sum)
        if array.shape != (config.padded_dimension,):
            raise ParameterError(
                f"ring_sum has shape {array.shape}, expected ({config.padded_dimension},)"
            )
        if array.dtype.kind != "u":
            raise ParameterError(f"ring_sum must hold unsigned ring integers, not {array.dtype}")
        words = array.astype(np.uint64)
        if config.modulus_bits < 64 and np.any(words >> np.uint64(config.modulus_bits)):
            raise ParameterError(f"ring_sum has values outside Z_2^{config.modulus_bits}")
        config._warn_if_wraps(num_clients, stacklevel=3)
        centred = _centre(words, config.modulus_bits)
        return inverse_hadamard_rotate(
            centred.astype(np.float64) * config.granularity, seed, config.dimension
        )

    def _noise_share(self, length: int) -> IntArray:
        config = self.config
        if config.noise_multiplier == 0.0:
            return np.zeros(length, dtype=np.int64)
        if config.mechanism == "discrete_gaussian":
            return sample_discrete_gaussian(config.local_stddev, length)
        return sample_skellam(config.local_skellam_mu, length)

    def _wrap(self, values: IntArray) -> RingArray:
        words = values.astype(np.uint64)  # two's complement: already correct modulo 2^64
        if self.config.modulus_bits < 64:
            words &= np.uint64((1 << self.config.modulus_bits) - 1)
        return words.astype(self.config.dtype)


def _centre(words: npt.NDArray[np.uint64], modulus_bits: int) -> IntArray:
    """Read ring words as signed integers in [-2^(k-1), 2^(k-1))."""
    if modulus_bits == 64:
        return words.view(np.int64)
    signed = words.astype(np.int64)
    signed[signed >= (1 << (modulus_bits - 1))] -= 1 << modulus_bits
    return signed
