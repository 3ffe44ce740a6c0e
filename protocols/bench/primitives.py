"""Micro-benchmarks of single cryptographic primitives: one pairwise mask, packed Paillier, phe.

Why this module exists: the demos (``demos/bench_masking.py``, ``demos/bench_paillier.py``)
are what a newcomer reads first, so they import only public, non-hazmat names. Measuring a
primitive on its own, though, means calling it directly: :func:`secagg.hazmat.prg.add_mask` for
one pairwise mask, raw AES-128-CTR from ``cryptography``'s hazmat layer as the baseline it is
compared to, and the packed Paillier operations of :mod:`secagg.hazmat.paillier`. That code
lives here, in the benchmark package, which measures primitives and may therefore import them;
the demos only orchestrate, print and check.

Rules: every timing is a median of ``repeats`` calls after one warm-up (:func:`median_seconds`)
or one timed call on both the wall clock and this process's CPU clock (:func:`timed`); every
Paillier row checks its decrypted aggregate bit for bit against the plain sum (``exact``).
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypedDict, TypeVar

import numpy as np
import numpy.typing as npt
import phe
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.hazmat.paillier import (
    ciphertext_byte_length,
    ciphertexts_to_bytes,
    decrypt_vector,
    encrypt_vector,
    sum_ciphertext_vectors,
)
from secagg.hazmat.prg import add_mask
from secagg.packing import PackingScheme, SlotLayout
from secagg.paillier_keys import PaillierKeypair, RandomnessMode

__all__ = [
    "MaskTiming",
    "PaillierRow",
    "Rates",
    "Seconds",
    "bench_packed",
    "bench_phe",
    "median_seconds",
    "time_djn_table",
    "time_pairwise_mask",
    "timed",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class MaskTiming(TypedDict):
    """One pairwise mask against raw AES-CTR plus an add, and a Flower-style mask."""

    d: int
    raw_aes_ctr_plus_add_ms: float
    add_mask_ms: float
    ratio_to_raw: float
    flower_style_mt19937_ms: float


def median_seconds(repeats: int, fn: Callable[[], object]) -> float:
    """Median seconds of ``repeats`` calls of ``fn``, after one warm-up call.

    Args:
        repeats: Timed calls (at least one).
        fn: The operation to time; its result is discarded.

    Returns:
        The median wall-clock duration of one call, in seconds.
    """
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_pairwise_mask(d: int, repeats: int) -> MaskTiming:
    """Time one pairwise mask of ``d`` words, raw AES-128-CTR plus an add, and MT19937.

    The three operations add ``d`` pseudorandom uint32 words into one running vector: this
    project's :func:`~secagg.hazmat.prg.add_mask`; AES-128-CTR keystream written into a buffer
    plus one numpy add (the floor ``add_mask`` is held to); and a Flower-style mask drawn from
    numpy's MT19937 ``randint``, for reference only (it is not a cryptographic PRG).

    Args:
        d: Words per mask.
        repeats: Timed calls per operation, after one warm-up (see :func:`median_seconds`).

    Returns:
        The median of each operation in milliseconds and ``add_mask``'s ratio to the raw path.
    """
    key = secrets.token_bytes(16)
    acc = np.zeros(d, dtype=np.uint32)
    zeros = np.zeros(d, dtype=np.uint32)
    stream = np.empty(d + 4, dtype=np.uint32)

    def raw_aes_plus_add() -> None:
        encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        encryptor.update_into(zeros.view(np.uint8).data, stream.view(np.uint8).data)
        np.add(acc, stream[:d], out=acc)

    def ours() -> None:
        add_mask(acc, key)

    def flower_style() -> None:
        rs = np.random.RandomState(int.from_bytes(key[:4], "big"))
        np.add(acc, rs.randint(0, 2**32 - 1, size=d, dtype=np.int64).astype(np.uint32), out=acc)

    raw = median_seconds(repeats, raw_aes_plus_add)
    mine = median_seconds(repeats, ours)
    flower = median_seconds(repeats, flower_style)
    return {
        "d": d,
        "raw_aes_ctr_plus_add_ms": raw * 1e3,
        "add_mask_ms": mine * 1e3,
        "ratio_to_raw": mine / raw,
        "flower_style_mt19937_ms": flower * 1e3,
    }


@dataclass
class Seconds:
    """Duration of one call on two clocks: elapsed (``wall``) and this process's CPU (``cpu``)."""

    wall: float
    cpu: float


def timed(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> tuple[_R, Seconds]:
    """Call ``function(*args, **kwargs)`` once and time it on both clocks.

    Args:
        function: The operation to time.
        *args: Its positional arguments.
        **kwargs: Its keyword arguments.

    Returns:
        The function's result and how long the call took.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, Seconds(time.perf_counter() - wall, time.process_time() - cpu)


@dataclass
class Rates:
    """Throughputs of one path, per second of one clock."""

    encrypt_values_per_s: float
    aggregate_client_values_per_s: float
    decrypt_values_per_s: float


@dataclass
class PaillierRow:
    """One measured Paillier path.

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


def _rates(encrypted: int, aggregated: int, decrypted: int, seconds: list[Seconds]) -> list[Rates]:
    """The wall-clock and CPU-clock rates of encryption, aggregation and decryption."""
    encrypt, aggregate, decrypt = seconds
    return [
        Rates(
            encrypted / getattr(encrypt, clock),
            aggregated / getattr(aggregate, clock),
            decrypted / getattr(decrypt, clock),
        )
        for clock in ("wall", "cpu")
    ]


def bench_phe(keys: PaillierKeypair, sample: npt.NDArray[np.uint64], clients: int) -> PaillierRow:
    """Time phe's naive path on ``sample``; one client's ciphertexts stand in for every client.

    phe 1.5.0 encrypts with ``public_key.encrypt`` per value, adds ``EncryptedNumber`` objects
    and decrypts with ``raw_decrypt`` per value; the rates are per value.

    Args:
        keys: The key pair (its phe-compatible public and private keys are used).
        sample: The values one client encrypts.
        clients: How many ciphertext vectors the server adds (``clients - 1`` additions).

    Returns:
        The measured row; ``exact`` says whether every decrypted sum is ``clients * value``.
    """
    public_key, private_key = keys.public_key, keys.private_key
    values = [int(v) for v in sample]
    encrypted, encrypt_s = timed(lambda: [public_key.encrypt(v) for v in values])

    def aggregate() -> list[phe.EncryptedNumber]:
        total = encrypted
        for _ in range(clients - 1):
            total = [a + b for a, b in zip(total, encrypted, strict=True)]
        return total

    total, aggregate_s = timed(aggregate)
    decrypted, decrypt_s = timed(
        lambda: [private_key.raw_decrypt(c.ciphertext(be_secure=False)) for c in total]
    )
    count = len(values)
    wall, cpu = _rates(count, clients * count, count, [encrypt_s, aggregate_s, decrypt_s])
    return PaillierRow(
        path="phe 1.5.0, one value per ciphertext",
        wall=wall,
        cpu=cpu,
        bytes_per_value=float(ciphertext_byte_length(public_key)),
        values_per_ciphertext=1,
        exact=decrypted == [clients * v for v in values],
        note=f"sample of {count} values, rates per value; one client's ciphertexts added n times",
    )


def time_djn_table(keys: PaillierKeypair) -> Seconds:
    """Time the first DJN encryption under ``keys``, which builds the fixed-base table.

    Call it once per key pair, before :func:`bench_packed`, so that the table's one-off cost
    stays out of the encryption rates.

    Args:
        keys: A key pair generated in :attr:`RandomnessMode.DJN`.

    Returns:
        How long encrypting one plaintext took, table construction included.
    """
    _, seconds = timed(encrypt_vector, keys.public_key, [1], mode=RandomnessMode.DJN, djn=keys.djn)
    return seconds


def _encrypt_packed(
    keys: PaillierKeypair,
    scheme: PackingScheme,
    values: npt.NDArray[np.uint64],
    mode: RandomnessMode,
    processes: int,
) -> list[int]:
    """One client's encryption: pack ``values`` and encrypt each plaintext in ``mode``."""
    return encrypt_vector(
        keys.public_key,
        scheme.pack(values),
        mode=mode,
        djn=keys.djn if mode is RandomnessMode.DJN else None,
        processes=processes,
    )


def _decrypt_packed(
    keys: PaillierKeypair,
    scheme: PackingScheme,
    aggregate: list[int],
    shape: tuple[int, int],
    processes: int,
) -> npt.NDArray[np.uint64]:
    """The key holder's decryption of ``aggregate`` and unpacking of ``shape`` = (n, d) sums."""
    clients, dim = shape
    plaintexts = decrypt_vector(keys.private_key, aggregate, processes=processes)
    return scheme.unpack(plaintexts, dim, clients)


def bench_packed(
    keys: PaillierKeypair,
    inputs: npt.NDArray[np.uint64],
    value_bits: int,
    layout: SlotLayout,
    mode: RandomnessMode,
    processes: int,
    other_clients: list[list[int]] | None = None,
) -> tuple[PaillierRow, list[list[int]]]:
    """Time client 0's packed encryption in ``mode``, the server's sum and the decryption.

    The other clients always encrypt with DJN (the server's cost does not depend on how they
    did); their ciphertexts can be passed back in to skip encrypting them again.

    Args:
        keys: The key pair.
        inputs: One row of ``value_bits``-bit values per client (at least two clients).
        value_bits: Width of each value, for the packing scheme.
        layout: How values are packed into plaintext slots.
        mode: How client 0 draws its r^n.
        processes: Worker processes for encryption and decryption (1 = one core).
        other_clients: Clients 1..n-1's ciphertexts from an earlier call with the same
            ``inputs`` and ``layout``, or ``None`` to encrypt them here.

    Returns:
        The measured row (``exact`` compares the unpacked aggregate with the plain sum) and
        the other clients' ciphertexts, for reuse by a later row.
    """
    public_key = keys.public_key
    clients, dim = inputs.shape
    scheme = PackingScheme.for_public_key(
        public_key, value_bits=value_bits, num_clients=clients, layout=layout
    )
    first, encrypt_s = timed(_encrypt_packed, keys, scheme, inputs[0], mode, processes)
    if other_clients is None:
        other_clients = [
            _encrypt_packed(keys, scheme, values, RandomnessMode.DJN, processes)
            for values in inputs[1:]
        ]
    aggregate, aggregate_s = timed(sum_ciphertext_vectors, public_key, [first, *other_clients])
    result, decrypt_s = timed(_decrypt_packed, keys, scheme, aggregate, (clients, dim), processes)
    wire_bytes = len(ciphertexts_to_bytes(public_key, first))
    label = "fresh r^n" if mode is RandomnessMode.FRESH else "DJN r^n"
    wall, cpu = _rates(dim, clients * dim, dim, [encrypt_s, aggregate_s, decrypt_s])
    row = PaillierRow(
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
