"""Detect a user's own ``protocols`` or ``models`` package hiding this distribution's.

The ``secagg`` distribution installs three top-level packages, ``secagg``, ``protocols`` and
``models`` (DESIGN.md section 2 keeps these names). The last two are generic: a project with its
own ``models/`` (or ``protocols/``) directory first on ``sys.path`` hides ours, and ``from models
import MatrixFactorization`` then fails with an ``ImportError`` that names the user's package and
not the cause. Under an editable install it is worse: setuptools' editable finder resolves
``models.mf`` to our file whatever ``models`` is, so ``import models.mf`` loads our module *into the
user's package*.

:func:`check_top_level_packages` runs once, when ``secagg`` is imported: ``protocols`` and
``models`` import it before anything else of theirs runs, and so does each of their modules
(directly or through another of ours) except ``models.objectives`` and the empty
``models.commands``. It compares where each name is, or would be, loaded from with where this
distribution put it:

- our own module already loaded under a foreign parent raises :class:`PackageShadowedError`;
- a foreign package already imported, or the one an import would pick (found with
  :func:`importlib.util.find_spec`, which locates a top-level name without executing it), gives a
  :class:`PackageShadowedWarning`, and a finder is put in front of :data:`sys.meta_path` that
  refuses to load our submodules into the foreign package later.

Nothing is installed and nothing is printed when there is no clash; the check costs a few path
look-ups (about 2 ms with cold import caches, 0.6 ms warm, on the development machine).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import FrameType, ModuleType
from typing import Final

from secagg.errors import PackageShadowedError

__all__ = ["SHADOWABLE_PACKAGES", "PackageShadowedWarning", "check_top_level_packages"]

#: The top-level packages of this distribution whose names a user's project may well also use.
SHADOWABLE_PACKAGES: Final[tuple[str, ...]] = ("protocols", "models")

#: The directory holding this distribution's top-level packages (site-packages, or the source
#: tree of an editable install).
_ROOT: Final[Path] = Path(__file__).resolve().parent.parent


class PackageShadowedWarning(UserWarning):
    """Another package named ``protocols`` or ``models`` is picked instead of this distribution's.

    Imports of ``secagg`` keep working; ``from models import ...`` (or ``protocols``) will find
    the other package. The message names both locations and what to do.
    """


def check_top_level_packages() -> None:
    """Warn, or refuse, when ``protocols`` or ``models`` is not this distribution's package.

    Called by ``secagg/__init__.py``. For each name in :data:`SHADOWABLE_PACKAGES`, the module
    already in :data:`sys.modules`, or else the spec an import would use, is compared with this
    distribution's directory for that name.

    Raises:
        PackageShadowedError: one of our own modules (say ``models.mf``) is being imported into a
            foreign package of the same name.

    Warns:
        PackageShadowedWarning: the name is, or would be, imported from somewhere else.
    """
    for name in SHADOWABLE_PACKAGES:
        foreign = _foreign_location(name)
        if foreign is None:
            continue
        hijacked = _our_modules_under(name)
        if hijacked:
            raise PackageShadowedError(
                _refusal(hijacked[0], foreign), name=hijacked[0], path=str(foreign)
            )
        _warn(_shadow_message(name, foreign))
        _install_guard(name)


def _foreign_location(name: str) -> Path | None:
    """Where ``name`` is (or would be) loaded from, when that is not this distribution."""
    module = sys.modules.get(name)
    if module is not None:
        location = _module_location(module)
    else:
        # find_spec on a top-level name runs the finders only: nothing is executed.
        location = _spec_location(importlib.util.find_spec(name))
    if location is None or _same_path(location, _ROOT / name):
        return None
    return location


def _module_location(module: ModuleType) -> Path | None:
    spec = getattr(module, "__spec__", None)
    if isinstance(spec, ModuleSpec):
        return _spec_location(spec)
    filename = getattr(module, "__file__", None)
    return _package_directory(Path(filename)) if isinstance(filename, str) else None


def _spec_location(spec: ModuleSpec | None) -> Path | None:
    """The package directory (or module file) a spec loads; ``None`` when it has none."""
    if spec is None:
        return None
    if spec.has_location and spec.origin is not None:
        return _package_directory(Path(spec.origin))
    # A namespace package (a directory without __init__.py): its first portion.
    portions = list(spec.submodule_search_locations or ())
    return Path(portions[0]) if portions else None


def _package_directory(origin: Path) -> Path:
    return origin.parent if origin.stem == "__init__" else origin


def _same_path(first: Path, second: Path) -> bool:
    return os.path.normcase(os.path.realpath(first)) == os.path.normcase(os.path.realpath(second))


def _our_modules_under(name: str) -> list[str]:
    """Submodules ``name.*`` loaded from this distribution's directory for ``name``, in import
    order (the first is the one whose import started the chain)."""
    ours = os.path.normcase(os.path.realpath(_ROOT / name)) + os.sep
    found = []
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(name + "."):
            origin = getattr(getattr(module, "__spec__", None), "origin", None)
            if isinstance(origin, str) and os.path.normcase(os.path.realpath(origin)).startswith(
                ours
            ):
                found.append(module_name)
    return found


def _advice(name: str) -> str:
    return (
        f"Rename your package, or run from a directory where it is not first on sys.path "
        f'(python -c "import {name}; print({name})" run from that directory shows which one '
        f"is picked)."
    )


def _describe(foreign: Path) -> str:
    if foreign.is_dir() and not (foreign / "__init__.py").exists():
        return f"{foreign} (a directory without __init__.py, which Python takes as a package)"
    return str(foreign)


def _shadow_message(name: str, foreign: Path) -> str:
    return (
        f"the package name '{name}' is taken by {_describe(foreign)}, which Python picks "
        f"instead of secagg's {_ROOT / name}: 'from {name} import ...' finds that package, "
        "not secagg's. " + _advice(name)
    )


def _refusal(module_name: str, foreign: Path) -> str:
    name = module_name.partition(".")[0]
    return (
        f"refusing to load secagg's {module_name} (from {_ROOT / name}) into another package "
        f"named '{name}' at {_describe(foreign)}, which Python picks instead of secagg's. "
        + _advice(name)
    )


def _warn(message: str) -> None:
    """Warn, pointing at the first frame outside this distribution (the user's import line).

    :func:`warnings.warn` skips the import system's frames when it counts ``stacklevel``, so
    only the other frames are counted here.
    """
    ours = tuple(str(_ROOT / package) + os.sep for package in ("secagg", *SHADOWABLE_PACKAGES))
    level = 1  # _warn itself
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not ("importlib" in filename and "_bootstrap" in filename):
            level += 1
            if not filename.startswith(ours):
                break
        frame = frame.f_back
    warnings.warn(message, PackageShadowedWarning, stacklevel=level)


def _install_guard(name: str) -> None:
    for finder in sys.meta_path:
        if isinstance(finder, _ForeignParentGuard):
            finder.names.add(name)
            return
    sys.meta_path.insert(0, _ForeignParentGuard({name}))


class _ForeignParentGuard:
    """A meta path finder that refuses our submodules under a foreign package of the same name.

    It finds nothing itself: it returns ``None`` (the next finder decides) unless the parent is a
    foreign package that lacks the submodule while this distribution has it, which is exactly
    when setuptools' editable finder would load our file into the user's package.
    """

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        parent, _, _ = fullname.rpartition(".")
        if parent not in self.names or path is None:
            return None
        foreign = _foreign_location(parent)
        if foreign is None or PathFinder.find_spec(fullname, path) is not None:
            return None
        if PathFinder.find_spec(fullname, [str(_ROOT / parent)]) is None:
            return None
        raise PackageShadowedError(_refusal(fullname, foreign), name=fullname, path=str(foreign))
