"""Sparse federated rounds: the item side travels on the rows the cohort touched, not the catalogue.

A dense round uploads every item row (:class:`~models.server.UploadLayout`). A sparse round runs
two secure sums over the same backend (:class:`~protocols.aggregators.sparse.SparseRowAggregator`):

1. each sampled client sums the support sketch of its own items (its positives) into the
   cohort's; the server decodes the touched rows, adds a public pool of rows drawn at random, and
   announces the union;
2. the clients that survived step 1 train with their negatives drawn from the announced rows
   only, so every row they change is announced, and upload the dense upload restricted to those
   rows (:class:`~models.server.RowUploadLayout`).

The server's decoded sum then equals a dense round's on every announced row and is zero
elsewhere, as the dense sum is (up to its quantization of zeros). What the server learns in
addition to a dense round is the cohort's summed sketch: which rows some client of the round
touched, and an upper bound on how many did (``docs/threat-model.md``, "Sparse row
aggregation"). Distributed DP does not cover the sketch yet, so a sparse run refuses a DP backend.

Dropouts hit both sums: a client scheduled to drop at protocol round ``r`` drops in the support
sum when ``r < DROPOUT_ROUNDS`` and in the row sum at ``r - DROPOUT_ROUNDS`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

from models.server import RowUploadLayout, UploadLayout
from protocols.aggregators import AggregationResult, Aggregator
from protocols.aggregators.dp import DistributedDPAggregator
from protocols.aggregators.pipeline import Pipeline
from protocols.aggregators.sparse import SparseConfig, SparseRowAggregator, SupportRound
from protocols.simulate import ROUND_NAMES
from secagg.errors import ParameterError

__all__ = ["DROPOUT_ROUNDS", "SparseConfig", "SparseRounds", "split_dropouts"]

IntArray = npt.NDArray[np.int64]

#: Protocol rounds of one secure sum (0 AdvertiseKeys .. 3 Unmasking).
DROPOUT_ROUNDS: Final = len(ROUND_NAMES)


def split_dropouts(dropouts: Mapping[int, int]) -> tuple[dict[int, int], dict[int, int]]:
    """A round's schedule over both sums: ``(support sum's, row sum's)`` client -> round."""
    support = {c: r for c, r in dropouts.items() if r < DROPOUT_ROUNDS}
    rows = {c: r - DROPOUT_ROUNDS for c, r in dropouts.items() if r >= DROPOUT_ROUNDS}
    return support, rows


class SparseRounds:
    """The server's side of sparse rounds over one backend.

    Args:
        aggregator: a pipeline backend (plain, SecAgg or SecAgg+).
        upload: the dense upload layout the rows are cut from.
        config: pool and sketch settings.
        cohort: clients sampled per round (sizes the sketch).
        seed: seed of the public pool's draws (its own stream, so that a sparse run samples
            the same clients as a dense run of the same seed).

    Raises:
        ParameterError: a backend that cannot run both sums, or a DP backend (its noise does not
            cover the support sketch yet).
    """

    def __init__(
        self,
        aggregator: Aggregator,
        upload: UploadLayout,
        config: SparseConfig,
        cohort: int,
        *,
        seed: int = 0,
    ) -> None:
        if isinstance(aggregator, DistributedDPAggregator):
            raise ParameterError(
                "sparse rounds do not run under distributed DP yet: the DP noise would cover "
                "the row sum but not the support sketch; drop --dp-epsilon or --sparse"
            )
        if not isinstance(aggregator, Pipeline):
            raise ParameterError(
                f"sparse rounds need a pipeline backend (plain, secagg, secagg+), "
                f"got {type(aggregator).__name__}"
            )
        self.config = config
        self.upload = upload
        self._pool_rng = np.random.default_rng([seed, 0x5EED])
        catalogue = upload.num_items
        self._rows = SparseRowAggregator(
            aggregator,
            catalogue=catalogue,
            lanes=config.lanes(max(cohort, 2), catalogue),
            hashes=config.hashes,
        )

    @property
    def lanes(self) -> int:
        """Lanes of every round's support sketch."""
        return self._rows.lanes

    def announce(
        self,
        touched: Mapping[int, IntArray],
        dropouts: Mapping[int, int],
    ) -> tuple[SupportRound, RowUploadLayout]:
        """The support sum, the announced rows, and the round's upload layout.

        The pool is the server's public draw (no protocol secret: every client learns it).

        Args:
            touched: sampled client -> its positives.
            dropouts: the support sum's dropout schedule.

        Raises:
            InsufficientSurvivorsError: too few clients were left for the support sum.
        """
        pool = self.config.draw_pool(self.upload.num_items, self._pool_rng)
        announced = self._rows.support(touched, pool=pool, dropouts=dropouts)
        return announced, RowUploadLayout.of(self.upload, announced.rows)

    def aggregate(
        self,
        inputs: Mapping[int, npt.NDArray[np.float64]],
        announced: SupportRound,
        dropouts: Mapping[int, int],
    ) -> AggregationResult:
        """The row sum of the support sum's survivors' uploads.

        Raises:
            InsufficientSurvivorsError: too few clients were left for the row sum.
        """
        return self._rows.aggregate(inputs, announced, dropouts=dropouts or None)
