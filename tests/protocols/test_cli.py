"""The ``secagg demo`` command: transcript, JSON fields, exit codes and argument errors."""

from __future__ import annotations

import json

import pytest

from protocols.cli import main


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code = main(["demo", *args, "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out)
    summary["_code"] = code
    return summary


@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_cli_demo_json_reports_exact_sum(capsys: pytest.CaptureFixture[str], protocol: str) -> None:
    s = _run_json(
        capsys,
        "--protocol",
        protocol,
        "--clients",
        "12",
        "--dim",
        "300",
        "--dropout",
        "0.25",
        "--through-wire",
    )
    assert s["_code"] == 0
    for key in ("protocol", "clients", "dim", "dropped", "exact", "seconds", "bytes"):
        assert key in s
    assert s["protocol"] == protocol and s["clients"] == 12 and s["dim"] == 300
    assert s["exact"] is True
    assert len(s["dropped"]) == 3  # type: ignore[arg-type]
    assert {"server", "client_mean", "client_max", "wall"} <= set(s["seconds"])  # type: ignore[arg-type]
    assert s["bytes"]["client_sent_mean"] > 0  # type: ignore[index]


def test_cli_demo_drop_at_round(capsys: pytest.CaptureFixture[str]) -> None:
    s = _run_json(capsys, "--clients", "10", "--dim", "50", "--dropout", "0.2", "--drop-at", "2")
    assert {d["round"] for d in s["dropped"]} == {2}  # type: ignore[union-attr,index]
    assert s["exact"] is True


def test_cli_demo_transcript_mentions_bit_exact_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--clients", "8", "--dim", "64", "--protocol", "secagg"]) == 0
    out = capsys.readouterr().out
    assert "bit for bit: YES" in out
    assert "What the server saw" in out


def test_cli_demo_below_threshold_aborts_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    s = _run_json(
        capsys,
        "--protocol",
        "secagg",
        "--clients",
        "10",
        "--dim",
        "20",
        "--dropout",
        "0.6",
        "--drop-at",
        "1",
    )
    assert s["_code"] == 1
    assert s["exact"] is False
    assert "below the threshold" in str(s["aborted"])


@pytest.mark.parametrize(
    "args",
    [
        ["--clients", "0"],
        ["--dim", "-3"],
        ["--dropout", "1.0"],
        ["--protocol", "rsa"],
        ["--drop-at", "7"],
    ],
)
def test_cli_demo_rejects_bad_arguments(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *args])
    assert exit_info.value.code == 2


def test_cli_demo_reports_parameter_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--clients", "1"]) == 2
    assert "at least 2 clients" in capsys.readouterr().err
