"""``secagg train --dp-epsilon``: federated training with distributed DP, end to end and small."""

from __future__ import annotations

import json
import logging

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
from models.factory import make_dp_aggregator
from protocols.cli import main
from protocols.dp_aggregator import DistributedDPAggregator
from secagg.dp import PrivacyAccountant, choose_parameters
from secagg.errors import ParameterError

SMALL = ["--users", "60", "--items", "200", "--clients-per-round", "12", "--dim", "8"]
#: MF with dim 8 on 200 items shares 200 * 8 + 200 + 1 parameters.
SHARED = 1801

logging.getLogger("absl").setLevel(logging.ERROR)


def _library_epsilon(noise_multiplier: float, sampling_rate: float, rounds: int) -> float:
    """Epsilon straight from dp-accounting's RDP accountant, independently of secagg.dp."""
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    event = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(1e-5))


def test_train_dp_json_reports_epsilon_every_round_as_the_accountant_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["train", "--aggregator", "secagg", "--dp-epsilon", "8", "--dp-delta", "1e-5",
         "--dp-clip", "0.5", "--rounds", "3", "--eval-every", "1", "--dropout", "0.2",
         "--json", *SMALL]
    )  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rounds, summary = lines[:-1], lines[-1]
    assert [r["aggregator"] for r in rounds] == ["dp-secagg"] * 3
    epsilons = [r["epsilon"] for r in rounds]
    assert 0.0 < epsilons[0] < epsilons[1] < epsilons[2] <= 8.0
    # 12 sampled, round(0.2 * 12) = 2 dropping: at least 10 noise shares in every sum.
    assert all(r["survivors"] >= 10 for r in rounds)

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
    accountant = PrivacyAccountant.for_config(config, sampling_rate=12 / 60, delta=1e-5)
    assert epsilons == [accountant.epsilon_after(k) for k in (1, 2, 3)]
    assert epsilons[-1] == pytest.approx(
        _library_epsilon(config.noise_multiplier, 12 / 60, 3), rel=1e-9
    )


def test_train_dp_table_has_an_epsilon_column_and_a_privacy_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["train", "--aggregator", "secagg+", "--dp-epsilon", "4", "--dp-mechanism", "skellam",
         "--rounds", "2", "--eval-every", "1", *SMALL]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("round"))
    assert header.split()[-1] == "epsilon"
    assert "distributed DP (skellam)" in out
    assert "over dp-secagg+" in out
    assert "privacy spent: epsilon" in out and "RdpAccountant" in out


@pytest.mark.parametrize("backend", ["plain", "paillier"])
def test_train_dp_refuses_backends_without_masking(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--aggregator", backend, "--dp-epsilon", "8", "--rounds", "1", *SMALL])
    assert code == 2
    assert "--aggregator secagg or secagg+" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args", [["--dp-epsilon", "0"], ["--dp-epsilon", "-1"], ["--dp-delta", "1"],
             ["--dp-clip", "0"], ["--dp-mechanism", "laplace"], ["--server-lr", "0"]]
)  # fmt: skip
def test_train_dp_rejects_bad_arguments(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2


def test_train_without_dp_reports_no_epsilon(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--aggregator", "plain", "--rounds", "1", "--json", *SMALL]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["epsilon"] is None
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
