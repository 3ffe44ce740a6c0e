"""Tests of :class:`PaillierServer`: it never holds the secret key (nor a committee share),
rejects each bad upload (malformed, unsigned, replayed) on its own while keeping the other
clients' contributions, aborts below the minimum number of contributors, and refuses messages out
of turn."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import gmpy2
import numpy as np
import numpy.typing as npt
import phe
import pytest

from protocols._transitions import ClientPhase, ServerPhase
from protocols.messages import (
    KEY_HOLDER_ID,
    SERVER_ID,
    Abort,
    DecryptedAggregate,
    DecryptionRequest,
    DecryptionShare,
    EncryptedInput,
    Message,
    decryptor_id,
)
from protocols.paillier import (
    KeyHolder,
    PaillierParams,
    PaillierServer,
    PaillierSimulator,
    key_fingerprint,
)
from protocols.paillier.trust import sign_upload
from secagg.errors import (
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
    SlotOverflowError,
)
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import (
    DecryptionKeyShare,
    PaillierKeypair,
    RandomnessMode,
    ThresholdKeyset,
)
from secagg.hazmat.sign import generate_identity

if TYPE_CHECKING:
    from conftest import PaillierKit


_MPZ = type(gmpy2.mpz(0))


def _secrets_in(kit: type[PaillierKit], root: object, keys: PaillierKeypair) -> list[object]:
    p, q = int(keys.private_key.p), int(keys.private_key.q)
    phi = (p - 1) * (q - 1)
    found: list[object] = []
    for obj in kit.object_graph(root):
        if isinstance(obj, phe.PaillierPrivateKey):
            found.append(obj)
        elif isinstance(obj, int | _MPZ) and not isinstance(obj, bool) and obj in (p, q, phi):
            found.append(obj)
    return found


def _shares_in(kit: type[PaillierKit], root: object, keys: ThresholdKeyset) -> list[object]:
    """Every key share, or secret share value s_i, of ``keys`` reachable from ``root``."""
    values = {share.share for share in keys.shares}
    found: list[object] = []
    for obj in kit.object_graph(root):
        if isinstance(obj, DecryptionKeyShare):
            found.append(obj)
        elif isinstance(obj, int | _MPZ) and not isinstance(obj, bool) and obj in values:
            found.append(obj)
    return found


def test_object_graph_walk_finds_the_key_holder_secret(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    # Positive control: the walk does reach a private key and its primes where they are.
    holder = KeyHolder(
        keys, session_id=kit.session(), roster=kit.roster, value_bits=16, max_clients=4
    )
    found = _secrets_in(kit, holder, keys)
    assert any(isinstance(obj, phe.PaillierPrivateKey) for obj in found)
    p = int(keys.private_key.p)
    assert any(isinstance(obj, int | _MPZ) and obj == p for obj in found)


@pytest.mark.parametrize("mode", list(RandomnessMode))
def test_server_and_clients_never_hold_the_secret_key(
    kit: type[PaillierKit], real_keys: PaillierKeypair, mode: RandomnessMode
) -> None:
    params = kit.params(3, vector_length=30, max_clients=4)
    inputs = kit.inputs(params, seed=12)
    holder = kit.key_holder(real_keys, params)
    simulator = PaillierSimulator(
        params, inputs, holder, identities=kit.identities, roster=kit.roster, mode=mode
    )
    assert _secrets_in(kit, simulator.server, real_keys) == []
    report = simulator.run()
    assert kit.result(report).contributors == (0, 1, 2)
    assert simulator.server.phase is ServerPhase.DONE
    assert _secrets_in(kit, simulator.server, real_keys) == []
    assert isinstance(vars(simulator.server), dict)
    for client in simulator.clients.values():
        assert client.phase is ClientPhase.DONE
        assert _secrets_in(kit, client, real_keys) == []


def test_server_mid_round_holds_no_secret_key(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=30)
    server, uploads = kit.server_with_uploads(keys, params, kit.inputs(params), (0, 1))
    assert server.phase is ServerPhase.COLLECT_INPUTS
    assert _secrets_in(kit, server, keys) == []
    assert _secrets_in(kit, uploads, keys) == []


def test_object_graph_walk_finds_a_decryptor_share(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset
) -> None:
    # Positive control for the committee: a member holds its share, and the walk finds it.
    (member, *_) = kit.committee(committee_keys, kit.params(3))
    found = _shares_in(kit, member, committee_keys)
    assert any(isinstance(obj, DecryptionKeyShare) for obj in found)
    assert committee_keys.shares[0].share in found


@pytest.mark.parametrize("mode", list(RandomnessMode))
def test_server_and_clients_never_hold_a_committee_share(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset, mode: RandomnessMode
) -> None:
    params = kit.params(3, vector_length=30, max_clients=4)
    inputs = kit.inputs(params, seed=12)
    simulator = PaillierSimulator(
        params,
        inputs,
        kit.committee(committee_keys, params),
        identities=kit.identities,
        roster=kit.roster,
        mode=mode,
    )
    assert _shares_in(kit, simulator.server, committee_keys) == []
    report = simulator.run()
    assert kit.result(report).decryptors == (1, 2, 3)
    assert simulator.server.phase is ServerPhase.DONE
    assert _shares_in(kit, simulator.server, committee_keys) == []
    for client in simulator.clients.values():
        assert client.phase is ClientPhase.DONE
        assert _shares_in(kit, client, committee_keys) == []


class BadUpload(NamedTuple):
    """What replaces client 0's upload, the exact error, its message, whether client 0 counts."""

    replace: Callable[[EncryptedInput], Sequence[Message]]
    error: type[Exception]
    match: str
    counted: bool


# Every invalid Paillier ciphertext gets the same opaque message (no hint which check failed).
OPAQUE = r"^invalid Paillier ciphertext$"


REPLAY = "another session or round"
UNSIGNED = r"^an upload in client 0's name is not signed by its identity key$"


def _bad_uploads(
    kit: type[PaillierKit],
    keys: PaillierKeypair,
    narrower: PaillierKeypair,
    params: PaillierParams,
    inputs: Mapping[int, npt.NDArray[np.unsignedinteger]],
) -> dict[str, BadUpload]:
    p, q = int(keys.private_key.p), int(keys.private_key.q)
    nsquare = int(keys.public_key.nsquare)
    all_ones = (1 << (8 * hazmat.ciphertext_byte_length(keys.public_key))) - 1

    def chunk(index: int, value: Callable[[int], int]) -> Callable[[EncryptedInput], list[Message]]:
        # Client 0 itself is malicious: it signs the bad ciphertext, so only the value is wrong.
        def replace(m: EncryptedInput) -> list[Message]:
            original = int.from_bytes(kit.chunks(m.ciphertexts, m.ciphertext_bytes)[index], "big")
            return [kit.with_chunk(m, index, value(original), keys)]

        return replace

    def narrow_key(m: EncryptedInput) -> list[Message]:
        return [kit.honest_upload_under(narrower, params, 0, inputs[0], signed_for=keys)]

    def signed(signature: Callable[[EncryptedInput], bytes]) -> Callable[..., list[Message]]:
        return lambda m: [dataclasses.replace(m, signature=signature(m))]

    def tampered(m: EncryptedInput) -> list[Message]:
        # Someone other than client 0 changes one ciphertext and cannot sign it.
        width = m.ciphertext_bytes
        swapped = m.ciphertexts[width:] + m.ciphertexts[:width]
        return [dataclasses.replace(m, ciphertexts=swapped)]

    def sig(**options: Any) -> Callable[[EncryptedInput], bytes]:
        def make(m: EncryptedInput) -> bytes:
            changed: dict[str, Any] = {
                "keys": keys,
                "session_id": m.session_id,
                "round_id": m.round_id,
                "sender": m.sender,
                "ciphertexts": m.ciphertexts,
            }
            changed.update(options)
            return kit.signature(**changed)

        return make

    unenrolled = generate_identity()

    def drop_last(m: EncryptedInput) -> list[Message]:
        return [dataclasses.replace(m, ciphertexts=m.ciphertexts[: -m.ciphertext_bytes])]

    def add_one(m: EncryptedInput) -> list[Message]:
        extra = m.ciphertexts[: m.ciphertext_bytes]
        return [dataclasses.replace(m, ciphertexts=m.ciphertexts + extra)]

    def abort_first(m: EncryptedInput) -> list[Message]:
        notice = Abort(
            session_id=m.session_id, round_id=m.round_id, sender=0, recipient=SERVER_ID, reason="x"
        )
        return [notice, m]

    def replaced(**changes: Any) -> Callable[[EncryptedInput], list[Message]]:
        return lambda m: [dataclasses.replace(m, **changes)]

    invalid = InvalidCiphertextError
    remote = RemoteProtocolError
    return {
        "ciphertext_zero": BadUpload(chunk(0, lambda c: 0), invalid, OPAQUE, False),
        "ciphertext_n_squared": BadUpload(chunk(1, lambda c: nsquare), invalid, OPAQUE, False),
        "ciphertext_n_squared_plus_one": BadUpload(
            chunk(1, lambda c: nsquare + 1), invalid, OPAQUE, False
        ),
        "ciphertext_all_ones": BadUpload(chunk(0, lambda c: all_ones), invalid, OPAQUE, False),
        "ciphertext_multiple_of_p": BadUpload(
            chunk(1, lambda c: c * p % nsquare), invalid, OPAQUE, False
        ),
        "ciphertext_equal_to_q": BadUpload(chunk(0, lambda c: q), invalid, OPAQUE, False),
        "other_key_other_width": BadUpload(
            narrow_key, invalid, "not under the decryptors' key", False
        ),
        "too_few_ciphertexts": BadUpload(drop_last, remote, "sent 1 ciphertexts", False),
        "too_many_ciphertexts": BadUpload(add_one, remote, "sent 3 ciphertexts", False),
        "wrong_round": BadUpload(replaced(round_id=kit.ROUND + 1), remote, REPLAY, False),
        "wrong_session": BadUpload(replaced(session_id=bytes(16)), remote, REPLAY, False),
        "replayed_earlier_round": BadUpload(
            lambda m: [dataclasses.replace(m, round_id=kit.ROUND - 1), m], remote, REPLAY, True
        ),
        "replayed_same_client": BadUpload(lambda m: [m, m], remote, "uploaded twice", True),
        "uninvited_sender": BadUpload(
            lambda m: [m, dataclasses.replace(m, sender=99)], remote, "not invited", True
        ),
        "unexpected_type": BadUpload(abort_first, remote, "unexpected Abort", True),
        # A bad upload of client 0's own does not lock its genuine upload out.
        "bad_then_genuine": BadUpload(
            lambda m: [*chunk(0, lambda c: 0)(m), m], invalid, OPAQUE, True
        ),
        # Nor does a forgery in client 0's name that nobody could sign.
        "unsigned_forgery_then_genuine": BadUpload(
            lambda m: [*tampered(m), m], remote, UNSIGNED, True
        ),
        "tampered_ciphertexts": BadUpload(tampered, remote, UNSIGNED, False),
        "zero_signature": BadUpload(signed(lambda m: bytes(64)), remote, UNSIGNED, False),
        "signed_by_other_client": BadUpload(signed(sig(signer=1)), remote, UNSIGNED, False),
        "signed_for_other_round": BadUpload(
            signed(sig(round_id=kit.ROUND + 1)), remote, UNSIGNED, False
        ),
        "signed_for_other_session": BadUpload(
            signed(sig(session_id=bytes(16))), remote, UNSIGNED, False
        ),
        "signed_for_other_key": BadUpload(signed(sig(keys=narrower)), remote, UNSIGNED, False),
        "signed_by_unenrolled_key": BadUpload(
            lambda m: [
                dataclasses.replace(
                    m,
                    signature=sign_upload(
                        unenrolled,
                        m.session_id,
                        m.round_id,
                        0,
                        key_fingerprint(keys.public_key),
                        m.ciphertexts,
                        kit.shape_of(params),
                    ),
                )
            ],
            remote,
            UNSIGNED,
            False,
        ),
    }


BAD_UPLOAD_NAMES = [
    "ciphertext_zero",
    "ciphertext_n_squared",
    "ciphertext_n_squared_plus_one",
    "ciphertext_all_ones",
    "ciphertext_multiple_of_p",
    "ciphertext_equal_to_q",
    "other_key_other_width",
    "too_few_ciphertexts",
    "too_many_ciphertexts",
    "wrong_round",
    "wrong_session",
    "replayed_earlier_round",
    "replayed_same_client",
    "uninvited_sender",
    "unexpected_type",
    "bad_then_genuine",
    "unsigned_forgery_then_genuine",
    "tampered_ciphertexts",
    "zero_signature",
    "signed_by_other_client",
    "signed_for_other_round",
    "signed_for_other_session",
    "signed_for_other_key",
    "signed_by_unenrolled_key",
]


@pytest.mark.parametrize("name", BAD_UPLOAD_NAMES)
def test_server_rejects_bad_upload_and_keeps_the_others(
    kit: type[PaillierKit], keys: PaillierKeypair, narrower_keys: PaillierKeypair, name: str
) -> None:
    # 60 values in 56-slot plaintexts: two ciphertexts per client.
    params = kit.params(4, vector_length=60, value_bits=16, max_clients=4)
    inputs = kit.inputs(params, seed=14)
    bad = _bad_uploads(kit, keys, narrower_keys, params, inputs)[name]
    requests, record = kit.recorder(DecryptionRequest)

    def replace(round_index: int, message: Message) -> Message | Sequence[Message] | None:
        record(round_index, message)
        return kit.replacing(0, bad.replace)(round_index, message)

    report, holder = kit.simulate(keys, params, inputs, interceptor=replace)
    (request,) = requests
    assert isinstance(request, DecryptionRequest)
    expected = (0, 1, 2, 3) if bad.counted else (1, 2, 3)
    # The decryptors are handed exactly the uploads the server kept, in client order.
    assert tuple(m.sender for m in request.uploads) == expected
    assert [type(e) for e in report.server_rejections] == [bad.error]
    assert re.search(bad.match, str(report.server_rejections[0]))
    result = kit.result(report)
    assert result.contributors == expected
    assert result.dropped == (() if bad.counted else (0,))
    kit.assert_exact(result.vector, kit.plain_sum(inputs, expected))
    assert holder.last_round == kit.ROUND
    if bad.match == UNSIGNED:
        # Anyone can send an unsigned upload in client 0's name: it is not held against it.
        assert report.misbehaved == {}


def test_server_accepts_same_width_foreign_key_which_key_holder_catches(
    kit: type[PaillierKit], keys: PaillierKeypair, smaller_same_width_keys: PaillierKeypair
) -> None:
    # A ciphertext under another key of the same width (with a smaller n) is a unit below our
    # n^2: the server cannot tell it from a genuine one and multiplies it in. The aggregate
    # then decrypts to garbage, which the key holder's slot check rejects; the round is lost,
    # honest contributions included (telling the keys apart needs proofs of plaintext knowledge).
    params = kit.params(4, vector_length=60, value_bits=16, max_clients=4)
    inputs = kit.inputs(params, seed=15)

    def foreign(m: EncryptedInput) -> list[Message]:
        # Client 0 is malicious: it encrypts under another key and signs for ours.
        return [
            kit.honest_upload_under(smaller_same_width_keys, params, 0, inputs[0], signed_for=keys)
        ]

    requests, record = kit.recorder(DecryptionRequest)

    def replace(round_index: int, message: Message) -> Message | Sequence[Message] | None:
        record(round_index, message)
        return kit.replacing(0, foreign)(round_index, message)

    report, holder = kit.simulate(keys, params, inputs, interceptor=replace)
    assert report.server_rejections == []
    assert isinstance(report.client_errors[KEY_HOLDER_ID], SlotOverflowError)
    assert report.result is None
    assert [len(m.uploads) for m in requests if isinstance(m, DecryptionRequest)] == [4]
    assert holder.last_round == kit.ROUND


def test_server_below_min_contributors_aborts(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(4, vector_length=20, min_contributors=3)
    inputs = kit.inputs(params)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 2))
    with pytest.raises(InsufficientSurvivorsError, match="below the minimum 3"):
        server.close_phase()
    assert server.phase is ServerPhase.ABORTED
    assert server.abort_reason is not None
    with pytest.raises(LocalProtocolError):
        _ = server.result
    with pytest.raises(LocalProtocolError):
        server.close_phase()


def test_server_result_before_done_raises(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    params = kit.params(3, vector_length=20)
    server, _ = kit.server_with_uploads(keys, params, kit.inputs(params), (0, 1, 2))
    with pytest.raises(LocalProtocolError):
        _ = server.result
    server.close_phase()
    assert server.phase is ServerPhase.COLLECT_UNMASK
    with pytest.raises(LocalProtocolError):
        _ = server.result


def test_server_rejects_late_upload_after_close(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=20)
    inputs = kit.inputs(params, seed=16)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 1))
    _, (late,) = kit.server_with_uploads(keys, params, inputs, (2,))
    (request,) = server.close_phase()
    with pytest.raises(RemoteProtocolError) as excinfo:
        server.receive(late)
    assert excinfo.type is RemoteProtocolError
    assert isinstance(request, DecryptionRequest)
    assert len(request.uploads) == 2


def _phase(server: PaillierServer) -> ServerPhase:
    return server.phase


def test_server_rejects_decrypted_aggregate_for_other_contributor_count(
    kit: type[PaillierKit],
    keys: PaillierKeypair,
) -> None:
    params = kit.params(3, vector_length=20)
    inputs = kit.inputs(params, seed=17)
    server, _ = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    (aggregate,) = server.close_phase()
    (reply,) = kit.key_holder(keys, params).receive(aggregate)
    assert isinstance(reply, DecryptedAggregate)
    for bad in (
        dataclasses.replace(reply, contributors=2),
        dataclasses.replace(reply, vector=reply.vector[:-1]),
        dataclasses.replace(reply, sender=0),
    ):
        with pytest.raises(RemoteProtocolError):
            server.receive(bad)
    assert _phase(server) is ServerPhase.COLLECT_UNMASK
    server.receive(reply)
    assert _phase(server) is ServerPhase.DONE
    kit.assert_exact(server.result.vector, kit.plain_sum(inputs, (0, 1, 2)))


def test_server_start_twice_raises(kit: type[PaillierKit], keys: PaillierKeypair) -> None:
    server = PaillierServer(kit.params(3), keys.public_key, kit.roster)
    assert len(server.start()) == 3
    with pytest.raises(LocalProtocolError):
        server.start()


def test_server_needs_the_roster_of_its_clients(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3)
    not_a_roster: Any = dict(kit.roster.keys)
    with pytest.raises(ParameterError, match="TrustedRoster"):
        PaillierServer(params, keys.public_key, not_a_roster)
    outsiders = dataclasses.replace(params, clients=(0, 1, 99))
    with pytest.raises(ParameterError, match=r"clients \[99\] are not on the trusted roster"):
        PaillierServer(outsiders, keys.public_key, kit.roster)


def test_committee_server_asks_every_member_and_combines_threshold_partials(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset
) -> None:
    params = kit.params(3, vector_length=30)
    inputs = kit.inputs(params, seed=18)
    server, uploads = kit.server_with_uploads(committee_keys, params, inputs, (0, 1, 2))
    requests = server.close_phase()
    assert [m.recipient for m in requests] == list(server.decryptors)
    assert server.decryptors == tuple(decryptor_id(i) for i in range(1, 6))
    assert all(isinstance(m, DecryptionRequest) and m.uploads == tuple(uploads) for m in requests)
    members = kit.committee(committee_keys, params)
    # Members 5, 2 and 4 answer (any three, in any order); 1 and 3 never do.
    for index in (5, 2, 4):
        (share,) = members[index - 1].receive(requests[index - 1])
        assert isinstance(share, DecryptionShare)
        assert (share.index, share.sender) == (index, decryptor_id(index))
        server.receive(share)
    assert _phase(server) is ServerPhase.COLLECT_UNMASK
    assert server.close_phase() == []
    assert _phase(server) is ServerPhase.DONE
    assert server.result.decryptors == (2, 4, 5)
    kit.assert_exact(server.result.vector, kit.plain_sum(inputs, (0, 1, 2)))


def test_committee_server_below_threshold_partials_aborts(
    kit: type[PaillierKit], committee_keys: ThresholdKeyset
) -> None:
    params = kit.params(3, vector_length=30)
    inputs = kit.inputs(params, seed=19)
    server, _ = kit.server_with_uploads(committee_keys, params, inputs, (0, 1, 2))
    requests = server.close_phase()
    members = kit.committee(committee_keys, params)
    for index in (1, 4):
        (share,) = members[index - 1].receive(requests[index - 1])
        server.receive(share)
    with pytest.raises(InsufficientSurvivorsError, match=r"^2 of 5 decryptors .* 3 are needed"):
        server.close_phase()
    assert server.phase is ServerPhase.ABORTED
    with pytest.raises(LocalProtocolError):
        _ = server.result


def test_server_takes_only_its_own_kind_of_decryption(
    kit: type[PaillierKit], keys: PaillierKeypair, committee_keys: ThresholdKeyset
) -> None:
    params = kit.params(3, vector_length=30)
    inputs = kit.inputs(params, seed=20)
    # A committee round takes no decrypted sums (a single party's word).
    committee, _ = kit.server_with_uploads(committee_keys, params, inputs, (0, 1, 2))
    committee.close_phase()
    claimed = DecryptedAggregate(
        session_id=params.session_id,
        round_id=params.round_id,
        sender=KEY_HOLDER_ID,
        recipient=SERVER_ID,
        contributors=3,
        vector=kit.plain_sum(inputs, (0, 1, 2)),
    )
    with pytest.raises(RemoteProtocolError, match="only the single key holder"):
        committee.receive(claimed)
    assert committee.phase is ServerPhase.COLLECT_UNMASK
    # A key-holder round takes no partial decryptions.
    single, _ = kit.server_with_uploads(keys, params, inputs, (0, 1, 2))
    single.close_phase()
    share = DecryptionShare(
        session_id=params.session_id,
        round_id=params.round_id,
        sender=decryptor_id(1),
        recipient=SERVER_ID,
        index=1,
        partial=b"\x00" * 64,
    )
    with pytest.raises(RemoteProtocolError, match="takes no partial decryptions"):
        single.receive(share)
    assert single.phase is ServerPhase.COLLECT_UNMASK


def test_server_deadline_without_the_key_holders_answer_aborts_cleanly(
    kit: type[PaillierKit], keys: PaillierKeypair
) -> None:
    params = kit.params(3, vector_length=4, value_bits=8, max_clients=3)
    server, _ = kit.server_with_uploads(keys, params, kit.inputs(params), params.clients)
    server.close_phase()  # the decryption request goes out; no answer comes back
    with pytest.raises(InsufficientSurvivorsError, match="the key holder sent no decryption"):
        server.close_phase()
    assert server.phase is ServerPhase.ABORTED
