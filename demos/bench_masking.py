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

Run: ``python demos/bench_masking.py`` (about 3 minutes on 2 cores; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocols.graph import complete_graph, harary_graph, secagg_plus_parameters
from protocols.masking import ClientPhase, MaskingClient, MaskingParams, MaskingServer
from protocols.messages import Message
from protocols.simulate import Simulator
from protocols.wire import encode
from secagg.encoding import QuantizationScheme
from secagg.hazmat.prg import add_mask


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_mask(d: int, repeats: int) -> dict[str, float]:
    key = secrets.token_bytes(16)
    acc = np.zeros(d, dtype=np.uint32)
    zeros = np.zeros(d, dtype=np.uint32)
    stream = np.empty(d + 4, dtype=np.uint32)

    def raw_aes_plus_add() -> None:
        encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        encryptor.update_into(memoryview(zeros.view(np.uint8)), memoryview(stream.view(np.uint8)))
        np.add(acc, stream[:d], out=acc)

    def ours() -> None:
        add_mask(acc, key)

    def flower_style() -> None:
        rs = np.random.RandomState(int.from_bytes(key[:4], "big"))
        np.add(acc, rs.randint(0, 2**32 - 1, size=d, dtype=np.int64).astype(np.uint32), out=acc)

    raw = best_of(repeats, raw_aes_plus_add)
    mine = best_of(repeats, ours)
    flower = best_of(repeats, flower_style)
    return {
        "d": d,
        "raw_aes_ctr_plus_add_ms": raw * 1e3,
        "add_mask_ms": mine * 1e3,
        "ratio_to_raw": mine / raw,
        "flower_style_mt19937_ms": flower * 1e3,
    }


def bench_round(n: int, d: int, graph_kind: str, degree: int | None, dropout: float) -> dict:
    ids = list(range(n))
    if graph_kind == "complete":
        graph, threshold = complete_graph(ids), n // 2 + 1
    else:
        chosen = secagg_plus_parameters(n)
        k = degree or chosen.degree
        graph = harary_graph(ids, k)
        threshold = chosen.threshold if k == chosen.degree else k // 2 + 1
    scheme = QuantizationScheme(clip=1.0, value_bits=16, num_clients=n)
    params = MaskingParams(
        session_id=secrets.token_bytes(16),
        round_id=0,
        graph=graph,
        threshold=threshold,
        vector_length=d,
        modulus_bits=scheme.modulus_bits,
    )
    rng = np.random.default_rng(0)
    inputs = {u: rng.integers(0, 2**16, d).astype(scheme.dtype) for u in ids}
    lost = rng.choice(n, size=round(dropout * n), replace=False)
    report = Simulator(params, inputs, dropouts={int(u): 2 for u in lost}).run()
    assert report.result is not None, report.error
    plain = sum(inputs[u].astype(np.uint64) for u in report.result.survivors)
    exact = bool(np.array_equal(report.result.vector, plain & ((1 << scheme.modulus_bits) - 1)))
    return {
        "n": n,
        "d": d,
        "graph": graph_kind,
        "degree": graph.max_degree,
        "threshold": threshold,
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
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn(*args)
        current, peak = tracemalloc.get_traced_memory()
        self.peak = max(self.peak, self.held + peak - before)
        self.held += current - before
        return out


def bench_memory(n: int, d: int, degrees: tuple[int, int]) -> dict:
    """Server peak for one SecAgg+ round, and a client's extra memory while masking."""
    ids = list(range(n))
    chosen = secagg_plus_parameters(n)
    graph = harary_graph(ids, chosen.degree)
    scheme = QuantizationScheme(clip=1.0, value_bits=16, num_clients=n)
    params = MaskingParams(
        session_id=secrets.token_bytes(16),
        round_id=0,
        graph=graph,
        threshold=chosen.threshold,
        vector_length=d,
        modulus_bits=scheme.modulus_bits,
    )
    tracemalloc.start()
    server = MaskingServer(params)
    meter = _Meter()
    clients = {u: MaskingClient(u, session_id=params.session_id, round_id=0) for u in ids}
    dropped = set(range(0, n, 10))  # 10% lost before uploading
    outbox = meter.call(server.start)
    for round_index in range(4):
        for message in outbox:
            u = message.recipient
            if round_index >= 2 and u in dropped:
                continue
            replies = clients[u].receive(message)
            if clients[u].phase is ClientPhase.AWAIT_INPUT:
                replies = clients[u].submit_input(np.zeros(d, dtype=scheme.dtype))
            for reply in replies:
                meter.call(server.receive, reply)
            del replies
        outbox = meter.call(server.close_phase)
    assert server.result is not None
    del server
    tracemalloc.stop()

    client_extra = {}
    for k in degrees:
        client_graph = harary_graph(list(range(k + 1)), k)
        client_params = MaskingParams(
            session_id=secrets.token_bytes(16),
            round_id=0,
            graph=client_graph,
            threshold=k // 2 + 1,
            vector_length=d,
            modulus_bits=scheme.modulus_bits,
        )
        sim = Simulator(client_params, {u: np.zeros(d, scheme.dtype) for u in range(k + 1)})
        client = sim.clients[0]
        original = client.submit_input

        def measured(vector: np.ndarray, _orig=original, _k=k) -> list[Message]:
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            out = _orig(vector)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            client_extra[_k] = peak - before - 4 * d  # minus the masked output vector itself
            return out

        client.submit_input = measured  # type: ignore[method-assign]
        sim.run()
    return {
        "n": n,
        "d": d,
        "degree": chosen.degree,
        "server_peak_bytes": meter.peak + 4 * d,  # + the received message's vector
        "server_peak_over_4d": (meter.peak + 4 * d) / (4 * d),
        "client_extra_bytes_by_degree": client_extra,
    }


def bench_bytes(d: int) -> list[dict]:
    rows = []
    for bits in (16, 20, 24, 32, 40, 64):
        vector = np.zeros(d, dtype=np.uint32 if bits <= 32 else np.uint64)
        from protocols.messages import SERVER_ID, MaskedInput

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        }
    }
    results["mask"] = bench_mask(10**5 if quick else 10**6, 5 if quick else 21)
    d = 10**4 if quick else 10**5
    results["rounds"] = [
        bench_round(50, d, "complete", None, 0.1),
        bench_round(50, d, "harary", 12, 0.1),
        bench_round(100 if quick else 1000, d, "harary", None, 0.1),
    ]
    results["memory"] = bench_memory(
        20 if quick else 100, 10**5 if quick else 10**7, (4, 16) if quick else (4, 40)
    )
    results["upload"] = bench_bytes(10**5)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    m = results["mask"]
    print(f"machine: {results['machine']}")
    print(
        f"\nOne pairwise mask, d = {m['d']}: add_mask {m['add_mask_ms']:.3f} ms | raw AES-128-CTR "
        f"+ uint32 add {m['raw_aes_ctr_plus_add_ms']:.3f} ms | ratio {m['ratio_to_raw']:.2f}x "
        f"(target <= 1.2x) | Flower-style MT19937 mask {m['flower_style_mt19937_ms']:.3f} ms"
    )
    print(
        f"\n{'round':<28}{'degree':>7}{'t':>5}{'dropped':>8}{'wall s':>9}{'server s':>10}"
        f"{'client s':>10}{'exact':>7}"
    )
    for r in results["rounds"]:
        label = f"n={r['n']} d={r['d']} {r['graph']}"
        print(
            f"{label:<28}{r['degree']:>7}{r['threshold']:>5}{r['dropped']:>8}"
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


if __name__ == "__main__":
    main()
