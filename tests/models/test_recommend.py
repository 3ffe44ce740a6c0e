"""On-device recommendation, the feedback loop into the next round, and ``secagg recommend``.

The command tests train a three-user model for one round on a MovieLens file whose ids are not
``0..n-1``, so that any confusion of the data's ids with the model's indices shows.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from models import (
    FederatedConfig,
    FederatedTrainer,
    Interactions,
    LocalTrainingConfig,
    MatrixFactorization,
    load_movielens,
    recommend_for_client,
    record_feedback,
    synthetic_interactions,
    top_k_items,
)
from models.commands.checkpoint import load_checkpoint, save_checkpoint
from models.factory import make_model
from protocols.aggregators import PlainAggregator
from protocols.cli import main
from secagg.errors import ParameterError


def _model_with_known_scores() -> MatrixFactorization:
    model = MatrixFactorization(1, 6, 1)
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.tensor([[0.0], [5.0], [1.0], [4.0], [2.0], [4.0]]))
        model.item_bias.weight.zero_()
    return model


def test_top_k_items_ranks_by_score_and_excludes_seen() -> None:
    model = _model_with_known_scores()
    state = torch.tensor([1.0, 0.0])  # score of item j is its embedding value
    best = top_k_items(model, state, 3)
    assert best.items.tolist() == [1, 3, 5]  # ties keep the lower id first
    assert best.scores.tolist() == [5.0, 4.0, 4.0]
    assert top_k_items(model, state, 3, exclude=[1, 5]).items.tolist() == [3, 4, 2]
    assert top_k_items(model, state, 10, exclude=[0, 1]).items.shape == (4,)


def test_top_k_items_rejects_bad_arguments() -> None:
    model = _model_with_known_scores()
    with pytest.raises(ParameterError, match="k must"):
        top_k_items(model, torch.zeros(2), 0)
    with pytest.raises(ParameterError, match="state has shape"):
        top_k_items(model, torch.zeros(3), 1)


def test_recommendations_exclude_the_clients_items_and_feedback_joins_training() -> None:
    data = synthetic_interactions(20, 40, min_per_user=5, max_per_user=8, seed=5)
    model = MatrixFactorization(20, 40, 4, seed=0)
    config = FederatedConfig(
        rounds=1, clients_per_round=20, local=LocalTrainingConfig(epochs=1), eval_every=0
    )
    trainer = FederatedTrainer(model, data, PlainAggregator(), config)
    trainer.run()
    client = trainer.clients[3]
    recommended = recommend_for_client(client, trainer.model, k=5)
    assert recommended.items.shape == (5,)
    assert not np.isin(recommended.items, client.seen_items).any()
    assert np.all(np.diff(recommended.scores) <= 0)

    before = client.num_interactions
    record_feedback(client, recommended.items[:2])
    assert client.num_interactions == before + 2
    assert set(recommended.items[:2].tolist()) <= set(client.seen_items.tolist())
    again = recommend_for_client(client, trainer.model, k=5)
    assert not np.isin(recommended.items[:2], again.items).any()
    workspace = copy.deepcopy(trainer.model)
    update = client.local_update(workspace, trainer.server.broadcast(), config.local, config.clip)
    # BPR makes num_negatives pairs per positive: the new items are trained on.
    assert update.num_examples == (before + 2) * config.local.num_negatives


def test_record_feedback_rejects_mismatched_ratings() -> None:
    data = synthetic_interactions(4, 30, min_per_user=3, max_per_user=4, seed=0)
    trainer = FederatedTrainer(MatrixFactorization(4, 30, 2), data, PlainAggregator())
    with pytest.raises(ParameterError, match="one rating"):
        record_feedback(trainer.clients[0], [1, 2], [5.0])


# ``secagg recommend`` in the data's own ids -------------------------------------------------

#: A MovieLens u.data whose ids are neither 0-based nor contiguous nor in sorted order:
#: users appear as 30, 10, 20 (indices 0, 1, 2), items as 300, 101, 999, ... (indices 0, 1, ...).
_RATED: dict[int, list[int]] = {
    30: [300, 101, 999, 150],
    10: [105, 101, 1000],
    20: [202, 110, 300, 151, 200],
}
_ITEM_IDS = [300, 101, 999, 150, 105, 1000, 202, 110, 151, 200]


def _write_u_data(directory: Path, rated: dict[int, list[int]]) -> Path:
    path = directory / "u.data"
    lines = [
        f"{user}\t{item}\t4\t{1000 + n}"
        for n, (user, item) in enumerate((u, i) for u, items in rated.items() for i in items)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train_and_save(data: Interactions, path: Path, *, with_ids: bool = True) -> FederatedTrainer:
    model = make_model("mf", data.num_users, data.num_items, 4, 0)
    config = FederatedConfig(
        rounds=1, clients_per_round=data.num_users, local=LocalTrainingConfig(epochs=1),
        eval_every=0,
    )  # fmt: skip
    trainer = FederatedTrainer(model, data, PlainAggregator(), config)
    trainer.run()
    ids = {"user_ids": data.user_ids, "item_ids": data.item_ids} if with_ids else {}
    save_checkpoint(path, trainer, model_name="mf", dim=4, seed=0, **ids)
    return trainer


@dataclass(frozen=True)
class _Saved:
    data: Interactions
    trainer: FederatedTrainer
    path: Path


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> _Saved:
    directory = tmp_path_factory.mktemp("ids")
    data = load_movielens(_write_u_data(directory, _RATED))
    path = directory / "model.pt"
    return _Saved(data, _train_and_save(data, path), path)


def _recommend(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> tuple[int, str, str]:
    code = main(["recommend", "--checkpoint", str(path), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_recommend_takes_and_prints_the_datas_own_ids(
    saved: _Saved, capsys: pytest.CaptureFixture[str]
) -> None:
    assert saved.data.user_ids.tolist() == [30, 10, 20]  # the file's order of first appearance
    assert saved.data.item_ids.tolist() == _ITEM_IDS
    code, out, err = _recommend(capsys, saved.path, "--user", "20", "-k", "3", "--json")
    assert (code, err) == (0, "")
    served = json.loads(out)
    assert set(served) == {"user", "user_index", "items", "item_indices", "scores", "id_maps"}
    assert (served["user"], served["user_index"], served["id_maps"]) == (20, 2, True)
    client = saved.trainer.clients[2]
    expected = top_k_items(saved.trainer.model, client.state, 3, exclude=client.seen_items)
    assert served["item_indices"] == expected.items.tolist()
    assert served["items"] == [_ITEM_IDS[i] for i in expected.items]
    assert served["scores"] == pytest.approx(expected.scores.tolist())
    assert not set(served["items"]) & set(_RATED[20])  # user 20's own items, in the file's ids
    assert set(served["items"]) <= set(_ITEM_IDS)

    code, out, _ = _recommend(capsys, saved.path, "--user-index", "2", "-k", "3", "--json")
    assert code == 0 and json.loads(out) == served

    code, out, _ = _recommend(capsys, saved.path, "--user", "20", "-k", "3")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "top 3 unseen items for user 20:"
    assert [int(line.split()[2]) for line in lines[1:]] == served["items"]


def test_checkpoint_round_trips_the_id_maps(saved: _Saved) -> None:
    checkpoint = load_checkpoint(saved.path)
    assert checkpoint.has_id_maps
    assert checkpoint.user_ids.tolist() == [30, 10, 20]
    assert checkpoint.item_ids.tolist() == _ITEM_IDS
    assert [checkpoint.user_index(u) for u in (30, 10, 20)] == [0, 1, 2]
    assert checkpoint.original_item_ids([9, 0]).tolist() == [200, 300]
    stored = torch.load(saved.path, weights_only=True)
    assert stored["user_ids"].dtype == torch.int64 and stored["item_ids"].dtype == torch.int64


_KNOWN = "it knows 3 users, ids 10..30, with gaps"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "1"], f"user 1 is not in the checkpoint ({_KNOWN})"),  # an index, not an id
        (["--user", "0"], f"user 0 is not in the checkpoint ({_KNOWN})"),
        (["--user-index", "3"], "--user-index 3 is not in 0..2 (the checkpoint knows 3 users)"),
        (["--user-index", "-1"], "--user-index -1 is not in 0..2 (the checkpoint knows 3 users)"),
        (["--user", "20", "-k", "0"], "-k/--top 0: must be a positive integer"),
        (["--user", "20", "--top", "-3"], "-k/--top -3: must be a positive integer"),
        (["--user", "20", "-k", "11"], "-k/--top 11: the checkpoint knows only 10 items"),
    ],
)  # fmt: skip
def test_recommend_refuses_unknown_users_and_bad_k_in_one_line(
    saved: _Saved, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _recommend(capsys, saved.path, *args)
    assert (code, out, err) == (2, "", f"secagg recommend: error: {message}\n")


def test_recommend_k_may_be_every_item(saved: _Saved, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _recommend(capsys, saved.path, "--user", "10", "-k", "10", "--json")
    served = json.loads(out)
    assert code == 0
    assert sorted(served["items"]) == sorted(set(_ITEM_IDS) - set(_RATED[10]))  # all 7 unseen


def test_recommend_a_movielens_file_with_ids_from_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rated = {user: [user, user + 1, user + 2] for user in range(1, 9)}  # users 1..8, items 1..10
    data = load_movielens(_write_u_data(tmp_path, rated))
    path = tmp_path / "model.pt"
    _train_and_save(data, path)
    code, out, err = _recommend(capsys, path, "--user", "8", "-k", "2", "--json")
    served = json.loads(out)
    assert (code, err, served["user"], served["user_index"]) == (0, "", 8, 7)
    assert not set(served["items"]) & {8, 9, 10}
    code, _, err = _recommend(capsys, path, "--user", "9")
    assert code == 2
    assert (
        err
        == "secagg recommend: error: user 9 is not in the checkpoint (it knows 8 users, ids 1..8)\n"
    )


def test_recommend_serves_an_old_checkpoint_without_id_maps_by_index(
    saved: _Saved, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = torch.load(saved.path, weights_only=True)
    del old["user_ids"], old["item_ids"]  # what secagg train --save wrote before the maps
    path = tmp_path / "old.pt"
    torch.save(old, path)
    checkpoint = load_checkpoint(path)
    assert not checkpoint.has_id_maps
    assert checkpoint.user_ids.tolist() == [0, 1, 2]
    assert checkpoint.item_ids.tolist() == list(range(10))

    code, out, err = _recommend(capsys, path, "--user", "2", "-k", "3", "--json")
    served = json.loads(out)
    assert code == 0
    assert (served["user"], served["user_index"], served["id_maps"]) == (2, 2, False)
    assert served["items"] == served["item_indices"]
    notes = err.splitlines()
    assert len(notes) == 1 and notes[0].startswith(
        f"secagg recommend: note: {path} was written before"
    )
    assert "0-based internal index" in notes[0]
    code, _, err = _recommend(capsys, path, "--user", "20")  # the file's id, unknown here
    assert code == 2
    assert err.splitlines()[-1] == (
        "secagg recommend: error: user 20 is not in the checkpoint (it knows 3 users, ids 0..2)"
    )


def test_load_checkpoint_refuses_id_maps_that_do_not_fit_the_model(
    saved: _Saved, tmp_path: Path
) -> None:
    stored = torch.load(saved.path, weights_only=True)
    path = tmp_path / "bad.pt"
    for key, value in [
        ("user_ids", torch.tensor([30, 10], dtype=torch.int64)),  # one id short
        ("user_ids", torch.tensor([30, 10, 10], dtype=torch.int64)),  # an id twice
        ("item_ids", torch.zeros(10)),  # floats
        ("item_ids", None),  # only one of the maps
    ]:
        broken = dict(stored)
        if value is None:
            del broken[key]
        else:
            broken[key] = value
        torch.save(broken, path)
        with pytest.raises(ParameterError, match="its id maps do not match its model"):
            load_checkpoint(path)


def test_save_checkpoint_refuses_id_maps_that_do_not_fit_the_model(
    saved: _Saved, tmp_path: Path
) -> None:
    path = tmp_path / "never.pt"
    items = saved.data.item_ids
    with pytest.raises(ParameterError, match="user_ids has shape \\(2,\\); the model has 3 users"):
        save_checkpoint(path, saved.trainer, model_name="mf", dim=4, seed=0,
                        user_ids=[30, 10], item_ids=items)  # fmt: skip
    with pytest.raises(ParameterError, match="user_ids holds an id twice"):
        save_checkpoint(path, saved.trainer, model_name="mf", dim=4, seed=0,
                        user_ids=[30, 10, 30], item_ids=items)  # fmt: skip
    with pytest.raises(ParameterError, match="item_ids must be integers"):
        save_checkpoint(path, saved.trainer, model_name="mf", dim=4, seed=0,
                        user_ids=[30, 10, 20], item_ids=[0.5] * 10)  # fmt: skip
    with pytest.raises(ParameterError, match="both user_ids and item_ids, or neither"):
        save_checkpoint(path, saved.trainer, model_name="mf", dim=4, seed=0, user_ids=[1, 2, 3])
    assert not path.exists()


@pytest.mark.parametrize(
    "args", [["--user", "20", "--user-index", "2"], [], ["--user", "abc"], ["-k", "3"]]
)
def test_recommend_needs_exactly_one_user_option(saved: _Saved, args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "--checkpoint", str(saved.path), *args])
    assert exit_info.value.code == 2
