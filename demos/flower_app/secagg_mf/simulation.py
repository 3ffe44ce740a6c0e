"""Where a virtual node of Flower's simulation runtime gets its trust: the simulation's key files.

Why this module exists: on a deployment each SuperNode names its own identity key and roster in
its node config (``secagg-identity-key``, ``secagg-roster``), which the server never sees nor
chooses. Flower 1.42's simulation runtime gives every virtual node the same fixed node config,
``partition-id`` and ``num-partitions``, and nothing else can be set per virtual node. So a
virtual node takes its key files from the run config instead: ``simulation-keys = "DIR"``, the
directory written by ``secagg keys DIR --clients N``; the node with ``partition-id = i`` reads
``DIR/client-i.key`` and ``DIR/roster.txt`` (and pins ``DIR/paillier-public.key`` when the
directory holds one).

That is honest only because a simulation is one machine: the ServerApp, every virtual node and
every key file live in one process tree of one user, so the run config (the server's side) naming
the nodes' keys costs nothing that was there. The simulation runs the real protocol (signed
claims, signed keys, the roster checks, the consistency round, dropout recovery), but it protects
nobody. On a deployment the run config must never choose a node's trust anchor: a server could
point every node at a roster of its own. Hence :func:`in_simulation`: a node follows
``simulation-keys`` only while it runs inside a Ray actor of the simulation runtime, and a
deployed SuperNode (whose ClientApp runs in a plain ``flwr-clientapp`` process) ignores it and
keeps reading its own node config.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flwr.app import Context

from protocols.flower import SecAggMod, secagg_mod
from protocols.flower.client_mod import SupportFunction
from protocols.keyfiles import PAILLIER_PUBLIC_FILE, ROSTER_FILE, key_file_name

__all__ = ["SIMULATION_KEYS", "in_simulation", "node_mod"]

#: Run config key of the simulation's key directory (``secagg keys DIR --clients N``).
SIMULATION_KEYS = "simulation-keys"


def in_simulation() -> bool:
    """Whether this code runs inside a Ray actor, as the ClientApps of Flower's simulation do.

    A deployed ClientApp never imports Ray, so the check needs no import of its own.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    return bool(ray.get_runtime_context().get_actor_id() is not None)


def node_mod(context: Context, support: SupportFunction | None = None) -> SecAggMod:
    """The secagg Mod of this node: the default one, or a virtual node's, with its key files.

    A deployed node (or a virtual one without ``simulation-keys``) gets :data:`secagg_mod`, which
    reads the node config. A virtual node with ``simulation-keys`` gets the key files of its
    partition (see the module docstring); with ``threat-model = "semi-honest"`` in the run config
    a virtual node runs semi-honest, as the node config of a deployed node would say. With
    ``support`` (sparse rounds) the Mod gets that support function.
    """
    if not in_simulation():
        return secagg_mod if support is None else SecAggMod(support=support)
    run_config = context.run_config
    if run_config.get("threat-model") == "semi-honest" and run_config.get("backend") != "paillier":
        return SecAggMod(threat_model="semi-honest", support=support)
    directory = str(run_config.get(SIMULATION_KEYS, ""))
    if not directory:
        return secagg_mod if support is None else SecAggMod(support=support)
    keys = Path(directory)
    partition_id = int(context.node_config["partition-id"])
    pinned = keys / PAILLIER_PUBLIC_FILE
    return SecAggMod(
        identity_key=keys / key_file_name(partition_id),
        roster=keys / ROSTER_FILE,
        paillier_public_key=pinned if pinned.exists() else None,
        support=support,
    )
