"""The ``secagg`` command: ``demo`` runs one real round in-process and explains what happened.

Heavy subcommands (``train``) import their packages lazily so ``secagg demo`` starts fast and
works without the optional extras.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from protocols.bench import add_bench_arguments, run_bench
from protocols.graph import (
    NeighbourGraph,
    complete_graph,
    harary_graph,
    secagg_plus_parameters,
    secagg_threshold,
)
from protocols.masking import MaskingParams
from protocols.messages import EncryptedInput, MaskedInput, Message
from protocols.paillier import KeyHolder, PaillierParams
from protocols.simulate import (
    ROUND_NAMES,
    Interceptor,
    PaillierSimulator,
    SimulationReport,
    Simulator,
)
from protocols.wire import packed_size
from secagg.encoding import QuantizationScheme
from secagg.errors import ParameterError, SecAggError
from secagg.hazmat import paillier as paillier_hazmat

__all__ = ["main", "positive_int", "unit_fraction"]

_ROUND_TITLES = ("AdvertiseKeys", "ShareKeys", "MaskedInputCollection", "Unmasking")


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def unit_fraction(text: str) -> float:
    """argparse type: a float in [0, 1)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secagg", description="Secure aggregation for federated recommenders."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run one secure-aggregation round in-process and explain it"
    )
    demo.add_argument("--protocol", choices=("secagg", "secagg+", "paillier"), default="secagg+")
    demo.add_argument("--clients", type=positive_int, default=50)
    demo.add_argument("--dim", type=positive_int, default=10_000)
    demo.add_argument("--dropout", type=unit_fraction, default=0.1, help="fraction of clients lost")
    demo.add_argument(
        "--drop-at",
        type=int,
        choices=range(4),
        default=None,
        help="protocol round (0-3) at which they drop; default: spread over all rounds",
    )
    demo.add_argument("--value-bits", type=positive_int, default=16)
    demo.add_argument("--clip", type=float, default=1.0)
    demo.add_argument("--degree", type=positive_int, default=None, help="SecAgg+ degree k")
    demo.add_argument("--threshold", type=positive_int, default=None)
    demo.add_argument("--key-bits", type=int, choices=(2048, 3072), default=2048)
    demo.add_argument(
        "--randomness",
        choices=("fresh", "djn"),
        default="fresh",
        help="Paillier r^n: fresh (standard assumption) or DJN short exponent (faster)",
    )
    demo.add_argument("--processes", type=int, default=1, help="Paillier worker processes")
    demo.add_argument("--seed", type=int, default=0, help="seed of the demo's DATA only")
    demo.add_argument("--through-wire", action="store_true", help="encode every message")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    add_bench_arguments(
        commands.add_parser(
            "bench", help="measure the overhead of each protocol against a plain sum"
        )
    )
    # train and recommend need torch (the 'models' extra); their options are parsed lazily.
    commands.add_parser("train", help="federated training of a recommender on a secure backend")
    commands.add_parser("recommend", help="top-K items for a user from a training checkpoint")
    return parser


def _models_command(name: str, rest: Sequence[str]) -> int:
    """Run ``train`` / ``recommend``, which live in ``models`` and need torch."""
    try:
        from models import cli as models_cli
    except ImportError as error:
        print(
            f"secagg: error: '{name}' needs the models extra: pip install 'secagg[models]' "
            f"({error})",
            file=sys.stderr,
        )
        return 2
    parser = argparse.ArgumentParser(prog=f"secagg {name}")
    if name == "train":
        models_cli.add_train_arguments(parser)
        return models_cli.run_train(parser.parse_args(rest))
    models_cli.add_recommend_arguments(parser)
    return models_cli.run_recommend(parser.parse_args(rest))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``secagg`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in ("train", "recommend"):
        try:
            return _models_command(arguments[0], arguments[1:])
        except SecAggError as error:
            print(f"secagg: error: {error}", file=sys.stderr)
            return 2
    args = _build_parser().parse_args(arguments)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "bench":
            return run_bench(args)
    except SecAggError as error:
        print(f"secagg: error: {error}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover - argparse enforces a command


def _graph_for(args: argparse.Namespace) -> tuple[NeighbourGraph, int]:
    ids = list(range(args.clients))
    if args.protocol == "secagg":
        return complete_graph(ids), args.threshold or secagg_threshold(args.clients)
    chosen = secagg_plus_parameters(args.clients, dropout_fraction=max(0.05, args.dropout))
    degree = args.degree or chosen.degree
    threshold = args.threshold or (
        chosen.threshold if degree == chosen.degree else secagg_threshold(degree + 1)
    )
    return harary_graph(ids, degree), threshold


def _schedule(args: argparse.Namespace, rng: np.random.Generator) -> dict[int, int]:
    count = round(args.dropout * args.clients)
    dropped = rng.choice(args.clients, size=count, replace=False)
    return {
        int(u): (args.drop_at if args.drop_at is not None else i % 4)
        for i, u in enumerate(sorted(dropped))
    }


def _uniformity(vector: npt.NDArray[np.unsignedinteger], modulus_bits: int) -> dict[str, float]:
    """Chi-square test of the top 6 bits of a masked vector against the uniform distribution."""
    buckets = 64
    top = (vector.astype(np.uint64) >> np.uint64(max(0, modulus_bits - 6))).astype(np.int64)
    counts = np.bincount(top, minlength=buckets)[:buckets]
    expected = vector.size / buckets
    statistic = float(((counts - expected) ** 2 / expected).sum())
    df = buckets - 1
    # Wilson-Hilferty approximation of the chi-square upper tail.
    z = ((statistic / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return {"chi2": statistic, "df": df, "p_value": 0.5 * math.erfc(z / math.sqrt(2))}


def _demo(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)  # demo data only; protocol randomness is the OS's
    n, d = args.clients, args.dim
    if args.protocol == "paillier" and n < 2:
        raise ParameterError(f"secure aggregation needs at least 2 clients, got {n}")
    scheme = QuantizationScheme(clip=args.clip, value_bits=args.value_bits, num_clients=n)
    updates = {u: rng.normal(0.0, args.clip / 3, d) for u in range(n)}
    inputs = {u: scheme.quantize(x) for u, x in updates.items()}
    schedule = _schedule(args, rng)
    seen: dict[int, Message] = {}

    def watch(round_index: int, message: Message) -> Message:
        if isinstance(message, MaskedInput | EncryptedInput) and len(seen) < 3:
            seen[message.sender] = message
        return message

    progress = _progress(total=4 * n, enabled=not args.json and n * d >= 2_000_000)
    on_step = progress.update if progress is not None else None
    setup: dict[str, Any]
    if args.protocol == "paillier":
        report, setup = _run_paillier(args, inputs, schedule, watch, on_step)
    else:
        graph, threshold = _graph_for(args)
        params = MaskingParams(
            session_id=secrets.token_bytes(16),
            round_id=0,
            graph=graph,
            threshold=threshold,
            vector_length=d,
            modulus_bits=scheme.modulus_bits,
        )
        report = Simulator(
            params,
            inputs,
            dropouts=schedule,
            interceptor=watch,
            through_wire=args.through_wire,
            on_step=on_step,
        ).run()
        setup = {"threshold": threshold, "degree": graph.max_degree}
    if progress is not None:
        progress.close()
    summary = _summarise(args, setup, scheme, inputs, updates, seen, report)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_transcript(summary)
    return 0 if summary["exact"] else 1


def _run_paillier(
    args: argparse.Namespace,
    inputs: dict[int, npt.NDArray[np.unsignedinteger]],
    schedule: dict[int, int],
    watch: Interceptor,
    on_step: Callable[[], None] | None,
) -> tuple[SimulationReport, dict[str, Any]]:
    djn = args.randomness == "djn"
    started = time.perf_counter()
    keypair = paillier_hazmat.generate_keypair(args.key_bits, djn=djn)
    keygen_seconds = time.perf_counter() - started
    session_id = secrets.token_bytes(16)
    min_contributors = secagg_threshold(args.clients)
    key_holder = KeyHolder(
        keypair,
        session_id=session_id,
        value_bits=args.value_bits,
        max_clients=args.clients,
        min_contributors=min_contributors,
        processes=args.processes,
    )
    params = PaillierParams(
        session_id=session_id,
        round_id=0,
        clients=tuple(range(args.clients)),
        vector_length=args.dim,
        value_bits=args.value_bits,
        max_clients=args.clients,
        min_contributors=min_contributors,
    )
    report = PaillierSimulator(
        params,
        inputs,
        key_holder,
        mode=paillier_hazmat.RandomnessMode.DJN if djn else paillier_hazmat.RandomnessMode.FRESH,
        processes=args.processes,
        dropouts=schedule,
        interceptor=watch,
        through_wire=args.through_wire,
        on_step=on_step,
    ).run()
    packing = key_holder.packing
    width = paillier_hazmat.ciphertext_byte_length(keypair.public_key)
    ciphertexts = packing.num_plaintexts(args.dim)
    setup = {
        "threshold": min_contributors,
        "degree": None,
        "key_bits": args.key_bits,
        "randomness": args.randomness,
        "keygen_seconds": keygen_seconds,
        "key_holder_seconds": report.key_holder_seconds,
        "values_per_ciphertext": packing.slots_per_plaintext,
        "slot_bits": packing.slot_bits,
        "ciphertext_bytes": width * ciphertexts,
        "ciphertext_bytes_per_value": width * ciphertexts / args.dim,
        "key_holder_saw_only_aggregates": all(
            m.contributors >= min_contributors for m in key_holder.seen
        ),
    }
    return report, setup


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="protocol steps", unit="msg", file=sys.stderr, leave=False)


def _summarise(
    args: argparse.Namespace,
    setup: dict[str, Any],
    scheme: QuantizationScheme,
    inputs: dict[int, npt.NDArray[np.unsignedinteger]],
    updates: dict[int, npt.NDArray[np.float64]],
    seen: dict[int, Message],
    report: SimulationReport,
) -> dict[str, Any]:
    result = report.result
    summary: dict[str, Any] = {
        "protocol": args.protocol,
        "clients": args.clients,
        "dim": args.dim,
        **setup,
        "modulus_bits": scheme.modulus_bits,
        "value_bits": scheme.value_bits,
        "dropped": [{"client": u, "round": r} for u, r in sorted(report.dropped_at.items())],
        "aborted": None if report.error is None else str(report.error),
        "exact": False,
    }
    if result is not None:
        survivors = result.survivors
        plain = np.zeros(args.dim, dtype=np.uint64)
        for u in survivors:
            plain += inputs[u]
        plain &= np.uint64((1 << scheme.modulus_bits) - 1)
        float_sum = sum(np.clip(updates[u], -args.clip, args.clip) for u in survivors)
        decoded = scheme.dequantize_sum(result.vector, len(survivors))
        summary.update(
            survivors=len(survivors),
            exact=bool(np.array_equal(result.vector.astype(np.uint64), plain)),
            max_float_error=float(np.max(np.abs(decoded - float_sum))),
            quantization_step=scheme.step,
        )
    clients = list(report.client_seconds.values())
    summary["seconds"] = {
        "server": {name: report.server_seconds.get(name, 0.0) for name in ROUND_NAMES},
        "client_mean": {
            name: sum(c.get(name, 0.0) for c in clients) / max(1, len(clients))
            for name in ROUND_NAMES
        },
        "client_max": {
            name: max((c.get(name, 0.0) for c in clients), default=0.0) for name in ROUND_NAMES
        },
        "wall": report.wall_seconds,
    }
    sent = list(report.bytes_sent.values())
    received = list(report.bytes_received.values())
    summary["bytes"] = {
        "client_sent_mean": float(np.mean(sent)) if sent else 0.0,
        "client_sent_max": max(sent, default=0),
        "client_received_mean": float(np.mean(received)) if received else 0.0,
        "server_received": report.server_bytes_received,
        "upload_bytes_per_value": (
            setup["ciphertext_bytes_per_value"]
            if "ciphertext_bytes_per_value" in setup
            else packed_size(args.dim, scheme.modulus_bits) / args.dim
        ),
    }
    summary["server_view"] = {str(u): _server_view(m, scheme) for u, m in seen.items()}
    summary["client_errors"] = {str(u): str(e) for u, e in report.client_errors.items()}
    return summary


def _server_view(message: Message, scheme: QuantizationScheme) -> dict[str, Any]:
    """What the server holds of one client: masked values, or the start of a ciphertext."""
    if isinstance(message, MaskedInput):
        vector = message.vector
        return {
            "first_values": [int(x) for x in vector[:6]],
            **_uniformity(vector, scheme.modulus_bits),
        }
    assert isinstance(message, EncryptedInput)
    return {
        "first_ciphertext_hex": message.ciphertexts[: message.ciphertext_bytes][:24].hex(),
        "ciphertext_bytes": len(message.ciphertexts),
    }


def _print_transcript(s: dict[str, Any]) -> None:
    if s["protocol"] == "paillier":
        print(
            f"Paillier round: {s['clients']} clients, d = {s['dim']}, {s['key_bits']}-bit key "
            f"(generated in {s['keygen_seconds']:.1f} s), r^n {s['randomness']}, "
            f"{s['values_per_ciphertext']} values of {s['slot_bits']} bits per ciphertext, "
            f"key holder needs >= {s['threshold']} inputs"
        )
    else:
        name = "SecAgg+" if s["protocol"] == "secagg+" else "SecAgg"
        print(
            f"{name} round: {s['clients']} clients, d = {s['dim']}, ring Z_2^{s['modulus_bits']} "
            f"({s['value_bits']}-bit values + headroom), {s['degree']} neighbours each, "
            f"threshold t = {s['threshold']}"
        )
    by_round: dict[int, list[int]] = {}
    for entry in s["dropped"]:
        by_round.setdefault(entry["round"], []).append(entry["client"])
    if s["protocol"] == "paillier":
        lost = sorted(u for r, clients in by_round.items() if r <= 2 for u in clients)
        print(f"  dropped before uploading: {lost if lost else 'none'}")
    else:
        for index, title in enumerate(_ROUND_TITLES):
            lost = by_round.get(index, [])
            print(f"  round {index} {title:<22} dropped: {lost if lost else 'none'}")
    if s["protocol"] == "paillier":
        print("What the server saw (ciphertexts under the key holder's key; it has no secret key):")
        for client, view in s["server_view"].items():
            print(
                f"  client {client:>4}: {view['first_ciphertext_hex']}... "
                f"({view['ciphertext_bytes']} bytes)"
            )
    else:
        print("What the server saw in round 2 (masked inputs; chi-square of the top 6 bits):")
        for client, view in s["server_view"].items():
            print(
                f"  client {client:>4}: {view['first_values']} ...  chi2 = {view['chi2']:.1f} "
                f"(df {view['df']}), p ~ {view['p_value']:.3f}"
            )
    if s["aborted"]:
        print(f"Round aborted cleanly: {s['aborted']}")
        return
    if s["protocol"] == "paillier":
        print(
            f"Decryption: the key holder decrypted one aggregate of {s['survivors']} inputs in "
            f"{s['key_holder_seconds']:.2f} s and range-checked every slot; it never saw a "
            "single client's ciphertext."
        )
    else:
        print(
            f"Unmasking: self-masks of {s['survivors']} survivors removed; pairwise masks of the "
            "clients lost before round 2 recovered from the s-shares of their neighbours."
        )
    verdict = "YES" if s["exact"] else "NO"
    print(f"Sum equals the plain sum of the survivors' quantized inputs bit for bit: {verdict}")
    print(
        f"Max |decoded - float sum| = {s['max_float_error']:.3g} "
        f"(quantization step {s['quantization_step']:.3g})"
    )
    print(f"\n{'seconds':<14}" + "".join(f"{n:>15}" for n in ROUND_NAMES))
    for party in ("server", "client_mean", "client_max"):
        row = s["seconds"][party]
        print(f"{party:<14}" + "".join(f"{row[n]:>15.4f}" for n in ROUND_NAMES))
    b = s["bytes"]
    print(
        f"\nwall {s['seconds']['wall']:.3f} s; per client: sent {b['client_sent_mean']:.0f} B, "
        f"received {b['client_received_mean']:.0f} B; upload {b['upload_bytes_per_value']:.2f} "
        "B/value"
    )
    if s["client_errors"]:
        print(f"client errors: {s['client_errors']}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
