"""Serving recommendations on the device, and feeding what the user does back into training.

A recommendation needs the global shared model (downloaded) and the user's private state (local),
so it is computed on the client: the server never learns what was recommended or chosen. Items
the user already interacted with are excluded. New interactions are appended to the client's
local data, and the next round that client joins trains on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from models.base import Recommender
from models.federated import FederatedClient
from secagg.errors import ParameterError

__all__ = ["Recommendations", "recommend_for_client", "record_feedback", "top_k_items"]


@dataclass(frozen=True, slots=True)
class Recommendations:
    """The top items for one user, best first.

    Attributes:
        items: shape ``(k,)`` int64 item indices (the model's ``0..num_items-1``; a
            checkpoint's ``item_ids`` turns them back into the data's own ids).
        scores: shape ``(k,)`` float32 model scores.
    """

    items: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]


def top_k_items(
    model: Recommender,
    state: Tensor,
    k: int = 10,
    *,
    exclude: npt.ArrayLike | None = None,
) -> Recommendations:
    """Score every item for one user state and keep the best ``k`` not in ``exclude``.

    Args:
        model: the global model (shared part).
        state: shape ``(state_dim,)`` the user's private state.
        k: how many items (fewer if fewer remain after exclusion).
        exclude: item indices never to recommend (the user's seen items).

    Returns:
        The recommendations, best first; equal scores keep the lower item index first.

    Raises:
        ParameterError: ``k < 1`` or the state has the wrong shape.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ParameterError(f"k must be a positive int, got {k!r}")
    if state.shape != (model.state_dim,):
        raise ParameterError(f"state has shape {tuple(state.shape)}; expected ({model.state_dim},)")
    items = torch.arange(model.num_items)
    with torch.no_grad():
        scores = model.score(state.unsqueeze(0).expand(model.num_items, -1), items).numpy()
    allowed = np.ones(model.num_items, dtype=bool)
    if exclude is not None:
        excluded = np.asarray(exclude, dtype=np.int64).reshape(-1)
        allowed[excluded[(excluded >= 0) & (excluded < model.num_items)]] = False
    candidates = np.flatnonzero(allowed)
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    chosen = candidates[order]
    return Recommendations(chosen.astype(np.int64), scores[chosen].astype(np.float32))


def recommend_for_client(
    client: FederatedClient, model: Recommender, k: int = 10
) -> Recommendations:
    """Top-``k`` unseen items for ``client`` from the downloaded global ``model``.

    Args:
        client: the device (its private state and its seen items are used locally).
        model: the global model.
        k: how many items.

    Returns:
        The recommendations.
    """
    return top_k_items(model, client.state, k, exclude=client.seen_items)


def record_feedback(
    client: FederatedClient, items: npt.ArrayLike, ratings: npt.ArrayLike | None = None
) -> None:
    """Store the user's new interactions (e.g. clicked recommendations) for the next round.

    Args:
        client: the device.
        items: the item ids interacted with.
        ratings: their ratings (default 1.0 each, an implicit interaction).
    """
    client.add_interactions(items, ratings)
