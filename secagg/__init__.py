"""secagg: cryptographic building blocks for secure aggregation (no protocol state, no I/O)."""

from importlib import metadata as _metadata

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

try:
    #: The installed distribution's version (``pip install`` sets it from pyproject.toml).
    __version__: str = _metadata.version("secagg")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"

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
    "__version__",
    "errors",
]
