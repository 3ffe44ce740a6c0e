"""One member of a Paillier decryption committee: a partial decryption, with its proof, per round.

A threshold key (:func:`secagg.hazmat.paillier.generate_threshold_keypair`) splits the secret
among m decryptors so that any t of them decrypt an aggregate and fewer learn nothing. Each
member admits a request by the same rules as the single key holder
(:class:`~protocols.paillier.trust.DecryptionGuard`), then returns its partial decryption of the
aggregate it recomputed, with a proof bound to the session, the round and its index; the server
checks the proof, so a member that lies is named and excluded, and combines any t valid ones.
"""

from __future__ import annotations

from typing import Final

from protocols.identity import TrustedRoster
from protocols.messages import DecryptionShare, Message, decryptor_id, header
from protocols.paillier.trust import GuardedDecryptor, decryption_context
from secagg.errors import ParameterError
from secagg.hazmat.paillier import (
    DecryptionKeyShare,
    ThresholdPublicKey,
    partial_decrypt,
)

__all__ = ["Decryptor"]


class Decryptor(GuardedDecryptor):
    """A committee member: holds one key share and partially decrypts admitted aggregates.

    Args:
        share: this member's key share (its index is its place in the committee).
        session_id: the session whose aggregates it will decrypt.
        roster: the clients' identity keys; every upload must be signed under one of them.
        value_bits, max_clients: the packing every client uses (same as the server's).
        min_contributors: the fewest distinct signed uploads an aggregate must hold (>= 2).
        processes: worker processes for the partial decryption (None: every core; 1: serial).
        last_round: the last round decrypted in this session, for a restarted member.

    Raises:
        ParameterError: not a key share, or a committee without a majority threshold.
    """

    def __init__(
        self,
        share: DecryptionKeyShare,
        *,
        session_id: bytes,
        roster: TrustedRoster,
        value_bits: int,
        max_clients: int,
        min_contributors: int = 2,
        processes: int | None = 1,
        last_round: int | None = None,
    ) -> None:
        if not isinstance(share, DecryptionKeyShare):
            raise ParameterError(f"share must be a DecryptionKeyShare, not {type(share).__name__}")
        public = share.public
        if 2 * public.threshold <= public.decryptors:
            raise ParameterError(
                f"a {public.threshold}-of-{public.decryptors} committee is refused: with at most "
                "half the members, two disjoint groups could decrypt two subsets of one round"
            )
        self._share = share
        self.index: Final = share.index
        super().__init__(
            public,
            decryptor_id(share.index),
            f"decryptor {share.index}",
            session_id=session_id,
            roster=roster,
            value_bits=value_bits,
            max_clients=max_clients,
            min_contributors=min_contributors,
            processes=processes,
            last_round=last_round,
        )

    @property
    def public(self) -> ThresholdPublicKey:
        """The committee's public key (clients encrypt under its ``public_key``)."""
        return self._share.public

    def _receive(self, message: Message) -> list[Message]:
        admitted = self.guard.admit(message)
        self.guard.consume(admitted)
        context = decryption_context(self.session_id, admitted.round_id, self.index)
        partial = partial_decrypt(
            self._share, admitted.ciphertexts, context=context, processes=self.processes
        )
        return [
            DecryptionShare(
                **header(self.session_id, admitted.round_id, self.party_id, message.sender),
                index=self.index,
                partial=partial.to_bytes(self.public),
            )
        ]
