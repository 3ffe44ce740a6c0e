"""Every backend returns Plain's total and mean within the quantization bound (issue: weighted
sums were silently wrong because the secure backends clipped w * x while Plain did not clip)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.aggregators import (
    AggregationResult,
    MaskingAggregator,
    PaillierAggregator,
    PlainAggregator,
)
from secagg.encoding import QuantizationScheme, UpdateEncoding
from secagg.errors import InsufficientSurvivorsError
from secagg.hazmat.paillier import PaillierKeypair, _generate_keypair_unchecked_size

VALUE_BITS = 16


@pytest.fixture(scope="module")
def keys() -> PaillierKeypair:
    return _generate_keypair_unchecked_size(1024)


def _backends(clip: float, max_weight: float | None, keys: PaillierKeypair) -> dict[str, Any]:
    options: dict[str, Any] = {"clip": clip, "value_bits": VALUE_BITS, "max_weight": max_weight}
    semi: dict[str, Any] = {**options, "threat_model": "semi-honest"}
    return {
        "secagg": MaskingAggregator("secagg", **options),
        "secagg semi-honest": MaskingAggregator("secagg", **semi),
        # Against an active server a neighbourhood of 7 needs t = 5 (t > (k + c) / 2).
        "secagg+": MaskingAggregator("secagg+", degree=6, **options),
        "secagg+ semi-honest": MaskingAggregator("secagg+", degree=4, **semi),
        "paillier": PaillierAggregator(max_clients=32, keypair=keys, **options),
    }


def _assert_within_bound(
    result: AggregationResult,
    plain: AggregationResult,
    bound: float,
    weighted: bool,
    *,
    weight_exact: bool = False,
    weight_bound: float = 0.0,
) -> None:
    assert result.survivors == plain.survivors
    assert result.dropped == plain.dropped
    assert np.max(np.abs(result.total - plain.total)) <= bound
    if not plain.survivors:
        return
    if weighted:
        assert plain.total_weight is not None and result.total_weight is not None
        if weight_exact:
            assert result.total_weight == plain.total_weight
        else:
            assert abs(result.total_weight - plain.total_weight) <= weight_bound
        if plain.total_weight > 0 and result.total_weight == 0:
            # Weights far below one quantization step may all round to zero (within the bound).
            with pytest.raises(InsufficientSurvivorsError):
                _ = result.mean
        elif plain.total_weight > 0:
            # |T'/W' - T/W| <= (|T' - T| + |T / W| |W' - W|) / W'
            weight_error = abs(result.total_weight - plain.total_weight)
            mean_bound = (bound + np.abs(plain.mean) * weight_error) / result.total_weight
            assert np.all(np.abs(result.mean - plain.mean) <= mean_bound + 1e-12)
    else:
        assert result.total_weight is None
        np.testing.assert_allclose(result.mean, plain.mean, atol=bound / len(plain.survivors))


@st.composite
def _rounds(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(6, 10))
    length = draw(st.integers(1, 6))
    clip = draw(st.sampled_from([0.5, 1.0, 4.0]))
    values = st.floats(-3 * clip, 3 * clip, allow_nan=False, width=64)
    updates = {
        u: np.array(draw(st.lists(values, min_size=length, max_size=length))) for u in range(n)
    }
    weighted = draw(st.booleans())
    max_weight = draw(st.sampled_from([1.0, 7.5, 100.0])) if weighted else None
    weights = None
    if max_weight is not None:
        weight = st.floats(0, max_weight, allow_nan=False) | st.integers(0, int(max_weight))
        weights = {u: float(draw(weight)) for u in range(n)}
    # At most two dropouts keep every graph above its threshold.
    dropped = draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True))
    dropouts = {u: draw(st.integers(0, 4)) for u in dropped}
    return {
        "updates": updates,
        "weights": weights,
        "dropouts": dropouts,
        "clip": clip,
        "max_weight": max_weight,
    }


@given(case=_rounds())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_backend_returns_plains_total_and_mean(case: dict[str, Any], keys: Any) -> None:
    clip, max_weight = case["clip"], case["max_weight"]
    call = {k: case[k] for k in ("weights", "dropouts")}
    plain = PlainAggregator(clip=clip, max_weight=max_weight).aggregate(case["updates"], **call)
    for name, backend in _backends(clip, max_weight, keys).items():
        result = backend.aggregate(case["updates"], **call)
        n = len(result.survivors)
        num_clients = 32 if name == "paillier" else len(case["updates"])
        scheme = QuantizationScheme(clip=clip, value_bits=VALUE_BITS, num_clients=num_clients)
        encoding = UpdateEncoding(scheme, max_weight)
        integer_weights = all(float(w).is_integer() for w in (case["weights"] or {}).values())
        _assert_within_bound(
            result,
            plain,
            encoding.error_bound(n),
            max_weight is not None,
            weight_exact=integer_weights,
            weight_bound=n / encoding.weight_scale,
        )
        assert result.stats.clipped_values == plain.stats.clipped_values, name


def test_readme_aggregator_sample_gives_one_total_for_every_backend(keys: Any) -> None:
    """The README's sample: weights = numbers of examples (10 to 100), updates in [-0.5, 0.5]."""
    rng = np.random.default_rng(2024)
    updates = {u: rng.uniform(-0.5, 0.5, size=32) for u in range(20)}
    weights = {u: int(rng.integers(10, 101)) for u in range(20)}
    dropouts = {7: 1, 12: 2}
    plain = PlainAggregator(clip=1.0, max_weight=100).aggregate(
        updates, weights=weights, dropouts=dropouts
    )
    exact = sum(weights[u] * updates[u] for u in plain.survivors)
    np.testing.assert_allclose(plain.total, exact)
    for name, backend in _backends(1.0, 100, keys).items():
        result = backend.aggregate(updates, weights=weights, dropouts=dropouts)
        assert result.total_weight == plain.total_weight, name
        # Within 0.1% of the largest coordinate: nothing is clipped, only quantized.
        assert np.max(np.abs(result.total - plain.total)) <= 1e-3 * np.max(np.abs(exact)), name
        assert result.stats.clipped_values == 0
