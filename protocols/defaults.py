"""The defaults every entry point shares: the Python API, ``secagg`` commands and Flower.

A user who moves from ``secagg train`` to :class:`~protocols.aggregators.MaskingAggregator` to
the Flower workflow should meet the same quantization, so the defaults live here once and every
constructor and command option takes them from this module.

- :data:`DEFAULT_VALUE_BITS` = 22: one quantized value has 22 bits, as in Flower's SecAgg+
  (``quantization_range`` 2**22). The masking ring adds ceil(log2 n) bits of headroom, so a
  masked value still fits a uint32 with up to 1024 clients.
- :data:`DEFAULT_CLIP` = 1.0: the per-coordinate clip of a model *update* (a delta), which is
  what the Python aggregators and ``secagg train`` sum.
- :data:`FLOWER_CLIP` = 8.0: the Flower workflow sums the model *parameters* a ClientApp
  returns (FedAvg), not deltas, so it clips at Flower SecAgg+'s ``clipping_range``.
- :data:`BACKEND_NAMES`: the one set of backend names, the same in ``--protocol``, in
  :func:`~protocols.aggregators.make_aggregator` and in the Flower workflow.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BACKEND_NAMES", "DEFAULT_CLIP", "DEFAULT_VALUE_BITS", "FLOWER_CLIP"]

DEFAULT_VALUE_BITS: Final = 22
DEFAULT_CLIP: Final = 1.0
FLOWER_CLIP: Final = 8.0
#: The same names as :data:`protocols.rounds.ProtocolName` (a test holds them equal); written
#: out here so that every module can import this one without a cycle.
BACKEND_NAMES: Final[tuple[str, ...]] = ("plain", "secagg", "secagg+", "paillier")
