"""Lockstep training of a cohort gives every client what it computes alone.

``models.cohort`` is the simulation's fast path; ``FederatedClient.local_update`` is what one
device runs. These tests hold the first to the second for every model and objective, with
clients of very different sizes (so the lockstep groups and the padding are exercised).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

from models import (
    FederatedClient,
    FederatedConfig,
    FederatedTrainer,
    LocalTrainingConfig,
    LogisticCTR,
    MatrixFactorization,
    NeuMF,
    Recommender,
    SharedLayout,
    TwoTower,
    flatten_shared,
    leave_one_out_split,
    synthetic_interactions,
)
from models.cohort import LocalPlan, _lockstep_groups, train_cohort
from models.objectives import Objective
from protocols.aggregators import PlainAggregator

NUM_ITEMS = 60
SIZES = (1, 3, 4, 9, 17, 30, 55)  # interactions per client: from one batch to many

FACTORIES: dict[str, Callable[[], Recommender]] = {
    "mf": lambda: MatrixFactorization(len(SIZES), NUM_ITEMS, 4, seed=2),
    "neumf": lambda: NeuMF(len(SIZES), NUM_ITEMS, gmf_dim=3, mlp_dim=4, hidden=(6, 3), seed=2),
    "two_tower": lambda: TwoTower(
        len(SIZES),
        NUM_ITEMS,
        embedding_dim=5,
        width=6,
        depth=1,
        output_dim=5,
        residual=True,
        seed=2,
    ),
    "ctr": lambda: LogisticCTR(len(SIZES), NUM_ITEMS, 4, seed=2),
}


def _clients(model: Recommender) -> list[FederatedClient]:
    rng = np.random.default_rng(11)
    clients = []
    for user, size in enumerate(SIZES):
        items = rng.choice(NUM_ITEMS, size, replace=False).astype(np.int64)
        ratings = rng.uniform(1, 5, size).astype(np.float32)
        state = model.users.weight.detach()[user]
        clients.append(FederatedClient(user, items, ratings, state, seed=4))
    return clients


def _config(objective: Objective) -> LocalTrainingConfig:
    return LocalTrainingConfig(
        objective=objective,
        epochs=2,
        batch_size=8,
        num_negatives=2,
        learning_rate=0.1 if objective == "explicit" else 0.5,
        dense_learning_rate=0.05 if objective == "explicit" else 0.2,
        item_l2=0.02,
        dense_l2=0.01,
        refit_steps=3,
    )


@pytest.mark.parametrize("objective", ["bpr", "bce", "explicit"])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_cohort_training_matches_each_client_alone(name: str, objective: Objective) -> None:
    model = FACTORIES[name]()
    config = _config(objective)
    broadcast = flatten_shared(model)
    alone_clients, cohort_clients = _clients(model), _clients(model)
    workspace = copy.deepcopy(model)
    alone = [c.local_update(workspace, broadcast, config, 0.5) for c in alone_clients]

    plans = [c.plan_round(NUM_ITEMS, config) for c in cohort_clients]
    states = torch.stack([c.state for c in cohort_clients])
    result = train_cohort(model, states, plans, config)
    together = [
        c.finish_update(
            result.states[i], result.delta(i, model), result.losses[i], result.examples[i], 0.5
        )
        for i, c in enumerate(cohort_clients)
    ]
    assert np.array_equal(flatten_shared(model), broadcast)  # the workspace is not changed
    for a, b, ca, cb in zip(alone, together, alone_clients, cohort_clients, strict=True):
        assert a.num_examples == b.num_examples
        assert a.loss == pytest.approx(b.loss, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(b.delta, a.delta, atol=2e-6)
        assert torch.allclose(ca.state, cb.state, atol=2e-6)


def test_cohort_leaves_rows_no_client_touched_at_exactly_zero() -> None:
    model = FACTORIES["mf"]()
    config = _config("bpr")
    clients = _clients(model)
    plans = [c.plan_round(NUM_ITEMS, config) for c in clients]
    result = train_cohort(model, torch.stack([c.state for c in clients]), plans, config)
    slots = [slot for slot in SharedLayout.of(model).slots if slot.per_item]
    assert slots
    deltas = [result.delta(c, model) for c in range(len(plans))]
    for plan, change in zip(plans, result.changes, strict=True):
        assert np.array_equal(change.rows, plan.rows)  # the sparse form: exactly its rows
        assert set(change.tables) == {"item_embedding.weight", "item_bias.weight"}
        assert change.tables["item_embedding.weight"].shape == (plan.rows.shape[0], 4)
    for plan, delta in zip(plans, deltas, strict=True):
        rows = np.concatenate(
            [delta[s.offset : s.offset + s.size].reshape(s.shape) for s in slots], axis=1
        )
        untouched = np.setdiff1d(np.arange(NUM_ITEMS), plan.rows)
        assert np.all(rows[untouched] == 0)
        assert np.any(rows[plan.rows] != 0)


def _plan(steps: int) -> LocalPlan:
    from models.training import Examples

    batch = Examples(np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, np.float32), None)
    return LocalPlan(np.zeros(1, np.int64), None, (batch,) * steps)


@pytest.mark.parametrize(
    "steps", [[1], [5, 5, 5], [112, 66, 64, 46, 40, 30, 20, 12, 8, 6], [0, 3, 0, 9], []]
)
def test_lockstep_groups_cover_each_client_once_and_bound_the_wait(steps: list[int]) -> None:
    groups = _lockstep_groups([_plan(s) for s in steps])
    assert sorted(c for g in groups for c in g) == list(range(len(steps)))
    for group in groups:
        longest = max(steps[c] for c in group)
        assert all(steps[c] * 2 > longest or len(group) == 1 or steps[c] == longest for c in group)


def test_trainer_gives_the_same_model_with_and_without_the_cohort() -> None:
    data = synthetic_interactions(40, 80, min_per_user=5, max_per_user=30, seed=3)
    split = leave_one_out_split(data, num_negatives=20, seed=0)
    config = FederatedConfig(
        rounds=3,
        clients_per_round=12,
        local=replace(_config("bpr"), epochs=1),
        eval_every=0,
        seed=5,
    )
    models = []
    for cohort in (True, False):
        model = MatrixFactorization(split.train.num_users, split.train.num_items, 4, seed=0)
        trainer = FederatedTrainer(
            model, split.train, PlainAggregator(), replace(config, cohort_training=cohort)
        )
        trainer.run()
        models.append(trainer.server.broadcast())
    np.testing.assert_allclose(models[0], models[1], atol=1e-5)


def test_a_plan_with_candidates_touches_only_the_clients_items_and_those_rows() -> None:
    model = FACTORIES["mf"]()
    config = _config("bpr")
    client = _clients(model)[-1]
    candidates = np.arange(0, NUM_ITEMS, 3, dtype=np.int64)
    plan = client.plan_round(NUM_ITEMS, config, candidates)
    assert plan.refit is not None and plan.refit.negatives is not None
    assert np.isin(plan.refit.negatives, candidates).all()
    allowed = np.union1d(plan.items, candidates)
    assert np.isin(plan.rows, allowed).all()
    for batch in plan.batches:
        assert batch.negatives is not None and np.isin(batch.negatives, candidates).all()
