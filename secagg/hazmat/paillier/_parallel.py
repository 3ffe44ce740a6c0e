"""Process-pool helpers that spread long Paillier vectors over worker processes.

Why this module exists: encryption, randomness precomputation and decryption all cost one big
modular exponentiation (or table walk) per ciphertext, and all three split a vector into chunks
the same way. This module owns that policy: how many workers a vector deserves
(``_worker_count``), how to cut it (``_split_evenly``) and how to run the chunks in order
(``_map_chunks``).

Rules: it knows nothing about what runs in the workers. A caller that needs per-worker state
(the DJN fixed-base table) passes its own initializer, so this module never imports the
randomness module. Functions sent to workers must be module-level (or partials of them) so that
they pickle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Final, TypeVar

from secagg.errors import ParameterError
from secagg.hazmat.paillier._checks import _check_type

__all__: list[str] = []

# Below this many ciphertexts per worker, starting processes costs more than it saves.
_MIN_CIPHERTEXTS_PER_PROCESS: Final = 128
# Chunks per worker: a little more than one evens out uneven chunk run times.
_CHUNKS_PER_PROCESS: Final = 2

_T = TypeVar("_T")


def _worker_count(processes: int | None, num_ciphertexts: int) -> int:
    if processes is None:
        requested = os.cpu_count() or 1
    else:
        _check_type("processes", processes, int)
        if processes < 1:
            raise ParameterError(
                f"processes must be at least 1 (or None for every core), not {processes}"
            )
        requested = processes
    return max(1, min(requested, num_ciphertexts // _MIN_CIPHERTEXTS_PER_PROCESS))


def _split_evenly(items: Sequence[_T], parts: int) -> list[list[_T]]:
    size, extra = divmod(len(items), parts)
    chunks: list[list[_T]] = []
    start = 0
    for index in range(parts):
        stop = start + size + (1 if index < extra else 0)
        chunks.append(list(items[start:stop]))
        start = stop
    return chunks


def _map_chunks(
    function: Callable[[_T], list[int]],
    chunk_args: list[_T],
    workers: int,
    *,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[int, ...] = (),
) -> list[int]:
    """Apply ``function`` to each chunk argument (in worker processes if ``workers`` > 1).

    The results are concatenated in chunk order. ``function`` must be a module-level callable (or
    a :func:`functools.partial` of one) so that it pickles. ``initializer(*initargs)`` runs in
    every worker before its first chunk (for state such as the DJN fixed-base table); it is not
    called when the chunks run in this process.
    """
    results: list[int] = []
    if workers <= 1:
        for argument in chunk_args:
            results.extend(function(argument))
        return results
    executor = (
        ProcessPoolExecutor(max_workers=workers)
        if initializer is None
        else ProcessPoolExecutor(max_workers=workers, initializer=initializer, initargs=initargs)
    )
    with executor:
        for part in executor.map(function, chunk_args):
            results.extend(part)
    return results
