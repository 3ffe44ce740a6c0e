"""Local optimisation: turning one user's (or everyone's) interactions into SGD steps.

Centralized training and a federated client run the same code: build examples for an objective
(ratings, BPR pairs, or labelled positives plus sampled negatives), then take plain SGD steps on
the batch-mean loss plus L2 on the rows the batch touched. Plain SGD without momentum or weight
decay keeps a client's shared-parameter delta exactly zero on rows it never touched, which is what
lets the server sum item deltas (see ``models.federated``).

Negative sampling uses a seeded ``numpy.random.Generator``: it is training randomness, not privacy
noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from models.base import Recommender
from models.data import DataError, Interactions
from models.objectives import OBJECTIVES, Objective, bce_loss, bpr_loss, squared_error_loss
from secagg.errors import ParameterError

__all__ = [
    "Examples",
    "LocalTrainingConfig",
    "batch_loss",
    "build_examples",
    "sample_negatives",
    "train_centralized",
    "train_user",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrainingConfig:
    """How a model is optimised on local data.

    Attributes:
        objective: ``"explicit"`` (squared error on ratings), ``"bpr"`` or ``"bce"``.
        epochs: passes over the local interactions.
        learning_rate: SGD step size.
        batch_size: examples per step.
        num_negatives: sampled negatives per positive (implicit objectives).
        l2: weight of the L2 penalty on touched user states and item rows.
    """

    objective: Objective = "bpr"
    epochs: int = 2
    learning_rate: float = 1.0
    batch_size: int = 32
    num_negatives: int = 4
    l2: float = 1e-2

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ParameterError(f"objective is {self.objective!r}; expected one of {OBJECTIVES}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive int, got {value!r}")
        if not self.learning_rate > 0:
            raise ParameterError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.num_negatives < 1 or self.l2 < 0:
            raise ParameterError("num_negatives must be >= 1 and l2 >= 0")


@dataclass(frozen=True, slots=True)
class Examples:
    """One epoch of training examples.

    Attributes:
        users: shape ``(E,)`` row of the user-state matrix each example uses.
        items: shape ``(E,)`` the (positive) item.
        targets: shape ``(E,)`` rating (explicit) or 0/1 label (BCE); unused by BPR.
        negatives: shape ``(E,)`` the paired negative item (BPR only), else ``None``.
    """

    users: IntArray
    items: IntArray
    targets: FloatArray
    negatives: IntArray | None

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Examples]:
        """Shuffle and cut into batches of at most ``batch_size``."""
        order = rng.permutation(len(self))
        for start in range(0, len(self), batch_size):
            rows = order[start : start + batch_size]
            yield Examples(
                self.users[rows],
                self.items[rows],
                self.targets[rows],
                None if self.negatives is None else self.negatives[rows],
            )


def sample_negatives(
    users: IntArray,
    seen_codes: IntArray,
    num_items: int,
    rng: np.random.Generator,
) -> IntArray:
    """For each entry of ``users``, draw one item that user has not interacted with.

    Args:
        users: shape ``(E,)`` user rows.
        seen_codes: sorted ``user * num_items + item`` codes of the observed pairs.
        num_items: catalogue size.
        rng: training generator.

    Returns:
        Shape ``(E,)`` items, drawn uniformly with replacement from each user's unseen items.

    Raises:
        DataError: some user has interacted with every item.
    """
    draws: IntArray = np.asarray(rng.integers(0, num_items, size=users.shape[0]), np.int64)
    for _ in range(1000):
        bad = np.isin(users * num_items + draws, seen_codes)
        if not bad.any():
            return draws
        draws[bad] = rng.integers(0, num_items, size=int(bad.sum()))
    raise DataError("cannot sample negatives: some user has interacted with (nearly) every item")


def build_examples(
    users: IntArray,
    items: IntArray,
    ratings: FloatArray,
    *,
    num_items: int,
    objective: Objective,
    num_negatives: int,
    rng: np.random.Generator,
) -> Examples:
    """Turn observed interactions into one epoch of examples for ``objective``.

    Args:
        users: shape ``(n,)`` user rows of the observed interactions.
        items: shape ``(n,)`` observed items.
        ratings: shape ``(n,)`` ratings (used by the explicit objective).
        num_items: catalogue size.
        objective: ``"explicit"``, ``"bpr"`` or ``"bce"``.
        num_negatives: negatives per positive for the implicit objectives.
        rng: training generator.

    Returns:
        ``n`` rating examples, ``n * num_negatives`` BPR pairs, or ``n`` positives plus
        ``n * num_negatives`` labelled negatives.
    """
    if objective == "explicit":
        return Examples(users, items, ratings.astype(np.float32), None)
    seen_codes = np.unique(users * num_items + items)
    repeated_users = np.repeat(users, num_negatives)
    negatives = sample_negatives(repeated_users, seen_codes, num_items, rng)
    if objective == "bpr":
        positives = np.repeat(items, num_negatives)
        return Examples(repeated_users, positives, np.ones_like(negatives, np.float32), negatives)
    labels = np.concatenate(
        [np.ones(items.shape[0], np.float32), np.zeros(negatives.shape[0], np.float32)]
    )
    return Examples(
        np.concatenate([users, repeated_users]), np.concatenate([items, negatives]), labels, None
    )


def batch_loss(
    model: Recommender, states: Tensor, batch: Examples, objective: Objective, l2: float
) -> Tensor:
    """Objective on one batch plus ``l2`` times the mean squared norm of what it touched.

    Args:
        model: the model.
        states: shape ``(B, state_dim)``, the user state of each example.
        batch: ``B`` examples.
        objective: ``"explicit"``, ``"bpr"`` or ``"bce"``.
        l2: penalty weight.

    Returns:
        A scalar tensor.
    """
    items = torch.from_numpy(batch.items)
    if objective == "bpr":
        assert batch.negatives is not None
        negatives = torch.from_numpy(batch.negatives)
        # One forward pass over positives and negatives together.
        scores = model.score(torch.cat([states, states]), torch.cat([items, negatives]))
        loss = bpr_loss(scores[: len(batch)], scores[len(batch) :])
        touched = torch.stack([items, negatives], dim=1)
    else:
        scores = model.score(states, items)
        targets = torch.from_numpy(batch.targets)
        loss = (
            squared_error_loss(scores, targets)
            if objective == "explicit"
            else bce_loss(scores, targets)
        )
        touched = items
    if l2 > 0:
        loss = loss + l2 * model.penalty(states, touched) / len(batch)
    return loss


def _sgd_step(parameters: Sequence[Tensor], learning_rate: float) -> None:
    with torch.no_grad():
        for parameter in parameters:
            if parameter.grad is not None:
                parameter.add_(parameter.grad, alpha=-learning_rate)
                parameter.grad = None


def train_user(
    model: Recommender,
    state: Tensor,
    items: IntArray,
    ratings: FloatArray,
    config: LocalTrainingConfig,
    rng: np.random.Generator,
) -> tuple[float, int]:
    """Run local SGD for one user on their own interactions; updates ``state`` and ``model``.

    Args:
        model: the model whose shared parameters are trained (a client's working copy).
        state: shape ``(state_dim,)`` leaf tensor with ``requires_grad``; the user's own state.
        items: shape ``(n,)`` the user's observed items.
        ratings: shape ``(n,)`` their ratings.
        config: local optimisation settings.
        rng: the client's training generator.

    Returns:
        ``(mean loss over all steps, number of examples seen)``.
    """
    parameters = [state, *model.shared_parameters()]
    users = np.zeros(items.shape[0], dtype=np.int64)
    total_loss = 0.0
    steps = 0
    examples_seen = 0
    for _ in range(config.epochs):
        examples = build_examples(
            users,
            items,
            ratings,
            num_items=model.num_items,
            objective=config.objective,
            num_negatives=config.num_negatives,
            rng=rng,
        )
        for batch in examples.batches(config.batch_size, rng):
            states = state.unsqueeze(0).expand(len(batch), -1)
            loss = batch_loss(model, states, batch, config.objective, config.l2)
            torch.autograd.backward(loss)
            _sgd_step(parameters, config.learning_rate)
            total_loss += float(loss.detach())
            steps += 1
            examples_seen += len(batch)
    return total_loss / max(steps, 1), examples_seen


def train_centralized(
    model: Recommender,
    train: Interactions,
    config: LocalTrainingConfig,
    *,
    seed: int = 0,
    on_epoch: Callable[[float], None] | None = None,
) -> list[float]:
    """Train ``model`` (its user table included) on all interactions at once: the reference.

    Args:
        model: the model, trained in place.
        train: the training interactions.
        config: optimisation settings; ``epochs`` passes over all users' data.
        seed: seed of shuffling and negative sampling.
        on_epoch: called with each epoch's mean loss as it ends (a progress bar).

    Returns:
        The mean loss of each epoch.
    """
    rng = np.random.default_rng(seed)
    parameters = [*model.user_parameters(), *model.shared_parameters()]
    losses: list[float] = []
    for _ in range(config.epochs):
        examples = build_examples(
            train.users,
            train.items,
            train.ratings,
            num_items=model.num_items,
            objective=config.objective,
            num_negatives=config.num_negatives,
            rng=rng,
        )
        epoch_loss = 0.0
        steps = 0
        for batch in examples.batches(config.batch_size, rng):
            states = model.users(torch.from_numpy(batch.users))
            loss = batch_loss(model, states, batch, config.objective, config.l2)
            torch.autograd.backward(loss)
            _sgd_step(parameters, config.learning_rate)
            epoch_loss += float(loss.detach())
            steps += 1
        losses.append(epoch_loss / max(steps, 1))
        if on_epoch is not None:
            on_epoch(losses[-1])
    return losses
