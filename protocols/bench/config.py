"""What one ``secagg bench`` run measures: the presets, the configuration, its feasibility checks.

Why this module exists: every number the benchmark prints depends on the grid (protocols,
clients n, vector lengths d, dropout rates and rounds) and on the protocol parameters, so they
are checked once, up front, before the first key is generated (:func:`check_config`). Every
check names the command line flag to change (``--degree must be even and >= 2, got 3``), so a
bad run fails in a second instead of an hour into the grid.

Rules:

- Grid values left unset come from a :class:`Preset` (:data:`DEFAULT_PRESET` by default).
- Graph, degree and threshold are never chosen here: :meth:`BenchConfig.round_policy` hands the
  protocol, the grid point's dropout rate and the ``--threshold`` / ``--degree`` overrides to the
  round planner (:class:`protocols.rounds.RoundPolicy`), which every run then asks.
- This module is the library side and knows nothing of command line flags as text: turning
  option values into a :class:`BenchConfig` (comma lists, ``1e5``, ranges of single options) is
  :func:`protocols.cli.bench_options.config_from_options`'s job. Imports flow
  ``protocols.cli`` -> ``protocols.bench``, never back.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from protocols.rounds import (
    DEFAULT_CORRUPT_FRACTION,
    ProtocolName,
    RoundPolicy,
    ThreatModel,
    tolerated_dropout,
)
from secagg.encoding import QuantizationScheme
from secagg.errors import ParameterError

__all__ = [
    "DEFAULT_PRESET",
    "FLOWER",
    "FLOWER_OPTION",
    "MASKING_PROTOCOLS",
    "PAILLIER_PROTOCOLS",
    "PLAIN",
    "PRESETS",
    "PROTOCOLS",
    "RANDOMNESS",
    "REFERENCES",
    "SEMI_HONEST",
    "THREAT_MODELS",
    "BenchConfig",
    "GridValues",
    "Preset",
    "Selection",
    "check_config",
    "dropped_count",
    "run_names",
    "selection_of",
]

PLAIN: Final = "plain"
#: The Flower reference's protocol name in records; ``--reference flower`` asks for it.
FLOWER: Final = "flower-secagg+"
FLOWER_OPTION: Final = "flower"
#: Protocols in the order they run at each grid point (plain first: it is every ratio's base),
#: as records name them: a backend of :data:`~protocols.defaults.BACKEND_NAMES`, Paillier once
#: per r^n choice (``paillier-fresh``, ``paillier-djn``), and the phe reference.
PROTOCOLS: Final = (PLAIN, "secagg", "secagg+", "paillier-fresh", "paillier-djn", "phe")
PAILLIER_PROTOCOLS: Final = ("paillier-fresh", "paillier-djn")
#: Paillier's choices of r^n, as ``secagg demo --randomness`` names them.
RANDOMNESS: Final = ("fresh", "djn")
#: The outside implementations measured beside this project's backends (``--reference``).
REFERENCES: Final = ("phe", FLOWER_OPTION)
#: This project's masking protocols: each runs once per requested threat model.
MASKING_PROTOCOLS: Final = ("secagg", "secagg+")
#: The threat models a masking protocol runs in, in the order they run: semi-honest first,
#: since it is the base of every ``ratio_to_semi_honest``.
THREAT_MODELS: Final[tuple[ThreatModel, ...]] = ("semi-honest", "active")
SEMI_HONEST: Final = "semi-honest"
#: What the round planner runs for each benchmarked protocol (phe sums Paillier ciphertexts).
_PLANNED: Final[Mapping[str, ProtocolName]] = {
    PLAIN: "plain",
    "secagg": "secagg",
    "secagg+": "secagg+",
    "paillier-fresh": "paillier",
    "paillier-djn": "paillier",
    "phe": "paillier",
    FLOWER: "secagg+",
}


@dataclass(frozen=True, slots=True)
class Selection:
    """What runs at each grid point, in the command line's words.

    Attributes:
        backends: this project's backends (:data:`~protocols.defaults.BACKEND_NAMES`).
        randomness: Paillier's r^n choices (:data:`RANDOMNESS`); used when ``paillier`` is
            one of ``backends``.
        references: the outside implementations (:data:`REFERENCES`).
    """

    backends: tuple[str, ...]
    randomness: tuple[str, ...]
    references: tuple[str, ...]


def run_names(selection: Selection) -> tuple[tuple[str, ...], bool]:
    """The protocols a selection runs, as records name them, and whether Flower runs.

    Args:
        selection: the backends, r^n choices and references (names already checked).

    Returns:
        The protocols in :data:`PROTOCOLS` order (plain always, first), and whether the
        Flower reference was asked for.
    """
    chosen = {PLAIN, *selection.backends}
    if "paillier" in chosen:
        chosen |= {f"paillier-{choice}" for choice in selection.randomness}
    chosen |= set(selection.references)
    return tuple(p for p in PROTOCOLS if p in chosen), FLOWER_OPTION in selection.references


def selection_of(protocols: tuple[str, ...]) -> Selection:
    """The selection that runs ``protocols`` (record names, ``flower`` included): the inverse
    of :func:`run_names`, for presets and the deprecated ``--protocols`` spelling.

    Args:
        protocols: names from :data:`PROTOCOLS`, ``flower`` or ``flower-secagg+``.

    Returns:
        The backends, r^n choices and references those names mean.
    """
    names = set(protocols) | ({FLOWER_OPTION} if FLOWER in protocols else set())
    paillier = [p for p in PAILLIER_PROTOCOLS if p in names]
    backends = [b for b in (PLAIN, "secagg", "secagg+") if b in names]
    return Selection(
        backends=(*backends, *(("paillier",) if paillier else ())),
        randomness=tuple(p.removeprefix("paillier-") for p in paillier),
        references=tuple(r for r in REFERENCES if r in names),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GridValues:
    """The grid and the sizes of the slow paths: what a preset gives and a configuration holds.

    Attributes:
        protocols: the protocols to run (a preset may name ``flower``; a configuration never).
        clients: the numbers of clients n.
        dims: the vector lengths d.
        dropouts: the dropout rates.
        drop_at: the protocol rounds (0 to 4, :data:`protocols.simulate.ROUND_NAMES`) at
            which clients drop.
        threat_models: the threat models each masking protocol runs in (``"semi-honest"``
            first: it is the base of every ``ratio_to_semi_honest``); the other protocols
            have none.
        complete_max_clients: SecAgg (the complete graph, whose cost grows as n^2) runs only
            where n is at most this; ``None``: everywhere.
        repeats: timed runs per grid point.
        paillier_max_dim: packed Paillier runs on at most about this d, then scales.
        phe_max_dim: phe runs on at most this d, then scales.
        phe_clients: how many clients phe-encrypt.
    """

    protocols: tuple[str, ...]
    clients: tuple[int, ...]
    dims: tuple[int, ...]
    dropouts: tuple[float, ...]
    drop_at: tuple[int, ...]
    threat_models: tuple[ThreatModel, ...]
    complete_max_clients: int | None
    repeats: int
    paillier_max_dim: int
    phe_max_dim: int
    phe_clients: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Preset(GridValues):
    """A named grid: what ``--preset`` fills in for every argument left unset."""

    description: str


PRESETS: Final[Mapping[str, Preset]] = {
    "quick": Preset(
        description="n in {5, 10}, d in {10^3, 10^4}, dropout 0/20%%: under a minute on 2 "
        "cores, what the README shows",
        protocols=(*PROTOCOLS, FLOWER_OPTION),
        clients=(5, 10),
        dims=(1_000, 10_000),
        dropouts=(0.0, 0.2),
        drop_at=(2,),
        threat_models=THREAT_MODELS,
        complete_max_clients=None,
        repeats=3,
        paillier_max_dim=128,
        phe_max_dim=4,
        phe_clients=2,
    ),
    "paper": Preset(
        description="the settings of Bonawitz et al. 2017: n in {100, 300, 500}, d = 10^5, "
        "dropout 0/10/30%% after sharing keys (long: expect hours on 2 cores; see --time-budget)",
        protocols=(*PROTOCOLS, FLOWER_OPTION),
        clients=(100, 300, 500),
        dims=(100_000,),
        dropouts=(0.0, 0.1, 0.3),
        drop_at=(2,),
        threat_models=THREAT_MODELS,
        complete_max_clients=None,
        repeats=3,
        paillier_max_dim=2_048,
        phe_max_dim=8,
        phe_clients=2,
    ),
    "active": Preset(
        description="issue 11's measurement, active against semi-honest: n = 50 SecAgg and "
        "SecAgg+, n = 1000 SecAgg+ only (--complete-max-clients 50), d = 10^5, 10%% dropout "
        "after sharing keys, one timed run (estimated 8 minutes on 2 cores, most of it "
        "n = 1000 active; about 4 with --no-memory)",
        protocols=(PLAIN, *MASKING_PROTOCOLS),
        clients=(50, 1000),
        dims=(100_000,),
        dropouts=(0.1,),
        drop_at=(2,),
        threat_models=THREAT_MODELS,
        complete_max_clients=50,
        repeats=1,
        paillier_max_dim=128,
        phe_max_dim=4,
        phe_clients=2,
    ),
}
#: The preset whose values fill in what neither ``--preset`` nor an argument gives.
DEFAULT_PRESET: Final = "quick"


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig(GridValues):
    """A benchmark configuration; :func:`check_config` says whether its grid can run.

    The ``secagg bench`` command builds one from its flags and checks it
    (:func:`protocols.cli.bench_options.config_from_options`).
    """

    preset: str | None
    threshold: int | None
    degree: int | None
    value_bits: int
    clip: float
    key_bits: int
    time_budget: float | None
    memory: bool
    seed: int
    progress: bool
    json_path: str | None
    csv_path: str | None
    plot_dir: str | None
    flower_requested: bool

    def round_policy(
        self, protocol: str, dropout: float = 0.0, threat_model: ThreatModel = SEMI_HONEST
    ) -> RoundPolicy:
        """The round planner's policy for ``protocol`` at a grid point with ``dropout``.

        SecAgg+ (this project's and Flower's) must survive the point's dropout rate, and at
        least the planner's default, against the default corrupt fraction, as ``secagg demo``
        chooses; ``--threshold`` and ``--degree`` override what the planner would pick. Only
        this project's masking protocols take ``threat_model``: Paillier's key holder and
        Flower's SecAgg+ run one protocol whatever it is.

        Args:
            protocol: a benchmarked protocol (one of :data:`PROTOCOLS` or :data:`FLOWER`).
            dropout: the grid point's dropout rate.
            threat_model: the masking protocol's threat model.

        Returns:
            The policy every round of that protocol at that point is planned with.

        Raises:
            ParameterError: SecAgg+ cannot tolerate the dropout rate, or a bad threshold.
        """
        planned = _PLANNED[protocol]
        mode = threat_model if protocol in MASKING_PROTOCOLS else SEMI_HONEST
        if planned != "secagg+":
            return RoundPolicy(
                planned, threshold=self.threshold, value_bits=self.value_bits, threat_model=mode
            )
        return RoundPolicy(
            planned,
            dropout_fraction=tolerated_dropout(dropout),
            corrupt_fraction=DEFAULT_CORRUPT_FRACTION,
            degree=self.degree,
            threshold=self.threshold,
            value_bits=self.value_bits,
            threat_model=mode,
        )

    def runs_complete_graph(self, num_clients: int) -> bool:
        """Whether SecAgg (the complete graph) runs at n = ``num_clients`` (its n cap)."""
        return self.complete_max_clients is None or num_clients <= self.complete_max_clients


def dropped_count(num_clients: int, dropout: float) -> int:
    """How many of ``num_clients`` clients drop at a grid point with rate ``dropout``."""
    return round(dropout * num_clients)


# -- checking a configuration --------------------------------------------------------------------


def _check_clients(config: BenchConfig, num_clients: int, policy: RoundPolicy) -> None:
    """n clients must reach ``policy``'s threshold after every dropout, and exceed ``--degree``."""
    n = num_clients
    if n < 2:
        raise ParameterError(f"--clients: secure aggregation needs n >= 2, got {n}")
    threshold = policy.threshold_for(n)
    if threshold > n:
        raise ParameterError(
            f"n={n} is below the threshold t={threshold}: raise --clients or lower --threshold"
        )
    if config.degree is not None and config.degree >= n:
        raise ParameterError(f"--degree {config.degree} needs more than {config.degree} clients")
    for dropout in config.dropouts:
        survivors = n - dropped_count(n, dropout)
        if survivors < threshold:
            raise ParameterError(
                f"n={n} with dropout {dropout:g} leaves {survivors} clients, below the "
                f"threshold t={threshold}: lower --dropouts, raise --clients or lower "
                "--threshold"
            )


def _masking_modes(config: BenchConfig) -> tuple[ThreatModel, ...]:
    """The threat models the masking runs of ``config`` use (none without a masking protocol)."""
    if any(p in MASKING_PROTOCOLS for p in config.protocols):
        return config.threat_models
    return ()


def _check_grid_feasible(config: BenchConfig) -> None:
    """Every (n, dropout) must leave at least the threshold; SecAgg+ needs a valid k, t."""
    # The complete graph's threshold (and Paillier's fewest contributors) bounds every protocol;
    # against an active server it is the higher t > (n + c) / 2.
    for mode in dict.fromkeys((SEMI_HONEST, *_masking_modes(config))):
        majority = config.round_policy("secagg", threat_model=mode)
        for n in config.clients:
            _check_clients(config, n, majority)
    plus_modes = _masking_modes(config) if "secagg+" in config.protocols else ()
    if config.flower_requested:
        plus_modes = (*plus_modes, SEMI_HONEST)
    for mode in dict.fromkeys(plus_modes):
        for dropout in config.dropouts:
            try:
                config.round_policy("secagg+", dropout, mode)
            except ParameterError:
                raise ParameterError(
                    f"--dropouts {dropout:g}: SecAgg+ cannot choose a degree for a dropout rate "
                    f"of {0.5 - DEFAULT_CORRUPT_FRACTION:g} or more; lower it or drop secagg+ "
                    "and flower"
                ) from None
    if config.degree is not None and (config.degree < 2 or config.degree % 2):
        raise ParameterError(f"--degree must be even and >= 2, got {config.degree}")


def check_config(config: BenchConfig) -> None:
    """Refuse, before the first key is generated, a configuration the grid cannot run.

    The checks are about the configuration, not about how it was written: a plot directory
    needs matplotlib; the clip bound and bit width must quantize the largest n; every
    (n, dropout) must leave at least the threshold; SecAgg+ needs a degree for every dropout
    rate; ``--degree`` must be even and below n. Messages name the flag to change.

    Args:
        config: the configuration to check.

    Raises:
        ParameterError: the first check that fails, with the fix in the message.
    """
    if config.plot_dir is not None and importlib.util.find_spec("matplotlib") is None:
        raise ParameterError("--plot-dir needs matplotlib: pip install secagg[plot]")
    # Fail on a bad clip or bit width now, for the largest n, not in the middle of the grid.
    QuantizationScheme(
        clip=config.clip, value_bits=config.value_bits, num_clients=max(config.clients)
    )
    _check_grid_feasible(config)
