"""`make chaos`: operator processes SIGKILLed, doubled and restarted at random moments, statuses set back and
resources re-created by a "user", servers stopped, resized, renamed... by someone else, job records expiring while
the operator is dead, a leader killed under leader election, while both APIs misbehave; then every invariant is
checked against what the cloud did (see bench/chaos.py). Exits 1 when an invariant breaks.

    .venv/bin/python bench/run_chaos.py [--resources 1000] [--kills 50] [--seed N] [--keep-workdir DIR]

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
        "--resources",
        type=int,
        default=defaults.n,
        help=f"EcsReinstall resources of the writers stage (default {defaults.n})",
    )
    parser.add_argument(
        "--kills",
        type=int,
        default=defaults.kills,
        help=f"SIGKILLs of the operator (default {defaults.kills})",
    )
    parser.add_argument(
        "--waves", type=int, default=defaults.waves, help=f"creation waves (default {defaults.waves})"
    )
    parser.add_argument(
        "--shared-servers",
        type=int,
        default=defaults.shared_servers,
        help=f"resources placed on another resource's server (default {defaults.shared_servers})",
    )
    parser.add_argument(
        "--no-second-operator", action="store_true", help="no second operator process (leader election off)"
    )
    parser.add_argument(
        "--regressions",
        type=int,
        default=defaults.regressions,
        help=f"statuses set back to Pending by hand (default {defaults.regressions})",
    )
    parser.add_argument(
        "--recreates",
        type=int,
        default=defaults.recreates,
        help=f"resources deleted and re-created mid-rollout (default {defaults.recreates})",
    )
    parser.add_argument(
        "--no-other-operations",
        action="store_true",
        help="nobody else operates on the servers (stop, start, reboot, resize, migrate, rename, tag)",
    )
    parser.add_argument(
        "--expiry-windows",
        type=int,
        default=defaults.expiry_windows,
        help=f"kills of the primary during which finished job records expire (default {defaults.expiry_windows}; "
        "0: none)",
    )
    parser.add_argument(
        "--expiry-retention",
        type=float,
        default=defaults.expiry_retention,
        help=f"job_retention_seconds during those kills (default {defaults.expiry_retention:g})",
    )
    parser.add_argument("--no-election", action="store_true", help="no leader-election stage")
    parser.add_argument(
        "--election-resources",
        type=int,
        default=defaults.election_n,
        help=f"resources of the leader-election stage (default {defaults.election_n})",
    )
    parser.add_argument(
        "--election-kills",
        type=int,
        default=defaults.election_kills,
        help=f"leader kills in the leader-election stage (default {defaults.election_kills})",
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
        waves=args.waves,
        shared_servers=args.shared_servers,
        second_operator=not args.no_second_operator,
        regressions=args.regressions,
        recreates=args.recreates,
        other_operations=not args.no_other_operations,
        expiry_windows=args.expiry_windows,
        expiry_retention=args.expiry_retention,
        election=not args.no_election,
        election_n=args.election_resources,
        election_kills=args.election_kills,
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
    takeover = result["takeovers"]
    print(
        f"chaos: {sum(result['expected'].values())} resources, {len(result['kills'])} kills, operator starts "
        f"{result['operator_starts']}, phases {result['phases']}, accepted reinstalls per server "
        f"{result['accepted_reinstalls']}; decided by {result['witnesses']}; X-Client-Token {result['tokens']}; "
        f"takeover (kill -> first status write) {takeover['first_status_write_s']}; "
        f"{len(violations)} invariant violation(s) in {result['wall_s']} s; "
        f"results in {args.results_dir}/{args.output}.*"
    )
    for violation in violations[:20]:
        print(f"  VIOLATION: {violation}")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
