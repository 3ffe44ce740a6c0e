"""Whole Paillier rounds through :class:`PaillierSimulator`: bit-for-bit exact sums for random
inputs, client counts up to the headroom limit and any dropout schedule, and the wire limits of
the Paillier messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import wire
from protocols.messages import KEY_HOLDER_ID, SERVER_ID, DecryptedAggregate, DecryptionRequest
from secagg.errors import InsufficientSurvivorsError, ParameterError
from secagg.hazmat.paillier import PaillierKeypair, RandomnessMode

if TYPE_CHECKING:
    from conftest import PaillierKit

UPLOAD = 2  # Protocol round index of the upload (as in dropout schedules).


@st.composite
def paillier_rounds(draw: st.DrawFn) -> dict[str, Any]:
    """A round: n clients, headroom, value bits, input fill, dropout schedule, mode, transport."""
    n = draw(st.integers(2, 12))
    max_clients = draw(st.integers(n, 16))
    headroom = (max_clients - 1).bit_length()
    value_bits = draw(st.integers(1, min(63, 64 - headroom)))
    vector_length = draw(st.integers(1, 300))
    schedule = draw(
        st.dictionaries(st.integers(0, n - 1), st.integers(0, 3), max_size=n),
    )
    return {
        "n": n,
        "max_clients": max_clients,
        "value_bits": value_bits,
        "vector_length": vector_length,
        "dropouts": schedule,
        "fill": draw(st.sampled_from(["random", "random", "max", "zero"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "mode": draw(st.sampled_from(RandomnessMode)),
        "through_wire": draw(st.booleans()),
        "narrow_dtype": draw(st.booleans()),
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=paillier_rounds())
def test_simulator_sum_is_exact_for_random_rounds(
    kit: type[PaillierKit], keys: PaillierKeypair, config: dict[str, Any]
) -> None:
    params = kit.params(
        config["n"],
        vector_length=config["vector_length"],
        value_bits=config["value_bits"],
        max_clients=config["max_clients"],
    )
    inputs = kit.inputs(params, seed=config["seed"], fill=config["fill"])
    if config["narrow_dtype"] and config["value_bits"] <= 32:
        inputs = {u: v.astype(np.uint32) for u, v in inputs.items()}
    schedule: dict[int, int] = config["dropouts"]
    contributors = tuple(u for u in params.clients if schedule.get(u, 4) > UPLOAD)
    dropped = tuple(u for u in params.clients if u not in contributors)

    requests, record = kit.recorder(DecryptionRequest)
    report, holder = kit.simulate(
        keys,
        params,
        inputs,
        mode=config["mode"],
        dropouts=schedule,
        through_wire=config["through_wire"],
        interceptor=record,
    )

    assert report.dropped_at == {u: r for u, r in schedule.items() if r <= UPLOAD}
    assert report.client_errors == {}
    assert report.server_rejections == []
    if len(contributors) < params.min_contributors:
        assert isinstance(report.error, InsufficientSurvivorsError)
        assert report.result is None
        assert requests == []
        assert holder.last_round is None
        return
    result = kit.result(report)
    assert result.contributors == contributors
    assert result.survivors == contributors
    assert result.dropped == dropped
    kit.assert_exact(result.vector, kit.plain_sum(inputs, contributors))
    assert [len(m.uploads) for m in requests if isinstance(m, DecryptionRequest)] == [
        len(contributors)
    ]
    assert holder.last_round == kit.ROUND


def test_simulator_round3_dropout_still_counts(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(5, vector_length=20)
    inputs = kit.inputs(params, seed=3)
    report, _ = kit.simulate(keys, params, inputs, dropouts={0: 0, 1: 1, 2: 2, 3: 3})
    result = kit.result(report)
    # Rounds 0-2 come before the upload; a client leaving at round 3 had already uploaded.
    assert result.contributors == (3, 4)
    assert result.dropped == (0, 1, 2)
    assert report.dropped_at == {0: 0, 1: 1, 2: 2}
    kit.assert_exact(result.vector, kit.plain_sum(inputs, (3, 4)))


@pytest.mark.parametrize(
    ("n", "value_bits"),
    [(2, 63), (5, 13), (8, 16), (12, 60), (16, 60), (3, 1)],
)
@pytest.mark.parametrize("through_wire", [False, True])
def test_simulator_sum_is_exact_at_headroom_limit_with_max_inputs(
    kit: type[PaillierKit], keys: PaillierKeypair, n: int, value_bits: int, through_wire: bool
) -> None:
    # n == max_clients and every value at 2^value_bits - 1: the largest sum a slot must hold.
    params = kit.params(n, vector_length=70, value_bits=value_bits, max_clients=n)
    inputs = kit.inputs(params, fill="max")
    report, _ = kit.simulate(keys, params, inputs, through_wire=through_wire)
    result = kit.result(report)
    expected = np.full(70, n * ((1 << value_bits) - 1), dtype=np.uint64)
    kit.assert_exact(result.vector, expected)
    kit.assert_exact(expected, kit.plain_sum(inputs, params.clients))


def test_simulator_sum_is_exact_with_real_2048_bit_key(
    kit: type[PaillierKit], real_keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=150, value_bits=20, max_clients=4)
    inputs = kit.inputs(params, seed=11)
    requests, record = kit.recorder(DecryptionRequest)
    report, _ = kit.simulate(
        real_keys, params, inputs, dropouts={1: 2}, through_wire=True, interceptor=record
    )
    result = kit.result(report)
    assert result.contributors == (0, 2)
    kit.assert_exact(result.vector, kit.plain_sum(inputs, (0, 2)))
    (request,) = requests
    assert isinstance(request, DecryptionRequest)
    assert [u.ciphertext_bytes for u in request.uploads] == [512, 512]


def test_params_more_clients_than_max_clients_raises(
    kit: type[PaillierKit],
) -> None:
    with pytest.raises(ParameterError, match="max_clients"):
        kit.params(5, max_clients=4)


def test_params_at_max_clients_is_accepted(
    kit: type[PaillierKit],
) -> None:
    assert kit.params(4, max_clients=4).max_clients == 4


def test_simulator_below_min_contributors_reports_error(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(4, vector_length=20, min_contributors=3)
    requests, record = kit.recorder(DecryptionRequest)
    report, holder = kit.simulate(
        keys, params, kit.inputs(params), dropouts={0: 2, 3: 0}, interceptor=record
    )
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert report.result is None
    assert requests == []
    assert holder.last_round is None


def test_decrypted_aggregate_longer_than_max_entries_survives_wire(
    kit: type[PaillierKit],
) -> None:
    length = wire.MAX_ENTRIES + 1
    message = DecryptedAggregate(
        session_id=bytes(16),
        round_id=kit.ROUND,
        sender=KEY_HOLDER_ID,
        recipient=SERVER_ID,
        contributors=2,
        vector=np.arange(length, dtype=np.uint64),
    )
    assert wire.decode(wire.encode(message)) == message
