"""Training through the secure backends matches training in the clear (STYLE.md section 6, Oracles).

The masking backend clips to the same range the clients already clip to and quantizes with
``value_bits`` bits, so its sum differs from the float sum only by quantization error; with the
same seed the trained models must rank the held-out items the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from models import (
    FederatedConfig,
    FederatedTrainer,
    LeaveOneOutSplit,
    LocalTrainingConfig,
    MatrixFactorization,
    NeuMF,
    leave_one_out_split,
    synthetic_interactions,
)
from protocols.aggregators import Aggregator, PlainAggregator

try:
    from protocols.aggregators import MaskingAggregator
except ImportError:  # pragma: no cover - the backend lands separately
    pytest.skip("protocols.aggregators.MaskingAggregator is not available", allow_module_level=True)

VALUE_BITS = 32


@pytest.mark.slow
def test_masking_mf_matches_plain_mf(
    plain_mf_trainer: FederatedTrainer,
    synthetic_split: LeaveOneOutSplit,
    mf_config: FederatedConfig,
    federated_mf: Callable[[LeaveOneOutSplit, Aggregator], FederatedTrainer],
) -> None:
    secure = federated_mf(
        synthetic_split,
        # Semi-honest: the sums are the same in both threat models (tests/protocols/masking
        # pins that bit for bit); the active rounds' signatures would only cost time here.
        MaskingAggregator(
            "secagg", clip=mf_config.clip, value_bits=VALUE_BITS, threat_model="semi-honest"
        ),
    )
    plain_metrics = plain_mf_trainer.history.last_ranking()
    secure_metrics = secure.history.last_ranking()
    assert plain_metrics is not None and secure_metrics is not None
    assert abs(secure_metrics.hit_ratio - plain_metrics.hit_ratio) <= 0.005
    assert abs(secure_metrics.ndcg - plain_metrics.ndcg) <= 0.005
    # The same clients dropped at the same rounds, and the models agree to float32 precision.
    for plain_record, secure_record in zip(
        plain_mf_trainer.history.records, secure.history.records, strict=True
    ):
        assert plain_record.survivors == secure_record.survivors
    assert np.allclose(secure.server.broadcast(), plain_mf_trainer.server.broadcast(), atol=1e-4)


def _train_neumf(split: LeaveOneOutSplit, aggregator: Aggregator) -> FederatedTrainer:
    model = NeuMF(
        split.train.num_users, split.train.num_items, gmf_dim=8, mlp_dim=8, init_std=0.3, seed=0
    )
    config = FederatedConfig(
        rounds=10,
        clients_per_round=30,
        local=LocalTrainingConfig(objective="bpr", epochs=2, learning_rate=1.0),
        dense_learning_rate=1.0,
        clip=1.0,
        eval_every=10,
        seed=0,
    )
    trainer = FederatedTrainer(model, split.train, aggregator, config, evaluation=split)
    trainer.run()
    return trainer


@pytest.mark.slow
def test_masking_neumf_matches_plain_neumf(synthetic_split: LeaveOneOutSplit) -> None:
    plain = _train_neumf(synthetic_split, PlainAggregator())
    secure = _train_neumf(
        synthetic_split,
        MaskingAggregator("secagg", clip=1.0, value_bits=VALUE_BITS, threat_model="semi-honest"),
    )
    plain_metrics = plain.history.last_ranking()
    secure_metrics = secure.history.last_ranking()
    assert plain_metrics is not None and secure_metrics is not None
    assert plain_metrics.hit_ratio > 0.2  # it learned something (random ranking scores 0.1)
    assert abs(secure_metrics.hit_ratio - plain_metrics.hit_ratio) <= 0.005
    assert abs(secure_metrics.ndcg - plain_metrics.ndcg) <= 0.005


def test_secagg_plus_with_dropouts_tracks_plain_training() -> None:
    data = synthetic_interactions(80, 120, min_per_user=8, max_per_user=15, seed=4)
    split = leave_one_out_split(data, num_negatives=20, seed=4)
    config = FederatedConfig(
        rounds=3, clients_per_round=40, dropout_fraction=0.1, eval_every=0, seed=3
    )
    vectors = []
    for aggregator in (
        PlainAggregator(),
        MaskingAggregator("secagg+", clip=1.0, value_bits=VALUE_BITS),
    ):
        model = MatrixFactorization(80, 120, 8, seed=0)
        trainer = FederatedTrainer(model, split.train, aggregator, config)
        history = trainer.run()
        assert all(not record.aborted for record in history.records)
        vectors.append(trainer.server.broadcast())
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)
