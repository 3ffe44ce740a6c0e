"""PNG plots of a finished benchmark (matplotlib, Agg backend; optional: ``secagg[plot]``).

Why this module exists: scaling is easier to judge on a log-log plot than in a table. Four
figures are drawn from the records alone: client and server seconds per round against d and
against n, bytes a client uploads against d, and the server's unmasking time against the
dropout rate (what dropout recovery costs). Each line is one protocol, with min-max error bars
over the repeats; a masking protocol has one line per threat model (``secagg+ active``); a line
measured on a smaller d and scaled says so in its legend.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from protocols.bench.metering import CLIENT, SERVER, TOTAL
from protocols.bench.report import BenchResult
from secagg.errors import ParameterError

__all__ = ["write_plots"]


def _series(
    records: Sequence[Mapping[str, Any]],
    party: str,
    round_name: str,
    metric: str,
    along: str,
    fixed: Mapping[str, object],
) -> Iterator[tuple[str, list[float], list[float], list[float], list[float]]]:
    """(label, x, median, min, max) series, one plot line per protocol and threat model."""
    chosen = [
        r
        for r in records
        if r["party"] == party
        and r["round"] == round_name
        and r["status"] == "ok"
        and r[metric] is not None
        and r[metric]["median"] > 0  # a log axis cannot show zero
        and all(r[k] == v for k, v in fixed.items())
    ]
    for protocol, mode in dict.fromkeys((r["protocol"], r["threat_model"]) for r in chosen):
        mine = sorted(
            (r for r in chosen if (r["protocol"], r["threat_model"]) == (protocol, mode)),
            key=lambda r: r[along],
        )
        scaled = any(r["scale"] != 1 for r in mine)
        label = protocol + ("" if mode is None else f" {mode}") + (" (scaled)" if scaled else "")
        yield (
            label,
            [float(r[along]) for r in mine],
            [r[metric]["median"] for r in mine],
            [r[metric]["min"] for r in mine],
            [r[metric]["max"] for r in mine],
        )


def _plot_lines(
    axis: Any, series: Iterable[tuple[str, list[float], list[float], list[float], list[float]]]
) -> None:
    for label, xs, median, low, high in series:
        errors = [
            [max(m - lo, 0.0) for m, lo in zip(median, low, strict=True)],
            [max(hi - m, 0.0) for m, hi in zip(median, high, strict=True)],
        ]
        axis.errorbar(xs, median, yerr=errors, marker="o", capsize=3, label=label)


def write_plots(result: BenchResult, directory: str) -> list[Path]:
    """Write the four PNG plots (matplotlib, Agg backend) and return their paths.

    Args:
        result: the finished benchmark.
        directory: where to write them (created if missing).

    Returns:
        The paths of ``time_vs_d.png``, ``time_vs_n.png``, ``bytes_vs_d.png`` and
        ``dropout_recovery.png``.

    Raises:
        ParameterError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ParameterError("--plot-dir needs matplotlib: pip install secagg[plot]") from None
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config, records = result.config, result.records
    n_max, d_max = max(config.clients), max(config.dims)
    base = {"dropout": config.dropouts[0], "drop_at": config.drop_at[0]}
    machine = f"{result.machine['cpu_count']} x {result.machine['cpu_model']}"
    specs = [
        ("time_vs_d.png", "dim", {**base, "clients": n_max}, "wall_s", f"n = {n_max}"),
        ("time_vs_n.png", "clients", {**base, "dim": d_max}, "wall_s", f"d = {d_max}"),
    ]
    written: list[Path] = []
    for name, along, fixed, metric, title in specs:
        figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for axis, party in zip(axes, (CLIENT, SERVER), strict=True):
            _plot_lines(axis, _series(records, party, TOTAL, metric, along, fixed))
            _decorate(axis, along, f"{party} seconds per round", f"{party}, {title}")
        written.append(_save(figure, out / name, machine, plt))
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    fixed = {**base, "clients": n_max}
    _plot_lines(axis, _series(records, CLIENT, TOTAL, "bytes_sent", "dim", fixed))
    _decorate(axis, "dim", "bytes sent per client", f"upload per client, n = {n_max}")
    written.append(_save(figure, out / "bytes_vs_d.png", machine, plt))
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    fixed = {"clients": n_max, "dim": d_max, "drop_at": config.drop_at[0]}
    _plot_lines(axis, _series(records, SERVER, "unmasking", "wall_s", "dropout", fixed))
    _decorate(axis, "dropout", "server seconds in the unmasking round", "dropout recovery")
    written.append(_save(figure, out / "dropout_recovery.png", machine, plt))
    return written


def _decorate(axis: Any, along: str, ylabel: str, title: str) -> None:
    labels = {"dim": "d (values per client)", "clients": "n (clients)", "dropout": "dropout rate"}
    if not axis.get_legend_handles_labels()[0]:
        axis.text(0.5, 0.5, "no data on this grid", ha="center", transform=axis.transAxes)
    else:
        axis.set_xscale("linear" if along == "dropout" else "log")  # a rate of 0 is common
        axis.set_yscale("log")
    axis.set_xlabel(labels[along])
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=7)


def _save(figure: Any, path: Path, machine: str, plt: Any) -> Path:
    figure.suptitle(f"secagg bench ({machine})", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
