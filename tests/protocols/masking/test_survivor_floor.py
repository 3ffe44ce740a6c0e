"""The survivor floor of a masking round (``min_survivors``), enforced by the server and by
every client before any unmask share leaves a client (issue 12, "DP accounting with nothing off
the books").

Distributed DP splits the noise into n shares, one per client, so a sum of fewer inputs carries
less noise. A server that unmasks fewer than n uploads, or that shows its clients a survivor set
of fewer than n, shrinks the noise of what it learns. The server's own floor aborts the round
before any :class:`UnmaskRequest`; each client's floor (its own setting) refuses a consistency
round or unmask request naming fewer survivors, whatever the server's parameters say. The
noise-shrinking server is played by a :class:`Simulator` interceptor, as in
``test_active_attacks.py``: without the clients' floor it recovers the exact sum of a smaller
set of clients; with it, not one share leaves an honest client.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping

import numpy as np
import pytest

from protocols.masking import MaskingClient, MaskingServer
from protocols.masking.keys import pairwise_mask_key, reduce_ring, self_mask_key, shamir_x
from protocols.messages import (
    SERVER_ID,
    Abort,
    ConsistencyRequest,
    ConsistencySignature,
    KeyAdvertisement,
    MaskedInput,
    Message,
    SignatureEntry,
    UnmaskRequest,
    UnmaskResponse,
)
from protocols.rounds import RoundPolicy
from protocols.simulate import Interceptor, Simulator, plan_masking_round
from secagg.errors import (
    InsufficientSurvivorsError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
)
from secagg.hazmat import shamir
from secagg.hazmat.kex import keypair_from_private_bytes
from secagg.hazmat.prg import add_mask

Change = Callable[[int, Message], Message | None]


def _log(messages: list[Message], change: Change | None = None) -> Interceptor:
    """An interceptor that records every message after ``change`` rewrote it."""

    def tap(round_index: int, message: Message) -> Message | None:
        changed = message if change is None else change(round_index, message)
        if changed is not None:
            messages.append(changed)
        return changed

    return tap


def _simulator(game, server_floor: int, client_floor: int, **options) -> Simulator:
    """The game's round with the server's and the clients' floors set independently."""
    params = dataclasses.replace(game.params, min_survivors=server_floor)
    active = game.threat_model == "active"
    return Simulator(
        params,
        game.inputs,
        roster=game.roster if active else None,
        identities=game.identities if active else None,
        min_survivors=client_floor,
        **options,
    )


def _kinds(messages: list[Message]) -> set[type]:
    return {type(m) for m in messages}


# --------------------------------------------------------------------------------------------
# The server's floor
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threat_model", ["semi-honest", "active"])
def test_server_below_its_floor_aborts_before_any_unmask_request(active_round, threat_model):
    game = active_round("secagg", 6, threat_model)
    messages: list[Message] = []
    # Five of six upload; the floor is six; the threshold (at most 4) would have allowed it.
    simulator = _simulator(game, 6, 0, dropouts={5: 1}, interceptor=_log(messages))
    report = simulator.run()
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert "minimum of 6 survivors" in str(report.error)
    assert report.result is None
    assert not _kinds(messages) & {ConsistencyRequest, UnmaskRequest, UnmaskResponse}
    with pytest.raises(LocalProtocolError):
        _ = simulator.server.result
    # The aborted server kept no running sum.
    assert simulator.server._sum.size == 0


@pytest.mark.parametrize("threat_model", ["semi-honest", "active"])
def test_round_at_its_floor_is_exact(active_round, threat_model):
    game = active_round("secagg", 6, threat_model)
    # A round-3 dropout uploaded: five survivors meet a floor of five.
    simulator = _simulator(game, 5, 5, dropouts={0: 1, 5: 3})
    outcome = game.play(simulator)
    outcome.assert_exact()
    assert outcome.report.result is not None
    assert outcome.report.result.survivors == (1, 2, 3, 4, 5)


def test_a_survivor_that_does_not_sign_still_counts_for_the_floor(active_round):
    """A client silent in the consistency round uploaded: it is in the sum and in the count
    (the server checks the floor again before its unmask requests, over the same set)."""
    game = active_round("secagg", 6, "active")
    messages: list[Message] = []
    report = _simulator(game, 6, 6, dropouts={2: 3}, interceptor=_log(messages)).run()
    assert report.error is None and report.result is not None
    assert len(report.result.survivors) == 6
    assert sum(isinstance(m, UnmaskRequest) for m in messages) == 5


@pytest.mark.parametrize("floor", [-1, True, 1.5, 7])
def test_masking_params_refuse_a_floor_that_cannot_be_met(make_params, floor):
    params = make_params(6)
    with pytest.raises(ParameterError, match="min_survivors"):
        dataclasses.replace(params, min_survivors=floor)


@pytest.mark.parametrize("floor", [-1, True, "3"])
def test_policy_and_client_refuse_a_malformed_floor(floor):
    with pytest.raises(ParameterError, match="min_survivors"):
        RoundPolicy("secagg", min_survivors=floor)
    with pytest.raises(ParameterError, match="min_survivors"):
        MaskingClient(
            0, session_id=bytes(16), round_id=0, threat_model="semi-honest", min_survivors=floor
        )


@pytest.mark.parametrize(("protocol", "complete"), [("secagg", True), ("secagg+", False)])
def test_planned_round_hands_the_policys_floor_to_server_and_clients(protocol, complete):
    degree = None if complete else 4
    policy = RoundPolicy(protocol, threat_model="semi-honest", degree=degree, min_survivors=7)
    ids = list(range(10))
    planned = plan_masking_round(
        policy, ids, session_id=bytes(16), round_id=3, vector_length=2, modulus_bits=8
    )
    assert planned.params.min_survivors == 7
    zeros = {u: np.zeros(2, dtype=np.uint8) for u in ids}
    simulator = planned.simulator(zeros)
    # A semi-honest client on a sparse graph sees only its neighbourhood: it cannot count them.
    expected = 7 if complete else 0
    assert {c.min_survivors for c in simulator.clients.values()} == {expected}
    report = simulator.run()
    assert report.error is None and report.result is not None


# --------------------------------------------------------------------------------------------
# The clients' floor, against a server that names fewer survivors
# --------------------------------------------------------------------------------------------


def _drop_from_consistency_set(left_out: set[int]) -> Change:
    def change(round_index: int, message: Message) -> Message:
        if isinstance(message, ConsistencyRequest):
            named = tuple(u for u in message.survivors if u not in left_out)
            return dataclasses.replace(message, survivors=named)
        return message

    return change


@pytest.mark.parametrize(("protocol", "n", "degree"), [("secagg", 6, None), ("secagg+", 10, 6)])
def test_clients_refuse_a_consistency_set_below_their_floor(active_round, protocol, n, degree):
    """The server has no floor (it lies); every client has its own, n: none signs, none
    releases a share, and nothing is summed."""
    game = active_round(protocol, n, "active", degree=degree)
    left_out = {n - 2, n - 1}
    messages: list[Message] = []
    tap = _log(messages, _drop_from_consistency_set(left_out))
    report = _simulator(game, 0, n, interceptor=tap).run()
    assert report.result is None
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert set(report.client_errors) == set(range(n))
    for client, error in report.client_errors.items():
        if client in left_out:
            assert type(error) is RemoteProtocolError  # "leaves out this client"
        else:
            assert type(error) is ServerMisbehaviourError, error
            assert f"names {n - 2} survivors, below the {n}" in str(error)
    assert not _kinds(messages) & {ConsistencySignature, UnmaskResponse}


def test_without_a_floor_the_same_set_is_signed(active_round):
    """The control: the clients' floor is what stops the smaller set, not another check."""
    game = active_round("secagg", 6, "active")
    messages: list[Message] = []
    tap = _log(messages, _drop_from_consistency_set({5}))
    report = _simulator(game, 0, 0, interceptor=tap).run()
    signers = {m.sender for m in messages if isinstance(m, ConsistencySignature)}
    assert signers == {0, 1, 2, 3, 4}
    assert set(report.client_errors) == {5}


def test_clients_refuse_a_consistency_set_padded_with_strangers(active_round):
    """Padding the count with ids that are not on the roster does not meet the floor."""
    game = active_round("secagg", 6, "active")

    def pad(round_index: int, message: Message) -> Message:
        if isinstance(message, ConsistencyRequest):
            named = (*(u for u in message.survivors if u != 5), 1000)
            return dataclasses.replace(message, survivors=named)
        return message

    messages: list[Message] = []
    report = _simulator(game, 0, 6, interceptor=_log(messages, pad)).run()
    assert report.result is None
    for client in range(5):
        error = report.client_errors[client]
        assert type(error) is ServerMisbehaviourError and "not on the trusted roster" in str(error)
    assert not _kinds(messages) & {ConsistencySignature, UnmaskResponse}


def _call_dropped(count: int) -> Change:
    """A semi-honest server's forged unmask requests: ``count`` survivors called dropped."""

    def change(round_index: int, message: Message) -> Message:
        if isinstance(message, UnmaskRequest):
            others = [u for u in message.survivors if u != message.recipient]
            moved = tuple(others[:count])
            message = dataclasses.replace(
                message,
                survivors=tuple(u for u in message.survivors if u not in moved),
                dropped=tuple(sorted((*message.dropped, *moved))),
            )
        return message

    return change


def test_semi_honest_clients_refuse_an_unmask_request_below_their_floor(active_round):
    game = active_round("secagg", 6, "semi-honest")
    messages: list[Message] = []
    report = _simulator(game, 0, 6, interceptor=_log(messages, _call_dropped(2))).run()
    assert set(report.client_errors) == set(range(6))
    assert all(type(e) is ServerMisbehaviourError for e in report.client_errors.values())
    assert "names 4 survivors, below the 6" in str(report.client_errors[0])
    assert not [m for m in messages if isinstance(m, UnmaskResponse)]
    assert report.result is None


def test_semi_honest_clients_without_a_floor_answer_the_same_request(active_round):
    """The control: without the floor, the forged request is answered (semi-honest trusts the
    server), and the shares of the two 'dropped' survivors' mask keys leave every client."""
    game = active_round("secagg", 6, "semi-honest")
    messages: list[Message] = []
    report = _simulator(game, 0, 0, interceptor=_log(messages, _call_dropped(2))).run()
    responses = [m for m in messages if isinstance(m, UnmaskResponse)]
    assert len(responses) == 6 and report.client_errors == {}
    assert all(len(r.mask_key_shares) == 2 for r in responses)


# --------------------------------------------------------------------------------------------
# The noise-shrinking server: the sum of fewer clients, recovered exactly (or not at all)
# --------------------------------------------------------------------------------------------


class ShrinkingServer:
    """Shows every client the same survivor set ``named``, smaller than the set that uploaded.

    Every uploader outside ``named`` is treated as dropped: the clients in ``named`` are asked
    for the self-mask seed shares of ``named`` and the mask-key shares of the others, so the
    attacker can sum the uploads of ``named`` alone, a sum with fewer noise shares. The honest
    server cannot verify signatures over ``named`` and gives up; the attacker swallows its
    notices and sends the unmask requests itself (:meth:`unmask`).
    """

    def __init__(self, named: frozenset[int], everyone: frozenset[int], threshold: int) -> None:
        self.named = named
        self.others = everyone - named
        self.t = threshold
        self.adverts: dict[int, KeyAdvertisement] = {}
        self.uploads: dict[int, np.ndarray] = {}
        self.signatures: list[SignatureEntry] = []
        self.seed_shares: dict[int, dict[int, int]] = {u: {} for u in named}
        self.key_shares: dict[int, dict[int, int]] = {u: {} for u in self.others}
        self.unmask_errors: dict[int, SecAggError] = {}

    def __call__(self, round_index: int, message: Message) -> Message | None:
        if isinstance(message, KeyAdvertisement):
            self.adverts[message.sender] = message
        elif isinstance(message, MaskedInput):
            self.uploads[message.sender] = message.vector.copy()
        elif isinstance(message, ConsistencyRequest):
            return dataclasses.replace(message, survivors=tuple(sorted(self.named)))
        elif isinstance(message, ConsistencySignature):
            self.signatures.append(
                SignatureEntry(signer=message.sender, signature=message.signature)
            )
        elif isinstance(message, UnmaskResponse | Abort):
            return None
        return message

    def unmask(self, clients: Mapping[int, MaskingClient], session_id: bytes, round_id: int):
        for client_id in sorted(self.named):
            request = UnmaskRequest(
                session_id=session_id,
                round_id=round_id,
                sender=SERVER_ID,
                recipient=client_id,
                survivors=tuple(sorted(self.named)),
                dropped=tuple(sorted(self.others)),
                signatures=tuple(self.signatures),
            )
            try:
                replies = clients[client_id].receive(request)
            except SecAggError as error:
                self.unmask_errors[client_id] = error
                continue
            for reply in replies:
                assert isinstance(reply, UnmaskResponse)
                x = shamir_x(reply.sender)
                for share in reply.self_mask_shares:
                    self.seed_shares[share.owner][x] = share.value
                for share in reply.mask_key_shares:
                    self.key_shares[share.owner][x] = share.value

    def recover(self, session_id: bytes, round_id: int, modulus_bits: int) -> np.ndarray:
        """The ring sum of the inputs of ``named`` alone."""
        total = np.zeros_like(next(iter(self.uploads.values())))
        for u in sorted(self.named):
            np.add(total, self.uploads[u], out=total)
            seed = shamir.secret_to_bytes(shamir.reconstruct(self.seed_shares[u], self.t))
            add_mask(total, self_mask_key(seed, session_id, round_id, u), subtract=True)
        for v in sorted(self.others):
            private = shamir.secret_to_bytes(shamir.reconstruct(self.key_shares[v], self.t))
            keys = keypair_from_private_bytes(private)
            for u in sorted(self.named):
                public = self.adverts[u].mask_public_key
                key = pairwise_mask_key(keys, public, session_id, round_id, v, u)
                add_mask(total, key, subtract=u < v)  # undo what u added for its peer v
        reduce_ring(total, modulus_bits)
        return total


def _shrink(game, client_floor: int):
    params = game.params
    everyone = frozenset(params.graph.nodes)
    named = frozenset(sorted(everyone)[: params.threshold])
    attacker = ShrinkingServer(named, everyone, params.threshold)
    simulator = _simulator(game, 0, client_floor, interceptor=attacker)
    report = simulator.run()
    # Aborted clients get the forged request too: they must refuse it.
    attacker.unmask(simulator.clients, params.session_id, params.round_id)
    return attacker, report


def test_without_the_floor_a_server_learns_the_sum_of_fewer_clients(active_round, oracle):
    """The finding, at the protocol level: t of n noise shares, and the exact sum of t."""
    game = active_round("secagg", 6, "active")
    attacker, _ = _shrink(game, client_floor=0)
    assert len(attacker.named) == game.params.threshold < 6
    assert attacker.unmask_errors == {}
    params = game.params
    recovered = attacker.recover(params.session_id, params.round_id, params.modulus_bits)
    assert np.array_equal(recovered, oracle(game.inputs, attacker.named, params.modulus_bits))


def test_with_the_floor_the_shrinking_server_gets_no_share(active_round):
    game = active_round("secagg", 6, "active")
    attacker, report = _shrink(game, client_floor=6)
    assert report.result is None
    named_errors = {u: report.client_errors[u] for u in attacker.named}
    assert all(type(e) is ServerMisbehaviourError for e in named_errors.values())
    assert attacker.signatures == []
    # Aborted, they refuse the forged unmask request too: no share of anyone left them.
    assert set(attacker.unmask_errors) == attacker.named
    assert all(type(e) is LocalProtocolError for e in attacker.unmask_errors.values())
    assert all(shares == {} for shares in attacker.seed_shares.values())
    assert all(shares == {} for shares in attacker.key_shares.values())


# --------------------------------------------------------------------------------------------
# The client's floor is its own setting, and survives a saved state
# --------------------------------------------------------------------------------------------


def test_client_floor_round_trips_through_the_saved_state(make_params):
    params = make_params(4)
    server = MaskingServer(params)
    client = MaskingClient(
        1, session_id=params.session_id, round_id=1, threat_model="semi-honest", min_survivors=4
    )
    setup = next(m for m in server.start() if m.recipient == 1)
    client.receive(setup)
    saved = client.export_state()
    assert json.loads(saved)["min_survivors"] == 4
    again = MaskingClient.from_state(saved)
    assert again.min_survivors == 4
    assert again.export_state() == saved
    for bad in (-1, "4", None, True):
        raw = json.loads(saved)
        raw["min_survivors"] = bad
        with pytest.raises(LocalProtocolError):
            MaskingClient.from_state(json.dumps(raw).encode("ascii"))
