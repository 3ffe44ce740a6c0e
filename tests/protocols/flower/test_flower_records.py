"""The record codec: protocol messages, the setup's quantization, array layouts, weights.

These are the pieces both sides of a Flower round must read the same way; each is checked on
its own here, including the malformed records a confused or malicious peer could send.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from protocols.flower import WIRE_RECORD, flower_session_id
from protocols.flower.records import (
    IDENTIFY_RECORD,
    ArrayLayout,
    EncodingSettings,
    NodeClaim,
    read_wire,
    weight_of,
    wire_record,
    without_weight,
)
from protocols.messages import Abort, UnmaskRequest
from secagg.encoding import QuantizationScheme, UpdateEncoding
from secagg.errors import LocalProtocolError, ParameterError, RemoteProtocolError

SETTINGS = EncodingSettings(
    clip=2.0, value_bits=16, num_clients=8, max_weight=50.0, weight_key="num-examples"
)


def test_records_session_id_is_16_bytes_fixed_per_run() -> None:
    first = flower_session_id(7)
    assert len(first) == 16 and first == flower_session_id(7)
    assert first != flower_session_id(8)
    for bad in (-1, 2**64, 1.0, "7"):
        with pytest.raises(ParameterError, match="run_id"):
            flower_session_id(bad)  # type: ignore[arg-type]


def test_records_encoding_settings_round_trip_to_the_shared_encoding() -> None:
    record = SETTINGS.to_record()
    assert EncodingSettings.from_record(record) == SETTINGS
    scheme = QuantizationScheme(clip=2.0, value_bits=16, num_clients=8)
    assert SETTINGS.update_encoding() == UpdateEncoding(scheme, 50.0)


@pytest.mark.parametrize(
    "change",
    [
        {"clip": 2},  # an int where a float belongs
        {"value-bits": True},  # a bool is not an int here
        {"value-bits": 0},
        {"max-weight": 0.0},
        {"max-weight": float("inf")},
        {"num-clients": 0},
        {"weight-key": b"num-examples"},
    ],
)
def test_records_encoding_settings_reject_an_unusable_setup(change: dict[str, object]) -> None:
    record = SETTINGS.to_record()
    for key, value in change.items():
        record[key] = value  # type: ignore[assignment]
    with pytest.raises(RemoteProtocolError, match="unusable"):
        EncodingSettings.from_record(record)


def test_records_encoding_settings_reject_a_missing_setup_or_field() -> None:
    with pytest.raises(RemoteProtocolError, match="unusable"):
        EncodingSettings.from_record(None)
    record = SETTINGS.to_record()
    del record["weight-key"]
    with pytest.raises(RemoteProtocolError, match="unusable"):
        EncodingSettings.from_record(record)


def _messages() -> list[UnmaskRequest | Abort]:
    session = flower_session_id(1)
    return [
        UnmaskRequest(
            session_id=session,
            round_id=3,
            sender=2**32 - 1,
            recipient=1,
            survivors=(0, 1),
            dropped=(2,),
        ),
        Abort(session_id=session, round_id=3, sender=1, recipient=2**32 - 1, reason="no"),
    ]


def test_records_wire_record_round_trips_protocol_messages() -> None:
    messages = _messages()
    content = RecordDict({WIRE_RECORD: wire_record(messages)})
    assert read_wire(content) == messages
    assert read_wire(RecordDict({WIRE_RECORD: wire_record([])})) == []


def test_records_read_wire_rejects_a_missing_or_foreign_record() -> None:
    with pytest.raises(RemoteProtocolError, match="secagg_mod installed"):
        read_wire(RecordDict({"config": ConfigRecord()}))
    not_bytes = ArrayRecord({"0": Array(np.zeros(4, dtype=np.float32))})
    with pytest.raises(RemoteProtocolError, match="not a uint8 vector"):
        read_wire(RecordDict({WIRE_RECORD: not_bytes}))
    gap = ArrayRecord({"1": Array(np.zeros(4, dtype=np.uint8))})
    with pytest.raises(RemoteProtocolError, match="not a uint8 vector"):
        read_wire(RecordDict({WIRE_RECORD: gap}))


def _content() -> RecordDict:
    return RecordDict(
        {
            "arrays": ArrayRecord(
                {
                    "w": Array(np.arange(6, dtype=np.float32).reshape(2, 3)),
                    "b": Array(np.asarray([-1.5, 2.5], dtype=np.float64)),
                }
            ),
            "config": ConfigRecord({"server-round": 1}),
        }
    )


def test_records_array_layout_flattens_and_restores_names_shapes_dtypes() -> None:
    content = _content()
    layout = ArrayLayout.of(content)
    assert layout.size == 8
    vector = layout.flatten(content)
    assert vector.dtype == np.float64
    np.testing.assert_array_equal(vector, [0, 1, 2, 3, 4, 5, -1.5, 2.5])
    restored = layout.unflatten(vector)
    assert list(restored) == ["w", "b"]
    assert restored["w"].numpy().dtype == np.float32 and tuple(restored["w"].shape) == (2, 3)
    np.testing.assert_array_equal(restored["b"].numpy(), [-1.5, 2.5])


def test_records_array_layout_rejects_other_arrays_and_shared_names() -> None:
    layout = ArrayLayout.of(_content())
    other = RecordDict({"arrays": ArrayRecord({"w": Array(np.zeros((3, 2), dtype=np.float32))})})
    with pytest.raises(LocalProtocolError, match="broadcast arrays"):
        layout.flatten(other)
    twice = _content()
    twice["more"] = ArrayRecord({"w": Array(np.zeros(1, dtype=np.float32))})
    with pytest.raises(ParameterError, match="share an array name"):
        ArrayLayout.of(twice)


def test_records_weight_is_read_from_a_metric_and_stripped_from_the_rest() -> None:
    content = RecordDict({"metrics": MetricRecord({"num-examples": 12, "train-loss": 0.5})})
    assert weight_of(content, "num-examples") == 12.0
    assert [(k, dict(r)) for k, r in without_weight(content, "num-examples")] == [
        ("metrics", {"train-loss": 0.5})
    ]
    with pytest.raises(LocalProtocolError, match="numeric metric 'examples'"):
        weight_of(content, "examples")


def test_records_node_claim_round_trips_and_rejects_malformed_claims() -> None:
    claim = NodeClaim(client_id=3, signature=bytes(range(64)))
    content = RecordDict({IDENTIFY_RECORD: claim.to_record()})
    assert NodeClaim.from_content(content) == claim
    for record in (
        None,
        ConfigRecord({"client-id": 3}),
        ConfigRecord({"client-id": "3", "signature": b"x"}),
        ConfigRecord({"client-id": True, "signature": b"x"}),
    ):
        bad = RecordDict() if record is None else RecordDict({IDENTIFY_RECORD: record})
        with pytest.raises(RemoteProtocolError, match="identity claim"):
            NodeClaim.from_content(bad)
