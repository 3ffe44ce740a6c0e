"""``secagg train``: federated training of a recommender end to end.

Train draws (or loads) the data, runs federated rounds over the chosen aggregation backend with
optional dropouts, prints what the server saw each round (only the aggregate: how many clients
it summed, who dropped, the size of the step) next to the model's quality, and can write JSON
lines, a PNG training curve (:mod:`models.commands.plotting`) and a checkpoint
(:mod:`models.commands.checkpoint`). With ``--dp-epsilon`` the masking backend becomes
:class:`~protocols.dp_aggregator.DistributedDPAggregator`: every client adds a share of discrete
noise inside the secure sum, and each round reports how many noise shares its released sum holds
(its survivors; ``-`` for a withheld round, which is never unmasked and costs nothing) and the
epsilon spent so far, composed by ``dp-accounting`` over the released rounds at their own noise.

The run goes: set up (data, split, baselines, model, backend, trainer), describe the setup,
train with one table row (or JSON line) per evaluated round, summarise, then plot and save on
request. ``--json`` replaces every human-readable line with one JSON object per round and a
final summary object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from inspect import signature
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
import torch

from models.base import Recommender
from models.commands.checkpoint import save_checkpoint
from models.commands.plotting import plot_training_curve
from models.data import (
    MOVIELENS_100K_SHAPE,
    MOVIELENS_FORMATS,
    Interactions,
    LeaveOneOutSplit,
    leave_one_out_split,
    load_movielens,
    synthetic_interactions,
    synthetic_movielens,
    validation_split,
)
from models.evaluation import RankingMetrics, evaluate_ranking, popularity_ranking
from models.factory import (
    DP_BACKENDS,
    DP_MECHANISMS,
    MODELS,
    make_aggregator,
    make_dp_aggregator,
    make_model,
)
from models.federated import FederatedTrainer, RoundRecord, TrainingHistory
from models.recipes import (
    DEFAULT_COHORT,
    RECIPES,
    Recipe,
    derived_cohort,
    derived_rounds,
    recipe_for,
)
from models.server_optimizers import SCHEDULES, SERVER_OPTIMIZERS
from models.sparse_rounds import SparseConfig
from models.training import train_centralized
from protocols.aggregators import Aggregator, PaillierAggregator
from protocols.cli.arguments import (
    MAX_VALUE_BITS,
    check_ring,
    non_negative_int,
    positive_int,
    positive_real,
    probability,
    unit_fraction,
    value_bits,
)
from protocols.defaults import BACKEND_NAMES, DEFAULT_CLIP, DEFAULT_VALUE_BITS
from protocols.dp_aggregator import DistributedDPAggregator
from protocols.rounds import THREAT_MODELS
from secagg.errors import ParameterError
from secagg.paillier_keys import PaillierKeypair

__all__ = [
    "DEFAULT_DP_CLIP",
    "DEFAULT_DP_SERVER_LR",
    "DESCRIPTION",
    "EPILOG",
    "MIN_SYNTHETIC_ITEMS",
    "add_arguments",
    "run",
]

#: Tuned on the synthetic data (300 users, 500 items, MF dim 16, 50 clients per round, 40
#: rounds) at epsilon = 8. The L2 clip sits well below the median update norm (about 0.8), so
#: every update is clipped and only the product clip x server step matters: it sets both the
#: step and the noise added to the item table each round. 0.03 did best among 0.015 to 0.06.
#: Without DP the server step stays 1.0.
DEFAULT_DP_CLIP = 0.1
DEFAULT_DP_SERVER_LR = 0.3
#: Default evaluations over a run (each refits every user's private state: seconds apiece).
EVALUATIONS_PER_RUN = 4
#: The most items a synthetic user sees, and the unseen items each held-out item is ranked
#: against: the synthetic data needs more items than the two together.
_SYNTHETIC_MOST_PER_USER: Final[int] = (
    signature(synthetic_interactions).parameters["max_per_user"].default
)
_NEGATIVES: Final[int] = signature(leave_one_out_split).parameters["num_negatives"].default
MIN_SYNTHETIC_ITEMS: Final = _SYNTHETIC_MOST_PER_USER + _NEGATIVES
#: ``secagg train --help``'s text above and below the options (pre-wrapped).
DESCRIPTION: Final = """\
Train a recommender federatedly: each user is a client that trains on its own
data and uploads only its item-table update, which the server sums over the
chosen --protocol (optionally with distributed differential privacy). Prints
what the server saw each round next to the model's quality."""
EPILOG: Final = """\
examples:
  secagg train --protocol secagg+ --rounds 10
  secagg train --protocol secagg+ --dp-epsilon 8 --dp-delta 1e-5
  secagg train --data ratings.dat --rounds 20 --save model.pt"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``secagg train`` options to ``parser``.

    Args:
        parser: the parser to extend.
    """
    _add_data_arguments(parser)
    parser.add_argument(
        "--model", choices=MODELS, default="mf", help="the recommender (default: %(default)s)"
    )
    parser.add_argument(
        "--protocol",
        choices=BACKEND_NAMES,
        default="secagg+",
        help="how the server sums the clients' updates: plain (no privacy), secagg (masks on "
        "the complete graph), secagg+ (masks on a sparse graph) or paillier (homomorphic "
        "encryption, minutes per round) (default: %(default)s)",
    )
    parser.add_argument(
        "--aggregator", choices=BACKEND_NAMES, action=_DeprecatedProtocol, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--threat-model",
        choices=THREAT_MODELS,
        default="active",
        help="secagg/secagg+ against an active server (default: signed keys, public graph, "
        "consistency round) or a semi-honest one",
    )
    _add_round_arguments(parser)
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of data, initial weights and client sampling (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per round and a summary object instead of the table",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="PNG", help="write the training curve there"
    )
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="PATH",
        help="write a checkpoint there, for secagg recommend",
    )
    _add_sparse_arguments(parser)
    _add_dp_arguments(parser)


def _add_sparse_arguments(parser: argparse.ArgumentParser) -> None:
    sparse = parser.add_argument_group("sparse rounds (large catalogues)")
    sparse.add_argument(
        "--sparse",
        action="store_true",
        help="upload only the item rows the round's clients touched: a secure sum of support "
        "sketches first tells the server which rows those are (never whose), then a secure sum "
        "of the deltas on them (default: dense uploads of the whole catalogue)",
    )
    sparse.add_argument(
        "--sparse-pool",
        type=non_negative_int,
        default=SparseConfig().pool,
        metavar="N",
        help="--sparse: public rows drawn at random each round beside the touched ones; the "
        "clients draw their negatives from both (default: %(default)s)",
    )


#: ``--data`` value of the MovieLens-100K-shaped synthetic set (the recipes were tuned on it).
SYNTHETIC_ML100K: Final = "synthetic-ml100k"


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the interactions come from: a MovieLens file or synthetic data of a given size."""
    parser.add_argument(
        "--data",
        default="synthetic",
        metavar="PATH",
        help="'synthetic' (--users by --items), 'synthetic-ml100k' (a synthetic set of "
        "MovieLens-100K's size and shape: 943 users, 1,682 items, 100,000 interactions, at least "
        "20 per user, long-tail popularity) or the path of a MovieLens ratings file "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--data-format",
        choices=sorted(MOVIELENS_FORMATS),
        default=None,
        help="MovieLens format of --data (default: told from the file name: "
        + ", ".join(f"{name} for {fmt}" for fmt, name in MOVIELENS_FORMATS.items())
        + ")",
    )
    parser.add_argument(
        "--users",
        type=positive_int,
        default=300,
        metavar="N",
        help="synthetic data: users, one client each, at least 2 (default: %(default)s)",
    )
    parser.add_argument(
        "--items",
        type=positive_int,
        default=500,
        metavar="N",
        help=f"synthetic data: items, at least {MIN_SYNTHETIC_ITEMS} (default: %(default)s)",
    )


#: The positive-integer options of the run's size, with their help.
_COUNT_OPTIONS: Final = (
    (
        "--rounds",
        "federated rounds (default: enough for each user to be sampled --participations times)",
    ),
    (
        "--participations",
        "times each user is sampled over the run, which sets the "
        "default --rounds (default: the model's recipe, 6)",
    ),
    (
        "--clients-per-round",
        f"clients sampled each round, at least 2 for a secure sum "
        f"(default: {DEFAULT_COHORT}, or every user when fewer)",
    ),
    (
        "--local-epochs",
        "passes of each client over its own data per round (default: the model's recipe)",
    ),
    (
        "--eval-every",
        "evaluate HR@10 / NDCG@10 every this many rounds (default: 4 times a run)",
    ),
    (
        "--dim",
        "embedding size (default: the model's recipe: "
        + ", ".join(f"{recipe.dim} for {name}" for name, recipe in RECIPES.items())
        + ")",
    ),
    (
        "--seeds",
        "run this many seeds (--seed, --seed + 1, ...) and report the mean and range (default: 1)",
    ),
)


def _add_round_arguments(parser: argparse.ArgumentParser) -> None:
    """Rounds, clients, local training and the quantization of the updates."""
    for flag, text in _COUNT_OPTIONS:
        parser.add_argument(flag, type=positive_int, default=None, metavar="N", help=text)
    parser.add_argument(
        "--dropout",
        type=unit_fraction,
        default=0.1,
        metavar="FRACTION",
        help="fraction of each round's clients lost at a random protocol round, in [0, 1) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--clip",
        type=positive_real,
        default=DEFAULT_CLIP,
        help="each coordinate of an update is clipped to [-CLIP, CLIP] (default: %(default)s)",
    )
    _add_optimizer_arguments(parser)
    parser.add_argument(
        "--value-bits",
        type=value_bits,
        default=DEFAULT_VALUE_BITS,
        metavar="BITS",
        help=f"bits of one quantized value, 1 .. {MAX_VALUE_BITS} (default: %(default)s)",
    )
    parser.add_argument(
        "--evaluate-on",
        choices=("test", "validation"),
        default="test",
        help="rank each user's held-out latest item (test), or their second-latest one "
        "(validation, for tuning: the test item then stays out of every candidate list) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--no-centralized",
        dest="centralized",
        action="store_false",
        help="skip the centralized reference (the same model trained on the pooled data, no "
        "privacy) that is otherwise printed beside the run",
    )
    parser.add_argument(
        "--centralized", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def _add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """Client and server steps; unset ones come from the model's recipe."""
    for flag, text in (
        ("--lr", "the clients' SGD step on their user state and item rows"),
        ("--dense-lr", "the clients' SGD step on dense weights (MLPs, towers)"),
        (
            "--server-lr",
            f"the server's step on item rows ({DEFAULT_DP_SERVER_LR} with --dp-epsilon)",
        ),
        ("--server-dense-lr", "the server's step on dense weights"),
    ):
        parser.add_argument(
            flag, type=positive_real, default=None, help=f"{text} (default: the model's recipe)"
        )
    parser.add_argument(
        "--server-optimizer",
        choices=SERVER_OPTIMIZERS,
        default=None,
        help="how the server steps from the aggregate: sgd (FedAvg), fedavgm, fedadam, fedyogi "
        "(default: the model's recipe, fedadam; sgd with --dp-epsilon)",
    )
    parser.add_argument(
        "--server-schedule",
        choices=SCHEDULES,
        default=None,
        help="the server learning rate's schedule over the rounds (default: the model's "
        "recipe, cosine decay to a tenth; constant with --dp-epsilon)",
    )


class _DeprecatedProtocol(argparse.Action):
    """``--aggregator``, the old name of ``--protocol``: sets it and says so on stderr."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: warning: --aggregator is deprecated, use --protocol {values}",
            file=sys.stderr,
        )
        namespace.protocol = values


def _add_dp_arguments(parser: argparse.ArgumentParser) -> None:
    dp = parser.add_argument_group("distributed differential privacy (secagg, secagg+)")
    dp.add_argument(
        "--dp-epsilon",
        type=positive_real,
        default=None,
        help="target epsilon over all rounds; turns on distributed DP (default: off)",
    )
    dp.add_argument(
        "--dp-delta",
        type=probability,
        default=1e-5,
        help="target delta, in (0, 1) (default: %(default)s)",
    )
    dp.add_argument(
        "--dp-mechanism",
        choices=DP_MECHANISMS,
        default="discrete_gaussian",
        help="the noise each client adds (default: %(default)s)",
    )
    dp.add_argument(
        "--dp-clip",
        type=positive_real,
        default=DEFAULT_DP_CLIP,
        help="L2 clip norm of a client's update (default: %(default)s)",
    )


@dataclass(frozen=True, slots=True)
class _Output:
    """Where the command writes: human-readable lines, or (with ``--json``) JSON only."""

    as_json: bool
    stream: TextIO

    def say(self, text: str) -> None:
        """Print a human-readable line (nothing with ``--json``)."""
        if not self.as_json:
            print(text, file=self.stream)

    def emit(self, obj: dict[str, Any], *, flush: bool = False) -> None:
        """Print one JSON object on its own line."""
        print(json.dumps(obj), file=self.stream, flush=flush)


@dataclass(frozen=True, slots=True)
class _Centralized:
    """The centralized reference's quality and training time."""

    metrics: RankingMetrics
    seconds: float


@dataclass(frozen=True, slots=True)
class _Setup:
    """Everything a run is made of, built before the first round."""

    data: Interactions
    split: LeaveOneOutSplit
    popularity: RankingMetrics
    centralized: _Centralized | None
    model: Recommender
    aggregator: Aggregator
    private: DistributedDPAggregator | None
    server_lr: float
    trainer: FederatedTrainer


def run(args: argparse.Namespace) -> int:
    """Train federatedly; print the per-round table (or JSON lines); plot and save on request.

    Args:
        args: the namespace :func:`add_arguments` describes.

    Returns:
        0, or 1 when every round aborted (the model was never updated; the reason is printed).

    Raises:
        ParameterError: a missing data path, or parameters no backend can run with.
    """
    torch.set_num_threads(1)
    _check_arguments(args)
    _check_protocol_options(args)
    out = _Output(as_json=args.json, stream=sys.stdout)
    seeds = args.seeds or 1
    if seeds == 1:
        return _run_seed(args, out)[0]
    if args.plot is not None or args.save is not None:
        raise ParameterError("--plot and --save write one run's results; give them without --seeds")
    summaries: list[dict[str, Any]] = []
    status = 0
    for offset in range(seeds):
        one = argparse.Namespace(**vars(args))
        one.seed = args.seed + offset
        out.say(f"--- seed {one.seed} ({offset + 1} of {seeds}) ---")
        code, summary = _run_seed(one, out)
        status = max(status, code)
        summaries.append(summary)
    _report_seeds(summaries, out)
    return status


def _run_seed(args: argparse.Namespace, out: _Output) -> tuple[int, dict[str, Any]]:
    """One seed's run: set up, train, report; the exit status and the summary object."""
    setup = _set_up(args, out)
    estimate = _paillier_estimate(args, setup)
    if estimate is not None:
        print(f"secagg train: note: {estimate}", file=sys.stderr, flush=True)
    _describe_training(args, setup, out)
    started = time.perf_counter()
    history = _train(args, setup, out)
    seconds = time.perf_counter() - started
    summary = _report_summary(args, setup, history, seconds, out)
    failure = _failure(history)
    if failure is not None:
        print(f"secagg train: error: {failure}", file=sys.stderr)
        return 1, summary
    if args.plot is not None:
        plot_training_curve(
            args.plot,
            history.records,
            setup.popularity.hit_ratio,
            None if setup.centralized is None else setup.centralized.metrics,
            setup.aggregator.name,
        )
        out.say(f"training curve written to {args.plot}")
    if args.save is not None:
        save_checkpoint(
            args.save,
            setup.trainer,
            model_name=args.model,
            dim=args.dim,
            seed=args.seed,
            user_ids=setup.data.user_ids,
            item_ids=setup.data.item_ids,
        )
        out.say(f"checkpoint written to {args.save} (holds every simulated client's embedding)")
    return 0, summary


_SEED_COLUMNS: Final = (
    ("federated HR@10", "hr@10"),
    ("federated NDCG@10", "ndcg@10"),
    ("federated seconds", "seconds"),
    ("centralized HR@10", "centralized_hr@10"),
    ("centralized NDCG@10", "centralized_ndcg@10"),
    ("centralized seconds", "centralized_seconds"),
)


def _report_seeds(summaries: Sequence[dict[str, Any]], out: _Output) -> None:
    """Mean and range over the seeds of each quality and time figure (a JSON object too)."""
    stats: dict[str, dict[str, float]] = {}
    for _label, key in _SEED_COLUMNS:
        values = [float(s[key]) for s in summaries if s.get(key) is not None]
        if values:
            stats[key] = {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}
    if out.as_json:
        out.emit({"seeds": [s["seed"] for s in summaries], "over_seeds": stats})
        return
    seeds = ", ".join(str(s["seed"]) for s in summaries)
    out.say(f"over seeds {seeds}: {'':<20} {'mean':>8} {'min':>8} {'max':>8}")
    for label, key in _SEED_COLUMNS:
        if key in stats:
            row = stats[key]
            out.say(f"  {label:<38} {row['mean']:>8.4f} {row['min']:>8.4f} {row['max']:>8.4f}")


def _set_up(args: argparse.Namespace, out: _Output) -> _Setup:
    """Load the data, report the baselines, and build the model, backend and trainer."""
    data = _load_data(args)
    split = leave_one_out_split(data, seed=args.seed)
    if args.evaluate_on == "validation":
        split = validation_split(split, seed=args.seed)
    recipe = _resolve_defaults(args, split)
    popularity = popularity_ranking(split)
    out.say(
        f"data: {data.num_users} users (one client each), {data.num_items} items, {len(data)} "
        f"interactions; leave-one-out ({args.evaluate_on} item) with 99 negatives; popularity "
        f"HR@10 {popularity.hit_ratio:.4f} NDCG@10 {popularity.ndcg:.4f}"
    )
    local = replace(
        recipe.local,
        epochs=args.local_epochs,
        learning_rate=args.lr,
        dense_learning_rate=args.dense_lr,
    )
    centralized = (
        _centralized_reference(args, data, split, recipe, out) if args.centralized else None
    )
    model = make_model(args.model, data.num_users, data.num_items, args.dim, args.seed)
    aggregator, private = _build_aggregator(args, split, model)
    recipe_run = recipe.federated_config(
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        dropout_fraction=args.dropout,
        eval_every=args.eval_every,
        seed=args.seed,
    )
    config = replace(
        recipe_run,
        local=local,
        clip=args.clip,
        item_learning_rate=args.server_lr,
        dense_learning_rate=args.server_dense_lr,
        server_optimizer=replace(
            recipe.server_optimizer, name=args.server_optimizer, schedule=args.server_schedule
        ),
        counts=recipe.counts and private is None,
        sparse=SparseConfig(pool=args.sparse_pool) if args.sparse else None,
    )
    trainer = FederatedTrainer(model, split.train, aggregator, config, evaluation=split)
    return _Setup(
        data, split, popularity, centralized, model, aggregator, private, args.server_lr, trainer
    )


def _resolve_defaults(args: argparse.Namespace, split: LeaveOneOutSplit) -> Recipe:
    """Fill every unset option from the model's recipe and the data's size, in ``args``.

    Under ``--dp-epsilon`` the server keeps the rule the DP defaults were tuned with: FedAvg
    (``sgd``) on the summed item rows at :data:`DEFAULT_DP_SERVER_LR`, and no counts.
    """
    recipe = recipe_for(args.model)
    users = int(np.unique(split.train.users).shape[0])
    dp = args.dp_epsilon is not None
    defaults: dict[str, Any] = {
        "dim": recipe.dim,
        "clients_per_round": derived_cohort(users),
        "participations": recipe.participations,
        "local_epochs": recipe.local.epochs,
        "lr": recipe.local.learning_rate,
        "dense_lr": recipe.local.group_learning_rates()[2],
        "server_lr": DEFAULT_DP_SERVER_LR if dp else recipe.item_learning_rate,
        "server_dense_lr": 1.0 if dp else recipe.dense_learning_rate,
        "server_optimizer": "sgd" if dp else recipe.server_optimizer.name,
        "server_schedule": "constant" if dp else recipe.server_optimizer.schedule,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.rounds is None:
        args.rounds = derived_rounds(users, args.clients_per_round, args.participations)
    if args.eval_every is None:
        args.eval_every = max(1, math.ceil(args.rounds / EVALUATIONS_PER_RUN))
    return recipe


def _load_data(args: argparse.Namespace) -> Interactions:
    if args.data == "synthetic":
        return synthetic_interactions(args.users, args.items, seed=args.seed)
    if args.data == SYNTHETIC_ML100K:
        return synthetic_movielens(MOVIELENS_100K_SHAPE, seed=args.seed)
    return load_movielens(args.data, format=args.data_format)


def _centralized_reference(
    args: argparse.Namespace,
    data: Interactions,
    split: LeaveOneOutSplit,
    recipe: Recipe,
    out: _Output,
) -> _Centralized:
    """Train the same model on the pooled data (no privacy) as a reference and report it."""
    central = make_model(args.model, data.num_users, data.num_items, args.dim, args.seed)
    config = recipe.centralized
    progress = _progress_bar(args, config.epochs, "centralized reference", "epoch")
    on_epoch = None if progress is None else (lambda _loss: progress.update(1))
    started = time.perf_counter()
    train_centralized(central, split.train, config, seed=args.seed, on_epoch=on_epoch)
    seconds = time.perf_counter() - started
    if progress is not None:
        progress.close()
    metrics = evaluate_ranking(central, central.users.weight.detach(), split)
    out.say(
        f"centralized {args.model} ({config.epochs} epochs on the pooled data, no privacy; "
        f"{seconds:.1f} s): HR@10 {metrics.hit_ratio:.4f} NDCG@10 {metrics.ndcg:.4f}"
    )
    return _Centralized(metrics, seconds)


def _build_aggregator(
    args: argparse.Namespace, split: LeaveOneOutSplit, model: Recommender
) -> tuple[Aggregator, DistributedDPAggregator | None]:
    """The backend, and the same object as a DP aggregator when ``--dp-epsilon`` is given."""
    if args.dp_epsilon is None:
        aggregator = make_aggregator(
            args.protocol,
            clip=args.clip,
            value_bits=args.value_bits,
            threat_model=args.threat_model,
        )
        return aggregator, None
    population = int(np.unique(split.train.users).shape[0])
    _check_dp_survivors(args, population)
    private = make_dp_aggregator(
        args.protocol,
        epsilon=args.dp_epsilon,
        delta=args.dp_delta,
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        population=population,
        dropout=args.dropout,
        dimension=model.num_shared_parameters(),
        clip_norm=args.dp_clip,
        mechanism=args.dp_mechanism,
        threat_model=args.threat_model,
    )
    return private, private


def _describe_training(args: argparse.Namespace, setup: _Setup, out: _Output) -> None:
    """Say what travels, what DP adds, and print the header of the per-round table."""
    threat_model = getattr(setup.aggregator, "threat_model", None)
    against = "" if threat_model is None else f" ({threat_model} server)"
    sparse = setup.trainer.sparse_rounds
    how = (
        "uploaded densely"
        if sparse is None
        else f"of which the touched item rows are uploaded (support sketch of {sparse.lanes} "
        f"lanes, public pool of {sparse.config.pool} rows)"
    )
    out.say(
        f"federated {args.model} over {setup.aggregator.name}{against}: "
        f"{setup.model.num_shared_parameters()} shared parameters {how} by each of "
        f"{args.clients_per_round} clients per round, {args.dropout:.0%} of them dropping at "
        "random protocol rounds; user embeddings never leave the clients"
    )
    private = setup.private
    if private is not None:
        dp_config = private.config
        out.say(
            f"distributed DP ({dp_config.mechanism}): noise multiplier "
            f"{dp_config.noise_multiplier:.4f} calibrated with dp-accounting for epsilon "
            f"{private.target_epsilon:g} at delta {private.delta:g} over {args.rounds} rounds "
            f"(q = {private.sampling_rate:.4f}); L2 clip {dp_config.clip_norm:g}, ring "
            f"2^{dp_config.modulus_bits}, each of at least {dp_config.expected_clients} surviving "
            f"clients adds 1/{dp_config.expected_clients} of the noise; server step "
            f"{setup.server_lr:g}"
        )
    epsilon_header = f" {'survivors':>9} {'epsilon':>8}" if private is not None else ""
    if sparse is not None:
        epsilon_header += f" {'rows':>7}"
    out.say(
        f"{'round':>5} {'server summed':>13} {'dropped':>7} {'step norm':>9} {'loss':>7} "
        f"{'HR@10':>7} {'NDCG@10':>7} {'agg s':>7}{epsilon_header}"
    )


def _train(args: argparse.Namespace, setup: _Setup, out: _Output) -> TrainingHistory:
    """Run every round, reporting each as it ends (a progress bar on stderr unless ``--json``)."""
    progress = _progress_bar(args, args.rounds, "rounds", "round")
    steps = _paillier_steps_bar(args, setup.aggregator)
    table = _RoundTable(out, setup.aggregator.name, setup.private, progress)
    history = setup.trainer.run(on_round=table.show)
    for bar in (steps, progress):
        if bar is not None:
            bar.close()
    return history


def _paillier_steps_bar(args: argparse.Namespace, aggregator: Aggregator) -> Any:
    """A second bar that moves with every client's step inside a Paillier round (one round
    of encryption can take minutes); ``None`` for the other backends or with ``--json``."""
    if not isinstance(aggregator, PaillierAggregator):
        return None
    bar = _progress_bar(args, None, "paillier protocol steps", "msg")
    if bar is not None:
        aggregator.secure_sum.on_step = lambda: bar.update(1)
    return bar


def _progress_bar(args: argparse.Namespace, total: int | None, what: str, unit: str) -> Any:
    """A tqdm bar on stderr (``total`` None: a counter), or ``None`` with ``--json`` (JSON
    output stays machine-only)."""
    if args.json:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit=unit, file=sys.stderr, leave=False)


def _paillier_estimate(args: argparse.Namespace, setup: _Setup) -> str | None:
    """How long Paillier will take, measured: one 2-client round of this model's size, on a
    separate aggregator under the same key (the run's own one keeps its state); ``None`` for
    the other backends."""
    aggregator = setup.aggregator
    if not isinstance(aggregator, PaillierAggregator):
        return None
    keys = aggregator.secure_sum.keys
    if not isinstance(keys, PaillierKeypair):  # train deals a single key holder
        return None
    probe = PaillierAggregator(
        clip=args.clip,
        value_bits=args.value_bits,
        keypair=keys,
        max_clients=aggregator.max_clients,
        processes=aggregator.processes,
    )
    size = setup.model.num_shared_parameters()
    started = time.perf_counter()
    probe.aggregate({0: np.zeros(size), 1: np.zeros(size)})
    seconds = time.perf_counter() - started
    sampled = min(args.clients_per_round, int(np.unique(setup.split.train.users).shape[0]))
    total = seconds / 2 * sampled * args.rounds
    return (
        f"--protocol paillier encrypts each client's {size} shared parameters every round; one "
        f"2-client round of that size took {seconds:.1f} s here, so {args.rounds} "
        f"round{'s' if args.rounds > 1 else ''} of {sampled} clients need about "
        f"{_duration(total)} for the encryption alone (fewer --rounds or --clients-per-round, "
        "a smaller --dim, or --protocol secagg+ take less)"
    )


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min`` or ``1.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _RoundTable:
    """Reports each finished round: a JSON line, or a table row when it was evaluated or aborted."""

    def __init__(
        self,
        out: _Output,
        aggregator: str,
        private: DistributedDPAggregator | None,
        progress: Any,
    ) -> None:
        self._out = out
        self._aggregator = aggregator
        self._private = private
        self._progress = progress
        self._charged = 0  # released rounds the accountant had charged at the last report

    def show(self, record: RoundRecord) -> None:
        """The trainer's ``on_round`` callback."""
        if self._progress is not None:
            self._progress.update(1)
        privacy = self._round_privacy()
        if self._out.as_json:
            self._out.emit(_record_json(record, self._aggregator, privacy), flush=True)
            return
        if record.ranking is None and not record.aborted:
            return
        line = _table_row(record, privacy)
        if self._progress is not None:
            self._progress.write(line, file=self._out.stream)
        else:
            self._out.say(line)

    def _round_privacy(self) -> _RoundPrivacy | None:
        """What this round cost: its charged survivor count (if released) and the total."""
        private = self._private
        if private is None:
            return None
        charged = private.round_survivors
        survivors = charged[-1] if len(charged) > self._charged else None
        self._charged = len(charged)
        noise = None if survivors is None else private.accountant.round_noise_multiplier(survivors)
        return _RoundPrivacy(survivors, noise, private.epsilon_spent)


@dataclass(frozen=True, slots=True)
class _RoundPrivacy:
    """One DP round's cost: the noise shares of its released sum (``None``: withheld, never
    unmasked, free), that sum's noise multiplier z * sqrt(s / n), and the epsilon spent so far."""

    survivors: int | None
    noise_multiplier: float | None
    epsilon: float


def _table_row(record: RoundRecord, privacy: _RoundPrivacy | None) -> str:
    summed = "aborted" if record.aborted else f"{len(record.survivors)} clients"
    hr = "-" if record.ranking is None else f"{record.ranking.hit_ratio:.4f}"
    ndcg = "-" if record.ranking is None else f"{record.ranking.ndcg:.4f}"
    line = (
        f"{record.round:>5} {summed:>13} {len(record.dropped):>7} {record.update_norm:>9.3f} "
        f"{record.client_loss:>7.4f} {hr:>7} {ndcg:>7} {record.aggregation_seconds:>7.2f}"
    )
    if privacy is not None:
        charged = "-" if privacy.survivors is None else str(privacy.survivors)
        line += f" {charged:>9} {privacy.epsilon:>8.4f}"
    if record.announced_rows is not None:
        line += f" {record.announced_rows:>7}"
    return line


def _record_json(
    record: RoundRecord, aggregator: str, privacy: _RoundPrivacy | None
) -> dict[str, Any]:
    """One round's JSON line; with DP, ``released`` says whether its sum was unmasked (and
    charged, with ``survivors`` noise shares at ``noise_multiplier``)."""
    return {
        "round": record.round,
        "aggregator": aggregator,
        "sampled": len(record.sampled),
        "survivors": len(record.survivors),
        "dropped": list(record.dropped),
        "aborted": record.aborted,
        "client_loss": record.client_loss,
        "update_norm": record.update_norm,
        "touched_items": record.touched_items,
        "announced_rows": record.announced_rows,
        "hr@10": None if record.ranking is None else record.ranking.hit_ratio,
        "ndcg@10": None if record.ranking is None else record.ranking.ndcg,
        "client_seconds": record.client_seconds,
        "aggregation_seconds": record.aggregation_seconds,
        "epsilon": None if privacy is None else privacy.epsilon,
        "released": None if privacy is None else privacy.survivors is not None,
        "noise_multiplier": None if privacy is None else privacy.noise_multiplier,
    }


def _summary(
    args: argparse.Namespace, setup: _Setup, history: TrainingHistory, seconds: float
) -> dict[str, Any]:
    """The final JSON object of a run."""
    final = history.last_ranking()
    private, centralized = setup.private, setup.centralized
    return {
        "summary": True,
        "model": args.model,
        "aggregator": setup.aggregator.name,
        "rounds": args.rounds,
        "seconds": seconds,
        "seconds_per_round": seconds / args.rounds,
        "aggregation_seconds_per_round": float(
            np.mean([r.aggregation_seconds for r in history.records])
        ),
        "hr@10": None if final is None else final.hit_ratio,
        "ndcg@10": None if final is None else final.ndcg,
        "popularity_hr@10": setup.popularity.hit_ratio,
        "popularity_ndcg@10": setup.popularity.ndcg,
        "centralized_hr@10": None if centralized is None else centralized.metrics.hit_ratio,
        "centralized_ndcg@10": None if centralized is None else centralized.metrics.ndcg,
        "centralized_seconds": None if centralized is None else centralized.seconds,
        "seed": args.seed,
        "aborted_rounds": sum(r.aborted for r in history.records),
        "epsilon": None if private is None else private.epsilon_spent,
        "privacy": None if private is None else private.privacy_report(),
    }


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before any data is built, options no round could run with."""
    if args.data == "synthetic":
        _check_synthetic_sizes(args)
    cohort = DEFAULT_COHORT if args.clients_per_round is None else args.clients_per_round
    if args.protocol in ("secagg", "secagg+"):
        check_ring(args.value_bits, cohort, "--clients-per-round")
    if args.protocol != "plain" and cohort < 2:
        raise ParameterError(
            f"--clients-per-round {args.clients_per_round}: a secure sum needs at least 2 "
            "clients per round (one client's sum is its own update)"
        )


def _check_synthetic_sizes(args: argparse.Namespace) -> None:
    """``--users`` and ``--items`` must make a data set every round and evaluation can use."""
    if args.users < 2:
        raise ParameterError(
            f"--users {args.users}: federated training needs at least 2 users (one client each)"
        )
    if args.items < MIN_SYNTHETIC_ITEMS:
        raise ParameterError(
            f"--items {args.items} is too few: a synthetic user sees up to "
            f"{_SYNTHETIC_MOST_PER_USER} items, and the evaluation ranks each held-out item "
            f"against {_NEGATIVES} the user never saw, so give --items {MIN_SYNTHETIC_ITEMS} or "
            "more"
        )


def _check_protocol_options(args: argparse.Namespace) -> None:
    """Options of one backend given with another, and DP rounds too small to keep 2 clients."""
    if args.sparse and args.protocol == "paillier":
        raise ParameterError(
            "--sparse runs over --protocol plain, secagg or secagg+, not paillier: the support "
            "sketch is summed in a 32-bit ring"
        )
    if args.dp_epsilon is None:
        return
    if args.sparse:
        raise ParameterError(
            "--sparse with --dp-epsilon: distributed DP does not cover the sparse rounds' "
            "support sketch yet; give one of them"
        )
    if args.protocol not in DP_BACKENDS:
        raise ParameterError(
            f"--dp-epsilon needs --protocol secagg or secagg+, not {args.protocol}: distributed "
            "DP adds its noise shares inside the masked sum"
        )


def _check_dp_survivors(args: argparse.Namespace, population: int) -> None:
    """Distributed DP needs 2 clients sure to survive each round (the trainer samples
    ``min(--clients-per-round, population)`` and drops ``round(--dropout * sampled)``)."""
    sampled = min(args.clients_per_round, population)
    survivors = sampled - round(args.dropout * sampled)
    if survivors < 2:
        raise ParameterError(
            f"--dropout {args.dropout} leaves {survivors} of the {sampled} clients sampled per "
            "round (--clients-per-round) sure to survive; distributed DP needs at least 2: lower "
            "--dropout or raise --clients-per-round"
        )


def _failure(history: TrainingHistory) -> str | None:
    """Why the run failed, if every round aborted: the model then never moved."""
    records = history.records
    if not records or not all(record.aborted for record in records):
        return None
    reason = records[-1].abort_reason or "too few survivors"
    return (
        f"all {len(records)} rounds aborted, so the model was never updated; the last one: "
        f"{reason}. Lower --dropout, or sample more clients per round (--clients-per-round)"
    )


def _report_summary(
    args: argparse.Namespace,
    setup: _Setup,
    history: TrainingHistory,
    seconds: float,
    out: _Output,
) -> dict[str, Any]:
    """The summary object (``--json``), or the final quality and privacy lines."""
    summary = _summary(args, setup, history, seconds)
    if args.json:
        out.emit(summary)
        return summary
    final = history.last_ranking()
    if final is not None:
        central = setup.centralized
        beside = (
            ""
            if central is None
            else f", centralized HR@10 {central.metrics.hit_ratio:.4f} NDCG@10 "
            f"{central.metrics.ndcg:.4f}"
        )
        out.say(
            f"done in {seconds:.1f} s ({summary['aggregation_seconds_per_round']:.2f} s of "
            f"aggregation per round): federated HR@10 {final.hit_ratio:.4f} NDCG@10 "
            f"{final.ndcg:.4f}{beside}, item popularity HR@10 {setup.popularity.hit_ratio:.4f}"
        )
    if setup.private is not None:
        report = setup.private.privacy_report()
        survivors = setup.private.round_survivors
        spread = f"{min(survivors)}-{max(survivors)}" if survivors else "none"
        out.say(
            f"privacy spent: epsilon {report['epsilon']:.4f} at delta {report['delta']:g} after "
            f"{report['rounds']} released rounds (target {report['target_epsilon']:g} over "
            f"{report['planned_rounds']}; survivors per released round {spread}, each of at "
            f"least {report['expected_clients']} noise shares; withheld rounds cost nothing; "
            f"{report['accountant']}, {report['library']})"
        )
    return summary
