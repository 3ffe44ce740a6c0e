"""Shared fixtures for the secagg.hazmat.paillier tests: keys and the known-answer vectors.

Most tests use one 1024-bit key from the private ``_generate_keypair_unchecked_size`` seam for
speed; the phe interoperability and end-to-end tests use a real 2048-bit key. Both are made
once per test session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from secagg.hazmat.paillier import PaillierKeypair, generate_keypair
from secagg.hazmat.paillier.keys import _generate_keypair_unchecked_size

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "paillier.json"


@pytest.fixture(scope="session")
def small_keys() -> PaillierKeypair:
    return _generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="session")
def keys_2048() -> PaillierKeypair:
    return generate_keypair(2048)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VECTORS.read_text())
    return document
