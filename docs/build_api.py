"""Build the HTML API reference of ``secagg``, ``protocols`` and ``models`` from the docstrings.

Usage (from the repository root, with the ``test`` or ``dev`` extra installed)::

    python docs/build_api.py OUTPUT_DIR [--no-search]

then open ``OUTPUT_DIR/index.html``. It is pdoc (https://pdoc.dev) over every public module (no
segment of its name starts with ``_``), with Google-style docstrings, like::

    python -m pdoc --docformat google --no-show-source -o OUTPUT_DIR secagg protocols models ...

but with the module list spelled out, because pdoc only descends into the submodules a package
lists in its ``__all__`` and ours export names, not modules. The source view is left out: it
makes the build four times slower and the output 21 MB instead of 6 MB.

pdoc reports what it cannot document as Python warnings. Each one is printed and makes the exit
status 1 (``tests/test_api_reference.py`` builds the reference, so that it cannot rot), except
two limitations of pdoc itself, each checked to be what it claims to be:

- a ``typing.NamedTuple`` whose field annotations are strings (``from __future__ import
  annotations``): pdoc evaluates them in the namespace of the generated ``__new__``, where the
  names are undefined. The annotation is shown as written.
- a name in ``__all__`` served by the module's ``__getattr__`` (PEP 562; ``protocols.bench`` keeps
  old import paths this way): pdoc reads the module's own namespace only. The name is documented
  where it is defined.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pdoc
import pdoc.render

__all__ = ["PACKAGES", "build", "main", "public_modules"]

#: The top-level packages of the distribution.
PACKAGES: Final[tuple[str, ...]] = ("secagg", "protocols", "models")

_FORWARD_REF: Final = re.compile(
    r"Error parsing type annotation ForwardRef\(.*\) for (?P<owner>[\w.]+)\.__init__\. "
)
_UNRESOLVED_ALL: Final = re.compile(
    r"Found '(?P<name>\w+)' in (?P<module>[\w.]+)\.__all__, but it does not resolve"
)


def public_modules() -> list[str]:
    """Every public module of :data:`PACKAGES`, each once, in a stable order.

    A submodule that its package lists in ``__all__`` is left out: pdoc documents it as part of
    the package already, and refuses a module given twice.

    Returns:
        The dotted module names, packages first.
    """
    names: list[str] = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        # A subpackage that fails to import is kept in the list: build() reports why.
        walk = pkgutil.walk_packages(package.__path__, package_name + ".", onerror=names.append)
        for info in walk:
            parent, _, leaf = info.name.rpartition(".")
            if any(part.startswith("_") for part in info.name.split(".")):
                continue
            if leaf in getattr(importlib.import_module(parent), "__all__", ()):
                continue
            names.append(info.name)
    return names


def _resolve(dotted: str) -> object:
    """The object at ``dotted`` (a module, then attributes), or ``None``."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute, None)
        return target
    return None


def _is_pdoc_limitation(message: str) -> bool:
    """Whether a pdoc warning is one of the two limitations of pdoc in the module docstring."""
    forward = _FORWARD_REF.match(message)
    if forward is not None:
        owner = _resolve(forward["owner"])
        return isinstance(owner, type) and issubclass(owner, tuple) and hasattr(owner, "_fields")
    unresolved = _UNRESOLVED_ALL.match(message)
    if unresolved is not None:
        module = _resolve(unresolved["module"])
        name = unresolved["name"]
        return name not in vars(module) and hasattr(module, name)
    return False


def build(output: Path, *, search: bool = True) -> list[str]:
    """Write the HTML reference into ``output``.

    Args:
        output: the directory to write (created if missing; existing pages are replaced).
        search: also write the search index (about a fifth of the build time).

    Returns:
        The modules that failed to import (each left out, with the reason) and pdoc's warnings
        about the project, other than the known limitations of pdoc.
    """
    importable: list[str] = []
    problems: list[str] = []
    for name in dict.fromkeys(public_modules()):
        try:
            importlib.import_module(name)
        except Exception as error:  # any failure of the module's own code is reported
            problems.append(f"cannot import {name}: {type(error).__name__}: {error}")
        else:
            importable.append(name)
    pdoc.render.configure(docformat="google", show_source=False, search=search)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*importable, output_directory=output)
    messages = [str(warning.message) for warning in caught]
    return problems + [message for message in messages if not _is_pdoc_limitation(message)]


def main(argv: Sequence[str] | None = None) -> int:
    """Build the reference into the directory given on the command line.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        0 when pdoc documented everything, 1 when it warned.
    """
    parser = argparse.ArgumentParser(description="Build the HTML API reference with pdoc.")
    parser.add_argument("output", type=Path, help="directory to write the HTML pages to")
    parser.add_argument(
        "--no-search", action="store_true", help="leave out the search box (a faster build)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    problems = build(args.output, search=not args.no_search)
    for problem in problems:
        print(f"build_api: warning: {problem}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"API reference written to {args.output / 'index.html'} in {elapsed:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
