"""The demo's recommender task: data, model, local training and evaluation on one SuperNode.

Every SuperNode draws the same seeded synthetic MovieLens-style data set
(:func:`models.synthetic_interactions`), holds out each user's latest interaction
(:func:`models.leave_one_out_split`) and keeps the users ``u`` with ``u % num_partitions ==
partition_id``: a silo of users, e.g. one app's region. The model is the biased matrix
factorization of :mod:`models.mf`; only its shared part (item embeddings, item biases, global
bias) travels. Each user's private state (embedding and bias) lives in the node's
``context.state`` and never leaves it. A node trains its users one after the other with the
same SGD code as the per-user federated trainer (:func:`models.training.train_user`) and
returns the trained shared arrays, weighted by its number of training interactions.

Training is deterministic given the settings, the partition and the round (seeded generators,
one torch thread), so the deployment test can recompute what each node uploads and check the
secure aggregate against plain FedAvg.

The typed accessors at the end (:func:`arrays_of`, :func:`config_of`, :func:`metrics_of`,
:func:`config_int`, :func:`metric_number`) read Flower's union-typed records and values for the
ClientApp, the ServerApp and the baseline, with a clear error when a record has the wrong kind.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import numpy as np
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    UserConfig,
    UserConfigValue,
)

from models import (
    LeaveOneOutSplit,
    LocalTrainingConfig,
    MatrixFactorization,
    RankingMetrics,
    evaluate_ranking,
    leave_one_out_split,
    synthetic_interactions,
)
from models.parameters import SharedLayout
from models.training import train_user
from protocols.defaults import DEFAULT_VALUE_BITS, FLOWER_CLIP
from protocols.flower.records import config_value
from protocols.keyfiles import ROSTER_FILE

#: The aggregation backends of the demo (``backend`` in the run config).
Backend = Literal["plain", "secagg", "secagg+", "paillier", "flower-secagg+"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

_Record = TypeVar("_Record", ArrayRecord, ConfigRecord, MetricRecord)


@dataclass(frozen=True)
class Settings:
    """The run config of ``pyproject.toml`` (``[tool.flwr.app.config]``), typed."""

    backend: Backend = "secagg+"
    num_server_rounds: int = 5
    min_nodes: int = 4
    timeout: float = 15.0
    upload_timeout: float = 30.0
    fraction_evaluate: float = 1.0
    num_users: int = 200
    num_items: int = 300
    dim: int = 16
    local_epochs: int = 2
    learning_rate: float = 1.0
    seed: int = 0
    clip: float = FLOWER_CLIP
    value_bits: int = DEFAULT_VALUE_BITS
    max_weight: float = 10000.0
    paillier_keys: str = ""
    stall_seconds: float = 120.0
    result_path: str = ""
    threat_model: str = "active"
    roster: str = ""
    simulation_keys: str = ""
    fail_partition: int = -1
    fail_from_round: int = 1
    sparse: int = 0
    sparse_pool: int = 100

    @classmethod
    def from_run_config(cls, config: UserConfig) -> Settings:
        """Read ``key-name = value`` pairs; unknown keys are ignored, missing ones defaulted."""
        # Any: each value has its field's type (that of the field's default), and the backend is
        # checked against BACKENDS below.
        values: dict[str, Any] = {}
        for field in fields(cls):
            key = field.name.replace("_", "-")
            if key in config:
                values[field.name] = _as_type_of(field.default, config[key])
        settings = cls(**values)
        if settings.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {settings.backend!r}")
        return settings

    def server_roster(self) -> str:
        """The roster file of the ServerApp: ``roster``, else the simulation's (or ``""``)."""
        if self.roster or not self.simulation_keys:
            return self.roster
        return str(Path(self.simulation_keys) / ROSTER_FILE)

    def server_paillier_keys(self) -> str:
        """The Paillier key directory: ``paillier-keys``, else the simulation's (or ``""``)."""
        return self.paillier_keys or self.simulation_keys


def _as_type_of(default: object, value: UserConfigValue) -> str | int | float:
    """``value`` converted to the type of a :class:`Settings` default (str, int or float)."""
    if isinstance(default, str):
        return str(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    raise TypeError(f"no conversion to {type(default).__name__}")


@lru_cache(maxsize=4)
def dataset(num_users: int, num_items: int, seed: int) -> LeaveOneOutSplit:
    """The whole seeded data set, split leave-one-out (identical on every node)."""
    return leave_one_out_split(synthetic_interactions(num_users, num_items, seed=seed), seed=seed)


def partition_users(settings: Settings, partition_id: int, num_partitions: int) -> np.ndarray:
    """The user ids of one partition."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is outside [0, {num_partitions})")
    return np.arange(partition_id, settings.num_users, num_partitions, dtype=np.int64)


def build_model(settings: Settings) -> MatrixFactorization:
    """The global model at round 0 (seeded, so every party builds the same one)."""
    torch.manual_seed(settings.seed)
    return MatrixFactorization(
        settings.num_users, settings.num_items, settings.dim, seed=settings.seed
    )


def shared_arrays(model: MatrixFactorization) -> ArrayRecord:
    """The shared parameters as a Flower ArrayRecord (what travels)."""
    return ArrayRecord(
        {
            name: Array(parameter.detach().numpy().copy())
            for name, parameter in model.shared_named_parameters()
        }
    )


def load_shared_arrays(model: MatrixFactorization, arrays: ArrayRecord) -> None:
    """Overwrite the model's shared parameters from an ArrayRecord."""
    with torch.no_grad():
        for name, parameter in model.shared_named_parameters():
            parameter.copy_(torch.from_numpy(np.asarray(arrays[name].numpy(), dtype=np.float32)))


def item_tables(settings: Settings) -> tuple[str, ...]:
    """The shared arrays whose rows are items (what a sparse round cuts to the announced rows)."""
    layout = SharedLayout.of(build_model(settings))
    return tuple(slot.name for slot in layout.slots if slot.per_item)


def node_items(settings: Settings, partition_id: int, num_partitions: int) -> np.ndarray:
    """The items this node's users hold: the rows its training changes (besides negatives)."""
    split = dataset(settings.num_users, settings.num_items, settings.seed)
    rows = split.train.user_rows()
    users = partition_users(settings, partition_id, num_partitions)
    held = [split.train.items[rows[user]] for user in users]
    return np.unique(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)


def initial_user_states(settings: Settings, users: np.ndarray) -> np.ndarray:
    """The private states of ``users`` before any training (rows of the seeded user table)."""
    table = build_model(settings).users.weight.detach().numpy()
    return np.asarray(table[users]).copy()


def local_train(
    settings: Settings,
    arrays: ArrayRecord,
    users: np.ndarray,
    states: np.ndarray,
    server_round: int,
    partition_id: int,
    candidates: np.ndarray | None = None,
) -> tuple[ArrayRecord, np.ndarray, float, int]:
    """Train the node's users in turn from the broadcast model (negatives from ``candidates``,
    a sparse round's announced rows, when given).

    Returns:
        The trained shared arrays, the users' new private states, the mean loss, and the number
        of training interactions (the FedAvg weight).
    """
    torch.set_num_threads(1)
    split = dataset(settings.num_users, settings.num_items, settings.seed)
    model = build_model(settings)
    load_shared_arrays(model, arrays)
    config = LocalTrainingConfig(
        objective="bpr", epochs=settings.local_epochs, learning_rate=settings.learning_rate
    )
    rng = np.random.default_rng([settings.seed, partition_id, server_round])
    rows = split.train.user_rows()
    new_states = states.copy()
    losses: list[float] = []
    interactions = 0
    for index, user in enumerate(users):
        items, ratings = split.train.items[rows[user]], split.train.ratings[rows[user]]
        if items.shape[0] == 0:
            continue
        state = torch.from_numpy(states[index].copy()).requires_grad_(True)
        loss, _ = train_user(model, state, items, ratings, config, rng, candidates)
        new_states[index] = state.detach().numpy()
        losses.append(loss)
        interactions += int(items.shape[0])
    return shared_arrays(model), new_states, float(np.mean(losses)), interactions


def local_evaluate(
    settings: Settings, arrays: ArrayRecord, users: np.ndarray, states: np.ndarray
) -> RankingMetrics:
    """HR@10 / NDCG@10 of the node's users on their held-out items (leave-one-out)."""
    torch.set_num_threads(1)
    split = dataset(settings.num_users, settings.num_items, settings.seed)
    model = build_model(settings)
    load_shared_arrays(model, arrays)
    local_row = {int(user): row for row, user in enumerate(users)}
    keep = np.asarray([int(u) in local_row for u in split.test_users], dtype=bool)
    local_split = LeaveOneOutSplit(
        train=split.train,
        test_users=np.asarray([local_row[int(u)] for u in split.test_users[keep]], dtype=np.int64),
        test_items=split.test_items[keep],
        negatives=split.negatives[keep],
    )
    return evaluate_ranking(model, torch.from_numpy(states), local_split)


def fedavg_reference(
    settings: Settings,
    arrays: ArrayRecord,
    num_partitions: int,
    server_round: int = 1,
    partitions: Iterable[int] | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """Plain FedAvg of round ``server_round`` from ``arrays``, recomputed offline (test oracle).

    Valid for the first round, where every node starts from its initial private states.
    ``partitions`` are the nodes in the average (default: all ``num_partitions``), e.g. the
    survivors of a round that lost a node; ``candidates`` a sparse round's announced rows.

    Returns:
        The weighted average of the nodes' trained arrays, and the total weight.
    """
    trained, weights = [], []
    for partition in range(num_partitions) if partitions is None else partitions:
        users = partition_users(settings, partition, num_partitions)
        states = initial_user_states(settings, users)
        record, _, _, weight = local_train(
            settings, copy.deepcopy(arrays), users, states, server_round, partition, candidates
        )
        trained.append({k: np.asarray(v.numpy(), dtype=np.float64) for k, v in record.items()})
        weights.append(weight)
    total = float(sum(weights))
    average = {
        key: sum(
            (w / total * t[key] for w, t in zip(weights, trained, strict=True)),
            start=np.zeros_like(trained[0][key]),
        )
        for key in trained[0]
    }
    return average, total


def _record(message: Message, key: str, kind: type[_Record]) -> _Record:
    """The record ``key`` of ``message``'s content, which must be a ``kind``."""
    record = message.content[key]
    if not isinstance(record, kind):
        raise TypeError(
            f"record {key!r} of the message is a {type(record).__name__}, not a {kind.__name__}"
        )
    return record


def arrays_of(message: Message, key: str = "arrays") -> ArrayRecord:
    """The ArrayRecord ``key`` of a message (the model, by Flower's default key).

    Raises:
        KeyError: the message has no record ``key``.
        TypeError: the record is not an ArrayRecord.
    """
    return _record(message, key, ArrayRecord)


def config_of(message: Message, key: str = "config") -> ConfigRecord:
    """The ConfigRecord ``key`` of a message.

    Raises:
        KeyError: the message has no record ``key``.
        TypeError: the record is not a ConfigRecord.
    """
    return _record(message, key, ConfigRecord)


def metrics_of(message: Message, key: str = "metrics") -> MetricRecord:
    """The MetricRecord ``key`` of a message.

    Raises:
        KeyError: the message has no record ``key``.
        TypeError: the record is not a MetricRecord.
    """
    return _record(message, key, MetricRecord)


def config_int(record: ConfigRecord, key: str) -> int:
    """The int value ``key`` of a ConfigRecord (e.g. FedAvg's ``server-round``).

    Raises:
        KeyError: ``key`` is missing.
        TypeError: the value is not an int.
    """
    return config_value(record, key, int)


def metric_number(record: MetricRecord, key: str) -> int | float:
    """The scalar value ``key`` of a MetricRecord.

    Raises:
        KeyError: ``key`` is missing.
        TypeError: the value is a list.
    """
    value = record[key]
    if not isinstance(value, int | float):
        raise TypeError(f"metric {key!r} is a {type(value).__name__}, not a number")
    return value
