"""Aggregators take what PyTorch and Flower users hold, and give the sum back in that form.

Per client, a ``state_dict`` (names -> tensors) or Flower's ``NDArrays`` (a list of numpy arrays)
goes into ``aggregate``; ``result.structured_total`` / ``structured_mean`` come back with the
same names in the same order, the same shapes, float32 kept float32, tensors as CPU tensors.
Every backend must give plain's answer for the same structured call (within its quantization
bound; DP within its noise), and clients whose structures differ are refused with
:class:`~protocols.aggregators.StructureMismatchError` naming the client, the entry and both
shapes. The oracle is numpy on the entries themselves, never the module's own flattening.
"""

from __future__ import annotations

import copy
import logging
import math
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.aggregators import (
    AggregationResult,
    MaskingAggregator,
    PaillierAggregator,
    PlainAggregator,
    StructureMismatchError,
)
from protocols.dp_aggregator import DistributedDPAggregator
from secagg.dp import clip_l2
from secagg.errors import ParameterError
from secagg.hazmat.paillier import PaillierKeypair, _generate_keypair_unchecked_size

VALUE_BITS = 16
QUANTIZING = ["secagg", "secagg+", "paillier"]
BACKENDS = ["plain", *QUANTIZING, "dp"]
#: The DP test's fixed structure: 3 + 2 * 4 + 1 values.
DP_SHAPES = {"bias": (3,), "weight": (2, 4), "scale": ()}
DP_DIMENSION = 12

logging.getLogger("absl").setLevel(logging.ERROR)

Arrays = list[npt.NDArray[np.floating[Any]]]


@pytest.fixture(scope="module")
def keys() -> PaillierKeypair:
    return _generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="module")
def dp_template() -> DistributedDPAggregator:
    """Epsilon 1000 in one round: noise of sd 0.03 (calibration runs once per module)."""
    return DistributedDPAggregator(
        target_epsilon=1000.0,
        target_delta=1e-5,
        rounds=1,
        sampling_rate=1.0,
        expected_clients=3,
        max_clients=6,
        dimension=DP_DIMENSION,
        protocol="secagg+",
        threat_model="semi-honest",
    )


def _backend(
    name: str,
    keys: PaillierKeypair,
    clip: float = 1.0,
    max_weight: float | None = None,
) -> Any:
    options: dict[str, Any] = {"clip": clip, "value_bits": VALUE_BITS, "max_weight": max_weight}
    if name == "plain":
        return PlainAggregator(clip=clip, max_weight=max_weight)
    if name == "secagg":
        return MaskingAggregator("secagg", **options)
    if name == "secagg+":
        return MaskingAggregator("secagg+", degree=2, threat_model="semi-honest", **options)
    return PaillierAggregator(max_clients=8, keypair=keys, **options)


def _bound(count: int, clip: float, max_weight: float | None) -> float:
    """One quantization step per summed client (times max_weight when weighted)."""
    return count * 2 * clip / (2**VALUE_BITS - 1) * (max_weight or 1.0)


def _clipped_sum(
    entries: Sequence[npt.NDArray[np.floating[Any]]],
    clip: float,
    weights: Sequence[float] | None = None,
) -> npt.NDArray[np.float64]:
    """The oracle: sum of w * clip(x) over one entry of every survivor, in float64."""
    factors = [1.0] * len(entries) if weights is None else weights
    clipped = [
        w * np.clip(np.asarray(x, np.float64), -clip, clip)
        for w, x in zip(factors, entries, strict=True)
    ]
    return np.sum(clipped, axis=0)


# --------------------------------------------------------------------------------------------
# Flower's NDArrays: every backend gives plain's answer, in the same structure
# --------------------------------------------------------------------------------------------

_SHAPES = st.lists(
    st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple), min_size=1, max_size=3
)


@st.composite
def _ndarrays_rounds(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(4, 6))
    shapes = draw(_SHAPES)
    dtypes = [draw(st.sampled_from([np.float32, np.float64])) for _ in shapes]
    clip = draw(st.sampled_from([0.5, 1.0, 2.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    updates = {
        u: [
            rng.uniform(-2 * clip, 2 * clip, s).astype(t)
            for s, t in zip(shapes, dtypes, strict=True)
        ]
        for u in range(n)
    }
    weighted = draw(st.booleans())
    weights = {u: float(draw(st.integers(0, 5))) for u in range(n)} if weighted else None
    dropped = draw(st.lists(st.integers(0, n - 1), max_size=1))
    return {
        "updates": updates,
        "clip": clip,
        "weights": weights,
        "max_weight": 5.0 if weighted else None,
        "dropouts": {u: 1 for u in dropped},
    }


@given(case=_ndarrays_rounds())
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_backend_sums_ndarrays_in_their_structure_as_plain_does(
    case: dict[str, Any], keys: PaillierKeypair
) -> None:
    updates: dict[int, Arrays] = case["updates"]
    clip, max_weight, weights = case["clip"], case["max_weight"], case["weights"]
    call = {"weights": weights, "dropouts": case["dropouts"]}
    reference = updates[0]
    plain = _backend("plain", keys, clip, max_weight).aggregate(updates, **call)
    survivors = plain.survivors
    factors = None if weights is None else [weights[u] for u in survivors]
    plain_sum = plain.structured_total
    assert isinstance(plain_sum, list) and len(plain_sum) == len(reference)
    for i, given_array in enumerate(reference):
        expected = _clipped_sum([updates[u][i] for u in survivors], clip, factors)
        assert plain_sum[i].shape == given_array.shape
        assert plain_sum[i].dtype == given_array.dtype  # float32 stays float32
        np.testing.assert_allclose(plain_sum[i], expected, rtol=1e-6, atol=1e-5)
    for name in QUANTIZING:
        result = _backend(name, keys, clip, max_weight).aggregate(updates, **call)
        assert result.survivors == survivors, name
        summed = result.structured_total
        assert isinstance(summed, list) and len(summed) == len(reference)
        bound = _bound(len(survivors), clip, max_weight) + 1e-5  # + float32 rounding
        for mine, theirs, given_array in zip(summed, plain_sum, reference, strict=True):
            assert mine.shape == given_array.shape and mine.dtype == given_array.dtype, name
            assert np.max(np.abs(mine - theirs), initial=0.0) <= bound, name


def test_structured_mean_is_the_weighted_mean_of_each_entry(keys: PaillierKeypair) -> None:
    rng = np.random.default_rng(3)
    updates = {u: [rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, 4)] for u in range(5)}
    weights = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0}
    for name in ["plain", *QUANTIZING]:
        result = _backend(name, keys, max_weight=5.0).aggregate(updates, weights=weights)
        mean = result.structured_mean
        assert isinstance(mean, list)
        for i in range(2):
            expected = sum(weights[u] * updates[u][i] for u in range(5)) / 15.0
            np.testing.assert_allclose(mean[i], expected, atol=_bound(5, 1.0, 5.0) / 15.0 + 1e-12)


def test_numpy_dtypes_come_back_float32_or_float64() -> None:
    updates = {
        u: [
            np.ones(2, np.float32) * 0.25,
            np.ones(2, np.float16) * 0.25,
            np.array([1, 0], np.int8),
            np.ones(2) * 0.25,
        ]
        for u in range(3)
    }
    summed = PlainAggregator().aggregate(updates).structured_total
    assert isinstance(summed, list)
    assert [a.dtype for a in summed] == [np.float32, np.float64, np.float64, np.float64]
    np.testing.assert_array_equal(summed[2], [3.0, 0.0])


# --------------------------------------------------------------------------------------------
# state_dicts: names and order kept, matched by name
# --------------------------------------------------------------------------------------------


def test_mapping_entries_are_matched_by_name_and_returned_in_the_first_clients_order() -> None:
    updates: dict[int, dict[str, Any]] = {
        0: {"w": np.full((2, 2), 0.1), "b": np.array([0.5, -0.5])},
        1: {"b": np.array([0.25, 0.25]), "w": np.full((2, 2), 0.2)},  # other order
        2: {"w": [[0.3, 0.3], [0.3, 0.3]], "b": [0.0, 1.5]},  # nested lists; 1.5 is clipped
    }
    result = PlainAggregator().aggregate(updates)
    summed = result.structured_total
    assert isinstance(summed, dict) and list(summed) == ["w", "b"]
    np.testing.assert_allclose(summed["w"], np.full((2, 2), 0.6))
    np.testing.assert_allclose(summed["b"], [0.75, 0.75])
    assert result.stats.clipped_values == 1
    # The flat total is the first client's entries in order, flattened.
    np.testing.assert_allclose(result.total, [0.6] * 4 + [0.75, 0.75])


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_sums_a_numpy_state_dict_as_plain_does(
    name: str, keys: PaillierKeypair, dp_template: DistributedDPAggregator
) -> None:
    rng = np.random.default_rng(7)
    # Entries below 0.28: the L2 norm of every update (12 values) stays below DP's clip_norm
    # (1), so no backend clips and DP's sum is plain's plus its noise (sd about 0.03).
    updates = {
        u: {key: rng.uniform(-0.28, 0.28, shape) for key, shape in DP_SHAPES.items()}
        for u in range(6)
    }
    plain = PlainAggregator().aggregate(updates, dropouts={5: 0})
    if name == "dp":
        aggregator: Any = copy.deepcopy(dp_template)
        config = aggregator.config
        noise_sd = config.granularity * config.central_stddev * math.sqrt(5 / 3)
        tolerance = 6 * noise_sd + 5 * config.granularity
    else:
        aggregator = _backend(name, keys)
        tolerance = _bound(5, 1.0, None)
    result: AggregationResult = aggregator.aggregate(updates, dropouts={5: 0})
    assert result.survivors == plain.survivors == (0, 1, 2, 3, 4)
    mine, theirs = result.structured_total, plain.structured_total
    assert isinstance(mine, dict) and isinstance(theirs, dict)
    assert list(mine) == list(theirs) == list(DP_SHAPES)
    for key, shape in DP_SHAPES.items():
        entry = mine[key]
        assert isinstance(entry, np.ndarray) and entry.shape == shape and entry.dtype == np.float64
        assert np.max(np.abs(entry - theirs[key]), initial=0.0) <= tolerance, key
    if name == "dp":  # the L2 clip applies to the whole flattened update
        flat = {u: np.concatenate([np.ravel(v) for v in updates[u].values()]) for u in range(5)}
        clipped = sum(clip_l2(flat[u], aggregator.clip_norm) for u in range(5))
        np.testing.assert_allclose(plain.total, clipped)


def test_dp_refuses_a_structure_of_another_size(dp_template: DistributedDPAggregator) -> None:
    updates = {u: [np.zeros(5), np.zeros((2, 2))] for u in range(4)}
    with pytest.raises(ParameterError, match="9 values, the DP configuration expects 12"):
        copy.deepcopy(dp_template).aggregate(updates)


# --------------------------------------------------------------------------------------------
# PyTorch state_dicts (skipped without torch)
# --------------------------------------------------------------------------------------------


def _torch_state_dicts(n: int, seed: int) -> tuple[Any, dict[int, dict[str, Any]]]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    updates = {}
    for u in range(n):
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2).double())
        state = {k: v * 0.5 for k, v in model.state_dict().items()}
        state["step"] = torch.tensor(u % 2, dtype=torch.int64)  # an integer buffer
        state["half"] = torch.full((2,), 0.125, dtype=torch.float16)
        updates[u] = state
    return torch, updates


@pytest.mark.parametrize("name", ["plain", *QUANTIZING])
def test_every_backend_sums_a_torch_state_dict_into_cpu_tensors_of_its_dtypes(
    name: str, keys: PaillierKeypair
) -> None:
    torch, updates = _torch_state_dicts(4, seed=1)
    reference = updates[0]
    result = _backend(name, keys).aggregate(updates, dropouts={3: 1})
    summed = result.structured_total
    assert isinstance(summed, dict) and list(summed) == list(reference)
    expected_dtypes = {
        "0.weight": torch.float32,
        "0.bias": torch.float32,
        "1.weight": torch.float64,
        "1.bias": torch.float64,
        "step": torch.float64,
        "half": torch.float64,
    }
    for key, tensor in summed.items():
        assert isinstance(tensor, torch.Tensor), key
        assert tensor.device.type == "cpu" and not tensor.requires_grad
        assert tensor.dtype == expected_dtypes[key] and tensor.shape == reference[key].shape
        exact = _clipped_sum([updates[u][key].double().numpy() for u in (0, 1, 2)], 1.0)
        tolerance = (0.0 if name == "plain" else _bound(3, 1.0, None)) + 1e-6
        assert np.max(np.abs(tensor.double().numpy() - exact), initial=0.0) <= tolerance, key
    mean = result.structured_mean
    assert isinstance(mean, dict)
    torch.testing.assert_close(mean["step"], summed["step"] / 3)


def test_parameters_that_require_grad_are_taken_as_their_values() -> None:
    torch = pytest.importorskip("torch")
    models = [torch.nn.Linear(3, 2) for _ in range(3)]
    updates = {u: m.state_dict(keep_vars=True) for u, m in enumerate(models)}
    assert updates[0]["weight"].requires_grad
    summed = PlainAggregator().aggregate(updates).structured_total
    assert isinstance(summed, dict)
    expected = sum(m.weight.detach() for m in models)
    torch.testing.assert_close(summed["weight"], expected)
    assert not summed["weight"].requires_grad


def test_a_list_of_tensors_is_an_ndarrays_like_update() -> None:
    torch = pytest.importorskip("torch")
    updates = {u: [torch.full((2,), 0.5), torch.zeros(1, dtype=torch.float64)] for u in range(2)}
    summed = PlainAggregator().aggregate(updates).structured_total
    assert isinstance(summed, list)
    torch.testing.assert_close(summed[0], torch.ones(2))
    assert summed[1].dtype == torch.float64


# --------------------------------------------------------------------------------------------
# Mismatches: a specific error naming the client, the entry and both shapes
# --------------------------------------------------------------------------------------------

MISMATCHES: list[tuple[str, object, str | int | None, object, object, str]] = [
    (
        "missing name",
        {"w": np.zeros((2, 3))},
        "b",
        None,
        (4,),
        r"client 2 has no entry 'b', which has shape \(4,\) in client 0's update",
    ),
    (
        "extra name",
        {"w": np.zeros((2, 3)), "b": np.zeros(4), "extra": np.zeros(5)},
        "extra",
        (5,),
        None,
        r"client 2 has an extra entry 'extra' of shape \(5,\), which client 0's update lacks",
    ),
    (
        "other shape",
        {"w": np.zeros((3, 2)), "b": np.zeros(4)},
        "w",
        (3, 2),
        (2, 3),
        r"client 2 has entry 'w' of shape \(3, 2\), but client 0's has shape \(2, 3\)",
    ),
    (
        "other kind",
        [np.zeros((2, 3)), np.zeros(4)],
        None,
        None,
        None,
        r"client 2 is a list of arrays \(NDArrays\), but client 0's is a mapping",
    ),
    (
        "a 1-D update",
        np.zeros(10),
        None,
        None,
        None,
        r"client 2 is a plain 1-D update, but client 0's is a mapping",
    ),
]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    ("label", "update", "entry", "shape", "expected", "message"),
    MISMATCHES,
    ids=[case[0] for case in MISMATCHES],
)
def test_every_backend_refuses_a_state_dict_of_another_structure(
    name: str,
    label: str,
    update: object,
    entry: str | int | None,
    shape: object,
    expected: object,
    message: str,
    keys: PaillierKeypair,
    dp_template: DistributedDPAggregator,
) -> None:
    aggregator = copy.deepcopy(dp_template) if name == "dp" else _backend(name, keys)
    good = {"w": np.zeros((2, 3)), "b": np.zeros(4)}
    updates = {0: good, 1: dict(good), 2: update, 3: dict(good)}
    with pytest.raises(StructureMismatchError, match=message) as caught:
        aggregator.aggregate(updates)
    error = caught.value
    assert isinstance(error, ParameterError)
    assert (error.client, error.reference_client, error.entry) == (2, 0, entry)
    assert (error.shape, error.expected_shape) == (shape, expected)
    assert aggregator.last_report is None  # refused before any round ran


@pytest.mark.parametrize(
    ("update", "index", "shapes", "message"),
    [
        (
            [np.zeros(3)],
            1,
            (None, (5,)),
            r"client 1 has 1 array where client 0's has 2 arrays: it has no array 1",
        ),
        (
            [np.zeros(3), np.zeros(5), np.zeros((1, 1))],
            2,
            ((1, 1), None),
            r"client 1 has 3 arrays where client 0's has 2 arrays: it has an extra array 2 of",
        ),
        ([np.zeros(3), np.zeros(6)], 1, ((6,), (5,)), r"array 1 of shape \(6,\), but client 0's"),
    ],
)
def test_ndarrays_of_another_count_or_shape_are_refused_naming_the_index(
    update: Arrays, index: int, shapes: tuple[object, object], message: str
) -> None:
    updates = {0: [np.zeros(3), np.zeros(5)], 1: update}
    with pytest.raises(StructureMismatchError, match=message) as caught:
        PlainAggregator().aggregate(updates)
    assert caught.value.entry == index
    assert (caught.value.shape, caught.value.expected_shape) == shapes


def test_a_structured_update_among_1d_updates_is_refused() -> None:
    with pytest.raises(StructureMismatchError, match="client 1 is a list of arrays"):
        PlainAggregator().aggregate({0: np.zeros(3), 1: [np.zeros(3)]})


BAD_ENTRIES: list[tuple[str, dict[int, Any], str]] = [
    ("NaN", {0: {"w": [0.0]}, 1: {"w": [math.nan]}}, r"client 1: entry 'w' contains NaN"),
    ("strings", {0: {"w": ["a"]}, 1: {"w": [0.0]}}, r"client 0: entry 'w' has dtype <U1"),
    ("booleans", {0: [np.zeros(1)], 1: [np.array([True])]}, r"client 1: array 0 has dtype bool"),
    ("a name not a string", {0: {1: [0.0]}, 1: {1: [0.0]}}, "entry name 1; the names"),
    ("no entries", {0: {}, 1: {}}, "client 0 is an empty mapping"),
    ("ragged", {0: {"w": [0.0]}, 1: {"w": [[0.0], [1.0, 2.0]]}}, "client 1: entry 'w' is not an"),
]


@pytest.mark.parametrize(
    ("label", "updates", "message"), BAD_ENTRIES, ids=[c[0] for c in BAD_ENTRIES]
)
def test_entries_that_are_not_finite_real_numbers_are_refused_naming_them(
    label: str, updates: dict[int, Any], message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        MaskingAggregator().aggregate(updates)


# --------------------------------------------------------------------------------------------
# 1-D updates are unchanged; torch stays optional
# --------------------------------------------------------------------------------------------


def test_plain_1d_updates_keep_their_flat_result() -> None:
    result = PlainAggregator().aggregate({0: [0.5, 0.25], 1: np.array([0.25, 0.0])})
    assert result.structure is None
    assert result.structured_total is result.total
    np.testing.assert_array_equal(result.structured_mean, [0.375, 0.125])


_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import numpy as np
import protocols
from protocols.aggregators import MaskingAggregator, make_aggregator
updates = {u: [np.full((2, 2), 0.25, np.float32), np.zeros(3)] for u in range(3)}
summed = MaskingAggregator().aggregate(updates).structured_total
assert summed[0].dtype == np.float32 and summed[0].shape == (2, 2), summed
assert abs(float(summed[0][0, 0]) - 0.75) < 1e-3
state = {u: {"w": np.full(2, 0.5)} for u in range(2)}
print(sorted(make_aggregator("plain").aggregate(state).structured_total))
"""


def test_protocols_sums_structured_updates_without_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['w']"
