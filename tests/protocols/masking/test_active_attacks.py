"""The actively malicious server of issue 11, played by a :class:`Simulator` interceptor.

The interceptor sees every message in both directions. Here it *is* the server, for everything
that matters: it alters what the honest server sends and collects what the clients send back,
then does the server-side cryptography of the attack itself (Shamir reconstruction, X25519, the
PRG) and tries to recover one client's quantized input. In the semi-honest model these attacks
succeed, by design: that model trusts the server to follow the protocol (docs/threat-model.md).
In the active model the honest clients' own checks stop each of them with a specific error
before any share the attacker needs leaves them.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from protocols.graph import NeighbourGraph
from protocols.masking import MaskingClient
from protocols.masking.keys import (
    ShareKind,
    pairwise_mask_key,
    reduce_ring,
    seed_commitment,
    self_mask_key,
    shamir_x,
    share_digest,
    share_key,
)
from protocols.messages import (
    SERVER_ID,
    Abort,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    ForwardedShares,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    Message,
    RoundSetup,
    SignatureEntry,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.errors import (
    InsufficientSurvivorsError,
    ReconstructionError,
    SecAggError,
    ServerMisbehaviourError,
)
from secagg.hazmat import aead, shamir
from secagg.hazmat.kex import KeyPair, generate_keypair, keypair_from_private_bytes
from secagg.hazmat.prg import add_mask

VICTIM = 0
#: (protocol, n): the complete graph (SecAgg) and a sparse Harary graph (SecAgg+), both at the
#: planner's default parameters. At n = 30 the SecAgg+ planner picks degree 24 < n - 1.
GRAPHS = [("secagg", 7), ("secagg", 10), ("secagg+", 30)]
GRAPH_IDS = ["complete-7", "complete-10", "harary-30"]


# --------------------------------------------------------------------------------------------
# The review's attack: t - 1 mask peers for the victim, then a different view for each client
# --------------------------------------------------------------------------------------------


def _assign_drops(
    graph: NeighbourGraph, peers: Sequence[int], mask_peers: Mapping[int, frozenset[int]], t: int
) -> dict[int, set[int]]:
    """Whom to tell which of ``peers`` dropped, so that each peer's mask key gets t shares.

    A holder w may be told p dropped if it holds p's share (p is one of its mask peers) and is
    neither p nor the victim; it must still see t survivors (itself included), so it is told
    at most |mask peers| + 1 - t drops. A max-flow (Edmonds-Karp) finds the assignment.
    """
    source, sink = ("s",), ("t",)
    capacity: dict[object, dict[object, int]] = {source: {}}
    for p in peers:
        capacity[source][("p", p)] = t
        capacity[("p", p)] = {
            ("w", w): 1 for w in graph.nodes if w not in (p, VICTIM) and p in mask_peers[w]
        }
    for w in graph.nodes:
        capacity[("w", w)] = {sink: max(0, len(mask_peers[w]) + 1 - t)}
    capacity[sink] = {}
    flow: dict[tuple[object, object], int] = {}

    def residual(a: object, b: object) -> int:
        return capacity[a].get(b, 0) - flow.get((a, b), 0) + flow.get((b, a), 0)

    while True:
        parent: dict[object, object] = {source: source}
        queue = deque([source])
        while queue and sink not in parent:
            a = queue.popleft()
            for b in list(capacity[a]) + [x for x in capacity if a in capacity[x]]:
                if b not in parent and residual(a, b) > 0:
                    parent[b] = a
                    queue.append(b)
        if sink not in parent:
            break
        node: object = sink
        while node != source:
            back = parent[node]
            flow[(back, node)] = flow.get((back, node), 0) + 1
            node = back
    drops: dict[int, set[int]] = {w: set() for w in graph.nodes}
    for p in peers:
        for w in drops:
            net = flow.get((("p", p), ("w", w)), 0) - flow.get((("w", w), ("p", p)), 0)
            if net > 0:
                drops[w].add(p)
    for p in peers:
        assert sum(p in d for d in drops.values()) >= t, "the attack plan is infeasible"
    return drops


class SplitViewServer:
    """The review's attack on one victim, as an interceptor.

    Round 1: it forwards the victim only t - 1 share bundles (from ``peers``), so the victim
    masks with t - 1 peers and still reaches the threshold. Then it tells each client its own
    survivor/dropped split (:func:`_assign_drops`): every client is told the victim survived
    (t of them give its self-mask seed shares), and for each of the victim's t - 1 mask peers,
    t other clients are told that peer dropped (they give its mask-key shares). No client is
    asked for both shares of one peer. In the active model the split goes into the consistency
    round (each client is shown the survivor set that implies its split, and every signature
    collected is relayed); the honest server, which cannot verify signatures over those sets,
    aborts the round, so the attacker swallows the abort notices and sends the unmask requests
    itself (:meth:`unmask`).
    """

    def __init__(self, graph: NeighbourGraph, threshold: int) -> None:
        self.graph = graph
        self.t = threshold
        self.peers = tuple(sorted(graph.neighbours[VICTIM]))[: threshold - 1]
        self.adverts: dict[int, KeyAdvertisement] = {}
        self.mask_peers: dict[int, frozenset[int]] = {}
        self.masked: np.ndarray | None = None
        self.drops: dict[int, set[int]] = {}
        self.signatures: list[SignatureEntry] = []
        self.seed_shares: dict[int, int] = {}  # x -> share of the victim's self-mask seed
        self.key_shares: dict[int, dict[int, int]] = {p: {} for p in self.peers}
        self.responses: list[UnmaskResponse] = []
        self.unmask_errors: dict[int, SecAggError] = {}

    # -- the interceptor ------------------------------------------------------------------------

    def __call__(self, round_index: int, message: Message) -> Message | None:
        if isinstance(message, KeyAdvertisement):
            self.adverts[message.sender] = message
        elif isinstance(message, ForwardedShares):
            return self._forward(message)
        elif isinstance(message, MaskedInput) and message.sender == VICTIM:
            self.masked = message.vector.copy()
        elif isinstance(message, ConsistencyRequest):
            return dataclasses.replace(message, survivors=self.survivor_set(message.recipient))
        elif isinstance(message, ConsistencySignature):
            self.signatures.append(
                SignatureEntry(signer=message.sender, signature=message.signature)
            )
        elif isinstance(message, UnmaskRequest):
            return self.request(message.recipient, message)
        elif isinstance(message, UnmaskResponse):
            self.collect(message)
            return None
        elif isinstance(message, Abort):
            return None  # the honest server gave up; this one goes on (see unmask)
        return message

    def _forward(self, message: ForwardedShares) -> ForwardedShares:
        if message.recipient == VICTIM:
            bundles = tuple(b for b in message.bundles if b.peer in self.peers)
            assert len(bundles) == self.t - 1
            message = dataclasses.replace(message, bundles=bundles)
        self.mask_peers[message.recipient] = frozenset(b.peer for b in message.bundles)
        if len(self.mask_peers) == len(self.graph.nodes):
            self.drops = _assign_drops(self.graph, self.peers, self.mask_peers, self.t)
        return message

    def survivor_set(self, client: int) -> tuple[int, ...]:
        """The survivor set the attacker shows ``client`` (the consistency round)."""
        everyone = set(self.graph.nodes)
        if client == VICTIM:
            return tuple(sorted(everyone - (self.graph.neighbours[VICTIM] - set(self.peers))))
        return tuple(sorted(everyone - self.drops[client]))

    def request(self, client: int, template: UnmaskRequest | Abort) -> UnmaskRequest:
        """The attacker's unmask request to ``client``: its own survivor/dropped split."""
        peers = self.mask_peers[client]
        dropped = peers & self.drops.get(client, set())
        return UnmaskRequest(
            session_id=template.session_id,
            round_id=template.round_id,
            sender=template.sender,
            recipient=client,
            survivors=tuple(sorted((peers - dropped) | {client})),
            dropped=tuple(sorted(dropped)),
            signatures=tuple(self.signatures),
        )

    def collect(self, response: UnmaskResponse) -> None:
        self.responses.append(response)
        x = shamir_x(response.sender)
        for share in response.self_mask_shares:
            if share.owner == VICTIM:
                self.seed_shares[x] = share.value
        for share in response.mask_key_shares:
            if share.owner in self.key_shares:
                self.key_shares[share.owner][x] = share.value

    def unmask(self, clients: Mapping[int, MaskingClient], template: Message) -> None:
        """Active model: send every waiting client its unmask request and collect answers."""
        assert isinstance(template, Abort | UnmaskRequest)
        for client_id, client in sorted(clients.items()):
            try:
                replies = client.receive(self.request(client_id, template))
            except SecAggError as error:
                self.unmask_errors[client_id] = error
                continue
            for reply in replies:
                assert isinstance(reply, UnmaskResponse)
                self.collect(reply)

    # -- the server-side recovery -----------------------------------------------------------

    def short_of_threshold(self) -> list[str]:
        """The secrets of which the attacker holds fewer than t shares."""
        missing = [] if len(self.seed_shares) >= self.t else [f"seed of {VICTIM}"]
        return missing + [f"mask key of {p}" for p, s in self.key_shares.items() if len(s) < self.t]

    def recover(self, session_id: bytes, round_id: int, modulus_bits: int) -> np.ndarray:
        """The victim's quantized input, from its upload, its seed and its peers' mask keys."""
        assert self.masked is not None
        seed = shamir.secret_to_bytes(shamir.reconstruct(self.seed_shares, self.t))
        commitment = seed_commitment(seed, session_id, round_id, VICTIM)
        assert commitment == self.adverts[VICTIM].seed_commitment
        vector = self.masked.copy()
        add_mask(vector, self_mask_key(seed, session_id, round_id, VICTIM), subtract=True)
        victim_public = self.adverts[VICTIM].mask_public_key
        for p in self.peers:
            private = shamir.secret_to_bytes(shamir.reconstruct(self.key_shares[p], self.t))
            keys = keypair_from_private_bytes(private)
            assert keys.public_bytes == self.adverts[p].mask_public_key
            key = pairwise_mask_key(keys, victim_public, session_id, round_id, p, VICTIM)
            # The victim added -PRG(s) for a smaller peer id and +PRG(s) for a larger one.
            add_mask(vector, key, subtract=p > VICTIM)
        reduce_ring(vector, modulus_bits)
        return vector


def _attack(active_round, protocol: str, n: int, threat_model: str):
    game = active_round(protocol, n, threat_model)
    params = game.params
    if protocol == "secagg+":
        assert params.graph.max_degree < n - 1, "the planner must pick a sparse graph here"
    else:
        assert params.graph.is_complete()
    attacker = SplitViewServer(params.graph, params.threshold)
    outcome = game.run(interceptor=attacker)
    return game, attacker, outcome


@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
def test_split_view_attack_recovers_the_input_in_the_semi_honest_model(active_round, protocol, n):
    """The review's attack succeeds against semi-honest clients: that model trusts the server.

    Semi-honest mode does not protect against a server that deviates from the protocol, by
    design (docs/threat-model.md): each client checks only that it is never asked for both
    shares of one peer, and the server's differing views defeat that check.
    """
    game, attacker, outcome = _attack(active_round, protocol, n, "semi-honest")
    assert outcome.report.client_errors == {}
    # No client was asked for both shares of one peer...
    for response in attacker.responses:
        seeds = {s.owner for s in response.self_mask_shares}
        assert not seeds & {s.owner for s in response.mask_key_shares}
    # ...yet the attacker holds t shares of each secret it needs, and the input falls out.
    assert attacker.short_of_threshold() == []
    params = game.params
    recovered = attacker.recover(params.session_id, params.round_id, params.modulus_bits)
    assert recovered.dtype == game.inputs[VICTIM].dtype
    assert np.array_equal(recovered, game.inputs[VICTIM])


@pytest.mark.parametrize(("protocol", "n"), GRAPHS, ids=GRAPH_IDS)
def test_split_view_attack_fails_in_the_active_model(active_round, protocol, n):
    game, attacker, outcome = _attack(active_round, protocol, n, "active")
    report = outcome.report
    assert report.result is None
    # Round 3 went through: the victim signed its (t - 1 peers) view, as did the others.
    assert {e.signer for e in attacker.signatures} | set(report.client_errors) == set(
        game.params.graph.nodes
    )
    assert VICTIM not in report.client_errors
    waiting = {u: c for u, c in outcome.simulator.clients.items() if u not in report.client_errors}
    attacker.unmask(waiting, report_template(game))
    errors = {**report.client_errors, **attacker.unmask_errors}
    assert set(errors) == set(game.params.graph.nodes), "some client released its shares"
    for client, error in errors.items():
        assert type(error) in (InsufficientSurvivorsError, ServerMisbehaviourError), (client, error)
    assert isinstance(attacker.unmask_errors[VICTIM], InsufficientSurvivorsError)
    # Not one share left an honest client, so nothing can be reconstructed.
    assert attacker.responses == []
    assert attacker.seed_shares == {}
    assert all(shares == {} for shares in attacker.key_shares.values())
    assert len(attacker.short_of_threshold()) == len(attacker.peers) + 1
    with pytest.raises(ReconstructionError):
        attacker.recover(game.params.session_id, game.params.round_id, game.params.modulus_bits)


def report_template(game) -> Abort:
    """A server-to-client header template for the attacker's own round-4 messages."""
    return Abort(
        session_id=game.params.session_id,
        round_id=game.params.round_id,
        sender=SERVER_ID,
        recipient=VICTIM,
        reason="template",
    )


# --------------------------------------------------------------------------------------------
# Key substitution: the server puts its own keys in place of a peer's in the victim's roster
# --------------------------------------------------------------------------------------------


class KeySubstitution:
    """Replaces ``peer``'s keys in the victim's roster with the attacker's; keeps the bundle."""

    def __init__(self, peer: int) -> None:
        self.peer = peer
        self.mask: KeyPair = generate_keypair()
        self.share: KeyPair = generate_keypair()
        self.victim_share_key = b""
        self.victim_shares: EncryptedShares | None = None

    def __call__(self, round_index: int, message: Message) -> Message | None:
        if isinstance(message, KeyAdvertisement) and message.sender == VICTIM:
            self.victim_share_key = message.share_public_key
        if isinstance(message, KeyRoster) and message.recipient == VICTIM:
            entries = tuple(
                dataclasses.replace(
                    e,
                    mask_public_key=self.mask.public_bytes,
                    share_public_key=self.share.public_bytes,
                )
                if e.client_id == self.peer
                else e
                for e in message.entries
            )
            return dataclasses.replace(message, entries=entries)
        if isinstance(message, EncryptedShares) and message.sender == VICTIM:
            self.victim_shares = message
        return message

    def open_bundle(self, session_id: bytes, round_id: int) -> tuple[int, int, int, int]:
        """Decrypt the victim's bundle to ``peer``: (owner, recipient, seed share, key share)."""
        assert self.victim_shares is not None
        sealed = next(b for b in self.victim_shares.bundles if b.peer == self.peer)
        key = share_key(self.share, self.victim_share_key, session_id, round_id, VICTIM, self.peer)
        ad = aead.associated_data(session_id, round_id, VICTIM, self.peer)
        plaintext = aead.open_(key, sealed.ciphertext, ad)
        owner, recipient = (
            int.from_bytes(plaintext[:4], "big"),
            int.from_bytes(plaintext[4:8], "big"),
        )
        size = shamir.SHARE_BYTES
        seed_share = shamir.share_from_bytes(plaintext[8 : 8 + size])
        key_share = shamir.share_from_bytes(plaintext[8 + size : 8 + 2 * size])
        return owner, recipient, seed_share, key_share


@pytest.mark.parametrize(
    ("protocol", "n"), [("secagg", 7), ("secagg+", 30)], ids=["complete", "harary"]
)
def test_semi_honest_client_accepts_substituted_keys_and_leaks_its_shares(
    active_round, protocol, n
):
    """Semi-honest clients have no PKI: a substituted key is taken (out of that model's scope)."""
    game = active_round(protocol, n, "semi-honest")
    peer = min(game.params.graph.neighbours[VICTIM])
    attacker = KeySubstitution(peer)
    outcome = game.run(interceptor=attacker)
    assert VICTIM not in outcome.report.client_errors
    params = game.params
    owner, recipient, seed_share, key_share = attacker.open_bundle(
        params.session_id, params.round_id
    )
    assert (owner, recipient) == (VICTIM, peer)
    # The shares are the real ones: they match the digests the victim sent for that holder.
    assert attacker.victim_shares is not None
    digest = next(d for d in attacker.victim_shares.digests if d.holder == peer)
    context = (params.session_id, params.round_id, VICTIM, peer)
    assert share_digest(seed_share, ShareKind.SELF_MASK_SEED, *context) == digest.seed_share
    assert share_digest(key_share, ShareKind.MASK_KEY, *context) == digest.key_share


@pytest.mark.parametrize(
    ("protocol", "n"), [("secagg", 7), ("secagg+", 30)], ids=["complete", "harary"]
)
def test_active_client_refuses_substituted_keys(active_round, protocol, n):
    game = active_round(protocol, n, "active")
    peer = min(game.params.graph.neighbours[VICTIM])
    attacker = KeySubstitution(peer)
    outcome = game.run(interceptor=attacker)
    error = outcome.report.client_errors[VICTIM]
    assert type(error) is ServerMisbehaviourError
    assert f"client {peer}" in str(error) and "substituted" in str(error)
    assert attacker.victim_shares is None  # the victim sealed nothing
    with pytest.raises(AssertionError):
        attacker.open_bundle(game.params.session_id, game.params.round_id)


# --------------------------------------------------------------------------------------------
# The server's choice of threshold and neighbourhood
# --------------------------------------------------------------------------------------------


def _setup_tamper(change):
    """An interceptor that rewrites the victim's RoundSetup, recording what the victim sends."""
    sent: list[Message] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, RoundSetup) and message.recipient == VICTIM:
            return change(message)
        if message.sender == VICTIM:
            sent.append(message)
        return message

    return interceptor, sent


def _low_threshold(setup: RoundSetup) -> RoundSetup:
    return dataclasses.replace(setup, threshold=2)


@pytest.mark.parametrize(
    ("protocol", "n"), [("secagg", 7), ("secagg+", 30)], ids=["complete", "harary"]
)
def test_semi_honest_client_takes_the_servers_low_threshold(active_round, protocol, n):
    game = active_round(protocol, n, "semi-honest")
    assert game.threshold > 2
    interceptor, sent = _setup_tamper(_low_threshold)
    outcome = game.run(interceptor=interceptor)
    assert VICTIM not in outcome.report.client_errors
    assert any(isinstance(m, EncryptedShares) for m in sent)  # it shared at t = 2


@pytest.mark.parametrize(
    ("protocol", "n"), [("secagg", 7), ("secagg+", 30)], ids=["complete", "harary"]
)
def test_active_client_refuses_a_threshold_below_its_minimum(active_round, protocol, n):
    game = active_round(protocol, n, "active")
    interceptor, sent = _setup_tamper(_low_threshold)
    outcome = game.run(interceptor=interceptor)
    error = outcome.report.client_errors[VICTIM]
    assert type(error) is ServerMisbehaviourError
    assert "threshold 2 is below" in str(error)
    assert sent == []  # not even a key advertisement


def _foreign_neighbour(game):
    """Swap one of the victim's neighbours for a client outside its neighbourhood."""
    graph = game.params.graph
    neighbours = set(graph.neighbours[VICTIM])
    outsider = min(set(graph.nodes) - neighbours - {VICTIM})
    swapped = tuple(sorted((neighbours - {max(neighbours)}) | {outsider}))
    return lambda setup: dataclasses.replace(setup, neighbours=swapped)


def _one_neighbour_fewer(game):
    neighbours = sorted(game.params.graph.neighbours[VICTIM])
    return lambda setup: dataclasses.replace(setup, neighbours=tuple(neighbours[1:]))


@pytest.mark.parametrize(
    ("protocol", "n", "tamper"),
    [
        ("secagg+", 30, _foreign_neighbour),
        ("secagg+", 30, _one_neighbour_fewer),
        ("secagg", 7, _one_neighbour_fewer),
    ],
    ids=["harary-swapped", "harary-fewer", "complete-fewer"],
)
@pytest.mark.parametrize("threat_model", ["semi-honest", "active"])
def test_neighbour_list_must_be_the_public_graphs(active_round, protocol, n, tamper, threat_model):
    """Semi-honest clients take the server's neighbour list; active ones check it themselves."""
    game = active_round(protocol, n, threat_model)
    interceptor, sent = _setup_tamper(tamper(game))
    outcome = game.run(interceptor=interceptor)
    if threat_model == "semi-honest":
        assert isinstance(sent[0], KeyAdvertisement)  # the setup was accepted
        return
    error = outcome.report.client_errors[VICTIM]
    assert type(error) is ServerMisbehaviourError
    assert "neighbours" in str(error)
    assert sent == []


# --------------------------------------------------------------------------------------------
# The server must not give clients different neighbourhood sizes (independent review finding)
# --------------------------------------------------------------------------------------------


def _setup_for(client, roster, degree: int, threshold: int):
    from protocols.graph import harary_graph
    from protocols.messages import SERVER_ID, RoundSetup

    graph = harary_graph(
        roster.ids, degree, seed=roster.order_seed(client.session_id, client.round_id)
    )
    return RoundSetup(
        session_id=client.session_id,
        round_id=client.round_id,
        sender=SERVER_ID,
        recipient=client.client_id,
        threshold=threshold,
        vector_length=4,
        modulus_bits=16,
        neighbours=tuple(sorted(graph.neighbours[client.client_id])),
    )


@pytest.mark.parametrize("pinned", [None, 4])
def test_active_client_refuses_a_degree_other_than_the_rosters(pinned):
    """With per-client degrees a server could give one group of holders k = 2, t = 2 and another
    k = 8, t = 5 and have them accept different survivor sets for one owner; the roster pins the
    degree (complete graph when it pins none), so every honest client gets the same k."""
    from protocols.identity import trusted_setup
    from protocols.masking import MaskingClient
    from secagg.errors import ServerMisbehaviourError

    roster, identities = trusted_setup(range(10), degree=pinned)
    expected = 9 if pinned is None else pinned
    for degree in sorted({2, 4, 6, 8, 9} - {expected}):
        client = MaskingClient(
            0, session_id=bytes(16), round_id=3, identity=identities[0], roster=roster
        )
        with pytest.raises(ServerMisbehaviourError, match="pins"):
            client.receive(_setup_for(client, roster, degree, threshold=degree // 2 + 1))
    client = MaskingClient(
        0, session_id=bytes(16), round_id=3, identity=identities[0], roster=roster
    )
    assert client.receive(_setup_for(client, roster, expected, threshold=expected))


def test_active_client_refuses_a_threshold_below_the_rosters_pin():
    from protocols.identity import trusted_setup
    from protocols.masking import MaskingClient
    from secagg.errors import ServerMisbehaviourError

    roster, identities = trusted_setup(range(10), degree=6, threshold=6)
    client = MaskingClient(
        0, session_id=bytes(16), round_id=3, identity=identities[0], roster=roster
    )
    with pytest.raises(ServerMisbehaviourError, match="below"):
        client.receive(_setup_for(client, roster, 6, threshold=5))
