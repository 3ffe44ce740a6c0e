"""``protocols.bench.flower_reference``: Flower absent is said, Flower halting is reported."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from protocols import bench

if TYPE_CHECKING:
    from conftest import RunMain

FLOWER_INSTALLED = bench.flower_status()[0]


def test_bench_without_flower_says_why_and_has_no_column(
    flower_missing: str, run_main: RunMain
) -> None:
    code, out, _ = run_main(
        ["--protocol", "plain", "secagg+", "--reference", "flower", "--clients", "3", "--dims", "8",
         "--dropouts", "0", "--repeats", "1", "--no-memory", "--no-progress", "--json", "-"]
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["flower"] == {"available": False, "reason": flower_missing}
    assert "pip install secagg[flower]" in flower_missing
    assert all(
        r["protocol"] != bench.FLOWER and r["ratio_to_flower"] is None for r in doc["records"]
    )


@pytest.mark.skipif(not FLOWER_INSTALLED, reason="flwr is not installed")
def test_bench_reports_flower_halting_on_early_dropout_without_failing(run_main: RunMain) -> None:
    code, out, _ = run_main(
        ["--protocol", "plain", "secagg+", "--reference", "flower", "--clients", "4", "--dims", "8",
         "--dropouts", "0.25", "--drop-at", "1", "--repeats", "1", "--no-memory",
         "--no-progress", "--json", "-"]
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 0  # Only this project's protocols decide the exit code.
    status = {r["protocol"]: (r["status"], r["error"]) for r in doc["records"]}
    assert status["secagg+"] == ("ok", None)
    assert status[bench.FLOWER][0] == "failed"
    assert "Flower's server halted" in status[bench.FLOWER][1]
