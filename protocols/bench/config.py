"""What one ``secagg bench`` run measures: the presets, the validated configuration, its checks.

Why this module exists: every number the benchmark prints depends on the grid (protocols,
clients n, vector lengths d, dropout rates and rounds) and on the protocol parameters, so they
are checked once, up front, before the first key is generated. Every check names the command
line flag to change (``--dims: d must be a positive integer, got 0``), so a bad run fails in a
second instead of an hour into the grid.

Rules:

- Grid values left unset come from a :class:`Preset` (``quick`` by default); a grid option takes
  one or more values, space- or comma-separated, and integers may be written ``1e5``.
- Graph, degree and threshold are never chosen here: :meth:`BenchConfig.round_policy` hands the
  protocol, the grid point's dropout rate and the ``--threshold`` / ``--degree`` overrides to the
  round planner (:class:`protocols.rounds.RoundPolicy`), which every run then asks.
- This module knows nothing of :mod:`argparse`: :func:`config_from_options` takes the raw option
  values by name (the ``dest`` of each flag), so the command line can live elsewhere.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from protocols.cli.arguments import (
    optional_positive_int,
    parse_float,
    parse_int,
    positive_ints,
    split_values,
)
from protocols.rounds import (
    DEFAULT_CORRUPT_FRACTION,
    DEFAULT_DROPOUT_FRACTION,
    ProtocolName,
    RoundPolicy,
)
from secagg.encoding import QuantizationScheme
from secagg.errors import ParameterError
from secagg.hazmat.paillier import SUPPORTED_KEY_BITS

__all__ = [
    "DEFAULT_PRESET",
    "FLOWER",
    "FLOWER_OPTION",
    "OPTION_DEFAULTS",
    "PAILLIER_PROTOCOLS",
    "PLAIN",
    "PRESETS",
    "PROTOCOLS",
    "BenchConfig",
    "GridValues",
    "Preset",
    "config_from_options",
    "dropped_count",
]

PLAIN: Final = "plain"
#: The Flower reference's protocol name in records; ``--protocols flower`` asks for it.
FLOWER: Final = "flower-secagg+"
FLOWER_OPTION: Final = "flower"
#: Protocols in the order they run at each grid point (plain first: it is every ratio's base).
PROTOCOLS: Final = (PLAIN, "secagg", "secagg+", "paillier-fresh", "paillier-djn", "phe")
PAILLIER_PROTOCOLS: Final = ("paillier-fresh", "paillier-djn")
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
#: Defaults of the options that no preset sets (raw text, as a command line gives them).
OPTION_DEFAULTS: Final[Mapping[str, str]] = {
    "value_bits": "16",
    "clip": "1.0",
    "key_bits": "2048",
    "seed": "0",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class GridValues:
    """The grid and the sizes of the slow paths: what a preset gives and a configuration holds.

    Attributes:
        protocols: the protocols to run (a preset may name ``flower``; a configuration never).
        clients: the numbers of clients n.
        dims: the vector lengths d.
        dropouts: the dropout rates.
        drop_at: the protocol rounds (0 to 3) at which clients drop.
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
        repeats=3,
        paillier_max_dim=2_048,
        phe_max_dim=8,
        phe_clients=2,
    ),
}
#: The preset whose values fill in what neither ``--preset`` nor an argument gives.
DEFAULT_PRESET: Final = "quick"


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig(GridValues):
    """A validated benchmark configuration (see :func:`config_from_options`)."""

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

    def round_policy(self, protocol: str, dropout: float = 0.0) -> RoundPolicy:
        """The round planner's policy for ``protocol`` at a grid point with ``dropout``.

        SecAgg+ (this project's and Flower's) must survive the point's dropout rate, and at
        least the planner's default, against the default corrupt fraction, as ``secagg demo``
        chooses; ``--threshold`` and ``--degree`` override what the planner would pick.

        Args:
            protocol: a benchmarked protocol (one of :data:`PROTOCOLS` or :data:`FLOWER`).
            dropout: the grid point's dropout rate.

        Returns:
            The policy every round of that protocol at that point is planned with.

        Raises:
            ParameterError: SecAgg+ cannot tolerate the dropout rate, or a bad threshold.
        """
        planned = _PLANNED[protocol]
        if planned != "secagg+":
            return RoundPolicy(planned, threshold=self.threshold, value_bits=self.value_bits)
        return RoundPolicy(
            planned,
            dropout_fraction=max(DEFAULT_DROPOUT_FRACTION, dropout),
            corrupt_fraction=DEFAULT_CORRUPT_FRACTION,
            degree=self.degree,
            threshold=self.threshold,
            value_bits=self.value_bits,
        )


def dropped_count(num_clients: int, dropout: float) -> int:
    """How many of ``num_clients`` clients drop at a grid point with rate ``dropout``."""
    return round(dropout * num_clients)


# -- parsing one option --------------------------------------------------------------------------


def _check_protocols(names: Sequence[str]) -> tuple[tuple[str, ...], bool]:
    known = (*PROTOCOLS, FLOWER_OPTION, FLOWER)
    for name in names:
        if name not in known:
            raise ParameterError(
                f"unknown protocol {name!r}: choose from {', '.join((*PROTOCOLS, FLOWER_OPTION))}"
            )
    chosen = tuple(p for p in PROTOCOLS if p in names or p == PLAIN)
    return chosen, FLOWER_OPTION in names or FLOWER in names


def _check_dropouts(texts: Iterable[str]) -> tuple[float, ...]:
    values = tuple(parse_float("--dropouts", t) for t in texts)
    for value in values:
        if not 0 <= value < 1:
            raise ParameterError(
                f"--dropouts: a dropout rate must be in [0, 1), got {value}; "
                "1 would leave no client to aggregate"
            )
    return tuple(sorted(set(values)))


def _check_drop_rounds(texts: Iterable[str]) -> tuple[int, ...]:
    values = tuple(parse_int("--drop-at", t) for t in texts)
    for value in values:
        if not 0 <= value <= 3:
            raise ParameterError(
                f"--drop-at: rounds are 0 (AdvertiseKeys) to 3 (Unmasking), got {value}"
            )
    return tuple(sorted(set(values)))


def _check_threshold(text: object) -> int | None:
    """A positive ``--threshold`` that the round planner accepts, or None."""
    threshold = optional_positive_int("--threshold", text)
    if threshold is not None:
        try:
            RoundPolicy("plain", threshold=threshold)
        except ParameterError as error:
            raise ParameterError(f"--threshold: {error}") from None
    return threshold


def _check_key_bits(text: str) -> int:
    key_bits = parse_int("--key-bits", text)
    if key_bits not in SUPPORTED_KEY_BITS:
        raise ParameterError(f"--key-bits: use one of {sorted(SUPPORTED_KEY_BITS)}, got {key_bits}")
    return key_bits


def _check_time_budget(text: object) -> float | None:
    if text is None:
        return None
    time_budget = parse_float("--time-budget", str(text))
    if time_budget <= 0:
        raise ParameterError(f"--time-budget must be positive seconds, got {time_budget:g}")
    return time_budget


# -- the whole grid ------------------------------------------------------------------------------


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


def _check_grid_feasible(config: BenchConfig) -> None:
    """Every (n, dropout) must leave at least the threshold; SecAgg+ needs a valid k, t."""
    # The complete graph's threshold (and Paillier's fewest contributors) bounds every protocol.
    majority = config.round_policy("secagg")
    for n in config.clients:
        _check_clients(config, n, majority)
    if "secagg+" in config.protocols or config.flower_requested:
        for dropout in config.dropouts:
            try:
                config.round_policy("secagg+", dropout)
            except ParameterError:
                raise ParameterError(
                    f"--dropouts {dropout:g}: SecAgg+ cannot choose a degree for a dropout rate "
                    f"of {0.5 - DEFAULT_CORRUPT_FRACTION:g} or more; lower it or drop secagg+ "
                    "and flower"
                ) from None
    if config.degree is not None and (config.degree < 2 or config.degree % 2):
        raise ParameterError(f"--degree must be even and >= 2, got {config.degree}")


class _Options:
    """Raw option values by ``dest`` name, with the preset and defaults behind them."""

    def __init__(self, options: Mapping[str, object]) -> None:
        self._options = options
        name = options.get("preset")
        if name is not None and name not in PRESETS:
            raise ParameterError(f"unknown preset {name!r}: choose from {sorted(PRESETS)}")
        self.preset_name = None if name is None else str(name)
        self.preset = PRESETS[self.preset_name or DEFAULT_PRESET]

    def raw(self, name: str) -> object:
        """The value as given, or None."""
        return self._options.get(name)

    def texts(self, name: str, fallback: Iterable[object]) -> list[str]:
        """The grid values given for ``name``, else the preset's ``fallback``."""
        given = split_values(self._options.get(name))
        return given if given else [str(v) for v in fallback]

    def one(self, name: str, fallback: int, what: str) -> int:
        """One positive integer, else the preset's ``fallback``."""
        option = "--" + name.replace("_", "-")
        return positive_ints(option, self.texts(name, [fallback]), what)[0]

    def text(self, name: str) -> str:
        """A value no preset sets, else its default from :data:`OPTION_DEFAULTS`."""
        return str(self._options.get(name, OPTION_DEFAULTS[name]))

    def path(self, name: str) -> str | None:
        """An output path, or None."""
        value = self._options.get(name)
        return None if value is None else str(value)

    def flag(self, name: str) -> bool:
        """Whether a ``--no-...`` switch was given."""
        return bool(self._options.get(name, False))


def config_from_options(options: Mapping[str, object]) -> BenchConfig:
    """Validate raw option values and fill unset grid values from the preset.

    Args:
        options: option values by ``dest`` name (``clients``, ``drop_at``, ``json_path``, ...),
            as text or lists of text; a missing name takes its default.

    Returns:
        The checked configuration.

    Raises:
        ParameterError: an unknown protocol or preset, d <= 0, a dropout rate outside [0, 1),
            n below the threshold, or any other value that cannot be benchmarked; the message
            names the flag to change.
    """
    given = _Options(options)
    preset = given.preset
    protocols, flower = _check_protocols(given.texts("protocols", preset.protocols))
    threshold = _check_threshold(given.raw("threshold"))
    degree = given.raw("degree")
    key_bits = _check_key_bits(given.text("key_bits"))
    time_budget = _check_time_budget(given.raw("time_budget"))
    config = BenchConfig(
        preset=given.preset_name,
        protocols=protocols,
        clients=positive_ints("--clients", given.texts("clients", preset.clients), "n"),
        dims=positive_ints("--dims", given.texts("dims", preset.dims), "d"),
        dropouts=_check_dropouts(given.texts("dropouts", preset.dropouts)),
        drop_at=_check_drop_rounds(given.texts("drop_at", preset.drop_at)),
        repeats=given.one("repeats", preset.repeats, "repeats"),
        threshold=threshold,
        degree=None if degree is None else parse_int("--degree", str(degree)),
        value_bits=parse_int("--value-bits", given.text("value_bits")),
        clip=parse_float("--clip", given.text("clip")),
        key_bits=key_bits,
        paillier_max_dim=given.one("paillier_max_dim", preset.paillier_max_dim, "d"),
        phe_max_dim=given.one("phe_max_dim", preset.phe_max_dim, "d"),
        phe_clients=given.one("phe_clients", preset.phe_clients, "the count"),
        time_budget=time_budget,
        memory=not given.flag("no_memory"),
        seed=parse_int("--seed", given.text("seed")),
        progress=not given.flag("no_progress"),
        json_path=given.path("json_path"),
        csv_path=given.path("csv_path"),
        plot_dir=given.path("plot_dir"),
        flower_requested=flower and not given.flag("no_flower"),
    )
    _check_outputs_and_grid(config)
    return config


def _check_outputs_and_grid(config: BenchConfig) -> None:
    if config.plot_dir is not None and importlib.util.find_spec("matplotlib") is None:
        raise ParameterError("--plot-dir needs matplotlib: pip install secagg[plot]")
    # Fail on a bad clip or bit width now, for the largest n, not in the middle of the grid.
    QuantizationScheme(
        clip=config.clip, value_bits=config.value_bits, num_clients=max(config.clients)
    )
    _check_grid_feasible(config)
