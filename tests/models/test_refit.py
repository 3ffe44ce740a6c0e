"""The refit of private user states, and the pair scoring it runs on.

``refit_states`` scores every positive once and each sampled negative once (BPR's examples repeat
a positive once per negative), and the models' ``score_pairs`` compute user and item parts once
per distinct row. These tests pin both against the plain per-example formulation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models import (
    LocalTrainingConfig,
    LogisticCTR,
    MatrixFactorization,
    NeuMF,
    Recommender,
    TwoTower,
    flatten_shared,
)
from models.objectives import Objective
from models.training import _Adam, _objective_terms, epoch_examples, refit_states

NUM_USERS, NUM_ITEMS = 9, 40

FACTORIES: dict[str, Callable[[], Recommender]] = {
    "mf": lambda: MatrixFactorization(NUM_USERS, NUM_ITEMS, 4, seed=1),
    "neumf": lambda: NeuMF(NUM_USERS, NUM_ITEMS, gmf_dim=3, mlp_dim=5, hidden=(8, 4), seed=1),
    "two_tower": lambda: TwoTower(
        NUM_USERS, NUM_ITEMS, embedding_dim=6, width=8, depth=2, output_dim=6, seed=1
    ),
    "two_tower_residual": lambda: TwoTower(
        NUM_USERS,
        NUM_ITEMS,
        embedding_dim=6,
        width=8,
        depth=1,
        output_dim=6,
        residual=True,
        seed=1,
    ),
    "ctr": lambda: LogisticCTR(NUM_USERS, NUM_ITEMS, 4, seed=1),
}


def _interactions(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(NUM_USERS, dtype=np.int64), 6)
    items = np.concatenate(
        [rng.choice(NUM_ITEMS, 6, replace=False) for _ in range(NUM_USERS)]
    ).astype(np.int64)
    return users, items, rng.uniform(1, 5, users.shape[0]).astype(np.float32)


@pytest.mark.parametrize("name", sorted(FACTORIES))
@settings(max_examples=20, deadline=None)
@given(
    users=st.lists(st.integers(0, NUM_USERS - 1), min_size=1, max_size=30),
    data=st.data(),
)
def test_score_pairs_equals_score_of_gathered_states(
    name: str, users: list[int], data: st.DataObject
) -> None:
    model = FACTORIES[name]()
    items = data.draw(
        st.lists(st.integers(0, NUM_ITEMS - 1), min_size=len(users), max_size=len(users))
    )
    states = model.users.weight.detach()
    user_ids, item_ids = torch.tensor(users), torch.tensor(items)
    expected = model.score(states[user_ids], item_ids)
    got = model.score_pairs(states, user_ids, item_ids)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)


def _reference_refit(
    model: Recommender,
    states: torch.Tensor,
    interactions: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: LocalTrainingConfig,
    seed: int,
    steps: int,
) -> torch.Tensor:
    """The refit written plainly: every example scored on its own, as a batch loss would."""
    users, items, ratings = interactions
    examples = epoch_examples(model, users, items, ratings, config, np.random.default_rng(seed))
    example_users = torch.from_numpy(examples.users)
    per_user = torch.bincount(example_users, minlength=states.shape[0])
    weights = (1.0 / per_user.clamp(min=1))[example_users].float()
    penalised = (per_user > 0).float().unsqueeze(1)
    moving = torch.ones(states.shape[1])
    if config.objective == "bpr":
        moving[list(model.user_bias_columns())] = 0.0
    fitted = states.clone()
    adam = _Adam(fitted, config.refit_learning_rate)
    for _ in range(steps):
        fitted.requires_grad_(True)
        losses, _ = _objective_terms(model, fitted[example_users], examples, config.objective)
        loss = (weights * losses).sum() + config.group_l2()[0] * (penalised * fitted**2).sum()
        (gradient,) = torch.autograd.grad(loss, [fitted])
        fitted = adam.step(fitted.detach(), gradient * moving)
    return fitted


@pytest.mark.parametrize("objective", ["bpr", "bce", "explicit"])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_refit_matches_the_per_example_formulation(name: str, objective: Objective) -> None:
    model = FACTORIES[name]()
    config = LocalTrainingConfig(objective=objective, num_negatives=3)
    states = model.users.weight.detach().clone()
    interactions = _interactions(2)
    got = refit_states(model, states, *interactions, config, np.random.default_rng(5), steps=8)
    expected = _reference_refit(model, states, interactions, config, seed=5, steps=8)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.equal(got, states)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_refit_changes_only_the_states(name: str) -> None:
    model = FACTORIES[name]()
    shared = flatten_shared(model)
    states = model.users.weight.detach().clone()
    before = states.clone()
    refit_states(
        model, states, *_interactions(3), LocalTrainingConfig(), np.random.default_rng(0), steps=5
    )
    assert np.array_equal(flatten_shared(model), shared)
    assert torch.equal(states, before)


def test_refit_of_many_users_is_each_user_refit_alone() -> None:
    """With no negatives to draw (explicit ratings), a joint refit is each user's own refit."""
    model = FACTORIES["mf"]()
    config = LocalTrainingConfig(objective="explicit")
    users, items, ratings = _interactions(4)
    states = model.users.weight.detach().clone()
    joint = refit_states(
        model, states, users, items, ratings, config, np.random.default_rng(0), steps=6
    )
    for user in range(NUM_USERS):
        own = users == user
        alone = refit_states(
            model,
            states[user : user + 1],
            np.zeros(own.sum(), np.int64),
            items[own],
            ratings[own],
            config,
            np.random.default_rng(0),
            steps=6,
        )
        assert torch.allclose(joint[user], alone[0], atol=1e-6)


def test_bpr_refit_leaves_the_mf_user_bias_at_zero() -> None:
    """BPR's loss ignores a user bias; rounding noise must not move it."""
    model = FACTORIES["mf"]()
    states = model.users.weight.detach().clone()
    fitted = refit_states(
        model,
        states,
        *_interactions(6),
        LocalTrainingConfig(objective="bpr"),
        np.random.default_rng(1),
        steps=20,
    )
    bias = list(model.user_bias_columns())
    assert torch.equal(fitted[:, bias], torch.zeros(NUM_USERS, 1))
    assert not torch.equal(fitted, states)


def test_refit_lowers_each_users_loss() -> None:
    model = FACTORIES["two_tower_residual"]()
    config = LocalTrainingConfig(objective="bpr", num_negatives=2, refit_learning_rate=0.05)
    states = model.users.weight.detach().clone()
    users, items, ratings = _interactions(7)

    def loss(candidate: torch.Tensor) -> float:
        examples = epoch_examples(model, users, items, ratings, config, np.random.default_rng(9))
        with torch.no_grad():
            losses, _ = _objective_terms(
                model, candidate[torch.from_numpy(examples.users)], examples, "bpr"
            )
        return float(losses.mean())

    fitted = refit_states(
        model, states, users, items, ratings, config, np.random.default_rng(9), steps=30
    )
    assert loss(fitted) < loss(states)


def test_zero_refit_steps_return_a_copy() -> None:
    model = FACTORIES["ctr"]()
    states = model.users.weight.detach().clone()
    fitted = refit_states(
        model, states, *_interactions(8), LocalTrainingConfig(), np.random.default_rng(0), steps=0
    )
    assert torch.equal(fitted, states)
    fitted += 1
    assert not torch.equal(fitted, states)
