"""``secagg bench``'s flags: presets, comma lists, bad values refused naming the flag."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence

import pytest

from protocols import bench
from protocols.bench.sweep import capped_points, grid
from protocols.cli import bench as command
from protocols.cli.bench_options import deprecation_line
from protocols.defaults import DEFAULT_CLIP, DEFAULT_VALUE_BITS
from secagg.errors import ParameterError

#: Enough survivors for the semi-honest t = 51 but not for the active t > (100 + 5) / 2.
ACTIVE_ONLY_TOO_FEW = ["--protocol", "secagg", "--clients", "100", "--dropouts", "0.48",
                       "--threat-models", "active"]  # fmt: skip

BAD_ARGUMENTS = [
    (["--protocols", "rot13"], "--protocols: unknown protocol 'rot13'"),
    (["--protocol", "rot13"], "--protocol: unknown name 'rot13': choose from plain, secagg, "),
    (["--protocol", "phe"], "(phe, flower: --reference); 'phe' is --reference phe"),
    (["--protocol", "paillier-djn"], "'paillier-djn' is --protocol paillier --randomness djn"),
    (["--reference", "secagg+"], "--reference: unknown name 'secagg+': choose from phe, flower"),
    (["--randomness", "short"], "--randomness: unknown name 'short': choose from fresh, djn"),
    (
        ["--protocol", "secagg", "--randomness", "djn"],
        "--randomness applies to --protocol paillier",
    ),
    (["--preset", "active", "--randomness", "djn"], "--randomness applies to --protocol paillier"),
    (["--protocols", "secagg", "--protocol", "secagg+"], "--protocols is the deprecated spelling"),
    (["--json", "--csv"], "--json and --csv cannot both write to stdout"),
    (["--dim", "0"], "--dims: d must be a positive integer, got 0"),
    (["--value-bits", "2.5"], "--value-bits: '2.5' is not an integer"),
    (["--dims", "0"], "d must be a positive integer, got 0"),
    (["--dims", "-5"], "d must be a positive integer"),
    (["--dims", "ten"], "'ten' is not an integer"),
    (["--dropouts", "1"], "must be in [0, 1), got 1.0"),
    (["--dropouts", "-0.1"], "must be in [0, 1)"),
    (["--clients", "1"], "needs n >= 2, got 1"),
    (["--clients", "4", "--threshold", "5"], "n=4 is below the threshold t=5"),
    (["--clients", "4", "--dropouts", "0.5"], "leaves 2 clients, below the threshold t=3"),
    (["--drop-at", "5"], "--drop-at: rounds are 0 to 4 (0 advertise_keys, 1 share_keys, "),
    (["--drop-at", "-1"], "3 consistency, 4 unmasking), got -1"),
    (["--threat-models", "byzantine"], "--threat-models: unknown threat model 'byzantine'"),
    (["--threat-model", "active,honest"], "--threat-models: unknown threat model 'honest'"),
    (["--complete-max-clients", "0"], "--complete-max-clients: the value must be a positive"),
    (["--complete-max-clients", "x"], "--complete-max-clients: 'x' is not an integer"),
    (ACTIVE_ONLY_TOO_FEW, "n=100 with dropout 0.48 leaves 52 clients, below the threshold t=53"),
    (["--repeats", "0"], "repeats must be a positive integer"),
    (["--key-bits", "1024"], "--key-bits: use one of [2048, 3072]"),
    (["--time-budget", "0"], "--time-budget must be positive"),
    (["--threshold", "1"], "--threshold: threshold must be >= 2"),
    (["--dropouts", "0.45"], "--dropouts 0.45: SecAgg+ cannot choose a degree"),
    (["--clients", "10", "--degree", "3"], "--degree must be even and >= 2, got 3"),
    (["--clients", "4", "--degree", "4"], "--degree 4 needs more than 4 clients"),
]


def _namespace(argv: Sequence[str]) -> argparse.Namespace:
    """Bench arguments (plus ``--no-progress``) parsed as ``secagg bench`` parses them."""
    parser = argparse.ArgumentParser()
    command.add_bench_arguments(parser)
    return parser.parse_args([*argv, "--no-progress"])


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS)
def test_bench_bad_argument_raises_parameter_error(argv: list[str], message: str) -> None:
    with pytest.raises(ParameterError) as raised:
        command.run_bench(_namespace(argv))
    assert message in str(raised.value)


def test_bench_unknown_preset_is_refused() -> None:
    with pytest.raises(ParameterError, match="unknown preset"):
        command.config_from_args(argparse.Namespace(preset="huge"))


def test_bench_presets_match_the_issue() -> None:
    paper = command.config_from_args(_namespace(["--preset", "paper"]))
    assert paper.clients == (100, 300, 500) and paper.dims == (100_000,)
    assert paper.dropouts == (0.0, 0.1, 0.3)
    quick = command.config_from_args(_namespace(["--preset", "quick"]))
    assert set(quick.protocols) == set(bench.PROTOCOLS)
    assert max(quick.clients) * max(quick.dims) <= 200_000  # what keeps it under a minute


def test_bench_active_preset_is_the_issue_measurement() -> None:
    """n = 50 SecAgg and SecAgg+, n = 1000 SecAgg+ only, d = 10^5, 10% dropout, both modes."""
    config = command.config_from_args(_namespace(["--preset", "active"]))
    assert config.clients == (50, 1000) and config.dims == (100_000,)
    assert config.dropouts == (0.1,) and config.threat_models == ("semi-honest", "active")
    points = {(p.protocol, p.threat_model, p.scenario.clients) for p in grid(config, False)}
    modes = ("semi-honest", "active")
    assert points == {
        *(("plain", None, n) for n in (50, 1000)),
        *(("secagg", m, 50) for m in modes),
        *(("secagg+", m, n) for m in modes for n in (50, 1000)),
    }
    assert {(p.protocol, p.threat_model, p.scenario.clients) for p in capped_points(config)} == {
        ("secagg", m, 1000) for m in modes
    }


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ("semi-honest", "active")),
        (["--threat-model", "active"], ("active",)),
        (["--threat-models", "active,semi-honest"], ("semi-honest", "active")),
        (["--threat-models", "semi-honest", "semi-honest"], ("semi-honest",)),
    ],
)
def test_bench_threat_models_option(argv: list[str], expected: tuple[str, ...]) -> None:
    """Both modes by default; a comma or space list; semi-honest first (every ratio's base)."""
    one_cell = ["--protocol", "secagg+", "--clients", "10", "--dims", "8", "--dropouts", "0"]
    config = command.config_from_args(_namespace([*one_cell, *argv]))
    assert config.threat_models == expected
    modes = [p.threat_model for p in grid(config, False) if p.protocol == "secagg+"]
    assert modes == list(expected)


def test_bench_active_threshold_checked_only_when_active_runs() -> None:
    """The grid that the active t refuses is fine semi-honest (t = 51 of 52 survivors)."""
    semi = [*ACTIVE_ONLY_TOO_FEW[:-1], "semi-honest"]
    assert command.config_from_args(_namespace(semi)).threat_models == ("semi-honest",)


def test_bench_comma_lists_and_scientific_notation() -> None:
    config = command.config_from_args(_namespace(["--clients", "10,20", "--dims", "1e3", "1e2"]))
    assert config.clients == (10, 20) and config.dims == (100, 1000)


def test_bench_plot_dir_without_matplotlib_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    with pytest.raises(ParameterError, match=r"pip install secagg\[plot\]"):
        command.config_from_args(_namespace(["--plot-dir", "somewhere"]))


@pytest.mark.parametrize(
    ("argv", "protocols", "flower"),
    [
        ([], bench.PROTOCOLS, True),
        (["--protocol", "secagg+"], ("plain", "secagg+"), False),
        (["--protocol", "paillier"], ("plain", "paillier-fresh", "paillier-djn"), False),
        (["--protocol", "paillier", "--randomness", "djn"], ("plain", "paillier-djn"), False),
        (["--protocol", "secagg,secagg+", "--reference", "phe"],
         ("plain", "secagg", "secagg+", "phe"), False),
        (["--reference", "flower"], ("plain",), True),
        (["--randomness", "fresh"], ("plain", "secagg", "secagg+", "paillier-fresh", "phe"), True),
        (["--preset", "active"], ("plain", "secagg", "secagg+"), False),
        (["--preset", "active", "--protocol", "paillier"],
         ("plain", "paillier-fresh", "paillier-djn"), False),
    ],
)  # fmt: skip
def test_bench_protocol_randomness_and_reference_choose_what_runs(
    argv: list[str], protocols: tuple[str, ...], flower: bool
) -> None:
    """Backends as in demo and train; either of --protocol, --reference unsets the other."""
    config = command.config_from_args(_namespace(argv))
    assert (config.protocols, config.flower_requested) == (protocols, flower)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["plain"], "--protocol plain"),
        (["secagg", "phe", "flower"], "--protocol secagg --reference phe flower"),
        (["paillier-djn"], "--protocol paillier --randomness djn"),
        (["paillier-fresh", "paillier-djn", "secagg+"],
         "--protocol secagg+ paillier --randomness fresh djn"),
        (["flower"], "--reference flower"),
        (["flower-secagg+", "phe"], "--reference phe flower"),
    ],
)  # fmt: skip
def test_bench_old_protocols_spelling_runs_what_its_new_spelling_runs(
    old: list[str], new: str
) -> None:
    """The hidden --protocols still works; its warning's spelling asks for the same runs."""
    assert deprecation_line({"protocols": old}) == f"--protocols is deprecated: write {new}"
    before = command.config_from_args(_namespace(["--protocols", *old]))
    after = command.config_from_args(_namespace(new.split()))
    assert before == after


def test_bench_deprecated_spelling_prints_one_warning_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--protocols", "plain", "--clients", "2", "--dims", "4", "--dropouts", "0",
            "--repeats", "1", "--no-progress", "--no-memory", "--json"]  # fmt: skip
    assert command.main(argv) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "secagg: warning: --protocols is deprecated: write --protocol plain"
    ]


def test_bench_defaults_are_every_entry_point_s() -> None:
    """--value-bits and --clip default to protocols.defaults; integers take 1e5; aliases."""
    config = command.config_from_args(_namespace([]))
    assert (config.value_bits, config.clip) == (DEFAULT_VALUE_BITS, DEFAULT_CLIP)
    config = command.config_from_args(
        _namespace(["--value-bits", "2e1", "--dim", "1e4", "--dropout", "0.1", "--repeats", "1e0"])
    )
    assert (config.value_bits, config.dims, config.dropouts, config.repeats) == (
        20,
        (10_000,),
        (0.1,),
        1,
    )
