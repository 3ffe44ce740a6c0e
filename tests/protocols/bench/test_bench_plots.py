"""``protocols.bench.plots`` and ``protocols.bench.style``: what the figures hold, not pixels.

The figures of the tiny run are rebuilt from its JSON document and read back as matplotlib
objects: every line's colour is its backend's in every figure, SecAgg and SecAgg+ differ in
marker and width and SecAgg+ is drawn on top, the legend lies outside every axes, an axis with
few grid values has a tick at each and no other, and Paillier's last round is its decryption.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from protocols.bench.plots import FIGURE_NAMES, figures, phase_name
from protocols.bench.style import BACKEND_COLOURS, backend_of, series_style
from protocols.defaults import BACKEND_NAMES
from secagg.errors import ParameterError

if TYPE_CHECKING:
    from conftest import BenchRun

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")


def _lines(figure: Any) -> Iterator[tuple[str, Any]]:
    """(legend label, data line) of every plotted series of ``figure``."""
    for axis in figure.axes:
        for container in axis.containers:
            yield container.get_label(), container.lines[0]


def _protocol(label: str) -> str:
    return label.split(":")[0].split()[0]


@pytest.fixture(scope="module")
def built(tiny: BenchRun) -> dict[str, Any]:
    if not HAS_MATPLOTLIB:
        pytest.skip("matplotlib is not installed")
    return dict(figures(tiny.document))


@needs_matplotlib
def test_bench_writes_four_png_plots(tiny: BenchRun) -> None:
    names = {p.name for p in tiny.plot_dir.glob("*.png")}
    assert names == set(FIGURE_NAMES)
    for path in tiny.plot_dir.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_backend_has_its_own_colour() -> None:
    assert set(BACKEND_NAMES) | {"phe", "flower"} == set(BACKEND_COLOURS)
    assert len(set(BACKEND_COLOURS.values())) == len(BACKEND_COLOURS)
    assert backend_of("paillier-djn") == backend_of("paillier-fresh") == "paillier"
    assert backend_of("flower-secagg+") == "flower" and backend_of("dp-secagg+") == "secagg+"
    with pytest.raises(ParameterError, match="no plot style for 'rot13'"):
        backend_of("rot13")


def test_variants_keep_the_colour_and_change_the_line() -> None:
    semi, active = series_style("secagg+", "semi-honest"), series_style("secagg+", "active")
    assert semi.colour == active.colour and semi.linestyle != active.linestyle
    fresh, djn = series_style("paillier-fresh"), series_style("paillier-djn")
    assert fresh.colour == djn.colour and fresh.marker != djn.marker


@needs_matplotlib
def test_a_backend_has_one_colour_in_every_figure(built: dict[str, Any]) -> None:
    seen: dict[str, set[str]] = {}
    for figure in built.values():
        for label, line in _lines(figure):
            seen.setdefault(backend_of(_protocol(label)), set()).add(line.get_color())
    assert {"plain", "secagg", "secagg+", "paillier", "phe", "flower"} <= set(seen)
    assert seen == {backend: {BACKEND_COLOURS[backend]} for backend in seen}


@needs_matplotlib
def test_secagg_plus_is_drawn_visibly_on_top_of_secagg(built: dict[str, Any]) -> None:
    """At n = 4 both use the complete graph: their lines coincide, so they must differ."""
    for figure in built.values():
        lines = {label.split(":")[0]: line for label, line in _lines(figure)}
        below, above = lines["secagg semi-honest"], lines["secagg+ semi-honest"]
        assert below.get_marker() != above.get_marker()
        assert below.get_linewidth() > above.get_linewidth()
        assert below.get_markersize() > above.get_markersize()
        assert below.get_zorder() < above.get_zorder()
        assert lines["secagg+ active"].get_linestyle() != above.get_linestyle()


@needs_matplotlib
def test_the_legend_lies_outside_every_axes(built: dict[str, Any]) -> None:
    for name, figure in built.items():
        assert len(figure.legends) == 1, name
        assert all(axis.get_legend() is None for axis in figure.axes), name
        figure.draw_without_rendering()  # lays the figure out, as saving it does
        legend = figure.legends[0].get_window_extent()
        for axis in figure.axes:
            assert not legend.overlaps(axis.get_window_extent()), name
        assert 0 <= legend.x0 and legend.x1 <= figure.bbox.width, name  # not cut off
        labels = [text.get_text() for text in figure.legends[0].get_texts()]
        assert len(labels) == len(set(labels)) == len({label for label, _ in _lines(figure)})


@needs_matplotlib
def test_few_grid_values_get_a_tick_each_and_no_other(built: dict[str, Any]) -> None:
    """d in {16, 48} spans less than 10x: a linear axis, ticks at 16 and 48 only."""
    for axis in built["time_vs_d.png"].axes:
        assert axis.get_xscale() == "linear"
        assert list(axis.get_xticks()) == [16, 48]
        assert [t.get_text() for t in axis.get_xticklabels()] == ["16", "48"]
        assert list(axis.xaxis.get_minorticklocs()) == []
    (axis,) = built["dropout_recovery.png"].axes
    assert [t.get_text() for t in axis.get_xticklabels()] == ["0%", "25%"]


@needs_matplotlib
def test_paillier_last_round_is_labelled_decryption(built: dict[str, Any]) -> None:
    labels = [label for label, _ in _lines(built["dropout_recovery.png"])]
    paillier = [label for label in labels if label.startswith("paillier")]
    masking = [label for label in labels if label.startswith(("secagg", "flower"))]
    assert len(paillier) == 2 and len(masking) == 5
    assert all("decryption" in label and "unmasking" not in label for label in paillier)
    assert all(": unmasking" in label for label in masking)
    assert "unmasking" not in built["dropout_recovery.png"].axes[0].get_ylabel()


def test_phase_names() -> None:
    assert phase_name("paillier-djn", "unmasking") == "decryption"
    assert phase_name("phe", "masked_input") == "encryption and addition"
    assert phase_name("secagg+", "unmasking") == "unmasking"
