"""The secure aggregate drives the server optimizer bit for bit like the plain one.

A masking backend quantizes each upload, sums in the ring and decodes; the plain backend adds
the floats. On values off the quantization grid the two differ by the (unbiased, bounded)
rounding error, which ``tests/protocols`` pins. On values *on* the grid the rounding is exact, so
any difference left would be the protocol's: a lost or doubled client, a mask that did not
cancel, a count decoded wrong. Here every upload coordinate is a grid point and the grid is
dyadic (the step is 2^-20), so every float operation is exact, and the server optimizer
(FedAdam, FedYogi, FedAvgM on rows with per-item counts) must take the very same steps from
either backend's aggregate, round after round, with clients dropping at every protocol round.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from models.base import Recommender
from models.mf import MatrixFactorization
from models.ncf import NeuMF
from models.server import FederatedServer
from models.server_optimizers import ServerOptimizerConfig
from protocols.aggregators import Aggregator, MaskingAggregator, PlainAggregator
from secagg.encoding import QuantizationScheme

VALUE_BITS = 22
LEVELS = (1 << VALUE_BITS) - 1
#: The clip whose quantization step 2 * clip / LEVELS is exactly 2^-20.
CLIP = LEVELS * 2.0 ** -(VALUE_BITS - 1)
STEP = 2.0 ** -(VALUE_BITS - 2)
CLIENTS, ROUNDS, USERS, ITEMS = 8, 4, 10, 12


def _grid(levels: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """The float values that quantize exactly to ``levels``."""
    return -CLIP + levels.astype(np.float64) * STEP


def _item_row(server: FederatedServer) -> npt.NDArray[np.int64]:
    """The item row of every shared coordinate (-1 on dense weights)."""
    rows = np.full(server.layout.size, -1, dtype=np.int64)
    for slot in server.layout.slots:
        if slot.per_item:
            width = slot.size // slot.shape[0]
            rows[slot.offset : slot.offset + slot.size] = np.repeat(np.arange(slot.shape[0]), width)
    return rows


def _uploads(
    server: FederatedServer, rng: np.random.Generator
) -> dict[int, npt.NDArray[np.float64]]:
    """One round's uploads: grid deltas on a few item rows and the dense weights, indicators."""
    layout, upload = server.layout, server.upload
    per_item = layout.per_item_mask()
    uploads = {}
    for client in range(CLIENTS):
        touched = rng.choice(ITEMS, size=3, replace=False)
        rows = np.isin(_item_row(server), touched) | ~per_item
        # Mid-grid is -STEP / 2, the grid point next to zero: an untouched coordinate.
        levels = np.full(upload.size, (LEVELS - 1) // 2, dtype=np.int64)
        moved = rng.integers(-30_000, 30_000, size=layout.size)
        levels[: layout.size] += np.where(rows, moved, 0)
        indicators = np.zeros(ITEMS, dtype=bool)
        indicators[touched] = True
        levels[layout.size :] = np.where(indicators, LEVELS, (LEVELS - 1) // 2)
        uploads[client] = _grid(levels)
    return uploads


def _dropouts(rng: np.random.Generator) -> dict[int, int]:
    """Two clients drop, each at a random protocol round (before or after their upload)."""
    lost = rng.choice(CLIENTS, size=2, replace=False)
    return {int(client): int(rng.integers(0, 4)) for client in lost}


def _server(model: Recommender, optimizer: str) -> FederatedServer:
    return FederatedServer(
        model,
        item_learning_rate=0.05,
        dense_learning_rate=0.01,
        optimizer=ServerOptimizerConfig(name=optimizer, schedule="cosine"),
        counts=True,
        clip=CLIP,
        total_rounds=ROUNDS,
    )


MODELS = {
    "mf": lambda: MatrixFactorization(USERS, ITEMS, 4, seed=3),
    "neumf": lambda: NeuMF(USERS, ITEMS, gmf_dim=4, mlp_dim=4, hidden=(8, 4), seed=3),
}


@pytest.mark.parametrize(
    ("protocol", "optimizer", "model"),
    [
        ("secagg", "fedadam", "mf"),
        ("secagg+", "fedyogi", "neumf"),
        ("secagg+", "fedavgm", "mf"),
    ],
)
def test_secure_and_plain_aggregates_take_identical_server_steps(
    protocol: str, optimizer: str, model: str
) -> None:
    plain_server = _server(MODELS[model](), optimizer)
    secure_server = _server(MODELS[model](), optimizer)
    plain: Aggregator = PlainAggregator(clip=CLIP)
    secure: Aggregator = MaskingAggregator(
        protocol, clip=CLIP, value_bits=VALUE_BITS, threat_model="active"
    )
    rng = np.random.default_rng(7)
    for _ in range(ROUNDS):
        uploads = _uploads(plain_server, rng)
        dropouts = _dropouts(rng)
        expected = plain.aggregate(uploads, dropouts=dropouts)
        got = secure.aggregate(uploads, dropouts=dropouts)
        assert got.survivors == expected.survivors
        assert np.array_equal(got.total, expected.total)
        plain_step = plain_server.apply(expected)
        secure_step = secure_server.apply(got)
        assert secure_step == plain_step
        assert secure_step.touched_items is not None and secure_step.touched_items > 0
        assert np.array_equal(secure_server.broadcast(), plain_server.broadcast())
    # The steps moved the model: the equality is not that of two idle servers.
    assert not np.array_equal(
        plain_server.broadcast(), _server(MODELS[model](), optimizer).broadcast()
    )


def test_the_grid_is_exact() -> None:
    """The premise: grid values quantize without rounding."""
    scheme = QuantizationScheme(clip=CLIP, value_bits=VALUE_BITS, num_clients=CLIENTS)
    assert scheme.step == STEP
    levels = np.array([0, 1, (LEVELS - 1) // 2, LEVELS - 1, LEVELS], dtype=np.int64)
    for _ in range(20):
        assert np.array_equal(scheme.quantize(_grid(levels)).astype(np.int64), levels)
