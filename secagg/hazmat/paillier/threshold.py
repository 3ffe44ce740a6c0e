"""Threshold Paillier: a committee of m decryptors, any t of whom decrypt, with proofs.

Why this module exists: with one key holder, whoever holds the Paillier secret key can decrypt
every client's upload on its own. Here the secret exponent is Shamir-shared among ``decryptors``
parties so that any ``threshold`` of them decrypt an aggregate and fewer learn nothing about it,
and each partial decryption carries a proof that it was computed with the share behind the
decryptor's public verification key, so a wrong one is detected and its decryptor named.

The scheme is Damgård-Jurik (PKC 2001, s = 1) in the form of Fouque, Poupard and Stern
(FC 2000), with Shoup's (EUROCRYPT 2000) Δ = m! trick and a trusted dealer:

- n = p q for safe primes p = 2p' + 1, q = 2q' + 1; m' = p' q' (the code calls it
  ``subgroup_order``). The secret exponent d satisfies d ≡ 0 (mod m') and d ≡ 1 (mod n), and
  is shared with a random polynomial f of degree t - 1 over Z_{n m'}: share s_i = f(i).
- Verification base v = r^2 mod n^2 for a random unit r; verification keys v_i = v^{Δ s_i}.
- Partial decryption of c: c_i = c^{2 Δ s_i} mod n^2 (sent as the smaller of c_i and
  n^2 - c_i; see below). Any t of them combine with the integers μ_i = Δ Π_{j≠i} j / (j - i):
  Π c_i^{2 μ_i} = c^{4 Δ^2 d} = 1 + 4 Δ^2 M n (mod n^2), so M = L(·) (4 Δ^2)^{-1} mod n.
- The proof is Shoup's equality of discrete logarithms, log_{C^4}(C_i^2) = log_v(v_i), made
  non-interactive with SHA-256 and batched over the whole vector: C = Π c_j^{rho_j} and
  C_i = Π c_{ij}^{rho_j} for 128-bit rho_j hashed from the transcript (context, key fingerprint,
  decryptor index, ciphertexts, partial values). Safe primes leave only elements of order
  dividing 2 outside the big-prime-order part of Z*_{n^2}; the squarings remove them, so a wrong
  value survives the batch with probability about 2^-128.
- Partial values are canonical: of c_i and n^2 - c_i the smaller is sent, and its Jacobi symbol
  mod n must be +1. Multiplying a value by an element of order 2 would pass Shoup's proof
  (harmlessly, the combination squares it); the canonical form rejects every such variant, so a
  partial decryption has exactly one valid encoding.
- The proof nonce r has |n^2| + |Δ| + 2 * 256 bits: the secret exponent is Δ s_i < Δ n^2, so
  z = r + e Δ s_i hides it up to 2^-256 statistically.
- Combination checks that the product is ≡ 1 (mod n), as every genuine one is. Wrong values
  almost never pass that check, so they raise instead of giving a wrong plaintext; only
  verification says which decryptor was wrong.

Limitations: the dealer sees the factorization (no distributed key generation); it must erase
p, q, d and the coefficients after dealing (this module keeps none of them). Committees are
bounded by :data:`SUPPORTED_COMMITTEE_SIZES`. Rules: randomness only from :mod:`secrets`;
everything received from outside is checked before use; ``_threshold_keypair_from_parts`` and
``_partial_decrypt_with_nonce`` are deterministic seams for known answers, for tests only.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, NamedTuple

import gmpy2
import phe

from secagg.errors import (
    InvalidPartialDecryptionError,
    ParameterError,
    ReconstructionError,
)
from secagg.hazmat.paillier._checks import _check_type
from secagg.hazmat.paillier._parallel import (
    _CHUNKS_PER_PROCESS,
    _map_chunks,
    _split_evenly,
    _worker_count,
)
from secagg.hazmat.paillier.cipher import check_ciphertext, ciphertext_byte_length
from secagg.hazmat.paillier.keys import (
    _MIN_UNCHECKED_KEY_BITS,
    _PRIMALITY_ROUNDS,
    SUPPORTED_KEY_BITS,
    DJNParameters,
    _check_public_key,
    _djn_parameters_from_parts,
    _primes_are_compatible,
    _random_unit,
)

__all__ = [
    "SUPPORTED_COMMITTEE_SIZES",
    "DecryptionKeyShare",
    "PartialDecryption",
    "ThresholdKeyset",
    "ThresholdPublicKey",
    "combine_partial_decryptions",
    "generate_threshold_keypair",
    "partial_decrypt",
    "verify_partial_decryption",
]

#: Committee sizes (number of decryptors m) the keys support. Δ = m! enters every partial
#: decryption exponent (2 Δ s_i), the proof nonce and the combination exponents, so each extra
#: member makes every decryptor slower; at m = 64, Δ has 296 bits (7 % more work per partial
#: decryption with a 2048-bit key than at m = 5). Indices are encoded in two bytes.
SUPPORTED_COMMITTEE_SIZES: Final = range(1, 65)

#: Bits of the Fiat-Shamir challenge e (SHA-256) and of the batching coefficients rho_j.
_CHALLENGE_BITS: Final = 256
_CHALLENGE_BYTES: Final = _CHALLENGE_BITS // 8
_BATCH_COEFFICIENT_BITS: Final = 128

_PUBLIC_KEY_MAGIC: Final = b"STPK"
_SHARE_MAGIC: Final = b"STKS"
_PARTIAL_MAGIC: Final = b"STPD"
_FORMAT_VERSION: Final = 1
_MAX_KEY_BITS: Final = max(SUPPORTED_KEY_BITS)

_TRANSCRIPT_LABEL: Final = b"secagg threshold-paillier partial decryption v1"
_COEFFICIENT_LABEL: Final = b"rho"
_CHALLENGE_LABEL: Final = b"challenge"

# Candidates for p' are sieved so that neither p' nor 2p' + 1 has a prime factor below this
# bound before any primality test: that discards about 98 % of the odd candidates for the price
# of a few hundred slice assignments per window.
_SIEVE_BOUND: Final = 2000
_SIEVE_WINDOW: Final = 4096
# Cheap filter rounds (BPSW plus a few Miller-Rabin) while searching; the final check in
# _threshold_keypair_from_parts uses the full _PRIMALITY_ROUNDS.
_SEARCH_ROUNDS: Final = 25


def _odd_primes_below(bound: int) -> tuple[int, ...]:
    is_prime = bytearray(b"\x01") * bound
    primes = []
    for candidate in range(3, bound, 2):
        if is_prime[candidate]:
            primes.append(candidate)
            start, step = candidate * candidate, 2 * candidate
            is_prime[start::step] = bytes(len(range(start, bound, step)))
    return tuple(primes)


_SMALL_ODD_PRIMES: Final = _odd_primes_below(_SIEVE_BOUND)


# --- keys ------------------------------------------------------------------------------------


def _check_committee(decryptors: int, threshold: int) -> None:
    _check_type("decryptors", decryptors, int)
    _check_type("threshold", threshold, int)
    if decryptors not in SUPPORTED_COMMITTEE_SIZES:
        raise ParameterError(
            f"decryptors = {decryptors} is not supported: a committee has "
            f"{SUPPORTED_COMMITTEE_SIZES.start}..{SUPPORTED_COMMITTEE_SIZES.stop - 1} members"
        )
    if not 1 <= threshold <= decryptors:
        raise ParameterError(
            f"threshold = {threshold} must lie in 1..decryptors = 1..{decryptors}: any "
            "threshold of the decryptors must be able to decrypt"
        )


def _is_canonical_square_candidate(value: int, n: int) -> bool:
    """A unit with Jacobi symbol +1 mod n (every square has it; it implies gcd(value, n) = 1)."""
    return bool(gmpy2.jacobi(value, n) == 1)


@dataclass(frozen=True)
class ThresholdPublicKey:
    """The public side of a threshold Paillier key: encryption key and verification keys.

    Clients encrypt under ``public_key`` (and ``djn``) exactly as with a single key holder; the
    rest lets anyone check partial decryptions and combine them.

    Attributes:
        public_key: The Paillier encryption key (phe's class, g = n + 1).
        decryptors: Committee size m, in :data:`SUPPORTED_COMMITTEE_SIZES`.
        threshold: How many partial decryptions decrypt, t with 1 <= t <= m.
        delta: Δ = m!.
        verification_base: v = r^2 mod n^2 for a random unit r.
        verification_keys: v_i = v^{Δ s_i} mod n^2 for i = 1..m (index i at position i - 1).
        djn: The key's Damgård-Jurik-Nielsen parameters, or None.
    """

    public_key: phe.PaillierPublicKey
    decryptors: int
    threshold: int
    delta: int
    verification_base: int
    verification_keys: tuple[int, ...] = field(repr=False)
    djn: DJNParameters | None = None

    def __post_init__(self) -> None:
        _check_public_key(self.public_key)
        _check_committee(self.decryptors, self.threshold)
        _check_type("delta", self.delta, int)
        n = int(self.public_key.n)
        if not _MIN_UNCHECKED_KEY_BITS <= n.bit_length() <= _MAX_KEY_BITS or n % 2 == 0:
            raise ParameterError(
                f"a threshold key needs an odd n of {_MIN_UNCHECKED_KEY_BITS} to "
                f"{_MAX_KEY_BITS} bits, not {n.bit_length()} bits"
            )
        if self.delta != math.factorial(self.decryptors):
            raise ParameterError(f"delta must be decryptors! = {self.decryptors}!")
        if math.gcd(n, self.delta) != 1:
            raise ParameterError("n shares a factor with delta: not a threshold Paillier key")
        keys = tuple(self.verification_keys)
        object.__setattr__(self, "verification_keys", keys)
        if len(keys) != self.decryptors:
            raise ParameterError(
                f"need one verification key per decryptor ({self.decryptors}), not {len(keys)}"
            )
        for name, value in [("verification_base", self.verification_base)] + [
            (f"verification key {i}", key) for i, key in enumerate(keys, start=1)
        ]:
            _check_type(name, value, int)
            if not 1 < value < n * n or not _is_canonical_square_candidate(value, n):
                raise ParameterError(f"{name} is not a unit with Jacobi symbol +1 mod n")
        if self.djn is not None:
            if not isinstance(self.djn, DJNParameters):
                raise TypeError(f"djn must be DJNParameters, not {type(self.djn).__name__}")
            if not self.djn.matches(self.public_key):
                raise ParameterError("the DJN parameters belong to a different public key")

    @property
    def n(self) -> int:
        """The public modulus n."""
        return int(self.public_key.n)

    def verification_key(self, index: int) -> int:
        """The verification key v_index of decryptor ``index`` (1-based).

        Args:
            index: A decryptor index in 1..decryptors.

        Returns:
            v^{Δ s_index} mod n^2.

        Raises:
            ParameterError: ``index`` is not a decryptor index.
        """
        _check_type("index", index, int)
        if not 1 <= index <= self.decryptors:
            raise ParameterError(f"decryptor index {index} is not in 1..{self.decryptors}")
        return self.verification_keys[index - 1]

    def to_bytes(self) -> bytes:
        """Serialize canonically (the fingerprint hashes these bytes).

        Layout: ``b"STPK"``, version (1 byte), length of n (2 bytes), n, decryptors (2 bytes),
        threshold (2 bytes), DJN flag (1 byte), then v, v_1..v_m and (with DJN) hs, each in the
        fixed width of a ciphertext. Integers are big-endian; Δ is implied by m.

        Returns:
            The encoding.
        """
        n = self.n
        n_length = (n.bit_length() + 7) // 8
        width = ciphertext_byte_length(self.public_key)
        values = [self.verification_base, *self.verification_keys]
        if self.djn is not None:
            values.append(self.djn.hs)
        return b"".join(
            [
                _PUBLIC_KEY_MAGIC,
                bytes([_FORMAT_VERSION]),
                n_length.to_bytes(2, "big"),
                n.to_bytes(n_length, "big"),
                self.decryptors.to_bytes(2, "big"),
                self.threshold.to_bytes(2, "big"),
                bytes([self.djn is not None]),
                *(value.to_bytes(width, "big") for value in values),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ThresholdPublicKey:
        """Parse and check :meth:`to_bytes` output.

        Args:
            data: The encoding.

        Returns:
            The key.

        Raises:
            ParameterError: The bytes are not a valid threshold public key; the message says
                what is wrong.
            TypeError: ``data`` is not bytes-like.
        """
        reader = _Reader(data, "threshold public key")
        reader.expect_header(_PUBLIC_KEY_MAGIC)
        n_length = reader.integer(2, "the length of n")
        if not 0 < n_length <= (_MAX_KEY_BITS + 7) // 8:
            raise ParameterError(f"threshold public key: n of {n_length} bytes is out of bounds")
        n = reader.integer(n_length, "n")
        if n.bit_length() <= 8 * (n_length - 1):
            raise ParameterError("threshold public key: n has a leading zero byte")
        decryptors = reader.integer(2, "decryptors")
        threshold = reader.integer(2, "threshold")
        flag = reader.integer(1, "the DJN flag")
        if flag > 1:
            raise ParameterError(f"threshold public key: DJN flag {flag} is neither 0 nor 1")
        if decryptors not in SUPPORTED_COMMITTEE_SIZES:
            raise ParameterError(f"threshold public key: {decryptors} decryptors unsupported")
        width = (2 * n.bit_length() + 7) // 8
        base = reader.integer(width, "the verification base")
        keys = tuple(reader.integer(width, f"verification key {i + 1}") for i in range(decryptors))
        hs = reader.integer(width, "the DJN base") if flag else None
        reader.finish()
        return cls(
            public_key=phe.PaillierPublicKey(n),
            decryptors=decryptors,
            threshold=threshold,
            delta=math.factorial(decryptors),
            verification_base=base,
            verification_keys=keys,
            djn=None if hs is None else DJNParameters(n=n, hs=hs),
        )

    def fingerprint(self) -> bytes:
        """SHA-256 of :meth:`to_bytes`: 32 bytes that name this key (bound into every proof).

        Returns:
            The digest.
        """
        return hashlib.sha256(self.to_bytes()).digest()


@dataclass(frozen=True)
class DecryptionKeyShare:
    """One decryptor's secret share s_i of the decryption exponent, with the public key.

    Keep it secret: ``threshold`` of these decrypt everything encrypted under the key. The share
    is hidden from ``repr``.

    Attributes:
        index: The decryptor's index i in 1..decryptors.
        share: s_i = f(i) mod n m' (secret).
        public: The committee's public key.
    """

    index: int
    share: int = field(repr=False)
    public: ThresholdPublicKey

    def __post_init__(self) -> None:
        _check_type("index", self.index, int)
        _check_type("share", self.share, int)
        if not isinstance(self.public, ThresholdPublicKey):
            raise TypeError(f"public must be ThresholdPublicKey, not {type(self.public).__name__}")
        if not 1 <= self.index <= self.public.decryptors:
            raise ParameterError(f"share index {self.index} is not in 1..{self.public.decryptors}")
        if not 0 <= self.share < self.public.n**2:
            raise ParameterError("a key share must lie in [0, n^2)")

    def to_bytes(self) -> bytes:
        """Serialize for a key file (secret: protect the file like a private key).

        Layout: ``b"STKS"``, version (1 byte), length of the public key encoding (4 bytes), that
        encoding, index (2 bytes), share (ciphertext width). Integers are big-endian.

        Returns:
            The encoding.
        """
        public = self.public.to_bytes()
        width = ciphertext_byte_length(self.public.public_key)
        return b"".join(
            [
                _SHARE_MAGIC,
                bytes([_FORMAT_VERSION]),
                len(public).to_bytes(4, "big"),
                public,
                self.index.to_bytes(2, "big"),
                self.share.to_bytes(width, "big"),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DecryptionKeyShare:
        """Parse :meth:`to_bytes` output and check the share against its verification key.

        Args:
            data: The encoding.

        Returns:
            The share.

        Raises:
            ParameterError: The bytes are malformed, or the share does not match the public
                verification key of its index (a corrupted or foreign key file).
            TypeError: ``data`` is not bytes-like.
        """
        reader = _Reader(data, "threshold key share")
        reader.expect_header(_SHARE_MAGIC)
        public = ThresholdPublicKey.from_bytes(
            reader.take(reader.integer(4, "the key length"), "the public key")
        )
        index = reader.integer(2, "the index")
        share = reader.integer(ciphertext_byte_length(public.public_key), "the share")
        reader.finish()
        result = cls(index=index, share=share, public=public)
        n_square = gmpy2.mpz(public.n) ** 2
        expected = gmpy2.powmod(public.verification_base, public.delta * share, n_square)
        if expected != public.verification_key(index):
            raise ParameterError(
                f"threshold key share: share {index} does not match its verification key"
            )
        return result


class ThresholdKeyset(NamedTuple):
    """What :func:`generate_threshold_keypair` returns; unpacks as ``public, shares``.

    ``shares[i - 1]`` is decryptor i's share: hand each to its decryptor only.
    """

    public: ThresholdPublicKey
    shares: tuple[DecryptionKeyShare, ...]


def generate_threshold_keypair(
    bits: int = 2048, *, decryptors: int, threshold: int, djn: bool = True
) -> ThresholdKeyset:
    """Deal a threshold Paillier key (trusted dealer) over fresh safe primes.

    p and q are safe primes of ``bits // 2`` bits with the top two bits set, |p - q| >=
    2^(bits/2 - 100), drawn with :mod:`secrets`; they also meet the DJN conditions
    (p ≡ q ≡ 3 (mod 4), gcd(p - 1, q - 1) = 2). Nothing secret but the shares survives the call.

    Args:
        bits: Bit length of n; one of :data:`~secagg.hazmat.paillier.SUPPORTED_KEY_BITS`.
        decryptors: Committee size m, in :data:`SUPPORTED_COMMITTEE_SIZES`.
        threshold: Number of partial decryptions that decrypt, 1 <= threshold <= decryptors.
        djn: Also draw the public :class:`~secagg.hazmat.paillier.DJNParameters`.

    Returns:
        ``ThresholdKeyset(public, shares)`` with one share per decryptor.

    Raises:
        ParameterError: Unsupported key size or committee, or threshold out of range.
        TypeError: An argument has the wrong type.
    """
    _check_type("bits", bits, int)
    _check_committee(decryptors, threshold)
    if bits not in SUPPORTED_KEY_BITS:
        raise ParameterError(
            f"key size {bits} is not supported: use one of {sorted(SUPPORTED_KEY_BITS)}"
        )
    return _generate_threshold_keypair_unchecked_size(
        bits, decryptors=decryptors, threshold=threshold, djn=djn
    )


def _generate_threshold_keypair_unchecked_size(
    bits: int, *, decryptors: int, threshold: int, djn: bool = True
) -> ThresholdKeyset:
    """Key dealing without the key-size policy; for fast tests with small keys only."""
    _check_type("bits", bits, int)
    _check_committee(decryptors, threshold)
    if not isinstance(djn, bool):
        raise TypeError(f"djn must be bool, not {type(djn).__name__}")
    if not _MIN_UNCHECKED_KEY_BITS <= bits <= _MAX_KEY_BITS or bits % 2:
        raise ParameterError(
            f"key size must be even and in {_MIN_UNCHECKED_KEY_BITS}..{_MAX_KEY_BITS}"
        )
    half = bits // 2
    p = _random_safe_prime(half)
    while True:
        q = _random_safe_prime(half)
        if _primes_are_compatible(p, q, bits):
            break
    n = int(p * q)
    modulus = n * ((int(p) - 1) // 2) * ((int(q) - 1) // 2)
    return _threshold_keypair_from_parts(
        int(p),
        int(q),
        decryptors=decryptors,
        threshold=threshold,
        coefficients=tuple(secrets.randbelow(modulus) for _ in range(threshold - 1)),
        verification_unit=_random_unit(n * n),
        djn_x=_random_unit(n) if djn else None,
    )


def _random_safe_prime(bits: int) -> gmpy2.mpz:
    """A random safe prime p = 2p' + 1 of exactly ``bits`` bits with the top two bits set."""
    # p' has bits - 1 bits, its top two set (then so are p's), and is odd (then p ≡ 3 mod 4).
    top = (1 << (bits - 2)) | (1 << (bits - 3)) | 1
    while True:
        start = secrets.randbits(bits - 1) | top
        prime = _safe_prime_in_window(start, bits)
        if prime is not None:
            return prime


def _sieve_window(start: int) -> bytearray:
    """alive[k] == 1 unless p' = start + 2k or 2p' + 1 has an odd prime factor below 2000."""
    alive = bytearray(b"\x01") * _SIEVE_WINDOW
    for prime in _SMALL_ODD_PRIMES:
        residue = start % prime
        half = (prime + 1) // 2  # the inverse of 2 mod prime
        # p' ≡ 0 makes p' composite; p' ≡ (prime - 1) / 2 makes 2p' + 1 ≡ 0 (mod prime).
        for bad in (0, (prime - 1) // 2):
            first = (bad - residue) * half % prime
            alive[first::prime] = bytes(len(range(first, _SIEVE_WINDOW, prime)))
    return alive


def _safe_prime_in_window(start: int, bits: int) -> gmpy2.mpz | None:
    alive = _sieve_window(start)
    two = gmpy2.mpz(2)
    offset = alive.find(1)
    while offset >= 0:
        half_prime = gmpy2.mpz(start + 2 * offset)
        prime = 2 * half_prime + 1
        # Fermat tests to base 2 reject almost every survivor at the cost of one exponentiation.
        if (
            prime.bit_length() == bits
            and gmpy2.powmod(two, half_prime - 1, half_prime) == 1
            and gmpy2.powmod(two, prime - 1, prime) == 1
            and gmpy2.is_prime(half_prime, _SEARCH_ROUNDS)
            and gmpy2.is_prime(prime, _SEARCH_ROUNDS)
        ):
            return prime
        offset = alive.find(1, offset + 1)
    return None


def _check_safe_primes(p: int, q: int) -> None:
    _check_type("p", p, int)
    _check_type("q", q, int)
    for name, prime in (("p", p), ("q", q)):
        if not (
            prime > 7
            and gmpy2.is_prime(prime, _PRIMALITY_ROUNDS)
            and gmpy2.is_prime((prime - 1) // 2, _PRIMALITY_ROUNDS)
        ):
            raise ParameterError(f"{name} must be a safe prime 2{name}' + 1 above 7")
    if p == q or p.bit_length() != q.bit_length():
        raise ParameterError("p and q must be distinct safe primes of the same bit length")
    if math.gcd(p * q, ((p - 1) // 2) * ((q - 1) // 2)) != 1:
        raise ParameterError("gcd(n, p'q') must be 1")


def _threshold_keypair_from_parts(
    p: int,
    q: int,
    *,
    decryptors: int,
    threshold: int,
    coefficients: Sequence[int],
    verification_unit: int,
    djn_x: int | None,
) -> ThresholdKeyset:
    """Deal from given primes and randomness; the deterministic seam for known answers."""
    _check_safe_primes(p, q)
    _check_committee(decryptors, threshold)
    n = p * q
    n_square = n * n
    subgroup_order = ((p - 1) // 2) * ((q - 1) // 2)  # m' = p'q'
    share_modulus = n * subgroup_order
    coefficients = tuple(coefficients)
    if len(coefficients) != threshold - 1:
        raise ParameterError(f"need threshold - 1 = {threshold - 1} coefficients")
    for coefficient in coefficients:
        _check_type("coefficient", coefficient, int)
        if not 0 <= coefficient < share_modulus:
            raise ParameterError("coefficients must lie in [0, n p'q')")
    _check_type("verification_unit", verification_unit, int)
    verification_base = verification_unit * verification_unit % n_square
    if math.gcd(verification_unit, n) != 1 or verification_base == 1:
        raise ParameterError("the verification unit must be a unit of Z*_{n^2} other than ±1")
    # d ≡ 0 (mod m') and d ≡ 1 (mod n), the secret exponent that c^d = 1 + M n (mod n^2).
    secret = subgroup_order * int(gmpy2.invert(subgroup_order, n))
    shares = [
        (secret + sum(a * index ** (k + 1) for k, a in enumerate(coefficients))) % share_modulus
        for index in range(1, decryptors + 1)
    ]
    delta = math.factorial(decryptors)
    public_key = phe.PaillierPublicKey(n)
    public = ThresholdPublicKey(
        public_key=public_key,
        decryptors=decryptors,
        threshold=threshold,
        delta=delta,
        verification_base=verification_base,
        verification_keys=tuple(
            int(gmpy2.powmod(verification_base, delta * share, n_square)) for share in shares
        ),
        djn=None if djn_x is None else _djn_parameters_from_parts(public_key, djn_x),
    )
    return ThresholdKeyset(
        public,
        tuple(
            DecryptionKeyShare(index=index, share=share, public=public)
            for index, share in enumerate(shares, start=1)
        ),
    )


# --- partial decryptions ---------------------------------------------------------------------


def _nonce_bits(public: ThresholdPublicKey) -> int:
    """Bits of the proof nonce: |Δ n^2| + 2 * 256 > |Δ s_i| + |e| + 256, so z hides Δ s_i."""
    return 2 * public.n.bit_length() + public.delta.bit_length() + 2 * _CHALLENGE_BITS


def _response_byte_length(public: ThresholdPublicKey) -> int:
    # z = r + e Δ s_i < 2^nonce_bits + 2^256 Δ n^2 <= 2^(nonce_bits + 1).
    return (_nonce_bits(public) + 1 + 7) // 8


@dataclass(frozen=True)
class PartialDecryption:
    """One decryptor's partial decryption of a ciphertext vector, with its batched proof.

    Attributes:
        index: The decryptor's index in 1..decryptors.
        values: c_j^{2 Δ s_i} mod n^2 for each ciphertext c_j, in canonical form (the smaller of
            it and n^2 minus it).
        challenge: The Fiat-Shamir challenge e (256 bits).
        response: The response z = r + e Δ s_i.
    """

    index: int
    values: tuple[int, ...] = field(repr=False)
    challenge: int
    response: int = field(repr=False)

    def __post_init__(self) -> None:
        _check_type("index", self.index, int)
        _check_type("challenge", self.challenge, int)
        _check_type("response", self.response, int)
        values = tuple(self.values)
        for value in values:
            _check_type("partial decryption value", value, int)
        object.__setattr__(self, "values", values)
        if self.index < 0 or self.challenge < 0 or self.response < 0:
            raise ParameterError("a partial decryption holds non-negative integers only")

    def to_bytes(self, public: ThresholdPublicKey) -> bytes:
        """Serialize with the fixed widths of ``public``.

        Layout: ``b"STPD"``, version (1 byte), index (2 bytes), number of values (4 bytes),
        challenge (32 bytes), response (fixed width from the key), values (ciphertext width
        each). Integers are big-endian.

        Args:
            public: The key the partial decryption belongs to.

        Returns:
            The encoding.

        Raises:
            ParameterError: A field does not fit its width (not a partial decryption for
                ``public``).
        """
        if not isinstance(public, ThresholdPublicKey):
            raise TypeError(f"public must be ThresholdPublicKey, not {type(public).__name__}")
        width = ciphertext_byte_length(public.public_key)
        try:
            return b"".join(
                [
                    _PARTIAL_MAGIC,
                    bytes([_FORMAT_VERSION]),
                    self.index.to_bytes(2, "big"),
                    len(self.values).to_bytes(4, "big"),
                    self.challenge.to_bytes(_CHALLENGE_BYTES, "big"),
                    self.response.to_bytes(_response_byte_length(public), "big"),
                    *(value.to_bytes(width, "big") for value in self.values),
                ]
            )
        except OverflowError:
            raise ParameterError(
                "this partial decryption does not fit the widths of the given key"
            ) from None

    @classmethod
    def from_bytes(cls, public: ThresholdPublicKey, data: bytes) -> PartialDecryption:
        """Parse :meth:`to_bytes` output (structure only; run verification next).

        Args:
            public: The key the partial decryption must belong to.
            data: The encoding.

        Returns:
            The partial decryption.

        Raises:
            ParameterError: The header is malformed or names no decryptor of ``public``.
            InvalidPartialDecryptionError: The rest is malformed (wrong length, a value outside
                (0, n^2)); ``decryptor`` names the index from the header.
            TypeError: ``data`` is not bytes-like.
        """
        if not isinstance(public, ThresholdPublicKey):
            raise TypeError(f"public must be ThresholdPublicKey, not {type(public).__name__}")
        reader = _Reader(data, "partial decryption")
        reader.expect_header(_PARTIAL_MAGIC)
        index = reader.integer(2, "the index")
        if not 1 <= index <= public.decryptors:
            raise ParameterError(
                f"partial decryption: index {index} is not in 1..{public.decryptors}"
            )
        count = reader.integer(4, "the number of values")
        width = ciphertext_byte_length(public.public_key)
        response_length = _response_byte_length(public)
        if reader.remaining != _CHALLENGE_BYTES + response_length + count * width:
            raise InvalidPartialDecryptionError(
                f"partial decryption of decryptor {index}: {reader.remaining} bytes after the "
                f"header, not the {_CHALLENGE_BYTES + response_length + count * width} that "
                f"{count} values need",
                decryptor=index,
            )
        challenge = reader.integer(_CHALLENGE_BYTES, "the challenge")
        response = reader.integer(response_length, "the response")
        values = tuple(reader.integer(width, "a value") for _ in range(count))
        n_square = public.n**2
        if any(not 0 < value < n_square for value in values):
            raise InvalidPartialDecryptionError(
                f"partial decryption of decryptor {index}: a value is outside (0, n^2)",
                decryptor=index,
            )
        return cls(index=index, values=values, challenge=challenge, response=response)


def _partial_chunk(n_square: int, exponent: int, ciphertexts: list[int]) -> list[int]:
    modulus = gmpy2.mpz(n_square)
    values = []
    for ciphertext in ciphertexts:
        value = gmpy2.powmod(ciphertext, exponent, modulus)
        # The canonical one of ±value (the combination squares it, the proof too).
        values.append(int(min(value, modulus - value)))
    return values


def partial_decrypt(
    share: DecryptionKeyShare,
    ciphertexts: Sequence[int],
    *,
    context: bytes,
    processes: int | None = 1,
) -> PartialDecryption:
    """Partially decrypt a ciphertext vector with one key share, and prove it.

    One batched proof covers the whole vector. The proof binds ``context``: pass everything that
    identifies the request (session, round, decryptor), and verify with the same bytes.

    Args:
        share: This decryptor's key share.
        ciphertexts: Ciphertexts under ``share.public.public_key`` (e.g. an aggregate).
        context: Bytes that the proof binds (session, round, decryptor index).
        processes: Worker processes for long vectors; None uses every core, 1 stays serial.

    Returns:
        The partial decryption, values and proof.

    Raises:
        InvalidCiphertextError: A ciphertext is not an element of Z*_{n^2}.
        ParameterError: ``processes`` is below 1.
        TypeError: An argument has the wrong type.
    """
    ciphertexts = list(ciphertexts)  # an iterator is read once, here
    if not isinstance(share, DecryptionKeyShare):
        raise TypeError(f"share must be DecryptionKeyShare, not {type(share).__name__}")
    nonce = secrets.randbits(_nonce_bits(share.public))
    return _partial_decrypt_with_nonce(
        share, ciphertexts, context=context, nonce=nonce, processes=processes
    )


def _partial_decrypt_with_nonce(
    share: DecryptionKeyShare,
    ciphertexts: Sequence[int],
    *,
    context: bytes,
    nonce: int,
    processes: int | None = 1,
) -> PartialDecryption:
    """:func:`partial_decrypt` with a given proof nonce; the deterministic seam for vectors."""
    if not isinstance(share, DecryptionKeyShare):
        raise TypeError(f"share must be DecryptionKeyShare, not {type(share).__name__}")
    public = share.public
    _check_context(context)
    _check_ciphertexts(public, ciphertexts)
    _check_type("nonce", nonce, int)
    if not 0 <= nonce < 1 << _nonce_bits(public):
        raise ParameterError("the proof nonce is out of range")
    secret_exponent = public.delta * share.share  # Δ s_i
    workers = _worker_count(processes, len(ciphertexts))
    chunks = _split_evenly(ciphertexts, workers * _CHUNKS_PER_PROCESS if workers > 1 else 1)
    values = _map_chunks(partial(_partial_chunk, public.n**2, 2 * secret_exponent), chunks, workers)
    challenge, response = _prove(share, ciphertexts, values, context, nonce, workers)
    return PartialDecryption(
        index=share.index, values=tuple(values), challenge=challenge, response=response
    )


def _prove(
    share: DecryptionKeyShare,
    ciphertexts: Sequence[int],
    values: Sequence[int],
    context: bytes,
    nonce: int,
    workers: int,
) -> tuple[int, int]:
    """(e, z) of the batched proof that ``values`` are c_j^{±2 Δ s_i} (Shoup 2000, section 2)."""
    public = share.public
    n_square = public.n**2
    digest = _transcript_digest(public, share.index, ciphertexts, values, context)
    batch_base, _ = _batch(public, ciphertexts, values, digest, workers)
    commitment_base = gmpy2.powmod(batch_base, 4 * nonce, n_square)  # a = C^{4r}
    commitment_key = gmpy2.powmod(public.verification_base, nonce, n_square)  # b = v^r
    challenge = _challenge(public, digest, commitment_base, commitment_key)
    return challenge, nonce + challenge * public.delta * share.share


def verify_partial_decryption(
    public: ThresholdPublicKey,
    ciphertexts: Sequence[int],
    partial: PartialDecryption,
    *,
    context: bytes,
) -> None:
    """Check a partial decryption of ``ciphertexts`` against its decryptor's verification key.

    Args:
        public: The committee's public key.
        ciphertexts: The ciphertexts that were to be decrypted.
        partial: The partial decryption to check.
        context: The bytes the decryptor was to bind (as passed to :func:`partial_decrypt`).

    Raises:
        InvalidPartialDecryptionError: The partial decryption is wrong: bad index, wrong number
            of values, a value not in canonical form, or a proof that does not verify;
            ``decryptor`` is ``partial.index``.
        InvalidCiphertextError: A ciphertext is not an element of Z*_{n^2} (not the
            decryptor's fault).
        TypeError: An argument has the wrong type.
    """
    ciphertexts = list(ciphertexts)  # an iterator is read once, here
    if not isinstance(public, ThresholdPublicKey):
        raise TypeError(f"public must be ThresholdPublicKey, not {type(public).__name__}")
    if not isinstance(partial, PartialDecryption):
        raise TypeError(f"partial must be PartialDecryption, not {type(partial).__name__}")
    _check_context(context)
    _check_ciphertexts(public, ciphertexts)
    index = partial.index
    if not 1 <= index <= public.decryptors:
        raise InvalidPartialDecryptionError(
            f"partial decryption names decryptor {index}, not one of 1..{public.decryptors}",
            decryptor=index,
        )
    if len(partial.values) != len(ciphertexts):
        raise InvalidPartialDecryptionError(
            f"partial decryption of decryptor {index} has {len(partial.values)} values for "
            f"{len(ciphertexts)} ciphertexts",
            decryptor=index,
        )
    if not _proof_holds(public, ciphertexts, partial, context):
        raise InvalidPartialDecryptionError(
            f"the partial decryption of decryptor {index} does not verify", decryptor=index
        )


def _proof_holds(
    public: ThresholdPublicKey,
    ciphertexts: Sequence[int],
    partial: PartialDecryption,
    context: bytes,
) -> bool:
    n = public.n
    n_square = n * n
    if not all(
        0 < 2 * value < n_square and _is_canonical_square_candidate(value, n)
        for value in partial.values
    ):
        return False
    if partial.challenge >> _CHALLENGE_BITS or partial.response >> (_nonce_bits(public) + 1):
        return False
    digest = _transcript_digest(public, partial.index, ciphertexts, partial.values, context)
    batch_base, batch_value = _batch(public, ciphertexts, partial.values, digest, 1)
    e, z = partial.challenge, partial.response
    # a = C^{4z} / C_i^{2e} and b = v^z / v_i^e, then e must be the hash of (transcript, a, b).
    commitment_base = (
        gmpy2.powmod(batch_base, 4 * z, n_square)
        * gmpy2.invert(gmpy2.powmod(batch_value, 2 * e, n_square), n_square)
        % n_square
    )
    commitment_key = (
        gmpy2.powmod(public.verification_base, z, n_square)
        * gmpy2.invert(gmpy2.powmod(public.verification_key(partial.index), e, n_square), n_square)
        % n_square
    )
    expected = _challenge(public, digest, commitment_base, commitment_key)
    return hmac.compare_digest(
        expected.to_bytes(_CHALLENGE_BYTES, "big"), e.to_bytes(_CHALLENGE_BYTES, "big")
    )


# --- the Fiat-Shamir transcript and the batch ------------------------------------------------


def _check_context(context: bytes) -> None:
    if not isinstance(context, bytes):
        raise TypeError(f"context must be bytes, not {type(context).__name__}")


def _check_ciphertexts(public: ThresholdPublicKey, ciphertexts: Sequence[int]) -> None:
    if isinstance(ciphertexts, (str, bytes)):
        raise TypeError("ciphertexts must be a sequence of ints")
    for ciphertext in ciphertexts:
        check_ciphertext(public.public_key, ciphertext)


def _transcript_digest(
    public: ThresholdPublicKey,
    index: int,
    ciphertexts: Sequence[int],
    values: Sequence[int],
    context: bytes,
) -> bytes:
    """SHA-256 over label, context, key fingerprint, index, count, ciphertexts and values."""
    width = ciphertext_byte_length(public.public_key)
    transcript = hashlib.sha256(_TRANSCRIPT_LABEL)
    transcript.update(len(context).to_bytes(8, "big"))
    transcript.update(context)
    transcript.update(public.fingerprint())
    transcript.update(index.to_bytes(2, "big"))
    transcript.update(len(ciphertexts).to_bytes(8, "big"))
    for ciphertext in ciphertexts:
        transcript.update(int(ciphertext).to_bytes(width, "big"))
    for value in values:
        transcript.update(int(value).to_bytes(width, "big"))
    return transcript.digest()


def _batch_coefficients(digest: bytes, count: int) -> list[int]:
    """rho_j = the first 128 bits of SHA-256(digest || "rho" || j) for j = 0..count - 1."""
    size = _BATCH_COEFFICIENT_BITS // 8
    return [
        int.from_bytes(
            hashlib.sha256(digest + _COEFFICIENT_LABEL + j.to_bytes(8, "big")).digest()[:size],
            "big",
        )
        for j in range(count)
    ]


def _challenge(
    public: ThresholdPublicKey, digest: bytes, commitment_base: int, commitment_key: int
) -> int:
    """e = SHA-256(digest || "challenge" || a || b), a and b in the ciphertext width."""
    width = ciphertext_byte_length(public.public_key)
    hashed = hashlib.sha256(
        digest
        + _CHALLENGE_LABEL
        + int(commitment_base).to_bytes(width, "big")
        + int(commitment_key).to_bytes(width, "big")
    )
    return int.from_bytes(hashed.digest(), "big")


def _window_bits(count: int) -> int:
    """The bucket width that minimises (128 / w) * (count + 2^(w + 1)) multiplications."""
    return min(
        range(1, 9),
        key=lambda w: -(-_BATCH_COEFFICIENT_BITS // w) * (count + (2 << w)),
    )


def _multi_power(bases: Sequence[int], exponents: Sequence[int], modulus: int) -> gmpy2.mpz:
    """Π bases[j]^exponents[j] mod modulus for exponents below 2^128 (bucket method).

    Each w-bit window of every exponent drops its base into one of 2^w - 1 buckets; the window's
    contribution Π_d bucket_d^d costs two running products. About three times faster than one
    exponentiation per base for a few hundred bases.
    """
    mod = gmpy2.mpz(modulus)
    window = _window_bits(len(bases))
    mask = (1 << window) - 1
    result = gmpy2.mpz(1)
    for position in range(-(-_BATCH_COEFFICIENT_BITS // window) - 1, -1, -1):
        for _ in range(window):
            result = result * result % mod
        buckets = [gmpy2.mpz(1)] * (mask + 1)
        shift = position * window
        for base, exponent in zip(bases, exponents, strict=True):
            digit = (exponent >> shift) & mask
            if digit:
                buckets[digit] = buckets[digit] * base % mod
        running = gmpy2.mpz(1)
        total = gmpy2.mpz(1)
        for digit in range(mask, 0, -1):
            running = running * buckets[digit] % mod
            total = total * running % mod
        result = result * total % mod
    return result


def _batch_chunk(n_square: int, triples: list[tuple[int, int, int]]) -> list[int]:
    """[Π c_j^{rho_j}, Π c_{ij}^{rho_j}] over one chunk of (ciphertext, value, rho) triples."""
    ciphertexts = [gmpy2.mpz(c) for c, _, _ in triples]
    values = [gmpy2.mpz(v) for _, v, _ in triples]
    coefficients = [rho for _, _, rho in triples]
    return [
        int(_multi_power(ciphertexts, coefficients, n_square)),
        int(_multi_power(values, coefficients, n_square)),
    ]


def _batch(
    public: ThresholdPublicKey,
    ciphertexts: Sequence[int],
    values: Sequence[int],
    digest: bytes,
    workers: int,
) -> tuple[int, int]:
    """(C, C_i): the ciphertexts and the partial values folded with the transcript's rho_j."""
    n_square = public.n**2
    triples = list(
        zip(ciphertexts, values, _batch_coefficients(digest, len(ciphertexts)), strict=True)
    )
    chunks = _split_evenly(triples, workers * _CHUNKS_PER_PROCESS if workers > 1 else 1)
    products = _map_chunks(partial(_batch_chunk, n_square), chunks, workers)
    batch_base, batch_value = 1, 1
    for position in range(0, len(products), 2):
        batch_base = batch_base * products[position] % n_square
        batch_value = batch_value * products[position + 1] % n_square
    return batch_base, batch_value


# --- combination -----------------------------------------------------------------------------


def _lagrange_exponents(indices: Sequence[int], delta: int) -> tuple[int, ...]:
    """2 μ_i for each index, μ_i = Δ Π_{j≠i} j / (j - i): an integer because Δ = m!."""
    exponents = []
    for i in indices:
        numerator, denominator = delta, 1
        for j in indices:
            if j != i:
                numerator *= j
                denominator *= j - i
        # Exact: Δ Π j / Π (j - i) is an integer for indices in 1..m (Shoup 2000, lemma 1).
        exponents.append(2 * (numerator // denominator))
    return tuple(exponents)


def _combine_chunk(
    n: int, exponents: tuple[int, ...], inverse: int, columns: list[tuple[int, ...]]
) -> list[int]:
    n_mpz = gmpy2.mpz(n)
    n_square = n_mpz * n_mpz
    plaintexts = []
    for column in columns:
        # Negative exponents go through one inversion per ciphertext, after the products.
        numerator, denominator = gmpy2.mpz(1), gmpy2.mpz(1)
        for value, exponent in zip(column, exponents, strict=True):
            if exponent > 0:
                numerator = numerator * gmpy2.powmod(value, exponent, n_square) % n_square
            else:
                denominator = denominator * gmpy2.powmod(value, -exponent, n_square) % n_square
        try:
            combined = numerator * gmpy2.invert(denominator, n_square) % n_square
        except ZeroDivisionError:
            raise ReconstructionError("a partial decryption value is not a unit") from None
        if combined % n_mpz != 1:
            raise ReconstructionError(
                "the partial decryptions do not combine to a plaintext: at least one is wrong "
                "(verify each with verify_partial_decryption first)"
            )
        plaintexts.append(int((combined - 1) // n_mpz * inverse % n_mpz))
    return plaintexts


def _choose_partials(
    public: ThresholdPublicKey, partials: Sequence[PartialDecryption]
) -> list[PartialDecryption]:
    for item in partials:
        if not isinstance(item, PartialDecryption):
            raise TypeError(f"partials must be PartialDecryption, not {type(item).__name__}")
    indices = [item.index for item in partials]
    if len(set(indices)) != len(indices):
        raise ReconstructionError(f"partial decryptions with duplicate indices: {indices}")
    if len(partials) < public.threshold:
        raise ReconstructionError(
            f"{len(partials)} partial decryptions cannot decrypt: need threshold = "
            f"{public.threshold}"
        )
    if any(not 1 <= index <= public.decryptors for index in indices):
        raise ReconstructionError(f"a partial decryption index is not in 1..{public.decryptors}")
    chosen = list(partials[: public.threshold])
    lengths = {len(item.values) for item in chosen}
    if len(lengths) != 1:
        raise ReconstructionError(f"partial decryptions of different lengths: {sorted(lengths)}")
    return chosen


def combine_partial_decryptions(
    public: ThresholdPublicKey,
    partials: Sequence[PartialDecryption],
    *,
    processes: int | None = 1,
) -> list[int]:
    """Combine ``threshold`` partial decryptions of one ciphertext vector into its plaintexts.

    Uses the first ``public.threshold`` of ``partials`` in the given order. It assumes each was
    checked with :func:`verify_partial_decryption`; wrong ones are detected only when the result
    is not a valid plaintext encoding (which almost every wrong value gives).

    Args:
        public: The committee's public key.
        partials: At least ``threshold`` partial decryptions with distinct indices, all of the
            same ciphertext vector.
        processes: Worker processes for long vectors; None uses every core, 1 stays serial.

    Returns:
        One plaintext in [0, n) per ciphertext.

    Raises:
        ReconstructionError: Fewer than ``threshold`` partial decryptions, duplicate or unknown
            indices, different lengths, or values that do not combine to a plaintext.
        ParameterError: ``processes`` is below 1.
        TypeError: An argument has the wrong type.
    """
    partials = list(partials)  # an iterator is read once, here
    if not isinstance(public, ThresholdPublicKey):
        raise TypeError(f"public must be ThresholdPublicKey, not {type(public).__name__}")
    chosen = _choose_partials(public, partials)
    n = public.n
    exponents = _lagrange_exponents([item.index for item in chosen], public.delta)
    inverse = int(gmpy2.invert(4 * public.delta * public.delta, n))
    columns = list(zip(*(item.values for item in chosen), strict=True))
    workers = _worker_count(processes, len(columns))
    chunks = _split_evenly(columns, workers * _CHUNKS_PER_PROCESS if workers > 1 else 1)
    return _map_chunks(partial(_combine_chunk, n, exponents, inverse), chunks, workers)


# --- byte parsing ----------------------------------------------------------------------------


class _Reader:
    """Reads big-endian fields from bytes; any shortfall is a ParameterError naming the field."""

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        self._view = memoryview(data)
        self._offset = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._view) - self._offset

    def take(self, size: int, field_name: str) -> bytes:
        if size > self.remaining:
            raise ParameterError(f"{self._what}: truncated in {field_name}")
        chunk = bytes(self._view[self._offset : self._offset + size])
        self._offset += size
        return chunk

    def integer(self, size: int, field_name: str) -> int:
        return int.from_bytes(self.take(size, field_name), "big")

    def expect_header(self, magic: bytes) -> None:
        if self.take(len(magic), "the magic bytes") != magic:
            raise ParameterError(f"{self._what}: wrong magic bytes (not a {self._what})")
        version = self.integer(1, "the version")
        if version != _FORMAT_VERSION:
            raise ParameterError(
                f"{self._what}: format version {version} is not supported (only {_FORMAT_VERSION})"
            )

    def finish(self) -> None:
        if self.remaining:
            raise ParameterError(f"{self._what}: {self.remaining} unexpected trailing bytes")
