"""``secagg keys``: the trusted setup of an active-model deployment, from the command line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from protocols.cli import main
from protocols.identity import TrustedRoster
from protocols.keyfiles import ROSTER_FILE, key_file_name, load_node_identity


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
