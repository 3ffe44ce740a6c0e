"""The demo's ServerApp: FedAvg of a matrix-factorization recommender with secure aggregation.

The secure part is two lines: a :class:`~protocols.flower.SecureAggregationWorkflow` (SecAgg,
SecAgg+ or Paillier) and :class:`~protocols.flower.SecAggFedAvg`, Flower's FedAvg whose train
aggregation runs the protocol; ``strategy.start`` does the rest. ``backend = "plain"`` runs
Flower's FedAvg unprotected and ``backend = "flower-secagg+"`` Flower's own SecAgg+ (see
:mod:`secagg_mf.baseline`), both on the same model, data and settings, for comparison.

Threat model (``threat-model`` in the run config, SecAgg and SecAgg+): ``"active"`` (default)
needs ``roster``, the path of the deployment's roster file on the ServerApp's machine (write
it, and one key file per node, with ``python -m protocols.flower DIR --clients N``); each node
holds its own key file and copy of the roster in its node config (``secagg-identity-key``,
``secagg-roster``). ``"semi-honest"`` needs no keys; its nodes say
``secagg-threat-model="semi-honest"`` in their node config. In Flower's simulation runtime the
virtual nodes have no node config of their own: ``simulation-keys`` names the directory of the
simulation's key files (``secagg keys DIR --clients N``), from which this app takes the roster
(unless ``roster`` is set) and each virtual node its own key (:mod:`secagg_mf.simulation`).

With ``result-path`` set, the app writes a JSON report (per-round wall time, survivors, dropped
nodes, ``"aborted": true`` for a secure round that aborted, evaluation) and the arrays after each
round (``<result-path>.npz``). A run whose secure rounds all aborted trained nothing: the app
then raises :class:`RoundsAbortedError`, so that Flower marks the run failed.

Paillier (``paillier-keys``, the directory written by ``secagg keys DIR --clients N --decryptors
M``, and ``roster``): the decryptors (the single key holder, or the committee members of which
any t decrypt together) are loaded from their secret files and run inside this ServerApp only
because this is a demo. The point of Paillier is that the server never holds the secret key: a
deployment runs each decryptor as its own party, with only its own secret file, and the
ServerApp reaches each through a proxy (:class:`~protocols.flower.DecryptorEndpoint`). The nodes
never take the key from the server: each pins the public key from its own copy of
``paillier-public.key`` (node config ``secagg-paillier-key``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from protocols.aggregators.sparse import SparseConfig
from protocols.flower import (
    SecAggFedAvg,
    SecureAggregationWorkflow,
    SecureRoundResult,
    SparseTables,
    flower_session_id,
    load_decryptors,
)
from protocols.rounds import check_threat_model
from secagg.errors import ParameterError
from secagg_mf import baseline, task

app = ServerApp()
logger = logging.getLogger("secagg_mf")


@dataclass
class RoundTimes:
    """Each round's train wall time and resulting arrays, by server round."""

    started: dict[int, float] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    arrays: dict[int, ArrayRecord] = field(default_factory=dict)


class _RoundClock(FedAvg):
    """FedAvg, or the FedAvg subclass after it in a class's bases, timed round by round.

    A round runs from the start of ``configure_train`` (so the protocol rounds that
    :class:`~protocols.flower.SecAggFedAvg` runs there count) to the end of ``aggregate_train``.
    """

    @cached_property
    def clock(self) -> RoundTimes:
        """The rounds timed so far (created on first use, so no ``__init__`` is needed)."""
        return RoundTimes()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Start the round's clock, then configure the round as the strategy does."""
        self.clock.started[server_round] = time.perf_counter()
        return list(super().configure_train(server_round, arrays, config, grid))

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate as the strategy does, then stop the clock and keep the arrays."""
        arrays, metrics = super().aggregate_train(server_round, replies)
        clock = self.clock
        clock.seconds[server_round] = time.perf_counter() - clock.started[server_round]
        if arrays is not None:
            clock.arrays[server_round] = arrays
        return arrays, metrics


class TimedFedAvg(_RoundClock):
    """Flower's FedAvg, timed (the unprotected reference)."""


class TimedSecAggFedAvg(_RoundClock, SecAggFedAvg):
    """Our secure FedAvg, timed."""


class _StrategyOptions(TypedDict):
    """The FedAvg keywords both timed strategies share."""

    fraction_evaluate: float
    min_available_nodes: int
    min_train_nodes: int
    min_evaluate_nodes: int


class _WorkflowOptions(TypedDict):
    """The :class:`SecureAggregationWorkflow` keywords every backend shares."""

    timeout: float
    upload_timeout: float
    clip: float
    value_bits: int
    max_weight: float


def make_workflow(settings: task.Settings, run_id: int) -> SecureAggregationWorkflow:
    """The secure aggregation backend named by ``settings.backend``."""
    common = _WorkflowOptions(
        timeout=settings.timeout,
        upload_timeout=settings.upload_timeout,
        clip=settings.clip,
        value_bits=settings.value_bits,
        max_weight=settings.max_weight,
    )
    backend = settings.backend
    if backend == "plain" or backend == "flower-secagg+":
        raise ValueError(f"backend {backend!r} does not run a SecureAggregationWorkflow")
    roster = settings.server_roster()
    if backend != "paillier":
        # The ServerApp's copy of the roster only lets it plan the public graph and check the
        # signatures; each node trusts its own copy, never anything this app sends.
        threat_model = check_threat_model(settings.threat_model)
        if threat_model == "semi-honest":
            return SecureAggregationWorkflow(backend, threat_model=threat_model, **common)
        if not roster:
            raise ParameterError(
                "threat-model='active' needs roster='DIR/roster.txt' (a deployment) or "
                "simulation-keys='DIR' (a simulation) in the run config (write them with: "
                "secagg keys DIR --clients N), or threat-model='semi-honest'"
            )
        return SecureAggregationWorkflow(
            backend, threat_model=threat_model, roster=roster, **common
        )
    paillier_keys = settings.server_paillier_keys()
    if not paillier_keys or not roster:
        raise ParameterError(
            "backend='paillier' needs paillier-keys='DIR' and roster='DIR/roster.txt' (a "
            "deployment) or simulation-keys='DIR' (a simulation) in the run config (write them "
            "with: secagg keys DIR --clients N --decryptors M)"
        )
    # Demo only: a deployment runs each decryptor as its own party (see the module docstring).
    decryptors = load_decryptors(
        paillier_keys,
        session_id=flower_session_id(run_id),
        roster=roster,
        value_bits=settings.value_bits,
        max_clients=1024,
    )
    return SecureAggregationWorkflow("paillier", decryptors=decryptors, roster=roster, **common)


def make_strategy(settings: task.Settings, run_id: int) -> TimedFedAvg | TimedSecAggFedAvg:
    """The timed FedAvg of ``settings.backend``: plain, or with secure train aggregation."""
    common = _StrategyOptions(
        fraction_evaluate=settings.fraction_evaluate,
        min_available_nodes=settings.min_nodes,
        min_train_nodes=settings.min_nodes,
        min_evaluate_nodes=min(settings.min_nodes, 2),
    )
    if settings.backend == "plain":
        return TimedFedAvg(**common)
    sparse = None
    if settings.sparse:
        tables = task.item_tables(settings)
        pool = SparseConfig(pool=settings.sparse_pool)
        sparse = SparseTables(tables, settings.num_items, pool)
    return TimedSecAggFedAvg(make_workflow(settings, run_id), **common, sparse=sparse)


#: The backends whose rounds run our protocol (and may abort).
_SECURE_BACKENDS = ("secagg", "secagg+", "paillier")


class RoundsAbortedError(RuntimeError):
    """Every secure round of the run aborted, so no model was trained: the run has failed."""


#: Our loggers: the app's, the library's (``secagg.*``) and its protocol packages'.
_OUR_LOGGERS = ("secagg_mf", "secagg", "protocols")


def _log_our_lines() -> None:
    """INFO lines from our own loggers only; the root logger, and with it Flower's HTTP
    request lines and its own handler's copies, is left as Flower set it."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in _OUR_LOGGERS:
        ours = logging.getLogger(name)
        if not ours.handlers:
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train for ``num-server-rounds`` rounds on the chosen backend and report."""
    _log_our_lines()
    settings = task.Settings.from_run_config(context.run_config)
    initial = task.shared_arrays(task.build_model(settings))
    report: dict[str, object] = {"backend": settings.backend, "rounds": []}
    started = time.perf_counter()
    if settings.backend == "flower-secagg+":
        fit = baseline.run_flower_secaggplus(grid, context, settings, initial)
        arrays = fit.arrays
        report["rounds"] = [{"round": r, "seconds": s} for r, s in sorted(fit.seconds.items())]
    else:
        arrays = _run_strategy(grid, context, settings, initial, report)
    report["total_seconds"] = time.perf_counter() - started
    logger.info("round seconds on %s: %s", settings.backend, json.dumps(report["rounds"]))
    if settings.result_path:
        path = Path(settings.result_path)
        # Any: np.savez types its keywords as arrays, except ``allow_pickle`` (no key here).
        named: dict[str, Any] = {
            f"r{r}:{k}": v for r, by_name in arrays.items() for k, v in by_name.items()
        }
        np.savez(path.with_suffix(".npz"), **named)
        path.write_text(json.dumps(report, indent=2))
    if settings.backend in _SECURE_BACKENDS and settings.num_server_rounds > 0 and not arrays:
        # Flower would mark the run completed; a run that trained nothing has failed.
        raise RoundsAbortedError(
            f"all {settings.num_server_rounds} secure rounds aborted (the 'round N aborted' "
            "warnings above say why): no model was trained"
        )


def _run_strategy(
    grid: Grid,
    context: Context,
    settings: task.Settings,
    initial: ArrayRecord,
    report: dict[str, object],
) -> dict[int, dict[str, np.ndarray]]:
    """Run FedAvg (plain or secure); fill ``report``; return each round's arrays."""
    strategy = make_strategy(settings, context.run_id)
    result = strategy.start(
        grid,
        initial,
        num_rounds=settings.num_server_rounds,
        timeout=settings.upload_timeout,
        train_config=ConfigRecord(),
    )
    secure = strategy.results if isinstance(strategy, TimedSecAggFedAvg) else None
    report["rounds"] = [
        _round_entry(r, s, secure) for r, s in sorted(strategy.clock.seconds.items())
    ]
    report["evaluate"] = {
        str(r): dict(m) for r, m in sorted(result.evaluate_metrics_clientapp.items())
    }
    return {r: {k: v.numpy() for k, v in a.items()} for r, a in strategy.clock.arrays.items()}


def _round_entry(
    server_round: int, seconds: float, secure: dict[int, SecureRoundResult] | None
) -> dict[str, object]:
    """One round of the report; a secure round without a result aborted (the log says why)."""
    entry: dict[str, object] = {"round": server_round, "seconds": seconds}
    if secure is None:
        return entry
    result = secure.get(server_round)
    if result is None:
        entry["aborted"] = True
        return entry
    entry["survivors"] = [str(n) for n in result.survivors]
    entry["dropped"] = {str(n): r for n, r in result.dropped.items()}
    entry["protocol_seconds"] = result.seconds
    return entry
