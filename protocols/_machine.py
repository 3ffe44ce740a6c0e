"""The shared core of every protocol state machine (masking and Paillier, client and server).

Each machine is a phase plus a transition table (``phase -> event type -> next phase``, h11
``_state.py`` style). Events are either messages from a peer or the caller's local steps
(:class:`Start`, :class:`SubmitInput`, :class:`ClosePhase`), so every move of every machine is
in a table that a test renders into the protocol diagram. This module holds what every machine
needs, once:

- the id, session and round checks of a message's header (:func:`check_addressed`);
- :meth:`Machine.guarded`, which runs one step and poisons the machine on *any* exception
  (h11 ``Connection._process_error``): the machine enters ``ABORTED``, forgets its secrets,
  and every later call raises :class:`~secagg.errors.LocalProtocolError`. An exception that is
  not a :class:`~secagg.errors.SecAggError` (a bug, or an object that is not a message) is
  re-raised as a protocol error whose message names only its type, so no secret value travels
  in an exception chain;
- :meth:`Machine.advance`, the one table look-up, which raises the right error on a miss.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Mapping
from typing import ClassVar, Final, Generic, TypeVar

import numpy.typing as npt

from protocols.messages import MAX_PARTY_ID, SERVER_ID, Message
from secagg.errors import (
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    SecAggError,
)
from secagg.hazmat.kex import SESSION_ID_BYTES

__all__ = [
    "ClientMachine",
    "ClosePhase",
    "Machine",
    "ServerMachine",
    "Start",
    "SubmitInput",
    "check_addressed",
    "check_client_id",
    "check_session",
    "detached",
    "finished",
]

_T = TypeVar("_T")
_PhaseT = TypeVar("_PhaseT", bound=enum.Enum)
_MAX_ROUND: Final = 2**64


class Start:
    """Local event: the server opens the round (``start()``)."""

    verb: ClassVar[str] = "start()"


class SubmitInput:
    """Local event: the client masks or encrypts its input (``submit_input()``)."""

    verb: ClassVar[str] = "submit_input()"


class ClosePhase:
    """Local event: the server's round deadline passed (``close_phase()``)."""

    verb: ClassVar[str] = "close_phase()"


def check_session(session_id: bytes, round_id: int) -> None:
    """Reject a session id that is not 16 bytes or a round id outside [0, 2^64)."""
    if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_BYTES:
        raise ParameterError(f"session_id must be {SESSION_ID_BYTES} random bytes")
    if (
        isinstance(round_id, bool)
        or not isinstance(round_id, int)
        or not 0 <= round_id < _MAX_ROUND
    ):
        raise ParameterError(f"round_id must be an int in [0, 2^64), got {round_id!r}")


def check_client_id(client_id: object) -> int:
    """Return ``client_id`` after checking it is a client id in [0, 2^32 - 3]."""
    if isinstance(client_id, bool) or not isinstance(client_id, int):
        raise ParameterError(f"client_id must be an int in [0, {MAX_PARTY_ID}], got {client_id!r}")
    if not 0 <= client_id <= MAX_PARTY_ID:
        raise ParameterError(f"client_id must be in [0, {MAX_PARTY_ID}], got {client_id}")
    return client_id


def check_addressed(
    message: object,
    *,
    session_id: bytes,
    round_id: int | None,
    recipient: int,
    sender: int | None = None,
) -> Message:
    """Check that ``message`` is a message of (session, round) sent to ``recipient``.

    Args:
        message: what arrived.
        session_id: the session the receiver belongs to.
        round_id: the round it expects (``None``: any round of the session).
        recipient: the receiver's own id.
        sender: the only sender it accepts (``None``: anyone but the receiver).

    Raises:
        RemoteProtocolError: anything else, including a replay from another round.
    """
    if not isinstance(message, Message):
        raise RemoteProtocolError(f"expected a protocol message, got {type(message).__name__}")
    if message.recipient != recipient or message.sender == recipient:
        raise RemoteProtocolError(
            f"message from {message.sender} to {message.recipient} is not for party {recipient}"
        )
    if sender is not None and message.sender != sender:
        raise RemoteProtocolError(f"party {recipient} accepts messages only from {sender}")
    if message.session_id != session_id or (round_id is not None and message.round_id != round_id):
        raise RemoteProtocolError(
            f"{type(message).__name__} belongs to another session or round "
            f"(round {message.round_id}, expected {round_id}): replay rejected"
        )
    return message


def finished(result: _T | None, phase: enum.Enum) -> _T:
    """``result`` once a server is DONE; reading it earlier raises LocalProtocolError."""
    if result is None:
        raise LocalProtocolError(f"the result exists once the round is DONE, not {phase}")
    return result


class Machine(Generic[_PhaseT]):
    """A phase, a transition table and the poison-on-any-exception guard.

    Subclasses set :attr:`TRANSITIONS` and :attr:`ABORTED`, keep their phase in ``_phase`` and
    override :meth:`forget_secrets`.
    """

    TRANSITIONS: Mapping[_PhaseT, Mapping[type, _PhaseT]]
    ABORTED: _PhaseT
    role: ClassVar[str] = "party"
    #: Local event -> when it is legal, appended to the error of an illegal call.
    HINTS: ClassVar[Mapping[type, str]] = {}

    _phase: _PhaseT
    _error: SecAggError | None = None

    @property
    def phase(self) -> _PhaseT:
        """What the machine waits for next."""
        return self._phase

    def advance(self, event: type, *, remote: bool) -> _PhaseT:
        """The phase after ``event``; a miss raises (Remote if a peer sent it, else Local)."""
        target = self.TRANSITIONS.get(self._phase, {}).get(event)
        if target is not None:
            return target
        if remote:
            raise RemoteProtocolError(
                f"unexpected {event.__name__} while the {self.role} is in {self._phase.name}"
            )
        verb = getattr(event, "verb", event.__name__)
        hint = self.HINTS.get(event)
        raise LocalProtocolError(
            f"{verb} is not legal while the {self.role} is in {self._phase.name}"
            + (f"; it is legal {hint}" if hint else "")
        )

    def guarded(self, step: Callable[[], _T], *, remote: bool) -> _T:
        """Run ``step``; on any exception poison the machine and raise a protocol error."""
        if self._phase is self.ABORTED:
            raise LocalProtocolError(
                f"the {self.role} aborted earlier ({self._error!r}); start a new round"
            )
        try:
            return step()
        except SecAggError as error:
            failure = detached(error)
        except Exception as error:
            failure = self.internal_error(error, remote=remote)
        # Raised outside the handlers, so no exception of the failed step (whose traceback
        # holds the step's frames: shares, keys, the raw input) is chained to it.
        self.poison(failure)
        raise failure

    def internal_error(self, error: Exception, *, remote: bool) -> SecAggError:
        """The protocol error that stands for an unexpected ``error`` (a bug, or a non-message).

        It names only the type of ``error``: its message and traceback may hold secret values.
        """
        kind = RemoteProtocolError if remote else LocalProtocolError
        return kind(f"the {self.role} failed with {type(error).__name__} and aborted the round")

    def poison(self, error: SecAggError | None) -> None:
        """Enter ``ABORTED`` and drop every secret; keep only a detached copy of ``error``."""
        self._phase = self.ABORTED
        self._error = None if error is None else detached(error)
        self.forget_secrets()

    def forget_secrets(self) -> None:
        """Drop keys, seeds and shares (overridden by machines that hold any)."""


def detached(error: SecAggError) -> SecAggError:
    """A copy of ``error`` with no traceback and no chained exception.

    A failed step's traceback keeps its frames alive, and with them the shares, keys and raw
    input in their locals; what a machine or a driver keeps after a failure is this copy.
    """
    clean = copy.copy(error)
    clean.__traceback__ = None
    clean.__cause__ = None
    clean.__context__ = None
    return clean


class ClientMachine(Machine[_PhaseT]):
    """A client role: every call is guarded, so any failure poisons the client.

    A message must come from the server to this client in its session and round, and must be
    a move of the transition table; a move to ``ABORTED`` (the server's
    :class:`~protocols.messages.Abort`) poisons the client. Subclasses implement ``_handle``
    (the move's action, which returns the replies) and ``_submit_input``.
    """

    client_id: int
    session_id: bytes
    round_id: int

    def receive(self, message: Message) -> list[Message]:
        """Feed one message from the server; returns the messages to send back."""
        return self.guarded(lambda: self._receive(message), remote=True)

    def _receive(self, message: Message) -> list[Message]:
        check_addressed(
            message,
            session_id=self.session_id,
            round_id=self.round_id,
            recipient=self.client_id,
            sender=SERVER_ID,
        )
        next_phase = self.advance(type(message), remote=True)
        if next_phase is self.ABORTED:  # the server aborted the round (an Abort)
            self.poison(None)
            return []
        replies = self._handle(message)
        self._phase = next_phase
        return replies

    def submit_input(self, vector: npt.ArrayLike) -> list[Message]:
        """Mask or encrypt the quantized input; legal once the round's setup is complete."""
        return self.guarded(lambda: self._submit_input(vector), remote=False)

    def _handle(self, message: Message) -> list[Message]:
        raise NotImplementedError

    def _submit_input(self, vector: npt.ArrayLike) -> list[Message]:
        raise NotImplementedError


class ServerMachine(Machine[_PhaseT]):
    """A server role: a peer's bad message is discarded, any other failure poisons the round.

    A rejected message raises a :class:`~secagg.errors.SecAggError` before it touches the
    round's state (one client cannot abort everyone else's round). Subclasses implement
    ``_record`` (one client or key-holder message) and ``_close`` (the driver's deadline).
    """

    def receive(self, message: Message) -> list[Message]:
        """Record one message of the current round; the server never replies at once.

        Raises:
            SecAggError: the message was refused and discarded (the round goes on).
            LocalProtocolError: the server itself failed; the round is aborted.
        """
        try:
            self._record(message)
        except SecAggError:
            raise
        except Exception as error:
            failure = self.internal_error(error, remote=False)
        else:
            return []
        self.poison(failure)
        raise failure

    def close_phase(self) -> list[Message]:
        """The round deadline passed: close the phase and return what to send next."""
        next_phase = self.advance(ClosePhase, remote=False)
        return self.guarded(lambda: self._close(next_phase), remote=False)

    def _record(self, message: Message) -> None:
        raise NotImplementedError

    def _close(self, next_phase: _PhaseT) -> list[Message]:
        raise NotImplementedError
