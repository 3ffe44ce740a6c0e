"""The ``secagg demo`` command: transcript, JSON fields, exit codes and argument errors.

The Paillier committee runs deal one real 2048-bit 3-of-5 key for the whole module: the demo's
own key dealer is wrapped so that the same arguments return the key it dealt first.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from protocols.cli import demo, main
from protocols.cli.app import build_parser
from protocols.cli.demo import _round_policy
from protocols.graph import corruption_bound
from secagg.hazmat.paillier import ThresholdKeyset, generate_threshold_keypair

COMMITTEE = ["--protocol", "paillier", "--decryptors", "5", "--decryption-threshold", "3"]
COMMITTEE_ROUND = [*COMMITTEE, "--key-bits", "2048", "--clients", "6", "--dim", "50"]


@pytest.fixture(scope="module")
def dealt_once() -> Callable[..., ThresholdKeyset]:
    """The demo's real threshold key dealer, dealing each committee shape only once."""
    return functools.cache(generate_threshold_keypair)


@pytest.fixture
def one_committee_key(
    monkeypatch: pytest.MonkeyPatch, dealt_once: Callable[..., ThresholdKeyset]
) -> Iterator[list[ThresholdKeyset]]:
    dealt: list[ThresholdKeyset] = []

    def deal(*args: Any, **kwargs: Any) -> ThresholdKeyset:
        keys = dealt_once(*args, **kwargs)
        dealt.append(keys)
        return keys

    monkeypatch.setattr(demo, "generate_threshold_keypair", deal)
    yield dealt


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


def test_cli_demo_paillier_committee_prints_a_verified_transcript(
    capsys: pytest.CaptureFixture[str], one_committee_key: list[ThresholdKeyset]
) -> None:
    assert main(["demo", *COMMITTEE_ROUND]) == 0
    out = capsys.readouterr().out
    (keys,) = one_committee_key
    assert (keys.public.decryptors, keys.public.threshold, keys.public.n.bit_length()) == (
        5,
        3,
        2048,
    )
    assert "Paillier round: 6 clients, d = 50, 2048-bit key" in out
    assert "ciphertexts under the key of any 3 of 5 decryptors" in out
    assert "decryptors [1, 2, 3] sent verified partial decryptions" in out
    assert "bit for bit: YES" in out


def test_cli_demo_paillier_committee_json_with_decryptor_dropouts(
    capsys: pytest.CaptureFixture[str], one_committee_key: list[ThresholdKeyset]
) -> None:
    everyone = _run_json(capsys, *COMMITTEE_ROUND, "--through-wire")
    s = _run_json(capsys, *COMMITTEE_ROUND, "--decryptor-dropouts", "2", "--through-wire")
    assert len(set(map(id, one_committee_key))) == 1  # one key dealt, used by both runs
    for summary in (everyone, s):
        assert summary["_code"] == 0
        assert summary["exact"] is True
        assert (summary["decryptors"], summary["decryption_threshold"]) == (5, 3)
        assert summary["one_decryption_per_decryptor"] is True
        assert summary["misbehaved"] == {}
    # Everyone answers: the first three valid partials are combined; the first two silent:
    # the next three.
    assert (everyone["decryptors_used"], everyone["decryptors_silent"]) == ([1, 2, 3], [])
    assert (s["decryptors_used"], s["decryptors_silent"]) == ([3, 4, 5], [1, 2])
    # Same clients, same uploads: the server received two partial decryptions fewer.
    assert everyone["dropped"] == s["dropped"]
    missing = everyone["bytes"]["server_received"] - s["bytes"]["server_received"]
    assert missing > 0 and missing % 2 == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [*COMMITTEE, "--decryptor-dropouts", "3"],
            "--decryptor-dropouts 3 leaves fewer than the --decryption-threshold 3 of 5 decryptors",
        ),
        (
            [*COMMITTEE, "--decryptor-dropouts", "5"],
            "--decryptor-dropouts 5 leaves fewer than the --decryption-threshold 3 of 5 decryptors",
        ),
        (
            ["--protocol", "paillier", "--decryptors", "5", "--decryption-threshold", "6"],
            "decryption_threshold must lie in 3 .. 5",
        ),
        (
            ["--protocol", "paillier", "--decryptors", "1", "--decryption-threshold", "2"],
            "a single key holder decrypts alone",
        ),
        (
            ["--protocol", "secagg+", "--degree", "1000"],
            "--degree 1000 must be below --clients 6: a client has at most 5 neighbours",
        ),
        (
            ["--protocol", "paillier", "--decryptors", "65"],
            "decryptors must lie in 1 .. 64",
        ),
        (
            ["--protocol", "secagg", "--decryptors", "3", "--decryptor-dropouts", "1"],
            "--decryptors, --decryptor-dropouts apply to --protocol paillier only",
        ),
    ],
)
def test_cli_demo_paillier_committee_errors_are_one_clean_line(
    capsys: pytest.CaptureFixture[str],
    one_committee_key: list[ThresholdKeyset],
    args: list[str],
    expected: str,
) -> None:
    code = main(["demo", *args, "--clients", "6", "--dim", "10"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("secagg: error: ")
    assert expected in captured.err
    assert "Traceback" not in captured.err
    # Refused before any key is dealt.
    assert one_committee_key == []


def test_cli_demo_decryptor_dropouts_accepts_its_default_explicitly() -> None:
    args = build_parser().parse_args(["demo", *COMMITTEE, "--decryptor-dropouts", "0"])
    assert args.decryptor_dropouts == 0


def test_cli_demo_refuses_zero_paillier_processes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--protocol", "paillier", "--processes", "0", "--clients", "6"])
    assert exit_info.value.code == 2
    assert "must be a positive integer, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--clients", "3", "--dropout", "0"], "no client was lost before its upload"),
        (
            ["--clients", "20", "--dropout", "0.1", "--drop-at", "1"],
            "pairwise masks of the 2 client(s) lost before their upload recovered",
        ),
    ],
)
def test_cli_demo_says_masks_were_recovered_only_when_someone_was_lost(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(["demo", "--protocol", "secagg", "--dim", "20", *args]) == 0
    assert expected in capsys.readouterr().out


def test_cli_demo_paillier_timing_table_names_its_own_steps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--protocol", "paillier", "--clients", "4", "--dim", "20"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("seconds"))
    assert header.split() == ["seconds", "encrypt+upload", "decryption"]
    assert any(line.startswith("decryptors") for line in out.splitlines())
    assert "advertise_keys" not in out
