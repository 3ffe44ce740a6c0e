"""Paillier aggregation as sans-I/O roles: clients, a server, and decryptors apart from it.

The decryptors hold the secret: either one key holder with the whole key
(:class:`KeyHolder`, a committee of one) or a committee of m :class:`Decryptor` members of which
any t decrypt together and fewer learn nothing (threshold Paillier with a trusted dealer,
:func:`secagg.hazmat.paillier.generate_threshold_keypair`). Clients pin the decryptors' public
key (never the server's word for it), pack their quantized input into slots with headroom,
encrypt it and sign the upload for this round and key; the server multiplies the uploads and
never holds the secret. The rules that protect one client's input from a malicious server:

- a client refuses a setup whose public key differs from the one it pinned, so the server
  cannot substitute a key it can decrypt with;
- a decryptor decrypts one aggregate per round, for a round newer than any it decrypted, and
  only as the product, recomputed by itself, of at least ``min_contributors`` distinct
  clients' uploads signed for that round and key (:mod:`protocols.paillier.trust`); so the
  server can neither invent rounds, nor difference two subsets, nor pass off one ciphertext as
  a sum;
- a committee member's partial decryption carries a proof; the server names and excludes a
  member whose proof fails (:mod:`protocols.paillier.combine`).

Modules: ``params`` (round configuration, result), ``client``, ``server``, ``trust`` (signing
and the decryptors' admission rules), ``key_holder``, ``decryptor``, ``combine`` (verifying and
combining partial decryptions), ``simulate`` (the in-memory driver).
"""

from protocols.paillier.client import PaillierClient
from protocols.paillier.decryptor import Decryptor
from protocols.paillier.key_holder import KeyHolder
from protocols.paillier.params import PaillierParams, PaillierResult
from protocols.paillier.server import PaillierServer
from protocols.paillier.simulate import DecryptionSide, DecryptorSettings, PaillierSimulator
from protocols.paillier.trust import PaillierPublic, key_fingerprint

__all__ = [
    "DecryptionSide",
    "Decryptor",
    "DecryptorSettings",
    "KeyHolder",
    "PaillierClient",
    "PaillierParams",
    "PaillierPublic",
    "PaillierResult",
    "PaillierServer",
    "PaillierSimulator",
    "key_fingerprint",
]
