"""Distributed DP with nothing off the books (issue 12): a withheld sum is never unmasked, every
unmasked sum is charged at its own noise, and a server naming fewer survivors is refused.

The aggregator is calibrated once per module at sampling rate 1 (calibration and accounting
are then fast) and every test works on a deep copy. The masking round is real; the tap on its
messages is :attr:`MaskingSum.interceptor`, the simulator's interceptor.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.dp_aggregator import DistributedDPAggregator
from protocols.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    Message,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.errors import InsufficientSurvivorsError, RemoteProtocolError, ServerMisbehaviourError

EXPECTED = 4
MOST = 6
DIMENSION = 4
DELTA = 1e-5

logging.getLogger("absl").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def calibrated() -> DistributedDPAggregator:
    """Epsilon 3 over 3 rounds of 4 to 6 clients (SecAgg against an active server)."""
    return DistributedDPAggregator(
        target_epsilon=3.0,
        target_delta=DELTA,
        rounds=3,
        sampling_rate=1.0,
        expected_clients=EXPECTED,
        max_clients=MOST,
        dimension=DIMENSION,
        clip_norm=1.0,
    )


def _updates(count: int, seed: int = 0) -> dict[int, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return {u: rng.normal(0.0, 0.3, DIMENSION) for u in range(count)}


class Tap:
    """Records every message of the aggregator's masking rounds; ``change`` may rewrite them."""

    def __init__(self, change=None) -> None:
        self.change = change
        self.messages: list[Message] = []

    def __call__(self, round_index: int, message: Message) -> Message | None:
        if self.change is not None:
            message = self.change(message)
        self.messages.append(message)
        return message

    def kinds(self) -> set[type]:
        return {type(m) for m in self.messages}


def _library_epsilon(noise_multiplier: float, survivors: list[int], sampling_rate: float) -> float:
    """Epsilon of the released rounds straight from dp-accounting, one event per round."""
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    for s in survivors:
        event = dp_accounting.GaussianDpEvent(noise_multiplier * math.sqrt(s / EXPECTED))
        if sampling_rate < 1.0:
            event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
        accountant.compose(event)
    return float(accountant.get_epsilon(DELTA)) if survivors else 0.0


def test_too_few_survivors_are_withheld_before_any_unmasking(calibrated):
    aggregator = copy.deepcopy(calibrated)
    tap = Tap()
    aggregator.secure_sum.interceptor = tap
    # Five take part; two drop before uploading: three inputs, four noise shares needed.
    with pytest.raises(InsufficientSurvivorsError, match="minimum of 4 survivors"):
        aggregator.aggregate(_updates(5), dropouts={0: 1, 1: 2})
    report = aggregator.last_report
    assert report is not None and report.result is None
    assert not tap.kinds() & {ConsistencyRequest, UnmaskRequest, UnmaskResponse}
    assert aggregator.rounds_done == 0 and aggregator.epsilon_spent == 0.0
    assert aggregator.privacy_report()["survivors"] == []
    assert aggregator.privacy_report()["epsilon"] == 0.0


def test_clients_refuse_a_server_that_names_fewer_survivors(calibrated):
    """The server shows every client a survivor set of three (one uploader left out): each
    client's own floor (expected_clients) refuses it, no share is released, nothing is summed
    and nothing is charged."""
    aggregator = copy.deepcopy(calibrated)

    def forge(message: Message) -> Message:
        if isinstance(message, ConsistencyRequest):
            named = tuple(u for u in message.survivors if u != 3)
            return dataclasses.replace(message, survivors=named)
        return message

    tap = Tap(forge)
    aggregator.secure_sum.interceptor = tap
    with pytest.raises(InsufficientSurvivorsError):
        aggregator.aggregate(_updates(4))
    report = aggregator.last_report
    assert report is not None and report.result is None
    for client, error in report.client_errors.items():
        expected = RemoteProtocolError if client == 3 else ServerMisbehaviourError
        assert type(error) is expected, (client, error)
    assert set(report.client_errors) == {0, 1, 2, 3}
    assert "below the 4 this client requires" in str(report.client_errors[0])
    assert not tap.kinds() & {ConsistencySignature, UnmaskResponse}
    assert aggregator.rounds_done == 0 and aggregator.epsilon_spent == 0.0


def test_an_unmasked_sum_is_charged_even_when_decoding_then_fails(calibrated, monkeypatch):
    """Fault injection after the unmasking: the sum was released, so it is already charged."""
    aggregator = copy.deepcopy(calibrated)

    def broken_decode(*args: object) -> None:
        raise RuntimeError("decoder fault after the unmasking")

    monkeypatch.setattr(aggregator.mechanism, "decode", broken_decode)
    with pytest.raises(RuntimeError, match="decoder fault"):
        aggregator.aggregate(_updates(5))
    assert aggregator.round_survivors == (5,)
    expected = _library_epsilon(aggregator.config.noise_multiplier, [5], 1.0)
    assert aggregator.epsilon_spent == pytest.approx(expected, rel=1e-12)
    assert aggregator.epsilon_spent > 0.0


def test_a_round_is_charged_at_the_noise_of_its_survivors(calibrated):
    aggregator = copy.deepcopy(calibrated)
    z = aggregator.config.noise_multiplier
    result = aggregator.aggregate(_updates(6), dropouts={5: 3})  # a round-3 dropout uploaded
    assert len(result.survivors) == 6
    report = aggregator.privacy_report()
    assert report["survivors"] == [6]
    assert report["round_noise_multipliers"] == [pytest.approx(z * math.sqrt(6 / EXPECTED))]
    assert report["epsilon"] == pytest.approx(_library_epsilon(z, [6], 1.0), rel=1e-12)
    # Six noise shares of four: more noise than planned, so less than one planned round costs.
    assert report["epsilon"] < aggregator.accountant.epsilon_after(1)


@st.composite
def _schedules(draw: st.DrawFn) -> list[tuple[int, dict[int, int]]]:
    """Rounds of 3 to 6 clients (3: refused before encoding), some dropping before upload."""
    rounds = []
    for _ in range(draw(st.integers(1, 3))):
        count = draw(st.integers(EXPECTED - 1, MOST))
        dropping = draw(st.lists(st.integers(0, count - 1), max_size=3, unique=True))
        dropouts = {u: draw(st.integers(0, 4)) for u in dropping}
        rounds.append((count, dropouts))
    return rounds


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schedule=_schedules())
def test_reported_epsilon_is_never_below_that_of_the_released_sums(calibrated, schedule):
    """Property: over any schedule, the reported epsilon is the library's for the rounds that
    were actually released (recomputed here from their survivor counts alone), never below it,
    and a withheld round leaves it unchanged and nothing readable behind."""
    aggregator = copy.deepcopy(calibrated)
    released: list[int] = []
    for index, (count, dropouts) in enumerate(schedule):
        before, previous = aggregator.epsilon_spent, aggregator.last_report
        uploaded = count - sum(1 for r in dropouts.values() if r < 3)
        try:
            result = aggregator.aggregate(_updates(count, index), dropouts=dropouts)
        except InsufficientSurvivorsError:
            # Too few uploads for the floor, or (active model) too few consistency signers.
            assert aggregator.epsilon_spent == before
            if count < EXPECTED:  # refused before any masking round ran
                assert aggregator.last_report is previous
            else:  # aborted before any unmask request: nothing of it is readable
                assert aggregator.last_report is not None
                assert aggregator.last_report.result is None
            continue
        released.append(len(result.survivors))
        assert len(result.survivors) == uploaded >= EXPECTED
    independent = _library_epsilon(aggregator.config.noise_multiplier, released, 1.0)
    assert aggregator.round_survivors == tuple(released)
    assert aggregator.privacy_report()["survivors"] == released
    assert aggregator.epsilon_spent >= independent * (1.0 - 1e-12)
    assert aggregator.epsilon_spent == pytest.approx(independent, rel=1e-12, abs=0.0)
