"""Build a recommender or an aggregation backend from its name.

``secagg train``, ``secagg recommend``, the tests and the demos choose models and backends by
name (``--model neumf``, ``--aggregator secagg+``); these factories are the one place that maps
a name to a constructor, so a new model or backend is added here and nowhere else. Unknown names
raise :class:`~secagg.errors.ParameterError` listing the choices.
"""

from __future__ import annotations

import logging
from typing import Final, Literal, cast

from models.base import Recommender
from models.ctr import LogisticCTR
from models.mf import MatrixFactorization
from models.ncf import NeuMF
from models.two_tower import TwoTower
from protocols.aggregators import (
    Aggregator,
    MaskingAggregator,
    PaillierAggregator,
    PlainAggregator,
)
from protocols.dp_aggregator import DistributedDPAggregator
from protocols.graph import ThreatModel
from secagg.dp import Mechanism
from secagg.errors import ParameterError

__all__ = [
    "AGGREGATORS",
    "DP_GRAPHS",
    "DP_MECHANISMS",
    "MODELS",
    "make_aggregator",
    "make_dp_aggregator",
    "make_model",
]

MODELS: Final = ("mf", "neumf", "two-tower", "ctr")
AGGREGATORS: Final = ("plain", "secagg", "secagg+", "paillier")
DP_MECHANISMS: Final = ("discrete_gaussian", "skellam")
#: Masking backends distributed DP can run on, and the graph each uses.
DP_GRAPHS: Final[dict[str, Literal["complete", "harary"]]] = {
    "secagg": "complete",
    "secagg+": "harary",
}


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
        return NeuMF(num_users, num_items, gmf_dim=dim, mlp_dim=dim, init_std=0.3, seed=seed)
    if name == "two-tower":
        return TwoTower(num_users, num_items, embedding_dim=dim, output_dim=dim, seed=seed)
    if name == "ctr":
        return LogisticCTR(num_users, num_items, dim, seed=seed)
    raise ParameterError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def make_aggregator(
    name: str, *, clip: float, value_bits: int, threat_model: ThreatModel = "active"
) -> Aggregator:
    """The aggregation backend called ``name`` (one of :data:`AGGREGATORS`).

    Args:
        name: ``plain``, ``secagg`` (complete graph), ``secagg+`` (Harary graph) or ``paillier``.
        clip: the per-coordinate clip the secure backends quantize over.
        value_bits: bits of one quantized value.
        threat_model: the masking backends' ``"active"`` or ``"semi-honest"`` protocol.

    Returns:
        The backend.

    Raises:
        ParameterError: ``name`` is not a known backend.
    """
    if name == "plain":
        return PlainAggregator(clip=clip)
    if name == "secagg":
        return MaskingAggregator(
            "complete", clip=clip, value_bits=value_bits, threat_model=threat_model
        )
    if name == "secagg+":
        return MaskingAggregator(
            "harary", clip=clip, value_bits=value_bits, threat_model=threat_model
        )
    if name == "paillier":
        return PaillierAggregator(clip=clip, value_bits=value_bits, processes=None)
    raise ParameterError(f"unknown aggregator {name!r}; choose one of {', '.join(AGGREGATORS)}")


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
        graph=DP_GRAPHS[name],
        threat_model=threat_model,
    )


def _dp_round_sizes(
    name: str, clients_per_round: int, population: int, dropout: float, mechanism: str
) -> tuple[int, int]:
    """Clients sampled per round, and how many of them are sure to survive it."""
    if name not in DP_GRAPHS:
        raise ParameterError(
            f"--dp-epsilon needs a masking backend (--aggregator secagg or secagg+), not {name!r}: "
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
