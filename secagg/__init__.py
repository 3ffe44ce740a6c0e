"""secagg: cryptographic building blocks for secure aggregation (no protocol state, no I/O)."""

from secagg import errors
from secagg.errors import (
    ClientMisbehaviourError,
    DecryptorMisbehaviourError,
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    InvalidPartialDecryptionError,
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
    "DecryptorMisbehaviourError",
    "InsufficientSurvivorsError",
    "InvalidCiphertextError",
    "InvalidPartialDecryptionError",
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
