"""``models.commands.plotting``: the training curve's structure, read back as matplotlib objects.

The federated lines take the backend's colour from the mapping every plot shares
(:mod:`protocols.bench.style`), so a backend looks the same here as in ``secagg bench``'s plots;
the legend lies below the axes, where it covers no point of a curve.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from models.commands.plotting import plot_training_curve, training_curve_figure
from models.evaluation import RankingMetrics
from models.federated import RoundRecord
from protocols.bench.style import BACKEND_COLOURS, series_style
from secagg.errors import ParameterError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed"
)


def _record(number: int, hit_ratio: float | None) -> RoundRecord:
    ranking = (
        None
        if hit_ratio is None
        else RankingMetrics(hit_ratio=hit_ratio, ndcg=hit_ratio / 2, auc=0.8, k=10, num_users=50)
    )
    return RoundRecord(
        round=number,
        sampled=(0, 1, 2),
        survivors=(0, 1, 2),
        dropped=(),
        aborted=False,
        client_loss=0.5,
        update_norm=0.1,
        ranking=ranking,
        rmse=None,
        client_seconds=0.01,
        aggregation_seconds=0.01,
    )


RECORDS = [_record(1, 0.2), _record(2, None), _record(3, 0.5), _record(4, 0.9)]
CENTRAL = RankingMetrics(hit_ratio=0.6, ndcg=0.3, auc=0.9, k=10, num_users=50)


def _figure(aggregator: str) -> Any:
    return training_curve_figure(RECORDS, 0.3, CENTRAL, aggregator)


@pytest.mark.parametrize(
    ("aggregator", "backend"),
    [("plain", "plain"), ("secagg", "secagg"), ("secagg+", "secagg+"),
     ("paillier", "paillier"), ("dp-secagg+", "secagg+")],
)  # fmt: skip
def test_federated_lines_take_the_backend_colour(aggregator: str, backend: str) -> None:
    (axis,) = _figure(aggregator).axes
    hit, ndcg = axis.get_lines()[:2]
    assert hit.get_color() == ndcg.get_color() == BACKEND_COLOURS[backend]
    assert hit.get_marker() == series_style(aggregator).marker
    assert hit.get_label() == f"federated HR@10 ({aggregator})"
    assert list(hit.get_xdata()) == [1, 3, 4]  # the round without a ranking is left out
    assert list(hit.get_ydata()) == [0.2, 0.5, 0.9]
    assert list(ndcg.get_ydata()) == [0.1, 0.25, 0.45]


def test_the_legend_lies_below_the_axes() -> None:
    figure = _figure("secagg+")
    (axis,) = figure.axes
    assert axis.get_legend() is None and len(figure.legends) == 1
    figure.draw_without_rendering()
    legend = figure.legends[0].get_window_extent()
    assert not legend.overlaps(axis.get_window_extent())
    assert 0 <= legend.x0 and legend.x1 <= figure.bbox.width
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == [
        "federated HR@10 (secagg+)",
        "federated NDCG@10 (secagg+)",
        "item popularity HR@10",
        "centralized HR@10",
    ]
    assert axis.get_ylim() == (0, 1)


def test_no_centralized_model_no_line() -> None:
    (axis,) = training_curve_figure(RECORDS, 0.3, None, "plain").axes
    assert [line.get_label() for line in axis.get_lines()][2:] == ["item popularity HR@10"]


def test_an_unknown_backend_is_refused_by_name() -> None:
    with pytest.raises(ParameterError, match="no plot style for 'rot13'"):
        _figure("rot13")


def test_plot_training_curve_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    plot_training_curve(path, RECORDS, 0.3, CENTRAL, "secagg+")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
