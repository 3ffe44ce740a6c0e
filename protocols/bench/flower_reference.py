"""The Flower 1.42 SecAgg+ reference round, in this process, on the bench's grid point.

Why this module exists: an overhead is more convincing next to a well-known implementation
measured on the same machine, inputs and dropouts. When ``flwr`` is installed, this module plays
one SecAgg+ round with Flower 1.42's own client stage functions from ``secaggplus_mod`` and its
server workflow's unmasking logic rebuilt from Flower's building blocks (P-384 key agreement,
pycryptodome Shamir, Fernet, ``pseudo_rand_gen``, ``quantize``), without gRPC or the ServerApp.
Records label it as exactly that.

Rules: Flower is optional and loosely typed, so it is imported only when a round is asked for and
its modules are held as ``Any``; the round's degree and threshold come from the round planner,
as this project's SecAgg+ runs do; a halt of Flower's server is reported, never raised.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import numpy as np

from protocols.bench.metering import SERVER
from protocols.bench.runners import FloatArray, Outcome, RunContext
from protocols.simulate import ROUND_NAMES, UNMASKING_ROUND

__all__ = ["FLOWER_MISSING", "flower_status", "run_flower"]

_T = TypeVar("_T")

FLOWER_MISSING: Final = "flower: not installed (pip install secagg[flower])"
#: Flower's SecAgg+ defaults (SecAggPlusWorkflow), used for its reference runs.
_FLOWER_CLIP: Final = 8.0
_FLOWER_TARGET_RANGE: Final = 1 << 22
_FLOWER_MOD_RANGE: Final = 1 << 32


def flower_status() -> tuple[bool, str]:
    """Whether the Flower reference can run, and a line saying why or which version."""
    if importlib.util.find_spec("flwr") is None:
        return False, FLOWER_MISSING
    try:
        version = importlib.metadata.version("flwr")
        _FlowerAPI()
    except (ImportError, AttributeError) as error:  # pragma: no cover - depends on flwr
        return False, f"flower: unusable ({error}); the reference needs flwr 1.42"
    return True, f"flower: flwr {version}, SecAgg+ client stages and server blocks in-process"


class _FlowerAPI:
    """Flower's SecAgg+ client stages and building blocks, imported only when asked for.

    Flower is optional and loosely typed, so its modules are held as ``Any``.
    """

    _MODULES: Final = {
        "client": "flwr.client.mod.secure_aggregation.secaggplus_mod",
        "shamir": "flwr.common.secure_aggregation.crypto.shamir",
        "symmetric": "flwr.common.secure_aggregation.crypto.symmetric_encryption",
        "arithmetic": "flwr.common.secure_aggregation.ndarrays_arithmetic",
        "quantization": "flwr.common.secure_aggregation.quantization",
        "utils": "flwr.common.secure_aggregation.secaggplus_utils",
        "asymmetric": "flwr.supercore.primitives.asymmetric",
        "common": "flwr.common",
        "app": "flwr.app",
        "serde": "flwr.common.serde",
    }

    def __init__(self) -> None:
        modules = {name: importlib.import_module(path) for name, path in self._MODULES.items()}
        self.client: Any = modules["client"]
        self.shamir: Any = modules["shamir"]
        self.symmetric: Any = modules["symmetric"]
        self.arithmetic: Any = modules["arithmetic"]
        self.quantization: Any = modules["quantization"]
        self.utils: Any = modules["utils"]
        self.asymmetric: Any = modules["asymmetric"]
        self.common: Any = modules["common"]
        self.app: Any = modules["app"]
        self.serde: Any = modules["serde"]
        self.key: Any = self.client.Key
        # The client stage functions this reference calls; fail here if a release renamed them.
        for stage in ("_setup", "_share_keys", "_collect_masked_vectors", "_unmask"):
            getattr(self.client, stage)


class _FlowerHaltError(Exception):
    """Flower's server workflow would stop the round here (it logs and returns False)."""


class _FlowerRound:
    """One Flower 1.42 SecAgg+ round, all parties in this process.

    Clients run Flower's own stage functions (``_setup``, ``_share_keys``,
    ``_collect_masked_vectors``, ``_unmask`` of ``secaggplus_mod``), i.e. the mod minus its
    Message/Context wrapping. The server repeats ``SecAggPlusWorkflow``'s stage logic with the
    same building blocks, since the workflow itself needs a Grid and a LegacyContext. Bytes are
    the protobuf size of each stage's ConfigRecord (no gRPC framing, no model parameters).
    A client that raises is treated as Flower treats an error reply: it leaves the active set.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx, self.meter = ctx, ctx.meter
        self.fl = _FlowerAPI()
        self.key = self.fl.key
        policy = ctx.policy()
        self.threshold = policy.threshold_for(ctx.n)
        self.num_shares = min(ctx.n, policy.degree_for(ctx.n) + 1)
        self.nids = [u + 1 for u in range(ctx.n)]  # Flower node ids are never 0
        self.states = {nid: self.fl.client.SecAggPlusState() for nid in self.nids}
        for nid, state in self.states.items():
            state.nid = nid  # What secaggplus_mod copies from the message before _setup.
        self.active: set[int] = set(self.nids)
        self.sampled: set[int] = set(self.nids)
        self.public_keys: dict[int, list[bytes]] = {}
        self.neighbours: dict[int, set[int]] = {}
        self.errors: list[str] = []

    # -- plumbing -----------------------------------------------------------------------------

    def _size(self, config: Mapping[str, Any]) -> int:
        record = self.fl.app.RecordDict(
            {"secaggplus_configs": self.fl.app.ConfigRecord(dict(config))}
        )
        return int(self.fl.serde.recorddict_to_proto(record).ByteSize())

    def _drops(self, nid: int, round_index: int) -> bool:
        return self.ctx.schedule.get(nid - 1, len(ROUND_NAMES)) <= round_index

    def _exchange(
        self,
        round_index: int,
        configs: Mapping[int, dict[str, Any]],
        stage: Callable[..., dict[str, Any]],
        *extra: Callable[[int], object],
    ) -> dict[int, dict[str, Any]]:
        """Send each active client its config, run its stage, collect the replies."""
        replies: dict[int, dict[str, Any]] = {}
        for nid, config in configs.items():
            if self._drops(nid, round_index):
                continue  # Like the simulator, count only what reaches a live client.
            self.meter.add_server_exchange(nid - 1, round_index, received=self._size(config))
            record = self.fl.app.ConfigRecord(dict(config))
            args = [f(nid) for f in extra]
            try:
                reply = self.meter.measure(
                    nid - 1, round_index, stage, self.states[nid], record, *args
                )
            except Exception as error:  # Flower turns any client exception into an error reply.
                self.errors.append(f"client {nid}: {type(error).__name__}: {error}")
                continue
            self.meter.add_server_exchange(nid - 1, round_index, sent=self._size(reply))
            replies[nid] = reply
        return replies

    def _server(self, round_index: int, step: Callable[..., _T], *args: object) -> _T:
        return self.meter.measure(SERVER, round_index, step, *args)

    def _check_threshold(self) -> None:
        for nid in self.sampled:
            if len(self.neighbours[nid] & self.active) < self.threshold:
                raise _FlowerHaltError("insufficient available nodes (_check_threshold)")

    # -- stages (SecAggPlusWorkflow order) ----------------------------------------------------

    def _setup_configs(self) -> dict[int, dict[str, Any]]:
        key = self.key
        order = list(self.nids)
        # Flower shuffles with the random module; this module keeps to a CSPRNG (same cost).
        secrets.SystemRandom().shuffle(order)
        half = self.num_shares >> 1
        self.neighbours = {
            nid: {order[(i + offset) % len(order)] for offset in range(-half, half + 1)}
            for i, nid in enumerate(order)
        }
        config = {
            key.SAMPLE_NUMBER: len(order),
            key.SHARE_NUMBER: self.num_shares,
            key.THRESHOLD: self.threshold,
            key.CLIPPING_RANGE: _FLOWER_CLIP,
            key.TARGET_RANGE: _FLOWER_TARGET_RANGE,
            key.MOD_RANGE: _FLOWER_MOD_RANGE,
            key.MAX_WEIGHT: 1.0,
        }
        return {nid: config for nid in self.active}

    def _keep_keys(self, replies: Mapping[int, dict[str, Any]]) -> None:
        self.active = set(replies)
        for nid, reply in replies.items():
            self.public_keys[nid] = [reply[self.key.PUBLIC_KEY_1], reply[self.key.PUBLIC_KEY_2]]
        self._check_threshold()

    def _roster_configs(self) -> dict[int, dict[str, Any]]:
        return {
            nid: {str(v): self.public_keys[v] for v in self.neighbours[nid] & self.active}
            for nid in self.active
        }

    def _forward(self, replies: Mapping[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        self.active = set(replies)
        sources: dict[int, list[int]] = {nid: [] for nid in self.active}
        texts: dict[int, list[bytes]] = {nid: [] for nid in self.active}
        for src, reply in replies.items():
            for dst, text in zip(
                reply[self.key.DESTINATION_LIST], reply[self.key.CIPHERTEXT_LIST], strict=True
            ):
                if dst in texts:
                    texts[dst].append(text)
                    sources[dst].append(src)
        self._check_threshold()
        return {
            nid: {self.key.CIPHERTEXT_LIST: texts[nid], self.key.SOURCE_LIST: sources[nid]}
            for nid in self.active
        }

    def _sum_masked(self, replies: Mapping[int, dict[str, Any]]) -> list[Any]:
        self.active = set(replies)
        total: list[Any] | None = None
        for reply in replies.values():
            vector = [self.fl.common.bytes_to_ndarray(b) for b in reply[self.key.MASKED_PARAMETERS]]
            total = (
                vector if total is None else self.fl.arithmetic.parameters_addition(total, vector)
            )
        if total is None:
            raise _FlowerHaltError("no masked vector arrived")
        self._check_threshold()
        return list(self.fl.arithmetic.parameters_mod(total, _FLOWER_MOD_RANGE))

    def _unmask_configs(self) -> dict[int, dict[str, Any]]:
        dead = self.sampled - self.active
        return {
            nid: {
                self.key.ACTIVE_NODE_ID_LIST: list(self.neighbours[nid] & self.active),
                self.key.DEAD_NODE_ID_LIST: list(self.neighbours[nid] & dead),
            }
            for nid in self.active
        }

    def _unmask(self, masked: list[Any], replies: Mapping[int, dict[str, Any]]) -> FloatArray:
        shares: dict[int, list[bytes]] = {nid: [] for nid in self.sampled}
        for reply in replies.values():
            for owner, share in zip(
                reply[self.key.NODE_ID_LIST], reply[self.key.SHARE_LIST], strict=True
            ):
                shares[owner].append(share)
        shape = self.fl.arithmetic.get_parameters_shape(masked)
        for nid, share_list in shares.items():
            if len(share_list) < self.threshold:
                raise _FlowerHaltError(
                    "not enough shares to recover secret in unmask vectors stage"
                )
            secret = self.fl.shamir.combine_shares(share_list)
            if nid in self.active:
                mask = self.fl.utils.pseudo_rand_gen(secret, _FLOWER_MOD_RANGE, shape)
                masked = self.fl.arithmetic.parameters_subtraction(masked, mask)
                continue
            for peer in self.neighbours[nid] - {nid}:
                shared = self.fl.symmetric.generate_shared_key(
                    self.fl.asymmetric.bytes_to_private_key(secret),
                    self.fl.asymmetric.bytes_to_public_key(self.public_keys[peer][0]),
                )
                mask = self.fl.utils.pseudo_rand_gen(shared, _FLOWER_MOD_RANGE, shape)
                combine = (
                    self.fl.arithmetic.parameters_addition
                    if nid > peer
                    else self.fl.arithmetic.parameters_subtraction
                )
                masked = combine(masked, mask)
        recon = self.fl.arithmetic.parameters_mod(masked, _FLOWER_MOD_RANGE)
        total_ratio, recon = self.fl.arithmetic.factor_extract(recon)
        vector = self.fl.quantization.dequantize(recon, _FLOWER_CLIP, _FLOWER_TARGET_RANGE)[0]
        vector += -(len(self.active) - 1) * _FLOWER_CLIP
        vector *= _FLOWER_TARGET_RANGE / total_ratio
        return np.asarray(vector, dtype=np.float64)

    def run(self) -> Outcome:
        """Play the four stages; a halt or a wrong sum becomes the outcome's error."""
        ctx, mod = self.ctx, self.fl.client
        outcome = Outcome(self.meter, ctx.finishers, ctx.dim)
        outcome.setup = {"num_shares": self.num_shares, "threshold": self.threshold}
        parameters = {
            nid: self.fl.common.ndarrays_to_parameters([ctx.update(nid - 1, ctx.dim)])
            for nid in self.nids
        }
        try:
            configs = self._server(0, self._setup_configs)
            replies = self._exchange(0, configs, mod._setup)
            self._server(0, self._keep_keys, replies)
            replies = self._exchange(1, self._server(1, self._roster_configs), mod._share_keys)
            forwarded = self._server(1, self._forward, replies)
            replies = self._exchange(
                2, forwarded, mod._collect_masked_vectors, lambda nid: 1, parameters.__getitem__
            )
            masked = self._server(2, self._sum_masked, replies)
            uploaded = set(self.active)
            # Flower has no consistency round: its unmask stage is this project's round 4.
            configs = self._server(UNMASKING_ROUND, self._unmask_configs)
            replies = self._exchange(UNMASKING_ROUND, configs, mod._unmask)
            mean = self._server(UNMASKING_ROUND, self._unmask, masked, replies)
        except _FlowerHaltError as halt:
            outcome.correct = False
            first = f" (first client error: {self.errors[0]})" if self.errors else ""
            outcome.error = f"Flower's server halted: {halt}{first}"
            return outcome
        expected = sum(ctx.update(nid - 1, ctx.dim) for nid in uploaded)
        error = float(np.max(np.abs(mean * len(uploaded) - expected)))
        step = 2 * _FLOWER_CLIP / _FLOWER_TARGET_RANGE
        outcome.correct = error <= 2 * step * len(uploaded) + 1e-9
        if not outcome.correct:
            outcome.error = f"Flower's aggregate is off by {error:.3g}"
        return outcome


def run_flower(ctx: RunContext) -> Outcome:
    """Play one Flower SecAgg+ round on ``ctx``'s grid point (see :class:`_FlowerRound`).

    Args:
        ctx: the run; its protocol is the Flower reference.

    Returns:
        The outcome; a halt of Flower's server or a wrong sum is its error, not an exception.
    """
    return _FlowerRound(ctx).run()
