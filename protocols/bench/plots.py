"""PNG plots of a finished benchmark (matplotlib, Agg; optional: ``secagg[plot]``).

Why this module exists: scaling is easier to judge on a plot than in a table. Four figures are
drawn from a run's JSON document alone (:meth:`~protocols.bench.report.BenchResult.document`):
client and server seconds per round against d and against n, bytes a client uploads against d,
and the server's seconds in the last round against the dropout rate (what dropout recovery
costs). Each line is one protocol, with min-max error bars over the repeats; a masking protocol
has one line per threat model (``secagg+ active``); a line measured on a smaller d and scaled
says so in its legend.

Rules:

- Every line's colour, marker and line style come from :mod:`protocols.bench.style`, so a
  backend looks the same in every plot (and in ``secagg train --plot``).
- The legend sits below the axes, outside them, so it never covers a line.
- With few grid values an axis has a tick at each of them and no other: a logarithmic axis
  only where they span at least a factor of 10, never one with unlabelled minor ticks.
- Paillier has no masks, so it has no unmasking round: the protocol round its records call
  ``unmasking`` is its decryption, and its lines say so (:func:`phase_name`).
- :func:`figures` builds :class:`matplotlib.figure.Figure` objects without pyplot (no global
  state), so tests read their structure; :func:`write_plots` saves them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from protocols.bench.metering import CLIENT, SERVER, TOTAL
from protocols.bench.report import BenchResult
from protocols.bench.style import backend_of, series_style
from secagg.errors import ParameterError

__all__ = ["FIGURE_NAMES", "figures", "phase_name", "write_plots"]

#: The file names :func:`write_plots` writes, in order.
FIGURE_NAMES: Final = ("time_vs_d.png", "time_vs_n.png", "bytes_vs_d.png", "dropout_recovery.png")
#: What a Paillier round (packed or phe) does in the protocol rounds its records name.
_PAILLIER_PHASES: Final[Mapping[str, str]] = {
    "masked_input": "encryption and addition",
    "unmasking": "decryption",
}
#: Axes with at most this many distinct grid values get a tick at each value and no other.
_FEW_TICKS: Final = 6
_AXIS_LABELS: Final[Mapping[str, str]] = {
    "dim": "d (values per client)",
    "clients": "n (clients)",
    "dropout": "dropout rate",
}


def phase_name(protocol: str, round_name: str) -> str:
    """What ``protocol`` does in the round its records call ``round_name``.

    Args:
        protocol: a record's protocol (``"secagg+"``, ``"paillier-djn"``, ``"phe"``, ...).
        round_name: a record's round (:data:`protocols.simulate.ROUND_NAMES`).

    Returns:
        The round's name for a masking protocol; Paillier's phase (``"decryption"`` for the
        round its records call ``unmasking``) for packed Paillier and phe.
    """
    if backend_of(protocol) in ("paillier", "phe"):
        return _PAILLIER_PHASES.get(round_name, round_name)
    return round_name


@dataclass(frozen=True, slots=True)
class _Series:
    """One plot line: a protocol (in a threat model) along one grid axis."""

    protocol: str
    threat_model: str | None
    label: str
    xs: list[float]
    median: list[float]
    low: list[float]
    high: list[float]


def _series(
    records: Sequence[Mapping[str, Any]],
    party: str,
    round_name: str,
    metric: str,
    along: str,
    fixed: Mapping[str, object],
    *,
    with_phase: bool = False,
) -> Iterator[_Series]:
    """One line per protocol and threat model, from the records that match ``fixed``."""
    chosen = [
        r
        for r in records
        if r["party"] == party
        and r["round"] == round_name
        and r["status"] == "ok"
        and r[metric] is not None
        and r[metric]["median"] > 0  # a log axis cannot show zero; an absent party costs 0
        and all(r[k] == v for k, v in fixed.items())
    ]
    for protocol, mode in dict.fromkeys((r["protocol"], r["threat_model"]) for r in chosen):
        mine = sorted(
            (r for r in chosen if (r["protocol"], r["threat_model"]) == (protocol, mode)),
            key=lambda r: r[along],
        )
        label = protocol + ("" if mode is None else f" {mode}")
        if with_phase:
            label += f": {phase_name(protocol, round_name)}"
        if any(r["scale"] != 1 for r in mine):
            label += " (scaled)"
        yield _Series(
            protocol,
            mode,
            label,
            [float(r[along]) for r in mine],
            [r[metric]["median"] for r in mine],
            [r[metric]["min"] for r in mine],
            [r[metric]["max"] for r in mine],
        )


def _draw(axis: Any, lines: Sequence[_Series]) -> None:
    for line in lines:
        errors = [
            [max(m - lo, 0.0) for m, lo in zip(line.median, line.low, strict=True)],
            [max(hi - m, 0.0) for m, hi in zip(line.median, line.high, strict=True)],
        ]
        style = series_style(line.protocol, line.threat_model)
        axis.errorbar(
            line.xs,
            line.median,
            yerr=errors,
            capsize=3,
            elinewidth=1.0,
            label=line.label,
            **style.keywords(),
        )


def _tick_label(along: str, value: float) -> str:
    if along == "dropout":
        return f"{value:.0%}"
    return f"{value:,.0f}"


def _x_axis(axis: Any, along: str, lines: Sequence[_Series]) -> None:
    """Ticks at the grid values when they are few; log scale only across a factor of 10."""
    values = sorted({x for line in lines for x in line.xs})
    positive = [v for v in values if v > 0]
    if along != "dropout" and positive and positive[-1] >= 10 * positive[0]:
        axis.set_xscale("log")
    if len(values) <= _FEW_TICKS:
        axis.set_xticks(values, [_tick_label(along, v) for v in values])
        axis.xaxis.set_minor_locator(_null_locator())
        if len(values) == 1:  # one grid value: keep it off the axes' edges
            axis.margins(x=0.5)


def _y_axis(axis: Any, lines: Sequence[_Series]) -> None:
    """Log scale where the medians span at least a factor of 10, else linear from 0."""
    values = [v for line in lines for v in (*line.low, *line.high) if v > 0]
    if values and max(values) >= 10 * min(values):
        axis.set_yscale("log")
    else:
        axis.set_ylim(bottom=0)


def _null_locator() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _panel(axis: Any, lines: Sequence[_Series], along: str, ylabel: str, title: str) -> None:
    """Draw ``lines`` on ``axis`` with its scales, ticks, labels and title."""
    if lines:
        _draw(axis, lines)
        _x_axis(axis, along, lines)
        _y_axis(axis, lines)
    else:
        axis.text(0.5, 0.5, "no data on this grid", ha="center", transform=axis.transAxes)
    axis.set_xlabel(_AXIS_LABELS[along])
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(True, which="major", alpha=0.3)


def _finish(figure: Any, machine: str) -> Any:
    """The machine as the title, one legend for every panel below the axes (outside them)."""
    figure.suptitle(f"secagg bench ({machine})", fontsize=8)
    handles: dict[str, Any] = {}
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=min(3 if len(figure.axes) > 1 else 2, len(handles)),
            fontsize=8,
            frameon=True,
            handlelength=3.2,  # long enough to show a dashed line as dashed
        )
    return figure


def _new_figure(panels: int) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11.0 if panels == 2 else 7.0, 5.4), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def _time_figure(
    records: Sequence[Mapping[str, Any]], along: str, fixed: Mapping[str, object], title: str
) -> Any:
    figure, axes = _new_figure(2)
    for axis, party in zip(axes, (CLIENT, SERVER), strict=True):
        lines = list(_series(records, party, TOTAL, "wall_s", along, fixed))
        _panel(axis, lines, along, f"{party} seconds per round", f"{party}, {title}")
    return figure


def figures(document: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The four figures of a benchmark run, built without pyplot (needs matplotlib).

    Args:
        document: the run's JSON document (:meth:`BenchResult.document`, or a ``--json`` file
            read back).

    Returns:
        (file name, :class:`matplotlib.figure.Figure`) pairs, in :data:`FIGURE_NAMES` order.
    """
    params, records = document["parameters"], document["records"]
    n_max, d_max = max(params["clients"]), max(params["dims"])
    base = {"dropout": params["dropouts"][0], "drop_at": params["drop_at"][0]}
    machine = f"{document['machine']['cpu_count']} x {document['machine']['cpu_model']}"
    built = [
        _time_figure(records, "dim", {**base, "clients": n_max}, f"n = {n_max}"),
        _time_figure(records, "clients", {**base, "dim": d_max}, f"d = {d_max:,}"),
    ]
    figure, (axis,) = _new_figure(1)
    lines = list(_series(records, CLIENT, TOTAL, "bytes_sent", "dim", {**base, "clients": n_max}))
    _panel(axis, lines, "dim", "bytes sent per client", f"upload per client, n = {n_max}")
    built.append(figure)
    figure, (axis,) = _new_figure(1)
    fixed = {"clients": n_max, "dim": d_max, "drop_at": params["drop_at"][0]}
    lines = list(_series(records, SERVER, "unmasking", "wall_s", "dropout", fixed, with_phase=True))
    title = f"dropout recovery, n = {n_max}, d = {d_max:,}"
    _panel(axis, lines, "dropout", "server seconds in the last round", title)
    built.append(figure)
    return [(name, _finish(f, machine)) for name, f in zip(FIGURE_NAMES, built, strict=True)]


def write_plots(result: BenchResult, directory: str) -> list[Path]:
    """Write the four PNG plots and return their paths.

    Args:
        result: the finished benchmark.
        directory: where to write them (created if missing).

    Returns:
        The paths of :data:`FIGURE_NAMES` in ``directory``.

    Raises:
        ParameterError: matplotlib is not installed.
    """
    try:
        import matplotlib.figure  # noqa: F401  (figures() builds on it)
    except ImportError:
        raise ParameterError("--plot-dir needs matplotlib: pip install secagg[plot]") from None
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, figure in figures(result.document()):
        figure.savefig(out / name, dpi=110)
        written.append(out / name)
    return written
