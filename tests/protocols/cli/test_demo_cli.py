"""The ``secagg demo`` command: transcript, JSON fields, exit codes and argument errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocols.cli import main
from protocols.cli.app import build_parser
from protocols.cli.demo import _round_policy
from protocols.graph import corruption_bound


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["demo", *args, "--json"])
    out = capsys.readouterr().out
    summary: dict[str, Any] = json.loads(out)
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
    assert len(s["dropped"]) == 3
    assert {"server", "client_mean", "client_max", "wall"} <= set(s["seconds"])
    assert s["bytes"]["client_sent_mean"] > 0


def test_cli_demo_drop_at_round(capsys: pytest.CaptureFixture[str]) -> None:
    s = _run_json(capsys, "--clients", "10", "--dim", "50", "--dropout", "0.2", "--drop-at", "2")
    assert {d["round"] for d in s["dropped"]} == {2}
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
        ["--threat-model", "paranoid"],
    ],
)
def test_cli_demo_rejects_bad_arguments(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *args])
    assert exit_info.value.code == 2


def test_cli_demo_reports_parameter_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--clients", "1"]) == 2
    assert "at least 2 clients" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--protocol", "secagg", "--clients", "12"], (11, 7)),
        (["--protocol", "secagg", "--clients", "50", "--threshold", "7"], (49, 7)),
        (["--protocol", "secagg", "--clients", "50", "--degree", "4"], (49, 26)),
        (["--protocol", "secagg+", "--clients", "50"], (32, 18)),
        (["--protocol", "secagg+", "--clients", "50", "--dropout", "0"], (26, 16)),
        (["--protocol", "secagg+", "--clients", "200", "--dropout", "0.3"], (64, 24)),
        (["--protocol", "secagg+", "--clients", "1000"], (36, 19)),
        (["--protocol", "secagg+", "--clients", "50", "--degree", "10"], (10, 6)),
        (
            ["--protocol", "secagg+", "--clients", "50", "--degree", "10", "--threshold", "4"],
            (10, 4),
        ),
        (
            ["--protocol", "secagg+", "--clients", "300", "--dropout", "0.2", "--threshold", "9"],
            (48, 9),
        ),
    ],
)
def test_cli_demo_graph_and_threshold_are_unchanged(
    args: list[str], expected: tuple[int, int]
) -> None:
    """(degree, threshold) the demo ran with before the round planner existed: semi-honest."""
    parsed = build_parser().parse_args(["demo", *args, "--threat-model", "semi-honest"])
    plan = _round_policy(parsed).plan(range(parsed.clients))
    assert (plan.degree, plan.threshold) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--protocol", "secagg", "--clients", "12"], (11, 7)),
        (["--protocol", "secagg", "--clients", "50"], (49, 27)),
        (["--protocol", "secagg+", "--clients", "50"], (32, 18)),
        (["--protocol", "secagg+", "--clients", "50", "--dropout", "0"], (26, 16)),
        (["--protocol", "secagg+", "--clients", "200", "--dropout", "0.3"], (199, 106)),
        (["--protocol", "secagg+", "--clients", "1000"], (86, 58)),
        (["--protocol", "secagg+", "--clients", "50", "--degree", "10"], (10, 7)),
    ],
)
def test_cli_demo_active_thresholds_exceed_half_of_holders_and_colluders(
    args: list[str], expected: tuple[int, int]
) -> None:
    """The default (active) demo plans t > (k + 1 + c) / 2 for c colluders per neighbourhood,
    never below the semi-honest threshold."""
    parsed = build_parser().parse_args(["demo", *args])
    assert parsed.threat_model == "active"
    policy = _round_policy(parsed)
    degree, threshold = policy.degree_for(parsed.clients), policy.threshold_for(parsed.clients)
    assert (degree, threshold) == expected
    holders = degree + 1
    colluders = corruption_bound(holders, parsed.clients, policy.corrupt_fraction)
    assert 2 * threshold > holders + colluders
    semi = _round_policy(
        build_parser().parse_args(["demo", *args, "--threat-model", "semi-honest"])
    )
    if semi.degree_for(parsed.clients) == degree:
        assert threshold >= semi.threshold_for(parsed.clients)


@pytest.mark.parametrize(("clients", "expected"), [(2, 2), (3, 2), (10, 6), (51, 26)])
def test_cli_demo_paillier_min_contributors_are_a_majority(clients: int, expected: int) -> None:
    """The key holder's minimum ignores ``--threshold``, as it always did."""
    args = build_parser().parse_args(
        ["demo", "--protocol", "paillier", "--clients", str(clients), "--threshold", "5"]
    )
    assert _round_policy(args).plan(range(clients)).threshold == expected


def test_cli_demo_threshold_above_neighbourhood_is_a_parameter_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--protocol", "secagg+", "--clients", "10", "--threshold", "20"]) == 2
    assert "threshold 20" in capsys.readouterr().err
