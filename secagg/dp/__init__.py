"""Distributed differential privacy on top of the modular sum, with library accounting.

Secure aggregation hides each update from the server, but the sum itself can still leak about
one client. This package adds client-level differential privacy in the *distributed* form that
composes with a sum in Z_{2^k}: every client adds a small share of discrete noise before masking,
so the noise is in the sum before anyone sees it and no party ever sees un-noised data. The two
mechanisms are the distributed discrete Gaussian (Kairouz, Liu, Steinke, ICML 2021) and the
Skellam mechanism (Agarwal, Kairouz, Liu, NeurIPS 2021), both following TFF's
``distributed_dp.py`` pipeline.

One module per concept, with imports flowing one way:

* :mod:`~secagg.dp.sampling`: the discrete Gaussian, Poisson and Skellam samplers (CSPRNG);
* :mod:`~secagg.dp.rotation`: the shared-seed randomized Walsh-Hadamard rotation;
* :mod:`~secagg.dp.rounding`: L2 clipping and conditional randomized rounding (uses sampling);
* :mod:`~secagg.dp.mechanisms`: :class:`DistributedDPConfig` and the client encoding and server
  decoding of :class:`DistributedDPMechanism` (uses the three above);
* :mod:`~secagg.dp.accounting`: :class:`PrivacyAccountant` and :func:`choose_parameters`, by
  Google's ``dp-accounting`` (uses the mechanisms; imported lazily, the ``dp`` extra).

Rules of the package:

* All randomness comes from AES-CTR keyed by :mod:`secrets` (the same expansion as the masks);
  never from ``random`` or a numpy generator. The private ``_..._from_uniforms`` seams take a
  uniform source so that tests can be deterministic.
* Privacy accounting is done by ``dp-accounting``, never by hand-written formulas here.
* Parameters are checked at construction with named helpers and actionable messages
  (:class:`~secagg.errors.ParameterError`), as TFF's ``distributed_dp.py`` does.

This module re-exports the public names of all five, so ``from secagg.dp import X`` is the
import to use.
"""

from secagg.dp.accounting import AccountantKind, PrivacyAccountant, SpentReport, choose_parameters
from secagg.dp.mechanisms import (
    DEFAULT_MAX_WRAP_PROBABILITY,
    DistributedDPConfig,
    DistributedDPMechanism,
    DPApproximationWarning,
    DPWrapAroundWarning,
    Mechanism,
    wrap_probability,
)
from secagg.dp.rotation import (
    ROTATION_SEED_BYTES,
    hadamard_rotate,
    inverse_hadamard_rotate,
    new_rotation_seed,
    padded_dimension,
)
from secagg.dp.rounding import DEFAULT_ROUNDING_BETA, clip_l2, conditional_round, rounded_l2_bound
from secagg.dp.sampling import (
    MAX_POISSON_MEAN,
    MAX_SIGMA,
    sample_discrete_gaussian,
    sample_poisson,
    sample_skellam,
)

__all__ = [
    "DEFAULT_MAX_WRAP_PROBABILITY",
    "DEFAULT_ROUNDING_BETA",
    "MAX_POISSON_MEAN",
    "MAX_SIGMA",
    "ROTATION_SEED_BYTES",
    "AccountantKind",
    "DPApproximationWarning",
    "DPWrapAroundWarning",
    "DistributedDPConfig",
    "DistributedDPMechanism",
    "Mechanism",
    "PrivacyAccountant",
    "SpentReport",
    "choose_parameters",
    "clip_l2",
    "conditional_round",
    "hadamard_rotate",
    "inverse_hadamard_rotate",
    "new_rotation_seed",
    "padded_dimension",
    "rounded_l2_bound",
    "sample_discrete_gaussian",
    "sample_poisson",
    "sample_skellam",
    "wrap_probability",
]
