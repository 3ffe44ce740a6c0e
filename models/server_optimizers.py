"""Server-side optimizers that step the global model from the secure aggregate alone.

Federated optimisation treats the clients' mean delta as a *pseudo-gradient* and lets the server
run an optimizer on it (Reddi et al. 2021, "Adaptive Federated Optimization"): plain
FedAvg (``sgd``), FedAvgM (heavy-ball momentum, Hsu et al. 2019), FedAdam and FedYogi. The server
only ever holds the aggregate, so every quantity here is a function of it: the optimizer state
(momentum, second moments) is the server's own and reveals nothing beyond the sums it was built
from.

Two choices make it fit recommenders:

* **Per-coordinate learning rates.** Item rows and dense weights get their own step size (the
  caller passes one per coordinate), because an item row's pseudo-gradient is a mean over the
  few clients that touched it and a dense weight's a mean over every survivor.
* **Lazy rows.** ``active`` marks the coordinates that received a pseudo-gradient this round
  (the item rows some survivor touched, and every dense weight). Inactive coordinates keep their
  value *and* their optimizer state, as in TensorFlow's LazyAdam: an item nobody rated this
  round neither moves on stale momentum nor has its second moment decayed towards zero.

The learning rate follows a schedule: ``constant``, or ``cosine`` decay from the base rate to
``final_fraction`` of it over ``total_rounds`` (Loshchilov & Hutter 2017, without restarts),
after an optional linear warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError

__all__ = [
    "SCHEDULES",
    "SERVER_OPTIMIZERS",
    "Schedule",
    "ServerOptimizer",
    "ServerOptimizerConfig",
    "ServerOptimizerName",
    "schedule_factor",
]

ServerOptimizerName = Literal["sgd", "fedavgm", "fedadam", "fedyogi"]
Schedule = Literal["constant", "cosine"]
#: The optimizer names ``--server-optimizer`` accepts.
SERVER_OPTIMIZERS: Final[tuple[str, ...]] = get_args(ServerOptimizerName)
#: The learning-rate schedules ``--server-schedule`` accepts.
SCHEDULES: Final[tuple[str, ...]] = get_args(Schedule)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptimizerConfig:
    """How the server turns a pseudo-gradient into a step.

    Attributes:
        name: ``sgd`` (FedAvg), ``fedavgm``, ``fedadam`` or ``fedyogi``.
        momentum: FedAvgM's heavy-ball coefficient.
        beta1: FedAdam / FedYogi first-moment decay.
        beta2: FedAdam / FedYogi second-moment decay.
        tau: FedAdam / FedYogi adaptivity (added to the root of the second moment; Reddi et al.
            tune it in ``[1e-5, 1e-1]``).
        schedule: ``constant`` or ``cosine``.
        warmup_rounds: rounds of linear warm-up before the schedule.
        final_fraction: the cosine schedule ends at this fraction of the base rate.
    """

    name: ServerOptimizerName = "sgd"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    schedule: Schedule = "constant"
    warmup_rounds: int = 0
    final_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in SERVER_OPTIMIZERS:
            raise ParameterError(
                f"server optimizer is {self.name!r}; choose one of {', '.join(SERVER_OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ParameterError(
                f"schedule is {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        for field_name in ("momentum", "beta1", "beta2"):
            if not 0.0 <= getattr(self, field_name) < 1.0:
                raise ParameterError(f"{field_name} must lie in [0, 1)")
        if not (math.isfinite(self.tau) and self.tau > 0) or not 0.0 <= self.final_fraction <= 1.0:
            raise ParameterError("tau must be finite and > 0, and final_fraction lie in [0, 1]")
        warmup = self.warmup_rounds
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ParameterError(f"warmup_rounds must be an int >= 0, got {warmup!r}")


def schedule_factor(config: ServerOptimizerConfig, round_number: int, total_rounds: int) -> float:
    """The multiplier of the base learning rate in 1-based round ``round_number``.

    Args:
        config: the optimizer settings (schedule, warm-up, final fraction).
        round_number: the round about to be applied, from 1.
        total_rounds: the run's planned rounds (the cosine's period).

    Returns:
        A factor in ``[final_fraction, 1]`` (in ``(0, 1]`` during the warm-up).
    """
    if round_number <= config.warmup_rounds:
        return round_number / (config.warmup_rounds + 1)
    if config.schedule == "constant" or total_rounds <= config.warmup_rounds + 1:
        return 1.0
    progress = (round_number - config.warmup_rounds - 1) / (total_rounds - config.warmup_rounds - 1)
    progress = min(max(progress, 0.0), 1.0)
    floor = config.final_fraction
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ServerOptimizer:
    """The server's optimizer state over the flat shared vector, and its step rule.

    The update of coordinate ``i`` with pseudo-gradient ``g`` (the mean client delta, which
    already points downhill) and learning rate ``eta_i * schedule``:

    * ``sgd``: ``x += eta g``;
    * ``fedavgm``: ``m = momentum m + g``; ``x += eta m``;
    * ``fedadam``: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``;
      ``x += eta m / (sqrt(v) + tau)``;
    * ``fedyogi``: as FedAdam with ``v -= (1 - b2) g^2 sign(v - g^2)``.

    Every step is deterministic float64 numpy on values decoded from the aggregate: two servers
    fed equal aggregates take bit-identical steps, whichever backend produced them
    (``tests/models/test_secure_server_step.py``).
    """

    def __init__(
        self, config: ServerOptimizerConfig, learning_rates: FloatArray, total_rounds: int
    ) -> None:
        """Create the state for a vector of ``learning_rates.shape`` coordinates.

        Args:
            config: the optimizer settings.
            learning_rates: shape ``(size,)`` the base step of each coordinate (> 0).
            total_rounds: planned rounds (the cosine schedule's period).

        Raises:
            ParameterError: a learning rate is not finite and positive, or ``total_rounds`` is
                not a positive int.
        """
        rates = np.asarray(learning_rates, dtype=np.float64)
        if rates.ndim != 1 or not np.all(np.isfinite(rates) & (rates > 0)):
            raise ParameterError("learning_rates must be a 1-D array of finite positive steps")
        if isinstance(total_rounds, bool) or not isinstance(total_rounds, int) or total_rounds < 1:
            raise ParameterError(f"total_rounds must be a positive int, got {total_rounds!r}")
        self.config = config
        self.learning_rates = rates
        self.total_rounds = total_rounds
        self.rounds_applied = 0
        size = rates.shape[0]
        self._first: FloatArray | None = None if config.name == "sgd" else np.zeros(size)
        self._second: FloatArray | None = (
            np.zeros(size) if config.name in ("fedadam", "fedyogi") else None
        )

    def step(self, pseudo_gradient: FloatArray, active: BoolArray) -> FloatArray:
        """The change to apply to the shared vector this round (and update the state).

        Args:
            pseudo_gradient: shape ``(size,)`` the mean client delta per coordinate.
            active: shape ``(size,)`` the coordinates that received a gradient this round;
                the others get a zero step and keep their state.

        Returns:
            Shape ``(size,)`` float64, zero on inactive coordinates.

        Raises:
            ParameterError: shapes differ or the gradient is not finite.
        """
        grad = np.asarray(pseudo_gradient, dtype=np.float64)
        active = np.asarray(active)
        if active.dtype != np.bool_:
            raise ParameterError(f"active must be a boolean array, got dtype {active.dtype}")
        if grad.shape != self.learning_rates.shape or active.shape != grad.shape:
            raise ParameterError(
                f"pseudo-gradient has shape {grad.shape}; expected {self.learning_rates.shape}"
            )
        if not np.all(np.isfinite(grad)):
            raise ParameterError("the pseudo-gradient holds NaN or infinity")
        self.rounds_applied += 1
        factor = schedule_factor(self.config, self.rounds_applied, self.total_rounds)
        rates = np.where(active, self.learning_rates * factor, 0.0)
        direction = self._direction(np.where(active, grad, 0.0), active)
        result: FloatArray = rates * direction
        return result

    def _direction(self, grad: FloatArray, active: BoolArray) -> FloatArray:
        config = self.config
        first, second = self._first, self._second
        if first is None:
            return grad
        if config.name == "fedavgm":
            np.copyto(first, config.momentum * first + grad, where=active)
            return first
        assert second is not None
        np.copyto(first, config.beta1 * first + (1.0 - config.beta1) * grad, where=active)
        squared = grad * grad
        if config.name == "fedadam":
            updated = config.beta2 * second + (1.0 - config.beta2) * squared
        else:
            updated = second - (1.0 - config.beta2) * squared * np.sign(second - squared)
        np.copyto(second, updated, where=active)
        direction: FloatArray = first / (np.sqrt(second) + config.tau)
        return direction
