"""A versioned, bounds-checked binary codec for :mod:`protocols.messages` (no pickle, ever).

Layout: a 38-byte header ``b"SAGG" | version u8 | type u8 | session 16B | round u64 | sender u32 |
recipient u32`` followed by a type-specific body; all integers big-endian, vectors little-endian
words truncated to ``ceil(modulus_bits / 8)`` bytes each, so an upload costs exactly that many
bytes per value. The decoder checks every length against the bytes that remain *before*
allocating, rejects trailing bytes and ring values out of range, and raises only
:class:`~secagg.errors.WireFormatError` (a :class:`~secagg.errors.SecAggError`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from protocols.messages import (
    COMMITMENT_BYTES,
    Abort,
    ConsistencyRequest,
    ConsistencySignature,
    DecryptedAggregate,
    DecryptionRequest,
    DecryptionShare,
    EncryptedInput,
    EncryptedShares,
    ForwardedShares,
    Header,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    Message,
    PaillierSetup,
    RosterEntry,
    RoundSetup,
    SealedShares,
    ShareDigest,
    ShareEntry,
    SignatureEntry,
    UnmaskRequest,
    UnmaskResponse,
    header,
)
from secagg.encoding import ring_dtype
from secagg.errors import SecAggError, WireFormatError
from secagg.hazmat.kex import PUBLIC_KEY_BYTES
from secagg.hazmat.shamir import SHARE_BYTES
from secagg.hazmat.sign import SIGNATURE_BYTES

__all__ = [
    "MAX_ENTRIES",
    "MAX_VECTOR_LENGTH",
    "VERSION",
    "decode",
    "encode",
    "encoded_size",
    "packed_size",
]

MAGIC: Final = b"SAGG"
VERSION: Final = 3
#: Bounds on counts read from the wire; a decoder never allocates more than the bytes present.
MAX_ENTRIES: Final = 1 << 20
MAX_VECTOR_LENGTH: Final = 1 << 31
_HEADER: Final = struct.Struct(">4sBB16sQII")

_TYPE_CODES: Final[dict[type, int]] = {
    RoundSetup: 1,
    KeyAdvertisement: 2,
    KeyRoster: 3,
    EncryptedShares: 4,
    ForwardedShares: 5,
    MaskedInput: 6,
    UnmaskRequest: 7,
    UnmaskResponse: 8,
    Abort: 9,
    PaillierSetup: 10,
    EncryptedInput: 11,
    DecryptionRequest: 12,
    DecryptedAggregate: 13,
    ConsistencyRequest: 14,
    ConsistencySignature: 15,
    DecryptionShare: 16,
}


def packed_size(length: int, modulus_bits: int) -> int:
    """Bytes a vector of ``length`` ring values occupies on the wire."""
    return length * ((modulus_bits + 7) // 8)


def encoded_size(message: Message) -> int:
    """Bytes :func:`encode` would produce, without copying a large vector to find out."""
    if isinstance(message, MaskedInput):
        vector_bytes = packed_size(message.vector.shape[0], message.modulus_bits)
        return _HEADER.size + 9 + vector_bytes + 4 * len(message.rejected)
    return len(encode(message))


def _pack_vector(vector: npt.NDArray[np.unsignedinteger], modulus_bits: int) -> bytes:
    width = (modulus_bits + 7) // 8
    little = np.ascontiguousarray(vector, dtype=vector.dtype.newbyteorder("<"))
    if width == little.dtype.itemsize:
        return little.tobytes()
    return little.view(np.uint8).reshape(-1, little.dtype.itemsize)[:, :width].tobytes()


def _unpack_vector(data: bytes, length: int, modulus_bits: int) -> npt.NDArray[np.unsignedinteger]:
    dtype = ring_dtype(modulus_bits)
    width = (modulus_bits + 7) // 8
    raw = np.frombuffer(data, dtype=np.uint8)
    if width == dtype.itemsize:
        vector = raw.view(dtype.newbyteorder("<")).astype(dtype)
    else:
        words = np.zeros((length, dtype.itemsize), dtype=np.uint8)
        words[:, :width] = raw.reshape(length, width)
        vector = words.view(dtype.newbyteorder("<")).reshape(length).astype(dtype)
    if modulus_bits < 8 * dtype.itemsize and length and int(vector.max()) >> modulus_bits:
        raise WireFormatError(f"a vector value lies outside Z_2^{modulus_bits}")
    return vector


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def fmt(self, fmt: str, *values: int) -> None:
        self.parts.append(struct.pack(">" + fmt, *values))

    def raw(self, data: bytes) -> None:
        self.parts.append(data)

    def ids(self, ids: tuple[int, ...]) -> None:
        self.fmt("I", len(ids))
        self.raw(struct.pack(f">{len(ids)}I", *ids))

    def signature(self, signature: bytes) -> None:
        """An optional signature: a presence byte, then 64 bytes if present."""
        self.fmt("B", len(signature) // SIGNATURE_BYTES)
        self.raw(signature)


class _Reader:
    """Reads from a bytes buffer, refusing to read past its end."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.offset = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.offset + count > len(self.data):
            raise WireFormatError(
                f"message truncated: needs {count} bytes at offset {self.offset}, "
                f"has {len(self.data) - self.offset}"
            )
        chunk = bytes(self.data[self.offset : self.offset + count])
        self.offset += count
        return chunk

    def fmt(self, fmt: str) -> tuple[int, ...]:
        spec = struct.Struct(">" + fmt)
        return spec.unpack(self.take(spec.size))

    def u8(self) -> int:
        return self.fmt("B")[0]

    def u32(self) -> int:
        return self.fmt("I")[0]

    def count(self, item_bytes: int) -> int:
        count = self.u32()
        if count > MAX_ENTRIES or count * item_bytes > len(self.data) - self.offset:
            raise WireFormatError(f"entry count {count} exceeds the message")
        return count

    def ids(self) -> tuple[int, ...]:
        count = self.count(4)
        return struct.unpack(f">{count}I", self.take(4 * count))

    def signature(self) -> bytes:
        present = self.u8()
        if present > 1:
            raise WireFormatError(f"signature flag must be 0 or 1, got {present}")
        return self.take(SIGNATURE_BYTES * present)

    def done(self) -> None:
        if self.offset != len(self.data):
            raise WireFormatError(f"{len(self.data) - self.offset} trailing bytes after message")


def _encode_body(message: Message, w: _Writer) -> None:
    if isinstance(message, RoundSetup):
        w.fmt("IIB", message.threshold, message.vector_length, message.modulus_bits)
        w.ids(message.neighbours)
    elif isinstance(message, KeyAdvertisement):
        w.raw(message.mask_public_key + message.share_public_key + message.seed_commitment)
        w.signature(message.signature)
    elif isinstance(message, KeyRoster):
        w.fmt("I", len(message.entries))
        for entry in message.entries:
            w.fmt("I", entry.client_id)
            w.raw(entry.mask_public_key + entry.share_public_key + entry.seed_commitment)
            w.signature(entry.signature)
    elif isinstance(message, EncryptedShares | ForwardedShares):
        _encode_shares(message, w)
    elif isinstance(message, MaskedInput):
        w.fmt("BI", message.modulus_bits, message.vector.shape[0])
        w.raw(_pack_vector(message.vector, message.modulus_bits))
        w.ids(message.rejected)
    elif isinstance(message, ConsistencyRequest):
        w.ids(message.survivors)
    elif isinstance(message, ConsistencySignature):
        w.raw(message.signature)
    elif isinstance(message, UnmaskRequest):
        w.ids(message.survivors)
        w.ids(message.dropped)
        w.fmt("I", len(message.signatures))
        for signed in message.signatures:
            w.fmt("I", signed.signer)
            w.raw(signed.signature)
    elif isinstance(message, UnmaskResponse):
        for entries in (message.self_mask_shares, message.mask_key_shares):
            w.fmt("I", len(entries))
            for share in entries:
                w.fmt("I", share.owner)
                w.raw(share.value.to_bytes(SHARE_BYTES, "big"))
    elif isinstance(message, Abort):
        reason = message.reason.encode("utf-8")
        w.fmt("H", len(reason))
        w.raw(reason)
    elif isinstance(
        message,
        PaillierSetup | EncryptedInput | DecryptionRequest | DecryptionShare | DecryptedAggregate,
    ):
        _encode_paillier(message, w)


def _encode_paillier(message: Message, w: _Writer) -> None:
    """The bodies of the Paillier messages (type codes 10 to 13 and 16)."""
    if isinstance(message, PaillierSetup):
        modulus = message.public_key_n.to_bytes((message.public_key_n.bit_length() + 7) // 8, "big")
        w.fmt("H", len(modulus))
        w.raw(modulus)
        w.fmt("IBI", message.vector_length, message.value_bits, message.max_clients)
    elif isinstance(message, EncryptedInput):
        w.fmt("HI", message.ciphertext_bytes, len(message.ciphertexts))
        w.raw(message.ciphertexts)
        w.raw(message.signature)
    elif isinstance(message, DecryptionRequest):
        w.fmt("II", message.vector_length, len(message.uploads))
        for upload in message.uploads:
            nested = encode(upload)
            w.fmt("I", len(nested))
            w.raw(nested)
    elif isinstance(message, DecryptionShare):
        w.fmt("HI", message.index, len(message.partial))
        w.raw(message.partial)
    elif isinstance(message, DecryptedAggregate):
        w.fmt("II", message.contributors, message.vector.shape[0])
        w.raw(message.vector.astype("<u8", copy=False).tobytes())


def _encode_shares(message: EncryptedShares | ForwardedShares, w: _Writer) -> None:
    w.fmt("I", len(message.bundles))
    for bundle in message.bundles:
        w.fmt("IH", bundle.peer, len(bundle.ciphertext))
        w.raw(bundle.ciphertext)
    if isinstance(message, EncryptedShares):
        w.fmt("I", len(message.digests))
        for digest in message.digests:
            w.fmt("I", digest.holder)
            w.raw(digest.seed_share + digest.key_share)


def encode(message: Message) -> bytes:
    """Serialise ``message`` to bytes."""
    code = _TYPE_CODES.get(type(message))
    if code is None:
        raise TypeError(f"cannot encode {type(message).__name__}: not a protocol message")
    w = _Writer()
    w.raw(
        _HEADER.pack(
            MAGIC,
            VERSION,
            code,
            message.session_id,
            message.round_id,
            message.sender,
            message.recipient,
        )
    )
    _encode_body(message, w)
    return b"".join(w.parts)


def _share_entries(r: _Reader) -> tuple[ShareEntry, ...]:
    count = r.count(4 + SHARE_BYTES)
    return tuple(
        ShareEntry(owner=r.u32(), value=int.from_bytes(r.take(SHARE_BYTES), "big"))
        for _ in range(count)
    )


def _bundles(r: _Reader) -> tuple[SealedShares, ...]:
    count = r.count(6)
    bundles = []
    for _ in range(count):
        peer, size = r.fmt("IH")
        bundles.append(SealedShares(peer=peer, ciphertext=r.take(size)))
    return tuple(bundles)


def _decode_round_setup(r: _Reader, header: Header) -> Message:
    threshold, vector_length, modulus_bits = r.fmt("IIB")
    return RoundSetup(
        **header,
        threshold=threshold,
        vector_length=vector_length,
        modulus_bits=modulus_bits,
        neighbours=r.ids(),
    )


def _decode_key_advertisement(r: _Reader, header: Header) -> Message:
    return KeyAdvertisement(
        **header,
        mask_public_key=r.take(PUBLIC_KEY_BYTES),
        share_public_key=r.take(PUBLIC_KEY_BYTES),
        seed_commitment=r.take(COMMITMENT_BYTES),
        signature=r.signature(),
    )


def _decode_key_roster(r: _Reader, header: Header) -> Message:
    count = r.count(5 + 2 * PUBLIC_KEY_BYTES + COMMITMENT_BYTES)
    entries = tuple(
        RosterEntry(
            client_id=r.u32(),
            mask_public_key=r.take(PUBLIC_KEY_BYTES),
            share_public_key=r.take(PUBLIC_KEY_BYTES),
            seed_commitment=r.take(COMMITMENT_BYTES),
            signature=r.signature(),
        )
        for _ in range(count)
    )
    return KeyRoster(**header, entries=entries)


def _decode_encrypted_shares(r: _Reader, header: Header) -> Message:
    bundles = _bundles(r)
    count = r.count(4 + 2 * COMMITMENT_BYTES)
    digests = tuple(
        ShareDigest(
            holder=r.u32(),
            seed_share=r.take(COMMITMENT_BYTES),
            key_share=r.take(COMMITMENT_BYTES),
        )
        for _ in range(count)
    )
    return EncryptedShares(**header, bundles=bundles, digests=digests)


def _decode_forwarded_shares(r: _Reader, header: Header) -> Message:
    return ForwardedShares(**header, bundles=_bundles(r))


def _decode_masked_input(r: _Reader, header: Header) -> Message:
    modulus_bits, length = r.fmt("BI")
    if not 1 <= modulus_bits <= 64:
        raise WireFormatError(f"modulus_bits {modulus_bits} is outside [1, 64]")
    if length > MAX_VECTOR_LENGTH:
        raise WireFormatError(f"vector length {length} exceeds {MAX_VECTOR_LENGTH}")
    data = r.take(packed_size(length, modulus_bits))
    vector = _unpack_vector(data, length, modulus_bits)
    return MaskedInput(**header, modulus_bits=modulus_bits, vector=vector, rejected=r.ids())


def _decode_consistency_request(r: _Reader, header: Header) -> Message:
    return ConsistencyRequest(**header, survivors=r.ids())


def _decode_consistency_signature(r: _Reader, header: Header) -> Message:
    return ConsistencySignature(**header, signature=r.take(SIGNATURE_BYTES))


def _decode_unmask_request(r: _Reader, header: Header) -> Message:
    survivors = r.ids()
    dropped = r.ids()
    count = r.count(4 + SIGNATURE_BYTES)
    signatures = tuple(
        SignatureEntry(signer=r.u32(), signature=r.take(SIGNATURE_BYTES)) for _ in range(count)
    )
    return UnmaskRequest(**header, survivors=survivors, dropped=dropped, signatures=signatures)


def _decode_unmask_response(r: _Reader, header: Header) -> Message:
    self_mask_shares = _share_entries(r)
    return UnmaskResponse(
        **header,
        self_mask_shares=self_mask_shares,
        mask_key_shares=_share_entries(r),
    )


def _decode_abort(r: _Reader, header: Header) -> Message:
    (size,) = r.fmt("H")
    try:
        reason = r.take(size).decode("utf-8")
    except UnicodeDecodeError:
        raise WireFormatError("abort reason is not UTF-8") from None
    return Abort(**header, reason=reason)


def _decode_paillier_setup(r: _Reader, header: Header) -> Message:
    (size,) = r.fmt("H")
    raw_modulus = r.take(size)
    if not raw_modulus or raw_modulus[0] == 0:
        raise WireFormatError("the public modulus must be encoded without leading zero bytes")
    modulus = int.from_bytes(raw_modulus, "big")
    vector_length, value_bits, max_clients = r.fmt("IBI")
    return PaillierSetup(
        **header,
        public_key_n=modulus,
        vector_length=vector_length,
        value_bits=value_bits,
        max_clients=max_clients,
    )


def _ciphertext_block(r: _Reader) -> tuple[int, bytes]:
    width, size = r.fmt("HI")
    return width, r.take(size)


def _decode_encrypted_input(r: _Reader, header: Header) -> Message:
    width, data = _ciphertext_block(r)
    signature = r.take(SIGNATURE_BYTES)
    return EncryptedInput(**header, ciphertext_bytes=width, ciphertexts=data, signature=signature)


def _decode_decryption_request(r: _Reader, header: Header) -> Message:
    (vector_length,) = r.fmt("I")
    count = r.count(4)
    uploads = []
    for _ in range(count):
        data = r.take(r.u32())
        # The type code is checked before decoding, so requests can never nest requests.
        if len(data) < _HEADER.size or data[5] != _TYPE_CODES[EncryptedInput]:
            raise WireFormatError("a decryption request carries only encrypted inputs")
        nested = decode(data)
        assert isinstance(nested, EncryptedInput)  # by its type code
        uploads.append(nested)
    return DecryptionRequest(**header, vector_length=vector_length, uploads=tuple(uploads))


def _decode_decryption_share(r: _Reader, header: Header) -> Message:
    index, size = r.fmt("HI")
    return DecryptionShare(**header, index=index, partial=r.take(size))


def _decode_decrypted_aggregate(r: _Reader, header: Header) -> Message:
    contributors, length = r.fmt("II")
    if length > MAX_VECTOR_LENGTH:
        raise WireFormatError(f"vector length {length} exceeds {MAX_VECTOR_LENGTH}")
    vector = np.frombuffer(r.take(8 * length), dtype="<u8").astype(np.uint64)
    return DecryptedAggregate(**header, contributors=contributors, vector=vector)


_DECODERS: Final[dict[int, Callable[[_Reader, Header], Message]]] = {
    1: _decode_round_setup,
    2: _decode_key_advertisement,
    3: _decode_key_roster,
    4: _decode_encrypted_shares,
    5: _decode_forwarded_shares,
    6: _decode_masked_input,
    7: _decode_unmask_request,
    8: _decode_unmask_response,
    9: _decode_abort,
    10: _decode_paillier_setup,
    11: _decode_encrypted_input,
    12: _decode_decryption_request,
    13: _decode_decrypted_aggregate,
    14: _decode_consistency_request,
    15: _decode_consistency_signature,
    16: _decode_decryption_share,
}


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse one message; any defect raises :class:`WireFormatError` and nothing else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    reader = _Reader(bytes(data))
    magic, version, code, session_id, round_id, sender, recipient = _HEADER.unpack(
        reader.take(_HEADER.size)
    )
    if magic != MAGIC:
        raise WireFormatError("not a secagg message (bad magic)")
    if version != VERSION:
        raise WireFormatError(f"wire version {version} is not supported (this is {VERSION})")
    decoder = _DECODERS.get(code)
    if decoder is None:
        raise WireFormatError(f"unknown message type {code}")
    try:
        message = decoder(reader, header(session_id, round_id, sender, recipient))
    except WireFormatError:
        raise
    except (SecAggError, ValueError, OverflowError, struct.error) as exc:
        raise WireFormatError(f"malformed {decoder.__name__[8:]}: {exc}") from None
    reader.done()
    return message
