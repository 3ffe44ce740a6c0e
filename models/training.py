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
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from models.base import Recommender
from models.data import DataError, Interactions
from models.objectives import OBJECTIVES, Objective
from secagg.errors import ParameterError

__all__ = [
    "Examples",
    "LocalTrainingConfig",
    "batch_loss",
    "build_examples",
    "epoch_examples",
    "objective_terms",
    "refit_on_examples",
    "refit_states",
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
        user_learning_rate: step of the private user state (default ``learning_rate``).
        item_learning_rate: step of the item rows (default ``learning_rate``).
        dense_learning_rate: step of the dense shared weights (default ``learning_rate``).
        user_l2: L2 weight of the user state (default ``l2``).
        item_l2: L2 weight of the touched item rows (default ``l2``).
        dense_l2: L2 weight of the dense shared weights (default 0).
        refit_steps: Adam steps that refit the private user state against the current shared
            model before local training (:func:`refit_states`); 0 skips the refit.
        refit_learning_rate: Adam's step size in the refit.
    """

    objective: Objective = "bpr"
    epochs: int = 2
    learning_rate: float = 1.0
    batch_size: int = 32
    num_negatives: int = 4
    l2: float = 1e-2
    user_learning_rate: float | None = None
    item_learning_rate: float | None = None
    dense_learning_rate: float | None = None
    user_l2: float | None = None
    item_l2: float | None = None
    dense_l2: float = 0.0
    refit_steps: int = 0
    refit_learning_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ParameterError(f"objective is {self.objective!r}; expected one of {OBJECTIVES}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive int, got {value!r}")
        rates = (self.learning_rate, self.refit_learning_rate, *self.group_learning_rates())
        if not all(rate > 0 for rate in rates):
            raise ParameterError(f"learning rates must be > 0, got {rates}")
        if self.num_negatives < 1 or min(self.l2, self.dense_l2, *self.group_l2()[:2]) < 0:
            raise ParameterError("num_negatives must be >= 1 and every l2 >= 0")
        if self.refit_steps < 0:
            raise ParameterError(f"refit_steps must be >= 0, got {self.refit_steps}")

    def group_learning_rates(self) -> tuple[float, float, float]:
        """SGD steps of the private user state, the item rows and the dense weights.

        Each falls back to :attr:`learning_rate` when not set: one step for everything, the
        recipe of plain federated MF.
        """
        base = self.learning_rate
        return (
            base if self.user_learning_rate is None else self.user_learning_rate,
            base if self.item_learning_rate is None else self.item_learning_rate,
            base if self.dense_learning_rate is None else self.dense_learning_rate,
        )

    def group_l2(self) -> tuple[float, float, float]:
        """L2 weights of the user state and the touched item rows (falling back to :attr:`l2`),
        and of the dense weights (:attr:`dense_l2`, applied to all of them)."""
        return (
            self.l2 if self.user_l2 is None else self.user_l2,
            self.l2 if self.item_l2 is None else self.item_l2,
            self.dense_l2,
        )


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
    candidates: IntArray | None = None,
) -> IntArray:
    """For each entry of ``users``, draw one item that user has not interacted with.

    Args:
        users: shape ``(E,)`` user rows.
        seen_codes: sorted ``user * num_items + item`` codes of the observed pairs.
        num_items: catalogue size.
        rng: training generator.
        candidates: the items to draw from (default: the whole catalogue). Sparse secure
            aggregation draws negatives from the rows a round covers, so that training touches
            no row outside them.

    Returns:
        Shape ``(E,)`` items, drawn uniformly with replacement from each user's unseen items
        (among ``candidates``).

    Raises:
        DataError: some user has interacted with every item (every candidate).
    """
    size = users.shape[0]
    pool = None if candidates is None else np.asarray(candidates, dtype=np.int64)
    if pool is not None and pool.size == 0 and size:
        raise DataError("cannot sample negatives: no candidate items were given")

    def draw(count: int) -> IntArray:
        if pool is None:
            return np.asarray(rng.integers(0, num_items, size=count), np.int64)
        return pool[rng.integers(0, pool.shape[0], size=count)]

    draws = draw(size)
    for _ in range(1000):
        bad = np.isin(users * num_items + draws, seen_codes)
        if not bad.any():
            return draws
        draws[bad] = draw(int(bad.sum()))
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
    candidates: IntArray | None = None,
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
        candidates: items negatives are drawn from (default: the catalogue).

    Returns:
        ``n`` rating examples, ``n * num_negatives`` BPR pairs, or ``n`` positives plus
        ``n * num_negatives`` labelled negatives.
    """
    if objective == "explicit":
        return Examples(users, items, ratings.astype(np.float32), None)
    seen_codes = np.unique(users * num_items + items)
    repeated_users = np.repeat(users, num_negatives)
    negatives = sample_negatives(repeated_users, seen_codes, num_items, rng, candidates)
    if objective == "bpr":
        positives = np.repeat(items, num_negatives)
        return Examples(repeated_users, positives, np.ones_like(negatives, np.float32), negatives)
    labels = np.concatenate(
        [np.ones(items.shape[0], np.float32), np.zeros(negatives.shape[0], np.float32)]
    )
    return Examples(
        np.concatenate([users, repeated_users]), np.concatenate([items, negatives]), labels, None
    )


def objective_terms(
    model: Recommender,
    states: Tensor,
    items: Tensor,
    negatives: Tensor | None,
    targets: Tensor,
    objective: Objective,
) -> tuple[Tensor, Tensor]:
    """Per-example losses, shape ``(B,)``, and the items each example touched.

    Args:
        model: the model.
        states: shape ``(B, state_dim)`` the user state of each example.
        items: int64, shape ``(B,)`` the (positive) items.
        negatives: int64, shape ``(B,)`` BPR's paired negatives (else unused).
        targets: shape ``(B,)`` ratings or labels (BPR: unused).
        objective: ``"explicit"``, ``"bpr"`` or ``"bce"``.

    Returns:
        The losses, and the touched items: shape ``(B, 2)`` for BPR, ``(B,)`` otherwise.
    """
    if objective == "bpr":
        assert negatives is not None
        # One forward pass over positives and negatives together.
        scores = model.score(torch.cat([states, states]), torch.cat([items, negatives]))
        batch = items.shape[0]
        losses = _losses(scores[:batch], scores[batch:], targets, objective)
        return losses, torch.stack([items, negatives], dim=1)
    return _losses(model.score(states, items), None, targets, objective), items


def _losses(
    scores: Tensor, negative_scores: Tensor | None, targets: Tensor, objective: Objective
) -> Tensor:
    """Per-example losses of ``objective`` from the scores (BPR: and its negatives' scores)."""
    if objective == "bpr":
        assert negative_scores is not None
        return -F.logsigmoid(scores - negative_scores)
    if objective == "explicit":
        return 0.5 * (targets - scores).pow(2)
    return F.binary_cross_entropy_with_logits(scores, targets, reduction="none")


def _objective_terms(
    model: Recommender, states: Tensor, batch: Examples, objective: Objective
) -> tuple[Tensor, Tensor]:
    """:func:`objective_terms` of a batch of numpy examples."""
    negatives = None if batch.negatives is None else torch.from_numpy(batch.negatives)
    targets = torch.from_numpy(batch.targets)
    return objective_terms(
        model, states, torch.from_numpy(batch.items), negatives, targets, objective
    )


def batch_loss(
    model: Recommender,
    states: Tensor,
    batch: Examples,
    objective: Objective,
    l2: float | tuple[float, float, float],
) -> Tensor:
    """Objective on one batch plus L2 on what it touched (and on the dense weights).

    The batch-mean objective (:mod:`models.objectives`), plus ``user_l2`` and ``item_l2`` times
    the mean squared norm of the user states and item rows the batch touched, plus ``dense_l2``
    times the squared norm of the dense shared weights.

    Args:
        model: the model.
        states: shape ``(B, state_dim)``, the user state of each example.
        batch: ``B`` examples.
        objective: ``"explicit"``, ``"bpr"`` or ``"bce"``.
        l2: one weight for user states and item rows, or ``(user_l2, item_l2, dense_l2)``.

    Returns:
        A scalar tensor.
    """
    user_l2, item_l2, dense_l2 = (l2, l2, 0.0) if isinstance(l2, int | float) else l2
    losses, touched = _objective_terms(model, states, batch, objective)
    loss = losses.mean()
    if user_l2 > 0:
        loss = loss + user_l2 * states.pow(2).sum() / len(batch)
    if item_l2 > 0:
        rows = sum(table(touched).pow(2).sum() for table in model.item_tables())
        loss = loss + item_l2 * rows / len(batch)
    if dense_l2 > 0:
        loss = loss + dense_l2 * sum(p.pow(2).sum() for p in model.dense_parameters())
    return loss


def _sgd_step(groups: Sequence[tuple[Sequence[Tensor], float]]) -> None:
    with torch.no_grad():
        for parameters, learning_rate in groups:
            for parameter in parameters:
                if parameter.grad is not None:
                    parameter.add_(parameter.grad, alpha=-learning_rate)
                    parameter.grad = None


def _parameter_groups(
    model: Recommender, user_side: Sequence[Tensor], config: LocalTrainingConfig
) -> list[tuple[Sequence[Tensor], float]]:
    """``(parameters, step)`` for the user side, the item tables and the dense weights."""
    user_rate, item_rate, dense_rate = config.group_learning_rates()
    items = [table.weight for table in model.item_tables()]
    return [(user_side, user_rate), (items, item_rate), (model.dense_parameters(), dense_rate)]


def refit_states(
    model: Recommender,
    states: Tensor,
    users: IntArray,
    items: IntArray,
    ratings: FloatArray,
    config: LocalTrainingConfig,
    rng: np.random.Generator,
    *,
    steps: int | None = None,
    candidates: IntArray | None = None,
) -> Tensor:
    """Refit private user states against the frozen shared model (uploads nothing).

    A user's state goes stale while the shared model moves between the rounds the user is
    sampled in, so each client refits it before training and before evaluation: ``steps`` Adam
    steps (:attr:`LocalTrainingConfig.refit_learning_rate`) on the user's own full-batch loss
    with one fixed draw of negatives, the shared parameters untouched. The loss is a sum of
    per-user mean losses and Adam works per coordinate, so refitting many users at once (the
    simulation's evaluation) refits each as alone, up to the draw of negatives.

    Args:
        model: the model; its shared parameters are read, not changed.
        states: shape ``(U, state_dim)`` the current states (not modified).
        users: shape ``(n,)`` the row of ``states`` of each interaction.
        items: shape ``(n,)`` the observed items.
        ratings: shape ``(n,)`` their ratings.
        config: objective, negatives, L2 and refit step size.
        rng: the negative sampler's generator.
        steps: Adam steps (default ``config.refit_steps``).
        candidates: items negatives are drawn from (default: the catalogue).

    Returns:
        The refit states, shape ``(U, state_dim)``, detached.
    """
    count = config.refit_steps if steps is None else steps
    if count == 0 or items.shape[0] == 0:
        return states.detach().clone()
    examples = epoch_examples(model, users, items, ratings, config, rng, candidates)
    return refit_on_examples(model, states, users, items, examples, config, count)


def refit_on_examples(
    model: Recommender,
    states: Tensor,
    users: IntArray,
    items: IntArray,
    examples: Examples,
    config: LocalTrainingConfig,
    steps: int,
) -> Tensor:
    """:func:`refit_states` on examples drawn already (each client draws its own negatives).

    Args:
        model: the model; its shared parameters are read, not changed.
        states: shape ``(U, state_dim)`` the current states (not modified).
        users: shape ``(n,)`` the row of ``states`` of each observed interaction.
        items: shape ``(n,)`` the observed items.
        examples: one epoch of ``config.objective``'s examples built from ``users``/``items``.
        config: objective, L2 and refit step size.
        steps: Adam steps.

    Returns:
        The refit states, shape ``(U, state_dim)``, detached.
    """
    fitted = states.detach().clone()
    example_users = torch.from_numpy(examples.users)
    per_user = torch.bincount(example_users, minlength=fitted.shape[0])
    weights = (1.0 / per_user.clamp(min=1))[example_users].to(torch.float32)
    # Each user's mean L2 term over their examples is user_l2 * |state|^2, counted once.
    penalised = (per_user > 0).to(torch.float32).unsqueeze(1)
    user_l2 = config.group_l2()[0]
    pairs = _refit_pairs(users, items, examples)
    # BPR's loss does not depend on a user bias (it cancels in the score difference): its
    # gradient there is rounding noise, which Adam's per-coordinate scaling would turn into steps.
    moving = torch.ones(fitted.shape[1])
    if config.objective == "bpr":
        moving[list(model.user_bias_columns())] = 0.0
    adam = _Adam(fitted, config.refit_learning_rate)
    for _ in range(steps):
        fitted.requires_grad_(True)
        losses = _refit_losses(model, fitted, pairs, examples, config.objective)
        loss = (weights * losses).sum() + user_l2 * (penalised * fitted.pow(2)).sum()
        (gradient,) = torch.autograd.grad(loss, [fitted])
        fitted = adam.step(fitted.detach(), gradient * moving)
    return fitted


def _refit_pairs(users: IntArray, items: IntArray, examples: Examples) -> tuple[Tensor, Tensor]:
    """The ``(user row, item)`` pairs a refit scores: for BPR each positive once, then the
    negatives (BPR's examples repeat each positive once per negative); else the examples."""
    if examples.negatives is None:
        return torch.from_numpy(examples.users), torch.from_numpy(examples.items)
    return (
        torch.from_numpy(np.concatenate([users, examples.users])),
        torch.from_numpy(np.concatenate([items, examples.negatives])),
    )


def _refit_losses(
    model: Recommender,
    states: Tensor,
    pairs: tuple[Tensor, Tensor],
    examples: Examples,
    objective: Objective,
) -> Tensor:
    """Per-example losses of :func:`_objective_terms`, scoring each pair of ``pairs`` once."""
    scores = model.score_pairs(states, *pairs)
    targets = torch.from_numpy(examples.targets)
    if objective == "bpr":
        positives = scores.shape[0] - len(examples)
        repeats = len(examples) // max(positives, 1)
        return _losses(
            scores[:positives].repeat_interleave(repeats), scores[positives:], targets, objective
        )
    return _losses(scores, None, targets, objective)


class _Adam:
    """Adam (Kingma and Ba 2015) on one tensor, with bias correction.

    Written out rather than taken from ``torch.optim``: the refit runs on every client in every
    round, and ``torch.optim``'s first use imports ``torch._dynamo`` (seconds, and a probe of
    every installed package).
    """

    def __init__(self, like: Tensor, learning_rate: float) -> None:
        self._rate = learning_rate
        self._first = torch.zeros_like(like)
        self._second = torch.zeros_like(like)
        self._steps = 0

    def step(self, value: Tensor, gradient: Tensor) -> Tensor:
        """``value`` after one step along ``gradient`` (betas 0.9 and 0.999, eps 1e-8)."""
        self._steps += 1
        self._first.mul_(0.9).add_(gradient, alpha=0.1)
        self._second.mul_(0.999).addcmul_(gradient, gradient, value=0.001)
        first = self._first / (1 - 0.9**self._steps)
        second = self._second / (1 - 0.999**self._steps)
        return value - self._rate * first / (second.sqrt() + 1e-8)


def epoch_examples(
    model: Recommender,
    users: IntArray,
    items: IntArray,
    ratings: FloatArray,
    config: LocalTrainingConfig,
    rng: np.random.Generator,
    candidates: IntArray | None = None,
) -> Examples:
    """One epoch of ``config.objective``'s examples over the model's catalogue (negatives from
    ``candidates`` when given)."""
    return build_examples(
        users,
        items,
        ratings,
        num_items=model.num_items,
        objective=config.objective,
        num_negatives=config.num_negatives,
        rng=rng,
        candidates=candidates,
    )


def train_user(
    model: Recommender,
    state: Tensor,
    items: IntArray,
    ratings: FloatArray,
    config: LocalTrainingConfig,
    rng: np.random.Generator,
    candidates: IntArray | None = None,
) -> tuple[float, int]:
    """Run local SGD for one user on their own interactions; updates ``state`` and ``model``.

    The user state, item rows and dense weights each take their own step size and L2
    (:meth:`LocalTrainingConfig.group_learning_rates`); plain SGD leaves untouched item rows
    exactly unchanged.

    Args:
        model: the model whose shared parameters are trained (a client's working copy).
        state: shape ``(state_dim,)`` leaf tensor with ``requires_grad``; the user's own state.
        items: shape ``(n,)`` the user's observed items.
        ratings: shape ``(n,)`` their ratings.
        config: local optimisation settings.
        rng: the client's training generator.
        candidates: items negatives are drawn from (default: the catalogue).

    Returns:
        ``(mean loss over all steps, number of examples seen)``.
    """
    groups = _parameter_groups(model, [state], config)
    l2 = config.group_l2()
    users = np.zeros(items.shape[0], dtype=np.int64)
    total_loss = 0.0
    steps = 0
    examples_seen = 0
    for _ in range(config.epochs):
        examples = epoch_examples(model, users, items, ratings, config, rng, candidates)
        for batch in examples.batches(config.batch_size, rng):
            states = state.unsqueeze(0).expand(len(batch), -1)
            loss = batch_loss(model, states, batch, config.objective, l2)
            torch.autograd.backward(loss)
            _sgd_step(groups)
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
    groups = _parameter_groups(model, model.user_parameters(), config)
    l2 = config.group_l2()
    losses: list[float] = []
    for _ in range(config.epochs):
        examples = epoch_examples(model, train.users, train.items, train.ratings, config, rng)
        epoch_loss = 0.0
        steps = 0
        for batch in examples.batches(config.batch_size, rng):
            states = model.users(torch.from_numpy(batch.users))
            loss = batch_loss(model, states, batch, config.objective, l2)
            torch.autograd.backward(loss)
            _sgd_step(groups)
            epoch_loss += float(loss.detach())
            steps += 1
        losses.append(epoch_loss / max(steps, 1))
        if on_epoch is not None:
            on_epoch(losses[-1])
    return losses
