"""Federated training of the recommenders over any aggregation backend.

One client per user. A round goes: the server samples clients and broadcasts the shared
parameters; each client trains locally on its own interactions, starting from the broadcast and
from its *own persistent user state* (which never leaves it), and computes the delta of the whole
shared vector; the deltas go into ``Aggregator.aggregate`` (plain, or a secure protocol); the
server updates the global model from the aggregate alone.

Three decisions shape this module:

* **Client and server code are separate objects.** :class:`FederatedClient` produces a
  :class:`ClientUpdate`; :class:`FederatedServer` consumes only an
  :class:`~protocols.aggregators.AggregationResult`. The trainer is the simulated network: it
  hands the clients' deltas straight to the aggregator (standing in for the protocol run between
  clients and server) and passes only the aggregator's result to the server. A spy test pins this.
* **Uploads are dense, or cover the announced rows.** A delta covers the entire item table,
  untouched rows included (as exact zeros), so the upload's shape says nothing about which items a
  user touched; with ``FederatedConfig.sparse`` it covers the rows a support sum announced, the
  same public rows for every client (:mod:`models.sparse_rounds`). Each entry is clipped to
  ``[-clip, clip]`` by the client, the same range the secure backends quantize over.
* **Item rows are summed, dense weights averaged.** Each item row is updated by the few clients
  that touched it; averaging its delta over every client in the round would divide it by the
  round size and stall training (ANCHORS: 0.42 vs 0.55-0.59 HR@10 on ML-100K). So the server adds
  ``item_learning_rate * sum`` on :class:`~models.base.ItemTable` entries and
  ``dense_learning_rate * sum / survivors`` on dense weights (MLPs, global biases), which every
  client updates and which a plain sum would step too far. The server knows the survivor count
  anyway; it learns nothing per client.

Sampling clients and scheduling dropouts use a seeded ``numpy.random.Generator``: they simulate the
environment, and are no part of any protocol's randomness (the secure backends draw their own).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from models.base import Recommender
from models.cohort import LocalPlan, train_cohort
from models.data import Interactions, LeaveOneOutSplit, RatingSplit
from models.evaluation import RankingMetrics, evaluate_ranking, evaluate_ratings
from models.parameters import flatten_shared, load_shared
from models.server import FederatedServer, RowUploadLayout, ServerStep, UploadLayout
from models.server_optimizers import ServerOptimizerConfig
from models.sparse_rounds import DROPOUT_ROUNDS, SparseConfig, SparseRounds, split_dropouts
from models.training import (
    Examples,
    LocalTrainingConfig,
    build_examples,
    refit_states,
    train_user,
)
from protocols.aggregators import AggregationResult, Aggregator
from protocols.aggregators.sparse import SupportRound
from protocols.defaults import DEFAULT_CLIP
from secagg.errors import InsufficientSurvivorsError, ParameterError

__all__ = [
    "ClientUpdate",
    "FederatedClient",
    "FederatedConfig",
    "FederatedServer",
    "FederatedTrainer",
    "RoundRecord",
    "ServerStep",
    "TrainingHistory",
]

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
DeltaArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class FederatedConfig:
    """Settings of a federated training run.

    Attributes:
        rounds: rounds run by :meth:`FederatedTrainer.run` when it is not told otherwise.
        clients_per_round: clients sampled per round (all clients if fewer exist).
        local: the clients' local optimisation settings.
        clip: each client clips every delta entry to ``[-clip, clip]`` (default
            :data:`~protocols.defaults.DEFAULT_CLIP`, the aggregators' own); must not exceed the
            aggregator's own ``clip`` when it has one.
        item_learning_rate: the server's base step on item-table rows: applied to their mean
            delta over the clients that touched them with ``counts``, else to their *sum*.
        dense_learning_rate: the server's base step on dense weights, applied to their *mean*
            over survivors.
        server_optimizer: FedAvg (``sgd``), FedAvgM, FedAdam or FedYogi, and its schedule
            (:mod:`models.server_optimizers`).
        counts: clients upload one touch indicator per item inside the secure sum, so the
            server learns per-item counts and steps each row by its mean delta
            (:class:`~models.server.UploadLayout`).
        eval_refit_steps: refit steps of every client's private state before an evaluation
            (default ``local.refit_steps``; the refit copy is used for scoring only).
        dropout_fraction: share of sampled clients that drop each round, each at a random protocol
            round 0-3 (0 disables the simulation).
        eval_every: evaluate every this many rounds (and after the last); 0 evaluates only when
            asked.
        top_k: cut-off of HR@K and NDCG@K.
        seed: seed of client sampling, dropout schedules, client states and negative sampling.
        cohort_training: simulate a round's clients in lockstep (:mod:`models.cohort`), each
            with the result it would compute alone up to rounding; ``False`` runs them one after
            another through :meth:`FederatedClient.local_update` (the reference, slower).
        sparse: run sparse rounds (:mod:`models.sparse_rounds`): a support sum, then the item
            rows the cohort touched instead of the whole catalogue; ``None`` uploads densely.
    """

    rounds: int = 40
    clients_per_round: int = 50
    local: LocalTrainingConfig = field(default_factory=LocalTrainingConfig)
    clip: float = DEFAULT_CLIP
    item_learning_rate: float = 1.0
    dense_learning_rate: float = 1.0
    server_optimizer: ServerOptimizerConfig = field(default_factory=ServerOptimizerConfig)
    counts: bool = False
    eval_refit_steps: int | None = None
    dropout_fraction: float = 0.0
    eval_every: int = 5
    top_k: int = 10
    seed: int = 0
    cohort_training: bool = True
    sparse: SparseConfig | None = None

    def __post_init__(self) -> None:
        for name in ("rounds", "clients_per_round", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive int, got {value!r}")
        if self.eval_every < 0:
            raise ParameterError(f"eval_every must be >= 0, got {self.eval_every}")
        for name in ("clip", "item_learning_rate", "dense_learning_rate"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.eval_refit_steps is not None and self.eval_refit_steps < 0:
            raise ParameterError(f"eval_refit_steps must be >= 0, got {self.eval_refit_steps}")
        if not 0.0 <= self.dropout_fraction < 1.0:
            raise ParameterError(
                f"dropout_fraction is {self.dropout_fraction}; it must lie in [0, 1)"
            )


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """What one client produces in a round; only ``delta`` is handed to the aggregator.

    Attributes:
        client_id: the client (user) id.
        delta: shape ``(num_shared_parameters,)`` float64 (in a sparse round, the round's
            :class:`~models.server.RowUploadLayout` delta), clipped to ``[-clip, clip]``; all
            zeros when ``diverged``.
        num_examples: training examples the client processed.
        loss: the client's mean local loss (kept for the simulation's logs only).
        diverged: local training produced a non-finite loss or parameter; the client uploads
            nothing this round and keeps its previous private state.
    """

    client_id: int
    delta: DeltaArray
    num_examples: int
    loss: float
    diverged: bool = False


class FederatedClient:
    """One user's device: their interactions and private user state, and local training.

    The state is private: it is updated only here and read only by on-device uses (recommending,
    local evaluation); it is never part of a :class:`ClientUpdate`.
    """

    def __init__(
        self,
        client_id: int,
        items: IntArray,
        ratings: FloatArray,
        state: Tensor,
        *,
        seed: int,
    ) -> None:
        """Create the client.

        Args:
            client_id: the user id.
            items: shape ``(n,)`` the user's training items.
            ratings: shape ``(n,)`` their ratings.
            state: shape ``(state_dim,)`` the initial private user state.
            seed: seed of the client's negative sampling.
        """
        if items.shape != ratings.shape or items.ndim != 1:
            raise ParameterError("items and ratings must be 1-D arrays of equal length")
        self.client_id = client_id
        self._items = items.astype(np.int64, copy=True)
        self._ratings = ratings.astype(np.float32, copy=True)
        self._state = state.detach().clone()
        self._rng = np.random.default_rng([seed, client_id])

    @property
    def items(self) -> IntArray:
        """The client's interactions so far (a copy), shape ``(n,)``."""
        return self._items.copy()

    @property
    def ratings(self) -> FloatArray:
        """The ratings of :attr:`items` (a copy), shape ``(n,)``."""
        return self._ratings.copy()

    @property
    def seen_items(self) -> IntArray:
        """Distinct items the client has interacted with, sorted."""
        return np.unique(self._items)

    @property
    def state(self) -> Tensor:
        """A copy of the private user state, shape ``(state_dim,)``; for on-device use only."""
        return self._state.clone()

    @property
    def num_interactions(self) -> int:
        """Number of local interactions."""
        return int(self._items.shape[0])

    def add_interactions(self, items: npt.ArrayLike, ratings: npt.ArrayLike | None = None) -> None:
        """Append new interactions; they are trained on from the next round this client joins.

        Args:
            items: item ids.
            ratings: one rating per item (default 1.0, an implicit interaction).

        Raises:
            ParameterError: shapes differ or ids are negative.
        """
        new_items = np.asarray(items, dtype=np.int64).reshape(-1)
        new_ratings = (
            np.ones(new_items.shape[0], dtype=np.float32)
            if ratings is None
            else np.asarray(ratings, dtype=np.float32).reshape(-1)
        )
        if new_ratings.shape != new_items.shape:
            raise ParameterError("give exactly one rating per new item")
        if new_items.size and new_items.min() < 0:
            raise ParameterError("item ids must be non-negative")
        self._items = np.concatenate([self._items, new_items])
        self._ratings = np.concatenate([self._ratings, new_ratings])

    def refit(
        self,
        workspace: Recommender,
        config: LocalTrainingConfig,
        steps: int,
        candidates: IntArray | None = None,
    ) -> Tensor:
        """The private state refit against ``workspace``'s shared model (nothing is uploaded).

        Args:
            workspace: a model holding the current shared parameters.
            config: objective, negatives, L2 and the refit's step size.
            steps: Adam steps (0 returns the state as it is).
            candidates: items its negatives are drawn from (default: the catalogue).

        Returns:
            The refit state, shape ``(state_dim,)``.
        """
        users = np.zeros(self._items.shape[0], dtype=np.int64)
        fitted = refit_states(
            workspace,
            self._state.unsqueeze(0),
            users,
            self._items,
            self._ratings,
            config,
            self._rng,
            steps=steps,
            candidates=candidates,
        )
        return fitted[0]

    def local_update(
        self,
        workspace: Recommender,
        global_vector: FloatArray,
        config: LocalTrainingConfig,
        clip: float,
        candidates: IntArray | None = None,
    ) -> ClientUpdate:
        """Refit the private state, train locally from the broadcast, return the clipped delta.

        A non-finite loss or parameter anywhere in local training (the *divergence guard*)
        yields a ``diverged`` update that the trainer leaves out of the round, and the client
        keeps its state from before the round.

        Args:
            workspace: a model to train in; its shared part is overwritten from ``global_vector``.
            global_vector: the broadcast shared parameters, float32.
            config: local optimisation settings.
            clip: clip bound of every delta entry.
            candidates: items its negatives are drawn from (a sparse round's announced rows;
                default: the catalogue).

        Returns:
            The update; the private state is updated in place as a side effect.
        """
        self._check_catalogue(workspace.num_items)
        load_shared(workspace, global_vector)
        start = flatten_shared(workspace)
        refit = self.refit(workspace, config, config.refit_steps, candidates)
        state = refit.clone().requires_grad_(True)
        loss, examples = train_user(
            workspace, state, self._items, self._ratings, config, self._rng, candidates
        )
        delta = flatten_shared(workspace).astype(np.float64) - start.astype(np.float64)
        return self.finish_update(state.detach(), delta, loss, examples, clip)

    def _check_catalogue(self, num_items: int) -> None:
        if self._items.shape[0] and self._items.max() >= num_items:
            raise ParameterError(f"client {self.client_id} holds an item id beyond the catalogue")

    def plan_round(
        self,
        num_items: int,
        config: LocalTrainingConfig,
        candidates: IntArray | None = None,
    ) -> LocalPlan:
        """This round's draws, in the order :meth:`local_update` makes them: the refit's
        negatives, then each epoch's examples and batch order (for :func:`train_cohort`).

        ``candidates`` restricts the negatives to those items (the rows a sparse round
        covers); by default they come from the whole catalogue.
        """
        self._check_catalogue(num_items)
        users = np.zeros(self._items.shape[0], dtype=np.int64)

        def draw() -> Examples:
            return build_examples(
                users,
                self._items,
                self._ratings,
                num_items=num_items,
                objective=config.objective,
                num_negatives=config.num_negatives,
                rng=self._rng,
                candidates=candidates,
            )

        refit = draw() if config.refit_steps > 0 and self._items.shape[0] else None
        batches: list[Examples] = []
        for _ in range(config.epochs):
            batches.extend(draw().batches(config.batch_size, self._rng))
        return LocalPlan(self._items.copy(), refit, tuple(batches))

    def finish_update(
        self, state: Tensor, delta: DeltaArray, loss: float, examples: int, clip: float
    ) -> ClientUpdate:
        """Keep the trained state and clip the delta, or skip both if anything diverged.

        A non-finite loss, state or delta (the *divergence guard*) yields a ``diverged`` update
        that the trainer leaves out of the round, and the client keeps its state from before.
        """
        finite = np.isfinite(loss) and bool(torch.isfinite(state).all())
        if not (finite and np.all(np.isfinite(delta))):
            logger.warning("client %d: local training diverged; update skipped", self.client_id)
            return ClientUpdate(self.client_id, np.zeros_like(delta), examples, loss, True)
        self._state = state.detach().clone()
        np.clip(delta, -clip, clip, out=delta)
        return ClientUpdate(self.client_id, delta, examples, loss)


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """The log line of one round.

    Attributes:
        round: 1-based round number.
        sampled: clients asked to take part.
        survivors: clients whose deltas reached the aggregate.
        dropped: clients that dropped before their delta counted.
        aborted: the aggregation failed (too few survivors) and the model was not updated.
        client_loss: mean local loss of the sampled clients (simulation log, not server-visible).
        update_norm: L2 norm of the server's step.
        ranking: leave-one-out metrics, when evaluated this round.
        rmse: test RMSE, when evaluated this round on a rating split.
        client_seconds: time spent in local training.
        aggregation_seconds: time spent in the aggregator.
        abort_reason: why the aggregation aborted (the backend's message), else None.
        diverged: sampled clients whose local training diverged; they uploaded nothing (the
            divergence guard), so the protocol saw them as clients that never joined.
        touched_items: items some survivor touched (the server's per-item counts), when the
            uploads carry counts.
        announced_rows: rows a sparse round's row sum covered (``None`` in a dense round).
    """

    round: int
    sampled: tuple[int, ...]
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    aborted: bool
    client_loss: float
    update_norm: float
    ranking: RankingMetrics | None
    rmse: float | None
    client_seconds: float
    aggregation_seconds: float
    abort_reason: str | None = None
    diverged: tuple[int, ...] = ()
    touched_items: int | None = None
    announced_rows: int | None = None


@dataclass(slots=True)
class TrainingHistory:
    """All round records of a run, oldest first."""

    records: list[RoundRecord] = field(default_factory=list)

    def last_ranking(self) -> RankingMetrics | None:
        """The most recent ranking evaluation, if any."""
        for record in reversed(self.records):
            if record.ranking is not None:
                return record.ranking
        return None

    def last_rmse(self) -> float | None:
        """The most recent RMSE evaluation, if any."""
        for record in reversed(self.records):
            if record.rmse is not None:
                return record.rmse
        return None

    def table(self) -> str:
        """A plain-text table of the evaluated rounds."""
        lines = [
            f"{'round':>5} {'clients':>7} {'dropped':>7} {'loss':>8} {'HR@K':>7} {'NDCG@K':>7} "
            f"{'RMSE':>7} {'secs':>6}"
        ]
        for r in self.records:
            if r.ranking is None and r.rmse is None:
                continue
            hr = f"{r.ranking.hit_ratio:7.4f}" if r.ranking else f"{'-':>7}"
            ndcg = f"{r.ranking.ndcg:7.4f}" if r.ranking else f"{'-':>7}"
            error = f"{r.rmse:7.4f}" if r.rmse is not None else f"{'-':>7}"
            seconds = r.client_seconds + r.aggregation_seconds
            lines.append(
                f"{r.round:>5} {len(r.survivors):>7} {len(r.dropped):>7} {r.client_loss:8.4f} "
                f"{hr} {ndcg} {error} {seconds:6.2f}"
            )
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One round's local training and secure sum, as the trainer records them.

    Attributes:
        updates: the clients' updates (those that trained).
        outcome: the aggregate, or the backend's reason for aborting.
        layout: a sparse round's upload layout (``None`` when dense).
        client_seconds: seconds of local training.
        aggregation_seconds: seconds of the secure sum(s).
        early: clients lost in a sparse round's support sum (they never trained).
    """

    updates: list[ClientUpdate]
    outcome: AggregationResult | str
    layout: RowUploadLayout | None
    client_seconds: float
    aggregation_seconds: float
    early: tuple[int, ...] = ()


def _mean_finite(values: list[float]) -> float:
    """Mean of the finite entries (a diverged client's NaN loss is reported, not averaged)."""
    finite = [value for value in values if np.isfinite(value)]
    return float(np.mean(finite)) if finite else float("nan")


class FederatedTrainer:
    """Runs federated rounds: clients train, the aggregator sums, the server applies the sum.

    Attributes:
        config: the run's settings.
        aggregator: the aggregation backend.
        server: the server side (global model).
        clients: client id -> :class:`FederatedClient`, one per user.
        history: the records of the rounds run so far.
    """

    def __init__(
        self,
        model: Recommender,
        train: Interactions,
        aggregator: Aggregator,
        config: FederatedConfig | None = None,
        *,
        evaluation: LeaveOneOutSplit | RatingSplit | None = None,
    ) -> None:
        """Set up the server, one client per user, and the simulated network.

        Args:
            model: the global model; trained in place (its user table is not used).
            train: the training interactions; client ``u`` gets the events of user ``u``.
            aggregator: the backend that sums the clients' deltas.
            config: run settings (defaults to :class:`FederatedConfig()`).
            evaluation: a leave-one-out split (HR/NDCG/AUC) or a rating split (RMSE on its
                ``test`` side), evaluated every ``config.eval_every`` rounds.

        Raises:
            ParameterError: sizes disagree, or ``config.clip`` exceeds the aggregator's clip.
        """
        self.config = config if config is not None else FederatedConfig()
        if train.num_items != model.num_items or train.num_users > model.num_users:
            raise ParameterError(
                f"model is sized for {model.num_users} users x {model.num_items} items, the data "
                f"has {train.num_users} x {train.num_items}"
            )
        aggregator_clip = getattr(aggregator, "clip", None)
        if isinstance(aggregator_clip, int | float) and self.config.clip > aggregator_clip:
            raise ParameterError(
                f"config.clip={self.config.clip} exceeds the aggregator's clip="
                f"{aggregator_clip}; deltas would be clipped twice. Use the same clip for both"
            )
        self.aggregator = aggregator
        self.server = FederatedServer(
            model,
            item_learning_rate=self.config.item_learning_rate,
            dense_learning_rate=self.config.dense_learning_rate,
            optimizer=self.config.server_optimizer,
            counts=self.config.counts,
            clip=self.config.clip,
            total_rounds=self.config.rounds,
        )
        self.evaluation = evaluation
        self.history = TrainingHistory()
        # One working copy of the model serves every simulated client in turn; each client
        # overwrites its shared part from the broadcast before training, so nothing carries over.
        self._workspace = copy.deepcopy(model)
        self._rng = np.random.default_rng(self.config.seed)
        self.clients = self._make_clients(model, train)
        self._round = 0
        self._sparse = self._make_sparse_rounds(aggregator, model.num_users)

    def _make_sparse_rounds(self, aggregator: Aggregator, users: int) -> SparseRounds | None:
        sparse = self.config.sparse
        if sparse is None:
            return None
        cohort = min(self.config.clients_per_round, users)
        return SparseRounds(aggregator, self.server.upload, sparse, cohort, seed=self.config.seed)

    def _make_clients(self, model: Recommender, train: Interactions) -> dict[int, FederatedClient]:
        clients: dict[int, FederatedClient] = {}
        rows_by_user = train.user_rows()
        for user in range(model.num_users):
            rows = rows_by_user[user] if user < len(rows_by_user) else np.zeros(0, np.int64)
            seed_words = np.random.SeedSequence([self.config.seed, user]).generate_state(2)
            generator = torch.Generator().manual_seed(int(seed_words[0]))
            state = model.init_user_states(1, generator)[0]
            clients[user] = FederatedClient(
                user, train.items[rows], train.ratings[rows], state, seed=self.config.seed
            )
        return clients

    @property
    def model(self) -> Recommender:
        """The global model (shared part trained; user table unused)."""
        return self.server.model

    @property
    def sparse_rounds(self) -> SparseRounds | None:
        """The sparse rounds' server side (``None`` when uploads are dense)."""
        return self._sparse

    @property
    def rounds_done(self) -> int:
        """Rounds run so far."""
        return self._round

    def user_states(self) -> Tensor:
        """All clients' private states stacked, shape ``(num_users, state_dim)``.

        Simulation harness only (evaluation, plots): in a deployment the states stay on devices.
        """
        return torch.stack([self.clients[u].state for u in range(len(self.clients))])

    def _sample_clients(self) -> tuple[int, ...]:
        eligible = np.asarray([u for u, c in self.clients.items() if c.num_interactions > 0])
        if eligible.shape[0] == 0:
            raise ParameterError("no client holds any training interaction")
        count = min(self.config.clients_per_round, eligible.shape[0])
        return tuple(sorted(int(u) for u in self._rng.choice(eligible, count, replace=False)))

    def _dropout_schedule(self, sampled: tuple[int, ...]) -> dict[int, int]:
        count = round(self.config.dropout_fraction * len(sampled))
        if count == 0:
            return {}
        dropping = self._rng.choice(np.asarray(sampled), count, replace=False)
        sums = 1 if self._sparse is None else 2
        rounds = self._rng.integers(0, sums * DROPOUT_ROUNDS, size=count)
        return {int(u): int(r) for u, r in zip(dropping, rounds, strict=True)}

    def _secure_sum(
        self,
        updates: list[ClientUpdate],
        dropouts: Mapping[int, int],
        sparse: tuple[SparseRounds, SupportRound, RowUploadLayout] | None = None,
    ) -> AggregationResult | str:
        """The simulated network: clients' deltas go into the aggregator, only its result out.

        Returns the backend's reason when it aborts for lack of survivors (the round is skipped).
        """
        upload: UploadLayout | RowUploadLayout = self.server.upload if sparse is None else sparse[2]
        inputs = {u.client_id: upload.encode(u.delta) for u in updates if not u.diverged}
        late = {client: when for client, when in dropouts.items() if client in inputs}
        try:
            if sparse is not None:
                return sparse[0].aggregate(inputs, sparse[1], late)
            return self.aggregator.aggregate(inputs, dropouts=late or None)
        except InsufficientSurvivorsError as exc:
            logger.warning("round %d aborted: %s", self._round, exc)
            return str(exc)

    def _local_updates(
        self,
        sampled: tuple[int, ...],
        broadcast: npt.NDArray[np.float32],
        layout: RowUploadLayout | None = None,
    ) -> list[ClientUpdate]:
        """The clients' clipped deltas: dense, or on ``layout``'s rows (negatives from them)."""
        local, clip = self.config.local, self.config.clip
        clients = [self.clients[u] for u in sampled]
        rows = None if layout is None else layout.rows
        if not self.config.cohort_training:
            updates = [
                c.local_update(self._workspace, broadcast, local, clip, rows) for c in clients
            ]
            if layout is None:
                return updates
            return [replace(u, delta=layout.restrict(u.delta)) for u in updates]
        load_shared(self._workspace, broadcast)
        plans = [c.plan_round(self._workspace.num_items, local, rows) for c in clients]
        states = torch.stack([c.state for c in clients])
        result = train_cohort(self._workspace, states, plans, local)
        return [
            c.finish_update(
                result.states[i],
                result.delta(i, self._workspace)
                if layout is None
                else layout.gather(result.changes[i]),
                result.losses[i],
                result.examples[i],
                clip,
            )
            for i, c in enumerate(clients)
        ]

    def _exchange(self, sampled: tuple[int, ...], dropouts: Mapping[int, int]) -> _Exchange:
        """Local training and the secure sum of one round, dense or sparse."""
        broadcast = self.server.broadcast()
        if self._sparse is None:
            started = time.perf_counter()
            updates = self._local_updates(sampled, broadcast)
            trained = time.perf_counter()
            outcome = self._secure_sum(updates, dropouts)
            return _Exchange(
                updates, outcome, None, trained - started, time.perf_counter() - trained
            )
        support_drops, row_drops = split_dropouts(dropouts)
        started = time.perf_counter()
        touched = {u: self.clients[u].seen_items for u in sampled}
        try:
            announced, layout = self._sparse.announce(touched, support_drops)
        except InsufficientSurvivorsError as exc:
            logger.warning("round %d aborted in the support sum: %s", self._round, exc)
            return _Exchange([], str(exc), None, 0.0, time.perf_counter() - started)
        support_seconds = time.perf_counter() - started
        started = time.perf_counter()
        # A client lost anywhere in the support sum is gone: it does not train or upload rows.
        trainers = tuple(u for u in announced.survivors if u not in support_drops)
        updates = self._local_updates(trainers, broadcast, layout)
        trained = time.perf_counter()
        outcome = self._secure_sum(updates, row_drops, (self._sparse, announced, layout))
        return _Exchange(
            updates,
            outcome,
            layout,
            trained - started,
            support_seconds + time.perf_counter() - trained,
            tuple(sorted(set(sampled) - set(trainers))),
        )

    def run_round(self) -> RoundRecord:
        """Run one round: sample, train locally, aggregate, update, maybe evaluate.

        Returns:
            The round's record (also appended to :attr:`history`).
        """
        self._round += 1
        sampled = self._sample_clients()
        dropouts = self._dropout_schedule(sampled)
        exchange = self._exchange(sampled, dropouts)
        updates, outcome = exchange.updates, exchange.outcome
        result = None if isinstance(outcome, str) else outcome
        if result is None:
            step = ServerStep(0, 0.0)
        elif exchange.layout is None:
            step = self.server.apply(result)
        else:  # the public announced rows, besides the aggregate
            step = self.server.apply(result, exchange.layout)
        diverged = tuple(u.client_id for u in updates if u.diverged)
        dropped = (
            tuple(sorted(set(exchange.early) | set(result.dropped)))
            if result is not None
            else tuple(sorted(dropouts))
        )
        evaluate_now = self.config.eval_every > 0 and (
            self._round % self.config.eval_every == 0 or self._round == self.config.rounds
        )
        ranking, error = self.evaluate() if evaluate_now else (None, None)
        record = RoundRecord(
            round=self._round,
            sampled=sampled,
            survivors=result.survivors if result is not None else (),
            dropped=dropped,
            aborted=result is None,
            client_loss=_mean_finite([u.loss for u in updates]),
            update_norm=step.update_norm,
            ranking=ranking,
            rmse=error,
            client_seconds=exchange.client_seconds,
            aggregation_seconds=exchange.aggregation_seconds,
            abort_reason=outcome if isinstance(outcome, str) else None,
            diverged=diverged,
            touched_items=step.touched_items,
            announced_rows=None if exchange.layout is None else int(exchange.layout.rows.shape[0]),
        )
        self.history.records.append(record)
        logger.info(
            "round %d: %d/%d survived, loss %.4f, step %.4f%s%s",
            record.round,
            len(record.survivors),
            len(sampled),
            record.client_loss,
            record.update_norm,
            f", HR@{ranking.k} {ranking.hit_ratio:.4f} NDCG {ranking.ndcg:.4f}" if ranking else "",
            f", RMSE {error:.4f}" if error is not None else "",
        )
        return record

    def evaluate(self) -> tuple[RankingMetrics | None, float | None]:
        """Evaluate the global model with the clients' private states on ``evaluation``.

        Returns:
            ``(ranking metrics, None)`` for a leave-one-out split, ``(None, rmse)`` for a rating
            split, ``(None, None)`` without an evaluation set.
        """
        if isinstance(self.evaluation, LeaveOneOutSplit):
            states = self.evaluation_states()
            return evaluate_ranking(self.model, states, self.evaluation, k=self.config.top_k), None
        if isinstance(self.evaluation, RatingSplit):
            states = self.evaluation_states()
            return None, evaluate_ratings(self.model, states, self.evaluation.test)
        return None, None

    def evaluation_states(self) -> Tensor:
        """Every client's state refit against the current global model, for scoring only.

        Each client would refit on its own device before recommending; the simulation refits
        all of them in one batched pass, which gives each the result it would get alone
        (:func:`~models.training.refit_states`). The clients' stored states are not changed, so
        evaluating does not alter training.
        """
        local = self.config.local
        steps = (
            local.refit_steps
            if self.config.eval_refit_steps is None
            else self.config.eval_refit_steps
        )
        states = self.user_states()
        if steps == 0:
            return states
        users = np.concatenate(
            [np.full(c.num_interactions, u, dtype=np.int64) for u, c in self.clients.items()]
        )
        items = np.concatenate([c.items for c in self.clients.values()])
        ratings = np.concatenate([c.ratings for c in self.clients.values()])
        rng = np.random.default_rng([self.config.seed, self._round, 7])
        return refit_states(self.model, states, users, items, ratings, local, rng, steps=steps)

    def run(
        self,
        rounds: int | None = None,
        *,
        on_round: Callable[[RoundRecord], None] | None = None,
    ) -> TrainingHistory:
        """Run ``rounds`` rounds (default ``config.rounds``).

        Args:
            rounds: how many rounds to run now.
            on_round: called with each round's record (progress bars, live tables).

        Returns:
            :attr:`history`, which holds every round run so far.
        """
        count = self.config.rounds if rounds is None else rounds
        if count < 0:
            raise ParameterError(f"rounds must be >= 0, got {count}")
        for _ in range(count):
            record = self.run_round()
            if on_round is not None:
                on_round(record)
        return self.history
