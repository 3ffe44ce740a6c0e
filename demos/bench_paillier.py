"""Benchmark packed Paillier (secagg.hazmat.paillier) against phe's one-value-per-ciphertext path.

One run measures, side by side and on the same key:

- phe 1.5.0 naive: ``public_key.encrypt`` per value, ``EncryptedNumber`` addition,
  ``raw_decrypt`` per value. phe is slow, so it runs on a sample of ``--phe-sample`` values and
  the rates are per value (they do not depend on the vector length).
- packed, bit layout, fresh r^n (textbook Paillier, standard assumption only);
- packed, bit layout, DJN short-exponent r^n through the fixed-base table;
- packed, radix layout, DJN (the densest packing).

For each: encryption values/s (packing included, public key only), server aggregation
client-values/s (summing ``--clients`` ciphertext vectors), decryption values/s (unpacking and
its range check included), bytes on the wire per value, and ratios to phe. Every packed
aggregate is checked bit for bit against the plain sum.

Usage::

    python demos/bench_paillier.py             # d = 10^5 values, 10 clients, 2048-bit key
    python demos/bench_paillier.py --quick     # d = 2000, for a smoke test
    python demos/bench_paillier.py --processes 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
import phe

# The primitives under measurement have no safe counterpart, so they come from hazmat; keys and
# packing come from their safe modules like in any other caller.
from secagg.hazmat.paillier import (
    ciphertext_byte_length,
    ciphertexts_to_bytes,
    decrypt_vector,
    encrypt_vector,
    sum_ciphertext_vectors,
)
from secagg.packing import PackingScheme, SlotLayout
from secagg.paillier_keys import PaillierKeypair, RandomnessMode, generate_paillier_keypair

# Targets from the issue, for the summary lines.
TARGET_DJN_ENCRYPT = 100_000
TARGET_FRESH_ENCRYPT = 5_000
TARGET_AGGREGATE = 10_000_000
TARGET_DECRYPT = 20_000
TARGET_BYTES_PER_VALUE = 9.0

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass
class Rates:
    """Throughputs of one path, per second of one clock."""

    encrypt_values_per_s: float
    aggregate_client_values_per_s: float
    decrypt_values_per_s: float


@dataclass
class Row:
    """One measured path.

    ``wall`` divides by elapsed time; ``cpu`` by this process's CPU time, which leaves out time
    the OS gave to other programs on a shared machine (meaningful only with one process).
    """

    path: str
    wall: Rates
    cpu: Rates
    bytes_per_value: float
    values_per_ciphertext: int
    exact: bool
    note: str = ""


@dataclass
class Seconds:
    wall: float
    cpu: float


def _timed(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> tuple[_R, Seconds]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, Seconds(time.perf_counter() - wall, time.process_time() - cpu)


def _rates(encrypted: int, aggregated: int, decrypted: int, seconds: list[Seconds]) -> list[Rates]:
    encrypt, aggregate, decrypt = seconds
    return [
        Rates(
            encrypted / getattr(encrypt, clock),
            aggregated / getattr(aggregate, clock),
            decrypted / getattr(decrypt, clock),
        )
        for clock in ("wall", "cpu")
    ]


def bench_phe(keys: PaillierKeypair, sample: npt.NDArray[np.uint64], clients: int) -> Row:
    """phe's naive path on ``sample``; one client's ciphertexts stand in for every client."""
    public_key, private_key = keys.public_key, keys.private_key
    values = [int(v) for v in sample]
    encrypted, encrypt_s = _timed(lambda: [public_key.encrypt(v) for v in values])

    def aggregate() -> list[phe.EncryptedNumber]:
        total = encrypted
        for _ in range(clients - 1):
            total = [a + b for a, b in zip(total, encrypted, strict=True)]
        return total

    total, aggregate_s = _timed(aggregate)
    decrypted, decrypt_s = _timed(
        lambda: [private_key.raw_decrypt(c.ciphertext(be_secure=False)) for c in total]
    )
    count = len(values)
    wall, cpu = _rates(count, clients * count, count, [encrypt_s, aggregate_s, decrypt_s])
    return Row(
        path="phe 1.5.0, one value per ciphertext",
        wall=wall,
        cpu=cpu,
        bytes_per_value=float(ciphertext_byte_length(public_key)),
        values_per_ciphertext=1,
        exact=decrypted == [clients * v for v in values],
        note=f"sample of {count} values, rates per value; one client's ciphertexts added n times",
    )


def bench_packed(
    keys: PaillierKeypair,
    inputs: npt.NDArray[np.uint64],
    value_bits: int,
    layout: SlotLayout,
    mode: RandomnessMode,
    processes: int,
    other_clients: list[list[int]] | None = None,
) -> tuple[Row, list[list[int]]]:
    """Time client 0's encryption in ``mode``; the other clients use DJN (same server cost).

    Returns the row and the other clients' ciphertexts, for reuse by a later row.
    """
    public_key, private_key, djn = keys
    clients, dim = inputs.shape
    scheme = PackingScheme.for_public_key(
        public_key, value_bits=value_bits, num_clients=clients, layout=layout
    )

    def encrypt_client(values: npt.NDArray[np.uint64], how: RandomnessMode) -> list[int]:
        return encrypt_vector(
            public_key,
            scheme.pack(values),
            mode=how,
            djn=djn if how is RandomnessMode.DJN else None,
            processes=processes,
        )

    first, encrypt_s = _timed(encrypt_client, inputs[0], mode)
    if other_clients is None:
        other_clients = [encrypt_client(values, RandomnessMode.DJN) for values in inputs[1:]]
    aggregate, aggregate_s = _timed(sum_ciphertext_vectors, public_key, [first, *other_clients])

    def decrypt() -> npt.NDArray[np.uint64]:
        plaintexts = decrypt_vector(private_key, aggregate, processes=processes)
        return scheme.unpack(plaintexts, dim, clients)

    result, decrypt_s = _timed(decrypt)
    wire_bytes = len(ciphertexts_to_bytes(public_key, first))
    label = "fresh r^n" if mode is RandomnessMode.FRESH else "DJN r^n"
    wall, cpu = _rates(dim, clients * dim, dim, [encrypt_s, aggregate_s, decrypt_s])
    row = Row(
        path=f"packed, {layout.value} layout, {label}",
        wall=wall,
        cpu=cpu,
        bytes_per_value=wire_bytes / dim,
        values_per_ciphertext=scheme.slots_per_plaintext,
        exact=bool(np.array_equal(result, inputs.sum(axis=0, dtype=np.uint64))),
        note=f"{len(first)} ciphertexts per client"
        + ("; other clients DJN-encrypted" if mode is RandomnessMode.FRESH else ""),
    )
    return row, other_clients


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def render(rows: list[Row], clock: str) -> str:
    """One table of all rows on one clock ("wall" or "cpu")."""
    header = (
        f"{'path (' + clock + ' clock)':<38} {'enc val/s':>10} {'agg cval/s':>11} "
        f"{'dec val/s':>10} {'B/val':>7} {'enc x':>7} {'agg x':>6} {'dec x':>6} {'wire /':>7} "
        "exact"
    )
    lines = [header, "-" * len(header)]
    base: Rates = getattr(rows[0], clock)
    for row in rows:
        rates: Rates = getattr(row, clock)
        lines.append(
            f"{row.path:<38} {_rate(rates.encrypt_values_per_s):>10} "
            f"{_rate(rates.aggregate_client_values_per_s):>11} "
            f"{_rate(rates.decrypt_values_per_s):>10} {row.bytes_per_value:>7.2f} "
            f"{rates.encrypt_values_per_s / base.encrypt_values_per_s:>6.0f}x "
            f"{rates.aggregate_client_values_per_s / base.aggregate_client_values_per_s:>5.0f}x "
            f"{rates.decrypt_values_per_s / base.decrypt_values_per_s:>5.0f}x "
            f"{rows[0].bytes_per_value / row.bytes_per_value:>6.0f}x {row.exact}"
        )
    return "\n".join(lines)


def targets(rows: list[Row], clock: str) -> dict[str, dict[str, float | bool]]:
    """The issue's targets against one clock's measurements."""
    by_path = {row.path: row for row in rows}
    fresh = by_path["packed, bits layout, fresh r^n"]
    djn = by_path["packed, bits layout, DJN r^n"]
    radix = by_path["packed, radix layout, DJN r^n"]
    fresh_rates: Rates = getattr(fresh, clock)
    djn_rates: Rates = getattr(djn, clock)
    checks = {
        "DJN encryption values/s": (djn_rates.encrypt_values_per_s, TARGET_DJN_ENCRYPT, True),
        "fresh encryption values/s": (
            fresh_rates.encrypt_values_per_s,
            TARGET_FRESH_ENCRYPT,
            True,
        ),
        "aggregation client-values/s": (
            djn_rates.aggregate_client_values_per_s,
            TARGET_AGGREGATE,
            True,
        ),
        "decryption values/s": (djn_rates.decrypt_values_per_s, TARGET_DECRYPT, True),
        "bytes per value (bits layout)": (djn.bytes_per_value, TARGET_BYTES_PER_VALUE, False),
        "bytes per value (radix layout)": (radix.bytes_per_value, TARGET_BYTES_PER_VALUE, False),
    }
    return {
        name: {
            "measured": measured,
            "target": target,
            "met": measured >= target if higher_is_better else measured <= target,
        }
        for name, (measured, target, higher_is_better) in checks.items()
    }


def render_targets(goals: dict[str, dict[str, float | bool]], clock: str) -> str:
    lines = [f"Targets ({clock} clock):"]
    for name, goal in goals.items():
        measured, target = float(goal["measured"]), float(goal["target"])
        shown = f"{measured:.2f}" if "bytes" in name else _rate(measured)
        wanted = f"{target:.0f}" if "bytes" in name else _rate(target)
        verdict = "met" if goal["met"] else "NOT met"
        lines.append(f"  {name:<32} {shown:>8}  (target {wanted:>6})  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=10**5, help="values per client (d)")
    parser.add_argument("--clients", type=int, default=10, help="clients summed (n)")
    parser.add_argument("--key-bits", type=int, default=2048, choices=[2048, 3072])
    parser.add_argument("--value-bits", type=int, default=32, help="quantized value width")
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes (1 = one-core measurement)"
    )
    parser.add_argument("--phe-sample", type=int, default=200, help="values phe encrypts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the (non-secret) inputs")
    parser.add_argument("--quick", action="store_true", help="d = 2000 for a smoke test")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    dim = 2000 if args.quick else args.dim
    if dim < 1 or args.clients < 2:
        parser.error("need --dim >= 1 and --clients >= 2")

    keys, keygen_s = _timed(generate_paillier_keypair, args.key_bits, mode=RandomnessMode.DJN)
    rng = np.random.default_rng(args.seed)
    inputs = rng.integers(0, 2**args.value_bits, size=(args.clients, dim), dtype=np.uint64)

    phe_row = bench_phe(keys, inputs[0, : min(args.phe_sample, dim)], args.clients)
    # The first DJN encryption builds the fixed-base table; time that once, apart.
    _, table_s = _timed(encrypt_vector, keys.public_key, [1], mode=RandomnessMode.DJN, djn=keys.djn)
    djn_row, others = bench_packed(
        keys, inputs, args.value_bits, SlotLayout.BITS, RandomnessMode.DJN, args.processes
    )
    fresh_row, _ = bench_packed(
        keys, inputs, args.value_bits, SlotLayout.BITS, RandomnessMode.FRESH, args.processes, others
    )
    radix_row, _ = bench_packed(
        keys, inputs, args.value_bits, SlotLayout.RADIX, RandomnessMode.DJN, args.processes
    )
    rows = [phe_row, fresh_row, djn_row, radix_row]
    config: dict[str, object] = {
        "dim": dim,
        "clients": args.clients,
        "key_bits": args.key_bits,
        "value_bits": args.value_bits,
        "processes": args.processes,
        "cpu_count": os.cpu_count(),
    }
    # Process CPU time leaves out worker processes, so it only means something with one.
    clocks = ["wall", "cpu"] if args.processes == 1 else ["wall"]
    report(args.json, config, rows, clocks, keygen_s.wall, table_s.wall)
    return 0 if all(row.exact for row in rows) else 1


def report(
    as_json: bool,
    config: dict[str, object],
    rows: list[Row],
    clocks: list[str],
    keygen_seconds: float,
    table_seconds: float,
) -> None:
    """Print the rows as one JSON document or as tables with the targets."""
    if as_json:
        document = {
            "config": config,
            "keygen_s": keygen_seconds,
            "djn_table_s": table_seconds,
            "rows": [asdict(row) for row in rows],
            "targets": {clock: targets(rows, clock) for clock in clocks},
        }
        print(json.dumps(document, indent=2))
    else:
        print("Paillier benchmark: " + ", ".join(f"{k}={v}" for k, v in config.items()))
        for clock in clocks:
            print()
            print(render(rows, clock))
        print()
        for row in rows:
            print(f"  {row.path}: {row.note}")
        print("  x = our rate / phe's rate; wire / = phe's bytes per value / ours")
        print(
            f"  key generation {keygen_seconds:.2f} s; DJN table (once per key) "
            f"{table_seconds:.2f} s"
        )
        for clock in clocks:
            print(render_targets(targets(rows, clock), clock))


if __name__ == "__main__":
    sys.exit(main())
