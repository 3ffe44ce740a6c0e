"""Tests for secagg.hazmat.paillier.threshold: known answers, exact packed sums, proofs, codecs.

Most tests share one 3-of-5 committee over a 512-bit n from the private unchecked-size seam;
the known answers (tests/vectors/paillier_threshold.json) come from a generator that does not
import the project. One 2048-bit round trip is marked slow.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import math
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg.errors import (
    InvalidCiphertextError,
    InvalidPartialDecryptionError,
    ParameterError,
    ReconstructionError,
)
from secagg.hazmat.paillier import (
    SUPPORTED_COMMITTEE_SIZES,
    DecryptionKeyShare,
    PartialDecryption,
    RandomnessMode,
    ThresholdKeyset,
    ThresholdPublicKey,
    _parallel,
    combine_partial_decryptions,
    encrypt_vector,
    generate_threshold_keypair,
    partial_decrypt,
    sum_ciphertext_vectors,
    threshold,
    verify_partial_decryption,
)
from secagg.hazmat.paillier.threshold import (
    _generate_threshold_keypair_unchecked_size,
    _lagrange_exponents,
    _partial_decrypt_with_nonce,
    _safe_prime_in_window,
    _sieve_window,
    _threshold_keypair_from_parts,
)
from secagg.packing import PackingScheme

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "paillier_threshold.json"
CONTEXT = b"session 1, round 3"


def _hex(value: str) -> int:
    return int(value, 16)


@pytest.fixture(scope="module")
def keyset() -> ThresholdKeyset:
    return _generate_threshold_keypair_unchecked_size(512, decryptors=5, threshold=3)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VECTORS.read_text())
    return document


def _keyset_from_vectors(vectors: dict[str, Any], coefficients: list[int]) -> ThresholdKeyset:
    return _threshold_keypair_from_parts(
        _hex(vectors["p"]),
        _hex(vectors["q"]),
        decryptors=vectors["decryptors"],
        threshold=vectors["threshold"],
        coefficients=coefficients,
        verification_unit=_hex(vectors["verification_unit"]),
        djn_x=_hex(vectors["djn_x"]),
    )


def _encrypt(keyset: ThresholdKeyset, plaintexts: list[int], mode: RandomnessMode) -> list[int]:
    djn = keyset.public.djn if mode is RandomnessMode.DJN else None
    return encrypt_vector(keyset.public.public_key, plaintexts, mode=mode, djn=djn, processes=1)


def _partials(keyset: ThresholdKeyset, ciphertexts: list[int]) -> list[PartialDecryption]:
    return [partial_decrypt(share, ciphertexts, context=CONTEXT) for share in keyset.shares]


# --- known answers (tests/vectors/paillier_threshold.json, computed without secagg) ---------


def test_known_answer_keys_and_key_bytes(vectors: dict[str, Any]) -> None:
    keyset = _keyset_from_vectors(vectors, [_hex(a) for a in vectors["coefficients"]])
    public = keyset.public
    assert public.n == _hex(vectors["n"])
    assert public.delta == 120
    assert public.verification_base == _hex(vectors["verification_base"])
    assert list(public.verification_keys) == [_hex(v) for v in vectors["verification_keys"]]
    assert [share.share for share in keyset.shares] == [_hex(s) for s in vectors["shares"]]
    assert public.djn is not None and public.djn.hs == _hex(vectors["hs"])
    assert public.to_bytes().hex() == vectors["public_key_bytes"]
    assert public.fingerprint().hex() == vectors["fingerprint"]
    assert keyset.shares[0].to_bytes().hex() == vectors["share_1_bytes"]
    assert ThresholdPublicKey.from_bytes(bytes.fromhex(vectors["public_key_bytes"])) == public
    assert (
        DecryptionKeyShare.from_bytes(bytes.fromhex(vectors["share_1_bytes"])) == (keyset.shares[0])
    )


def test_known_answer_partial_decryptions_and_combinations(vectors: dict[str, Any]) -> None:
    keyset = _keyset_from_vectors(vectors, [_hex(a) for a in vectors["coefficients"]])
    public = keyset.public
    context = bytes.fromhex(vectors["context"])
    ciphertexts = [_hex(c) for c in vectors["ciphertexts"]]
    partials = {}
    for expected in vectors["partials"]:
        index = expected["index"]
        got = _partial_decrypt_with_nonce(
            keyset.shares[index - 1], ciphertexts, context=context, nonce=_hex(expected["nonce"])
        )
        assert got.index == index
        assert list(got.values) == [_hex(v) for v in expected["values"]]
        assert got.challenge == _hex(expected["challenge"])
        assert got.response == _hex(expected["response"])
        verify_partial_decryption(public, ciphertexts, got, context=context)
        partials[index] = got
    assert partials[1].to_bytes(public).hex() == vectors["partial_1_bytes"]
    decoded = PartialDecryption.from_bytes(public, bytes.fromhex(vectors["partial_1_bytes"]))
    assert decoded == partials[1]
    plaintexts = [_hex(m) for m in vectors["plaintexts"]]
    for case in vectors["combinations"]:
        chosen = [partials[i] for i in case["subset"]]
        result = combine_partial_decryptions(public, chosen)
        assert result == [_hex(m) for m in case["plaintexts"]] == plaintexts


def test_vector_file_matches_its_generator(vectors: dict[str, Any]) -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_threshold_vectors", VECTORS.parent / "generate_threshold_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert json.loads(generator.render(generator.build())) == vectors


# --- exact decryption of packed sums ---------------------------------------------------------


@pytest.mark.parametrize("mode", list(RandomnessMode))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_threshold_decryption_of_packed_sums_is_exact_for_every_subset(
    keyset: ThresholdKeyset, mode: RandomnessMode, data: st.DataObject
) -> None:
    public = keyset.public
    value_bits = data.draw(st.integers(1, 40), label="value_bits")
    num_clients = data.draw(st.integers(1, 6), label="num_clients")
    scheme = PackingScheme.for_public_key(
        public.public_key, value_bits=value_bits, num_clients=num_clients
    )
    count = data.draw(st.integers(0, 2 * scheme.slots_per_plaintext + 1), label="count")
    value = st.integers(0, 2**value_bits - 1)
    inputs = [
        data.draw(st.lists(value, min_size=count, max_size=count), label=f"client {i}")
        for i in range(num_clients)
    ]
    uploads = [_encrypt(keyset, scheme.pack(np.array(x, dtype=np.uint64)), mode) for x in inputs]
    aggregate = sum_ciphertext_vectors(public.public_key, uploads)
    partials = _partials(keyset, aggregate)
    for item in partials:
        verify_partial_decryption(public, aggregate, item, context=CONTEXT)
    expected = [sum(column) for column in zip(*inputs, strict=True)] if count else []
    for subset in itertools.combinations(partials, public.threshold):
        order = data.draw(st.permutations(subset), label="order")
        plaintexts = combine_partial_decryptions(public, order)
        assert scheme.unpack(plaintexts, count, num_clients).tolist() == expected


@pytest.mark.parametrize(("decryptors", "threshold_"), [(1, 1), (2, 1), (2, 2), (4, 4), (7, 3)])
def test_every_committee_shape_decrypts(decryptors: int, threshold_: int) -> None:
    keyset = _generate_threshold_keypair_unchecked_size(
        512, decryptors=decryptors, threshold=threshold_, djn=False
    )
    plaintexts = [0, 1, 2**300 + 17, keyset.public.n - 1]
    ciphertexts = _encrypt(keyset, plaintexts, RandomnessMode.FRESH)
    partials = _partials(keyset, ciphertexts)
    for item in partials:
        verify_partial_decryption(keyset.public, ciphertexts, item, context=CONTEXT)
    for subset in itertools.combinations(partials, threshold_):
        assert combine_partial_decryptions(keyset.public, subset) == plaintexts
    # More than threshold partial decryptions: the first threshold are used.
    assert combine_partial_decryptions(keyset.public, partials[::-1]) == plaintexts


def test_combination_spreads_over_processes(
    keyset: ThresholdKeyset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_parallel, "_MIN_CIPHERTEXTS_PER_PROCESS", 4)
    public = keyset.public
    plaintexts = [(i * 7919) ** 9 % public.n for i in range(12)]
    ciphertexts = _encrypt(keyset, plaintexts, RandomnessMode.DJN)
    parallel = partial_decrypt(keyset.shares[1], ciphertexts, context=CONTEXT, processes=2)
    serial = partial_decrypt(keyset.shares[1], ciphertexts, context=CONTEXT, processes=1)
    assert parallel.values == serial.values
    verify_partial_decryption(public, ciphertexts, parallel, context=CONTEXT)
    others = [partial_decrypt(s, ciphertexts, context=CONTEXT) for s in keyset.shares[2:4]]
    assert combine_partial_decryptions(public, [parallel, *others], processes=2) == plaintexts


# --- fewer than threshold reveal nothing usable ----------------------------------------------


def test_fewer_than_threshold_partials_do_not_combine(keyset: ThresholdKeyset) -> None:
    ciphertexts = _encrypt(keyset, [42, 7], RandomnessMode.FRESH)
    partials = _partials(keyset, ciphertexts)
    for subset in itertools.combinations(partials, keyset.public.threshold - 1):
        with pytest.raises(ReconstructionError, match="need threshold = 3"):
            combine_partial_decryptions(keyset.public, subset)
    with pytest.raises(ReconstructionError, match="duplicate"):
        combine_partial_decryptions(keyset.public, [partials[0], partials[1], partials[0]])


def test_threshold_minus_one_partials_with_a_forged_one_give_no_plaintext(
    keyset: ThresholdKeyset, vectors: dict[str, Any]
) -> None:
    public = keyset.public
    n_square = public.n**2
    plaintexts = [42, 2**200 + 5]
    ciphertexts = _encrypt(keyset, plaintexts, RandomnessMode.FRESH)
    genuine = _partials(keyset, ciphertexts)[:2]
    # A guessed share x: the values c^{2 Δ x}, under decryptor 3's index.
    guess = secrets.randbelow(n_square)
    guessed = PartialDecryption(
        index=3,
        values=tuple(int(gmpy2.powmod(c, 2 * public.delta * guess, n_square)) for c in ciphertexts),
        challenge=0,
        response=0,
    )
    with pytest.raises(ReconstructionError, match="do not combine"):
        combine_partial_decryptions(public, [*genuine, guessed])
    # Decryptor 3's share of another dealing over the same n.
    other = _keyset_from_vectors(vectors, [5, 7])
    vector_ciphertexts = [_hex(c) for c in vectors["ciphertexts"]]
    mine = _keyset_from_vectors(vectors, [_hex(a) for a in vectors["coefficients"]])
    mixed = [
        partial_decrypt(mine.shares[0], vector_ciphertexts, context=CONTEXT),
        partial_decrypt(mine.shares[1], vector_ciphertexts, context=CONTEXT),
        partial_decrypt(other.shares[2], vector_ciphertexts, context=CONTEXT),
    ]
    with pytest.raises(ReconstructionError, match="do not combine"):
        combine_partial_decryptions(mine.public, mixed)
    with pytest.raises(InvalidPartialDecryptionError):
        verify_partial_decryption(mine.public, vector_ciphertexts, mixed[2], context=CONTEXT)


def test_a_forgery_that_passes_the_consistency_check_gives_a_wrong_plaintext(
    keyset: ThresholdKeyset,
) -> None:
    # With S = {1, 2, 3}, mu_3 divides mu_1 and mu_2, so decryptors 1 and 2 alone can forge
    # c_3 = c_1^{-mu_1/mu_3} c_2^{-mu_2/mu_3}: the product is 1 and "decrypts" to 0. Only the
    # proof catches it.
    public = keyset.public
    n_square = public.n**2
    plaintexts = [42, 2**200 + 5]
    ciphertexts = _encrypt(keyset, plaintexts, RandomnessMode.DJN)
    first, second = _partials(keyset, ciphertexts)[:2]
    exponents = _lagrange_exponents([1, 2, 3], public.delta)
    assert exponents[0] % exponents[2] == exponents[1] % exponents[2] == 0
    ratios = (exponents[0] // exponents[2], exponents[1] // exponents[2])
    forged_values = []
    for a, b in zip(first.values, second.values, strict=True):
        value = int(
            gmpy2.powmod(a, -ratios[0], n_square) * gmpy2.powmod(b, -ratios[1], n_square) % n_square
        )
        forged_values.append(min(value, n_square - value))
    forged = PartialDecryption(
        index=3, values=tuple(forged_values), challenge=first.challenge, response=first.response
    )
    assert combine_partial_decryptions(public, [first, second, forged]) == [0, 0]
    with pytest.raises(InvalidPartialDecryptionError) as caught:
        verify_partial_decryption(public, ciphertexts, forged, context=CONTEXT)
    assert caught.value.decryptor == 3


# --- bad partial decryptions are caught and named --------------------------------------------


def _altered(item: PartialDecryption, **changes: Any) -> PartialDecryption:
    fields: dict[str, Any] = {
        "index": item.index,
        "values": item.values,
        "challenge": item.challenge,
        "response": item.response,
    }
    fields.update(changes)
    return PartialDecryption(**fields)


def _with_value(item: PartialDecryption, position: int, value: int) -> PartialDecryption:
    values = list(item.values)
    values[position] = value
    return _altered(item, values=tuple(values))


def _forgeries(
    keyset: ThresholdKeyset, ciphertexts: list[int], honest: PartialDecryption
) -> dict[str, Callable[[], PartialDecryption]]:
    public = keyset.public
    n_square = public.n**2
    share = keyset.shares[honest.index - 1]
    too_long = 1 << (threshold._nonce_bits(public) + 1)
    return {
        "value plus one": lambda: _with_value(honest, 1, honest.values[1] + 1),
        "value times -1": lambda: _with_value(honest, 0, n_square - honest.values[0]),
        "value squared": lambda: _with_value(honest, 0, pow(honest.values[0], 2, n_square)),
        "values swapped": lambda: _altered(
            honest, values=(honest.values[1], honest.values[0], *honest.values[2:])
        ),
        "value dropped": lambda: _altered(honest, values=honest.values[:-1]),
        "another context": lambda: partial_decrypt(share, ciphertexts, context=CONTEXT + b"!"),
        "other ciphertexts": lambda: partial_decrypt(
            share, [c * 4 % n_square for c in ciphertexts], context=CONTEXT
        ),
        "another index": lambda: _altered(honest, index=honest.index % public.decryptors + 1),
        "index out of range": lambda: _altered(honest, index=public.decryptors + 1),
        "challenge changed": lambda: _altered(honest, challenge=honest.challenge ^ 1),
        "challenge too long": lambda: _altered(honest, challenge=honest.challenge + (1 << 256)),
        "response changed": lambda: _altered(honest, response=honest.response + 1),
        "response too long": lambda: _altered(honest, response=honest.response + too_long),
    }


def test_verify_names_the_decryptor_of_every_kind_of_bad_partial(keyset: ThresholdKeyset) -> None:
    public = keyset.public
    ciphertexts = _encrypt(keyset, [3, 1, 4, 1, 5], RandomnessMode.FRESH)
    honest = partial_decrypt(keyset.shares[1], ciphertexts, context=CONTEXT)
    verify_partial_decryption(public, ciphertexts, honest, context=CONTEXT)
    for name, forge in _forgeries(keyset, ciphertexts, honest).items():
        bad = forge()
        with pytest.raises(InvalidPartialDecryptionError) as caught:
            verify_partial_decryption(public, ciphertexts, bad, context=CONTEXT)
        assert caught.value.decryptor == bad.index, name
    # The honest one still verifies, and only against its own ciphertexts and context.
    verify_partial_decryption(public, ciphertexts, honest, context=CONTEXT)


def test_verify_refuses_reproved_values_times_a_square_root_of_one(
    vectors: dict[str, Any],
) -> None:
    # A decryptor may multiply its values by any square root of 1 mod n^2 and still prove them
    # (Shoup's proof squares them away, and so does the combination); the canonical form makes
    # each partial decryption unique all the same. -1 gives a value above n^2 / 2; w with
    # w ≡ 1 (mod p^2), w ≡ -1 (mod q^2) gives Jacobi symbol -1 mod n.
    keyset = _keyset_from_vectors(vectors, [_hex(a) for a in vectors["coefficients"]])
    public = keyset.public
    p, q = _hex(vectors["p"]), _hex(vectors["q"])
    n_square = public.n**2
    w = (1 + p * p * ((-2 * pow(p * p, -1, q * q)) % (q * q))) % n_square
    assert w * w % n_square == 1 and w % (p * p) == 1 and (w + 1) % (q * q) == 0
    ciphertexts = [_hex(c) for c in vectors["ciphertexts"]]
    share = keyset.shares[2]
    honest = partial_decrypt(share, ciphertexts, context=CONTEXT)
    for root in [1, n_square - 1, w, n_square - w]:
        values = list(honest.values)
        values[1] = values[1] * root % n_square
        if root in (w, n_square - w):
            values[1] = min(values[1], n_square - values[1])
        nonce = secrets.randbits(threshold._nonce_bits(public))
        challenge, response = threshold._prove(share, ciphertexts, values, CONTEXT, nonce, 1)
        reproved = PartialDecryption(
            index=3, values=tuple(values), challenge=challenge, response=response
        )
        assert combine_partial_decryptions(
            public, [reproved, *_partials(keyset, ciphertexts)[:2]]
        ) == [_hex(m) for m in vectors["plaintexts"]]
        if root == 1:
            verify_partial_decryption(public, ciphertexts, reproved, context=CONTEXT)
            continue
        with pytest.raises(InvalidPartialDecryptionError) as caught:
            verify_partial_decryption(public, ciphertexts, reproved, context=CONTEXT)
        assert caught.value.decryptor == 3


def test_verify_rejects_bad_ciphertexts_and_types(keyset: ThresholdKeyset) -> None:
    public = keyset.public
    ciphertexts = _encrypt(keyset, [3], RandomnessMode.FRESH)
    honest = partial_decrypt(keyset.shares[0], ciphertexts, context=CONTEXT)
    with pytest.raises(InvalidCiphertextError):
        verify_partial_decryption(public, [public.n], honest, context=CONTEXT)
    with pytest.raises(TypeError, match="context"):
        verify_partial_decryption(public, ciphertexts, honest, context="ctx")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="partial"):
        verify_partial_decryption(public, ciphertexts, honest.values, context=CONTEXT)  # type: ignore[arg-type]


# --- serialization ---------------------------------------------------------------------------


def _replace(data: bytes, start: int, new: bytes) -> bytes:
    return data[:start] + new + data[start + len(new) :]


def test_public_key_round_trips_and_rejects_malformed_bytes(keyset: ThresholdKeyset) -> None:
    public = keyset.public
    data = public.to_bytes()
    assert ThresholdPublicKey.from_bytes(data) == public
    assert public.fingerprint() == hashlib.sha256(data).digest()
    no_djn = _generate_threshold_keypair_unchecked_size(512, decryptors=2, threshold=2, djn=False)
    assert ThresholdPublicKey.from_bytes(no_djn.public.to_bytes()) == no_djn.public
    assert no_djn.public.fingerprint() != public.fingerprint()
    width = 128  # the width of one value mod n^2 for a 512-bit n
    base_at = 4 + 1 + 2 + 64 + 2 + 2 + 1
    malformed = {
        "wrong magic": _replace(data, 0, b"XXXX"),
        "format version 2": _replace(data, 4, b"\x02"),
        "truncated": data[:-1],
        "trailing": data + b"\x00",
        "out of bounds": _replace(data, 5, b"\x00\x00"),
        "leading zero": data[:5] + b"\x00\x41\x00" + data[7:],
        "0 decryptors": _replace(data, 71, b"\x00\x00"),
        "65 decryptors": _replace(data, 71, b"\x00\x41"),
        "threshold = 6": _replace(data, 73, b"\x00\x06"),
        "threshold = 0": _replace(data, 73, b"\x00\x00"),
        "neither 0 nor 1": _replace(data, 75, b"\x02"),
        "verification_base is not a unit": _replace(data, base_at, bytes(width)),
        "verification key 2 is not a unit": _replace(
            data, base_at + 2 * width, public.n.to_bytes(width, "big")
        ),
        "DJN base": _replace(data, len(data) - width, bytes(width)),
    }
    for message, bad in malformed.items():
        with pytest.raises(ParameterError, match=message):
            ThresholdPublicKey.from_bytes(bad)
    with pytest.raises(TypeError):
        ThresholdPublicKey.from_bytes(data.hex())  # type: ignore[arg-type]


def test_key_share_round_trips_checks_its_verification_key_and_hides_in_repr(
    keyset: ThresholdKeyset,
) -> None:
    share = keyset.shares[3]
    data = share.to_bytes()
    assert DecryptionKeyShare.from_bytes(data) == share
    assert str(share.share) not in repr(share) and hex(share.share) not in repr(share)
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(ParameterError, match="does not match its verification key"):
        DecryptionKeyShare.from_bytes(tampered)
    index_at = len(data) - 128 - 2
    with pytest.raises(ParameterError, match="share index 6"):
        DecryptionKeyShare.from_bytes(_replace(data, index_at, b"\x00\x06"))
    with pytest.raises(ParameterError, match="wrong magic"):
        DecryptionKeyShare.from_bytes(keyset.public.to_bytes())
    with pytest.raises(ParameterError, match="truncated"):
        DecryptionKeyShare.from_bytes(data[:-3])
    with pytest.raises(ParameterError, match="trailing"):
        DecryptionKeyShare.from_bytes(data + b"\x01")


def test_partial_decryption_round_trips_and_rejects_malformed_bytes(
    keyset: ThresholdKeyset,
) -> None:
    public = keyset.public
    ciphertexts = _encrypt(keyset, [9, 8, 7], RandomnessMode.FRESH)
    honest = partial_decrypt(keyset.shares[4], ciphertexts, context=CONTEXT)
    data = honest.to_bytes(public)
    assert PartialDecryption.from_bytes(public, data) == honest
    empty = partial_decrypt(keyset.shares[4], [], context=CONTEXT)
    assert PartialDecryption.from_bytes(public, empty.to_bytes(public)) == empty
    verify_partial_decryption(public, [], empty, context=CONTEXT)
    for bad, message in [
        (b"", "truncated"),
        (_replace(data, 0, b"STPK"), "wrong magic"),
        (_replace(data, 4, b"\x09"), "version 9"),
        (_replace(data, 5, b"\x00\x00"), "index 0"),
        (_replace(data, 5, b"\x00\x06"), "index 6"),
    ]:
        with pytest.raises(ParameterError, match=message):
            PartialDecryption.from_bytes(public, bad)
    for bad in [data[:-1], data + bytes(128), _replace(data, 7, b"\x00\x00\x00\x04")]:
        with pytest.raises(InvalidPartialDecryptionError, match="bytes after the header") as caught:
            PartialDecryption.from_bytes(public, bad)
        assert caught.value.decryptor == 5
    with pytest.raises(InvalidPartialDecryptionError, match=r"outside \(0, n\^2\)"):
        PartialDecryption.from_bytes(public, data[:-128] + b"\xff" * 128)
    bigger = _generate_threshold_keypair_unchecked_size(1024, decryptors=5, threshold=3)
    foreign = partial_decrypt(bigger.shares[0], [1, 2], context=CONTEXT)
    with pytest.raises(ParameterError, match="does not fit"):
        foreign.to_bytes(public)


# --- argument checks -------------------------------------------------------------------------


def test_key_generation_rejects_bad_arguments() -> None:
    assert 1 in SUPPORTED_COMMITTEE_SIZES and 64 in SUPPORTED_COMMITTEE_SIZES
    assert 65 not in SUPPORTED_COMMITTEE_SIZES
    committees: list[tuple[dict[str, Any], str]] = [
        ({"decryptors": 3, "threshold": 4}, "threshold = 4 must lie in 1..decryptors = 1..3"),
        ({"decryptors": 3, "threshold": 0}, "threshold = 0"),
        ({"decryptors": 0, "threshold": 0}, "decryptors = 0 is not supported"),
        ({"decryptors": 65, "threshold": 2}, "decryptors = 65 is not supported"),
    ]
    for kwargs, message in committees:
        with pytest.raises(ParameterError, match=message):
            generate_threshold_keypair(2048, **kwargs)
    with pytest.raises(ParameterError, match="key size 1024 is not supported"):
        generate_threshold_keypair(1024, decryptors=3, threshold=2)
    wrong_types: list[tuple[dict[str, Any], str]] = [
        ({"bits": "2048", "decryptors": 3, "threshold": 2}, "bits"),
        ({"bits": 2048, "decryptors": 3.0, "threshold": 2}, "decryptors"),
        ({"bits": 2048, "decryptors": 3, "threshold": True}, "threshold"),
    ]
    for arguments, name in wrong_types:
        with pytest.raises(TypeError, match=f"{name} must be int"):
            generate_threshold_keypair(**arguments)
    with pytest.raises(TypeError, match="djn must be bool"):
        _generate_threshold_keypair_unchecked_size(512, decryptors=3, threshold=2, djn=1)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="even"):
        _generate_threshold_keypair_unchecked_size(255, decryptors=3, threshold=2)


def test_dealing_from_parts_checks_primes_and_randomness(vectors: dict[str, Any]) -> None:
    p, q = _hex(vectors["p"]), _hex(vectors["q"])
    unit = _hex(vectors["verification_unit"])

    def deal(**changes: Any) -> ThresholdKeyset:
        arguments: dict[str, Any] = {
            "decryptors": 5,
            "threshold": 3,
            "coefficients": [1, 2],
            "verification_unit": unit,
            "djn_x": None,
        }
        arguments.update(changes)
        return _threshold_keypair_from_parts(
            arguments.pop("p", p), arguments.pop("q", q), **arguments
        )

    not_safe = int(gmpy2.next_prime(p))
    while gmpy2.is_prime(not_safe // 2):
        not_safe = int(gmpy2.next_prime(not_safe))
    bad_parts: list[tuple[dict[str, Any], str]] = [
        ({"p": not_safe}, "p must be a safe prime"),
        ({"q": p}, "distinct"),
        ({"q": 23}, "same bit length"),
        ({"coefficients": [1]}, "threshold - 1 = 2 coefficients"),
        ({"coefficients": [1, p * q * p * q]}, r"coefficients must lie in \[0, n p'q'\)"),
        ({"verification_unit": 1}, "other than ±1"),
        ({"verification_unit": p}, "other than ±1"),
        ({"threshold": 6}, "threshold = 6"),
    ]
    for changes, message in bad_parts:
        with pytest.raises(ParameterError, match=message):
            deal(**changes)
    assert deal().public.djn is None


def test_public_key_construction_checks_its_fields(keyset: ThresholdKeyset) -> None:
    public = keyset.public
    fields: dict[str, Any] = {
        "public_key": public.public_key,
        "decryptors": public.decryptors,
        "threshold": public.threshold,
        "delta": public.delta,
        "verification_base": public.verification_base,
        "verification_keys": public.verification_keys,
        "djn": public.djn,
    }
    assert ThresholdPublicKey(**fields) == public
    other = _generate_threshold_keypair_unchecked_size(512, decryptors=5, threshold=3)
    bad_fields: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"delta": 119}, ParameterError, "delta must be decryptors!"),
        ({"verification_keys": public.verification_keys[:4]}, ParameterError, "one verification"),
        ({"djn": other.public.djn}, ParameterError, "different public key"),
        ({"public_key": public.n}, TypeError, "public_key"),
        ({"verification_base": 1}, ParameterError, "verification_base"),
    ]
    for changes, error, message in bad_fields:
        with pytest.raises(error, match=message):
            ThresholdPublicKey(**{**fields, **changes})
    assert public.verification_key(5) == public.verification_keys[4]
    with pytest.raises(ParameterError, match="decryptor index 0"):
        public.verification_key(0)


def test_partial_decrypt_and_combine_reject_bad_arguments(keyset: ThresholdKeyset) -> None:
    public = keyset.public
    ciphertexts = _encrypt(keyset, [1, 2], RandomnessMode.FRESH)
    share = keyset.shares[0]
    with pytest.raises(InvalidCiphertextError):
        partial_decrypt(share, [0], context=CONTEXT)
    with pytest.raises(TypeError, match="context must be bytes"):
        partial_decrypt(share, ciphertexts, context="round 3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="share must be DecryptionKeyShare"):
        partial_decrypt(share.share, ciphertexts, context=CONTEXT)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="processes"):
        partial_decrypt(share, ciphertexts, context=CONTEXT, processes=0)
    with pytest.raises(ParameterError, match="nonce"):
        _partial_decrypt_with_nonce(share, ciphertexts, context=CONTEXT, nonce=-1)
    partials = _partials(keyset, ciphertexts)
    with pytest.raises(TypeError, match="partials must be PartialDecryption"):
        combine_partial_decryptions(public, [*partials[:2], partials[2].values])  # type: ignore[list-item]
    short = _altered(partials[2], values=partials[2].values[:1])
    with pytest.raises(ReconstructionError, match="different lengths"):
        combine_partial_decryptions(public, [*partials[:2], short])
    with pytest.raises(ReconstructionError, match=r"not in 1\.\.5"):
        combine_partial_decryptions(public, [*partials[:2], _altered(partials[2], index=9)])
    with pytest.raises(ReconstructionError, match="not a unit"):
        # Decryptor 2's exponent is negative in S = {1, 2, 3}: its value must be inverted.
        combine_partial_decryptions(
            public, [partials[0], _with_value(partials[1], 0, public.n), partials[2]]
        )
    with pytest.raises(TypeError, match="index must be int"):
        _altered(partials[0], index="1")
    with pytest.raises(ParameterError, match="non-negative"):
        _altered(partials[0], response=-1)
    with pytest.raises(ParameterError, match="share index 0"):
        DecryptionKeyShare(index=0, share=1, public=public)


# --- safe primes -----------------------------------------------------------------------------


def test_sieve_keeps_exactly_the_candidates_without_small_factors() -> None:
    start = secrets.randbits(200) | 1
    alive = _sieve_window(start)
    small = math.prod(threshold._SMALL_ODD_PRIMES)
    for offset in range(0, len(alive), 7):
        half_prime = start + 2 * offset
        clean = math.gcd(half_prime * (2 * half_prime + 1), small) == 1
        assert alive[offset] == clean, offset


def test_safe_prime_search_finds_safe_primes_of_the_exact_size() -> None:
    found = 0
    while found < 3:
        start = secrets.randbits(159) | (3 << 157) | 1
        prime = _safe_prime_in_window(start, 160)
        if prime is None:
            continue
        assert prime.bit_length() == 160 and prime >> 158 == 3 and prime % 4 == 3
        assert gmpy2.is_prime(prime, 64) and gmpy2.is_prime((prime - 1) // 2, 64)
        assert (prime - 1) // 2 >= start
        found += 1


# --- the real key size -----------------------------------------------------------------------


@pytest.mark.slow
def test_2048_bit_threshold_key_round_trip() -> None:
    keyset = generate_threshold_keypair(2048, decryptors=5, threshold=3)
    public = keyset.public
    assert public.n.bit_length() == 2048
    plaintexts = [0, 12345, public.n - 1]
    ciphertexts = _encrypt(keyset, plaintexts, RandomnessMode.DJN)
    partials = [partial_decrypt(s, ciphertexts, context=CONTEXT) for s in keyset.shares[1:4]]
    for item in partials:
        verify_partial_decryption(public, ciphertexts, item, context=CONTEXT)
    assert combine_partial_decryptions(public, partials) == plaintexts
    assert len(partials[0].to_bytes(public)) == 4 + 1 + 2 + 4 + 32 + 577 + 3 * 512
