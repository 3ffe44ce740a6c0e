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
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from protocols.aggregators.sparse import SparseConfig
from protocols.flower.records import ROWS_RECORD, RowSelection, SupportSettings
from protocols.flower.workflow import SecureAggregationWorkflow, SecureRound, SecureRoundResult
from secagg.errors import InsufficientSurvivorsError, ParameterError, SecAggError

__all__ = ["SecAggFedAvg", "SparseTables"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SparseTables:
    """Sparse rounds of :class:`SecAggFedAvg`: which arrays are item tables, and the sketch.

    Each round first runs a *support round*: every sampled node sums the support sketch of its
    rows (``SecAggMod(support=...)``) into the cohort's; the server decodes the rows some node
    touched, adds ``config.pool`` public rows drawn at random, and announces them in the train
    content (:data:`~protocols.flower.records.ROWS_RECORD`, which the train function may read
    to draw its negatives). Then the nodes that survived it train, and only the announced rows
    of ``tables`` (and every other array whole) go through the secure sum. Rows nobody uploaded
    keep their broadcast values, as FedAvg gives them when every node returns them unchanged.

    Attributes:
        tables: names of the arrays whose first axis is the item catalogue.
        catalogue: rows of those arrays.
        config: pool and sketch sizing (:class:`~protocols.aggregators.sparse.SparseConfig`).
    """

    tables: tuple[str, ...]
    catalogue: int
    config: SparseConfig = field(default_factory=SparseConfig)

    def __post_init__(self) -> None:
        if not self.tables or self.catalogue < 1:
            raise ParameterError("sparse tables need at least one table name and a catalogue")

    def settings(self, nodes: int) -> SupportSettings:
        """The support round's sketch for ``nodes`` sampled nodes."""
        cohort = max(nodes, 2)
        lanes = self.config.lanes(cohort, self.catalogue)
        return SupportSettings(self.catalogue, cohort, lanes, self.config.hashes)

    def announce(self, support: SecureRoundResult, rng: np.random.Generator) -> RowSelection:
        """The rows of the round: the decoded support and the public pool."""
        assert support.support is not None  # a support round's result
        pool = self.config.draw_pool(self.catalogue, rng)
        rows = np.union1d(support.support.rows, pool).astype(np.int64)
        return RowSelection(self.tables, tuple(int(r) for r in rows))


class SecAggFedAvg(FedAvg):
    """Flower's FedAvg with the train aggregation run by a :class:`SecureAggregationWorkflow`.

    ``configure_train`` samples nodes as FedAvg does, runs the protocol rounds before the upload
    through the grid and returns the upload messages, which ``Strategy.start`` sends with its own
    ``timeout`` (the upload deadline; pass e.g. ``timeout=60``, never rely on the hour-long
    default); ``aggregate_train`` runs the remaining rounds. An aborted round (too few survivors,
    or any other protocol failure, logged) keeps the previous global arrays. Train metrics are
    averaged without weights (the weight is secret); evaluation is FedAvg's, in the clear.

    With ``sparse`` each round is two secure sums (:class:`SparseTables`): the support round
    inside ``configure_train``, then the announced rows.

    Args:
        workflow: the secure aggregation backend.
        sparse: sparse rounds over these item tables (masking backends only); ``None``: every
            array travels whole.
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
        sparse: SparseTables | None = None,
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
        if sparse is not None and workflow.policy is None:
            raise ParameterError("sparse rounds run over secagg or secagg+, not Paillier")
        self.workflow = workflow
        self.sparse = sparse
        self._pool_rng = np.random.default_rng()
        #: server round -> the support round's result (sparse rounds only).
        self.supports: dict[int, SecureRoundResult] = {}
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
        nodes = [message.metadata.dst_node_id for message in planned]
        content = planned[0].content
        try:
            if self.sparse is not None:
                nodes, content = self._announce(grid, nodes, content, server_round)
            secure_round = self.workflow.begin(grid, nodes, content, server_round=server_round)
            upload = secure_round.prepare()
        except SecAggError as error:
            logger.warning("round %d aborted before the upload: %s", server_round, error)
            return []
        self._rounds[server_round] = secure_round
        return upload

    def _announce(
        self, grid: Grid, nodes: list[int], content: RecordDict, server_round: int
    ) -> tuple[list[int], RecordDict]:
        """The support round: the nodes left in it, and the train content with its rows."""
        assert self.sparse is not None
        support = self.workflow.aggregate(
            grid,
            nodes,
            content,
            server_round=server_round,
            support=self.sparse.settings(len(nodes)),
        )
        self.supports[server_round] = support
        left = [node for node in support.survivors if node not in support.dropped]
        if len(left) < 2:
            raise InsufficientSurvivorsError(
                f"{len(left)} nodes are left after the support round; a sum needs 2"
            )
        announced = RecordDict(dict(content.items()))
        announced[ROWS_RECORD] = self.sparse.announce(support, self._pool_rng).to_record()
        return left, announced

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
