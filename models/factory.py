"""Build a recommender, or a distributed-DP aggregator, from its name.

``secagg train``, ``secagg recommend``, the tests and the demos choose models and backends by
name (``--model neumf``, ``--protocol secagg+``); :func:`make_model` is the one place that
maps a model name to a constructor. Backends come from the torch-free
:func:`protocols.aggregators.make_aggregator` (re-exported here, with :data:`AGGREGATORS`, the
shared :data:`~protocols.defaults.BACKEND_NAMES`), so their names are mapped once. Unknown
names raise :class:`~secagg.errors.ParameterError` listing the choices.
"""

from __future__ import annotations

import logging
from typing import Final, cast

from models.base import Recommender
from models.ctr import LogisticCTR
from models.mf import MatrixFactorization
from models.ncf import NeuMF
from models.two_tower import TwoTower
from protocols.aggregators import MASKING_BACKENDS, MaskingBackend, make_aggregator
from protocols.aggregators.masking import masking_backend
from protocols.defaults import BACKEND_NAMES
from protocols.dp_aggregator import DistributedDPAggregator
from protocols.graph import ThreatModel
from secagg.dp import Mechanism
from secagg.errors import ParameterError

__all__ = [
    "AGGREGATORS",
    "DP_BACKENDS",
    "DP_MECHANISMS",
    "MODELS",
    "make_aggregator",
    "make_dp_aggregator",
    "make_model",
]

MODELS: Final = ("mf", "neumf", "two-tower", "ctr")
#: The backend names, the same as everywhere: :data:`protocols.defaults.BACKEND_NAMES`.
AGGREGATORS: Final = BACKEND_NAMES
DP_MECHANISMS: Final = ("discrete_gaussian", "skellam")
#: The masking backends distributed DP can run on.
DP_BACKENDS: Final[tuple[MaskingBackend, ...]] = MASKING_BACKENDS


def make_model(name: str, num_users: int, num_items: int, dim: int, seed: int) -> Recommender:
    """A fresh model called ``name`` (one of :data:`MODELS`).

    Args:
        name: ``mf``, ``neumf``, ``two-tower`` or ``ctr``.
        num_users: users (one embedding each, kept by the clients).
        num_items: items (the shared item table).
        dim: the embedding size.
        seed: seed of the initial weights.

    Returns:
        The untrained model.

    Raises:
        ParameterError: ``name`` is not a known model.
    """
    if name == "mf":
        return MatrixFactorization(num_users, num_items, dim, seed=seed)
    if name == "neumf":
        return NeuMF(
            num_users, num_items, gmf_dim=dim, mlp_dim=max(1, dim // 2), mf_start=True, seed=seed
        )
    if name == "two-tower":
        return TwoTower(
            num_users, num_items, embedding_dim=dim, output_dim=dim, residual=True, seed=seed
        )
    if name == "ctr":
        return LogisticCTR(num_users, num_items, dim, seed=seed)
    raise ParameterError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def make_dp_aggregator(
    name: str,
    *,
    epsilon: float,
    delta: float,
    rounds: int,
    clients_per_round: int,
    population: int,
    dropout: float,
    dimension: int,
    clip_norm: float,
    mechanism: str = "discrete_gaussian",
    threat_model: ThreatModel = "active",
) -> DistributedDPAggregator:
    """Distributed DP over the masking backend ``name`` (``secagg`` or ``secagg+``).

    The trainer samples ``min(clients_per_round, population)`` clients per round and drops
    ``round(dropout * sampled)`` of them; the accountant uses q = sampled / population, and the
    noise is split so that the guaranteed survivors alone carry all of it.

    Args:
        name: the masking backend; ``plain`` and ``paillier`` are refused.
        epsilon: the target epsilon over ``rounds`` rounds.
        delta: the target delta.
        rounds: rounds of training.
        clients_per_round: clients sampled per round.
        population: clients that can be sampled (users with training data).
        dropout: fraction of the sampled clients that drop each round.
        dimension: length of an update (the model's shared parameters).
        clip_norm: the L2 clip norm of an update.
        mechanism: ``discrete_gaussian`` or ``skellam``.
        threat_model: the masking protocol's ``"active"`` or ``"semi-honest"`` variant.

    Returns:
        The aggregator, calibrated for ``epsilon`` and ``delta``.

    Raises:
        ParameterError: ``name`` is not a masking backend, or a parameter is out of range.
    """
    sampled, guaranteed = _dp_round_sizes(name, clients_per_round, population, dropout, mechanism)
    # dp-accounting logs (through absl) every fractional RDP order it skips while calibrating.
    logging.getLogger("absl").setLevel(logging.ERROR)
    return DistributedDPAggregator(
        target_epsilon=epsilon,
        target_delta=delta,
        rounds=rounds,
        sampling_rate=sampled / population,
        expected_clients=guaranteed,
        max_clients=sampled,
        dimension=dimension,
        clip_norm=clip_norm,
        mechanism=cast(Mechanism, mechanism),
        protocol=masking_backend(name),
        threat_model=threat_model,
    )


def _dp_round_sizes(
    name: str, clients_per_round: int, population: int, dropout: float, mechanism: str
) -> tuple[int, int]:
    """Clients sampled per round, and how many of them are sure to survive it."""
    if name not in DP_BACKENDS:
        raise ParameterError(
            f"--dp-epsilon needs a masking backend (secagg or secagg+), not {name!r}: "
            "distributed DP adds its noise shares inside the masked sum"
        )
    if mechanism not in DP_MECHANISMS:
        raise ParameterError(f"unknown DP mechanism {mechanism!r}; choose {DP_MECHANISMS}")
    if population < 1:
        raise ParameterError("no client holds any training interaction")
    sampled = min(clients_per_round, population)
    guaranteed = sampled - round(dropout * sampled)
    if guaranteed < 2:
        raise ParameterError(
            f"only {guaranteed} of {sampled} sampled clients are sure to survive a round; secure "
            "aggregation with distributed DP needs at least 2 (sample more or drop fewer)"
        )
    return sampled, guaranteed
