"""The demo app under Flower's simulation runtime: ``flwr run`` on a ``--simulation`` SuperLink.

The end-to-end test submits the demo app (``demos/flower_app``) with ``flwr run`` to a real
``flower-superlink --simulation`` on loopback (:mod:`local_deployment`, ``simulation=True``),
which runs ten virtual nodes in Ray actors. The app runs SecAgg+ in the active threat model: the
test writes the simulation's identity keys and roster (``secagg keys``'s files) and names their
directory in the run config (``simulation-keys``), from which each virtual node takes its own key
file. Virtual node 3 is lost mid-round: ``fail-partition=3`` makes its train function raise after
it took part in the key rounds, so the server drops it at the upload and the nine survivors'
shares rebuild its pairwise masks. The report must say so (nine survivors, one node dropped in
round 2), and the secure aggregate must equal plain FedAvg of the nine survivors' trained models,
recomputed offline (training is deterministic), up to quantization.

The other tests are quick checks of the same app without Ray: a deployed node ignores
``simulation-keys`` (the run config is the server's and must never choose a node's trust), the
ServerApp refuses the active model without keys in one sentence and takes the roster from the
simulation's keys, a run whose secure rounds all abort fails, the app declares its dependency on
this package, and its literal run config agrees with its code and the shared defaults.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "flwr", reason="the Flower simulation test needs flwr (pip install '.[flower]')"
)
pytest.importorskip("torch", reason="the demo app trains with torch (pip install '.[models]')")

import tomllib  # flwr 1.42 needs Python 3.11
from flwr.app import Context, RecordDict
from packaging.requirements import Requirement

from protocols.defaults import BACKEND_NAMES, DEFAULT_VALUE_BITS, FLOWER_CLIP
from protocols.flower import secagg_mod, write_deployment_keys
from secagg.errors import ParameterError

ROOT = Path(__file__).resolve().parents[3]
APP_DIR = ROOT / "demos" / "flower_app"
NUM_NODES = 10
LOST_PARTITION = 3
RUN_CONFIG: dict[str, object] = {
    "backend": "secagg+",
    "threat-model": "active",
    "num-server-rounds": 1,
    "min-nodes": NUM_NODES,
    "fraction-evaluate": 0.0,
    # A tiny model: the test is about the runtime and the protocol, not about training.
    "num-users": 60,
    "num-items": 200,
    "dim": 4,
    "local-epochs": 1,
    "fail-partition": LOST_PARTITION,
    "fail-from-round": 1,
    # Deadlines are waited out only by silent nodes, and here none is silent (the lost node
    # answers with an error): they only have to cover Ray's start on a loaded machine, which
    # was seen to take 30 s before the first message is answered.
    "timeout": 60.0,
    "upload-timeout": 60.0,
}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


launcher = _load("local_deployment", APP_DIR / "local_deployment.py")


def _app_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """The demo's ``task``, ``server_app`` and ``simulation`` modules, imported as the app."""
    sys.path.insert(0, str(APP_DIR))
    try:
        from secagg_mf import server_app, simulation, task
    finally:
        sys.path.remove(str(APP_DIR))
    return task, server_app, simulation


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Flower's simulation runtime needs Ray (pip install 'flwr[simulation]==1.42.*')",
)
def test_flower_simulation_round_survives_a_lost_virtual_node(
    tmp_path: Path, progress: Callable[[str], None]
) -> None:
    keys = write_deployment_keys(tmp_path / "keys", range(NUM_NODES))
    report_path = tmp_path / "report.json"
    run_config = {
        **RUN_CONFIG,
        "simulation-keys": str(keys.roster_path.parent),
        "result-path": str(report_path),
    }
    simulation = launcher.LocalDeployment(tmp_path / "flower", NUM_NODES, simulation=True)
    try:
        simulation.start()
        run = simulation.submit(APP_DIR, run_config)
        outcome = simulation.wait(run, timeout=240, progress=progress)
    finally:
        simulation.close()
    assert simulation.alive() == [], "processes of the simulation outlived it"

    # `flwr run --stream` exits 0 even when the ServerApp crashed: the SuperLink said.
    assert outcome.status == "finished:completed", outcome.output[-4000:]
    assert f"node {LOST_PARTITION} fails in round 1" in outcome.output
    report = json.loads(report_path.read_text())
    (only,) = report["rounds"]
    assert "aborted" not in only
    assert len(only["survivors"]) == NUM_NODES - 1
    assert list(only["dropped"].values()) == [2]  # lost at the upload, masks recovered
    assert set(only["dropped"]).isdisjoint(only["survivors"])
    # Active: every virtual node proved its roster id with its own key, and round 3 ran.
    assert "identify" in only["protocol_seconds"] and "consistency" in only["protocol_seconds"]

    task, _, _ = _app_modules()
    settings = task.Settings.from_run_config(run_config)
    survivors = [p for p in range(NUM_NODES) if p != LOST_PARTITION]
    initial = task.shared_arrays(task.build_model(settings))
    expected, total_weight = task.fedavg_reference(
        settings, initial, NUM_NODES, server_round=1, partitions=survivors
    )
    secure = np.load(report_path.with_suffix(".npz"))
    step = 2 * settings.clip / (2**settings.value_bits - 1)
    ratio = total_weight / settings.max_weight
    for key, want in expected.items():
        error = np.max(np.abs(secure[f"r1:{key}"].astype(np.float64) - want))
        # One rounding step per survivor's weighted value, over the total weight ratio.
        assert error <= len(survivors) * step / ratio + 1e-5, (key, error)


def test_a_deployed_node_ignores_the_simulation_keys(tmp_path: Path) -> None:
    """The run config is the server's: outside the simulation it must not name a node's keys."""
    keys = write_deployment_keys(tmp_path / "keys", range(2))
    _, _, simulation = _app_modules()
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config={"simulation-keys": str(keys.roster_path.parent)},
    )
    assert not simulation.in_simulation()
    assert simulation.node_mod(context) is secagg_mod


def test_the_server_refuses_the_active_model_without_keys() -> None:
    task, server_app, _ = _app_modules()
    settings = task.Settings.from_run_config({"backend": "secagg+"})
    with pytest.raises(ParameterError, match="simulation-keys='DIR'"):
        server_app.make_workflow(settings, run_id=1)


def test_the_server_takes_the_roster_from_the_simulation_keys(tmp_path: Path) -> None:
    keys = write_deployment_keys(tmp_path / "keys", range(3))
    task, server_app, _ = _app_modules()
    settings = task.Settings.from_run_config({"simulation-keys": str(keys.roster_path.parent)})
    assert settings.server_roster() == str(keys.roster_path)
    workflow = server_app.make_workflow(settings, run_id=1)
    assert workflow.roster is not None and sorted(workflow.roster.ids) == [0, 1, 2]


def test_the_app_declares_this_package_and_no_legacy_federation() -> None:
    app: dict[str, Any] = tomllib.loads((APP_DIR / "pyproject.toml").read_text())
    ours: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needs = {r.name: r for r in map(Requirement, app["project"]["dependencies"])}
    assert "models" in needs[ours["name"]].extras
    assert needs[ours["name"]].specifier.contains(ours["version"])
    (flower,) = ours["optional-dependencies"]["flower"]
    (pin,) = Requirement(flower).specifier
    assert needs["flwr"].specifier.contains(pin.version)
    # flwr 1.42 moves a [tool.flwr.federations] table to $FLWR_HOME and comments it out here.
    assert "federations" not in app["tool"]["flwr"]


def test_the_app_config_matches_the_settings_and_the_shared_defaults() -> None:
    """The run config in pyproject.toml is literal TOML: it must agree with the code's."""
    task, _, _ = _app_modules()
    app: dict[str, Any] = tomllib.loads((APP_DIR / "pyproject.toml").read_text())
    config = app["tool"]["flwr"]["app"]["config"]
    assert task.Settings.from_run_config(config) == task.Settings()
    assert set(config) == {f.name.replace("_", "-") for f in dataclasses.fields(task.Settings)}
    assert (config["clip"], config["value-bits"]) == (FLOWER_CLIP, DEFAULT_VALUE_BITS)
    assert set(BACKEND_NAMES) <= set(task.BACKENDS)


@pytest.mark.usefixtures("serverapp_identity")
def test_a_run_whose_secure_rounds_all_abort_fails(tmp_path: Path) -> None:
    """Flower would call it completed; the ServerApp fails it, after writing its report."""
    import flower_loopback

    _, server_app, _ = _app_modules()
    grid = flower_loopback.LoopbackGrid(
        flower_loopback.make_client_app(failing=[flower_loopback.NODE_BASE + i for i in range(4)]),
        4,
    )
    report_path = tmp_path / "report.json"
    run_config: dict[str, bool | float | int | str] = {
        "backend": "secagg+",
        "threat-model": "semi-honest",
        "num-server-rounds": 2,
        "fraction-evaluate": 0.0,
        "num-users": 20,
        "num-items": 200,
        "dim": 2,
        "result-path": str(report_path),
    }
    context = Context(
        run_id=flower_loopback.RUN_ID,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config=run_config,
    )
    with pytest.raises(server_app.RoundsAbortedError, match="all 2 secure rounds aborted"):
        server_app.main(grid, context)
    rounds = json.loads(report_path.read_text())["rounds"]
    assert [r["aborted"] for r in rounds] == [True, True]
