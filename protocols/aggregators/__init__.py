"""The public aggregation backends behind one small interface, on one pipeline.

``models.federated``, the Flower adapter and outside users all talk to an :class:`Aggregator`:
hand it each client's float update (and optionally a weight), say who drops out when, and get
back the float sum over the clients that finished, the summed weight, and what the round cost.
An update may be a 1-D array, a PyTorch ``state_dict`` or Flower's ``NDArrays``; the sum comes
back in the same form (:attr:`AggregationResult.structured_total`, from
:mod:`protocols.aggregators.structure`). :func:`make_aggregator` builds a backend from its name,
one of :data:`~protocols.defaults.BACKEND_NAMES` (``plain``, ``secagg``, ``secagg+``,
``paillier``), with the defaults of :mod:`protocols.defaults`.
Every backend runs :class:`~protocols.aggregators.pipeline.Pipeline` (validate -> encode ->
secure sum -> decode -> stats) and follows one weight rule: clip the update, bound the weight by
a declared ``max_weight``, encode (w / max_weight) * clip(x). The secure backends run the real
protocol in-process; the server-side code that calls ``aggregate`` receives only the sum.
"""

from protocols.aggregators.dp import (
    DEFAULT_MODULUS_BITS,
    DistributedDPAggregator,
    PrivacyBudgetWarning,
    PrivacyReport,
)
from protocols.aggregators.factory import make_aggregator
from protocols.aggregators.inputs import (
    UPLOAD_ROUND,
    check_dropouts,
    check_round_inputs,
    check_updates,
    check_weights,
)
from protocols.aggregators.masking import (
    MASKING_BACKENDS,
    GraphChoice,
    MaskingAggregator,
    MaskingBackend,
)
from protocols.aggregators.paillier import PaillierAggregator
from protocols.aggregators.pipeline import Pipeline, RoundCodec, SecureSum
from protocols.aggregators.plain import PlainAggregator
from protocols.aggregators.result import (
    AggregationResult,
    Aggregator,
    FloatArray,
    RoundStats,
    StructuredSum,
    UpdateLike,
)
from protocols.aggregators.structure import StructureMismatchError, UpdateStructure

__all__ = [
    "DEFAULT_MODULUS_BITS",
    "MASKING_BACKENDS",
    "UPLOAD_ROUND",
    "AggregationResult",
    "Aggregator",
    "DistributedDPAggregator",
    "FloatArray",
    "GraphChoice",
    "MaskingAggregator",
    "MaskingBackend",
    "PaillierAggregator",
    "Pipeline",
    "PlainAggregator",
    "PrivacyBudgetWarning",
    "PrivacyReport",
    "RoundCodec",
    "RoundStats",
    "SecureSum",
    "StructureMismatchError",
    "StructuredSum",
    "UpdateLike",
    "UpdateStructure",
    "check_dropouts",
    "check_round_inputs",
    "check_updates",
    "check_weights",
    "make_aggregator",
]
