"""The checkpoint ``secagg train --save`` writes and ``secagg recommend`` serves from.

A checkpoint is a :func:`torch.save` dictionary of plain tensors, lists and numbers (so
``torch.load(..., weights_only=True)`` reads it): the model's name and sizes, its shared
weights, and, because the simulation holds every client, each simulated client's user state and
seen items. A real deployment would never gather the user states in one place; the command says
so when it writes one.

The model numbers users and items ``0..n-1``; the checkpoint also keeps the data file's own ids
(``user_ids[i]`` and ``item_ids[j]``: the original id of index ``i`` and ``j``), so that a user
asks for recommendations with the ids they know and reads the answer in them. Checkpoints written
before the id maps existed load with the identity map, and :attr:`Checkpoint.has_id_maps` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from models.base import Recommender
from models.factory import make_model
from models.federated import FederatedTrainer
from secagg.errors import ParameterError

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]

IdArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A trained model with every simulated client's state.

    Attributes:
        model: the model, its weights loaded.
        num_users: users (clients) the model was trained for.
        user_states: one user state per user index, stacked.
        seen: per user index, the item indices it interacted with in training.
        user_ids: shape ``(num_users,)``, the data's own id of each user index.
        item_ids: shape ``(model.num_items,)``, the data's own id of each item index.
        has_id_maps: whether the file held the id maps; ``False`` for a checkpoint written before
            they were saved, whose ``user_ids`` and ``item_ids`` are then the indices themselves.
    """

    model: Recommender
    num_users: int
    user_states: Tensor
    seen: list[list[int]]
    user_ids: IdArray
    item_ids: IdArray
    has_id_maps: bool

    def user_index(self, user_id: int) -> int:
        """The model's index of the user the data calls ``user_id``.

        Args:
            user_id: the user's id as in the data file.

        Returns:
            Its index in ``[0, num_users)``.

        Raises:
            ParameterError: no user has that id (the message says which ids there are).
        """
        found = np.flatnonzero(self.user_ids == user_id)
        if found.shape[0] == 0:
            raise ParameterError(
                f"user {user_id} is not in the checkpoint ({_describe_ids(self.user_ids)})"
            )
        return int(found[0])

    def original_item_ids(self, indices: npt.ArrayLike) -> IdArray:
        """The data's own ids of the item indices ``indices``.

        Args:
            indices: item indices in ``[0, model.num_items)``.

        Returns:
            The original item id of each, in the same order.
        """
        return self.item_ids[np.asarray(indices, dtype=np.int64)]


def _describe_ids(ids: IdArray) -> str:
    """``it knows 200 users, ids 1..200``; gaps and the empty case are said as such."""
    count = int(ids.shape[0])
    if count == 0:
        return "it knows no users"
    low, high = int(ids.min()), int(ids.max())
    gaps = "" if high - low + 1 == count else ", with gaps"
    noun = "user" if count == 1 else "users"
    return f"it knows {count} {noun}, ids {low}..{high}{gaps}"


def save_checkpoint(
    path: Path,
    trainer: FederatedTrainer,
    *,
    model_name: str,
    dim: int,
    seed: int,
    user_ids: npt.ArrayLike | None = None,
    item_ids: npt.ArrayLike | None = None,
) -> None:
    """Write the trainer's model, client states and the data's id maps to ``path``.

    Args:
        path: where to write.
        trainer: the trainer after training.
        model_name: the model's name for :func:`~models.factory.make_model`.
        dim: the embedding size it was built with.
        seed: the seed of the run.
        user_ids: the data's own id of each user index (``Interactions.user_ids``).
        item_ids: the data's own id of each item index (``Interactions.item_ids``).

    Raises:
        ParameterError: only one of the id maps is given, or one does not have exactly one
            distinct integer per user (item) of the model.
    """
    model = trainer.model
    saved: dict[str, Any] = {
        "model": model_name,
        "num_users": model.num_users,
        "num_items": model.num_items,
        "dim": dim,
        "seed": seed,
        "state_dict": model.state_dict(),
        "user_states": trainer.user_states(),
        "seen": [c.seen_items.tolist() for c in trainer.clients.values()],
    }
    if (user_ids is None) != (item_ids is None):
        raise ParameterError("save_checkpoint needs both user_ids and item_ids, or neither")
    if user_ids is not None and item_ids is not None:
        saved["user_ids"] = torch.from_numpy(_checked_ids(user_ids, model.num_users, "user"))
        saved["item_ids"] = torch.from_numpy(_checked_ids(item_ids, model.num_items, "item"))
    torch.save(saved, path)


def _checked_ids(ids: npt.ArrayLike, count: int, noun: str) -> IdArray:
    """``ids`` as int64 if it is ``count`` distinct integers, else a :class:`ParameterError`."""
    array = np.asarray(ids)
    if array.shape != (count,):
        raise ParameterError(
            f"{noun}_ids has shape {array.shape}; the model has {count} {noun}s, one id each"
        )
    if count and not np.issubdtype(array.dtype, np.integer):
        raise ParameterError(f"{noun}_ids must be integers, got dtype {array.dtype}")
    if np.unique(array).shape[0] != count:
        raise ParameterError(f"{noun}_ids holds an id twice; each {noun} needs its own id")
    return array.astype(np.int64)


_KEYS = ("model", "num_users", "num_items", "dim", "state_dict", "user_states", "seen")


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its model.

    A checkpoint without id maps (written before they were saved) gets the identity map.

    Raises:
        ParameterError: the file is not such a checkpoint (the message names it).
    """
    not_ours = f"{path} is not a checkpoint written by secagg train --save"
    if not path.is_file():
        raise ParameterError(f"{path}: no such checkpoint file (secagg train --save writes one)")
    try:
        saved = torch.load(path, weights_only=True)
    except Exception:  # torch's unpickler raises anything (IndexError...) on junk
        raise ParameterError(not_ours) from None
    if not isinstance(saved, dict) or any(key not in saved for key in _KEYS):
        raise ParameterError(not_ours)
    try:
        model = make_model(saved["model"], saved["num_users"], saved["num_items"], saved["dim"], 0)
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, TypeError, ValueError, KeyError):
        raise ParameterError(f"{not_ours} (its model does not load)") from None
    user_ids, item_ids = _id_maps(saved, model, f"{not_ours} (its id maps do not match its model)")
    return Checkpoint(
        model=model,
        num_users=saved["num_users"],
        user_states=saved["user_states"],
        seen=saved["seen"],
        user_ids=user_ids if user_ids is not None else np.arange(model.num_users, dtype=np.int64),
        item_ids=item_ids if item_ids is not None else np.arange(model.num_items, dtype=np.int64),
        has_id_maps=user_ids is not None,
    )


def _id_maps(
    saved: dict[str, Any], model: Recommender, malformed: str
) -> tuple[IdArray | None, IdArray | None]:
    """The stored id maps, or ``(None, None)`` for a checkpoint written before they were saved.

    Raises:
        ParameterError: ``malformed``, when the maps are there but not one distinct integer per
            user (item) of ``model``, or only one of them is.
    """
    if "user_ids" not in saved and "item_ids" not in saved:
        return None, None
    user_ids = _saved_ids(saved.get("user_ids"), model.num_users)
    item_ids = _saved_ids(saved.get("item_ids"), model.num_items)
    if user_ids is None or item_ids is None:
        raise ParameterError(malformed)
    return user_ids, item_ids


def _saved_ids(value: object, count: int) -> IdArray | None:
    """A stored id map if it is ``count`` distinct integers; ``None`` if absent or malformed."""
    if not isinstance(value, Tensor) or value.dtype != torch.int64:
        return None
    array = value.numpy()
    if array.shape != (count,) or np.unique(array).shape[0] != count:
        return None
    return array.astype(np.int64)
