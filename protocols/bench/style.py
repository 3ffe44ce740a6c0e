"""One colour, marker and line style per backend, shared by every plot the project draws.

Why this module exists: a reader sets the benchmark's plots beside each other and beside
``secagg train --plot``'s training curve, so a backend must look the same in all of them.
Letting matplotlib cycle its colours gives a backend whatever colour is next, which changes as
soon as a plot leaves a line out. Every plot therefore asks :func:`series_style` for a line's
style, and nothing else picks a colour for a backend.

Rules:

- One colour per backend (:data:`BACKEND_COLOURS`: this project's
  :data:`~protocols.defaults.BACKEND_NAMES` and the outside references of ``secagg bench
  --reference``, phe and Flower), from the Okabe-Ito palette, which stays apart for
  colour-blind readers and in greyscale.
- A variant of a backend keeps its colour and changes its line: the active threat model is
  dashed, DJN randomness is dash-dotted with its own marker.
- SecAgg and SecAgg+ often measure the same (at n <= 10 the round planner gives SecAgg+ the
  complete graph), so they differ in more than colour: SecAgg is drawn first, wide, with large
  hollow circles; SecAgg+ on top of it, narrow, with small filled squares. Both stay visible
  where the lines coincide.
- This module imports no matplotlib: it is data, which plots (and tests) read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from protocols.bench.config import REFERENCES
from protocols.defaults import BACKEND_NAMES
from secagg.errors import ParameterError

__all__ = [
    "BACKEND_COLOURS",
    "SeriesStyle",
    "backend_of",
    "series_style",
]

#: Okabe-Ito colours, one per backend and reference.
BACKEND_COLOURS: Final[Mapping[str, str]] = {
    "plain": "#000000",
    "secagg": "#0072B2",
    "secagg+": "#D55E00",
    "paillier": "#009E73",
    "phe": "#CC79A7",
    "flower": "#E69F00",
}

#: The names that mean a backend in records and aggregators: a variant or a wrapper of it.
_ALIASES: Final[Mapping[str, str]] = {
    "paillier-fresh": "paillier",
    "paillier-djn": "paillier",
    "flower-secagg+": "flower",
    "dp-secagg": "secagg",
    "dp-secagg+": "secagg+",
}


@dataclass(frozen=True, slots=True)
class SeriesStyle:
    """How one line of a plot is drawn.

    Attributes:
        colour: the backend's colour (:data:`BACKEND_COLOURS`).
        marker: the matplotlib marker.
        linestyle: the matplotlib line style (``"-"``, ``"--"``, ``"-."``).
        linewidth: the line width in points.
        markersize: the marker size in points.
        filled: whether the marker is filled (else hollow, in the line's colour).
        zorder: the drawing order: lower is drawn first, underneath.
    """

    colour: str
    marker: str
    linestyle: str = "-"
    linewidth: float = 1.6
    markersize: float = 6.0
    filled: bool = True
    zorder: float = 2.0

    def keywords(self) -> dict[str, Any]:
        """The style as keyword arguments of ``Axes.plot`` and ``Axes.errorbar``."""
        return {
            "color": self.colour,
            "marker": self.marker,
            "linestyle": self.linestyle,
            "linewidth": self.linewidth,
            "markersize": self.markersize,
            "markerfacecolor": self.colour if self.filled else "none",
            "markeredgecolor": self.colour,
            "zorder": self.zorder,
        }


#: Each backend's own line, before a variant changes it.
_BASE: Final[Mapping[str, SeriesStyle]] = {
    "plain": SeriesStyle(BACKEND_COLOURS["plain"], "o", markersize=5.0),
    "secagg": SeriesStyle(
        BACKEND_COLOURS["secagg"], "o", linewidth=3.4, markersize=10.0, filled=False, zorder=2.0
    ),
    "secagg+": SeriesStyle(
        BACKEND_COLOURS["secagg+"], "s", linewidth=1.3, markersize=4.5, zorder=3.0
    ),
    "paillier": SeriesStyle(BACKEND_COLOURS["paillier"], "^"),
    "phe": SeriesStyle(BACKEND_COLOURS["phe"], "D", markersize=5.0),
    "flower": SeriesStyle(BACKEND_COLOURS["flower"], "P", markersize=7.0),
}


def backend_of(name: str) -> str:
    """The backend (a key of :data:`BACKEND_COLOURS`) that a record or aggregator name means.

    Args:
        name: a backend (``"secagg+"``), a benchmarked variant (``"paillier-djn"``,
            ``"flower-secagg+"``) or an aggregator's name (``"dp-secagg+"``).

    Returns:
        The backend's name.

    Raises:
        ParameterError: the name means no backend this module has a style for.
    """
    backend = _ALIASES.get(name, name)
    if backend not in BACKEND_COLOURS:
        known = ", ".join((*BACKEND_NAMES, *REFERENCES))
        raise ParameterError(f"no plot style for {name!r}: the backends are {known}")
    return backend


def series_style(name: str, threat_model: str | None = None) -> SeriesStyle:
    """The style of the line of ``name`` (in ``threat_model``, for a masking protocol).

    Args:
        name: a backend, benchmarked variant or aggregator name (see :func:`backend_of`).
        threat_model: ``"active"`` dashes the line; ``None`` or ``"semi-honest"`` leave it.

    Returns:
        The line's style: the backend's colour, and its variant's marker and line style.

    Raises:
        ParameterError: the name means no backend (see :func:`backend_of`).
    """
    style = _BASE[backend_of(name)]
    if name == "paillier-djn":
        style = replace(style, marker="v", linestyle="-.")
    if threat_model == "active":
        style = replace(style, linestyle="--", zorder=style.zorder + 0.5)
    return style
