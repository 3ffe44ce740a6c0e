"""The exception hierarchy of STYLE.md section 4, pinned class by class."""

from __future__ import annotations

import pickle

import pytest

import secagg
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

#: Every error class and the classes it must directly derive from.
_PARENTS: dict[type[Exception], tuple[type[Exception], ...]] = {
    ParameterError: (SecAggError, ValueError),
    PackageShadowedError: (SecAggError, ImportError),
    ProtocolError: (SecAggError,),
    LocalProtocolError: (ProtocolError,),
    RemoteProtocolError: (ProtocolError,),
    WireFormatError: (RemoteProtocolError,),
    ServerMisbehaviourError: (RemoteProtocolError,),
    ClientMisbehaviourError: (RemoteProtocolError,),
    DecryptorMisbehaviourError: (RemoteProtocolError,),
    InvalidPartialDecryptionError: (SecAggError,),
    InsufficientSurvivorsError: (SecAggError,),
    InvalidCiphertextError: (SecAggError,),
    InvalidSignatureError: (SecAggError,),
    ReconstructionError: (SecAggError,),
    KeyReuseError: (SecAggError,),
    SlotOverflowError: (SecAggError,),
}


def test_errors_parameter_error_is_a_value_error() -> None:
    assert issubclass(ParameterError, ValueError)
    with pytest.raises(ValueError):
        raise ParameterError("bad")


def test_errors_server_misbehaviour_is_a_remote_protocol_error() -> None:
    assert issubclass(ServerMisbehaviourError, RemoteProtocolError)
    assert issubclass(ServerMisbehaviourError, ProtocolError)


def test_errors_client_misbehaviour_names_its_culprit_and_survives_pickling() -> None:
    error = ClientMisbehaviourError("client 3 dealt inconsistent shares", culprit=3)
    assert isinstance(error, RemoteProtocolError)
    assert error.culprit == 3
    assert str(error) == "client 3 dealt inconsistent shares"
    # Errors cross process boundaries (e.g. a Flower server app): the culprit must survive.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ClientMisbehaviourError
    assert (str(copy), copy.culprit) == (str(error), 3)


@pytest.mark.parametrize(
    ("error", "attribute"),
    [
        (DecryptorMisbehaviourError("decryptor 2 sent a bad partial", culprit=2), "culprit"),
        (InvalidPartialDecryptionError("proof failed", decryptor=2), "decryptor"),
    ],
)
def test_errors_decryptor_errors_name_the_decryptor_and_survive_pickling(
    error: SecAggError, attribute: str
) -> None:
    assert getattr(error, attribute) == 2
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (str(copy), getattr(copy, attribute)) == (str(error), 2)


def test_errors_package_shadowed_error_is_an_import_error_and_survives_pickling() -> None:
    # Code that guards an optional import with `except ImportError` must still catch it.
    error = PackageShadowedError("models is taken", name="models.mf", path="/tmp/p/models")
    assert isinstance(error, ImportError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is PackageShadowedError
    assert (str(copy), copy.name, copy.path) == ("models is taken", "models.mf", "/tmp/p/models")


def test_errors_wire_format_error_is_a_remote_protocol_error() -> None:
    assert issubclass(WireFormatError, RemoteProtocolError)
    assert issubclass(WireFormatError, ProtocolError)


def test_errors_local_and_remote_protocol_errors_are_disjoint() -> None:
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)


@pytest.mark.parametrize("error", list(_PARENTS), ids=lambda error: error.__name__)
def test_errors_direct_parents_match_the_style_guide(error: type[Exception]) -> None:
    assert error.__bases__ == _PARENTS[error]


@pytest.mark.parametrize("name", errors.__all__)
def test_errors_every_exported_error_is_a_secagg_error(name: str) -> None:
    error = getattr(errors, name)
    assert issubclass(error, SecAggError)
    assert issubclass(error, Exception)


def test_errors_only_parameter_error_is_a_builtin_value_error() -> None:
    # Catching ValueError must not swallow protocol or crypto failures.
    value_errors = {
        name for name in errors.__all__ if issubclass(getattr(errors, name), ValueError)
    }
    assert value_errors == {"ParameterError"}


def test_errors_hierarchy_is_complete() -> None:
    exported = {getattr(errors, name) for name in errors.__all__}
    assert exported == {SecAggError, *_PARENTS}


def test_errors_are_reexported_from_the_package() -> None:
    for name in errors.__all__:
        assert getattr(secagg, name) is getattr(errors, name)


def test_errors_carry_their_message() -> None:
    error = ReconstructionError("3 shares given, 4 needed")
    assert str(error) == "3 shares given, 4 needed"
    assert isinstance(error, SecAggError)
