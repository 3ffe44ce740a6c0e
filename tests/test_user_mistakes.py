"""No user mistake ends in a traceback: each gets one line that says what was wrong.

The table is the list of mistakes new users made (issue 13) and their kin. Each runs through the
``secagg`` entry point in-process, so an exception that escaped would fail the test; each must
exit non-zero and end with ``secagg <command>: error: ...`` naming the user's own terms (the
flag, the file and line).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocols.cli.app import main

SMALL = ["--users", "40", "--items", "160", "--dim", "4", "--rounds", "1"]


@dataclass(frozen=True)
class Mistake:
    """A command line with a mistake, what it must say, and its exit status."""

    name: str
    argv: tuple[str, ...]
    says: tuple[str, ...]
    status: int = 2

    def __str__(self) -> str:
        return self.name


def _files(tmp: Path) -> dict[str, str]:
    """Bad input files, written into ``tmp``; their paths by name."""
    (tmp / "u.data").write_text("1\t1\t5\t0\n2\t1\t99\t1\n", encoding="utf-8")
    (tmp / "neg" / "u.data").parent.mkdir()
    (tmp / "neg" / "u.data").write_text("1\t1\t5\t0\n-5\t2\t4\t1\n", encoding="utf-8")
    (tmp / "ratings.txt").write_text("1::1::5::0\n", encoding="utf-8")
    (tmp / "not-a-checkpoint.pt").write_bytes(b"this is not a checkpoint\n")
    (tmp / "keys").mkdir()
    (tmp / "keys" / "roster.txt").write_text("taken\n", encoding="utf-8")
    return {
        "rating": str(tmp / "u.data"),
        "negative": str(tmp / "neg" / "u.data"),
        "unnamed": str(tmp / "ratings.txt"),
        "checkpoint": str(tmp / "not-a-checkpoint.pt"),
        "keys": str(tmp / "keys"),
        "missing": str(tmp / "no-such-file.data"),
    }


def mistakes(files: Mapping[str, str]) -> list[Mistake]:
    """The table of mistakes."""
    return [
        Mistake("every round aborted", ("train", "--dropout", "0.45", *SMALL), ("abort",), 1),
        Mistake("demo dropout too high", ("demo", "--dropout", "0.9"), ("--dropout",)),
        Mistake("degree too large", ("demo", "--degree", "1000", "--clients", "50"), ("--degree",)),
        Mistake(
            "one client per round", ("train", "--clients-per-round", "1"), ("--clients-per-round",)
        ),
        Mistake("one demo client", ("demo", "--clients", "1"), ("--clients",)),
        Mistake("fractional count", ("demo", "--dim", "1.5"), ("--dim",)),
        Mistake("negative seed", ("train", "--seed", "-1", *SMALL), ("--seed",)),
        Mistake("unknown flag", ("demo", "--bogus"), ("--bogus",)),
        Mistake("unknown model", ("train", "--model", "gpt"), ("--model",)),
        Mistake("rating of 99", ("train", "--data", files["rating"]), ("u.data", "line 2")),
        Mistake("negative user id", ("train", "--data", files["negative"]), ("u.data", "line 2")),
        Mistake("format not told", ("train", "--data", files["unnamed"]), ("--data-format",)),
        Mistake("missing data file", ("train", "--data", files["missing"]), ("no-such-file",)),
        Mistake(
            "DP on paillier",
            ("train", "--protocol", "paillier", "--dp-epsilon", "8"),
            ("--dp-epsilon",),
        ),
        Mistake(
            "delta above 1", ("train", "--dp-epsilon", "8", "--dp-delta", "2"), ("--dp-delta",)
        ),
        Mistake(
            "committee without a majority",
            ("demo", "--protocol", "paillier", "--decryptors", "5", "--decryption-threshold", "2"),
            ("--decryption-threshold",),
        ),
        Mistake(
            "too many silent decryptors",
            ("demo", "--protocol", "paillier", "--decryptors", "5", "--decryptor-dropouts", "3"),
            ("--decryptor-dropouts",),
        ),
        Mistake(
            "not a checkpoint",
            ("recommend", "--checkpoint", files["checkpoint"], "--user", "1"),
            ("not-a-checkpoint.pt",),
        ),
        Mistake(
            "missing checkpoint",
            ("recommend", "--checkpoint", files["missing"], "--user", "1"),
            ("no-such-file",),
        ),
        Mistake("keys over keys", ("keys", files["keys"], "--clients", "4"), ("roster.txt",)),
        Mistake("bench's old name", ("bench", "--protocol", "paillier-djn"), ("--randomness",)),
        Mistake("value bits too wide", ("demo", "--value-bits", "60"), ("--value-bits",)),
    ]


def _run(argv: tuple[str, ...]) -> int:
    try:
        return main(list(argv))
    except SystemExit as error:  # argparse's own usage errors
        return int(error.code or 0)


#: The mistakes' names (the table without its files), for the test ids.
NAMES = [m.name for m in mistakes(defaultdict(str))]


@pytest.mark.parametrize("name", NAMES)
def test_no_user_mistake_ends_in_a_traceback(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mistake = next(m for m in mistakes(_files(tmp_path)) if m.name == name)
    status = _run(mistake.argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == mistake.status, f"{mistake}: exit {status}\n{captured.err}"
    assert "Traceback" not in captured.err + captured.out, mistake.name
    assert lines, f"{mistake}: nothing said on stderr"
    command = mistake.argv[0]
    if status == 2:
        assert lines[-1].startswith(f"secagg {command}: error: "), f"{mistake}: {lines[-1]}"
    said = "\n".join(lines)
    for words in mistake.says:
        assert words in said, f"{mistake}: {words!r} not in {said!r}"
