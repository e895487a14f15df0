"""`make chaos`: the operator SIGKILLed and restarted at random moments while both APIs misbehave; then every
invariant is checked against what the cloud did (see bench/chaos.py). Exits 1 when an invariant breaks.

    .venv/bin/python bench/run_chaos.py [--resources 300] [--kills 20] [--seed N] [--keep-workdir DIR]

Writes bench/results/chaos.json, chaos.md and chaos-timeline.png (or --output NAME).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chaos
import harness
import report

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    # A SIGTERM (a CI timeout, `kill`) unwinds like an exception, so that every subprocess is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    defaults = chaos.ChaosConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--resources", type=int, default=defaults.n, help="EcsReinstall resources (default 300)"
    )
    parser.add_argument(
        "--kills", type=int, default=defaults.kills, help="SIGKILLs of the operator (default 20)"
    )
    parser.add_argument("--job-seconds", type=float, default=defaults.job_seconds, help="mean job duration")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed of the plan and kills")
    parser.add_argument("--no-ecs-faults", action="store_true", help="no faults in the ECS emulator")
    parser.add_argument("--no-kube-faults", action="store_true", help="no faults in kube_emulator")
    parser.add_argument(
        "--timeout", type=float, default=defaults.timeout, help="longest wait after the kills"
    )
    parser.add_argument(
        "--output", default="chaos", help="result name: results/<name>.json, .md, -timeline.png"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep-workdir", type=Path, default=None, help="keep the logs here")
    args = parser.parse_args()

    cfg = replace(
        defaults,
        n=args.resources,
        kills=args.kills,
        job_seconds=args.job_seconds,
        seed=args.seed,
        ecs_faults=not args.no_ecs_faults,
        kube_faults=not args.no_kube_faults,
        timeout=args.timeout,
    )
    with tempfile.TemporaryDirectory(prefix="ecs-chaos-") as tmp:
        workdir = args.keep_workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = chaos.run_chaos(cfg, workdir, log=lambda text: print(text, flush=True))
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["environment"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    harness.json_dump(args.results_dir / f"{args.output}.json", result)
    report.write_chaos_report(result, args.results_dir, args.output)
    violations = result["violations"]
    print(
        f"chaos: {cfg.n} resources, {len(result['kills'])} kills, {result['operator_starts']} operator starts, "
        f"phases {result['phases']}, accepted reinstalls per resource {result['accepted_reinstalls']}; "
        f"{len(violations)} invariant violation(s); results in {args.results_dir}/{args.output}.*"
    )
    for violation in violations[:20]:
        print(f"  VIOLATION: {violation}")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
