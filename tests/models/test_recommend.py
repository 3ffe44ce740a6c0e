"""On-device recommendation and the feedback loop into the next round."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from models import (
    FederatedConfig,
    FederatedTrainer,
    LocalTrainingConfig,
    MatrixFactorization,
    recommend_for_client,
    record_feedback,
    synthetic_interactions,
    top_k_items,
)
from protocols.aggregators import PlainAggregator
from secagg.errors import ParameterError


def _model_with_known_scores() -> MatrixFactorization:
    model = MatrixFactorization(1, 6, 1)
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.tensor([[0.0], [5.0], [1.0], [4.0], [2.0], [4.0]]))
        model.item_bias.weight.zero_()
    return model


def test_top_k_items_ranks_by_score_and_excludes_seen() -> None:
    model = _model_with_known_scores()
    state = torch.tensor([1.0, 0.0])  # score of item j is its embedding value
    best = top_k_items(model, state, 3)
    assert best.items.tolist() == [1, 3, 5]  # ties keep the lower id first
    assert best.scores.tolist() == [5.0, 4.0, 4.0]
    assert top_k_items(model, state, 3, exclude=[1, 5]).items.tolist() == [3, 4, 2]
    assert top_k_items(model, state, 10, exclude=[0, 1]).items.shape == (4,)


def test_top_k_items_rejects_bad_arguments() -> None:
    model = _model_with_known_scores()
    with pytest.raises(ParameterError, match="k must"):
        top_k_items(model, torch.zeros(2), 0)
    with pytest.raises(ParameterError, match="state has shape"):
        top_k_items(model, torch.zeros(3), 1)


def test_recommendations_exclude_the_clients_items_and_feedback_joins_training() -> None:
    data = synthetic_interactions(20, 40, min_per_user=5, max_per_user=8, seed=5)
    model = MatrixFactorization(20, 40, 4, seed=0)
    config = FederatedConfig(
        rounds=1, clients_per_round=20, local=LocalTrainingConfig(epochs=1), eval_every=0
    )
    trainer = FederatedTrainer(model, data, PlainAggregator(), config)
    trainer.run()
    client = trainer.clients[3]
    recommended = recommend_for_client(client, trainer.model, k=5)
    assert recommended.items.shape == (5,)
    assert not np.isin(recommended.items, client.seen_items).any()
    assert np.all(np.diff(recommended.scores) <= 0)

    before = client.num_interactions
    record_feedback(client, recommended.items[:2])
    assert client.num_interactions == before + 2
    assert set(recommended.items[:2].tolist()) <= set(client.seen_items.tolist())
    again = recommend_for_client(client, trainer.model, k=5)
    assert not np.isin(recommended.items[:2], again.items).any()
    workspace = copy.deepcopy(trainer.model)
    update = client.local_update(workspace, trainer.server.broadcast(), config.local, config.clip)
    # BPR makes num_negatives pairs per positive: the new items are trained on.
    assert update.num_examples == (before + 2) * config.local.num_negatives


def test_record_feedback_rejects_mismatched_ratings() -> None:
    data = synthetic_interactions(4, 30, min_per_user=3, max_per_user=4, seed=0)
    trainer = FederatedTrainer(MatrixFactorization(4, 30, 2), data, PlainAggregator())
    with pytest.raises(ParameterError, match="one rating"):
        record_feedback(trainer.clients[0], [1, 2], [5.0])
