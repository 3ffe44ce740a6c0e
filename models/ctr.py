"""Logistic click-through-rate model: ``P(click) = sigmoid(u . v + b_j + b)``.

The simplest implicit-feedback model with a probabilistic reading, and the one used in federated
CTR prediction papers as the baseline. Trained with BCE on observed clicks and sampled
non-clicks; ``bias=False`` gives the plain ``sigmoid(u . v)``. The user vector is private; the
item table and biases are shared.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.base import ItemTable, Recommender, check_positive

__all__ = ["LogisticCTR"]


class LogisticCTR(Recommender):
    """Logistic regression on the user-item dot product.

    Parts:
        users: private states, shape ``(num_users, dim)``.
        item_embedding: shared :class:`ItemTable`, shape ``(num_items, dim)``.
        item_bias: shared :class:`ItemTable`, shape ``(num_items, 1)`` (only when ``bias``).
        global_bias: shared, shape ``(1,)`` (only when ``bias``).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 32,
        *,
        bias: bool = True,
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        """Build the model.

        Args:
            num_users: rows of the user table.
            num_items: catalogue size.
            dim: latent dimension.
            bias: whether to learn item and global biases.
            init_std: standard deviation of the initial vectors.
            seed: seed of the initial weights.

        Raises:
            ParameterError: a size is not positive.
        """
        check_positive("dim", dim)
        super().__init__(num_users, num_items, dim, user_init_std=init_std, seed=seed)
        self.item_embedding = ItemTable(num_items, dim, init_std=init_std, generator=self.generator)
        self.item_bias: ItemTable | None = None
        self.global_bias: nn.Parameter | None = None
        if bias:
            self.item_bias = ItemTable(num_items, 1, init_std=0.0, generator=self.generator)
            self.global_bias = nn.Parameter(torch.zeros(1))
        self.reset_user_states()

    def score(self, states: Tensor, items: Tensor) -> Tensor:
        """The click logit ``u . v_j (+ b_j + b)``.

        Args:
            states: shape ``(B, dim)``.
            items: int64, shape ``(B,)``.

        Returns:
            Shape ``(B,)`` logits.
        """
        item_vectors: Tensor = self.item_embedding(items)
        logits = (states * item_vectors).sum(dim=-1)
        if self.item_bias is not None and self.global_bias is not None:
            item_bias: Tensor = self.item_bias(items)
            logits = logits + item_bias.squeeze(-1) + self.global_bias
        return logits

    def click_probability(self, states: Tensor, items: Tensor) -> Tensor:
        """``sigmoid`` of :meth:`score`, shape ``(B,)``."""
        return torch.sigmoid(self.score(states, items))
