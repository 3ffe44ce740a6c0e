"""The PNG training curve ``secagg train --plot`` writes.

Federated HR@10 and NDCG@10 per evaluated round, against two reference lines: item popularity
(what a model must beat to be worth training) and, when it was trained, the centralized model
(what pooling the data without any privacy would reach).

Rules: the federated lines take the backend's colour and marker from
:mod:`protocols.bench.style`, the one mapping every plot of the project uses, so a backend looks
the same here as in ``secagg bench``'s plots; the legend sits below the axes, outside them, so
it covers no point of a curve that may lie anywhere in [0, 1]. matplotlib is imported only here
and only when a plot is asked for; :func:`training_curve_figure` builds the figure without
pyplot (no global state, no backend switch), :func:`plot_training_curve` saves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.evaluation import RankingMetrics
from models.federated import RoundRecord
from protocols.bench.style import series_style

__all__ = ["plot_training_curve", "training_curve_figure"]


def training_curve_figure(
    records: Sequence[RoundRecord],
    popularity: float,
    centralized: RankingMetrics | None,
    aggregator: str,
) -> Any:
    """The training curve of ``records`` as a :class:`matplotlib.figure.Figure`.

    Args:
        records: the rounds of the run; those without a ranking are skipped.
        popularity: HR@10 of the item-popularity ranking.
        centralized: the centralized model's metrics, or ``None``.
        aggregator: the backend's name (``"secagg+"``, ``"dp-secagg+"``, ...): its colour and
            its legend entry.

    Returns:
        The figure: one axes, its legend below it.

    Raises:
        ParameterError: ``aggregator`` names no backend (:func:`protocols.bench.style.backend_of`).
    """
    from matplotlib.figure import Figure

    evaluated = [(r.round, r.ranking) for r in records if r.ranking is not None]
    rounds = [number for number, _ in evaluated]
    hit = series_style(aggregator)
    ndcg = replace(hit, linestyle="--", marker="s", filled=False)
    figure = Figure(figsize=(6.5, 5.0), layout="constrained")
    axis = figure.subplots()
    axis.plot(
        rounds,
        [ranking.hit_ratio for _, ranking in evaluated],
        label=f"federated HR@10 ({aggregator})",
        **hit.keywords(),
    )
    axis.plot(
        rounds,
        [ranking.ndcg for _, ranking in evaluated],
        label=f"federated NDCG@10 ({aggregator})",
        **ndcg.keywords(),
    )
    axis.axhline(popularity, linestyle="--", color="grey", label="item popularity HR@10")
    if centralized is not None:
        axis.axhline(centralized.hit_ratio, linestyle=":", color="black", label="centralized HR@10")
    axis.set_xlabel("round")
    axis.set_ylabel("metric")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.set_title("Federated training on secure aggregation")
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=True, handlelength=3.2)
    return figure


def plot_training_curve(
    path: Path,
    records: Sequence[RoundRecord],
    popularity: float,
    centralized: RankingMetrics | None,
    aggregator: str,
) -> None:
    """Write the training curve of ``records`` to ``path`` as a PNG.

    Args:
        path: where to write.
        records: the rounds of the run; those without a ranking are skipped.
        popularity: HR@10 of the item-popularity ranking.
        centralized: the centralized model's metrics, or ``None``.
        aggregator: the backend's name, for the colour and the legend.
    """
    figure = training_curve_figure(records, popularity, centralized, aggregator)
    figure.savefig(path, dpi=120)
