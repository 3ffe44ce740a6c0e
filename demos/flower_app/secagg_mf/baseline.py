"""Flower's own SecAgg+ on the same app, for the side-by-side round times (not for production).

Flower's ``SecAggPlusWorkflow`` runs only inside its legacy ``DefaultWorkflow`` (a
``LegacyContext`` with a legacy ``FedAvg``), and ``secaggplus_mod`` expects legacy ``FitIns`` /
``FitRes`` records. The two adapters below let the demo's Message-API train function serve it
unchanged, so both backends train the same model on the same data with the same settings: the
complete graph (or the same Harary degree) and threshold as ours, the same clipping range,
quantization levels, maximum weight and per-stage timeout. One difference is Flower's rule:
``secaggplus_mod`` clips the weighted values ``(w / max_weight) * x``, ours clips ``x`` before
weighting it; the two agree while no value of the model exceeds the clipping range.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid

from protocols.rounds import RoundPolicy

if TYPE_CHECKING:
    from secagg_mf.task import Settings

CallNext = Callable[[Message, Context], Message]


def flower_secaggplus_mod(message: Message, context: Context, call_next: CallNext) -> Message:
    """Flower's ``secaggplus_mod`` around the Message-API train function."""
    return secaggplus_mod(message, context, _legacy_train(call_next, context))


def _legacy_train(call_next: CallNext, context: Context) -> CallNext:
    def handle(message: Message, context: Context) -> Message:
        # Imported here, as in client_app: only the stage that trains pays for torch.
        from secagg_mf import task

        settings = task.Settings.from_run_config(context.run_config)
        names = list(task.shared_arrays(task.build_model(settings)))
        fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
        arrays = parameters_to_ndarrays(fitins.parameters)
        message.content = RecordDict(
            {
                "arrays": ArrayRecord(
                    {name: Array(array) for name, array in zip(names, arrays, strict=True)}
                ),
                "config": ConfigRecord({"server-round": int(message.metadata.group_id)}),
            }
        )
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        metrics, trained = task.metrics_of(reply), task.arrays_of(reply)
        fitres = FitRes(
            status=Status(code=Code.OK, message="Success"),
            parameters=ndarrays_to_parameters([trained[name].numpy() for name in names]),
            num_examples=int(task.metric_number(metrics, "num-examples")),
            metrics={"train-loss": float(task.metric_number(metrics, "train-loss"))},
        )
        return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=message)

    return handle


class TimedFitWorkflow:
    """Wraps a legacy fit workflow; records each round's wall time and resulting arrays."""

    def __init__(self, inner: Callable[[Grid, Context], None], names: list[str]) -> None:
        self.inner = inner
        self.names = names
        self.seconds: dict[int, float] = {}
        self.arrays: dict[int, dict[str, np.ndarray]] = {}

    def __call__(self, grid: Grid, context: Context) -> None:
        server_round = len(self.seconds) + 1
        started = time.perf_counter()
        self.inner(grid, context)
        self.seconds[server_round] = time.perf_counter() - started
        parameters = compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
        )
        self.arrays[server_round] = dict(
            zip(self.names, parameters_to_ndarrays(parameters), strict=True)
        )


def run_flower_secaggplus(
    grid: Grid, context: Context, settings: Settings, initial: ArrayRecord
) -> TimedFitWorkflow:
    """Train with Flower's ``SecAggPlusWorkflow``; return the per-round times and arrays."""
    names = list(initial)
    policy = RoundPolicy("secagg+")
    degree = policy.degree_for(settings.min_nodes)
    complete = degree >= settings.min_nodes - 1
    strategy = LegacyFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=settings.min_nodes,
        min_available_clients=settings.min_nodes,
        initial_parameters=ndarrays_to_parameters([initial[name].numpy() for name in names]),
    )
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=settings.num_server_rounds),
        strategy=strategy,
    )
    fit = TimedFitWorkflow(
        SecAggPlusWorkflow(
            num_shares=1.0 if complete else degree + 1,
            reconstruction_threshold=policy.threshold_for(settings.min_nodes),
            max_weight=settings.max_weight,
            clipping_range=settings.clip,
            quantization_range=2**settings.value_bits,
            timeout=settings.timeout,
        ),
        names,
    )
    DefaultWorkflow(fit_workflow=fit)(grid, legacy)
    return fit
