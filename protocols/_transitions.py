"""The legal moves of every protocol state machine, as data (h11 ``_state.py`` style).

``CLIENT_TRANSITIONS[phase][event type]`` is the phase a masking client enters after that event:
a message from the server, or the caller's :class:`~protocols._machine.SubmitInput`; a missing
entry is an illegal, out-of-order event. ``SERVER_ACCEPTS[phase]`` is the one message type the
masking server collects in that phase, and ``SERVER_TRANSITIONS`` adds its local events
(``start()``, ``close_phase()``). ``PAILLIER_CLIENT_TRANSITIONS`` and
``PAILLIER_SERVER_TRANSITIONS`` are the Paillier roles' tables. A test renders these tables into
the protocol diagram in docs/protocol.md.
"""

from __future__ import annotations

import enum
from typing import Final

from protocols._machine import ClosePhase, Start, SubmitInput
from protocols.messages import (
    Abort,
    DecryptedAggregate,
    EncryptedInput,
    EncryptedShares,
    ForwardedShares,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    PaillierSetup,
    RoundSetup,
    UnmaskRequest,
    UnmaskResponse,
)

__all__ = [
    "CLIENT_TRANSITIONS",
    "PAILLIER_CLIENT_TRANSITIONS",
    "PAILLIER_SERVER_TRANSITIONS",
    "SERVER_ACCEPTS",
    "SERVER_TRANSITIONS",
    "ClientPhase",
    "ServerPhase",
]


class ClientPhase(enum.Enum):
    """What a masking client is waiting for."""

    AWAIT_SETUP = "await-setup"
    AWAIT_ROSTER = "await-roster"
    AWAIT_SHARES = "await-shares"
    AWAIT_INPUT = "await-input"
    AWAIT_UNMASK_REQUEST = "await-unmask-request"
    DONE = "done"
    ABORTED = "aborted"


class ServerPhase(enum.Enum):
    """What a masking server is collecting (each phase is one protocol round)."""

    IDLE = "idle"
    COLLECT_KEYS = "collect-keys"  # round 0, AdvertiseKeys
    COLLECT_SHARES = "collect-shares"  # round 1, ShareKeys
    COLLECT_INPUTS = "collect-inputs"  # round 2, MaskedInputCollection
    COLLECT_UNMASK = "collect-unmask"  # round 3, Unmasking
    DONE = "done"
    ABORTED = "aborted"


#: The server may abort the round at any time; a client then forgets its secrets.
_ABORT: Final[dict[type, ClientPhase]] = {Abort: ClientPhase.ABORTED}

CLIENT_TRANSITIONS: Final[dict[ClientPhase, dict[type, ClientPhase]]] = {
    ClientPhase.AWAIT_SETUP: {RoundSetup: ClientPhase.AWAIT_ROSTER, **_ABORT},
    ClientPhase.AWAIT_ROSTER: {KeyRoster: ClientPhase.AWAIT_SHARES, **_ABORT},
    ClientPhase.AWAIT_SHARES: {ForwardedShares: ClientPhase.AWAIT_INPUT, **_ABORT},
    ClientPhase.AWAIT_INPUT: {SubmitInput: ClientPhase.AWAIT_UNMASK_REQUEST, **_ABORT},
    ClientPhase.AWAIT_UNMASK_REQUEST: {UnmaskRequest: ClientPhase.DONE, **_ABORT},
    ClientPhase.DONE: {**_ABORT},
    ClientPhase.ABORTED: {},
}

SERVER_ACCEPTS: Final[dict[ServerPhase, type]] = {
    ServerPhase.COLLECT_KEYS: KeyAdvertisement,
    ServerPhase.COLLECT_SHARES: EncryptedShares,
    ServerPhase.COLLECT_INPUTS: MaskedInput,
    ServerPhase.COLLECT_UNMASK: UnmaskResponse,
}

#: The protocol round index (as used by dropout schedules) of each collecting phase.
SERVER_ROUND_INDEX: Final[dict[ServerPhase, int]] = {
    ServerPhase.COLLECT_KEYS: 0,
    ServerPhase.COLLECT_SHARES: 1,
    ServerPhase.COLLECT_INPUTS: 2,
    ServerPhase.COLLECT_UNMASK: 3,
}

#: The phase after each collecting phase closes.
_AFTER_CLOSE: Final[dict[ServerPhase, ServerPhase]] = {
    ServerPhase.COLLECT_KEYS: ServerPhase.COLLECT_SHARES,
    ServerPhase.COLLECT_SHARES: ServerPhase.COLLECT_INPUTS,
    ServerPhase.COLLECT_INPUTS: ServerPhase.COLLECT_UNMASK,
    ServerPhase.COLLECT_UNMASK: ServerPhase.DONE,
}

#: Every move of the masking server: it collects one message type per phase (a client may also
#: abort), and its driver's close_phase() moves it to the next phase.
SERVER_TRANSITIONS: Final[dict[ServerPhase, dict[type, ServerPhase]]] = {
    ServerPhase.IDLE: {Start: ServerPhase.COLLECT_KEYS},
    **{
        phase: {accepted: phase, Abort: phase, ClosePhase: _AFTER_CLOSE[phase]}
        for phase, accepted in SERVER_ACCEPTS.items()
    },
    ServerPhase.DONE: {},
    ServerPhase.ABORTED: {},
}

#: A Paillier client: the setup pins the key and packing, then the caller submits its input.
PAILLIER_CLIENT_TRANSITIONS: Final[dict[ClientPhase, dict[type, ClientPhase]]] = {
    ClientPhase.AWAIT_SETUP: {PaillierSetup: ClientPhase.AWAIT_INPUT, **_ABORT},
    ClientPhase.AWAIT_INPUT: {SubmitInput: ClientPhase.DONE, **_ABORT},
    ClientPhase.DONE: {**_ABORT},
    ClientPhase.ABORTED: {},
}

#: The Paillier server: it multiplies uploads until close_phase(), then awaits the decryption.
PAILLIER_SERVER_TRANSITIONS: Final[dict[ServerPhase, dict[type, ServerPhase]]] = {
    ServerPhase.IDLE: {Start: ServerPhase.COLLECT_INPUTS},
    ServerPhase.COLLECT_INPUTS: {
        EncryptedInput: ServerPhase.COLLECT_INPUTS,
        ClosePhase: ServerPhase.COLLECT_UNMASK,
    },
    ServerPhase.COLLECT_UNMASK: {DecryptedAggregate: ServerPhase.DONE},
    ServerPhase.DONE: {},
    ServerPhase.ABORTED: {},
}
