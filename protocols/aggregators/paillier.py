"""Packed Paillier behind the aggregator contract, with decryptors apart from the server.

:class:`PaillierSum` is the secure-sum step: clients pack their ring vectors into slots with
headroom for ``max_clients`` inputs, encrypt them and sign the upload; the server multiplies
ciphertexts; the decryptors (one key holder, or a committee of which any ``threshold`` decrypt
together) decrypt only the product of enough signed uploads of the current round.
:class:`PaillierAggregator` plugs it into the shared pipeline with the shared
:class:`~secagg.encoding.UpdateEncoding`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Sequence

from protocols.aggregators.inputs import RoundInputs
from protocols.aggregators.pipeline import (
    Pipeline,
    SumOutcome,
    SumRequest,
    declared_max_weight,
    ring_inputs,
)
from protocols.defaults import DEFAULT_CLIP, DEFAULT_VALUE_BITS
from protocols.graph import ORDER_SEED_BYTES
from protocols.identity import TrustedRoster
from protocols.messages import MAX_DECRYPTORS
from protocols.paillier import (
    DecryptionSide,
    Decryptor,
    DecryptorSettings,
    KeyHolder,
    PaillierParams,
    PaillierPublic,
    PaillierSimulator,
)
from protocols.simulate import SimulationReport
from secagg.encoding import QuantizationScheme, UpdateEncoding
from secagg.errors import ParameterError
from secagg.hazmat.paillier import ThresholdKeyset, generate_threshold_keypair
from secagg.hazmat.sign import IdentityKey, generate_identity
from secagg.paillier_keys import PaillierKeypair, RandomnessMode, generate_paillier_keypair

__all__ = ["PaillierAggregator", "PaillierSum", "check_committee"]


def _members(decryption: DecryptionSide) -> list[KeyHolder | Decryptor]:
    return [decryption] if isinstance(decryption, KeyHolder) else list(decryption)


def _check_settings(
    members: int,
    min_contributors: object,
    processes: object,
    keypair: object,
    threshold_keys: object,
) -> None:
    """Refuse settings no round could run with, before any key is generated."""
    if isinstance(min_contributors, bool) or not isinstance(min_contributors, int):
        raise ParameterError(f"min_contributors must be an int, got {min_contributors!r}")
    if min_contributors < 2:
        raise ParameterError("min_contributors must be >= 2: one input is never decrypted")
    if processes is not None and (
        isinstance(processes, bool) or not isinstance(processes, int) or processes < 1
    ):
        raise ParameterError(
            f"processes must be None (every core) or an int >= 1, got {processes!r}"
        )
    if keypair is not None and (members != 1 or not isinstance(keypair, PaillierKeypair)):
        raise ParameterError(
            "keypair= is a single key holder's PaillierKeypair (decryptors=1); a committee "
            "takes threshold_keys="
        )
    if threshold_keys is not None and (
        members == 1 or not isinstance(threshold_keys, ThresholdKeyset)
    ):
        raise ParameterError(
            "threshold_keys= is a committee's ThresholdKeyset (decryptors >= 2); a single key "
            "holder takes keypair="
        )


def check_committee(decryptors: object, threshold: object) -> tuple[int, int]:
    """Check a committee's size m and decryption threshold t; ``None`` means a majority.

    A member decrypts one aggregate per round, so two decryptions of one round need two groups
    of t members with no honest member in common: with c members colluding with the server
    that takes 2t <= m + c. A committee therefore needs a majority, t > m / 2, and it keeps one
    decryption per round against up to c = 2t - m - 1 colluding members (see
    ``docs/threat-model.md``).

    Returns:
        ``(m, t)``; m = 1 is the single key holder (t = 1).

    Raises:
        ParameterError: m outside 1 .. 64, or t outside floor(m/2) + 1 .. m for a committee.
    """
    if isinstance(decryptors, bool) or not isinstance(decryptors, int):
        raise ParameterError(f"decryptors must be an int, got {decryptors!r}")
    if not 1 <= decryptors <= MAX_DECRYPTORS:
        raise ParameterError(f"decryptors must lie in 1 .. {MAX_DECRYPTORS}, got {decryptors}")
    if threshold is None:
        threshold = decryptors // 2 + 1
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise ParameterError(f"decryption_threshold must be an int, got {threshold!r}")
    if decryptors == 1:
        if threshold != 1:
            raise ParameterError("a single key holder decrypts alone: decryption_threshold=1")
        return 1, 1
    if not 2 * threshold > decryptors or threshold > decryptors:
        raise ParameterError(
            f"decryption_threshold must lie in {decryptors // 2 + 1} .. {decryptors} for a "
            f"committee of {decryptors}, got {threshold}: with at most half the members, two "
            "disjoint groups could each decrypt a different subset of one round"
        )
    return decryptors, threshold


class PaillierSum:
    """The secure-sum step of a Paillier round (one session, a fresh round id per call).

    The decryptors (one key holder, or every member of the committee) run in-process here, each
    as its own party. The simulated trusted setup enrols every client the first time it takes
    part: it draws the client's identity key and adds it to the roster the server and the
    decryptors trust.

    Args:
        keys: the single key holder's key pair, or the committee's key set.
        value_bits, max_clients, min_contributors: the packing and the decryptors' rule.
        mode, processes: encryption randomness and worker processes.
        through_wire: round-trip every message through the binary codec.
    """

    def __init__(
        self,
        keys: PaillierKeypair | ThresholdKeyset,
        *,
        value_bits: int,
        max_clients: int,
        min_contributors: int,
        mode: RandomnessMode,
        processes: int | None,
        through_wire: bool,
    ) -> None:
        self.keys = keys
        self.session_id = secrets.token_bytes(16)
        self.value_bits = value_bits
        self.max_clients = max_clients
        self.min_contributors = min_contributors
        self.mode = mode
        self.processes = processes
        self.through_wire = through_wire
        #: Committee indices that never answer (a test and benchmark knob).
        self.decryptor_dropouts: Collection[int] = ()
        self.last_report: SimulationReport | None = None
        #: Called after each protocol step of a round (a progress bar), if set.
        self.on_step: Callable[[], None] | None = None
        self.decryption: DecryptionSide | None = None
        self.roster: TrustedRoster | None = None
        self._identities: dict[int, IdentityKey] = {}
        self._seed = secrets.token_bytes(ORDER_SEED_BYTES)
        self._next_round = 0

    @property
    def public(self) -> PaillierPublic:
        """The key clients encrypt under: the key holder's, or the committee's."""
        keys = self.keys
        return keys.public if isinstance(keys, ThresholdKeyset) else keys.public_key

    def enrol(self, ids: Sequence[int]) -> DecryptionSide:
        """Add clients seen for the first time to the roster everyone trusts; the decryptors.

        The decryptors are made at the first round (a roster needs its first clients) and then
        keep their state, the last round they decrypted included, for the whole session.
        """
        new = [u for u in ids if u not in self._identities]
        if new or self.roster is None:
            self._identities.update({u: generate_identity() for u in new})
            keys = {u: key.public_bytes for u, key in self._identities.items()}
            self.roster = TrustedRoster(keys, self._seed)
        if self.decryption is None:
            self.decryption = self._make_decryption(self.roster)
        for member in _members(self.decryption):
            member.guard.roster = self.roster
        return self.decryption

    def _make_decryption(self, roster: TrustedRoster) -> DecryptionSide:
        settings = DecryptorSettings(
            session_id=self.session_id,
            roster=roster,
            value_bits=self.value_bits,
            max_clients=self.max_clients,
            min_contributors=self.min_contributors,
            processes=self.processes,
        )
        return settings.build(self.keys)

    def run(self, request: SumRequest) -> SumOutcome:
        """One Paillier round over the encoded inputs; the caller learns only the sum."""
        ids = tuple(sorted(request.inputs))
        if len(ids) < self.min_contributors:
            raise ParameterError(
                f"{len(ids)} client(s) take part, but the decryptors decrypt only sums of at "
                f"least min_contributors={self.min_contributors} signed inputs"
            )
        decryption = self.enrol(ids)
        assert self.roster is not None  # set by enrol
        params = PaillierParams(
            session_id=self.session_id,
            round_id=self._next_round,
            clients=ids,
            vector_length=request.vector_length,
            value_bits=self.value_bits,
            max_clients=self.max_clients,
            min_contributors=self.min_contributors,
        )
        self._next_round += 1
        report = PaillierSimulator(
            params,
            ring_inputs(request),
            decryption,
            identities=self._identities,
            roster=self.roster,
            mode=self.mode,
            processes=self.processes,
            dropouts=request.dropouts,
            decryptor_dropouts=self.decryptor_dropouts,
            through_wire=self.through_wire,
            on_step=self.on_step,
        ).run()
        self.last_report = report
        if report.error is not None:
            raise report.error
        assert report.result is not None
        return SumOutcome(
            report.result.vector, report.result.survivors, report.result.dropped, report
        )


class PaillierAggregator(Pipeline):
    """Secure aggregation with packed Paillier encryption and decryptors apart from the server.

    Clients clip, weight and quantize exactly as for masking, pack their values into slots with
    headroom for ``max_clients`` inputs, encrypt under the decryptors' public key and sign the
    upload; the in-process server multiplies ciphertexts. With ``decryptors=1`` one key holder
    decrypts the aggregate; with ``decryptors=m`` a committee holds shares of the key (trusted
    dealer) and any ``decryption_threshold`` of them decrypt together, so no single party can
    decrypt anything. Decryptors decrypt one aggregate per round, only as the product of at
    least ``min_contributors`` signed uploads of that round.

    Args:
        clip, value_bits: quantization, as for :class:`MaskingAggregator` (defaults from
            :mod:`protocols.defaults`).
        max_weight: the largest weight a client may have; required when weights are given.
        key_bits: 2048 (default) or 3072.
        mode: ``RandomnessMode.FRESH`` (default, standard assumption) or ``DJN`` (faster,
            extra assumption; see :class:`secagg.hazmat.paillier.DJNParameters`).
        max_clients: slot headroom: the most inputs one aggregate may sum.
        min_contributors: the decryptors refuse aggregates of fewer signed uploads (>= 2).
        decryptors: m, the committee size (1: a single key holder).
        decryption_threshold: t, how many members decrypt together (default: a majority).
        processes: worker processes for encryption and decryption (None: every core).
        keypair: an existing single-holder key pair (tests pass small keys).
        threshold_keys: an existing committee key set (tests pass small keys).
        through_wire: round-trip every message through the binary codec.
    """

    name = "paillier"

    def __init__(
        self,
        *,
        clip: float = DEFAULT_CLIP,
        value_bits: int = DEFAULT_VALUE_BITS,
        max_weight: float | None = None,
        key_bits: int = 2048,
        mode: RandomnessMode = RandomnessMode.FRESH,
        max_clients: int = 1024,
        min_contributors: int = 2,
        decryptors: int = 1,
        decryption_threshold: int | None = None,
        processes: int | None = 1,
        keypair: PaillierKeypair | None = None,
        threshold_keys: ThresholdKeyset | None = None,
        through_wire: bool = False,
    ) -> None:
        self.scheme = QuantizationScheme(clip=clip, value_bits=value_bits, num_clients=max_clients)
        UpdateEncoding(self.scheme, max_weight)
        self.clip = clip
        self.value_bits = value_bits
        self.max_weight = max_weight
        members, threshold = check_committee(decryptors, decryption_threshold)
        _check_settings(members, min_contributors, processes, keypair, threshold_keys)
        keys: PaillierKeypair | ThresholdKeyset
        if members == 1:
            keys = keypair or generate_paillier_keypair(key_bits, mode=mode)
        else:
            keys = threshold_keys or generate_threshold_keypair(
                key_bits, decryptors=members, threshold=threshold, djn=mode is RandomnessMode.DJN
            )
            if (keys.public.decryptors, keys.public.threshold) != (members, threshold):
                raise ParameterError(
                    f"threshold_keys are {keys.public.threshold}-of-{keys.public.decryptors},"
                    f" not {threshold}-of-{members}"
                )
        self.decryptors = members
        self.decryption_threshold = threshold
        self.secure_sum: PaillierSum = PaillierSum(
            keys,
            value_bits=value_bits,
            max_clients=max_clients,
            min_contributors=min_contributors,
            mode=mode,
            processes=processes,
            through_wire=through_wire,
        )

    @property
    def key_holder(self) -> KeyHolder:
        """The single key holder (``decryptors=1``), made at the first round."""
        decryption = self.secure_sum.decryption
        if not isinstance(decryption, KeyHolder):
            raise ParameterError(
                "no single key holder: the committee decrypts, or no round has run yet"
            )
        return decryption

    @property
    def max_clients(self) -> int:
        """Slot headroom: the most inputs one aggregate may sum."""
        return self.secure_sum.max_clients

    @property
    def min_contributors(self) -> int:
        """The fewest inputs the key holder decrypts an aggregate of."""
        return self.secure_sum.min_contributors

    @property
    def mode(self) -> RandomnessMode:
        """How clients draw their encryption randomness."""
        return self.secure_sum.mode

    @property
    def processes(self) -> int | None:
        """Worker processes for encryption and decryption."""
        return self.secure_sum.processes

    @property
    def through_wire(self) -> bool:
        """Whether every message round-trips through the binary codec."""
        return self.secure_sum.through_wire

    def codec(self, inputs: RoundInputs) -> UpdateEncoding:
        """The shared update encoding, with headroom for ``max_clients`` inputs."""
        most = self.max_clients
        if len(inputs.updates) > most:
            raise ParameterError(
                f"{len(inputs.updates)} clients exceed max_clients={most}, the packing headroom"
            )
        return UpdateEncoding(self.scheme, declared_max_weight(self.max_weight, inputs))
