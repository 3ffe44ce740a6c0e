"""Flat vectors of shared parameters: what a client uploads and the server applies.

The aggregators sum 1-D float vectors, so the shared side of a model travels as one vector in a
fixed layout. :class:`SharedLayout` records that layout once (name, shape, offset, and whether the
slot is indexed by item) so that flattening, loading and the server's per-slot update rule all
agree. The user table is never part of the layout: it cannot be uploaded by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from models.base import Recommender
from secagg.errors import ParameterError

__all__ = ["ParameterSlot", "SharedLayout", "flatten_shared", "load_shared"]


@dataclass(frozen=True, slots=True)
class ParameterSlot:
    """Where one shared parameter lives in the flat vector.

    Attributes:
        name: the parameter's name in the model.
        shape: its tensor shape.
        offset: index of its first entry in the flat vector.
        size: number of entries.
        per_item: whether it belongs to an :class:`~models.base.ItemTable` (rows indexed by item).
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int
    per_item: bool


@dataclass(frozen=True, slots=True)
class SharedLayout:
    """The fixed order of a model's shared parameters in the upload vector."""

    slots: tuple[ParameterSlot, ...]

    @classmethod
    def of(cls, model: Recommender) -> SharedLayout:
        """Read the layout from ``model``'s module tree."""
        item_parameter_ids = {id(t.weight) for t in model.item_tables()}
        slots: list[ParameterSlot] = []
        offset = 0
        for name, parameter in model.shared_named_parameters():
            size = parameter.numel()
            per_item = id(parameter) in item_parameter_ids
            slots.append(ParameterSlot(name, tuple(parameter.shape), offset, size, per_item))
            offset += size
        return cls(tuple(slots))

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(slot.size for slot in self.slots)

    def per_item_mask(self) -> npt.NDArray[np.bool_]:
        """Shape ``(size,)``: true on entries that belong to item tables."""
        mask = np.zeros(self.size, dtype=bool)
        for slot in self.slots:
            mask[slot.offset : slot.offset + slot.size] = slot.per_item
        return mask


def flatten_shared(model: Recommender) -> npt.NDArray[np.float32]:
    """Copy the shared parameters into one float32 vector in :class:`SharedLayout` order.

    Args:
        model: the model.

    Returns:
        Shape ``(model.num_shared_parameters(),)`` float32.
    """
    with torch.no_grad():
        parts = [p.detach().reshape(-1) for p in model.shared_parameters()]
        return torch.cat(parts).numpy().astype(np.float32, copy=True)


def load_shared(model: Recommender, vector: npt.ArrayLike) -> None:
    """Overwrite the shared parameters of ``model`` from a flat vector.

    Args:
        model: the model to update in place.
        vector: shape ``(model.num_shared_parameters(),)``.

    Raises:
        ParameterError: the vector has the wrong shape or non-finite entries.
    """
    array = np.asarray(vector, dtype=np.float32)
    expected = model.num_shared_parameters()
    if array.shape != (expected,):
        raise ParameterError(f"shared vector has shape {array.shape}; expected ({expected},)")
    if not np.all(np.isfinite(array)):
        raise ParameterError("shared vector contains NaN or infinity")
    source = torch.from_numpy(array)
    offset = 0
    with torch.no_grad():
        for parameter in model.shared_parameters():
            size = parameter.numel()
            parameter.copy_(source[offset : offset + size].view_as(parameter))
            offset += size
