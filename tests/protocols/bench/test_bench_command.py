"""``protocols.bench.command``: the standalone command's exit codes and its options."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import pytest

from protocols import bench

if TYPE_CHECKING:
    from conftest import RunMain


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocols", "rot13"], "unknown protocol 'rot13'"),
        (["--dims", "0"], "d must be a positive integer, got 0"),
        (["--dims", "-5"], "d must be a positive integer"),
    ],
)
def test_bench_main_reports_bad_argument_with_exit_code_2(
    argv: list[str], message: str, run_main: RunMain
) -> None:
    code, out, err = run_main(argv)
    assert code == 2 and out == ""
    assert err.startswith("secagg bench: error: ") and message in err


def test_bench_help_lists_every_option() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as raised:
        bench.main(["--help"])
    assert raised.value.code == 0
    text = out.getvalue()
    assert text.startswith("usage: secagg bench")
    flags = ["--preset", "--protocols", "--clients", "--dims", "--dropouts", "--drop-at",
             "--repeats", "--threshold", "--degree", "--value-bits", "--clip", "--key-bits",
             "--paillier-max-dim", "--phe-max-dim", "--phe-clients", "--time-budget",
             "--no-memory", "--no-flower", "--no-progress", "--seed", "--json", "--csv",
             "--plot-dir"]  # fmt: skip
    assert [flag for flag in flags if flag not in text] == []
