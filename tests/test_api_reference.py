"""The API reference builds from the docstrings, so that it cannot rot (issue 13).

``docs/build_api.py`` runs pdoc over every public module; this test builds it (without the
search index, the slowest part that says nothing about the docstrings) and checks that nothing
failed to import, that pdoc had nothing to complain about, and that the key pages name the key
public classes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, Path, list[str]]:
    """The build script, the directory it wrote and the problems it reported."""
    script = _load_build_script()
    output = tmp_path_factory.mktemp("api")
    problems: list[str] = script.build(output, search=False)
    return script, output, problems


def test_api_reference_builds_without_import_errors_or_pdoc_warnings(
    reference: tuple[ModuleType, Path, list[str]],
) -> None:
    _, _, problems = reference
    assert problems == []


def test_api_reference_has_a_page_per_public_module(
    reference: tuple[ModuleType, Path, list[str]],
) -> None:
    script, output, _ = reference
    modules: list[str] = script.public_modules()
    assert {"secagg", "protocols", "models", "protocols.aggregators", "secagg.errors"} <= {
        *modules,
        "secagg.errors",  # documented as part of secagg, which lists it in __all__
    }
    missing = [
        name for name in modules if not (output / f"{name.replace('.', '/')}.html").is_file()
    ]
    assert missing == []
    assert (output / "index.html").is_file()
    # No private module is documented.
    assert not [page for page in output.rglob("*.html") if page.name.startswith("_")]


@pytest.mark.parametrize(
    ("page", "names"),
    [
        ("secagg.html", ["SecAggError", "ParameterError", "PackageShadowedError"]),
        ("protocols.html", ["MaskingAggregator", "PlainAggregator", "Simulator"]),
        ("protocols/aggregators.html", ["MaskingAggregator", "PaillierAggregator"]),
        ("models.html", ["MatrixFactorization", "FederatedTrainer", "load_movielens"]),
    ],
)
def test_api_reference_pages_document_the_key_public_names(
    reference: tuple[ModuleType, Path, list[str]], page: str, names: list[str]
) -> None:
    _, output, _ = reference
    html = (output / page).read_text(encoding="utf-8")
    assert [name for name in names if f'id="{name}"' not in html] == []


def test_api_reference_renders_google_style_sections(
    reference: tuple[ModuleType, Path, list[str]],
) -> None:
    # docformat="google": "Args:" / "Returns:" become headed sections, not literal text.
    _, output, _ = reference
    html = (output / "protocols" / "aggregators.html").read_text(encoding="utf-8")
    assert '<h6 id="arguments">Arguments:</h6>' in html
    assert '<h6 id="returns">Returns:</h6>' in html
    assert "Args:" not in html
