"""The record codec of the Flower integration: what travels in Flower records, and how.

Why this module exists: the server workflow and the client Mod must agree byte for byte on how
protocol messages, the quantization settings and the model's array layout sit in Flower's
``RecordDict``. Keeping that agreement in one module means neither side carries its own copy of
a key name or a field, and each side's checks (the server's fault or the node's) stay precise.

The rules:

* A protocol message travels as its :mod:`protocols.wire` bytes in one uint8 ``Array`` of the
  ``ArrayRecord`` :data:`WIRE_RECORD` (keys ``"0"``, ``"1"``, ...). Flower chunks large arrays;
  nothing is pickled.
* The setup message also carries the ``ConfigRecord`` :data:`SETUP_RECORD`: the
  :class:`EncodingSettings` (clip, value bits, number of clients, max weight, weight key) from
  which the node builds the shared :class:`~secagg.encoding.UpdateEncoding`.
* The arrays a round averages are flattened in the order of :class:`ArrayLayout`; the node's
  reply must return the broadcast names and shapes.
* The session id is derived from Flower's run id (:func:`flower_session_id`), so both sides
  know it without a message.
* In the active threat model the server first asks each new node which roster client it is: a
  train message with the empty ``ConfigRecord`` :data:`IDENTIFY_RECORD`, answered with a
  :class:`NodeClaim` under the same key (see :mod:`protocols.flower.keys`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from protocols import wire
from protocols.messages import Message as ProtocolMessage
from secagg.encoding import QuantizationScheme, UpdateEncoding
from secagg.errors import LocalProtocolError, ParameterError, RemoteProtocolError
from secagg.support import SupportSketch

__all__ = [
    "IDENTIFY_RECORD",
    "ROWS_RECORD",
    "SETUP_RECORD",
    "STATE_RECORD",
    "SUPPORT_RECORD",
    "WIRE_RECORD",
    "ArrayLayout",
    "EncodingSettings",
    "NodeClaim",
    "RowSelection",
    "SupportSettings",
    "config_value",
    "flower_session_id",
    "read_wire",
    "weight_of",
    "wire_record",
    "without_weight",
]

#: ArrayRecord key of the wire-encoded protocol messages in a Flower message (both directions).
WIRE_RECORD: Final = "secagg-wire"
#: ConfigRecord key of the quantization settings sent with each setup message.
SETUP_RECORD: Final = "secagg-setup"
#: ConfigRecord key of the server's identification request and of the node's :class:`NodeClaim`.
IDENTIFY_RECORD: Final = "secagg-identify"
#: ConfigRecord key under which :class:`~protocols.flower.SecAggMod` keeps its memory in
#: ``context.state``.
STATE_RECORD: Final = "secagg-client"
#: ConfigRecord key of a sparse round's announced rows, in the train content (the train function
#: may read it: its negatives should come from these rows).
ROWS_RECORD: Final = "secagg-rows"
#: ConfigRecord key of a support round's sketch settings, sent with its setup messages.
SUPPORT_RECORD: Final = "secagg-support"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_V = TypeVar("_V")


def flower_session_id(run_id: int) -> bytes:
    """The 16-byte protocol session id of a Flower run: SHA-256 of a label and the run id.

    Server and nodes both derive it, so a node can refuse setups that belong to another run.

    Args:
        run_id: Flower's run id (``context.run_id`` / ``grid.run.run_id``).

    Returns:
        16 bytes.

    Raises:
        ParameterError: ``run_id`` is not an int in [0, 2^64).
    """
    if not isinstance(run_id, int) or not 0 <= run_id < 2**64:
        raise ParameterError(f"run_id must be an int in [0, 2^64), got {run_id!r}")
    digest = hashlib.sha256(b"secagg/flower/session/v1" + run_id.to_bytes(8, "big")).digest()
    return digest[:16]


def config_value(record: ConfigRecord, key: str, expected: type[_V]) -> _V:
    """The value of ``key`` in ``record``, which must be exactly of type ``expected``.

    Raises:
        KeyError: ``key`` is missing.
        TypeError: the value has another type (``bool`` is not accepted as ``int``).
    """
    value: object = record[key]
    if type(value) is not expected:
        raise TypeError(f"{key}: expected {expected.__name__}, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class EncodingSettings:
    """What a node needs to turn its float model and weight into ring values.

    The server sends these with each setup message (:data:`SETUP_RECORD`); both sides build the
    same :class:`~secagg.encoding.UpdateEncoding` from them.

    Attributes:
        clip: each value of the update is clipped to ``[-clip, clip]``.
        value_bits: quantization bits of one value.
        num_clients: the most uploads one sum holds (sets the ring's headroom).
        max_weight: the largest FedAvg weight a node may report.
        weight_key: the train metric that holds the node's weight.
    """

    clip: float
    value_bits: int
    num_clients: int
    max_weight: float
    weight_key: str

    def update_encoding(self) -> UpdateEncoding:
        """The shared rule for (weighted) updates under these settings.

        Raises:
            ParameterError: the settings describe no valid quantization or weight bound.
        """
        scheme = QuantizationScheme(
            clip=self.clip, value_bits=self.value_bits, num_clients=self.num_clients
        )
        return UpdateEncoding(scheme, self.max_weight)

    def to_record(self) -> ConfigRecord:
        """The settings as the ConfigRecord sent with the setup (and kept by the node)."""
        return ConfigRecord(
            {
                "clip": float(self.clip),
                "value-bits": self.value_bits,
                "num-clients": self.num_clients,
                "max-weight": float(self.max_weight),
                "weight-key": self.weight_key,
            }
        )

    @classmethod
    def from_record(cls, record: ConfigRecord | None) -> EncodingSettings:
        """Parse the server's settings; anything malformed is the server's fault.

        Raises:
            RemoteProtocolError: the record is missing, malformed or describes no valid encoding.
        """
        try:
            if record is None:
                raise TypeError("missing")
            settings = cls(
                clip=config_value(record, "clip", float),
                value_bits=config_value(record, "value-bits", int),
                num_clients=config_value(record, "num-clients", int),
                max_weight=config_value(record, "max-weight", float),
                weight_key=config_value(record, "weight-key", str),
            )
            settings.update_encoding()
        except (KeyError, TypeError, ParameterError) as error:
            raise RemoteProtocolError(
                f"the setup's quantization settings are unusable: {error}"
            ) from None
        return settings


@dataclass(frozen=True, slots=True)
class NodeClaim:
    """A node's answer to the identification request: its roster client id, signed.

    Attributes:
        client_id: the roster client the node speaks for.
        signature: its identity signature over the claim (:func:`protocols.flower.keys.sign_claim`).
    """

    client_id: int
    signature: bytes

    def to_record(self) -> ConfigRecord:
        """The claim as the :data:`IDENTIFY_RECORD` ConfigRecord of the node's reply."""
        return ConfigRecord({"client-id": self.client_id, "signature": self.signature})

    @classmethod
    def from_content(cls, content: RecordDict) -> NodeClaim:
        """Parse a node's claim; anything missing or malformed is the node's fault.

        Raises:
            RemoteProtocolError: no claim, or a malformed one.
        """
        record = content.config_records.get(IDENTIFY_RECORD)
        try:
            if record is None:
                raise KeyError("no claim")
            client_id = config_value(record, "client-id", int)
            signature = config_value(record, "signature", bytes)
        except (KeyError, TypeError) as error:
            raise RemoteProtocolError(
                f"the node's identity claim is unusable ({error}); does its secagg_mod hold an "
                "identity key (node config secagg-identity-key)?"
            ) from None
        return cls(client_id, signature)


@dataclass(frozen=True, slots=True)
class SupportSettings:
    """A support round's sketch, as the server announces it with the setup.

    The sketch's hash key is not sent: each node derives it from the run's session, the round id
    of its own setup and ``catalogue`` (:meth:`~secagg.support.SupportSketch.for_round`), so a
    server cannot make one node hash differently from the others.

    Attributes:
        catalogue: rows of the tables.
        cohort: the most nodes in the sum (sets the lanes' width).
        lanes: sketch lanes.
        hashes: lanes per row.
    """

    catalogue: int
    cohort: int
    lanes: int
    hashes: int

    def sketch(self, session_id: bytes, round_id: int) -> SupportSketch:
        """The round's sketch.

        Raises:
            ParameterError: settings no sketch has.
        """
        return SupportSketch.for_round(
            session_id,
            round_id,
            catalogue=self.catalogue,
            cohort=self.cohort,
            lanes=self.lanes,
            hashes=self.hashes,
        )

    def to_record(self) -> ConfigRecord:
        """The settings as the :data:`SUPPORT_RECORD` ConfigRecord."""
        return ConfigRecord(
            {
                "catalogue": self.catalogue,
                "cohort": self.cohort,
                "lanes": self.lanes,
                "hashes": self.hashes,
            }
        )

    @classmethod
    def from_record(cls, record: object) -> SupportSettings:
        """Parse the server's settings; anything malformed is the server's fault.

        Raises:
            RemoteProtocolError: the record is malformed or describes no sketch.
        """
        try:
            if not isinstance(record, ConfigRecord):
                raise TypeError("not a ConfigRecord")
            settings = cls(
                *(config_value(record, k, int) for k in ("catalogue", "cohort", "lanes", "hashes"))
            )
            settings.sketch(bytes(16), 0)
        except (KeyError, TypeError, ParameterError) as error:
            raise RemoteProtocolError(
                f"the support round's settings are unusable: {error}"
            ) from None
        return settings


@dataclass(frozen=True, slots=True)
class RowSelection:
    """The rows of some arrays that a sparse round averages: the announced rows.

    Attributes:
        tables: names of the arrays whose first axis is the catalogue (item tables).
        rows: the announced rows, sorted and distinct.
    """

    tables: tuple[str, ...]
    rows: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.tables or len(set(self.tables)) != len(self.tables):
            raise ParameterError("a row selection names one or more distinct tables")
        rows = np.asarray(self.rows, dtype=np.int64)
        if np.any(np.diff(rows) <= 0) or (rows.size and rows[0] < 0):
            raise ParameterError("announced rows must be sorted, distinct and non-negative")

    @property
    def indices(self) -> IntArray:
        """The rows as an index array."""
        return np.asarray(self.rows, dtype=np.int64)

    def to_record(self) -> ConfigRecord:
        """The selection as the :data:`ROWS_RECORD` ConfigRecord."""
        return ConfigRecord({"tables": list(self.tables), "rows": list(self.rows)})

    @classmethod
    def from_content(cls, content: RecordDict) -> RowSelection | None:
        """The selection a message carries (``None`` without one); malformed is the server's.

        Raises:
            RemoteProtocolError: a malformed selection.
        """
        record = content.config_records.get(ROWS_RECORD)
        if record is None:
            return None
        try:
            tables, rows = record["tables"], record["rows"]
            if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
                raise TypeError("tables must be a list of names")
            if not isinstance(rows, list) or not all(type(r) is int for r in rows):
                raise TypeError("rows must be a list of ints")
            return cls(tuple(str(t) for t in tables), tuple(int(r) for r in rows))
        except (KeyError, TypeError, ParameterError) as error:
            raise RemoteProtocolError(f"the announced rows are unusable: {error}") from None


@dataclass(frozen=True, slots=True)
class ArrayLayout:
    """Names, shapes and dtypes of the arrays a round averages, in the order they are flattened.

    In a sparse round (:data:`ROWS_RECORD` in the content) the arrays named in the selection
    travel as their announced rows only; the other arrays travel whole.

    Attributes:
        entries: ``(name, shape, dtype)`` of each array.
        selection: the announced rows of a sparse round (``None``: every array whole).
    """

    entries: tuple[tuple[str, tuple[int, ...], str], ...]
    selection: RowSelection | None = None

    @classmethod
    def of(cls, content: RecordDict) -> ArrayLayout:
        """The layout of every array in the ArrayRecords of ``content``.

        Raises:
            ParameterError: no array, or two arrays with one name.
        """
        entries = [
            (key, tuple(array.shape), array.dtype)
            for record in content.array_records.values()
            for key, array in record.items()
        ]
        if not entries:
            raise ParameterError("the train content carries no ArrayRecord to aggregate")
        if len({key for key, _, _ in entries}) != len(entries):
            raise ParameterError("two ArrayRecords of the train content share an array name")
        selection = RowSelection.from_content(content)
        if selection is not None:
            shapes = {key: shape for key, shape, _ in entries}
            for table in selection.tables:
                shape = shapes.get(table)
                if (
                    shape is None
                    or not shape
                    or (selection.rows and selection.rows[-1] >= shape[0])
                ):
                    raise ParameterError(
                        f"the announced rows do not fit array {table!r} of the train content"
                    )
        return cls(tuple(entries), selection)

    def _travels(self, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of what travels of array ``key``: its announced rows, or all of it."""
        if self.selection is None or key not in self.selection.tables:
            return shape
        return (len(self.selection.rows), *shape[1:])

    @property
    def size(self) -> int:
        """The number of values over all arrays (the announced rows of the tables)."""
        return sum(
            int(np.prod(self._travels(key, shape), dtype=np.int64))
            for key, shape, _ in self.entries
        )

    def flatten(self, content: RecordDict) -> FloatArray:
        """The reply's arrays as one float64 vector; they must match the broadcast arrays.

        Raises:
            LocalProtocolError: the names or shapes differ from the layout's.
        """
        arrays = {
            key: array for record in content.array_records.values() for key, array in record.items()
        }
        expected = {key: shape for key, shape, _ in self.entries}
        if {key: tuple(array.shape) for key, array in arrays.items()} != expected:
            raise LocalProtocolError(
                "the train function must return the broadcast arrays (same names and shapes); "
                f"expected {expected}"
            )
        parts = []
        for key in expected:
            values = np.asarray(arrays[key].numpy(), dtype=np.float64)
            if self._travels(key, expected[key]) != expected[key]:
                assert self.selection is not None  # a table's shape changes only when selected
                values = values[self.selection.indices]
            parts.append(values.reshape(-1))
        return np.concatenate(parts)

    def unflatten(self, vector: FloatArray, base: RecordDict | None = None) -> ArrayRecord:
        """``vector`` cut back into the layout's arrays, in their names, shapes and dtypes.

        In a sparse round the tables' rows outside the selection are ``base``'s (the broadcast
        arrays: no node uploaded them).

        Raises:
            ParameterError: a sparse layout without ``base``.
        """
        if self.selection is not None and base is None:
            raise ParameterError("a sparse round's arrays are rebuilt over the broadcast arrays")
        broadcast = (
            {}
            if base is None
            else {
                key: array
                for record in base.array_records.values()
                for key, array in record.items()
            }
        )
        record = ArrayRecord()
        offset = 0
        for key, shape, dtype in self.entries:
            travels = self._travels(key, shape)
            size = int(np.prod(travels, dtype=np.int64))
            part = vector[offset : offset + size].reshape(travels)
            if travels != shape:
                assert self.selection is not None
                full = np.array(broadcast[key].numpy(), dtype=np.float64)
                full[self.selection.indices] = part
                part = full
            record[key] = Array(part.astype(np.dtype(dtype)))
            offset += size
        return record


def wire_record(messages: Iterable[ProtocolMessage]) -> ArrayRecord:
    """The protocol messages as the :data:`WIRE_RECORD` ArrayRecord, one uint8 array each."""
    return ArrayRecord(
        {
            str(index): Array(np.frombuffer(wire.encode(message), dtype=np.uint8))
            for index, message in enumerate(messages)
        }
    )


def read_wire(content: RecordDict) -> list[ProtocolMessage]:
    """Decode the protocol messages of a Flower message.

    Raises:
        RemoteProtocolError: no :data:`WIRE_RECORD`, or an entry that is not a uint8 vector.
        SecAggError: an entry is not a valid wire encoding (from :func:`protocols.wire.decode`).
    """
    record = content.get(WIRE_RECORD)
    if not isinstance(record, ArrayRecord):
        raise RemoteProtocolError(
            f"the message has no {WIRE_RECORD!r} ArrayRecord; is secagg_mod installed on the "
            "ClientApp?"
        )
    decoded = []
    for index in range(len(record)):
        array = record.get(str(index))
        if array is None or array.dtype != "uint8" or len(array.shape) != 1:
            raise RemoteProtocolError(f"protocol message {index} is not a uint8 vector")
        try:
            data = array.numpy().tobytes()
        except (TypeError, ValueError, OSError, EOFError):
            raise RemoteProtocolError(f"protocol message {index} is not a numpy array") from None
        decoded.append(wire.decode(data))
    return decoded


def without_weight(content: RecordDict, weight_key: str) -> list[tuple[str, MetricRecord]]:
    """The reply's metric records minus the weight, which the protocol sums securely."""
    kept = []
    for key, record in content.metric_records.items():
        stripped = MetricRecord({k: v for k, v in record.items() if k != weight_key})
        kept.append((key, stripped))
    return kept


def weight_of(content: RecordDict, weight_key: str) -> float:
    """The node's FedAvg weight: the numeric metric ``weight_key`` of its train reply.

    Raises:
        LocalProtocolError: no MetricRecord holds a numeric ``weight_key``.
    """
    for record in content.metric_records.values():
        if weight_key in record:
            value = record[weight_key]
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    raise LocalProtocolError(
        f"the train reply needs a numeric metric {weight_key!r} (the FedAvg weight) in a "
        "MetricRecord"
    )
