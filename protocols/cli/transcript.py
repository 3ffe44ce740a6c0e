"""The human-readable transcript of ``secagg demo``, printed from the demo's JSON summary.

The transcript is rendered from the same dictionary that ``secagg demo --json`` prints, so the
two outputs can never disagree: the round's parameters, who dropped at which protocol round,
what the server saw, whether the sum is exact, and time and bytes per party.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.simulate import ROUND_NAMES

__all__ = ["print_transcript"]

_ROUND_TITLES = (
    "AdvertiseKeys",
    "ShareKeys",
    "MaskedInputCollection",
    "ConsistencyCheck",
    "Unmasking",
)


def print_transcript(summary: Mapping[str, Any]) -> None:
    """Print the transcript of one demo round to stdout.

    Args:
        summary: the object ``secagg demo --json`` prints.
    """
    paillier = summary["protocol"] == "paillier"
    _print_setup(summary)
    _print_dropouts(summary)
    _print_server_view(summary)
    if summary["aborted"]:
        print(f"Round aborted cleanly: {summary['aborted']}")
        return
    _print_outcome(summary, paillier)
    _print_costs(summary)


def _print_setup(s: Mapping[str, Any]) -> None:
    if s["protocol"] == "paillier":
        print(
            f"Paillier round: {s['clients']} clients, d = {s['dim']}, {s['key_bits']}-bit key "
            f"(generated in {s['keygen_seconds']:.1f} s), r^n {s['randomness']}, "
            f"{s['values_per_ciphertext']} values of {s['slot_bits']} bits per ciphertext, "
            f"decryption needs >= {s['threshold']} signed inputs"
        )
    else:
        name = "SecAgg+" if s["protocol"] == "secagg+" else "SecAgg"
        print(
            f"{name} round: {s['clients']} clients, d = {s['dim']}, ring Z_2^{s['modulus_bits']} "
            f"({s['value_bits']}-bit values + headroom), {s['degree']} neighbours each, "
            f"threshold t = {s['threshold']}, {s['threat_model']} server"
        )


def _decryptors(s: Mapping[str, Any]) -> str:
    """'the key holder', or 'any 3 of 5 decryptors'."""
    if s["decryptors"] == 1:
        return "the key holder"
    return f"any {s['decryption_threshold']} of {s['decryptors']} decryptors"


def _print_dropouts(s: Mapping[str, Any]) -> None:
    by_round: dict[int, list[int]] = {}
    for entry in s["dropped"]:
        by_round.setdefault(entry["round"], []).append(entry["client"])
    if s["protocol"] == "paillier":
        lost = sorted(u for r, clients in by_round.items() if r <= 2 for u in clients)
        print(f"  dropped before uploading: {lost if lost else 'none'}")
        return
    for index, title in enumerate(_ROUND_TITLES):
        if index == 3 and s["threat_model"] != "active":
            continue  # a semi-honest round has no consistency round
        lost = by_round.get(index, [])
        print(f"  round {index} {title:<22} dropped: {lost if lost else 'none'}")
    for client, reason in s.get("misbehaved", {}).items():
        print(f"  client {client} misbehaved: {reason}")


def _print_server_view(s: Mapping[str, Any]) -> None:
    if s["protocol"] == "paillier":
        print(
            f"What the server saw (ciphertexts under the key of {_decryptors(s)}; it holds no key):"
        )
        for client, view in s["server_view"].items():
            print(
                f"  client {client:>4}: {view['first_ciphertext_hex']}... "
                f"({view['ciphertext_bytes']} bytes)"
            )
        return
    print("What the server saw in round 2 (masked inputs; chi-square of the top 6 bits):")
    for client, view in s["server_view"].items():
        print(
            f"  client {client:>4}: {view['first_values']} ...  chi2 = {view['chi2']:.1f} "
            f"(df {view['df']}), p ~ {view['p_value']:.3f}"
        )


def _print_outcome(s: Mapping[str, Any], paillier: bool) -> None:
    if paillier:
        if s["decryptors"] == 1:
            who, recomputed = "the key holder decrypted", "which it recomputed itself"
        else:
            who = f"decryptors {s['decryptors_used']} sent verified partial decryptions of"
            recomputed = "which each recomputed itself"
        print(
            f"Decryption: {who} one aggregate of {s['survivors']} signed inputs, {recomputed} "
            f"({s['decryption_seconds']:.2f} s in all); every slot was range-checked."
        )
    else:
        lost = sorted(entry["client"] for entry in s["dropped"] if entry["round"] <= 2)
        recovered = (
            f"pairwise masks of the {len(lost)} client(s) lost before their upload recovered "
            "from the s-shares of their neighbours"
            if lost
            else "no client was lost before its upload, so no pairwise mask needed recovering"
        )
        print(f"Unmasking: self-masks of {s['survivors']} survivors removed; {recovered}.")
    verdict = "YES" if s["exact"] else "NO"
    print(f"Sum equals the plain sum of the survivors' quantized inputs bit for bit: {verdict}")
    print(
        f"Max |decoded - float sum| = {s['max_float_error']:.3g} "
        f"(quantization step {s['quantization_step']:.3g})"
    )


#: A Paillier round's two steps, under the names the simulator files their seconds under.
_PAILLIER_STEPS = (("encrypt+upload", "masked_input"), ("decryption", "unmasking"))


def _print_costs(s: Mapping[str, Any]) -> None:
    columns = _PAILLIER_STEPS if s["protocol"] == "paillier" else tuple((n, n) for n in ROUND_NAMES)
    print(f"\n{'seconds':<14}" + "".join(f"{title:>15}" for title, _ in columns))
    for party in ("server", "client_mean", "client_max"):
        row = s["seconds"][party]
        print(f"{party:<14}" + "".join(f"{row[name]:>15.4f}" for _, name in columns))
    if s["protocol"] == "paillier":
        print(f"{'decryptors':<14}{'':>15}{s['decryption_seconds']:>15.4f}")
    b = s["bytes"]
    print(
        f"\nwall {s['seconds']['wall']:.3f} s; per client: sent {b['client_sent_mean']:.0f} B, "
        f"received {b['client_received_mean']:.0f} B; upload {b['upload_bytes_per_value']:.2f} "
        "B/value"
    )
    if s["client_errors"]:
        print(f"client errors: {s['client_errors']}")
