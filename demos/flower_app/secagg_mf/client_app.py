"""The demo's ClientApp: plain Message-API train and evaluate functions, plus one Mod line.

The only secure-aggregation code a Flower user adds on the client is the Mod on the train
function: ``@app.train(mods=[secagg_mod])``. :func:`backend_mod` exists only so that the same
app can also run Flower's own SecAgg+ (``backend = "flower-secagg+"``) for the side-by-side
timing, and give the virtual nodes of Flower's simulation runtime their key files
(:mod:`secagg_mf.simulation`); a real app installs one Mod directly.

Flower starts a fresh ClientApp process for every message, so this module imports torch (through
:mod:`secagg_mf.task`) only inside the functions that train or evaluate: the three protocol rounds
without training then cost a light process start, not a torch import.

Node config (``flower-supernode --node-config``): ``partition-id``, ``num-partitions``; for the
active threat model (the default) ``secagg-identity-key`` and ``secagg-roster``, the node's own
private key file and copy of the roster (``secagg_mod`` reads them, and trusts nothing the
server sends in their place), or ``secagg-threat-model="semi-honest"`` to run without keys
(SecAgg and SecAgg+ only); for Paillier also ``secagg-paillier-key``, the node's copy of the
decryptors' public key file, which it pins (there is no trust on first use); and,
to play a device that stalls (the deployment test kills it meanwhile), ``stall-from-round``.

Flower's simulation runtime gives each virtual node only ``partition-id`` and ``num-partitions``:
a virtual node takes its key files from the run config's ``simulation-keys`` directory instead
(:mod:`secagg_mf.simulation` says why that is honest only in a simulation). To lose a node there,
the run config names it: ``fail-partition = i`` makes partition ``i``'s train function raise from
round ``fail-from-round`` on, after the node has taken part in the key rounds, so the server
drops it at the upload and recovers its masks (this works on a deployment too).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from protocols.flower.records import RowSelection
from secagg_mf.simulation import node_mod

if TYPE_CHECKING:
    from secagg_mf.task import Settings

app = ClientApp()
CallNext = Callable[[Message, Context], Message]

STATES_RECORD = "user-states"


class NodeFailureError(RuntimeError):
    """The failure a run asks of one node (run config ``fail-partition``): a crashed device."""


def backend_mod(message: Message, context: Context, call_next: CallNext) -> Message:
    """Our ``secagg_mod``, or Flower's ``secaggplus_mod`` when the run asks for the baseline.

    A virtual node of Flower's simulation runtime gets the Mod with its key files from
    :func:`secagg_mf.simulation.node_mod`; a deployed node the plain ``secagg_mod``.
    """
    if context.run_config.get("backend") == "flower-secagg+":
        from secagg_mf import baseline

        return baseline.flower_secaggplus_mod(message, context, call_next)
    support = _node_items if context.run_config.get("sparse", 0) else None
    return node_mod(context, support)(message, context, call_next)


def _node_items(context: Context) -> np.ndarray:
    """Sparse rounds: this node's items, the rows its support sketch announces."""
    from secagg_mf import task

    settings = task.Settings.from_run_config(context.run_config)
    partition_id = int(context.node_config["partition-id"])
    return task.node_items(settings, partition_id, int(context.node_config["num-partitions"]))


def _partition(context: Context, settings: Settings) -> tuple[int, np.ndarray]:
    from secagg_mf import task

    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    return partition_id, task.partition_users(settings, partition_id, num_partitions)


def _private_states(context: Context, settings: Settings, users: np.ndarray) -> np.ndarray:
    """This node's user states, kept in ``context.state`` across rounds (never sent)."""
    from secagg_mf import task

    record = context.state.array_records.get(STATES_RECORD)
    if record is None:
        return task.initial_user_states(settings, users)
    return np.asarray(record["states"].numpy())


@app.train(mods=[backend_mod])
def train(message: Message, context: Context) -> Message:
    """Train this node's users from the broadcast model; reply with arrays and the weight."""
    from secagg_mf import task

    settings = task.Settings.from_run_config(context.run_config)
    partition_id, users = _partition(context, settings)
    server_round = task.config_int(task.config_of(message), "server-round")
    stall_from = context.node_config.get("stall-from-round")
    if stall_from is not None and server_round >= int(stall_from):
        print(f"secagg-demo: node {partition_id} stalls in round {server_round}", flush=True)
        sys.stdout.flush()
        time.sleep(settings.stall_seconds)
    if partition_id == settings.fail_partition and server_round >= settings.fail_from_round:
        print(f"secagg-demo: node {partition_id} fails in round {server_round}", flush=True)
        raise NodeFailureError(
            f"partition {partition_id} fails from round {settings.fail_from_round} on "
            "(run config fail-partition)"
        )
    selection = RowSelection.from_content(message.content)  # a sparse round's announced rows
    arrays, states, loss, interactions = task.local_train(
        settings,
        task.arrays_of(message),
        users,
        _private_states(context, settings, users),
        server_round,
        partition_id,
        None if selection is None else selection.indices,
    )
    context.state[STATES_RECORD] = ArrayRecord({"states": Array(states)})
    metrics = MetricRecord({"num-examples": interactions, "train-loss": loss})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """HR@10 / NDCG@10 of this node's users, with their private states, on their held-out items."""
    from secagg_mf import task

    settings = task.Settings.from_run_config(context.run_config)
    _, users = _partition(context, settings)
    metrics = task.local_evaluate(
        settings, task.arrays_of(message), users, _private_states(context, settings, users)
    )
    record = MetricRecord(
        {"hit-ratio": metrics.hit_ratio, "ndcg": metrics.ndcg, "num-examples": metrics.num_users}
    )
    return Message(RecordDict({"metrics": record}), reply_to=message)
