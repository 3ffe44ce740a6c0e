"""AES-CTR mask expansion straight into numpy arrays.

A mask is the AES-128-CTR keystream under a one-time key, read as little-endian uint32 or
uint64 words. Keys are never reused: every caller derives a fresh key bound to session, round,
parties and purpose (see :mod:`secagg.hazmat.kex`), so the counter can start at zero. The
keystream is produced in fixed-size chunks and added into (or subtracted from) the caller's
accumulator in place, so the extra memory of masking is one chunk, whatever the vector length or
the number of masks (DESIGN.md invariant 6).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.errors import ParameterError

__all__ = [
    "CHUNK_BYTES",
    "MASK_KEY_BYTES",
    "add_mask",
    "expand_mask",
    "keystream",
    "keystream_blocks",
]

#: AES-128 key length of one mask.
MASK_KEY_BYTES: Final = 16
#: Keystream bytes produced per step (128 KiB): stays in L2 cache, amortises per-call cost.
CHUNK_BYTES: Final = 1 << 17

_ZERO_IV: Final = bytes(16)
_ZEROS: Final = bytes(CHUNK_BYTES)


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != MASK_KEY_BYTES:
        raise ParameterError(f"a mask key must be {MASK_KEY_BYTES} bytes")


def _check_dtype(dtype: npt.DTypeLike) -> np.dtype[np.unsignedinteger]:
    checked = np.dtype(dtype)
    if checked == np.uint32:
        return np.dtype(np.uint32)
    if checked == np.uint64:
        return np.dtype(np.uint64)
    raise ParameterError(f"masks are uint32 or uint64 arrays, not {checked}")


def keystream(key: bytes, length: int) -> bytes:
    """Return ``length`` bytes of AES-128-CTR keystream under ``key`` with a zero counter."""
    _check_key(key)
    if length < 0:
        raise ParameterError(f"keystream length must be >= 0, got {length}")
    encryptor = Cipher(algorithms.AES(bytes(key)), modes.CTR(_ZERO_IV)).encryptor()
    return encryptor.update(bytes(length))


def keystream_blocks(key: bytes, counters: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """The AES-128-CTR keystream blocks of ``key`` at the given block ``counters``.

    Block ``i`` of :func:`keystream` (zero IV) is ``AES_key(i)`` with ``i`` as a 128-bit
    big-endian integer; this evaluates exactly those blocks for arbitrary ``i``, so a party that
    needs a few blocks of a long keystream (a public PRF over row ids) does not expand it all.

    Args:
        key: the 16-byte key.
        counters: shape ``(n,)`` block indices below 2^64.

    Returns:
        Shape ``(n, 16)``: row ``j`` is keystream block ``counters[j]``.
    """
    _check_key(key)
    counters = np.asarray(counters)
    if counters.ndim != 1 or counters.dtype != np.uint64:
        raise ParameterError("counters must be a 1-D uint64 array")
    blocks = np.zeros((counters.shape[0], 16), dtype=np.uint8)
    blocks[:, 8:] = counters.astype(">u8").view(np.uint8).reshape(-1, 8)
    encryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
    out = encryptor.update(blocks.tobytes()) + encryptor.finalize()
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, 16)


def expand_mask(
    key: bytes, length: int, dtype: npt.DTypeLike = np.uint32
) -> npt.NDArray[np.unsignedinteger]:
    """Return the ``length``-word mask of ``key`` as a new little-endian array of ``dtype``."""
    checked = _check_dtype(dtype)
    if length < 0:
        raise ParameterError(f"mask length must be >= 0, got {length}")
    out = np.zeros(length, dtype=checked.newbyteorder("<"))
    add_mask(out, key)
    return out.astype(checked, copy=False)


def add_mask(
    accumulator: npt.NDArray[np.unsignedinteger], key: bytes, *, subtract: bool = False
) -> None:
    """Add (or subtract) the mask of ``key`` into ``accumulator`` in place, modulo 2^wordsize.

    The accumulator must be a contiguous uint32 or uint64 array; wrap-around is the ring
    arithmetic we want. Memory beyond the accumulator is one chunk of keystream.
    """
    _check_key(key)
    dtype = _check_dtype(accumulator.dtype)
    if accumulator.ndim != 1 or not accumulator.flags.c_contiguous:
        raise ParameterError("the accumulator must be a contiguous 1-D array")
    if not accumulator.flags.writeable:
        raise ParameterError("the accumulator is read-only; pass a writeable copy")
    words_per_chunk = CHUNK_BYTES // dtype.itemsize
    encryptor = Cipher(algorithms.AES(bytes(key)), modes.CTR(_ZERO_IV)).encryptor()
    # update_into needs room for one extra block; the buffer is reused for every chunk.
    buffer = np.empty(words_per_chunk + 16 // dtype.itemsize, dtype=dtype.newbyteorder("<"))
    raw = buffer.view(np.uint8).data
    op = np.subtract if subtract else np.add
    length = accumulator.shape[0]
    for start in range(0, length, words_per_chunk):
        stop = min(length, start + words_per_chunk)
        count = stop - start
        nbytes = count * dtype.itemsize
        encryptor.update_into(_ZEROS[:nbytes] if nbytes < CHUNK_BYTES else _ZEROS, raw)
        chunk = buffer[:count]
        target = accumulator[start:stop]
        op(target, chunk, out=target, casting="unsafe")
