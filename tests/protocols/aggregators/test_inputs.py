"""The shared pipeline's input checks refuse what is not a vector of real numbers, for every
backend alike (issue 12: Paillier took strings with a bare ``ValueError`` and dropped the
imaginary part of complex updates).

Each bad update goes to client 1 among good ones; every backend must refuse it with
:class:`~secagg.errors.ParameterError` naming client 1, before any round runs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from protocols.aggregators import MaskingAggregator, PaillierAggregator, PlainAggregator
from protocols.dp_aggregator import DistributedDPAggregator
from secagg.errors import ParameterError
from secagg.hazmat.paillier import PaillierKeypair, _generate_keypair_unchecked_size

DIMENSION = 3
BACKENDS = ["plain", "secagg", "secagg+", "paillier", "dp"]

logging.getLogger("absl").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def keys() -> PaillierKeypair:
    return _generate_keypair_unchecked_size(1024)


def _backend(name: str, keys: PaillierKeypair) -> Any:
    if name == "plain":
        return PlainAggregator()
    if name == "secagg":
        return MaskingAggregator("secagg")
    if name == "secagg+":
        return MaskingAggregator("secagg+", degree=2, threat_model="semi-honest")
    if name == "paillier":
        return PaillierAggregator(max_clients=8, keypair=keys)
    return DistributedDPAggregator(
        target_epsilon=4.0,
        target_delta=1e-5,
        rounds=1,
        sampling_rate=1.0,
        expected_clients=2,
        max_clients=3,
        dimension=DIMENSION,
    )


BAD_UPDATES: list[tuple[str, object, str]] = [
    ("a string", "1.0", "dtype <U3"),
    ("strings", ["1.0", "2.0", "3.0"], "dtype <U3"),
    ("bytes", b"abc", "dtype |S3"),
    ("complex values", [1 + 2j, 0.5, 0.0], "dtype complex128"),
    ("a complex array", np.array([1.0, 2.0, 3.0], dtype=np.complex64), "dtype complex64"),
    ("None in the values", [None, 0.5, 0.0], "dtype object"),
    ("an object array of floats", np.array([1.0, 2.0, 3.0], dtype=object), "dtype object"),
    ("booleans", np.array([True, False, True]), "dtype bool"),
    ("dates", np.array(["2024-01-01"] * 3, dtype="datetime64[D]"), "datetime64"),
    ("a ragged list", [[1.0], [2.0, 3.0]], "not an array of numbers"),
    ("a mapping among 1-D updates", {"a": 1.0}, "is a mapping of names to arrays"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("label", "update", "what"), BAD_UPDATES, ids=[case[0] for case in BAD_UPDATES]
)
def test_every_backend_refuses_updates_that_are_not_real_vectors(
    backend: str, label: str, update: object, what: str, keys: PaillierKeypair
) -> None:
    aggregator = _backend(backend, keys)
    updates = {0: np.zeros(DIMENSION), 1: update, 2: np.full(DIMENSION, 0.25)}
    with pytest.raises(ParameterError, match="update of client 1") as caught:
        aggregator.aggregate(updates)
    assert what in str(caught.value)
    assert aggregator.last_report is None  # refused before any round ran


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_takes_integer_and_narrow_float_updates(
    backend: str, keys: PaillierKeypair
) -> None:
    """The control: real numbers of any integer or float dtype are accepted alike."""
    aggregator = _backend(backend, keys)
    updates = {
        0: np.array([0, 0, 1], dtype=np.int8),
        1: np.array([0.25, 0.0, 0.0], dtype=np.float16),
        2: [0.0, 0.5, 0.0],
    }
    result = aggregator.aggregate(updates)
    assert result.survivors == (0, 1, 2)
    if backend != "dp":  # DP adds noise; the others are exact up to quantization
        np.testing.assert_allclose(result.total, [0.25, 0.5, 1.0], atol=1e-3)


def test_a_tensor_that_requires_grad_is_refused_with_advice() -> None:
    torch = pytest.importorskip("torch")
    update = torch.zeros(DIMENSION, requires_grad=True)
    with pytest.raises(ParameterError, match=r"update of client 1 .*detach"):
        PlainAggregator().aggregate({0: np.zeros(DIMENSION), 1: update})
