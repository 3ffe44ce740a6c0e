"""What an active-model client checks for itself instead of taking the server's word.

Against a server that may deviate from the protocol, a client trusts only what it got out of band
(its :class:`~protocols.identity.TrustedRoster` and its own identity key) and what it can
compute from that. :class:`ActiveChecks` holds those and makes every active-model decision of
a masking client, in one place:

- the neighbourhood the server names must be the public graph's, of the degree the roster pins
  (the Harary ring order derives from the roster's seed, the session and the round, so the
  server cannot pick anyone's neighbours, nor give clients different neighbourhood sizes), and
  the threshold must reach the client's own minimum, :func:`protocols.rounds.minimum_threshold`
  for that neighbourhood, and the roster's pinned threshold;
- every peer's roster entry must carry that peer's identity signature over its keys and seed
  commitment, and its keys must be valid points;
- the survivor set of the consistency round may name only roster members (so that a server
  cannot pad it up to a client's survivor floor with made-up ids); it is signed with the
  identity key, and shares are released only when, for every owner whose share is released, at
  least t members of that owner's neighbourhood signed the very same set (Bonawitz et al. 2017,
  round 3; with t > (k + c) / 2 no two sets can both gather t signatures in one neighbourhood).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from protocols.graph import NeighbourGraph, harary_graph
from protocols.identity import TrustedRoster
from protocols.masking.keys import (
    advertisement_message,
    check_advertisement,
    consistency_message,
)
from protocols.messages import RosterEntry, RoundSetup, SignatureEntry
from protocols.rounds import DEFAULT_CORRUPT_FRACTION, minimum_threshold
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidSignatureError,
    ParameterError,
    ServerMisbehaviourError,
)
from secagg.hazmat.sign import IdentityKey, sign

__all__ = ["ActiveChecks"]


class ActiveChecks:
    """One active-model client's trust anchor and the checks it runs with it.

    Args:
        client_id: the client's id; it must be on the roster under ``identity``'s public key.
        identity: the client's long-term Ed25519 key.
        roster: the trusted roster, from the trusted setup.
        corrupt_fraction: the declared bound on colluding clients (a fraction of the roster).
    """

    def __init__(
        self,
        client_id: int,
        identity: IdentityKey,
        roster: TrustedRoster,
        corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
    ) -> None:
        if not isinstance(roster, TrustedRoster) or not isinstance(identity, IdentityKey):
            raise ParameterError("an active-model client needs an IdentityKey and TrustedRoster")
        if roster.keys.get(client_id) != identity.public_bytes:
            raise ParameterError(
                f"client {client_id} is not on the trusted roster under this identity key"
            )
        if not 0 <= corrupt_fraction < 1:
            raise ParameterError(f"corrupt_fraction must be in [0, 1), got {corrupt_fraction}")
        self.client_id: Final = client_id
        self.identity: Final = identity
        self.roster: Final = roster
        self.corrupt_fraction: Final = corrupt_fraction
        self.graph: NeighbourGraph | None = None

    # -- round 0 --------------------------------------------------------------------------------

    def check_setup(self, setup: RoundSetup, session_id: bytes, round_id: int) -> int:
        """Check the server's neighbourhood and threshold; return the client's own minimum.

        Raises:
            ServerMisbehaviourError: the neighbours are not the public graph's, or the
                threshold is below the minimum for this neighbourhood.
        """
        ids = self.roster.ids
        degree = len(setup.neighbours)
        if degree != self.roster.round_degree:
            # Every client must get the same k (and so the same least t): else clients with
            # different thresholds could accept different survivor sets.
            raise ServerMisbehaviourError(
                f"the setup names {degree} neighbours; the trusted roster pins "
                f"{self.roster.round_degree}"
            )
        graph = self.public_graph(degree, session_id, round_id)
        if graph.neighbours[self.client_id] != frozenset(setup.neighbours):
            raise ServerMisbehaviourError(
                "the setup's neighbours are not this client's neighbours in the public graph"
            )
        holders = degree + 1
        minimum = minimum_threshold("active", holders, len(ids), self.corrupt_fraction)
        minimum = max(minimum, self.roster.threshold or 0)
        if setup.threshold < minimum:
            raise ServerMisbehaviourError(
                f"threshold {setup.threshold} is below {minimum}, the least this client accepts "
                f"for {holders} share holders with up to {self.corrupt_fraction:.0%} of the "
                "clients colluding with the server"
            )
        self.graph = graph
        return minimum

    def public_graph(self, degree: int, session_id: bytes, round_id: int) -> NeighbourGraph:
        """The round's public graph of this degree over the roster (complete if k >= n - 1)."""
        seed = self.roster.order_seed(session_id, round_id)
        return harary_graph(self.roster.ids, degree, seed=seed)

    def sign_advertisement(
        self, session_id: bytes, round_id: int, mask: bytes, share: bytes, commitment: bytes
    ) -> bytes:
        """The identity signature over this client's keys and seed commitment."""
        message = advertisement_message(
            session_id, round_id, self.client_id, mask, share, commitment
        )
        return sign(self.identity, message)

    # -- round 1 --------------------------------------------------------------------------------

    def check_roster(
        self, entries: Iterable[RosterEntry], session_id: bytes, round_id: int
    ) -> None:
        """Every peer entry is signed by that peer's identity key (its points are checked when
        the client agrees keys with them: X25519 refuses a low-order point).

        Raises:
            ServerMisbehaviourError: naming the first peer whose entry fails.
        """
        for entry in entries:
            if entry.client_id == self.client_id:
                continue
            try:
                check_advertisement(self.roster, session_id, round_id, entry.client_id, entry)
            except InvalidSignatureError:
                raise ServerMisbehaviourError(
                    f"the roster entry of client {entry.client_id} is not signed by its "
                    "identity key: its keys were substituted"
                ) from None

    # -- round 3 --------------------------------------------------------------------------------

    def check_survivors_known(self, survivors: Iterable[int]) -> None:
        """The consistency round's survivor set names roster members only.

        Raises:
            ServerMisbehaviourError: naming the ids that are not on the roster.
        """
        unknown = set(survivors) - set(self.roster.ids)
        if unknown:
            raise ServerMisbehaviourError(
                f"the survivor set names {sorted(unknown)}, who are not on the trusted roster"
            )

    def sign_survivors(self, session_id: bytes, round_id: int, survivors: Iterable[int]) -> bytes:
        """The consistency signature over the survivor set this client was shown."""
        return sign(
            self.identity, consistency_message(session_id, round_id, self.client_id, survivors)
        )

    def check_consistency(
        self,
        signatures: Iterable[SignatureEntry],
        survivors: Iterable[int],
        owners: Iterable[int],
        threshold: int,
        session_id: bytes,
        round_id: int,
    ) -> None:
        """At least ``threshold`` members of each owner's neighbourhood signed ``survivors``.

        Invalid signatures are skipped (a bad one proves nothing, and counts for nothing).

        Raises:
            InsufficientSurvivorsError: some owner's neighbourhood has fewer valid signatures.
        """
        assert self.graph is not None  # set by check_setup in round 0
        ids = tuple(survivors)
        needed = {o: self._closed(o) for o in owners}
        counts = dict.fromkeys(needed, 0)
        covering = [
            (e, [o for o, members in needed.items() if e.signer in members]) for e in signatures
        ]
        # The signers that count for the most owners first: fewer verifications to reach t.
        covering.sort(key=lambda pair: (-len(pair[1]), pair[0].signer))
        own = self.sign_survivors(session_id, round_id, ids)
        for entry, relevant in covering:
            if not relevant or all(count >= threshold for count in counts.values()):
                break
            if entry.signer == self.client_id:
                if entry.signature != own:  # Ed25519 is deterministic: ours is known
                    continue
            else:
                message = consistency_message(session_id, round_id, entry.signer, ids)
                try:
                    self.roster.check_signature(entry.signer, message, entry.signature)
                except InvalidSignatureError:
                    continue
            for owner in relevant:
                counts[owner] += 1
        short = sorted(o for o, count in counts.items() if count < threshold)
        if short:
            raise InsufficientSurvivorsError(
                f"fewer than {threshold} valid consistency signatures over this survivor set "
                f"from the neighbourhoods of clients {short}: the server may be showing "
                "clients different sets, so no share is released"
            )

    def _closed(self, owner: int) -> frozenset[int]:
        assert self.graph is not None
        return self.graph.neighbours[owner] | {owner}
