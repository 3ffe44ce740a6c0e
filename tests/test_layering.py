"""Imports flow one way (secagg <- protocols <- models) and torch stays under models/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "secagg": {"protocols", "models", "torch"},
    "protocols": {"models", "torch"},
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering_imports_flow_one_way(package: str) -> None:
    """No exception: ``secagg train`` reaches ``models.commands`` through importlib by name."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_top_levels(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_layering_hazmat_imports_only_hazmat_and_errors() -> None:
    """The primitives sit below the safe recipes: secagg.hazmat never imports the rest of secagg."""
    offenders: dict[str, list[str]] = {}
    for path in (ROOT / "secagg" / "hazmat").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        upward = sorted(
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("secagg")
            and not node.module.startswith(("secagg.hazmat", "secagg.errors"))
        )
        if upward:
            offenders[str(path.relative_to(ROOT))] = upward
    assert offenders == {}


@pytest.mark.parametrize("package", ["secagg", "protocols"])
def test_layering_no_global_rng_in_crypto_paths(package: str) -> None:
    """Keys, masks and shares come from secrets/os: the random module is never imported."""
    for path in (ROOT / package).rglob("*.py"):
        assert "random" not in _imported_top_levels(path), path


def test_layering_public_names_are_exported() -> None:
    import protocols
    import secagg

    for module in (secagg, protocols):
        assert module.__all__, module.__name__
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
