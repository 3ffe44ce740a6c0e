"""Model shapes, the private/shared split, flat-vector round trips and centralized training."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from models import (
    MLP,
    LocalTrainingConfig,
    LogisticCTR,
    MatrixFactorization,
    NeuMF,
    Recommender,
    SharedLayout,
    TwoTower,
    bce_loss,
    bpr_loss,
    evaluate_ratings,
    flatten_shared,
    load_shared,
    rating_split,
    squared_error_loss,
    synthetic_interactions,
    train_centralized,
)
from secagg.errors import ParameterError

NUM_USERS, NUM_ITEMS = 7, 11

FACTORIES: dict[str, Callable[[int], Recommender]] = {
    "mf": lambda seed: MatrixFactorization(NUM_USERS, NUM_ITEMS, 4, seed=seed),
    "neumf": lambda seed: NeuMF(
        NUM_USERS, NUM_ITEMS, gmf_dim=3, mlp_dim=5, hidden=(8, 4), seed=seed
    ),
    "two_tower": lambda seed: TwoTower(
        NUM_USERS, NUM_ITEMS, embedding_dim=6, width=8, depth=2, output_dim=5, seed=seed
    ),
    "ctr": lambda seed: LogisticCTR(NUM_USERS, NUM_ITEMS, 4, seed=seed),
}

# Expected (state_dim, item-table entries, dense entries) of each factory's model.
EXPECTED_SIZES = {
    "mf": (5, NUM_ITEMS * 4 + NUM_ITEMS, 1),
    "neumf": (8, NUM_ITEMS * (3 + 5), (10 * 8 + 8) + (8 * 4 + 4) + (3 + 4) + 1),
    "two_tower": (6, NUM_ITEMS * 6, 2 * ((6 * 8 + 8) + (8 * 8 + 8) + (8 * 5 + 5))),
    "ctr": (4, NUM_ITEMS * 4 + NUM_ITEMS, 1),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_recommender_scores_have_documented_shapes(name: str) -> None:
    model = FACTORIES[name](0)
    users = torch.tensor([0, 3, 6])
    items = torch.tensor([1, 10, 4])
    assert model(users, items).shape == (3,)
    states = model.users(users)
    assert states.shape == (3, model.state_dim)
    assert model.score(states, items).shape == (3,)
    candidates = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 0]])
    block = model.score_candidates(states, candidates)
    assert block.shape == (3, 4)
    assert torch.allclose(block[:, 1], model.score(states, candidates[:, 1]))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_recommender_keeps_user_state_out_of_the_shared_vector(name: str) -> None:
    model = FACTORIES[name](0)
    state_dim, item_entries, dense_entries = EXPECTED_SIZES[name]
    assert model.state_dim == state_dim
    assert all(not n.startswith("users.") for n, _ in model.shared_named_parameters())
    assert model.user_parameters() == [model.users.weight]
    layout = SharedLayout.of(model)
    mask = layout.per_item_mask()
    assert layout.size == model.num_shared_parameters() == item_entries + dense_entries
    assert int(mask.sum()) == item_entries
    assert flatten_shared(model).shape == (layout.size,)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_flatten_and_load_shared_round_trip(name: str) -> None:
    source, target = FACTORIES[name](1), FACTORIES[name](2)
    vector = flatten_shared(source)
    assert not np.array_equal(vector, flatten_shared(target))
    user_table = target.users.weight.detach().clone()
    load_shared(target, vector)
    assert np.array_equal(flatten_shared(target), vector)
    assert torch.equal(target.users.weight, user_table)  # the user side is untouched


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_recommender_is_fixed_by_its_seed(name: str) -> None:
    torch.manual_seed(123)  # the global generator must not matter
    first = FACTORIES[name](5)
    torch.manual_seed(456)
    again = FACTORIES[name](5)
    assert np.array_equal(flatten_shared(first), flatten_shared(again))
    assert torch.equal(first.users.weight, again.users.weight)


def test_load_shared_rejects_wrong_length_and_nan() -> None:
    model = FACTORIES["mf"](0)
    size = model.num_shared_parameters()
    with pytest.raises(ParameterError, match="shape"):
        load_shared(model, np.zeros(size + 1))
    bad = np.zeros(size)
    bad[3] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        load_shared(model, bad)


def test_matrix_factorization_score_is_the_biased_dot_product() -> None:
    model = MatrixFactorization(2, 3, 2, global_bias=3.5)
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]]))
        model.item_bias.weight.copy_(torch.tensor([[0.1], [0.2], [0.3]]))
    state = torch.tensor([[2.0, -1.0, 0.25]])  # u = (2, -1), b_u = 0.25
    expected = 2 * 3.0 - 1 * 0.5 + 0.25 + 0.3 + 3.5
    assert model.score(state, torch.tensor([2])).item() == pytest.approx(expected)
    assert model.init_user_states(4, torch.Generator().manual_seed(0))[:, 2].abs().sum() == 0


def test_two_tower_scales_to_millions_of_parameters() -> None:
    model = TwoTower(10, 20_000, embedding_dim=32, width=1024, depth=2, output_dim=32)
    tower = 32 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 32 + 32
    assert model.num_shared_parameters() == 20_000 * 32 + 2 * tower
    assert model.num_shared_parameters() > 2_500_000
    assert model(torch.tensor([1, 2]), torch.tensor([19_999, 0])).shape == (2,)


def test_logistic_ctr_without_bias_is_sigmoid_of_the_dot_product() -> None:
    model = LogisticCTR(2, 3, 2, bias=False)
    states = torch.tensor([[1.0, 1.0]])
    items = torch.tensor([1])
    dot = (states * model.item_embedding.weight[1]).sum()
    assert model.click_probability(states, items).item() == pytest.approx(torch.sigmoid(dot).item())
    assert model.num_shared_parameters() == 3 * 2


def test_mlp_rejects_empty_layers() -> None:
    with pytest.raises(ParameterError, match="positive widths"):
        MLP(4, [], generator=torch.Generator())


@pytest.mark.parametrize("bad", [0, -3])
def test_models_reject_non_positive_sizes(bad: int) -> None:
    with pytest.raises(ParameterError, match="dim"):
        MatrixFactorization(3, 3, bad)


def test_objectives_known_answers() -> None:
    predictions = torch.tensor([1.0, 2.0])
    assert squared_error_loss(predictions, torch.tensor([0.0, 4.0])).item() == pytest.approx(1.25)
    assert bpr_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(np.log(2))
    assert bce_loss(torch.zeros(2), torch.tensor([1.0, 0.0])).item() == pytest.approx(np.log(2))


def test_local_training_config_rejects_bad_values() -> None:
    with pytest.raises(ParameterError, match="objective"):
        LocalTrainingConfig(objective="mse")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="epochs"):
        LocalTrainingConfig(epochs=0)


def test_centralized_explicit_mf_lowers_rmse() -> None:
    data = synthetic_interactions(60, 80, min_per_user=10, max_per_user=20, seed=2)
    split = rating_split(data, seed=0)
    model = MatrixFactorization(60, 80, 8, global_bias=float(split.train.ratings.mean()))
    before = evaluate_ratings(model, model.users.weight.detach(), split.test)
    config = LocalTrainingConfig(objective="explicit", epochs=30, learning_rate=0.05, l2=0.05)
    losses = train_centralized(model, split.train, config)
    after = evaluate_ratings(model, model.users.weight.detach(), split.test)
    assert losses[-1] < losses[0]
    assert after < before
