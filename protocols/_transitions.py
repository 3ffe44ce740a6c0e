"""The legal moves of the masking state machines, as data (h11 ``_state.py`` style).

``CLIENT_TRANSITIONS[phase][message type]`` is the phase a client enters after receiving that
message; a missing entry is an illegal, out-of-order message. ``SERVER_ACCEPTS[phase]`` is the one
message type the server collects in that phase. A test renders these tables.
"""

from __future__ import annotations

import enum
from typing import Final

from protocols.messages import (
    EncryptedShares,
    ForwardedShares,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    RoundSetup,
    UnmaskRequest,
    UnmaskResponse,
)

__all__ = ["CLIENT_TRANSITIONS", "SERVER_ACCEPTS", "ClientPhase", "ServerPhase"]


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


CLIENT_TRANSITIONS: Final[dict[ClientPhase, dict[type, ClientPhase]]] = {
    ClientPhase.AWAIT_SETUP: {RoundSetup: ClientPhase.AWAIT_ROSTER},
    ClientPhase.AWAIT_ROSTER: {KeyRoster: ClientPhase.AWAIT_SHARES},
    ClientPhase.AWAIT_SHARES: {ForwardedShares: ClientPhase.AWAIT_INPUT},
    ClientPhase.AWAIT_INPUT: {},
    ClientPhase.AWAIT_UNMASK_REQUEST: {UnmaskRequest: ClientPhase.DONE},
    ClientPhase.DONE: {},
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
