"""The shared defaults: one set of backend names and quantization defaults everywhere."""

from __future__ import annotations

import inspect
from typing import get_args

from protocols.aggregators import MaskingAggregator, PaillierAggregator, PlainAggregator
from protocols.defaults import BACKEND_NAMES, DEFAULT_CLIP, DEFAULT_VALUE_BITS, FLOWER_CLIP
from protocols.flower.workflow import SecureAggregationWorkflow
from protocols.rounds import ProtocolName, RoundPolicy


def test_backend_names_are_the_protocol_names_of_the_round_planner() -> None:
    assert BACKEND_NAMES == get_args(ProtocolName)


def _default(callable_: object, name: str) -> object:
    return inspect.signature(callable_).parameters[name].default  # type: ignore[arg-type]


def test_every_constructor_takes_the_shared_defaults() -> None:
    for backend in (MaskingAggregator, PaillierAggregator):
        assert _default(backend, "clip") == DEFAULT_CLIP
        assert _default(backend, "value_bits") == DEFAULT_VALUE_BITS
    assert _default(PlainAggregator, "clip") == DEFAULT_CLIP
    assert RoundPolicy("secagg").value_bits == DEFAULT_VALUE_BITS
    assert _default(SecureAggregationWorkflow, "clip") == FLOWER_CLIP
    assert _default(SecureAggregationWorkflow, "value_bits") == DEFAULT_VALUE_BITS
