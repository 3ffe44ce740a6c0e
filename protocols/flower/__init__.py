"""Flower integration: secagg's state machines as the secure-aggregation backend of a Flower app.

Why this package exists: Flower's own SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``) masks
with a 32-bit-seeded Mersenne Twister, aborts when a client drops before the upload, waits forever
without a timeout, wraps sums silently, uploads int64 words and hands over both shares of a client
when a server asks. Here the same sans-I/O machines that :mod:`protocols.simulate` drives
(:class:`~protocols.masking.MaskingServer` / :class:`~protocols.masking.MaskingClient`, and the
Paillier roles) run over a real Flower deployment, so a Flower user gets AES-CTR masks, recovery
from dropouts in every round, the client's refusal to reveal both shares, Paillier, wrap-free
rings and ``ceil(k / 8)``-byte uploads. This package is only transport: every protocol decision
stays in the machines, the round's graph and threshold come from
:class:`~protocols.rounds.RoundPolicy` and the float <-> ring rule from
:class:`~secagg.encoding.UpdateEncoding`.

Modules:

* :mod:`protocols.flower.records`: the record codec (protocol messages <-> Flower
  ``ArrayRecord``, the setup's quantization ``ConfigRecord``, the array layout, the session id).
* :mod:`protocols.flower.workflow`: :class:`SecureAggregationWorkflow` (server), one secure,
  weighted FedAvg aggregation per call of :meth:`~SecureAggregationWorkflow.aggregate`, driven
  through a Flower ``Grid`` from a Message-API ``ServerApp`` (``@app.main()``), and
  :class:`SecureRound`, its round driver.
* :mod:`protocols.flower.strategy`: :class:`SecAggFedAvg` (server), Flower's ``FedAvg`` whose
  ``configure_train`` runs the rounds before the upload and whose ``aggregate_train`` runs the
  rest, so ``strategy.start(...)`` works.
* :mod:`protocols.flower.client_mod`: :data:`secagg_mod` / :class:`SecAggMod` (client), a Flower
  Mod answering the protocol messages with the client machine, calling the user's
  ``@app.train()`` function for the upload and keeping the machine in ``context.state`` between
  messages.
* :mod:`protocols.flower.keys`: the deployment's key files (:func:`write_deployment_keys`: one
  private identity key per node, the trusted roster and the Paillier keys;
  :func:`load_decryptors`) and the node's signed identity claim.

Threat models (masking): ``"active"`` (the default on both sides) trusts no message of the
server. Each node holds its own Ed25519 identity key file and the roster file (node config
``secagg-identity-key`` and ``secagg-roster``), signs its keys, checks its peers' signatures,
the public graph and its own minimum threshold, and takes part in the consistency round; the
server's workflow gets the same roster (``SecureAggregationWorkflow(roster="roster.txt")``).
``"semi-honest"`` (``threat_model="semi-honest"`` on the server, node config
``secagg-threat-model="semi-honest"``) needs no keys and trusts the server to follow the
protocol.

What a client uploads for weighted FedAvg (as Flower's SecAgg+ does): with weight ``w`` (the
metric ``weighted_by_key``, e.g. ``num-examples``) in (0, max_weight], its update ``x`` clipped
to ``[-clip, clip]`` and then scaled by ``w / max_weight``, quantized, followed by the weight as
one more ring value (exact for integer weights). The server divides the decoded weighted sum by
the decoded total weight; the result equals Flower's plain FedAvg of the clipped updates up to
quantization. The weight never travels in the clear; other train metrics do (as in Flower), and
the strategy averages them without weights.

Paillier: the decryptors (the single :class:`~protocols.paillier.KeyHolder`, or a committee of
:class:`~protocols.paillier.Decryptor` members of which any t decrypt together) are parties apart
from the server; :class:`SecureAggregationWorkflow` reaches each through a
:class:`DecryptorEndpoint` (an in-process decryptor or a proxy to a remote one), and the demo runs
them inside the ServerApp for convenience only. ``secagg keys DIR --clients N --decryptors M``
deals the keys (:mod:`protocols.keyfiles`). Every node pins the decryptors' public key itself
(``SecAggMod(paillier_public_key=...)`` or node config :data:`NODE_PAILLIER_KEY`); there is no
trust on first use, and a setup under any other key is refused. Paillier uploads are signed, so
its nodes hold identity keys and the roster as in the active model.
"""

from protocols.flower.client_mod import (
    NODE_IDENTITY_KEY,
    NODE_PAILLIER_KEY,
    NODE_ROSTER,
    NODE_THREAT_MODEL,
    SecAggMod,
    secagg_mod,
)
from protocols.flower.keys import DeploymentKeys, load_decryptors, write_deployment_keys
from protocols.flower.records import (
    IDENTIFY_RECORD,
    ROWS_RECORD,
    SETUP_RECORD,
    STATE_RECORD,
    SUPPORT_RECORD,
    WIRE_RECORD,
    flower_session_id,
)
from protocols.flower.strategy import SecAggFedAvg, SparseTables
from protocols.flower.workflow import (
    DecryptorEndpoint,
    SecureAggregationWorkflow,
    SecureRound,
    SecureRoundResult,
)

__all__ = [
    "IDENTIFY_RECORD",
    "NODE_IDENTITY_KEY",
    "NODE_PAILLIER_KEY",
    "NODE_ROSTER",
    "NODE_THREAT_MODEL",
    "ROWS_RECORD",
    "SETUP_RECORD",
    "STATE_RECORD",
    "SUPPORT_RECORD",
    "WIRE_RECORD",
    "DecryptorEndpoint",
    "DeploymentKeys",
    "SecAggFedAvg",
    "SecAggMod",
    "SecureAggregationWorkflow",
    "SecureRound",
    "SecureRoundResult",
    "SparseTables",
    "flower_session_id",
    "load_decryptors",
    "secagg_mod",
    "write_deployment_keys",
]
