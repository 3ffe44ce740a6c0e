"""The trusted roster: which Ed25519 identity key speaks for which client (the PKI of a round).

Against an active server, nothing the server relays can be taken on its word: a client checks
every peer's key advertisement against that peer's long-term identity key, which it got out of
band, from the trusted setup. :class:`TrustedRoster` is that out-of-band knowledge: client id ->
raw Ed25519 public key, plus a 32-byte public seed drawn at setup that fixes the SecAgg+ ring
order (:func:`protocols.graph.public_order`), so the server can choose neither keys nor
neighbourhoods. The simulator plays the trusted setup (:func:`trusted_setup`); a deployment
writes the roster to a text file (:meth:`TrustedRoster.save`), like Flower's list of
authorised node keys, and gives it to every client.

The file format is line-based ASCII::

    # secagg trusted roster v1
    seed <64 hex digits>
    degree <k>            (optional: the pinned SecAgg+ degree; absent = complete graph)
    threshold <t>         (optional: the pinned least threshold)
    <client id> <64 hex digits: the client's Ed25519 public key>
    ...
"""

from __future__ import annotations

import secrets
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes

from protocols.graph import ORDER_SEED_BYTES
from protocols.messages import MAX_PARTY_ID
from secagg.errors import InvalidSignatureError, ParameterError
from secagg.hazmat.sign import (
    IDENTITY_PUBLIC_KEY_BYTES,
    IdentityKey,
    generate_identity,
    verify,
)

__all__ = [
    "ROSTER_HEADER",
    "VERIFIED_CACHE_SIZE",
    "TrustedRoster",
    "round_order_seed",
    "trusted_setup",
]

ROSTER_HEADER: Final = "# secagg trusted roster v1"
#: Signature triples a roster remembers as verified (:meth:`TrustedRoster.check_signature`).
VERIFIED_CACHE_SIZE: Final = 1 << 14
_SEED_DOMAIN: Final = b"secagg/v1/round-order-seed"


@dataclass(frozen=True, slots=True)
class TrustedRoster:
    """Client id -> Ed25519 identity public key, and the setup's public order seed.

    Attributes:
        keys: client id -> 32-byte raw Ed25519 public key; no two clients share a key.
        seed: 32 public random bytes drawn at setup (the SecAgg+ ring order derives from it).
        degree: the neighbour count k every round over these clients uses, pinned by the setup
            so that the server cannot give different clients different neighbourhood sizes
            (and so different thresholds). ``None``: the complete graph, k = n - 1.
        threshold: the least Shamir threshold the setup pins (``None``: the clients' own
            minimum for k alone).
    """

    keys: Mapping[int, bytes]
    seed: bytes
    degree: int | None = None
    threshold: int | None = None
    remember: bool = field(default=False, compare=False)
    _ids: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _verified: OrderedDict[tuple[int, bytes, bytes], None] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != ORDER_SEED_BYTES:
            raise ParameterError(f"the roster seed must be {ORDER_SEED_BYTES} bytes")
        if len(self.keys) < 2:
            raise ParameterError("a trusted roster needs at least 2 clients")
        for client, key in self.keys.items():
            if isinstance(client, bool) or not isinstance(client, int):
                raise ParameterError(f"roster client ids must be ints, got {client!r}")
            if not 0 <= client <= MAX_PARTY_ID:
                raise ParameterError(f"roster client id {client} is outside [0, {MAX_PARTY_ID}]")
            if not isinstance(key, bytes) or len(key) != IDENTITY_PUBLIC_KEY_BYTES:
                raise ParameterError(
                    f"client {client}'s identity key must be {IDENTITY_PUBLIC_KEY_BYTES} bytes"
                )
        if len(set(self.keys.values())) != len(self.keys):
            raise ParameterError("two clients of the roster share one identity key")
        for name in ("degree", "threshold"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 2 <= value
            ):
                raise ParameterError(f"the roster's {name} must be an int >= 2, got {value!r}")
        if self.degree is not None and self.degree >= len(self.keys):
            raise ParameterError(
                f"the roster's degree {self.degree} must be below its {len(self.keys)} clients"
            )
        object.__setattr__(self, "keys", dict(sorted(self.keys.items())))
        object.__setattr__(self, "_ids", tuple(sorted(self.keys)))
        object.__setattr__(self, "_verified", OrderedDict())

    @property
    def round_degree(self) -> int:
        """The degree every round over this roster must use (n - 1 unless pinned lower)."""
        return len(self.keys) - 1 if self.degree is None else self.degree

    def pinned(self, degree: int, threshold: int) -> TrustedRoster:
        """This roster with the round shape (degree, least threshold) pinned by the setup."""
        shape = None if degree >= len(self.keys) - 1 else degree
        return TrustedRoster(self.keys, self.seed, shape, threshold, self.remember)

    def shared_in_process(self) -> TrustedRoster:
        """This roster, remembering the signature triples it verified (bounded).

        For an in-process simulation, where every party holds this one object: a peer then
        does not re-check a signature another peer already checked, which is sound because
        verification is a deterministic function of (key, message, signature) and the keys
        never change. A device keeps its own roster, without memory, so nothing of one round
        stays in it (a decryptor's state is one round number).
        """
        return TrustedRoster(self.keys, self.seed, self.degree, self.threshold, True)

    @property
    def ids(self) -> tuple[int, ...]:
        """Every client of the roster, sorted."""
        return self._ids

    def __contains__(self, client: object) -> bool:
        return client in self.keys

    def check_signature(self, signer: int, message: bytes, signature: bytes) -> None:
        """Check that ``signer``'s identity key signed ``message``.

        Raises:
            InvalidSignatureError: ``signer`` is not on the roster, or the signature is bad.
        """
        key = self.keys.get(signer)
        if key is None:
            raise InvalidSignatureError("invalid signature")
        if not self.remember:
            verify(key, message, signature)
            return
        triple = (signer, bytes(message), bytes(signature))
        if triple in self._verified:
            self._verified.move_to_end(triple)
            return
        verify(key, message, signature)
        # See shared_in_process: a triple that verified once verifies again. Failures are not
        # kept.
        self._verified[triple] = None
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)

    def order_seed(self, session_id: bytes, round_id: int) -> bytes:
        """The public seed of one round's ring order (:func:`round_order_seed`)."""
        return round_order_seed(self.seed, session_id, round_id)

    # -- the roster file ------------------------------------------------------------------------

    def dumps(self) -> str:
        """The roster as the text of a roster file."""
        lines = [ROSTER_HEADER, f"seed {self.seed.hex()}"]
        lines += [f"{name} {value}" for name, value in self._shape() if value is not None]
        lines += [f"{client} {key.hex()}" for client, key in self.keys.items()]
        return "\n".join(lines) + "\n"

    def _shape(self) -> tuple[tuple[str, int | None], ...]:
        return (("degree", self.degree), ("threshold", self.threshold))

    def save(self, path: str | Path) -> None:
        """Write the roster file (public data: give the same file to every client)."""
        Path(path).write_text(self.dumps(), encoding="ascii")

    @classmethod
    def loads(cls, text: str, *, source: str = "<roster>") -> TrustedRoster:
        """Parse a roster file's text.

        Raises:
            ParameterError: naming ``source`` and the line that is wrong.
        """
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
        content = [(n, line) for n, line in lines if line and not line.startswith("#")]
        if not lines or lines[0][1] != ROSTER_HEADER:
            raise ParameterError(f"{source}:1: not a secagg roster (expected {ROSTER_HEADER!r})")
        if not content or not content[0][1].startswith("seed "):
            number = content[0][0] if content else len(lines)
            raise ParameterError(
                f"{source}:{number}: the first entry must be 'seed <64 hex digits>'"
            )
        seed = _hex_field(content[0][1][5:], ORDER_SEED_BYTES, source, content[0][0])
        keys: dict[int, bytes] = {}
        owners: dict[bytes, int] = {}
        shape: dict[str, int] = {}
        for number, line in content[1:]:
            name, _, value = line.partition(" ")
            if name in ("degree", "threshold") and not keys:
                if name in shape or not (value.isascii() and value.isdigit()):
                    raise ParameterError(f"{source}:{number}: expected '{name} <int>' once")
                shape[name] = int(value)
                continue
            client, key = _roster_line(line, source, number)
            if client in keys:
                raise ParameterError(f"{source}:{number}: client {client} is listed twice")
            if key in owners:
                raise ParameterError(
                    f"{source}:{number}: client {client} has the identity key of client "
                    f"{owners[key]}"
                )
            keys[client], owners[key] = key, client
        try:
            return cls(keys, seed, shape.get("degree"), shape.get("threshold"))
        except ParameterError as error:
            raise ParameterError(f"{source}: {error}") from None

    @classmethod
    def load(cls, path: str | Path) -> TrustedRoster:
        """Read a roster file.

        Raises:
            ParameterError: the file is missing, unreadable or malformed (named with its line).
        """
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise ParameterError(f"cannot read the roster file {path}: {error}") from None
        return cls.loads(text, source=str(path))


def round_order_seed(setup_seed: bytes, session_id: bytes, round_id: int) -> bytes:
    """The public seed of one round's ring order: (setup seed, session, round) hashed."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(_SEED_DOMAIN + setup_seed + bytes(session_id) + struct.pack(">Q", round_id))
    return digest.finalize()


def _roster_line(line: str, source: str, number: int) -> tuple[int, bytes]:
    """One ``<client id> <public key hex>`` line of a roster file."""
    parts = line.split()
    if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit()):
        raise ParameterError(
            f"{source}:{number}: expected '<client id> <public key hex>', got {line!r}"
        )
    client = int(parts[0])
    if client > MAX_PARTY_ID:
        raise ParameterError(
            f"{source}:{number}: client id {client} is outside [0, {MAX_PARTY_ID}]"
        )
    return client, _hex_field(parts[1], IDENTITY_PUBLIC_KEY_BYTES, source, number)


def _hex_field(text: str, size: int, source: str, number: int) -> bytes:
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        raise ParameterError(f"{source}:{number}: {text.strip()!r} is not hex") from None
    if len(value) != size:
        raise ParameterError(f"{source}:{number}: expected {2 * size} hex digits")
    return value


def trusted_setup(
    ids: Iterable[int], *, degree: int | None = None, threshold: int | None = None
) -> tuple[TrustedRoster, dict[int, IdentityKey]]:
    """Play the trusted setup: a fresh identity key per client, and the roster of them all.

    The private keys go to their clients only; the roster goes to everyone, server included.
    ``degree`` and ``threshold`` pin the round shape (see :class:`TrustedRoster`).
    """
    identities = {client: generate_identity() for client in sorted(set(ids))}
    roster = TrustedRoster(
        {client: key.public_bytes for client, key in identities.items()},
        secrets.token_bytes(ORDER_SEED_BYTES),
        degree,
        threshold,
    )
    return roster, identities
