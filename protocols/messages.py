"""The messages of the masking protocol: one frozen dataclass per message, nothing else.

Every message carries the session id, the round id (one protocol instance, e.g. one training
round), its sender and its recipient, so a state machine can reject anything from another
session or round, or meant for someone else. Fields are checked in ``__post_init__`` so a
malformed message cannot even be built (wire decoding builds messages through the same path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias, TypedDict

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError, WireFormatError
from secagg.hazmat.kex import PUBLIC_KEY_BYTES, SESSION_ID_BYTES
from secagg.hazmat.shamir import FIELD_PRIME
from secagg.hazmat.sign import SIGNATURE_BYTES

__all__ = [
    "COMMITMENT_BYTES",
    "KEY_HOLDER_ID",
    "MAX_DECRYPTORS",
    "MAX_PARTY_ID",
    "SERVER_ID",
    "Abort",
    "ConsistencyRequest",
    "ConsistencySignature",
    "DecryptedAggregate",
    "DecryptionRequest",
    "DecryptionShare",
    "EncryptedInput",
    "EncryptedShares",
    "ForwardedShares",
    "Header",
    "KeyAdvertisement",
    "KeyRoster",
    "MaskedInput",
    "Message",
    "PaillierSetup",
    "RosterEntry",
    "RoundSetup",
    "SealedShares",
    "ShareDigest",
    "ShareEntry",
    "SignatureEntry",
    "UnmaskRequest",
    "UnmaskResponse",
    "decryptor_id",
    "decryptor_index",
    "header",
]

#: The server's id on the wire; client ids are 0 .. MAX_PARTY_ID.
SERVER_ID: Final = 2**32 - 1
#: The Paillier key holder's id (a party apart from the server).
KEY_HOLDER_ID: Final = 2**32 - 2
#: The most members a Paillier decryption committee may have; member i is
#: :func:`decryptor_id` (i), just below the key holder's id.
MAX_DECRYPTORS: Final = 64
MAX_PARTY_ID: Final = KEY_HOLDER_ID - MAX_DECRYPTORS - 1
#: Largest Paillier ciphertext accepted on the wire (a 4096-bit modulus squared).
MAX_CIPHERTEXT_BYTES: Final = 1024
MAX_ROUND_ID: Final = 2**64 - 1
MAX_REASON_CHARS: Final = 1024


def decryptor_id(index: int) -> int:
    """The party id of member ``index`` (1 .. :data:`MAX_DECRYPTORS`) of a decryption committee.

    Raises:
        ParameterError: ``index`` is outside 1 .. MAX_DECRYPTORS.
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= MAX_DECRYPTORS:
        raise ParameterError(f"a decryptor index lies in 1 .. {MAX_DECRYPTORS}, not {index!r}")
    return KEY_HOLDER_ID - index


def decryptor_index(party: int) -> int | None:
    """The committee index of party id ``party``, or None if it is not a committee member."""
    index = KEY_HOLDER_ID - party
    return index if 1 <= index <= MAX_DECRYPTORS else None


#: Bytes of a SHA-256 commitment or share digest.
COMMITMENT_BYTES: Final = 32


def _fail(message: str) -> WireFormatError:
    return WireFormatError(message)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(f"{name} must be an int in [{low}, {high}], got {value!r}")


def _check_party(name: str, value: object, *, server_ok: bool = True) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(f"{name} must be an int, got {type(value).__name__}")
    upper = SERVER_ID if server_ok else MAX_PARTY_ID
    if not 0 <= value <= upper:
        raise _fail(f"{name}={value} is not a valid party id")


def _check_ids(name: str, ids: object) -> None:
    if not isinstance(ids, tuple):
        raise _fail(f"{name} must be a tuple of client ids")
    for item in ids:
        _check_party(name, item, server_ok=False)
    if len(set(ids)) != len(ids):
        raise _fail(f"{name} contains duplicate ids")


def _check_key(name: str, value: object) -> None:
    _check_bytes(name, value, PUBLIC_KEY_BYTES)


def _check_bytes(name: str, value: object, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise _fail(f"{name} must be {size} bytes")


def _check_signature(value: object) -> None:
    """A signature field: empty (semi-honest rounds carry none) or one Ed25519 signature."""
    if not isinstance(value, bytes) or len(value) not in (0, SIGNATURE_BYTES):
        raise _fail(f"signature must be empty or {SIGNATURE_BYTES} bytes")


def _check_tuple_of(name: str, items: object, kind: type) -> None:
    if not isinstance(items, tuple) or not all(isinstance(item, kind) for item in items):
        raise _fail(f"{name} must be a tuple of {kind.__name__}")


class Header(TypedDict):
    """The fields every message carries, as keyword arguments: ``Message(**header, ...)``."""

    session_id: bytes
    round_id: int
    sender: int
    recipient: int


def header(session_id: bytes, round_id: int, sender: int, recipient: int) -> Header:
    """The header of a message from ``sender`` to ``recipient`` in (session, round)."""
    return Header(session_id=session_id, round_id=round_id, sender=sender, recipient=recipient)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Header:
    """Fields every message carries."""

    session_id: bytes
    round_id: int
    sender: int
    recipient: int

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_BYTES:
            raise _fail(f"session_id must be {SESSION_ID_BYTES} bytes")
        if not isinstance(self.round_id, int) or not 0 <= self.round_id <= MAX_ROUND_ID:
            raise _fail(f"round_id must be an int in [0, 2^64), got {self.round_id!r}")
        _check_party("sender", self.sender)
        _check_party("recipient", self.recipient)
        if (self.sender == SERVER_ID) == (self.recipient == SERVER_ID):
            raise _fail("exactly one of sender and recipient must be the server")


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundSetup(_Header):
    """Server -> client: the parameters of this round and the client's neighbours."""

    threshold: int
    vector_length: int
    modulus_bits: int
    neighbours: tuple[int, ...]

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_int("threshold", self.threshold, 1, 2**32 - 1)
        _check_int("vector_length", self.vector_length, 1, 2**32 - 1)
        if not isinstance(self.modulus_bits, int) or not 1 <= self.modulus_bits <= 64:
            raise _fail(f"modulus_bits must be in [1, 64], got {self.modulus_bits!r}")
        _check_ids("neighbours", self.neighbours)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyAdvertisement(_Header):
    """Client -> server, round 0: two fresh X25519 public keys and the self-mask commitment.

    ``seed_commitment`` binds the client to its self-mask seed (the mask public key already
    binds it to its mask key), so a reconstruction from bad shares is caught. ``signature`` is
    the client's identity signature over all three (active model; empty when semi-honest).
    """

    mask_public_key: bytes
    share_public_key: bytes
    seed_commitment: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_key("mask_public_key", self.mask_public_key)
        _check_key("share_public_key", self.share_public_key)
        _check_bytes("seed_commitment", self.seed_commitment, COMMITMENT_BYTES)
        _check_signature(self.signature)


@dataclass(frozen=True, slots=True, kw_only=True)
class RosterEntry:
    """One client's advertisement as the server relays it (signature included, unaltered)."""

    client_id: int
    mask_public_key: bytes
    share_public_key: bytes
    seed_commitment: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_party("client_id", self.client_id, server_ok=False)
        _check_key("mask_public_key", self.mask_public_key)
        _check_key("share_public_key", self.share_public_key)
        _check_bytes("seed_commitment", self.seed_commitment, COMMITMENT_BYTES)
        _check_signature(self.signature)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRoster(_Header):
    """Server -> client, end of round 0: the keys of the client's live neighbourhood and its own."""

    entries: tuple[RosterEntry, ...]

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        if not isinstance(self.entries, tuple) or not all(
            isinstance(e, RosterEntry) for e in self.entries
        ):
            raise _fail("entries must be a tuple of RosterEntry")


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedShares:
    """An AES-GCM sealed share bundle and the peer at the other end (recipient or sender)."""

    peer: int
    ciphertext: bytes

    def __post_init__(self) -> None:
        _check_party("peer", self.peer, server_ok=False)
        if not isinstance(self.ciphertext, bytes) or not 0 < len(self.ciphertext) <= 1024:
            raise _fail("a sealed share bundle must be 1 to 1024 bytes")


def _check_bundles(bundles: object) -> None:
    _check_tuple_of("bundles", bundles, SealedShares)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareDigest:
    """The digests of the two shares one holder gets (:func:`protocols.masking.keys.share_digest`).

    The dealer sends them to the server with its bundles, so the server can tell a holder's
    wrong share from a right one at unmasking, and exclude the holder instead of aborting.
    """

    holder: int
    seed_share: bytes
    key_share: bytes

    def __post_init__(self) -> None:
        _check_party("holder", self.holder, server_ok=False)
        _check_bytes("seed_share", self.seed_share, COMMITMENT_BYTES)
        _check_bytes("key_share", self.key_share, COMMITMENT_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedShares(_Header):
    """Client -> server, round 1: one sealed bundle per neighbour (``peer`` = recipient), and
    the digests of every holder's shares, its own included."""

    bundles: tuple[SealedShares, ...]
    digests: tuple[ShareDigest, ...] = ()

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_bundles(self.bundles)
        _check_tuple_of("digests", self.digests, ShareDigest)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardedShares(_Header):
    """Server -> client, end of round 1: bundles addressed to the client (``peer`` = sender)."""

    bundles: tuple[SealedShares, ...]

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_bundles(self.bundles)


def _vector_message_eq(
    a: MaskedInput | DecryptedAggregate,
    b: MaskedInput | DecryptedAggregate,
    fields: tuple[str, ...],
) -> bool:
    """Field-wise equality for messages carrying a numpy ``vector``."""
    names = ("session_id", "round_id", "sender", "recipient", *fields)
    va, vb = a.vector, b.vector
    return (
        all(getattr(a, n) == getattr(b, n) for n in names)
        and va.dtype == vb.dtype
        and bool(np.array_equal(va, vb))
    )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MaskedInput(_Header):
    """Client -> server, round 2: the masked, quantized input in Z_{2^modulus_bits}, and the
    peers whose share bundles failed to open (``rejected``, usually empty).

    The pair mask needs no bundle, so the client still masks with a rejected peer; it only
    holds none of that peer's shares, and the server asks it for none. A garbage bundle thus
    costs its dealer one share holder, and the round goes on.
    """

    modulus_bits: int
    vector: npt.NDArray[np.unsignedinteger]
    rejected: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_ids("rejected", self.rejected)
        if not isinstance(self.modulus_bits, int) or not 1 <= self.modulus_bits <= 64:
            raise _fail(f"modulus_bits must be in [1, 64], got {self.modulus_bits!r}")
        vector = self.vector
        if not isinstance(vector, np.ndarray) or vector.ndim != 1:
            raise _fail("vector must be a 1-D numpy array")
        expected = np.dtype(np.uint32) if self.modulus_bits <= 32 else np.dtype(np.uint64)
        if vector.dtype != expected:
            raise _fail(f"a {self.modulus_bits}-bit ring travels as {expected}, not {vector.dtype}")
        if (
            self.modulus_bits < 8 * expected.itemsize
            and vector.size
            and int(vector.max()) >> self.modulus_bits
        ):
            raise _fail(f"a vector value lies outside Z_2^{self.modulus_bits}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskedInput):
            return NotImplemented
        return _vector_message_eq(self, other, ("modulus_bits", "rejected"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyRequest(_Header):
    """Server -> client, round 3 (active model): the clients whose masked inputs arrived."""

    survivors: tuple[int, ...]

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_ids("survivors", self.survivors)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencySignature(_Header):
    """Client -> server, round 3: its identity signature over the survivor set it was shown."""

    signature: bytes

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_bytes("signature", self.signature, SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureEntry:
    """One client's consistency signature, as the server relays it."""

    signer: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_party("signer", self.signer, server_ok=False)
        _check_bytes("signature", self.signature, SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskRequest(_Header):
    """Server -> client, unmasking: which neighbours survived and which dropped, and (active
    model) the consistency signatures the client checks before it answers."""

    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[SignatureEntry, ...] = ()

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_ids("survivors", self.survivors)
        _check_ids("dropped", self.dropped)
        _check_tuple_of("signatures", self.signatures, SignatureEntry)
        signers = [entry.signer for entry in self.signatures]
        if len(set(signers)) != len(signers):
            raise _fail("signatures names a signer twice")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareEntry:
    """One Shamir share ``value`` of the secret owned by ``owner``."""

    owner: int
    value: int

    def __post_init__(self) -> None:
        _check_party("owner", self.owner, server_ok=False)
        if not isinstance(self.value, int) or not 0 <= self.value < FIELD_PRIME:
            raise _fail("a share value must be a field element")


def _check_share_entries(name: str, entries: object) -> None:
    if not isinstance(entries, tuple) or not all(isinstance(e, ShareEntry) for e in entries):
        raise _fail(f"{name} must be a tuple of ShareEntry")
    owners = [e.owner for e in entries]
    if len(set(owners)) != len(owners):
        raise _fail(f"{name} names an owner twice")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskResponse(_Header):
    """Client -> server, round 3: self-mask shares of survivors, mask-key shares of the dropped."""

    self_mask_shares: tuple[ShareEntry, ...]
    mask_key_shares: tuple[ShareEntry, ...]

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_share_entries("self_mask_shares", self.self_mask_shares)
        _check_share_entries("mask_key_shares", self.mask_key_shares)


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort(_Header):
    """Either direction: the sender gives up on this round; ``reason`` is for humans."""

    reason: str

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        if not isinstance(self.reason, str) or len(self.reason) > MAX_REASON_CHARS:
            raise _fail(f"reason must be a string of at most {MAX_REASON_CHARS} characters")
        try:
            self.reason.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail("reason must be encodable as UTF-8") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class PaillierSetup(_Header):
    """Server -> client: the key holder's public modulus and the packing parameters.

    Clients compare ``public_key_n`` with the key they pinned from the key holder, so a server
    cannot slip in a key of its own.
    """

    public_key_n: int
    vector_length: int
    value_bits: int
    max_clients: int

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_int("public_key_n", self.public_key_n, 3, 2 ** (4 * MAX_CIPHERTEXT_BYTES) - 1)
        _check_int("vector_length", self.vector_length, 1, 2**31)
        _check_int("value_bits", self.value_bits, 1, 63)
        _check_int("max_clients", self.max_clients, 1, 2**32 - 1)


def _check_ciphertexts(ciphertexts: object, width: object) -> None:
    _check_int("ciphertext_bytes", width, 1, MAX_CIPHERTEXT_BYTES)
    if not isinstance(ciphertexts, bytes) or not isinstance(width, int) or len(ciphertexts) % width:
        raise _fail("ciphertexts must be bytes, a whole number of fixed-width ciphertexts")


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedInput(_Header):
    """Client -> server: the packed input encrypted under the decryptors' public key.

    ``signature`` is the client's identity signature over the session, the round, its id, the
    public key's fingerprint and the digest of ``ciphertexts``
    (:func:`protocols.paillier.trust.upload_message`): a decryptor accepts an aggregate only as
    the product of such signed uploads, so a server cannot pass one client's ciphertext off as
    a sum, nor replay it in another round.
    """

    ciphertext_bytes: int
    ciphertexts: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_ciphertexts(self.ciphertexts, self.ciphertext_bytes)
        _check_bytes("signature", self.signature, SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecryptionRequest(_Header):
    """Server -> each decryptor: the signed uploads whose product is to be decrypted.

    The decryptor checks every upload and recomputes the product itself; it never takes an
    aggregate, or a count of contributors, on the server's word.
    """

    vector_length: int
    uploads: tuple[EncryptedInput, ...]

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_int("vector_length", self.vector_length, 1, 2**31)
        _check_tuple_of("uploads", self.uploads, EncryptedInput)
        if not self.uploads:
            raise _fail("a decryption request carries at least one upload")


@dataclass(frozen=True, slots=True, kw_only=True)
class DecryptionShare(_Header):
    """Decryptor -> server: its partial decryption of the aggregate, with its proof.

    ``partial`` is :meth:`secagg.hazmat.paillier.PartialDecryption.to_bytes`; the server checks
    the proof before it uses the values, and names a decryptor whose proof fails.
    """

    index: int
    partial: bytes

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_int("index", self.index, 1, MAX_DECRYPTORS)
        if not isinstance(self.partial, bytes) or not self.partial:
            raise _fail("partial must be non-empty bytes")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DecryptedAggregate(_Header):
    """Key holder -> server: the slot-checked sums of the aggregate, one uint64 per value."""

    contributors: int
    vector: npt.NDArray[np.uint64]

    def __post_init__(self) -> None:
        _Header.__post_init__(self)
        _check_int("contributors", self.contributors, 1, 2**32 - 1)
        if not isinstance(self.vector, np.ndarray) or self.vector.ndim != 1:
            raise _fail("vector must be a 1-D numpy array")
        if self.vector.dtype != np.dtype(np.uint64):
            raise _fail(f"vector must be uint64, not {self.vector.dtype}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecryptedAggregate):
            return NotImplemented
        return _vector_message_eq(self, other, ("contributors",))


Message: TypeAlias = (
    RoundSetup
    | KeyAdvertisement
    | KeyRoster
    | EncryptedShares
    | ForwardedShares
    | MaskedInput
    | ConsistencyRequest
    | ConsistencySignature
    | UnmaskRequest
    | UnmaskResponse
    | Abort
    | PaillierSetup
    | EncryptedInput
    | DecryptionRequest
    | DecryptionShare
    | DecryptedAggregate
)
