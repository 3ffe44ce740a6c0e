"""Fixtures of the Flower integration's tests.

The in-process harness itself (grid, client app, oracles) is the plain module
``flower_loopback`` beside this file; these are the fixtures its tests share. Nothing here
imports flwr at import time, so the suite still collects without the ``flower`` extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from secagg.hazmat import paillier as hazmat_paillier


@pytest.fixture
def serverapp_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower sets in a ServerApp process, and Message() reads."""
    task_identity = pytest.importorskip("flwr.supercore.task_identity").TaskIdentity
    import flower_loopback

    monkeypatch.setattr(task_identity, "_run_id", flower_loopback.RUN_ID)
    monkeypatch.setattr(task_identity, "_node_id", 0)
    monkeypatch.setattr(task_identity, "_task_id", 1)


@pytest.fixture(scope="module")
def paillier_keys() -> hazmat_paillier.PaillierKeypair:
    """A 1024-bit Paillier key pair (test size only), shared by a module's tests."""
    return hazmat_paillier._generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="module")
def committee_keys() -> hazmat_paillier.ThresholdKeyset:
    """A 3-of-5 threshold Paillier key of 1024 bits (test size only), shared by a module."""
    return hazmat_paillier._generate_threshold_keypair_unchecked_size(
        1024, decryptors=5, threshold=3
    )


@pytest.fixture
def progress(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Show a line on the terminal at once, while a long test runs (pytest captures ``print``).

    A test calls it with its own milestones, and ``LocalDeployment.wait(run, progress=progress)``
    (or ``wait_for_log``, ``wait_for_nodes``) hands it each line of the run's log that says how
    far the run got.
    Each line is prefixed with the seconds since the fixture was set up. It writes through
    pytest's terminal reporter with capturing suspended, so the line shows at once, also under
    ``-q`` and when the output goes to a file.
    """
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    started = time.monotonic()

    def show(line: str) -> None:
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()  # after the file name and its dots
            # Under -q the dots stand alone on the current line: start a new one as well.
            writer = getattr(reporter, "_tw", None)
            if writer is not None and writer.width_of_current_line:
                reporter.write("\n")
            reporter.write_line(f"    {time.monotonic() - started:6.1f} s  {line}")

    return show
