"""The ``secagg`` command's dispatch: subcommands, the models extra, and the console entry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from protocols.cli import app, main


def test_cli_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "bench", "train", "recommend"):
        assert command in out


def test_cli_without_a_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_cli_models_commands_are_dispatched_by_module_name() -> None:
    assert app.MODELS_COMMANDS == {
        "train": "models.commands.train",
        "recommend": "models.commands.recommend",
    }


def test_cli_missing_models_extra_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the module (torch not installed), train explains which extra to install."""
    monkeypatch.setitem(app.MODELS_COMMANDS, "train", "models.commands.not_installed")
    assert main(["train", "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("secagg: error: 'train' needs the models extra")
    assert "pip install 'secagg[models]'" in err


def test_cli_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "protocols.cli", "demo", "--clients", "4", "--dim", "8", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["exact"] is True


def test_cli_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    import secagg

    assert secagg.__version__ == metadata.version("secagg")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"secagg {secagg.__version__}"
