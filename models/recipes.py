"""Each model's federated recipe and its centralized reference, and the sizes derived from data.

A recipe is everything ``secagg train`` uses when a flag is not given: the embedding size, the
clients' local training (separate steps and L2 for the private user state, the item rows and the
dense weights; the refit of the private state before training and before evaluation), the server
optimizer and its steps, and how many times each user should be sampled over the run. The
centralized reference trains the same model on the pooled data with the same objective.

The values were tuned on the validation split (:func:`models.data.validation_split`) of the
MovieLens-100K-shaped synthetic set (:func:`models.data.synthetic_movielens`), never on its test
items. The README gives the commands and the figures they reach.

Rounds derive from the data: enough for each user with training data to be sampled about
``participations`` times at the cohort size (:func:`derived_rounds`). Under-sampled users are
what held federated quality back most (0.49 HR@10 for users never sampled against 0.72 for those
sampled four times or more, on MovieLens-100K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final

from models.federated import FederatedConfig
from models.objectives import Objective
from models.server_optimizers import ServerOptimizerConfig
from models.training import LocalTrainingConfig
from secagg.errors import ParameterError

__all__ = [
    "DEFAULT_COHORT",
    "RECIPES",
    "Recipe",
    "derived_cohort",
    "derived_rounds",
    "recipe_for",
]

#: The most clients a round samples by default (fewer when the data has fewer users).
DEFAULT_COHORT: Final = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """A model's defaults for federated training and for its centralized reference.

    Attributes:
        dim: embedding size.
        local: the clients' local training.
        server_optimizer: the server's optimizer and schedule.
        item_learning_rate: the server's base step on item rows.
        dense_learning_rate: the server's base step on dense weights.
        counts: whether uploads carry per-item touch indicators (the mean-per-row step).
        participations: times each user should be sampled over the run.
        eval_refit_steps: refit steps of every private state before an evaluation.
        centralized: the centralized reference's training (``epochs`` passes over all data).
    """

    dim: int
    local: LocalTrainingConfig
    server_optimizer: ServerOptimizerConfig
    item_learning_rate: float
    dense_learning_rate: float
    counts: bool
    participations: int
    eval_refit_steps: int
    centralized: LocalTrainingConfig

    def federated_config(
        self,
        *,
        rounds: int,
        clients_per_round: int,
        dropout_fraction: float = 0.0,
        eval_every: int = 0,
        seed: int = 0,
    ) -> FederatedConfig:
        """The federated run this recipe describes, for ``rounds`` rounds of a cohort."""
        return FederatedConfig(
            rounds=rounds,
            clients_per_round=clients_per_round,
            local=self.local,
            item_learning_rate=self.item_learning_rate,
            dense_learning_rate=self.dense_learning_rate,
            server_optimizer=self.server_optimizer,
            counts=self.counts,
            eval_refit_steps=self.eval_refit_steps,
            dropout_fraction=dropout_fraction,
            eval_every=eval_every,
            seed=seed,
        )


_FED_ADAM: Final = ServerOptimizerConfig(
    name="fedadam", beta1=0.9, beta2=0.99, tau=1e-3, schedule="cosine", final_fraction=0.1
)


def _recipe(
    objective: Objective,
    *,
    dim: int,
    dense_learning_rate: float | None = None,
    server_dense_learning_rate: float = 0.03,
    centralized_learning_rate: float = 8.0,
    centralized_dense_learning_rate: float | None = None,
) -> Recipe:
    """The shared shape of every recipe.

    Clients: 2 local epochs of SGD (batch 32, step 1) after a 10-step refit of the private
    state. Server: FedAdam at 0.03 on item rows, with per-item counts, the rate decayed by a
    cosine to a tenth over the run. Each user is sampled
    about 6 times; every private state is refit for 30 steps before an evaluation. The
    centralized reference runs 20 epochs in batches of 256 at 8 times the clients' step: the
    same step per example as the clients' batches of 32 (the loss is a batch mean), in an
    eighth of the optimizer steps (HR@10 0.6734 against 0.6723 at batch 64, MF on the
    validation split). NeuMF's and two-tower's references step at 4 times the clients' step,
    with a small dense step (validation split, seed 0: NeuMF 0.6850 against 0.6543 at 8 times
    and 0.01; two-tower 0.6511 against 0.6129 at 8 times and 0.1).
    """
    local = LocalTrainingConfig(
        objective=objective,
        epochs=2,
        learning_rate=1.0,
        dense_learning_rate=dense_learning_rate,
        refit_steps=10,
    )
    centralized = replace(
        local,
        epochs=20,
        batch_size=256,
        learning_rate=centralized_learning_rate,
        dense_learning_rate=centralized_dense_learning_rate,
        refit_steps=0,
    )
    return Recipe(
        dim=dim,
        local=local,
        server_optimizer=_FED_ADAM,
        item_learning_rate=0.03,
        dense_learning_rate=server_dense_learning_rate,
        counts=True,
        participations=6,
        eval_refit_steps=30,
        centralized=centralized,
    )


#: The recipes by model name (``ctr`` trains with BCE on sampled negatives, the others BPR).
RECIPES: Final[dict[str, Recipe]] = {
    "mf": _recipe("bpr", dim=32),
    "neumf": _recipe(
        "bpr",
        dim=32,
        dense_learning_rate=0.1,
        server_dense_learning_rate=0.001,
        centralized_learning_rate=4.0,
        centralized_dense_learning_rate=0.001,
    ),
    "two-tower": _recipe(
        "bpr",
        dim=16,
        dense_learning_rate=0.1,
        server_dense_learning_rate=0.001,
        centralized_learning_rate=4.0,
        centralized_dense_learning_rate=0.003,
    ),
    "ctr": _recipe("bce", dim=16),
}


def recipe_for(model: str) -> Recipe:
    """The recipe of ``model`` (a name of :data:`models.factory.MODELS`).

    Raises:
        ParameterError: no recipe has that name.
    """
    try:
        return RECIPES[model]
    except KeyError:
        raise ParameterError(
            f"no recipe for model {model!r}; choose one of {', '.join(RECIPES)}"
        ) from None


def derived_cohort(users: int) -> int:
    """Clients per round: :data:`DEFAULT_COHORT`, or every user when fewer exist (at least 1)."""
    return max(1, min(DEFAULT_COHORT, users))


def derived_rounds(users: int, cohort: int, participations: int) -> int:
    """Rounds for each of ``users`` to be sampled about ``participations`` times.

    Each round samples ``cohort`` users uniformly, so a user is sampled
    ``rounds * cohort / users`` times in expectation.

    Raises:
        ParameterError: a size is not positive.
    """
    if min(users, cohort, participations) < 1:
        raise ParameterError("users, cohort and participations must be positive")
    return max(1, math.ceil(participations * users / min(cohort, users)))
