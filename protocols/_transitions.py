"""The legal moves of every protocol state machine, as data (h11 ``_state.py`` style).

``CLIENT_TRANSITIONS[phase][event type]`` is the phase a masking client enters after that event:
a message from the server, or the caller's :class:`~protocols._machine.SubmitInput`; a missing
entry is an illegal, out-of-order event. ``SERVER_ACCEPTS[phase]`` is the one message type the
masking server collects in that phase, and ``SERVER_TRANSITIONS`` adds its local events
(``start()``, ``close_phase()``). Those two tables are the semi-honest protocol; the
``ACTIVE_*`` tables add the consistency round (Bonawitz et al. 2017, round 3) between the
masked inputs and the unmasking, which is why the unmasking is round 4 in both.
``PAILLIER_CLIENT_TRANSITIONS`` and ``PAILLIER_SERVER_TRANSITIONS`` are the Paillier roles'
tables. A test renders these tables into the protocol diagram in docs/protocol.md.
"""

from __future__ import annotations

import enum
from typing import Final

from protocols._machine import ClosePhase, Start, SubmitInput
from protocols.messages import (
    Abort,
    ConsistencyRequest,
    ConsistencySignature,
    DecryptedAggregate,
    DecryptionShare,
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
    "ACTIVE_CLIENT_TRANSITIONS",
    "ACTIVE_SERVER_TRANSITIONS",
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
    AWAIT_CONSISTENCY = "await-consistency"
    AWAIT_UNMASK_REQUEST = "await-unmask-request"
    DONE = "done"
    ABORTED = "aborted"


class ServerPhase(enum.Enum):
    """What a masking server is collecting (each phase is one protocol round)."""

    IDLE = "idle"
    COLLECT_KEYS = "collect-keys"  # round 0, AdvertiseKeys
    COLLECT_SHARES = "collect-shares"  # round 1, ShareKeys
    COLLECT_INPUTS = "collect-inputs"  # round 2, MaskedInputCollection
    COLLECT_CONSISTENCY = "collect-consistency"  # round 3, ConsistencyCheck (active only)
    COLLECT_UNMASK = "collect-unmask"  # round 4, Unmasking
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

#: The active-model client: after its upload it signs the survivor set before it unmasks.
ACTIVE_CLIENT_TRANSITIONS: Final[dict[ClientPhase, dict[type, ClientPhase]]] = {
    **CLIENT_TRANSITIONS,
    ClientPhase.AWAIT_INPUT: {SubmitInput: ClientPhase.AWAIT_CONSISTENCY, **_ABORT},
    ClientPhase.AWAIT_CONSISTENCY: {ConsistencyRequest: ClientPhase.AWAIT_UNMASK_REQUEST, **_ABORT},
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
    ServerPhase.COLLECT_CONSISTENCY: 3,
    ServerPhase.COLLECT_UNMASK: 4,
}

#: The phase after each collecting phase closes.
_AFTER_CLOSE: Final[dict[ServerPhase, ServerPhase]] = {
    ServerPhase.COLLECT_KEYS: ServerPhase.COLLECT_SHARES,
    ServerPhase.COLLECT_SHARES: ServerPhase.COLLECT_INPUTS,
    ServerPhase.COLLECT_INPUTS: ServerPhase.COLLECT_UNMASK,
    ServerPhase.COLLECT_UNMASK: ServerPhase.DONE,
}

_ACTIVE_AFTER_CLOSE: Final[dict[ServerPhase, ServerPhase]] = {
    **_AFTER_CLOSE,
    ServerPhase.COLLECT_INPUTS: ServerPhase.COLLECT_CONSISTENCY,
    ServerPhase.COLLECT_CONSISTENCY: ServerPhase.COLLECT_UNMASK,
}


def _server_table(
    accepts: dict[ServerPhase, type], after_close: dict[ServerPhase, ServerPhase]
) -> dict[ServerPhase, dict[type, ServerPhase]]:
    return {
        ServerPhase.IDLE: {Start: ServerPhase.COLLECT_KEYS},
        **{
            phase: {accepted: phase, Abort: phase, ClosePhase: after_close[phase]}
            for phase, accepted in accepts.items()
        },
        ServerPhase.DONE: {},
        ServerPhase.ABORTED: {},
    }


#: Every move of the masking server: it collects one message type per phase (a client may also
#: abort), and its driver's close_phase() moves it to the next phase.
SERVER_TRANSITIONS: Final = _server_table(SERVER_ACCEPTS, _AFTER_CLOSE)

#: The active-model server: the consistency round sits between the inputs and the unmasking.
ACTIVE_SERVER_TRANSITIONS: Final = _server_table(
    {
        **SERVER_ACCEPTS,
        ServerPhase.COLLECT_CONSISTENCY: ConsistencySignature,
    },
    _ACTIVE_AFTER_CLOSE,
)

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
    # The single key holder's sums end the round; a committee's partial decryptions are
    # collected until close_phase(), which combines any threshold valid ones.
    ServerPhase.COLLECT_UNMASK: {
        DecryptedAggregate: ServerPhase.DONE,
        DecryptionShare: ServerPhase.COLLECT_UNMASK,
        ClosePhase: ServerPhase.DONE,
    },
    ServerPhase.DONE: {},
    ServerPhase.ABORTED: {},
}
