"""``secagg bench``'s option values turned into a checked :class:`~protocols.bench.BenchConfig`.

Why this module exists: the benchmark library (:mod:`protocols.bench`) knows configurations, the
command line knows flags. Reading option text (comma lists, ``1e5``), checking each option's
range with a message that names its flag (``--dims: d must be a positive integer, got 0``) and
filling what was left unset from the preset is command line work, so it lives here, next to the
parser (:mod:`protocols.cli.bench`), and :mod:`protocols.bench` never imports the CLI.

Rules: :func:`config_from_options` takes the raw values by name (the ``dest`` of each flag), so
it serves argparse and any other caller; it checks every option, then hands the configuration to
:func:`protocols.bench.config.check_config` for what is about the grid as a whole. What runs
is named as in every other command: ``--protocol`` takes backends
(:data:`~protocols.defaults.BACKEND_NAMES`), ``--randomness`` Paillier's r^n choices and
``--reference`` the outside implementations; the deprecated ``--protocols`` names are translated
into them (:func:`deprecation_line` says how to write them now), and a name given to the wrong
option is refused with its right spelling. ``--value-bits`` and ``--clip`` default to
:mod:`protocols.defaults`, as everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from protocols.bench.config import (
    DEFAULT_PRESET,
    FLOWER,
    FLOWER_OPTION,
    PRESETS,
    PROTOCOLS,
    RANDOMNESS,
    REFERENCES,
    THREAT_MODELS,
    BenchConfig,
    Selection,
    check_config,
    run_names,
    selection_of,
)
from protocols.cli.arguments import (
    optional_positive_int,
    parse_float,
    parse_int,
    positive_ints,
    split_values,
)
from protocols.defaults import BACKEND_NAMES, DEFAULT_CLIP, DEFAULT_VALUE_BITS
from protocols.rounds import RoundPolicy, ThreatModel
from protocols.simulate import ROUND_NAMES
from secagg.errors import ParameterError
from secagg.hazmat.paillier import SUPPORTED_KEY_BITS

__all__ = ["OPTION_DEFAULTS", "config_from_options", "deprecation_line"]

#: Defaults of the options that no preset sets (raw text, as a command line gives them); the
#: quantization is every entry point's (:mod:`protocols.defaults`).
OPTION_DEFAULTS: Final[Mapping[str, str]] = {
    "value_bits": str(DEFAULT_VALUE_BITS),
    "clip": str(DEFAULT_CLIP),
    "key_bits": "2048",
    "seed": "0",
}

#: The names the deprecated ``--protocols`` took: record names, and ``flower``.
_OLD_NAMES: Final = (*PROTOCOLS, FLOWER_OPTION, FLOWER)


def _new_spelling(selection: Selection) -> str:
    """``selection`` as the ``--protocol``, ``--randomness`` and ``--reference`` options."""
    words = ["--protocol", *selection.backends] if selection.backends else []
    if "paillier" in selection.backends and selection.randomness:
        words += ["--randomness", *selection.randomness]
    if selection.references:
        words += ["--reference", *selection.references]
    return " ".join(words)


def _old_selection(names: Sequence[str]) -> Selection:
    """What the deprecated ``--protocols NAME ...`` asks for."""
    for name in names:
        if name not in _OLD_NAMES:
            raise ParameterError(
                f"--protocols: unknown protocol {name!r}: choose from "
                f"{', '.join((*PROTOCOLS, FLOWER_OPTION))} (or use --protocol, --randomness "
                "and --reference)"
            )
    return selection_of(tuple(names))


def _names(option: str, names: Sequence[str], known: Sequence[str], hint: str) -> tuple[str, ...]:
    """The names given to ``option``, each one of ``known``, in ``known``'s order."""
    for name in names:
        if name not in known:
            old = (
                f"; {name!r} is {_new_spelling(_old_selection([name]))}"
                if name in _OLD_NAMES
                else ""
            )
            raise ParameterError(
                f"{option}: unknown name {name!r}: choose from {', '.join(known)}{hint}{old}"
            )
    return tuple(k for k in known if k in names)


def _selection(given: _Options) -> Selection:
    """What runs: ``--protocol`` and ``--reference`` (else the preset's), ``--randomness``.

    Give either of ``--protocol`` and ``--reference`` and the other one defaults to none
    (plain always runs); give neither and the preset chooses.
    """
    old = split_values(given.raw("protocols"))
    backends, references, randomness = (
        split_values(given.raw(name)) for name in ("protocol", "reference", "randomness")
    )
    if old:
        if backends or references or randomness:
            raise ParameterError(
                "--protocols is the deprecated spelling of --protocol, --randomness and "
                "--reference: use only the new options"
            )
        return _old_selection(old)
    preset = selection_of(given.preset.protocols)
    chosen = Selection(
        backends=_names("--protocol", backends, BACKEND_NAMES, " (phe, flower: --reference)"),
        randomness=_names("--randomness", randomness, RANDOMNESS, ""),
        references=_names("--reference", references, REFERENCES, ""),
    )
    if not (backends or references):
        chosen = Selection(preset.backends, chosen.randomness, preset.references)
    if randomness and "paillier" not in chosen.backends:
        raise ParameterError("--randomness applies to --protocol paillier only")
    if not randomness:
        chosen = Selection(chosen.backends, preset.randomness or RANDOMNESS, chosen.references)
    return chosen


def deprecation_line(options: Mapping[str, object]) -> str | None:
    """The warning for the deprecated ``--protocols`` spelling, with the new one, or None.

    Args:
        options: option values by ``dest`` name (the old spelling's is ``protocols``).

    Returns:
        One line (``--protocols is deprecated: write --protocol secagg --reference phe``), or
        None when ``--protocols`` was not given.

    Raises:
        ParameterError: ``--protocols`` names an unknown protocol.
    """
    old = split_values(options.get("protocols"))
    if not old:
        return None
    return f"--protocols is deprecated: write {_new_spelling(_old_selection(old))}"


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
    last = len(ROUND_NAMES) - 1
    for value in values:
        if not 0 <= value <= last:
            rounds = ", ".join(f"{i} {name}" for i, name in enumerate(ROUND_NAMES))
            raise ParameterError(f"--drop-at: rounds are 0 to {last} ({rounds}), got {value}")
    return tuple(sorted(set(values)))


def _check_threat_models(texts: Iterable[str]) -> tuple[ThreatModel, ...]:
    """The threat models asked for, semi-honest first (the base of every active ratio)."""
    names = list(texts)
    for name in names:
        if name not in THREAT_MODELS:
            raise ParameterError(
                f"--threat-models: unknown threat model {name!r}: choose from "
                f"{', '.join(THREAT_MODELS)}"
            )
    return tuple(m for m in THREAT_MODELS if m in names)


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

    def optional(self, name: str, fallback: int | None) -> int | None:
        """One positive integer, else the preset's ``fallback`` (``None``: no limit)."""
        value = self._options.get(name)
        if value is None:
            return fallback
        return optional_positive_int("--" + name.replace("_", "-"), value)

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
    if given.path("json_path") == given.path("csv_path") == "-":
        raise ParameterError("--json and --csv cannot both write to stdout: give one a PATH")
    protocols, flower = run_names(_selection(given))
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
        threat_models=_check_threat_models(given.texts("threat_models", preset.threat_models)),
        complete_max_clients=given.optional("complete_max_clients", preset.complete_max_clients),
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
    check_config(config)
    return config
