"""A failed client keeps no secret reachable, nor does the error the simulator stores (issue 11).

The walk follows :func:`gc.get_referents` from the failed client and from its entry in
``SimulationReport.client_errors``, through every container, instance, traceback and frame
(their locals included), and stops only at modules, classes, functions and code (shared,
global things that hold no round state). The secrets looked for are the client's held shares,
its self-mask seed, its mask and share private keys and its raw input, taken from the client
just before the step that fails. The same walk checks that the share private key is gone once
round 1 is over, and that everything is gone once a round is over.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import types
from collections.abc import Iterator

import numpy as np
import pytest

from protocols.messages import ForwardedShares, KeyRoster, Message, UnmaskRequest
from secagg.errors import (
    InsufficientSurvivorsError,
    LocalProtocolError,
    ServerMisbehaviourError,
)
from secagg.hazmat.kex import KeyPair

VICTIM = 2
_STOP = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)


def reachable(*roots: object, limit: int = 200_000) -> Iterator[object]:
    """Every object reachable from ``roots`` (not through modules, classes or functions)."""
    module_dicts = {id(vars(m)) for m in list(sys.modules.values()) if m is not None}
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _STOP) or id(obj) in module_dicts:
            continue
        seen.add(id(obj))
        assert len(seen) < limit, "the walk reached far more than one client's state"
        yield obj
        stack.extend(gc.get_referents(obj))


class Secrets:
    """The victim's secrets, snapshotted before each message it handles."""

    def __init__(self) -> None:
        self.shares: set[int] = set()
        self.blobs: set[bytes] = set()  # seed and private-key bytes
        self.input: np.ndarray | None = None

    def snapshot(self, client: object) -> None:
        for seed_share, key_share in client._held_shares.values():
            self.shares |= {seed_share, key_share}
        if client._self_mask_seed is not None:
            self.blobs.add(client._self_mask_seed)
        for keys in (client._mask_keys, client._share_keys):
            if keys is not None:
                self.blobs.add(keys.private_bytes)

    def found_in(self, *roots: object) -> list[str]:
        """What of the secrets is reachable from ``roots``, in words."""
        found = []
        for obj in reachable(*roots):
            if isinstance(obj, int) and not isinstance(obj, bool) and obj in self.shares:
                found.append(f"a share ({type(obj).__name__})")
            elif isinstance(obj, bytes | bytearray) and any(b in obj for b in self.blobs):
                found.append("a seed or private-key byte string")
            elif isinstance(obj, KeyPair) and obj.private_bytes in self.blobs:
                found.append("a private key object")
            elif isinstance(obj, types.FrameType | types.TracebackType):
                found.append(f"a {type(obj).__name__} (its locals may hold anything)")
            elif isinstance(obj, np.ndarray) and self.input is not None:
                same = obj.shape == self.input.shape and np.array_equal(obj, self.input)
                if obj is self.input or same:
                    found.append("the raw input")
        return found


def _watch(game, secrets: Secrets, attack=None):
    """A simulator whose interceptor snapshots the victim's secrets before each message."""
    holder: dict[str, object] = {}

    def interceptor(round_index: int, message: Message) -> Message:
        if message.recipient == VICTIM and "sim" in holder:
            secrets.snapshot(holder["sim"].clients[VICTIM])
        if attack is not None and message.recipient == VICTIM:
            return attack(message)
        return message

    simulator = game.simulator(interceptor=interceptor)
    holder["sim"] = simulator
    secrets.input = game.inputs[VICTIM]
    return simulator


def _overlapping_unmask_request(message: Message) -> Message:
    if isinstance(message, UnmaskRequest):
        return dataclasses.replace(message, dropped=(*message.dropped, message.survivors[-1]))
    return message


def _too_few_bundles(message: Message) -> Message:
    if isinstance(message, ForwardedShares):
        return dataclasses.replace(message, bundles=message.bundles[:1])
    return message


FAILURES = {
    # round 4, holding every peer's shares
    "unmask": (_overlapping_unmask_request, ServerMisbehaviourError),
    # round 2, holding its seed, its mask key and the opened shares
    "forwarded": (_too_few_bundles, InsufficientSurvivorsError),
}


@pytest.mark.parametrize("threat_model", ["semi-honest", "active"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_failed_client_and_its_stored_error_hold_no_secret(active_round, threat_model, failure):
    attack, error_type = FAILURES[failure]
    game = active_round("secagg", 6, threat_model)
    secrets = Secrets()
    simulator = _watch(game, secrets, attack)
    report = simulator.run()
    error = report.client_errors[VICTIM]
    assert type(error) is error_type
    assert secrets.shares and secrets.blobs  # the walk has something to look for
    client = simulator.clients[VICTIM]
    assert error.__traceback__ is None and error.__context__ is None
    assert secrets.found_in(client) == []
    assert secrets.found_in(error) == []
    assert secrets.found_in(report.client_errors) == []


@pytest.mark.parametrize("threat_model", ["semi-honest", "active"])
def test_client_whose_input_is_refused_keeps_no_secret(active_round, threat_model):
    """The input step fails with the raw input in its frames: none of them survives."""
    game = active_round("secagg", 6, threat_model)
    inputs = dict(game.inputs)
    bad = inputs[VICTIM].copy()
    bad[0] = 1 << game.params.modulus_bits  # outside the ring
    inputs[VICTIM] = bad
    secrets = Secrets()
    holder: dict[str, object] = {}

    def interceptor(round_index: int, message: Message) -> Message:
        if message.recipient == VICTIM and "sim" in holder:
            secrets.snapshot(holder["sim"].clients[VICTIM])
        return message

    simulator = game.simulator(interceptor=interceptor, inputs=inputs)
    holder["sim"] = simulator
    secrets.input = bad
    report = simulator.run()
    error = report.client_errors[VICTIM]
    assert type(error) is LocalProtocolError
    client = simulator.clients[VICTIM]
    assert secrets.found_in(client) == []
    assert secrets.found_in(error) == []
    assert report.result is not None  # the others' round went on without it


@pytest.mark.parametrize("threat_model", ["semi-honest", "active"])
def test_share_key_gone_after_round_one_and_everything_after_the_round(active_round, threat_model):
    game = active_round("secagg", 6, threat_model)
    share_keys: set[bytes] = set()
    leaks: list[str] = []
    holder: dict[str, object] = {}

    def interceptor(round_index: int, message: Message) -> Message:
        client = holder["sim"].clients[VICTIM] if "sim" in holder else None
        if client is not None and isinstance(message, KeyRoster) and message.recipient == VICTIM:
            share_keys.add(client._share_keys.private_bytes)
        if client is not None and isinstance(message, ForwardedShares):
            if message.recipient == VICTIM:  # round 2: round 1 is over for the victim
                only_share_key = Secrets()
                only_share_key.blobs = set(share_keys)
                leaks.extend(only_share_key.found_in(client))
                assert client._share_keys is None
        return message

    secrets = Secrets()
    simulator = _watch(game, secrets)
    simulator.interceptor = _chain(simulator.interceptor, interceptor)
    holder["sim"] = simulator
    report = simulator.run()
    assert report.error is None and report.client_errors == {}
    assert share_keys and leaks == []
    client = simulator.clients[VICTIM]
    assert secrets.shares and secrets.blobs
    assert secrets.found_in(client) == []
    # The round is over: no key pair at all is reachable from the client any more.
    assert not [o for o in reachable(client) if isinstance(o, KeyPair)]


def _chain(first, second):
    def interceptor(round_index: int, message: Message) -> Message:
        second(round_index, message)
        return first(round_index, message)

    return interceptor


def test_the_walk_finds_secrets_where_they_are(active_round):
    """Control: the walk does find a live client's secrets, and an error's frames."""
    game = active_round("secagg", 6, "semi-honest")
    secrets = Secrets()
    holder: dict[str, object] = {}
    found: list[list[str]] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, ForwardedShares) and message.recipient == VICTIM:
            client = holder["sim"].clients[VICTIM]
            secrets.snapshot(client)
            found.append(secrets.found_in(client))
        return message

    simulator = game.simulator(interceptor=interceptor)
    holder["sim"] = simulator
    simulator.run()
    assert "a share (int)" in found[0]
    assert "a seed or private-key byte string" in found[0] or "a private key object" in found[0]

    raw = game.inputs[VICTIM]

    def failing_step(vector: np.ndarray) -> None:
        raise InsufficientSurvivorsError(f"failed on {len(vector)} values")

    try:
        failing_step(raw.copy())
    except InsufficientSurvivorsError as error:
        caught = error
    secrets.input = raw
    assert any("raw input" in f or "frame" in f.lower() for f in secrets.found_in(caught))
