"""Benchmark threshold Paillier (a committee of decryptors) against the single key holder.

One run, on one core (no worker processes), with the protocol's own parties:

- the single key holder: it checks the signed uploads, recomputes their product and decrypts
  it with the Chinese remainder theorem (it knows p and q);
- a t-of-m committee (3-of-5 by default; trusted dealer, safe primes): t members each check the
  uploads, recompute the product and compute a partial decryption with its batched proof; the
  server verifies each proof and combines them. Members are separate parties, so their work
  runs in parallel in a deployment: the per-aggregate time is one member's time plus the
  server's verification and combination; the one-core total is also given;
- the verification of contributors alone (signatures and the recomputed product), which both
  kinds of decryptor pay;
- the clients' encryption (DJN short-exponent randomness) and the server's aggregation under
  each key, which the committee must leave unchanged.

Every aggregate is checked bit for bit against the plain sum of the quantized inputs.

Usage::

    python demos/bench_threshold_paillier.py            # d = 10^5, 10 clients, 2048-bit keys
    python demos/bench_threshold_paillier.py --quick    # d = 2000, for a smoke test
    python demos/bench_threshold_paillier.py --json
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from protocols.identity import TrustedRoster, trusted_setup
from protocols.messages import Message
from protocols.paillier import (
    Decryptor,
    KeyHolder,
    PaillierClient,
    PaillierParams,
    PaillierPublic,
    PaillierServer,
)
from protocols.paillier.trust import plain_key
from secagg.hazmat.paillier import (
    DJNParameters,
    PaillierKeypair,
    RandomnessMode,
    ThresholdKeyset,
    ThresholdPublicKey,
    encrypt_vector,
    generate_keypair,
    generate_threshold_keypair,
)
from secagg.hazmat.sign import IdentityKey

_T = TypeVar("_T")

#: The issue's goals, for the summary lines.
TARGET_THRESHOLD_RATIO = 2.0
TARGET_DJN_ENCRYPT = 100_000


@dataclass
class Timings:
    """Seconds of one key kind's round, phase by phase (one core)."""

    kind: str
    keygen: float
    encrypt_per_client: float
    aggregate: float
    verify_contributors: float
    decrypt_party: float
    server_verify: float
    combine: float
    members: int
    exact: bool

    @property
    def per_aggregate(self) -> float:
        """Decryption time of one aggregate, members in parallel (their slowest one counts)."""
        return self.decrypt_party + self.server_verify + self.combine


def _clock(step: Callable[[], _T]) -> tuple[_T, float]:
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def _upload(
    params: PaillierParams,
    public: PaillierPublic,
    roster: TrustedRoster,
    identities: dict[int, IdentityKey],
    inputs: npt.NDArray[np.uint64],
    djn: DJNParameters | None = None,
) -> tuple[PaillierServer, list[Message], float, float]:
    """Every client encrypts and signs (DJN randomness); the server multiplies the uploads.

    The key's fixed-base DJN table is built once beforehand (a one-off cost per key, which
    ``demos/bench_paillier.py`` reports), so that it stays out of the encryption time.
    """
    plain = plain_key(public)
    table_djn = public.djn if isinstance(public, ThresholdPublicKey) else djn
    encrypt_vector(plain, [1], mode=RandomnessMode.DJN, djn=table_djn)
    server = PaillierServer(params, public, roster)
    encrypt = aggregate = 0.0
    for setup in server.start():
        u = setup.recipient
        client = PaillierClient(
            u,
            session_id=params.session_id,
            round_id=params.round_id,
            public_key=public,
            identity=identities[u],
            mode=RandomnessMode.DJN,
            djn=djn,
        )
        client.receive(setup)
        uploads, seconds = _clock(partial(client.submit_input, inputs[u]))
        encrypt += seconds
        for upload in uploads:
            aggregate += _clock(partial(server.receive, upload))[1]
    requests, seconds = _clock(server.close_phase)
    return server, requests, encrypt / len(inputs), aggregate + seconds


def _single(
    keys: PaillierKeypair, keygen: float, setting: dict[str, object], inputs: npt.NDArray[np.uint64]
) -> Timings:
    params, roster, identities = setting["params"], setting["roster"], setting["identities"]
    assert isinstance(params, PaillierParams) and isinstance(roster, TrustedRoster)
    assert isinstance(identities, dict)
    holder = KeyHolder(
        keys,
        session_id=params.session_id,
        roster=roster,
        value_bits=params.value_bits,
        max_clients=params.max_clients,
    )
    server, requests, encrypt, aggregate = _upload(
        params, keys.public_key, roster, identities, inputs, keys.djn
    )
    _, verify = _clock(lambda: holder.guard.admit(requests[0]))
    replies, decrypt = _clock(lambda: holder.receive(requests[0]))
    server.receive(replies[0])
    exact = _exact(server.result.vector, inputs)
    return Timings(
        "single key holder", keygen, encrypt, aggregate, verify, decrypt, 0.0, 0.0, 1, exact
    )


def _committee(
    keyset: ThresholdKeyset,
    keygen: float,
    setting: dict[str, object],
    inputs: npt.NDArray[np.uint64],
) -> Timings:
    params, roster, identities = setting["params"], setting["roster"], setting["identities"]
    assert isinstance(params, PaillierParams) and isinstance(roster, TrustedRoster)
    assert isinstance(identities, dict)
    members = [
        Decryptor(
            share,
            session_id=params.session_id,
            roster=roster,
            value_bits=params.value_bits,
            max_clients=params.max_clients,
        )
        for share in keyset.shares[: keyset.public.threshold]
    ]
    server, requests, encrypt, aggregate = _upload(
        params, keyset.public, roster, identities, inputs
    )
    by_party = {request.recipient: request for request in requests}
    _, verify = _clock(lambda: members[0].guard.admit(by_party[members[0].party_id]))
    slowest = server_verify = 0.0
    for member in members:
        replies, seconds = _clock(partial(member.receive, by_party[member.party_id]))
        slowest = max(slowest, seconds)
        server_verify += _clock(partial(server.receive, replies[0]))[1]
    _, combine = _clock(server.close_phase)
    exact = _exact(server.result.vector, inputs)
    name = f"{keyset.public.threshold}-of-{keyset.public.decryptors} committee"
    return Timings(
        name,
        keygen,
        encrypt,
        aggregate,
        verify,
        slowest,
        server_verify,
        combine,
        len(members),
        exact,
    )


def _exact(vector: npt.NDArray[np.uint64], inputs: npt.NDArray[np.uint64]) -> bool:
    expected = [sum(int(v) for v in column) for column in inputs.T]
    return bool(vector.tolist() == expected)


def _setting(clients: int, dim: int, value_bits: int) -> dict[str, object]:
    roster, identities = trusted_setup(range(clients))
    params = PaillierParams(
        session_id=secrets.token_bytes(16),
        round_id=0,
        clients=tuple(range(clients)),
        vector_length=dim,
        value_bits=value_bits,
        max_clients=clients,
    )
    return {"params": params, "roster": roster, "identities": identities}


def _render(rows: Sequence[Timings], dim: int) -> str:
    single = rows[0]
    lines = [
        f"{'':<24}{'keygen':>9}{'encrypt/client':>16}{'aggregate':>11}{'verify inputs':>15}"
        f"{'decrypt':>10}{'server check':>14}{'combine':>9}{'per aggr.':>11}{'ratio':>7}",
    ]
    for row in rows:
        ratio = row.per_aggregate / single.per_aggregate
        lines.append(
            f"{row.kind:<24}{row.keygen:>8.2f}s{row.encrypt_per_client:>15.2f}s"
            f"{row.aggregate:>10.2f}s{row.verify_contributors:>14.2f}s{row.decrypt_party:>9.2f}s"
            f"{row.server_verify:>13.2f}s{row.combine:>8.2f}s{row.per_aggregate:>10.2f}s"
            f"{ratio:>6.2f}x"
        )
    committee = rows[1]
    serial = (
        committee.decrypt_party * committee.members + committee.server_verify + committee.combine
    )
    lines += [
        "",
        f"  decrypt = one party's work on the request (checks, recomputed product, decryption "
        f"or partial decryption with proof); the {committee.members} members run in parallel.",
        f"  committee on one core (all {committee.members} members in turn): {serial:.2f} s = "
        f"{serial / single.per_aggregate:.2f}x the single key holder.",
        f"  verification of contributors: {single.verify_contributors:.3f} s = "
        f"{single.verify_contributors / single.per_aggregate:.1%} of the single holder's "
        "decryption.",
        f"  DJN encryption: {dim / single.encrypt_per_client:,.0f} values/s (single key), "
        f"{dim / committee.encrypt_per_client:,.0f} values/s (committee key); "
        f"target {TARGET_DJN_ENCRYPT:,}.",
        f"  goal: committee <= {TARGET_THRESHOLD_RATIO:g}x per aggregate: "
        + (
            "met"
            if committee.per_aggregate <= TARGET_THRESHOLD_RATIO * single.per_aggregate
            else "MISSED"
        ),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if an aggregate is not exact."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=100_000, help="values per client")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--key-bits", type=int, default=2048, choices=(2048, 3072))
    parser.add_argument("--value-bits", type=int, default=16)
    parser.add_argument("--decryptors", type=int, default=5)
    parser.add_argument("--decryption-threshold", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the (non-secret) inputs")
    parser.add_argument("--quick", action="store_true", help="d = 2000 for a smoke test")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    dim = 2000 if args.quick else args.dim
    if dim < 1 or args.clients < 2 or not 2 <= args.decryption_threshold <= args.decryptors:
        parser.error("need --dim >= 1, --clients >= 2 and 2 <= threshold <= decryptors")
    rng = np.random.default_rng(args.seed)
    inputs = rng.integers(0, 2**args.value_bits, size=(args.clients, dim), dtype=np.uint64)
    setting = _setting(args.clients, dim, args.value_bits)
    keys, keygen_single = _clock(lambda: generate_keypair(args.key_bits, djn=True))
    keyset, keygen_committee = _clock(
        lambda: generate_threshold_keypair(
            args.key_bits, decryptors=args.decryptors, threshold=args.decryption_threshold
        )
    )
    rows = [
        _single(keys, keygen_single, setting, inputs),
        _committee(keyset, keygen_committee, setting, inputs),
    ]
    config = {"dim": dim, "clients": args.clients, "key_bits": args.key_bits, "cores": 1}
    if args.json:
        document = {
            "config": config,
            "rows": [{**asdict(row), "per_aggregate": row.per_aggregate} for row in rows],
        }
        print(json.dumps(document, indent=2))
    else:
        print("Threshold Paillier benchmark: " + ", ".join(f"{k}={v}" for k, v in config.items()))
        print(_render(rows, dim))
    return 0 if all(row.exact for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
