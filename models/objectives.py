"""Training objectives shared by centralized training and federated clients.

Three objectives cover the models here: squared error on explicit ratings (matrix factorization
as in Koren et al. 2009), BPR for implicit feedback (Rendle et al. 2009) and binary cross-entropy
on sampled negatives (He et al. 2017, NCF). Each loss is a batch *mean*, so a step size means the
same thing whatever the batch size; L2 on the touched rows is added by the caller.
"""

from __future__ import annotations

from typing import Final, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

import secagg  # noqa: F401  (runs the package-name check first)

__all__ = ["OBJECTIVES", "Objective", "bce_loss", "bpr_loss", "squared_error_loss"]

Objective = Literal["explicit", "bpr", "bce"]

#: The accepted objective names.
OBJECTIVES: Final[tuple[str, ...]] = ("explicit", "bpr", "bce")


def squared_error_loss(predictions: Tensor, ratings: Tensor) -> Tensor:
    """Mean of ``1/2 (r_ij - prediction_ij)^2`` over a batch.

    Args:
        predictions: shape ``(B,)``.
        ratings: shape ``(B,)``.

    Returns:
        A scalar tensor.
    """
    return 0.5 * (ratings - predictions).pow(2).mean()


def bpr_loss(positive_scores: Tensor, negative_scores: Tensor) -> Tensor:
    """Bayesian personalised ranking: mean of ``-log sigmoid(s_pos - s_neg)``.

    Args:
        positive_scores: shape ``(B,)``.
        negative_scores: shape ``(B,)``, paired with ``positive_scores``.

    Returns:
        A scalar tensor.
    """
    return -F.logsigmoid(positive_scores - negative_scores).mean()


def bce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Binary cross-entropy on logits (labels 1 for observed, 0 for sampled negatives).

    Args:
        logits: shape ``(B,)``.
        labels: shape ``(B,)`` of 0/1 floats.

    Returns:
        A scalar tensor.
    """
    return F.binary_cross_entropy_with_logits(logits, labels.to(torch.float32))
