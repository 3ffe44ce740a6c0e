"""``protocols.bench.plots``: four PNG files from a tiny run (needs matplotlib)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import BenchRun

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
def test_bench_writes_four_png_plots(tiny: BenchRun) -> None:
    names = {p.name for p in tiny.plot_dir.glob("*.png")}
    assert names == {"time_vs_d.png", "time_vs_n.png", "bytes_vs_d.png", "dropout_recovery.png"}
    for path in tiny.plot_dir.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
