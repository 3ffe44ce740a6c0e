"""``secagg train`` and ``secagg recommend`` end to end on a small synthetic data set."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest

from protocols.cli import main
from protocols.cli.app import MODELS_COMMANDS

SMALL = ["--users", "60", "--items", "200", "--clients-per-round", "12", "--dim", "8"]


def test_cli_train_json_lines_plot_and_recommend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot, checkpoint = tmp_path / "curve.png", tmp_path / "model.pt"
    code = main(
        ["train", "--aggregator", "secagg+", "--rounds", "3", "--eval-every", "1",
         "--dropout", "0.2", "--json", "--plot", str(plot), "--save", str(checkpoint), *SMALL]
    )  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rounds, summary = lines[:-1], lines[-1]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    for record in rounds:
        assert record["aggregator"] == "secagg+"
        assert record["survivors"] + len(record["dropped"]) == record["sampled"]
        assert 0.0 <= record["hr@10"] <= 1.0
    assert summary["summary"] is True and summary["rounds"] == 3
    assert summary["hr@10"] == rounds[-1]["hr@10"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["recommend", "--checkpoint", str(checkpoint), "--user", "5", "-k", "4",
                 "--json"]) == 0  # fmt: skip
    served = json.loads(capsys.readouterr().out)
    assert served["user"] == 5 and len(served["items"]) == 4
    scores = served["scores"]
    assert scores == sorted(scores, reverse=True)


def test_cli_train_table_reports_server_view(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["train", "--aggregator", "plain", "--rounds", "2", "--eval-every", "1", *SMALL]) == 0
    )
    out = capsys.readouterr().out
    assert "popularity HR@10" in out
    assert "server summed" in out
    assert "done in" in out


def test_cli_recommend_missing_checkpoint_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", "--checkpoint", str(tmp_path / "none.pt"), "--user", "0"]) == 2
    assert "secagg train --save" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args", [["--model", "svd"], ["--aggregator", "rsa"], ["--rounds", "0"], ["--dropout", "1"]]
)
def test_cli_train_rejects_bad_arguments(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2


def test_cli_train_missing_data_path_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--data", str(tmp_path / "nope"), "--rounds", "1"]) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_models_commands_offer_add_arguments_and_run() -> None:
    """Every module ``secagg`` dispatches to by name has the interface the dispatcher calls."""
    for name, module_name in MODELS_COMMANDS.items():
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"secagg {name}")
        module.add_arguments(parser)
        assert callable(module.run)
        assert "--json" in parser.format_help()


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_train_whose_every_round_aborted_fails_and_says_why(
    capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    # 90% of 12 clients drop: no round keeps the threshold, so the model never moves.
    args = ["train", "--aggregator", "secagg", "--rounds", "2", "--dropout", "0.9", *SMALL]
    code = main([*args, "--json"] if as_json else args)
    err = capsys.readouterr().err
    assert code == 1
    message = err.strip().splitlines()[-1]
    assert message.startswith("secagg: error: all 2 rounds aborted, so the model was never updated")
    assert "below" in message  # the backend's own reason: too few survivors
    assert "--dropout" in message
    assert "Traceback" not in err


def test_cli_train_with_some_aborted_rounds_still_succeeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["train", "--aggregator", "plain", "--rounds", "2", "--dropout", "0.2", *SMALL])
    assert code == 0
    assert "secagg: error" not in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"hello\n", b"", b"PK\x03\x04 not a zip"])
def test_cli_recommend_file_that_is_not_a_checkpoint_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(content)
    assert main(["recommend", "--checkpoint", str(bogus), "--user", "0"]) == 2
    err = capsys.readouterr().err
    assert err == f"secagg: error: {bogus} is not a checkpoint written by secagg train --save\n"


def test_cli_train_one_client_per_round_is_refused_before_any_data_is_built(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["train", "--aggregator", "secagg+", "--clients-per-round", "1", "--rounds", "1"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # not even the data line: nothing was built
    assert captured.err == (
        "secagg: error: --clients-per-round 1: a secure sum needs at least 2 clients per round "
        "(one client's sum is its own update)\n"
    )
