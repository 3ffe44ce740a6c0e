"""Benchmark of the masking core, measured side by side in one run (issue #2's targets).

1. One pairwise mask for d = 10^6 (expand + add into the running vector) against raw
   AES-128-CTR keystream generation plus one numpy uint32 add of the same size, and against a
   Flower-style mask (numpy MT19937 ``randint``) for reference.
2. Whole rounds, all parties in-process, d = 10^5, 10% of clients lost after sharing keys
   (the costly case: their pairwise masks must be recovered): n = 50 complete graph, n = 50
   SecAgg+ (degree 12, at least Flower's 11 neighbours), n = 1000 SecAgg+ (default k, t).
3. Memory for d = 10^7, n = 100, SecAgg+: the server's peak, and a client's extra memory while
   masking at two neighbour counts (tracemalloc, which numpy reports to).
4. Upload bytes per value against ceil(ring bits / 8).

Every graph and threshold comes from the round planner (:class:`protocols.rounds.RoundPolicy`),
so the rounds measured here are the rounds the aggregators run. Parts 2 and 3 measure the
masking core, so they run semi-honest (no PKI, no consistency round) unless
``--threat-model active`` asks part 2 for the active protocol (planned, and its trusted setup
played, by :func:`protocols.simulate.plan_masking_round`). ``secagg bench --preset active``
measures both models side by side.

Part 1 times the primitive itself, so its measurement lives in the benchmark package
(:func:`protocols.bench.primitives.time_pairwise_mask`); this script runs it and prints it.

Run: ``python demos/bench_masking.py`` (about 3 minutes on 2 cores, semi-honest; ``--quick`` for
a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import statistics
import tracemalloc
from collections.abc import Callable
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from protocols.bench.primitives import MaskTiming, time_pairwise_mask
from protocols.masking import ClientPhase, MaskingClient, MaskingParams, MaskingServer
from protocols.messages import SERVER_ID, MaskedInput, Message
from protocols.rounds import RoundPlan, RoundPolicy, ThreatModel, check_threat_model
from protocols.simulate import Simulator, plan_masking_round
from protocols.wire import encode
from secagg.encoding import ring_dtype


class RoundTiming(TypedDict):
    """Part 2: one whole round, all parties in-process."""

    n: int
    d: int
    protocol: str
    threat_model: str
    degree: int
    threshold: int
    dropped: int
    round_seconds: float
    server_seconds: float
    client_seconds_mean: float
    exact: bool


class MemoryUse(TypedDict):
    """Part 3: the server's peak over one SecAgg+ round, and a client's extra while masking."""

    n: int
    d: int
    degree: int
    server_peak_bytes: int
    server_peak_over_4d: float
    client_extra_bytes_by_degree: dict[int, int]


class UploadSize(TypedDict):
    """Part 4: bytes per value of one masked upload for one ring size."""

    modulus_bits: int
    bytes_per_value: float
    ratio_to_ceil_bits_over_8: float


class Machine(TypedDict):
    """Where the benchmark ran."""

    cpus: int | None
    processor: str
    python: str
    numpy: str


class Results(TypedDict):
    """Everything one run measures (what ``--json`` prints)."""

    machine: Machine
    mask: MaskTiming
    rounds: list[RoundTiming]
    memory: MemoryUse
    upload: list[UploadSize]


def _params(plan: RoundPlan, d: int, modulus_bits: int | None = None) -> MaskingParams:
    """Semi-honest masking parameters of one round of ``plan`` over vectors of ``d`` values.

    Part 3's memory runs step the parties by hand without a trusted roster, so they measure
    the semi-honest protocol (the masking core is the same in both models).
    """
    assert plan.graph is not None, "a masking plan has a graph"
    return MaskingParams(
        session_id=secrets.token_bytes(16),
        round_id=0,
        graph=plan.graph,
        threshold=plan.threshold,
        vector_length=d,
        modulus_bits=plan.modulus_bits if modulus_bits is None else modulus_bits,
        threat_model="semi-honest",
    )


def bench_round(n: int, d: int, policy: RoundPolicy, dropout: float) -> RoundTiming:
    """One simulated round over ``n`` clients, a ``dropout`` fraction lost after sharing keys.

    The round runs in ``policy.threat_model``; against an active server its trusted setup
    (identity keys, roster) is played before the clock starts.
    """
    ids = list(range(n))
    modulus_bits = policy.modulus_bits_for(n)
    planned = plan_masking_round(
        policy,
        ids,
        session_id=secrets.token_bytes(16),
        round_id=0,
        vector_length=d,
        modulus_bits=modulus_bits,
    )
    params = planned.params
    dtype = ring_dtype(modulus_bits)
    rng = np.random.default_rng(0)
    inputs = {u: rng.integers(0, 2**16, d).astype(dtype) for u in ids}
    lost = rng.choice(n, size=round(dropout * n), replace=False)
    report = planned.simulator(inputs, dropouts={int(u): 2 for u in lost}).run()
    assert report.result is not None, report.error
    plain = sum(inputs[u].astype(np.uint64) for u in report.result.survivors)
    exact = bool(np.array_equal(report.result.vector, plain & ((1 << modulus_bits) - 1)))
    return {
        "n": n,
        "d": d,
        "protocol": policy.protocol,
        "threat_model": params.threat_model,
        "degree": params.graph.max_degree,
        "threshold": params.threshold,
        "dropped": len(lost),
        "round_seconds": report.wall_seconds,
        "server_seconds": sum(report.server_seconds.values()),
        "client_seconds_mean": statistics.mean(
            sum(c.values()) for c in report.client_seconds.values()
        ),
        "exact": exact,
    }


class _Meter:
    """Attributes tracemalloc growth to the party whose code is running."""

    def __init__(self) -> None:
        self.held = 0
        self.peak = 0

    def call(self, fn: Callable[..., list[Message]], *args: object) -> list[Message]:
        """Run ``fn(*args)`` and count its allocations as the metered party's."""
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn(*args)
        current, peak = tracemalloc.get_traced_memory()
        self.peak = max(self.peak, self.held + peak - before)
        self.held += current - before
        return out


class _MeteredClient(MaskingClient):
    """A masking client that records its extra memory while masking its input."""

    extra_bytes = 0

    def submit_input(self, vector: npt.ArrayLike) -> list[Message]:
        """Mask ``vector`` as :class:`MaskingClient` does, recording the peak memory."""
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        out = super().submit_input(vector)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.extra_bytes = peak - before
        return out


def _server_peak(params: MaskingParams) -> int:
    """The server's peak memory over one round, every party in-process, 10% lost on upload."""
    d, nodes = params.vector_length, params.graph.nodes
    dtype = ring_dtype(params.modulus_bits)
    tracemalloc.start()
    server = MaskingServer(params)
    meter = _Meter()
    clients = {
        u: MaskingClient(u, session_id=params.session_id, round_id=0, threat_model="semi-honest")
        for u in nodes
    }
    dropped = set(range(0, len(nodes), 10))  # 10% lost before uploading
    outbox = meter.call(server.start)
    for round_index in range(4):  # a semi-honest round: no consistency round
        for message in outbox:
            u = message.recipient
            if round_index >= 2 and u in dropped:
                continue
            replies = clients[u].receive(message)
            if clients[u].phase is ClientPhase.AWAIT_INPUT:
                replies = clients[u].submit_input(np.zeros(d, dtype=dtype))
            for reply in replies:
                meter.call(server.receive, reply)
            del replies
        outbox = meter.call(server.close_phase)
    assert server.result is not None
    del server
    tracemalloc.stop()
    return meter.peak


def _client_extra(degree: int, d: int, modulus_bits: int) -> int:
    """A client's extra memory while masking with ``degree`` neighbours (the output excluded)."""
    ids = list(range(degree + 1))
    params = _params(RoundPolicy("secagg").plan(ids), d, modulus_bits)
    dtype = ring_dtype(modulus_bits)
    sim = Simulator(params, {u: np.zeros(d, dtype) for u in ids})
    client = _MeteredClient(0, session_id=params.session_id, round_id=0, threat_model="semi-honest")
    sim.clients = {**sim.clients, 0: client}
    sim.run()
    return client.extra_bytes - 4 * d  # minus the masked output vector itself


def bench_memory(n: int, d: int, degrees: tuple[int, int]) -> MemoryUse:
    """Server peak for one SecAgg+ round, and a client's extra memory while masking."""
    plan = RoundPolicy("secagg+").plan(list(range(n)))
    server_peak = _server_peak(_params(plan, d))
    client_extra = {k: _client_extra(k, d, plan.modulus_bits) for k in degrees}
    return {
        "n": n,
        "d": d,
        "degree": plan.degree,
        "server_peak_bytes": server_peak + 4 * d,  # + the received message's vector
        "server_peak_over_4d": (server_peak + 4 * d) / (4 * d),
        "client_extra_bytes_by_degree": client_extra,
    }


def bench_bytes(d: int) -> list[UploadSize]:
    """Encoded size of one masked upload of ``d`` values for several ring sizes."""
    rows: list[UploadSize] = []
    for bits in (16, 20, 24, 32, 40, 64):
        vector = np.zeros(d, dtype=ring_dtype(bits))
        message = MaskedInput(
            session_id=bytes(16),
            round_id=0,
            sender=0,
            recipient=SERVER_ID,
            modulus_bits=bits,
            vector=vector,
        )
        size = len(encode(message))
        rows.append(
            {
                "modulus_bits": bits,
                "bytes_per_value": size / d,
                "ratio_to_ceil_bits_over_8": size / d / math.ceil(bits / 8),
            }
        )
    return rows


def measure(quick: bool, threat_model: ThreatModel = "semi-honest") -> Results:
    """Run the four parts, at smoke-test sizes when ``quick``; part 2 in ``threat_model``."""
    d = 10**4 if quick else 10**5
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "mask": time_pairwise_mask(10**5 if quick else 10**6, 5 if quick else 21),
        "rounds": [
            bench_round(50, d, RoundPolicy("secagg", threat_model=threat_model), 0.1),
            bench_round(50, d, RoundPolicy("secagg+", degree=12, threat_model=threat_model), 0.1),
            bench_round(
                100 if quick else 1000, d, RoundPolicy("secagg+", threat_model=threat_model), 0.1
            ),
        ],
        "memory": bench_memory(
            20 if quick else 100, 10**5 if quick else 10**7, (4, 16) if quick else (4, 40)
        ),
        "upload": bench_bytes(10**5),
    }


def print_report(results: Results) -> None:
    """Print ``results`` as the four human-readable tables."""
    m = results["mask"]
    print(f"machine: {results['machine']}")
    print(
        f"\nOne pairwise mask, d = {m['d']}: add_mask {m['add_mask_ms']:.3f} ms | raw AES-128-CTR "
        f"+ uint32 add {m['raw_aes_ctr_plus_add_ms']:.3f} ms | ratio {m['ratio_to_raw']:.2f}x "
        f"(target <= 1.2x) | Flower-style MT19937 mask {m['flower_style_mt19937_ms']:.3f} ms"
    )
    print(
        f"\n{'round':<40}{'degree':>7}{'t':>5}{'dropped':>8}{'wall s':>9}{'server s':>10}"
        f"{'client s':>10}{'exact':>7}"
    )
    for r in results["rounds"]:
        label = f"n={r['n']} d={r['d']} {r['protocol']} {r['threat_model']}"
        print(
            f"{label:<40}{r['degree']:>7}{r['threshold']:>5}{r['dropped']:>8}"
            f"{r['round_seconds']:>9.3f}{r['server_seconds']:>10.3f}"
            f"{r['client_seconds_mean']:>10.4f}{r['exact']!s:>7}"
        )
    mem = results["memory"]
    print(
        f"\nMemory, n={mem['n']} d={mem['d']} SecAgg+ (k={mem['degree']}): server peak "
        f"{mem['server_peak_bytes'] / 2**20:.1f} MiB = {mem['server_peak_over_4d']:.2f} x 4d "
        f"(target <= 3); client extra while masking by degree: "
        + ", ".join(
            f"k={k}: {v / 2**10:.0f} KiB" for k, v in mem["client_extra_bytes_by_degree"].items()
        )
    )
    print("\nUpload bytes per value (d = 10^5, header included):")
    for row in results["upload"]:
        print(
            f"  k={row['modulus_bits']:>2}: {row['bytes_per_value']:.4f} B/value = "
            f"{row['ratio_to_ceil_bits_over_8']:.4f} x ceil(k/8) (target <= 1.02)"
        )


def main() -> None:
    """Parse the options, measure, and print the tables (or the JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--threat-model",
        default="semi-honest",
        choices=("semi-honest", "active"),
        help="the threat model of part 2's whole rounds (default: semi-honest)",
    )
    args = parser.parse_args()
    results = measure(args.quick, check_threat_model(args.threat_model))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print_report(results)


if __name__ == "__main__":
    main()
