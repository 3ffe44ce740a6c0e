"""What distributed differential privacy costs a federated recommender: HR@10 against epsilon.

Trains the default ``secagg train`` setting (synthetic data with 300 users and 500 items, matrix
factorization of dimension 16, 50 clients per round of which 10% drop, 40 rounds, SecAgg+)
once without DP and once for each epsilon in {1, 2, 4, 8, 16} at delta = 1e-5, the way
``secagg train --dp-epsilon E`` does: each client clips its update to L2 norm 0.1, adds its share
of discrete Gaussian noise inside the masked sum (:class:`DistributedDPAggregator`), and the
server takes a step of 0.3 on the noisy sum of item deltas (1.0 without DP). The noise multiplier
is calibrated with Google's dp-accounting for the whole run (q = 50 / 300, 40 rounds).

It prints a table (noise multiplier, epsilon spent, HR@10, NDCG@10, gap to the non-DP run) and
writes a PNG of HR@10 against epsilon next to the non-DP and popularity levels. The DP noise comes
from a CSPRNG and is not seeded, so results vary from run to run; ``--repeats`` averages several
runs (repeat r uses seed r for sampling and dropouts).

Run: ``python demos/dp_utility.py`` (about 3 minutes on 2 cores; ``--repeats 3`` for means).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import (
    FederatedConfig,
    FederatedTrainer,
    LocalTrainingConfig,
    MatrixFactorization,
    leave_one_out_split,
    popularity_ranking,
    synthetic_interactions,
)
from protocols.aggregators import Aggregator, MaskingAggregator
from protocols.dp_aggregator import DistributedDPAggregator

EPSILONS = (1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
DELTA = 1e-5
USERS, ITEMS, DIM = 300, 500, 16
ROUNDS, CLIENTS_PER_ROUND, DROPOUT = 40, 50, 0.1
#: ``secagg train``'s DP defaults: L2 clip and server step, tuned at epsilon 8 on this data.
DP_CLIP_NORM, DP_SERVER_LR = 0.1, 0.3


@dataclass(frozen=True, slots=True)
class Outcome:
    """One training run."""

    epsilon: float
    seed: int
    hit_ratio: float
    ndcg: float
    noise_multiplier: float
    epsilon_spent: float
    seconds: float


def train(epsilon: float, seed: int) -> Outcome:
    """Train MF federatedly at ``epsilon`` (``math.inf``: no DP) and evaluate HR@10."""
    torch.set_num_threads(1)
    logging.getLogger("absl").setLevel(logging.ERROR)  # skipped RDP orders while calibrating
    started = time.perf_counter()
    split = leave_one_out_split(synthetic_interactions(USERS, ITEMS, seed=0), seed=0)
    model = MatrixFactorization(USERS, ITEMS, DIM, seed=0)
    private: DistributedDPAggregator | None = None
    aggregator: Aggregator
    if math.isinf(epsilon):
        aggregator = MaskingAggregator("secagg+", clip=1.0, value_bits=24)
    else:
        dropping = round(DROPOUT * CLIENTS_PER_ROUND)
        private = DistributedDPAggregator(
            target_epsilon=epsilon,
            target_delta=DELTA,
            rounds=ROUNDS,
            sampling_rate=CLIENTS_PER_ROUND / USERS,
            expected_clients=CLIENTS_PER_ROUND - dropping,
            max_clients=CLIENTS_PER_ROUND,
            dimension=model.num_shared_parameters(),
            clip_norm=DP_CLIP_NORM,
            protocol="secagg+",
        )
        aggregator = private
    config = FederatedConfig(
        rounds=ROUNDS,
        clients_per_round=CLIENTS_PER_ROUND,
        local=LocalTrainingConfig(objective="bpr", epochs=2, learning_rate=1.0),
        item_learning_rate=1.0 if private is None else DP_SERVER_LR,
        dropout_fraction=DROPOUT,
        eval_every=ROUNDS,
        seed=seed,
    )
    trainer = FederatedTrainer(model, split.train, aggregator, config, evaluation=split)
    ranking = trainer.run().last_ranking()
    assert ranking is not None
    return Outcome(
        epsilon=epsilon,
        seed=seed,
        hit_ratio=ranking.hit_ratio,
        ndcg=ranking.ndcg,
        noise_multiplier=0.0 if private is None else private.config.noise_multiplier,
        epsilon_spent=math.inf if private is None else private.epsilon_spent,
        seconds=time.perf_counter() - started,
    )


def _label(epsilon: float) -> str:
    return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


def table(outcomes: list[Outcome], popularity: float) -> str:
    """The printed table: one line per epsilon, means over repeats (min-max when repeated)."""
    baseline = float(np.mean([o.hit_ratio for o in outcomes if math.isinf(o.epsilon)]))
    lines = [
        f"{'epsilon':>7} {'z':>7} {'spent':>7} {'HR@10':>7} {'range':>13} {'NDCG@10':>7} "
        f"{'gap':>7} {'s/run':>6}"
    ]
    for epsilon in EPSILONS:
        runs = [o for o in outcomes if o.epsilon == epsilon]
        hits = [o.hit_ratio for o in runs]
        spread = f"{min(hits):.4f}-{max(hits):.4f}" if len(runs) > 1 else "-"
        mean_hit = float(np.mean(hits))
        lines.append(
            f"{_label(epsilon):>7} {runs[0].noise_multiplier:>7.4f} "
            f"{_label(round(runs[0].epsilon_spent, 4)):>7} {mean_hit:>7.4f} {spread:>13} "
            f"{float(np.mean([o.ndcg for o in runs])):>7.4f} {mean_hit - baseline:>+7.4f} "
            f"{float(np.mean([o.seconds for o in runs])):>6.1f}"
        )
    lines.append(f"popularity HR@10 {popularity:.4f}; gap = HR@10 - HR@10 without DP")
    return "\n".join(lines)


def plot(path: Path, outcomes: list[Outcome], popularity: float) -> None:
    """HR@10 against epsilon (log axis); the non-DP and popularity levels as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [e for e in EPSILONS if not math.isinf(e)]
    means = [float(np.mean([o.hit_ratio for o in outcomes if o.epsilon == e])) for e in finite]
    baseline = float(np.mean([o.hit_ratio for o in outcomes if math.isinf(o.epsilon)]))
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.scatter(
        [o.epsilon for o in outcomes if not math.isinf(o.epsilon)],
        [o.hit_ratio for o in outcomes if not math.isinf(o.epsilon)],
        color="tab:blue",
        alpha=0.35,
        s=14,
    )
    axis.plot(finite, means, marker="o", color="tab:blue", label="distributed DP over SecAgg+")
    axis.axhline(baseline, linestyle="-", color="black", label="no DP (epsilon = inf)")
    axis.axhline(popularity, linestyle="--", color="grey", label="item popularity")
    axis.set_xscale("log", base=2)
    axis.set_xticks(finite, [_label(e) for e in finite])
    axis.set_xlabel(f"epsilon (delta = {DELTA:g}, {ROUNDS} rounds)")
    axis.set_ylabel("HR@10")
    axis.set_ylim(0, max(0.7, baseline + 0.05))
    axis.legend(loc="lower right")
    axis.set_title(f"Federated MF on synthetic data ({USERS} users): utility vs privacy")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    """Train every (epsilon, repeat) pair in parallel, then print the table and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per epsilon")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--plot", type=Path, default=Path("dp_utility.png"))
    args = parser.parse_args()
    jobs = [(epsilon, seed) for seed in range(args.repeats) for epsilon in EPSILONS]
    split = leave_one_out_split(synthetic_interactions(USERS, ITEMS, seed=0), seed=0)
    popularity = popularity_ranking(split).hit_ratio
    print(
        f"{len(jobs)} runs of federated MF ({USERS} users, {ITEMS} items, dim {DIM}, "
        f"{CLIENTS_PER_ROUND} clients per round, {DROPOUT:.0%} dropping, {ROUNDS} rounds) on "
        f"{min(args.workers, len(jobs))} workers...",
        flush=True,
    )
    with ProcessPoolExecutor(max_workers=max(1, min(args.workers, len(jobs)))) as pool:
        outcomes = list(pool.map(train, *zip(*jobs, strict=True)))
    print(table(outcomes, popularity))
    plot(args.plot, outcomes, popularity)
    print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
