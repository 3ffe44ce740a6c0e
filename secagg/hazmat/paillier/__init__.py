"""Packed, gmpy2-accelerated Paillier encryption on phe's key types.

Why this package exists: phe (python-paillier) encrypts one number per ciphertext. With a
2048-bit key every 32-bit model value then costs a 512-byte ciphertext and one r^n mod n^2
exponentiation (about 10 ms), while a federated recommender uploads 10^5 to 10^7 values per
client per round. This package keeps phe's key classes, so keys and every single ciphertext stay
interchangeable with phe, and adds what makes Paillier usable for vectors:

1. **Packing** (:class:`~secagg.packing.PackingScheme`, in :mod:`secagg.packing` because it is
   an encoding, not a hazardous primitive; re-exported here for compatibility): many quantized
   values share one plaintext, in slots with headroom, range-checked after decryption.
2. **Cheap randomness** (:mod:`~secagg.hazmat.paillier.randomness`): fresh r^n (textbook
   Paillier) or Damgård-Jurik-Nielsen short-exponent r^n (faster, extra assumption; see
   :class:`~secagg.hazmat.paillier.keys.DJNParameters`), optionally precomputed in a
   :class:`RandomnessPool`.
3. **Speed**: gmpy2 arithmetic everywhere, CRT decryption
   (:mod:`~secagg.hazmat.paillier.cipher`), and a process pool for long vectors.

Modules: :mod:`~secagg.hazmat.paillier.keys` (key pairs, DJN parameters, key-size policy),
:mod:`~secagg.hazmat.paillier.randomness` (r^n factors), :mod:`~secagg.hazmat.paillier.cipher`
(encrypt, sum, decrypt, byte codec), :mod:`~secagg.hazmat.paillier.threshold` (threshold
decryption by t of m decryptors with verifiable partial decryptions, over the same ciphertexts)
and the private process-pool helpers.

Rules kept throughout: g = n + 1 (phe's choice); randomness comes only from :mod:`secrets`; a
ciphertext is a plain ``int`` in Z*_{n^2}; everything received from outside is checked before
use. Callers that only need keys should use the safe recipe
:func:`secagg.paillier_keys.generate_paillier_keypair`.
"""

import importlib
from typing import Final

from secagg.hazmat.paillier.cipher import (
    add_ciphertext_vectors,
    check_ciphertext,
    ciphertext_byte_length,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    decrypt_vector,
    encrypt_vector,
    sum_ciphertext_vectors,
)
from secagg.hazmat.paillier.keys import (
    SUPPORTED_KEY_BITS,
    DJNParameters,
    PaillierKeypair,
    generate_keypair,
)

# Private seam kept here for the tests under tests/protocols that make small, fast keys.
from secagg.hazmat.paillier.keys import (
    _generate_keypair_unchecked_size as _generate_keypair_unchecked_size,
)
from secagg.hazmat.paillier.randomness import RandomnessMode, RandomnessPool
from secagg.hazmat.paillier.threshold import (
    SUPPORTED_COMMITTEE_SIZES,
    DecryptionKeyShare,
    PartialDecryption,
    ThresholdKeyset,
    ThresholdPublicKey,
    combine_partial_decryptions,
    generate_threshold_keypair,
    partial_decrypt,
    verify_partial_decryption,
)

# Private seam, like the one above, for protocol tests that deal small threshold keys fast.
from secagg.hazmat.paillier.threshold import (
    _generate_threshold_keypair_unchecked_size as _generate_threshold_keypair_unchecked_size,
)

__all__ = [
    "SUPPORTED_COMMITTEE_SIZES",
    "SUPPORTED_KEY_BITS",
    "DJNParameters",
    "DecryptionKeyShare",
    "PaillierKeypair",
    "PartialDecryption",
    "RandomnessMode",
    "RandomnessPool",
    "ThresholdKeyset",
    "ThresholdPublicKey",
    "add_ciphertext_vectors",
    "check_ciphertext",
    "ciphertext_byte_length",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "combine_partial_decryptions",
    "decrypt_vector",
    "encrypt_vector",
    "generate_keypair",
    "generate_threshold_keypair",
    "partial_decrypt",
    "sum_ciphertext_vectors",
    "verify_partial_decryption",
]

#: Names that moved to :mod:`secagg.packing` (the slot layout is not hazardous material); the old
#: import path keeps working, resolved on first use so that hazmat never imports upward.
_MOVED_TO_PACKING: Final = ("PackingScheme", "SlotLayout")


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_PACKING:
        return getattr(importlib.import_module("secagg.packing"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
