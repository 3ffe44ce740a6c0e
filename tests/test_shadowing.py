"""A user's own ``models`` or ``protocols`` package beside ours gets one clear message.

Issue 13, item 9: in a project with its own ``models/`` package, ``from models import
MatrixFactorization`` failed with a bare ``ImportError``, and under the editable install ``import
models.mf`` loaded our module into the user's package. Each test runs a fresh interpreter in a
temporary project directory, the way a user's script would run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import secagg

#: The directory holding this distribution's top-level packages.
ROOT = Path(secagg.__file__).resolve().parents[1]

#: The console script, installed beside the interpreter.
SECAGG_SCRIPT = Path(sys.executable).with_name("secagg")


def _editable_install() -> bool:
    """Whether this source tree is installed in editable mode (a stale ``secagg.egg-info`` in
    the current directory may be found before the real dist-info, so every one is read)."""
    for distribution in metadata.distributions(name="secagg"):
        text = distribution.read_text("direct_url.json")
        if text:
            url = json.loads(text)
            if url.get("dir_info", {}).get("editable") and url.get("url") == ROOT.as_uri():
                return True
    return False


#: Only setuptools' editable finder resolves ``models.mf`` whatever ``models`` is; a regular
#: install fails with ModuleNotFoundError before any of our code runs.
needs_editable = pytest.mark.skipif(
    not _editable_install(), reason="only the editable install loads our submodules there"
)


def _run(
    command: list[str], cwd: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONWARNINGS"}}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-c", code], cwd)


def _user_project(tmp_path: Path, name: str) -> Path:
    """A project directory with its own package ``name`` (and a submodule of its own)."""
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text('"""The user\'s own package."""\nOWN = True\n')
    (package / "helpers.py").write_text("VALUE = 42\n")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "public_name"), [("models", "MatrixFactorization"), ("protocols", "MaskingAggregator")]
)
def test_shadowing_import_secagg_warns_naming_both_locations_and_the_fix(
    tmp_path: Path, name: str, public_name: str
) -> None:
    project = _user_project(tmp_path, name)
    result = _python(f"import secagg\nfrom {name} import {public_name}", project)
    assert result.returncode == 1
    warning = [line for line in result.stderr.splitlines() if "PackageShadowedWarning" in line]
    assert len(warning) == 1, result.stderr
    # It points at the user's own import line, and names both packages and what to do.
    assert warning[0].startswith("<string>:1: PackageShadowedWarning: ")
    assert f"'{name}' is taken by {project / name}," in warning[0]
    assert f"secagg's {ROOT / name}:" in warning[0]
    assert "Rename your package, or run from a directory where it is not first" in warning[0]
    assert f'python -c "import {name}; print({name})"' in warning[0]
    # The user's ImportError still follows: the warning explains it, it does not replace it.
    assert result.stderr.splitlines()[-1].startswith(
        f"ImportError: cannot import name '{public_name}'"
    )


@pytest.mark.parametrize(("name", "submodule"), [("models", "mf"), ("protocols", "graph")])
def test_shadowing_our_submodule_is_refused_in_the_users_package(
    tmp_path: Path, name: str, submodule: str
) -> None:
    project = _user_project(tmp_path, name)
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import secagg\n"
        "try:\n"
        f"    import {name}.{submodule}\n"
        "except secagg.PackageShadowedError as error:\n"
        f"    print(error.name, '{name}.{submodule}' in sys.modules, 'torch' in sys.modules)\n"
        "    print(error)\n"
    )
    result = _python(code, project)
    assert result.returncode == 0, result.stderr
    first, message = result.stdout.splitlines()
    # Refused before our module ran (so torch was never imported for models.mf).
    assert first == f"{name}.{submodule} False False"
    assert message.startswith(f"refusing to load secagg's {name}.{submodule} (from {ROOT / name})")
    assert f"into another package named '{name}' at {project / name}," in message


@needs_editable
@pytest.mark.parametrize(("name", "submodule"), [("models", "mf"), ("protocols", "graph")])
def test_shadowing_our_module_imported_first_is_refused_when_it_imports_secagg(
    tmp_path: Path, name: str, submodule: str
) -> None:
    # The reproducer: nothing imported secagg yet, so our module starts to load into the
    # user's package; its own import of secagg stops it.
    project = _user_project(tmp_path, name)
    result = _python(f"import {name}.{submodule}", project)
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        f"secagg.errors.PackageShadowedError: refusing to load secagg's {name}.{submodule} "
    ), result.stderr
    assert str(project / name) in last


def test_shadowing_the_users_own_submodules_still_load(tmp_path: Path) -> None:
    project = _user_project(tmp_path, "models")
    code = "import secagg\nimport models.helpers\nprint(models.OWN, models.helpers.VALUE)"
    result = _python(code, project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "42"]
    assert "PackageShadowedWarning" in result.stderr


@needs_editable
def test_shadowing_a_plain_directory_named_models_is_named_as_such(tmp_path: Path) -> None:
    # A folder of checkpoints called models/ is a namespace package to Python, and under the
    # editable install it wins over our package.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "weights.pt").write_bytes(b"")
    result = _python("import secagg", tmp_path)
    assert f"{tmp_path / 'models'} (a directory without __init__.py" in result.stderr


@pytest.mark.parametrize("where", ["empty directory", "repository root", "other package names"])
def test_shadowing_no_clash_prints_nothing(tmp_path: Path, where: str) -> None:
    cwd = ROOT if where == "repository root" else tmp_path
    if where == "other package names":
        _user_project(tmp_path, "my_models")
        (tmp_path / "protocols_notes.txt").write_text("not a package\n")
    code = (
        "import importlib.util, secagg, protocols\nprint(importlib.util.find_spec('models').origin)"
    )
    result = _python(code, cwd)
    assert (result.returncode, result.stderr) == (0, "")
    assert Path(result.stdout.strip()) == ROOT / "models" / "__init__.py"


def test_shadowing_cli_is_not_affected_by_the_current_directory(tmp_path: Path) -> None:
    # A console script's sys.path starts with its own directory, not the current one.
    project = _user_project(tmp_path, "models")
    result = _run([str(SECAGG_SCRIPT), "train", "--help"], project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: secagg train")
    assert result.stderr == ""


def test_shadowing_cli_with_the_project_on_pythonpath_says_what_to_do(tmp_path: Path) -> None:
    project = _user_project(tmp_path, "models")
    result = _run([str(SECAGG_SCRIPT), "train", "--help"], project, pythonpath=project)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("secagg train: error: ")
    assert "refusing to load secagg's models.commands" in lines[-1]
    assert f"'models' at {project / 'models'}," in lines[-1]
    assert "Rename your package" in lines[-1]
