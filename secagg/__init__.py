"""secagg: cryptographic building blocks for secure aggregation (no protocol state, no I/O)."""

from secagg import errors
from secagg.errors import (
    ClientMisbehaviourError,
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    InvalidSignatureError,
    KeyReuseError,
    LocalProtocolError,
    ParameterError,
    ProtocolError,
    ReconstructionError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
    SlotOverflowError,
    WireFormatError,
)

__all__ = [
    "ClientMisbehaviourError",
    "InsufficientSurvivorsError",
    "InvalidCiphertextError",
    "InvalidSignatureError",
    "KeyReuseError",
    "LocalProtocolError",
    "ParameterError",
    "ProtocolError",
    "ReconstructionError",
    "RemoteProtocolError",
    "SecAggError",
    "ServerMisbehaviourError",
    "SlotOverflowError",
    "WireFormatError",
    "errors",
]
