"""Row-support sketches: which rows a cohort touched, summed under masking, never who touched them.

Sparse secure aggregation of an embedding table needs the rows anyone in the cohort touched
before anyone uploads their deltas, and must not learn which client touched which row. Each
client encodes the rows it touched as a *support sketch*: a Bloom filter of ``lanes`` lanes in
which each of its rows sets ``hashes`` lanes to 1 (a lane that two of its rows share is still 1).
The cohort's sketches go through the ordinary secure sum, so the server learns only their sum: in
each lane, how many clients touched some row that hashes there (a counting Bloom filter of the
cohort, Fan et al. 2000). From it the server decodes

* the *support*: every row whose lanes are all non-zero. No touched row is missed (a touched
  row's lanes hold at least 1); an untouched row comes in when all its lanes are hit by others,
  with probability about ``(1 - exp(-hashes * n / lanes)) ** hashes`` for ``n`` touched rows
  (:func:`lanes_for` sizes the filter for a target number of such extra rows);
* a *count* for each: the smallest of its lanes, an upper bound on how many clients touched the
  row (count-min, Cormode and Muthukrishnan 2005).

What the sum reveals is exactly that counting filter: an aggregate of the cohort, like the
per-item counts of a dense upload. Lanes are ``lane_bits`` wide and packed into uint32 ring words;
a lane's sum is at most the cohort size, so with ``2 ** lane_bits > cohort`` no lane carries into
the next and the ring sum of the packed words is the packed lane sums, exactly.

Hash positions come from a public pseudo-random function: AES-128 keyed by a key derived from
the session id and round (HKDF-SHA256), evaluated at ``row * blocks + b`` (the CTR keystream
block there, :func:`~secagg.hazmat.prg.keystream_blocks`), four 32-bit words a block. The key
is public, since the filter is not a secret: it only makes each round's hashing fresh.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError
from secagg.hazmat.kex import SESSION_ID_BYTES, hkdf_sha256
from secagg.hazmat.prg import MASK_KEY_BYTES, keystream_blocks

__all__ = ["LANE_WIDTHS", "RowSupport", "SupportSketch", "lanes_for"]

IntArray = npt.NDArray[np.int64]
WordArray = npt.NDArray[np.uint32]

#: Lane widths a sketch may use, narrowest first (each divides the 32-bit ring word).
LANE_WIDTHS: Final = (8, 16, 32)
#: Rows the server hashes at a time while decoding (bounds its memory).
_DECODE_CHUNK: Final = 1 << 16
_INFO: Final = b"secagg/v1 support-sketch"


def lanes_for(rows: int, *, catalogue: int, hashes: int = 4, extra_rows: float = 0.01) -> int:
    """Lanes for ``rows`` touched rows so that about ``extra_rows * rows`` untouched rows of the
    ``catalogue`` come into the decoded support.

    Solves ``catalogue * (1 - exp(-hashes * rows / lanes)) ** hashes = extra_rows * rows``.

    Raises:
        ParameterError: a non-positive size or rate.
    """
    if min(rows, catalogue, hashes) < 1 or not extra_rows > 0:
        raise ParameterError("rows, catalogue and hashes must be >= 1 and extra_rows > 0")
    rate = min(extra_rows * rows / catalogue, 0.5) ** (1.0 / hashes)
    return max(hashes, math.ceil(-hashes * rows / math.log1p(-rate)))


@dataclass(frozen=True, slots=True)
class RowSupport:
    """What the server decodes from a summed sketch.

    Attributes:
        rows: sorted row ids whose lanes all reach the threshold (every touched row included).
        counts: for each of ``rows``, an upper bound on the clients that touched it.
    """

    rows: IntArray
    counts: npt.NDArray[np.uint32]


@dataclass(frozen=True, slots=True)
class SupportSketch:
    """The public parameters of one round's support sketch.

    Attributes:
        catalogue: rows of the table (valid ids are ``0 .. catalogue - 1``).
        lanes: Bloom-filter lanes.
        hashes: lanes each row sets (at most 16).
        lane_bits: width of a lane in the ring word; ``2 ** lane_bits`` exceeds the cohort.
        key: the round's public 16-byte hashing key.
    """

    catalogue: int
    lanes: int
    hashes: int
    lane_bits: int
    key: bytes

    def __post_init__(self) -> None:
        if self.catalogue < 1 or self.lanes < 1:
            raise ParameterError(f"catalogue and lanes must be >= 1, got {self}")
        if not 1 <= self.hashes <= 16:
            raise ParameterError(f"hashes must be in [1, 16], got {self.hashes}")
        if self.lane_bits not in LANE_WIDTHS:
            raise ParameterError(f"lane_bits must be one of {LANE_WIDTHS}, got {self.lane_bits}")
        if len(self.key) != MASK_KEY_BYTES:
            raise ParameterError(f"the hashing key must be {MASK_KEY_BYTES} bytes")

    @classmethod
    def for_round(
        cls,
        session_id: bytes,
        round_id: int,
        *,
        catalogue: int,
        cohort: int,
        lanes: int,
        hashes: int = 4,
    ) -> SupportSketch:
        """The sketch of one round: a fresh hashing key, and lanes wide enough for ``cohort``.

        Raises:
            ParameterError: a bad session id, round or size, or a cohort of 2^32 or more.
        """
        if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_BYTES:
            raise ParameterError(f"session_id must be {SESSION_ID_BYTES} bytes")
        if not 0 <= round_id < 2**64 or cohort < 1:
            raise ParameterError(f"round must be in [0, 2^64) and cohort >= 1, got {round_id}")
        width = next((bits for bits in LANE_WIDTHS if cohort < 2**bits), None)
        if width is None:
            raise ParameterError(f"a cohort of {cohort} does not fit a 32-bit lane")
        info = _INFO + session_id + struct.pack(">QQ", round_id, catalogue)
        key = hkdf_sha256(session_id, salt=None, info=info, length=MASK_KEY_BYTES)
        return cls(catalogue, lanes, hashes, width, key)

    @property
    def lanes_per_word(self) -> int:
        """Lanes packed into one uint32 ring word."""
        return 32 // self.lane_bits

    @property
    def words(self) -> int:
        """Length of a sketch vector (what each client uploads in the support phase)."""
        return -(-self.lanes // self.lanes_per_word)

    def positions(self, rows: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Shape ``(n, hashes)``: the lanes of each row.

        Raises:
            ParameterError: a row id outside the catalogue.
        """
        ids = self._check_rows(rows)
        blocks = -(-self.hashes // 4)
        first = ids.astype(np.uint64)[:, None] * np.uint64(blocks)
        counters = (first + np.arange(blocks, dtype=np.uint64)).reshape(-1).astype(np.uint64)
        stream = keystream_blocks(self.key, counters)
        words = stream.view("<u4").reshape(ids.shape[0], blocks * 4)[:, : self.hashes]
        return (words.astype(np.int64) % self.lanes).astype(np.int64)

    def encode(self, rows: npt.ArrayLike) -> WordArray:
        """One client's sketch: each lane of its rows set to 1, packed into ring words."""
        lanes = np.unique(self.positions(rows))
        words = np.zeros(self.words, dtype=np.uint32)
        shifts = ((lanes % self.lanes_per_word) * self.lane_bits).astype(np.uint32)
        np.bitwise_or.at(words, lanes // self.lanes_per_word, np.left_shift(np.uint32(1), shifts))
        return words

    def lane_counts(self, total: npt.ArrayLike) -> npt.NDArray[np.uint32]:
        """Shape ``(lanes,)``: the per-lane sums in a summed (packed) sketch.

        Raises:
            ParameterError: ``total`` is not a uint32 vector of :attr:`words` words.
        """
        words = np.asarray(total)
        if words.dtype != np.uint32 or words.shape != (self.words,):
            raise ParameterError(
                f"a summed sketch is {self.words} uint32 words, got {words.dtype} {words.shape}"
            )
        shifts = np.arange(self.lanes_per_word, dtype=np.uint32) * np.uint32(self.lane_bits)
        mask = np.uint32((1 << self.lane_bits) - 1)
        lanes = (words[:, None] >> shifts[None, :]) & mask
        counts: npt.NDArray[np.uint32] = lanes.reshape(-1)[: self.lanes].astype(np.uint32)
        return counts

    def decode(self, total: npt.ArrayLike, *, threshold: int = 1) -> RowSupport:
        """The rows whose every lane holds at least ``threshold``, and their count bounds.

        ``threshold=1`` returns every touched row (and some others, see :func:`lanes_for`); a
        larger one, for a sketch with DP noise in it, drops rows too few clients touched.
        The catalogue is hashed in chunks, so memory is the lane counts plus one chunk.
        """
        if threshold < 1:
            raise ParameterError(f"threshold must be >= 1, got {threshold}")
        counts = self.lane_counts(total)
        rows: list[IntArray] = []
        bounds: list[npt.NDArray[np.uint32]] = []
        for start in range(0, self.catalogue, _DECODE_CHUNK):
            chunk = np.arange(start, min(self.catalogue, start + _DECODE_CHUNK), dtype=np.int64)
            smallest = counts[self.positions(chunk)].min(axis=1)
            keep = smallest >= threshold
            rows.append(chunk[keep])
            bounds.append(smallest[keep])
        return RowSupport(np.concatenate(rows), np.concatenate(bounds).astype(np.uint32))

    def _check_rows(self, rows: npt.ArrayLike) -> IntArray:
        ids = np.asarray(rows)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise ParameterError("rows must be a 1-D array of integer row ids")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.catalogue):
            raise ParameterError(
                f"row ids must lie in [0, {self.catalogue}); got {ids.min()}..{ids.max()}"
            )
        return ids
