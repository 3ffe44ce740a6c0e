"""A stateful fuzz of ``MaskingClient`` and ``MaskingServer``: random legal and illegal events.

Hypothesis plays the transport for the rounds of one session. Legal events are what a real
network and real clients do: deliver any pending honest message (in any order within a round),
submit a client's input, let the server's round deadline pass (also with messages still in
flight), let a client fall silent (with or without an :class:`Abort`), begin the next round.
Illegal events are what a faulty or hostile network or caller does: hand a message to the wrong
client, replay one (within the round or from an earlier round), deliver a message type the
recipient's phase does not accept, deliver a message of another session or round, call
``submit_input`` at the wrong phase or with a malformed vector, close a finished round, start a
started one, or tamper with a field the recipient can check. A share bundle tampered so that it
no longer opens is handled, not refused: the client keeps going, still masks with the sender,
holds none of its shares and names it in its upload (run on a copy of the client). Tampering
the recipient cannot detect (a masked value or a share value changed in transit, a client id
spoofed) is left out on purpose: semi-honest SecAgg authenticates nothing, so such a change
silently alters the sum, and no machine could be asked to refuse it.

An illegal event hits the client itself while the round can lose it and still keep its threshold,
and otherwise an exact copy of it (``export_state`` / ``from_state``), so that illegal events reach
every phase of rounds that still complete.

Invariants, after every event:

* only :mod:`secagg.errors` exceptions escape any machine call;
* every illegal event is refused (with the specific error where there is one), except a bundle
  that does not open, whose sender the client names in ``MaskedInput.rejected``; every legal
  event is accepted;
* a client that raised (or received an Abort) is ABORTED, holds no secret, and refuses every later
  call with :class:`LocalProtocolError`;
* a server that refused a message keeps its phase (one client cannot abort everyone else's round,
  DESIGN.md section 3, invariant 7); a server whose round aborted stays ABORTED and refuses every
  later ``close_phase``, ``start`` and ``result`` with :class:`LocalProtocolError`;
* a round that completes yields exactly the ring sum of the inputs the server accepted, and those
  are the survivors it names.

The tests at the end hand the machines values outside the message and array types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from protocols._transitions import CLIENT_TRANSITIONS, SERVER_ACCEPTS, ClientPhase, ServerPhase
from protocols.graph import NeighbourGraph
from protocols.masking import MaskingClient, MaskingParams, MaskingServer
from protocols.messages import (
    SERVER_ID,
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
    Message,
    PaillierSetup,
    RosterEntry,
    RoundSetup,
    SealedShares,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.encoding import ring_dtype
from secagg.errors import (
    InsufficientSurvivorsError,
    LocalProtocolError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
)

_T = TypeVar("_T")

SETTINGS = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --------------------------------------------------------------------------------------------
# Messages no honest party sends at this point, and detectable tampering
# --------------------------------------------------------------------------------------------

_KEY_A, _KEY_B = bytes(range(32)), bytes(range(1, 33))
_COMMITMENT = bytes(range(2, 34))


def _forged_bodies() -> dict[type, dict[str, Any]]:
    """A well-formed body for every message type (what goes after the four header fields)."""
    return {
        RoundSetup: {"threshold": 2, "vector_length": 1, "modulus_bits": 8, "neighbours": ()},
        KeyRoster: {"entries": ()},
        ForwardedShares: {"bundles": ()},
        ConsistencyRequest: {"survivors": ()},
        UnmaskRequest: {"survivors": (), "dropped": ()},
        KeyAdvertisement: {
            "mask_public_key": _KEY_A,
            "share_public_key": _KEY_B,
            "seed_commitment": _COMMITMENT,
        },
        EncryptedShares: {"bundles": ()},
        ConsistencySignature: {"signature": bytes(64)},
        MaskedInput: {"modulus_bits": 8, "vector": np.zeros(1, dtype=np.uint32)},
        UnmaskResponse: {"self_mask_shares": (), "mask_key_shares": ()},
        PaillierSetup: {"public_key_n": 15, "vector_length": 1, "value_bits": 1, "max_clients": 1},
        EncryptedInput: {"ciphertext_bytes": 1, "ciphertexts": b"\x01", "signature": bytes(64)},
        DecryptionShare: {"index": 1, "partial": b"\x01"},
        DecryptedAggregate: {"contributors": 1, "vector": np.zeros(1, dtype=np.uint64)},
    }


def _flip_first_ciphertext(message: ForwardedShares) -> ForwardedShares:
    first = message.bundles[0]
    flipped = bytes([first.ciphertext[0] ^ 1]) + first.ciphertext[1:]
    bundles = (SealedShares(peer=first.peer, ciphertext=flipped), *message.bundles[1:])
    return dataclasses.replace(message, bundles=bundles)


def _swap_bundle_peers(message: ForwardedShares) -> ForwardedShares:
    a, b, *rest = message.bundles
    swapped = (
        SealedShares(peer=b.peer, ciphertext=a.ciphertext),
        SealedShares(peer=a.peer, ciphertext=b.ciphertext),
    )
    return dataclasses.replace(message, bundles=(*swapped, *rest))


def _altered_own_entry(message: KeyRoster) -> KeyRoster:
    entries = tuple(
        RosterEntry(
            client_id=e.client_id,
            mask_public_key=e.share_public_key,
            share_public_key=e.mask_public_key,
            seed_commitment=e.seed_commitment,
        )
        if e.client_id == message.recipient
        else e
        for e in message.entries
    )
    return dataclasses.replace(message, entries=entries)


def _to_client_mutations(message: Message) -> list[tuple[Message, type[SecAggError]]]:
    """Tampered copies of a server -> client message, each with the error the client must raise."""
    me = message.recipient
    out: list[tuple[Message, type[SecAggError]]] = []
    if isinstance(message, RoundSetup):
        out.append((dataclasses.replace(message, threshold=1), ServerMisbehaviourError))
        out.append(
            (
                dataclasses.replace(message, neighbours=(*message.neighbours, me)),
                RemoteProtocolError,
            )
        )
        too_high = len(message.neighbours) + 2
        out.append((dataclasses.replace(message, threshold=too_high), RemoteProtocolError))
    elif isinstance(message, KeyRoster):
        out.append((_altered_own_entry(message), ServerMisbehaviourError))
        others = tuple(e for e in message.entries if e.client_id != me)
        out.append((dataclasses.replace(message, entries=others), ServerMisbehaviourError))
        doubled = (*message.entries, message.entries[0])
        out.append((dataclasses.replace(message, entries=doubled), ServerMisbehaviourError))
    elif isinstance(message, ForwardedShares) and message.bundles:
        doubled_bundles = (*message.bundles, message.bundles[0])
        out.append((dataclasses.replace(message, bundles=doubled_bundles), RemoteProtocolError))
    elif isinstance(message, UnmaskRequest):
        out.append(
            (dataclasses.replace(message, dropped=(*message.dropped, me)), ServerMisbehaviourError)
        )
        peers = [u for u in message.survivors if u != me]
        if peers:
            both = (*message.dropped, peers[0])
            out.append((dataclasses.replace(message, dropped=both), ServerMisbehaviourError))
    return out


def _bundle_tamperings(message: Message) -> list[tuple[ForwardedShares, tuple[int, ...]]]:
    """Forwarded bundles that no longer open, each with the senders the client must reject.

    A bundle that does not open is not a reason to abort: the client leaves its sender out of
    its masks and names it in :attr:`MaskedInput.rejected` (unless fewer than a threshold of
    share holders remain)."""
    if not isinstance(message, ForwardedShares) or not message.bundles:
        return []
    out: list[tuple[ForwardedShares, tuple[int, ...]]] = [
        (_flip_first_ciphertext(message), (message.bundles[0].peer,))
    ]
    if len(message.bundles) >= 2:
        out.append(
            (_swap_bundle_peers(message), (message.bundles[0].peer, message.bundles[1].peer))
        )
    return out


def _to_server_mutations(message: Message) -> list[tuple[Message, type[SecAggError]]]:
    """Tampered copies of a client -> server message that the server must refuse."""
    out: list[tuple[Message, type[SecAggError]]] = []
    if isinstance(message, KeyAdvertisement):
        reused = dataclasses.replace(message, share_public_key=message.mask_public_key)
        out.append((reused, RemoteProtocolError))
    elif isinstance(message, EncryptedShares) and message.bundles:
        out.append(
            (dataclasses.replace(message, bundles=message.bundles[:-1]), RemoteProtocolError)
        )
        to_self = (SealedShares(peer=message.sender, ciphertext=b"x"), *message.bundles[1:])
        out.append((dataclasses.replace(message, bundles=to_self), RemoteProtocolError))
        # One share digest per roster member (the dealer's own included), no fewer.
        out.append(
            (dataclasses.replace(message, digests=message.digests[:-1]), RemoteProtocolError)
        )
    elif isinstance(message, MaskedInput):
        longer = np.concatenate([message.vector, message.vector[:1]])
        out.append((dataclasses.replace(message, vector=longer), RemoteProtocolError))
        out.append((dataclasses.replace(message, vector=message.vector[:-1]), RemoteProtocolError))
        # A client can only reject bundles it was sent: never its own.
        accusing = dataclasses.replace(message, rejected=(message.sender,))
        out.append((accusing, RemoteProtocolError))
    elif isinstance(message, UnmaskResponse):
        fewer = message.self_mask_shares[:-1]
        out.append((dataclasses.replace(message, self_mask_shares=fewer), RemoteProtocolError))
    return out


def _bad_inputs(length: int, modulus_bits: int) -> list[np.ndarray]:
    """Array-likes ``submit_input`` must refuse in a round of ``length`` values mod 2^k."""
    bad: list[np.ndarray] = [
        np.zeros(length + 1, dtype=np.uint32),
        np.zeros(length, dtype=np.float64),
        np.zeros((length, 1), dtype=np.uint32),
        np.full(length, -1, dtype=np.int64),
        np.zeros(length, dtype=bool),
    ]
    if length > 1:
        bad.append(np.zeros(length - 1, dtype=np.uint32))
    if modulus_bits < 64:
        bad.append(np.full(length, 2**modulus_bits, dtype=np.uint64))
    return bad


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


@st.composite
def _rounds(draw: st.DrawFn) -> MaskingParams:
    """3-6 clients (sparse ids) on a complete or circulant graph, any legal threshold."""
    ids = draw(st.lists(st.integers(0, 40), min_size=3, max_size=6, unique=True))
    order = draw(st.permutations(ids))
    n = len(order)
    half = draw(st.integers(1, (n - 1) // 2)) if draw(st.booleans()) else n
    neighbours: dict[int, set[int]] = {u: set() for u in order}
    for position, u in enumerate(order):
        for offset in range(1, min(half, n - 1) + 1):
            v = order[(position + offset) % n]
            neighbours[u].add(v)
            neighbours[v].add(u)
    graph = NeighbourGraph({u: frozenset(p) for u, p in neighbours.items()})
    smallest = min(len(p) for p in graph.neighbours.values()) + 1
    return MaskingParams(
        session_id=draw(st.binary(min_size=16, max_size=16)),
        round_id=draw(st.integers(0, 2**64 - 1)),
        graph=graph,
        threshold=draw(st.integers(2, smallest)),
        vector_length=draw(st.integers(1, 4)),
        modulus_bits=draw(st.sampled_from([1, 7, 8, 16, 32, 33, 64])),
        threat_model="semi-honest",
    )


class MaskingRounds(RuleBasedStateMachine):
    """Masking rounds of one session driven by random events; the module docstring has the
    invariants. When a round ends (DONE or ABORTED) the next may begin, with new machines and the
    next round id, so that old rounds' messages can be replayed into it."""

    def __init__(
        self,
        make_inputs: Callable[..., dict[int, np.ndarray]],
        ring_sum: Callable[..., np.ndarray],
        check_aborted: Callable[..., None],
    ) -> None:
        super().__init__()
        self.make_inputs = make_inputs
        self.ring_sum = ring_sum
        self.check_aborted = check_aborted
        self.earlier_rounds: list[Message] = []  # every honest message of the rounds before

    # -- set-up -------------------------------------------------------------------------------

    @initialize(
        params=_rounds(),
        seed=st.integers(0, 2**32 - 1),
        # A quarter of the sessions may close a phase early before a threshold answered.
        harsh_deadline=st.sampled_from([False, False, False, True]),
    )
    def start_session(self, params: MaskingParams, seed: int, harsh_deadline: bool) -> None:
        self.harsh_deadline = harsh_deadline
        self._begin(params, seed)

    def _begin(self, params: MaskingParams, seed: int) -> None:
        self.params = params
        self.seed = seed
        self.inputs = self.make_inputs(params, seed=seed)
        self.server = MaskingServer(params)
        self.clients = {
            u: MaskingClient(
                u,
                session_id=params.session_id,
                round_id=params.round_id,
                threat_model="semi-honest",
            )
            for u in params.graph.nodes
        }
        self.to_client: dict[int, Message] = {}  # the server's undelivered honest messages
        self.to_server: list[Message] = []  # the clients' undelivered honest replies
        self.delivered: dict[int, list[Message]] = {u: [] for u in params.graph.nodes}
        self.accepted: list[Message] = []  # what the server accepted (Aborts left out)
        self.accepted_now: list[Message] = []  # ... in its current phase
        self.uploaded: set[int] = set()
        self.silent: set[int] = set()
        self.early = False
        self.to_client = {m.recipient: m for m in self._server(self.server.start)}

    @precondition(lambda self: self.server.phase not in SERVER_ACCEPTS)
    @rule()
    def next_round(self) -> None:
        """The round is over: the same clients start the next one with new machines."""
        self.earlier_rounds += [*self.accepted, *(m for ms in self.delivered.values() for m in ms)]
        p = self.params
        self._begin(dataclasses.replace(p, round_id=(p.round_id + 1) % 2**64), self.seed + 1)

    # -- calling the machines -------------------------------------------------------------------

    def _client(self, client_id: int, call: Callable[[], _T]) -> _T | SecAggError:
        """Run ``call`` on a client; returns its result or the SecAggError it raised."""
        return self._on(self.clients[client_id], call)

    @staticmethod
    def _on(client: MaskingClient, call: Callable[[], _T]) -> _T | SecAggError:
        """Run ``call`` on ``client``; the module's invariants hold whatever it does."""
        client_id = client.client_id
        was_aborted = client.phase is ClientPhase.ABORTED
        try:
            result = call()
        except SecAggError as error:
            assert client.phase is ClientPhase.ABORTED, f"client {client_id} raised {error!r}"
            if was_aborted:
                assert isinstance(error, LocalProtocolError), repr(error)
            return error
        except Exception as error:
            raise AssertionError(
                f"client {client_id} in {client.phase} raised {type(error).__name__}, not a "
                f"SecAggError: {error}"
            ) from error
        assert not was_aborted, f"aborted client {client_id} accepted a call"
        return result

    def _server(self, call: Callable[[], _T]) -> _T:
        """Run ``call`` on the server; it must succeed."""
        result = self._server_refusal(call)
        assert not isinstance(result, SecAggError), f"the server refused a legal call: {result!r}"
        return result

    def _server_refusal(self, call: Callable[[], _T]) -> _T | SecAggError:
        server = self.server
        before = server.phase
        try:
            return call()
        except InsufficientSurvivorsError as error:
            assert server.phase is ServerPhase.ABORTED, repr(error)
            return error
        except SecAggError as error:
            assert server.phase is before, f"the server changed phase while refusing {error!r}"
            return error
        except Exception as error:
            raise AssertionError(
                f"the server in {before} raised {type(error).__name__}, not a SecAggError: {error}"
            ) from error

    def _target(self, client_id: int) -> MaskingClient:
        """Whom an illegal event hits: the client itself while the round can lose it and still
        keep the threshold, else an exact copy (``export_state`` / ``from_state``), so illegal
        events reach every phase of rounds that still complete."""
        client = self.clients[client_id]
        healthy = self._healthy()
        if client_id not in healthy or len(healthy) > self.params.threshold:
            return client
        return MaskingClient.from_state(client.export_state())

    def _refused_by_client(
        self, client_id: int, message: Message, expected: type[SecAggError] = RemoteProtocolError
    ) -> None:
        self._client_refuses(client_id, lambda c: c.receive(message), expected)

    def _client_refuses(
        self,
        client_id: int,
        call: Callable[[MaskingClient], object],
        expected: type[SecAggError],
    ) -> None:
        target = self._target(client_id)
        was_aborted = target.phase is ClientPhase.ABORTED
        outcome = self._on(target, lambda: call(target))
        assert isinstance(outcome, SecAggError), f"client {client_id} accepted an illegal call"
        if not was_aborted:
            assert isinstance(outcome, expected), f"{outcome!r} is not a {expected.__name__}"
        self.check_aborted(target)

    def _refused_by_server(
        self, message: Message, expected: type[SecAggError] = RemoteProtocolError
    ) -> None:
        outcome = self._server_refusal(lambda: self.server.receive(message))
        assert isinstance(outcome, expected), f"the server answered {outcome!r} to {message!r}"

    def _live(self) -> list[int]:
        return [u for u in self.params.graph.nodes if u not in self.silent]

    def _pending_for_live(self) -> list[int]:
        return [u for u in sorted(self.to_client) if u not in self.silent]

    def _spare(self) -> list[int]:
        """Live clients the round can lose: those out of it already, or any while more than a
        threshold of healthy clients remain."""
        live = self._live()
        healthy = self._healthy()
        if len(healthy) > self.params.threshold:
            return live
        return [u for u in live if u not in healthy]

    # -- moves ----------------------------------------------------------------------------------

    def _ready(self) -> list[int]:
        return [u for u in self._live() if self.clients[u].phase is ClientPhase.AWAIT_INPUT]

    def _healthy(self) -> list[int]:
        """Live clients that are still in the round and not aborted."""
        alive = set(self.server.alive)
        return [
            u
            for u in self._live()
            if u in alive and self.clients[u].phase is not ClientPhase.ABORTED
        ]

    def _in_flight(self) -> set[int]:
        """Healthy clients that still have an honest message to receive or to send."""
        waiting = set(self.to_client) | set(self._ready()) | {m.sender for m in self.to_server}
        return waiting & set(self._healthy())

    def _deliver_to_client(self, client_id: int) -> None:
        message = self.to_client.pop(client_id)
        client = self.clients[client_id]
        was_aborted = client.phase is ClientPhase.ABORTED
        self.delivered[client_id].append(message)
        replies = self._client(client_id, lambda: client.receive(message))
        if was_aborted:
            assert isinstance(replies, LocalProtocolError)
            return
        assert not isinstance(replies, SecAggError), f"honest {message!r} refused: {replies!r}"
        self.to_server.extend(replies)

    def _submit(self, client_id: int) -> None:
        client = self.clients[client_id]
        replies = self._client(client_id, lambda: client.submit_input(self.inputs[client_id]))
        assert not isinstance(replies, SecAggError), repr(replies)
        self.to_server.extend(replies)

    def _deliver_to_server(self, index: int) -> None:
        message = self.to_server.pop(index)
        if self.server.phase is ServerPhase.ABORTED:
            # A client that had not yet heard of the abort answered: refused, nothing counted.
            self._refused_by_server(message)
            return
        self._server(lambda: self.server.receive(message))
        self.accepted.append(message)
        self.accepted_now.append(message)
        if isinstance(message, MaskedInput):
            self.uploaded.add(message.sender)

    def _deliver_everything(self) -> None:
        for client_id in self._pending_for_live():
            self._deliver_to_client(client_id)
        for client_id in self._ready():
            self._submit(client_id)
        while self.to_server:
            self._deliver_to_server(0)

    def _close(self) -> None:
        outcome = self._server_refusal(self.server.close_phase)
        if isinstance(outcome, SecAggError):
            assert isinstance(outcome, InsufficientSurvivorsError), repr(outcome)
            outcome = self.server.abort_messages()
        self.to_client = {m.recipient: m for m in outcome}
        self.to_server = []
        self.accepted_now = []

    def _early_close_allowed(self) -> bool:
        if self.server.phase not in SERVER_ACCEPTS or self.early or not self._in_flight():
            return False
        answered = len(self._healthy()) - len(self._in_flight())
        return self.harsh_deadline or answered >= self.params.threshold

    # -- legal events ---------------------------------------------------------------------------

    @precondition(lambda self: self._pending_for_live())
    @rule(data=st.data())
    def deliver_to_client(self, data: st.DataObject) -> None:
        """Any pending honest message reaches its client (in any order within the round)."""
        self._deliver_to_client(data.draw(st.sampled_from(self._pending_for_live())))

    @precondition(lambda self: self._ready())
    @rule(data=st.data())
    def submit_input(self, data: st.DataObject) -> None:
        self._submit(data.draw(st.sampled_from(self._ready())))

    @precondition(lambda self: self.to_server)
    @rule(data=st.data())
    def deliver_to_server(self, data: st.DataObject) -> None:
        """Any pending honest reply reaches the server (in any order within the round)."""
        self._deliver_to_server(data.draw(st.integers(0, len(self.to_server) - 1)))

    @precondition(lambda self: self._in_flight())
    @rule()
    def deliver_everything(self) -> None:
        """Every pending message and input goes through; the phase stays open."""
        self._deliver_everything()

    @precondition(lambda self: self.server.phase in SERVER_ACCEPTS)
    @rule()
    def play_phase(self) -> None:
        """Everything pending goes through, then the deadline passes."""
        self._deliver_everything()
        self._close()

    @precondition(lambda self: self.server.phase in SERVER_ACCEPTS and not self._in_flight())
    @rule()
    def close_phase(self) -> None:
        """The deadline passes once every live client had its say: the silent are dropped."""
        self._close()

    @precondition(lambda self: self._early_close_allowed())
    @rule()
    def close_phase_early(self) -> None:
        """The deadline passes with messages in flight, once a round; in lenient rounds only
        after a threshold of clients answered (otherwise few rounds would ever complete)."""
        self.early = True
        self._close()

    @precondition(lambda self: self._spare())
    @rule(data=st.data(), say_abort=st.booleans())
    def drop_client(self, data: st.DataObject, say_abort: bool) -> None:
        """A client falls silent for good, telling the server with an Abort or not."""
        client_id = data.draw(st.sampled_from(self._spare()))
        self.silent.add(client_id)
        self.to_server = [m for m in self.to_server if m.sender != client_id]
        if not say_abort:
            return
        notice = Abort(**self._header(client_id, SERVER_ID), reason="leaving")
        if self.server.phase in SERVER_ACCEPTS:
            self._server(lambda: self.server.receive(notice))
        else:
            self._refused_by_server(notice)

    # -- illegal events -------------------------------------------------------------------------

    @precondition(lambda self: self._live())
    @rule(
        data=st.data(),
        kind=st.sampled_from(["wrong_client", "replay", "earlier_round", "out_of_order"]),
    )
    def misdeliver_to_client(self, data: st.DataObject, kind: str) -> None:
        """A genuine message reaches a client it is not meant for, or not now."""
        getattr(self, f"_client_gets_{kind}")(data)

    @precondition(lambda self: self._live())
    @rule(data=st.data(), kind=st.sampled_from(["other_session", "other_round", "tampered"]))
    def forge_to_client(self, data: st.DataObject, kind: str) -> None:
        """A pending message reaches its client with a field changed."""
        getattr(self, f"_client_gets_{kind}")(data)

    @precondition(lambda self: self._live())
    @rule(data=st.data(), kind=st.sampled_from(["submit_at_wrong_phase", "malformed_input"]))
    def misuse_client(self, data: st.DataObject, kind: str) -> None:
        """The client's own caller asks for something illegal."""
        getattr(self, f"_client_gets_{kind}")(data)

    @rule(data=st.data(), kind=st.sampled_from(["replay", "earlier_round", "out_of_order"]))
    def misdeliver_to_server(self, data: st.DataObject, kind: str) -> None:
        """A genuine message reaches the server again, too late, or out of turn."""
        getattr(self, f"_server_gets_{kind}")(data)

    @rule(data=st.data(), kind=st.sampled_from(["other_session", "other_round", "tampered"]))
    def forge_to_server(self, data: st.DataObject, kind: str) -> None:
        """A pending reply reaches the server with a field changed."""
        getattr(self, f"_server_gets_{kind}")(data)

    @rule(data=st.data(), kind=st.sampled_from(["close_when_finished", "start_again"]))
    def misuse_server(self, data: st.DataObject, kind: str) -> None:
        """The server's own caller asks for something illegal."""
        getattr(self, f"_server_gets_{kind}")(data)

    def _header(self, sender: int, recipient: int) -> dict[str, Any]:
        p = self.params
        return {
            "session_id": p.session_id,
            "round_id": p.round_id,
            "sender": sender,
            "recipient": recipient,
        }

    def _client_gets_wrong_client(self, data: st.DataObject) -> None:
        pairs = [(a, b) for a in self._pending_for_live() for b in self._live() if a != b]
        if pairs:
            owner, other = data.draw(st.sampled_from(pairs))
            self._refused_by_client(other, self.to_client[owner])

    def _client_gets_replay(self, data: st.DataObject) -> None:
        targets = [u for u in self._live() if self.delivered[u]]
        if targets:
            client_id = data.draw(st.sampled_from(targets))
            self._refused_by_client(
                client_id, data.draw(st.sampled_from(self.delivered[client_id]))
            )

    def _client_gets_out_of_order(self, data: st.DataObject) -> None:
        client_id = data.draw(st.sampled_from(self._live()))
        accepted_now = CLIENT_TRANSITIONS[self.clients[client_id].phase]
        bodies = _forged_bodies()
        kind = data.draw(st.sampled_from([t for t in bodies if t not in accepted_now]))
        self._refused_by_client(
            client_id, kind(**self._header(SERVER_ID, client_id), **bodies[kind])
        )

    def _foreign(self, data: st.DataObject, message: Message, field: str) -> Message:
        if field == "session_id":
            sessions = st.binary(min_size=16, max_size=16)
            other = data.draw(sessions.filter(lambda s: s != message.session_id))
            return dataclasses.replace(message, session_id=other)
        rounds = st.integers(0, 2**64 - 1)
        return dataclasses.replace(
            message, round_id=data.draw(rounds.filter(lambda r: r != message.round_id))
        )

    def _client_gets_foreign(self, data: st.DataObject, field: str) -> None:
        pending = self._pending_for_live()
        if pending:
            message = self.to_client[data.draw(st.sampled_from(pending))]
            self._refused_by_client(message.recipient, self._foreign(data, message, field))

    def _client_gets_other_session(self, data: st.DataObject) -> None:
        self._client_gets_foreign(data, "session_id")

    def _client_gets_other_round(self, data: st.DataObject) -> None:
        self._client_gets_foreign(data, "round_id")

    def _client_gets_earlier_round(self, data: st.DataObject) -> None:
        live = set(self._live())
        old = [m for m in self.earlier_rounds if m.recipient in live]
        if old:
            message = data.draw(st.sampled_from(old))
            self._refused_by_client(message.recipient, message)

    def _client_gets_tampered(self, data: st.DataObject) -> None:
        choices: list[tuple[Message, type[SecAggError] | tuple[int, ...]]] = [
            (mutated, error)
            for u in self._pending_for_live()
            for mutated, error in _to_client_mutations(self.to_client[u])
        ]
        choices += [
            (mutated, rejected)
            for u in self._pending_for_live()
            if self.clients[u].phase is not ClientPhase.ABORTED
            for mutated, rejected in _bundle_tamperings(self.to_client[u])
        ]
        if choices:
            mutated, outcome = data.draw(st.sampled_from(choices))
            if isinstance(outcome, tuple):
                assert isinstance(mutated, ForwardedShares)
                self._client_names_senders(mutated, outcome)
            else:
                self._refused_by_client(mutated.recipient, mutated, outcome)

    def _client_names_senders(self, message: ForwardedShares, rejected: tuple[int, ...]) -> None:
        """Bundles that do not open cost their senders a holder, not the round: a copy of the
        client (so the honest round goes on) keeps going, still masks with every sender and
        names the ones whose bundles did not open in its upload."""
        copy = MaskingClient.from_state(self.clients[message.recipient].export_state())
        outcome = self._on(copy, lambda: copy.receive(message))
        assert outcome == [], repr(outcome)
        assert copy._mask_peers == tuple(sorted(b.peer for b in message.bundles))
        assert copy.phase is ClientPhase.AWAIT_INPUT
        upload = self._on(copy, lambda: copy.submit_input(self.inputs[copy.client_id]))
        assert not isinstance(upload, SecAggError), repr(upload)
        (masked,) = upload
        assert isinstance(masked, MaskedInput)
        assert masked.rejected == tuple(sorted(rejected))

    def _client_gets_submit_at_wrong_phase(self, data: st.DataObject) -> None:
        targets = [u for u in self._live() if self.clients[u].phase is not ClientPhase.AWAIT_INPUT]
        if targets:
            client_id = data.draw(st.sampled_from(targets))
            vector = self.inputs[client_id]
            self._client_refuses(client_id, lambda c: c.submit_input(vector), LocalProtocolError)

    def _client_gets_malformed_input(self, data: st.DataObject) -> None:
        if self._ready():
            client_id = data.draw(st.sampled_from(self._ready()))
            p = self.params
            vector = data.draw(st.sampled_from(_bad_inputs(p.vector_length, p.modulus_bits)))
            self._client_refuses(client_id, lambda c: c.submit_input(vector), LocalProtocolError)

    def _server_gets_replay(self, data: st.DataObject) -> None:
        if self.accepted:
            # Half the time one from the phase still open: the "sent twice" checks.
            recent = bool(self.accepted_now) and data.draw(st.booleans())
            pool = self.accepted_now if recent else self.accepted
            self._refused_by_server(data.draw(st.sampled_from(pool)))

    def _server_gets_out_of_order(self, data: st.DataObject) -> None:
        sender = data.draw(st.sampled_from(self.params.graph.nodes))
        bodies = _forged_bodies()
        expected = SERVER_ACCEPTS.get(self.server.phase)
        kind = data.draw(st.sampled_from([t for t in bodies if t is not expected]))
        self._refused_by_server(kind(**self._header(sender, SERVER_ID), **bodies[kind]))

    def _server_gets_foreign(self, data: st.DataObject, field: str) -> None:
        if self.to_server:
            message = data.draw(st.sampled_from(self.to_server))
            self._refused_by_server(self._foreign(data, message, field))

    def _server_gets_other_session(self, data: st.DataObject) -> None:
        self._server_gets_foreign(data, "session_id")

    def _server_gets_other_round(self, data: st.DataObject) -> None:
        self._server_gets_foreign(data, "round_id")

    def _server_gets_earlier_round(self, data: st.DataObject) -> None:
        old = [m for m in self.earlier_rounds if m.recipient == SERVER_ID]
        if old:
            self._refused_by_server(data.draw(st.sampled_from(old)))

    def _server_gets_tampered(self, data: st.DataObject) -> None:
        choices = [pair for m in self.to_server for pair in _to_server_mutations(m)]
        if choices:
            mutated, error = data.draw(st.sampled_from(choices))
            self._refused_by_server(mutated, error)

    def _server_gets_close_when_finished(self, data: st.DataObject) -> None:
        if self.server.phase not in SERVER_ACCEPTS:
            outcome = self._server_refusal(self.server.close_phase)
            assert isinstance(outcome, LocalProtocolError), repr(outcome)

    def _server_gets_start_again(self, data: st.DataObject) -> None:
        outcome = self._server_refusal(self.server.start)
        assert isinstance(outcome, LocalProtocolError), repr(outcome)

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def aborted_clients_refuse_everything(self) -> None:
        for client in self.clients.values():
            if client.phase is ClientPhase.ABORTED:
                self.check_aborted(client)

    @invariant()
    def aborted_server_stays_aborted(self) -> None:
        server = self.server
        if server.phase is not ServerPhase.ABORTED:
            return
        for call in (server.close_phase, server.start):
            with pytest.raises(LocalProtocolError):
                call()
        with pytest.raises(LocalProtocolError):
            _ = server.result
        assert server.phase is ServerPhase.ABORTED

    @invariant()
    def a_completed_round_is_exact(self) -> None:
        server = self.server
        if server.phase is not ServerPhase.DONE:
            return
        result = server.result
        p = self.params
        assert result.survivors == tuple(sorted(self.uploaded))
        assert len(result.survivors) >= p.threshold
        expected = self.ring_sum(self.inputs, result.survivors, p.modulus_bits)
        assert result.vector.dtype == ring_dtype(p.modulus_bits)
        assert result.vector.tobytes() == expected.tobytes()


def test_masking_machines_under_random_legal_and_illegal_events(
    make_inputs: Callable[..., dict[int, np.ndarray]],
    ring_sum: Callable[..., np.ndarray],
    check_aborted: Callable[..., None],
) -> None:
    class WithFixtures(MaskingRounds):
        def __init__(self) -> None:
            super().__init__(make_inputs, ring_sum, check_aborted)

    run_state_machine_as_test(WithFixtures, settings=SETTINGS)


# --------------------------------------------------------------------------------------------
# Inputs outside the message and array types: still only SecAggError may escape
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    [
        None,
        "1234",
        {0: 1},
        [1.5, 2.5, 3.5, 4.5],
        [2**70, 1, 2, 3],
        [[1, 2], [3]],  # numpy raises ValueError on ragged nesting
        [1, [2, 3], 4, 5],
    ],
    ids=["none", "string", "dict", "floats", "beyond_uint64", "ragged", "nested"],
)
def test_submit_input_refuses_any_non_ring_input_with_a_local_protocol_error(
    make_params: Callable[..., MaskingParams],
    harness: Callable[..., Any],
    check_aborted: Callable[..., None],
    vector: object,
) -> None:
    h = harness(make_params(4, vector_length=4)).advance_to(ClientPhase.AWAIT_INPUT)
    client = h.clients[0]
    with pytest.raises(LocalProtocolError):
        client.submit_input(vector)
    check_aborted(client)


_NOT_MESSAGES = [
    None,
    b"SAGG",
    RosterEntry(
        client_id=1, mask_public_key=_KEY_A, share_public_key=_KEY_B, seed_commitment=_COMMITMENT
    ),
]


@pytest.mark.parametrize("value", _NOT_MESSAGES, ids=["none", "bytes", "roster_entry"])
def test_client_refuses_a_non_message_with_a_secagg_error(
    make_params: Callable[..., MaskingParams],
    harness: Callable[..., Any],
    check_aborted: Callable[..., None],
    value: object,
) -> None:
    client = harness(make_params(4)).start().clients[0]
    with pytest.raises(SecAggError):
        client.receive(value)
    check_aborted(client)


@pytest.mark.parametrize("value", _NOT_MESSAGES, ids=["none", "bytes", "roster_entry"])
def test_server_refuses_a_non_message_and_keeps_its_phase(
    make_params: Callable[..., MaskingParams], harness: Callable[..., Any], value: object
) -> None:
    server = harness(make_params(4)).start().server
    with pytest.raises(SecAggError):
        server.receive(value)
    assert server.phase is ServerPhase.COLLECT_KEYS
