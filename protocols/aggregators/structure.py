"""Client updates in the form users hold them: a PyTorch ``state_dict`` or Flower's ``NDArrays``.

A PyTorch user holds a ``state_dict`` (parameter names -> tensors) and a Flower user a list of
numpy arrays, while every secure sum adds one flat vector per client. This module is the one
place that turns a round's structured updates into those vectors, checks that every client sent
the same structure, and puts the sum back into it; :meth:`Pipeline.aggregate
<protocols.aggregators.pipeline.Pipeline.aggregate>` calls :func:`flatten_updates` once per
round, before the checks of :mod:`protocols.aggregators.inputs`.

Rules:

- An update is *structured* when it is a mapping of names to arrays (a ``state_dict``), or a
  non-empty list or tuple whose every element is a numpy array or a tensor (``NDArrays``).
  Anything else is a plain 1-D update and passes through unchanged.
- The first client in ``updates`` fixes the round's structure. Every other client must send the
  same kind of update with the same names (a mapping) or the same number of arrays (a list),
  and the same shape per entry; otherwise :class:`StructureMismatchError` names the client, the
  entry and both shapes. Entry values must be finite real numbers, as 1-D updates must.
- Entries are flattened in the first client's order (a mapping's key order; a list's index
  order), each in C order, into one float64 vector.
- :meth:`UpdateStructure.unflatten` gives a sum back in the first client's form: a ``dict`` in
  its key order, or a ``list``; a tensor entry as a CPU tensor, a numpy entry as an array. An
  entry given as float32 comes back float32, every other dtype as float64.
- torch is never imported (``protocols`` does not depend on it): a tensor is recognised by the
  module of its type and handled through its own methods (``detach``, ``cpu``, ``numpy``,
  ``new_tensor``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeGuard, cast

import numpy as np
import numpy.typing as npt

from protocols.aggregators.inputs import real_values
from protocols.aggregators.result import FloatArray
from secagg.errors import ParameterError

__all__ = [
    "StructureEntry",
    "StructureMismatchError",
    "TensorLike",
    "UpdateStructure",
    "flatten_updates",
    "is_structured",
    "is_tensor",
]

Kind = Literal["mapping", "list"]
EntryKey = str | int

_KIND_WORDS: dict[Kind | None, str] = {
    "mapping": "a mapping of names to arrays (a state_dict)",
    "list": "a list of arrays (NDArrays)",
    None: "a plain 1-D update",
}


class TensorLike(Protocol):
    """The few methods of a PyTorch tensor this module uses (torch itself is never imported)."""

    @property
    def dtype(self) -> object:
        """The tensor's dtype, e.g. ``torch.float32``."""
        ...

    def detach(self) -> TensorLike:
        """The tensor, cut off from autograd."""
        ...

    def cpu(self) -> TensorLike:
        """The tensor in CPU memory."""
        ...

    def double(self) -> TensorLike:
        """The tensor as float64."""
        ...

    def float(self) -> TensorLike:
        """The tensor as float32."""
        ...

    def is_floating_point(self) -> bool:
        """Whether the dtype is a floating-point one."""
        ...

    def numpy(self) -> npt.NDArray[np.generic]:
        """The CPU tensor's values as a numpy array."""
        ...

    def new_empty(self, size: tuple[int, ...]) -> TensorLike:
        """An uninitialised tensor of this dtype and device."""
        ...

    def new_tensor(self, data: npt.NDArray[np.float64]) -> TensorLike:
        """A copy of ``data`` as a tensor of this dtype and device."""
        ...


class StructureMismatchError(ParameterError):
    """Two clients of one round sent updates of different structure.

    Attributes:
        client: the client whose update does not match.
        reference_client: the first client of the round, whose update fixes the structure.
        entry: the name (``state_dict``) or index (``NDArrays``) that differs; ``None`` when
            the kinds of update differ.
        shape: the entry's shape in ``client``'s update (``None``: it has no such entry).
        expected_shape: its shape in ``reference_client``'s update (``None``: none there).
    """

    def __init__(
        self,
        message: str,
        *,
        client: int,
        reference_client: int,
        entry: EntryKey | None = None,
        shape: tuple[int, ...] | None = None,
        expected_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(message)
        self.client = client
        self.reference_client = reference_client
        self.entry = entry
        self.shape = shape
        self.expected_shape = expected_shape


def is_tensor(value: object) -> TypeGuard[TensorLike]:
    """Whether ``value`` is a PyTorch tensor (a ``nn.Parameter`` included), without torch."""
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def is_structured(update: object) -> bool:
    """Whether ``update`` is a ``state_dict``-like mapping or an ``NDArrays``-like list."""
    return _kind(update) is not None


def _kind(update: object) -> Kind | None:
    if isinstance(update, Mapping):
        return "mapping"
    if (
        isinstance(update, list | tuple)
        and update
        and all(isinstance(e, np.ndarray) or is_tensor(e) for e in update)
    ):
        return "list"
    return None


@dataclass(frozen=True, slots=True)
class StructureEntry:
    """One array of a round's structure: its name or index, its shape, and its sum's form.

    Attributes:
        key: the ``state_dict`` name, or the ``NDArrays`` index.
        shape: the array's shape (``()`` for a scalar).
        float32: whether the sum comes back float32 (else float64).
        tensor_template: an empty CPU tensor of the sum's dtype for a tensor entry (``None``:
            the sum is a numpy array).
    """

    key: EntryKey
    shape: tuple[int, ...]
    float32: bool
    tensor_template: TensorLike | None

    @property
    def size(self) -> int:
        """Values in the entry."""
        return int(np.prod(self.shape, dtype=np.int64))

    def restore(self, values: FloatArray) -> object:
        """``values`` (flat, float64) in this entry's shape and form."""
        shaped = values.reshape(self.shape)
        if self.tensor_template is not None:
            return self.tensor_template.new_tensor(shaped)
        return shaped.astype(np.float32) if self.float32 else shaped.copy()


@dataclass(frozen=True, slots=True)
class UpdateStructure:
    """The structure every client of a round sent, fixed by the first client's update.

    Attributes:
        kind: ``"mapping"`` (a ``state_dict``) or ``"list"`` (``NDArrays``).
        entries: the arrays in flattening order.
    """

    kind: Kind
    entries: tuple[StructureEntry, ...]

    @property
    def size(self) -> int:
        """Values in one flattened update."""
        return sum(e.size for e in self.entries)

    def unflatten(self, vector: FloatArray) -> dict[str, object] | list[object]:
        """A flat vector of :attr:`size` values (e.g. the sum) in the clients' own form.

        Raises:
            ParameterError: ``vector`` does not hold :attr:`size` values.
        """
        flat = np.asarray(vector, dtype=np.float64).reshape(-1)
        if flat.shape[0] != self.size:
            raise ParameterError(f"a vector of {flat.shape[0]} values; expected {self.size}")
        restored: list[tuple[EntryKey, object]] = []
        offset = 0
        for entry in self.entries:
            restored.append((entry.key, entry.restore(flat[offset : offset + entry.size])))
            offset += entry.size
        if self.kind == "list":
            return [value for _, value in restored]
        return {str(key): value for key, value in restored}


def flatten_updates(
    updates: Mapping[int, object],
) -> tuple[Mapping[int, object], UpdateStructure | None]:
    """A round's updates as flat float64 vectors, and their common structure.

    Args:
        updates: client id -> update. Plain 1-D updates (and anything that is not a mapping of
            updates) pass through unchanged, for :func:`~protocols.aggregators.inputs.check_updates`
            to check.

    Returns:
        ``(flat updates, structure)``; the structure is ``None`` for plain 1-D updates.

    Raises:
        StructureMismatchError: the clients' updates differ in kind, names, count or shape.
        ParameterError: an entry is not finite real numbers, or an update has no entries or a
            name that is not a string.
    """
    if not isinstance(updates, Mapping) or not updates:
        return updates, None
    reference_client, reference = next(iter(updates.items()))
    kind = _kind(reference)
    if kind is None:
        for client, update in updates.items():
            if _kind(update) is not None:
                raise _kind_mismatch(client, reference_client, _kind(update), None)
        return updates, None
    raw = _entries(reference_client, reference, kind)
    arrays = {key: _values(reference_client, key, value) for key, value in raw.items()}
    structure = UpdateStructure(
        kind, tuple(_describe(key, value, arrays[key].shape) for key, value in raw.items())
    )
    flat: dict[int, FloatArray] = {}
    for client, update in updates.items():
        if client != reference_client:
            if _kind(update) != kind:
                raise _kind_mismatch(client, reference_client, _kind(update), kind)
            arrays = _matching_arrays(client, reference_client, update, structure)
        flat[client] = np.concatenate([arrays[e.key].reshape(-1) for e in structure.entries])
    return flat, structure


def _entries(client: object, update: object, kind: Kind) -> dict[EntryKey, object]:
    """An update's name (or index) -> value, in its own order."""
    if kind == "list":
        return dict(enumerate(cast(Sequence[object], update)))
    entries = dict(cast(Mapping[object, object], update))
    if not entries:
        raise ParameterError(
            f"update of client {client} is an empty mapping; a state_dict-like update needs "
            "at least one named array"
        )
    for key in entries:
        if not isinstance(key, str):
            raise ParameterError(
                f"update of client {client} has the entry name {key!r}; the names of a "
                "state_dict-like update must be strings"
            )
    return cast(dict[EntryKey, object], entries)


def _values(client: object, key: EntryKey, value: object) -> FloatArray:
    """One entry as a float64 array of its own shape, refusing what is not real numbers."""
    return real_values(_numeric(value), f"update of client {client}: {_name(key)}")


def _describe(key: EntryKey, value: object, shape: tuple[int, ...]) -> StructureEntry:
    """The reference client's entry: its shape, and the form and dtype its sum comes back in."""
    if is_tensor(value):
        float32 = str(value.dtype) == "torch.float32"
        # An empty tensor moves to the CPU for free, wherever the client's tensor lives.
        empty = value.detach().new_empty((0,)).cpu()
        return StructureEntry(key, shape, float32, empty.float() if float32 else empty.double())
    float32 = isinstance(value, np.ndarray) and value.dtype == np.float32
    return StructureEntry(key, shape, float32, None)


def _matching_arrays(
    client: int, reference_client: int, update: object, structure: UpdateStructure
) -> dict[EntryKey, FloatArray]:
    """``client``'s entries as arrays, after checking them against the round's structure."""
    entries = _entries(client, update, structure.kind)
    expected = {e.key: e.shape for e in structure.entries}
    counts = (len(entries), len(expected))
    for key, shape in expected.items():
        if key not in entries:
            raise _entry_mismatch(client, reference_client, key, (None, shape), counts)
    for key in entries:
        if key not in expected:
            given = _values(client, key, entries[key]).shape
            raise _entry_mismatch(client, reference_client, key, (given, None), counts)
    arrays = {key: _values(client, key, entries[key]) for key in expected}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            mismatch = (arrays[key].shape, shape)
            raise _entry_mismatch(client, reference_client, key, mismatch, counts)
    return arrays


def _numeric(value: object) -> object:
    """A tensor's values as a numpy array (any dtype numpy has); anything else as given."""
    if not is_tensor(value):
        return value
    cpu = value.detach().cpu()
    # float16 and bfloat16 widen exactly; bfloat16 has no numpy dtype of its own.
    return (cpu.double() if cpu.is_floating_point() else cpu).numpy()


def _name(key: EntryKey) -> str:
    return f"array {key}" if isinstance(key, int) else f"entry {key!r}"


def _arrays(count: int) -> str:
    return f"{count} array" if count == 1 else f"{count} arrays"


def _kind_mismatch(
    client: int, reference_client: int, kind: Kind | None, expected: Kind | None
) -> StructureMismatchError:
    return StructureMismatchError(
        f"update of client {client} is {_KIND_WORDS[kind]}, but client {reference_client}'s "
        f"is {_KIND_WORDS[expected]}: every client of a round must send the same structure",
        client=client,
        reference_client=reference_client,
    )


def _entry_mismatch(
    client: int,
    reference_client: int,
    key: EntryKey,
    shapes: tuple[tuple[int, ...] | None, tuple[int, ...] | None],
    counts: tuple[int, int],
) -> StructureMismatchError:
    """The error for one entry: missing (shape ``None``), extra (expected ``None``) or reshaped."""
    shape, expected = shapes
    what = _name(key)
    if shape is None:
        detail = f"has no {what}, which has shape {expected} in client {reference_client}'s update"
    elif expected is None:
        detail = (
            f"has an extra {what} of shape {shape}, which client {reference_client}'s update lacks"
        )
    else:
        detail = (
            f"has {what} of shape {shape}, but client {reference_client}'s has shape {expected}"
        )
    if isinstance(key, int) and counts[0] != counts[1]:
        detail = (
            f"has {_arrays(counts[0])} where client {reference_client}'s has "
            f"{_arrays(counts[1])}: it {detail}"
        )
    return StructureMismatchError(
        f"update of client {client} {detail}; every client of a round must send the same "
        "names (or number of arrays), each of the same shape",
        client=client,
        reference_client=reference_client,
        entry=key,
        shape=shape,
        expected_shape=expected,
    )
