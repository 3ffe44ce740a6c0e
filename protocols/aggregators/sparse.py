"""Sparse secure aggregation of an embedding table: two secure sums, no per-client row ids.

A dense upload of an item table grows with the catalogue; a sparse one in the clear says which
rows each client touched. :class:`SparseRowAggregator` runs a round in two secure sums over the
backend it wraps (plain, SecAgg, SecAgg+, either threat model):

1. **Support.** Each client uploads the support sketch of the rows it touched
   (:class:`~secagg.support.SupportSketch`): a fixed-length Bloom-filter vector, the same length
   for every client. The secure sum gives the server the cohort's counting filter, from which it
   decodes the union of touched rows (every touched row, and a few untouched ones) and an upper
   bound on each row's count. A public pool of rows (for instance the negatives every client
   samples from) is added to it.
2. **Rows.** Each client that took part in step 1 uploads its deltas on exactly those rows (zero
   where it touched nothing), plus any dense part, through the wrapped aggregator. The sum on
   those rows is the dense sum restricted to them, and the dense sum is zero elsewhere.

What the server learns: the summed sketch (an aggregate of the cohort) and the summed deltas of
the announced rows; every upload of a round has one public length, and the masked vectors are
uniform. It never sees a client's row ids. ``docs/threat-model.md`` states this.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protocols.aggregators.pipeline import Pipeline, SumOutcome, SumRequest
from protocols.aggregators.result import AggregationResult
from secagg.errors import ParameterError
from secagg.support import RowSupport, SupportSketch, lanes_for

__all__ = ["SparseConfig", "SparseRowAggregator", "SupportRound", "row_positions"]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class SparseConfig:
    """Settings of sparse rounds (``secagg train --sparse``, the Flower strategy's sparse mode).

    Attributes:
        pool: public rows drawn at random each round and announced beside the support: with it,
            the rows a client's negatives are drawn from.
        rows_per_client: distinct rows a client is expected to touch; sizes the support sketch
            (more rows only let more untouched rows into the decoded support, never drop one).
        hashes: sketch lanes per row.
        extra_rows: share of untouched rows the sketch's sizing lets into the support.
    """

    pool: int = 1000
    rows_per_client: int = 128
    hashes: int = 4
    extra_rows: float = 0.01

    def __post_init__(self) -> None:
        for name in ("rows_per_client", "hashes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"sparse {name} must be a positive int, got {value!r}")
        if isinstance(self.pool, bool) or not isinstance(self.pool, int) or self.pool < 0:
            raise ParameterError(f"sparse pool must be an int >= 0, got {self.pool!r}")
        if not self.extra_rows > 0:
            raise ParameterError(f"sparse extra_rows must be > 0, got {self.extra_rows}")

    def draw_pool(self, catalogue: int, rng: np.random.Generator) -> IntArray:
        """A round's public pool: ``pool`` distinct rows of ``catalogue`` (all when fewer), sorted.

        ``rng`` is the server's own stream: the pool is announced to every client, no secret.
        """
        size = min(self.pool, catalogue)
        return np.sort(rng.choice(catalogue, size=size, replace=False)).astype(np.int64)

    def lanes(self, cohort: int, catalogue: int) -> int:
        """Sketch lanes for a round of ``cohort`` clients over ``catalogue`` rows."""
        rows = min(catalogue, cohort * self.rows_per_client)
        return lanes_for(rows, catalogue=catalogue, hashes=self.hashes, extra_rows=self.extra_rows)


@dataclass(frozen=True, slots=True)
class SupportRound:
    """What the server announces after the support sum.

    Attributes:
        rows: sorted rows the row sum covers: the decoded support and the public pool.
        support: the decoded support and its count bounds (the pool not included).
        survivors: clients whose sketch is in the sum; only they may upload rows.
        sketch: the round's public sketch parameters.
        outcome: the support sum as the server saw it.
    """

    rows: IntArray
    support: RowSupport
    survivors: tuple[int, ...]
    sketch: SupportSketch
    outcome: SumOutcome

    def positions(self, rows: npt.ArrayLike) -> IntArray:
        """Where each of ``rows`` sits in :attr:`rows` (a client's scatter into its upload).

        Raises:
            ParameterError: a row that the round does not cover.
        """
        return row_positions(self.rows, rows, "a row the round does not cover was given")


def row_positions(announced: IntArray, rows: npt.ArrayLike, refusal: str) -> IntArray:
    """Where each of ``rows`` sits in the sorted ``announced`` rows.

    Raises:
        ParameterError: with ``refusal``, when some row is not announced.
    """
    wanted = np.asarray(rows, dtype=np.int64)
    index = np.searchsorted(announced, wanted)
    inside = index < announced.shape[0]
    if not (inside.all() and np.array_equal(announced[index[inside]], wanted)):
        raise ParameterError(refusal)
    return index.astype(np.int64)


class SparseRowAggregator:
    """Two-phase sparse secure aggregation over a pipeline backend.

    Args:
        aggregator: the backend whose secure sum runs both phases (its codec quantizes the
            rows' deltas as it quantizes dense updates).
        catalogue: rows of the table.
        lanes: support-sketch lanes (:func:`~secagg.support.lanes_for` sizes them).
        hashes: lanes per row.
    """

    def __init__(
        self, aggregator: Pipeline, *, catalogue: int, lanes: int, hashes: int = 4
    ) -> None:
        if catalogue < 1 or lanes < 1:
            raise ParameterError(f"catalogue and lanes must be >= 1, got {catalogue}, {lanes}")
        if aggregator.name == "paillier":
            raise ParameterError(
                "sparse rounds run over plain, secagg or secagg+: Paillier packs slots of "
                "value_bits, not the support sketch's 32-bit words"
            )
        self.aggregator = aggregator
        self.catalogue = catalogue
        self.lanes = lanes
        self.hashes = hashes
        session = aggregator.secure_sum.session_id
        self._session = session if session is not None else secrets.token_bytes(16)
        self._round = 0

    def support(
        self,
        touched: Mapping[int, npt.ArrayLike],
        *,
        pool: npt.ArrayLike = (),
        dropouts: Mapping[int, int] | None = None,
    ) -> SupportRound:
        """Phase 1: the secure sum of the clients' support sketches, decoded.

        Args:
            touched: client id -> the rows it touched (any order, repeats allowed).
            pool: public rows to cover whoever touched them (e.g. the round's negatives).
            dropouts: client id -> protocol round at which it goes silent.

        Raises:
            ParameterError: a row outside the catalogue, or fewer than two clients.
            InsufficientSurvivorsError: too few clients were left for the sum.
        """
        if len(touched) < 2:
            raise ParameterError("a secure sum needs at least 2 clients")
        public = np.asarray(pool, dtype=np.int64).reshape(-1)
        if public.size and (public.min() < 0 or public.max() >= self.catalogue):
            raise ParameterError(f"pool rows must lie in [0, {self.catalogue})")
        sketch = SupportSketch.for_round(
            self._session,
            self._round,
            catalogue=self.catalogue,
            cohort=len(touched),
            lanes=self.lanes,
            hashes=self.hashes,
        )
        self._round += 1
        request = SumRequest(
            inputs={u: sketch.encode(np.asarray(rows)) for u, rows in touched.items()},
            vector_length=sketch.words,
            modulus_bits=32,
            dropouts=dict(dropouts or {}),
        )
        outcome = self.aggregator.secure_sum.run(request)
        support = sketch.decode(_ring_words(outcome.vector))
        rows = np.union1d(support.rows, public).astype(np.int64)
        return SupportRound(rows, support, outcome.survivors, sketch, outcome)

    def aggregate(
        self,
        updates: Mapping[int, npt.ArrayLike],
        announced: SupportRound,
        *,
        dropouts: Mapping[int, int] | None = None,
    ) -> AggregationResult:
        """Phase 2: the secure sum of each client's deltas on ``announced.rows``.

        Each update is a 1-D float vector laid out as the caller chooses (for a table of width
        ``d``: ``len(announced.rows) * d`` row values, then any dense part); all have one length.

        Raises:
            ParameterError: a client that was not in the support sum, or malformed updates.
        """
        strangers = sorted(set(updates) - set(announced.survivors))
        if strangers:
            raise ParameterError(
                f"clients {strangers} were not in this round's support sum; only its survivors "
                "may upload rows"
            )
        return self.aggregator.aggregate(updates, dropouts=dropouts)


def _ring_words(vector: npt.NDArray[np.generic]) -> npt.NDArray[np.uint32]:
    """A summed sketch as uint32 ring words (a plain sum comes back in float64)."""
    if vector.dtype.kind == "f":
        exact = np.asarray(vector, dtype=np.float64)
        words: npt.NDArray[np.uint32] = (exact.astype(np.uint64) % (1 << 32)).astype(np.uint32)
        return words
    return np.asarray(vector).astype(np.uint32)
