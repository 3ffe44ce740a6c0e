"""The client side of the Flower integration: a Mod that answers protocol messages.

Why this module exists: a Flower node runs a ``ClientApp`` whose train function knows nothing
about secure aggregation. :class:`SecAggMod` sits in front of it: it answers each protocol message
with the client machine (:class:`~protocols.masking.MaskingClient` or
:class:`~protocols.paillier.PaillierClient`), calls the user's train function once, for the upload,
and turns its reply into the ring vector by the shared rule
(:class:`~secagg.encoding.UpdateEncoding`: clip the update, then weight it by
``w / max_weight``). Flower may start a fresh process for every message, so the Mod keeps
everything it must remember (the machine's exported state, the round it last accepted, the
setup's quantization, a pinned Paillier key) in ``context.state`` (:class:`_ClientMemory`).

The Mod lives in an importable module, and :data:`secagg_mod` is a module-level instance, so
Flower (and Ray, in simulation) can pickle a ``ClientApp`` that installs it.

Threat models (masking only): in ``"active"`` mode (the default) the node trusts only its own
identity key and roster files (:mod:`protocols.flower.keys`), named by :class:`SecAggMod`'s
arguments or by its node config (:data:`NODE_IDENTITY_KEY`, :data:`NODE_ROSTER`); it claims its
roster client id when the server asks (:class:`~protocols.flower.records.NodeClaim`) and runs
:class:`~protocols.masking.MaskingClient` with ``threat_model="active"``, which checks every
peer's signed keys, the public graph, its own minimum threshold and the consistency round.
Nothing the server sends is taken as a trust anchor: the roster is read from the local file at
every message. In ``"semi-honest"`` mode (chosen by the node, never by the server:
``SecAggMod(threat_model="semi-honest")`` or node config ``secagg-threat-model="semi-honest"``)
it needs no key and trusts the server to follow the protocol.

Paillier: a node encrypts only under the decryptors' public key that it pinned itself, given to
:class:`SecAggMod` (``paillier_public_key=``, a key or the path of its file) or named by its node
config (:data:`NODE_PAILLIER_KEY`, the ``paillier-public.key`` that ``secagg keys --decryptors M``
writes); a setup under any other key is refused, and there is no trust on first use: without a
pinned key the node answers every Paillier setup with an Abort that says what to configure.
Paillier uploads are signed, so the node needs its identity key and roster as in the active
model, and claims its roster client id the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import phe
from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from protocols.flower.keys import NodeIdentity, load_node_identity, load_paillier_public, sign_claim
from protocols.flower.records import (
    IDENTIFY_RECORD,
    SETUP_RECORD,
    STATE_RECORD,
    SUPPORT_RECORD,
    WIRE_RECORD,
    ArrayLayout,
    EncodingSettings,
    NodeClaim,
    SupportSettings,
    config_value,
    flower_session_id,
    read_wire,
    weight_of,
    wire_record,
    without_weight,
)
from protocols.graph import ThreatModel
from protocols.masking import ClientPhase, MaskingClient
from protocols.messages import (
    MAX_PARTY_ID,
    MAX_REASON_CHARS,
    SERVER_ID,
    Abort,
    PaillierSetup,
    RoundSetup,
)
from protocols.messages import Message as ProtocolMessage
from protocols.paillier import PaillierClient, PaillierPublic
from protocols.rounds import DEFAULT_CORRUPT_FRACTION, check_threat_model
from secagg.errors import LocalProtocolError, ParameterError, RemoteProtocolError, SecAggError
from secagg.hazmat.paillier import ThresholdPublicKey

__all__ = [
    "NODE_IDENTITY_KEY",
    "NODE_PAILLIER_KEY",
    "NODE_ROSTER",
    "NODE_THREAT_MODEL",
    "SecAggMod",
    "secagg_mod",
]

logger = logging.getLogger(__name__)

#: Node config key (``flower-supernode --node-config``) of the node's private identity key file.
NODE_IDENTITY_KEY: Final = "secagg-identity-key"
#: Node config key of the trusted roster file.
NODE_ROSTER: Final = "secagg-roster"
#: Node config key of the node's threat model, ``"active"`` (default) or ``"semi-honest"``.
NODE_THREAT_MODEL: Final = "secagg-threat-model"
#: Node config key of the pinned Paillier public key file (``paillier-public.key``).
NODE_PAILLIER_KEY: Final = "secagg-paillier-key"

CallNext = Callable[[Message, Context], Message]
#: A node's rows of a sparse round: the item-table rows its training will change (its items).
SupportFunction = Callable[[Context], npt.ArrayLike]
PathArg = str | Path
#: What a node may pin as the Paillier public key: the key itself, the path of its file, or
#: nothing (then the node config names the file).
_PINNABLE: Final = (phe.PaillierPublicKey, ThresholdPublicKey, str, Path, type(None))
FloatArray = npt.NDArray[np.float64]
RingArray = npt.NDArray[np.generic]


class _TrainFunctionError(LocalProtocolError):
    """No upload from this node this round: its own training failed, not the server's message.

    The user's train function (or a Mod after ours) raised a secagg error or returned an error
    reply, or its reply cannot be encoded (no weight, a weight out of bounds, other arrays).
    """


@dataclass
class _ClientMemory:
    """What a node keeps between messages of one run, in ``context.state[STATE_RECORD]``."""

    last_round: int = -1
    machine: bytes = b""
    settings: EncodingSettings | None = None
    support: SupportSettings | None = None

    @classmethod
    def load(cls, state: RecordDict) -> _ClientMemory:
        record = state.config_records.get(STATE_RECORD)
        if record is None:
            return cls()
        try:
            settings = None
            if record["has-encoding"]:
                settings = EncodingSettings.from_record(record)
            support = None
            if record.get("has-support", False):
                support = SupportSettings.from_record(
                    ConfigRecord(
                        {
                            k: record[f"support-{k}"]
                            for k in ("catalogue", "cohort", "lanes", "hashes")
                        }
                    )
                )
            return cls(
                last_round=int.from_bytes(config_value(record, "last-round", bytes), "big") - 1,
                machine=config_value(record, "machine", bytes),
                settings=settings,
                support=support,
            )
        except (KeyError, TypeError, RemoteProtocolError):
            raise LocalProtocolError("the saved secagg client state is malformed") from None

    def store(self, state: RecordDict) -> None:
        record = self.settings.to_record() if self.settings is not None else ConfigRecord()
        record["has-encoding"] = self.settings is not None
        record["has-support"] = self.support is not None
        if self.support is not None:
            for key, value in self.support.to_record().items():
                record[f"support-{key}"] = value
        # Round ids may exceed int64, the widest integer a ConfigRecord holds: store bytes.
        record["last-round"] = (self.last_round + 1).to_bytes(9, "big")
        record["machine"] = self.machine
        state[STATE_RECORD] = record


class SecAggMod:
    """Client side: a Flower Mod that answers secagg protocol messages with the client machines.

    Install it on the train function (``@app.train(mods=[secagg_mod])``) or on the whole
    ``ClientApp(mods=[secagg_mod])``; messages without a :data:`WIRE_RECORD` pass through. The
    user's train function is called once per round, with the upload message (without the secagg
    records); its reply must hold the broadcast arrays and the weight metric. Its arrays never
    leave the node: only the masked (or encrypted) vector and the other metrics do.

    Protocol failures (a malicious or confused server, a replay, a bad setup) poison the machine,
    are logged and answered with an :class:`~protocols.messages.Abort`; the poisoned state is kept
    in ``context.state`` so no later message of that round gets an answer. A train function
    that fails with a ``secagg.errors`` exception ends the round for this node the same way,
    logged and answered as "the train function failed: ..."; any other exception propagates to
    Flower, which sends it as the node's error reply.

    Args:
        min_threshold: the smallest Shamir threshold this node accepts from the server (in the
            active model the node's own, larger minimum applies as well).
        paillier_public_key: the decryptors' public key (a phe key or a committee's
            :class:`~secagg.hazmat.paillier.ThresholdPublicKey`), or the path of its file,
            obtained out of band; ``None`` reads the file named by the node config
            :data:`NODE_PAILLIER_KEY`. Without either, the node refuses every Paillier round.
        threat_model: ``"active"`` or ``"semi-honest"`` (masking); ``None`` reads the node
            config :data:`NODE_THREAT_MODEL`, and without it means ``"active"``.
        identity_key: the node's private identity key file (active model); ``None`` reads the
            node config :data:`NODE_IDENTITY_KEY`.
        roster: the trusted roster file (active model); ``None`` reads the node config
            :data:`NODE_ROSTER`.
        corrupt_fraction: the declared bound on nodes colluding with the server, as a fraction
            of the roster (active model; it sets the node's minimum threshold).
        support: sparse rounds (:class:`~protocols.flower.SecAggFedAvg` with ``sparse=``): the
            rows of the item tables this node's training will change, i.e. its own items
            (called with the node's context; uploaded only as a support sketch inside a
            secure sum). A node without it leaves every support round.

    Raises:
        ParameterError: ``min_threshold`` below 2, an unknown ``threat_model``, or a
            ``paillier_public_key`` that is neither a key nor a path.
    """

    def __init__(
        self,
        *,
        min_threshold: int = 2,
        paillier_public_key: PaillierPublic | PathArg | None = None,
        threat_model: ThreatModel | None = None,
        identity_key: PathArg | None = None,
        roster: PathArg | None = None,
        corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
        support: SupportFunction | None = None,
    ) -> None:
        if min_threshold < 2:
            raise ParameterError("min_threshold must be >= 2: one share must never reveal a key")
        if threat_model is not None:
            check_threat_model(threat_model)
        if not isinstance(paillier_public_key, _PINNABLE):
            raise ParameterError(
                "paillier_public_key must be a phe key, a ThresholdPublicKey or a key file path, "
                f"not {type(paillier_public_key).__name__}"
            )
        self.min_threshold = min_threshold
        self.paillier_public_key = paillier_public_key
        self.threat_model = threat_model
        self.identity_key = identity_key
        self.roster = roster
        self.corrupt_fraction = corrupt_fraction
        self.support = support

    def __call__(self, message: Message, context: Context, call_next: CallNext) -> Message:
        """Handle one message (see the class docstring).

        Args:
            message: the message from the server.
            context: the node's context; its ``state`` holds the Mod's memory.
            call_next: the next Mod or the train function.

        Returns:
            The reply: the protocol answers (or an Abort) and the train metrics without the
            weight, the node's identity claim, or whatever ``call_next`` returns for a message
            that is not secagg's.
        """
        content = message.content
        if message.metadata.message_type != MessageType.TRAIN:
            return call_next(message, context)
        if IDENTIFY_RECORD in content and WIRE_RECORD not in content:
            return self._identify(message, context)
        if WIRE_RECORD not in content:
            return call_next(message, context)
        wire_content = RecordDict({WIRE_RECORD: content[WIRE_RECORD]})
        setup = content.get(SETUP_RECORD)
        support = content.get(SUPPORT_RECORD)
        for key in (WIRE_RECORD, SETUP_RECORD, SUPPORT_RECORD):
            if key in content:
                del content[key]
        memory = _ClientMemory.load(context.state)
        incoming: ProtocolMessage | None = None
        outgoing: list[ProtocolMessage] = []
        metrics: list[tuple[str, MetricRecord]] = []
        try:
            messages = read_wire(wire_content)
            if len(messages) != 1:
                raise RemoteProtocolError(f"expected one protocol message, got {len(messages)}")
            incoming = messages[0]
            if setup is not None and not isinstance(setup, ConfigRecord):
                raise RemoteProtocolError(f"{SETUP_RECORD!r} must be a ConfigRecord")
            if isinstance(incoming, RoundSetup | PaillierSetup):
                _begin_round(incoming, setup, support, memory, context.run_id)
            outgoing, metrics = self._step(incoming, memory, message, context, call_next)
        except _TrainFunctionError as error:
            logger.warning("secagg: no upload from this node: %s", error)
            outgoing = _abort_reply(incoming, str(error))
        except SecAggError as error:
            logger.warning("secagg: refused %s: %s", type(incoming).__name__, error)
            outgoing = _abort_reply(incoming, str(error))
        finally:
            memory.store(context.state)
        reply = RecordDict({WIRE_RECORD: wire_record(outgoing)})
        for key, record in metrics:
            reply[key] = record
        return Message(reply, reply_to=message)

    def node_identity(self, context: Context) -> NodeIdentity | None:
        """This node's identity key and roster, read from its files; ``None`` if semi-honest.

        Raises:
            LocalProtocolError: the active model without both files configured, or an unusable
                file (its path and what is wrong are named).
        """
        config = context.node_config
        threat_model = self.threat_model or config.get(NODE_THREAT_MODEL, "active")
        if threat_model == "semi-honest":
            return None
        if threat_model != "active":
            raise LocalProtocolError(
                f"node config {NODE_THREAT_MODEL} must be 'active' or 'semi-honest', "
                f"not {threat_model!r}"
            )
        key_path = self.identity_key or config.get(NODE_IDENTITY_KEY)
        roster_path = self.roster or config.get(NODE_ROSTER)
        if not key_path or not roster_path:
            raise LocalProtocolError(
                "the active threat model needs this node's identity key and the trusted roster: "
                f"set node config {NODE_IDENTITY_KEY}='...' and {NODE_ROSTER}='...' (or pass "
                f"SecAggMod(identity_key=, roster=)); {NODE_THREAT_MODEL}='semi-honest' trusts "
                "the server instead"
            )
        try:
            return load_node_identity(str(key_path), str(roster_path))
        except ParameterError as error:
            raise LocalProtocolError(str(error)) from None

    def _identify(self, message: Message, context: Context) -> Message:
        """Answer the server's identification request with this node's signed client id."""
        try:
            node = self.node_identity(context)
            if node is None:
                raise LocalProtocolError(
                    "the server asks for an identity claim, but this node runs semi-honest"
                )
            session_id = flower_session_id(context.run_id)
            claim = NodeClaim(node.client_id, sign_claim(node, session_id, context.node_id))
        except SecAggError as error:
            logger.warning("secagg: no identity claim: %s", error)
            return Message(RecordDict(), reply_to=message)
        return Message(RecordDict({IDENTIFY_RECORD: claim.to_record()}), reply_to=message)

    def _step(
        self,
        incoming: ProtocolMessage,
        memory: _ClientMemory,
        message: Message,
        context: Context,
        call_next: CallNext,
    ) -> tuple[list[ProtocolMessage], list[tuple[str, MetricRecord]]]:
        if isinstance(incoming, PaillierSetup):
            if memory.support is not None:
                raise RemoteProtocolError("a support round runs over masking, not Paillier")
            client = self._paillier_client(incoming, context)
            client.receive(incoming)
            vector, metrics = _train_and_encode(memory, message, context, call_next)
            return client.submit_input(vector), metrics
        machine = self._machine(incoming, memory, context)
        try:
            outgoing = machine.receive(incoming)
            if machine.phase is not ClientPhase.AWAIT_INPUT:
                return outgoing, []
            try:
                if memory.support is None:
                    vector, metrics = _train_and_encode(memory, message, context, call_next)
                else:
                    vector, metrics = self._support_sketch(memory.support, memory, context), []
            except BaseException:
                # No upload this round: the keys and shares must not outlive it in the state.
                machine.poison(None)
                raise
            return outgoing + machine.submit_input(vector), metrics
        finally:
            # Saved even when something failed: a poisoned machine stays poisoned, and a round
            # whose training failed is never trained (hence uploaded) a second time.
            memory.machine = machine.export_state()

    def _support_sketch(
        self, settings: SupportSettings, memory: _ClientMemory, context: Context
    ) -> RingArray:
        """This node's support sketch for the round (its rows from :attr:`support`)."""
        if self.support is None:
            raise _TrainFunctionError(
                "the server runs sparse rounds, but this node's SecAggMod has no support "
                "function (SecAggMod(support=...)): it leaves the round"
            )
        sketch = settings.sketch(flower_session_id(context.run_id), memory.last_round)
        try:
            return sketch.encode(np.asarray(self.support(context)))
        except ParameterError as error:
            raise _TrainFunctionError(
                f"the support function's rows are unusable: {error}"
            ) from None

    def _machine(
        self, incoming: ProtocolMessage, memory: _ClientMemory, context: Context
    ) -> MaskingClient:
        """A fresh client machine for a setup, else the saved one (with the node's trust)."""
        if not isinstance(incoming, RoundSetup) and not memory.machine:
            raise RemoteProtocolError(f"{type(incoming).__name__} arrived outside any round")
        node = self.node_identity(context)
        identity = None if node is None else node.identity
        roster = None if node is None else node.roster
        if not isinstance(incoming, RoundSetup):
            return MaskingClient.from_state(memory.machine, identity=identity, roster=roster)
        if node is not None:
            _check_recipient(incoming, node)
        return MaskingClient(
            incoming.recipient,
            session_id=incoming.session_id,
            round_id=incoming.round_id,
            min_threshold=self.min_threshold,
            threat_model="semi-honest" if node is None else "active",
            identity=identity,
            roster=roster,
            corrupt_fraction=self.corrupt_fraction,
        )

    def paillier_key(self, context: Context) -> PaillierPublic:
        """The Paillier public key this node pinned: the Mod's argument, or its node config file.

        Raises:
            LocalProtocolError: no key is configured, or its file is unusable (named).
        """
        pinned = self.paillier_public_key
        if pinned is None and context.node_config.get(NODE_PAILLIER_KEY):
            pinned = str(context.node_config[NODE_PAILLIER_KEY])
        if pinned is None:
            raise LocalProtocolError(
                "no pinned Paillier public key: set node config "
                f"{NODE_PAILLIER_KEY}='.../paillier-public.key' (written by secagg keys "
                "--decryptors M) or pass SecAggMod(paillier_public_key=...)"
            )
        if not isinstance(pinned, str | Path):
            return pinned
        try:
            return load_paillier_public(pinned)
        except ParameterError as error:
            raise LocalProtocolError(str(error)) from None

    def _paillier_client(self, setup: PaillierSetup, context: Context) -> PaillierClient:
        """A Paillier client under the pinned key, signing with this node's identity key."""
        public_key = self.paillier_key(context)
        node = self.node_identity(context)
        if node is None:
            raise LocalProtocolError(
                "Paillier uploads are signed: this node needs its identity key and roster "
                f"(node config {NODE_IDENTITY_KEY} and {NODE_ROSTER}), not the semi-honest model"
            )
        _check_recipient(setup, node)
        return PaillierClient(
            setup.recipient,
            session_id=setup.session_id,
            round_id=setup.round_id,
            public_key=public_key,
            identity=node.identity,
        )


def _check_recipient(setup: RoundSetup | PaillierSetup, node: NodeIdentity) -> None:
    """A setup must address the roster client whose identity key this node holds."""
    if setup.recipient != node.client_id:
        raise RemoteProtocolError(
            f"the setup addresses client {setup.recipient}, but this node's identity key "
            f"is client {node.client_id}'s"
        )


def _begin_round(
    setup: RoundSetup | PaillierSetup,
    record: ConfigRecord | None,
    support: object,
    memory: _ClientMemory,
    run_id: int,
) -> None:
    """Accept a new round only for this run's session and a round id never seen before."""
    if setup.session_id != flower_session_id(run_id):
        raise RemoteProtocolError("the setup belongs to another Flower run: replay rejected")
    if setup.round_id <= memory.last_round:
        raise RemoteProtocolError(
            f"round {setup.round_id} is not newer than round {memory.last_round}: replay rejected"
        )
    # The round is consumed before anything else can fail: it can never be started twice.
    memory.last_round = setup.round_id
    memory.machine = b""
    memory.settings = None
    memory.support = None
    memory.settings = EncodingSettings.from_record(record)
    memory.support = None if support is None else SupportSettings.from_record(support)


def _train_and_encode(
    memory: _ClientMemory, message: Message, context: Context, call_next: CallNext
) -> tuple[RingArray, list[tuple[str, MetricRecord]]]:
    """Call the user's train function and turn its reply into the ring vector to protect."""
    settings = memory.settings
    if settings is None:
        raise LocalProtocolError("no quantization settings were received for this round")
    layout = ArrayLayout.of(message.content)
    try:
        reply = call_next(message, context)
    except SecAggError as error:
        # The user's own training raised one of our errors (e.g. a model setting it refused):
        # a failure of this node, not a refusal of the server's message, and it says so.
        raise _TrainFunctionError(f"the train function failed: {error}") from error
    if reply.has_error():
        raise _TrainFunctionError(f"the train function failed: {reply.error.reason}")
    try:
        weight = weight_of(reply.content, settings.weight_key)
        vector = _encode_update(settings, layout.flatten(reply.content), weight)
    except LocalProtocolError as error:
        raise _TrainFunctionError(str(error)) from error
    return vector, without_weight(reply.content, settings.weight_key)


def _encode_update(settings: EncodingSettings, values: FloatArray, weight: float) -> RingArray:
    """Clip, weight and quantize the node's update by the shared rule; log what was clipped.

    Raises:
        LocalProtocolError: the weight lies outside (0, max_weight].
    """
    bounds = (
        f"the train reply's weight {settings.weight_key}={weight} must lie in "
        f"(0, {settings.max_weight:g}]"
    )
    # The shared rule accepts a weight of 0; a node refuses it, because a node that trained on
    # no examples has no update for FedAvg to average.
    if not weight > 0:
        raise LocalProtocolError(bounds)
    try:
        encoded = settings.update_encoding().encode(values, weight)
    except ParameterError as error:
        raise LocalProtocolError(f"{bounds}; raise max_weight on the server ({error})") from None
    if encoded.clipped:
        logger.warning(
            "%d of %d values exceed clip=%g and are clipped",
            encoded.clipped,
            values.size,
            settings.clip,
        )
    return encoded.vector


def _abort_reply(incoming: ProtocolMessage | None, reason: str) -> list[ProtocolMessage]:
    """An Abort for the server, when we know whom the refused message was for."""
    if incoming is None or incoming.sender != SERVER_ID or incoming.recipient > MAX_PARTY_ID:
        return []
    return [
        Abort(
            session_id=incoming.session_id,
            round_id=incoming.round_id,
            sender=incoming.recipient,
            recipient=SERVER_ID,
            reason=reason[:MAX_REASON_CHARS],
        )
    ]


#: The client Mod with default settings: the threat model and key files from the node config
#: (active unless it says ``secagg-threat-model="semi-honest"``), threshold >= 2, and the
#: Paillier key pinned from the file the node config names (:data:`NODE_PAILLIER_KEY`).
secagg_mod: Final = SecAggMod()
