"""The saved state of a masking client, as one typed dataclass (for stateless transports).

A transport that keeps no object alive between messages (a Flower ClientApp stores its state
in ``context.state``) saves a :class:`~protocols.masking.MaskingClient` with
``export_state()`` and rebuilds it with ``from_state()``. Both go through
:class:`MaskingClientState`: every field is named and typed once, JSON holds only ints,
strings, lists and ``None`` (bytes as hex), and :meth:`MaskingClientState.from_json` checks
every field's type before anything is rebuilt, so a corrupt saved state raises
:class:`~secagg.errors.LocalProtocolError` instead of building a broken machine. The bytes
hold the round's private keys and shares: keep them where the client's own memory would be.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Final

from protocols.masking.keys import SEED_BYTES
from protocols.messages import COMMITMENT_BYTES, MAX_PARTY_ID
from secagg.errors import LocalProtocolError
from secagg.hazmat.aead import AEAD_KEY_BYTES
from secagg.hazmat.kex import PRIVATE_KEY_BYTES, PUBLIC_KEY_BYTES, SESSION_ID_BYTES
from secagg.hazmat.shamir import FIELD_PRIME
from secagg.hazmat.sign import SIGNATURE_BYTES

__all__ = ["STATE_VERSION", "MaskingClientState"]

#: Bumped whenever a field changes meaning; older saved states are refused.
STATE_VERSION: Final = 2

_INT_LISTS: Final = {
    "neighbours": 1,
    "mask_peers": 1,
    "rejected": 1,
    "survivors": 1,
    "held_shares": 3,
}
_HEX_LISTS: Final = {"roster": (1, 2, 3, 4), "share_keys_by_peer": (1,), "pair_keys": (1,)}
_OPTIONAL_HEX: Final = ("mask_key", "share_key", "self_mask_seed")


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskingClientState:
    """Everything a masking client holds between two messages, secrets included.

    Attributes:
        version: :data:`STATE_VERSION` of the writer.
        client_id, session_id, round_id, min_threshold, min_survivors, threat_model,
            corrupt_fraction: the constructor's arguments (``session_id`` in hex).
        phase: the client's phase value.
        threshold, vector_length, modulus_bits, neighbours: from the round setup.
        mask_key, share_key: X25519 private keys in hex (``None`` once dropped).
        roster: ``[client id, mask public key, share public key, seed commitment, signature]``
            per member, all but the id in hex (the signature is empty when semi-honest).
        self_mask_seed: b_u in hex (``None`` once dropped).
        held_shares: ``[owner, self-mask seed share, mask-key share]`` per owner.
        share_keys_by_peer: ``[peer, AES key hex]`` per peer.
        pair_keys: ``[peer, pairwise mask key hex]`` per peer (rounds 1 to 2 only).
        mask_peers: the peers whose pairwise masks the client adds.
        rejected: the peers whose share bundles did not open.
        survivors: the survivor set the client signed (active model, round 3).
    """

    version: int
    client_id: int
    session_id: str
    round_id: int
    min_threshold: int
    min_survivors: int
    threat_model: str
    corrupt_fraction: float
    phase: str
    threshold: int
    vector_length: int
    modulus_bits: int
    neighbours: list[int]
    mask_key: str | None
    share_key: str | None
    roster: list[list[int | str]]
    self_mask_seed: str | None
    held_shares: list[list[int]]
    share_keys_by_peer: list[list[int | str]]
    pair_keys: list[list[int | str]]
    mask_peers: list[int]
    rejected: list[int]
    survivors: list[int]

    def to_json(self) -> bytes:
        """Compact ASCII JSON of every field."""
        return json.dumps(asdict(self), separators=(",", ":")).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> MaskingClientState:
        """Parse and type-check saved state.

        Raises:
            LocalProtocolError: the bytes are not a state of this version.
        """
        try:
            raw = json.loads(bytes(data).decode("ascii"))
            if not isinstance(raw, dict) or set(raw) != {f.name for f in fields(cls)}:
                raise ValueError("fields")
            state = cls(**raw)
            state._check_types()
            state._check_values()
        except (ValueError, TypeError, UnicodeDecodeError):
            raise LocalProtocolError("the saved client state is malformed") from None
        if state.version != STATE_VERSION:
            raise LocalProtocolError("the saved client state has another version")
        return state

    def _check_types(self) -> None:
        for name in ("version", "client_id", "round_id", "min_threshold", "min_survivors"):
            _require(_is_int(getattr(self, name)))
        _require(_is_int(self.threshold) and _is_int(self.vector_length))
        _require(_is_int(self.modulus_bits))
        _require(isinstance(self.session_id, str) and isinstance(self.phase, str))
        _require(isinstance(self.threat_model, str))
        _require(
            isinstance(self.corrupt_fraction, float | int) and _is_number(self.corrupt_fraction)
        )
        bytes.fromhex(self.session_id)
        for name in _OPTIONAL_HEX:
            value = getattr(self, name)
            _require(value is None or isinstance(value, str))
            if value is not None:
                bytes.fromhex(value)
        for name, width in _INT_LISTS.items():
            for item in getattr(self, name):
                _require(_is_int(item) if width == 1 else _is_int_row(item, width))
        for name, hex_columns in _HEX_LISTS.items():
            for row in getattr(self, name):
                _require(isinstance(row, list) and len(row) == 1 + len(hex_columns))
                _require(_is_int(row[0]))
                for column in hex_columns:
                    _require(isinstance(row[column], str))
                    bytes.fromhex(str(row[column]))

    def _check_values(self) -> None:
        """Ranges and lengths: a state that no honest client could have written is refused."""
        _require(len(bytes.fromhex(self.session_id)) == SESSION_ID_BYTES)
        _require(0 <= self.client_id <= MAX_PARTY_ID and 0 <= self.round_id < 2**64)
        _require(2 <= self.min_threshold and self.min_survivors >= 0 and self.vector_length >= 0)
        _require(self.threshold == 0 or self.threshold >= self.min_threshold)
        _require(self.modulus_bits == 0 or 1 <= self.modulus_bits <= 64)
        _require(self.threat_model in ("semi-honest", "active"))
        _require(0 <= self.corrupt_fraction < 1)
        for key in (self.mask_key, self.share_key):
            _require(key is None or len(bytes.fromhex(key)) == PRIVATE_KEY_BYTES)
        seed = self.self_mask_seed
        _require(seed is None or len(bytes.fromhex(seed)) == SEED_BYTES)
        ids = [*self.neighbours, *self.mask_peers, *(int(r[0]) for r in self.roster)]
        ids += [*self.rejected, *self.survivors]
        ids += [row[0] for row in self.held_shares] + [int(r[0]) for r in self.share_keys_by_peer]
        ids += [int(r[0]) for r in self.pair_keys]
        _require(all(0 <= u <= MAX_PARTY_ID for u in ids))
        _require(all(0 <= v < FIELD_PRIME for row in self.held_shares for v in row[1:]))
        for row in self.roster:
            _require(all(len(bytes.fromhex(str(k))) == PUBLIC_KEY_BYTES for k in row[1:3]))
            _require(len(bytes.fromhex(str(row[3]))) == COMMITMENT_BYTES)
            _require(len(bytes.fromhex(str(row[4]))) in (0, SIGNATURE_BYTES))
        for row in (*self.share_keys_by_peer, *self.pair_keys):
            _require(len(bytes.fromhex(str(row[1]))) == AEAD_KEY_BYTES)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value == value


def _is_int_row(row: object, width: int) -> bool:
    return isinstance(row, list) and len(row) == width and all(_is_int(v) for v in row)


def _require(condition: bool) -> None:
    if not condition:
        raise TypeError("a saved field has the wrong type")
