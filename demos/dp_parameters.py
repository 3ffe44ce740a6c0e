"""How distributed DP parameters come out for a few privacy targets, as a table.

For each target (epsilon, delta), number of rounds T and client sampling rate q, the noise
multiplier z is calibrated with Google's dp-accounting (RDP accountant, Poisson-sampled Gaussian
composed over T rounds); then the granularity gamma is the finest grid whose sum of n noised
client vectors wraps around the ring Z_{2^k} with probability at most 1e-4. The columns:

    z            central noise standard deviation / L2 sensitivity
    gamma        float value of one ring unit
    bits         ring size k (uint32 up to 32 bits, else uint64)
    wrap         bound on the probability that some coordinate of the sum wraps around
    inflation    float noise relative to an unquantized Gaussian of the same z (>= 1)
    share_sd     standard deviation of one client's noise share, in ring units
    eps_spent    epsilon after T rounds, as the accountant reports it (<= the target)

Rows marked ``WRAP`` would need a larger ring (the warning names the smallest that works).
Run: ``python demos/dp_parameters.py`` (about a minute; ``--quick`` for a smaller table).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import warnings

from secagg.dp import (
    DPWrapAroundWarning,
    Mechanism,
    PrivacyAccountant,
    choose_parameters,
)

DIMENSION = 100_000
CLIENTS_PER_ROUND = 100
CLIP_NORM = 1.0
DELTA = 1e-6

HEADER = (
    f"{'eps':>5} {'rounds':>6} {'q':>6} {'mechanism':>17} {'bits':>4} {'z':>7} "
    f"{'gamma':>10} {'wrap':>9} {'inflation':>9} {'share_sd':>10} {'eps_spent':>9}  note"
)


def row(epsilon: float, rounds: int, sampling_rate: float, mechanism: Mechanism, bits: int) -> str:
    """One line of the table: calibrate, then report what the accountant says."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DPWrapAroundWarning)
        config = choose_parameters(
            target_epsilon=epsilon,
            target_delta=DELTA,
            rounds=rounds,
            sampling_rate=sampling_rate,
            expected_clients=CLIENTS_PER_ROUND,
            dimension=DIMENSION,
            modulus_bits=bits,
            clip_norm=CLIP_NORM,
            mechanism=mechanism,
        )
    wraps = any(issubclass(w.category, DPWrapAroundWarning) for w in caught)
    spent = PrivacyAccountant.for_config(
        config, sampling_rate=sampling_rate, delta=DELTA
    ).epsilon_after(rounds)
    note = f"WRAP: needs {config.minimum_modulus_bits()} bits" if wraps else ""
    return (
        f"{epsilon:>5g} {rounds:>6} {sampling_rate:>6g} {mechanism:>17} {bits:>4} "
        f"{config.noise_multiplier:>7.3f} {config.granularity:>10.3e} "
        f"{config.wrap_probability:>9.2e} {config.noise_inflation:>9.4f} "
        f"{config.local_stddev:>10.3e} {spent:>9.4f}  {note}"
    )


def main() -> None:
    """Print the table for every (epsilon, schedule, ring) combination."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rows only")
    args = parser.parse_args()
    # dp-accounting logs through absl when a fractional RDP order fails to converge at a
    # bracketing guess during calibration; those orders are skipped, so hide the noise.
    logging.getLogger("absl").setLevel(logging.ERROR)

    epsilons = (1.0, 8.0) if args.quick else (1.0, 3.0, 8.0)
    schedules = ((100, 0.01),) if args.quick else ((100, 0.01), (1000, 0.01), (1000, 0.1))
    rings: tuple[tuple[int, Mechanism], ...] = (
        (16, "discrete_gaussian"),
        (32, "discrete_gaussian"),
        (32, "skellam"),
    )
    print(
        f"d = {DIMENSION}, n = {CLIENTS_PER_ROUND} clients per round, clip = {CLIP_NORM}, "
        f"delta = {DELTA}"
    )
    print(HEADER)
    print("-" * len(HEADER))
    for epsilon, (rounds, rate), (bits, mechanism) in itertools.product(epsilons, schedules, rings):
        print(row(epsilon, rounds, rate, mechanism, bits), flush=True)


if __name__ == "__main__":
    main()
