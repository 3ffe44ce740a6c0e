"""The ``secagg demo`` command: transcript, JSON fields, exit codes and argument errors.

The Paillier committee runs deal one real 2048-bit 3-of-5 key for the whole module: the demo's
own key dealer is wrapped so that the same arguments return the key it dealt first.
"""

from __future__ import annotations

import argparse
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
    """The key holder's minimum ignores ``--threshold`` (the command refuses it outright)."""
    args = build_parser().parse_args(
        ["demo", "--protocol", "paillier", "--clients", str(clients), "--threshold", "5"]
    )
    assert _round_policy(args).plan(range(clients)).threshold == expected


def test_cli_demo_threshold_above_neighbourhood_is_a_parameter_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--protocol", "secagg+", "--clients", "10", "--threshold", "20"]) == 2
    assert capsys.readouterr().err == (
        "secagg demo: error: --threshold 20 exceeds the 10 share holders of a neighbourhood (a "
        "client and its 9 neighbours, --degree): lower --threshold or raise --degree\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--degree", "1000", "--clients", "50"],
            "--degree 1000 must be below --clients 50: a client has at most 49 neighbours "
            "(--protocol secagg is the complete graph)",
        ),
        (
            ["--degree", "7"],
            "--degree 7 must be even and at least 2: each client has degree/2 neighbours on "
            "either side of the Harary ring",
        ),
        (
            ["--protocol", "secagg", "--degree", "4"],
            "--degree applies to --protocol secagg+ only (--protocol secagg masks on the complete "
            "graph: every client is a neighbour of every other)",
        ),
        (
            ["--threshold", "1"],
            "--threshold 1 must be at least 2: one share must never reveal a key",
        ),
        (
            ["--clients", "50", "--threshold", "60"],
            "--threshold 60 exceeds the 33 share holders of a neighbourhood (a client and its 32 "
            "neighbours, --degree): lower --threshold or raise --degree",
        ),
        (
            ["--protocol", "secagg", "--clients", "50", "--threshold", "51"],
            "--threshold 51 exceeds --clients 50: on the complete graph every client's secrets "
            "are shared among all the clients",
        ),
        (
            ["--dropout", "0.45"],
            "--dropout 0.45 is too high for --protocol secagg+: its graph is sized for that "
            "fraction of lost clients plus 0.05 colluding with the server, and once they reach "
            "half no threshold is both reachable and secure; use --dropout below 0.45, or "
            "--protocol secagg",
        ),
        (
            ["--clients", "1"],
            "--clients 1: a secure round needs at least 2 clients (one client's sum is its own "
            "input)",
        ),
        (
            ["--protocol", "paillier", "--threshold", "3"],
            "--threshold applies to --protocol secagg and secagg+ only: the Paillier key holder "
            "decrypts only a sum of a majority of --clients",
        ),
        (
            ["--value-bits", "53", "--clients", "4096"],
            "--value-bits 53 with --clients 4096 needs a 65-bit ring, and the largest is 64: "
            "lower --value-bits to 52 or fewer",
        ),
    ],
)
def test_cli_demo_mistakes_name_the_flags(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Every refused combination says what is wrong in the flags' terms, before any work."""
    assert main(["demo", "--dim", "10", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"secagg demo: error: {message}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--dim", "1e-3"],
            "argument --dim: must be a positive integer (a whole number such as 100000 or 1e5), "
            "got '1e-3'",
        ),
        (
            ["--clients", "1.5"],
            "argument --clients: must be a positive integer (a whole number such as 100000 or "
            "1e5), got '1.5'",
        ),
        (["--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
        (["--clip", "0"], "argument --clip: must be a positive number, got 0"),
        (
            ["--value-bits", "64"],
            "argument --value-bits: must be an integer in 1 .. 53 (the precision of a float64), "
            "got 64",
        ),
    ],
)
def test_cli_demo_usage_errors_name_the_flag(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *args])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"secagg demo: error: {message}"


def test_cli_demo_integers_take_scientific_notation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--protocol", "secagg", "--clients", "3e0", "--dim", "1e2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["clients"], summary["dim"]) == (3, 100)


def test_cli_demo_defaults_are_the_shared_ones() -> None:
    from protocols.defaults import BACKEND_NAMES, DEFAULT_CLIP, DEFAULT_VALUE_BITS

    args = build_parser().parse_args(["demo"])
    assert (args.clip, args.value_bits) == (DEFAULT_CLIP, DEFAULT_VALUE_BITS)
    assert demo.DEMO_PROTOCOLS == tuple(name for name in BACKEND_NAMES if name != "plain")


def test_cli_demo_help_describes_the_command_and_every_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "Run one real secure-aggregation round in-process" in out
    assert "secagg demo --clients 20 --dim 1e4 --dropout 0.2" in out
    assert "(default: 22)" in out and "(default: 1.0)" in out
    parser = argparse.ArgumentParser()
    demo.add_demo_arguments(parser)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, f"{action.option_strings} has no help text"


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
            "--decryption-threshold must be in 3 .. 5 for --decryptors 5, got 6: with at most "
            "half the members, two disjoint groups could each decrypt a different subset of one "
            "round",
        ),
        (
            ["--protocol", "paillier", "--decryptors", "1", "--decryption-threshold", "2"],
            "--decryption-threshold 2 needs a committee: with --decryptors 1 the single key "
            "holder decrypts alone",
        ),
        (
            ["--protocol", "secagg+", "--degree", "1000"],
            "--degree 1000 must be below --clients 6: a client has at most 5 neighbours "
            "(--protocol secagg is the complete graph)",
        ),
        (
            ["--protocol", "paillier", "--decryptors", "65"],
            "--decryptors must be in 1 .. 64, got 65",
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
    assert captured.err == f"secagg demo: error: {expected}\n"
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
