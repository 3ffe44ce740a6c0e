"""Recommendation metrics: HR@K, NDCG@K, AUC and RMSE, on plain numpy arrays.

Ranking metrics follow the sampled leave-one-out protocol of He et al. (2017): each evaluated user
has one held-out positive and a fixed set of sampled negatives, given here as a score matrix whose
column 0 is the positive. Ties are resolved by *expected* uniformly random tie-breaking, so a model
that scores everything equal gets exactly the random-ranking value (HR@K = K / (1 + negatives))
instead of a perfect or a zero score. With no ties the definitions are the textbook ones:
``HR@K = 1[rank < K]`` and ``NDCG@K = 1[rank < K] / log2(rank + 2)`` for a 0-based rank.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError

__all__ = [
    "hit_ratio_at_k",
    "ndcg_at_k",
    "positive_rank_bounds",
    "rmse",
    "roc_auc",
    "sampled_auc",
]


def _check_candidate_scores(scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ParameterError(
            f"scores has shape {array.shape}; expected (users, 1 + negatives) with negatives >= 1"
        )
    if array.shape[0] == 0:
        raise ParameterError("scores has no rows: nothing to evaluate")
    if not np.all(np.isfinite(array)):
        raise ParameterError("scores contains NaN or infinity")
    return array


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ParameterError(f"k must be a positive int, got {k!r}")


def positive_rank_bounds(
    scores: npt.ArrayLike,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Count negatives ranked above and tied with the positive.

    Args:
        scores: shape ``(U, 1 + N)``; column 0 scores the held-out positive.

    Returns:
        ``(greater, ties)``, each shape ``(U,)``: the positive's 0-based rank is uniformly
        distributed over ``greater .. greater + ties``.
    """
    array = _check_candidate_scores(scores)
    positive = array[:, :1]
    negatives = array[:, 1:]
    greater = (negatives > positive).sum(axis=1).astype(np.int64)
    ties = (negatives == positive).sum(axis=1).astype(np.int64)
    return greater, ties


def _expected_over_ranks(scores: npt.ArrayLike, k: int, *, discounted: bool) -> float:
    greater, ties = positive_rank_bounds(scores)
    total = np.zeros(greater.shape[0], dtype=np.float64)
    for offset in range(int(ties.max()) + 1):
        rank = greater + offset
        valid = (offset <= ties) & (rank < k)
        gain = 1.0 / np.log2(rank + 2.0) if discounted else np.ones_like(total)
        total += np.where(valid, gain, 0.0)
    return float(np.mean(total / (ties + 1)))


def hit_ratio_at_k(scores: npt.ArrayLike, k: int = 10) -> float:
    """Share of users whose positive ranks in the top ``k`` among its candidates.

    Args:
        scores: shape ``(U, 1 + N)``; column 0 scores the held-out positive.
        k: cut-off.

    Returns:
        HR@K in ``[0, 1]``, averaged over users (ties broken at random, in expectation).

    Raises:
        ParameterError: bad shape, non-finite scores or ``k < 1``.
    """
    _check_k(k)
    return _expected_over_ranks(scores, k, discounted=False)


def ndcg_at_k(scores: npt.ArrayLike, k: int = 10) -> float:
    """Normalised discounted cumulative gain with one relevant item: ``1 / log2(rank + 2)``.

    Args:
        scores: shape ``(U, 1 + N)``; column 0 scores the held-out positive.
        k: cut-off.

    Returns:
        NDCG@K in ``[0, 1]``, averaged over users (ties broken at random, in expectation).

    Raises:
        ParameterError: bad shape, non-finite scores or ``k < 1``.
    """
    _check_k(k)
    return _expected_over_ranks(scores, k, discounted=True)


def sampled_auc(scores: npt.ArrayLike) -> float:
    """Per-user AUC of the positive against its sampled negatives, averaged over users.

    Args:
        scores: shape ``(U, 1 + N)``; column 0 scores the held-out positive.

    Returns:
        Mean over users of ``(#negatives below + 0.5 * #tied) / N``.
    """
    array = _check_candidate_scores(scores)
    greater, ties = positive_rank_bounds(array)
    negatives = array.shape[1] - 1
    below = negatives - greater - ties
    return float(np.mean((below + 0.5 * ties) / negatives))


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties count one half).

    Args:
        scores: shape ``(n,)`` predicted scores.
        labels: shape ``(n,)`` 0/1 (or boolean) truth.

    Returns:
        The probability that a random positive outscores a random negative.

    Raises:
        ParameterError: shapes differ, or one class is missing.
    """
    score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
    label_array = np.asarray(labels).reshape(-1).astype(bool)
    if score_array.shape != label_array.shape:
        raise ParameterError(f"scores {score_array.shape} and labels {label_array.shape} differ")
    positives = int(label_array.sum())
    negatives = label_array.shape[0] - positives
    if positives == 0 or negatives == 0:
        raise ParameterError("AUC needs at least one positive and one negative label")
    order = np.argsort(score_array, kind="mergesort")
    sorted_scores = score_array[order]
    ranks = np.empty(score_array.shape[0], dtype=np.float64)
    # Average 1-based ranks over runs of tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [sorted_scores.shape[0]]])
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    rank_sum = float(ranks[label_array].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def rmse(predictions: npt.ArrayLike, targets: npt.ArrayLike) -> float:
    """Root mean squared error.

    Args:
        predictions: shape ``(n,)``.
        targets: shape ``(n,)``.

    Returns:
        ``sqrt(mean((predictions - targets)^2))``.

    Raises:
        ParameterError: shapes differ or are empty.
    """
    prediction_array = np.asarray(predictions, dtype=np.float64).reshape(-1)
    target_array = np.asarray(targets, dtype=np.float64).reshape(-1)
    if prediction_array.shape != target_array.shape or prediction_array.shape[0] == 0:
        raise ParameterError(
            f"predictions {prediction_array.shape} and targets {target_array.shape} must be "
            "equal, non-empty shapes"
        )
    return float(np.sqrt(np.mean((prediction_array - target_array) ** 2)))
