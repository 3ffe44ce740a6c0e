"""The PNG training curve ``secagg train --plot`` writes.

Federated HR@10 and NDCG@10 per evaluated round, against two reference lines: item popularity
(what a model must beat to be worth training) and, when it was trained, the centralized model
(what pooling the data without any privacy would reach). matplotlib is imported only here and
only when a plot is asked for, with the non-interactive ``Agg`` backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.evaluation import RankingMetrics
from models.federated import RoundRecord

__all__ = ["plot_training_curve"]


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
        aggregator: the backend's name, for the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluated = [r for r in records if r.ranking is not None]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(
        [r.round for r in evaluated],
        [r.ranking.hit_ratio for r in evaluated if r.ranking is not None],
        marker="o",
        label=f"federated HR@10 ({aggregator})",
    )
    axis.plot(
        [r.round for r in evaluated],
        [r.ranking.ndcg for r in evaluated if r.ranking is not None],
        marker="s",
        label="federated NDCG@10",
    )
    axis.axhline(popularity, linestyle="--", color="grey", label="item popularity HR@10")
    if centralized is not None:
        axis.axhline(centralized.hit_ratio, linestyle=":", color="black", label="centralized HR@10")
    axis.set_xlabel("round")
    axis.set_ylabel("metric")
    axis.set_ylim(0, 1)
    axis.legend(loc="lower right")
    axis.set_title("Federated training on secure aggregation")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
