"""Shared fixtures for the ``secagg bench`` tests: one tiny benchmark run, and how to run more.

The session-scoped :func:`tiny` run (small Paillier keys through the runners' private
``_generate_keypair`` seam) feeds most tests, so the whole folder stays within a few seconds.
Runs go through the command (:func:`protocols.cli.bench.main`), as a user starts them; the
command's own tests (flags, exit codes) are under ``tests/protocols/cli/``. Test modules reach
everything here through fixtures; :class:`BenchRun` is named only in their type annotations.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from protocols import bench
from protocols.bench import report, runners
from protocols.cli import bench as command
from secagg.hazmat import paillier as hazmat_paillier

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
SCENARIO_KEYS = ("clients", "dim", "dropout", "drop_at")
TINY_GRID = (
    "--protocol", "plain", "secagg", "secagg+", "paillier", "--randomness", "fresh", "djn",
    "--reference", "phe", "flower", "--clients", "4", "--dims", "16", "48", "--dropouts", "0",
    "0.25", "--drop-at", "2", "--repeats", "2", "--paillier-max-dim", "24", "--phe-max-dim", "3",
    "--no-progress",
)  # fmt: skip

#: ``main(argv)`` with its output captured: (exit code, stdout, stderr).
RunMain = Callable[[Sequence[str]], tuple[int, str, str]]


@dataclass(frozen=True)
class BenchRun:
    """What one tiny benchmark produced."""

    code: int
    stdout: str
    document: dict[str, Any]
    csv_text: str
    plot_dir: Path

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.document["records"])

    def by_id(self) -> dict[int, dict[str, Any]]:
        return {r["id"]: r for r in self.records}

    @staticmethod
    def scenario(record: Mapping[str, Any]) -> tuple[object, ...]:
        """The grid cell a record belongs to, without its protocol."""
        return tuple(record[k] for k in SCENARIO_KEYS)


def _small_keys(bits: int) -> hazmat_paillier.PaillierKeypair:
    return hazmat_paillier._generate_keypair_unchecked_size(512, djn=True)


def _run(argv: Sequence[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = command.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def run_main() -> RunMain:
    """Factory: run ``secagg bench`` standalone and capture what it prints."""
    return _run


@pytest.fixture
def flower_missing(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the report see no Flower installation; returns the line it then prints."""
    monkeypatch.setattr(report, "flower_status", lambda: (False, bench.FLOWER_MISSING))
    return bench.FLOWER_MISSING


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchRun]:
    """Every protocol on n = 4, d in {16, 48}, dropout 0 and 25%: JSON, CSV and plots."""
    directory = tmp_path_factory.mktemp("bench")
    json_path, csv_path, plots = directory / "b.json", directory / "b.csv", directory / "plots"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runners, "_generate_keypair", _small_keys)
        plot_args = ["--plot-dir", str(plots)] if HAS_MATPLOTLIB else []
        code, stdout, _ = _run(
            [*TINY_GRID, "--json", str(json_path), "--csv", str(csv_path), *plot_args]
        )
    yield BenchRun(
        code,
        stdout,
        json.loads(json_path.read_text(encoding="utf-8")),
        csv_path.read_text(encoding="utf-8"),
        plots,
    )
