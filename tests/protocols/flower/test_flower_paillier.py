"""Paillier over Flower with the decryptors apart from the server: committees, lies, failures.

Each test runs real rounds through :class:`~flower_loopback.LoopbackGrid`: the nodes hold their
identity keys, the roster and the pinned Paillier public key in their node config, and the
workflow loads its decryptors from the deal's secret files (:func:`protocols.keyfiles.
load_decryptors`). The oracle for exactness decrypts each node's own upload with the test's copy
of the keys and decodes the sum of those vectors exactly as the workflow does: the secure round
must give exactly that, not merely something close to FedAvg.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="the Flower integration needs flwr (pip install '.[flower]')")

from flower_loopback import (
    RUN_ID,
    LoopbackGrid,
    PaillierKeys,
    assert_close_to_fedavg,
    global_arrays,
    make_client_app,
    make_workflow,
    plain_fedavg,
    train_content,
    wire_messages,
    write_keys,
)
from flwr.app import ArrayRecord

from protocols import wire
from protocols.flower import (
    WIRE_RECORD,
    SecureAggregationWorkflow,
    SecureRoundResult,
    flower_session_id,
    load_decryptors,
)
from protocols.flower.keys import DeploymentKeys
from protocols.flower.records import ArrayLayout, EncodingSettings
from protocols.messages import (
    KEY_HOLDER_ID,
    DecryptionShare,
    EncryptedInput,
    Message,
    decryptor_id,
)
from protocols.paillier import Decryptor, KeyHolder
from secagg.errors import InsufficientSurvivorsError, ParameterError
from secagg.hazmat import paillier as hazmat
from secagg.packing import PackingScheme

pytestmark = pytest.mark.usefixtures("serverapp_identity")


class WireProxy:
    """A decryptor reached as a remote process would be: every message crosses as wire bytes."""

    def __init__(self, decryptor: Decryptor) -> None:
        self.decryptor = decryptor
        self.party_id = decryptor.party_id
        self.public = decryptor.public
        self.session_id = decryptor.session_id

    def receive(self, message: Message) -> list[Message]:
        replies = self.decryptor.receive(wire.decode(wire.encode(message)))
        return [wire.decode(wire.encode(reply)) for reply in replies]


class LyingDecryptor(WireProxy):
    """A committee member whose partial decryption of the first ciphertext is off by v."""

    def receive(self, message: Message) -> list[Message]:
        (reply,) = super().receive(message)
        assert isinstance(reply, DecryptionShare)
        public = self.public
        partial = hazmat.PartialDecryption.from_bytes(public, reply.partial)
        wrong = partial.values[0] * public.verification_base % public.n**2
        forged = dataclasses.replace(partial, values=(wrong, *partial.values[1:]))
        return [dataclasses.replace(reply, partial=forged.to_bytes(public))]


class UnreachableDecryptor(WireProxy):
    """A remote decryptor whose connection is down."""

    def receive(self, message: Message) -> list[Message]:
        raise ConnectionError("decryptor unreachable")


def _committee(
    keys_dir: Path, roster: Path, session_id: bytes = flower_session_id(RUN_ID)
) -> list[Decryptor]:
    """The committee members of the share files in ``keys_dir``, as the demo loads them."""
    members = load_decryptors(
        keys_dir, session_id=session_id, roster=roster, value_bits=22, max_clients=1024
    )
    assert all(isinstance(member, Decryptor) for member in members)
    return [member for member in members if isinstance(member, Decryptor)]


def _committee_deployment(
    folder: Path, num_nodes: int, keys: hazmat.ThresholdKeyset
) -> tuple[DeploymentKeys, LoopbackGrid, list[Decryptor]]:
    """Key files for ``num_nodes`` nodes and a committee, the grid, and the loaded members."""
    files = write_keys(folder, num_nodes, keys)
    grid = LoopbackGrid(make_client_app(), num_nodes, keys=files)
    return files, grid, _committee(folder, files.roster_path)


def _uploaded_vectors(grid: LoopbackGrid, keys: PaillierKeys, length: int) -> list[np.ndarray]:
    """Each node's upload, decrypted with the test's copy of the whole key."""
    public_key = keys.public.public_key if isinstance(keys, hazmat.ThresholdKeyset) else keys[0]
    packing = PackingScheme.for_public_key(public_key, value_bits=22, num_clients=1024)
    vectors = []
    for replies in grid.replies_by_node.values():
        for reply in replies:
            if WIRE_RECORD not in reply.content:
                continue  # the identity claim
            for upload in wire_messages(reply):
                if not isinstance(upload, EncryptedInput):
                    continue
                ciphertexts = hazmat.ciphertexts_from_bytes(public_key, upload.ciphertexts)
                vectors.append(packing.unpack(_decrypt(keys, ciphertexts), length, 1))
    return vectors


def _decrypt(keys: PaillierKeys, ciphertexts: Sequence[int]) -> list[int]:
    if not isinstance(keys, hazmat.ThresholdKeyset):
        return hazmat.decrypt_vector(keys.private_key, list(ciphertexts))
    partials = [
        hazmat.partial_decrypt(share, ciphertexts, context=b"oracle")
        for share in keys.shares[: keys.public.threshold]
    ]
    return hazmat.combine_partial_decryptions(keys.public, partials)


def _assert_exact(
    result: SecureRoundResult,
    grid: LoopbackGrid,
    keys: PaillierKeys,
    workflow: SecureAggregationWorkflow,
    arrays: ArrayRecord,
) -> None:
    """The round's average is the exact decoding of the sum of what the survivors uploaded."""
    settings = EncodingSettings(
        workflow.clip,
        workflow.value_bits,
        workflow.max_clients,
        workflow.max_weight,
        "num-examples",
    )
    encoding = settings.update_encoding()
    layout = ArrayLayout.of(train_content(arrays))
    vectors = _uploaded_vectors(grid, keys, encoding.vector_length(layout.size))
    assert len(vectors) == len(result.survivors)
    total, weight = encoding.decode_sum(np.sum(vectors, axis=0, dtype=np.uint64), len(vectors))
    assert weight is not None and result.total_weight == weight
    expected = layout.unflatten(total / weight)
    for key in expected:
        assert np.array_equal(result.arrays[key].numpy(), expected[key].numpy())


def test_paillier_committee_round_over_flower_is_exact(
    committee_keys: hazmat.ThresholdKeyset, tmp_path: Path
) -> None:
    keys, grid, members = _committee_deployment(tmp_path / "keys", 6, committee_keys)
    workflow = make_workflow("paillier", keys, decryptors=[WireProxy(m) for m in members])
    arrays = global_arrays(3)
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    assert result.survivors == tuple(grid.nodes)
    assert (result.decryptors, result.misbehaved) == ((1, 2, 3), {})
    _assert_exact(result, grid, committee_keys, workflow, arrays)
    assert_close_to_fedavg(result.arrays, plain_fedavg(arrays, grid.nodes, 1), workflow, 6)
    # Three verified partials decrypt: members 4 and 5 were never asked to spend one.
    assert [m.last_round for m in members] == [0, 0, 0, None, None]


def test_paillier_single_key_holder_round_over_flower_is_exact(
    paillier_keys: hazmat.PaillierKeypair, tmp_path: Path
) -> None:
    keys = write_keys(tmp_path / "keys", 4, paillier_keys)
    grid = LoopbackGrid(make_client_app(), 4, keys=keys)
    workflow = make_workflow("paillier", keys)
    (key_holder,) = workflow.decryptors.values()
    assert key_holder.party_id == KEY_HOLDER_ID
    arrays = global_arrays(4)
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    assert (result.decryptors, result.misbehaved) == ((), {})
    _assert_exact(result, grid, paillier_keys, workflow, arrays)


def test_paillier_lying_decryptor_is_excluded_and_named(
    committee_keys: hazmat.ThresholdKeyset, tmp_path: Path
) -> None:
    keys, grid, members = _committee_deployment(tmp_path / "keys", 5, committee_keys)
    endpoints = [LyingDecryptor(m) if m.index == 2 else WireProxy(m) for m in members]
    workflow = make_workflow("paillier", keys, decryptors=endpoints)
    arrays = global_arrays(5)
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    # Member 2's partial fails its proof: it is named, and member 4 is asked in its place.
    assert result.decryptors == (1, 3, 4)
    assert list(result.misbehaved) == [decryptor_id(2)]
    assert "decryptor 2's partial decryption failed its proof" in result.misbehaved[decryptor_id(2)]
    _assert_exact(result, grid, committee_keys, workflow, arrays)


def test_paillier_round_aborts_when_fewer_than_threshold_decryptors_answer(
    committee_keys: hazmat.ThresholdKeyset, tmp_path: Path
) -> None:
    keys, grid, members = _committee_deployment(tmp_path / "keys", 4, committee_keys)
    endpoints = [
        UnreachableDecryptor(m)
        if m.index in (1, 4)
        else LyingDecryptor(m)
        if m.index == 5
        else WireProxy(m)
        for m in members
    ]
    workflow = make_workflow("paillier", keys, decryptors=endpoints)
    secure_round = workflow.begin(grid, grid.nodes, train_content(global_arrays()), server_round=1)
    upload = secure_round.prepare()
    with pytest.raises(InsufficientSurvivorsError, match="2 of 5 decryptors sent a valid"):
        secure_round.finish(grid.send_and_receive(upload, timeout=5.0))
    faults = secure_round.decryptor_faults
    assert sorted(faults) == sorted(decryptor_id(i) for i in (1, 4, 5))
    assert "ConnectionError: decryptor unreachable" in faults[decryptor_id(1)]
    assert "failed its proof" in faults[decryptor_id(5)]


def test_paillier_workflow_refuses_decryptors_that_do_not_fit(
    committee_keys: hazmat.ThresholdKeyset,
    paillier_keys: hazmat.PaillierKeypair,
    tmp_path: Path,
) -> None:
    keys = write_keys(tmp_path / "keys", 3, committee_keys)
    assert keys.paillier is not None
    members = _committee(keys.paillier.public_path.parent, keys.roster_path)
    single = write_keys(tmp_path / "single", 3, paillier_keys)
    assert single.paillier is not None
    (key_holder,) = load_decryptors(
        single.paillier.public_path.parent,
        session_id=flower_session_id(RUN_ID),
        roster=single.roster_path,
        value_bits=22,
        max_clients=1024,
    )
    assert isinstance(key_holder, KeyHolder)
    roster = keys.roster_path
    cases: list[tuple[Sequence[Decryptor | KeyHolder], str]] = [
        (members[:2], "2 decryptors can never decrypt: 3 needed"),
        ([*members, key_holder], "different public keys"),
        ([members[0], members[0]], "two decryptors are party"),
    ]
    for decryptors, match in cases:
        with pytest.raises(ParameterError, match=match):
            SecureAggregationWorkflow("paillier", decryptors=decryptors, roster=roster)
    other_run = _committee(keys.paillier.public_path.parent, roster, bytes(16))
    workflow = SecureAggregationWorkflow("paillier", decryptors=other_run, roster=roster)
    grid = LoopbackGrid(make_client_app(), 3, keys=keys)
    with pytest.raises(ParameterError, match="flower_session_id"):
        workflow.begin(grid, grid.nodes, train_content(global_arrays()), server_round=1)


def test_demo_server_app_loads_its_decryptors_from_the_share_files(
    committee_keys: hazmat.ThresholdKeyset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's ServerApp builds its Paillier workflow from the run config alone: the roster
    # and the directory of the deal; the nodes pin the public key from their own node config.
    pytest.importorskip("torch", reason="the demo app imports torch (pip install '.[models]')")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "demos" / "flower_app"))
    from secagg_mf import server_app, task

    keys = write_keys(tmp_path / "keys", 4, committee_keys)
    settings = task.Settings(backend="paillier", roster=str(keys.roster_path), timeout=5.0)
    with pytest.raises(ParameterError, match="paillier-keys='DIR'"):
        server_app.make_workflow(settings, RUN_ID)
    settings = dataclasses.replace(settings, paillier_keys=str(tmp_path / "keys"), clip=1.0)
    workflow = server_app.make_workflow(settings, RUN_ID)
    assert sorted(workflow.decryptors) == sorted(decryptor_id(i) for i in range(1, 6))
    grid = LoopbackGrid(make_client_app(), 4, keys=keys)
    arrays = global_arrays(6)
    result = workflow.aggregate(grid, grid.nodes, train_content(arrays), server_round=1)
    assert result.decryptors == (1, 2, 3)
    _assert_exact(result, grid, committee_keys, workflow, arrays)
