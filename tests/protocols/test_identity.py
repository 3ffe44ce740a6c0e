"""The trusted roster (the PKI of an active-model round) and the bytes its signatures cover."""

from __future__ import annotations

import re
import struct

import pytest

import protocols.identity as identity_module
from protocols.identity import ROSTER_HEADER, TrustedRoster, trusted_setup
from protocols.masking.keys import advertisement_message, consistency_message
from secagg.errors import InvalidSignatureError, ParameterError
from secagg.hazmat.sign import generate_identity, identity_from_private_bytes, sign

SESSION = bytes(range(16))
SEED = bytes(range(32, 64))
KEY_A = "11" * 32
KEY_B = "22" * 32


@pytest.fixture(scope="module")
def setup():
    return trusted_setup([4, 1, 9])


def _file(*lines: str) -> str:
    return "\n".join(lines) + "\n"


GOOD = (ROSTER_HEADER, f"seed {SEED.hex()}", f"1 {KEY_A}", f"2 {KEY_B}")


# -- round trip --------------------------------------------------------------------------------


def test_roster_round_trips_through_a_file(setup, tmp_path):
    roster, identities = setup
    path = tmp_path / "roster.txt"
    roster.save(path)
    loaded = TrustedRoster.load(path)
    assert loaded == roster
    assert loaded.ids == (1, 4, 9)
    assert loaded.seed == roster.seed
    assert path.read_text(encoding="ascii").splitlines()[0] == ROSTER_HEADER
    for client, identity in identities.items():
        assert loaded.keys[client] == identity.public_bytes


def test_loads_parses_a_hand_written_file_with_comments_and_blank_lines():
    text = _file(GOOD[0], "", "# the seed:", GOOD[1], "  ", f"  1 {KEY_A}  ", "# two", GOOD[3])
    roster = TrustedRoster.loads(text)
    assert roster.ids == (1, 2)
    assert roster.seed == SEED
    assert roster.keys[1] == bytes.fromhex(KEY_A)
    assert TrustedRoster.loads(roster.dumps()) == roster


def test_trusted_setup_gives_each_client_its_own_key():
    roster, identities = trusted_setup([3, 3, 0])
    assert roster.ids == (0, 3)
    assert {c: k.public_bytes for c, k in identities.items()} == dict(roster.keys)
    assert len(roster.seed) == 32
    assert trusted_setup([0, 3])[0].seed != roster.seed


# -- malformed files: ParameterError naming the file and the line --------------------------------

LINE_ERRORS = {
    "bad header": (("# secagg roster v0", *GOOD[1:]), 1),
    "short seed": ((GOOD[0], "seed abcd", *GOOD[2:]), 2),
    "non-hex seed": ((GOOD[0], "seed " + "zz" * 32, *GOOD[2:]), 2),
    "no seed line": ((GOOD[0], GOOD[2], GOOD[3]), 2),
    "short key": ((*GOOD[:3], "2 abcd"), 4),
    "non-hex key": ((*GOOD[:3], "2 " + "g" * 64), 4),
    "three fields": ((*GOOD[:3], f"2 {KEY_B} extra"), 4),
    "one field": ((*GOOD[:3], "2"), 4),
    "negative id": ((*GOOD[:3], f"-2 {KEY_B}"), 4),
    "non-ascii digit id": ((*GOOD[:3], f"\u00b2 {KEY_B}"), 4),
    "id too large": ((*GOOD[:3], f"{2**32} {KEY_B}"), 4),
    "duplicate id": ((*GOOD[:3], f"1 {KEY_B}"), 4),
    "duplicate key": ((*GOOD[:3], f"2 {KEY_A}"), 4),
}


@pytest.mark.parametrize("case", sorted(LINE_ERRORS))
def test_malformed_roster_names_file_and_line(case):
    lines, number = LINE_ERRORS[case]
    with pytest.raises(ParameterError) as caught:
        TrustedRoster.loads(_file(*lines), source="keys.txt")
    assert re.search(rf"\bkeys\.txt:{number}\b", str(caught.value)), str(caught.value)


@pytest.mark.parametrize(
    "lines",
    [(), (GOOD[0],), (GOOD[0], GOOD[1]), (*GOOD[:3],)],
    ids=["empty", "header only", "no clients", "one client"],
)
def test_incomplete_roster_names_the_file(lines):
    with pytest.raises(ParameterError) as caught:
        TrustedRoster.loads(_file(*lines) if lines else "", source="keys.txt")
    assert "keys.txt" in str(caught.value)


def test_load_names_a_missing_or_binary_file(tmp_path):
    with pytest.raises(ParameterError, match=r"missing\.txt"):
        TrustedRoster.load(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe" + _file(*GOOD).encode())
    with pytest.raises(ParameterError, match=r"binary\.txt"):
        TrustedRoster.load(binary)


def test_load_names_the_path_in_line_errors(tmp_path):
    path = tmp_path / "roster.txt"
    path.write_text(_file(*GOOD[:3], "2 abcd"), encoding="ascii")
    with pytest.raises(ParameterError, match=re.escape(f"{path}:4")):
        TrustedRoster.load(path)


# -- the constructor -----------------------------------------------------------------------------


def test_constructor_refuses_duplicate_keys_and_bad_entries():
    key = generate_identity().public_bytes
    other = generate_identity().public_bytes
    with pytest.raises(ParameterError, match="share one identity key"):
        TrustedRoster({0: key, 1: key}, SEED)
    with pytest.raises(ParameterError, match="at least 2"):
        TrustedRoster({0: key}, SEED)
    with pytest.raises(ParameterError):
        TrustedRoster({0: key, 1: other}, SEED[:31])
    with pytest.raises(ParameterError):
        TrustedRoster({0: key, 1: other[:31]}, SEED)
    with pytest.raises(ParameterError):
        TrustedRoster({0: key, True: other}, SEED)
    with pytest.raises(ParameterError):
        TrustedRoster({0: key, 2**32: other}, SEED)


# -- signatures and the order seed --------------------------------------------------------------


def test_check_signature_accepts_the_signer_only(setup):
    roster, identities = setup
    message = b"a message"
    signature = sign(identities[4], message)
    roster.check_signature(4, message, signature)
    for other in (1, 9):
        with pytest.raises(InvalidSignatureError):
            roster.check_signature(other, message, signature)
    with pytest.raises(InvalidSignatureError):
        roster.check_signature(5, message, signature)  # not on the roster
    with pytest.raises(InvalidSignatureError):
        roster.check_signature(4, message + b"!", signature)
    with pytest.raises(InvalidSignatureError):
        roster.check_signature(4, message, sign(generate_identity(), message))


def test_a_remembered_signature_still_binds_signer_message_and_signature(monkeypatch):
    """The roster remembers verified triples, never a failure, and keys them by all three."""
    plain_roster, identities = trusted_setup([1, 2])
    roster = plain_roster.shared_in_process()
    assert roster == plain_roster  # the same roster, with memory
    message = b"advertisement"
    good = sign(identities[1], message)
    calls = []
    real_verify = identity_module.verify

    def counting_verify(key, body, signature):
        calls.append(signature)
        real_verify(key, body, signature)

    monkeypatch.setattr(identity_module, "verify", counting_verify)
    roster.check_signature(1, message, good)
    roster.check_signature(1, message, good)
    assert len(calls) == 1  # the second check of the identical triple is remembered
    with pytest.raises(InvalidSignatureError):
        roster.check_signature(2, message, good)  # same bytes, other signer: verified, fails
    bad = bytes(64)
    for _ in range(2):
        with pytest.raises(InvalidSignatureError):
            roster.check_signature(1, message, bad)  # failures are checked every time
    with pytest.raises(InvalidSignatureError):
        roster.check_signature(1, message + b"!", good)
    assert len(calls) == 5


def test_the_remembered_signatures_are_bounded(monkeypatch):
    monkeypatch.setattr(identity_module, "VERIFIED_CACHE_SIZE", 3)
    plain, identities = trusted_setup([1, 2])
    shared = plain.shared_in_process()
    for index in range(10):
        message = b"m%d" % index
        for roster in (plain, shared):
            roster.check_signature(1, message, sign(identities[1], message))
    assert len(shared._verified) == 3
    assert len(plain._verified) == 0  # a device's roster keeps nothing between checks
    assert shared.pinned(1, 2).remember and not plain.pinned(1, 2).remember


def test_order_seed_differs_per_session_and_round(setup):
    roster, _ = setup
    seeds = {
        roster.order_seed(session, round_id)
        for session in (SESSION, bytes(16), b"\x01" * 16)
        for round_id in (0, 1, 2**40)
    }
    assert len(seeds) == 9
    assert all(len(s) == 32 for s in seeds)
    assert roster.order_seed(SESSION, 1) == roster.order_seed(SESSION, 1)
    other = TrustedRoster(dict(roster.keys), bytes(32))
    assert other.order_seed(SESSION, 1) != roster.order_seed(SESSION, 1)


# -- known-answer layout of the signed messages -----------------------------------------------


def test_advertisement_message_layout():
    mask, share, commitment = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    message = advertisement_message(SESSION, 7, 5, mask, share, commitment)
    label = b"key-advertisement"
    expected = (
        b"secagg/v1/sign/"
        + bytes([len(label)])
        + label
        + SESSION
        + (7).to_bytes(8, "big")
        + (5).to_bytes(4, "big")
        + mask
        + share
        + commitment
    )
    assert message == expected


def test_consistency_message_layout_sorts_the_survivors():
    message = consistency_message(SESSION, 7, 5, [9, 2, 5])
    label = b"consistency"
    expected = (
        b"secagg/v1/sign/"
        + bytes([len(label)])
        + label
        + SESSION
        + struct.pack(">QI", 7, 5)
        + struct.pack(">IIII", 3, 2, 5, 9)
    )
    assert message == expected
    assert consistency_message(SESSION, 7, 5, (2, 5, 9)) == message
    assert consistency_message(SESSION, 7, 5, (2, 5)) != message


def test_signature_over_the_advertisement_is_deterministic_and_bound():
    """RFC 8032 signatures are deterministic: a fixed key and message give fixed bytes."""
    identity = identity_from_private_bytes(bytes(32))
    message = advertisement_message(SESSION, 7, 5, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    signature = sign(identity, message)
    assert sign(identity, message) == signature and len(signature) == 64
    roster = TrustedRoster({5: identity.public_bytes, 6: generate_identity().public_bytes}, SEED)
    roster.check_signature(5, message, signature)
    moved = advertisement_message(SESSION, 8, 5, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    with pytest.raises(InvalidSignatureError):
        roster.check_signature(5, moved, signature)


def test_roster_pins_the_round_shape_through_its_file(tmp_path):
    # The server must not give clients different degrees: the setup pins k (and a least t).
    roster, _ = trusted_setup(range(8), degree=4, threshold=3)
    assert (roster.degree, roster.threshold, roster.round_degree) == (4, 3, 4)
    path = tmp_path / "roster.txt"
    roster.save(path)
    assert "degree 4" in path.read_text() and "threshold 3" in path.read_text()
    assert TrustedRoster.load(path) == roster
    unpinned, _ = trusted_setup(range(8))
    assert unpinned.round_degree == 7  # nothing pinned: the complete graph
    assert unpinned.pinned(7, 5).degree is None and unpinned.pinned(4, 3).degree == 4
    with pytest.raises(ParameterError, match="degree"):
        trusted_setup(range(4), degree=4)
    text = roster.dumps().replace("degree 4", "degree four")
    with pytest.raises(ParameterError, match=r"roster\.txt:3"):
        TrustedRoster.loads(text, source="roster.txt")
