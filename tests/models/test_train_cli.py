"""``secagg train`` and ``secagg recommend`` end to end on a small synthetic data set."""

from __future__ import annotations

import argparse
import importlib
import json
import re
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
        ["train", "--protocol", "secagg+", "--rounds", "3", "--eval-every", "1",
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
    assert main(["train", "--protocol", "plain", "--rounds", "2", "--eval-every", "1", *SMALL]) == 0
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
    "args", [["--model", "svd"], ["--protocol", "rsa"], ["--rounds", "0"], ["--dropout", "1"]]
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
    args = ["train", "--protocol", "secagg", "--rounds", "2", "--dropout", "0.9", *SMALL]
    code = main([*args, "--json"] if as_json else args)
    err = capsys.readouterr().err
    assert code == 1
    message = err.strip().splitlines()[-1]
    assert message.startswith(
        "secagg train: error: all 2 rounds aborted, so the model was never updated"
    )
    assert "below" in message  # the backend's own reason: too few survivors
    assert "--dropout" in message
    assert "Traceback" not in err


def test_cli_train_with_some_aborted_rounds_still_succeeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["train", "--protocol", "plain", "--rounds", "2", "--dropout", "0.2", *SMALL])
    assert code == 0
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"hello\n", b"", b"PK\x03\x04 not a zip"])
def test_cli_recommend_file_that_is_not_a_checkpoint_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(content)
    assert main(["recommend", "--checkpoint", str(bogus), "--user", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"secagg recommend: error: {bogus} is not a checkpoint written by secagg train --save\n"
    )


def test_cli_train_one_client_per_round_is_refused_before_any_data_is_built(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["train", "--protocol", "secagg+", "--clients-per-round", "1", "--rounds", "1"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # not even the data line: nothing was built
    assert captured.err == (
        "secagg train: error: --clients-per-round 1: a secure sum needs at least 2 clients per "
        "round (one client's sum is its own update)\n"
    )


TINY = ["--users", "40", "--items", "200", "--clients-per-round", "4", "--dim", "2"]


def test_cli_train_aggregator_is_a_deprecated_alias_of_protocol(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--aggregator", "plain", "--rounds", "1", "--json", *TINY]) == 0
    captured = capsys.readouterr()
    assert (
        captured.err == "secagg train: warning: --aggregator is deprecated, use --protocol plain\n"
    )
    assert json.loads(captured.out.splitlines()[0])["aggregator"] == "plain"


def test_cli_train_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Train a recommender federatedly" in out
    assert "secagg train --protocol secagg+ --dp-epsilon 8 --dp-delta 1e-5" in out
    assert "--aggregator" not in out  # the deprecated alias is hidden
    parser = argparse.ArgumentParser()
    importlib.import_module("models.commands.train").add_arguments(parser)
    for action in parser._actions:
        if action.dest not in ("help", "aggregator"):
            assert action.help, f"{action.option_strings} has no help text"


def test_cli_train_defaults_are_the_shared_ones() -> None:
    from protocols.defaults import BACKEND_NAMES, DEFAULT_CLIP, DEFAULT_VALUE_BITS

    parser = argparse.ArgumentParser()
    importlib.import_module("models.commands.train").add_arguments(parser)
    args = parser.parse_args([])
    assert (args.clip, args.value_bits, args.protocol) == (
        DEFAULT_CLIP,
        DEFAULT_VALUE_BITS,
        "secagg+",
    )
    protocol = next(a for a in parser._actions if a.dest == "protocol")
    assert tuple(protocol.choices or ()) == BACKEND_NAMES
    assert parser.parse_args(["--rounds", "1e2", "--dim", "32.0"]).rounds == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--items", "100"],
            "--items 100 is too few: a synthetic user sees up to 60 items, and the evaluation "
            "ranks each held-out item against 99 the user never saw, so give --items 159 or more",
        ),
        (
            ["--users", "1"],
            "--users 1: federated training needs at least 2 users (one client each)",
        ),
        (
            ["--protocol", "paillier", "--dp-epsilon", "8"],
            "--dp-epsilon needs --protocol secagg or secagg+, not paillier: distributed DP adds "
            "its noise shares inside the masked sum",
        ),
        (
            ["--sparse", "--protocol", "paillier"],
            "--sparse runs over --protocol plain, secagg or secagg+, not paillier: the support "
            "sketch is summed in a 32-bit ring",
        ),
        (
            ["--sparse", "--dp-epsilon", "8"],
            "--sparse with --dp-epsilon: distributed DP does not cover the sparse rounds' "
            "support sketch yet; give one of them",
        ),
        (
            ["--value-bits", "53", "--clients-per-round", "4096"],
            "--value-bits 53 with --clients-per-round 4096 needs a 65-bit ring, and the largest "
            "is 64: lower --value-bits to 52 or fewer",
        ),
    ],
)
def test_cli_train_mistakes_name_the_flags_before_any_data_is_built(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["train", "--rounds", "1", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"secagg train: error: {message}\n"


def test_cli_train_dp_without_two_sure_survivors_names_the_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--dp-epsilon", "8", "--dropout", "0.8", "--rounds", "1", *TINY]
    assert main(["train", *args, "--json"]) == 2
    assert capsys.readouterr().err == (
        "secagg train: error: --dropout 0.8 leaves 1 of the 4 clients sampled per round "
        "(--clients-per-round) sure to survive; distributed DP needs at least 2: lower --dropout "
        "or raise --clients-per-round\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clip", "-1"], "argument --clip: must be a positive number, got -1"),
        (["--lr", "0"], "argument --lr: must be a positive number, got 0"),
        (["--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
        (
            ["--value-bits", "64"],
            "argument --value-bits: must be an integer in 1 .. 53 (the precision of a float64), "
            "got 64",
        ),
        (
            ["--rounds", "1.5"],
            "argument --rounds: must be a positive integer (a whole number such as 100000 or "
            "1e5), got '1.5'",
        ),
    ],
)
def test_cli_train_usage_errors_name_the_flag(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"secagg train: error: {message}"


def test_cli_train_paillier_says_how_long_it_will_take_before_it_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["train", "--protocol", "paillier", "--rounds", "1", "--json", *TINY])
    assert code == 0
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 1
    assert re.fullmatch(
        r"secagg train: note: --protocol paillier encrypts each client's \d+ shared parameters "
        r"every round; one 2-client round of that size took \d+\.\d s here, so 1 round of 4 "
        r"clients need about \d+ s for the encryption alone \(fewer --rounds or "
        r"--clients-per-round, a smaller --dim, or --protocol secagg\+ take less\)",
        notes[0],
    ), notes[0]


def test_cli_train_centralized_reference_shows_a_progress_bar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["train", "--protocol", "plain", "--rounds", "1", "--centralized", *TINY]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "centralized reference" in captured.err and "epoch" in captured.err
    assert "centralized mf (20 epochs on the pooled data, no privacy; " in captured.out
    assert "s): HR@10" in captured.out
    # --json keeps to JSON: no bar (the convention of every progress bar of secagg train).
    train = importlib.import_module("models.commands.train")
    assert train._progress_bar(argparse.Namespace(json=True), 20, "centralized", "epoch") is None


def test_cli_train_paillier_shows_its_steps_inside_each_round(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--protocol", "paillier", "--rounds", "1", *TINY]) == 0
    err = capsys.readouterr().err
    assert "paillier protocol steps" in err and "msg" in err


def test_cli_train_sparse_reports_the_rows_the_server_summed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["train", "--sparse", "--sparse-pool", "20", "--rounds", "2", "--eval-every", "2"]
    assert main([*args, "--dropout", "0.2", "--json", *SMALL]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for record in lines[:-1]:
        assert 20 <= record["announced_rows"] < 200
        assert record["survivors"] + len(record["dropped"]) == record["sampled"]
    assert main([*args, *SMALL]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("round"))
    assert "touched item rows are uploaded" in out and header.rstrip().endswith("rows")
