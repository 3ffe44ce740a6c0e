"""Train a federated recommender on synthetic data over a chosen aggregation backend.

The end-to-end path in one screen: draw a synthetic data set with latent tastes and a long-tail
popularity, hold out each user's latest interaction, train a model with its recipe
(``models.recipes``: local refit and SGD, FedAdam on the server, per-item counts) with one
client per user whose dense, clipped item-side deltas go through plain summation, SecAgg,
SecAgg+ or Paillier, and print HR@10 / NDCG@10 per round next to the popularity baseline (and,
with ``--centralized``, the same model trained on pooled data).

Run: ``python demos/train_synthetic.py --protocol secagg --model neumf``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from models import (
    FederatedTrainer,
    Interactions,
    LeaveOneOutSplit,
    RoundRecord,
    evaluate_ranking,
    leave_one_out_split,
    make_aggregator,
    make_model,
    popularity_ranking,
    synthetic_interactions,
    train_centralized,
)
from models.factory import MODELS
from models.recipes import derived_cohort, derived_rounds, recipe_for
from protocols.defaults import BACKEND_NAMES


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=BACKEND_NAMES, default="plain")
    parser.add_argument("--model", choices=MODELS, default="mf")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=None, help="default: from the recipe")
    parser.add_argument("--dropout", type=float, default=0.0, help="fraction of clients dropping")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--centralized", action="store_true", help="also train centrally")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def report_centralized(
    args: argparse.Namespace, data: Interactions, split: LeaveOneOutSplit
) -> None:
    """Train the same model on pooled data with the recipe's reference and print its metrics."""
    recipe = recipe_for(args.model)
    central = make_model(args.model, data.num_users, data.num_items, recipe.dim, args.seed)
    train_centralized(central, split.train, recipe.centralized, seed=args.seed)
    metrics = evaluate_ranking(central, central.users.weight.detach(), split)
    print(
        f"centralized {args.model} ({recipe.centralized.epochs} epochs): "
        f"HR@10 {metrics.hit_ratio:.4f} NDCG@10 {metrics.ndcg:.4f}"
    )


def make_trainer(
    args: argparse.Namespace, data: Interactions, split: LeaveOneOutSplit
) -> FederatedTrainer:
    """The federated trainer of the model's recipe, after printing what it uploads."""
    recipe = recipe_for(args.model)
    users = int(np.unique(split.train.users).shape[0])
    cohort = derived_cohort(users)
    rounds = args.rounds or derived_rounds(users, cohort, recipe.participations)
    config = recipe.federated_config(
        rounds=rounds,
        clients_per_round=cohort,
        dropout_fraction=args.dropout,
        eval_every=args.eval_every,
        seed=args.seed,
    )
    model = make_model(args.model, data.num_users, data.num_items, recipe.dim, args.seed)
    aggregator = make_aggregator(args.protocol)
    trainer = FederatedTrainer(model, split.train, aggregator, config, evaluation=split)
    print(
        f"federated {args.model} on {aggregator.name}: {model.num_shared_parameters()} shared "
        f"parameters uploaded densely per client, {cohort} clients per round, {rounds} rounds"
    )
    return trainer


def show_round(record: RoundRecord) -> None:
    """Print one evaluated round as a table row (rounds without an evaluation print nothing)."""
    if record.ranking is None:
        return
    print(
        f"{record.round:>5} {len(record.survivors):>8} {len(record.dropped):>7} "
        f"{record.client_loss:7.4f} {record.ranking.hit_ratio:7.4f} "
        f"{record.ranking.ndcg:7.4f} {record.client_seconds:8.2f} "
        f"{record.aggregation_seconds:7.2f}"
    )


def main() -> None:
    """Train and print the per-round table."""
    args = parse_args()
    torch.set_num_threads(1)
    data = synthetic_interactions(args.users, args.items, seed=args.seed)
    split = leave_one_out_split(data, seed=args.seed)
    popularity = popularity_ranking(split)
    print(
        f"synthetic data: {data.num_users} users, {data.num_items} items, {len(data)} events; "
        f"popularity HR@10 {popularity.hit_ratio:.4f} NDCG@10 {popularity.ndcg:.4f}"
    )
    if args.centralized:
        report_centralized(args, data, split)
    trainer = make_trainer(args, data, split)
    print(
        f"{'round':>5} {'survived':>8} {'dropped':>7} {'loss':>7} {'HR@10':>7} {'NDCG@10':>7} "
        f"{'client s':>8} {'agg s':>7}"
    )
    started = time.perf_counter()
    trainer.run(on_round=show_round)
    final = trainer.history.last_ranking()
    assert final is not None
    print(
        f"done in {time.perf_counter() - started:.1f} s: federated HR@10 {final.hit_ratio:.4f} "
        f"vs popularity {popularity.hit_ratio:.4f}"
    )


if __name__ == "__main__":
    main()
