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

Paillier: a node pins the public key given to :class:`SecAggMod`, or else the first key it sees
in the run (trust on first use), and refuses any other key afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import phe
from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from protocols.flower.records import (
    SETUP_RECORD,
    STATE_RECORD,
    WIRE_RECORD,
    ArrayLayout,
    EncodingSettings,
    config_value,
    flower_session_id,
    read_wire,
    weight_of,
    wire_record,
    without_weight,
)
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
from protocols.paillier import PaillierClient
from secagg.errors import LocalProtocolError, ParameterError, RemoteProtocolError, SecAggError

__all__ = ["SecAggMod", "secagg_mod"]

logger = logging.getLogger(__name__)

CallNext = Callable[[Message, Context], Message]
FloatArray = npt.NDArray[np.float64]
RingArray = npt.NDArray[np.generic]


@dataclass
class _ClientMemory:
    """What a node keeps between messages of one run, in ``context.state[STATE_RECORD]``."""

    last_round: int = -1
    machine: bytes = b""
    settings: EncodingSettings | None = None
    paillier_n: int | None = None

    @classmethod
    def load(cls, state: RecordDict) -> _ClientMemory:
        record = state.config_records.get(STATE_RECORD)
        if record is None:
            return cls()
        try:
            settings = None
            if record["has-encoding"]:
                settings = EncodingSettings.from_record(record)
            paillier = config_value(record, "paillier-n", bytes)
            return cls(
                last_round=int.from_bytes(config_value(record, "last-round", bytes), "big") - 1,
                machine=config_value(record, "machine", bytes),
                settings=settings,
                paillier_n=int.from_bytes(paillier, "big") if paillier else None,
            )
        except (KeyError, TypeError, RemoteProtocolError):
            raise LocalProtocolError("the saved secagg client state is malformed") from None

    def store(self, state: RecordDict) -> None:
        record = self.settings.to_record() if self.settings is not None else ConfigRecord()
        record["has-encoding"] = self.settings is not None
        # Round ids may exceed int64, the widest integer a ConfigRecord holds: store bytes.
        record["last-round"] = (self.last_round + 1).to_bytes(9, "big")
        record["machine"] = self.machine
        n = self.paillier_n
        record["paillier-n"] = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
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
    in ``context.state`` so no later message of that round gets an answer.

    Args:
        min_threshold: the smallest Shamir threshold this node accepts from the server.
        paillier_public_key: the key holder's public key, obtained out of band; when ``None``
            the node pins the first key it is sent in the run (trust on first use).

    Raises:
        ParameterError: ``min_threshold`` below 2.
    """

    def __init__(
        self, *, min_threshold: int = 2, paillier_public_key: phe.PaillierPublicKey | None = None
    ) -> None:
        if min_threshold < 2:
            raise ParameterError("min_threshold must be >= 2: one share must never reveal a key")
        self.min_threshold = min_threshold
        self.paillier_public_key = paillier_public_key

    def __call__(self, message: Message, context: Context, call_next: CallNext) -> Message:
        """Handle one message (see the class docstring).

        Args:
            message: the message from the server.
            context: the node's context; its ``state`` holds the Mod's memory.
            call_next: the next Mod or the train function.

        Returns:
            The reply: the protocol answers (or an Abort) and the train metrics without the
            weight, or whatever ``call_next`` returns for a message that is not secagg's.
        """
        content = message.content
        if message.metadata.message_type != MessageType.TRAIN or WIRE_RECORD not in content:
            return call_next(message, context)
        wire_content = RecordDict({WIRE_RECORD: content[WIRE_RECORD]})
        setup = content.get(SETUP_RECORD)
        for key in (WIRE_RECORD, SETUP_RECORD):
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
            outgoing, metrics = self._step(incoming, setup, memory, message, context, call_next)
        except SecAggError as error:
            logger.warning("secagg: refused %s: %s", type(incoming).__name__, error)
            outgoing = _abort_reply(incoming, str(error))
        finally:
            memory.store(context.state)
        reply = RecordDict({WIRE_RECORD: wire_record(outgoing)})
        for key, record in metrics:
            reply[key] = record
        return Message(reply, reply_to=message)

    def _step(
        self,
        incoming: ProtocolMessage,
        setup: ConfigRecord | None,
        memory: _ClientMemory,
        message: Message,
        context: Context,
        call_next: CallNext,
    ) -> tuple[list[ProtocolMessage], list[tuple[str, MetricRecord]]]:
        if isinstance(incoming, RoundSetup | PaillierSetup):
            _begin_round(incoming, setup, memory, context.run_id)
        if isinstance(incoming, PaillierSetup):
            client = PaillierClient(
                incoming.recipient,
                session_id=incoming.session_id,
                round_id=incoming.round_id,
                public_key=self._paillier_key(incoming, memory),
            )
            client.receive(incoming)
            vector, metrics = _train_and_encode(memory, message, context, call_next)
            return client.submit_input(vector), metrics
        if isinstance(incoming, RoundSetup):
            machine = MaskingClient(
                incoming.recipient,
                session_id=incoming.session_id,
                round_id=incoming.round_id,
                min_threshold=self.min_threshold,
            )
        elif memory.machine:
            machine = MaskingClient.from_state(memory.machine)
        else:
            raise RemoteProtocolError(f"{type(incoming).__name__} arrived outside any round")
        try:
            outgoing = machine.receive(incoming)
            if machine.phase is not ClientPhase.AWAIT_INPUT:
                return outgoing, []
            try:
                vector, metrics = _train_and_encode(memory, message, context, call_next)
            except BaseException:
                # No upload this round: the keys and shares must not outlive it in the state.
                machine.poison(None)
                raise
            return outgoing + machine.submit_input(vector), metrics
        finally:
            # Saved even when something failed: a poisoned machine stays poisoned, and a round
            # whose training failed is never trained (hence uploaded) a second time.
            memory.machine = machine.export_state()

    def _paillier_key(self, setup: PaillierSetup, memory: _ClientMemory) -> phe.PaillierPublicKey:
        if self.paillier_public_key is not None:
            return self.paillier_public_key
        if memory.paillier_n is None:
            logger.info("secagg: pinning the Paillier key of this run (trust on first use)")
            memory.paillier_n = setup.public_key_n
        return phe.PaillierPublicKey(memory.paillier_n)


def _begin_round(
    setup: RoundSetup | PaillierSetup,
    record: ConfigRecord | None,
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
    memory.settings = EncodingSettings.from_record(record)


def _train_and_encode(
    memory: _ClientMemory, message: Message, context: Context, call_next: CallNext
) -> tuple[RingArray, list[tuple[str, MetricRecord]]]:
    """Call the user's train function and turn its reply into the ring vector to protect."""
    settings = memory.settings
    if settings is None:
        raise LocalProtocolError("no quantization settings were received for this round")
    layout = ArrayLayout.of(message.content)
    reply = call_next(message, context)
    if reply.has_error():
        raise LocalProtocolError(f"the train function failed: {reply.error.reason}")
    weight = weight_of(reply.content, settings.weight_key)
    vector = _encode_update(settings, layout.flatten(reply.content), weight)
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


#: The client Mod with default settings (threshold >= 2, Paillier key pinned on first use).
secagg_mod: Final = SecAggMod()
