"""Shared helpers for the masking-protocol tests.

Test modules reach these through fixtures (each returns a plain function or class), so no test
imports ``conftest`` by name. The :class:`Harness` drives a :class:`MaskingServer` and its
:class:`MaskingClient` objects by hand, one protocol round per :meth:`Harness.advance`, so a test
can stop at any phase and feed one client a crafted message instead of the honest one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import numpy as np
import numpy.typing as npt
import pytest

from protocols._transitions import ClientPhase
from protocols.graph import complete_graph, harary_graph, secagg_threshold
from protocols.masking import MaskingClient, MaskingParams, MaskingServer
from protocols.messages import SERVER_ID, Abort, Message
from secagg.encoding import ring_dtype
from secagg.errors import LocalProtocolError

RingArray = npt.NDArray[np.unsignedinteger]
GraphKind = Literal["complete", "harary"]


def build_params(
    num_clients: int = 4,
    *,
    graph: GraphKind = "complete",
    degree: int = 2,
    threshold: int | None = None,
    vector_length: int = 8,
    modulus_bits: int = 16,
    round_id: int = 1,
    session_id: bytes | None = None,
) -> MaskingParams:
    """Semi-honest parameters for ``num_clients`` clients (ids 0 .. n-1) on a complete or
    Harary graph (the active model's tests build theirs with a trusted roster).

    The default threshold is a strict majority of the smallest neighbourhood (owner included).
    """
    ids = range(num_clients)
    neighbour_graph = complete_graph(ids) if graph == "complete" else harary_graph(ids, degree)
    if threshold is None:
        smallest = min(len(p) for p in neighbour_graph.neighbours.values()) + 1
        threshold = secagg_threshold(smallest)
    return MaskingParams(
        session_id=session_id if session_id is not None else secrets.token_bytes(16),
        round_id=round_id,
        graph=neighbour_graph,
        threshold=threshold,
        vector_length=vector_length,
        modulus_bits=modulus_bits,
        threat_model="semi-honest",
    )


def build_inputs(
    params: MaskingParams, *, seed: int = 0, value_bits: int | None = None
) -> dict[int, RingArray]:
    """Uniform inputs in [0, 2^value_bits) for every client, in the ring's dtype."""
    bits = params.modulus_bits if value_bits is None else value_bits
    rng = np.random.default_rng(seed)
    dtype = ring_dtype(params.modulus_bits)
    return {
        u: rng.integers(0, 2**bits, size=params.vector_length, dtype=np.uint64).astype(dtype)
        for u in params.graph.nodes
    }


def plain_sum(inputs: Mapping[int, RingArray], ids: Iterable[int], modulus_bits: int) -> RingArray:
    """The oracle: sum of the given clients' inputs mod 2^modulus_bits, in the ring's dtype."""
    dtype = ring_dtype(modulus_bits)
    length = len(next(iter(inputs.values())))
    total = np.zeros(length, dtype=np.uint64)
    for u in ids:
        total += inputs[u].astype(np.uint64)  # wraps mod 2^64, a multiple of 2^modulus_bits
    if modulus_bits < 64:
        total &= np.uint64((1 << modulus_bits) - 1)
    return total.astype(dtype)


def abort_probe(client: MaskingClient) -> Abort:
    """A well-formed message for ``client`` (session, round and recipient all right)."""
    return Abort(
        session_id=client.session_id,
        round_id=client.round_id,
        sender=SERVER_ID,
        recipient=client.client_id,
        reason="probe",
    )


def assert_aborted(client: MaskingClient, *probes: Message) -> None:
    """``client`` is ABORTED, holds no secret, and refuses every later call locally."""
    assert client.phase is ClientPhase.ABORTED
    assert client._held_shares == {}
    assert client._mask_keys is None
    assert client._share_keys is None
    assert client._self_mask_seed is None
    for probe in (*probes, abort_probe(client)):
        with pytest.raises(LocalProtocolError):
            client.receive(probe)
    with pytest.raises(LocalProtocolError):
        client.submit_input(np.zeros(max(client._vector_length, 1), dtype=np.uint32))
    assert client.phase is ClientPhase.ABORTED


class Harness:
    """A server and its clients, driven by hand one protocol round at a time.

    ``pending`` holds the server's not yet delivered messages, one per client. ``advance``
    delivers them (skipping ``silent`` clients), submits the inputs of clients that reach
    ``AWAIT_INPUT``, hands every reply to the server and closes the server's phase.
    """

    def __init__(
        self,
        params: MaskingParams,
        inputs: Mapping[int, RingArray] | None = None,
    ) -> None:
        self.params = params
        self.inputs = dict(inputs) if inputs is not None else build_inputs(params)
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
        self.pending: dict[int, Message] = {}
        self.delivered: list[Message] = []
        self.sent: list[Message] = []
        self.started = False

    def start(self) -> Harness:
        """Round 0 begins: every client has a pending :class:`RoundSetup`."""
        self.pending = {m.recipient: m for m in self.server.start()}
        self.started = True
        return self

    def deliver(self, client_id: int, *, submit: bool = True) -> list[Message]:
        """Hand ``client_id`` its pending message; returns (and records) what it sends back."""
        message = self.pending.pop(client_id)
        client = self.clients[client_id]
        self.delivered.append(message)
        replies = client.receive(message)
        if submit and client.phase is ClientPhase.AWAIT_INPUT:
            replies += client.submit_input(self.inputs[client_id])
        self.sent.extend(replies)
        return replies

    def advance(self, *, silent: Iterable[int] = ()) -> Harness:
        """Play one protocol round: deliver, collect the replies, close the server's phase."""
        if not self.started:
            return self.start()
        quiet = set(silent)
        for client_id in sorted(self.pending):
            if client_id in quiet:
                continue
            for reply in self.deliver(client_id):
                self.server.receive(reply)
        self.pending = {m.recipient: m for m in self.server.close_phase()}
        return self

    def advance_to(self, phase: ClientPhase, *, silent: Iterable[int] = ()) -> Harness:
        """Advance until the clients wait in ``phase`` (AWAIT_INPUT: shares delivered, unsent)."""
        rounds = {
            ClientPhase.AWAIT_SETUP: 1,
            ClientPhase.AWAIT_ROSTER: 2,
            ClientPhase.AWAIT_SHARES: 3,
            ClientPhase.AWAIT_INPUT: 3,
            ClientPhase.AWAIT_UNMASK_REQUEST: 4,
            ClientPhase.DONE: 5,
        }[phase]
        for _ in range(rounds):
            self.advance(silent=silent)
        if phase is ClientPhase.AWAIT_INPUT:
            for client_id in sorted(self.pending):
                self.deliver(client_id, submit=False)
        return self


@pytest.fixture(scope="session")
def make_params() -> Callable[..., MaskingParams]:
    """Factory: :func:`build_params`."""
    return build_params


@pytest.fixture(scope="session")
def make_inputs() -> Callable[..., dict[int, RingArray]]:
    """Factory: :func:`build_inputs`."""
    return build_inputs


@pytest.fixture(scope="session")
def ring_sum() -> Callable[..., RingArray]:
    """The plaintext oracle: :func:`plain_sum`."""
    return plain_sum


@pytest.fixture(scope="session")
def harness() -> type[Harness]:
    """The manual driver class, :class:`Harness`."""
    return Harness


@pytest.fixture(scope="session")
def check_aborted() -> Callable[..., None]:
    """:func:`assert_aborted`: ABORTED, secrets dropped, every later call refused locally."""
    return assert_aborted
