"""Sparse against dense secure aggregation of an embedding table, by catalogue size (issue 15).

For each catalogue size, one round of ``--clients`` clients with about ``--interactions`` rows
each (Zipf-like item popularity, exponent 1), a table of ``--dim`` columns, over SecAgg+ against
an active server, ``--dropout`` of the clients lost at random protocol rounds in each sum:

* dense: every client uploads the whole table (``catalogue * dim`` values). The round is run
  while the clients' vectors fit in ``--dense-limit`` values in all; above it only the upload
  size is computed (from the wire format: the bytes do not depend on the values);
* sparse (:class:`~protocols.aggregators.sparse.SparseRowAggregator`): the support sketch,
  sized by :func:`~secagg.support.lanes_for` for the expected union, then the announced rows
  (the decoded union and a public pool of ``--pool`` rows) times ``dim``.

Bytes are what one client sends, header included (the mean over clients, from the simulator);
seconds are the wall time of the whole round, all parties in one process. Run with
``--plot PATH.png`` for the sweep's figure, ``--memory`` for each sparse round's traced peak (a
second, untimed run), ``--count-sketch`` for the count-sketch alternative's decoding error.

Run: ``python demos/bench_sparse.py --quick`` (seconds) or ``python demos/bench_sparse.py``
(10^3 to 10^6 items, dim 64, 100 clients).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protocols import wire
from protocols.aggregators import MaskingAggregator
from protocols.aggregators.sparse import SparseRowAggregator
from protocols.defaults import DEFAULT_VALUE_BITS
from secagg.support import lanes_for

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Row:
    """One catalogue size's measurements."""

    catalogue: int
    dense_bytes: float
    dense_seconds: float | None
    sparse_bytes: float
    sketch_bytes: float
    union_rows: int
    announced_rows: int
    sparse_seconds: float
    sparse_peak_bytes: int | None = None


def _touched(
    catalogue: int, clients: int, per_client: int, rng: np.random.Generator
) -> dict[int, IntArray]:
    """Each client's rows: Zipf-like popularity (weight 1 / rank), no repeats within a client."""
    weights = 1.0 / np.arange(1, catalogue + 1)
    weights /= weights.sum()
    count = min(per_client, catalogue)
    return {
        c: np.sort(rng.choice(catalogue, size=count, replace=False, p=weights))
        for c in range(1, clients + 1)
    }


def _dropouts(clients: Sequence[int], fraction: float, rng: np.random.Generator) -> dict[int, int]:
    """``fraction`` of ``clients`` lost, each at a random protocol round."""
    ids = np.asarray(sorted(clients))
    lost = rng.choice(ids, size=round(fraction * len(ids)), replace=False)
    return {int(c): int(rng.integers(0, 4)) for c in lost}


def _client_bytes(aggregator: MaskingAggregator) -> float:
    report = aggregator.secure_sum.last_report
    assert report is not None
    return float(np.mean(list(report.bytes_sent.values())))


@dataclass(frozen=True)
class SparseRun:
    """One sparse round's figures."""

    announced_rows: int
    survivors: int
    sketch_bytes: float
    rows_bytes: float
    seconds: float


def sparse_round(
    catalogue: int,
    touched: dict[int, IntArray],
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> SparseRun:
    """The support sum and the row sum of one round, all parties in this process."""
    expected = len(np.unique(np.concatenate(list(touched.values()))))
    backend = MaskingAggregator("secagg+", value_bits=args.value_bits)
    lanes = lanes_for(expected, catalogue=catalogue, extra_rows=0.01)
    sparse = SparseRowAggregator(backend, catalogue=catalogue, lanes=lanes)
    pool = rng.choice(catalogue, size=min(args.pool, catalogue), replace=False)
    started = time.perf_counter()
    announced = sparse.support(
        touched, pool=pool, dropouts=_dropouts(list(touched), args.dropout, rng)
    )
    sketch_bytes = _client_bytes(backend)
    uploads = {}
    for client in announced.survivors:
        vector = np.zeros((announced.rows.shape[0], args.dim))
        vector[announced.positions(touched[client])] = rng.uniform(-0.1, 0.1, args.dim)
        uploads[client] = vector.reshape(-1)
    sparse.aggregate(uploads, announced, dropouts=_dropouts(list(uploads), args.dropout, rng))
    seconds = time.perf_counter() - started
    rows = int(announced.rows.shape[0])
    return SparseRun(rows, len(uploads), sketch_bytes, _client_bytes(backend), seconds)


def _traced_peak(catalogue: int, touched: dict[int, IntArray], args: argparse.Namespace) -> int:
    """Peak bytes allocated during a second, untimed sparse round (all parties)."""
    tracemalloc.start()
    try:
        sparse_round(catalogue, touched, args, np.random.default_rng(1))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(catalogue: int, args: argparse.Namespace, rng: np.random.Generator) -> Row:
    """One sparse round (and one dense round where it fits) at ``catalogue`` rows."""
    touched = _touched(catalogue, args.clients, args.interactions, rng)
    expected = len(np.unique(np.concatenate(list(touched.values()))))
    run = sparse_round(catalogue, touched, args, rng)
    peak = _traced_peak(catalogue, touched, args) if args.memory else None
    width = run.announced_rows * args.dim
    rows_bytes = run.rows_bytes
    dense_values = catalogue * args.dim
    dense_seconds = None
    if dense_values * args.clients <= args.dense_limit:
        dense = MaskingAggregator("secagg+", value_bits=args.value_bits)
        vectors = {c: rng.uniform(-0.1, 0.1, dense_values) for c in touched}
        started = time.perf_counter()
        dense.aggregate(vectors, dropouts=_dropouts(list(touched), args.dropout, rng))
        dense_seconds = time.perf_counter() - started
        dense_bytes = _client_bytes(dense)
    else:  # the same message with the whole table in it: only the payload differs
        bits = MaskingAggregator("secagg+", value_bits=args.value_bits).policy.modulus_bits_for(
            run.survivors
        )
        overhead = rows_bytes - wire.packed_size(width, bits)
        dense_bytes = overhead + wire.packed_size(dense_values, bits)
    return Row(
        catalogue,
        dense_bytes,
        dense_seconds,
        run.sketch_bytes + rows_bytes,
        run.sketch_bytes,
        expected,
        run.announced_rows,
        run.seconds,
        peak,
    )


HEADER = (
    f"{'items':>9} {'dense B/client':>15} {'sparse B/client':>16} {'(sketch)':>10} "
    f"{'ratio':>7} {'union':>7} {'rows':>7} {'dense s':>8} {'sparse s':>9} {'peak MB':>8}"
)


def _line(r: Row) -> str:
    dense_s = "-" if r.dense_seconds is None else f"{r.dense_seconds:.2f}"
    return (
        f"{r.catalogue:>9} {r.dense_bytes:>15,.0f} {r.sparse_bytes:>16,.0f} "
        f"{r.sketch_bytes:>10,.0f} {r.dense_bytes / r.sparse_bytes:>6.1f}x "
        f"{r.union_rows:>7} {r.announced_rows:>7} {dense_s:>8} {r.sparse_seconds:>9.2f} "
        f"{'-' if r.sparse_peak_bytes is None else f'{r.sparse_peak_bytes / 1e6:.1f}':>8}"
    )


def _plot(rows: list[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r.catalogue for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(sizes, [r.dense_bytes for r in rows], "o-", label="dense")
    left.loglog(sizes, [r.sparse_bytes for r in rows], "s-", label="sparse (sketch + rows)")
    left.set(xlabel="items", ylabel="bytes one client uploads", title="Upload per round")
    left.legend()
    measured = [r for r in rows if r.dense_seconds is not None]
    right.loglog(
        [r.catalogue for r in measured], [r.dense_seconds for r in measured], "o-", label="dense"
    )
    right.loglog(sizes, [r.sparse_seconds for r in rows], "s-", label="sparse")
    right.set(xlabel="items", ylabel="seconds (all parties)", title="Secure round")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def count_sketch_errors(
    args: argparse.Namespace, rng: np.random.Generator
) -> list[tuple[int, int, float, float]]:
    """The rejected design, measured: a count-sketch of the summed table delta.

    A count-sketch is linear, so the clients' sketches sum under masking to the sketch of the
    summed delta; this measures only its decoding error on the touched rows (at 10^6 items,
    depth 3 and 5, buckets from a quarter to 16 times the union), and the upload it costs
    (depth x buckets x dim ring words of 4 bytes). Hashes and signs come from numpy here: a
    measurement of accuracy, not protocol code. Returns (depth, buckets, bytes, relative error).
    """
    catalogue = 1_000_000
    touched = _touched(catalogue, args.clients, args.interactions, rng)
    union = np.unique(np.concatenate(list(touched.values())))
    total = np.zeros((union.shape[0], args.dim))
    for rows in touched.values():
        total[np.searchsorted(union, rows)] += rng.uniform(-0.1, 0.1, (rows.shape[0], args.dim))
    results = []
    for depth in (3, 5):
        for factor in (0.25, 1.0, 4.0, 16.0):
            buckets = max(1, int(factor * union.shape[0]))
            bucket = rng.integers(0, buckets, size=(depth, union.shape[0]))
            sign = rng.choice(np.array([-1.0, 1.0]), size=(depth, union.shape[0]))
            estimates = np.empty((depth, *total.shape))
            for d in range(depth):
                sketch = np.zeros((buckets, args.dim))
                np.add.at(sketch, bucket[d], sign[d][:, None] * total)
                estimates[d] = sign[d][:, None] * sketch[bucket[d]]
            error = np.linalg.norm(np.median(estimates, axis=0) - total) / np.linalg.norm(total)
            results.append((depth, buckets, depth * buckets * args.dim * 4.0, float(error)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--interactions", type=int, default=100)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--value-bits", type=int, default=DEFAULT_VALUE_BITS)
    parser.add_argument("--dense-limit", type=float, default=1e8)
    parser.add_argument("--plot", metavar="PNG")
    parser.add_argument(
        "--count-sketch",
        action="store_true",
        help="also measure the count-sketch alternative's decoding error at 10^6 items",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also run each sparse round a second time under tracemalloc: its peak (all parties)",
    )
    args = parser.parse_args()
    sizes = [1000, 10_000, 100_000, 1_000_000]
    if args.quick:
        sizes, args.clients, args.interactions, args.dim, args.pool = [500, 5000], 10, 20, 8, 50
    rng = np.random.default_rng(0)
    print(
        f"{args.clients} clients x {args.interactions} rows, dim {args.dim}, pool {args.pool}, "
        f"SecAgg+ (active), {args.dropout:.0%} dropout in each sum"
    )
    print(HEADER, flush=True)
    rows = []
    for size in sizes:
        rows.append(measure(size, args, rng))
        print(_line(rows[-1]), flush=True)
    if args.plot:
        _plot(rows, args.plot)
        print(f"plot written to {args.plot}")
    if args.count_sketch:
        print("count-sketch of the summed delta at 10^6 items (decoded on the touched rows):")
        print(f"{'depth':>6} {'buckets':>9} {'B/client':>14} {'relative L2 error':>18}")
        for depth, buckets, upload, error in count_sketch_errors(args, rng):
            print(f"{depth:>6} {buckets:>9} {upload:>14,.0f} {error:>18.3f}")


if __name__ == "__main__":
    main()
