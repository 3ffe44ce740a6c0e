"""``secagg demo``: one real secure-aggregation round in-process, explained.

The demo draws float updates for n clients from a seeded generator (the seed fixes the *data*
only; keys, masks and shares come from the OS CSPRNG), quantizes them, drops a fraction of the
clients at chosen protocol rounds and runs the round through the in-memory simulator. It then
shows what the server saw (masked vectors with a uniformity test, or the start of Paillier
ciphertexts), checks the result bit for bit against the plain ring sum of the survivors, and
reports time and bytes per party and round, as a transcript or as one JSON object.

The graph, degree and threshold of a masking round, and the fewest contributors the Paillier key
holder accepts, come from the round planner :class:`~protocols.rounds.RoundPolicy`.
The exit status is 0 when the sum is exact, 1 when the round aborted or was wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from protocols.aggregators.paillier import check_committee
from protocols.cli.arguments import (
    MAX_VALUE_BITS,
    check_committee_options,
    check_ring,
    non_negative_int,
    positive_int,
    positive_real,
    unit_fraction,
    value_bits,
)
from protocols.cli.transcript import print_transcript
from protocols.defaults import BACKEND_NAMES, DEFAULT_CLIP, DEFAULT_VALUE_BITS
from protocols.identity import trusted_setup
from protocols.messages import MAX_DECRYPTORS, EncryptedInput, MaskedInput, Message
from protocols.paillier import (
    DecryptionSide,
    DecryptorSettings,
    KeyHolder,
    PaillierParams,
    PaillierSimulator,
)
from protocols.rounds import (
    DEFAULT_CORRUPT_FRACTION,
    THREAT_MODELS,
    RoundPlan,
    RoundPolicy,
    tolerated_dropout,
)
from protocols.simulate import (
    ROUND_NAMES,
    Interceptor,
    MaskingRound,
    SimulationReport,
    plan_masking_round,
)
from protocols.wire import packed_size
from secagg.encoding import QuantizationScheme, clip_update
from secagg.errors import ParameterError
from secagg.hazmat.paillier import (
    SUPPORTED_KEY_BITS,
    ThresholdKeyset,
    ciphertext_byte_length,
    generate_threshold_keypair,
)
from secagg.paillier_keys import PaillierKeypair, RandomnessMode, generate_paillier_keypair

__all__ = ["DEMO_PROTOCOLS", "DESCRIPTION", "EPILOG", "add_demo_arguments", "run_demo"]

#: The backends a demo round can run: every backend but the plain sum, which has no protocol.
DEMO_PROTOCOLS: Final = tuple(name for name in BACKEND_NAMES if name != "plain")
#: ``secagg demo --help``'s text above and below the options (pre-wrapped).
DESCRIPTION: Final = """\
Run one real secure-aggregation round in-process: n clients mask (or encrypt)
seeded random updates, some drop out, and the server sums the rest. Shows what
the server saw, checks the sum bit for bit, and reports time and bytes per party
and round. Exit status 0 when the sum is exact, 1 when the round aborted."""
EPILOG: Final = """\
examples:
  secagg demo --clients 20 --dim 1e4 --dropout 0.2
  secagg demo --protocol paillier --clients 10 --dim 1000 --json"""

#: The server views the demo shows (the first clients to upload).
_SHOWN_UPLOADS = 3
#: Rounds of n x d at least this large get a progress bar on stderr.
_PROGRESS_WORK = 2_000_000
_PAILLIER_WORK_FACTOR = 100

RingVectors = dict[int, npt.NDArray[np.unsignedinteger]]
OnStep = Callable[[], None] | None


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``secagg demo`` options to ``parser``.

    Args:
        parser: the (sub)parser to extend.
    """
    parser.add_argument(
        "--protocol",
        choices=DEMO_PROTOCOLS,
        default="secagg+",
        help="secagg: masks on the complete graph; secagg+: masks on a sparse Harary graph of "
        "--degree neighbours; paillier: additively homomorphic encryption (default: "
        "%(default)s)",
    )
    parser.add_argument(
        "--clients",
        metavar="N",
        type=positive_int,
        default=50,
        help="clients invited to the round, at least 2 (default: %(default)s)",
    )
    parser.add_argument(
        "--dim",
        metavar="D",
        type=positive_int,
        default=10_000,
        help="length of each client's update vector, 1e5 or 100000 alike (default: %(default)s)",
    )
    parser.add_argument(
        "--dropout",
        metavar="FRACTION",
        type=unit_fraction,
        default=0.1,
        help="fraction of the clients that drop out, in [0, 1) (default: %(default)s)",
    )
    parser.add_argument(
        "--drop-at",
        type=non_negative_int,
        choices=range(len(ROUND_NAMES)),
        default=None,
        metavar="ROUND",
        help="protocol round at which they drop: 0 advertise keys, 1 share keys, 2 masked "
        "input, 3 consistency (active server only), 4 unmasking (default: spread over every "
        "round)",
    )
    parser.add_argument(
        "--threat-model",
        choices=THREAT_MODELS,
        default="active",
        help="active (default): signed keys against a trusted roster, a public SecAgg+ graph "
        "and the consistency round; semi-honest: trust the server to follow the protocol",
    )
    _add_encoding_arguments(parser)
    _add_paillier_arguments(parser)
    _add_output_arguments(parser)


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The data seed and how the demo shows its round."""
    parser.add_argument(
        "--seed",
        metavar="SEED",
        type=non_negative_int,
        default=0,
        help="seed of the demo's DATA only; keys, masks and shares always come from the OS "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--through-wire",
        action="store_true",
        help="encode and decode every message as it would travel, and count its bytes",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the transcript"
    )


def _add_encoding_arguments(parser: argparse.ArgumentParser) -> None:
    """The quantization and masking-graph options of ``secagg demo``."""
    parser.add_argument(
        "--value-bits",
        metavar="BITS",
        type=value_bits,
        default=DEFAULT_VALUE_BITS,
        help=f"bits of one quantized value, 1 .. {MAX_VALUE_BITS}; the ring adds ceil(log2 "
        "--clients) bits of headroom (default: %(default)s)",
    )
    parser.add_argument(
        "--clip",
        metavar="CLIP",
        type=positive_real,
        default=DEFAULT_CLIP,
        help="each value is clipped to [-CLIP, CLIP] before quantization (default: %(default)s)",
    )
    parser.add_argument(
        "--degree",
        metavar="K",
        type=positive_int,
        default=None,
        help="secagg+ only: neighbours of each client, even, at least 2 and below --clients "
        "(default: chosen from --clients and --dropout)",
    )
    parser.add_argument(
        "--threshold",
        metavar="T",
        type=positive_int,
        default=None,
        help="secagg and secagg+ only: shares of a client's secrets needed to recover them, at "
        "least 2 and at most its neighbours + 1 (default: chosen for --dropout and the threat "
        "model)",
    )


def _add_paillier_arguments(parser: argparse.ArgumentParser) -> None:
    """The Paillier options of ``secagg demo``: key, randomness, committee, processes."""
    parser.add_argument(
        "--key-bits",
        metavar="BITS",
        type=positive_int,
        choices=SUPPORTED_KEY_BITS,
        default=2048,
        help="Paillier: bits of the modulus n, one of "
        f"{', '.join(str(bits) for bits in SUPPORTED_KEY_BITS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--randomness",
        choices=("fresh", "djn"),
        default="fresh",
        help="Paillier r^n: fresh (standard assumption) or DJN short exponent (faster) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--decryptors",
        metavar="M",
        type=positive_int,
        default=1,
        help="Paillier: m parties holding shares of the secret key, 1 .. "
        f"{MAX_DECRYPTORS} (default: %(default)s, a single key holder)",
    )
    parser.add_argument(
        "--decryption-threshold",
        metavar="T",
        type=positive_int,
        default=None,
        help="Paillier: t of the m decryptors decrypt together, a majority: m/2 < t <= m "
        "(default: the smallest majority)",
    )
    parser.add_argument(
        "--decryptor-dropouts",
        metavar="COUNT",
        type=non_negative_int,
        default=0,
        help="Paillier: how many committee members never answer, the first ones, at most m - t "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--processes",
        metavar="P",
        type=positive_int,
        default=1,
        help="Paillier: worker processes that encrypt and decrypt (default: %(default)s)",
    )


def run_demo(args: argparse.Namespace) -> int:
    """Run one round as ``args`` (from :func:`add_demo_arguments`) describe and explain it.

    Returns:
        0 when the server's sum equals the survivors' plain ring sum bit for bit, else 1.

    Raises:
        ParameterError: parameters no round can run with (for instance fewer than 2 clients).
    """
    rng = np.random.default_rng(args.seed)  # demo data only; protocol randomness is the OS's
    n, d = args.clients, args.dim
    _check_options(args)
    policy = _round_policy(args)
    _check_threshold(args, policy)
    # Planning refuses fewer than 2 clients, for every protocol, before any data is drawn.
    planned = None if args.protocol == "paillier" else _plan_masking(args, policy)
    plan = policy.plan(range(n)) if planned is None else None
    scheme = QuantizationScheme(clip=args.clip, value_bits=args.value_bits, num_clients=n)
    updates = {u: rng.normal(0.0, args.clip / 3, d) for u in range(n)}
    inputs = {u: scheme.quantize(x) for u, x in updates.items()}
    schedule = _schedule(args, rng)
    seen: dict[int, Message] = {}
    watch = _keep_first_uploads(seen)
    paillier = args.protocol == "paillier"
    # A Paillier value costs about a hundred times a masked one: a bar from far less work.
    work = n * d * (_PAILLIER_WORK_FACTOR if paillier else 1)
    steps = n + args.decryptors if paillier else 4 * n
    progress = _progress(total=steps, enabled=not args.json and work >= _PROGRESS_WORK)
    on_step = progress.update if progress is not None else None
    if plan is not None:
        report, setup = _run_paillier(args, plan, inputs, schedule, watch, on_step)
    else:
        assert planned is not None
        report, setup = _run_masking(args, planned, inputs, schedule, watch, on_step)
    if progress is not None:
        progress.update(progress.total - progress.n)  # dropped clients took no step
        progress.close()
    summary = _summarise(args, setup, scheme, inputs, updates, seen, report)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_transcript(summary)
    return 0 if summary["exact"] else 1


def _check_options(args: argparse.Namespace) -> None:
    """Refuse, naming the flags, options no round can run with, before any key or data.

    The library checks the same limits again, in terms of its own parameters.
    """
    if args.clients < 2:
        raise ParameterError(
            f"--clients {args.clients}: a secure round needs at least 2 clients (one client's "
            "sum is its own input)"
        )
    check_ring(args.value_bits, args.clients, "--clients")
    if args.protocol == "paillier":
        _check_paillier_options(args)
    else:
        _check_masking_options(args)


def _check_masking_options(args: argparse.Namespace) -> None:
    """SecAgg / SecAgg+: the degree, the dropout it can survive, the threshold's floor; and no
    committee option."""
    _check_degree(args)
    if (
        args.protocol == "secagg+"
        and tolerated_dropout(args.dropout) + DEFAULT_CORRUPT_FRACTION >= 0.5
    ):
        most = 0.5 - DEFAULT_CORRUPT_FRACTION
        raise ParameterError(
            f"--dropout {args.dropout} is too high for --protocol secagg+: its graph is sized for "
            f"that fraction of lost clients plus {DEFAULT_CORRUPT_FRACTION:g} colluding with the "
            "server, and once they reach half no threshold is both reachable and secure; use "
            f"--dropout below {most:g}, or --protocol secagg"
        )
    if args.threshold is not None and args.threshold < 2:
        raise ParameterError(
            f"--threshold {args.threshold} must be at least 2: one share must never reveal a key"
        )
    given = [
        flag
        for flag, value, default in (
            ("--decryptors", args.decryptors, 1),
            ("--decryption-threshold", args.decryption_threshold, None),
            ("--decryptor-dropouts", args.decryptor_dropouts, 0),
        )
        if value != default
    ]
    if given:
        raise ParameterError(f"{_flags_apply(given)} to --protocol paillier only")


def _flags_apply(flags: list[str]) -> str:
    """``--a applies`` or ``--a, --b apply``."""
    return f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'}"


def _check_degree(args: argparse.Namespace) -> None:
    """A ``--degree`` belongs to SecAgg+ and must make a Harary graph of ``--clients``."""
    if args.degree is None:
        return
    if args.protocol != "secagg+":
        raise ParameterError(
            f"--degree applies to --protocol secagg+ only (--protocol {args.protocol} masks on "
            "the complete graph: every client is a neighbour of every other)"
        )
    if args.degree >= args.clients:
        raise ParameterError(
            f"--degree {args.degree} must be below --clients {args.clients}: a client has at most "
            f"{args.clients - 1} neighbours (--protocol secagg is the complete graph)"
        )
    if args.degree < 2 or args.degree % 2:
        raise ParameterError(
            f"--degree {args.degree} must be even and at least 2: each client has degree/2 "
            "neighbours on either side of the Harary ring"
        )


def _check_paillier_options(args: argparse.Namespace) -> None:
    """Paillier: no masking-graph option, and a committee that can decrypt."""
    ignored = [flag for flag in ("--degree", "--threshold") if getattr(args, flag[2:]) is not None]
    if ignored:
        raise ParameterError(
            f"{_flags_apply(ignored)} to --protocol secagg and secagg+ only: the Paillier key "
            "holder decrypts only a sum of a majority of --clients"
        )
    check_committee_options(args.decryptors, args.decryption_threshold)
    members = args.decryptors
    threshold = args.decryption_threshold or members // 2 + 1
    if args.decryptor_dropouts > members - threshold:
        raise ParameterError(
            f"--decryptor-dropouts {args.decryptor_dropouts} leaves fewer than the "
            f"--decryption-threshold {threshold} of {members} decryptors"
        )


def _check_threshold(args: argparse.Namespace, policy: RoundPolicy) -> None:
    """A ``--threshold`` of a masking round must not exceed a neighbourhood's share holders."""
    if args.threshold is None or args.protocol == "paillier":
        return
    holders = policy.degree_for(args.clients) + 1
    if args.threshold <= holders:
        return
    if args.protocol == "secagg":
        raise ParameterError(
            f"--threshold {args.threshold} exceeds --clients {args.clients}: on the complete "
            "graph every client's secrets are shared among all the clients"
        )
    raise ParameterError(
        f"--threshold {args.threshold} exceeds the {holders} share holders of a neighbourhood "
        f"(a client and its {holders - 1} neighbours, --degree): lower --threshold or raise "
        "--degree"
    )


def _round_policy(args: argparse.Namespace) -> RoundPolicy:
    """The planner's policy for the demo's options (a degree applies only to SecAgg+).

    A SecAgg+ round tolerates the demo's own dropout rate, and never less than the planner's
    default. Paillier takes no threshold option: its key holder needs the default majority.
    """
    if args.protocol == "paillier":
        return RoundPolicy(protocol="paillier", value_bits=args.value_bits)
    return RoundPolicy(
        protocol=args.protocol,
        dropout_fraction=tolerated_dropout(args.dropout),
        degree=args.degree if args.protocol == "secagg+" else None,
        threshold=args.threshold,
        value_bits=args.value_bits,
        threat_model=args.threat_model,
    )


def _schedule(args: argparse.Namespace, rng: np.random.Generator) -> dict[int, int]:
    """Client -> protocol round at which it drops: ``--drop-at``, or spread over every round
    the protocol has (a semi-honest round has no consistency round 3)."""
    count = round(args.dropout * args.clients)
    dropped = rng.choice(args.clients, size=count, replace=False)
    rounds = [r for r in range(len(ROUND_NAMES)) if r != 3 or args.threat_model == "active"]
    return {
        int(u): (args.drop_at if args.drop_at is not None else rounds[i % len(rounds)])
        for i, u in enumerate(sorted(dropped))
    }


def _keep_first_uploads(seen: dict[int, Message]) -> Interceptor:
    """An interceptor that copies the first uploads the server receives into ``seen``."""

    def watch(round_index: int, message: Message) -> Message:
        if isinstance(message, MaskedInput | EncryptedInput) and len(seen) < _SHOWN_UPLOADS:
            seen[message.sender] = message
        return message

    return watch


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar over the protocol steps on stderr, or ``None``."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="protocol steps", unit="msg", file=sys.stderr, leave=False)


def _plan_masking(args: argparse.Namespace, policy: RoundPolicy) -> MaskingRound:
    """Plan the SecAgg / SecAgg+ round and, against an active server, play its trusted setup."""
    return plan_masking_round(
        policy,
        range(args.clients),
        session_id=secrets.token_bytes(16),
        round_id=0,
        vector_length=args.dim,
        modulus_bits=policy.modulus_bits_for(args.clients),
    )


def _run_masking(
    args: argparse.Namespace,
    planned: MaskingRound,
    inputs: RingVectors,
    schedule: dict[int, int],
    watch: Interceptor,
    on_step: OnStep,
) -> tuple[SimulationReport, dict[str, Any]]:
    """Run the planned SecAgg / SecAgg+ round; return its report and the summary's setup."""
    report = planned.simulator(
        inputs,
        dropouts=schedule,
        interceptor=watch,
        through_wire=args.through_wire,
        on_step=on_step,
    ).run()
    params = planned.params
    return report, {
        "threat_model": params.threat_model,
        "threshold": params.threshold,
        "degree": params.graph.max_degree,
    }


def _run_paillier(
    args: argparse.Namespace,
    plan: RoundPlan,
    inputs: RingVectors,
    schedule: dict[int, int],
    watch: Interceptor,
    on_step: OnStep,
) -> tuple[SimulationReport, dict[str, Any]]:
    """Generate the keys, run a Paillier round; return its report and the summary's setup."""
    members, threshold = check_committee(args.decryptors, args.decryption_threshold)
    mode = RandomnessMode.DJN if args.randomness == "djn" else RandomnessMode.FRESH
    started = time.perf_counter()
    keys = _deal_keys(args.key_bits, mode, members, threshold)
    keygen_seconds = time.perf_counter() - started
    ids = tuple(range(args.clients))
    roster, identities = trusted_setup(ids)
    session_id = secrets.token_bytes(16)
    decryption = DecryptorSettings(
        session_id=session_id,
        roster=roster,
        value_bits=args.value_bits,
        max_clients=args.clients,
        min_contributors=plan.threshold,
        processes=args.processes,
    ).build(keys)
    params = PaillierParams(
        session_id=session_id,
        round_id=0,
        clients=ids,
        vector_length=args.dim,
        value_bits=args.value_bits,
        max_clients=args.clients,
        min_contributors=plan.threshold,
    )
    report = PaillierSimulator(
        params,
        inputs,
        decryption,
        identities=identities,
        roster=roster,
        mode=mode,
        processes=args.processes,
        dropouts=schedule,
        decryptor_dropouts=range(1, args.decryptor_dropouts + 1),
        interceptor=watch,
        through_wire=args.through_wire,
        on_step=on_step,
    ).run()
    setup = _paillier_setup(args, keys, decryption, report, plan.threshold)
    setup["keygen_seconds"] = keygen_seconds
    return report, setup


def _deal_keys(
    bits: int, mode: RandomnessMode, members: int, threshold: int
) -> PaillierKeypair | ThresholdKeyset:
    """The single key holder's key pair, or a committee's key set from the trusted dealer."""
    if members == 1:
        return generate_paillier_keypair(bits, mode=mode)
    return generate_threshold_keypair(
        bits, decryptors=members, threshold=threshold, djn=mode is RandomnessMode.DJN
    )


def _paillier_setup(
    args: argparse.Namespace,
    keys: PaillierKeypair | ThresholdKeyset,
    decryption: DecryptionSide,
    report: SimulationReport,
    min_contributors: int,
) -> dict[str, Any]:
    """The summary's setup fields of a Paillier round: keys, committee, packing, sizes."""
    public_key = keys.public.public_key if isinstance(keys, ThresholdKeyset) else keys.public_key
    members = [decryption] if isinstance(decryption, KeyHolder) else list(decryption)
    packing = members[0].packing
    width = ciphertext_byte_length(public_key)
    ciphertexts = packing.num_plaintexts(args.dim)
    result = report.result
    return {
        "threshold": min_contributors,
        "degree": None,
        "key_bits": args.key_bits,
        "randomness": args.randomness,
        "decryptors": len(members),
        "decryption_threshold": 1 if isinstance(keys, PaillierKeypair) else keys.public.threshold,
        "decryptors_used": [] if result is None else list(getattr(result, "decryptors", ())),
        "decryptors_silent": list(range(1, args.decryptor_dropouts + 1)),
        "decryption_seconds": report.key_holder_seconds,
        "values_per_ciphertext": packing.slots_per_plaintext,
        "slot_bits": packing.slot_bits,
        "ciphertext_bytes": width * ciphertexts,
        "ciphertext_bytes_per_value": width * ciphertexts / args.dim,
        "one_decryption_per_decryptor": all(member.last_round in (None, 0) for member in members),
    }


def _summarise(
    args: argparse.Namespace,
    setup: dict[str, Any],
    scheme: QuantizationScheme,
    inputs: RingVectors,
    updates: dict[int, npt.NDArray[np.float64]],
    seen: dict[int, Message],
    report: SimulationReport,
) -> dict[str, Any]:
    """The demo's JSON object: setup, dropouts, exactness, seconds, bytes and server views."""
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
    if report.result is not None:
        summary.update(_check_result(args, scheme, inputs, updates, report))
    summary["seconds"] = _seconds(report)
    summary["bytes"] = _bytes(args, setup, scheme, report)
    summary["server_view"] = {str(u): _server_view(m, scheme) for u, m in seen.items()}
    summary["client_errors"] = {str(u): str(e) for u, e in report.client_errors.items()}
    summary["misbehaved"] = {str(u): reason for u, reason in report.misbehaved.items()}
    return summary


def _check_result(
    args: argparse.Namespace,
    scheme: QuantizationScheme,
    inputs: RingVectors,
    updates: dict[int, npt.NDArray[np.float64]],
    report: SimulationReport,
) -> dict[str, Any]:
    """Compare the server's sum with the survivors' plain ring sum and their float sum."""
    result = report.result
    assert result is not None  # only called on a completed round
    survivors = result.survivors
    plain = np.zeros(args.dim, dtype=np.uint64)
    for u in survivors:
        plain += inputs[u]
    plain &= np.uint64((1 << scheme.modulus_bits) - 1)
    float_sum = sum(clip_update(updates[u], args.clip)[0] for u in survivors)
    decoded = scheme.dequantize_sum(result.vector, len(survivors))
    return {
        "survivors": len(survivors),
        "exact": bool(np.array_equal(result.vector.astype(np.uint64), plain)),
        "max_float_error": float(np.max(np.abs(decoded - float_sum))),
        "quantization_step": scheme.step,
    }


def _seconds(report: SimulationReport) -> dict[str, Any]:
    """Seconds per protocol round: the server's, the clients' mean and maximum, and the wall."""
    clients = list(report.client_seconds.values())
    return {
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


def _bytes(
    args: argparse.Namespace,
    setup: dict[str, Any],
    scheme: QuantizationScheme,
    report: SimulationReport,
) -> dict[str, Any]:
    """Bytes per client and at the server, and the upload size per value."""
    sent = list(report.bytes_sent.values())
    received = list(report.bytes_received.values())
    return {
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
