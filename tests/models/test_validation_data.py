"""The MovieLens-shaped synthetic data, the validation split and per-user synthetic counts.

The validation split is where tuning happens, so it must never look at the test: no validation
candidate (positive or negative) may be a user's test item, even when that item also appears
among the user's training events. Each property is checked against an independent recomputation
from the leave-one-out split it was built from.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from models.data import (
    MOVIELENS_100K_SHAPE,
    Interactions,
    LeaveOneOutSplit,
    leave_one_out_split,
    synthetic_interactions,
    synthetic_movielens,
    validation_split,
)
from secagg.errors import ParameterError

Event = tuple[int, int, float, int]


@pytest.fixture(scope="module")
def movielens() -> Interactions:
    """The default MovieLens-100K-shaped data set, generated once for this module."""
    return synthetic_movielens()


@pytest.fixture(scope="module")
def loo_split() -> LeaveOneOutSplit:
    """A small leave-one-out split with users of 3 to 40 events (some have few left)."""
    data = synthetic_interactions(80, 200, min_per_user=3, max_per_user=40, seed=3)
    return leave_one_out_split(data, num_negatives=30, seed=3)


# --- synthetic_movielens -----------------------------------------------------------------------


def test_synthetic_movielens_has_the_size_of_movielens_100k(movielens: Interactions) -> None:
    assert (movielens.num_users, movielens.num_items, len(movielens)) == (943, 1682, 100_000)
    assert MOVIELENS_100K_SHAPE[:3] == (943, 1682, 100_000)
    per_user = np.bincount(movielens.users, minlength=movielens.num_users)
    assert per_user.min() >= 20
    assert per_user.max() <= 737
    assert 58 <= np.median(per_user) <= 72  # MovieLens-100K: 65
    # Heavy-tailed: some users have hundreds, most have under a hundred.
    assert per_user.max() >= 500
    assert np.mean(per_user < 100) >= 0.6
    pairs = set(zip(movielens.users.tolist(), movielens.items.tolist(), strict=True))
    assert len(pairs) == len(movielens)  # a user rates an item once


def test_synthetic_movielens_item_popularity_has_a_long_tail(movielens: Interactions) -> None:
    popularity = movielens.item_counts()
    assert popularity.sum() == len(movielens)
    assert popularity.max() >= 10 * np.median(popularity)


def test_synthetic_movielens_is_seeded(movielens: Interactions) -> None:
    again = synthetic_movielens()
    other = synthetic_movielens(seed=1)
    np.testing.assert_array_equal(again.items, movielens.items)
    np.testing.assert_array_equal(again.timestamps, movielens.timestamps)
    assert len(other) == len(movielens)
    assert not np.array_equal(other.items, movielens.items)


# --- validation_split --------------------------------------------------------------------------


def _events(data: Interactions) -> Counter[Event]:
    return Counter(
        zip(
            data.users.tolist(),
            data.items.tolist(),
            data.ratings.tolist(),
            data.timestamps.tolist(),
            strict=True,
        )
    )


def _expected_validation_events(split: LeaveOneOutSplit) -> dict[int, Event]:
    """Per test user, the latest training event whose item is not the test item.

    Ties in time go to the later input line, as in :func:`leave_one_out_split`; users with
    fewer than two such events are not validated.
    """
    train = split.train
    expected: dict[int, Event] = {}
    for user, test_item in zip(split.test_users.tolist(), split.test_items.tolist(), strict=True):
        rows = [
            i
            for i in np.flatnonzero(train.users == user).tolist()
            if int(train.items[i]) != test_item
        ]
        if len(rows) < 2:
            continue
        latest = max(rows, key=lambda i: (int(train.timestamps[i]), i))
        expected[user] = (
            user,
            int(train.items[latest]),
            float(train.ratings[latest]),
            int(train.timestamps[latest]),
        )
    return expected


def _check_validation_split(split: LeaveOneOutSplit, validation: LeaveOneOutSplit) -> None:
    """Every property of the validation split, recomputed from ``split``."""
    expected = _expected_validation_events(split)
    assert validation.test_users.tolist() == sorted(expected)
    assert validation.test_items.tolist() == [expected[u][1] for u in sorted(expected)]
    # The returned train is the test split's train minus exactly the validation events.
    removed = _events(split.train) - _events(validation.train)
    assert removed == Counter(expected.values())
    assert len(validation.train) == len(split.train) - len(expected)
    assert validation.negatives.shape == (len(expected), split.negatives.shape[1])
    test_item = dict(zip(split.test_users.tolist(), split.test_items.tolist(), strict=True))
    seen = split.train.items_by_user()
    for user, candidates in zip(
        validation.test_users.tolist(), validation.candidates(), strict=True
    ):
        assert test_item[user] not in candidates.tolist()
        negatives = candidates[1:]
        assert np.unique(negatives).shape == negatives.shape
        assert not np.isin(negatives, seen[user]).any()
        assert np.all((negatives >= 0) & (negatives < split.train.num_items))


def test_validation_split_of_synthetic_data(loo_split: LeaveOneOutSplit) -> None:
    validation = validation_split(loo_split, seed=5)
    assert len(validation.test_users) > 0.9 * len(loo_split.test_users)
    _check_validation_split(loo_split, validation)


def test_validation_split_of_movielens_shaped_data(movielens: Interactions) -> None:
    split = leave_one_out_split(movielens, seed=0)
    validation = validation_split(split, seed=0)
    assert len(validation.test_users) == movielens.num_users
    _check_validation_split(split, validation)


def test_validation_split_is_seeded(loo_split: LeaveOneOutSplit) -> None:
    first, again = validation_split(loo_split, seed=1), validation_split(loo_split, seed=1)
    other = validation_split(loo_split, seed=2)
    np.testing.assert_array_equal(first.negatives, again.negatives)
    np.testing.assert_array_equal(first.test_items, other.test_items)
    assert not np.array_equal(first.negatives, other.negatives)


def _hand_built() -> Interactions:
    """Five users over twelve items, with the awkward cases spelled out.

    * user 0: items 5 (t=1), 7 (t=2), 3 (t=3), 3 (t=4). The test item is 3 (t=4); the latest
      training event is item 3 again (t=3), so the validation positive must be item 7.
    * user 1: items 1 (t=1), 2 (t=5), 4 (t=5). Tied in time, the later line (item 4) is the
      test; the validation positive is item 2.
    * user 2: items 8 (t=1), 9 (t=2): one training event left, so not validated.
    * user 3: items 0 (t=0), 6 (t=1), 6 (t=2), 6 (t=3): test item 6; the only training event
      that is not item 6 is item 0, so not validated.
    * user 4: items 0 (t=1), 2 (t=3), 10 (t=3), 5 (t=4): test item 5; the training events
      tie at t=3 and the later line (item 10) is the validation positive.
    """
    users = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4]
    items = [5, 7, 3, 3, 1, 2, 4, 8, 9, 0, 6, 6, 6, 0, 2, 10, 5]
    times = [1, 2, 3, 4, 1, 5, 5, 1, 2, 0, 1, 2, 3, 1, 3, 3, 4]
    return Interactions(
        users=np.array(users, dtype=np.int64),
        items=np.array(items, dtype=np.int64),
        ratings=np.arange(len(users), dtype=np.float32),
        timestamps=np.array(times, dtype=np.int64),
        num_users=5,
        num_items=12,
        user_ids=np.arange(5, dtype=np.int64),
        item_ids=np.arange(12, dtype=np.int64),
    )


def test_validation_split_skips_a_test_item_duplicated_in_training() -> None:
    split = leave_one_out_split(_hand_built(), num_negatives=4, seed=0)
    assert split.test_users.tolist() == [0, 1, 2, 3, 4]
    assert split.test_items.tolist() == [3, 4, 9, 6, 5]
    validation = validation_split(split, seed=0)
    assert validation.test_users.tolist() == [0, 1, 4]
    assert validation.test_items.tolist() == [7, 2, 10]
    # User 0 keeps the training copy of the test item; users 2 and 3 keep all they had.
    assert sorted(validation.train.items[validation.train.users == 0].tolist()) == [3, 5]
    assert validation.train.items[validation.train.users == 1].tolist() == [1]
    assert validation.train.items[validation.train.users == 2].tolist() == [8]
    assert sorted(validation.train.items[validation.train.users == 3].tolist()) == [0, 6, 6]
    assert sorted(validation.train.items[validation.train.users == 4].tolist()) == [0, 2]
    _check_validation_split(split, validation)
    # Neither the test item nor anything else the user saw is a validation negative.
    assert not {3, 5, 7} & set(validation.negatives[0].tolist())
    assert not {1, 2, 4} & set(validation.negatives[1].tolist())
    assert not {0, 2, 5, 10} & set(validation.negatives[2].tolist())


def test_validation_split_of_an_empty_test_split() -> None:
    split = leave_one_out_split(_hand_built(), num_negatives=4, seed=0)
    empty = LeaveOneOutSplit(
        train=split.train,
        test_users=np.zeros(0, dtype=np.int64),
        test_items=np.zeros(0, dtype=np.int64),
        negatives=np.zeros((0, 4), dtype=np.int64),
    )
    validation = validation_split(empty)
    assert validation.negatives.shape == (0, 4)
    assert len(validation.train) == len(split.train)


# --- synthetic_interactions(per_user=...) ------------------------------------------------------


def test_per_user_counts_are_honoured() -> None:
    counts = np.array([2, 5, 30, 7, 11])
    data = synthetic_interactions(5, 30, min_per_user=2, max_per_user=30, per_user=counts, seed=4)
    np.testing.assert_array_equal(np.bincount(data.users, minlength=5), counts)
    distinct = [items.shape[0] for items in data.items_by_user()]
    assert distinct == counts.tolist()  # each pick is a distinct item


@pytest.mark.parametrize(
    "per_user",
    [
        np.array([2, 5, 7]),  # one user short
        np.array([2, 5, 7, 9, 11, 3]),  # one user too many
        np.array([2, 5, 1, 9, 11]),  # below the two a split needs
        np.array([2, 5, 0, 9, 11]),
        np.array([2, 5, -3, 9, 11]),
        np.array([2, 5, 31, 9, 11]),  # more than the catalogue
        np.array([[2, 5, 7, 9, 11]]),  # not one count per user
    ],
    ids=lambda counts: str(counts.tolist()),
)
def test_bad_per_user_counts_are_refused(per_user: np.ndarray) -> None:
    with pytest.raises(ParameterError, match="per_user"):
        synthetic_interactions(5, 30, min_per_user=2, max_per_user=30, per_user=per_user)
