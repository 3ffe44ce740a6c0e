"""The safe way to make Paillier keys: one call, the key-size policy and the randomness mode.

Why this module exists: :mod:`secagg.hazmat.paillier` holds the dangerous parts (fixed-prime and
small-key seams, raw encryption, randomness factors that must never be reused), and code outside
``secagg`` (demos, applications) should not need to reach into it just to make a key pair. This
recipe is that entry point. It always draws fresh primes with :mod:`secrets`, only at the
supported sizes (:data:`~secagg.hazmat.paillier.keys.SUPPORTED_KEY_BITS`, 2048 or 3072 bits),
and names the randomness mode the keys will be used with instead of a bare flag, so that the
Damgård-Jurik-Nielsen parameters exist exactly when the caller asked for DJN randomness.

What it does not do: it offers no way to choose the primes or to make keys below 2048 bits
(those seams stay private in the hazmat module, for tests), and it does not encrypt. Everything
after key generation goes through :mod:`protocols.paillier`, whose key holder keeps the secret
key away from the server.
"""

from __future__ import annotations

from secagg.hazmat.paillier.keys import PaillierKeypair, generate_keypair
from secagg.hazmat.paillier.randomness import RandomnessMode

__all__ = ["PaillierKeypair", "RandomnessMode", "generate_paillier_keypair"]


def generate_paillier_keypair(
    bits: int = 2048, *, mode: RandomnessMode = RandomnessMode.FRESH
) -> PaillierKeypair:
    """Generate a Paillier key pair for use with the given randomness mode.

    A thin wrapper of :func:`secagg.hazmat.paillier.generate_keypair`: the primes satisfy the
    conditions of both modes (p ≡ q ≡ 3 (mod 4), gcd(p - 1, q - 1) = 2, |p - q| large), and the
    public DJN parameters are drawn only for :attr:`RandomnessMode.DJN`.

    Args:
        bits: Bit length of n; 2048 (default) or 3072.
        mode: :attr:`RandomnessMode.FRESH` (default: textbook Paillier, standard assumption
            only) or :attr:`RandomnessMode.DJN` (much faster encryption, extra assumption; see
            :class:`secagg.hazmat.paillier.DJNParameters`).

    Returns:
        ``PaillierKeypair(public_key, private_key, djn)`` with phe key objects; ``djn`` holds
        the key's DJN parameters for mode DJN and is None for mode FRESH.

    Raises:
        ParameterError: ``bits`` is not a supported key size.
        TypeError: ``bits`` is not an int or ``mode`` is not a :class:`RandomnessMode`.
    """
    if not isinstance(mode, RandomnessMode):
        raise TypeError(f"mode must be RandomnessMode, not {type(mode).__name__}")
    return generate_keypair(bits, djn=mode is RandomnessMode.DJN)
