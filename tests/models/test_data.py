"""Loaders, the synthetic generator and the evaluation splits."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from models import (
    DataError,
    Interactions,
    detect_format,
    leave_one_out_split,
    load_movielens,
    rating_split,
    synthetic_interactions,
)
from models.data import sample_unseen_items
from secagg.errors import ParameterError

ML_100K = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t878887116\n"
ML_1M = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
ML_LATEST = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n7,1,0.5,1\n"


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("u.data", ML_100K, "ml-100k"),
        ("ratings.dat", ML_1M, "ml-1m"),
        ("ratings.csv", ML_LATEST, "ml-latest"),
    ],
)
def test_load_movielens_reads_each_format(tmp_path: Path, name: str, text: str, fmt: str) -> None:
    path = _write(tmp_path, name, text)
    assert detect_format(path) == fmt
    data = load_movielens(path)
    assert len(data) == 3
    assert data.num_users == 2
    assert data.num_items in (2, 3)
    assert set(data.users.tolist()) == {0, 1}
    assert data.items.max() == data.num_items - 1
    assert data.ratings.dtype == np.float32
    assert load_movielens(tmp_path).users.tolist() == data.users.tolist()


def test_load_movielens_remaps_ids_in_order_of_appearance(tmp_path: Path) -> None:
    data = load_movielens(_write(tmp_path, "u.data", ML_100K))
    assert data.user_ids.tolist() == [196, 186]
    assert data.users.tolist() == [0, 1, 0]
    assert data.item_ids.tolist() == [242, 302, 377]
    assert data.items.tolist() == [0, 1, 2]
    assert data.ratings.tolist() == [3.0, 3.0, 1.0]
    assert data.timestamps.tolist() == [881250949, 891717742, 878887116]


def test_load_movielens_ml_latest_keeps_half_star_ratings(tmp_path: Path) -> None:
    data = load_movielens(_write(tmp_path, "ratings.csv", ML_LATEST))
    assert data.ratings.tolist() == [4.0, 4.5, 0.5]
    assert data.user_ids.tolist() == [1, 7]


def test_load_movielens_explicit_format_overrides_the_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "my_ratings.txt", ML_1M)
    with pytest.raises(DataError, match="format="):
        load_movielens(path)
    assert len(load_movielens(path, format="ml-1m")) == 3


def test_load_movielens_skips_blank_lines(tmp_path: Path) -> None:
    data = load_movielens(_write(tmp_path, "u.data", "\n" + ML_100K + "\n\n"))
    assert len(data) == 3


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("u.data", "196\t242\t3\t881250949\n186\t302\t3\n", 2),
        ("u.data", "196\t242\tgood\t881250949\n", 1),
        ("ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2;1193;4;978298413\n", 3),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,9\n1,x,4.0,9\n", 3),
        ("ratings.csv", "user,movie,rating,time\n1,1,4.0,9\n", 1),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,nan,9\n", 2),
    ],
)
def test_load_movielens_names_file_and_line_of_malformed_input(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(DataError, match=f"line {line}") as info:
        load_movielens(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ParameterError)


def test_load_movielens_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        load_movielens(tmp_path / "u.data")
    assert "u.data" in str(info.value)


def test_load_movielens_directory_without_ratings_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds none of"):
        load_movielens(tmp_path)


def test_load_movielens_empty_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no ratings"):
        load_movielens(_write(tmp_path, "ratings.dat", "\n"))


def test_interactions_rejects_out_of_range_ids() -> None:
    with pytest.raises(DataError, match="item index"):
        Interactions(
            users=np.array([0]),
            items=np.array([5]),
            ratings=np.array([1.0], np.float32),
            timestamps=np.array([0]),
            num_users=1,
            num_items=2,
            user_ids=np.arange(1),
            item_ids=np.arange(2),
        )


def test_synthetic_interactions_has_the_promised_shape(synthetic: Interactions) -> None:
    counts = np.bincount(synthetic.users, minlength=synthetic.num_users)
    assert (synthetic.num_users, synthetic.num_items) == (300, 500)
    assert counts.min() >= 20
    assert counts.max() <= 60
    # One interaction per (user, item) pair.
    pairs = synthetic.users * synthetic.num_items + synthetic.items
    assert np.unique(pairs).shape[0] == len(synthetic)
    assert set(np.unique(synthetic.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_synthetic_interactions_has_a_long_tail(synthetic: Interactions) -> None:
    popularity = np.sort(synthetic.item_counts())[::-1]
    top_tenth = popularity[: synthetic.num_items // 10].sum() / popularity.sum()
    assert top_tenth > 0.3  # 10% of the items hold well over 10% of the interactions
    assert popularity[-50:].mean() < popularity.mean() / 3


def test_synthetic_interactions_is_seeded() -> None:
    first = synthetic_interactions(50, 120, min_per_user=5, max_per_user=10, seed=3)
    again = synthetic_interactions(50, 120, min_per_user=5, max_per_user=10, seed=3)
    other = synthetic_interactions(50, 120, min_per_user=5, max_per_user=10, seed=4)
    assert np.array_equal(first.items, again.items)
    assert not np.array_equal(first.items, other.items)


def test_synthetic_interactions_rejects_inconsistent_sizes() -> None:
    with pytest.raises(ParameterError, match="min_per_user"):
        synthetic_interactions(10, 20, min_per_user=30, max_per_user=40)


def test_leave_one_out_holds_out_the_latest_interaction(synthetic: Interactions) -> None:
    split = leave_one_out_split(synthetic, seed=1)
    assert len(split.train) == len(synthetic) - synthetic.num_users
    assert split.negatives.shape == (synthetic.num_users, 99)
    all_items = synthetic.items_by_user()
    train_items = split.train.items_by_user()
    for row, user in enumerate(split.test_users.tolist()):
        rows = np.flatnonzero(synthetic.users == user)
        latest = rows[np.argmax(synthetic.timestamps[rows])]
        assert split.test_items[row] == synthetic.items[latest]
        assert split.test_items[row] not in train_items[user]
        negatives = split.negatives[row]
        assert np.unique(negatives).shape[0] == 99
        assert not np.isin(negatives, all_items[user]).any()
    assert split.candidates()[:, 0].tolist() == split.test_items.tolist()


def test_leave_one_out_keeps_single_interaction_users_for_training() -> None:
    data = Interactions(
        users=np.array([0, 0, 1]),
        items=np.array([0, 1, 2]),
        ratings=np.ones(3, np.float32),
        timestamps=np.array([5, 5, 1]),
        num_users=2,
        num_items=6,
        user_ids=np.arange(2),
        item_ids=np.arange(6),
    )
    split = leave_one_out_split(data, num_negatives=3)
    assert split.test_users.tolist() == [0]
    assert split.test_items.tolist() == [1]  # a tie in time goes to the later line
    assert not np.isin(split.negatives[0], [0, 1]).any()
    assert split.train.users.tolist() == [0, 1]


def test_leave_one_out_needs_enough_unseen_items() -> None:
    data = synthetic_interactions(5, 30, min_per_user=5, max_per_user=10)
    with pytest.raises(DataError, match="unseen"):
        leave_one_out_split(data, num_negatives=99)


def test_sample_unseen_items_avoids_seen_ones_on_both_paths() -> None:
    rng = np.random.default_rng(0)
    seen = np.array([0, 2, 4, 6, 8])
    for count in (3, 5):  # rejection sampling, then the dense path
        drawn = sample_unseen_items(seen, 10, count, rng)
        assert drawn.shape == (count,)
        assert np.unique(drawn).shape[0] == count
        assert not np.isin(drawn, seen).any()


def test_rating_split_is_disjoint_and_keeps_every_user(synthetic: Interactions) -> None:
    split = rating_split(synthetic, test_fraction=0.2, seed=0)
    assert len(split.train) + len(split.test) == len(synthetic)
    assert 0.15 < len(split.test) / len(synthetic) < 0.25
    assert set(split.train.users.tolist()) == set(range(synthetic.num_users))
    train_pairs = set(zip(split.train.users.tolist(), split.train.items.tolist(), strict=True))
    test_pairs = set(zip(split.test.users.tolist(), split.test.items.tolist(), strict=True))
    assert not train_pairs & test_pairs


def test_rating_split_rejects_bad_fraction(synthetic: Interactions) -> None:
    with pytest.raises(ParameterError, match="test_fraction"):
        rating_split(synthetic, test_fraction=1.0)


def test_load_movielens_directory_with_format_reads_only_that_file(tmp_path: Path) -> None:
    _write(tmp_path, "u.data", ML_100K)
    with pytest.raises(DataError, match=r"ratings\.dat"):
        load_movielens(tmp_path, format="ml-1m")
    _write(tmp_path, "ratings.dat", ML_1M)
    assert load_movielens(tmp_path, format="ml-1m").user_ids.tolist() == [1, 2]


def test_load_movielens_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    data = load_movielens(_write(tmp_path, "ratings.csv", "\ufeff" + ML_LATEST))
    assert len(data) == 3


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("196\t242\t99\t881250949\n", "line 2: rating 99 lies outside MovieLens's 0.5 .. 5 stars"),
        ("196\t242\t0\t881250949\n", "line 2: rating 0 lies outside"),
        ("-5\t242\t3\t881250949\n", "line 2: user and item ids must not be negative, got user -5"),
        ("196\t-1\t3\t881250949\n", "got user 196, item -1"),
    ],
)
def test_load_movielens_refuses_out_of_range_events_naming_the_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = _write(tmp_path, "u.data", "196\t242\t3\t881250949\n" + line)
    with pytest.raises(DataError, match=re.escape(expected)):
        load_movielens(path)


def test_cli_train_data_format_reads_a_file_whose_name_says_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from protocols.cli import main

    # 12 users rating 10 of 150 items each: enough unseen items for 99 sampled negatives.
    events = "".join(
        f"{u}::{i}::{1 + (u * i) % 5}::{978300000 + u * 1000 + i}\n"
        for u in range(1, 13)
        for i in sorted({(u * 7 + k * 13) % 150 + 1 for k in range(10)})
    )
    path = _write(tmp_path, "my_ratings.txt", events)
    base = ["train", "--data", str(path), "--rounds", "1", "--clients-per-round", "4", "--dim", "4"]
    assert main(base) == 2
    assert "--data-format" in capsys.readouterr().err
    assert main([*base, "--protocol", "plain", "--data-format", "ml-1m"]) == 0
    assert "12 users" in capsys.readouterr().out
