"""The Flower strategy of the integration: ``FedAvg`` whose train aggregation is secure.

Why this module exists: a Flower user who runs ``strategy.start(...)`` should get secure
aggregation by swapping one class, not by driving protocol rounds. :class:`SecAggFedAvg` keeps
FedAvg's sampling, evaluation and bookkeeping and hands the train aggregation to a
:class:`~protocols.flower.SecureAggregationWorkflow`: ``configure_train`` runs the protocol rounds
before the upload and ``aggregate_train`` runs the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from protocols.flower.workflow import SecureAggregationWorkflow, SecureRound, SecureRoundResult
from secagg.errors import SecAggError

__all__ = ["SecAggFedAvg"]

logger = logging.getLogger(__name__)


class SecAggFedAvg(FedAvg):
    """Flower's FedAvg with the train aggregation run by a :class:`SecureAggregationWorkflow`.

    ``configure_train`` samples nodes as FedAvg does, runs the protocol rounds before the upload
    through the grid and returns the upload messages, which ``Strategy.start`` sends with its own
    ``timeout`` (the upload deadline; pass e.g. ``timeout=60``, never rely on the hour-long
    default); ``aggregate_train`` runs the remaining rounds. An aborted round (too few survivors,
    or any other protocol failure, logged) keeps the previous global arrays. Train metrics are
    averaged without weights (the weight is secret); evaluation is FedAvg's, in the clear.

    Args:
        workflow: the secure aggregation backend.
        fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes,
            min_available_nodes, arrayrecord_key, configrecord_key, evaluate_metrics_aggr_fn:
            as for ``flwr.serverapp.strategy.FedAvg`` (the weight key is the workflow's).
    """

    def __init__(
        self,
        workflow: SecureAggregationWorkflow,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key=workflow.weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        self.workflow = workflow
        self._rounds: dict[int, SecureRound] = {}
        #: server round -> the result of its secure aggregation (for logs and tests).
        self.results: dict[int, SecureRoundResult] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample nodes, run the protocol up to the upload, return the upload messages."""
        planned = list(super().configure_train(server_round, arrays, config, grid))
        if not planned:
            return []
        secure_round = self.workflow.begin(
            grid,
            [message.metadata.dst_node_id for message in planned],
            planned[0].content,
            server_round=server_round,
        )
        try:
            upload = secure_round.prepare()
        except SecAggError as error:
            logger.warning("round %d aborted before the upload: %s", server_round, error)
            return []
        self._rounds[server_round] = secure_round
        return upload

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Finish the secure round; return the weighted average and the mean train metrics."""
        secure_round = self._rounds.pop(server_round, None)
        if secure_round is None:
            return None, None
        try:
            result = secure_round.finish(replies)
        except SecAggError as error:
            logger.warning("round %d aborted: %s", server_round, error)
            return None, None
        self.results[server_round] = result
        metrics = _mean_metrics(result.metrics)
        metrics["secagg-survivors"] = len(result.survivors)
        metrics["secagg-dropped"] = len(set(result.dropped) - set(result.survivors))
        return result.arrays, metrics


def _mean_metrics(records: Sequence[MetricRecord]) -> MetricRecord:
    """Unweighted mean of each scalar metric over the records that report it."""
    sums: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                sums.setdefault(key, []).append(float(value))
    return MetricRecord({key: sum(values) / len(values) for key, values in sums.items()})
