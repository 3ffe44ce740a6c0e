"""The common shape of every recommender: private user state, shared item-side parameters.

Federated recommendation only stays private if the model is cut in two along the right line. The
*user side* (a user's embedding, their bias) is personal: it lives on the client and is never
uploaded, not even masked. The *shared side* (item embeddings, item biases, MLP weights) is what
the clients improve together through secure aggregation. :class:`Recommender` makes that cut
structural: user-side rows live in a :class:`UserStates` part, per-item rows in :class:`ItemTable`
parts, and everything else is dense shared weight. ``models.parameters`` reads the cut from the
module tree, so a new model gets the right upload layout by being built from these named parts.

Every model scores through :meth:`Recommender.score`, which takes user *states* (the rows of the
user table, or a client's own vector) rather than user ids. That one signature serves centralized
training (states looked up from the table) and federated clients (their own local tensor).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from secagg.errors import ParameterError

__all__ = ["ItemTable", "Recommender", "UserStates", "check_positive"]


def check_positive(name: str, value: int | float) -> None:
    """Raise :class:`ParameterError` unless ``value`` is a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ParameterError(f"{name} must be a positive number, got {value!r}")


class UserStates(nn.Module):
    """Private per-user rows, shape ``(num_users, state_dim)``: kept on clients, never uploaded.

    In federated training the table is unused (each client keeps its own row); it serves
    centralized training and as the place where a model says how wide a user state is.
    """

    def __init__(self, num_users: int, state_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_users, state_dim))

    def forward(self, users: Tensor) -> Tensor:
        """Rows of ``users`` (int64, shape ``(B,)``) as a ``(B, state_dim)`` tensor."""
        return self.weight[users]


class ItemTable(nn.Module):
    """Per-item rows, shape ``(num_items, dim)``: shared, and uploaded densely.

    Marking item-indexed parameters with their own module type lets the server treat them apart
    from dense weights (a summed rather than averaged update, see ``models.federated``).
    """

    def __init__(
        self, num_items: int, dim: int, *, init_std: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        weight = torch.zeros(num_items, dim)
        if init_std > 0:
            weight.normal_(0.0, init_std, generator=generator)
        self.weight = nn.Parameter(weight)

    def forward(self, items: Tensor) -> Tensor:
        """Rows of ``items`` (int64, any shape ``S``) as a tensor of shape ``S + (dim,)``.

        ``index_select`` rather than ``embedding`` or ``weight[items]``: on the CPU its backward
        (an ``index_add``) is several times faster for the unsorted ids of a batch.
        """
        rows = self.weight.index_select(0, items.reshape(-1))
        return rows.reshape(*items.shape, self.weight.shape[1])


class Recommender(nn.Module):
    """Base of every model: a private user part, a shared part, one scoring function.

    Subclasses build their shared parts in ``__init__`` (after calling this one) and implement
    :meth:`score`. Scores are logits for implicit objectives and predicted ratings for the
    explicit one.

    Attributes:
        num_users: rows of the user table.
        num_items: catalogue size.
        state_dim: width of one user's private state vector.
        user_init_std: standard deviation of fresh user states.
        users: the private :class:`UserStates` table.
    """

    def __init__(
        self, num_users: int, num_items: int, state_dim: int, *, user_init_std: float, seed: int
    ) -> None:
        super().__init__()
        check_positive("num_users", num_users)
        check_positive("num_items", num_items)
        check_positive("state_dim", state_dim)
        self.num_users = num_users
        self.num_items = num_items
        self.state_dim = state_dim
        self.user_init_std = user_init_std
        self.generator = torch.Generator().manual_seed(seed)
        self.users = UserStates(num_users, state_dim)

    def reset_user_states(self) -> None:
        """Draw fresh rows for the whole user table (call at the end of a subclass ``__init__``)."""
        with torch.no_grad():
            self.users.weight.copy_(self.init_user_states(self.num_users, self.generator))

    def init_user_states(self, count: int, generator: torch.Generator) -> Tensor:
        """Fresh user states, shape ``(count, state_dim)``.

        The default is ``N(0, user_init_std^2)`` in every column; models whose state holds a bias
        override :meth:`user_bias_columns` so that it starts at zero.
        """
        states = torch.empty(count, self.state_dim)
        states.normal_(0.0, self.user_init_std, generator=generator)
        bias_columns = self.user_bias_columns()
        if bias_columns:
            states[:, list(bias_columns)] = 0.0
        return states

    def user_bias_columns(self) -> tuple[int, ...]:
        """Columns of the user state that hold a bias (none by default; MF has one)."""
        return ()

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Score ``(users[b], items[b])`` pairs from the user table.

        Args:
            users: int64, shape ``(B,)``.
            items: int64, shape ``(B,)``.

        Returns:
            Shape ``(B,)`` scores.
        """
        return self.score(self.users(users), items)

    def score(self, states: Tensor, items: Tensor) -> Tensor:
        """Score each user state against one item.

        Args:
            states: float32, shape ``(B, state_dim)``.
            items: int64, shape ``(B,)``.

        Returns:
            Shape ``(B,)`` scores.
        """
        raise NotImplementedError

    def score_pairs(self, states: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Score ``(states[users[e]], items[e])`` for every pair ``e``.

        The same scores as ``score(states[users], items)``. Many pairs share a user or an item
        (a refit scores every user's interactions and negatives), so a model whose score splits
        into a user part and an item part overrides this to compute each part once per distinct
        row instead of once per pair.

        Args:
            states: shape ``(U, state_dim)`` a table of user states.
            users: int64, shape ``(E,)`` rows of ``states``.
            items: int64, shape ``(E,)`` item ids.

        Returns:
            Shape ``(E,)`` scores.
        """
        return self.score(states.index_select(0, users), items)

    def score_candidates(self, states: Tensor, items: Tensor) -> Tensor:
        """Score each user state against its own row of candidate items.

        Args:
            states: shape ``(B, state_dim)``.
            items: int64, shape ``(B, M)``.

        Returns:
            Shape ``(B, M)`` scores.
        """
        batch, width = items.shape
        users = torch.arange(batch).repeat_interleave(width)
        return self.score_pairs(states, users, items.reshape(-1)).reshape(batch, width)

    def penalty(self, states: Tensor, items: Tensor) -> Tensor:
        """Squared L2 norm of the parameters a batch touches: its user states and item rows.

        Only the touched rows are penalised so that a client's update leaves untouched rows
        exactly unchanged (weight decay on the whole table would shrink every item once per
        client, and the summed server update would multiply that shrinkage).

        Args:
            states: shape ``(B, state_dim)``.
            items: int64, any shape.

        Returns:
            A scalar tensor.
        """
        total = states.pow(2).sum()
        for table in self.item_tables():
            total = total + table(items).pow(2).sum()
        return total

    def item_tables(self) -> Iterator[ItemTable]:
        """The model's :class:`ItemTable` parts."""
        for module in self.modules():
            if isinstance(module, ItemTable):
                yield module

    def dense_parameters(self) -> list[nn.Parameter]:
        """The shared parameters outside every :class:`ItemTable` (MLPs, global biases)."""
        item_ids = {id(table.weight) for table in self.item_tables()}
        return [p for p in self.shared_parameters() if id(p) not in item_ids]

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every shared parameter, in a fixed order (the upload layout)."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("users.")]

    def shared_parameters(self) -> list[nn.Parameter]:
        """The shared parameters (everything but the private user table)."""
        return [p for _, p in self.shared_named_parameters()]

    def user_parameters(self) -> list[nn.Parameter]:
        """The private user-side parameters (the user table)."""
        return [self.users.weight]

    def num_shared_parameters(self) -> int:
        """Length of the flat shared vector a client uploads."""
        return sum(p.numel() for p in self.shared_parameters())
