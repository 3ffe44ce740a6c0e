"""The server's side of threshold decryption: check each partial decryption, combine any t.

Why this module exists: with a committee, no one party decrypts; the server receives one
:class:`~protocols.messages.DecryptionShare` per member and must not trust any of them. The
:class:`PartialCollector` parses each, verifies its proof against the aggregate the server
computed itself (bound to the session, the round and the member's index), excludes and names a
member whose proof fails, and combines the first ``threshold`` valid ones. A wrong partial
therefore costs its sender its place, never the round, while ``threshold`` honest members
remain.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocols.messages import DecryptionShare, decryptor_id
from protocols.paillier.trust import decryption_context
from secagg.errors import (
    DecryptorMisbehaviourError,
    InsufficientSurvivorsError,
    InvalidPartialDecryptionError,
    ParameterError,
)
from secagg.hazmat.paillier import (
    PartialDecryption,
    ThresholdPublicKey,
    combine_partial_decryptions,
    verify_partial_decryption,
)

__all__ = ["PartialCollector"]


class PartialCollector:
    """Collects verified partial decryptions of one aggregate.

    Args:
        public: the committee's public key.
        session_id, round_id: the round the partials must be bound to.
        ciphertexts: the aggregate the server computed (what every member must have decrypted).
        processes: worker processes for the combination.
    """

    def __init__(
        self,
        public: ThresholdPublicKey,
        *,
        session_id: bytes,
        round_id: int,
        ciphertexts: Sequence[int],
        processes: int | None = 1,
    ) -> None:
        self.public = public
        self.session_id = session_id
        self.round_id = round_id
        self.ciphertexts = list(ciphertexts)
        self.processes = processes
        self.valid: dict[int, PartialDecryption] = {}
        #: Committee index -> why its partial decryption was refused.
        self.excluded: dict[int, str] = {}

    def add(self, message: DecryptionShare) -> None:
        """Verify one member's partial decryption and keep it.

        Raises:
            DecryptorMisbehaviourError: the sender is not the member it claims to be, sent
                twice, or its partial decryption does not parse or does not verify (the member
                is excluded from this round and named).
        """
        index = message.index
        if message.sender != decryptor_id(index) or index > self.public.decryptors:
            raise DecryptorMisbehaviourError(
                f"party {message.sender} is not committee member {index}", culprit=index
            )
        if index in self.valid or index in self.excluded:
            raise DecryptorMisbehaviourError(
                f"decryptor {index} sent a second partial decryption", culprit=index
            )
        try:
            partial = PartialDecryption.from_bytes(self.public, message.partial)
            if partial.index != index:
                raise InvalidPartialDecryptionError("index mismatch", decryptor=index)
            context = decryption_context(self.session_id, self.round_id, index)
            verify_partial_decryption(self.public, self.ciphertexts, partial, context=context)
        except (InvalidPartialDecryptionError, ParameterError):
            reason = f"decryptor {index}'s partial decryption failed its proof"
            self.excluded[index] = reason
            raise DecryptorMisbehaviourError(reason, culprit=index) from None
        self.valid[index] = partial

    def combine(self) -> tuple[list[int], tuple[int, ...]]:
        """The plaintexts from the first ``threshold`` valid partials, and whose they were.

        Raises:
            InsufficientSurvivorsError: fewer than ``threshold`` valid partial decryptions.
        """
        needed = self.public.threshold
        if len(self.valid) < needed:
            excluded = ", ".join(f"{i} ({why})" for i, why in sorted(self.excluded.items()))
            raise InsufficientSurvivorsError(
                f"{len(self.valid)} of {self.public.decryptors} decryptors sent a valid partial "
                f"decryption; {needed} are needed"
                + (f" (excluded: {excluded})" if excluded else "")
            )
        used = sorted(self.valid)[:needed]
        partials = [self.valid[i] for i in used]
        plaintexts = combine_partial_decryptions(self.public, partials, processes=self.processes)
        return plaintexts, tuple(used)
