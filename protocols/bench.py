"""``secagg bench``: what secure aggregation costs, measured against a plain sum in the same run.

Overhead figures are only worth citing when the baseline ran on the same machine, in the same
process, on the same inputs and at the same moment. This module therefore runs a grid over
protocol, number of clients n, vector length d, dropout rate and the round at which clients drop,
and for every grid point it measures the plain sum *and* each secure protocol, per party and per
protocol round: wall time (``time.perf_counter``), CPU time (``time.process_time``), bytes sent
and received (the project's wire codec, cross-checked against :class:`SimulationReport`) and peak
memory (:mod:`tracemalloc`, which numpy reports to). Each point is repeated; medians with min-max
are reported, and every overhead is a ratio to the plain-sum record of the same run, named by id.

Rules the numbers follow:

- Every protocol's client time includes quantizing its float update; the plain baseline is
  "quantize, send the ring vector in the clear, the server adds it".
- Timed runs never trace memory (tracing slows allocation); one extra run per point does.
- One untimed warm-up run per protocol fills caches (DJN tables, imports) before timing.
- Slow paths run on a smaller d and are scaled, and the output says so: packed Paillier on about
  ``--paillier-max-dim`` values (whole ciphertexts), scaled by the ratio of ciphertext counts;
  phe's per-value path on ``--phe-max-dim`` values, scaled linearly, and only ``--phe-clients``
  clients encrypt (a client's cost does not depend on the others).
- Flower's SecAgg+ (when ``flwr`` is installed) runs in the same process on the same grid point:
  Flower 1.42's own client stage functions from ``secaggplus_mod`` and its server workflow's
  unmasking logic rebuilt from Flower's building blocks (P-384 key agreement, pycryptodome
  Shamir, Fernet, ``pseudo_rand_gen``, ``quantize``), without gRPC or the ServerApp. It is
  labelled as exactly that.

``add_bench_arguments`` and ``run_bench`` are the hooks the ``secagg`` command uses; ``main``
runs the benchmark standalone (``python -m protocols.bench``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import platform
import secrets
import statistics
import sys
import time
import tracemalloc
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from protocols import wire
from protocols.graph import (
    NeighbourGraph,
    complete_graph,
    harary_graph,
    secagg_plus_parameters,
    secagg_threshold,
)
from protocols.masking import MaskingParams
from protocols.messages import SERVER_ID, MaskedInput, Message
from protocols.paillier import KeyHolder, PaillierParams
from protocols.simulate import (
    ROUND_NAMES,
    PaillierSimulator,
    SimulationReport,
    Simulator,
    _Driver,
)
from secagg.encoding import QuantizationScheme
from secagg.errors import ParameterError, SecAggError
from secagg.hazmat import paillier as hazmat_paillier

__all__ = ["PRESETS", "PROTOCOLS", "BenchConfig", "add_bench_arguments", "main", "run_bench"]

_T = TypeVar("_T")
FloatArray = npt.NDArray[np.float64]
RingArray = npt.NDArray[np.unsignedinteger]

#: Schema name written into every JSON document; bump on incompatible changes.
SCHEMA: Final = "secagg-bench/1"
PLAIN: Final = "plain"
FLOWER: Final = "flower-secagg+"
#: Protocols in the order they run at each grid point (plain first: it is every ratio's base).
PROTOCOLS: Final = (PLAIN, "secagg", "secagg+", "paillier-fresh", "paillier-djn", "phe")
_PROTOCOL_LABELS: Final = {
    PLAIN: "plain sum (quantize, send in the clear, add)",
    "secagg": "SecAgg, complete graph (this project)",
    "secagg+": "SecAgg+, Harary graph (this project)",
    "paillier-fresh": "Paillier packed, fresh r^n (this project)",
    "paillier-djn": "Paillier packed, DJN r^n (this project)",
    "phe": "phe 1.5 per-value Paillier (reference)",
    FLOWER: "Flower 1.42 SecAgg+ building blocks, in-process (reference)",
}
_PAILLIER_PROTOCOLS: Final = ("paillier-fresh", "paillier-djn")
FLOWER_MISSING: Final = "flower: not installed (pip install secagg[flower])"

#: The round in which clients quantize and upload (masked input / encryption).
UPLOAD_ROUND: Final = 2
TOTAL: Final = "total"
ROUNDS: Final = (*ROUND_NAMES, TOTAL)
CLIENT, SERVER, KEY_HOLDER, ALL = "client", "server", "key_holder", "all"
PARTIES: Final = (CLIENT, SERVER, KEY_HOLDER, ALL)
METRICS: Final = ("wall_s", "cpu_s", "bytes_sent", "bytes_received")
#: Flower's SecAgg+ defaults (SecAggPlusWorkflow), used for its reference runs.
_FLOWER_CLIP: Final = 8.0
_FLOWER_TARGET_RANGE: Final = 1 << 22
_FLOWER_MOD_RANGE: Final = 1 << 32
#: SecAgg+ parameter choice tolerates this corrupt fraction (as ``secagg demo`` does).
_CORRUPT_FRACTION: Final = 0.05

PartyKey = int | str


@dataclass(frozen=True, slots=True)
class Preset:
    """A named grid: what ``--preset`` fills in for every argument left unset."""

    description: str
    protocols: tuple[str, ...]
    clients: tuple[int, ...]
    dims: tuple[int, ...]
    dropouts: tuple[float, ...]
    drop_at: tuple[int, ...]
    repeats: int
    paillier_max_dim: int
    phe_max_dim: int
    phe_clients: int


PRESETS: Final[Mapping[str, Preset]] = {
    "quick": Preset(
        description="n in {5, 10}, d in {10^3, 10^4}, dropout 0/20%%: under a minute on 2 "
        "cores, what the README shows",
        protocols=(*PROTOCOLS, "flower"),
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
        protocols=(*PROTOCOLS, "flower"),
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
#: Defaults when neither a preset nor an argument gives a value.
_DEFAULT_PRESET: Final = "quick"


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """A validated benchmark configuration (see :func:`config_from_args`)."""

    preset: str | None
    protocols: tuple[str, ...]
    clients: tuple[int, ...]
    dims: tuple[int, ...]
    dropouts: tuple[float, ...]
    drop_at: tuple[int, ...]
    repeats: int
    threshold: int | None
    degree: int | None
    value_bits: int
    clip: float
    key_bits: int
    paillier_max_dim: int
    phe_max_dim: int
    phe_clients: int
    time_budget: float | None
    memory: bool
    seed: int
    progress: bool
    json_path: str | None
    csv_path: str | None
    plot_dir: str | None
    flower_requested: bool


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
    grid = parser.add_argument_group("grid (values left unset come from --preset)")
    grid.add_argument(
        "--preset",
        default=None,
        metavar="{" + ",".join(PRESETS) + "}",
        help="; ".join(f"{name}: {p.description}" for name, p in PRESETS.items())
        + f" (default: {_DEFAULT_PRESET})",
    )
    names = ", ".join((*PROTOCOLS, "flower"))
    grid.add_argument(
        "--protocols", nargs="+", default=None, help=f"any of: {names} (plain always runs)"
    )
    grid.add_argument("--clients", nargs="+", default=None, help="numbers of clients n")
    grid.add_argument("--dims", nargs="+", default=None, help="vector lengths d (1e5 works)")
    grid.add_argument("--dropouts", nargs="+", default=None, help="dropout rates in [0, 1)")
    grid.add_argument(
        "--drop-at", nargs="+", default=None, help="protocol round (0-3) at which clients drop"
    )
    grid.add_argument("--repeats", default=None, help="timed runs per grid point")
    proto = parser.add_argument_group("protocol parameters")
    proto.add_argument("--threshold", default=None, help="Shamir threshold / min contributors")
    proto.add_argument("--degree", default=None, help="SecAgg+ neighbour count k (even)")
    proto.add_argument("--value-bits", default="16", help="quantization bits per value")
    proto.add_argument("--clip", default="1.0", help="clipping bound of the float updates")
    proto.add_argument("--key-bits", default="2048", help="Paillier key size: 2048 or 3072")
    proto.add_argument(
        "--paillier-max-dim", default=None, help="Paillier runs on at most this d, then scales"
    )
    proto.add_argument("--phe-max-dim", default=None, help="phe runs on at most this d")
    proto.add_argument("--phe-clients", default=None, help="clients that phe-encrypt")
    run = parser.add_argument_group("run and output")
    run.add_argument(
        "--time-budget", default=None, help="seconds; no new grid point starts after this"
    )
    run.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run")
    run.add_argument("--no-flower", action="store_true", help="leave out the Flower reference")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.add_argument("--seed", default="0", help="seed of the benchmark's DATA only")
    run.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="'-': stdout")
    run.add_argument("--csv", dest="csv_path", default=None, metavar="PATH", help="'-': stdout")
    run.add_argument("--plot-dir", default=None, metavar="DIR", help="write PNG plots here")


def _split(values: Sequence[str] | str | None) -> list[str]:
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _parse_int(option: str, text: str) -> int:
    try:
        number = float(text)
    except ValueError:
        raise ParameterError(f"{option}: {text!r} is not an integer") from None
    if not math.isfinite(number) or number != int(number):
        raise ParameterError(f"{option}: {text!r} is not an integer")
    return int(number)


def _parse_float(option: str, text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ParameterError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ParameterError(f"{option}: {text!r} is not a finite number")
    return number


def _positive_ints(option: str, texts: Iterable[str], what: str) -> tuple[int, ...]:
    values = tuple(_parse_int(option, t) for t in texts)
    for value in values:
        if value <= 0:
            raise ParameterError(f"{option}: {what} must be a positive integer, got {value}")
    return tuple(sorted(set(values)))


def _optional_positive_int(option: str, text: object) -> int | None:
    if text is None:
        return None
    return _positive_ints(option, [str(text)], "the value")[0]


def _check_protocols(names: Sequence[str]) -> tuple[tuple[str, ...], bool]:
    known = (*PROTOCOLS, "flower", FLOWER)
    for name in names:
        if name not in known:
            raise ParameterError(
                f"unknown protocol {name!r}: choose from {', '.join((*PROTOCOLS, 'flower'))}"
            )
    chosen = tuple(p for p in PROTOCOLS if p in names or p == PLAIN)
    return chosen, "flower" in names or FLOWER in names


def _check_dropouts(texts: Iterable[str]) -> tuple[float, ...]:
    values = tuple(_parse_float("--dropouts", t) for t in texts)
    for value in values:
        if not 0 <= value < 1:
            raise ParameterError(
                f"--dropouts: a dropout rate must be in [0, 1), got {value}; "
                "1 would leave no client to aggregate"
            )
    return tuple(sorted(set(values)))


def _check_drop_rounds(texts: Iterable[str]) -> tuple[int, ...]:
    values = tuple(_parse_int("--drop-at", t) for t in texts)
    for value in values:
        if not 0 <= value <= 3:
            raise ParameterError(
                f"--drop-at: rounds are 0 (AdvertiseKeys) to 3 (Unmasking), got {value}"
            )
    return tuple(sorted(set(values)))


def _threshold_for(config: BenchConfig, n: int) -> int:
    return config.threshold or secagg_threshold(n)


def _check_grid_feasible(config: BenchConfig) -> None:
    """Every (n, dropout) must leave at least the threshold; SecAgg+ needs a valid k, t."""
    for n in config.clients:
        if n < 2:
            raise ParameterError(f"--clients: secure aggregation needs n >= 2, got {n}")
        threshold = _threshold_for(config, n)
        if threshold > n:
            raise ParameterError(
                f"n={n} is below the threshold t={threshold}: raise --clients or lower --threshold"
            )
        if config.degree is not None and config.degree >= n:
            raise ParameterError(
                f"--degree {config.degree} needs more than {config.degree} clients"
            )
        for dropout in config.dropouts:
            survivors = n - _dropped_count(n, dropout)
            if survivors < threshold:
                raise ParameterError(
                    f"n={n} with dropout {dropout:g} leaves {survivors} clients, below the "
                    f"threshold t={threshold}: lower --dropouts, raise --clients or lower "
                    "--threshold"
                )
    if "secagg+" in config.protocols or config.flower_requested:
        for dropout in config.dropouts:
            if max(0.05, dropout) + _CORRUPT_FRACTION >= 0.5:
                raise ParameterError(
                    f"--dropouts {dropout:g}: SecAgg+ cannot choose a degree for a dropout rate "
                    f"of {0.5 - _CORRUPT_FRACTION:g} or more; lower it or drop secagg+ and flower"
                )
    if config.degree is not None and (config.degree < 2 or config.degree % 2):
        raise ParameterError(f"--degree must be even and >= 2, got {config.degree}")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Validate parsed arguments and fill unset grid values from the preset.

    Args:
        args: the namespace :func:`add_bench_arguments` describes.

    Returns:
        The checked configuration.

    Raises:
        ParameterError: an unknown protocol or preset, d <= 0, a dropout rate outside [0, 1),
            n below the threshold, or any other value that cannot be benchmarked.
    """
    preset_name = getattr(args, "preset", None)
    if preset_name is not None and preset_name not in PRESETS:
        raise ParameterError(f"unknown preset {preset_name!r}: choose from {sorted(PRESETS)}")
    preset = PRESETS[preset_name or _DEFAULT_PRESET]

    def pick(name: str, fallback: Iterable[object]) -> list[str]:
        given = _split(getattr(args, name, None))
        return given if given else [str(v) for v in fallback]

    protocols, flower = _check_protocols(pick("protocols", preset.protocols))
    threshold = _optional_positive_int("--threshold", getattr(args, "threshold", None))
    degree = getattr(args, "degree", None)
    key_bits = _parse_int("--key-bits", str(getattr(args, "key_bits", "2048")))
    if key_bits not in hazmat_paillier.SUPPORTED_KEY_BITS:
        raise ParameterError(
            f"--key-bits: use one of {sorted(hazmat_paillier.SUPPORTED_KEY_BITS)}, got {key_bits}"
        )
    budget = getattr(args, "time_budget", None)
    time_budget = None if budget is None else _parse_float("--time-budget", str(budget))
    if time_budget is not None and time_budget <= 0:
        raise ParameterError(f"--time-budget must be positive seconds, got {time_budget:g}")
    config = BenchConfig(
        preset=preset_name,
        protocols=protocols,
        clients=_positive_ints("--clients", pick("clients", preset.clients), "n"),
        dims=_positive_ints("--dims", pick("dims", preset.dims), "d"),
        dropouts=_check_dropouts(pick("dropouts", preset.dropouts)),
        drop_at=_check_drop_rounds(pick("drop_at", preset.drop_at)),
        repeats=_positive_ints("--repeats", pick("repeats", [preset.repeats]), "repeats")[0],
        threshold=threshold,
        degree=None if degree is None else _parse_int("--degree", str(degree)),
        value_bits=_parse_int("--value-bits", str(getattr(args, "value_bits", "16"))),
        clip=_parse_float("--clip", str(getattr(args, "clip", "1.0"))),
        key_bits=key_bits,
        paillier_max_dim=_positive_ints(
            "--paillier-max-dim", pick("paillier_max_dim", [preset.paillier_max_dim]), "d"
        )[0],
        phe_max_dim=_positive_ints("--phe-max-dim", pick("phe_max_dim", [preset.phe_max_dim]), "d")[
            0
        ],
        phe_clients=_positive_ints(
            "--phe-clients", pick("phe_clients", [preset.phe_clients]), "the count"
        )[0],
        time_budget=time_budget,
        memory=not getattr(args, "no_memory", False),
        seed=_parse_int("--seed", str(getattr(args, "seed", "0"))),
        progress=not getattr(args, "no_progress", False),
        json_path=getattr(args, "json_path", None),
        csv_path=getattr(args, "csv_path", None),
        plot_dir=getattr(args, "plot_dir", None),
        flower_requested=flower and not getattr(args, "no_flower", False),
    )
    if config.plot_dir is not None and importlib.util.find_spec("matplotlib") is None:
        raise ParameterError("--plot-dir needs matplotlib: pip install secagg[plot]")
    # Fail on a bad clip or bit width now, for the largest n, not in the middle of the grid.
    QuantizationScheme(
        clip=config.clip, value_bits=config.value_bits, num_clients=max(config.clients)
    )
    _check_grid_feasible(config)
    return config


# ------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Cost:
    """What one party spent in one round of one run (``peak_bytes`` only in the memory run)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    bytes_sent: float = 0.0
    bytes_received: float = 0.0
    peak_bytes: float | None = None

    def scaled(self, factor: float) -> Cost:
        """Time and bytes times ``factor``; memory is left as measured."""
        return Cost(
            self.wall_s * factor,
            self.cpu_s * factor,
            self.bytes_sent * factor,
            self.bytes_received * factor,
            self.peak_bytes,
        )


class Meter:
    """Records wall time, CPU time, bytes and (optionally) memory per party and protocol round.

    Memory follows ``demos/bench_masking.py``: each party's steps add what they allocate and
    keep to the party's ``held`` bytes (outgoing messages included), and its peak is the largest
    ``held + transient peak`` seen during one of its steps.

    Args:
        trace_memory: measure memory with :mod:`tracemalloc` (the caller starts and stops it).
    """

    def __init__(self, *, trace_memory: bool = False) -> None:
        self.trace_memory = trace_memory
        self.costs: dict[tuple[PartyKey, int], Cost] = defaultdict(Cost)
        self._held: dict[PartyKey, int] = defaultdict(int)

    def measure(
        self, party: PartyKey, round_index: int, step: Callable[..., _T], *args: object
    ) -> _T:
        """Run ``step(*args)`` as ``party``'s work in ``round_index`` and record its cost."""
        cost = self.costs[(party, round_index)]
        before = 0
        if self.trace_memory:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return step(*args)
        finally:
            cost.cpu_s += time.process_time() - cpu
            cost.wall_s += time.perf_counter() - wall
            if self.trace_memory:
                current, peak = tracemalloc.get_traced_memory()
                held = self._held[party]
                cost.peak_bytes = max(cost.peak_bytes or 0, held + peak - before)
                self._held[party] = held + current - before

    def add_bytes(
        self, party: PartyKey, round_index: int, *, sent: float = 0, received: float = 0
    ) -> None:
        """Count traffic of ``party`` in ``round_index``."""
        cost = self.costs[(party, round_index)]
        cost.bytes_sent += sent
        cost.bytes_received += received

    def parties(self) -> set[PartyKey]:
        """Every party that did something."""
        return {party for party, _ in self.costs}


def _message_bytes(items: Iterable[object]) -> int:
    return sum(wire.encoded_size(item) for item in items if isinstance(item, Message))


def _metered_client_step(
    meter: Meter, client_id: int, round_index: int, run: Callable[[], _T], args: tuple[object, ...]
) -> _T:
    """One client step (``run``, the simulator's own timed call) plus CPU, memory and bytes."""
    out = meter.measure(client_id, round_index, run)
    received = _message_bytes(args)
    sent = _message_bytes(out) if isinstance(out, list) else 0
    meter.add_bytes(client_id, round_index, sent=sent, received=received)
    # What a client sends the server receives, and the other way round: the simulator delivers
    # every message between a client and the server within the same round.
    meter.add_bytes(SERVER, round_index, sent=received, received=sent)
    return out


class _Metering(_Driver):
    """Extends a simulator's two timing hooks so every party step also feeds a :class:`Meter`.

    ``_timed_server`` and ``_timed_client`` are where a simulator steps a party; extending
    them is the one seam that sees every step with its round and its messages.
    """

    _meter: Meter

    def _timed_server(self, round_index: int, step: Callable[..., _T], *args: object) -> _T:
        timed = super()._timed_server

        def run() -> _T:
            return timed(round_index, step, *args)

        return self._meter.measure(SERVER, round_index, run)

    def _timed_client(
        self, client_id: int, round_index: int, step: Callable[..., _T], *args: object
    ) -> _T:
        timed = super()._timed_client

        def run() -> _T:
            return timed(client_id, round_index, step, *args)

        return _metered_client_step(self._meter, client_id, round_index, run, args)


class _MeteredSimulator(_Metering, Simulator):
    """A masking :class:`Simulator` whose party steps feed a :class:`Meter`."""

    def __init__(self, meter: Meter, *args: Any, **kwargs: Any) -> None:
        self._meter = meter
        Simulator.__init__(self, *args, **kwargs)


class _MeteredPaillierSimulator(_Metering, PaillierSimulator):
    """A :class:`PaillierSimulator` whose party steps feed a :class:`Meter`."""

    def __init__(self, meter: Meter, *args: Any, **kwargs: Any) -> None:
        self._meter = meter
        PaillierSimulator.__init__(self, *args, **kwargs)


class _MeteredKeyHolder(KeyHolder):
    """A :class:`KeyHolder` whose decryptions are metered, in round 3 as the simulator does."""

    def __init__(self, meter: Meter, *args: Any, **kwargs: Any) -> None:
        self._meter = meter
        super().__init__(*args, **kwargs)

    def receive(self, message: Message) -> list[Message]:
        """Decrypt as :meth:`KeyHolder.receive` does, recording time, memory and bytes."""
        round_index = UPLOAD_ROUND + 1
        replies = self._meter.measure(KEY_HOLDER, round_index, super().receive, message)
        received, sent = _message_bytes([message]), _message_bytes(replies)
        self._meter.add_bytes(KEY_HOLDER, round_index, sent=sent, received=received)
        self._meter.add_bytes(SERVER, round_index, sent=received, received=sent)
        return replies


# ------------------------------------------------------------------------------------------
# Grid points and runs
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """One cell of the grid without the protocol: every protocol runs on the same cell."""

    clients: int
    dim: int
    dropout: float
    drop_at: int

    def label(self) -> str:
        """Short text for tables and progress bars."""
        return f"n={self.clients} d={self.dim} drop={self.dropout:.0%}@r{self.drop_at}"


@dataclass(frozen=True, slots=True)
class GridPoint:
    """A scenario and the protocol run on it."""

    scenario: Scenario
    protocol: str


def _dropped_count(n: int, dropout: float) -> int:
    return round(dropout * n)


@dataclass(slots=True)
class Outcome:
    """One run of one grid point: the meter, what the round set up, and whether it was right."""

    meter: Meter
    finishers: frozenset[int]
    measured_dim: int
    setup: dict[str, object] = field(default_factory=dict)
    correct: bool = True
    error: str | None = None
    #: Factor from the measured run to the grid point's d; d / measured_dim unless set.
    scale: float | None = None


class _RunContext:
    """Everything one run of one grid point needs: data, dropout schedule, keys, the meter."""

    def __init__(
        self,
        config: BenchConfig,
        point: GridPoint,
        repeat: int,
        meter: Meter,
        keys: Callable[[], hazmat_paillier.PaillierKeypair],
    ) -> None:
        self.config = config
        self.scenario = point.scenario
        self.protocol = point.protocol
        self.meter = meter
        self.keypair = keys
        s = point.scenario
        self.n, self.dim = s.clients, s.dim
        # Same data and same dropped clients for every protocol of a scenario and repeat.
        self._seed = [config.seed, s.clients, s.dim, round(s.dropout * 1000), s.drop_at, repeat]
        rng = np.random.default_rng(self._seed)
        lost = rng.choice(self.n, size=_dropped_count(self.n, s.dropout), replace=False)
        self.schedule = {int(u): s.drop_at for u in lost}
        self.uploaders = [u for u in range(self.n) if self.schedule.get(u, 4) > UPLOAD_ROUND]
        self.finishers = frozenset(u for u in range(self.n) if u not in self.schedule)

    def update(self, client: int, length: int) -> FloatArray:
        """Client ``client``'s float update (the first ``length`` values of it)."""
        rng = np.random.default_rng([*self._seed, client])
        return rng.standard_normal(length) * (self.config.clip / 3)

    def scheme(self) -> QuantizationScheme:
        """The quantization every protocol of this project uses for n clients."""
        return QuantizationScheme(
            clip=self.config.clip, value_bits=self.config.value_bits, num_clients=self.n
        )

    def quantized_inputs(self, scheme: QuantizationScheme, length: int) -> dict[int, RingArray]:
        """Every client's quantized input; uploaders' quantization is timed as client work."""
        inputs: dict[int, RingArray] = {}
        for u in range(self.n):
            update = self.update(u, length)
            if u in self.schedule and self.schedule[u] <= UPLOAD_ROUND:
                inputs[u] = scheme.quantize(update)  # dropped first: prepared untimed
            else:
                inputs[u] = self.meter.measure(u, UPLOAD_ROUND, scheme.quantize, update)
        return inputs

    def masking_graph(self, protocol: str) -> tuple[NeighbourGraph, int]:
        """The neighbour graph and threshold of ``protocol`` (as ``secagg demo`` picks them)."""
        ids = list(range(self.n))
        if protocol == "secagg":
            return complete_graph(ids), _threshold_for(self.config, self.n)
        degree, threshold = self.secagg_plus_choice()
        return harary_graph(ids, degree), threshold

    def secagg_plus_choice(self) -> tuple[int, int]:
        """SecAgg+ degree k and threshold t for this scenario (overrides applied)."""
        chosen = secagg_plus_parameters(
            self.n,
            dropout_fraction=max(0.05, self.scenario.dropout),
            corrupt_fraction=_CORRUPT_FRACTION,
        )
        degree = min(self.config.degree or chosen.degree, self.n - 1)
        default_threshold = (
            chosen.threshold if degree == chosen.degree else secagg_threshold(degree + 1)
        )
        return degree, self.config.threshold or default_threshold


def _ring_sum(inputs: Mapping[int, RingArray], clients: Iterable[int], bits: int) -> RingArray:
    total = np.zeros(next(iter(inputs.values())).shape[0], dtype=np.uint64)
    for u in clients:
        np.add(total, inputs[u], out=total, casting="unsafe")
    return total & np.uint64((1 << bits) - 1)


def _run_plain(ctx: _RunContext) -> Outcome:
    """Quantize, send the ring vector in the clear through the same codec, add at the server."""
    meter, scheme = ctx.meter, ctx.scheme()
    inputs = ctx.quantized_inputs(scheme, ctx.dim)
    total = np.zeros(ctx.dim, dtype=np.uint64)
    for u in ctx.uploaders:
        message = MaskedInput(
            session_id=bytes(16),
            round_id=0,
            sender=u,
            recipient=SERVER_ID,
            modulus_bits=scheme.modulus_bits,
            vector=inputs[u],
        )
        size = wire.encoded_size(message)
        meter.add_bytes(u, UPLOAD_ROUND, sent=size)
        meter.add_bytes(SERVER, UPLOAD_ROUND, received=size)
        meter.measure(SERVER, UPLOAD_ROUND, np.add, total, message.vector, total)
    meter.measure(
        SERVER, UPLOAD_ROUND, np.bitwise_and, total, (1 << scheme.modulus_bits) - 1, total
    )
    expected = _ring_sum(inputs, ctx.uploaders, scheme.modulus_bits)
    return Outcome(
        meter,
        frozenset(ctx.uploaders),
        ctx.dim,
        setup={"modulus_bits": scheme.modulus_bits},
        correct=bool(np.array_equal(total, expected)),
    )


def _check_report_bytes(meter: Meter, report: SimulationReport) -> None:
    """The meter's per-round bytes must add up to the simulator's own per-party totals."""
    for client, sent in report.bytes_sent.items():
        metered = sum(c.bytes_sent for (p, _), c in meter.costs.items() if p == client)
        if metered != sent:
            raise RuntimeError(f"bench bug: client {client} sent {sent} B, metered {metered} B")
    metered_server = sum(c.bytes_received for (p, _), c in meter.costs.items() if p == SERVER)
    if metered_server != report.server_bytes_received:
        raise RuntimeError(
            f"bench bug: server received {report.server_bytes_received} B, metered "
            f"{metered_server} B"
        )


def _report_outcome(
    ctx: _RunContext,
    report: SimulationReport,
    inputs: Mapping[int, RingArray],
    modulus_bits: int,
    measured_dim: int,
    setup: dict[str, object],
) -> Outcome:
    _check_report_bytes(ctx.meter, report)
    outcome = Outcome(ctx.meter, ctx.finishers, measured_dim, setup=setup)
    if report.error is not None or report.result is None:
        outcome.correct = False
        outcome.error = f"round aborted: {report.error}"
        return outcome
    survivors = report.result.survivors
    expected = _ring_sum(inputs, survivors, modulus_bits)
    outcome.correct = bool(np.array_equal(report.result.vector.astype(np.uint64), expected))
    if not outcome.correct:
        outcome.error = "the aggregate differs from the plain sum of the survivors' inputs"
    return outcome


def _run_masking(ctx: _RunContext) -> Outcome:
    """One real SecAgg / SecAgg+ round in the in-memory simulator."""
    scheme = ctx.scheme()
    graph, threshold = ctx.masking_graph(ctx.protocol)
    inputs = ctx.quantized_inputs(scheme, ctx.dim)
    params = MaskingParams(
        session_id=secrets.token_bytes(16),
        round_id=0,
        graph=graph,
        threshold=threshold,
        vector_length=ctx.dim,
        modulus_bits=scheme.modulus_bits,
    )
    report = _MeteredSimulator(ctx.meter, params, inputs, dropouts=ctx.schedule).run()
    setup: dict[str, object] = {
        "degree": graph.max_degree,
        "threshold": threshold,
        "modulus_bits": scheme.modulus_bits,
    }
    return _report_outcome(ctx, report, inputs, scheme.modulus_bits, ctx.dim, setup)


def _run_paillier(ctx: _RunContext) -> Outcome:
    """One packed-Paillier round (fresh or DJN randomness) on at most ``paillier_max_dim``.

    The measured length is a whole number of ciphertexts, and the run is scaled by the ratio of
    ciphertext counts, since encryption, aggregation, decryption and bytes are per ciphertext.
    """
    config, keys = ctx.config, ctx.keypair()
    packing = hazmat_paillier.PackingScheme.for_public_key(
        keys.public_key, value_bits=config.value_bits, num_clients=ctx.n
    )
    slots = packing.slots_per_plaintext
    measured_dim = min(ctx.dim, slots * max(1, config.paillier_max_dim // slots))
    scheme = ctx.scheme()
    threshold = _threshold_for(config, ctx.n)
    session_id = secrets.token_bytes(16)
    inputs = ctx.quantized_inputs(scheme, measured_dim)
    key_holder = _MeteredKeyHolder(
        ctx.meter,
        keys,
        session_id=session_id,
        value_bits=config.value_bits,
        max_clients=ctx.n,
        min_contributors=threshold,
        processes=1,
    )
    params = PaillierParams(
        session_id=session_id,
        round_id=0,
        clients=tuple(range(ctx.n)),
        vector_length=measured_dim,
        value_bits=config.value_bits,
        max_clients=ctx.n,
        min_contributors=threshold,
    )
    djn = ctx.protocol == "paillier-djn"
    mode = hazmat_paillier.RandomnessMode.DJN if djn else hazmat_paillier.RandomnessMode.FRESH
    simulator = _MeteredPaillierSimulator(
        ctx.meter, params, inputs, key_holder, mode=mode, processes=1, dropouts=ctx.schedule
    )
    report = simulator.run()
    setup: dict[str, object] = {
        "threshold": threshold,
        "key_bits": config.key_bits,
        "values_per_ciphertext": key_holder.packing.slots_per_plaintext,
    }
    outcome = _report_outcome(ctx, report, inputs, 64, measured_dim, setup)
    outcome.scale = packing.num_plaintexts(ctx.dim) / packing.num_plaintexts(measured_dim)
    return outcome


def _run_phe(ctx: _RunContext) -> Outcome:
    """phe's per-value path: encrypt each value, add EncryptedNumbers, decrypt each sum.

    Only ``phe_clients`` uploaders encrypt (on ``phe_max_dim`` values); the server adds as many
    ciphertext vectors as there are uploaders, reusing theirs, and the key holder decrypts once.
    """
    config, meter, keys = ctx.config, ctx.meter, ctx.keypair()
    public_key, private_key = keys.public_key, keys.private_key
    measured_dim = min(ctx.dim, config.phe_max_dim)
    scheme = ctx.scheme()
    width = hazmat_paillier.ciphertext_byte_length(public_key)
    encrypting = ctx.uploaders[: config.phe_clients]
    values: list[RingArray] = []
    vectors: list[list[Any]] = []
    for u in encrypting:
        quantized = meter.measure(u, UPLOAD_ROUND, scheme.quantize, ctx.update(u, measured_dim))
        meter.add_bytes(u, UPLOAD_ROUND, received=width // 2, sent=width * measured_dim)
        values.append(quantized)
        vectors.append(
            meter.measure(
                u, UPLOAD_ROUND, lambda q: [public_key.encrypt(int(v)) for v in q], quantized
            )
        )
    uploads = len(ctx.uploaders)
    meter.add_bytes(SERVER, UPLOAD_ROUND, received=width * measured_dim * uploads)

    def add_all() -> list[Any]:
        total = vectors[0]
        for i in range(1, uploads):
            total = [a + b for a, b in zip(total, vectors[i % len(vectors)], strict=True)]
        return total

    total = meter.measure(SERVER, UPLOAD_ROUND, add_all)
    round_index = UPLOAD_ROUND + 1
    meter.add_bytes(
        SERVER, round_index, sent=width * measured_dim, received=width // 2 * measured_dim
    )
    meter.add_bytes(
        KEY_HOLDER, round_index, received=width * measured_dim, sent=width // 2 * measured_dim
    )
    decrypted = meter.measure(
        KEY_HOLDER,
        round_index,
        lambda: [private_key.raw_decrypt(c.ciphertext(be_secure=False)) for c in total],
    )
    expected = sum(values[i % len(values)].astype(np.int64) for i in range(uploads))
    return Outcome(
        meter,
        frozenset(encrypting),
        measured_dim,
        setup={"key_bits": config.key_bits, "encrypting_clients": len(encrypting)},
        correct=[int(v) for v in np.atleast_1d(expected)] == decrypted,
    )


_RUNNERS: Final[Mapping[str, Callable[[_RunContext], Outcome]]] = {
    PLAIN: _run_plain,
    "secagg": _run_masking,
    "secagg+": _run_masking,
    "paillier-fresh": _run_paillier,
    "paillier-djn": _run_paillier,
    "phe": _run_phe,
}


# ------------------------------------------------------------------------------------------
# Flower 1.42 reference (same process, Flower's own code; no gRPC, no ServerApp)
# ------------------------------------------------------------------------------------------


def flower_status() -> tuple[bool, str]:
    """Whether the Flower reference can run, and a line saying why or which version."""
    if importlib.util.find_spec("flwr") is None:
        return False, FLOWER_MISSING
    try:
        version = importlib.metadata.version("flwr")
        _FlowerAPI()
    except (ImportError, AttributeError) as error:  # pragma: no cover - depends on flwr
        return False, f"flower: unusable ({error}); the reference needs flwr 1.42"
    return True, f"flower: flwr {version}, SecAgg+ client stages and server blocks in-process"


class _FlowerAPI:
    """Flower's SecAgg+ client stages and building blocks, imported only when asked for.

    Flower is optional and loosely typed, so its modules are held as ``Any``.
    """

    _MODULES: Final = {
        "client": "flwr.client.mod.secure_aggregation.secaggplus_mod",
        "shamir": "flwr.common.secure_aggregation.crypto.shamir",
        "symmetric": "flwr.common.secure_aggregation.crypto.symmetric_encryption",
        "arithmetic": "flwr.common.secure_aggregation.ndarrays_arithmetic",
        "quantization": "flwr.common.secure_aggregation.quantization",
        "utils": "flwr.common.secure_aggregation.secaggplus_utils",
        "asymmetric": "flwr.supercore.primitives.asymmetric",
        "common": "flwr.common",
        "app": "flwr.app",
        "serde": "flwr.common.serde",
    }

    def __init__(self) -> None:
        import importlib

        modules = {name: importlib.import_module(path) for name, path in self._MODULES.items()}
        self.client: Any = modules["client"]
        self.shamir: Any = modules["shamir"]
        self.symmetric: Any = modules["symmetric"]
        self.arithmetic: Any = modules["arithmetic"]
        self.quantization: Any = modules["quantization"]
        self.utils: Any = modules["utils"]
        self.asymmetric: Any = modules["asymmetric"]
        self.common: Any = modules["common"]
        self.app: Any = modules["app"]
        self.serde: Any = modules["serde"]
        self.key: Any = self.client.Key
        # The client stage functions this reference calls; fail here if a release renamed them.
        for stage in ("_setup", "_share_keys", "_collect_masked_vectors", "_unmask"):
            getattr(self.client, stage)


class _FlowerHaltError(Exception):
    """Flower's server workflow would stop the round here (it logs and returns False)."""


class _FlowerRound:
    """One Flower 1.42 SecAgg+ round, all parties in this process.

    Clients run Flower's own stage functions (``_setup``, ``_share_keys``,
    ``_collect_masked_vectors``, ``_unmask`` of ``secaggplus_mod``), i.e. the mod minus its
    Message/Context wrapping. The server repeats ``SecAggPlusWorkflow``'s stage logic with the
    same building blocks, since the workflow itself needs a Grid and a LegacyContext. Bytes are
    the protobuf size of each stage's ConfigRecord (no gRPC framing, no model parameters).
    A client that raises is treated as Flower treats an error reply: it leaves the active set.
    """

    def __init__(self, ctx: _RunContext) -> None:
        self.ctx, self.meter = ctx, ctx.meter
        self.fl = _FlowerAPI()
        self.key = self.fl.key
        degree, self.threshold = ctx.secagg_plus_choice()
        self.num_shares = min(ctx.n, degree + 1)
        self.nids = [u + 1 for u in range(ctx.n)]  # Flower node ids are never 0
        self.states = {nid: self.fl.client.SecAggPlusState() for nid in self.nids}
        for nid, state in self.states.items():
            state.nid = nid  # What secaggplus_mod copies from the message before _setup.
        self.active: set[int] = set(self.nids)
        self.sampled: set[int] = set(self.nids)
        self.public_keys: dict[int, list[bytes]] = {}
        self.neighbours: dict[int, set[int]] = {}
        self.errors: list[str] = []

    # -- plumbing -----------------------------------------------------------------------------

    def _size(self, config: Mapping[str, Any]) -> int:
        record = self.fl.app.RecordDict(
            {"secaggplus_configs": self.fl.app.ConfigRecord(dict(config))}
        )
        return int(self.fl.serde.recorddict_to_proto(record).ByteSize())

    def _drops(self, nid: int, round_index: int) -> bool:
        return self.ctx.schedule.get(nid - 1, 4) <= round_index

    def _exchange(
        self,
        round_index: int,
        configs: Mapping[int, dict[str, Any]],
        stage: Callable[..., dict[str, Any]],
        *extra: Callable[[int], object],
    ) -> dict[int, dict[str, Any]]:
        """Send each active client its config, run its stage, collect the replies."""
        replies: dict[int, dict[str, Any]] = {}
        for nid, config in configs.items():
            if self._drops(nid, round_index):
                continue  # Like the simulator, count only what reaches a live client.
            size = self._size(config)
            self.meter.add_bytes(SERVER, round_index, sent=size)
            self.meter.add_bytes(nid - 1, round_index, received=size)
            record = self.fl.app.ConfigRecord(dict(config))
            args = [f(nid) for f in extra]
            try:
                reply = self.meter.measure(
                    nid - 1, round_index, stage, self.states[nid], record, *args
                )
            except Exception as error:  # Flower turns any client exception into an error reply.
                self.errors.append(f"client {nid}: {type(error).__name__}: {error}")
                continue
            size = self._size(reply)
            self.meter.add_bytes(nid - 1, round_index, sent=size)
            self.meter.add_bytes(SERVER, round_index, received=size)
            replies[nid] = reply
        return replies

    def _server(self, round_index: int, step: Callable[..., _T], *args: object) -> _T:
        return self.meter.measure(SERVER, round_index, step, *args)

    def _check_threshold(self) -> None:
        for nid in self.sampled:
            if len(self.neighbours[nid] & self.active) < self.threshold:
                raise _FlowerHaltError("insufficient available nodes (_check_threshold)")

    # -- stages (SecAggPlusWorkflow order) ----------------------------------------------------

    def _setup_configs(self) -> dict[int, dict[str, Any]]:
        key = self.key
        order = list(self.nids)
        # Flower shuffles with the random module; this module keeps to a CSPRNG (same cost).
        secrets.SystemRandom().shuffle(order)
        half = self.num_shares >> 1
        self.neighbours = {
            nid: {order[(i + offset) % len(order)] for offset in range(-half, half + 1)}
            for i, nid in enumerate(order)
        }
        config = {
            key.SAMPLE_NUMBER: len(order),
            key.SHARE_NUMBER: self.num_shares,
            key.THRESHOLD: self.threshold,
            key.CLIPPING_RANGE: _FLOWER_CLIP,
            key.TARGET_RANGE: _FLOWER_TARGET_RANGE,
            key.MOD_RANGE: _FLOWER_MOD_RANGE,
            key.MAX_WEIGHT: 1.0,
        }
        return {nid: config for nid in self.active}

    def _keep_keys(self, replies: Mapping[int, dict[str, Any]]) -> None:
        self.active = set(replies)
        for nid, reply in replies.items():
            self.public_keys[nid] = [reply[self.key.PUBLIC_KEY_1], reply[self.key.PUBLIC_KEY_2]]
        self._check_threshold()

    def _roster_configs(self) -> dict[int, dict[str, Any]]:
        return {
            nid: {str(v): self.public_keys[v] for v in self.neighbours[nid] & self.active}
            for nid in self.active
        }

    def _forward(self, replies: Mapping[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        self.active = set(replies)
        sources: dict[int, list[int]] = {nid: [] for nid in self.active}
        texts: dict[int, list[bytes]] = {nid: [] for nid in self.active}
        for src, reply in replies.items():
            for dst, text in zip(
                reply[self.key.DESTINATION_LIST], reply[self.key.CIPHERTEXT_LIST], strict=True
            ):
                if dst in texts:
                    texts[dst].append(text)
                    sources[dst].append(src)
        self._check_threshold()
        return {
            nid: {self.key.CIPHERTEXT_LIST: texts[nid], self.key.SOURCE_LIST: sources[nid]}
            for nid in self.active
        }

    def _sum_masked(self, replies: Mapping[int, dict[str, Any]]) -> list[Any]:
        self.active = set(replies)
        total: list[Any] | None = None
        for reply in replies.values():
            vector = [self.fl.common.bytes_to_ndarray(b) for b in reply[self.key.MASKED_PARAMETERS]]
            total = (
                vector if total is None else self.fl.arithmetic.parameters_addition(total, vector)
            )
        if total is None:
            raise _FlowerHaltError("no masked vector arrived")
        self._check_threshold()
        return list(self.fl.arithmetic.parameters_mod(total, _FLOWER_MOD_RANGE))

    def _unmask_configs(self) -> dict[int, dict[str, Any]]:
        dead = self.sampled - self.active
        return {
            nid: {
                self.key.ACTIVE_NODE_ID_LIST: list(self.neighbours[nid] & self.active),
                self.key.DEAD_NODE_ID_LIST: list(self.neighbours[nid] & dead),
            }
            for nid in self.active
        }

    def _unmask(self, masked: list[Any], replies: Mapping[int, dict[str, Any]]) -> FloatArray:
        shares: dict[int, list[bytes]] = {nid: [] for nid in self.sampled}
        for reply in replies.values():
            for owner, share in zip(
                reply[self.key.NODE_ID_LIST], reply[self.key.SHARE_LIST], strict=True
            ):
                shares[owner].append(share)
        shape = self.fl.arithmetic.get_parameters_shape(masked)
        for nid, share_list in shares.items():
            if len(share_list) < self.threshold:
                raise _FlowerHaltError(
                    "not enough shares to recover secret in unmask vectors stage"
                )
            secret = self.fl.shamir.combine_shares(share_list)
            if nid in self.active:
                mask = self.fl.utils.pseudo_rand_gen(secret, _FLOWER_MOD_RANGE, shape)
                masked = self.fl.arithmetic.parameters_subtraction(masked, mask)
                continue
            for peer in self.neighbours[nid] - {nid}:
                shared = self.fl.symmetric.generate_shared_key(
                    self.fl.asymmetric.bytes_to_private_key(secret),
                    self.fl.asymmetric.bytes_to_public_key(self.public_keys[peer][0]),
                )
                mask = self.fl.utils.pseudo_rand_gen(shared, _FLOWER_MOD_RANGE, shape)
                combine = (
                    self.fl.arithmetic.parameters_addition
                    if nid > peer
                    else self.fl.arithmetic.parameters_subtraction
                )
                masked = combine(masked, mask)
        recon = self.fl.arithmetic.parameters_mod(masked, _FLOWER_MOD_RANGE)
        total_ratio, recon = self.fl.arithmetic.factor_extract(recon)
        vector = self.fl.quantization.dequantize(recon, _FLOWER_CLIP, _FLOWER_TARGET_RANGE)[0]
        vector += -(len(self.active) - 1) * _FLOWER_CLIP
        vector *= _FLOWER_TARGET_RANGE / total_ratio
        return np.asarray(vector, dtype=np.float64)

    def run(self) -> Outcome:
        """Play the four stages; a halt or a wrong sum becomes the outcome's error."""
        ctx, mod = self.ctx, self.fl.client
        outcome = Outcome(self.meter, ctx.finishers, ctx.dim)
        outcome.setup = {"num_shares": self.num_shares, "threshold": self.threshold}
        parameters = {
            nid: self.fl.common.ndarrays_to_parameters([ctx.update(nid - 1, ctx.dim)])
            for nid in self.nids
        }
        try:
            configs = self._server(0, self._setup_configs)
            replies = self._exchange(0, configs, mod._setup)
            self._server(0, self._keep_keys, replies)
            replies = self._exchange(1, self._server(1, self._roster_configs), mod._share_keys)
            forwarded = self._server(1, self._forward, replies)
            replies = self._exchange(
                2, forwarded, mod._collect_masked_vectors, lambda nid: 1, parameters.__getitem__
            )
            masked = self._server(2, self._sum_masked, replies)
            uploaded = set(self.active)
            configs = self._server(3, self._unmask_configs)
            replies = self._exchange(3, configs, mod._unmask)
            mean = self._server(3, self._unmask, masked, replies)
        except _FlowerHaltError as halt:
            outcome.correct = False
            first = f" (first client error: {self.errors[0]})" if self.errors else ""
            outcome.error = f"Flower's server halted: {halt}{first}"
            return outcome
        expected = sum(ctx.update(nid - 1, ctx.dim) for nid in uploaded)
        error = float(np.max(np.abs(mean * len(uploaded) - expected)))
        step = 2 * _FLOWER_CLIP / _FLOWER_TARGET_RANGE
        outcome.correct = error <= 2 * step * len(uploaded) + 1e-9
        if not outcome.correct:
            outcome.error = f"Flower's aggregate is off by {error:.3g}"
        return outcome


def _run_flower(ctx: _RunContext) -> Outcome:
    return _FlowerRound(ctx).run()


# ------------------------------------------------------------------------------------------
# Summaries, statistics and records
# ------------------------------------------------------------------------------------------


def _mean_cost(costs: Sequence[Cost]) -> Cost:
    count = len(costs)
    peaks = [c.peak_bytes for c in costs if c.peak_bytes is not None]
    return Cost(
        sum(c.wall_s for c in costs) / count,
        sum(c.cpu_s for c in costs) / count,
        sum(c.bytes_sent for c in costs) / count,
        sum(c.bytes_received for c in costs) / count,
        max(peaks) if peaks else None,
    )


def _sum_costs(costs: Iterable[Cost]) -> Cost:
    total = Cost()
    for cost in costs:
        total.wall_s += cost.wall_s
        total.cpu_s += cost.cpu_s
        total.bytes_sent += cost.bytes_sent
        total.bytes_received += cost.bytes_received
        if cost.peak_bytes is not None:
            total.peak_bytes = max(total.peak_bytes or 0, cost.peak_bytes)
    return total


def summarise(outcome: Outcome) -> dict[tuple[str, str], Cost]:
    """Per (party, round) costs of one run: ``client`` is the mean over clients.

    A round's client cost is the mean over the clients that worked in that round; the client
    total is the mean over the clients that finished (each client's rounds summed). Client
    peak memory is the largest of any client. ``all`` sums every party's time and counts every
    byte once (``bytes_received`` equals ``bytes_sent``); it has no peak memory.
    """
    costs = outcome.meter.costs
    clients = {p for p in outcome.meter.parties() if isinstance(p, int)}
    table: dict[tuple[str, str], Cost] = {}
    for index, name in enumerate(ROUND_NAMES):
        working = [costs[(u, index)] for u in sorted(clients) if (u, index) in costs]
        if working:
            table[(CLIENT, name)] = _mean_cost(working)
        for party in (SERVER, KEY_HOLDER):
            if (party, index) in costs:
                table[(party, name)] = replace(costs[(party, index)])
    finished = sorted(clients & outcome.finishers) or sorted(clients)
    if finished:
        per_client = [_sum_costs(c for (p, _), c in costs.items() if p == u) for u in finished]
        table[(CLIENT, TOTAL)] = _mean_cost(per_client)
    for party in (SERVER, KEY_HOLDER):
        mine = [c for (p, _), c in costs.items() if p == party]
        if mine:
            table[(party, TOTAL)] = _sum_costs(mine)
    every = _sum_costs(costs.values())
    table[(ALL, TOTAL)] = Cost(every.wall_s, every.cpu_s, every.bytes_sent, every.bytes_sent)
    return table


@dataclass(slots=True)
class PointResult:
    """Every run of one grid point: timed samples, the memory sample, status."""

    point: GridPoint
    samples: list[dict[tuple[str, str], Cost]] = field(default_factory=list)
    memory: dict[tuple[str, str], Cost] | None = None
    measured_dim: int = 0
    scale: float = 1.0
    setup: dict[str, object] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _point_records(result: PointResult, run_id: str, first_id: int) -> list[dict[str, Any]]:
    """One record per (party, round) of a grid point; ratios are filled in by :func:`link`."""
    scenario = result.point.scenario
    base: dict[str, Any] = {
        "run_id": run_id,
        "protocol": result.point.protocol,
        "clients": scenario.clients,
        "dim": scenario.dim,
        "dropout": scenario.dropout,
        "drop_at": scenario.drop_at,
        "dropped": _dropped_count(scenario.clients, scenario.dropout),
        "repeats": len(result.samples),
        "measured_dim": result.measured_dim or scenario.dim,
        "scale": result.scale,
        "setup": result.setup,
        "status": result.status,
        "error": result.error,
    }
    keys = sorted(
        {key for sample in result.samples for key in sample},
        key=lambda k: (PARTIES.index(k[0]), ROUNDS.index(k[1])),
    )
    if not keys:
        keys = [(ALL, TOTAL)]
    records = []
    for offset, (party, round_name) in enumerate(keys):
        record = {"id": first_id + offset, **base, "party": party, "round": round_name}
        costs = [sample.get((party, round_name), Cost()) for sample in result.samples]
        for metric in METRICS:
            record[metric] = _stats([getattr(c, metric) for c in costs]) if costs else None
        memory = result.memory.get((party, round_name)) if result.memory else None
        record["peak_bytes"] = None if memory is None else memory.peak_bytes
        record.update(plain_id=None, ratio_to_plain=None, flower_id=None, ratio_to_flower=None)
        records.append(record)
    return records


def _ratios(record: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, float | None]:
    ratios: dict[str, float | None] = {}
    for metric in METRICS:
        mine, theirs = record[metric], base[metric]
        ratios[metric] = _ratio(mine and mine["median"], theirs and theirs["median"])
    scaled = record["scale"] != 1 or base["scale"] != 1
    ratios["peak_bytes"] = None if scaled else _ratio(record["peak_bytes"], base["peak_bytes"])
    return ratios


def link(records: list[dict[str, Any]]) -> None:
    """Fill ``ratio_to_plain`` (and ``ratio_to_flower`` for SecAgg+) on every total record.

    The denominator is the record of the same run, scenario and party, named by ``plain_id`` /
    ``flower_id``; each ratio is numerator median / denominator median.
    """

    def key(r: Mapping[str, Any], protocol: str) -> tuple[object, ...]:
        return (r["run_id"], protocol, r["clients"], r["dim"], r["dropout"], r["drop_at"],
                r["party"], r["round"])  # fmt: skip

    index = {key(r, r["protocol"]): r for r in records if r["status"] == "ok"}
    for record in records:
        if record["round"] != TOTAL or record["status"] != "ok":
            continue
        plain = index.get(key(record, PLAIN))
        if plain is not None:
            record["plain_id"], record["ratio_to_plain"] = plain["id"], _ratios(record, plain)
        flower = index.get(key(record, FLOWER))
        if record["protocol"] in ("secagg+", FLOWER) and flower is not None:
            record["flower_id"], record["ratio_to_flower"] = flower["id"], _ratios(record, flower)


# ------------------------------------------------------------------------------------------
# Running the grid
# ------------------------------------------------------------------------------------------


def grid(config: BenchConfig, with_flower: bool) -> list[GridPoint]:
    """Grid points, smallest scenarios first; plain first within each scenario."""
    protocols = [*config.protocols, *([FLOWER] if with_flower else [])]
    scenarios = sorted(
        (
            Scenario(n, d, p, r)
            for n in config.clients
            for d in config.dims
            for p in config.dropouts
            for r in config.drop_at
        ),
        key=lambda s: (s.clients * s.dim, s.clients, s.dim, s.dropout, s.drop_at),
    )
    return [GridPoint(s, protocol) for s in scenarios for protocol in protocols]


class _Keys:
    """The Paillier key pair, generated once per benchmark (key generation is not per round)."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.seconds: float | None = None
        self._keys: hazmat_paillier.PaillierKeypair | None = None

    def __call__(self) -> hazmat_paillier.PaillierKeypair:
        if self._keys is None:
            started = time.perf_counter()
            self._keys = _generate_keypair(self.bits)
            self.seconds = time.perf_counter() - started
        return self._keys


def _generate_keypair(bits: int) -> hazmat_paillier.PaillierKeypair:
    """Key generation; a seam tests replace with small keys."""
    return hazmat_paillier.generate_keypair(bits, djn=True)


def _one_run(
    config: BenchConfig, point: GridPoint, repeat: int, keys: _Keys, trace: bool
) -> Outcome:
    meter = Meter(trace_memory=trace)
    ctx = _RunContext(config, point, repeat, meter, keys)
    runner = _run_flower if point.protocol == FLOWER else _RUNNERS[point.protocol]
    if not trace:
        return runner(ctx)
    tracemalloc.start()
    try:
        return runner(ctx)
    finally:
        tracemalloc.stop()


def _scaled(table: dict[tuple[str, str], Cost], factor: float) -> dict[tuple[str, str], Cost]:
    return {key: cost.scaled(factor) for key, cost in table.items()}


def measure_point(config: BenchConfig, point: GridPoint, keys: _Keys) -> PointResult:
    """Run ``repeats`` timed runs and (optionally) one memory run of one grid point."""
    result = PointResult(point)
    runs = [(repeat, False) for repeat in range(config.repeats)]
    if config.memory:
        runs.append((0, True))
    for repeat, trace in runs:
        try:
            outcome = _one_run(config, point, repeat, keys, trace)
        except SecAggError as error:
            result.status, result.error = "failed", f"{type(error).__name__}: {error}"
            break
        result.measured_dim, result.setup = outcome.measured_dim, outcome.setup
        result.scale = outcome.scale or point.scenario.dim / outcome.measured_dim
        if outcome.error is not None or not outcome.correct:
            result.status, result.error = "failed", outcome.error or "wrong result"
            break
        table = _scaled(summarise(outcome), result.scale)
        if trace:
            result.memory = table
        else:
            result.samples.append(table)
    return result


def _warm_up(config: BenchConfig, points: Sequence[GridPoint], keys: _Keys) -> None:
    """One untimed run per protocol on its smallest grid point (caches, tables, imports)."""
    seen: set[str] = set()
    for point in points:
        if point.protocol in seen:
            continue
        seen.add(point.protocol)
        small = replace(point.scenario, dim=min(point.scenario.dim, 256), dropout=0.0)
        try:
            _one_run(config, GridPoint(small, point.protocol), config.repeats, keys, trace=False)
        except SecAggError:
            pass  # The timed runs report it.


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="bench", unit="point", file=sys.stderr, disable=not enabled)


@dataclass(slots=True)
class BenchResult:
    """A finished benchmark: the JSON document's parts."""

    run_id: str
    config: BenchConfig
    records: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    notes: list[str]
    flower: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str | None]
    started: str
    seconds: float
    keygen_seconds: float | None

    def protocol_names(self) -> list[str]:
        """The protocols this run measured, Flower included when it ran."""
        return [*self.config.protocols, *([FLOWER] if self.flower["available"] else [])]

    def document(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "started": self.started,
            "seconds": self.seconds,
            "machine": self.machine,
            "versions": self.versions,
            "parameters": _parameters(self.config, self.keygen_seconds),
            "flower": self.flower,
            "protocols": {p: _PROTOCOL_LABELS[p] for p in dict.fromkeys(self.protocol_names())},
            "notes": self.notes,
            "skipped": self.skipped,
            "records": self.records,
        }


def _parameters(config: BenchConfig, keygen_seconds: float | None) -> dict[str, Any]:
    return {
        "preset": config.preset,
        "protocols": list(config.protocols),
        "clients": list(config.clients),
        "dims": list(config.dims),
        "dropouts": list(config.dropouts),
        "drop_at": list(config.drop_at),
        "repeats": config.repeats,
        "threshold": config.threshold,
        "degree": config.degree,
        "value_bits": config.value_bits,
        "clip": config.clip,
        "key_bits": config.key_bits,
        "paillier_keygen_s": keygen_seconds,
        "paillier_max_dim": config.paillier_max_dim,
        "phe_max_dim": config.phe_max_dim,
        "phe_clients": config.phe_clients,
        "time_budget": config.time_budget,
        "memory": config.memory,
        "seed": config.seed,
    }


def machine_info() -> dict[str, Any]:
    """CPU count and model, OS and Python: where the numbers came from."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of everything the measured code paths use."""
    versions: dict[str, str | None] = {}
    for name in ("secagg", "numpy", "cryptography", "phe", "gmpy2", "flwr", "pycryptodome"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _notes(config: BenchConfig, points: Sequence[GridPoint]) -> list[str]:
    protocols = {p.protocol for p in points}
    notes = [
        "every protocol's client time includes quantizing its update; plain = quantize, send "
        "the ring vector in the clear (same codec), server adds",
        "ratios are this record's median over the median of the record named by plain_id / "
        "flower_id, measured in the same run; only 'total' records carry ratios",
        "client = mean per client (peak memory: the largest client); all = every party's "
        "time summed and every byte counted once",
        "one untimed warm-up run per protocol precedes timing",
    ]
    if config.memory:
        notes.append(
            "peak memory comes from one extra run with tracemalloc on (Python and numpy "
            "allocations; GMP's own are not traced); timed runs do not trace"
        )
    if protocols & set(_PAILLIER_PROTOCOLS):
        notes.append(
            f"paillier-*: measured on about {config.paillier_max_dim} values (whole "
            "ciphertexts, at least one), time and bytes scaled by the ratio of ciphertext counts; "
            f"{config.key_bits}-bit key generated once (not in the times)"
        )
    if "phe" in protocols:
        notes.append(
            f"phe: measured on a subsample of d <= {config.phe_max_dim} values and "
            f"{config.phe_clients} encrypting clients, scaled linearly to d; bytes are raw "
            "ciphertext/plaintext integers"
        )
    if FLOWER in protocols:
        notes.append(
            "flower-secagg+: Flower 1.42's SecAgg+ client stage functions and server building "
            "blocks in this process (no gRPC, no ServerApp); its defaults: clip 8, 2^22 levels, "
            "mod 2^32, int64 on the wire; bytes = protobuf size of each stage's ConfigRecord"
        )
    return notes


def execute(config: BenchConfig) -> BenchResult:
    """Run the whole grid and build its records (no output).

    Args:
        config: a validated configuration.

    Returns:
        The records, skipped points and notes of the run.
    """
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    available, flower_line = flower_status()
    if not config.flower_requested:
        flower_line = "flower: not requested" if available else FLOWER_MISSING
    with_flower = available and config.flower_requested
    points = grid(config, with_flower)
    keys = _Keys(config.key_bits)
    run_id = uuid.uuid4().hex
    results: list[PointResult] = []
    skipped: list[dict[str, Any]] = []
    progress = _progress(len(points), config.progress)
    try:
        _warm_up(config, points, keys)
        for point in points:
            elapsed = time.perf_counter() - clock
            if config.time_budget is not None and elapsed > config.time_budget:
                skipped.append(_skip_entry(point))
            else:
                progress.set_postfix_str(f"{point.protocol} {point.scenario.label()}")
                results.append(measure_point(config, point, keys))
            progress.update()
    finally:
        progress.close()
    records: list[dict[str, Any]] = []
    for result in results:
        records.extend(_point_records(result, run_id, len(records)))
    link(records)
    notes = _notes(config, points)
    if skipped:
        notes.append(
            f"time budget of {config.time_budget:g} s spent: {len(skipped)} points skipped"
        )
    return BenchResult(
        run_id=run_id,
        config=config,
        records=records,
        skipped=skipped,
        notes=notes,
        flower={"available": with_flower, "reason": flower_line},
        machine=machine_info(),
        versions=library_versions(),
        started=started.isoformat(timespec="seconds"),
        seconds=time.perf_counter() - clock,
        keygen_seconds=keys.seconds,
    )


def _skip_entry(point: GridPoint) -> dict[str, Any]:
    s = point.scenario
    return {
        "protocol": point.protocol,
        "clients": s.clients,
        "dim": s.dim,
        "dropout": s.dropout,
        "drop_at": s.drop_at,
    }


# ------------------------------------------------------------------------------------------
# Output: table, JSON, CSV, plots
# ------------------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    if value >= 1e-3:
        return f"{value * 1e3:.1f}m"
    return f"{value * 1e6:.0f}u"


def _span(stats: Mapping[str, float] | None) -> str:
    if not stats:
        return "-"
    return f"{_seconds(stats['median'])} [{_seconds(stats['min'])}-{_seconds(stats['max'])}]"


def _size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, factor in (("G", 2**30), ("M", 2**20), ("k", 2**10)):
        if value >= factor:
            return f"{value / factor:.1f}{unit}"
    return f"{value:.0f}"


def _times(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}x"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


_TABLE_COLUMNS: Final = (
    ("protocol", 16),
    ("n", 5),
    ("d", 8),
    ("drop", 8),
    ("client s [min-max]", 22),
    ("server s [min-max]", 22),
    ("round s", 8),
    ("xplain", 8),
    ("client up", 10),
    ("xplain", 8),
    ("xflower", 8),
    ("peak client", 12),
    ("peak server", 12),
)


def _row_cells(group: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    any_record = next(iter(group.values()))
    name = any_record["protocol"] + ("*" if any_record["scale"] != 1 else "")
    drop = f"{any_record['dropout']:.0%}@r{any_record['drop_at']}"
    scenario = [name, str(any_record["clients"]), str(any_record["dim"]), drop]
    if any_record["status"] != "ok":
        return [*scenario, f"FAILED: {any_record['error']}"]
    client, server, whole = (group.get((p, TOTAL), {}) for p in (CLIENT, SERVER, ALL))
    ratio = whole.get("ratio_to_plain") or {}
    client_ratio = client.get("ratio_to_plain") or {}
    flower = whole.get("ratio_to_flower") or {}
    return [
        *scenario,
        _span(client.get("wall_s")),
        _span(server.get("wall_s")),
        _seconds(whole["wall_s"]["median"]) if whole.get("wall_s") else "-",
        _times(ratio.get("wall_s")),
        _size(client["bytes_sent"]["median"]) + "B" if client.get("bytes_sent") else "-",
        _times(client_ratio.get("bytes_sent")),
        _times(flower.get("wall_s")) if flower else "",
        _size(client.get("peak_bytes")) + "B" if client.get("peak_bytes") else "-",
        _size(server.get("peak_bytes")) + "B" if server.get("peak_bytes") else "-",
    ]


def render_table(result: BenchResult) -> str:
    """The terminal table: one row per grid point, then the notes."""
    groups: dict[tuple[object, ...], dict[tuple[str, str], Mapping[str, Any]]] = {}
    for r in result.records:
        where = (r["clients"], r["dim"], r["dropout"], r["drop_at"], r["protocol"])
        groups.setdefault(where, {})[(r["party"], r["round"])] = r
    header = " ".join(f"{title:>{width}}" for title, width in _TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    previous: tuple[object, ...] | None = None
    for point, group in groups.items():
        if previous is not None and point[:4] != previous[:4]:
            lines.append("")
        previous = point
        cells = _row_cells(group)
        widths = [w for _, w in _TABLE_COLUMNS][: len(cells)]
        lines.append(
            " ".join(
                f"{c:>{w}}" if i else f"{c:<{w}}"
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join([*lines, "", *_footer(result)])


def _footer(result: BenchResult) -> list[str]:
    m = result.machine
    lines = [
        "client s / server s: per-client and server seconds per round, median [min-max] over "
        f"{result.config.repeats} runs; round s: every party's seconds summed; xplain: ratio to "
        "the plain sum of the same run; client up: bytes a client sends; xflower: round time "
        "over Flower's; peak: tracemalloc; * measured on a smaller d and scaled (see notes)",
        f"machine: {m['cpu_count']} x {m['cpu_model']}, Python {m['python']}; run {result.run_id}",
        result.flower["reason"],
        "protocols: " + "; ".join(f"{p} = {_PROTOCOL_LABELS[p]}" for p in result.protocol_names()),
    ]
    lines.extend(f"note: {note}" for note in result.notes)
    for skip in result.skipped:
        lines.append(
            f"skipped (time budget): {skip['protocol']} n={skip['clients']} d={skip['dim']} "
            f"dropout={skip['dropout']:g}@r{skip['drop_at']}"
        )
    return lines


_CSV_METRICS: Final = (*METRICS, "peak_bytes")


def render_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """One CSV row per record: medians, min and max flattened, ratios as columns."""
    columns = [
        "id", "run_id", "protocol", "clients", "dim", "dropout", "drop_at", "dropped", "party",
        "round", "repeats", "measured_dim", "scale", "status", "error",
    ]  # fmt: skip
    for metric in METRICS:
        columns += [f"{metric}_median", f"{metric}_min", f"{metric}_max"]
    columns += ["peak_bytes", "plain_id", "flower_id"]
    columns += [f"ratio_to_plain_{m}" for m in _CSV_METRICS]
    columns += [f"ratio_to_flower_{m}" for m in _CSV_METRICS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {c: record.get(c) for c in columns if c in record}
        for metric in METRICS:
            for stat in ("median", "min", "max"):
                row[f"{metric}_{stat}"] = (record[metric] or {}).get(stat)
        for which in ("ratio_to_plain", "ratio_to_flower"):
            for metric in _CSV_METRICS:
                row[f"{which}_{metric}"] = (record[which] or {}).get(metric)
        writer.writerow(row)
    return buffer.getvalue()


def _series(
    records: Sequence[Mapping[str, Any]],
    party: str,
    round_name: str,
    metric: str,
    along: str,
    fixed: Mapping[str, object],
) -> Iterator[tuple[str, list[float], list[float], list[float], list[float]]]:
    """(protocol, x, median, min, max) series for one plot line each."""
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
    for protocol in dict.fromkeys(r["protocol"] for r in chosen):
        mine = sorted((r for r in chosen if r["protocol"] == protocol), key=lambda r: r[along])
        scaled = any(r["scale"] != 1 for r in mine)
        label = protocol + (" (scaled)" if scaled else "")
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
    """Run the benchmark standalone; bad arguments print ``error: ...`` and return 2."""
    parser = argparse.ArgumentParser(prog="secagg bench")
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_bench(args)
    except SecAggError as error:
        print(f"secagg bench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
