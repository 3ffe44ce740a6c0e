"""One malicious client cannot abort a round with its key advertisement (toward issue 11).

A low-order or copied public key, relayed in the roster, would make every honest neighbour
abort. The server turns such an advertisement away, so the client is left out of the round (as
if it had dropped in AdvertiseKeys) and the others' sum is exact.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocols.messages import KeyAdvertisement, Message
from protocols.simulate import Simulator
from secagg.errors import InvalidCiphertextError, RemoteProtocolError
from secagg.hazmat.kex import check_public_key, generate_keypair

#: Low-order points of Curve25519 (RFC 7748 section 7 warns of them): 0, 1 and the order-8 point.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]
CULPRIT = 2


def _run(params, inputs, replace_keys) -> object:
    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, KeyAdvertisement) and message.sender == CULPRIT:
            return replace_keys(message)
        return message

    return Simulator(params, inputs, interceptor=interceptor).run()


def _assert_round_without_culprit(report, params, inputs, ring_sum) -> None:
    assert report.error is None, report.error
    assert CULPRIT not in report.result.survivors
    assert report.dropped_at[CULPRIT] == 0
    assert report.client_errors == {}
    expected = ring_sum(inputs, report.result.survivors, params.modulus_bits)
    assert np.array_equal(report.result.vector, expected)
    assert any(isinstance(e, RemoteProtocolError) for e in report.server_rejections)


@pytest.mark.parametrize("point", LOW_ORDER, ids=["zero", "one", "order-8"])
@pytest.mark.parametrize("field", ["mask_public_key", "share_public_key"])
@pytest.mark.parametrize("graph", ["complete", "harary"])
def test_low_order_key_leaves_only_its_sender_out(
    make_params, make_inputs, ring_sum, point, field, graph
):
    params = make_params(8, graph=graph, degree=6, threshold=4)
    inputs = make_inputs(params)
    report = _run(params, inputs, lambda m: dataclasses.replace(m, **{field: point}))
    _assert_round_without_culprit(report, params, inputs, ring_sum)


def test_copied_key_leaves_only_the_copier_out(make_params, make_inputs, ring_sum):
    params = make_params(6)
    inputs = make_inputs(params)
    stolen = {}

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, KeyAdvertisement) and message.sender == 0:
            stolen["mask"] = message.mask_public_key
        if isinstance(message, KeyAdvertisement) and message.sender == CULPRIT:
            return dataclasses.replace(message, mask_public_key=stolen["mask"])
        return message

    report = Simulator(params, inputs, interceptor=interceptor).run()
    _assert_round_without_culprit(report, params, inputs, ring_sum)
    assert 0 in report.result.survivors


def test_check_public_key_refuses_low_order_points_only() -> None:
    for point in LOW_ORDER:
        with pytest.raises(InvalidCiphertextError):
            check_public_key(point)
    check_public_key(generate_keypair().public_bytes)
