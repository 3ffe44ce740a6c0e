"""Shamir t-of-n sharing over GF(2^256 + 297) (secagg.hazmat.shamir)."""

from __future__ import annotations

import importlib.util
import json
import secrets
from pathlib import Path
from types import ModuleType
from typing import Any

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ParameterError, ReconstructionError
from secagg.hazmat.kex import keypair_from_private_bytes
from secagg.hazmat.shamir import (
    FIELD_PRIME,
    SHARE_BYTES,
    Reconstructor,
    _split_with_coefficients,
    lagrange_at_zero,
    reconstruct,
    secret_from_bytes,
    secret_to_bytes,
    share_from_bytes,
    share_to_bytes,
    split,
)

_VECTORS_DIR = Path(__file__).resolve().parents[2] / "vectors"
_VECTORS: dict[str, Any] = json.loads((_VECTORS_DIR / "shamir.json").read_text())
_FIELD = st.integers(0, FIELD_PRIME - 1)


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_primitive_vectors", _VECTORS_DIR / "generate_primitive_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vector_shares(vector: dict[str, Any]) -> dict[int, int]:
    return {share["x"]: int(share["y"]) for share in vector["shares"]}


@st.composite
def _sharings(draw: st.DrawFn) -> tuple[int, int, dict[int, int]]:
    """A random secret, threshold and the shares of a random polynomial at distinct points."""
    threshold = draw(st.integers(1, 6))
    holders = draw(st.integers(threshold, 9))
    small = st.integers(1, 300)
    anywhere = st.integers(1, FIELD_PRIME - 1)
    xs = draw(st.lists(st.one_of(small, anywhere), min_size=holders, max_size=holders, unique=True))
    secret = draw(_FIELD)
    return secret, threshold, split(secret, threshold, xs)


# --- the field ----------------------------------------------------------------------------------


def test_field_prime_is_prime() -> None:
    assert gmpy2.is_prime(FIELD_PRIME, 50)


def test_field_prime_is_the_smallest_prime_above_2_pow_256() -> None:
    assert FIELD_PRIME == 2**256 + 297
    assert gmpy2.next_prime(2**256) == FIELD_PRIME
    assert not any(gmpy2.is_prime(2**256 + offset) for offset in range(1, 297))


def test_field_holds_every_32_byte_secret_and_fits_a_share() -> None:
    assert 2**256 - 1 < FIELD_PRIME < 2 ** (8 * SHARE_BYTES)


def test_shamir_vector_file_uses_our_field() -> None:
    assert int(_VECTORS["field_prime"]) == FIELD_PRIME


# --- known answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _VECTORS["split_vectors"], ids=lambda vector: vector["name"])
def test_split_with_coefficients_matches_the_known_answers(vector: dict[str, Any]) -> None:
    secret = int(vector["secret"])
    coefficients = [int(c) for c in vector["coefficients"]]
    expected = _vector_shares(vector)
    assert _split_with_coefficients(secret, coefficients, list(expected)) == expected


@pytest.mark.parametrize("vector", _VECTORS["split_vectors"], ids=lambda vector: vector["name"])
def test_reconstruct_known_answer_shares(vector: dict[str, Any]) -> None:
    shares = _vector_shares(vector)
    threshold = vector["threshold"]
    secret = int(vector["secret"])
    assert reconstruct(shares, threshold, verify=True) == secret
    last = dict(list(shares.items())[-threshold:])
    assert reconstruct(last, threshold) == secret
    assert secret_to_bytes(secret).hex() == vector["secret_bytes"]
    assert secret_from_bytes(bytes.fromhex(vector["secret_bytes"])) == secret


@pytest.mark.parametrize("vector", _VECTORS["split_vectors"], ids=lambda vector: vector["name"])
def test_share_bytes_match_the_known_answers(vector: dict[str, Any]) -> None:
    for share in vector["shares"]:
        assert share_to_bytes(int(share["y"])).hex() == share["y_bytes"]
        assert share_from_bytes(bytes.fromhex(share["y_bytes"])) == int(share["y"])


def test_split_wikipedia_example_by_hand() -> None:
    # f(x) = 1234 + 166 x + 94 x^2, the worked example of Wikipedia's "Shamir's secret sharing".
    shares = _split_with_coefficients(1234, [166, 94], [1, 2, 3, 4, 5, 6])
    assert shares == {1: 1494, 2: 1942, 3: 2578, 4: 3402, 5: 4414, 6: 5614}


def test_split_wraparound_example_by_hand() -> None:
    # Secret -298, coefficients -1 and -2 (mod p): f(x) = p - (298 + x + 2 x^2).
    p = FIELD_PRIME
    shares = _split_with_coefficients(2**256 - 1, [p - 1, p - 2], [1, 2, 3])
    assert shares == {1: p - 301, 2: p - 308, 3: p - 319}


@pytest.mark.parametrize(
    "vector", _VECTORS["lagrange_at_zero_vectors"], ids=lambda vector: str(vector["xs"])
)
def test_lagrange_at_zero_matches_the_known_answers(vector: dict[str, Any]) -> None:
    expected = tuple(int(c) for c in vector["coefficients"])
    assert lagrange_at_zero(tuple(vector["xs"])) == expected


def test_shamir_vector_file_matches_its_generator() -> None:
    generator = _load_generator()
    assert generator.build_shamir_vectors() == _VECTORS


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(sharing=_sharings(), data=st.data())
def test_reconstruct_any_threshold_subset_recovers_the_secret(
    sharing: tuple[int, int, dict[int, int]], data: st.DataObject
) -> None:
    secret, threshold, shares = sharing
    size = data.draw(st.integers(threshold, len(shares)))
    chosen = data.draw(st.permutations(sorted(shares)))[:size]
    subset = {x: shares[x] for x in chosen}
    assert reconstruct(subset, threshold) == secret
    assert reconstruct(subset, threshold, verify=True) == secret
    assert Reconstructor(chosen[:threshold]).combine(subset) == secret


@settings(max_examples=60, deadline=None)
@given(sharing=_sharings(), data=st.data())
def test_reconstruct_fewer_than_threshold_shares_miss_the_secret(
    sharing: tuple[int, int, dict[int, int]], data: st.DataObject
) -> None:
    secret, threshold, shares = sharing
    if threshold == 1:
        return
    chosen = data.draw(st.permutations(sorted(shares)))[: threshold - 1]
    subset = {x: shares[x] for x in chosen}
    with pytest.raises(ReconstructionError):
        reconstruct(subset, threshold)
    # Interpolating the too-small set anyway lands on the secret with probability 1/p.
    assert reconstruct(subset, threshold - 1) != secret


@settings(max_examples=40, deadline=None)
@given(sharing=_sharings(), data=st.data())
def test_reconstruct_verify_detects_any_single_corrupted_share(
    sharing: tuple[int, int, dict[int, int]], data: st.DataObject
) -> None:
    _, threshold, shares = sharing
    if len(shares) == threshold:
        return  # threshold points always lie on some polynomial: nothing to check against
    victim = data.draw(st.sampled_from(sorted(shares)))
    delta = data.draw(st.integers(1, FIELD_PRIME - 1))
    corrupted = {**shares, victim: (shares[victim] + delta) % FIELD_PRIME}
    with pytest.raises(ReconstructionError, match="inconsistent"):
        reconstruct(corrupted, threshold, verify=True)


@settings(max_examples=40, deadline=None)
@given(secret=_FIELD, threshold=st.integers(1, 5))
def test_split_shares_are_field_elements_at_the_requested_points(
    secret: int, threshold: int
) -> None:
    xs = [3, 1, 4, 10, 5, 9][: threshold + 1]
    shares = split(secret, threshold, xs)
    assert sorted(shares) == sorted(xs)
    assert all(0 <= y < FIELD_PRIME for y in shares.values())


def test_split_draws_fresh_coefficients() -> None:
    first = split(42, 3, [1, 2, 3])
    second = split(42, 3, [1, 2, 3])
    assert first != second
    assert reconstruct(first, 3) == reconstruct(second, 3) == 42


def test_split_threshold_one_gives_every_holder_the_secret() -> None:
    assert split(99, 1, [1, 2, 3]) == {1: 99, 2: 99, 3: 99}


def test_reconstruct_uses_the_smallest_points_without_verify() -> None:
    shares = _split_with_coefficients(5, [7], [1, 2, 3])
    shares[3] = (shares[3] + 1) % FIELD_PRIME
    # Without verify the corrupted third share is simply not read.
    assert reconstruct(shares, 2) == 5


# --- Reconstructor ------------------------------------------------------------------------------


def test_reconstructor_reuse_matches_fresh_reconstruction() -> None:
    xs = [2, 5, 7, 11]
    reconstructor = Reconstructor(xs)
    for _ in range(20):
        secret = secrets.randbelow(FIELD_PRIME)
        shares = split(secret, 4, [1, *xs])
        subset = {x: shares[x] for x in xs}
        assert reconstructor.combine(subset) == secret
        assert reconstructor.combine(subset) == Reconstructor(xs).combine(subset)
        assert reconstructor.combine(subset) == reconstruct(subset, 4)


def test_reconstructor_sorts_its_points_and_ignores_extra_shares() -> None:
    reconstructor = Reconstructor([7, 2, 5])
    assert reconstructor.xs == (2, 5, 7)
    shares = split(1234, 3, [1, 2, 5, 7, 9])
    assert reconstructor.combine(shares) == 1234


def test_reconstructor_missing_share_raises() -> None:
    shares = split(1234, 3, [1, 2, 3])
    with pytest.raises(ReconstructionError, match="x = 4"):
        Reconstructor([1, 2, 4]).combine(shares)


@pytest.mark.parametrize("bad", [FIELD_PRIME, FIELD_PRIME + 5, -1, 2 ** (8 * SHARE_BYTES)])
def test_reconstructor_rejects_a_share_outside_the_field(bad: int) -> None:
    shares = {**split(1234, 3, [1, 2, 3]), 2: bad}
    with pytest.raises(ReconstructionError, match="outside the field"):
        Reconstructor([1, 2, 3]).combine(shares)
    with pytest.raises(ReconstructionError, match="outside the field"):
        reconstruct(shares, 3)


def test_lagrange_at_zero_is_cached_per_point_set() -> None:
    assert lagrange_at_zero((4, 8, 15)) is lagrange_at_zero((4, 8, 15))


# --- argument checks ----------------------------------------------------------------------------


def test_reconstruct_too_few_shares_raises() -> None:
    shares = split(1234, 3, [1, 2, 3, 4])
    with pytest.raises(ReconstructionError, match="2 shares given, 3 needed"):
        reconstruct({1: shares[1], 4: shares[4]}, 3)
    with pytest.raises(ReconstructionError):
        reconstruct({}, 1)


@pytest.mark.parametrize("threshold", [0, -1])
def test_reconstruct_rejects_a_threshold_below_one(threshold: int) -> None:
    with pytest.raises(ParameterError, match="threshold"):
        reconstruct({1: 1}, threshold)


@pytest.mark.parametrize("xs", [[1, 2, 2], [5, 5]])
def test_shamir_rejects_duplicate_points(xs: list[int]) -> None:
    with pytest.raises(ParameterError, match="distinct"):
        split(7, 2, xs)
    with pytest.raises(ParameterError, match="distinct"):
        Reconstructor(xs)
    with pytest.raises(ParameterError, match="distinct"):
        lagrange_at_zero(tuple(xs))


@pytest.mark.parametrize("bad_x", [0, -1, FIELD_PRIME, FIELD_PRIME + 1])
def test_shamir_rejects_points_outside_1_to_p(bad_x: int) -> None:
    # x = 0 would hand out the secret itself; x = p is x = 0 in disguise.
    with pytest.raises(ParameterError, match="x-coordinate"):
        split(7, 2, [1, bad_x])
    with pytest.raises(ParameterError, match="x-coordinate"):
        Reconstructor([1, bad_x])
    with pytest.raises(ParameterError, match="x-coordinate"):
        reconstruct({bad_x: 3, 1: 4, 2: 5}, 3)
    # Shares beyond the threshold are only read (and so only checked) with verify.
    with pytest.raises(ParameterError, match="x-coordinate"):
        reconstruct({bad_x: 3, 1: 4, 2: 5}, 2, verify=True)


@pytest.mark.parametrize("threshold", [0, 4])
def test_split_rejects_a_threshold_outside_1_to_holders(threshold: int) -> None:
    with pytest.raises(ParameterError, match="threshold"):
        split(7, threshold, [1, 2, 3])


@pytest.mark.parametrize("secret", [-1, FIELD_PRIME, FIELD_PRIME + 1])
def test_split_rejects_a_secret_outside_the_field(secret: int) -> None:
    with pytest.raises(ParameterError, match="field element"):
        split(secret, 2, [1, 2, 3])


# --- byte encodings -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(y=st.one_of(_FIELD, st.sampled_from([0, 1, FIELD_PRIME - 1])))
def test_share_bytes_round_trip(y: int) -> None:
    data = share_to_bytes(y)
    assert len(data) == SHARE_BYTES
    assert share_from_bytes(data) == y


@pytest.mark.parametrize("y", [FIELD_PRIME, FIELD_PRIME + 1, 2 ** (8 * SHARE_BYTES) - 1])
def test_share_from_bytes_rejects_a_value_outside_the_field(y: int) -> None:
    with pytest.raises(ReconstructionError, match="outside the field"):
        share_from_bytes(y.to_bytes(SHARE_BYTES, "big"))


@pytest.mark.parametrize("length", [0, 32, 34])
def test_share_from_bytes_rejects_the_wrong_length(length: int) -> None:
    with pytest.raises(ReconstructionError, match="33 bytes"):
        share_from_bytes(bytes(length))


@settings(max_examples=50, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32))
def test_secret_bytes_round_trip_through_shares(secret: bytes) -> None:
    shares = split(secret_from_bytes(secret), 3, [1, 2, 3, 4, 5])
    encoded = {x: share_to_bytes(y) for x, y in shares.items()}
    decoded = {x: share_from_bytes(data) for x, data in list(encoded.items())[2:]}
    assert secret_to_bytes(reconstruct(decoded, 3)) == secret


def test_secret_round_trip_rebuilds_an_x25519_key() -> None:
    private = secrets.token_bytes(32)
    shares = split(secret_from_bytes(private), 2, [10, 20, 30])
    recovered = secret_to_bytes(reconstruct({10: shares[10], 30: shares[30]}, 2))
    assert recovered == private
    assert (
        keypair_from_private_bytes(recovered).public_bytes
        == keypair_from_private_bytes(private).public_bytes
    )


@pytest.mark.parametrize("secret", [b"", bytes(31), bytes(33), bytearray(32), "x" * 32])
def test_secret_from_bytes_rejects_anything_but_32_bytes(secret: object) -> None:
    with pytest.raises(ParameterError, match="32 bytes"):
        secret_from_bytes(secret)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, 2**256, FIELD_PRIME - 1])
def test_secret_to_bytes_rejects_a_value_that_is_not_a_32_byte_secret(value: int) -> None:
    with pytest.raises(ReconstructionError, match="32-byte secret"):
        secret_to_bytes(value)
