"""The demo's ServerApp: FedAvg of a matrix-factorization recommender with secure aggregation.

The secure part is two lines: a :class:`~protocols.flower.SecureAggregationWorkflow` (SecAgg,
SecAgg+ or Paillier) and :class:`~protocols.flower.SecAggFedAvg`, Flower's FedAvg whose train
aggregation runs the protocol; ``strategy.start`` does the rest. ``backend = "plain"`` runs
Flower's FedAvg unprotected and ``backend = "flower-secagg+"`` Flower's own SecAgg+ (see
:mod:`secagg_mf.baseline`), both on the same model, data and settings, for comparison.

With ``result-path`` set, the app writes a JSON report (per-round wall time, survivors, dropped
nodes, evaluation) and the arrays after each round (``<result-path>.npz``).

Paillier: the key holder runs inside this ServerApp only because this is a demo. The point of
Paillier is that the server never holds the secret key: in production the key holder is a
separate party and the ServerApp talks to it through a proxy with the same three members
(:class:`~protocols.flower.KeyHolderEndpoint`), and nodes receive its public key out of band
(``SecAggMod(paillier_public_key=...)``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from protocols.flower import SecAggFedAvg, SecureAggregationWorkflow, flower_session_id
from protocols.paillier import KeyHolder
from secagg.paillier_keys import RandomnessMode, generate_paillier_keypair
from secagg_mf import baseline, task

app = ServerApp()
logger = logging.getLogger("secagg_mf")


class _RoundClock:
    """Mixin for FedAvg strategies: each round's train wall time and resulting arrays."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.started: dict[int, float] = {}
        self.seconds: dict[int, float] = {}
        self.arrays: dict[int, ArrayRecord] = {}

    def configure_train(self, server_round: int, *args: object) -> list[Message]:
        self.started[server_round] = time.perf_counter()
        return list(super().configure_train(server_round, *args))  # type: ignore[misc]

    def aggregate_train(
        self, server_round: int, replies: object
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        self.seconds[server_round] = time.perf_counter() - self.started[server_round]
        if arrays is not None:
            self.arrays[server_round] = arrays
        return arrays, metrics


class TimedFedAvg(_RoundClock, FedAvg):
    """Flower's FedAvg, timed (the unprotected reference)."""


class TimedSecAggFedAvg(_RoundClock, SecAggFedAvg):
    """Our secure FedAvg, timed."""


def make_workflow(settings: task.Settings, run_id: int) -> SecureAggregationWorkflow:
    """The secure aggregation backend named by ``settings.backend``."""
    common = {
        "timeout": settings.timeout,
        "upload_timeout": settings.upload_timeout,
        "clip": settings.clip,
        "value_bits": settings.value_bits,
        "max_weight": settings.max_weight,
    }
    if settings.backend != "paillier":
        return SecureAggregationWorkflow(settings.backend, **common)  # type: ignore[arg-type]
    # Demo only: in production the key holder is a separate party (see the module docstring).
    key_holder = KeyHolder(
        generate_paillier_keypair(settings.paillier_key_bits, mode=RandomnessMode.FRESH),
        session_id=flower_session_id(run_id),
        value_bits=settings.value_bits,
        max_clients=1024,
    )
    return SecureAggregationWorkflow("paillier", key_holder=key_holder, **common)  # type: ignore[arg-type]


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train for ``num-server-rounds`` rounds on the chosen backend and report."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = task.Settings.from_run_config(context.run_config)
    initial = task.shared_arrays(task.build_model(settings))
    report: dict[str, object] = {"backend": settings.backend, "rounds": []}
    started = time.perf_counter()
    if settings.backend == "flower-secagg+":
        fit = baseline.run_flower_secaggplus(grid, context, settings, initial)
        seconds, arrays = fit.seconds, fit.arrays
        report["rounds"] = [{"round": r, "seconds": s} for r, s in sorted(seconds.items())]
    else:
        strategy: TimedFedAvg | TimedSecAggFedAvg
        common = {
            "fraction_evaluate": settings.fraction_evaluate,
            "min_available_nodes": settings.min_nodes,
            "min_train_nodes": settings.min_nodes,
            "min_evaluate_nodes": min(settings.min_nodes, 2),
        }
        if settings.backend == "plain":
            strategy = TimedFedAvg(**common)  # type: ignore[arg-type]
        else:
            workflow = make_workflow(settings, context.run_id)
            strategy = TimedSecAggFedAvg(workflow, **common)  # type: ignore[arg-type]
        result = strategy.start(
            grid,
            initial,
            num_rounds=settings.num_server_rounds,
            timeout=settings.upload_timeout,
            train_config=ConfigRecord(),
        )
        seconds = strategy.seconds
        arrays = {r: {k: v.numpy() for k, v in a.items()} for r, a in strategy.arrays.items()}
        report["rounds"] = [
            _round_entry(r, s, getattr(strategy, "results", {}).get(r))
            for r, s in sorted(seconds.items())
        ]
        report["evaluate"] = {
            str(r): dict(m) for r, m in sorted(result.evaluate_metrics_clientapp.items())
        }
    report["total_seconds"] = time.perf_counter() - started
    logger.info("round seconds on %s: %s", settings.backend, json.dumps(report["rounds"]))
    if settings.result_path:
        path = Path(settings.result_path)
        np.savez(
            path.with_suffix(".npz"),
            **{f"r{r}:{k}": v for r, named in arrays.items() for k, v in named.items()},
        )
        path.write_text(json.dumps(report, indent=2))


def _round_entry(server_round: int, seconds: float, secure: object) -> dict[str, object]:
    entry: dict[str, object] = {"round": server_round, "seconds": seconds}
    if secure is not None:
        entry["survivors"] = [str(n) for n in secure.survivors]  # type: ignore[attr-defined]
        entry["dropped"] = {str(n): r for n, r in secure.dropped.items()}  # type: ignore[attr-defined]
        entry["protocol_seconds"] = secure.seconds  # type: ignore[attr-defined]
    return entry
