"""Every command README.md shows works, after the README's own set-up.

The README's commands are read from the README itself (its bash blocks, indented code and
inline code spans), so that a renamed flag or a changed default cannot leave it behind:

- every ``secagg ...`` command parses with the real parsers (flag names and values);
- every ``python demos/...`` command names a script that exists and accepts every flag given;
- the cheap commands run for real, in a scratch directory;
- with ``SECAGG_README_VERBATIM=1``, every ``secagg`` command runs verbatim (some take minutes
  or hours, so the suite leaves them out);
- "after the README's own set-up" is checked by running commands in a child process that can
  import only what the README's first command installs (this distribution with its ``models``
  extra, and what those require), so a feature that needs another extra fails here as it would
  for a user.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocols.cli.app import MODELS_COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Placeholders the README's prose uses inside a command, and a value that stands for them.
PLACEHOLDERS = {"A": "secagg+", "N": "4", "ID": "3", "R": "1"}


@dataclass(frozen=True)
class Command:
    """One command shown in the README, with the line it starts on."""

    line: int
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"README.md:{self.line}: {shlex.join(self.argv)}"


def _shell_commands(text: str, line: int) -> list[Command]:
    """The ``secagg``/``python`` commands of one shell line (``a && b`` gives two)."""
    text = text.split(" #", 1)[0].strip()
    commands = []
    for part in text.split("&&"):
        try:
            argv = shlex.split(part.strip())
        except ValueError:
            continue
        while argv and "=" in argv[0] and not argv[0].startswith("-"):
            argv = argv[1:]  # VAR=value prefixes
        demo = len(argv) > 1 and argv[0] in ("python", "python3") and argv[1].startswith("demos/")
        command = len(argv) > 1 and argv[0] == "secagg"  # a bare `secagg` names the backend
        if command or demo:
            argv = [PLACEHOLDERS.get(word, word) for word in argv]
            commands.append(Command(line, tuple(argv)))
    return commands


def readme_commands() -> list[Command]:
    """Every ``secagg ...`` and ``python demos/...`` command in README.md."""
    lines = README.read_text(encoding="utf-8").splitlines()
    commands: list[Command] = []
    block: str | None = None  # the language of the fenced block we are in
    pending = ""
    for number, raw in enumerate(lines, start=1):
        if raw.lstrip().startswith("```"):
            block = raw.strip()[3:] if block is None else None
            continue
        # Shell commands: bash blocks and indented code (other blocks show output or Python).
        if block == "bash" or (block is None and raw.startswith("    ")):
            pending += raw.strip().rstrip("\\") + " "
            if not raw.rstrip().endswith("\\"):
                commands += _shell_commands(pending, number)
                pending = ""
    text = README.read_text(encoding="utf-8")
    for match in re.finditer(r"`((?:secagg|python demos/)[^`]*)`", text):
        number = text.count("\n", 0, match.start()) + 1
        commands += _shell_commands(" ".join(match.group(1).split()), number)
    return commands


COMMANDS = readme_commands()
SECAGG = [c for c in COMMANDS if c.argv[0] == "secagg"]
DEMOS = [c for c in COMMANDS if c.argv[0] == "python"]


def _parser_for(command: str) -> argparse.ArgumentParser:
    if command in MODELS_COMMANDS:
        parser = argparse.ArgumentParser(prog=f"secagg {command}")
        importlib.import_module(MODELS_COMMANDS[command]).add_arguments(parser)
        return parser
    return build_parser()


def test_the_readme_uses_no_deprecated_spelling() -> None:
    deprecated = {"--aggregator", "--protocols", "--threat-models"}
    for command in SECAGG:
        assert not deprecated & set(command.argv), f"{command}: use --protocol / --threat-model"


def test_the_readme_shows_the_commands_this_test_relies_on() -> None:
    shown = {c.argv[1] for c in SECAGG if len(c.argv) > 1}
    assert {"train", "demo", "keys", "bench", "recommend"} <= shown
    assert len(DEMOS) >= 4


@pytest.mark.parametrize("command", SECAGG, ids=str)
def test_every_secagg_command_in_the_readme_parses(command: Command) -> None:
    name = command.argv[1]
    parser = _parser_for(name)
    rest = command.argv[2:] if name in MODELS_COMMANDS else command.argv[1:]
    try:
        parser.parse_args(list(rest))
    except SystemExit as error:  # --help exits 0; a usage error exits 2
        if error.code not in (0, None):
            pytest.fail(f"{command} does not parse (exit {error.code})")


@pytest.mark.parametrize("command", DEMOS, ids=str)
def test_every_demo_script_in_the_readme_exists_and_takes_its_flags(command: Command) -> None:
    script = ROOT / command.argv[1]
    assert script.is_file(), f"{command}: no such script"
    source = script.read_text(encoding="utf-8")
    for flag in (word for word in command.argv[2:] if word.startswith("--")):
        assert f'"{flag}"' in source, f"{command}: {script.name} has no option {flag}"


def _run_here(command: Command, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run one ``secagg`` command in-process in ``cwd``, absolute /tmp paths moved under it."""
    monkeypatch.chdir(cwd)
    argv = [str(cwd / a.lstrip("/")) if a.startswith("/tmp/") else a for a in command.argv[1:]]
    try:
        return main(argv)
    except SystemExit as error:  # --help exits through argparse
        return int(error.code or 0)


CHEAP = [c for c in SECAGG if c.argv[1] == "keys" and "--decryptors" not in c.argv] + [
    c for c in SECAGG if c.argv[1] == "demo" and "paillier" not in c.argv
]


@pytest.mark.parametrize("command", CHEAP, ids=str)
def test_the_cheap_readme_commands_run(
    command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run_here(command, tmp_path, monkeypatch) == 0, str(command)


@pytest.mark.skipif(
    os.environ.get("SECAGG_README_VERBATIM") != "1",
    reason="runs every README command verbatim (hours in all); set SECAGG_README_VERBATIM=1",
)
@pytest.mark.parametrize("command", SECAGG, ids=str)
def test_every_secagg_command_in_the_readme_runs_verbatim(
    command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if command.argv[1] == "recommend":
        checkpoint = tmp_path / "model.pt"
        assert main(["train", "--rounds", "1", "--save", str(checkpoint)]) == 0
    assert _run_here(command, tmp_path, monkeypatch) == 0, str(command)


#: Runs ``secagg ARGS`` in a process that can import only the README set-up's distributions.
GUARD = r"""
import importlib.abc, importlib.metadata as md, importlib.util, re, sys
from packaging.requirements import Requirement

def closure(name, extras=()):
    seen, todo = set(), [(name, tuple(extras))]
    while todo:
        dist, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", dist).lower()
        if key in seen:
            continue
        seen.add(key)
        for text in md.requires(dist) or []:
            req = Requirement(text)
            env = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in env):
                try:
                    md.distribution(req.name)
                except md.PackageNotFoundError:
                    continue
                todo.append((req.name, tuple(req.extras)))
    return seen

allowed = closure("secagg", ["models"])
owners = md.packages_distributions()

def blocked(name):
    top = name.partition(".")[0]
    dists = owners.get(top)
    return bool(dists) and not any(re.sub(r"[-_.]+", "-", d).lower() in allowed for d in dists)

class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if path is None and blocked(name):
            top = name.partition(".")[0]
            raise ModuleNotFoundError(f"{top} is not installed by the README's set-up", name=top)
        return None

# A probe for an optional package (importlib.util.find_spec) answers None where it is not
# installed, as it would for the user; importing it raises ModuleNotFoundError.
real_find_spec = importlib.util.find_spec
def find_spec(name, package=None):
    return None if blocked(name) else real_find_spec(name, package)
importlib.util.find_spec = find_spec

sys.meta_path.insert(0, Guard())
from protocols.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def _guarded(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", GUARD, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_guard_refuses_what_the_readme_set_up_does_not_install(tmp_path: Path) -> None:
    script = GUARD.replace("from protocols.cli.app import main", "import pytest")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "pytest is not installed by the README's set-up" in result.stderr


def test_the_readme_dp_training_needs_only_the_readme_set_up(tmp_path: Path) -> None:
    """The README's DP command, shortened to one round of a small data set."""
    dp = next(c for c in SECAGG if "--dp-epsilon" in c.argv and "--users" not in c.argv)
    short = ["--rounds", "1", "--users", "40", "--items", "160", "--clients-per-round", "20"]
    result = _guarded([*dp.argv[1:], *short, "--plot", "curve.png"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "curve.png").stat().st_size > 0
