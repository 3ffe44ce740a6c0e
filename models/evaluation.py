"""Scoring a model on a held-out split, and the popularity baseline to beat.

Evaluation needs every evaluated user's private state next to the shared model. In a deployment
each client would score its own held-out item locally and only the averaged metric would leave
the device; the simulation gathers the states into one matrix because that is the same arithmetic
done in one batch. Nothing here is part of the server's view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from models.base import Recommender
from models.data import Interactions, LeaveOneOutSplit
from models.metrics import hit_ratio_at_k, ndcg_at_k, rmse, sampled_auc
from secagg.errors import ParameterError

__all__ = [
    "RankingMetrics",
    "candidate_scores",
    "evaluate_ranking",
    "evaluate_ratings",
    "popularity_ranking",
    "predict_ratings",
]


@dataclass(frozen=True, slots=True)
class RankingMetrics:
    """Leave-one-out ranking quality.

    Attributes:
        hit_ratio: HR@K.
        ndcg: NDCG@K.
        auc: per-user AUC of the positive against its sampled negatives.
        k: the cut-off.
        num_users: users evaluated.
    """

    hit_ratio: float
    ndcg: float
    auc: float
    k: int
    num_users: int


def _check_states(model: Recommender, states: Tensor) -> None:
    if states.ndim != 2 or states.shape[1] != model.state_dim:
        raise ParameterError(
            f"states has shape {tuple(states.shape)}; expected (num_users, {model.state_dim})"
        )


def candidate_scores(
    model: Recommender, states: Tensor, split: LeaveOneOutSplit, *, batch_size: int = 1024
) -> npt.NDArray[np.float64]:
    """Scores of each test user's candidates (positive first), shape ``(m, 1 + negatives)``.

    Args:
        model: the model (shared part).
        states: shape ``(num_users, state_dim)`` user states, indexed by user id.
        split: the leave-one-out split.
        batch_size: users scored per forward pass.

    Returns:
        float64 scores.
    """
    _check_states(model, states)
    candidates = torch.from_numpy(split.candidates())
    users = torch.from_numpy(split.test_users)
    rows: list[npt.NDArray[np.float64]] = []
    with torch.no_grad():
        for start in range(0, users.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            scores = model.score_candidates(states[users[chunk]], candidates[chunk])
            rows.append(scores.numpy().astype(np.float64))
    return np.concatenate(rows) if rows else np.zeros((0, candidates.shape[1]))


def evaluate_ranking(
    model: Recommender, states: Tensor, split: LeaveOneOutSplit, *, k: int = 10
) -> RankingMetrics:
    """HR@K, NDCG@K and AUC under leave-one-out with sampled negatives.

    Args:
        model: the model (shared part).
        states: shape ``(num_users, state_dim)`` user states, indexed by user id.
        split: the leave-one-out split.
        k: the cut-off.

    Returns:
        The metrics.
    """
    scores = candidate_scores(model, states, split)
    return _ranking_metrics(scores, k)


def popularity_ranking(split: LeaveOneOutSplit, *, k: int = 10) -> RankingMetrics:
    """The non-personalised baseline: rank candidates by training interaction count.

    Args:
        split: the leave-one-out split (popularity is counted on ``split.train``).
        k: the cut-off.

    Returns:
        The metrics.
    """
    counts = split.train.item_counts().astype(np.float64)
    scores = counts[split.candidates()]
    return _ranking_metrics(scores, k)


def _ranking_metrics(scores: npt.NDArray[np.float64], k: int) -> RankingMetrics:
    """HR@K, NDCG@K and AUC of candidate ``scores`` (positive in column 0)."""
    return RankingMetrics(
        hit_ratio=hit_ratio_at_k(scores, k),
        ndcg=ndcg_at_k(scores, k),
        auc=sampled_auc(scores),
        k=k,
        num_users=int(scores.shape[0]),
    )


def predict_ratings(
    model: Recommender, states: Tensor, events: Interactions
) -> npt.NDArray[np.float64]:
    """The model's score for each event's (user, item), shape ``(len(events),)``."""
    _check_states(model, states)
    with torch.no_grad():
        users = torch.from_numpy(events.users)
        items = torch.from_numpy(events.items)
        return model.score(states[users], items).numpy().astype(np.float64)


def evaluate_ratings(model: Recommender, states: Tensor, test: Interactions) -> float:
    """RMSE of the predicted ratings on ``test``.

    Args:
        model: an explicit-rating model.
        states: shape ``(num_users, state_dim)`` user states, indexed by user id.
        test: held-out ratings.

    Returns:
        The RMSE.
    """
    return rmse(predict_ratings(model, states, test), test.ratings)
