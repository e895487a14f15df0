"""`make bench`: how the operator holds up when a fleet rollout creates N EcsReinstall resources at once.

For each N (default 100, 1000, 5000) it runs, against one ECS emulator (reset between runs) and a fresh
kube_emulator per operator run, all as subprocesses on loopback:

1. **operator**: the operator (`python -m ecs_reinstall run`) with a cloud that does not throttle;
2. **operator, limited** (the sizes in `--limit-sizes`): the same with the emulator's rate limit set
   (`--cloud-limit` calls/s over all operations), once with the operator's `--qps` matched to the limit and once
   with it set above the limit, so that 429 answers and Retry-After do the pacing;
3. **peer**: the same reinstalls scripted on the official SDK (bench/sdk_peer.py) in a thread pool, polling every
   job every `--poll-interval` seconds.

It measures time until all Submitted and all Ready, per resource create -> Submitted and job end -> Ready, cloud calls
per reinstall by operation (emulator counters and access log), Kubernetes API calls per reinstall by verb
(kube_emulator request log), and peak RSS and CPU seconds of every process (/proc). Writes
bench/results/bench.json, bench/results/bench.md and PNG plots next to them.

Then, unless `--no-set`, the fleet through one EcsReinstallSet (run_set_bench.py: 1000 servers, maxInFlight 100,
its wall time against N / maxInFlight x D): bench/results/set.json, set.md, set-timeline.png.

    .venv/bin/python bench/run_bench.py [--sizes 100,1000,5000] [--job-seconds 30] [--poll-interval 10] ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import report
import run_set_bench
from stats import ratio, summary

RESULTS = Path(__file__).resolve().parent / "results"
INIT_SECONDS = 1.0  # of D, the job's INIT phase; the rest RUNNING
_ACCESS_LINE = re.compile(r'\[([^\]]+)\] "(GET|POST) (\S+) HTTP/[\d.]+" (\d{3})')


@dataclass(frozen=True)
class RunConfig:
    label: str
    n: int
    job_seconds: float  # D: from acceptance to the job's end
    poll_interval: int
    qps: float
    burst: int
    max_concurrency: int
    cloud_limit: float | None = None  # the emulator's rate limit, calls/s over all operations
    cloud_burst: int = 1
    timeout: float = 900.0
    job_spread: float = 0.25  # each job lasts D * U(1 - spread, 1 + spread) (seeded by the server's index)
    profile: bool = False  # record the operator with py-spy (collapsed stacks next to the run's logs)


def server_id(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


def job_duration(cfg: RunConfig, index: int) -> float:
    """How long server `index`'s job lasts, from acceptance to its end. Real reinstalls vary; with one fixed D a
    script that polls every job in lockstep right after submitting would see every job the moment it ends."""
    draw = random.Random(index).random()
    return round(cfg.job_seconds * (1 - cfg.job_spread + 2 * cfg.job_spread * draw), 3)


def prepare_cloud(ecs: harness.EcsEmulator, cfg: RunConfig) -> None:
    """Reset the emulator, set its rate limit, and register the N servers (SHUTOFF... ACTIVE, stopped first)."""
    limit = {"qps": cfg.cloud_limit, "burst": cfg.cloud_burst} if cfg.cloud_limit else None
    ecs.reset(init_seconds=INIT_SECONDS, job_seconds=cfg.job_seconds - INIT_SECONDS, rate_limit=limit)
    ecs.add_servers(
        {
            "id": server_id(i),
            "status": "ACTIVE",
            "init_seconds": INIT_SECONDS,
            "job_seconds": job_duration(cfg, i) - INIT_SECONDS,
        }
        for i in range(cfg.n)
    )


# --- the ECS emulator's access log: calls per job and per server -------------------------------------------------


class AccessLog:
    """Reads the emulator's access log lines written since `mark()`."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def calls(self) -> list[tuple[int, str, str, int]]:
        """(epoch second, method, path, status) of every ECS API call (not the admin API)."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            text = log.read().decode("utf-8", "replace")
        seconds: dict[str, int] = {}
        calls = []
        for m in _ACCESS_LINE.finditer(text):
            if "/_emulator" in m[3]:
                continue
            if m[1] not in seconds:
                seconds[m[1]] = int(datetime.strptime(m[1], "%d/%b/%Y:%H:%M:%S %z").timestamp())
            calls.append((seconds[m[1]], m[2], m[3], int(m[4])))
        return calls


def calls_per_second(calls: list[tuple[int, str, str, int]], start: float) -> dict[str, list[int]]:
    """Per second since `start`: every call, and the 429 answers (what the cloud's limit counts and refuses)."""
    if not calls:
        return {"all": [], "throttled": []}
    first = int(start)
    span = max(c[0] for c in calls) - first + 1
    every, throttled = [0] * span, [0] * span
    for second, _, _, status in calls:
        if second >= first:
            every[second - first] += 1
            throttled[second - first] += status == 429
    return {"all": every, "throttled": throttled}


def per_resource_calls(calls: list[tuple[int, str, str, int]]) -> dict:
    """Job GETs per job and reinstall POSTs per server."""
    job_gets: Counter = Counter()
    posts: Counter = Counter()
    processed_posts: Counter = Counter()  # not refused by the rate limit (429): the cloud looked at them
    server_gets: Counter = Counter()
    for _, method, path, status in calls:
        parts = path.split("/")
        if method == "GET" and len(parts) == 5 and parts[3] == "jobs":
            job_gets[parts[4]] += 1
        elif method == "POST" and path.endswith("/reinstallos"):
            posts[parts[4]] += 1
            processed_posts[parts[4]] += status != 429
        elif method == "GET" and len(parts) == 5 and parts[3] == "cloudservers":
            server_gets[parts[4]] += 1
    return {
        "job_gets": job_gets,
        "posts": posts,
        "processed_posts": processed_posts,
        "server_gets": server_gets,
    }


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def job_ends(records: list[dict], cfg: RunConfig) -> dict[str, tuple[str, float, float]]:
    """server ID -> (job ID, accepted at, job end) from the emulator's accepted reinstalls."""
    ends = {}
    for record in records:
        accepted = _parse_time(record["at"])
        index = int(record["server_id"].rsplit("-", 1)[1])
        ends[record["server_id"]] = (record["job_id"], accepted, accepted + job_duration(cfg, index))
    return ends


def posts_per_reinstall(per: dict, counters: dict) -> dict:
    return {
        "sent_max": max(per["posts"].values(), default=0),
        "processed_max": max(per["processed_posts"].values(), default=0),  # all but the 429-refused ones
        "accepted_max": max(counters["accepted_reinstalls"].values(), default=0),
        "accepted_total": sum(counters["accepted_reinstalls"].values()),
    }


def job_get_budget(cfg: RunConfig, index: int) -> int:
    """The target: no more job GETs than ceil(D / pollIntervalSeconds) + 2, with this job's own D."""
    return math.ceil(job_duration(cfg, index) / cfg.poll_interval) + 2


def job_gets(per: dict, ends: dict, cfg: RunConfig) -> dict:
    counts, over = [], []
    for server, (job_id, _, _) in ends.items():
        index = int(server.rsplit("-", 1)[1])
        count = per["job_gets"].get(job_id, 0)
        counts.append(count)
        if count > job_get_budget(cfg, index):
            over.append({"server": server, "gets": count, "budget": job_get_budget(cfg, index)})
    return {
        **summary(counts, 2),
        "budget_for_D": math.ceil(cfg.job_seconds / cfg.poll_interval) + 2,
        "budget_max": math.ceil(cfg.job_seconds * (1 + cfg.job_spread) / cfg.poll_interval) + 2,
        "over_budget": len(over),
        "over_budget_examples": over[:5],
    }


def submissions_per_second(accepted_times: list[float], start: float) -> list[int]:
    if not accepted_times:
        return []
    buckets = Counter(int(t - start) for t in accepted_times)
    return [buckets.get(second, 0) for second in range(max(buckets) + 1)]


def calls_per_operation(counters: dict, n: int) -> dict:
    by_operation: Counter = Counter()
    by_status: dict[str, dict[str, int]] = defaultdict(dict)
    for key, count in counters["requests"].items():
        operation, _, status = key.rpartition(":")
        by_operation[operation] += count
        by_status[operation][status] = count
    return {
        "total": dict(by_operation),
        "per_reinstall": {op: round(count / n, 3) for op, count in by_operation.items()},
        "by_status": dict(by_status),
        "throttled_429": counters.get("throttled", 0),
    }


def start_profiler(pid: int, run_dir: Path) -> subprocess.Popen:
    """py-spy on the operator (collapsed stacks, 100 samples/s, without pausing it)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    out = run_dir / "operator-profile.txt"
    print(f"  profiling the operator into {out}", flush=True)
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--nonblocking", "--gil",
         "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# --- one operator run ------------------------------------------------------------------------------------------


def operator_run(ecs: harness.EcsEmulator, access: AccessLog, workdir: Path, cfg: RunConfig) -> dict:
    print(f"[{cfg.label}] N={cfg.n}: operator (qps {cfg.qps}, cloud limit {cfg.cloud_limit})", flush=True)
    run_dir = workdir / cfg.label
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_cloud(ecs, cfg)
    kube = harness.KubeEmulator(run_dir)
    kube.start()
    operator: harness.Operator | None = None
    watch: harness.ResourceWatch | None = None
    try:
        kube.wait_crd_served()
        kube.setup_namespaces_and_secrets()
        operator = harness.Operator(
            run_dir,
            kube,
            ecs.url,
            args={"qps": cfg.qps, "burst": cfg.burst, "max-concurrency": cfg.max_concurrency},
        )
        with harness.ProcessSampler(0.5) as sampler:
            sampler.track("ecs-emulator", ecs.daemon.pid)
            sampler.track("kube-emulator", kube.daemon.pid)
            sampler.track("bench", os.getpid())
            operator.start()
            sampler.track("operator", operator.daemon.pid)
            profiler = start_profiler(operator.daemon.pid, run_dir) if cfg.profile else None
            watch = harness.ResourceWatch(kube).start()
            baseline = {name: track.cpu_seconds for name, track in sampler.tracks.items()}
            kube.reset_counters()
            access.mark()
            bodies = [
                harness.reinstall_body(f"r-{i:05d}", server_id(i), cfg.poll_interval) for i in range(cfg.n)
            ]
            t0 = time.time()
            created = harness.create_all(kube, bodies)
            created_in = time.time() - t0
            deadline = time.monotonic() + cfg.timeout
            last_print = 0.0
            while True:
                terminal = watch.count(lambda t: t.terminal is not None)
                if terminal >= cfg.n or time.monotonic() > deadline or not operator.daemon.alive():
                    break
                if time.monotonic() - last_print > 10:
                    submitted = watch.count(lambda t: t.submitted is not None)
                    print(
                        f"  t={time.time() - t0:6.1f}s submitted {submitted}/{cfg.n} ready {terminal}/{cfg.n}",
                        flush=True,
                    )
                    last_print = time.monotonic()
                time.sleep(0.2)
            t_end = time.time()
            metrics = harness.parse_metrics(operator.metrics_text())
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        counters = ecs.counters()
        records = ecs.reinstalls()
        calls = access.calls()
        kube_requests = kube.requests()
        exit_code = operator.stop()
    finally:
        if watch is not None:
            watch.stop()
        if operator is not None:
            operator.stop()
        kube.stop()

    times = watch.snapshot()
    ends = job_ends(records, cfg)
    create_to_submitted = [
        t.submitted - created[name] for name, t in times.items() if t.submitted and name in created
    ]
    end_to_ready = []
    for i in range(cfg.n):
        t = times.get(f"r-{i:05d}")
        end = ends.get(server_id(i))
        if t and t.terminal and end:
            end_to_ready.append(t.terminal - end[2])
    submitted_at = [t.submitted for t in times.values() if t.submitted]
    ready_at = [t.terminal for t in times.values() if t.terminal]
    phases = Counter(t.phase for t in times.values())
    per = per_resource_calls(calls)
    own = {("create", "ecsreinstalls", ""): cfg.n, ("list", "ecsreinstalls", ""): watch.restarts}
    kube_calls = harness.kube_calls_by_verb(kube_requests, exclude=own)
    accepted_times = [e[1] for e in ends.values()]
    tracks = sampler.tracks
    cpu = {name: round(track.cpu_seconds - baseline.get(name, 0.0), 2) for name, track in tracks.items()}
    window = (accepted_times and (max(accepted_times) - min(accepted_times))) or None
    result = {
        "config": asdict(cfg),
        "created_in_s": round(created_in, 3),
        "all_submitted_s": round(max(submitted_at) - t0, 3) if len(submitted_at) == cfg.n else None,
        "all_ready_s": round(max(ready_at) - t0, 3) if len(ready_at) == cfg.n else None,
        "wall_s": round(t_end - t0, 3),
        "phases": dict(phases),
        "submitted": len(submitted_at),
        "ready": len(ready_at),
        "create_to_submitted_s": summary(create_to_submitted),
        "job_end_to_ready_s": summary(end_to_ready),
        "cloud_calls": calls_per_operation(counters, cfg.n),
        "posts_per_reinstall": posts_per_reinstall(per, counters),
        "job_gets_per_reinstall": job_gets(per, ends, cfg),
        "kube_calls": {
            "total": kube_calls,
            "per_reinstall": {k: round(v / cfg.n, 3) for k, v in kube_calls.items()},
        },
        "submission_rate": {
            "accepted_per_second": round(len(accepted_times) / window, 2) if window else None,
            "first_to_last_accept_s": round(window, 3) if window else None,
            "per_second": submissions_per_second(accepted_times, t0),
            "cloud_calls_per_second": calls_per_second(calls, t0),
        },
        "processes": {
            name: {"cpu_s": cpu[name], "peak_rss_mb": round(track.peak_rss_mb, 1)}
            for name, track in tracks.items()
        },
        "operator_rss_timeline": [
            (round(t - t0, 2), round(rss, 1)) for t, rss, _ in tracks["operator"].samples
        ],
        "operator_cpu_timeline": [(round(t - t0, 2), round(c, 2)) for t, _, c in tracks["operator"].samples],
        "operator_metrics": {k: v for k, v in metrics.items() if "_bucket" not in k},
        "operator_exit_code": exit_code,
        "watch": {"events": watch.events, "restarts": watch.restarts},
        "samples": {
            "create_to_submitted": [round(v, 3) for v in create_to_submitted],
            "job_end_to_ready": [round(v, 3) for v in end_to_ready],
            "accepted_at": sorted(round(t - t0, 3) for t in accepted_times),
        },
    }
    print(
        f"  all Submitted {result['all_submitted_s']} s, all Ready {result['all_ready_s']} s, "
        f"end->Ready p99 {result['job_end_to_ready_s'].get('p99')} s, operator CPU {cpu['operator']} s, "
        f"peak RSS {result['processes']['operator']['peak_rss_mb']} MiB, 429s {counters.get('throttled')}",
        flush=True,
    )
    return result


# --- the SDK peer ----------------------------------------------------------------------------------------------


def peer_run(
    ecs: harness.EcsEmulator, access: AccessLog, workdir: Path, cfg: RunConfig, threads: int
) -> dict:
    print(f"[{cfg.label}] N={cfg.n}: SDK peer ({threads} threads)", flush=True)
    run_dir = workdir / cfg.label
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_cloud(ecs, cfg)
    servers_file = run_dir / "servers.txt"
    servers_file.write_text("\n".join(server_id(i) for i in range(cfg.n)) + "\n")
    output = run_dir / "peer.json"
    env = {
        **os.environ,
        "BENCH_AK": harness.ACCESS_KEY,
        "BENCH_SK": harness.SECRET_KEY,
        "BENCH_PASSWORD": harness.PASSWORD,
    }
    daemon = harness.Daemon(
        "sdk-peer",
        [harness.PYTHON, str(Path(__file__).resolve().parent / "sdk_peer.py"), "--endpoint", ecs.url,
         "--project-id", harness.PROJECT_ID, "--servers", str(servers_file), "--threads", str(threads),
         "--poll-interval", str(cfg.poll_interval), "--output", str(output)],
        run_dir / "peer.log",
        env=env,
    )  # fmt: skip
    access.mark()
    with harness.ProcessSampler(0.5) as sampler:
        sampler.track("ecs-emulator", ecs.daemon.pid)
        baseline = sampler.tracks["ecs-emulator"].cpu_seconds
        t0 = time.time()
        daemon.start()
        sampler.track("sdk-peer", daemon.pid)
        try:
            assert daemon.proc is not None
            daemon.proc.wait(cfg.timeout)
        finally:
            daemon.stop()
    if daemon.proc is None or daemon.proc.returncode != 0:
        raise RuntimeError(f"the SDK peer failed: see {run_dir / 'peer.log'}")
    data = json.loads(output.read_text())
    counters = ecs.counters()
    ends = job_ends(ecs.reinstalls(), cfg)
    peer_calls = access.calls()
    per = per_resource_calls(peer_calls)
    by_server = {s["server_id"]: s for s in data["submits"]}
    create_to_submitted = [s["accepted"] - data["started"] for s in data["submits"]]
    end_to_ready = []
    for server, (job_id, _, end) in ends.items():
        seen = data["finished"].get(job_id)
        if seen and server in by_server:
            end_to_ready.append(seen["seen"] - end)
    accepted_times = [e[1] for e in ends.values()]
    window = (accepted_times and (max(accepted_times) - min(accepted_times))) or None
    peer_track = sampler.tracks["sdk-peer"]
    result = {
        "config": {**asdict(cfg), "threads": threads},
        "all_submitted_s": round(data["all_submitted"] - data["started"], 3),
        "all_ready_s": round(max(f["seen"] for f in data["finished"].values()) - data["started"], 3),
        "wall_s": round(data["all_done"] - t0, 3),
        "finished": len(data["finished"]),
        "create_to_submitted_s": summary(create_to_submitted),
        "job_end_to_ready_s": summary(end_to_ready),
        "cloud_calls": calls_per_operation(counters, cfg.n),
        "posts_per_reinstall": posts_per_reinstall(per, counters),
        "job_gets_per_reinstall": job_gets(per, ends, cfg),
        "submission_rate": {
            "accepted_per_second": round(len(accepted_times) / window, 2) if window else None,
            "per_second": submissions_per_second(accepted_times, data["started"]),
            "cloud_calls_per_second": calls_per_second(peer_calls, data["started"]),
        },
        "processes": {
            "sdk-peer": {
                "cpu_s": round(peer_track.cpu_seconds, 2),
                "peak_rss_mb": round(peer_track.peak_rss_mb, 1),
            },
            "ecs-emulator": {
                "cpu_s": round(sampler.tracks["ecs-emulator"].cpu_seconds - baseline, 2),
                "peak_rss_mb": round(sampler.tracks["ecs-emulator"].peak_rss_mb, 1),
            },
        },
        "peer_rss_timeline": [(round(t - t0, 2), round(rss, 1)) for t, rss, _ in peer_track.samples],
        "peer_calls": data["calls"],
        "samples": {
            "create_to_submitted": [round(v, 3) for v in create_to_submitted],
            "job_end_to_ready": [round(v, 3) for v in end_to_ready],
            "accepted_at": sorted(round(t - data["started"], 3) for t in accepted_times),
        },
    }
    print(
        f"  all Submitted {result['all_submitted_s']} s, all Ready {result['all_ready_s']} s, "
        f"end->Ready p99 {result['job_end_to_ready_s'].get('p99')} s, CPU {result['processes']['sdk-peer']['cpu_s']} s, "
        f"peak RSS {result['processes']['sdk-peer']['peak_rss_mb']} MiB",
        flush=True,
    )
    return result


def comparison(ours: dict, peer: dict) -> dict:
    """Our figures over the peer's: below 1 is better for us (fewer seconds, calls, CPU, memory)."""
    our_calls = sum(ours["cloud_calls"]["total"].values())
    peer_calls = sum(peer["cloud_calls"]["total"].values())
    return {
        "all_submitted": ratio(ours["all_submitted_s"], peer["all_submitted_s"]),
        "all_ready": ratio(ours["all_ready_s"], peer["all_ready_s"]),
        "job_end_to_ready_p99": ratio(
            ours["job_end_to_ready_s"].get("p99"), peer["job_end_to_ready_s"].get("p99")
        ),
        "cloud_calls": ratio(our_calls, peer_calls),
        "cloud_calls_per_reinstall": {
            "ours": round(our_calls / ours["config"]["n"], 3),
            "peer": round(peer_calls / peer["config"]["n"], 3),
        },
        "cpu": ratio(ours["processes"]["operator"]["cpu_s"], peer["processes"]["sdk-peer"]["cpu_s"]),
        "peak_rss": ratio(
            ours["processes"]["operator"]["peak_rss_mb"], peer["processes"]["sdk-peer"]["peak_rss_mb"]
        ),
    }


def git_commit() -> str | None:
    """The commit the operator ran from (with '+dirty' when its sources had local changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=harness.REPO
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "operator"], capture_output=True, text=True, cwd=harness.REPO
        )
    except OSError:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def main() -> int:
    # A SIGTERM (a CI timeout, `kill`) unwinds like an exception, so that every subprocess is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="resource counts N, comma-separated")
    parser.add_argument("--job-seconds", type=float, default=30.0, help="D: each cloud job's duration")
    parser.add_argument(
        "--poll-interval", type=int, default=10, help="spec.pollIntervalSeconds (and the peer's)"
    )
    parser.add_argument("--qps", type=float, default=1000.0, help="operator --qps without a cloud limit")
    parser.add_argument("--burst", type=int, default=200, help="operator --burst without a cloud limit")
    parser.add_argument("--max-concurrency", type=int, default=100, help="operator --max-concurrency")
    parser.add_argument("--cloud-limit", type=float, default=50.0, help="emulator rate limit, calls/s")
    parser.add_argument("--cloud-burst", type=int, default=50, help="emulator rate limit burst")
    parser.add_argument(
        "--limit-sizes", default="1000", help="sizes also run with the cloud limit ('' for none)"
    )
    parser.add_argument("--peer-threads", type=int, default=32, help="the SDK script's thread pool")
    parser.add_argument("--no-peer", action="store_true", help="skip the SDK peer")
    parser.add_argument("--job-spread", type=float, default=0.25, help="jobs last D * U(1-s, 1+s)")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator (needs py-spy)")
    parser.add_argument("--keep-workdir", type=Path, default=None, help="keep logs and profiles here")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for one run, seconds")
    parser.add_argument("--output", default="bench", help="result name: results/<name>.json, .md, -*.png")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-set", action="store_true", help="skip the EcsReinstallSet run (run_set_bench.py)"
    )
    run_set_bench.add_arguments(parser.add_argument_group("the EcsReinstallSet run"), prefix="set-")
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    limit_sizes = {int(s) for s in args.limit_sizes.split(",") if s.strip()}
    started = time.time()
    commit = git_commit()  # the operator's code as the runs start (each run starts the operator afresh)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ecs-bench-") as tmp:
        workdir = args.keep_workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ecs = harness.EcsEmulator(workdir)
        ecs.daemon.argv.append("--access-log")
        ecs.start()
        access = AccessLog(ecs.daemon.log)
        try:
            for n in sizes:
                entry: dict = {"n": n}
                base = RunConfig(
                    label=f"n{n}-operator",
                    n=n,
                    job_seconds=args.job_seconds,
                    poll_interval=args.poll_interval,
                    qps=args.qps,
                    burst=args.burst,
                    max_concurrency=args.max_concurrency,
                    timeout=args.timeout,
                    job_spread=args.job_spread,
                    profile=args.profile,
                )
                entry["operator"] = operator_run(ecs, access, workdir, base)
                if not args.no_peer:
                    peer_cfg = RunConfig(**{**asdict(base), "label": f"n{n}-peer"})
                    entry["peer"] = peer_run(ecs, access, workdir, peer_cfg, args.peer_threads)
                    entry["ratios"] = comparison(entry["operator"], entry["peer"])
                if n in limit_sizes:
                    limited = {
                        **asdict(base),
                        "cloud_limit": args.cloud_limit,
                        "cloud_burst": args.cloud_burst,
                    }
                    for label, qps, burst in (
                        ("limited-qps-matched", args.cloud_limit, args.cloud_burst),
                        ("limited-qps-above", args.qps, args.burst),
                    ):
                        cfg = RunConfig(**{**limited, "label": f"n{n}-{label}", "qps": qps, "burst": burst})
                        entry[label] = operator_run(ecs, access, workdir, cfg)
                    if not args.no_peer:
                        cfg = RunConfig(**{**limited, "label": f"n{n}-limited-peer"})
                        entry["limited-peer"] = peer_run(ecs, access, workdir, cfg, args.peer_threads)
                runs.append(entry)
        finally:
            ecs.stop()

    result = {
        "benchmark": "operator_fleet",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "operator_commit": commit,
        "total_wall_s": round(time.time() - started, 1),
        "arguments": vars(args) | {"results_dir": str(args.results_dir)},
        "environment": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "runs": runs,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    harness.json_dump(args.results_dir / f"{args.output}.json", result)
    report.write_bench_report(result, args.results_dir, args.output)
    print(f"bench: done in {result['total_wall_s']} s; results in {args.results_dir}/{args.output}.*")
    if not args.no_set:
        set_keep = args.keep_workdir / "set" if args.keep_workdir else None
        set_output = "set" if args.output == "bench" else f"{args.output}-set"
        outcome = run_set_bench.run(
            run_set_bench.config_from(args, "set-", profile=args.profile),
            results_dir=args.results_dir,
            output=set_output,
            keep_workdir=set_keep,
        )["run"]
        if not (outcome["completed"] and outcome["concurrency"]["peak_within_max_in_flight"]):
            print("bench: the set run did not complete within the cap (see set.md)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
