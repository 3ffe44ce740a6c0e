"""The checkpoint ``secagg train --save`` writes and ``secagg recommend`` serves from.

A checkpoint is a :func:`torch.save` dictionary of plain tensors, lists and numbers (so
``torch.load(..., weights_only=True)`` reads it): the model's name and sizes, its shared
weights, and, because the simulation holds every client, each simulated client's user state and
seen items. A real deployment would never gather the user states in one place; the command says
so when it writes one.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from models.base import Recommender
from models.factory import make_model
from models.federated import FederatedTrainer
from secagg.errors import ParameterError

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A trained model with every simulated client's state.

    Attributes:
        model: the model, its weights loaded.
        num_users: users (clients) the model was trained for.
        user_states: one user state per user, stacked.
        seen: per user, the items it interacted with in training.
    """

    model: Recommender
    num_users: int
    user_states: Tensor
    seen: list[list[int]]


def save_checkpoint(
    path: Path, trainer: FederatedTrainer, *, model_name: str, dim: int, seed: int
) -> None:
    """Write the trainer's model and client states to ``path``.

    Args:
        path: where to write.
        trainer: the trainer after training.
        model_name: the model's name for :func:`~models.factory.make_model`.
        dim: the embedding size it was built with.
        seed: the seed of the run.
    """
    model = trainer.model
    torch.save(
        {
            "model": model_name,
            "num_users": model.num_users,
            "num_items": model.num_items,
            "dim": dim,
            "seed": seed,
            "state_dict": model.state_dict(),
            "user_states": trainer.user_states(),
            "seen": [c.seen_items.tolist() for c in trainer.clients.values()],
        },
        path,
    )


_KEYS = ("model", "num_users", "num_items", "dim", "state_dict", "user_states", "seen")


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its model.

    Raises:
        ParameterError: the file is not such a checkpoint (the message names it).
    """
    not_ours = f"{path} is not a checkpoint written by secagg train --save"
    try:
        saved = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError):
        raise ParameterError(not_ours) from None
    if not isinstance(saved, dict) or any(key not in saved for key in _KEYS):
        raise ParameterError(not_ours)
    try:
        model = make_model(saved["model"], saved["num_users"], saved["num_items"], saved["dim"], 0)
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, TypeError, ValueError, KeyError):
        raise ParameterError(f"{not_ours} (its model does not load)") from None
    return Checkpoint(
        model=model,
        num_users=saved["num_users"],
        user_states=saved["user_states"],
        seen=saved["seen"],
    )
