"""End to end over a real local Flower deployment: SuperLink, SuperNodes, ``flwr run``, loopback.

The demo app (``demos/flower_app``) trains matrix factorization with SecAgg+ in the active threat
model over Flower's own executables (:mod:`local_deployment` starts them on free loopback ports,
offline): the test writes an identity key per node and the roster, each SuperNode's node config
names its key file and the roster, and the ServerApp gets the roster through the run config, as
the README's commands do. The run has one round. One SuperNode stalls inside its train function
(node config ``stall-from-round=1``), after it has taken part in the identification and the key
rounds, and the test SIGKILLs it there, ClientApp process included. The round must then complete
through dropout recovery: the server drops the node at the upload deadline, the three survivors
sign the survivor set, and their shares rebuild the killed node's pairwise masks. The aggregate
must equal plain FedAvg of what the three survivors trained (recomputed offline: training is
deterministic) up to quantization. Every process the test started is killed by PID afterwards,
also when the test fails.

Flower polls every 3 s and starts a process per message, and the upload deadline is waited out
in full for the killed node, so this takes about two minutes; the milestones (and the run's own
progress lines) are shown on the terminal meanwhile (the ``progress`` fixture). The model is
tiny: the test is about the deployment and the protocol, not about training. Runs of two
rounds, where each node proves its identity only once, are checked in process
(``test_flower_active.py``, ``test_flower_strategy.py``), where a round costs no minute.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "flwr", reason="the Flower deployment test needs flwr (pip install '.[flower]')"
)
pytest.importorskip("torch", reason="the demo app trains with torch (pip install '.[models]')")

import tomllib  # flwr 1.42 needs Python 3.11

ROOT = Path(__file__).resolve().parents[3]
APP_DIR = ROOT / "demos" / "flower_app"
NUM_NODES = 4
STALLING_NODE = 3
#: Seconds the server waits for the uploads (the round that includes local training). It is
#: waited out in full, for the killed node, but it must not be shorter: on an idle 2-core
#: machine the honest nodes' uploads took 22 s (Flower's 3 s polls both ways, and four ClientApp
#: processes importing torch at once; the training itself is under a second), so this is the
#: margin for a loaded CI machine (an honest node dropped for being slow fails the test).
UPLOAD_TIMEOUT = 60.0
RUN_CONFIG: dict[str, object] = {
    "backend": "secagg+",
    "threat-model": "active",
    "num-server-rounds": 1,
    "fraction-evaluate": 0.0,
    # A tiny model: the test is about the deployment and the protocol, not about training.
    "num-users": 60,
    "num-items": 200,
    "dim": 4,
    "local-epochs": 1,
    # Every other deadline ends as soon as every node has answered (the killed one is no longer
    # asked after the upload), so it costs nothing unless a node is late: generous, because an
    # honest node must never miss one on a loaded CI machine. (On a machine running several
    # test suites at once a key round was seen to take 41 s: run this test alone there.)
    "timeout": 30.0,
    "upload-timeout": UPLOAD_TIMEOUT,
    # Longer than the whole test: the stalling node is killed, never woken.
    "stall-seconds": 600.0,
}


def _load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "local_deployment", APP_DIR / "local_deployment.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_deployment"] = module
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()


@pytest.fixture
def deployment(
    tmp_path: Path, progress: Callable[[str], None]
) -> Iterator[launcher.LocalDeployment]:
    """A SuperLink and four keyed SuperNodes on loopback; everything killed by PID afterwards."""
    node_configs, _ = launcher.deployment_node_configs(
        NUM_NODES, key_dir=tmp_path / "keys", extra={STALLING_NODE: "stall-from-round=1"}
    )
    flower = launcher.LocalDeployment(tmp_path / "flower", NUM_NODES, node_configs=node_configs)
    try:
        flower.start()
        progress(f"SuperLink up on 127.0.0.1:{flower.port}; {NUM_NODES} SuperNodes started")
        yield flower
    finally:
        flower.close()
    assert flower.alive() == [], "processes of the deployment outlived it"
    progress("deployment closed: every process it started is gone")


def _settings(result_path: Path) -> tuple[ModuleType, Any]:
    """The demo's settings for this run, read from its pyproject.toml plus our overrides."""
    sys.path.insert(0, str(APP_DIR))
    try:
        from secagg_mf import task
    finally:
        sys.path.remove(str(APP_DIR))
    config = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    return task, task.Settings.from_run_config(
        {**config["config"], **RUN_CONFIG, "result-path": str(result_path)}
    )


@pytest.mark.slow
def test_flower_deployment_round_survives_a_killed_supernode(
    deployment: launcher.LocalDeployment, tmp_path: Path, progress: Callable[[str], None]
) -> None:
    report_path = tmp_path / "report.json"
    roster = str(tmp_path / "keys" / "roster.txt")
    run = deployment.submit(
        APP_DIR, {**RUN_CONFIG, "roster": roster, "result-path": str(report_path)}
    )
    progress(f"flwr run submitted: SecAgg+, active, 1 round; node {STALLING_NODE} will stall")
    # While the SuperLink starts the ServerApp: the nodes register meanwhile.
    registered = deployment.wait_for_nodes(timeout=60, progress=progress)
    assert registered, [node.text()[-2000:] for node in deployment.nodes]
    progress(f"all {NUM_NODES} SuperNodes registered with the SuperLink")
    stalled = deployment.wait_for_log(
        deployment.nodes[STALLING_NODE], "stalls in round 1", timeout=240, progress=progress
    )
    assert stalled, deployment.runs[0].text()[-4000:]
    killed = deployment.node_id(STALLING_NODE)
    deployment.kill_node(STALLING_NODE)
    progress(
        f"node {STALLING_NODE} (Flower node {killed}) stalled in its train function: SIGKILLed; "
        f"the server waits out the {UPLOAD_TIMEOUT:g} s upload deadline, then recovers it"
    )
    outcome = deployment.wait(run, timeout=240, progress=progress)
    progress(f"run ended after {outcome.seconds:.0f} s more: {outcome.status}")

    # `flwr run --stream` exits 0 even when the ServerApp crashed: ask the SuperLink.
    assert outcome.status == "finished:completed", outcome.output[-4000:]
    report = json.loads(report_path.read_text())
    (only,) = report["rounds"]
    assert "aborted" not in only
    assert len(only["survivors"]) == NUM_NODES - 1
    assert only["dropped"] == {str(killed): 2}  # lost at the upload, masks recovered
    assert str(killed) not in only["survivors"]
    # Active: each node was identified by its signed claim, and the consistency round ran.
    assert "identify" in only["protocol_seconds"] and "consistency" in only["protocol_seconds"]

    task, settings = _settings(report_path)
    survivors = [p for p in range(NUM_NODES) if p != STALLING_NODE]
    initial = task.shared_arrays(task.build_model(settings))
    expected, total_weight = task.fedavg_reference(
        settings, initial, NUM_NODES, server_round=1, partitions=survivors
    )
    secure = np.load(report_path.with_suffix(".npz"))
    step = 2 * settings.clip / (2**settings.value_bits - 1)
    ratio = total_weight / settings.max_weight
    for key, want in expected.items():
        got = secure[f"r1:{key}"].astype(np.float64)
        error = np.max(np.abs(got - want))
        # One rounding step per survivor's weighted value, over the total weight ratio; the
        # weight slot's own rounding and float32 storage add far less than 1e-5.
        assert error <= len(survivors) * step / ratio + 1e-5, (key, error)
