"""``secagg train`` and ``secagg recommend``: federated training of a recommender end to end.

Train draws (or loads) the data, runs federated rounds over the chosen aggregation backend with
optional dropouts, prints what the server saw each round (only the aggregate: how many clients
it summed, who dropped, the size of the step) next to the model's quality, and can write JSON
lines, a PNG training curve and a checkpoint. Recommend reads that checkpoint and serves top-K
items for one user, excluding what the user has seen. ``protocols.cli`` imports this module
only when one of these commands runs, so the crypto CLI works without torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

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
from secagg.errors import ParameterError

__all__ = [
    "add_recommend_arguments",
    "add_train_arguments",
    "make_aggregator",
    "make_model",
    "run_recommend",
    "run_train",
]

MODELS = ("mf", "neumf", "two-tower", "ctr")
AGGREGATORS = ("plain", "secagg", "secagg+", "paillier")


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


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg train``."""
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a MovieLens path")
    parser.add_argument("--model", choices=MODELS, default="mf")
    parser.add_argument("--aggregator", choices=AGGREGATORS, default="secagg+")
    parser.add_argument("--rounds", type=_positive, default=40)
    parser.add_argument("--clients-per-round", type=_positive, default=50)
    parser.add_argument("--dropout", type=_fraction, default=0.1, help="fraction lost per round")
    parser.add_argument("--dim", type=_positive, default=16, help="embedding size")
    parser.add_argument("--local-epochs", type=_positive, default=2)
    parser.add_argument("--lr", type=float, default=1.0, help="client SGD step")
    parser.add_argument("--clip", type=float, default=1.0, help="per-coordinate delta clip")
    parser.add_argument("--value-bits", type=_positive, default=24, help="quantization bits")
    parser.add_argument("--eval-every", type=_positive, default=5)
    parser.add_argument("--users", type=_positive, default=300, help="synthetic data size")
    parser.add_argument("--items", type=_positive, default=500, help="synthetic data size")
    parser.add_argument("--centralized", action="store_true", help="also train on pooled data")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, init and sampling")
    parser.add_argument("--json", action="store_true", help="one JSON object per round")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG training curve")
    parser.add_argument("--save", type=Path, default=None, help="write a checkpoint")


def add_recommend_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg recommend``."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="from secagg train --save")
    parser.add_argument("--user", type=int, required=True)
    parser.add_argument("-k", "--top", type=_positive, default=10)
    parser.add_argument("--json", action="store_true")


def _load_data(args: argparse.Namespace) -> Interactions:
    if args.data == "synthetic":
        return synthetic_interactions(args.users, args.items, seed=args.seed)
    return load_movielens(args.data)


def _record_json(record: RoundRecord, aggregator: str) -> dict[str, Any]:
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
    aggregator = make_aggregator(args.aggregator, clip=args.clip, value_bits=args.value_bits)
    config = FederatedConfig(
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        local=local,
        clip=args.clip,
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
    say(
        f"{'round':>5} {'server summed':>13} {'dropped':>7} {'step norm':>9} {'loss':>7} "
        f"{'HR@10':>7} {'NDCG@10':>7} {'agg s':>7}"
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
        if args.json:
            print(json.dumps(_record_json(record, aggregator.name)), file=out, flush=True)
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
    }
    if args.json:
        print(json.dumps(summary), file=out)
    elif final is not None:
        say(
            f"done in {seconds:.1f} s ({summary['aggregation_seconds_per_round']:.2f} s of "
            f"aggregation per round): federated HR@10 {final.hit_ratio:.4f} NDCG@10 "
            f"{final.ndcg:.4f} vs item popularity HR@10 {popularity.hit_ratio:.4f}"
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
