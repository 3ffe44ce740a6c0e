"""The key files of an active-model Flower deployment and the node's signed identity claim."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

# protocols.flower imports flwr on import, its key files included.
pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from protocols.flower.keys import (
    PAILLIER_PUBLIC_FILE,
    ROSTER_FILE,
    check_claim,
    claim_message,
    key_file_name,
    load_identity,
    load_node_identity,
    main,
    sign_claim,
    write_deployment_keys,
)
from protocols.identity import TrustedRoster
from protocols.keyfiles import (
    KEY_HOLDER_FILE,
    KEY_HOLDER_HEADER,
    KEY_SHARE_HEADER,
    PAILLIER_PUBLIC_HEADER,
    decryptor_file_name,
    load_decryptors,
    load_key_holder,
    load_key_share,
    load_paillier_public,
    save_key_holder,
    save_key_share,
    save_paillier_public,
    write_paillier_keys,
)
from protocols.paillier import Decryptor, KeyHolder
from secagg.errors import InvalidSignatureError, ParameterError
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.sign import SignaturePurpose, bound_message

SESSION = bytes(range(16))


def test_keys_deployment_writes_one_private_key_per_client_and_the_roster(tmp_path: Path) -> None:
    written = write_deployment_keys(tmp_path / "keys", [5, 2, 9])
    assert written.roster_path == tmp_path / "keys" / ROSTER_FILE
    assert sorted(written.key_paths) == [2, 5, 9]
    roster = TrustedRoster.load(written.roster_path)
    assert roster.ids == (2, 5, 9)
    for client, path in written.key_paths.items():
        assert path.name == key_file_name(client) == f"client-{client}.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_identity(path).public_bytes == roster.keys[client]
        assert load_node_identity(path, written.roster_path).client_id == client
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    # A second setup into the same place would orphan the keys already handed out.
    with pytest.raises(ParameterError, match="refusing to overwrite"):
        write_deployment_keys(tmp_path / "keys", [5, 2, 9])


@pytest.mark.parametrize(
    ("ids", "match"), [([1], "at least 2"), ([1, 1, 2], "distinct"), ([0, -1], "outside")]
)
def test_keys_deployment_needs_two_distinct_valid_ids(
    tmp_path: Path, ids: list[int], match: str
) -> None:
    with pytest.raises(ParameterError, match=match):
        write_deployment_keys(tmp_path, ids)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_keys_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = write_deployment_keys(tmp_path, [0, 1]).key_paths[0]
    path.chmod(0o640)
    with pytest.raises(ParameterError, match="chmod 600"):
        load_identity(path)


@pytest.mark.parametrize(
    "text",
    [
        "00" * 32 + "\n",  # no header
        "# secagg identity key v1: the private key of one client, keep secret\n" + "zz" * 32,
        "# secagg identity key v1: the private key of one client, keep secret\n" + "00" * 31,
        "# secagg identity key v1: the private key of one client, keep secret\n",
    ],
)
def test_keys_a_malformed_key_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ParameterError, match=r"bad\.key"):
        load_identity(path)


def test_keys_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="cannot read the identity key file"):
        load_identity(tmp_path / "absent.key")
    written = write_deployment_keys(tmp_path / "keys", [0, 1])
    with pytest.raises(ParameterError, match="cannot read the roster"):
        load_node_identity(written.key_paths[0], tmp_path / "absent.txt")


def test_keys_claim_binds_session_node_and_client(tmp_path: Path) -> None:
    written = write_deployment_keys(tmp_path, [0, 1, 2])
    node = load_node_identity(written.key_paths[1], written.roster_path)
    signature = sign_claim(node, SESSION, 2**63 + 5)
    check_claim(node.roster, SESSION, 2**63 + 5, 1, signature)
    for session, node_id, client in [
        (bytes(16), 2**63 + 5, 1),  # another run
        (SESSION, 2**63 + 6, 1),  # another Flower node
        (SESSION, 2**63 + 5, 2),  # another roster client
        (SESSION, 2**63 + 5, 7),  # not on the roster
    ]:
        with pytest.raises(InvalidSignatureError):
            check_claim(node.roster, session, node_id, client, signature)


def test_keys_claim_is_no_protocol_signature() -> None:
    # Domain separation: a claim is bound to its own purpose, so it never reads as what a
    # protocol signature covers (the purpose label comes before anything a signer chooses).
    claim = claim_message(SESSION, 3, 3)
    assert claim.startswith(bound_message(SignaturePurpose.NODE_CLAIM, SESSION, 0, 3, b""))
    for purpose in SignaturePurpose:
        if purpose is not SignaturePurpose.NODE_CLAIM:
            prefix = bound_message(purpose, SESSION, 0, 3, b"")
            assert not claim.startswith(prefix[: len(prefix) - 28])
    with pytest.raises(ParameterError, match="session_id"):
        claim_message(b"short", 0, 0)
    with pytest.raises(ParameterError, match="node_id"):
        claim_message(SESSION, 2**64, 0)


def test_keys_command_line_writes_a_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "d"), "--clients", "3"]) == 0
    out = capsys.readouterr().out
    assert (
        f"roster (give it to every client and to the server): {tmp_path / 'd' / ROSTER_FILE}" in out
    )
    assert "Paillier" not in out  # Paillier keys only with --decryptors
    assert TrustedRoster.load(tmp_path / "d" / ROSTER_FILE).ids == (0, 1, 2)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "d"), "--clients", "3"])
    assert exit_info.value.code == 2
    assert "refusing to overwrite" in capsys.readouterr().err


# -- Paillier key files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def committee() -> hazmat.ThresholdKeyset:
    """A 2-of-3 threshold key of test size."""
    return hazmat._generate_threshold_keypair_unchecked_size(1024, decryptors=3, threshold=2)


def _write_committee(folder: Path, keys: hazmat.ThresholdKeyset) -> None:
    folder.mkdir(exist_ok=True)
    save_paillier_public(folder / PAILLIER_PUBLIC_FILE, keys.public)
    for share in keys.shares:
        save_key_share(folder / decryptor_file_name(share.index), share)


def test_keys_paillier_files_round_trip(
    tmp_path: Path, committee: hazmat.ThresholdKeyset, paillier_keys: hazmat.PaillierKeypair
) -> None:
    _write_committee(tmp_path, committee)
    assert load_paillier_public(tmp_path / PAILLIER_PUBLIC_FILE) == committee.public
    for share in committee.shares:
        path = tmp_path / decryptor_file_name(share.index)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_key_share(path) == share
    single = tmp_path / "single"
    single.mkdir()
    save_paillier_public(single / PAILLIER_PUBLIC_FILE, paillier_keys.public_key)
    save_key_holder(single / KEY_HOLDER_FILE, paillier_keys)
    assert load_paillier_public(single / PAILLIER_PUBLIC_FILE) == paillier_keys.public_key
    loaded = load_key_holder(single / KEY_HOLDER_FILE)
    assert (loaded.private_key.p, loaded.private_key.q) == (
        paillier_keys.private_key.p,
        paillier_keys.private_key.q,
    )
    with pytest.raises(ParameterError, match="cannot create the key file"):
        save_key_holder(single / KEY_HOLDER_FILE, paillier_keys)  # never overwritten


def test_keys_load_decryptors_checks_every_file_against_the_public_key(
    tmp_path: Path, committee: hazmat.ThresholdKeyset, paillier_keys: hazmat.PaillierKeypair
) -> None:
    roster = write_deployment_keys(tmp_path / "ids", [0, 1]).roster_path

    def load(folder: Path) -> list[Decryptor | KeyHolder]:
        return load_decryptors(
            folder, session_id=SESSION, roster=roster, value_bits=22, max_clients=1024
        )

    _write_committee(tmp_path / "c", committee)
    assert [m.index for m in load(tmp_path / "c") if isinstance(m, Decryptor)] == [1, 2, 3]
    # Decryptors elsewhere: the threshold present is enough, fewer is refused.
    (tmp_path / "c" / decryptor_file_name(3)).unlink()
    assert len(load(tmp_path / "c")) == 2
    (tmp_path / "c" / decryptor_file_name(2)).unlink()
    with pytest.raises(ParameterError, match="holds 1 decryptor share files; the key needs 2"):
        load(tmp_path / "c")
    # A share of another deal, under this deal's file name.
    other = hazmat._generate_threshold_keypair_unchecked_size(1024, decryptors=3, threshold=2)
    save_key_share(tmp_path / "c" / decryptor_file_name(2), other.shares[1])
    with pytest.raises(ParameterError, match=r"paillier-decryptor-2\.key is not share 2"):
        load(tmp_path / "c")
    # A key holder whose secret belongs to another public key.
    (tmp_path / "s").mkdir()
    save_paillier_public(tmp_path / "s" / PAILLIER_PUBLIC_FILE, paillier_keys.public_key)
    save_key_holder(tmp_path / "s" / KEY_HOLDER_FILE, hazmat._generate_keypair_unchecked_size(1024))
    with pytest.raises(ParameterError, match=r"holds another key than paillier-public\.key"):
        load(tmp_path / "s")


def test_keys_a_tampered_key_share_is_refused_and_named(
    tmp_path: Path, committee: hazmat.ThresholdKeyset
) -> None:
    share = committee.shares[0]
    forged = hazmat.DecryptionKeyShare(index=1, share=share.share + 1, public=share.public)
    path = tmp_path / "forged.key"
    path.write_text(f"{KEY_SHARE_HEADER}\n{forged.to_bytes().hex()}\n")
    path.chmod(0o600)
    with pytest.raises(ParameterError, match=r"forged\.key: .*does not match its verification key"):
        load_key_share(path)
    path.chmod(0o644)
    with pytest.raises(ParameterError, match="chmod 600"):
        load_key_share(path)


def _hex(*parts: bytes) -> str:
    return b"".join(parts).hex()


@pytest.mark.parametrize(
    ("loader", "text"),
    [
        (load_paillier_public, "# secagg paillier public key v1\n00\n"),  # wrong header
        (load_paillier_public, PAILLIER_PUBLIC_HEADER + "\n" + _hex(b"SPPK\x02", b"\xff" * 128)),
        (load_key_holder, KEY_HOLDER_HEADER + "\n" + _hex(b"SPKP\x01\x00\x40", bytes(128))),
        (load_key_share, f"{KEY_SHARE_HEADER}\nzz\n"),  # not hex
    ],
)
def test_keys_malformed_paillier_files_are_refused_and_named(
    tmp_path: Path, loader: object, text: str
) -> None:
    path = tmp_path / "bad.key"
    path.write_text(text)
    path.chmod(0o600)
    assert callable(loader)
    with pytest.raises(ParameterError, match=r"bad\.key"):
        loader(path)


def test_keys_write_paillier_keys_refuses_a_bad_committee_before_dealing(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="two disjoint groups"):
        write_paillier_keys(tmp_path / "p", decryptors=3, threshold=1)
    with pytest.raises(ParameterError, match="key size 1024 is not supported"):
        write_paillier_keys(tmp_path / "p", decryptors=1, key_bits=1024)
    assert not (tmp_path / "p").exists()
