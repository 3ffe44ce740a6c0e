"""Vector encryption, homomorphic sums, CRT decryption and the ciphertext byte codec.

Why this module exists: phe encrypts one number per ciphertext through Python objects; a
federated round moves 10^5 to 10^7 values per client. This module works on plain ``int``
ciphertexts with gmpy2 arithmetic: :func:`encrypt_vector` (g = n + 1, so
c = (1 + m n) r^n mod n^2 with no exponentiation for g), :func:`sum_ciphertext_vectors`,
:func:`decrypt_vector` (Chinese remainder theorem, exactly phe's ``raw_decrypt``), and a
fixed-width byte encoding, each spreading long vectors over a process pool.

Rules: a ciphertext is an element of Z*_{n^2}, i.e. 0 < c < n^2 and gcd(c, n) = 1; everything
received from outside is checked before use (:func:`check_ciphertext`,
:func:`ciphertexts_from_bytes`); secret primes are never cached. ``_encrypt_from_parts`` is the
deterministic seam for known answers and is for tests only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import gmpy2
import phe

from secagg.errors import InvalidCiphertextError, ParameterError
from secagg.hazmat.paillier._checks import _check_type
from secagg.hazmat.paillier._parallel import (
    _CHUNKS_PER_PROCESS,
    _map_chunks,
    _split_evenly,
    _worker_count,
)
from secagg.hazmat.paillier.keys import DJNParameters, _check_private_key, _check_public_key
from secagg.hazmat.paillier.randomness import (
    RandomnessMode,
    RandomnessPool,
    _map_with_djn_table,
    _randomness_factors,
    _resolve_djn,
)

__all__ = [
    "add_ciphertext_vectors",
    "check_ciphertext",
    "ciphertext_byte_length",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "decrypt_vector",
    "encrypt_vector",
    "sum_ciphertext_vectors",
]


def _encrypt_from_parts(
    public_key: phe.PaillierPublicKey, plaintext: int, randomness_factor: int
) -> int:
    """c = (1 + m n) * r^n mod n^2 for a given r^n; the deterministic seam for known answers."""
    n = gmpy2.mpz(public_key.n)
    return int((1 + plaintext * n) * gmpy2.mpz(randomness_factor) % (n * n))


def _encrypt_with_factors(n: int, plaintexts: Sequence[int], factors: Sequence[int]) -> list[int]:
    n_mpz = gmpy2.mpz(n)
    modulus = n_mpz * n_mpz
    # m < n, so 1 + m n < n^2 already: no reduction before the multiplication.
    return [
        int((1 + plaintext * n_mpz) * factor % modulus)
        for plaintext, factor in zip(plaintexts, factors, strict=True)
    ]


def _encrypt_chunk(n: int, hs: int | None, plaintexts: list[int]) -> list[int]:
    return _encrypt_with_factors(n, plaintexts, _randomness_factors(n, hs, len(plaintexts)))


def encrypt_vector(
    public_key: phe.PaillierPublicKey,
    plaintexts: Sequence[int],
    *,
    mode: RandomnessMode = RandomnessMode.FRESH,
    djn: DJNParameters | None = None,
    pool: RandomnessPool | None = None,
    processes: int | None = None,
) -> list[int]:
    """Encrypt each plaintext (usually a packing of many values) with g = n + 1.

    Needs only the public key. Each ciphertext is ``(1 + m n) * r^n mod n^2``, exactly what
    phe's ``raw_encrypt`` computes, so phe decrypts it.

    Args:
        public_key: The encryption key.
        plaintexts: Integers in [0, n), e.g. from :meth:`secagg.packing.PackingScheme.pack`.
        mode: :attr:`RandomnessMode.FRESH` (default, standard assumption) or
            :attr:`RandomnessMode.DJN` (much faster, extra assumption; needs ``djn``).
        djn: The key's DJN parameters, for mode DJN only.
        pool: Take precomputed factors from this pool instead of drawing them; mode and djn
            must then be left at their defaults (the pool was generated with its own).
        processes: Worker processes for long vectors; None uses every core, 1 stays serial.

    Returns:
        One ciphertext per plaintext.

    Raises:
        ParameterError: A plaintext is out of range, the mode/djn/pool combination is
            inconsistent, or the pool has too few factors.
        TypeError: A plaintext is not an int.
    """
    _check_public_key(public_key)
    n = int(public_key.n)
    for plaintext in plaintexts:
        _check_type("plaintext", plaintext, int)
        if not 0 <= plaintext < n:
            raise ParameterError("plaintexts must lie in [0, n)")
    if pool is not None:
        if mode is not RandomnessMode.FRESH or djn is not None:
            raise ParameterError(
                "a pool's factors were drawn by RandomnessPool.generate: pass mode and djn "
                "there, not together with pool"
            )
        if not isinstance(pool, RandomnessPool):
            raise TypeError(f"pool must be RandomnessPool, not {type(pool).__name__}")
        if pool.public_key.n != n:
            raise ParameterError("the randomness pool belongs to a different public key")
        return _encrypt_with_factors(n, plaintexts, pool.take(len(plaintexts)))
    hs = _resolve_djn(public_key, mode, djn)
    workers = _worker_count(processes, len(plaintexts))
    chunks = _split_evenly(plaintexts, workers * _CHUNKS_PER_PROCESS if workers > 1 else 1)
    return _map_with_djn_table(partial(_encrypt_chunk, n, hs), chunks, workers, n, hs)


def check_ciphertext(public_key: phe.PaillierPublicKey, ciphertext: int) -> None:
    """Check that ``ciphertext`` is an element of Z*_{n^2}.

    Args:
        public_key: The key the ciphertext claims to be under.
        ciphertext: The ciphertext.

    Raises:
        InvalidCiphertextError: It is not in (0, n^2) or shares a factor with n.
        TypeError: It is not an int.
    """
    _check_public_key(public_key)
    _check_type("ciphertext", ciphertext, int)
    n = public_key.n
    if not 0 < ciphertext < public_key.nsquare or gmpy2.gcd(ciphertext, n) != 1:
        raise InvalidCiphertextError("invalid Paillier ciphertext")


def add_ciphertext_vectors(
    public_key: phe.PaillierPublicKey, a: Sequence[int], b: Sequence[int]
) -> list[int]:
    """Homomorphically add two ciphertext vectors position by position.

    Inputs are trusted to be valid ciphertexts (decode them with :func:`ciphertexts_from_bytes`);
    they are not re-checked here, which keeps the server at one multiplication per value.

    Args:
        public_key: The key both vectors are under.
        a: Ciphertexts.
        b: Ciphertexts, as many as ``a``.

    Returns:
        ``a[i] * b[i] mod n^2`` for each i, which decrypts to the sum of the plaintexts mod n.

    Raises:
        ParameterError: The vectors differ in length.
    """
    return sum_ciphertext_vectors(public_key, [a, b])


def sum_ciphertext_vectors(
    public_key: phe.PaillierPublicKey, vectors: Sequence[Sequence[int]]
) -> list[int]:
    """Homomorphically add any number of ciphertext vectors position by position.

    The running products stay gmpy2 integers until the end, one multiplication and one
    reduction mod n^2 per ciphertext. Inputs are trusted (see :func:`add_ciphertext_vectors`).

    Args:
        public_key: The key all vectors are under.
        vectors: At least one ciphertext vector, all of one length.

    Returns:
        The position-wise product mod n^2, which decrypts to the position-wise plaintext sum.

    Raises:
        ParameterError: No vectors, or vectors of different lengths.
    """
    _check_public_key(public_key)
    if not vectors:
        raise ParameterError("need at least one ciphertext vector to sum")
    length = len(vectors[0])
    for vector in vectors:
        if len(vector) != length:
            raise ParameterError(f"ciphertext vectors differ in length ({len(vector)} != {length})")
    modulus = gmpy2.mpz(public_key.nsquare)
    accumulator = [gmpy2.mpz(c) for c in vectors[0]]
    for vector in vectors[1:]:
        accumulator = [acc * c % modulus for acc, c in zip(accumulator, vector, strict=True)]
    return [int(c) for c in accumulator]


class _CRTKey(NamedTuple):
    """Decryption constants, computed as phe does (p < q, Paillier 1999 section 7).

    Deliberately not cached: a module-level cache would keep secret primes alive.
    """

    p: gmpy2.mpz
    q: gmpy2.mpz
    p_square: gmpy2.mpz
    q_square: gmpy2.mpz
    hp: gmpy2.mpz
    hq: gmpy2.mpz
    p_inverse: gmpy2.mpz


def _crt_key(p: int, q: int) -> _CRTKey:
    p_mpz, q_mpz = gmpy2.mpz(min(p, q)), gmpy2.mpz(max(p, q))
    g = p_mpz * q_mpz + 1
    p_square, q_square = p_mpz * p_mpz, q_mpz * q_mpz
    hp = gmpy2.invert((gmpy2.powmod(g, p_mpz - 1, p_square) - 1) // p_mpz, p_mpz)
    hq = gmpy2.invert((gmpy2.powmod(g, q_mpz - 1, q_square) - 1) // q_mpz, q_mpz)
    return _CRTKey(p_mpz, q_mpz, p_square, q_square, hp, hq, gmpy2.invert(p_mpz, q_mpz))


def _decrypt_chunk(p: int, q: int, ciphertexts: list[int]) -> list[int]:
    key = _crt_key(p, q)
    p_, q_, p_square, q_square = key.p, key.q, key.p_square, key.q_square
    p_minus_1, q_minus_1 = p_ - 1, q_ - 1
    plaintexts = []
    for ciphertext in ciphertexts:
        # m mod p = L_p(c^(p-1) mod p^2) * hp mod p, with L_p(x) = (x - 1) / p; same for q.
        mp = (gmpy2.powmod(ciphertext, p_minus_1, p_square) - 1) // p_ * key.hp % p_
        mq = (gmpy2.powmod(ciphertext, q_minus_1, q_square) - 1) // q_ * key.hq % q_
        plaintexts.append(int(mp + (mq - mp) * key.p_inverse % q_ * p_))
    return plaintexts


def decrypt_vector(
    private_key: phe.PaillierPrivateKey,
    ciphertexts: Sequence[int],
    *,
    processes: int | None = None,
) -> list[int]:
    """Decrypt each ciphertext with the Chinese remainder theorem.

    Gives exactly what phe's ``PaillierPrivateKey.raw_decrypt`` gives, at gmpy2 speed.

    Args:
        private_key: The decryption key.
        ciphertexts: Ciphertexts under ``private_key.public_key``.
        processes: Worker processes for long vectors; None uses every core, 1 stays serial.

    Returns:
        One plaintext in [0, n) per ciphertext.

    Raises:
        InvalidCiphertextError: A ciphertext is not an element of Z*_{n^2}.
        TypeError: A ciphertext is not an int.
    """
    _check_private_key(private_key)
    public_key = private_key.public_key
    for ciphertext in ciphertexts:
        check_ciphertext(public_key, ciphertext)
    p, q = int(private_key.p), int(private_key.q)
    workers = _worker_count(processes, len(ciphertexts))
    chunks = _split_evenly(ciphertexts, workers * _CHUNKS_PER_PROCESS if workers > 1 else 1)
    return _map_chunks(partial(_decrypt_chunk, p, q), chunks, workers)


def ciphertext_byte_length(public_key: phe.PaillierPublicKey) -> int:
    """Bytes of one serialized ciphertext: ``ceil(2 * bits(n) / 8)`` (512 for 2048-bit keys).

    Args:
        public_key: The key.

    Returns:
        The fixed width.
    """
    _check_public_key(public_key)
    return (2 * int(public_key.n).bit_length() + 7) // 8


def ciphertexts_to_bytes(public_key: phe.PaillierPublicKey, ciphertexts: Sequence[int]) -> bytes:
    """Serialize ciphertexts as concatenated fixed-width big-endian integers.

    Args:
        public_key: The key the ciphertexts are under.
        ciphertexts: Ciphertexts.

    Returns:
        ``len(ciphertexts) * ciphertext_byte_length(public_key)`` bytes.

    Raises:
        InvalidCiphertextError: A value is not in (0, n^2).
        TypeError: A value is not an int.
    """
    width = ciphertext_byte_length(public_key)
    modulus = public_key.nsquare
    for ciphertext in ciphertexts:
        _check_type("ciphertext", ciphertext, int)
        if not 0 < ciphertext < modulus:
            raise InvalidCiphertextError("invalid Paillier ciphertext")
    return b"".join(ciphertext.to_bytes(width, "big") for ciphertext in ciphertexts)


def ciphertexts_from_bytes(
    public_key: phe.PaillierPublicKey, data: bytes, *, check_units: bool = True
) -> list[int]:
    """Parse :func:`ciphertexts_to_bytes` output, checking every ciphertext.

    Args:
        public_key: The key the ciphertexts must be under.
        data: The bytes.
        check_units: Also check gcd(c, n) = 1 for each ciphertext (about 3 modular
            multiplications' worth of time each). A server that only multiplies may pass False:
            a non-unit factor makes the aggregate a non-unit, which :func:`decrypt_vector`
            rejects, and only someone who knows the factorization of n can produce one.

    Returns:
        The ciphertexts.

    Raises:
        InvalidCiphertextError: The length is not a multiple of the width, or a value is not in
            Z*_{n^2} (not in (0, n^2) when ``check_units`` is False).
        TypeError: ``data`` is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    width = ciphertext_byte_length(public_key)
    view = memoryview(data)
    if len(view) % width:
        raise InvalidCiphertextError("invalid Paillier ciphertext encoding")
    modulus = public_key.nsquare
    n = public_key.n
    ciphertexts = []
    for start in range(0, len(view), width):
        ciphertext = int.from_bytes(view[start : start + width], "big")
        if not 0 < ciphertext < modulus or (check_units and gmpy2.gcd(ciphertext, n) != 1):
            raise InvalidCiphertextError("invalid Paillier ciphertext")
        ciphertexts.append(ciphertext)
    return ciphertexts
