"""``secagg keys``: the trusted setup of a deployment, Paillier keys included, from the CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from protocols.cli import main
from protocols.identity import TrustedRoster
from protocols.keyfiles import (
    KEY_HOLDER_FILE,
    PAILLIER_PUBLIC_FILE,
    ROSTER_FILE,
    decryptor_file_name,
    key_file_name,
    load_key_holder,
    load_key_share,
    load_node_identity,
    load_paillier_public,
)
from secagg.hazmat.paillier import ThresholdPublicKey


def test_cli_keys_writes_a_roster_and_one_private_key_per_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "deployment"
    assert main(["keys", str(folder), "--ids", "4", "9", "2"]) == 0
    out = capsys.readouterr().out
    assert str(folder / ROSTER_FILE) in out
    roster = TrustedRoster.load(folder / ROSTER_FILE)
    assert roster.ids == (2, 4, 9)
    for client in roster.ids:
        path = folder / key_file_name(client)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        node = load_node_identity(path, folder / ROSTER_FILE)
        assert node.client_id == client
        assert roster.keys[client] == node.identity.public_bytes


def test_cli_keys_never_overwrites_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", str(tmp_path), "--clients", "2"]) == 0
    before = (tmp_path / ROSTER_FILE).read_text()
    assert main(["keys", str(tmp_path), "--clients", "2"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / ROSTER_FILE).read_text() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --clients"),
        (["--clients", "3", "--ids", "1", "2"], "exactly one of --clients"),
        (["--ids", "1", "1"], "distinct"),
        (["--ids", "5"], "at least 2"),
    ],
)
def test_cli_keys_bad_arguments_say_which_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["keys", str(tmp_path / "d"), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_keys_deals_a_paillier_committee_with_one_secret_file_per_decryptor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "deployment"
    args = ["keys", str(folder), "--clients", "3", "--decryptors", "5"]
    assert main([*args, "--decryption-threshold", "3"]) == 0
    out = capsys.readouterr().out
    assert str(folder / PAILLIER_PUBLIC_FILE) in out
    public = load_paillier_public(folder / PAILLIER_PUBLIC_FILE)
    assert isinstance(public, ThresholdPublicKey)
    assert (public.decryptors, public.threshold, public.n.bit_length()) == (5, 3, 2048)
    assert stat.S_IMODE((folder / PAILLIER_PUBLIC_FILE).stat().st_mode) & 0o044  # readable
    for index in range(1, 6):
        path = folder / decryptor_file_name(index)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        share = load_key_share(path)
        assert share.index == index and share.public == public
    # A second deal into the same place is refused as a whole: nothing is overwritten.
    before = (folder / PAILLIER_PUBLIC_FILE).read_bytes()
    assert main(args) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (folder / PAILLIER_PUBLIC_FILE).read_bytes() == before


def test_cli_keys_deals_a_single_key_holder(tmp_path: Path) -> None:
    assert main(["keys", str(tmp_path), "--clients", "2", "--decryptors", "1"]) == 0
    public = load_paillier_public(tmp_path / PAILLIER_PUBLIC_FILE)
    keypair = load_key_holder(tmp_path / KEY_HOLDER_FILE)
    assert stat.S_IMODE((tmp_path / KEY_HOLDER_FILE).stat().st_mode) == 0o600
    assert not isinstance(public, ThresholdPublicKey)  # a single key holder's phe key
    assert public == keypair.public_key and public.n.bit_length() == 2048
    assert keypair.private_key.decrypt(public.encrypt(42)) == 42


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--decryptors", "5", "--decryption-threshold", "1"],
            "--decryption-threshold must be in 3 .. 5 for --decryptors 5, got 1: with at most "
            "half the members, two disjoint groups could each decrypt a different subset of one "
            "round",
        ),
        (
            ["--decryptors", "3", "--decryption-threshold", "4"],
            "--decryption-threshold must be in 2 .. 3 for --decryptors 3, got 4: with at most "
            "half the members, two disjoint groups could each decrypt a different subset of one "
            "round",
        ),
        (["--decryptors", "65"], "--decryptors must be in 1 .. 64, got 65"),
        (["--decryption-threshold", "2"], "--decryption-threshold needs --decryptors M"),
        (
            ["--degree", "3"],
            "--degree 3 must be below the 3 clients (--clients): a client has at most 2 neighbours",
        ),
        (
            ["--threshold", "4"],
            "--threshold 4 must be in 2 .. 3: at least 2 (one share must "
            "never reveal a key) and at most the 3 share holders of a neighbourhood (a client and "
            "its neighbours)",
        ),
    ],
)
def test_cli_keys_bad_committees_are_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["keys", str(tmp_path / "d"), "--clients", "3", *args]) == 2
    assert capsys.readouterr().err == f"secagg keys: error: {message}\n"
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clients", "1"], "--clients: a deployment needs at least 2 clients, got 1"),
        (["--ids", "4", "4"], "--ids: the clients' ids must be distinct"),
        (["--ids", "1", "2", "3", "4", "--degree", "1"], "--degree 1 must be even and at least 2"),
        (["--ids", "1", "2", "3", "4", "--degree", "3"], "--degree 3 must be even and at least 2"),
        (
            ["--ids", "1", "2", "3", "4", "5", "--degree", "2", "--threshold", "4"],
            "--threshold 4 must be in 2 .. 3: at least 2 (one share must never reveal a key) and "
            "at most the 3 share holders of a neighbourhood (a client and its neighbours)",
        ),
    ],
)
def test_cli_keys_bad_rosters_name_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["keys", str(tmp_path / "d"), *args]) == 2
    assert capsys.readouterr().err == f"secagg keys: error: {message}\n"
    assert not (tmp_path / "d").exists()


def test_cli_keys_ids_take_scientific_notation_and_refuse_negatives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", str(tmp_path / "d"), "--ids", "1e3", "2"]) == 0
    assert "client 1000 (give it to this client only)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", str(tmp_path / "e"), "--ids", "-1", "2"])
    assert exit_info.value.code == 2
    assert "secagg keys: error: argument --ids: must be an integer >= 0, got -1" in (
        capsys.readouterr().err
    )
