"""Negative sampling: unseen items only, from the catalogue or from a given candidate pool."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.data import DataError
from models.training import Examples, build_examples, sample_negatives

NUM_ITEMS = 40


def _seen(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.unique(users * NUM_ITEMS + items)


@settings(max_examples=50, deadline=None)
@given(
    seen=st.lists(st.integers(0, NUM_ITEMS - 1), min_size=1, max_size=15, unique=True),
    pool=st.lists(st.integers(0, NUM_ITEMS - 1), min_size=1, max_size=30, unique=True),
    seed=st.integers(0, 2**16),
)
def test_negatives_are_unseen_candidates(seen: list[int], pool: list[int], seed: int) -> None:
    free = sorted(set(pool) - set(seen))
    users = np.zeros(len(seen), np.int64)
    codes = _seen(users, np.array(seen))
    draws_for = np.zeros(200, np.int64)
    rng = np.random.default_rng(seed)
    if not free:
        with pytest.raises(DataError):
            sample_negatives(draws_for, codes, NUM_ITEMS, rng, np.array(pool))
        return
    negatives = sample_negatives(draws_for, codes, NUM_ITEMS, rng, np.array(pool))
    assert set(negatives.tolist()) <= set(free)
    if len(free) > 1:
        assert len(set(negatives.tolist())) > 1  # drawn, not one fixed item


def _examples(objective: str, seed: int, candidates: np.ndarray | None) -> Examples:
    users = np.array([0, 0, 1, 1], np.int64)
    items = np.array([3, 5, 3, 9], np.int64)
    return build_examples(
        users,
        items,
        np.ones(4, np.float32),
        num_items=NUM_ITEMS,
        objective=objective,  # type: ignore[arg-type]
        num_negatives=3,
        rng=np.random.default_rng(seed),
        candidates=candidates,
    )


def test_without_candidates_the_draws_are_the_catalogue_draws() -> None:
    """The draws without a pool are the plain uniform draws over the catalogue, redrawn when
    seen (what every earlier run used), so existing seeds give the same negatives."""
    examples = _examples("bpr", 7, None)
    rng = np.random.default_rng(7)
    users = np.repeat(np.array([0, 0, 1, 1], np.int64), 3)
    seen = _seen(np.array([0, 0, 1, 1]), np.array([3, 5, 3, 9]))
    expected = rng.integers(0, NUM_ITEMS, size=users.shape[0])
    while (bad := np.isin(users * NUM_ITEMS + expected, seen)).any():
        expected[bad] = rng.integers(0, NUM_ITEMS, size=int(bad.sum()))
    assert examples.negatives is not None
    assert np.array_equal(examples.negatives, expected)


def test_bce_negatives_come_from_the_pool() -> None:
    examples = _examples("bce", 1, np.array([3, 5, 30, 31], np.int64))
    negatives = examples.items[examples.targets == 0]
    assert negatives.size == 12
    assert set(negatives.tolist()) <= {5, 30, 31}  # pool items the user has not seen
    assert not np.isin(
        examples.users[examples.targets == 0] * NUM_ITEMS + negatives,
        _seen(np.array([0, 0, 1, 1]), np.array([3, 5, 3, 9])),
    ).any()


def test_an_empty_pool_is_refused() -> None:
    with pytest.raises(DataError, match="no candidate"):
        sample_negatives(
            np.zeros(2, np.int64),
            np.array([0]),
            NUM_ITEMS,
            np.random.default_rng(0),
            np.zeros(0, np.int64),
        )
