"""The key files of an active-model Flower deployment and the node's signed identity claim."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

# protocols.flower imports flwr on import, its key files included.
pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from protocols.flower.keys import (
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
from secagg.errors import InvalidSignatureError, ParameterError
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
    assert f"roster: {tmp_path / 'd' / ROSTER_FILE}" in out
    assert TrustedRoster.load(tmp_path / "d" / ROSTER_FILE).ids == (0, 1, 2)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "d"), "--clients", "3"])
    assert exit_info.value.code == 2
    assert "refusing to overwrite" in capsys.readouterr().err
