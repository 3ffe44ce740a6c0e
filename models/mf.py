"""Matrix factorization with biases: the workhorse of federated recommendation (FedMF-class).

The model predicts ``u_i . v_j + b_i + b_j + mu``. For explicit ratings it is trained on
``1/2 sum (r_ij - u_i . v_j - b_i - b_j - mu)^2`` (Koren et al. 2009); for implicit feedback the
same score is a logit trained with BPR or BCE on sampled negatives (``models.objectives``). The user
vector and user bias form the private user state ``[u_i, b_i]``; the item table, item biases and
``mu`` are shared.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.base import ItemTable, Recommender, check_positive

__all__ = ["MatrixFactorization"]


class MatrixFactorization(Recommender):
    """Biased matrix factorization.

    Parts:
        users: private states, shape ``(num_users, dim + 1)``; column ``dim`` is the user bias.
        item_embedding: shared :class:`ItemTable`, shape ``(num_items, dim)``.
        item_bias: shared :class:`ItemTable`, shape ``(num_items, 1)``.
        global_bias: shared, shape ``(1,)``.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 32,
        *,
        init_std: float = 0.1,
        global_bias: float = 0.0,
        seed: int = 0,
    ) -> None:
        """Build the model.

        Args:
            num_users: rows of the user table.
            num_items: catalogue size.
            dim: latent dimension.
            init_std: standard deviation of the initial user and item vectors.
            global_bias: initial ``mu`` (the mean rating is a good start for explicit data).
            seed: seed of the initial weights.

        Raises:
            ParameterError: a size is not positive.
        """
        check_positive("dim", dim)
        super().__init__(num_users, num_items, dim + 1, user_init_std=init_std, seed=seed)
        self.dim = dim
        self.item_embedding = ItemTable(num_items, dim, init_std=init_std, generator=self.generator)
        self.item_bias = ItemTable(num_items, 1, init_std=0.0, generator=self.generator)
        self.global_bias = nn.Parameter(torch.tensor([float(global_bias)]))
        self.reset_user_states()

    def user_bias_columns(self) -> tuple[int, ...]:
        return (self.dim,)

    def score(self, states: Tensor, items: Tensor) -> Tensor:
        """``u . v_j + b_u + b_j + mu``.

        Args:
            states: shape ``(B, dim + 1)``.
            items: int64, shape ``(B,)``.

        Returns:
            Shape ``(B,)``.
        """
        user_vectors, user_bias = states[:, : self.dim], states[:, self.dim]
        item_vectors: Tensor = self.item_embedding(items)
        item_bias: Tensor = self.item_bias(items)
        interaction = (user_vectors * item_vectors).sum(dim=-1)
        return interaction + user_bias + item_bias.squeeze(-1) + self.global_bias
