"""Shared fixtures for the recommender tests: small synthetic data and one reference training run.

Torch is limited to one thread so the suite stays light on a shared machine and so float
reductions run in one fixed order (the plain-versus-secure comparison relies on determinism).
The federated MF run on the plain backend is session-scoped: the popularity test and the
secure-backend comparison both read it instead of training it twice.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from models import (
    FederatedConfig,
    FederatedTrainer,
    Interactions,
    LeaveOneOutSplit,
    LocalTrainingConfig,
    MatrixFactorization,
    leave_one_out_split,
    synthetic_interactions,
)
from protocols.aggregators import Aggregator, PlainAggregator

torch.set_num_threads(1)

#: The federated MF setting measured in the tests (see test_federated.py for its numbers).
MF_CONFIG = FederatedConfig(
    rounds=20,
    clients_per_round=50,
    local=LocalTrainingConfig(objective="bpr", epochs=2, learning_rate=1.0, l2=1e-2),
    clip=1.0,
    dropout_fraction=0.1,
    eval_every=20,
    seed=0,
)


def train_federated_mf(split: LeaveOneOutSplit, aggregator: Aggregator) -> FederatedTrainer:
    """Run :data:`MF_CONFIG` on ``split`` with ``aggregator`` and return the trainer."""
    model = MatrixFactorization(split.train.num_users, split.train.num_items, 16, seed=0)
    trainer = FederatedTrainer(model, split.train, aggregator, MF_CONFIG, evaluation=split)
    trainer.run()
    return trainer


@pytest.fixture(scope="session")
def mf_config() -> FederatedConfig:
    """The federated MF setting of the quality tests."""
    return MF_CONFIG


@pytest.fixture(scope="session")
def federated_mf() -> Callable[[LeaveOneOutSplit, Aggregator], FederatedTrainer]:
    """The function that trains :data:`MF_CONFIG` (so test modules need not import conftest)."""
    return train_federated_mf


@pytest.fixture(scope="session")
def synthetic() -> Interactions:
    """The default synthetic data set: 300 users, 500 items, 20-60 interactions each."""
    return synthetic_interactions(seed=0)


@pytest.fixture(scope="session")
def synthetic_split(synthetic: Interactions) -> LeaveOneOutSplit:
    """Leave-one-out split of :func:`synthetic` with 99 negatives per user."""
    return leave_one_out_split(synthetic, seed=0)


@pytest.fixture(scope="session")
def plain_mf_trainer(synthetic_split: LeaveOneOutSplit) -> FederatedTrainer:
    """Federated MF trained with :data:`MF_CONFIG` on the plain backend."""
    return train_federated_mf(synthetic_split, PlainAggregator())
