"""Neural matrix factorization (NeuMF, He et al. 2017, "Neural Collaborative Filtering").

NeuMF fuses a generalised matrix factorization branch (element-wise product of user and item
vectors) with an MLP branch over their concatenation, and reads a logit from both (paper Fig. 3).
Each branch has its own user and item embeddings. Here both user embeddings form the private user
state ``[p_gmf, p_mlp]``; both item tables, the MLP and the output layer are shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from models.base import ItemTable, Recommender, check_positive
from models.layers import MLP, seeded_linear

__all__ = ["NeuMF"]


class NeuMF(Recommender):
    """GMF + MLP with a joint output layer.

    Parts:
        users: private states, shape ``(num_users, gmf_dim + mlp_dim)``.
        gmf_items: shared :class:`ItemTable`, shape ``(num_items, gmf_dim)``.
        mlp_items: shared :class:`ItemTable`, shape ``(num_items, mlp_dim)``.
        mlp: shared :class:`~models.layers.MLP`, ``2 * mlp_dim -> hidden[-1]``.
        output: shared linear layer, ``gmf_dim + hidden[-1] -> 1`` (the logit).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        gmf_dim: int = 16,
        mlp_dim: int = 16,
        hidden: Sequence[int] = (32, 16, 8),
        init_std: float = 0.1,
        mf_start: bool = False,
        seed: int = 0,
    ) -> None:
        """Build the model.

        Args:
            num_users: rows of the user table.
            num_items: catalogue size.
            gmf_dim: width of the GMF embeddings.
            mlp_dim: width of the MLP-branch embeddings.
            hidden: MLP layer widths (the paper halves them layer by layer).
            init_std: standard deviation of the initial embeddings.
            mf_start: start as matrix factorization: the output layer's GMF weights at 1 (the
                GMF logit is then the dot product of the two embeddings) and its MLP weights at
                a tenth of their init. It stands in for He et al.'s pretraining of GMF, which
                a federation cannot run separately; without it the randomly weighted output
                layer hides the GMF signal and NeuMF learns slower than MF.
            seed: seed of the initial weights.

        Raises:
            ParameterError: a size is not positive.
        """
        check_positive("gmf_dim", gmf_dim)
        check_positive("mlp_dim", mlp_dim)
        super().__init__(num_users, num_items, gmf_dim + mlp_dim, user_init_std=init_std, seed=seed)
        self.gmf_dim = gmf_dim
        self.mlp_dim = mlp_dim
        self.gmf_items = ItemTable(num_items, gmf_dim, init_std=init_std, generator=self.generator)
        self.mlp_items = ItemTable(num_items, mlp_dim, init_std=init_std, generator=self.generator)
        self.mlp = MLP(2 * mlp_dim, hidden, generator=self.generator)
        self.output = seeded_linear(gmf_dim + self.mlp.out_features, 1, self.generator)
        if mf_start:
            with torch.no_grad():
                self.output.weight[:, :gmf_dim] = 1.0
                self.output.weight[:, gmf_dim:] *= 0.1
        self.reset_user_states()

    def score(self, states: Tensor, items: Tensor) -> Tensor:
        """The NeuMF logit.

        Args:
            states: shape ``(B, gmf_dim + mlp_dim)``.
            items: int64, shape ``(B,)``.

        Returns:
            Shape ``(B,)`` logits.
        """
        user_gmf, user_mlp = states[:, : self.gmf_dim], states[:, self.gmf_dim :]
        gmf = user_gmf * self.gmf_items(items)
        mlp = self.mlp(torch.cat([user_mlp, self.mlp_items(items)], dim=-1))
        logits: Tensor = self.output(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)
        return logits

    def score_pairs(self, states: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """:meth:`score` with the MLP's first layer applied once per distinct user and item.

        That layer is linear in ``[user; item]``: ``W [u; v] + b = W_u u + (W_v v + b)``, so
        each half is computed on the distinct rows and the pairs only add them up.
        """
        first = self.mlp.layers[0]
        assert isinstance(first, nn.Linear)
        distinct, inverse = torch.unique(items, return_inverse=True)
        user_gmf, user_mlp = states[:, : self.gmf_dim], states[:, self.gmf_dim :]
        user_part = F.linear(user_mlp, first.weight[:, : self.mlp_dim])
        item_part = F.linear(self.mlp_items(distinct), first.weight[:, self.mlp_dim :], first.bias)
        hidden = user_part.index_select(0, users) + item_part.index_select(0, inverse)
        mlp = self.mlp.layers[1:](hidden)
        gmf = user_gmf.index_select(0, users) * self.gmf_items(distinct).index_select(0, inverse)
        logits: Tensor = self.output(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)
        return logits
