"""Benchmark packed Paillier against phe's one-value-per-ciphertext path.

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

The measurements themselves (:func:`protocols.bench.primitives.bench_phe`,
:func:`~protocols.bench.primitives.bench_packed`) live in the benchmark package, which may call
the primitives directly; this script chooses the inputs, runs them, prints and checks.

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
from dataclasses import asdict

import numpy as np

from protocols.bench.primitives import (
    PaillierRow,
    Rates,
    bench_packed,
    bench_phe,
    time_djn_table,
    timed,
)
from secagg.packing import SlotLayout
from secagg.paillier_keys import RandomnessMode, generate_paillier_keypair

# Targets from the issue, for the summary lines.
TARGET_DJN_ENCRYPT = 100_000
TARGET_FRESH_ENCRYPT = 5_000
TARGET_AGGREGATE = 10_000_000
TARGET_DECRYPT = 20_000
TARGET_BYTES_PER_VALUE = 9.0


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def render(rows: list[PaillierRow], clock: str) -> str:
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


def targets(rows: list[PaillierRow], clock: str) -> dict[str, dict[str, float | bool]]:
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

    keys, keygen_s = timed(generate_paillier_keypair, args.key_bits, mode=RandomnessMode.DJN)
    rng = np.random.default_rng(args.seed)
    inputs = rng.integers(0, 2**args.value_bits, size=(args.clients, dim), dtype=np.uint64)

    phe_row = bench_phe(keys, inputs[0, : min(args.phe_sample, dim)], args.clients)
    # The first DJN encryption builds the fixed-base table; time that once, apart.
    table_s = time_djn_table(keys)
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
    rows: list[PaillierRow],
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
