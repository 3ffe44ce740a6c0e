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
    assert err.startswith("secagg train: error: this command needs the models extra")
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


@pytest.mark.parametrize(
    "arguments",
    [["demo", "--help"], ["train", "--help"], ["demo", "--clients", "3", "--dim", "8", "--json"]],
)
def test_cli_output_into_a_closed_pipe_ends_without_a_traceback(arguments: list[str]) -> None:
    """``secagg ... | head -1``: the reader left before the output was written."""
    process = subprocess.Popen(
        [sys.executable, "-m", "protocols.cli", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the interpreter has even started: every write fails
    err = process.stderr.read()
    assert process.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert err == ""


@pytest.mark.parametrize(
    ("arguments", "prefix"),
    [
        (["demo", "--clients", "1"], "secagg demo: error: --clients 1:"),
        (["keys", "somewhere", "--clients", "1"], "secagg keys: error: --clients:"),
    ],
)
def test_cli_errors_carry_the_subcommand_like_usage_errors(
    capsys: pytest.CaptureFixture[str], arguments: list[str], prefix: str
) -> None:
    assert main(arguments) == 2
    assert capsys.readouterr().err.startswith(prefix)
    with pytest.raises(SystemExit):
        main([arguments[0], "--no-such-flag"])
    usage_error = capsys.readouterr().err.splitlines()[-1]
    assert usage_error.startswith(prefix.split(" error: ")[0] + " error: ")


def test_cli_command_prog_names_the_subcommand_when_there_is_one() -> None:
    assert app.command_prog(["train", "--rounds", "1"]) == "secagg train"
    assert app.command_prog(["--version"]) == "secagg"
    assert app.command_prog([]) == "secagg"


def test_cli_help_describes_the_package_and_shows_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "a server learns the sum of the" in out
    assert "secagg train --protocol secagg+ --rounds 10" in out
    with pytest.raises(SystemExit):
        main(["keys", "--help"])
    out = capsys.readouterr().out
    assert "Play the trusted setup of a deployment" in out
    assert "secagg keys deployment --clients 10" in out
