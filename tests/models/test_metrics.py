"""Known-answer tests for the ranking and rating metrics (values worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import hit_ratio_at_k, ndcg_at_k, rmse, roc_auc, sampled_auc
from models.metrics import positive_rank_bounds
from secagg.errors import ParameterError

# Column 0 is the held-out positive. User 0: one negative above (rank 1). User 1: all three
# above (rank 3). User 2: tied with one negative (rank 0 or 1, each with probability 1/2).
SCORES = np.array(
    [
        [0.9, 0.1, 0.2, 0.95],
        [0.1, 0.5, 0.6, 0.7],
        [0.5, 0.5, 0.1, 0.1],
    ]
)


def test_positive_rank_bounds_counts_greater_and_tied() -> None:
    greater, ties = positive_rank_bounds(SCORES)
    assert greater.tolist() == [1, 3, 0]
    assert ties.tolist() == [0, 0, 1]


def test_hit_ratio_known_answers() -> None:
    assert hit_ratio_at_k(SCORES, 1) == pytest.approx((0 + 0 + 0.5) / 3)
    assert hit_ratio_at_k(SCORES, 2) == pytest.approx((1 + 0 + 1) / 3)
    assert hit_ratio_at_k(SCORES, 4) == pytest.approx(1.0)


def test_ndcg_known_answers() -> None:
    user0 = 1 / math.log2(3)
    user2 = (1 / math.log2(2) + 1 / math.log2(3)) / 2
    assert ndcg_at_k(SCORES, 2) == pytest.approx((user0 + 0 + user2) / 3)
    assert ndcg_at_k(SCORES, 1) == pytest.approx(0.5 / 3)
    assert ndcg_at_k(SCORES, 4) == pytest.approx((user0 + 1 / math.log2(5) + user2) / 3)


def test_sampled_auc_known_answer() -> None:
    # Negatives below the positive (ties count half): 2/3, 0/3, (2 + 0.5)/3.
    assert sampled_auc(SCORES) == pytest.approx((2 / 3 + 0 + 2.5 / 3) / 3)


def test_constant_scores_give_the_random_ranking_value() -> None:
    scores = np.zeros((7, 100))
    assert hit_ratio_at_k(scores, 10) == pytest.approx(0.1)
    expected_ndcg = sum(1 / math.log2(r + 2) for r in range(10)) / 100
    assert ndcg_at_k(scores, 10) == pytest.approx(expected_ndcg)
    assert sampled_auc(scores) == pytest.approx(0.5)


def test_perfect_ranking_scores_one() -> None:
    scores = np.concatenate([np.ones((5, 1)), np.zeros((5, 99))], axis=1)
    assert hit_ratio_at_k(scores, 10) == 1.0
    assert ndcg_at_k(scores, 10) == 1.0
    assert sampled_auc(scores) == 1.0


def test_roc_auc_known_answers() -> None:
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert roc_auc([3, 1, 2, 2], [True, False, True, False]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_roc_auc_needs_both_classes() -> None:
    with pytest.raises(ParameterError, match="positive and one negative"):
        roc_auc([0.1, 0.2], [1, 1])


def test_rmse_known_answer() -> None:
    assert rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(math.sqrt(4 / 3))
    assert rmse([2.5], [2.5]) == 0.0


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((3, 1)), np.zeros((0, 4))])
def test_ranking_metrics_reject_bad_shapes(bad: np.ndarray) -> None:
    with pytest.raises(ParameterError, match="scores"):
        hit_ratio_at_k(bad, 1)


def test_ranking_metrics_reject_bad_k_and_nan() -> None:
    with pytest.raises(ParameterError, match="k must"):
        ndcg_at_k(SCORES, 0)
    with pytest.raises(ParameterError, match="NaN"):
        hit_ratio_at_k(np.array([[np.nan, 1.0]]), 1)


def test_rmse_rejects_mismatched_shapes() -> None:
    with pytest.raises(ParameterError, match="predictions"):
        rmse([1.0, 2.0], [1.0])
