"""Argument type checks shared by the Paillier modules.

Why this module exists: every Paillier entry point rejects a wrong argument type with a
:class:`TypeError` that names the argument (STYLE.md section 4), and the key, randomness,
cipher and process-pool modules all need the same check without importing one another.
"""

from __future__ import annotations

__all__: list[str] = []


def _check_type(name: str, value: object, expected: type) -> None:
    # bool is an int subclass; a True where a count is expected is a bug, not a 1.
    if not isinstance(value, expected) or isinstance(value, bool):
        raise TypeError(f"{name} must be {expected.__name__}, not {type(value).__name__}")
