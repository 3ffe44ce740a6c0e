"""Clipping, fixed-point quantization and the ring-headroom rule of secagg.encoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from secagg.encoding import MAX_MODULUS_BITS, QuantizationScheme, UpdateEncoding, ring_dtype
from secagg.errors import ParameterError

_ROUNDINGS = ("stochastic", "nearest")
_FINITE = st.floats(allow_nan=False, allow_infinity=False)


def _ceil_log2(n: int) -> int:
    """Exact ceil(log2(n)) for n >= 1, in integers."""
    return (n - 1).bit_length()


def _decode_one(scheme: QuantizationScheme, encoded: np.ndarray) -> np.ndarray:
    return scheme.dequantize_sum(encoded, 1)


# --- ring_dtype ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 8, 31, 32])
def test_ring_dtype_is_uint32_up_to_32_bits(bits: int) -> None:
    assert ring_dtype(bits) == np.dtype(np.uint32)


@pytest.mark.parametrize("bits", [33, 48, 63, 64])
def test_ring_dtype_is_uint64_above_32_bits(bits: int) -> None:
    assert ring_dtype(bits) == np.dtype(np.uint64)


@pytest.mark.parametrize("bits", [-1, 0, 65, 128])
def test_ring_dtype_rejects_rings_outside_1_to_64_bits(bits: int) -> None:
    with pytest.raises(ParameterError, match=str(bits)):
        ring_dtype(bits)


# --- construction and the headroom rule ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value_bits", "num_clients", "modulus_bits"),
    [
        (8, 1, 8),
        (8, 2, 9),
        (8, 3, 10),
        (8, 4, 10),
        (8, 5, 11),
        (16, 2**16, 32),
        (16, 2**16 + 1, 33),
        (32, 1, 32),
        (32, 2, 33),
        (40, 2**24, 64),
        (53, 2**11, 64),
        (1, 2**63, 64),
    ],
)
def test_scheme_modulus_bits_is_value_bits_plus_ceil_log2_clients(
    value_bits: int, num_clients: int, modulus_bits: int
) -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=value_bits, num_clients=num_clients)
    assert scheme.modulus_bits == modulus_bits
    assert scheme.dtype == (np.uint32 if modulus_bits <= 32 else np.uint64)


@settings(max_examples=200, deadline=None)
@given(value_bits=st.integers(1, 53), num_clients=st.integers(1, 2**40))
def test_scheme_headroom_rule_holds_for_any_parameters(value_bits: int, num_clients: int) -> None:
    needed = value_bits + _ceil_log2(num_clients)
    if needed > MAX_MODULUS_BITS:
        with pytest.raises(ParameterError):
            QuantizationScheme(clip=1.0, value_bits=value_bits, num_clients=num_clients)
        return
    scheme = QuantizationScheme(clip=1.0, value_bits=value_bits, num_clients=num_clients)
    assert scheme.modulus_bits == needed
    assert scheme.dtype == ring_dtype(needed)


@settings(max_examples=200, deadline=None)
@given(value_bits=st.integers(1, 53), num_clients=st.integers(1, 2**64))
def test_scheme_sum_of_all_clients_at_the_top_level_fits_the_ring(
    value_bits: int, num_clients: int
) -> None:
    # The invariant the rule exists for, checked up to 2^64 clients: the largest possible sum
    # is below 2^modulus_bits, and the ring fits its numpy word.
    try:
        scheme = QuantizationScheme(clip=1.0, value_bits=value_bits, num_clients=num_clients)
    except ParameterError:
        assert value_bits + _ceil_log2(num_clients) > MAX_MODULUS_BITS
        return
    assert num_clients * scheme.levels < 2**scheme.modulus_bits
    assert scheme.modulus_bits <= 8 * scheme.dtype.itemsize


@pytest.mark.parametrize("num_clients", [2**49 + 1, 2**60 + 1])
def test_scheme_headroom_rule_is_exact_just_above_a_large_power_of_two(num_clients: int) -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=1, num_clients=num_clients)
    assert scheme.modulus_bits == 1 + _ceil_log2(num_clients)


def test_scheme_rejects_a_ring_wider_than_64_bits_and_names_the_fix() -> None:
    with pytest.raises(ParameterError) as raised:
        QuantizationScheme(clip=1.0, value_bits=40, num_clients=2**30)
    message = str(raised.value)
    assert "70-bit" in message
    assert "reduce value_bits to 34" in message
    # The suggested fix works.
    assert QuantizationScheme(clip=1.0, value_bits=34, num_clients=2**30).modulus_bits == 64


def test_scheme_accepts_a_wider_modulus_override() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=16, num_clients=4, modulus_bits=32)
    assert scheme.modulus_bits == 32
    assert scheme.dtype == np.uint32
    wider = QuantizationScheme(clip=1.0, value_bits=16, num_clients=4, modulus_bits=33)
    assert wider.dtype == np.uint64


def test_scheme_accepts_a_modulus_override_equal_to_the_minimum() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=16, num_clients=4, modulus_bits=18)
    assert scheme.modulus_bits == 18


@pytest.mark.parametrize("modulus_bits", [1, 16, 17])
def test_scheme_rejects_a_modulus_override_below_the_minimum(modulus_bits: int) -> None:
    with pytest.raises(ParameterError, match="use at least 18"):
        QuantizationScheme(clip=1.0, value_bits=16, num_clients=4, modulus_bits=modulus_bits)


@pytest.mark.parametrize("modulus_bits", [-5, 65, 128])
def test_scheme_rejects_a_modulus_override_outside_the_word(modulus_bits: int) -> None:
    with pytest.raises(ParameterError):
        QuantizationScheme(clip=1.0, value_bits=16, num_clients=4, modulus_bits=modulus_bits)


@pytest.mark.parametrize("clip", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_scheme_rejects_a_non_positive_or_non_finite_clip(clip: float) -> None:
    with pytest.raises(ParameterError, match="clip"):
        QuantizationScheme(clip=clip, value_bits=8, num_clients=2)


@pytest.mark.parametrize("value_bits", [-1, 0, 54, 64])
def test_scheme_rejects_value_bits_outside_1_to_53(value_bits: int) -> None:
    with pytest.raises(ParameterError, match="value_bits"):
        QuantizationScheme(clip=1.0, value_bits=value_bits, num_clients=2)


@pytest.mark.parametrize("num_clients", [-1, 0])
def test_scheme_rejects_fewer_than_one_client(num_clients: int) -> None:
    with pytest.raises(ParameterError, match="num_clients"):
        QuantizationScheme(clip=1.0, value_bits=8, num_clients=num_clients)


def test_scheme_is_immutable() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=2)
    with pytest.raises(AttributeError):
        scheme.modulus_bits = 64  # type: ignore[misc]


def test_scheme_levels_and_step() -> None:
    scheme = QuantizationScheme(clip=2.0, value_bits=4, num_clients=3)
    assert scheme.levels == 15
    assert scheme.step == pytest.approx(4.0 / 15)


# --- quantize -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rounding", _ROUNDINGS)
def test_quantize_maps_the_clip_bounds_to_the_extreme_levels(rounding: str) -> None:
    scheme = QuantizationScheme(clip=0.5, value_bits=10, num_clients=8)
    encoded = scheme.quantize([-0.5, 0.5], rounding=rounding)  # type: ignore[arg-type]
    assert encoded.tolist() == [0, scheme.levels]


@pytest.mark.parametrize("rounding", _ROUNDINGS)
def test_quantize_clips_values_beyond_the_bounds(rounding: str) -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=12, num_clients=8)
    encoded = scheme.quantize(
        [-1e300, -7.0, -1.0000001, 1.0000001, 3.5, 1e300],
        rounding=rounding,  # type: ignore[arg-type]
    )
    assert encoded.tolist() == [0, 0, 0, scheme.levels, scheme.levels, scheme.levels]


@pytest.mark.parametrize("rounding", _ROUNDINGS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_quantize_rejects_nan_and_infinity(rounding: str, bad: float) -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=2)
    with pytest.raises(ParameterError, match="NaN or infinity"):
        scheme.quantize([0.0, bad, 0.5], rounding=rounding)  # type: ignore[arg-type]


def test_quantize_rejects_an_unknown_rounding_mode() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=2)
    with pytest.raises(ParameterError, match="rounding"):
        scheme.quantize([0.0], rounding="floor")  # type: ignore[arg-type]


@pytest.mark.parametrize(("value_bits", "num_clients"), [(8, 2), (16, 2**16), (30, 8), (53, 1)])
def test_quantize_returns_the_ring_dtype_and_keeps_the_shape(
    value_bits: int, num_clients: int
) -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=value_bits, num_clients=num_clients)
    encoded = scheme.quantize(np.zeros((3, 4), dtype=np.float32))
    assert encoded.dtype == scheme.dtype
    assert encoded.shape == (3, 4)


def test_quantize_accepts_an_empty_vector() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=2)
    assert scheme.quantize([]).shape == (0,)


@pytest.mark.parametrize("rounding", _ROUNDINGS)
def test_quantize_accepts_a_scalar(rounding: str) -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=2)
    encoded = scheme.quantize(1.0, rounding=rounding)  # type: ignore[arg-type]
    assert int(encoded) == scheme.levels


@settings(max_examples=100, deadline=None)
@given(
    value_bits=st.integers(1, 53),
    clip=st.floats(1e-6, 1e6),
    rounding=st.sampled_from(_ROUNDINGS),
    values=arrays(np.float64, st.integers(0, 16), elements=_FINITE),
)
def test_quantize_values_always_lie_in_zero_to_levels(
    value_bits: int, clip: float, rounding: str, values: np.ndarray
) -> None:
    scheme = QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=1)
    encoded = scheme.quantize(values, rounding=rounding)  # type: ignore[arg-type]
    assert encoded.dtype == scheme.dtype
    assert all(0 <= int(v) <= scheme.levels for v in encoded)


@settings(max_examples=100, deadline=None)
@given(
    value_bits=st.integers(1, 40),
    clip=st.floats(1e-3, 1e3),
    values=arrays(np.float64, st.integers(1, 16), elements=_FINITE),
)
def test_quantize_nearest_error_is_at_most_half_a_step(
    value_bits: int, clip: float, values: np.ndarray
) -> None:
    scheme = QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=1)
    decoded = _decode_one(scheme, scheme.quantize(values, rounding="nearest"))
    error = np.abs(decoded - np.clip(values, -clip, clip))
    # A few float64 ulps of the clip absorb the rounding of the affine maps themselves.
    assert np.all(error <= scheme.step / 2 + 8 * np.spacing(clip))


@settings(max_examples=100, deadline=None)
@given(
    value_bits=st.integers(1, 40),
    clip=st.floats(1e-3, 1e3),
    values=arrays(np.float64, st.integers(1, 16), elements=_FINITE),
)
def test_quantize_stochastic_error_is_below_one_step(
    value_bits: int, clip: float, values: np.ndarray
) -> None:
    scheme = QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=1)
    decoded = _decode_one(scheme, scheme.quantize(values, rounding="stochastic"))
    error = np.abs(decoded - np.clip(values, -clip, clip))
    assert np.all(error < scheme.step + 8 * np.spacing(clip))


def test_quantize_nearest_is_deterministic() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=2)
    values = np.linspace(-1.5, 1.5, 1001)
    assert np.array_equal(
        scheme.quantize(values, rounding="nearest"), scheme.quantize(values, rounding="nearest")
    )


def test_quantize_stochastic_draws_fresh_randomness_each_call() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=4, num_clients=2)
    # Halfway between two levels, every entry rounds up or down with probability 1/2.
    halfway = -1.0 + 7.5 * scheme.step
    values = np.full(256, halfway)
    first = scheme.quantize(values)
    second = scheme.quantize(values)
    assert set(first.tolist()) == {7, 8}
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_quantize_stochastic_rounding_is_unbiased_for_a_fixed_value(fraction: float) -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=3, num_clients=1)
    value = -1.0 + (2 + fraction) * scheme.step
    samples = 200_000
    decoded = _decode_one(scheme, scheme.quantize(np.full(samples, value)))
    # Each sample's error is a scaled Bernoulli with standard deviation
    # step * sqrt(f (1 - f)) <= step / 2; allow six standard errors of the mean.
    bound = 6 * (scheme.step / 2) / math.sqrt(samples)
    assert abs(decoded.mean() - value) < bound
    # The rounding really is stochastic: the up-rounding frequency is about the fraction.
    assert np.mean(decoded > value) == pytest.approx(fraction, abs=0.01)


def test_quantize_stochastic_rounding_is_unbiased_over_random_values() -> None:
    scheme = QuantizationScheme(clip=2.0, value_bits=5, num_clients=1)
    values = np.random.default_rng(7).uniform(-2.0, 2.0, size=200_000)
    errors = _decode_one(scheme, scheme.quantize(values)) - values
    bound = 6 * (scheme.step / 2) / math.sqrt(values.size)
    assert abs(errors.mean()) < bound
    # Unbiased on average, yet each value still rounds to one of its two neighbouring levels.
    assert np.max(np.abs(errors)) < scheme.step


# --- sums and dequantize_sum --------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    value_bits=st.integers(1, 53),
    num_clients=st.integers(1, 40),
    clip=st.floats(1e-3, 1e3),
    dim=st.integers(1, 6),
    rounding=st.sampled_from(_ROUNDINGS),
)
def test_quantize_sum_never_wraps_and_decodes_within_n_steps(
    data: st.DataObject,
    value_bits: int,
    num_clients: int,
    clip: float,
    dim: int,
    rounding: str,
) -> None:
    scheme = QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=num_clients)
    inputs = data.draw(arrays(np.float64, (num_clients, dim), elements=_FINITE))
    encoded = [scheme.quantize(row, rounding=rounding) for row in inputs]  # type: ignore[arg-type]

    # Ring arithmetic, as the protocol does it: numpy words wrap silently.
    ring_sum = np.zeros(dim, dtype=scheme.dtype)
    for vector in encoded:
        ring_sum += vector
    scheme.reduce(ring_sum)
    exact = [sum(int(vector[j]) for vector in encoded) for j in range(dim)]
    assert all(total < 2**scheme.modulus_bits for total in exact)
    assert [int(total) for total in ring_sum] == exact

    decoded = scheme.dequantize_sum(ring_sum, num_clients)
    clipped_sums = [math.fsum(np.clip(inputs[:, j], -clip, clip)) for j in range(dim)]
    # n steps of quantization error, plus a few float64 ulps of the largest magnitude (n clip)
    # for the float arithmetic of encoding and decoding.
    slack = 16 * num_clients * np.spacing(clip)
    for got, want in zip(decoded, clipped_sums, strict=True):
        assert abs(got - want) <= num_clients * scheme.step + slack


def test_dequantize_sum_of_zero_clients_is_zero() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=4)
    assert scheme.dequantize_sum(np.zeros(3, dtype=scheme.dtype), 0).tolist() == [0.0] * 3


def test_dequantize_sum_of_extreme_inputs_is_exact() -> None:
    scheme = QuantizationScheme(clip=1.5, value_bits=16, num_clients=5)
    total = sum(scheme.quantize([1.5, -1.5, 9.0]) for _ in range(5))
    assert scheme.dequantize_sum(total, 5).tolist() == pytest.approx([7.5, -7.5, 7.5])


@pytest.mark.parametrize("count", [-1, 5])
def test_dequantize_sum_rejects_a_count_outside_0_to_num_clients(count: int) -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=4)
    with pytest.raises(ParameterError, match="count"):
        scheme.dequantize_sum(np.zeros(2, dtype=scheme.dtype), count)


# --- reduce -------------------------------------------------------------------------------------


def test_reduce_keeps_the_low_modulus_bits_in_place() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=30, num_clients=2**6)
    assert scheme.modulus_bits == 36
    values = np.array([2**64 - 1, 2**36, 2**36 - 1, 5], dtype=np.uint64)
    result = scheme.reduce(values)
    assert result is values
    assert values.tolist() == [2**36 - 1, 0, 2**36 - 1, 5]


def test_reduce_is_the_identity_on_a_full_word_ring() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=31, num_clients=2)
    values = np.array([2**32 - 1, 0, 12345], dtype=np.uint32)
    assert scheme.reduce(values).tolist() == [2**32 - 1, 0, 12345]


# --- UpdateEncoding: the one weight rule ------------------------------------------------------


@pytest.mark.parametrize("value_bits", [16, 40, 48])
@given(weight=st.integers(0, 100))
@settings(max_examples=40, deadline=None)
def test_update_encoding_encodes_integer_weights_exactly(value_bits: int, weight: int) -> None:
    encoding = UpdateEncoding(
        QuantizationScheme(clip=1.0, value_bits=value_bits, num_clients=4), max_weight=100
    )
    encoded = encoding.encode(np.zeros(3), float(weight))
    assert int(encoded.vector[-1]) == weight * encoding.weight_scale
    _, total_weight = encoding.decode_sum(encoded.vector, 1)
    assert total_weight == weight


def test_update_encoding_clips_the_update_before_weighting() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=16, num_clients=2)
    encoding = UpdateEncoding(scheme, max_weight=10)
    encoded = encoding.encode(np.array([3.0, -0.5]), 10.0)
    assert encoded.clipped == 1
    total, weight = encoding.decode_sum(encoded.vector, 1)
    assert weight == 10.0
    assert np.max(np.abs(total - [10.0, -5.0])) <= encoding.error_bound(1)


def test_update_encoding_sum_of_largest_weights_cannot_wrap() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=16)
    encoding = UpdateEncoding(scheme, max_weight=3)
    vectors = [encoding.encode(np.array([1.0, -1.0]), 3.0).vector for _ in range(16)]
    total = sum(v.astype(np.uint64) for v in vectors)
    assert int(total.max()) < 2**scheme.modulus_bits
    values, weight = encoding.decode_sum(total, 16)
    assert weight == 48.0
    assert np.max(np.abs(values - [48.0, -48.0])) <= encoding.error_bound(16)


def test_update_encoding_beyond_one_coordinate_scales_weights_down() -> None:
    encoding = UpdateEncoding(QuantizationScheme(clip=1.0, value_bits=4, num_clients=2), 30)
    assert encoding.weight_scale == pytest.approx(15 / 30)
    encoded = encoding.encode(np.zeros(1), 30.0)
    assert int(encoded.vector[-1]) == 15


@pytest.mark.parametrize(
    ("weight", "fragment"),
    [(-1.0, "finite and >= 0"), (float("nan"), "finite and >= 0"), (11.0, "max_weight=10")],
)
def test_update_encoding_rejects_weights_outside_the_declared_range(
    weight: float, fragment: str
) -> None:
    encoding = UpdateEncoding(QuantizationScheme(clip=1.0, value_bits=8, num_clients=2), 10)
    with pytest.raises(ParameterError, match=fragment):
        encoding.encode(np.zeros(2), weight)


def test_update_encoding_needs_weights_exactly_when_weighted() -> None:
    scheme = QuantizationScheme(clip=1.0, value_bits=8, num_clients=2)
    with pytest.raises(ParameterError, match="no max_weight"):
        UpdateEncoding(scheme).encode(np.zeros(2), 1.0)
    with pytest.raises(ParameterError, match="every client needs a weight"):
        UpdateEncoding(scheme, 2.0).encode(np.zeros(2))
    with pytest.raises(ParameterError, match="max_weight"):
        UpdateEncoding(scheme, 0.0)
