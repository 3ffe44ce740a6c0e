"""In-memory driver of one Paillier round (setup, upload, aggregate, decryption)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from protocols.paillier.client import PaillierClient
from protocols.paillier.key_holder import KeyHolder
from protocols.paillier.params import PaillierParams
from protocols.paillier.server import PaillierServer
from protocols.simulate import (
    ROUND_NAMES,
    UNMASKING_ROUND,
    Driver,
    Interceptor,
    SimulationReport,
)
from secagg.errors import SecAggError
from secagg.paillier_keys import RandomnessMode

__all__ = ["PaillierSimulator"]


class PaillierSimulator(Driver):
    """Runs one Paillier round in memory: setup, upload, aggregate, decryption by the key holder.

    Dropout rounds mean what they mean for masking: a client dropping at round 0, 1 or 2 never
    uploads; at round 3 or 4 it has uploaded and counts. Times land under ``masked_input``
    (clients and server) and ``unmasking`` (the server's handling of the decrypted sums); the
    key holder's are in ``key_holder_seconds``.
    """

    def __init__(
        self,
        params: PaillierParams,
        inputs: Mapping[int, npt.NDArray[np.unsignedinteger]],
        key_holder: KeyHolder,
        *,
        mode: RandomnessMode = RandomnessMode.FRESH,
        processes: int | None = 1,
        dropouts: Mapping[int, int] | None = None,
        interceptor: Interceptor | None = None,
        through_wire: bool = False,
        on_step: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(params.clients, inputs, dropouts, interceptor, through_wire, on_step)
        self.params = params
        self.key_holder = key_holder
        self.server = PaillierServer(params, key_holder.public_key)
        self.clients = {
            u: PaillierClient(
                u,
                session_id=params.session_id,
                round_id=params.round_id,
                public_key=key_holder.public_key,
                mode=mode,
                djn=key_holder.djn if mode is RandomnessMode.DJN else None,
                processes=processes,
            )
            for u in params.clients
        }

    def run(self) -> SimulationReport:
        """Play the round and return the report (``result`` is a PaillierResult here)."""
        report = self.report
        started = time.perf_counter()
        upload = ROUND_NAMES.index("masked_input")
        decrypt = UNMASKING_ROUND
        outbox = self._timed_server(upload, self.server.start)
        for message in [m for msg in outbox for m in self._deliver_to_client(upload, msg)]:
            self._deliver_to_server(upload, message)
        try:
            to_key_holder = self._timed_server(upload, self.server.close_phase)
            for message in to_key_holder:
                for intercepted in self._intercept(decrypt, message):
                    delivered, size = self._transmit(intercepted)
                    report.server_bytes_sent += size
                    report.key_holder_bytes_received += size
                    before = time.perf_counter()
                    replies = self.key_holder.receive(delivered)
                    report.key_holder_seconds += time.perf_counter() - before
                    for reply in replies:
                        self._deliver_to_server(decrypt, reply)
            report.result = self.server.result
        except SecAggError as error:
            report.error = error
        report.dropped_at = {
            u: r for u, r in self.dropouts.items() if r <= upload or u not in self.inputs
        }
        report.wall_seconds = time.perf_counter() - started
        return report
