"""Paillier aggregation as three sans-I/O roles: clients, a server, and a separate key holder.

The key holder generates the key pair and publishes the public key; clients pin that key,
pack their quantized input into as few plaintexts as the slot headroom allows and encrypt it;
the server multiplies the ciphertext vectors that arrive before its deadline and never holds
the secret key; the key holder decrypts only the aggregate, checks every slot's range, and
returns the sums. Two rules protect individual inputs from a curious server:

- a client refuses a setup whose public key differs from the one it pinned (the server cannot
  substitute a key it can decrypt with);
- the key holder decrypts at most one aggregate per (session, round), and only one that claims
  at least ``min_contributors`` inputs, so a server cannot difference two subsets of a round.
  (The contributor count itself is the server's word; a deployment that fears a server forging
  it needs client signatures over their ciphertexts, which are out of scope here.)
"""

from protocols.paillier.client import PaillierClient
from protocols.paillier.key_holder import KeyHolder
from protocols.paillier.params import PaillierParams, PaillierResult
from protocols.paillier.server import PaillierServer
from protocols.paillier.simulate import PaillierSimulator

__all__ = [
    "KeyHolder",
    "PaillierClient",
    "PaillierParams",
    "PaillierResult",
    "PaillierServer",
    "PaillierSimulator",
]
