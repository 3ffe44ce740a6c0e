"""secagg: cryptographic building blocks for secure aggregation (no protocol state, no I/O)."""

from importlib import metadata as _metadata

from secagg import _layout, errors
from secagg._layout import PackageShadowedWarning
from secagg.errors import (
    ClientMisbehaviourError,
    DecryptorMisbehaviourError,
    InsufficientSurvivorsError,
    InvalidCiphertextError,
    InvalidPartialDecryptionError,
    InvalidSignatureError,
    KeyReuseError,
    LocalProtocolError,
    PackageShadowedError,
    ParameterError,
    ProtocolError,
    ReconstructionError,
    RemoteProtocolError,
    SecAggError,
    ServerMisbehaviourError,
    SlotOverflowError,
    WireFormatError,
)

# Before anything else of this distribution runs: is 'protocols' / 'models' really ours here?
_layout.check_top_level_packages()

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
    "PackageShadowedError",
    "PackageShadowedWarning",
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
