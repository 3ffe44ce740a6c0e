"""Two-tower retrieval model, sized from thousands to millions of shared parameters.

A user tower and an item tower map their embeddings to a common space and the score is the dot
product (the retrieval model of YouTube / Yi et al. 2019). It is the model used to see how secure
aggregation scales with the upload size: ``width`` and ``depth`` grow the dense towers and
``num_items * embedding_dim`` the item table, both shared. The user embedding is the private
state; the user tower's weights are shared (they are the same function for every user).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.base import ItemTable, Recommender, check_positive
from models.layers import MLP
from secagg.errors import ParameterError

__all__ = ["TwoTower"]


class TwoTower(Recommender):
    """Dot product of a user tower and an item tower.

    Parts:
        users: private states, shape ``(num_users, embedding_dim)``.
        item_embedding: shared :class:`ItemTable`, shape ``(num_items, embedding_dim)``.
        user_tower: shared :class:`~models.layers.MLP`, ``embedding_dim -> output_dim``.
        item_tower: shared :class:`~models.layers.MLP`, ``embedding_dim -> output_dim``.

    Each tower has ``depth`` hidden layers of ``width`` units and a linear output layer, so it
    holds about ``embedding_dim * width + (depth - 1) * width^2 + width * output_dim`` weights.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        embedding_dim: int = 32,
        width: int = 64,
        depth: int = 1,
        output_dim: int = 32,
        init_std: float = 0.1,
        residual: bool = False,
        seed: int = 0,
    ) -> None:
        """Build the model.

        Args:
            num_users: rows of the user table.
            num_items: catalogue size.
            embedding_dim: width of the user and item embeddings.
            width: units of each hidden layer.
            depth: hidden layers per tower (0 makes each tower one linear map).
            output_dim: width of the common space.
            init_std: standard deviation of the initial embeddings.
            residual: each tower adds its input to its output (``x + MLP(x)``), with the last
                layer started at a tenth of its usual init: the model starts near matrix
                factorization and the towers learn corrections to it, which is what lets
                SGD on a hundred interactions a client train it (the plain towers stay near
                popularity). Needs ``output_dim == embedding_dim``.
            seed: seed of the initial weights.

        Raises:
            ParameterError: a size is not positive, ``depth`` is negative, or ``residual``
                with ``output_dim != embedding_dim``.
        """
        check_positive("embedding_dim", embedding_dim)
        check_positive("width", width)
        check_positive("output_dim", output_dim)
        if depth < 0:
            check_positive("depth", depth)
        super().__init__(num_users, num_items, embedding_dim, user_init_std=init_std, seed=seed)
        if residual and output_dim != embedding_dim:
            raise ParameterError(
                f"residual towers need output_dim == embedding_dim, got {output_dim} and "
                f"{embedding_dim}"
            )
        self.residual = residual
        sizes = [width] * depth + [output_dim]
        self.item_embedding = ItemTable(
            num_items, embedding_dim, init_std=init_std, generator=self.generator
        )
        self.user_tower = MLP(
            embedding_dim, sizes, generator=self.generator, final_activation=False
        )
        self.item_tower = MLP(
            embedding_dim, sizes, generator=self.generator, final_activation=False
        )
        if residual:
            _shrink_last_layer(self.user_tower)
            _shrink_last_layer(self.item_tower)
        self.reset_user_states()

    def score(self, states: Tensor, items: Tensor) -> Tensor:
        """Dot product of the two towers' outputs.

        Args:
            states: shape ``(B, embedding_dim)``.
            items: int64, shape ``(B,)``.

        Returns:
            Shape ``(B,)`` logits.
        """
        embedded = self.item_embedding(items)
        user: Tensor = self.user_tower(states)
        item: Tensor = self.item_tower(embedded)
        if self.residual:
            user, item = states + user, embedded + item
        return (user * item).sum(dim=-1)

    def score_pairs(self, states: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """:meth:`score` with each tower run once per distinct user row and item, not per pair."""
        distinct, inverse = torch.unique(items, return_inverse=True)
        embedded = self.item_embedding(distinct)
        user: Tensor = self.user_tower(states)
        item: Tensor = self.item_tower(embedded)
        if self.residual:
            user, item = states + user, embedded + item
        return (user.index_select(0, users) * item.index_select(0, inverse)).sum(dim=-1)


def _shrink_last_layer(tower: MLP) -> None:
    """Scale the tower's output layer to a tenth of its init: a residual tower starts near x."""
    last = tower.layers[-1]
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.weight.mul_(0.1)
        last.bias.mul_(0.1)
