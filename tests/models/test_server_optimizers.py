"""Server optimizers: known answers, lazy rows, the learning-rate schedule and bad input.

The steps are checked against numbers worked out by hand and against a scalar reimplementation
of the formulas in :class:`models.server_optimizers.ServerOptimizer`'s docstring, written here
independently of the vectorised code (plain Python floats, one coordinate at a time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.server_optimizers import (
    SCHEDULES,
    SERVER_OPTIMIZERS,
    Schedule,
    ServerOptimizer,
    ServerOptimizerConfig,
    ServerOptimizerName,
    schedule_factor,
)
from secagg.errors import ParameterError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ALL_ACTIVE = np.ones(1, dtype=bool)


def _steps(
    config: ServerOptimizerConfig, rates: list[float], grads: list[list[float]]
) -> list[FloatArray]:
    """Run ``grads`` (every coordinate active) through a fresh optimizer; return the steps."""
    optimizer = ServerOptimizer(config, np.array(rates), total_rounds=len(grads))
    active = np.ones(len(rates), dtype=bool)
    return [optimizer.step(np.array(g), active) for g in grads]


def _reference_factor(config: ServerOptimizerConfig, round_number: int, total: int) -> float:
    """The schedule written out: linear warm-up, then constant or cosine to the floor."""
    warmup = config.warmup_rounds
    if round_number <= warmup:
        return round_number / (warmup + 1)
    if config.schedule == "constant" or total <= warmup + 1:
        return 1.0
    progress = min(1.0, (round_number - warmup - 1) / (total - warmup - 1))
    floor = config.final_fraction
    return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * progress)) / 2.0


@dataclass
class _ReferenceOptimizer:
    """One coordinate at a time, in Python floats: the docstring's update rules, lazily."""

    config: ServerOptimizerConfig
    rates: list[float]
    total_rounds: int
    first: list[float] = field(init=False)
    second: list[float] = field(init=False)
    rounds: int = 0

    def __post_init__(self) -> None:
        self.first = [0.0] * len(self.rates)
        self.second = [0.0] * len(self.rates)

    def step(self, grad: list[float], active: list[bool]) -> list[float]:
        """The step of every coordinate; inactive ones get 0 and keep their state."""
        self.rounds += 1
        factor = _reference_factor(self.config, self.rounds, self.total_rounds)
        return [
            self._coordinate(i, g, factor) if on else 0.0
            for i, (g, on) in enumerate(zip(grad, active, strict=True))
        ]

    def _coordinate(self, i: int, g: float, factor: float) -> float:
        c = self.config
        eta = self.rates[i] * factor
        if c.name == "sgd":
            return eta * g
        if c.name == "fedavgm":
            self.first[i] = c.momentum * self.first[i] + g
            return eta * self.first[i]
        self.first[i] = c.beta1 * self.first[i] + (1.0 - c.beta1) * g
        v = self.second[i]
        if c.name == "fedadam":
            self.second[i] = c.beta2 * v + (1.0 - c.beta2) * g * g
        else:
            sign = (v > g * g) - (v < g * g)
            self.second[i] = v - (1.0 - c.beta2) * g * g * sign
        return eta * self.first[i] / (math.sqrt(self.second[i]) + c.tau)


# --- known answers, by hand --------------------------------------------------------------------


def test_sgd_steps_by_the_per_coordinate_rate() -> None:
    steps = _steps(ServerOptimizerConfig(), [0.5, 2.0], [[1.0, -3.0], [4.0, 0.25], [-2.0, 8.0]])
    expected = [[0.5, -6.0], [2.0, 0.5], [-1.0, 16.0]]
    for step, want in zip(steps, expected, strict=True):
        np.testing.assert_array_equal(step, want)


def test_fedavgm_accumulates_heavy_ball_momentum() -> None:
    config = ServerOptimizerConfig(name="fedavgm", momentum=0.5)
    steps = _steps(config, [2.0], [[1.0], [2.0], [3.0]])
    # m = 1, 0.5 * 1 + 2 = 2.5, 0.5 * 2.5 + 3 = 4.25; the step is 2 m.
    assert [float(s[0]) for s in steps] == [2.0, 5.0, 8.5]


@pytest.mark.parametrize(
    ("name", "third"),
    [
        # v3 = 0.75 * 4 + 0.25 * 16 = 7.
        ("fedadam", 3.0 / (math.sqrt(7.0) + 0.5)),
        # v3 = 4 - 0.25 * 16 * sign(4 - 16) = 8.
        ("fedyogi", 3.0 / (math.sqrt(8.0) + 0.5)),
    ],
)
def test_adaptive_optimizers_known_answers(name: ServerOptimizerName, third: float) -> None:
    """g = 4, 2, 4 with b1 = 0.5, b2 = 0.75, tau = 0.5 (worked out by hand).

    Round 1: m = 2, v = 4 (both rules), step 2 / (2 + 0.5) = 0.8. Round 2: m = 2, v = 4 (g^2 = v,
    so Yogi's sign is 0), step 0.8. Round 3: m = 3, and the second moments part ways.
    """
    config = ServerOptimizerConfig(name=name, beta1=0.5, beta2=0.75, tau=0.5)
    steps = [float(s[0]) for s in _steps(config, [1.0], [[4.0], [2.0], [4.0]])]
    assert steps[0] == pytest.approx(0.8, rel=1e-15)
    assert steps[1] == pytest.approx(0.8, rel=1e-15)
    assert steps[2] == pytest.approx(third, rel=1e-15)


def test_fedyogi_and_fedadam_differ_once_the_gradient_shrinks() -> None:
    """Adam's v decays towards a small g^2 geometrically; Yogi's only additively."""
    grads = [[3.0], [0.1], [0.1]]
    adam = _steps(ServerOptimizerConfig(name="fedadam", beta2=0.5), [1.0], grads)
    yogi = _steps(ServerOptimizerConfig(name="fedyogi", beta2=0.5), [1.0], grads)
    np.testing.assert_array_equal(adam[0], yogi[0])
    assert abs(float(adam[2][0])) > abs(float(yogi[2][0]))


# --- against the scalar reference --------------------------------------------------------------


@pytest.mark.parametrize("name", SERVER_OPTIMIZERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_three_steps_match_the_reference(name: ServerOptimizerName, schedule: Schedule) -> None:
    config = ServerOptimizerConfig(
        name=name,
        momentum=0.7,
        beta1=0.8,
        beta2=0.9,
        tau=0.05,
        schedule=schedule,
        warmup_rounds=1,
        final_fraction=0.2,
    )
    rng = np.random.default_rng(7)
    rates = rng.uniform(0.1, 3.0, size=6)
    optimizer = ServerOptimizer(config, rates, total_rounds=3)
    reference = _ReferenceOptimizer(config, rates.tolist(), 3)
    masks = [
        [True] * 6,
        [True, False, True, False, True, True],
        [False, True, True, True, False, True],
    ]
    for mask in masks:
        grad = rng.normal(0.0, 1.0, size=6)
        step = optimizer.step(grad, np.array(mask))
        want = reference.step(grad.tolist(), mask)
        np.testing.assert_allclose(step, want, rtol=1e-12, atol=0.0)
        assert np.all(step[~np.array(mask)] == 0.0)
    assert optimizer.rounds_applied == 3


# --- lazy rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVER_OPTIMIZERS)
def test_inactive_rounds_leave_no_trace(name: ServerOptimizerName) -> None:
    """A coordinate skipped in round 2 steps in round 3 as if round 2 never happened.

    Coordinate 1 of the two-coordinate optimizer sees g1, (skipped: a large stale gradient),
    g3; a one-coordinate optimizer that only ever sees g1, g3 must take the very same steps.
    Coordinate 0 is active throughout, so the optimizer's round counter does move.
    """
    config = ServerOptimizerConfig(name=name, momentum=0.6, beta1=0.7, beta2=0.8)
    lazy = ServerOptimizer(config, np.array([1.0, 0.3]), total_rounds=3)
    direct = ServerOptimizer(config, np.array([0.3]), total_rounds=3)
    g1, g3 = 0.9, -0.4
    first = lazy.step(np.array([0.2, g1]), np.array([True, True]))
    skipped = lazy.step(np.array([-0.5, 50.0]), np.array([True, False]))
    third = lazy.step(np.array([0.1, g3]), np.array([True, True]))
    assert skipped[1] == 0.0
    assert first[1] == direct.step(np.array([g1]), ALL_ACTIVE)[0]
    assert third[1] == direct.step(np.array([g3]), ALL_ACTIVE)[0]


def test_stale_momentum_moves_an_active_zero_gradient_coordinate() -> None:
    """The contrast to laziness: active with g = 0, FedAvgM still steps on its momentum."""
    optimizer = ServerOptimizer(
        ServerOptimizerConfig(name="fedavgm", momentum=0.5), np.ones(1), total_rounds=2
    )
    optimizer.step(np.array([1.0]), ALL_ACTIVE)
    assert optimizer.step(np.array([0.0]), ALL_ACTIVE)[0] == 0.5


# --- schedule ----------------------------------------------------------------------------------


def test_constant_schedule_is_one() -> None:
    config = ServerOptimizerConfig(schedule="constant")
    assert [schedule_factor(config, r, 10) for r in range(1, 13)] == [1.0] * 12


def test_cosine_runs_from_one_to_the_final_fraction() -> None:
    config = ServerOptimizerConfig(schedule="cosine", final_fraction=0.1)
    factors = [schedule_factor(config, r, 11) for r in range(1, 12)]
    assert factors[0] == 1.0
    assert factors[5] == pytest.approx(0.55, rel=1e-12)  # half way: (1 + 0.1) / 2
    assert factors[-1] == pytest.approx(0.1, rel=1e-12)
    assert all(a > b for a, b in pairwise(factors))
    # Past the planned rounds the rate stays at the floor.
    assert schedule_factor(config, 15, 11) == pytest.approx(0.1, rel=1e-12)


def test_warmup_is_linear_then_the_cosine_starts_at_one() -> None:
    config = ServerOptimizerConfig(schedule="cosine", warmup_rounds=3, final_fraction=0.25)
    warm = [schedule_factor(config, r, 8) for r in range(1, 4)]
    assert warm == pytest.approx([0.25, 0.5, 0.75], rel=1e-15)
    assert schedule_factor(config, 4, 8) == 1.0
    assert schedule_factor(config, 8, 8) == pytest.approx(0.25, rel=1e-12)
    constant = ServerOptimizerConfig(warmup_rounds=3)
    assert [schedule_factor(constant, r, 8) for r in range(1, 6)] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0], rel=1e-15
    )


def test_cosine_with_no_room_after_warmup_is_one() -> None:
    config = ServerOptimizerConfig(schedule="cosine", warmup_rounds=2)
    assert schedule_factor(config, 3, 3) == 1.0
    assert schedule_factor(config, 1, 1) == pytest.approx(1 / 3)


def test_step_follows_the_schedule() -> None:
    config = ServerOptimizerConfig(schedule="cosine", final_fraction=0.0)
    optimizer = ServerOptimizer(config, np.array([2.0]), total_rounds=3)
    steps = [float(optimizer.step(np.array([1.0]), ALL_ACTIVE)[0]) for _ in range(3)]
    assert steps == pytest.approx([2.0, 1.0, 0.0], abs=1e-15)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"name": "adagrad"},
        {"schedule": "linear"},
        {"momentum": 1.0},
        {"momentum": -0.1},
        {"beta1": 1.0},
        {"beta1": float("nan")},
        {"beta2": 1.5},
        {"beta2": -1e-9},
        {"tau": 0.0},
        {"tau": -1e-3},
        {"tau": float("nan")},
        {"final_fraction": -0.1},
        {"final_fraction": 1.5},
        {"warmup_rounds": -1},
    ],
    ids=repr,
)
def test_bad_configs_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ParameterError):
        ServerOptimizerConfig(**options)


@pytest.mark.parametrize(
    "rates",
    [[1.0, 0.0], [1.0, -0.5], [float("nan")], [[1.0, 1.0]], 0.5],
    ids=repr,
)
def test_non_positive_learning_rates_are_refused(rates: Any) -> None:
    with pytest.raises(ParameterError, match="learning_rates"):
        ServerOptimizer(ServerOptimizerConfig(), np.array(rates), total_rounds=1)


@pytest.mark.parametrize(
    ("grad", "active", "match"),
    [
        (np.zeros(2), np.ones(3, dtype=bool), "shape"),
        (np.zeros(4), np.ones(4, dtype=bool), "shape"),
        (np.zeros((3, 1)), np.ones((3, 1), dtype=bool), "shape"),
        (np.array([0.0, np.nan, 0.0]), np.ones(3, dtype=bool), "NaN"),
        (np.array([0.0, 0.0, np.inf]), np.ones(3, dtype=bool), "NaN"),
    ],
)
def test_bad_gradients_are_refused(grad: FloatArray, active: BoolArray, match: str) -> None:
    optimizer = ServerOptimizer(ServerOptimizerConfig(name="fedadam"), np.ones(3), total_rounds=2)
    with pytest.raises(ParameterError, match=match):
        optimizer.step(grad, active)
    # A refused step does not count as a round.
    assert optimizer.rounds_applied == 0


# --- property ----------------------------------------------------------------------------------


@st.composite
def _sgd_runs(draw: st.DrawFn) -> tuple[ServerOptimizerConfig, int, FloatArray, list[Any]]:
    size = draw(st.integers(1, 8))
    config = ServerOptimizerConfig(
        schedule=draw(st.sampled_from(get_args(Schedule))),
        warmup_rounds=draw(st.integers(0, 3)),
        final_fraction=draw(st.floats(0.0, 1.0)),
    )
    total = draw(st.integers(1, 8))
    rates = np.array(draw(st.lists(st.floats(1e-3, 10.0), min_size=size, max_size=size)))
    rounds = [
        (
            np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=size, max_size=size))),
            np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size))),
        )
        for _ in range(draw(st.integers(1, 5)))
    ]
    return config, total, rates, rounds


@settings(max_examples=60, deadline=None)
@given(_sgd_runs())
def test_sgd_step_is_rate_times_gradient_times_schedule(
    run: tuple[ServerOptimizerConfig, int, FloatArray, list[Any]],
) -> None:
    config, total, rates, rounds = run
    optimizer = ServerOptimizer(config, rates, total_rounds=total)
    for number, (grad, active) in enumerate(rounds, start=1):
        step = optimizer.step(grad, active)
        factor = _reference_factor(config, number, total)
        np.testing.assert_allclose(
            step[active], (rates * grad * factor)[active], rtol=1e-12, atol=1e-300
        )
        assert np.all(step[~active] == 0.0)
