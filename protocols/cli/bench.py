"""The ``secagg bench`` command line: its options, and what a run prints and writes.

Why this module exists: it is the only part of the benchmark that knows about :mod:`argparse`,
standard output and files, so the command can be mounted in the ``secagg`` CLI
(:func:`add_bench_arguments` and :func:`run_bench`) or run standalone (:func:`main`,
``python -m protocols.bench``) while the measuring modules in :mod:`protocols.bench` stay free
of I/O and of flags. Imports flow ``protocols.cli`` -> ``protocols.bench``: the benchmark
library never imports this module (``from protocols.bench import main`` still works, as a kept
import path resolved on first use).

Rules: every option arrives as text and is validated by
:func:`~protocols.cli.bench_options.config_from_options`, which raises :class:`ParameterError`
naming the flag. What runs is named as everywhere else: ``--protocol`` takes the backends of
:data:`~protocols.defaults.BACKEND_NAMES` (as ``secagg demo --protocol`` and ``secagg train
--aggregator`` do), ``--randomness`` Paillier's r^n choices (as ``secagg demo --randomness``),
and ``--reference`` the outside implementations (phe, Flower), which are no backend of this
project. The old ``--protocols`` spelling still works, hidden, with a warning that gives the
new one. ``--json`` and ``--csv`` alone (or with ``-``) write to standard output, as ``--json``
does in every other command, and then the table is not printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from protocols.bench.config import (
    DEFAULT_PRESET,
    FLOWER,
    PRESETS,
    RANDOMNESS,
    REFERENCES,
    THREAT_MODELS,
    BenchConfig,
)
from protocols.bench.plots import write_plots
from protocols.bench.report import execute, render_csv, render_table
from protocols.cli.bench_options import OPTION_DEFAULTS, config_from_options, deprecation_line
from protocols.defaults import BACKEND_NAMES
from protocols.simulate import ROUND_NAMES
from secagg.errors import SecAggError

__all__ = ["add_bench_arguments", "config_from_args", "main", "run_bench"]


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``secagg bench`` options to ``parser``.

    Grid options take one or more values, space- or comma-separated (``--clients 100 300`` or
    ``--clients 100,300``); values left unset come from ``--preset`` (default ``quick``).
    Validation happens in :func:`run_bench`, which raises :class:`ParameterError`.

    Args:
        parser: the (sub)parser to extend.
    """
    parser.description = (
        "Measure secure aggregation against a plain sum in the same run: wall and CPU time, "
        "bytes and peak memory per party and round, medians with min-max over repeats."
    )
    _add_grid_arguments(parser)
    _add_protocol_arguments(parser)
    _add_run_arguments(parser)


def _add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    grid = parser.add_argument_group("grid (values left unset come from --preset)")
    grid.add_argument(
        "--preset",
        default=None,
        metavar="{" + ",".join(PRESETS) + "}",
        help="; ".join(f"{name}: {p.description}" for name, p in PRESETS.items())
        + f" (default: {DEFAULT_PRESET})",
    )
    _add_selection_arguments(grid)
    grid.add_argument("--clients", nargs="+", default=None, help="numbers of clients n")
    grid.add_argument(
        "--dims", "--dim", dest="dims", nargs="+", default=None, help="vector lengths d (1e5 works)"
    )
    grid.add_argument(
        "--dropouts",
        "--dropout",
        dest="dropouts",
        nargs="+",
        default=None,
        help="dropout rates in [0, 1)",
    )
    rounds = ", ".join(f"{i} {name}" for i, name in enumerate(ROUND_NAMES))
    grid.add_argument(
        "--drop-at",
        nargs="+",
        default=None,
        help=f"protocol rounds at which clients drop ({rounds}; a semi-honest round has no 3)",
    )
    grid.add_argument(
        "--threat-model",
        "--threat-models",
        dest="threat_models",
        nargs="+",
        default=None,
        help=f"any of: {', '.join(THREAT_MODELS)}: each masking protocol (secagg, secagg+) "
        "runs in each, side by side; the others have one protocol whatever the threat",
    )
    grid.add_argument(
        "--complete-max-clients",
        default=None,
        help="secagg (the complete graph, cost ~ n^2) runs only up to this n",
    )
    grid.add_argument("--repeats", default=None, help="timed runs per grid point")


def _add_selection_arguments(grid: argparse._ArgumentGroup) -> None:
    """What runs: backends (as in ``secagg demo --protocol``), r^n choices, references."""
    grid.add_argument(
        "--protocol",
        nargs="+",
        default=None,
        metavar="{" + ",".join(BACKEND_NAMES) + "}",
        help=f"backends to measure, any of: {', '.join(BACKEND_NAMES)} (plain always runs; "
        "with --protocol or --reference given, the other one defaults to none, else the "
        "preset chooses)",
    )
    grid.add_argument(
        "--randomness",
        nargs="+",
        default=None,
        metavar="{" + ",".join(RANDOMNESS) + "}",
        help="Paillier's r^n, one or both: fresh (standard assumption), djn (DJN short "
        "exponent, faster); default: both",
    )
    grid.add_argument(
        "--reference",
        nargs="+",
        default=None,
        metavar="{" + ",".join(REFERENCES) + "}",
        help=f"outside implementations to measure beside them, any of: {', '.join(REFERENCES)} "
        "(phe's per-value Paillier; Flower 1.42's SecAgg+, needs the flower extra)",
    )
    # The spelling before one vocabulary; run_bench says how to write it now.
    grid.add_argument("--protocols", nargs="+", default=None, help=argparse.SUPPRESS)


def _add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    proto = parser.add_argument_group("protocol parameters")
    proto.add_argument("--threshold", default=None, help="Shamir threshold / min contributors")
    proto.add_argument("--degree", default=None, help="SecAgg+ neighbour count k (even)")
    proto.add_argument(
        "--value-bits",
        default=OPTION_DEFAULTS["value_bits"],
        help="quantization bits per value (default: %(default)s, every entry point's)",
    )
    proto.add_argument(
        "--clip",
        default=OPTION_DEFAULTS["clip"],
        help="clipping bound of the float updates (default: %(default)s)",
    )
    proto.add_argument(
        "--key-bits", default=OPTION_DEFAULTS["key_bits"], help="Paillier key size: 2048 or 3072"
    )
    proto.add_argument(
        "--paillier-max-dim", default=None, help="Paillier runs on at most this d, then scales"
    )
    proto.add_argument("--phe-max-dim", default=None, help="phe runs on at most this d")
    proto.add_argument("--phe-clients", default=None, help="clients that phe-encrypt")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("run and output")
    run.add_argument(
        "--time-budget", default=None, help="seconds; no new grid point starts after this"
    )
    run.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run")
    run.add_argument("--no-flower", action="store_true", help="leave out the Flower reference")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.add_argument(
        "--seed", default=OPTION_DEFAULTS["seed"], help="seed of the benchmark's DATA only"
    )
    for flag, what in (("--json", "the JSON document"), ("--csv", "one CSV row per record")):
        run.add_argument(
            flag,
            dest=flag[2:] + "_path",
            nargs="?",
            const="-",
            default=None,
            metavar="PATH",
            help=f"write {what} to PATH; alone or '-': to stdout, instead of the table",
        )
    run.add_argument("--plot-dir", default=None, metavar="DIR", help="write PNG plots here")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Validate parsed arguments and fill unset grid values from the preset.

    Args:
        args: the namespace :func:`add_bench_arguments` describes (missing options take their
            defaults).

    Returns:
        The checked configuration.

    Raises:
        ParameterError: an unknown protocol or preset, d <= 0, a dropout rate outside [0, 1),
            n below the threshold, or any other value that cannot be benchmarked.
    """
    return config_from_options(vars(args))


def _write(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        Path(target).write_text(text, encoding="utf-8")


def run_bench(args: argparse.Namespace) -> int:
    """Run ``secagg bench``: the grid, then the table, JSON, CSV and plots asked for.

    Args:
        args: parsed options (see :func:`add_bench_arguments`).

    Returns:
        0 when every run of this project's protocols gave the exact sum; 1 otherwise.
        (A Flower reference run that halts is reported, not counted as a failure.)

    Raises:
        ParameterError: a bad argument (unknown protocol, d <= 0, dropout >= 1, n below the
            threshold, ...), with the fix in the message.
    """
    config = config_from_args(args)
    deprecated = deprecation_line(vars(args))
    if deprecated is not None:
        print(f"secagg: warning: {deprecated}", file=sys.stderr)
    result = execute(config)
    to_stdout = "-" in (config.json_path, config.csv_path)
    if not to_stdout:
        print(render_table(result))
    if config.json_path is not None:
        _write(config.json_path, json.dumps(result.document(), indent=2))
    if config.csv_path is not None:
        _write(config.csv_path, render_csv(result.records))
    if config.plot_dir is not None:
        paths = write_plots(result, config.plot_dir)
        print("plots: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    failed = [r for r in result.records if r["status"] != "ok" and r["protocol"] != FLOWER]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark standalone; bad arguments print ``error: ...`` and return 2.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        :func:`run_bench`'s exit code, or 2 for a bad argument.
    """
    parser = argparse.ArgumentParser(prog="secagg bench")
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_bench(args)
    except SecAggError as error:
        print(f"secagg bench: error: {error}", file=sys.stderr)
        return 2
