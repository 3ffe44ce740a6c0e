"""Tests of :class:`PaillierClient`: it pins the decryptors' public key (a key holder's or a
committee's), refuses setups that are foreign, repeated, late or unusable, refuses malformed
inputs, signs its upload for exactly this round and key, and poisons itself on any refusal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from protocols._transitions import ClientPhase
from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    DecryptedAggregate,
    EncryptedInput,
    Message,
    PaillierSetup,
)
from protocols.paillier import PaillierClient, PaillierParams, key_fingerprint
from protocols.paillier.trust import upload_message
from secagg.errors import (
    InvalidSignatureError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    ServerMisbehaviourError,
)
from secagg.hazmat.paillier import PaillierKeypair, RandomnessMode, ThresholdKeyset

if TYPE_CHECKING:
    from conftest import PaillierKit


def _assert_poisoned(
    kit: type[PaillierKit], client: PaillierClient, params: PaillierParams
) -> None:
    assert client.phase is ClientPhase.ABORTED
    with pytest.raises(LocalProtocolError):
        client.receive(kit.abort(params, recipient=client.client_id))
    with pytest.raises(LocalProtocolError):
        client.submit_input(np.zeros(params.vector_length, dtype=np.uint64))
    assert client.phase is ClientPhase.ABORTED


def test_client_rejects_setup_with_substituted_public_key(
    kit: type[PaillierKit], keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    substituted = kit.setup(keys, params, public_key_n=int(smaller_same_width_keys.public_key.n))
    with pytest.raises(ServerMisbehaviourError, match="pinned"):
        client.receive(substituted)
    _assert_poisoned(kit, client, params)
    # Even the honest setup is refused now.
    with pytest.raises(LocalProtocolError):
        client.receive(kit.setup(keys, params))


@pytest.mark.parametrize(
    "overrides",
    [
        lambda p: {"round_id": p.round_id - 1},
        lambda p: {"round_id": p.round_id + 1},
        lambda p: {"session_id": bytes(16)},
        lambda p: {"recipient": 1},
    ],
    ids=["replayed_round", "future_round", "other_session", "other_recipient"],
)
def test_client_rejects_foreign_setup(
    kit: type[PaillierKit],
    keys: PaillierKeypair,
    overrides: Callable[[PaillierParams], dict[str, Any]],
) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    with pytest.raises(RemoteProtocolError) as excinfo:
        client.receive(kit.setup(keys, params, **overrides(params)))
    assert excinfo.type is RemoteProtocolError
    _assert_poisoned(kit, client, params)


def test_client_rejects_second_setup(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    assert client.receive(kit.setup(keys, params)) == []
    assert client.phase is ClientPhase.AWAIT_INPUT
    with pytest.raises(RemoteProtocolError) as excinfo:
        client.receive(kit.setup(keys, params, vector_length=5))
    assert excinfo.type is RemoteProtocolError
    _assert_poisoned(kit, client, params)


def test_client_rejects_setup_after_upload(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    client.receive(kit.setup(keys, params))
    (upload,) = client.submit_input(np.ones(params.vector_length, dtype=np.uint16))
    assert isinstance(upload, EncryptedInput)
    assert client.phase is ClientPhase.DONE
    with pytest.raises(RemoteProtocolError):
        client.receive(kit.setup(keys, params))
    _assert_poisoned(kit, client, params)


def test_client_rejects_setup_with_unusable_packing(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    with pytest.raises(RemoteProtocolError, match="packing") as excinfo:
        client.receive(kit.setup(keys, params, value_bits=63, max_clients=4))
    assert excinfo.type is RemoteProtocolError
    _assert_poisoned(kit, client, params)


def test_client_rejects_message_not_from_server(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    from_key_holder = DecryptedAggregate(
        session_id=params.session_id,
        round_id=params.round_id,
        sender=KEY_HOLDER_ID,
        recipient=SERVER_ID,
        contributors=2,
        vector=np.zeros(1, dtype=np.uint64),
    )
    with pytest.raises(RemoteProtocolError):
        client.receive(from_key_holder)
    _assert_poisoned(kit, client, params)


def test_client_submit_input_before_setup_raises(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    with pytest.raises(LocalProtocolError, match="after the setup"):
        client.submit_input(np.zeros(params.vector_length, dtype=np.uint64))
    _assert_poisoned(kit, client, params)


@pytest.mark.parametrize(
    "vector",
    [
        np.zeros(59, dtype=np.uint64),
        np.zeros(61, dtype=np.uint64),
        np.zeros((2, 30), dtype=np.uint64),
        np.zeros(60, dtype=np.float64),
        np.zeros(60, dtype=bool),
        np.array(["0"] * 60),
        np.full(60, 1 << 16, dtype=np.uint64),
        np.full(60, 2**64 - 1, dtype=np.uint64),
        np.concatenate([np.zeros(59, dtype=np.int64), [-1]]),
    ],
    ids=[
        "too_short",
        "too_long",
        "two_dimensional",
        "float",
        "bool",
        "string",
        "value_2_to_value_bits",
        "uint64_max",
        "negative",
    ],
)
def test_client_submit_input_bad_vector_raises(
    kit: type[PaillierKit], keys: PaillierKeypair, vector: Any
) -> None:
    params = kit.params(3, vector_length=60, value_bits=16)
    client = kit.client(keys, params)
    client.receive(kit.setup(keys, params))
    with pytest.raises(LocalProtocolError):
        client.submit_input(vector)
    _assert_poisoned(kit, client, params)


def test_client_accepts_signed_and_narrow_in_range_input(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=60, value_bits=16)
    for vector in (np.full(60, 65535, dtype=np.int64), np.arange(60, dtype=np.uint16)):
        client = kit.client(keys, params)
        client.receive(kit.setup(keys, params))
        (upload,) = client.submit_input(vector)
        assert isinstance(upload, EncryptedInput)
        assert client.phase is ClientPhase.DONE


def test_client_second_submit_input_raises(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    client.receive(kit.setup(keys, params))
    client.submit_input(np.zeros(params.vector_length, dtype=np.uint64))
    with pytest.raises(LocalProtocolError):
        client.submit_input(np.zeros(params.vector_length, dtype=np.uint64))
    _assert_poisoned(kit, client, params)


def test_client_djn_mode_without_matching_parameters_raises(
    kit: type[PaillierKit], keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    params = kit.params(3)
    common = {
        "session_id": params.session_id,
        "round_id": kit.ROUND,
        "public_key": keys.public_key,
        "identity": kit.identities[0],
    }
    with pytest.raises(ParameterError, match="DJN"):
        PaillierClient(0, mode=RandomnessMode.DJN, **common)
    with pytest.raises(ParameterError, match="DJN"):
        PaillierClient(0, mode=RandomnessMode.DJN, djn=smaller_same_width_keys.djn, **common)
    client = PaillierClient(0, mode=RandomnessMode.DJN, djn=keys.djn, **common)
    assert client.phase is ClientPhase.AWAIT_SETUP


@pytest.mark.parametrize("before_setup", [True, False])
def test_client_abort_moves_to_aborted(
    kit: type[PaillierKit], keys: PaillierKeypair, before_setup: bool
) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    if not before_setup:
        client.receive(kit.setup(keys, params))
    assert client.receive(kit.abort(params)) == []
    _assert_poisoned(kit, client, params)


def test_client_abort_from_other_round_raises(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3)
    client = kit.client(keys, params)
    with pytest.raises(RemoteProtocolError):
        client.receive(kit.abort(params, round_id=kit.ROUND + 1))
    _assert_poisoned(kit, client, params)


def test_simulator_client_with_substituted_key_is_left_out(
    kit: type[PaillierKit], keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    params = kit.params(4, vector_length=30)
    inputs = kit.inputs(params, seed=13)
    foreign_n = int(smaller_same_width_keys.public_key.n)

    def substitute(round_index: int, message: Message) -> Message:
        if isinstance(message, PaillierSetup) and message.recipient == 1:
            return dataclasses.replace(message, public_key_n=foreign_n)
        return message

    report, _ = kit.simulate(keys, params, inputs, interceptor=substitute)
    assert set(report.client_errors) == {1}
    assert isinstance(report.client_errors[1], ServerMisbehaviourError)
    result = kit.result(report)
    assert result.contributors == (0, 2, 3)
    kit.assert_exact(result.vector, kit.plain_sum(inputs, (0, 2, 3)))


def test_client_needs_an_identity_key(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    params = kit.params(3)
    common: dict[str, Any] = {
        "session_id": params.session_id,
        "round_id": kit.ROUND,
        "public_key": keys.public_key,
    }
    not_keys: list[Any] = [None, kit.identities[0].public_bytes, b"\x00" * 32]
    for identity in not_keys:
        with pytest.raises(ParameterError, match="IdentityKey"):
            PaillierClient(0, identity=identity, **common)


def test_client_signs_its_upload_for_this_round_and_key_only(
    kit: type[PaillierKit], keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    params = kit.params(3)
    client = kit.client(keys, params, 2)
    client.receive(kit.setup(keys, params, recipient=2))
    (upload,) = client.submit_input(np.arange(params.vector_length, dtype=np.uint64))
    assert isinstance(upload, EncryptedInput)
    fingerprint = key_fingerprint(keys.public_key)

    shape = kit.shape_of(params)

    def signed(session: bytes, round_id: int, sender: int, key_print: bytes, data: bytes) -> bytes:
        return upload_message(session, round_id, sender, key_print, data, shape)

    honest = signed(params.session_id, kit.ROUND, 2, fingerprint, upload.ciphertexts)
    kit.roster.check_signature(2, honest, upload.signature)
    # Nothing else verifies: another round, session, sender, key, or other ciphertexts.
    others = [
        signed(params.session_id, kit.ROUND + 1, 2, fingerprint, upload.ciphertexts),
        signed(kit.session(), kit.ROUND, 2, fingerprint, upload.ciphertexts),
        signed(params.session_id, kit.ROUND, 1, fingerprint, upload.ciphertexts),
        signed(
            params.session_id,
            kit.ROUND,
            2,
            key_fingerprint(smaller_same_width_keys.public_key),
            upload.ciphertexts,
        ),
        signed(params.session_id, kit.ROUND, 2, fingerprint, upload.ciphertexts[::-1]),
    ]
    for message in others:
        with pytest.raises(InvalidSignatureError):
            kit.roster.check_signature(2, message, upload.signature)
    # Nor does it verify under another client's identity key.
    with pytest.raises(InvalidSignatureError):
        kit.roster.check_signature(1, honest, upload.signature)


def test_client_pinned_to_committee_rejects_substituted_committee_key(
    kit: type[PaillierKit],
    committee_keys: ThresholdKeyset,
    other_committee_keys: ThresholdKeyset,
) -> None:
    params = kit.params(3, vector_length=20)
    client = kit.client(committee_keys, params)
    substituted = kit.setup(other_committee_keys, params)
    with pytest.raises(ServerMisbehaviourError, match="pinned"):
        client.receive(substituted)
    _assert_poisoned(kit, client, params)
    honest = kit.client(committee_keys, params)
    assert honest.receive(kit.setup(committee_keys, params)) == []
    assert honest.phase is ClientPhase.AWAIT_INPUT


def test_client_of_committee_takes_djn_parameters_from_the_committee_key(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset, keys: PaillierKeypair
) -> None:
    assert committee_keys.public.djn is not None
    params = kit.params(3, vector_length=20)
    common: dict[str, Any] = {
        "session_id": params.session_id,
        "round_id": kit.ROUND,
        "identity": kit.identities[0],
        "mode": RandomnessMode.DJN,
    }
    client = PaillierClient(0, public_key=committee_keys.public, **common)
    client.receive(kit.setup(committee_keys, params))
    (upload,) = client.submit_input(np.ones(20, dtype=np.uint64))
    assert isinstance(upload, EncryptedInput)
    # DJN parameters of another key are still refused, even next to a committee key.
    with pytest.raises(ParameterError, match="DJN"):
        PaillierClient(0, public_key=committee_keys.public, djn=keys.djn, **common)


@pytest.mark.parametrize("committee", [False, True], ids=["key_holder", "committee"])
def test_simulator_client_with_substituted_key_never_uploads(
    kit: type[PaillierKit],
    keys: PaillierKeypair,
    smaller_same_width_keys: PaillierKeypair,
    committee_keys: ThresholdKeyset,
    other_committee_keys: ThresholdKeyset,
    committee: bool,
) -> None:
    # The server hands every client its own key: no client encrypts under it, none uploads.
    params = kit.params(4, vector_length=20)
    inputs = kit.inputs(params, seed=21)
    foreign = other_committee_keys if committee else smaller_same_width_keys
    foreign_n = kit.setup(foreign, params).public_key_n
    uploads, record = kit.recorder(EncryptedInput)

    def substitute(round_index: int, message: Message) -> Message:
        record(round_index, message)
        if isinstance(message, PaillierSetup):
            return dataclasses.replace(message, public_key_n=foreign_n)
        return message

    if committee:
        report, _ = kit.simulate_committee(committee_keys, params, inputs, interceptor=substitute)
    else:
        report, _ = kit.simulate(keys, params, inputs, interceptor=substitute)
    assert set(report.client_errors) == set(params.clients)
    assert all(isinstance(e, ServerMisbehaviourError) for e in report.client_errors.values())
    assert uploads == []
    assert report.result is None
