"""Tests of :class:`KeyHolder`: it decrypts only the product, recomputed by itself, of at least
``min_contributors`` distinct clients' signed uploads, one aggregate per round, refuses everything
else, and detects decrypted slots out of range."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    DecryptedAggregate,
    DecryptionRequest,
    EncryptedInput,
    Message,
    PaillierSetup,
)
from protocols.paillier import KeyHolder, PaillierParams
from secagg.errors import (
    InvalidCiphertextError,
    ParameterError,
    RemoteProtocolError,
    ServerMisbehaviourError,
    SlotOverflowError,
)
from secagg.hazmat.paillier import PaillierKeypair
from secagg.packing import PackingScheme

if TYPE_CHECKING:
    from conftest import PaillierKit


def test_key_holder_packing_beyond_64_bit_slots_raises(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # 62 value bits + 2 headroom bits fit a 64-bit slot; 5 clients need 3 headroom bits.
    common: dict[str, Any] = {"session_id": kit.session(), "roster": kit.roster, "value_bits": 62}
    KeyHolder(keys, max_clients=4, **common)
    with pytest.raises(ParameterError, match="slot"):
        KeyHolder(keys, max_clients=5, **common)


def _not_a_roster(kit: type[PaillierKit]) -> Any:
    """The roster's keys as a plain mapping: what a caller might pass by mistake."""
    return dict(kit.roster.keys)


def test_key_holder_needs_the_roster_and_two_contributors(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    common: dict[str, Any] = {"session_id": kit.session(), "value_bits": 16, "max_clients": 4}
    with pytest.raises(ParameterError, match="TrustedRoster"):
        KeyHolder(keys, roster=_not_a_roster(kit), **common)
    not_counts: list[Any] = [1, 0, True, 2.0]
    for bad in not_counts:
        with pytest.raises(ParameterError, match="min_contributors"):
            KeyHolder(keys, roster=kit.roster, min_contributors=bad, **common)


def test_key_holder_aggregate_above_headroom_raises(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, max_clients=3)
    inputs = kit.inputs(params)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (request,) = server.close_phase()
    assert isinstance(request, DecryptionRequest)
    # A fourth roster client's upload, signed for this very round: one input beyond the headroom.
    packing = PackingScheme.for_public_key(keys.public_key, value_bits=16, num_clients=3)
    fourth = kit.encrypted_input(keys, params, 3, packing.pack(np.zeros(60, dtype=np.uint64)))
    holder = kit.key_holder(keys, params)
    with pytest.raises(RemoteProtocolError, match="headroom") as excinfo:
        holder.receive(dataclasses.replace(request, uploads=(*request.uploads, fourth)))
    assert excinfo.type is RemoteProtocolError
    assert holder.last_round is None
    # The refusal did not use up the round: the honest aggregate is still decrypted.
    (reply,) = holder.receive(request)
    assert isinstance(reply, DecryptedAggregate)
    kit.assert_exact(reply.vector, kit.plain_sum(inputs, (0, 1, 2)))


def test_key_holder_sees_only_signed_uploads_and_returns_only_their_sum(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # The key holder gets one request in the round: exactly the surviving clients' uploads as
    # they signed them; what it returns is their sum alone (one vector), never an input.
    params = kit.params(6, vector_length=120, min_contributors=3)
    inputs = kit.inputs(params, seed=5)
    uploads: list[EncryptedInput] = []
    to_key_holder: list[Message] = []
    from_key_holder: list[Message] = []

    def record(round_index: int, message: Message) -> Message:
        if isinstance(message, EncryptedInput):
            uploads.append(message)
        if message.recipient == KEY_HOLDER_ID:
            to_key_holder.append(message)
        if message.sender == KEY_HOLDER_ID:
            from_key_holder.append(message)
        return message

    report, holder = kit.simulate(
        keys, params, inputs, dropouts={0: 1, 4: 2}, interceptor=record, through_wire=True
    )
    contributors = (1, 2, 3, 5)
    assert kit.result(report).contributors == contributors
    assert len(uploads) == 4
    (request,) = to_key_holder
    assert isinstance(request, DecryptionRequest)
    assert request.uploads == tuple(uploads)
    assert len(request.uploads) >= holder.min_contributors
    (reply,) = from_key_holder
    assert isinstance(reply, DecryptedAggregate)
    assert reply.contributors == len(contributors)
    kit.assert_exact(reply.vector, kit.plain_sum(inputs, contributors))
    assert all(not np.array_equal(reply.vector, inputs[u]) for u in contributors)
    assert holder.last_round == kit.ROUND


def test_key_holder_refuses_second_aggregate_of_round(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # A server that decrypts all three inputs, then the two others, learns client 0's input
    # by subtraction: the key holder must refuse the second aggregate of the round.
    params = kit.params(3, vector_length=40)
    inputs = kit.inputs(params, seed=6)
    everyone, _ = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (first,) = everyone.close_phase()
    assert isinstance(first, DecryptionRequest)
    second = dataclasses.replace(first, uploads=first.uploads[1:])
    holder = kit.key_holder(keys, params)
    holder.receive(first)
    with pytest.raises(ServerMisbehaviourError, match="already decrypted"):
        holder.receive(second)
    # Not even the very same aggregate twice.
    with pytest.raises(ServerMisbehaviourError, match="already decrypted"):
        holder.receive(first)
    assert holder.last_round == kit.ROUND


def test_key_holder_refuses_duplicated_aggregate_in_simulation(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=40)
    inputs = kit.inputs(params, seed=7)
    replies, record = kit.recorder(DecryptedAggregate)

    def send_two(round_index: int, message: Message) -> Message | Sequence[Message]:
        record(round_index, message)
        if isinstance(message, DecryptionRequest):
            return [message, dataclasses.replace(message, uploads=message.uploads[1:])]
        return message

    report, holder = kit.simulate(keys, params, inputs, interceptor=send_two)
    assert isinstance(report.client_errors[KEY_HOLDER_ID], ServerMisbehaviourError)
    # Only the first aggregate of the round (every contributor) was decrypted.
    assert [m.contributors for m in replies if isinstance(m, DecryptedAggregate)] == [3]
    kit.assert_exact(kit.result(report).vector, kit.plain_sum(inputs, (0, 1, 2)))
    assert holder.last_round == kit.ROUND


def test_key_holder_refuses_aggregate_below_min_contributors(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=40, min_contributors=1)
    inputs = kit.inputs(params, seed=8)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0,))
    (single,) = server.close_phase()
    assert isinstance(single, DecryptionRequest)
    assert len(single.uploads) == 1
    holder = kit.key_holder(keys, params, min_contributors=2)
    with pytest.raises(ServerMisbehaviourError, match="at least 2"):
        holder.receive(single)
    assert holder.last_round is None


def _refused_messages(
    kit: type[PaillierKit],
    keys: PaillierKeypair,
    params: PaillierParams,
    request: DecryptionRequest,
    upload: EncryptedInput,
) -> dict[str, Message]:
    session, round_id = params.session_id, params.round_id
    header: dict[str, Any] = {"session_id": session, "round_id": round_id}
    width = upload.ciphertext_bytes
    # Malformed uploads that their (malicious) client signed, so only the shape is wrong.
    narrow = kit.resigned(
        dataclasses.replace(upload, ciphertext_bytes=width // 2, ciphertexts=upload.ciphertexts),
        keys,
    )
    short = kit.resigned(dataclasses.replace(upload, ciphertexts=upload.ciphertexts[width:]), keys)
    return {
        "upload": upload,
        "setup": PaillierSetup(
            **header,
            sender=SERVER_ID,
            recipient=0,
            public_key_n=3,
            vector_length=1,
            value_bits=1,
            max_clients=1,
        ),
        "decrypted": DecryptedAggregate(
            **header,
            sender=KEY_HOLDER_ID,
            recipient=SERVER_ID,
            contributors=2,
            vector=np.zeros(1, dtype=np.uint64),
        ),
        "abort": kit.abort(params),
        "other_session": dataclasses.replace(request, session_id=kit.session()),
        "from_client": dataclasses.replace(request, sender=0, recipient=SERVER_ID),
        "to_client": dataclasses.replace(request, recipient=0),
        "wrong_width": dataclasses.replace(request, uploads=(narrow, *request.uploads[1:])),
        "too_short": dataclasses.replace(request, uploads=(short, *request.uploads[1:])),
        "wrong_vector_length": dataclasses.replace(
            request, vector_length=params.vector_length * 100
        ),
    }


def test_key_holder_refuses_everything_but_the_request(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=120)
    inputs = kit.inputs(params, seed=9)
    server, uploads = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (request,) = server.close_phase()
    assert isinstance(request, DecryptionRequest)
    holder = kit.key_holder(keys, params)
    for name, message in _refused_messages(kit, keys, params, request, uploads[0]).items():
        with pytest.raises(RemoteProtocolError) as excinfo:
            holder.receive(message)
        # A length other than the one the clients signed their packing for is the server's doing.
        expected = ServerMisbehaviourError if name == "wrong_vector_length" else RemoteProtocolError
        assert excinfo.type is expected, name
    assert holder.last_round is None
    (reply,) = holder.receive(request)
    assert isinstance(reply, DecryptedAggregate)
    assert (reply.sender, reply.recipient, reply.contributors) == (KEY_HOLDER_ID, SERVER_ID, 3)
    kit.assert_exact(reply.vector, kit.plain_sum(inputs, (0, 1, 2)))


def test_key_holder_invalid_upload_ciphertext_raises(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=120)
    inputs = kit.inputs(params, seed=10)
    server, uploads = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (request,) = server.close_phase()
    assert isinstance(request, DecryptionRequest)
    holder = kit.key_holder(keys, params)
    # Signed by its client (a malicious one), so only the zero ciphertext is wrong.
    zero = kit.with_chunk(uploads[1], 0, 0, keys)
    with pytest.raises(InvalidCiphertextError, match=r"^invalid Paillier ciphertext$"):
        holder.receive(dataclasses.replace(request, uploads=(uploads[0], zero, uploads[2])))
    assert holder.last_round is None
    holder.receive(request)
    assert holder.last_round == kit.ROUND


def _malicious_plaintexts(packing: PackingScheme, length: int, kind: str) -> list[int]:
    """Plaintexts no honest client produces; packing is BITS (slot i at bit i * slot_bits)."""
    count = packing.num_plaintexts(length)
    plaintexts = [0] * count
    if kind == "slot_above_limit":
        # 2^value_bits in slot 0: with the honest slot-0 sums at their maximum, one above.
        plaintexts[0] = 1 << packing.value_bits
    elif kind == "bits_above_last_slot":
        plaintexts[0] = 1 << (packing.slots_per_plaintext * packing.slot_bits)
    else:  # "padding_slot"
        used = length - (count - 1) * packing.slots_per_plaintext
        plaintexts[-1] = 1 << (used * packing.slot_bits)
    return plaintexts


@pytest.mark.parametrize("kind", ["slot_above_limit", "bits_above_last_slot", "padding_slot"])
def test_key_holder_detects_out_of_range_slot(
    kit: type[PaillierKit], keys: PaillierKeypair, kind: str
) -> None:
    # Three of max_clients = 4: slots have room for 4 * 255, the legal sum is at most 3 * 255.
    params = kit.params(3, vector_length=60, value_bits=8, max_clients=4)
    inputs = kit.inputs(params, fill="max")
    holder = kit.key_holder(keys, params)
    plaintexts = _malicious_plaintexts(holder.packing, params.vector_length, kind)
    # Client 0 itself is malicious: it signs what it encrypted, so nothing but a slot is wrong.
    forged = kit.encrypted_input(keys, params, 0, plaintexts)
    replies, record = kit.recorder(DecryptedAggregate)

    def forge(round_index: int, message: Message) -> Message | Sequence[Message] | None:
        record(round_index, message)
        return kit.replacing(0, lambda m: [forged])(round_index, message)

    report, _ = kit.simulate(keys, params, inputs, key_holder=holder, interceptor=forge)
    # The server cannot see inside ciphertexts; it is the key holder that refuses the sums.
    assert report.server_rejections == []
    assert isinstance(report.client_errors[KEY_HOLDER_ID], SlotOverflowError)
    assert replies == []
    assert report.result is None
    assert holder.last_round == kit.ROUND


def test_key_holder_slot_overflow_still_uses_up_the_round(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=60, value_bits=8, max_clients=4)
    holder = kit.key_holder(keys, params)
    bad = _malicious_plaintexts(holder.packing, 60, "bits_above_last_slot")
    good = holder.packing.pack(np.ones(60, dtype=np.uint64))
    request = kit.request(
        params,
        [kit.encrypted_input(keys, params, 0, bad), kit.encrypted_input(keys, params, 1, good)],
    )
    with pytest.raises(SlotOverflowError):
        holder.receive(request)
    # Decrypted once already (the plaintext was computed): no second try for this round.
    with pytest.raises(ServerMisbehaviourError, match="already decrypted"):
        holder.receive(request)
    assert holder.last_round == kit.ROUND


def test_key_holder_refusal_is_the_error_of_the_simulated_round(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=60, value_bits=8, max_clients=4)
    inputs = kit.inputs(params, fill="max")
    holder = kit.key_holder(keys, params)
    plaintexts = _malicious_plaintexts(holder.packing, params.vector_length, "padding_slot")
    forged = kit.encrypted_input(keys, params, 0, plaintexts)
    report, _ = kit.simulate(
        keys, params, inputs, key_holder=holder, interceptor=kit.replacing(0, lambda m: [forged])
    )
    assert isinstance(report.error, SlotOverflowError)
