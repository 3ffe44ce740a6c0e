"""Fixtures of the Flower integration's tests.

The in-process harness itself (grid, client app, oracles) is the plain module
``flower_loopback`` beside this file; these are the fixtures its tests share. Nothing here
imports flwr at import time, so the suite still collects without the ``flower`` extra.
"""

from __future__ import annotations

import pytest

from secagg.hazmat import paillier as hazmat_paillier


@pytest.fixture
def serverapp_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower sets in a ServerApp process, and Message() reads."""
    task_identity = pytest.importorskip("flwr.supercore.task_identity").TaskIdentity
    import flower_loopback

    monkeypatch.setattr(task_identity, "_run_id", flower_loopback.RUN_ID)
    monkeypatch.setattr(task_identity, "_node_id", 0)
    monkeypatch.setattr(task_identity, "_task_id", 1)


@pytest.fixture(scope="module")
def paillier_keys() -> hazmat_paillier.PaillierKeypair:
    """A 1024-bit Paillier key pair (test size only), shared by a module's tests."""
    return hazmat_paillier._generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="module")
def committee_keys() -> hazmat_paillier.ThresholdKeyset:
    """A 3-of-5 threshold Paillier key of 1024 bits (test size only), shared by a module."""
    return hazmat_paillier._generate_threshold_keypair_unchecked_size(
        1024, decryptors=5, threshold=3
    )
