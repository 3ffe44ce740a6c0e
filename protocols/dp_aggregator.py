"""Distributed DP over masking: a kept import path; see :mod:`protocols.aggregators.dp`."""

from protocols.aggregators.dp import (
    DEFAULT_MODULUS_BITS,
    DistributedDPAggregator,
    PrivacyBudgetWarning,
    PrivacyReport,
)

__all__ = [
    "DEFAULT_MODULUS_BITS",
    "DistributedDPAggregator",
    "PrivacyBudgetWarning",
    "PrivacyReport",
]
