"""Measure a training round of the demo app on several backends, on one real local deployment.

Starts a SuperLink and ``--nodes`` SuperNodes on loopback (see :mod:`local_deployment`), then runs
the same app (same model, data, settings, node processes) once per backend, one after the other:
``plain`` (Flower's FedAvg, unprotected), ``flower-secagg+`` (Flower's ``SecAggPlusWorkflow`` +
``secaggplus_mod``, same graph, threshold, clipping, quantization and timeout as ours) and our
``secagg+`` / ``secagg`` / ``paillier``. A round's time is measured inside the ServerApp from the
start of the train configuration to the aggregate (evaluation is switched off).

Run from the repository root::

    python demos/flower_app/measure_round_time.py --nodes 4 --rounds 3 \\
        --backends plain flower-secagg+ secagg+ [--threat-model semi-honest] [--sparse]

SecAgg and SecAgg+ run in the active threat model by default: the script writes the identity
keys and the roster into its temporary directory and names them in each node's config. With
``paillier`` among the backends it also deals the Paillier keys there (``--decryptors M
--decryption-threshold T``; the ServerApp runs the decryptors, the nodes pin the public key
file), which needs the active model's keys.

Flower's SuperLink and SuperNodes poll every 3 s and start a process per message, so rounds of
four protocol stages cost tens of seconds whatever the cryptography does; compare backends within
one invocation only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

# Run as a script, so this directory is on sys.path.
from local_deployment import LocalDeployment, deployment_node_configs

APP_DIR = Path(__file__).resolve().parent
BACKENDS = ("plain", "flower-secagg+", "secagg+", "secagg", "paillier")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=["plain", "flower-secagg+", "secagg+"]
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per protocol round, s")
    parser.add_argument(
        "--threat-model",
        choices=("active", "semi-honest"),
        default="active",
        help="of secagg and secagg+ (active: the nodes get identity keys and a roster)",
    )
    parser.add_argument(
        "--decryptors", type=int, default=1, help="paillier: decryptors (1: a single key holder)"
    )
    parser.add_argument(
        "--decryption-threshold", type=int, default=None, help="paillier: t of the decryptors"
    )
    parser.add_argument(
        "--sparse",
        action="store_true",
        help="also run each of secagg / secagg+ in sparse rounds (support sketch, then the "
        "announced item rows), labelled 'secagg+ sparse'",
    )
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    if "paillier" in args.backends and args.threat_model != "active":
        parser.error("paillier signs its uploads: it needs the active model's keys")
    return args


def main() -> None:
    """Run every backend and print one line each."""
    args = parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="secagg-flower-") as tmp:
        workdir = Path(tmp)
        key_dir = workdir / "keys" if args.threat_model == "active" else None
        paillier = "paillier" in args.backends
        configs, roster = deployment_node_configs(
            args.nodes,
            key_dir=key_dir,
            decryptors=args.decryptors if paillier else None,
            decryption_threshold=args.decryption_threshold,
        )
        trust = {"threat-model": args.threat_model, "roster": str(roster or "")}
        if paillier:
            trust["paillier-keys"] = str(key_dir)
        with LocalDeployment(
            workdir / "deployment", args.nodes, node_configs=configs
        ) as deployment:
            runs = [
                (backend, sparse)
                for backend in args.backends
                for sparse in (0, 1)
                if not sparse or (args.sparse and backend in ("secagg", "secagg+"))
            ]
            for backend, sparse in runs:
                label = f"{backend} sparse" if sparse else backend
                report_path = workdir / f"{backend}-{sparse}.json"
                run = deployment.submit(
                    APP_DIR,
                    {
                        **trust,
                        "backend": backend,
                        "sparse": sparse,
                        "num-server-rounds": args.rounds,
                        "min-nodes": args.nodes,
                        "fraction-evaluate": 0.0,
                        "timeout": args.timeout,
                        "upload-timeout": args.timeout,
                        "result-path": str(report_path),
                    },
                )
                outcome = deployment.wait(run, timeout=args.rounds * 8 * args.timeout + 120)
                if outcome.status != "finished:completed" or not report_path.exists():
                    print(f"{label}: run {outcome.status}\n{outcome.output[-3000:]}")
                    rows.append({"backend": label, "status": outcome.status})
                    continue
                seconds = [r["seconds"] for r in json.loads(report_path.read_text())["rounds"]]
                rows.append({"backend": label, "status": outcome.status, "seconds": seconds})
                median = statistics.median(seconds)
                print(
                    f"{label:>15}: {len(seconds)} rounds, median {median:6.1f} s, "
                    f"min {min(seconds):6.1f} s, max {max(seconds):6.1f} s, "
                    f"each {', '.join(f'{s:.1f}' for s in seconds)}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"nodes": args.nodes, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
