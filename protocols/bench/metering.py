"""Metering: what each party spends in each protocol round, read off the real code paths.

Why this module exists: the benchmark must time this project's own simulators and key holder,
not a re-implementation of them, and it must attribute every second and every byte to a party
(a client, the server, the Paillier key holder) and to a protocol round. A :class:`Meter`
records wall time (``time.perf_counter``), CPU time (``time.process_time``), bytes (the
project's wire codec) and, in the memory run only, peak memory (:mod:`tracemalloc`). The
metered simulators and key holder feed it from the one seam that sees every party step.

Rules: timed runs never trace memory (tracing slows allocation); what a client sends the server
receives in the same round, and the other way round, so the server's bytes are the clients'
bytes mirrored.
"""

from __future__ import annotations

import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from protocols import wire
from protocols.messages import Message
from protocols.paillier import KeyHolder, PaillierSimulator
from protocols.simulate import (
    ROUND_NAMES,
    UNMASKING_ROUND,
    Driver,
    Simulator,
)

__all__ = [
    "ALL",
    "CLIENT",
    "KEY_HOLDER",
    "METRICS",
    "PARTIES",
    "ROUNDS",
    "SERVER",
    "TOTAL",
    "UPLOAD_ROUND",
    "Cost",
    "Meter",
    "MeteredKeyHolder",
    "MeteredPaillierSimulator",
    "MeteredSimulator",
    "PartyKey",
]

_T = TypeVar("_T")

#: The round in which clients quantize and upload (masked input / encryption).
UPLOAD_ROUND: Final = 2
TOTAL: Final = "total"
ROUNDS: Final = (*ROUND_NAMES, TOTAL)
CLIENT, SERVER, KEY_HOLDER, ALL = "client", "server", "key_holder", "all"
PARTIES: Final = (CLIENT, SERVER, KEY_HOLDER, ALL)
METRICS: Final = ("wall_s", "cpu_s", "bytes_sent", "bytes_received")

#: A client id, or the name of another party (:data:`SERVER`, :data:`KEY_HOLDER`).
PartyKey = int | str


@dataclass(slots=True)
class Cost:
    """What one party spent in one round of one run (``peak_bytes`` only in the memory run)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    bytes_sent: float = 0.0
    bytes_received: float = 0.0
    peak_bytes: float | None = None

    def scaled(self, factor: float) -> Cost:
        """Time and bytes times ``factor``; memory is left as measured."""
        return Cost(
            self.wall_s * factor,
            self.cpu_s * factor,
            self.bytes_sent * factor,
            self.bytes_received * factor,
            self.peak_bytes,
        )


class Meter:
    """Records wall time, CPU time, bytes and (optionally) memory per party and protocol round.

    Memory follows ``demos/bench_masking.py``: each party's steps add what they allocate and
    keep to the party's ``held`` bytes (outgoing messages included), and its peak is the largest
    ``held + transient peak`` seen during one of its steps.

    Args:
        trace_memory: measure memory with :mod:`tracemalloc` (the caller starts and stops it).
    """

    def __init__(self, *, trace_memory: bool = False) -> None:
        self.trace_memory = trace_memory
        self.costs: dict[tuple[PartyKey, int], Cost] = defaultdict(Cost)
        self._held: dict[PartyKey, int] = defaultdict(int)

    def measure(
        self, party: PartyKey, round_index: int, step: Callable[..., _T], *args: object
    ) -> _T:
        """Run ``step(*args)`` as ``party``'s work in ``round_index`` and record its cost.

        Args:
            party: who does the work.
            round_index: the protocol round (0 to 4) it belongs to.
            step: the work.
            *args: its arguments.

        Returns:
            What ``step`` returns.
        """
        cost = self.costs[(party, round_index)]
        before = 0
        if self.trace_memory:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return step(*args)
        finally:
            cost.cpu_s += time.process_time() - cpu
            cost.wall_s += time.perf_counter() - wall
            if self.trace_memory:
                current, peak = tracemalloc.get_traced_memory()
                held = self._held[party]
                cost.peak_bytes = max(cost.peak_bytes or 0, held + peak - before)
                self._held[party] = held + current - before

    def add_bytes(
        self, party: PartyKey, round_index: int, *, sent: float = 0, received: float = 0
    ) -> None:
        """Count traffic of ``party`` in ``round_index``."""
        cost = self.costs[(party, round_index)]
        cost.bytes_sent += sent
        cost.bytes_received += received

    def add_server_exchange(
        self, party: PartyKey, round_index: int, *, sent: float = 0, received: float = 0
    ) -> None:
        """Count traffic between ``party`` and the server: what one sends, the other receives."""
        self.add_bytes(party, round_index, sent=sent, received=received)
        self.add_bytes(SERVER, round_index, sent=received, received=sent)

    def parties(self) -> set[PartyKey]:
        """Every party that did something."""
        return {party for party, _ in self.costs}


def _message_bytes(items: Iterable[object]) -> int:
    return sum(wire.encoded_size(item) for item in items if isinstance(item, Message))


def _metered_step(
    meter: Meter, party: PartyKey, round_index: int, run: Callable[[], _T], args: Iterable[object]
) -> _T:
    """One party step (``run``) plus its CPU, memory and the bytes it exchanged with the server.

    The simulator delivers every message between a party and the server within the same round,
    so the messages a step receives (``args``) and returns are the server's sent and received.
    """
    out = meter.measure(party, round_index, run)
    received = _message_bytes(args)
    sent = _message_bytes(out) if isinstance(out, list) else 0
    meter.add_server_exchange(party, round_index, sent=sent, received=received)
    return out


class _Metering(Driver):
    """Extends a simulator's two timing hooks so every party step also feeds a :class:`Meter`.

    ``_timed_server`` and ``_timed_client`` are where a simulator steps a party; extending
    them is the one seam that sees every step with its round and its messages. The meter comes
    first; the other arguments go to the simulator (next in the method resolution order).
    """

    _meter: Meter

    def __init__(self, meter: Meter, *args: Any, **kwargs: Any) -> None:
        self._meter = meter
        super().__init__(*args, **kwargs)

    def _timed_server(self, round_index: int, step: Callable[..., _T], *args: object) -> _T:
        timed = super()._timed_server

        def run() -> _T:
            return timed(round_index, step, *args)

        return self._meter.measure(SERVER, round_index, run)

    def _timed_client(
        self, client_id: int, round_index: int, step: Callable[..., _T], *args: object
    ) -> _T:
        timed = super()._timed_client

        def run() -> _T:
            return timed(client_id, round_index, step, *args)

        return _metered_step(self._meter, client_id, round_index, run, args)


class MeteredSimulator(_Metering, Simulator):
    """A masking :class:`Simulator` whose party steps feed a :class:`Meter`.

    Args:
        meter: where the costs go.
        *args, **kwargs: as for :class:`Simulator`.
    """


class MeteredPaillierSimulator(_Metering, PaillierSimulator):
    """A :class:`PaillierSimulator` whose party steps feed a :class:`Meter`.

    Args:
        meter: where the costs go.
        *args, **kwargs: as for :class:`PaillierSimulator`.
    """


class MeteredKeyHolder(KeyHolder):
    """A :class:`KeyHolder` whose decryptions are metered, in the unmasking round (4) as the
    simulator does.

    Args:
        meter: where the costs go.
        *args, **kwargs: as for :class:`KeyHolder`.
    """

    def __init__(self, meter: Meter, *args: Any, **kwargs: Any) -> None:
        self._meter = meter
        super().__init__(*args, **kwargs)

    def receive(self, message: Message) -> list[Message]:
        """Decrypt as :meth:`KeyHolder.receive` does, recording time, memory and bytes.

        Args:
            message: the server's request to decrypt an aggregate.

        Returns:
            The key holder's replies.
        """

        def run() -> list[Message]:
            return super(MeteredKeyHolder, self).receive(message)

        return _metered_step(self._meter, KEY_HOLDER, UNMASKING_ROUND, run, [message])
