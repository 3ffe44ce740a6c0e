"""``protocols.cli.bench``: the standalone command's exit codes, its options, its kept paths."""

from __future__ import annotations

import subprocess
import sys

import pytest

from protocols.cli import bench as command


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocols", "rot13"], "unknown protocol 'rot13'"),
        (["--protocol", "phe"], "--protocol: unknown name 'phe'"),
        (["--dims", "0"], "d must be a positive integer, got 0"),
        (["--dims", "-5"], "d must be a positive integer"),
    ],
)
def test_bench_main_reports_bad_argument_with_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = command.main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("secagg bench: error: ") and message in err


def test_bench_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        command.main(["--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: secagg bench")
    flags = ["--preset", "--protocol", "--randomness", "--reference", "--clients", "--dims",
             "--dropouts", "--drop-at", "--threat-models", "--complete-max-clients", "--repeats",
             "--threshold", "--degree", "--value-bits", "--clip", "--key-bits",
             "--paillier-max-dim", "--phe-max-dim", "--phe-clients", "--time-budget",
             "--no-memory", "--no-flower", "--no-progress", "--seed", "--json", "--csv",
             "--plot-dir"]  # fmt: skip
    assert [flag for flag in flags if flag not in text] == []
    assert "--protocols" not in text  # the old spelling works, hidden
    assert "--json [PATH]" in text and "--csv [PATH]" in text


def test_bench_command_keeps_its_old_import_paths() -> None:
    """``from protocols.bench import main`` (and the other hooks) still gives the command."""
    from protocols.bench import add_bench_arguments, config_from_args, main, run_bench

    assert main is command.main and run_bench is command.run_bench
    assert add_bench_arguments is command.add_bench_arguments
    assert config_from_args is command.config_from_args
    import protocols.bench

    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = protocols.bench.no_such_name


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_bench_library_imports_nothing_of_the_cli() -> None:
    """Imports flow protocols.cli -> protocols.bench: importing every bench module loads no CLI."""
    code = (
        "import importlib, pkgutil, sys, protocols.bench as b\n"
        "for m in pkgutil.iter_modules(b.__path__, 'protocols.bench.'):\n"
        "    if m.name != 'protocols.bench.__main__': importlib.import_module(m.name)\n"
        "cli = [m for m in sys.modules if m.split('.')[:2] == ['protocols', 'cli']]\n"
        "assert not cli, cli"
    )
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr


def test_bench_runs_as_a_module() -> None:
    """``python -m protocols.bench`` still runs the command (its help and a bad flag)."""
    done = _python("-m", "protocols.bench", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: secagg bench"), done.stderr
    done = _python("-m", "protocols.bench", "--key-bits", "1024")
    assert done.returncode == 2
    assert done.stderr.startswith("secagg bench: error: --key-bits: use one of [2048, 3072]")
