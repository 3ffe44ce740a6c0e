"""``secagg train --dp-epsilon``: federated training with distributed DP, end to end and small."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import warnings

import numpy as np
import pytest

from models import (
    FederatedConfig,
    FederatedTrainer,
    LocalTrainingConfig,
    MatrixFactorization,
    leave_one_out_split,
    synthetic_interactions,
)
from models.commands.train import _Output, _RoundTable
from models.factory import AGGREGATORS, DP_BACKENDS, make_aggregator, make_dp_aggregator
from protocols.aggregators import make_aggregator as protocols_make_aggregator
from protocols.cli import main
from protocols.defaults import BACKEND_NAMES
from protocols.dp_aggregator import DistributedDPAggregator
from secagg.dp import PrivacyAccountant, choose_parameters
from secagg.errors import ParameterError

SMALL = ["--users", "60", "--items", "200", "--clients-per-round", "12", "--dim", "8"]
#: MF with dim 8 on 200 items shares 200 * 8 + 200 + 1 parameters.
SHARED = 1801

logging.getLogger("absl").setLevel(logging.ERROR)


def _library_epsilons(
    noise_multiplier: float, sampling_rate: float, survivors: list[int], expected: int
) -> list[float]:
    """Epsilon after each released round, straight from dp-accounting's RDP accountant and
    independently of secagg.dp: a round of s of the n noise shares has z * sqrt(s / n)."""
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    epsilons = []
    for s in survivors:
        gaussian = dp_accounting.GaussianDpEvent(noise_multiplier * math.sqrt(s / expected))
        if sampling_rate < 1.0:
            gaussian = dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian)
        accountant.compose(gaussian)
        epsilons.append(float(accountant.get_epsilon(1e-5)))
    return epsilons


def test_train_dp_json_reports_epsilon_every_round_as_the_accountant_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["train", "--protocol", "secagg", "--dp-epsilon", "8", "--dp-delta", "1e-5",
         "--dp-clip", "0.5", "--rounds", "3", "--eval-every", "1", "--dropout", "0.2",
         "--json", *SMALL]
    )  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rounds, summary = lines[:-1], lines[-1]
    assert [r["aggregator"] for r in rounds] == ["dp-secagg"] * 3
    epsilons = [r["epsilon"] for r in rounds]
    assert 0.0 < epsilons[0] < epsilons[1] < epsilons[2] <= 8.0
    # 12 sampled, round(0.2 * 12) = 2 dropping: at least 10 noise shares in every sum (a
    # dropout after its upload still adds its share).
    survivors = [r["survivors"] for r in rounds]
    assert all(10 <= s <= 12 for s in survivors)
    assert all(r["released"] is True for r in rounds)
    # Under DP the uploads carry no per-item counts: the server learns the noised sum alone.
    assert all(r["touched_items"] is None for r in rounds)

    privacy = summary["privacy"]
    assert summary["epsilon"] == privacy["epsilon"] == epsilons[-1]
    assert privacy["rounds"] == 3 and privacy["planned_rounds"] == 3
    assert privacy["delta"] == 1e-5 and privacy["target_epsilon"] == 8.0
    assert privacy["sampling_rate"] == pytest.approx(12 / 60)
    assert privacy["expected_clients"] == 10 and privacy["max_clients"] == 12
    assert privacy["clip_norm"] == 0.5 and privacy["mechanism"] == "discrete_gaussian"
    assert privacy["accountant"] == "RdpAccountant"
    assert str(privacy["library"]).startswith("dp-accounting")

    # The same parameters, calibrated and accounted again from scratch, give the same numbers.
    config = choose_parameters(
        target_epsilon=8.0,
        target_delta=1e-5,
        rounds=3,
        sampling_rate=12 / 60,
        expected_clients=10,
        dimension=SHARED,
        modulus_bits=32,
        clip_norm=0.5,
    )
    assert privacy["noise_multiplier"] == config.noise_multiplier
    assert privacy["survivors"] == survivors
    z = config.noise_multiplier
    assert [r["noise_multiplier"] for r in rounds] == [
        pytest.approx(z * math.sqrt(s / 10), rel=1e-15) for s in survivors
    ]
    # Each round at its own noise: never below what dp-accounting gives for the released sums,
    # and at most the planned epsilon (every sum held at least the planned noise).
    independent = _library_epsilons(z, 12 / 60, survivors, 10)
    assert epsilons == pytest.approx(independent, rel=1e-12)
    accountant = PrivacyAccountant.for_config(config, sampling_rate=12 / 60, delta=1e-5)
    assert all(e <= accountant.epsilon_after(k) * (1 + 1e-12) for k, e in enumerate(epsilons, 1))


def test_train_dp_table_has_an_epsilon_column_and_a_privacy_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["train", "--protocol", "secagg+", "--dp-epsilon", "4", "--dp-mechanism", "skellam",
         "--rounds", "2", "--eval-every", "1", *SMALL]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("round"))
    assert header.split()[-2:] == ["survivors", "epsilon"]
    rows = [line.split() for line in lines[lines.index(header) + 1 :] if line[:5].strip().isdigit()]
    assert [int(row[0]) for row in rows] == [1, 2]
    # 12 sampled, round(0.1 * 12) = 1 dropping: 11 or 12 noise shares, as the server summed.
    for row in rows:
        assert row[1] == row[-2] and int(row[-2]) in (11, 12)
    assert 0.0 < float(rows[0][-1]) < float(rows[1][-1]) <= 4.0
    assert "distributed DP (skellam)" in out
    assert "over dp-secagg+" in out
    assert "privacy spent: epsilon" in out and "RdpAccountant" in out
    assert re.search(r"survivors per released round 1[12]-1[12], each of at least 11", out)
    assert "withheld rounds cost nothing" in out


@pytest.mark.parametrize("backend", ["plain", "paillier"])
def test_train_dp_refuses_backends_without_masking(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--protocol", backend, "--dp-epsilon", "8", "--rounds", "1", *SMALL])
    assert code == 2
    assert "--protocol secagg or secagg+" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args", [["--dp-epsilon", "0"], ["--dp-epsilon", "-1"], ["--dp-delta", "1"],
             ["--dp-clip", "0"], ["--dp-mechanism", "laplace"], ["--server-lr", "0"]]
)  # fmt: skip
def test_train_dp_rejects_bad_arguments(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2


def test_train_without_dp_reports_no_epsilon(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--protocol", "plain", "--rounds", "1", "--json", *SMALL]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["epsilon"] is None
    assert lines[0]["released"] is None and lines[0]["noise_multiplier"] is None
    # Without DP the recipe's uploads carry per-item counts, which the server sees.
    assert isinstance(lines[0]["touched_items"], int) and 0 < lines[0]["touched_items"] <= 200
    assert lines[-1]["epsilon"] is None and lines[-1]["privacy"] is None


def test_federated_trainer_applies_the_private_sum() -> None:
    data = synthetic_interactions(40, 200, seed=1)
    split = leave_one_out_split(data, seed=1)
    model = MatrixFactorization(40, 200, 4, seed=1)
    aggregator = DistributedDPAggregator(
        target_epsilon=8.0,
        target_delta=1e-5,
        rounds=2,
        sampling_rate=10 / 40,
        expected_clients=10,
        dimension=model.num_shared_parameters(),
        clip_norm=0.5,
    )
    config = FederatedConfig(
        rounds=2,
        clients_per_round=10,
        local=LocalTrainingConfig(objective="bpr", epochs=1),
        item_learning_rate=0.3,
        eval_every=0,
        seed=1,
    )
    trainer = FederatedTrainer(model, split.train, aggregator, config, evaluation=split)
    before = trainer.server.broadcast().copy()
    history = trainer.run()
    assert [len(r.survivors) for r in history.records] == [10, 10]
    assert not any(r.aborted for r in history.records)
    assert aggregator.rounds_done == 2
    assert aggregator.epsilon_spent <= 8.0
    assert not np.array_equal(before, trainer.server.broadcast())


def test_withheld_rounds_are_reported_and_cost_nothing() -> None:
    """Rounds whose dropouts leave fewer than expected_clients uploads are aborted before any
    unmasking; the JSON lines say so (released false, no noise multiplier) and the epsilon
    composes the released rounds only, each at its own survivor count."""
    data = synthetic_interactions(40, 200, seed=2)
    split = leave_one_out_split(data, seed=2)
    model = MatrixFactorization(40, 200, 2, seed=2)
    aggregator = DistributedDPAggregator(
        target_epsilon=8.0,
        target_delta=1e-5,
        rounds=6,
        sampling_rate=1.0,  # no amplification by sampling: fast, and an upper bound
        expected_clients=8,
        max_clients=10,
        dimension=model.num_shared_parameters(),
        clip_norm=0.5,
    )
    config = FederatedConfig(
        rounds=6,
        clients_per_round=10,
        local=LocalTrainingConfig(objective="bpr", epochs=1),
        dropout_fraction=0.3,  # 3 of 10 drop: released only if one of them had uploaded
        eval_every=0,
        seed=3,
    )
    trainer = FederatedTrainer(model, split.train, aggregator, config, evaluation=split)
    stream = io.StringIO()
    table = _RoundTable(_Output(as_json=True, stream=stream), aggregator.name, aggregator, None)
    history = trainer.run(on_round=table.show)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    released = [line for line in lines if line["released"]]
    withheld = [line for line in lines if not line["released"]]
    assert released and withheld, "seed 3 must give both kinds of round"
    assert [line["aborted"] for line in withheld] == [True] * len(withheld)
    assert all(line["noise_multiplier"] is None for line in withheld)
    survivors = [line["survivors"] for line in released]
    assert all(s >= 8 for s in survivors)
    assert aggregator.round_survivors == tuple(survivors)
    assert len(history.records) == 6
    # A withheld round leaves the epsilon where it was.
    epsilons = [line["epsilon"] for line in lines]
    for before, line in zip([0.0, *epsilons], lines, strict=False):
        assert (line["epsilon"] == before) is (not line["released"])
    z = aggregator.config.noise_multiplier
    assert epsilons[-1] == pytest.approx(_library_epsilons(z, 1.0, survivors, 8)[-1], rel=1e-12)


def test_make_dp_aggregator_needs_two_guaranteed_survivors() -> None:
    with pytest.raises(ParameterError, match="sure to survive"):
        make_dp_aggregator(
            "secagg",
            epsilon=8.0,
            delta=1e-5,
            rounds=1,
            clients_per_round=3,
            population=60,
            dropout=0.5,
            dimension=10,
            clip_norm=1.0,
        )


def test_models_factory_uses_the_shared_backend_names_and_factory() -> None:
    """``secagg train`` chooses from the one set of names, mapped once, in protocols."""
    assert AGGREGATORS == BACKEND_NAMES
    assert make_aggregator is protocols_make_aggregator
    assert DP_BACKENDS == ("secagg", "secagg+")


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_make_dp_aggregator_runs_on_the_named_masking_backend(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated graph name on the way
        aggregator = make_dp_aggregator(
            name,
            epsilon=8.0,
            delta=1e-5,
            rounds=1,
            clients_per_round=6,
            population=60,
            dropout=0.0,
            dimension=10,
            clip_norm=1.0,
        )
    assert aggregator.protocol == aggregator.policy.protocol == name
    assert aggregator.name == f"dp-{name}"
