"""Build an aggregation backend from its name: the one mapping of backend names to classes.

``secagg train``, ``models.factory``, the demos and outside users choose a backend by the names
of :data:`~protocols.defaults.BACKEND_NAMES` (``plain``, ``secagg``, ``secagg+``,
``paillier``), the same names as the ``secagg`` commands and the Flower workflow take. It
imports no torch. Unknown names and options raise :class:`~secagg.errors.ParameterError`
listing the choices.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

from protocols.aggregators.masking import MASKING_BACKENDS, MaskingAggregator
from protocols.aggregators.paillier import PaillierAggregator
from protocols.aggregators.pipeline import Pipeline
from protocols.aggregators.plain import PlainAggregator
from protocols.defaults import BACKEND_NAMES, DEFAULT_CLIP, DEFAULT_VALUE_BITS
from protocols.graph import ThreatModel
from secagg.errors import ParameterError

__all__ = ["make_aggregator"]

#: Keywords the factory sets itself: the backend from ``name``, and its own arguments.
_SET_BY_FACTORY = frozenset({"protocol", "graph", "clip", "value_bits", "threat_model"})


def make_aggregator(
    name: str,
    *,
    clip: float = DEFAULT_CLIP,
    value_bits: int = DEFAULT_VALUE_BITS,
    threat_model: ThreatModel = "active",
    **backend_options: object,
) -> Pipeline:
    """The aggregation backend called ``name``, with the shared defaults.

    Args:
        name: one of :data:`~protocols.defaults.BACKEND_NAMES`: ``plain`` (the float baseline),
            ``secagg`` (masking on the complete graph), ``secagg+`` (masking on a Harary graph)
            or ``paillier`` (packed Paillier; every core encrypts unless ``processes`` is
            given).
        clip: the per-coordinate clip of every backend.
        value_bits: bits of one quantized value (the secure backends; ``plain`` has none).
        threat_model: the masking backends' ``"active"`` or ``"semi-honest"`` protocol
            (``plain`` and ``paillier`` have one protocol only).
        **backend_options: further keywords of the backend's class, e.g. ``max_weight``,
            ``degree`` (SecAgg+), ``decryptors`` (Paillier).

    Returns:
        The backend.

    Raises:
        ParameterError: ``name`` is not a backend, an option is not one of that backend's, or
            a value is out of range.
    """
    if name == "plain":
        return _build(name, PlainAggregator, backend_options, clip=clip)
    quantized: dict[str, object] = {"clip": clip, "value_bits": value_bits}
    if name in MASKING_BACKENDS:
        return _build(
            name,
            MaskingAggregator,
            backend_options,
            protocol=name,
            threat_model=threat_model,
            **quantized,
        )
    if name == "paillier":
        return _build(name, PaillierAggregator, backend_options, processes=None, **quantized)
    raise ParameterError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


def _build(
    name: str,
    backend: Callable[..., Pipeline],
    backend_options: Mapping[str, object],
    **shared: object,
) -> Pipeline:
    """``backend(**shared, **backend_options)``, refusing options the backend does not take."""
    accepted = [p for p in inspect.signature(backend).parameters if p not in _SET_BY_FACTORY]
    unknown = sorted(set(backend_options) - set(accepted))
    if unknown:
        raise ParameterError(
            f"backend {name!r} takes no option {', '.join(map(repr, unknown))}; its options "
            f"are {', '.join(accepted)}"
        )
    return backend(**{**shared, **backend_options})
