"""SecAgg / SecAgg+ as one pair of sans-I/O state machines, parametrised by the neighbour graph.

Bonawitz et al. 2017 (Fig. 4) with the sparse graphs of Bell et al. 2020. Rounds:

0. AdvertiseKeys: the server sends each client a :class:`RoundSetup`; each client answers with two
   fresh X25519 public keys (``mask``: s_u, ``share``: c_u).
1. ShareKeys: the server relays a :class:`KeyRoster` of the live neighbourhood; the client draws a
   self-mask seed b_u, Shamir-shares b_u and its mask private key s_u among the roster, and seals
   each neighbour's pair of shares with AES-GCM under a key agreed from c_u.
2. MaskedInputCollection: the server forwards the sealed shares; the client uploads
   y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv) mod 2^k.
3. Unmasking: for each neighbour the client releases the b-share if the server says it survived,
   the s-share if it dropped, and never both (Bonawitz et al. 2017, Section 4, "honest users never
   reveal both"); the server removes the self-masks of survivors and the pairwise masks that the
   dropped clients' partners added.

Neither machine performs I/O, reads a clock or uses a global RNG (randomness comes from the OS via
:mod:`secrets` and :mod:`cryptography`). The driver calls ``receive`` for every message and
``close_phase`` on the server when its round deadline passes; silent clients are then dropped.
"""

from protocols._machine import check_session
from protocols._transitions import ClientPhase, ServerPhase
from protocols.masking.client import MaskingClient
from protocols.masking.params import AggregateResult, MaskingParams
from protocols.masking.server import MaskingServer

__all__ = [
    "AggregateResult",
    "ClientPhase",
    "MaskingClient",
    "MaskingParams",
    "MaskingServer",
    "ServerPhase",
    "check_session",
]
