"""In-memory driver of one Paillier round: setup, signed uploads, aggregate, decryption.

The decryption side is either the single :class:`~protocols.paillier.KeyHolder` or a committee
of :class:`~protocols.paillier.Decryptor` members, each a party of its own: the server sends each
the signed uploads, each answers (or drops out, ``decryptor_dropouts``), and the server combines
any ``threshold`` verified partial decryptions. Like the masking simulator, an *interceptor* may
drop, alter or inject any message, which is how the malicious-server and lying-decryptor tests
are written; all decisions stay in the state machines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from protocols._transitions import ServerPhase
from protocols.identity import TrustedRoster
from protocols.messages import KEY_HOLDER_ID, Message
from protocols.paillier.client import PaillierClient
from protocols.paillier.decryptor import Decryptor
from protocols.paillier.key_holder import KeyHolder
from protocols.paillier.params import PaillierParams
from protocols.paillier.server import PaillierServer
from protocols.paillier.trust import PaillierPublic
from protocols.simulate import (
    ROUND_NAMES,
    UNMASKING_ROUND,
    Driver,
    Interceptor,
    SimulationReport,
)
from secagg.errors import ParameterError, SecAggError
from secagg.hazmat.paillier import PaillierKeypair, ThresholdKeyset
from secagg.hazmat.sign import IdentityKey
from secagg.paillier_keys import RandomnessMode

__all__ = ["DecryptionSide", "DecryptorSettings", "PaillierSimulator"]

#: Who decrypts: the single key holder, or the members of a committee.
DecryptionSide: TypeAlias = KeyHolder | Sequence[Decryptor]


@dataclass(frozen=True, slots=True)
class DecryptorSettings:
    """What every decryptor of a session is configured with, apart from its key material."""

    session_id: bytes
    roster: TrustedRoster
    value_bits: int
    max_clients: int
    min_contributors: int = 2
    processes: int | None = 1

    def build(self, keys: PaillierKeypair | ThresholdKeyset) -> DecryptionSide:
        """The key holder of a key pair, or one Decryptor per share of a committee's key set."""
        common: dict[str, Any] = {
            "session_id": self.session_id,
            "roster": self.roster,
            "value_bits": self.value_bits,
            "max_clients": self.max_clients,
            "min_contributors": self.min_contributors,
            "processes": self.processes,
        }
        if isinstance(keys, ThresholdKeyset):
            return [Decryptor(share, **common) for share in keys.shares]
        return KeyHolder(keys, **common)


class PaillierSimulator(Driver):
    """Runs one Paillier round in memory.

    Args:
        params: the round.
        inputs: client id -> its quantized vector.
        decryption: the :class:`KeyHolder`, or every :class:`Decryptor` of the committee.
        identities: client id -> identity key (the trusted setup's); ``roster`` lists them.
        roster: the clients' identity keys, as the server and the decryptors trust them.
        mode, processes: encryption randomness and worker processes.
        dropouts: client id -> protocol round it drops at (0-2: never uploads; 3-4: counted).
        decryptor_dropouts: committee indices that never answer.
        interceptor, through_wire, on_step: as for :class:`~protocols.simulate.Simulator`.

    Times land under ``masked_input`` (clients and server) and ``unmasking`` (the server's
    check and combination); the decryptors' are in ``key_holder_seconds`` (summed).
    """

    def __init__(
        self,
        params: PaillierParams,
        inputs: Mapping[int, npt.NDArray[np.unsignedinteger]],
        decryption: DecryptionSide,
        *,
        identities: Mapping[int, IdentityKey],
        roster: TrustedRoster,
        mode: RandomnessMode = RandomnessMode.FRESH,
        processes: int | None = 1,
        dropouts: Mapping[int, int] | None = None,
        decryptor_dropouts: Collection[int] = (),
        interceptor: Interceptor | None = None,
        through_wire: bool = False,
        on_step: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(params.clients, inputs, dropouts, interceptor, through_wire, on_step)
        self.params = params
        self.parties = _decryption_parties(decryption)
        self.committee = not isinstance(decryption, KeyHolder)
        public = _public_of(decryption)
        missing = sorted(set(params.clients) - set(identities))
        if missing:
            raise ParameterError(f"no identity key for clients {missing}")
        self.decryptor_dropouts = frozenset(decryptor_dropouts)
        self.server = PaillierServer(params, public, roster, processes=processes)
        djn = decryption.djn if isinstance(decryption, KeyHolder) else None
        self.clients = {
            u: PaillierClient(
                u,
                session_id=params.session_id,
                round_id=params.round_id,
                public_key=public,
                identity=identities[u],
                mode=mode,
                djn=djn if mode is RandomnessMode.DJN else None,
                processes=processes,
            )
            for u in params.clients
        }

    def run(self) -> SimulationReport:
        """Play the round and return the report (``result`` is a PaillierResult here)."""
        report = self.report
        started = time.perf_counter()
        upload = ROUND_NAMES.index("masked_input")
        outbox = self._timed_server(upload, self.server.start)
        for message in [m for msg in outbox for m in self._deliver_to_client(upload, msg)]:
            self._deliver_to_server(upload, message)
        try:
            requests = self._timed_server(upload, self.server.close_phase)
            for message in requests:
                self._decrypt(message)
            if self.committee:
                self._timed_server(UNMASKING_ROUND, self.server.close_phase)
            elif (
                self.server.phase is not ServerPhase.DONE and KEY_HOLDER_ID in report.client_errors
            ):
                # The key holder refused: its reason, not "no result yet", ends the round.
                raise report.client_errors[KEY_HOLDER_ID]
            report.result = self.server.result
        except SecAggError as error:
            report.error = error
        report.misbehaved = dict(self.server.misbehaved)
        report.dropped_at = {
            u: r for u, r in self.dropouts.items() if r <= upload or u not in self.inputs
        }
        report.wall_seconds = time.perf_counter() - started
        return report

    def _decrypt(self, message: Message) -> None:
        """Hand one request to its decryptor (unless it dropped) and its reply to the server."""
        report = self.report
        for intercepted in self._intercept(UNMASKING_ROUND, message):
            party = self.parties.get(intercepted.recipient)
            if party is None or getattr(party, "index", None) in self.decryptor_dropouts:
                continue
            delivered, size = self._transmit(intercepted)
            report.server_bytes_sent += size
            report.key_holder_bytes_received += size
            before = time.perf_counter()
            try:
                replies = party.receive(delivered)
            except SecAggError as error:
                report.client_errors[intercepted.recipient] = error
                continue
            finally:
                report.key_holder_seconds += time.perf_counter() - before
                if self.on_step is not None:
                    self.on_step()
            for reply in replies:
                self._deliver_to_server(UNMASKING_ROUND, reply)


def _decryption_parties(decryption: DecryptionSide) -> dict[int, KeyHolder | Decryptor]:
    if isinstance(decryption, KeyHolder):
        return {KEY_HOLDER_ID: decryption}
    members = list(decryption)
    if not members or not all(isinstance(member, Decryptor) for member in members):
        raise ParameterError("decryption must be a KeyHolder or a sequence of Decryptors")
    publics = {member.public.fingerprint() for member in members}
    if len(publics) != 1:
        raise ParameterError("the decryptors hold shares of different keys")
    return {member.party_id: member for member in members}


def _public_of(decryption: DecryptionSide) -> PaillierPublic:
    if isinstance(decryption, KeyHolder):
        return decryption.public_key
    return decryption[0].public
