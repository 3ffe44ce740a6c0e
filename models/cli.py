"""``secagg train`` and ``secagg recommend``: federated training of a recommender end to end.

Train draws (or loads) the data, runs federated rounds over the chosen aggregation backend with
optional dropouts, prints what the server saw each round (only the aggregate: how many clients
it summed, who dropped, the size of the step) next to the model's quality, and can write JSON
lines, a PNG training curve and a checkpoint. With ``--dp-epsilon`` the masking backend becomes
:class:`~protocols.dp_aggregator.DistributedDPAggregator`: every client adds a share of discrete
noise inside the secure sum, and each round reports the epsilon spent so far (``dp-accounting``).
Recommend reads that checkpoint and serves top-K items for one user, excluding what the user has
seen. ``protocols.cli`` imports this module
only when one of these commands runs, so the crypto CLI works without torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Final, Literal, cast

import numpy as np
import torch

from models.base import Recommender
from models.ctr import LogisticCTR
from models.data import Interactions, leave_one_out_split, load_movielens, synthetic_interactions
from models.evaluation import evaluate_ranking, popularity_ranking
from models.federated import FederatedConfig, FederatedTrainer, RoundRecord
from models.mf import MatrixFactorization
from models.ncf import NeuMF
from models.recommend import top_k_items
from models.training import LocalTrainingConfig, train_centralized
from models.two_tower import TwoTower
from protocols.aggregators import (
    Aggregator,
    MaskingAggregator,
    PaillierAggregator,
    PlainAggregator,
)
from protocols.cli import positive_int, unit_fraction
from protocols.dp_aggregator import DistributedDPAggregator
from secagg.dp import Mechanism
from secagg.errors import ParameterError

__all__ = [
    "add_recommend_arguments",
    "add_train_arguments",
    "make_aggregator",
    "make_dp_aggregator",
    "make_model",
    "run_recommend",
    "run_train",
]

MODELS = ("mf", "neumf", "two-tower", "ctr")
AGGREGATORS = ("plain", "secagg", "secagg+", "paillier")
DP_MECHANISMS = ("discrete_gaussian", "skellam")
#: Masking backends distributed DP can run on, and the graph each uses.
DP_GRAPHS: Final[dict[str, Literal["complete", "harary"]]] = {
    "secagg": "complete",
    "secagg+": "harary",
}
#: Tuned on the synthetic data (300 users, 500 items, MF dim 16, 50 clients per round, 40
#: rounds) at epsilon = 8. The L2 clip sits well below the median update norm (about 0.8), so
#: every update is clipped and only the product clip x server step matters: it sets both the
#: step and the noise added to the item table each round. 0.03 did best among 0.015 to 0.06.
#: Without DP the server step stays 1.0.
DEFAULT_DP_CLIP = 0.1
DEFAULT_DP_SERVER_LR = 0.3


def make_model(name: str, num_users: int, num_items: int, dim: int, seed: int) -> Recommender:
    """A fresh model called ``name`` (one of :data:`MODELS`)."""
    if name == "mf":
        return MatrixFactorization(num_users, num_items, dim, seed=seed)
    if name == "neumf":
        return NeuMF(num_users, num_items, gmf_dim=dim, mlp_dim=dim, init_std=0.3, seed=seed)
    if name == "two-tower":
        return TwoTower(num_users, num_items, embedding_dim=dim, output_dim=dim, seed=seed)
    if name == "ctr":
        return LogisticCTR(num_users, num_items, dim, seed=seed)
    raise ParameterError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def make_aggregator(name: str, *, clip: float, value_bits: int) -> Aggregator:
    """The aggregation backend called ``name`` (one of :data:`AGGREGATORS`)."""
    if name == "plain":
        return PlainAggregator()
    if name == "secagg":
        return MaskingAggregator("complete", clip=clip, value_bits=value_bits)
    if name == "secagg+":
        return MaskingAggregator("harary", clip=clip, value_bits=value_bits)
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

    Returns:
        The aggregator, calibrated for ``epsilon`` and ``delta``.

    Raises:
        ParameterError: ``name`` is not a masking backend, or a parameter is out of range.
    """
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
    )


def _positive_real(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg train``."""
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a MovieLens path")
    parser.add_argument("--model", choices=MODELS, default="mf")
    parser.add_argument("--aggregator", choices=AGGREGATORS, default="secagg+")
    parser.add_argument("--rounds", type=positive_int, default=40)
    parser.add_argument("--clients-per-round", type=positive_int, default=50)
    parser.add_argument(
        "--dropout", type=unit_fraction, default=0.1, help="fraction lost per round"
    )
    parser.add_argument("--dim", type=positive_int, default=16, help="embedding size")
    parser.add_argument("--local-epochs", type=positive_int, default=2)
    parser.add_argument("--lr", type=float, default=1.0, help="client SGD step")
    parser.add_argument("--clip", type=float, default=1.0, help="per-coordinate delta clip")
    parser.add_argument(
        "--server-lr",
        type=_positive_real,
        default=None,
        help=f"server step on summed item deltas (default 1.0; {DEFAULT_DP_SERVER_LR} with "
        "--dp-epsilon)",
    )
    parser.add_argument("--value-bits", type=positive_int, default=24, help="quantization bits")
    parser.add_argument("--eval-every", type=positive_int, default=5)
    parser.add_argument("--users", type=positive_int, default=300, help="synthetic data size")
    parser.add_argument("--items", type=positive_int, default=500, help="synthetic data size")
    parser.add_argument("--centralized", action="store_true", help="also train on pooled data")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, init and sampling")
    parser.add_argument("--json", action="store_true", help="one JSON object per round")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG training curve")
    parser.add_argument("--save", type=Path, default=None, help="write a checkpoint")
    dp = parser.add_argument_group("distributed differential privacy (secagg, secagg+)")
    dp.add_argument(
        "--dp-epsilon",
        type=_positive_real,
        default=None,
        help="target epsilon over all rounds; turns on distributed DP",
    )
    dp.add_argument("--dp-delta", type=_probability, default=1e-5, help="target delta")
    dp.add_argument("--dp-mechanism", choices=DP_MECHANISMS, default="discrete_gaussian")
    dp.add_argument(
        "--dp-clip",
        type=_positive_real,
        default=DEFAULT_DP_CLIP,
        help="L2 clip norm of a client's update",
    )


def add_recommend_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg recommend``."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="from secagg train --save")
    parser.add_argument("--user", type=int, required=True)
    parser.add_argument("-k", "--top", type=positive_int, default=10)
    parser.add_argument("--json", action="store_true")


def _load_data(args: argparse.Namespace) -> Interactions:
    if args.data == "synthetic":
        return synthetic_interactions(args.users, args.items, seed=args.seed)
    return load_movielens(args.data)


def _record_json(record: RoundRecord, aggregator: str, epsilon: float | None) -> dict[str, Any]:
    return {
        "round": record.round,
        "aggregator": aggregator,
        "sampled": len(record.sampled),
        "survivors": len(record.survivors),
        "dropped": list(record.dropped),
        "aborted": record.aborted,
        "client_loss": record.client_loss,
        "update_norm": record.update_norm,
        "hr@10": None if record.ranking is None else record.ranking.hit_ratio,
        "ndcg@10": None if record.ranking is None else record.ranking.ndcg,
        "client_seconds": record.client_seconds,
        "aggregation_seconds": record.aggregation_seconds,
        "epsilon": epsilon,
    }


def run_train(args: argparse.Namespace) -> int:
    """Train federatedly; print the per-round table (or JSON lines); plot and save on request."""
    torch.set_num_threads(1)
    data = _load_data(args)
    split = leave_one_out_split(data, seed=args.seed)
    popularity = popularity_ranking(split)
    out = sys.stdout

    def say(text: str) -> None:
        if not args.json:
            print(text, file=out)

    say(
        f"data: {data.num_users} users (one client each), {data.num_items} items, {len(data)} "
        f"interactions; leave-one-out with 99 negatives; popularity HR@10 "
        f"{popularity.hit_ratio:.4f} NDCG@10 {popularity.ndcg:.4f}"
    )
    local = LocalTrainingConfig(
        objective="bce" if args.model == "ctr" else "bpr",
        epochs=args.local_epochs,
        learning_rate=args.lr,
    )
    centralized = None
    if args.centralized:
        central = make_model(args.model, data.num_users, data.num_items, args.dim, args.seed)
        train_centralized(
            central,
            split.train,
            LocalTrainingConfig(objective=local.objective, epochs=20, learning_rate=args.lr),
            seed=args.seed,
        )
        centralized = evaluate_ranking(central, central.users.weight.detach(), split)
        say(
            f"centralized {args.model} (20 epochs, no privacy): HR@10 "
            f"{centralized.hit_ratio:.4f} NDCG@10 {centralized.ndcg:.4f}"
        )
    model = make_model(args.model, data.num_users, data.num_items, args.dim, args.seed)
    private: DistributedDPAggregator | None = None
    aggregator: Aggregator
    if args.dp_epsilon is not None:
        private = make_dp_aggregator(
            args.aggregator,
            epsilon=args.dp_epsilon,
            delta=args.dp_delta,
            rounds=args.rounds,
            clients_per_round=args.clients_per_round,
            population=int(np.unique(split.train.users).shape[0]),
            dropout=args.dropout,
            dimension=model.num_shared_parameters(),
            clip_norm=args.dp_clip,
            mechanism=args.dp_mechanism,
        )
        aggregator = private
    else:
        aggregator = make_aggregator(args.aggregator, clip=args.clip, value_bits=args.value_bits)
    server_lr = args.server_lr
    if server_lr is None:
        server_lr = DEFAULT_DP_SERVER_LR if private is not None else 1.0
    config = FederatedConfig(
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        local=local,
        clip=args.clip,
        item_learning_rate=server_lr,
        dropout_fraction=args.dropout,
        eval_every=args.eval_every,
        seed=args.seed,
    )
    trainer = FederatedTrainer(model, split.train, aggregator, config, evaluation=split)
    say(
        f"federated {args.model} over {aggregator.name}: {model.num_shared_parameters()} shared "
        f"parameters uploaded densely by each of {args.clients_per_round} clients per round, "
        f"{args.dropout:.0%} of them dropping at random protocol rounds; user embeddings never "
        "leave the clients"
    )
    if private is not None:
        dp_config = private.config
        say(
            f"distributed DP ({dp_config.mechanism}): noise multiplier "
            f"{dp_config.noise_multiplier:.4f} calibrated with dp-accounting for epsilon "
            f"{private.target_epsilon:g} at delta {private.delta:g} over {args.rounds} rounds "
            f"(q = {private.sampling_rate:.4f}); L2 clip {dp_config.clip_norm:g}, ring "
            f"2^{dp_config.modulus_bits}, each of at least {dp_config.expected_clients} surviving "
            f"clients adds 1/{dp_config.expected_clients} of the noise; server step {server_lr:g}"
        )
    epsilon_header = f" {'epsilon':>8}" if private is not None else ""
    say(
        f"{'round':>5} {'server summed':>13} {'dropped':>7} {'step norm':>9} {'loss':>7} "
        f"{'HR@10':>7} {'NDCG@10':>7} {'agg s':>7}{epsilon_header}"
    )
    progress = None
    if not args.json:
        from tqdm import tqdm

        progress = tqdm(
            total=args.rounds, desc="rounds", unit="round", file=sys.stderr, leave=False
        )

    def show(record: RoundRecord) -> None:
        if progress is not None:
            progress.update(1)
        epsilon = None if private is None else private.epsilon_spent
        if args.json:
            print(json.dumps(_record_json(record, aggregator.name, epsilon)), file=out, flush=True)
            return
        if record.ranking is None and not record.aborted:
            return
        summed = "aborted" if record.aborted else f"{len(record.survivors)} clients"
        hr = "-" if record.ranking is None else f"{record.ranking.hit_ratio:.4f}"
        ndcg = "-" if record.ranking is None else f"{record.ranking.ndcg:.4f}"
        line = (
            f"{record.round:>5} {summed:>13} {len(record.dropped):>7} {record.update_norm:>9.3f} "
            f"{record.client_loss:>7.4f} {hr:>7} {ndcg:>7} {record.aggregation_seconds:>7.2f}"
        )
        if epsilon is not None:
            line += f" {epsilon:>8.4f}"
        if progress is not None:
            progress.write(line, file=out)
        else:
            say(line)

    started = time.perf_counter()
    history = trainer.run(on_round=show)
    if progress is not None:
        progress.close()
    seconds = time.perf_counter() - started
    final = history.last_ranking()
    summary: dict[str, Any] = {
        "summary": True,
        "model": args.model,
        "aggregator": aggregator.name,
        "rounds": args.rounds,
        "seconds": seconds,
        "seconds_per_round": seconds / args.rounds,
        "aggregation_seconds_per_round": float(
            np.mean([r.aggregation_seconds for r in history.records])
        ),
        "hr@10": None if final is None else final.hit_ratio,
        "ndcg@10": None if final is None else final.ndcg,
        "popularity_hr@10": popularity.hit_ratio,
        "popularity_ndcg@10": popularity.ndcg,
        "centralized_hr@10": None if centralized is None else centralized.hit_ratio,
        "centralized_ndcg@10": None if centralized is None else centralized.ndcg,
        "aborted_rounds": sum(r.aborted for r in history.records),
        "epsilon": None if private is None else private.epsilon_spent,
        "privacy": None if private is None else private.privacy_report(),
    }
    if args.json:
        print(json.dumps(summary), file=out)
    elif final is not None:
        say(
            f"done in {seconds:.1f} s ({summary['aggregation_seconds_per_round']:.2f} s of "
            f"aggregation per round): federated HR@10 {final.hit_ratio:.4f} NDCG@10 "
            f"{final.ndcg:.4f} vs item popularity HR@10 {popularity.hit_ratio:.4f}"
        )
    if private is not None and not args.json:
        report = private.privacy_report()
        say(
            f"privacy spent: epsilon {report['epsilon']:.4f} at delta {report['delta']:g} after "
            f"{report['rounds']} released rounds (target {report['target_epsilon']:g} over "
            f"{report['planned_rounds']}; {report['accountant']}, {report['library']})"
        )
    if args.plot is not None:
        _plot(args.plot, history.records, popularity.hit_ratio, centralized, aggregator.name)
        say(f"training curve written to {args.plot}")
    if args.save is not None:
        _save(args, trainer, data)
        say(f"checkpoint written to {args.save} (holds every simulated client's embedding)")
    return 0


def _plot(
    path: Path,
    records: list[RoundRecord],
    popularity: float,
    centralized: Any,
    aggregator: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluated = [r for r in records if r.ranking is not None]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(
        [r.round for r in evaluated],
        [r.ranking.hit_ratio for r in evaluated if r.ranking is not None],
        marker="o",
        label=f"federated HR@10 ({aggregator})",
    )
    axis.plot(
        [r.round for r in evaluated],
        [r.ranking.ndcg for r in evaluated if r.ranking is not None],
        marker="s",
        label="federated NDCG@10",
    )
    axis.axhline(popularity, linestyle="--", color="grey", label="item popularity HR@10")
    if centralized is not None:
        axis.axhline(centralized.hit_ratio, linestyle=":", color="black", label="centralized HR@10")
    axis.set_xlabel("round")
    axis.set_ylabel("metric")
    axis.set_ylim(0, 1)
    axis.legend(loc="lower right")
    axis.set_title("Federated training on secure aggregation")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _save(args: argparse.Namespace, trainer: FederatedTrainer, data: Interactions) -> None:
    torch.save(
        {
            "model": args.model,
            "num_users": data.num_users,
            "num_items": data.num_items,
            "dim": args.dim,
            "seed": args.seed,
            "state_dict": trainer.model.state_dict(),
            "user_states": trainer.user_states(),
            "seen": [c.seen_items.tolist() for c in trainer.clients.values()],
        },
        args.save,
    )


def run_recommend(args: argparse.Namespace) -> int:
    """Top-K unseen items for one user from a checkpoint written by ``secagg train --save``."""
    if not args.checkpoint.is_file():
        raise ParameterError(f"no checkpoint at {args.checkpoint}; run secagg train --save first")
    saved = torch.load(args.checkpoint, weights_only=True)
    if not 0 <= args.user < saved["num_users"]:
        raise ParameterError(f"user {args.user} is not in [0, {saved['num_users']})")
    model = make_model(saved["model"], saved["num_users"], saved["num_items"], saved["dim"], 0)
    model.load_state_dict(saved["state_dict"])
    top = top_k_items(
        model, saved["user_states"][args.user], args.top, exclude=saved["seen"][args.user]
    )
    if args.json:
        print(
            json.dumps(
                {
                    "user": args.user,
                    "items": top.items.tolist(),
                    "scores": [float(s) for s in top.scores],
                }
            )
        )
    else:
        print(f"top {len(top.items)} unseen items for user {args.user}:")
        for rank, (item, score) in enumerate(zip(top.items, top.scores, strict=True), start=1):
            print(f"  {rank:>2}. item {int(item):>6}  score {float(score):.4f}")
    return 0
