"""Tests of :class:`KeyHolder`: it sees only aggregates, decrypts one per round and only of at
least ``min_contributors`` clients, refuses everything else, and detects decrypted slots out of
range."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    AggregateCiphertext,
    DecryptedAggregate,
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
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import PaillierKeypair
from secagg.packing import PackingScheme

if TYPE_CHECKING:
    from conftest import PaillierKit


def test_key_holder_packing_beyond_64_bit_slots_raises(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # 62 value bits + 2 headroom bits fit a 64-bit slot; 5 clients need 3 headroom bits.
    KeyHolder(keys, session_id=kit.session(), value_bits=62, max_clients=4)
    with pytest.raises(ParameterError, match="slot"):
        KeyHolder(keys, session_id=kit.session(), value_bits=62, max_clients=5)


def test_key_holder_aggregate_above_headroom_raises(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, max_clients=3)
    inputs = kit.inputs(params)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    assert isinstance(aggregate, AggregateCiphertext)
    holder = kit.key_holder(keys, params)
    with pytest.raises(RemoteProtocolError, match="headroom") as excinfo:
        holder.receive(dataclasses.replace(aggregate, contributors=4))
    assert excinfo.type is RemoteProtocolError
    assert holder.seen == []
    # The refusal did not use up the round: the honest aggregate is still decrypted.
    (reply,) = holder.receive(aggregate)
    assert isinstance(reply, DecryptedAggregate)
    kit.assert_exact(reply.vector, kit.plain_sum(inputs, (0, 1, 2)))


def test_key_holder_sees_only_aggregates(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    params = kit.params(6, vector_length=120, min_contributors=3)
    inputs = kit.inputs(params, seed=5)
    uploads: list[EncryptedInput] = []
    to_key_holder: list[Message] = []

    def record(round_index: int, message: Message) -> Message:
        if isinstance(message, EncryptedInput):
            uploads.append(message)
        if message.recipient == KEY_HOLDER_ID:
            to_key_holder.append(message)
        return message

    report, holder = kit.simulate(
        keys, params, inputs, dropouts={0: 1, 4: 2}, interceptor=record, through_wire=True
    )
    assert kit.result(report).contributors == (1, 2, 3, 5)
    assert len(uploads) == 4
    assert len(to_key_holder) == 1
    assert holder.seen == to_key_holder
    width = hazmat.ciphertext_byte_length(keys.public_key)
    client_chunks = {chunk for m in uploads for chunk in kit.chunks(m.ciphertexts, width)}
    for message in holder.seen:
        assert isinstance(message, AggregateCiphertext)
        assert message.contributors >= holder.min_contributors
        assert all(message.ciphertexts != upload.ciphertexts for upload in uploads)
        assert client_chunks.isdisjoint(kit.chunks(message.ciphertexts, width))


def test_key_holder_refuses_second_aggregate_of_round(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # A server that decrypts all three inputs, then the two others, learns client 0's input
    # by subtraction: the key holder must refuse the second aggregate of the round.
    params = kit.params(3, vector_length=40)
    inputs = kit.inputs(params, seed=6)
    everyone, _ = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    subset, _ = kit.server_with_uploads(keys, params, inputs, (1, 2))
    (first,) = everyone.close_phase()
    (second,) = subset.close_phase()
    holder = kit.key_holder(keys, params)
    holder.receive(first)
    with pytest.raises(ServerMisbehaviourError, match="already decrypted"):
        holder.receive(second)
    # Not even the very same aggregate twice.
    with pytest.raises(ServerMisbehaviourError):
        holder.receive(first)
    assert holder.seen == [first]


def test_key_holder_refuses_duplicated_aggregate_in_simulation(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=40)
    inputs = kit.inputs(params, seed=7)
    subset, _ = kit.server_with_uploads(keys, params, inputs, (1, 2))
    (difference_probe,) = subset.close_phase()

    def send_two(round_index: int, message: Message) -> Message | Sequence[Message]:
        if isinstance(message, AggregateCiphertext):
            return [message, difference_probe]
        return message

    report, holder = kit.simulate(keys, params, inputs, interceptor=send_two)
    assert isinstance(report.error, ServerMisbehaviourError)
    assert report.result is None
    assert len(holder.seen) == 1
    assert holder.seen[0].contributors == 3


def test_key_holder_refuses_aggregate_below_min_contributors(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=40, min_contributors=1)
    inputs = kit.inputs(params, seed=8)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0,))
    (single,) = server.close_phase()
    assert isinstance(single, AggregateCiphertext)
    assert single.contributors == 1
    holder = kit.key_holder(keys, params, min_contributors=2)
    with pytest.raises(ServerMisbehaviourError, match="at least 2"):
        holder.receive(single)
    assert holder.seen == []


def _refused_messages(
    kit: type[PaillierKit],
    params: PaillierParams,
    aggregate: AggregateCiphertext,
    upload: EncryptedInput,
) -> dict[str, Message]:
    session, round_id = params.session_id, params.round_id
    header: dict[str, Any] = {"session_id": session, "round_id": round_id}
    width = aggregate.ciphertext_bytes
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
        "other_session": dataclasses.replace(aggregate, session_id=kit.session()),
        "from_client": dataclasses.replace(aggregate, sender=0, recipient=SERVER_ID),
        "to_client": dataclasses.replace(aggregate, recipient=0),
        "wrong_width": dataclasses.replace(
            aggregate, ciphertext_bytes=width // 2, ciphertexts=aggregate.ciphertexts
        ),
        "too_short": dataclasses.replace(aggregate, ciphertexts=aggregate.ciphertexts[width:]),
        "wrong_vector_length": dataclasses.replace(
            aggregate, vector_length=params.vector_length * 100
        ),
    }


def test_key_holder_refuses_everything_but_the_aggregate(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=120)
    inputs = kit.inputs(params, seed=9)
    server, uploads = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    assert isinstance(aggregate, AggregateCiphertext)
    holder = kit.key_holder(keys, params)
    for name, message in _refused_messages(kit, params, aggregate, uploads[0]).items():
        with pytest.raises(RemoteProtocolError) as excinfo:
            holder.receive(message)
        assert excinfo.type is RemoteProtocolError, name
    assert holder.seen == []
    (reply,) = holder.receive(aggregate)
    assert isinstance(reply, DecryptedAggregate)
    assert (reply.sender, reply.recipient, reply.contributors) == (KEY_HOLDER_ID, SERVER_ID, 3)
    kit.assert_exact(reply.vector, kit.plain_sum(inputs, (0, 1, 2)))


def test_key_holder_invalid_aggregate_ciphertext_raises(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=120)
    inputs = kit.inputs(params, seed=10)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    assert isinstance(aggregate, AggregateCiphertext)
    width = aggregate.ciphertext_bytes
    holder = kit.key_holder(keys, params)
    zero = bytes(width) + aggregate.ciphertexts[width:]
    with pytest.raises(InvalidCiphertextError):
        holder.receive(dataclasses.replace(aggregate, ciphertexts=zero))
    assert holder.seen == []
    holder.receive(aggregate)
    assert holder.seen == [aggregate]


def _aggregate(
    params: PaillierParams,
    ciphertexts: bytes,
    *,
    width: int,
    contributors: int = 2,
    **overrides: Any,
) -> AggregateCiphertext:
    fields: dict[str, Any] = {
        "session_id": params.session_id,
        "round_id": params.round_id,
        "sender": SERVER_ID,
        "recipient": KEY_HOLDER_ID,
        "contributors": contributors,
        "vector_length": params.vector_length,
        "ciphertext_bytes": width,
        "ciphertexts": ciphertexts,
    }
    fields.update(overrides)
    return AggregateCiphertext(**fields)


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
    forged = kit.encrypted_input(keys, params, 0, plaintexts)

    report, _ = kit.simulate(
        keys, params, inputs, key_holder=holder, interceptor=kit.replacing(0, lambda m: [forged])
    )
    # The server cannot see inside ciphertexts; it is the key holder that refuses the sums.
    assert report.server_rejections == []
    assert isinstance(report.error, SlotOverflowError)
    assert report.result is None
    assert len(holder.seen) == 1


def test_key_holder_slot_overflow_still_uses_up_the_round(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=60, value_bits=8, max_clients=4)
    holder = kit.key_holder(keys, params)
    bad = _malicious_plaintexts(holder.packing, 60, "bits_above_last_slot")
    good = holder.packing.pack(np.ones(60, dtype=np.uint64))
    product = hazmat.add_ciphertext_vectors(
        keys.public_key,
        hazmat.encrypt_vector(keys.public_key, bad, processes=1),
        hazmat.encrypt_vector(keys.public_key, good, processes=1),
    )
    width = hazmat.ciphertext_byte_length(keys.public_key)
    aggregate = _aggregate(
        params, hazmat.ciphertexts_to_bytes(keys.public_key, product), width=width
    )
    with pytest.raises(SlotOverflowError):
        holder.receive(aggregate)
    # Decrypted once already (the plaintext was computed): no second try for this round.
    with pytest.raises(ServerMisbehaviourError):
        holder.receive(aggregate)
