"""Interaction data for the recommenders: MovieLens loaders, a synthetic generator and the splits.

Federated recommendation treats every user as one client holding only their own interactions, so
everything here is organised around per-user interaction lists with ids remapped to ``0..n-1``.
The loaders read the three MovieLens layouts from a path the user supplies (nothing is downloaded)
and fail with a :class:`DataError` that names the file and line, never with a bare ``ValueError``
from deep inside a parser. The synthetic generator gives tests and demos a small data set with the
two properties that matter for recommendation: latent-factor structure a model can learn and a
long-tail (Zipf-like) item popularity that a popularity baseline can exploit.

The evaluation protocol is the one of He et al. (2017, NCF): each user's latest interaction is held
out and ranked among 99 items the user never interacted with. Explicit ratings get a plain random
per-user train/test split for RMSE.

Seeded ``numpy.random.Generator`` draws are used for *data* only (synthesis, splits, negative
sampling); nothing here is privacy noise or key material.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError

__all__ = [
    "MOVIELENS_100K_SHAPE",
    "MOVIELENS_FORMATS",
    "DataError",
    "Interactions",
    "LeaveOneOutSplit",
    "MovieLensFormat",
    "MovieLensShape",
    "RatingSplit",
    "detect_format",
    "leave_one_out_split",
    "load_movielens",
    "rating_split",
    "sample_unseen_items",
    "synthetic_interactions",
    "synthetic_movielens",
    "validation_split",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

MovieLensFormat = Literal["ml-100k", "ml-1m", "ml-latest"]

#: The supported layouts and the file name each one ships under.
MOVIELENS_FORMATS: Final[dict[MovieLensFormat, str]] = {
    "ml-100k": "u.data",
    "ml-1m": "ratings.dat",
    "ml-latest": "ratings.csv",
}

_ML_LATEST_HEADER: Final = ("userId", "movieId", "rating", "timestamp")


class DataError(ParameterError):
    """A data file is missing, unreadable or malformed, or a data set is unusable as asked."""


@dataclass(frozen=True, slots=True)
class Interactions:
    """A set of (user, item, rating, timestamp) events with dense ids.

    Attributes:
        users: shape ``(n,)`` int64, user index in ``[0, num_users)``.
        items: shape ``(n,)`` int64, item index in ``[0, num_items)``.
        ratings: shape ``(n,)`` float32 explicit rating (implicit models ignore it).
        timestamps: shape ``(n,)`` int64; larger means later.
        num_users: number of users (clients); ids ``0..num_users-1``.
        num_items: number of items; ids ``0..num_items-1``.
        user_ids: shape ``(num_users,)`` int64, the original id of each user index.
        item_ids: shape ``(num_items,)`` int64, the original id of each item index.
    """

    users: IntArray
    items: IntArray
    ratings: FloatArray
    timestamps: IntArray
    num_users: int
    num_items: int
    user_ids: IntArray
    item_ids: IntArray

    def __post_init__(self) -> None:
        n = self.users.shape[0]
        for name in ("users", "items", "ratings", "timestamps"):
            array = getattr(self, name)
            if array.ndim != 1 or array.shape[0] != n:
                raise DataError(f"{name} has shape {array.shape}; expected ({n},)")
        if self.num_users < 0 or self.num_items < 0:
            raise DataError("num_users and num_items must be non-negative")
        if n and (self.users.min() < 0 or self.users.max() >= self.num_users):
            raise DataError(f"user index out of range [0, {self.num_users})")
        if n and (self.items.min() < 0 or self.items.max() >= self.num_items):
            raise DataError(f"item index out of range [0, {self.num_items})")
        if self.user_ids.shape != (self.num_users,) or self.item_ids.shape != (self.num_items,):
            raise DataError("user_ids / item_ids must have one entry per user / item")

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def select(self, mask: npt.NDArray[np.bool_]) -> Interactions:
        """Keep the events where ``mask`` is true; ids and id maps are unchanged.

        Args:
            mask: shape ``(len(self),)`` boolean.

        Returns:
            A new :class:`Interactions` over the same users and items.
        """
        return Interactions(
            users=self.users[mask],
            items=self.items[mask],
            ratings=self.ratings[mask],
            timestamps=self.timestamps[mask],
            num_users=self.num_users,
            num_items=self.num_items,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
        )

    def user_rows(self) -> list[IntArray]:
        """Event indices of each user, in input order.

        Returns:
            A list of ``num_users`` int64 arrays; entry ``u`` indexes the events of user ``u``.
        """
        order = np.argsort(self.users, kind="stable")
        counts = np.bincount(self.users, minlength=self.num_users)
        return list(np.split(order, np.cumsum(counts)[:-1]))

    def items_by_user(self) -> list[IntArray]:
        """The distinct items each user interacted with, sorted.

        Returns:
            A list of ``num_users`` sorted int64 arrays.
        """
        return [np.unique(self.items[rows]) for rows in self.user_rows()]

    def item_counts(self) -> IntArray:
        """Number of events per item, shape ``(num_items,)`` (the popularity baseline's score)."""
        return np.bincount(self.items, minlength=self.num_items).astype(np.int64)


@dataclass(frozen=True, slots=True)
class LeaveOneOutSplit:
    """Leave-one-out evaluation data (He et al. 2017).

    Attributes:
        train: every event except the held-out one of each evaluated user.
        test_users: shape ``(m,)`` users that have a held-out item.
        test_items: shape ``(m,)`` the held-out (latest) item of each such user.
        negatives: shape ``(m, num_negatives)`` items the user never interacted with.
    """

    train: Interactions
    test_users: IntArray
    test_items: IntArray
    negatives: IntArray

    def candidates(self) -> IntArray:
        """Items to rank per test user, shape ``(m, 1 + num_negatives)``; column 0 is positive."""
        return np.concatenate([self.test_items[:, None], self.negatives], axis=1)


@dataclass(frozen=True, slots=True)
class RatingSplit:
    """Explicit-rating split for RMSE: disjoint train and test events over the same id space."""

    train: Interactions
    test: Interactions


def detect_format(path: str | os.PathLike[str]) -> MovieLensFormat:
    """Tell the MovieLens layout of a file from its name.

    Args:
        path: a ``u.data``, ``ratings.dat`` or ``ratings.csv`` file.

    Returns:
        ``"ml-100k"``, ``"ml-1m"`` or ``"ml-latest"``.

    Raises:
        DataError: the name is none of the three.
    """
    name = Path(path).name
    for fmt, filename in MOVIELENS_FORMATS.items():
        if name == filename:
            return fmt
    known = ", ".join(f"{f} ({n})" for f, n in MOVIELENS_FORMATS.items())
    raise DataError(
        f"cannot tell the MovieLens format of {str(path)!r} from its name; pass format= (on the "
        f"command line, --data-format) one of {known}"
    )


def load_movielens(
    path: str | os.PathLike[str], format: MovieLensFormat | None = None
) -> Interactions:
    """Load MovieLens ratings from a local file or directory; ids are remapped to ``0..n-1``.

    Args:
        path: the ratings file, or a directory holding ``u.data``, ``ratings.dat`` or
            ``ratings.csv`` (the MovieLens archive unpacked).
        format: ``"ml-100k"`` (tab-separated ``user item rating timestamp``), ``"ml-1m"``
            (``::``-separated) or ``"ml-latest"`` (CSV with header
            ``userId,movieId,rating,timestamp``); detected from the file name when ``None``.

    Returns:
        The events, users and items in order of first appearance.

    Raises:
        DataError: the file is missing or unreadable, a line is malformed (the message names the
            file and the line number), or the file holds no ratings.
    """
    file = _resolve_path(Path(path), format)
    fmt = format if format is not None else detect_format(file)
    if fmt not in MOVIELENS_FORMATS:
        raise DataError(f"unknown format {fmt!r}; expected one of {sorted(MOVIELENS_FORMATS)}")
    try:
        with file.open(encoding="utf-8", errors="replace", newline="") as handle:
            raw = _parse_lines(file, handle, fmt)
    except OSError as exc:
        raise DataError(f"cannot read {file}: {exc.strerror or exc}") from exc
    raw_users, raw_items, ratings, timestamps = raw
    if not raw_users:
        raise DataError(f"{file} holds no ratings")
    user_ids, users = _remap(raw_users)
    item_ids, items = _remap(raw_items)
    return Interactions(
        users=users,
        items=items,
        ratings=np.asarray(ratings, dtype=np.float32),
        timestamps=np.asarray(timestamps, dtype=np.int64),
        num_users=int(user_ids.shape[0]),
        num_items=int(item_ids.shape[0]),
        user_ids=user_ids,
        item_ids=item_ids,
    )


def _resolve_path(path: Path, format: MovieLensFormat | None) -> Path:
    if path.is_dir():
        names = (
            [MOVIELENS_FORMATS[format]]
            if format in MOVIELENS_FORMATS
            else list(MOVIELENS_FORMATS.values())
        )
        for name in names:
            if (path / name).is_file():
                return path / name
        raise DataError(f"directory {path} holds none of {', '.join(names)}")
    if not path.is_file():
        raise DataError(f"ratings file {path} does not exist")
    return path


#: MovieLens ratings: whole stars 1-5 (100K, 1M) or half stars 0.5-5 (latest).
_RATING_RANGE: Final = (0.5, 5.0)


def _check_event(file: Path, number: int, user: int, item: int, rating: float) -> None:
    """MovieLens ids are positive and ratings lie in 0.5 .. 5 stars: anything else is refused."""
    if user < 0 or item < 0:
        raise DataError(
            f"{file} line {number}: user and item ids must not be negative, got user {user}, "
            f"item {item}"
        )
    low, high = _RATING_RANGE
    if not low <= rating <= high:
        raise DataError(
            f"{file} line {number}: rating {rating:g} lies outside MovieLens's {low:g} .. "
            f"{high:g} stars"
        )


def _parse_lines(
    file: Path, lines: Iterator[str], fmt: str
) -> tuple[list[int], list[int], list[float], list[int]]:
    users: list[int] = []
    items: list[int] = []
    ratings: list[float] = []
    timestamps: list[int] = []
    separator = {"ml-100k": None, "ml-1m": "::", "ml-latest": ","}[fmt]
    for number, line in enumerate(lines, start=1):
        text = line.strip().lstrip("\ufeff")
        if not text:
            continue
        if fmt == "ml-latest" and number == 1:
            header = tuple(field.strip() for field in text.split(","))
            if header != _ML_LATEST_HEADER:
                raise DataError(
                    f"{file} line 1: expected header {','.join(_ML_LATEST_HEADER)}, got {text!r}"
                )
            continue
        fields = text.split(separator)
        if len(fields) != 4:
            shown = "whitespace" if separator is None else repr(separator)
            raise DataError(
                f"{file} line {number}: expected 4 {shown}-separated fields "
                f"(user item rating timestamp), got {len(fields)}: {text[:80]!r}"
            )
        try:
            user, item = int(fields[0]), int(fields[1])
            rating = float(fields[2])
            timestamp = int(fields[3])
        except ValueError:
            raise DataError(
                f"{file} line {number}: user, item and timestamp must be integers and rating a "
                f"number, got {text[:80]!r}"
            ) from None
        if not np.isfinite(rating):
            raise DataError(f"{file} line {number}: rating {fields[2]!r} is not finite")
        _check_event(file, number, user, item, rating)
        users.append(user)
        items.append(item)
        ratings.append(rating)
        timestamps.append(timestamp)
    return users, items, ratings, timestamps


def _remap(raw: Sequence[int]) -> tuple[IntArray, IntArray]:
    """Dense ids in order of first appearance: returns (original id per index, index per event)."""
    values = np.asarray(raw, dtype=np.int64)
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    return unique[order], rank[inverse].astype(np.int64)


def synthetic_interactions(
    num_users: int = 300,
    num_items: int = 500,
    *,
    latent_dim: int = 8,
    min_per_user: int = 20,
    max_per_user: int = 60,
    zipf_exponent: float = 0.8,
    affinity: float = 2.0,
    rating_noise: float = 0.5,
    per_user: IntArray | None = None,
    seed: int = 0,
) -> Interactions:
    """Draw a synthetic interaction data set with latent-factor taste and long-tail popularity.

    User ``u`` and item ``j`` get latent vectors ``p_u, q_j ~ N(0, I / sqrt(latent_dim))``; item
    ``j`` has popularity rank ``pi(j)`` (a random permutation) and log-weight
    ``-zipf_exponent * log(1 + pi(j))``. Each user picks between ``min_per_user`` and
    ``max_per_user`` distinct items without replacement with probability proportional to
    ``exp(affinity * p_u . q_j + log-weight_j)`` (Gumbel top-k); ``p_u . q_j`` has unit variance. A
    rating is ``clip(round(3 + 1.5 * p_u . q_j + noise), 1, 5)``; timestamps are a random
    order of each user's picks.

    Args:
        num_users: number of users (one federated client each).
        num_items: number of items; must exceed ``max_per_user + 99`` for leave-one-out.
        latent_dim: dimension of the true taste vectors.
        min_per_user: fewest interactions of a user (at least 2 so that one can be held out).
        max_per_user: most interactions of a user.
        zipf_exponent: how steep the popularity long tail is (0 = no popularity effect).
        affinity: how strongly taste (rather than popularity) drives the picks.
        rating_noise: standard deviation of the Gaussian noise on ratings.
        per_user: shape ``(num_users,)`` the number of items each user picks; replaces the
            uniform draw from ``[min_per_user, max_per_user]`` (:func:`synthetic_movielens` gives
            a heavy-tailed one).
        seed: seed of the data generator.

    Returns:
        The events; original ids equal the dense ids.

    Raises:
        ParameterError: the sizes are inconsistent.
    """
    _check_synthetic_sizes(num_users, num_items, min_per_user, max_per_user)
    if latent_dim < 1 or min(zipf_exponent, affinity, rating_noise) < 0:
        raise ParameterError("latent_dim must be >= 1 and the other knobs non-negative")
    rng = np.random.default_rng(seed)
    affinity_logits, log_popularity = _taste_and_popularity(
        rng, num_users, num_items, latent_dim, zipf_exponent
    )
    if per_user is None:
        counts = rng.integers(min_per_user, max_per_user + 1, size=num_users)
    else:
        counts = _checked_counts(per_user, num_users, num_items)
    logits = affinity * affinity_logits + log_popularity
    events = [
        _draw_user_events(rng, u, logits[u], affinity_logits[u], int(counts[u]), rating_noise)
        for u in range(num_users)
    ]
    return _stack_events(events, num_users, num_items)


def _taste_and_popularity(
    rng: np.random.Generator,
    num_users: int,
    num_items: int,
    latent_dim: int,
    zipf_exponent: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Every taste score ``p_u . q_j`` (shape ``(U, I)``, unit variance) and each item's
    popularity log-weight (shape ``(I,)``)."""
    # With entries of variance 1/sqrt(latent_dim), every taste score p_u . q_j has unit variance.
    scale = 1.0 / np.sqrt(np.sqrt(latent_dim))
    user_factors = rng.normal(0.0, scale, size=(num_users, latent_dim))
    item_factors = rng.normal(0.0, scale, size=(num_items, latent_dim))
    popularity_rank = rng.permutation(num_items)
    log_popularity: npt.NDArray[np.float64] = -zipf_exponent * np.log1p(popularity_rank)
    taste: npt.NDArray[np.float64] = user_factors @ item_factors.T
    return taste, log_popularity


class MovieLensShape(NamedTuple):
    """The size and shape of a MovieLens data set, for :func:`synthetic_movielens`."""

    users: int
    items: int
    interactions: int
    min_per_user: int
    max_per_user: int
    median_per_user: int


#: MovieLens-100K (GroupLens, ``u.data``): 943 users, 1,682 items, 100,000 ratings, every user
#: with at least 20; a user's count is heavy-tailed (median 65, at most 737).
MOVIELENS_100K_SHAPE: Final = MovieLensShape(943, 1682, 100_000, 20, 737, 65)


def synthetic_movielens(
    shape: MovieLensShape = MOVIELENS_100K_SHAPE, *, latent_dim: int = 16, seed: int = 0
) -> Interactions:
    """A synthetic data set of MovieLens's size and shape (the real one cannot be shipped).

    The users, items and interactions are exactly ``shape``'s. Each user's count is
    ``min_per_user`` plus a log-normal draw whose median puts the user median at
    ``shape.median_per_user``, capped at ``max_per_user`` and rescaled until the counts add up
    to ``shape.interactions``; so most users have few interactions and some have hundreds, as in
    MovieLens. Picks follow :func:`synthetic_interactions` (latent taste of ``latent_dim``
    dimensions and a Zipf-like long tail of item popularity, exponent 1).

    Args:
        shape: the data set to imitate (default MovieLens-100K).
        latent_dim: dimension of the true taste vectors (a 32-dimensional MF can learn 16).
        seed: seed of the generator.

    Returns:
        The events; original ids equal the dense ids.
    """
    rng = np.random.default_rng([seed, 100])
    extra = rng.lognormal(0.0, 1.1, size=shape.users)
    extra *= (shape.median_per_user - shape.min_per_user) / np.median(extra)
    budget = shape.interactions - shape.min_per_user * shape.users
    ceiling = shape.max_per_user - shape.min_per_user
    for _ in range(50):  # rescale the capped tail until the counts add up to the budget
        capped = np.minimum(extra, ceiling)
        extra *= budget / capped.sum()
    counts = shape.min_per_user + np.floor(np.minimum(extra, ceiling)).astype(np.int64)
    short = shape.interactions - int(counts.sum())
    room = np.flatnonzero(counts < shape.max_per_user)
    counts[rng.choice(room, size=short, replace=False)] += 1
    return synthetic_interactions(
        shape.users,
        shape.items,
        latent_dim=latent_dim,
        min_per_user=shape.min_per_user,
        max_per_user=shape.max_per_user,
        zipf_exponent=1.0,
        per_user=counts,
        seed=seed,
    )


def _checked_counts(per_user: IntArray, num_users: int, num_items: int) -> IntArray:
    counts = np.asarray(per_user, dtype=np.int64)
    if counts.shape != (num_users,) or counts.min() < 2 or counts.max() > num_items:
        raise ParameterError(
            f"per_user must hold {num_users} counts in [2, {num_items}], got shape {counts.shape}"
        )
    return counts


def _check_synthetic_sizes(
    num_users: int, num_items: int, min_per_user: int, max_per_user: int
) -> None:
    if num_users < 1 or num_items < 2:
        raise ParameterError("need at least one user and two items")
    if not 2 <= min_per_user <= max_per_user <= num_items:
        raise ParameterError(
            f"need 2 <= min_per_user ({min_per_user}) <= max_per_user ({max_per_user}) "
            f"<= num_items ({num_items})"
        )


class _UserEvents(NamedTuple):
    """One synthetic user's events, in the columns of :class:`Interactions`."""

    users: IntArray
    items: IntArray
    ratings: FloatArray
    timestamps: IntArray


def _draw_user_events(
    rng: np.random.Generator,
    user: int,
    logits: npt.NDArray[np.float64],
    taste: npt.NDArray[np.float64],
    count: int,
    rating_noise: float,
) -> _UserEvents:
    """Pick ``count`` items by Gumbel top-k on ``logits``; rate them from ``taste`` plus noise."""
    gumbel = rng.gumbel(size=logits.shape[0])
    picked = np.argsort(-(logits + gumbel))[:count]
    raw_rating = 3.0 + 1.5 * taste[picked]
    raw_rating += rng.normal(0.0, rating_noise, size=picked.shape[0])
    return _UserEvents(
        users=np.full(picked.shape[0], user, dtype=np.int64),
        items=picked.astype(np.int64),
        ratings=np.clip(np.rint(raw_rating), 1, 5).astype(np.float32),
        timestamps=rng.permutation(picked.shape[0]).astype(np.int64),
    )


def _stack_events(events: Sequence[_UserEvents], num_users: int, num_items: int) -> Interactions:
    """All users' events as one :class:`Interactions` whose original ids are the dense ids."""
    return Interactions(
        users=np.concatenate([e.users for e in events]),
        items=np.concatenate([e.items for e in events]),
        ratings=np.concatenate([e.ratings for e in events]),
        timestamps=np.concatenate([e.timestamps for e in events]),
        num_users=num_users,
        num_items=num_items,
        user_ids=np.arange(num_users, dtype=np.int64),
        item_ids=np.arange(num_items, dtype=np.int64),
    )


def sample_unseen_items(
    seen: IntArray, num_items: int, count: int, rng: np.random.Generator
) -> IntArray:
    """Draw ``count`` distinct items not in ``seen``, uniformly (rejection sampling).

    Rejection keeps the cost proportional to ``count`` rather than to ``num_items``, which matters
    for MovieLens-latest sized catalogues.

    Args:
        seen: sorted int64 array of items to avoid.
        num_items: catalogue size.
        count: how many items to draw.
        rng: data generator.

    Returns:
        Shape ``(count,)`` int64, in draw order.

    Raises:
        DataError: fewer than ``count`` items are unseen.
    """
    available = num_items - int(seen.shape[0])
    if count > available:
        raise DataError(
            f"cannot draw {count} unseen items: the user has seen {seen.shape[0]} of {num_items}"
        )
    if count > available // 2:
        pool = np.setdiff1d(np.arange(num_items, dtype=np.int64), seen, assume_unique=True)
        return rng.choice(pool, size=count, replace=False).astype(np.int64)
    chosen: list[int] = []
    taken: set[int] = set()
    while len(chosen) < count:
        draw = rng.integers(0, num_items, size=2 * (count - len(chosen)) + 8)
        keep = draw[~np.isin(draw, seen)]
        for item in keep.tolist():
            if item not in taken:
                taken.add(item)
                chosen.append(item)
                if len(chosen) == count:
                    break
    return np.asarray(chosen, dtype=np.int64)


def _latest_row(interactions: Interactions, rows: IntArray) -> int:
    """The latest of ``rows`` by timestamp; a tie goes to the later line of the input."""
    times = interactions.timestamps[rows]
    return int(rows[np.flatnonzero(times == times.max())[-1]])


def leave_one_out_split(
    interactions: Interactions, *, num_negatives: int = 99, seed: int = 0
) -> LeaveOneOutSplit:
    """Hold out each user's latest interaction and sample negatives for ranking evaluation.

    Users with a single interaction keep it for training and are not evaluated. Ties in time are
    broken by input order (the later line wins). Negatives are items the user never interacted
    with, the held-out item included.

    Args:
        interactions: all events.
        num_negatives: sampled negatives per user (99 in He et al. 2017).
        seed: seed of the negative sampler.

    Returns:
        The split.

    Raises:
        DataError: a user has interacted with too many items to draw the negatives.
    """
    if num_negatives < 0:
        raise ParameterError("num_negatives must be >= 0")
    rng = np.random.default_rng(seed)
    held_out = np.zeros(len(interactions), dtype=bool)
    test_users: list[int] = []
    test_items: list[int] = []
    negatives: list[IntArray] = []
    for user, rows in enumerate(interactions.user_rows()):
        if rows.shape[0] < 2:
            continue
        latest = _latest_row(interactions, rows)
        held_out[latest] = True
        seen = np.unique(interactions.items[rows])
        test_users.append(user)
        test_items.append(int(interactions.items[latest]))
        negatives.append(sample_unseen_items(seen, interactions.num_items, num_negatives, rng))
    return LeaveOneOutSplit(
        train=interactions.select(~held_out),
        test_users=np.asarray(test_users, dtype=np.int64),
        test_items=np.asarray(test_items, dtype=np.int64),
        negatives=(
            np.stack(negatives) if negatives else np.zeros((0, num_negatives), dtype=np.int64)
        ),
    )


def validation_split(split: LeaveOneOutSplit, *, seed: int = 0) -> LeaveOneOutSplit:
    """A second held-out interaction per user, for tuning; the test item is never touched.

    For each test user, the latest training interaction whose item is not the test item is
    held out (the user's second-latest interaction, unless the test item was also seen
    earlier). It is ranked among
    ``split.negatives.shape[1]`` items the user interacted with neither in training nor in the
    test, so no validation candidate is a test item and tuning never sees the test. Users with
    fewer than two training interactions keep them and are not validated.

    Args:
        split: the leave-one-out test split.
        seed: seed of the validation negatives.

    Returns:
        A :class:`LeaveOneOutSplit` whose ``train`` lacks the validation items and whose
        ``test_items`` are the validation items.
    """
    train = split.train
    rng = np.random.default_rng([seed, 1])
    test_item = dict(zip(split.test_users.tolist(), split.test_items.tolist(), strict=True))
    count = split.negatives.shape[1]
    held_out = np.zeros(len(train), dtype=bool)
    users: list[int] = []
    items: list[int] = []
    negatives: list[IntArray] = []
    rows_by_user = train.user_rows()
    for user in split.test_users.tolist():
        rows = rows_by_user[user]
        rows = rows[train.items[rows] != test_item[user]]
        if rows.shape[0] < 2:
            continue
        latest = _latest_row(train, rows)
        held_out[latest] = True
        seen = np.union1d(train.items[rows_by_user[user]], [test_item[user]])
        users.append(user)
        items.append(int(train.items[latest]))
        negatives.append(sample_unseen_items(seen, train.num_items, count, rng))
    return LeaveOneOutSplit(
        train=train.select(~held_out),
        test_users=np.asarray(users, dtype=np.int64),
        test_items=np.asarray(items, dtype=np.int64),
        negatives=np.stack(negatives) if negatives else np.zeros((0, count), dtype=np.int64),
    )


def rating_split(
    interactions: Interactions, *, test_fraction: float = 0.2, seed: int = 0
) -> RatingSplit:
    """Split explicit ratings at random per user, keeping at least one training rating per user.

    Args:
        interactions: all events.
        test_fraction: share of each user's ratings moved to the test side (rounded down).
        seed: seed of the split.

    Returns:
        The split.

    Raises:
        ParameterError: ``test_fraction`` is outside ``[0, 1)``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ParameterError(f"test_fraction is {test_fraction}; it must lie in [0, 1)")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(interactions), dtype=bool)
    for rows in interactions.user_rows():
        take = min(int(test_fraction * rows.shape[0]), rows.shape[0] - 1)
        if take > 0:
            is_test[rng.choice(rows, size=take, replace=False)] = True
    return RatingSplit(train=interactions.select(~is_test), test=interactions.select(is_test))
