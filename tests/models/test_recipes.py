"""Every model's recipe learns federatedly, and the sizes it derives from data are sound.

The recipes were tuned on the MovieLens-100K-shaped set (README); here each one trains on a small
synthetic set, through the plain backend with dropouts, and must rank held-out items clearly
better than item popularity does. A recipe that stops learning (a wrong sign, a step that no
longer reaches the model, a guard that skips everyone) fails this.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from models import (
    FederatedTrainer,
    LeaveOneOutSplit,
    leave_one_out_split,
    popularity_ranking,
    synthetic_interactions,
)
from models.factory import make_model
from models.recipes import (
    DEFAULT_COHORT,
    RECIPES,
    derived_cohort,
    derived_rounds,
    recipe_for,
)
from protocols.aggregators import PlainAggregator
from secagg.errors import ParameterError

#: HR@10 points above item popularity each model must reach.
MARGIN = 0.05
USERS, COHORT = 100, 25


@pytest.fixture(scope="module")
def split() -> LeaveOneOutSplit:
    data = synthetic_interactions(USERS, 200, seed=4)
    return leave_one_out_split(data, seed=4)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_learns_above_popularity(name: str, split: LeaveOneOutSplit) -> None:
    recipe = recipe_for(name)
    rounds = derived_rounds(USERS, COHORT, recipe.participations)
    config = recipe.federated_config(
        rounds=rounds, clients_per_round=COHORT, dropout_fraction=0.1, eval_every=rounds, seed=4
    )
    model = make_model(name, split.train.num_users, split.train.num_items, recipe.dim, 4)
    trainer = FederatedTrainer(model, split.train, PlainAggregator(), config, evaluation=split)
    metrics = trainer.run().last_ranking()
    assert metrics is not None
    popularity = popularity_ranking(split).hit_ratio
    assert metrics.hit_ratio >= popularity + MARGIN, (name, metrics.hit_ratio, popularity)
    assert all(not record.diverged for record in trainer.history.records)


def test_rounds_give_each_user_the_participations_asked_for() -> None:
    assert derived_rounds(943, 50, 6) == 114  # ceil(6 * 943 / 50)
    assert derived_rounds(10, 50, 3) == 3  # a cohort larger than the users samples everyone
    assert derived_cohort(943) == DEFAULT_COHORT and derived_cohort(7) == 7


@pytest.mark.parametrize("bad", [(0, 50, 6), (10, 0, 6), (10, 50, 0)])
def test_derived_rounds_refuses_non_positive_sizes(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ParameterError):
        derived_rounds(*bad)


def test_an_unknown_model_has_no_recipe() -> None:
    with pytest.raises(ParameterError, match="no recipe for model 'gru'"):
        recipe_for("gru")


def test_the_centralized_reference_trains_what_the_clients_train() -> None:
    """Same objective, negatives, steps and L2: the reference differs only in pooling the data."""
    for recipe in RECIPES.values():
        local, central = recipe.local, recipe.centralized
        assert central.objective == local.objective
        assert central.num_negatives == local.num_negatives
        assert replace(central, epochs=local.epochs, refit_steps=local.refit_steps,
                       batch_size=local.batch_size, learning_rate=local.learning_rate,
                       dense_learning_rate=local.dense_learning_rate) == local  # fmt: skip
