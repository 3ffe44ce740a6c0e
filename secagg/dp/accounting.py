"""Privacy accounting and the choice of parameters, by Google's ``dp-accounting`` library.

Rules of this module:

* Privacy accounting is done by ``dp-accounting`` (:class:`PrivacyAccountant`), never by
  hand-written formulas here.
* The library is imported lazily (the ``dp`` extra), so the samplers, the rotation and the
  mechanism work without it; only the accountant and :func:`choose_parameters` need it.
* :func:`choose_parameters` turns a privacy target into a :class:`DistributedDPConfig`: the
  noise multiplier comes from the library's calibration, the granularity is then the finest
  whose wrap-around bound stays under the limit.
* What was spent is what was released: :meth:`PrivacyAccountant.charge` records each released
  sum with its survivor count, and :meth:`PrivacyAccountant.epsilon_spent` composes exactly
  those rounds, each at its own noise (s of n noise shares: multiplier z * sqrt(s / n)).
"""

from __future__ import annotations

import importlib
import math
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, Protocol, cast

from secagg.dp._checks import _check_choice, _check_int, _check_real
from secagg.dp.mechanisms import (
    _MAX_SCALED_NORM,
    DEFAULT_MAX_WRAP_PROBABILITY,
    DistributedDPConfig,
    Mechanism,
    _check_mechanism,
    _local_stddev_limit,
    wrap_probability,
)
from secagg.dp.rotation import padded_dimension
from secagg.dp.rounding import DEFAULT_ROUNDING_BETA, rounded_l2_bound
from secagg.errors import ParameterError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["AccountantKind", "PrivacyAccountant", "SpentReport", "choose_parameters"]

AccountantKind = Literal["rdp", "pld"]
#: JSON-ready report of the privacy spent: numbers, names, per-round lists, or ``None``.
SpentReport = dict[str, float | int | str | list[int] | list[float] | None]
_ACCOUNTANTS: Final = ("rdp", "pld")


def _check_accountant(value: object) -> AccountantKind:
    return cast(AccountantKind, _check_choice("accountant", value, _ACCOUNTANTS))


def _dp_accounting() -> ModuleType:
    try:
        return importlib.import_module("dp_accounting")
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "privacy accounting needs Google's dp-accounting: pip install 'secagg[dp]' "
            "(or pip install dp-accounting)"
        ) from error


def _training_event(noise_multiplier: float, sampling_rate: float, rounds: int) -> object:
    """The DpEvent of ``rounds`` rounds, each Poisson-sampling clients at ``sampling_rate``."""
    dp = _dp_accounting()
    per_round = dp.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1.0:
        per_round = dp.PoissonSampledDpEvent(sampling_rate, per_round)
    return dp.SelfComposedDpEvent(per_round, rounds)


class _LibraryAccountant(Protocol):
    """The part of ``dp_accounting.PrivacyAccountant`` used here (the library is untyped)."""

    def compose(self, event: object) -> object: ...

    def get_epsilon(self, target_delta: float) -> float: ...


class _LibraryRdpAccountant(_LibraryAccountant, Protocol):
    def get_epsilon_and_optimal_order(self, target_delta: float) -> tuple[float, float]: ...


def _fresh_accountant(kind: AccountantKind) -> _LibraryAccountant:
    dp = _dp_accounting()
    adjacency = dp.NeighboringRelation.ADD_OR_REMOVE_ONE
    if kind == "rdp":
        return cast(_LibraryAccountant, dp.rdp.RdpAccountant(neighboring_relation=adjacency))
    return cast(_LibraryAccountant, dp.pld.PLDAccountant(neighboring_relation=adjacency))


class PrivacyAccountant:
    """Client-level (epsilon, delta) spent by distributed DP training, from ``dp-accounting``.

    Each round Poisson-samples every client with probability ``sampling_rate`` and releases the
    sum of the sampled clients' rounded vectors plus noise of standard deviation z * Delta_2
    (z = ``noise_multiplier``). The accountant composes, with Google's ``dp-accounting``,
    ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), rounds)`` under
    add-or-remove-one adjacency, in its RDP accountant (``RdpAccountant``, default) or its PLD
    accountant (``PLDAccountant``, tighter and slower).

    Approximation: the library has no discrete Gaussian or Skellam event, so the summed
    discrete noise is accounted as the continuous Gaussian of the same variance. For the
    distributed discrete Gaussian, Kairouz et al. 2021 (Theorem 1) bound the difference by a
    term tau * d that is negligible once each client's share has a standard deviation of a few
    integer units (:attr:`DistributedDPConfig.discretization_gap` reports it); the Skellam
    mechanism's Renyi divergence converges to the Gaussian one as mu grows (Agarwal et al. 2021,
    Theorem 3.5). The configuration warns with :class:`~secagg.dp.DPApproximationWarning` when
    the shares are too small for this to hold.

    The per-round record: :meth:`charge` records one released sum and how many noise shares
    it holds; each of the ``expected_clients`` = n shares the noise was split into has variance
    (z Delta_2)^2 / n, so a sum of s shares has noise multiplier z * sqrt(s / n).
    :meth:`epsilon_spent` composes the charged rounds at those multipliers (a round that was
    never released is never charged and costs nothing).

    Args:
        noise_multiplier: z, the central noise standard deviation over the L2 sensitivity.
        sampling_rate: q, each client's probability of taking part in a round, in (0, 1].
        delta: the target delta, in (0, 1).
        accountant: ``"rdp"`` or ``"pld"``.
        expected_clients: n, the noise shares that add up to the full noise (needed by
            :meth:`charge`; :meth:`for_config` takes it from the configuration).
    """

    def __init__(
        self,
        *,
        noise_multiplier: float,
        sampling_rate: float,
        delta: float,
        accountant: AccountantKind = "rdp",
        expected_clients: int | None = None,
    ) -> None:
        self.noise_multiplier = _check_real("noise_multiplier", noise_multiplier, low=0.0)
        self.sampling_rate = _check_real(
            "sampling_rate", sampling_rate, low=0.0, high=1.0, low_open=True
        )
        self.delta = _check_real("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
        self.accountant = _check_accountant(accountant)
        self.expected_clients = (
            None
            if expected_clients is None
            else _check_int("expected_clients", expected_clients, 1)
        )
        self._cache: dict[int, tuple[float, float | None]] = {}
        self._released: list[int] = []
        # The charged rounds, composed one by one as they are charged (each round's event is
        # computed once), and the epsilon (and RDP order) they spend.
        self._running: _LibraryAccountant | None = None
        self._spent: tuple[float, float | None] = (0.0, None)

    @classmethod
    def for_config(
        cls,
        config: DistributedDPConfig,
        *,
        sampling_rate: float,
        delta: float,
        accountant: AccountantKind = "rdp",
    ) -> PrivacyAccountant:
        """The accountant of a configured mechanism."""
        return cls(
            noise_multiplier=config.noise_multiplier,
            sampling_rate=sampling_rate,
            delta=delta,
            accountant=accountant,
            expected_clients=config.expected_clients,
        )

    def epsilon_after(self, rounds: int) -> float:
        """The epsilon spent after ``rounds`` rounds at this accountant's delta.

        Raises:
            ParameterError: ``rounds`` is negative.
        """
        return self._epsilon_and_order(rounds)[0]

    # -- the released rounds ----------------------------------------------------------------

    def round_noise_multiplier(self, survivors: int) -> float:
        """z * sqrt(s / n): the noise multiplier of a sum of ``survivors`` noise shares.

        Raises:
            ParameterError: ``survivors`` is not a positive int, or this accountant was built
                without ``expected_clients``.
        """
        if self.expected_clients is None:
            raise ParameterError(
                "this accountant was built without expected_clients, the number of noise "
                "shares the noise was split into: pass expected_clients= (or use for_config)"
            )
        count = _check_int("survivors", survivors, 1)
        return self.noise_multiplier * math.sqrt(count / self.expected_clients)

    def charge(self, survivors: int) -> float:
        """Record one released sum of ``survivors`` noise shares; return the epsilon spent.

        Call it the moment a sum is unmasked, whatever happens to it afterwards: a released
        sum has been seen.

        Raises:
            ParameterError: as :meth:`round_noise_multiplier`.
        """
        noise_multiplier = self.round_noise_multiplier(survivors)
        self._released.append(int(survivors))
        if noise_multiplier == 0.0 or self._spent[0] == math.inf:
            self._spent = (math.inf, None)
            return math.inf
        if self._running is None:
            self._running = _fresh_accountant(self.accountant)
        self._running.compose(_training_event(noise_multiplier, self.sampling_rate, 1))
        self._spent = self._epsilon_of(self._running)
        return self._spent[0]

    @property
    def released(self) -> tuple[int, ...]:
        """The survivor count of every charged round, in the order they were charged."""
        return tuple(self._released)

    def epsilon_spent(self) -> float:
        """The epsilon of the charged rounds, each at its own noise (0 before the first)."""
        return self._spent[0]

    def spent_report(self) -> SpentReport:
        """A JSON-ready report of the privacy the charged rounds spent.

        The keys of :meth:`privacy_report` (``epsilon`` and ``rdp_order`` now of the charged
        rounds, ``rounds`` their number, ``noise_multiplier`` the calibrated z), plus
        ``survivors`` (each charged round's survivor count, in order), ``round_noise_multipliers``
        (each round's z * sqrt(s / n)) and ``expected_clients`` (n).
        """
        epsilon, order = self._spent
        report: SpentReport = dict(self.privacy_report(0))
        report.update(
            epsilon=epsilon,
            rounds=len(self._released),
            rdp_order=order,
            survivors=list(self._released),
            round_noise_multipliers=[self.round_noise_multiplier(s) for s in self._released],
            expected_clients=self.expected_clients,
        )
        return report

    # -- reports ------------------------------------------------------------------------------

    def privacy_report(self, rounds: int) -> dict[str, float | int | str | None]:
        """A JSON-ready report of the privacy spent after ``rounds`` rounds.

        Keys: ``epsilon``, ``delta``, ``rounds``, ``noise_multiplier``, ``sampling_rate``,
        ``accountant`` (the dp-accounting class), ``library`` (name and version),
        ``rdp_order`` (the optimal Renyi order, RDP only, else ``None``) and ``neighboring``.
        """
        epsilon, order = self._epsilon_and_order(rounds)
        return {
            "epsilon": epsilon,
            "delta": self.delta,
            "rounds": rounds,
            "noise_multiplier": self.noise_multiplier,
            "sampling_rate": self.sampling_rate,
            "accountant": "RdpAccountant" if self.accountant == "rdp" else "PLDAccountant",
            "library": f"dp-accounting {_library_version()}",
            "rdp_order": order,
            "neighboring": "add_or_remove_one",
        }

    def _epsilon_and_order(self, rounds: int) -> tuple[float, float | None]:
        rounds = _check_int("rounds", rounds, 0)
        if rounds not in self._cache:
            self._cache[rounds] = self._compute(rounds)
        return self._cache[rounds]

    def _compute(self, rounds: int) -> tuple[float, float | None]:
        if rounds == 0:
            return 0.0, None
        if self.noise_multiplier == 0.0:
            return math.inf, None
        accountant = _fresh_accountant(self.accountant)
        accountant.compose(_training_event(self.noise_multiplier, self.sampling_rate, rounds))
        return self._epsilon_of(accountant)

    def _epsilon_of(self, accountant: _LibraryAccountant) -> tuple[float, float | None]:
        """The composed accountant's epsilon at this delta (and the optimal RDP order)."""
        if self.accountant == "rdp":
            rdp = cast(_LibraryRdpAccountant, accountant)
            epsilon, order = rdp.get_epsilon_and_optimal_order(self.delta)
            return float(epsilon), float(order)
        return float(accountant.get_epsilon(self.delta)), None


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dp-accounting")
    except PackageNotFoundError:  # pragma: no cover - a source checkout of the library
        return "unknown"


def _calibrate_noise_multiplier(
    target_epsilon: float,
    target_delta: float,
    rounds: int,
    sampling_rate: float,
    accountant: AccountantKind,
) -> float:
    """The smallest z whose composed event spends at most ``target_epsilon`` (dp-accounting)."""
    dp = _dp_accounting()
    bracket = dp.LowerEndpointAndGuess(1e-3, 1.0)
    if accountant == "pld":
        # A PLD at tiny z needs an enormous discretisation grid (tens of GiB); start the PLD
        # search from the RDP answer, which upper-bounds it, and search a factor of 4 below.
        upper = _calibrate_noise_multiplier(
            target_epsilon, target_delta, rounds, sampling_rate, "rdp"
        )
        bracket = dp.LowerEndpointAndGuess(upper / 4, upper)
    noise_multiplier = dp.calibrate_dp_mechanism(
        lambda: _fresh_accountant(accountant),
        lambda z: _training_event(z, sampling_rate, rounds),
        target_epsilon,
        target_delta,
        bracket_interval=bracket,
    )
    return float(noise_multiplier)


def _choose_granularity(
    *,
    mechanism: Mechanism,
    clip_norm: float,
    padded_dimension: int,
    expected_clients: int,
    modulus_bits: int,
    noise_multiplier: float,
    rounding_beta: float,
    max_wrap_probability: float,
) -> float:
    """The finest gamma whose wrap-around bound is at most the limit.

    Finer is better: the rounding inflation gamma * Delta_2 / c falls towards 1. The search runs
    between c / 2^40 (finer gains nothing in float64) and c / sqrt(D) (coarser and the grid step
    exceeds a typical rotated coordinate, so quantization dominates); if even the coarsest grid
    wraps too often, it is returned and the configuration warns.
    """

    def wraps(granularity: float) -> float:
        scaled = clip_norm / granularity
        sensitivity = rounded_l2_bound(scaled, padded_dimension, rounding_beta)
        return wrap_probability(
            modulus_bits=modulus_bits,
            padded_dimension=padded_dimension,
            num_clients=expected_clients,
            scaled_clip_norm=scaled,
            central_stddev=noise_multiplier * sensitivity,
        )

    finest = max(
        clip_norm / _MAX_SCALED_NORM,
        _finest_for_sampler(
            mechanism, clip_norm, padded_dimension, expected_clients, noise_multiplier
        ),
    )
    coarsest = max(finest, clip_norm / math.sqrt(padded_dimension))
    if wraps(finest) <= max_wrap_probability:
        return finest
    if wraps(coarsest) > max_wrap_probability:
        return coarsest
    low, high = math.log(finest), math.log(coarsest)
    for _ in range(100):
        middle = (low + high) / 2.0
        if wraps(math.exp(middle)) <= max_wrap_probability:
            high = middle
        else:
            low = middle
    return math.exp(high)


def _finest_for_sampler(
    mechanism: Mechanism,
    clip_norm: float,
    padded_dimension: int,
    expected_clients: int,
    noise_multiplier: float,
) -> float:
    """The finest gamma whose noise shares stay inside the sampler's float64 range.

    Uses Delta_2 <= c / gamma + sqrt(D), so z Delta_2 / sqrt(n) <= limit holds at the result.
    """
    if noise_multiplier == 0.0:
        return 0.0
    headroom = _local_stddev_limit(mechanism) * math.sqrt(expected_clients) / noise_multiplier
    headroom -= math.sqrt(padded_dimension)
    if headroom <= 0.0:
        raise ParameterError(
            f"noise multiplier {noise_multiplier:.3g} is too large for the {mechanism} sampler "
            f"at dimension {padded_dimension}; raise target_epsilon or expected_clients"
        )
    return clip_norm / headroom


class _PrivacyTarget(NamedTuple):
    """The checked privacy target, in the order of :func:`_calibrate_noise_multiplier`."""

    epsilon: float
    delta: float
    rounds: int
    sampling_rate: float
    accountant: AccountantKind


class _RingArguments(NamedTuple):
    """The checked arguments that size the grid and the ring."""

    expected_clients: int
    modulus_bits: int
    clip_norm: float
    rounding_beta: float


def _checked_target(
    accountant: AccountantKind,
    target_epsilon: float,
    target_delta: float,
    rounds: int,
    sampling_rate: float,
) -> _PrivacyTarget:
    """Check the privacy target of :func:`choose_parameters`, the accountant first."""
    accountant_name = _check_accountant(accountant)
    return _PrivacyTarget(
        epsilon=_check_real("target_epsilon", target_epsilon, low=0.0, high=1e3, low_open=True),
        delta=_check_real(
            "target_delta", target_delta, low=0.0, high=1.0, low_open=True, high_open=True
        ),
        rounds=_check_int("rounds", rounds, 1),
        sampling_rate=_check_real("sampling_rate", sampling_rate, low=0.0, high=1.0, low_open=True),
        accountant=accountant_name,
    )


def _checked_ring(
    expected_clients: int, modulus_bits: int, clip_norm: float, rounding_beta: float
) -> _RingArguments:
    """Check the grid and ring arguments of :func:`choose_parameters`, in that order."""
    return _RingArguments(
        expected_clients=_check_int("expected_clients", expected_clients, 1),
        modulus_bits=_check_int("modulus_bits", modulus_bits, 2, 64),
        clip_norm=_check_real("clip_norm", clip_norm, low=0.0, low_open=True),
        rounding_beta=_check_real(
            "rounding_beta", rounding_beta, low=0.0, high=1.0, high_open=True
        ),
    )


def _config_at_finest_granularity(
    mechanism: Mechanism,
    dimension: int,
    ring: _RingArguments,
    noise_multiplier: float,
    max_wrap_probability: float,
) -> DistributedDPConfig:
    """Step 2 of :func:`choose_parameters`: the configuration at the finest safe granularity."""
    granularity = _choose_granularity(
        mechanism=mechanism,
        clip_norm=ring.clip_norm,
        padded_dimension=padded_dimension(dimension),
        expected_clients=ring.expected_clients,
        modulus_bits=ring.modulus_bits,
        noise_multiplier=noise_multiplier,
        rounding_beta=ring.rounding_beta,
        max_wrap_probability=max_wrap_probability,
    )
    return DistributedDPConfig(
        mechanism=mechanism,
        dimension=dimension,
        clip_norm=ring.clip_norm,
        expected_clients=ring.expected_clients,
        modulus_bits=ring.modulus_bits,
        noise_multiplier=noise_multiplier,
        granularity=granularity,
        rounding_beta=ring.rounding_beta,
        max_wrap_probability=max_wrap_probability,
    )


def choose_parameters(
    *,
    target_epsilon: float,
    target_delta: float,
    rounds: int,
    sampling_rate: float,
    expected_clients: int,
    dimension: int,
    modulus_bits: int,
    clip_norm: float,
    mechanism: Mechanism = "discrete_gaussian",
    rounding_beta: float = DEFAULT_ROUNDING_BETA,
    max_wrap_probability: float = DEFAULT_MAX_WRAP_PROBABILITY,
    accountant: AccountantKind = "rdp",
) -> DistributedDPConfig:
    """Choose the noise and the granularity for a target (epsilon, delta) over ``rounds`` rounds.

    1. The noise multiplier z is the smallest for which ``dp-accounting`` reports at most
       ``target_epsilon`` after ``rounds`` Poisson-sampled rounds
       (``dp_accounting.calibrate_dp_mechanism`` over the events of :class:`PrivacyAccountant`).
    2. The granularity gamma is the finest for which the wrap-around bound of the sum of
       ``expected_clients`` vectors in Z_{2^k} stays at most ``max_wrap_probability``
       (:func:`wrap_probability`). If no gamma achieves it, the coarsest sensible one is used and
       :class:`~secagg.dp.DPWrapAroundWarning` names the smallest ``modulus_bits`` that would.

    Args:
        target_epsilon: epsilon to spend over all rounds, > 0.
        target_delta: delta, in (0, 1); typically below 1 / (number of clients).
        rounds: number of training rounds, >= 1.
        sampling_rate: q, each client's probability of taking part in a round, in (0, 1].
        expected_clients: n, clients per round (about q times the population).
        dimension: d, the length of a float update.
        modulus_bits: k, the ring of the secure sum, in [2, 64].
        clip_norm: c, the L2 clipping bound of an update.
        mechanism: ``"discrete_gaussian"`` or ``"skellam"``.
        rounding_beta: beta of conditional rounding.
        max_wrap_probability: the wrap-around limit (default 1e-4).
        accountant: ``"rdp"`` (default) or ``"pld"``.

    Returns:
        The validated :class:`DistributedDPConfig`.

    Raises:
        ParameterError: an argument out of range.
        ImportError: dp-accounting is not installed.
    """
    mechanism_name = _check_mechanism(mechanism)
    target = _checked_target(accountant, target_epsilon, target_delta, rounds, sampling_rate)
    ring = _checked_ring(expected_clients, modulus_bits, clip_norm, rounding_beta)
    noise_multiplier = _calibrate_noise_multiplier(*target)
    return _config_at_finest_granularity(
        mechanism_name, dimension, ring, noise_multiplier, max_wrap_probability
    )
