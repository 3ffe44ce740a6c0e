"""A real local Flower deployment on loopback: one SuperLink, N SuperNodes, ``flwr run``.

Flower's own executables, started as they would be on real machines, only all on 127.0.0.1 and
offline: ``flower-superlink --insecure`` (Fleet, Control and runtime APIs on one free port, no
dependency installation), one ``flower-supernode --insecure`` per node (each on its own free
port, with its ``--node-config``), and ``flwr run APP loopback --stream`` with a ``config.toml``
pointing the CLI at the SuperLink. Every process gets its own ``FLWR_HOME``; telemetry and update
checks are off. :func:`deployment_node_configs` writes the deployment's identity keys and roster
for the active threat model (and the Paillier keys, on request) and names them in each node's
config. Used by
``measure_round_time.py`` and by the deployment test. With ``simulation=True`` the same class
runs Flower's simulation runtime instead: ``flower-superlink --simulation`` and no SuperNodes;
each run gets ``--federation-config "num-supernodes=N"`` and its ClientApps run as virtual nodes
in Ray actors (``pip install 'flwr[simulation]'``). Used by the simulation test.

Cleanup is the point of :meth:`LocalDeployment.close`: the SuperLink runs the ServerApp in a
child of its own session and a SuperNode runs each ClientApp message in a child process, which
can be orphaned when its parent is killed. So the PIDs of all descendants are collected (and
remembered while the deployment runs) *before* anything is killed, then everything is killed by
PID, never by name. ``close`` is idempotent and runs from ``__exit__`` even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: Environment that keeps every Flower process off the internet.
OFFLINE_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "PYTHONUNBUFFERED": "1",
}


#: The lines of a run's log that say how far it got (for :meth:`LocalDeployment.wait`).
PROGRESS_LINE = re.compile(
    r"\[ROUND \d+/\d+\]|secure round \d+:|round \d+ aborted|(stalls|fails) in round"
    r"|Strategy execution finished"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children_table() -> dict[int, list[int]]:
    """Parent PID -> child PIDs of every process: from ``/proc`` on Linux, else from ``ps``."""
    pairs: list[tuple[int, int]] = []
    proc = Path("/proc")
    if (proc / "self" / "stat").exists():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:  # the process ended meanwhile
                continue
            pairs.append((int(entry.name), int(fields[1])))
    else:
        out = subprocess.run(
            ["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True, check=False
        ).stdout
        pairs = [
            (int(parts[0]), int(parts[1]))
            for parts in (line.split() for line in out.splitlines())
            if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit()
        ]
    table: dict[int, list[int]] = {}
    for pid, ppid in pairs:
        table.setdefault(ppid, []).append(pid)
    return table


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first, then theirs)."""
    table = _children_table()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = table.get(frontier.pop(), [])
        found.extend(children)
        frontier.extend(children)
    return found


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (``/proc/PID/stat`` field 22; ``ps`` elsewhere), None if gone.

    A PID names a process only together with its start time: once a process has died, the
    kernel may hand its PID to an unrelated process, which must never receive our signals.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout.strip()
        return out or None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields[0] == "Z":  # dead, waiting to be reaped
        return None
    return fields[19]


class _Tracked:
    """Processes known by (PID, start time), so a recycled PID is never signalled."""

    def __init__(self) -> None:
        self.known: dict[int, str] = {}

    def add(self, pids: Sequence[int]) -> None:
        for pid in pids:
            started = _start_time(pid)
            if started is not None:
                self.known.setdefault(pid, started)

    def alive(self) -> list[int]:
        return [pid for pid, started in self.known.items() if _start_time(pid) == started]

    def kill(self, *, grace: float | None) -> None:
        """SIGTERM what is still ours, wait up to ``grace`` seconds, SIGKILL what is left.

        With ``grace=None`` only SIGKILL is sent: a crash, with no chance to say goodbye.
        """
        steps = [(signal.SIGKILL, 0.0)]
        if grace is not None:
            steps.insert(0, (signal.SIGTERM, grace))
        for sig, wait in steps:
            for pid in self.alive():
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)


@dataclass
class RunOutcome:
    """What ``flwr run --stream`` left behind."""

    run_id: int | None
    status: str
    exit_code: int | None
    output: str
    seconds: float


class _Spawned:
    """One started process, its log file and every descendant seen so far."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(
            list(args), env=dict(env), stdout=self._log, stderr=subprocess.STDOUT
        )
        self.family = _Tracked()
        self.family.add([self.process.pid])

    def snapshot(self) -> None:
        """Remember the descendants alive now (they may be orphaned later)."""
        if self.process.poll() is None:
            self.family.add(descendants(self.process.pid))

    def kill(self, *, grace: float | None = 3.0) -> None:
        """Kill the process and every descendant, collected before the first signal."""
        self.snapshot()
        self.family.kill(grace=grace)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if not self._log.closed:
            self._log.close()

    def text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class LocalDeployment:
    """Start a SuperLink and ``num_nodes`` SuperNodes on loopback; run apps; kill it all.

    Args:
        workdir: where the ``FLWR_HOME`` directories and logs go.
        num_nodes: SuperNodes to start (with ``simulation``: virtual nodes of each run).
        node_configs: one ``--node-config`` string per node (default: partition ids, semi-honest;
            see :func:`deployment_node_configs`); none in a simulation.
        bin_dir: where ``flower-superlink``, ``flower-supernode`` and ``flwr`` live (default:
            beside the running Python).
        simulation: run Flower's simulation runtime (Ray) instead of SuperNodes.
    """

    def __init__(
        self,
        workdir: Path,
        num_nodes: int,
        *,
        node_configs: Sequence[str] | None = None,
        bin_dir: Path | None = None,
        simulation: bool = False,
    ) -> None:
        if simulation and node_configs:
            raise ValueError("a simulation's virtual nodes take no --node-config")
        self.workdir = Path(workdir)
        self.num_nodes = num_nodes
        self.simulation = simulation
        if simulation:
            self.node_configs: list[str] = []
        elif node_configs is not None:
            self.node_configs = list(node_configs)
        else:
            self.node_configs = deployment_node_configs(num_nodes)[0]
        self.bin_dir = Path(bin_dir) if bin_dir is not None else Path(sys.executable).parent
        self.port = 0
        self.superlink: _Spawned | None = None
        self.nodes: list[_Spawned] = []
        self.runs: list[_Spawned] = []
        #: Run name -> complete lines of its log already handed to a ``progress`` callback.
        self._shown: dict[str, int] = {}
        self._closed = False

    def __enter__(self) -> LocalDeployment:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _env(self, home: Path) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, **OFFLINE_ENV, "FLWR_HOME": str(home)}

    def _tool(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: install flwr (pip install 'flwr==1.42.*')")
        return str(path)

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the SuperLink, wait until it is healthy, then start the SuperNodes."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.superlink = _Spawned(
            "superlink",
            [
                self._tool("flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                # The app's dependencies are installed already: no `uv sync` at run time.
                "--disable-runtime-dependency-installation",
                *(["--simulation"] if self.simulation else []),
            ],
            self._env(self.workdir / "superlink-home"),
            self.workdir / "superlink.log",
        )
        self._wait_healthy(timeout)
        for index, node_config in enumerate(self.node_configs):
            self.nodes.append(self._start_node(index, node_config))
        cli_home = self.workdir / "cli-home"
        cli_home.mkdir(parents=True, exist_ok=True)
        (cli_home / "config.toml").write_text(
            '[superlink]\ndefault = "loopback"\n\n'
            f'[superlink.loopback]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )

    def _start_node(self, index: int, node_config: str) -> _Spawned:
        return _Spawned(
            f"node-{index}",
            [
                self._tool("flower-supernode"),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{self.port}",
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
                "--node-config",
                node_config,
            ],
            self._env(self.workdir / f"node-{index}-home"),
            self.workdir / f"node-{index}.log",
        )

    def _wait_healthy(self, timeout: float) -> None:
        assert self.superlink is not None
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.superlink.process.poll() is not None:
                raise RuntimeError(f"flower-superlink exited:\n{self.superlink.text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the SuperLink was not healthy after {timeout} s")

    def snapshot(self) -> None:
        """Remember every descendant PID now (call it while runs are in flight)."""
        for spawned in [self.superlink, *self.nodes, *self.runs]:
            if spawned is not None:
                spawned.snapshot()

    # -- runs ---------------------------------------------------------------------------------

    def submit(self, app_dir: Path, run_config: Mapping[str, object]) -> _Spawned:
        """Start ``flwr run APP loopback --stream`` with ``run_config`` overrides.

        In a simulation the run gets ``num_nodes`` virtual nodes, one CPU each.
        """
        overrides = " ".join(f"{key}={_toml(value)}" for key, value in run_config.items())
        args = [self._tool("flwr"), "run", str(app_dir), "loopback", "--stream"]
        if overrides:
            args += ["--run-config", overrides]
        if self.simulation:
            federation = f"num-supernodes={self.num_nodes} client-resources-num-cpus=1"
            args += ["--federation-config", federation]
        spawned = _Spawned(
            f"run-{len(self.runs)}",
            args,
            self._env(self.workdir / "cli-home"),
            self.workdir / f"run-{len(self.runs)}.log",
        )
        self.runs.append(spawned)
        return spawned

    def wait(
        self,
        run: _Spawned,
        *,
        timeout: float,
        progress: Callable[[str], object] | None = None,
    ) -> RunOutcome:
        """Wait for a submitted run; its status comes from ``flwr list`` (the exit code lies).

        ``progress`` gets each new line of the run's log that says how far it got
        (:data:`PROGRESS_LINE`), as it appears: a test can show it while it waits. A line is
        handed over once, also across calls of :meth:`wait_for_log` with ``progress``.
        """
        started = time.monotonic()
        while run.process.poll() is None and time.monotonic() - started < timeout:
            self.snapshot()
            self._relay_progress(progress)
            time.sleep(0.5)
        if run.process.poll() is None:
            run.kill()
        self._relay_progress(progress)
        output = run.text()
        match = re.search(r"Successfully started run (\d+)", output)
        run_id = int(match.group(1)) if match else None
        return RunOutcome(
            run_id=run_id,
            status=self.status(run_id) if run_id is not None else "not started",
            exit_code=run.process.returncode,
            output=output,
            seconds=time.monotonic() - started,
        )

    def status(self, run_id: int) -> str:
        """``finished:completed``, ``finished:failed``, ``running``, ... of one run."""
        result = subprocess.run(
            [self._tool("flwr"), "list", "loopback", "--run-id", str(run_id), "--format", "json"],
            env=self._env(self.workdir / "cli-home"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            runs = json.loads(result.stdout)["runs"]
            return str(runs[0]["status"])
        except (ValueError, KeyError, IndexError, TypeError):
            return f"unknown ({result.stdout.strip()} {result.stderr.strip()})"

    def wait_for_log(
        self,
        spawned: _Spawned,
        text: str,
        *,
        timeout: float,
        progress: Callable[[str], object] | None = None,
    ) -> bool:
        """Poll a process's log until ``text`` appears.

        ``progress`` gets the progress lines of the runs meanwhile, as in :meth:`wait`.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.snapshot()
            self._relay_progress(progress)
            if text in spawned.text():
                return True
            time.sleep(0.3)
        return False

    def wait_for_nodes(
        self, *, timeout: float, progress: Callable[[str], object] | None = None
    ) -> bool:
        """Wait until every SuperNode has registered with the SuperLink (it logs its node ID).

        ``progress`` gets the progress lines of the runs meanwhile, as in :meth:`wait`.
        """
        deadline = time.monotonic() + timeout
        return all(
            self.wait_for_log(
                node, "SuperNode ID:", timeout=deadline - time.monotonic(), progress=progress
            )
            for node in self.nodes
        )

    def node_id(self, index: int) -> int | None:
        """The Flower node ID that SuperNode ``index`` got from the SuperLink (None: not yet)."""
        match = re.search(r"SuperNode ID: (\d+)", self.nodes[index].text())
        return int(match.group(1)) if match else None

    def _relay_progress(self, progress: Callable[[str], object] | None) -> None:
        """Hand ``progress`` the progress lines that the runs logged since the last call."""
        if progress is None:
            return
        for run in self.runs:
            self._shown[run.name] = _report_progress(
                run.text(), self._shown.get(run.name, 0), progress
            )

    def kill_node(self, index: int) -> None:
        """SIGKILL one SuperNode and its ClientApp processes, as a crash would."""
        self.nodes[index].kill(grace=None)

    def close(self) -> None:
        """Kill every process this deployment started, and their descendants (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.snapshot()
        everything = [s for s in [*self.runs, *self.nodes, self.superlink] if s is not None]
        # One grace period for all of them at once, not one per process after the other.
        together = _Tracked()
        for spawned in everything:
            together.known.update(spawned.family.known)  # (PID, start time): never recycled
        together.kill(grace=3.0)
        for spawned in everything:
            spawned.kill()  # reaps the process and closes its log; nothing of it is left alive

    def alive(self) -> list[int]:
        """PIDs of the processes this deployment started or saw that still run."""
        return [
            pid
            for spawned in [self.superlink, *self.nodes, *self.runs]
            if spawned is not None
            for pid in spawned.family.alive()
        ]


def deployment_node_configs(
    num_nodes: int,
    *,
    key_dir: Path | None = None,
    extra: Mapping[int, str] | None = None,
    decryptors: int | None = None,
    decryption_threshold: int | None = None,
) -> tuple[list[str], Path | None]:
    """One ``--node-config`` per node: its partition, and its trust in the active threat model.

    With ``key_dir``, the deployment's keys are written there first
    (:func:`protocols.flower.write_deployment_keys`, clients 0 .. n-1) and node ``i`` gets
    client ``i``'s private key file and the roster file; without it, every node runs
    semi-honest. With ``decryptors`` (and ``key_dir``), the Paillier keys are dealt there too
    (``paillier-keys`` of the run config is then ``key_dir``) and every node pins the public key
    file. ``extra`` appends settings to some nodes' configs.

    Returns:
        The node configs, and the roster file for the ServerApp (``None`` when semi-honest).
    """
    from protocols.flower import (
        NODE_IDENTITY_KEY,
        NODE_PAILLIER_KEY,
        NODE_ROSTER,
        NODE_THREAT_MODEL,
        write_deployment_keys,
    )

    if decryptors is not None and key_dir is None:
        raise ValueError("Paillier keys need key_dir: its nodes sign their uploads")
    keys = (
        None
        if key_dir is None
        else write_deployment_keys(
            key_dir,
            range(num_nodes),
            decryptors=decryptors,
            decryption_threshold=decryption_threshold,
        )
    )
    configs = []
    for i in range(num_nodes):
        config = f"partition-id={i} num-partitions={num_nodes}"
        if keys is None:
            config += f' {NODE_THREAT_MODEL}="semi-honest"'
        else:
            # TOML literal strings: a path's backslashes stay as they are.
            config += (
                f" {NODE_IDENTITY_KEY}='{keys.key_paths[i]}' {NODE_ROSTER}='{keys.roster_path}'"
            )
        if keys is not None and keys.paillier is not None:
            config += f" {NODE_PAILLIER_KEY}='{keys.paillier.public_path}'"
        if extra and i in extra:
            config += f" {extra[i]}"
        configs.append(config)
    return configs, None if keys is None else keys.roster_path


def _report_progress(text: str, shown: int, progress: Callable[[str], object]) -> int:
    """Hand ``progress`` the progress lines of ``text`` after the first ``shown`` complete lines.

    Returns:
        The number of complete lines seen (pass it back next time).
    """
    lines = text.split("\n")[:-1]  # the last one may still be written
    for line in lines[shown:]:
        if PROGRESS_LINE.search(line):
            progress(re.sub(r"\x1b\[[0-9;]*m", "", line).strip())
    return len(lines)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))
