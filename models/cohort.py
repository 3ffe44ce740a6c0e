"""A round's local training for many simulated clients at once.

Each client of a round trains alone on its own device: refit its private state, then SGD over its
own batches from the broadcast model (:meth:`~models.federated.FederatedClient.local_update`).
Simulating that client after client spends most of a round in per-step overhead: a client takes
a few dozen steps of 32 examples. This module runs the cohort in lockstep instead, and gives each
client what it would compute alone, up to floating-point rounding:

* Every client draws its examples and batch order from its own generator, in the order its own
  training would (:class:`LocalPlan`), so the randomness is the client's, not the cohort's.
* The refits are one :func:`~models.training.refit_on_examples` over the cohort's states: each
  user's loss involves only their own state, and Adam works per coordinate.
* Training vectorises one client's SGD step over the cohort (``torch.func.vmap``). Each client
  trains a copy of the rows it touches (its positives and sampled negatives) and of the dense
  weights; a client whose batches have run out takes zero-weight padding steps, whose gradient is
  exactly zero, so plain SGD leaves it unchanged.

The result is each client's change, sparse in the item rows (:class:`RowDelta`); its dense form
in the upload layout is what the clients then clip and check exactly as alone
(:meth:`~models.federated.FederatedClient.finish_update`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from models.base import Recommender
from models.objectives import Objective
from models.parameters import SharedLayout
from models.training import Examples, LocalTrainingConfig, objective_terms, refit_on_examples

__all__ = ["CohortResult", "LocalPlan", "RowDelta", "train_cohort"]

IntArray = npt.NDArray[np.int64]
DeltaArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LocalPlan:
    """One client's draws for a round: refit examples and training batches, in its own order.

    Attributes:
        items: shape ``(n,)`` the client's observed items.
        refit: the refit's examples (``None`` when the refit is skipped).
        batches: the training batches of every epoch, in order.
    """

    items: IntArray
    refit: Examples | None
    batches: tuple[Examples, ...]

    @property
    def rows(self) -> IntArray:
        """Sorted distinct items the batches touch (positives and negatives)."""
        parts = [self.items[:0]]
        for batch in self.batches:
            parts.append(batch.items)
            if batch.negatives is not None:
                parts.append(batch.negatives)
        return np.unique(np.concatenate(parts))


@dataclass(frozen=True, slots=True)
class RowDelta:
    """One client's change kept sparse: the rows it touched, and the dense weights.

    Attributes:
        rows: sorted items the client touched (its positives and sampled negatives).
        tables: item-table parameter name -> float64 change of ``rows``, shape
            ``(len(rows), width)``.
        dense: dense parameter name -> its float64 change, in the parameter's shape.
    """

    rows: IntArray
    tables: dict[str, DeltaArray]
    dense: dict[str, DeltaArray]

    def flat(self, model: Recommender) -> DeltaArray:
        """The change in ``model``'s upload layout: zero on every row the client did not touch."""
        layout = SharedLayout.of(model)
        delta = np.zeros(layout.size)
        for slot in layout.slots:
            block = delta[slot.offset : slot.offset + slot.size]
            if slot.per_item:
                block.reshape(slot.shape)[self.rows] = self.tables[slot.name]
            else:
                block[:] = self.dense[slot.name].reshape(-1)
        return delta


@dataclass(frozen=True, slots=True)
class CohortResult:
    """What each client's local training produced, in the order of the plans.

    Attributes:
        states: shape ``(C, state_dim)`` the trained private states.
        changes: each client's change (trained minus broadcast), sparse in the item rows.
        losses: each client's mean training loss over its steps.
        examples: examples each client trained on.
    """

    states: Tensor
    changes: list[RowDelta]
    losses: list[float]
    examples: list[int]

    def delta(self, client: int, model: Recommender) -> DeltaArray:
        """Client ``client``'s (its index in the plans) dense delta in the upload layout."""
        return self.changes[client].flat(model)


class _Terms(nn.Module):
    """Per-example losses and touched items of a model, as a module for ``functional_call``."""

    def __init__(self, model: Recommender, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(
        self, states: Tensor, items: Tensor, negatives: Tensor, targets: Tensor
    ) -> tuple[Tensor, Tensor]:
        return objective_terms(self.model, states, items, negatives, targets, self.objective)


@dataclass(frozen=True, slots=True)
class _Steps:
    """The cohort's batches as ``(T, C, B)`` tensors; padding has weight 0."""

    items: Tensor
    negatives: Tensor
    targets: Tensor
    weights: Tensor
    active: Tensor


def _local_steps(plans: Sequence[LocalPlan], rows: Sequence[IntArray], batch: int) -> _Steps:
    """Every client's batches with item ids mapped into its own rows, padded to one shape."""
    count, steps = len(plans), max((len(p.batches) for p in plans), default=0)
    items = np.zeros((steps, count, batch), np.int64)
    negatives = np.zeros_like(items)
    targets = np.zeros((steps, count, batch), np.float32)
    weights = np.zeros_like(targets)
    active = np.zeros((steps, count), np.float32)
    for client, (plan, own) in enumerate(zip(plans, rows, strict=True)):
        for step, examples in enumerate(plan.batches):
            size = len(examples)
            items[step, client, :size] = np.searchsorted(own, examples.items)
            if examples.negatives is not None:
                negatives[step, client, :size] = np.searchsorted(own, examples.negatives)
            targets[step, client, :size] = examples.targets
            weights[step, client, :size] = 1.0 / size
            active[step, client] = 1.0
    return _Steps(*(torch.from_numpy(a) for a in (items, negatives, targets, weights, active)))


_LossFn = Callable[[dict[str, Tensor], Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def _client_loss_fn(model: Recommender, config: LocalTrainingConfig) -> _LossFn:
    """One client's loss on one (padded) batch: :func:`~models.training.batch_loss` reweighted.

    ``batch_loss`` takes the batch mean plus L2 on what the batch touched; here every example
    carries weight ``1/len(batch)`` (0 for padding) so that padding contributes nothing.
    """
    terms = _Terms(model, config.objective)
    user_l2, item_l2, dense_l2 = config.group_l2()
    table_names = [f"model.{n}" for n, p in model.shared_named_parameters() if _is_table(model, p)]
    dense_names = [
        f"model.{n}" for n, p in model.shared_named_parameters() if not _is_table(model, p)
    ]

    def loss_fn(
        params: dict[str, Tensor],
        state: Tensor,
        items: Tensor,
        negatives: Tensor,
        targets: Tensor,
        weights: Tensor,
        active: Tensor,
    ) -> Tensor:
        states = state.unsqueeze(0).expand(items.shape[0], -1)
        outputs: tuple[Tensor, Tensor] = functional_call(
            terms, params, (states, items, negatives, targets)
        )
        losses, touched = outputs
        loss: Tensor = (weights * losses).sum() + user_l2 * weights.sum() * state.pow(2).sum()
        if item_l2 > 0:
            flat = touched.reshape(-1)
            per_example = sum(
                params[n].index_select(0, flat).pow(2).reshape(items.shape[0], -1).sum(1)
                for n in table_names
            )
            loss = loss + item_l2 * (weights * per_example).sum()
        if dense_l2 > 0:
            loss = loss + active * dense_l2 * sum(params[n].pow(2).sum() for n in dense_names)
        return loss

    return loss_fn


def _is_table(model: Recommender, parameter: Tensor) -> bool:
    """Whether ``parameter`` belongs to an item table (see :class:`SharedLayout`)."""
    return any(parameter is table.weight for table in model.item_tables())


def train_cohort(
    workspace: Recommender,
    states: Tensor,
    plans: Sequence[LocalPlan],
    config: LocalTrainingConfig,
) -> CohortResult:
    """Refit and train every planned client from ``workspace``'s shared parameters.

    Args:
        workspace: a model holding the broadcast; it is not changed.
        states: shape ``(C, state_dim)`` the clients' stored private states.
        plans: each client's draws (:meth:`~models.federated.FederatedClient.plan_round`).
        config: local optimisation settings.

    Returns:
        Each client's trained state, delta, loss and example count.
    """
    fitted = _refit_cohort(workspace, states, plans, config)
    trained = fitted.clone()
    changes: list[RowDelta | None] = [None] * len(plans)
    totals = torch.zeros(len(plans))
    for group in _lockstep_groups(plans):
        chosen = [plans[c] for c in group]
        states_after, group_changes, group_totals = _train_group(
            workspace, fitted[group], chosen, config
        )
        trained[group] = states_after
        totals[group] = group_totals
        for c, change in zip(group, group_changes, strict=True):
            changes[c] = change
    counts = [max(len(p.batches), 1) for p in plans]
    return CohortResult(
        states=trained,
        changes=[change for change in changes if change is not None],
        losses=[float(totals[c]) / counts[c] for c in range(len(plans))],
        examples=[sum(len(b) for b in p.batches) for p in plans],
    )


def _lockstep_groups(plans: Sequence[LocalPlan]) -> list[list[int]]:
    """Clients grouped so that no one waits long for the slowest of its group.

    Interaction counts are long-tailed, so one lockstep group would pad every client to the
    heaviest user's steps and rows. Sorted by steps, each group takes the clients with more than
    half the steps of the heaviest one left.
    """
    order = sorted(range(len(plans)), key=lambda c: len(plans[c].batches), reverse=True)
    groups: list[list[int]] = []
    while order:
        cut = len(plans[order[0]].batches) / 2
        group = [c for c in order if len(plans[c].batches) > cut] or order[:1]
        groups.append(group)
        order = order[len(group) :]
    return groups


def _train_group(
    workspace: Recommender,
    states: Tensor,
    plans: Sequence[LocalPlan],
    config: LocalTrainingConfig,
) -> tuple[Tensor, list[RowDelta], Tensor]:
    """Local SGD of one lockstep group: trained states, changes and summed step losses."""
    rows = [plan.rows for plan in plans]
    steps = _local_steps(plans, rows, config.batch_size)
    params, start = _client_copies(workspace, rows)
    user_rate, item_rate, dense_rate = config.group_learning_rates()
    rates = {n: item_rate if _is_table(workspace, p) else dense_rate for n, p in _named(workspace)}
    step_fn = vmap(grad_and_value(_client_loss_fn(workspace, config), argnums=(0, 1)))
    trained = states.clone()
    totals = torch.zeros(len(plans))
    with torch.no_grad():
        for t in range(steps.items.shape[0]):
            (gradients, state_gradient), loss = step_fn(
                params,
                trained,
                steps.items[t],
                steps.negatives[t],
                steps.targets[t],
                steps.weights[t],
                steps.active[t],
            )
            for name, gradient in gradients.items():
                params[name].add_(gradient, alpha=-rates[name])
            trained.add_(state_gradient, alpha=-user_rate)
            totals += loss * steps.active[t]
    return trained, _changes(workspace, params, start, rows), totals


def _named(model: Recommender) -> list[tuple[str, Tensor]]:
    return [(f"model.{n}", p) for n, p in model.shared_named_parameters()]


def _refit_cohort(
    workspace: Recommender, states: Tensor, plans: Sequence[LocalPlan], config: LocalTrainingConfig
) -> Tensor:
    """Every planned refit in one pass: client ``c``'s examples refit row ``c`` of ``states``."""
    chosen = [c for c, plan in enumerate(plans) if plan.refit is not None]
    if not chosen:
        return states.detach().clone()
    parts = [(c, plans[c].items, plans[c].refit) for c in chosen]
    users = np.concatenate([np.full(items.shape[0], c, np.int64) for c, items, _ in parts])
    items = np.concatenate([items for _, items, _ in parts])
    examples = Examples(
        np.concatenate([ex.users + c for c, _, ex in parts if ex is not None]),
        np.concatenate([ex.items for _, _, ex in parts if ex is not None]),
        np.concatenate([ex.targets for _, _, ex in parts if ex is not None]),
        None
        if config.objective != "bpr"
        else np.concatenate(
            [ex.negatives for _, _, ex in parts if ex is not None and ex.negatives is not None]
        ),
    )
    return refit_on_examples(workspace, states, users, items, examples, config, config.refit_steps)


def _client_copies(
    workspace: Recommender, rows: Sequence[IntArray]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Each client's working copy, stacked: its touched rows of every table (padded to the
    longest), and the dense weights. Returns the copies and their starting values."""
    width = max((r.shape[0] for r in rows), default=0)
    index = torch.zeros(len(rows), max(width, 1), dtype=torch.int64)
    for client, own in enumerate(rows):
        index[client, : own.shape[0]] = torch.from_numpy(own)
    params: dict[str, Tensor] = {}
    for name, parameter in _named(workspace):
        value = parameter.detach()
        if _is_table(workspace, parameter):
            params[name] = value[index].clone()
        else:
            params[name] = value.unsqueeze(0).expand(len(rows), *value.shape).clone()
    return params, {name: value.clone() for name, value in params.items()}


def _changes(
    workspace: Recommender,
    params: dict[str, Tensor],
    start: dict[str, Tensor],
    rows: Sequence[IntArray],
) -> list[RowDelta]:
    """Each client's change of its own rows (its copies beyond them are padding) and weights."""
    changes = []
    for client, own in enumerate(rows):
        tables: dict[str, DeltaArray] = {}
        dense: dict[str, DeltaArray] = {}
        for name, parameter in _named(workspace):
            change = (params[name][client].double() - start[name][client].double()).numpy()
            plain = name.removeprefix("model.")
            if _is_table(workspace, parameter):
                tables[plain] = change[: own.shape[0]]
            else:
                dense[plain] = change
        changes.append(RowDelta(own, tables, dense))
    return changes
