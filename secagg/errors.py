"""The one exception hierarchy of the project.

Every failure the library raises on purpose is a subclass of :class:`SecAggError`, so a
transport can catch one type and know it came from us. The split follows h11: a
:class:`LocalProtocolError` means *our caller* asked for something illegal, a
:class:`RemoteProtocolError` means *a peer* sent something illegal. Cryptographic failures are
deliberately opaque (:class:`InvalidCiphertextError` never says which check failed), as in
pyca/cryptography's Fernet.
"""

from __future__ import annotations

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
    "ParameterError",
    "ProtocolError",
    "ReconstructionError",
    "RemoteProtocolError",
    "SecAggError",
    "ServerMisbehaviourError",
    "SlotOverflowError",
    "WireFormatError",
]


class SecAggError(Exception):
    """Base of every error this project raises on purpose; never raised directly."""


class ParameterError(SecAggError, ValueError):
    """A parameter or configuration value is invalid; raised at construction time."""


class PackageShadowedError(SecAggError, ImportError):
    """One of this distribution's modules was about to load into a foreign package of the same
    name (a user's own ``models`` or ``protocols`` first on ``sys.path``); see ``secagg._layout``.

    It is an :class:`ImportError`, so code that guards an optional import still catches it.
    """


class ProtocolError(SecAggError):
    """A protocol rule was broken; abstract, see the two subclasses."""


class LocalProtocolError(ProtocolError):
    """Our own caller asked for an illegal step (wrong phase, bad local input, poisoned machine)."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something illegal, malformed, replayed or out of order."""


class WireFormatError(RemoteProtocolError):
    """Bytes received from the network do not decode to a valid message."""


class ServerMisbehaviourError(RemoteProtocolError):
    """Evidence of a privacy attack by the server (e.g. asking for both shares of one client)."""


class ClientMisbehaviourError(RemoteProtocolError):
    """A client broke the protocol in a way the server cannot repair (e.g. it dealt shares that
    do not reconstruct its committed secret): the round aborts rather than return a wrong sum.

    Attributes:
        culprit: the client's id.
    """

    def __init__(self, message: str, culprit: int) -> None:
        super().__init__(message)
        self.culprit = culprit

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (str(self), self.culprit))


class DecryptorMisbehaviourError(RemoteProtocolError):
    """A member of a Paillier decryption committee sent a partial decryption that does not
    verify (or none that parses): it is excluded from the round, and named.

    Attributes:
        culprit: the decryptor's index (1-based, as in its key share).
    """

    def __init__(self, message: str, culprit: int) -> None:
        super().__init__(message)
        self.culprit = culprit

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (str(self), self.culprit))


class InsufficientSurvivorsError(SecAggError):
    """Fewer than ``threshold`` parties are left: the round aborts cleanly and reveals nothing."""


class InvalidCiphertextError(SecAggError):
    """A ciphertext failed authentication or decoding; deliberately says nothing more."""


class InvalidPartialDecryptionError(SecAggError):
    """A threshold-Paillier partial decryption failed its proof of correct exponent.

    Attributes:
        decryptor: the index of the decryptor whose partial decryption failed.
    """

    def __init__(self, message: str, decryptor: int) -> None:
        super().__init__(message)
        self.decryptor = decryptor

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (str(self), self.decryptor))


class InvalidSignatureError(SecAggError):
    """A signature did not verify (or its key or bytes were malformed); says nothing more."""


class ReconstructionError(SecAggError):
    """Shamir reconstruction was given too few or inconsistent shares."""


class KeyReuseError(SecAggError):
    """A one-shot key, seed or precomputed value was about to be used a second time."""


class SlotOverflowError(SecAggError):
    """A decrypted packed slot lies outside its legal range (a client sent out-of-range data)."""
