"""Whole Paillier rounds decrypted by a 3-of-5 committee of :class:`Decryptor` members.

A committee round is bit-for-bit exact for random packed inputs, both randomness modes, with or
without the wire codec, with client dropouts and with members dropping out down to the threshold;
one member fewer aborts with an error that says how many answered. A member that lies (altered
bytes, another member's partial decryption, one bound to another round or to another aggregate,
a second answer) is named in ``report.misbehaved``, excluded, and the round still finishes
exactly while three honest members remain.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.messages import DecryptionRequest, DecryptionShare, Message, decryptor_id
from protocols.paillier import Decryptor
from protocols.paillier.trust import decryption_context, plain_key
from secagg.errors import DecryptorMisbehaviourError, InsufficientSurvivorsError, ParameterError
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import RandomnessMode, ThresholdKeyset

if TYPE_CHECKING:
    from conftest import PaillierKit

UPLOAD = 2  # Protocol round index of the upload (as in dropout schedules).
MEMBERS = (1, 2, 3, 4, 5)
THRESHOLD = 3


@st.composite
def committee_rounds(draw: st.DrawFn) -> dict[str, Any]:
    """A committee round: clients, packing, client and member dropouts, mode, transport."""
    n = draw(st.integers(2, 8))
    max_clients = draw(st.integers(n, 12))
    headroom = (max_clients - 1).bit_length()
    return {
        "n": n,
        "max_clients": max_clients,
        "value_bits": draw(st.integers(1, min(63, 64 - headroom))),
        "vector_length": draw(st.integers(1, 90)),
        "dropouts": draw(st.dictionaries(st.integers(0, n - 1), st.integers(0, 3), max_size=n)),
        # Up to m - t + 1 = 3 silent members: the last case is one below the threshold.
        "silent": draw(st.sets(st.sampled_from(MEMBERS), max_size=3)),
        "fill": draw(st.sampled_from(["random", "random", "max", "zero"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "mode": draw(st.sampled_from(RandomnessMode)),
        "through_wire": draw(st.booleans()),
    }


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=committee_rounds())
def test_committee_sum_is_exact_for_random_rounds(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset, config: dict[str, Any]
) -> None:
    params = kit.params(
        config["n"],
        vector_length=config["vector_length"],
        value_bits=config["value_bits"],
        max_clients=config["max_clients"],
    )
    inputs = kit.inputs(params, seed=config["seed"], fill=config["fill"])
    schedule: dict[int, int] = config["dropouts"]
    silent: set[int] = config["silent"]
    contributors = tuple(u for u in params.clients if schedule.get(u, 4) > UPLOAD)

    report, members = kit.simulate_committee(
        committee_keys,
        params,
        inputs,
        mode=config["mode"],
        dropouts=schedule,
        decryptor_dropouts=silent,
        through_wire=config["through_wire"],
    )

    assert report.client_errors == {}
    assert report.server_rejections == []
    assert report.misbehaved == {}
    if len(contributors) < params.min_contributors:
        assert isinstance(report.error, InsufficientSurvivorsError)
        assert all(member.last_round is None for member in members)
        return
    answering = [i for i in MEMBERS if i not in silent]
    # Every member that answered decrypted this round, and only this round.
    assert [m.index for m in members if m.last_round == kit.ROUND] == answering
    if len(answering) < THRESHOLD:
        assert isinstance(report.error, InsufficientSurvivorsError)
        assert str(report.error).startswith(
            f"{len(answering)} of 5 decryptors sent a valid partial decryption; 3 are needed"
        )
        assert report.result is None
        return
    result = kit.result(report)
    assert result.contributors == contributors
    assert result.decryptors == tuple(answering[:THRESHOLD])
    kit.assert_exact(result.vector, kit.plain_sum(inputs, contributors))


@pytest.mark.parametrize("mode", list(RandomnessMode))
@pytest.mark.parametrize("through_wire", [False, True])
@pytest.mark.parametrize("silent", [(), (1, 4), (4, 5), (1, 2)], ids=str)
def test_committee_sum_is_exact_down_to_threshold_members(
    kit: type[PaillierKit],
    committee_keys: ThresholdKeyset,
    mode: RandomnessMode,
    through_wire: bool,
    silent: tuple[int, ...],
) -> None:
    params = kit.params(6, vector_length=50, value_bits=16, max_clients=6)
    inputs = kit.inputs(params, seed=31)
    report, _ = kit.simulate_committee(
        committee_keys,
        params,
        inputs,
        mode=mode,
        dropouts={0: 0, 3: 2, 5: 3},
        decryptor_dropouts=silent,
        through_wire=through_wire,
    )
    result = kit.result(report)
    # Clients 0 and 3 left before uploading; 5 left after, so it counts.
    assert result.contributors == (1, 2, 4, 5)
    assert result.dropped == (0, 3)
    assert result.decryptors == tuple(i for i in MEMBERS if i not in silent)[:THRESHOLD]
    kit.assert_exact(result.vector, kit.plain_sum(inputs, (1, 2, 4, 5)))


@pytest.mark.parametrize("silent", [(1, 2, 3), (2, 4, 5), (1, 2, 3, 4, 5)], ids=str)
def test_committee_below_threshold_members_aborts_naming_the_count(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset, silent: tuple[int, ...]
) -> None:
    params = kit.params(4, vector_length=20)
    inputs = kit.inputs(params, seed=32)
    shares, record = kit.recorder(DecryptionShare)
    report, _ = kit.simulate_committee(
        committee_keys, params, inputs, decryptor_dropouts=silent, interceptor=record
    )
    answered = 5 - len(silent)
    assert isinstance(report.error, InsufficientSurvivorsError)
    assert str(report.error) == (
        f"{answered} of 5 decryptors sent a valid partial decryption; 3 are needed"
    )
    assert report.result is None
    assert len(shares) == answered
    assert report.misbehaved == {}


def _product(keys: ThresholdKeyset, request: DecryptionRequest) -> list[int]:
    """The aggregate a request stands for, multiplied here from its uploads."""
    public_key = plain_key(keys.public)
    vectors = [hazmat.ciphertexts_from_bytes(public_key, u.ciphertexts) for u in request.uploads]
    return hazmat.sum_ciphertext_vectors(public_key, vectors)


Lie = Callable[[DecryptionShare, dict[int, DecryptionShare], DecryptionRequest], DecryptionShare]


def _flip_byte(share: DecryptionShare, *_: Any) -> DecryptionShare:
    partial = bytearray(share.partial)
    partial[len(partial) // 2] ^= 0x01  # inside the values: it parses, its proof fails
    return dataclasses.replace(share, partial=bytes(partial))


def _truncate(share: DecryptionShare, *_: Any) -> DecryptionShare:
    return dataclasses.replace(share, partial=share.partial[:-1])


def _others_partial(
    share: DecryptionShare, seen: dict[int, DecryptionShare], _: DecryptionRequest
) -> DecryptionShare:
    return dataclasses.replace(share, partial=seen[1].partial)


def _others_partial_and_index(
    share: DecryptionShare, seen: dict[int, DecryptionShare], _: DecryptionRequest
) -> DecryptionShare:
    return dataclasses.replace(share, index=1, partial=seen[1].partial)


def _lie_with(keys: ThresholdKeyset, *, round_shift: int = 0, drop_upload: bool = False) -> Lie:
    """A partial decryption by the liar's own share, but of another round or aggregate."""

    def lie(
        share: DecryptionShare, seen: dict[int, DecryptionShare], request: DecryptionRequest
    ) -> DecryptionShare:
        if drop_upload:
            request = dataclasses.replace(request, uploads=request.uploads[1:])
        context = decryption_context(share.session_id, share.round_id + round_shift, share.index)
        partial = hazmat.partial_decrypt(
            keys.shares[share.index - 1], _product(keys, request), context=context
        )
        return dataclasses.replace(share, partial=partial.to_bytes(keys.public))

    return lie


LIES = ["flipped_byte", "truncated", "others_partial", "others_partial_and_index"]
LIES += ["bound_to_next_round", "bound_to_previous_round", "of_another_aggregate"]


def _lies(keys: ThresholdKeyset) -> dict[str, Lie]:
    return {
        "flipped_byte": _flip_byte,
        "truncated": _truncate,
        "others_partial": _others_partial,
        "others_partial_and_index": _others_partial_and_index,
        "bound_to_next_round": _lie_with(keys, round_shift=1),
        "bound_to_previous_round": _lie_with(keys, round_shift=-1),
        "of_another_aggregate": _lie_with(keys, drop_upload=True),
    }


def _lying(
    liars: Sequence[int], lie: Lie
) -> tuple[Callable[[int, Message], Message], list[DecryptionShare]]:
    """An interceptor under which members ``liars`` send ``lie(their share)`` instead."""
    seen: dict[int, DecryptionShare] = {}
    requests: dict[int, DecryptionRequest] = {}
    delivered: list[DecryptionShare] = []

    def interceptor(round_index: int, message: Message) -> Message:
        if isinstance(message, DecryptionRequest):
            requests[message.recipient] = message
        if isinstance(message, DecryptionShare):
            seen.setdefault(message.index, message)
            if message.index in liars:
                message = lie(message, seen, requests[message.sender])
            delivered.append(message)
        return message

    return interceptor, delivered


@pytest.mark.parametrize("name", LIES)
def test_lying_decryptor_is_named_excluded_and_the_round_finishes(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset, name: str
) -> None:
    params = kit.params(4, vector_length=40)
    inputs = kit.inputs(params, seed=33)
    interceptor, delivered = _lying((2,), _lies(committee_keys)[name])
    report, _ = kit.simulate_committee(committee_keys, params, inputs, interceptor=interceptor)
    assert len(delivered) == 5
    (rejection,) = report.server_rejections
    assert isinstance(rejection, DecryptorMisbehaviourError)
    assert list(report.misbehaved) == [decryptor_id(2)]
    assert re.search(r"decryptor 2's|committee member 1", report.misbehaved[decryptor_id(2)])
    result = kit.result(report)
    assert result.decryptors == (1, 3, 4)
    kit.assert_exact(result.vector, kit.plain_sum(inputs, params.clients))


def test_lying_decryptor_error_names_its_index(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset
) -> None:
    params = kit.params(3, vector_length=20)
    interceptor, _ = _lying((4,), _flip_byte)
    report, _ = kit.simulate_committee(
        committee_keys, params, kit.inputs(params, seed=34), interceptor=interceptor
    )
    (rejection,) = report.server_rejections
    assert isinstance(rejection, DecryptorMisbehaviourError)
    assert rejection.culprit == 4
    assert str(rejection) == "decryptor 4's partial decryption failed its proof"
    assert report.misbehaved == {decryptor_id(4): str(rejection)}


@pytest.mark.parametrize("name", ["flipped_byte", "bound_to_next_round", "of_another_aggregate"])
def test_two_liars_leave_exactly_threshold_honest_members(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset, name: str
) -> None:
    params = kit.params(4, vector_length=40)
    inputs = kit.inputs(params, seed=35)
    interceptor, _ = _lying((1, 3), _lies(committee_keys)[name])
    report, _ = kit.simulate_committee(committee_keys, params, inputs, interceptor=interceptor)
    assert sorted(report.misbehaved) == sorted([decryptor_id(1), decryptor_id(3)])
    culprits = [
        e.culprit for e in report.server_rejections if isinstance(e, DecryptorMisbehaviourError)
    ]
    assert len(culprits) == len(report.server_rejections)
    assert sorted(culprits) == [1, 3]
    result = kit.result(report)
    assert result.decryptors == (2, 4, 5)
    kit.assert_exact(result.vector, kit.plain_sum(inputs, params.clients))


def test_liars_and_a_silent_member_leave_too_few_and_the_error_names_them(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset
) -> None:
    params = kit.params(4, vector_length=40)
    interceptor, _ = _lying((1, 3), _flip_byte)
    report, _ = kit.simulate_committee(
        committee_keys,
        params,
        kit.inputs(params, seed=36),
        interceptor=interceptor,
        decryptor_dropouts={5},
    )
    assert isinstance(report.error, InsufficientSurvivorsError)
    message = str(report.error)
    assert message.startswith("2 of 5 decryptors sent a valid partial decryption; 3 are needed")
    assert "excluded: 1 (decryptor 1's" in message and "3 (decryptor 3's" in message
    assert report.result is None
    assert sorted(report.misbehaved) == sorted([decryptor_id(1), decryptor_id(3)])


def test_decryptor_answering_twice_is_named_and_its_first_answer_kept(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset
) -> None:
    params = kit.params(3, vector_length=20)
    inputs = kit.inputs(params, seed=37)

    def twice(round_index: int, message: Message) -> Message | Sequence[Message]:
        if isinstance(message, DecryptionShare) and message.index == 2:
            return [message, _flip_byte(message)]
        return message

    report, _ = kit.simulate_committee(committee_keys, params, inputs, interceptor=twice)
    (rejection,) = report.server_rejections
    assert isinstance(rejection, DecryptorMisbehaviourError)
    assert "second partial decryption" in str(rejection)
    assert list(report.misbehaved) == [decryptor_id(2)]
    result = kit.result(report)
    kit.assert_exact(result.vector, kit.plain_sum(inputs, params.clients))


def test_replayed_partial_from_an_earlier_round_is_caught(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset
) -> None:
    # The same committee over two rounds of one session: member 2's genuine round-7 answer,
    # replayed into round 8, fails its proof there.
    first = kit.params(3, vector_length=20)
    second = dataclasses.replace(first, round_id=first.round_id + 1)
    members = kit.committee(committee_keys, first)
    old_shares, record = kit.recorder(DecryptionShare)
    report, _ = kit.simulate_committee(
        committee_keys, first, kit.inputs(first, seed=38), members=members, interceptor=record
    )
    kit.result(report)
    (old,) = [m for m in old_shares if isinstance(m, DecryptionShare) and m.index == 2]

    def replay(round_index: int, message: Message) -> Message:
        if isinstance(message, DecryptionShare) and message.index == 2:
            return dataclasses.replace(message, partial=old.partial)
        return message

    inputs = kit.inputs(second, seed=39)
    report, _ = kit.simulate_committee(
        committee_keys, second, inputs, members=members, interceptor=replay
    )
    assert list(report.misbehaved) == [decryptor_id(2)]
    result = kit.result(report)
    assert result.decryptors == (1, 3, 4)
    kit.assert_exact(result.vector, kit.plain_sum(inputs, second.clients))
    assert [m.last_round for m in members] == [second.round_id] * 5


def test_committee_members_must_share_one_key(
    kit: type[PaillierKit],
    committee_keys: ThresholdKeyset,
    other_committee_keys: ThresholdKeyset,
) -> None:
    params = kit.params(3, vector_length=20)
    mixed: list[Decryptor] = [
        *kit.committee(committee_keys, params)[:3],
        *kit.committee(other_committee_keys, params)[3:],
    ]
    with pytest.raises(ParameterError, match="shares of different keys"):
        kit.simulate_committee(committee_keys, params, kit.inputs(params), members=mixed)
