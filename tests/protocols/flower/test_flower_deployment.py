"""End to end over a real local Flower deployment: SuperLink, SuperNodes, ``flwr run``, loopback.

The demo app (``demos/flower_app``) trains matrix factorization with SecAgg+ in the active threat
model over Flower's own executables (:mod:`local_deployment` starts them on free loopback ports,
offline): the test writes an identity key per node and the roster, each SuperNode's node config
names its key file and the roster, and the ServerApp gets the roster through the run config, as
the README's commands do. Round 1 runs with all four SuperNodes. In round 2 one SuperNode stalls
inside its train function (node config ``stall-from-round=2``), after it has taken part in the
key rounds, and the test SIGKILLs it there, ClientApp process included. The round must then
complete through dropout recovery: the server drops the node at the upload deadline, the three
survivors sign the survivor set, and their shares rebuild the killed node's pairwise masks. The
round-1 aggregate must equal plain FedAvg of what the nodes trained (recomputed offline:
training is deterministic) up to quantization. Every process the test
started is killed by PID afterwards, also when the test fails.

Flower polls every 3 s and starts a process per message, so this takes one to three minutes.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10; flwr depends on tomli
    import tomli as tomllib

pytest.importorskip(
    "flwr", reason="the Flower deployment test needs flwr (pip install '.[flower]')"
)
pytest.importorskip("torch", reason="the demo app trains with torch (pip install '.[models]')")

ROOT = Path(__file__).resolve().parents[3]
APP_DIR = ROOT / "demos" / "flower_app"
NUM_NODES = 4
STALLING_NODE = 3
RUN_CONFIG: dict[str, object] = {
    "backend": "secagg+",
    "threat-model": "active",
    "num-server-rounds": 2,
    "fraction-evaluate": 0.0,
    # Generous deadlines: an honest node must never miss one on a loaded CI machine. Only the
    # upload deadline is waited out in full (for the killed node); the others end as soon as
    # every node has answered. (On a machine running several test suites at once a key round
    # was seen to take 41 s: run this test alone there.)
    "timeout": 30.0,
    "upload-timeout": 35.0,
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
def deployment(tmp_path: Path) -> Iterator[launcher.LocalDeployment]:
    """A SuperLink and four keyed SuperNodes on loopback; everything killed by PID afterwards."""
    node_configs, _ = launcher.deployment_node_configs(
        NUM_NODES, key_dir=tmp_path / "keys", extra={STALLING_NODE: "stall-from-round=2"}
    )
    flower = launcher.LocalDeployment(tmp_path / "flower", NUM_NODES, node_configs=node_configs)
    try:
        flower.start()
        yield flower
    finally:
        flower.close()
    assert flower.alive() == [], "processes of the deployment outlived it"


def _settings(result_path: Path) -> tuple[ModuleType, object]:
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
    deployment: launcher.LocalDeployment, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    roster = str(tmp_path / "keys" / "roster.txt")
    run = deployment.submit(
        APP_DIR, {**RUN_CONFIG, "roster": roster, "result-path": str(report_path)}
    )
    stalled = deployment.wait_for_log(
        deployment.nodes[STALLING_NODE], "stalls in round 2", timeout=240
    )
    assert stalled, deployment.runs[0].text()[-4000:]
    deployment.kill_node(STALLING_NODE)
    outcome = deployment.wait(run, timeout=240)

    # `flwr run --stream` exits 0 even when the ServerApp crashed: ask the SuperLink.
    assert outcome.status == "finished:completed", outcome.output[-4000:]
    report = json.loads(report_path.read_text())
    first, second = report["rounds"]
    assert len(first["survivors"]) == NUM_NODES and first["dropped"] == {}
    assert len(second["survivors"]) == NUM_NODES - 1
    assert list(second["dropped"].values()) == [2]  # lost at the upload, masks recovered
    (killed,) = second["dropped"]
    assert killed not in second["survivors"]
    # Active: each node was identified by its signed claim once, and the consistency round ran.
    assert "identify" in first["protocol_seconds"] and "identify" not in second["protocol_seconds"]
    assert "consistency" in second["protocol_seconds"]

    task, settings = _settings(report_path)
    initial = task.shared_arrays(task.build_model(settings))
    expected, total_weight = task.fedavg_reference(settings, initial, NUM_NODES, server_round=1)
    secure = np.load(report_path.with_suffix(".npz"))
    step = 2 * settings.clip / (2**settings.value_bits - 1)
    ratio = total_weight / settings.max_weight
    for key, want in expected.items():
        got = secure[f"r1:{key}"].astype(np.float64)
        error = np.max(np.abs(got - want))
        # n rounding steps of the weighted values, over the total weight ratio; the weight slot's
        # own rounding and float32 storage add far less than 1e-5.
        assert error <= NUM_NODES * step / ratio + 1e-5, (key, error)
