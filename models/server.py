"""The server side of federated training: what a client uploads, and the step from the sum.

A client uploads one flat vector (:class:`UploadLayout`): its clipped delta of every shared
parameter, dense, and, by default, one *touch indicator* per item (``clip`` where its update
touched the item's rows, 0 elsewhere). Both parts go through the same secure sum, so the server
learns the summed delta and, per item, how many of the round's survivors touched it, never which
ones (``docs/threat-model.md``, "Federated training"). The counts turn the summed item rows
into a *mean over the clients that touched each row*, so an item's step no longer grows with the
cohort size, and they mark the rows nobody touched, which the server optimizer then leaves alone.
Dense weights (MLPs, global biases) are averaged over the survivors.

:class:`FederatedServer` turns that into a pseudo-gradient and hands it to a
:class:`~models.server_optimizers.ServerOptimizer` (FedAvg, FedAvgM, FedAdam, FedYogi), with
separate base steps for item rows and dense weights. Under distributed DP the counts are not
uploaded (``counts=False``): the DP noise is calibrated to the L2 norm of the update, which a
vector of indicators would dominate. The item rows' summed delta is then the pseudo-gradient, as
before counts existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.base import Recommender
from models.cohort import RowDelta
from models.parameters import SharedLayout, flatten_shared, load_shared
from models.server_optimizers import ServerOptimizer, ServerOptimizerConfig
from protocols.aggregators import AggregationResult
from protocols.aggregators.sparse import row_positions
from secagg.errors import ParameterError

__all__ = ["FederatedServer", "RowUploadLayout", "ServerStep", "UploadLayout"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class UploadLayout:
    """The flat vector a client uploads: shared delta, then (optionally) item touch indicators.

    Attributes:
        shared: the model's shared-parameter layout (the first ``shared.size`` entries).
        num_items: items, one indicator each (the last ``num_items`` entries) when ``counts``.
        counts: whether indicators are uploaded.
        clip: the indicator's value, the clip bound of every entry (exactly representable by
            every quantizer, so the decoded count of a row is exact after rounding).
    """

    shared: SharedLayout
    num_items: int
    counts: bool
    clip: float

    @property
    def size(self) -> int:
        """Length of the upload vector."""
        return self.shared.size + (self.num_items if self.counts else 0)

    def touched(self, delta: FloatArray) -> npt.NDArray[np.bool_]:
        """Shape ``(num_items,)``: the items whose rows ``delta`` changed, in any item table."""
        touched = np.zeros(self.num_items, dtype=bool)
        for slot in self.shared.slots:
            if slot.per_item:
                rows = delta[slot.offset : slot.offset + slot.size].reshape(slot.shape[0], -1)
                touched |= np.any(rows != 0.0, axis=1)
        return touched

    def encode(self, delta: FloatArray) -> FloatArray:
        """One client's upload from its clipped shared delta (plus its touch indicators)."""
        if not self.counts:
            return delta
        indicators = np.where(self.touched(delta), self.clip, 0.0)
        return np.concatenate([delta, indicators])

    def decode(self, total: FloatArray) -> tuple[FloatArray, IntArray | None]:
        """The summed shared delta and the per-item counts (``None`` without indicators).

        Raises:
            ParameterError: the aggregate has the wrong length.
        """
        if total.shape != (self.size,):
            raise ParameterError(
                f"aggregate has shape {total.shape}; the model expects ({self.size},)"
            )
        shared = total[: self.shared.size]
        if not self.counts:
            return shared, None
        counts = np.rint(total[self.shared.size :] / self.clip).astype(np.int64)
        return shared, np.maximum(counts, 0)


@dataclass(frozen=True, slots=True)
class RowUploadLayout:
    """A sparse round's upload: the dense :class:`UploadLayout` restricted to announced rows.

    The announced rows (the decoded support of the round and a public pool,
    :class:`~protocols.aggregators.sparse.SupportRound`) are public and the same for every
    client. The vector holds each item table's announced rows in row order, then every dense
    weight, then (with counts) one indicator per announced row: exactly the dense upload's
    entries at :attr:`coordinates`. A client whose touched rows are all announced (its
    positives are in the support, its negatives drawn from the announced rows) has a dense
    upload that is zero everywhere else, so the server's decoded sum is the dense one.

    Attributes:
        dense: the round's dense layout.
        rows: the announced rows, sorted.
        coordinates: where each entry of this layout sits in the dense upload.
        row_positions: for each entry of the restricted shared delta, the index in :attr:`rows`
            of its row (-1 on dense weights); its length is the delta's.
    """

    dense: UploadLayout
    rows: IntArray
    coordinates: IntArray
    row_positions: IntArray

    @property
    def delta_size(self) -> int:
        """Entries before the indicators (the restricted shared delta)."""
        return int(self.row_positions.shape[0])

    @classmethod
    def of(cls, dense: UploadLayout, rows: npt.ArrayLike) -> RowUploadLayout:
        """The restriction of ``dense`` to ``rows`` (sorted, distinct, inside the catalogue).

        Raises:
            ParameterError: rows that are not sorted and distinct, or outside the catalogue.
        """
        announced = np.asarray(rows, dtype=np.int64).reshape(-1)
        if announced.size and (
            announced[0] < 0 or announced[-1] >= dense.num_items or np.any(np.diff(announced) <= 0)
        ):
            raise ParameterError(
                f"announced rows must be sorted, distinct and in [0, {dense.num_items})"
            )
        parts: list[IntArray] = []
        positions: list[IntArray] = []
        for slot in dense.shared.slots:
            if slot.per_item:
                width = slot.size // slot.shape[0]
                block = announced[:, None] * width + np.arange(width, dtype=np.int64)
                parts.append(slot.offset + block.reshape(-1))
                positions.append(np.repeat(np.arange(announced.shape[0]), width))
            else:
                parts.append(np.arange(slot.offset, slot.offset + slot.size, dtype=np.int64))
                positions.append(np.full(slot.size, -1, dtype=np.int64))
        if dense.counts:
            parts.append(dense.shared.size + announced)
        coordinates = np.concatenate(parts).astype(np.int64)
        return cls(dense, announced, coordinates, np.concatenate(positions).astype(np.int64))

    @property
    def size(self) -> int:
        """Length of the upload vector."""
        return int(self.coordinates.shape[0])

    def gather(self, change: RowDelta) -> FloatArray:
        """A client's restricted shared delta from its sparse change.

        Raises:
            ParameterError: the change touches a row that is not announced.
        """
        positions = row_positions(
            self.rows, change.rows, "the client changed a row this round does not announce"
        )
        parts: list[FloatArray] = []
        for slot in self.dense.shared.slots:
            if slot.per_item:
                width = slot.size // slot.shape[0]
                block = np.zeros((self.rows.shape[0], width))
                block[positions] = change.tables[slot.name].reshape(len(positions), width)
                parts.append(block.reshape(-1))
            else:
                parts.append(np.asarray(change.dense[slot.name], dtype=np.float64).reshape(-1))
        return np.concatenate(parts)

    def restrict(self, delta: FloatArray) -> FloatArray:
        """A dense shared delta's entries on this layout (before the indicators)."""
        return delta[self.coordinates[: self.delta_size]]

    def encode(self, delta: FloatArray) -> FloatArray:
        """One client's upload from its clipped restricted delta (plus its indicators)."""
        if not self.dense.counts:
            return delta
        touched = np.zeros(self.rows.shape[0], dtype=bool)
        touched[self.row_positions[(self.row_positions >= 0) & (delta != 0.0)]] = True
        return np.concatenate([delta, np.where(touched, self.dense.clip, 0.0)])

    def decode(self, total: FloatArray) -> tuple[FloatArray, IntArray | None]:
        """The summed shared delta (zero off the announced rows) and the per-item counts.

        Raises:
            ParameterError: the aggregate has the wrong length.
        """
        if total.shape != (self.size,):
            raise ParameterError(
                f"aggregate has shape {total.shape}; this sparse round expects ({self.size},)"
            )
        full = np.zeros(self.dense.size)
        full[self.coordinates] = total
        return self.dense.decode(full)


@dataclass(frozen=True, slots=True)
class ServerStep:
    """What the server did with one aggregate.

    Attributes:
        survivors: clients whose deltas were in the sum.
        update_norm: L2 norm of the change applied to the shared vector.
        touched_items: items some survivor touched (``None`` without counts).
    """

    survivors: int
    update_norm: float
    touched_items: int | None = None


class FederatedServer:
    """Holds the global model and updates it from aggregates; never sees a single client's delta.

    Per round: item rows' pseudo-gradient is their summed delta divided by their count (the
    clients that touched them; rows nobody touched are inactive), dense weights' is their sum
    over the survivors (or over ``total_weight`` for a weighted aggregate); the
    :class:`~models.server_optimizers.ServerOptimizer` turns it into the step, with base rates
    ``item_learning_rate`` and ``dense_learning_rate``.
    """

    def __init__(
        self,
        model: Recommender,
        *,
        item_learning_rate: float = 1.0,
        dense_learning_rate: float = 1.0,
        optimizer: ServerOptimizerConfig | None = None,
        counts: bool = False,
        clip: float = 1.0,
        total_rounds: int = 1,
    ) -> None:
        """Create the server around the global model.

        Args:
            model: the global model; its user table is never used.
            item_learning_rate: base step on item-table rows.
            dense_learning_rate: base step on dense weights.
            optimizer: the server optimizer (default plain FedAvg, ``sgd``).
            counts: whether uploads carry item touch indicators (see :class:`UploadLayout`).
            clip: the clients' clip bound (the indicators' value).
            total_rounds: planned rounds (the learning-rate schedule's period).
        """
        self.model = model
        self.layout = SharedLayout.of(model)
        self.upload = UploadLayout(self.layout, model.num_items, counts, clip)
        self._per_item = self.layout.per_item_mask()
        self._row_of = self._coordinate_rows()
        self.item_learning_rate = item_learning_rate
        self.dense_learning_rate = dense_learning_rate
        rates = np.where(self._per_item, item_learning_rate, dense_learning_rate)
        self.optimizer = ServerOptimizer(
            optimizer or ServerOptimizerConfig(), rates.astype(np.float64), total_rounds
        )

    def _coordinate_rows(self) -> IntArray:
        """The item row of every per-item coordinate (-1 on dense ones)."""
        rows = np.full(self.layout.size, -1, dtype=np.int64)
        for slot in self.layout.slots:
            if slot.per_item:
                width = slot.size // slot.shape[0]
                rows[slot.offset : slot.offset + slot.size] = np.repeat(
                    np.arange(slot.shape[0]), width
                )
        return rows

    def broadcast(self) -> npt.NDArray[np.float32]:
        """The current shared parameters, shape ``(layout.size,)`` float32 (a copy)."""
        return flatten_shared(self.model)

    def pseudo_gradient(
        self, result: AggregationResult, layout: RowUploadLayout | None = None
    ) -> tuple[FloatArray, npt.NDArray[np.bool_], int | None]:
        """The round's mean delta per coordinate, which coordinates are active, touched items.

        Args:
            result: the round's aggregate.
            layout: a sparse round's layout (default: the dense :attr:`upload`).

        Raises:
            ParameterError: the aggregate does not match the upload layout.
        """
        upload = self.upload if layout is None else layout
        shared, counts = upload.decode(np.asarray(result.total, dtype=np.float64))
        if counts is not None and result.total_weight is not None:
            raise ParameterError(
                "per-item counts need an unweighted aggregate: weighting scales the touch "
                "indicators too, so the counts cannot be read off a weighted sum"
            )
        survivors = len(result.survivors)
        dense_denominator = float(result.total_weight) if result.total_weight else float(survivors)
        if counts is None:
            gradient = np.where(self._per_item, shared, shared / dense_denominator)
            return gradient, np.ones(shared.shape, dtype=bool), None
        row_counts = np.where(self._per_item, counts[np.maximum(self._row_of, 0)], 0)
        active = ~self._per_item | (row_counts > 0)
        denominator = np.where(self._per_item, np.maximum(row_counts, 1), dense_denominator)
        return shared / denominator, active, int(np.count_nonzero(counts))

    def apply(self, result: AggregationResult, layout: RowUploadLayout | None = None) -> ServerStep:
        """Apply one round's aggregate to the global model.

        Args:
            result: the aggregator's output: the sum over survivors and who survived.
            layout: a sparse round's layout (default: the dense :attr:`upload`).

        Returns:
            What was applied.

        Raises:
            ParameterError: the aggregate does not match the model's layout.
        """
        if len(result.survivors) == 0:
            (self.upload if layout is None else layout).decode(
                np.asarray(result.total, dtype=np.float64)
            )
            return ServerStep(0, 0.0)
        gradient, active, touched = self.pseudo_gradient(result, layout)
        step = self.optimizer.step(gradient, active)
        load_shared(self.model, self.broadcast().astype(np.float64) + step)
        return ServerStep(len(result.survivors), float(np.linalg.norm(step)), touched)
