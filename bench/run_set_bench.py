"""The fleet rollout through one EcsReinstallSet: N servers tagged `role=bench`, one set selecting them by tag with
`maxInFlight` M, and its wall time against the ideal N / M x D.

`make bench` runs it after the per-resource runs (`run_bench.py`, unless `--no-set`); alone:

    .venv/bin/python bench/run_set_bench.py [--quick] [--servers 1000] [--max-in-flight 100] [--job-seconds 20]
        [--poll-interval 5] [--job-spread 0.25] [--decoys 20] [--profile] [--keep-workdir DIR] [--output set]

Everything runs as subprocesses on loopback (`harness.py`): the ECS emulator, a kube_emulator serving both CRDs
(`crds/`), and the operator as in production. The N servers (and `--decoys` servers tagged `role=other`, which must
not be touched) are registered in the emulator; every job lasts D x U(1 - s, 1 + s) (seeded per server, as in
run_bench.py). Then one set is created and watched until its phase is Completed.

Measured: the wall time from the set's creation to phase Completed, the ideal N / M x D and the ratio; the time to
the first admission (the set's status) and to the first accepted reinstall (the cloud); the peak and mean number of
reinstalls running in the cloud at once (from the emulator's records: accepted at -> job end; the peak must not
exceed M); where each slot's time goes (admitted -> child seen -> cloud accepted -> job end -> child terminal ->
recorded by the set); cloud calls per reinstall by operation (the emulator's counters); Kubernetes calls of the
operator by verb (the set's passes: one GET of the set and one LIST of its children each); CPU seconds and peak
RSS of every process. Writes bench/results/<output>.json, <output>.md and <output>-timeline.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kubernetes

import harness
from stats import summary

RESULTS = Path(__file__).resolve().parent / "results"
SET_PLURAL = "ecsreinstallsets"
SET_NAME = "bench-fleet"
REVISION = "bench-1"
SELECT_TAG = {"role": "bench"}
DECOY_TAG = {"role": "other"}
INIT_SECONDS = 1.0  # of D, the job's INIT phase; the rest RUNNING (as run_bench.py)
OPERATOR_AGENT = "ecs-reinstall-operator"  # the product of the operator's own Kubernetes client's User-Agent

QUICK = {"servers": 100, "max_in_flight": 10, "job_seconds": 6.0, "poll_interval": 2}


@dataclass(frozen=True)
class SetRunConfig:
    servers: int = 1000
    max_in_flight: int = 100
    job_seconds: float = 20.0  # D: from acceptance to the job's end (mean, see job_spread)
    poll_interval: int = 5  # the template's pollIntervalSeconds
    job_spread: float = 0.25  # each job lasts D * U(1 - spread, 1 + spread) (seeded by the server's index)
    decoys: int = 20  # servers tagged role=other: the selector must leave them alone
    qps: float = 1000.0  # operator --qps/--burst: high, so that only the operator and the set pace the run
    burst: int = 200
    max_concurrency: int = 100
    timeout: float = 1200.0
    profile: bool = False


def server_id(index: int) -> str:
    return f"5e700000-0000-4000-8000-{index:012d}"


def decoy_id(index: int) -> str:
    return f"5e7d0000-0000-4000-8000-{index:012d}"


def job_duration(cfg: SetRunConfig, index: int) -> float:
    draw = random.Random(index).random()
    return round(cfg.job_seconds * (1 - cfg.job_spread + 2 * cfg.job_spread * draw), 3)


def prepare_cloud(ecs: harness.EcsEmulator, cfg: SetRunConfig) -> None:
    """Reset the emulator and register the selected servers (tagged role=bench) and the decoys (role=other)."""
    ecs.reset(init_seconds=INIT_SECONDS, job_seconds=cfg.job_seconds - INIT_SECONDS)
    for i in range(cfg.servers):
        ecs.add_servers(
            [
                {
                    "id": server_id(i),
                    "status": "ACTIVE",
                    "init_seconds": INIT_SECONDS,
                    "job_seconds": job_duration(cfg, i) - INIT_SECONDS,
                }
            ]
        )
        ecs.operate(server_id(i), "tag", set=SELECT_TAG)
    for i in range(cfg.decoys):
        ecs.add_servers([{"id": decoy_id(i), "status": "ACTIVE"}])
        ecs.operate(decoy_id(i), "tag", set=DECOY_TAG)


def set_body(cfg: SetRunConfig) -> dict:
    return {
        "apiVersion": f"{harness.GROUP}/{harness.VERSION}",
        "kind": "EcsReinstallSet",
        "metadata": {"name": SET_NAME, "namespace": harness.NAMESPACE},
        "spec": {
            "selector": {"tags": dict(SELECT_TAG)},
            "template": {
                "adminPasswordSecretRef": {"name": harness.PASSWORD_SECRET},
                "stopServer": True,
                "pollIntervalSeconds": cfg.poll_interval,
            },
            "revision": REVISION,
            "strategy": {"maxInFlight": cfg.max_in_flight, "maxFailures": 0},
        },
    }


# --- watching the set and its children -------------------------------------------------------------------------


class SetWatch:
    """A kubernetes-client watch on the bench's EcsReinstallSet in a daemon thread: every status seen (arrival
    time, phase, counts), when each server was first seen admitted and first seen recorded as finished."""

    def __init__(self, kube: harness.KubeEmulator):
        self.kube = kube
        # (t, phase, admitted, done, inFlight, failedCount) of every status seen
        self.timeline: list[tuple[float, str | None, int, int, int, int]] = []
        self.admitted_at: dict[str, float] = {}
        self.finished_at: dict[str, float] = {}
        self.first_admission: float | None = None
        self.completed_at: float | None = None
        self.last_status: dict = {}
        self.events = 0
        self.restarts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="set-watch", daemon=True)

    def start(self) -> SetWatch:
        self._thread.start()
        self._started.wait(30)
        return self

    def stop(self) -> None:
        self._stop.set()

    def _observe(self, obj: Mapping, now: float) -> None:
        if obj["metadata"]["name"] != SET_NAME:
            return
        status = obj.get("status") or {}
        if status.get("revision") != REVISION:
            return
        admitted = status.get("admitted") or ()
        finished = [
            *(status.get("succeeded") or ()),
            *(f.get("serverId") for f in status.get("failed") or ()),
        ]
        with self._lock:
            self.last_status = status
            self.timeline.append(
                (
                    now,
                    status.get("phase"),
                    len(admitted),
                    int(status.get("done") or 0),
                    int(status.get("inFlight") or 0),
                    int(status.get("failedCount") or 0),
                )
            )
            for server in admitted:
                self.admitted_at.setdefault(server, now)
            for server in finished:
                self.finished_at.setdefault(server, now)
            if admitted and self.first_admission is None:
                self.first_admission = now
            if status.get("phase") == "Completed" and self.completed_at is None:
                self.completed_at = now

    def _loop(self) -> None:
        custom = self.kube.custom
        args = (harness.GROUP, harness.VERSION, harness.NAMESPACE, SET_PLURAL)
        while not self._stop.is_set():
            try:
                listing = custom.list_namespaced_custom_object(*args)
                now = time.time()
                for item in listing["items"]:
                    self._observe(item, now)
                self._started.set()
                stream = kubernetes.watch.Watch().stream(
                    custom.list_namespaced_custom_object,
                    *args,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=120,
                    _request_timeout=150,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    self.events += 1
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(event["object"], time.time())
            except Exception:
                time.sleep(0.2)
            self.restarts += 1

    def latest(self) -> dict:
        with self._lock:
            return dict(self.last_status)


class ChildWatch(harness.ResourceWatch):
    """harness.ResourceWatch (submitted / terminal times of every EcsReinstall) plus when each child was first
    seen and which server it is for."""

    def __init__(self, kube: harness.KubeEmulator):
        super().__init__(kube)
        self.first_seen: dict[str, float] = {}
        self.server_of: dict[str, str] = {}

    def _observe(self, obj: Mapping, now: float) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            self.first_seen.setdefault(name, now)
            self.server_of[name] = (obj.get("spec") or {}).get("serverId") or ""
        super()._observe(obj, now)


# --- figures ------------------------------------------------------------------------------------------------------


def concurrency(records: list[dict]) -> dict:
    """Reinstalls running in the cloud at once, from each accepted request's time to its job's end: the peak, the
    time-weighted mean over [first accept, last end], and the step series."""
    if not records:
        return {"peak": 0, "mean_while_running": None, "busy_seconds": 0.0, "steps": []}
    edges = sorted(
        [(r["at_epoch"], 1) for r in records] + [(r["end_at_epoch"], -1) for r in records],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = peak = 0
    steps = []
    for at, step in edges:
        running += step
        peak = max(peak, running)
        steps.append((at, running))
    busy = sum(r["end_at_epoch"] - r["at_epoch"] for r in records)
    span = edges[-1][0] - edges[0][0]
    return {
        "peak": peak,
        "mean_while_running": round(busy / span, 2) if span > 0 else None,
        "busy_seconds": round(busy, 1),
        "first_accept": edges[0][0],
        "last_end": edges[-1][0],
        "steps": steps,
    }


def calls_per_operation(counters: Mapping, n: int) -> dict:
    by_operation: Counter = Counter()
    by_status: dict[str, dict[str, int]] = defaultdict(dict)
    for key, count in counters["requests"].items():
        operation, _, status = key.rpartition(":")
        by_operation[operation] += count
        by_status[operation][status] = count
    return {
        "total": dict(sorted(by_operation.items())),
        "per_reinstall": {op: round(count / n, 3) for op, count in sorted(by_operation.items())},
        "all_per_reinstall": round(sum(by_operation.values()) / n, 3),
        "by_status": dict(by_status),
        "throttled_429": counters.get("throttled", 0),
    }


def kube_calls_by_client(snapshot: Mapping) -> dict[str, dict[str, int]]:
    """{client product: {'verb resource[/subresource]': n}} from the kube_emulator's request log."""
    calls: dict[str, Counter] = defaultdict(Counter)
    for entry in snapshot.get("requests", ()):
        resource = entry["resource"] + (f"/{entry['subresource']}" if entry["subresource"] else "")
        client = (entry.get("userAgent") or "?").split("/", 1)[0] or "?"
        calls[client][f"{entry['verb']} {resource}"] += entry["count"]
    return {client: dict(sorted(c.items())) for client, c in sorted(calls.items())}


def profile_summary(path: Path, top: int = 15) -> dict | None:
    """From py-spy's collapsed stacks (`--format raw`): the share of samples (with `--gil`: of the GIL held, so of
    CPU) spent inside each of our functions (inclusive) and in each function at the top of a stack (self)."""
    if not path.exists():
        return None
    frame = re.compile(r"^(.*) \((.*?):\d+\)$")
    inclusive: Counter = Counter()
    own: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = []
        for raw in stack.split(";"):
            m = frame.match(raw)
            if m:
                names.append(f"{Path(m[2]).name}:{m[1]}")
        if names:
            own[names[-1]] += count
        for name in set(names):
            if name.startswith(("sets.py:", "rollout.py:", "runner.py:", "kube.py:", "handlers.py:")):
                inclusive[name] += count
    if not total:
        return None

    def share(counter: Counter) -> list[tuple[str, float]]:
        return [(name, round(100 * c / total, 1)) for name, c in counter.most_common(top)]

    return {"samples": total, "inclusive_percent": share(inclusive), "self_percent": share(own)}


def start_profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy on the operator (collapsed stacks, 100 samples/s, GIL holders only, without pausing it)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    print(f"  profiling the operator into {out}", flush=True)
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--nonblocking", "--gil",
         "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# --- the run ------------------------------------------------------------------------------------------------------


def set_run(workdir: Path, cfg: SetRunConfig) -> dict:
    print(
        f"[set] {cfg.servers} servers, maxInFlight {cfg.max_in_flight}, D {cfg.job_seconds} s "
        f"(ideal {cfg.servers / cfg.max_in_flight * cfg.job_seconds:.0f} s), poll {cfg.poll_interval} s",
        flush=True,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    ecs = harness.EcsEmulator(workdir)
    ecs.start()
    kube = harness.KubeEmulator(workdir)
    operator: harness.Operator | None = None
    sets: SetWatch | None = None
    children: ChildWatch | None = None
    profile_out = workdir / "operator-profile.txt"
    try:
        t_setup = time.time()
        prepare_cloud(ecs, cfg)
        print(
            f"  {cfg.servers} + {cfg.decoys} servers registered in {time.time() - t_setup:.1f} s", flush=True
        )
        kube.start()
        kube.wait_crd_served()
        harness.wait_until(
            lambda: _sets_served(kube), 30, "the EcsReinstallSet CRD served (kube_emulator --crds crds/)"
        )
        kube.setup_namespaces_and_secrets()
        operator = harness.Operator(
            workdir,
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
            profiler = start_profiler(operator.daemon.pid, profile_out) if cfg.profile else None
            sets = SetWatch(kube).start()
            children = ChildWatch(kube).start()
            baseline = {name: track.cpu_seconds for name, track in sampler.tracks.items()}
            kube.reset_counters()
            t_sent = time.time()
            kube.custom.create_namespaced_custom_object(
                harness.GROUP, harness.VERSION, harness.NAMESPACE, SET_PLURAL, set_body(cfg)
            )
            t0 = time.time()  # the API confirmed the set's creation
            deadline = time.monotonic() + cfg.timeout
            last_print = 0.0
            while sets.completed_at is None and time.monotonic() < deadline and operator.daemon.alive():
                if time.monotonic() - last_print > 10:
                    s = sets.latest()
                    print(
                        f"  t={time.time() - t0:6.1f}s phase {s.get('phase')} done {s.get('done', 0)}/"
                        f"{s.get('total', '?')} in flight {s.get('inFlight', 0)} failed {s.get('failedCount', 0)}",
                        flush=True,
                    )
                    last_print = time.monotonic()
                time.sleep(0.2)
            t_end = time.time()
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        counters = ecs.counters()
        records = ecs.reinstalls()
        kube_requests = kube.requests()
        final = kube.custom.get_namespaced_custom_object(
            harness.GROUP, harness.VERSION, harness.NAMESPACE, SET_PLURAL, SET_NAME
        )
        exit_code = operator.stop()
    finally:
        for watch in (sets, children):
            if watch is not None:
                watch.stop()
        if operator is not None:
            operator.stop()
        kube.stop()
        ecs.stop()
    return analyse(
        cfg,
        {
            "t_sent": t_sent, "t0": t0, "t_end": t_end, "sets": sets, "children": children, "counters": counters,
            "records": records, "kube_requests": kube_requests, "final": final, "exit_code": exit_code,
            "sampler": sampler, "baseline": baseline, "profile_out": profile_out,
        },
    )  # fmt: skip


def _sets_served(kube: harness.KubeEmulator) -> bool:
    try:
        kube.custom.list_namespaced_custom_object(
            harness.GROUP, harness.VERSION, "default", SET_PLURAL, limit=1
        )
        return True
    except kubernetes.client.exceptions.ApiException:
        return False


def analyse(cfg: SetRunConfig, run: dict) -> dict:
    t0: float = run["t0"]
    sets: SetWatch = run["sets"]
    children: ChildWatch = run["children"]
    records: list[dict] = run["records"]
    selected = {server_id(i): i for i in range(cfg.servers)}
    ours = [r for r in records if r["server_id"] in selected]
    decoys_touched = sorted({r["server_id"] for r in records if r["server_id"] not in selected})
    per_server = Counter(r["server_id"] for r in ours)
    status = run["final"].get("status") or {}
    completed_at = sets.completed_at
    wall = (completed_at - t0) if completed_at else None
    ideal = cfg.servers / cfg.max_in_flight * cfg.job_seconds
    actual_durations = [job_duration(cfg, i) for i in range(cfg.servers)]
    ideal_actual = sum(actual_durations) / cfg.max_in_flight  # the same bound with each job's own D
    conc = concurrency(ours)
    first_accept = conc.get("first_accept")

    # where each slot's time goes: admitted -> child seen -> accepted -> job end -> child terminal -> recorded
    child_times = children.snapshot()
    by_server_child = {
        children.server_of.get(name): (children.first_seen.get(name), t) for name, t in child_times.items()
    }
    accepted = {r["server_id"]: (r["at_epoch"], r["end_at_epoch"]) for r in ours}
    segments: dict[str, list[float]] = defaultdict(list)
    for server in selected:
        admitted = sets.admitted_at.get(server)
        seen, times = by_server_child.get(server, (None, None))
        acc, end = accepted.get(server, (None, None))
        terminal = times.terminal if times else None
        recorded = sets.finished_at.get(server)
        chain = [
            ("admitted_to_child_seen", admitted, seen),
            ("child_seen_to_accepted", seen, acc),
            ("accepted_to_job_end", acc, end),
            ("job_end_to_child_terminal", end, terminal),
            ("child_terminal_to_recorded", terminal, recorded),
            ("slot_admitted_to_recorded", admitted, recorded),
        ]
        for name, start, stop in chain:
            if start is not None and stop is not None:
                segments[name].append(stop - start)
    slot = segments.get("slot_admitted_to_recorded") or []
    mean_slot = sum(slot) / len(slot) if slot else None

    # the set's own view over time, and the cloud's running count, per second since creation
    set_timeline = [
        (round(t - t0, 3), phase, admitted, done, flying, failed)
        for t, phase, admitted, done, flying, failed in sets.timeline
    ]
    kube_calls = kube_calls_by_client(run["kube_requests"])
    operator_calls: Counter = Counter()
    for client in (OPERATOR_AGENT, "kopf"):
        operator_calls.update(kube_calls.get(client, {}))
    own = kube_calls.get(OPERATOR_AGENT, {})
    passes = own.get("get ecsreinstallsets", 0)
    sampler: harness.ProcessSampler = run["sampler"]
    baseline = run["baseline"]
    processes = {
        name: {
            "cpu_s": round(track.cpu_seconds - baseline.get(name, 0.0), 2),
            "peak_rss_mb": round(track.peak_rss_mb, 1),
        }
        for name, track in sampler.tracks.items()
    }
    operator_samples = sampler.tracks["operator"].samples
    phases = Counter(t.phase for t in child_times.values())
    result = {
        "config": asdict(cfg),
        "ideal_s": round(ideal, 1),
        "ideal_from_each_jobs_duration_s": round(ideal_actual, 1),
        "wall_s": round(wall, 2) if wall is not None else None,
        "ratio_to_ideal": round(wall / ideal, 3) if wall is not None else None,
        "create_call_s": round(t0 - run["t_sent"], 3),
        "first_admission_s": round(sets.first_admission - t0, 3) if sets.first_admission else None,
        "first_accept_s": round(first_accept - t0, 3) if first_accept else None,
        "last_job_end_s": round(conc["last_end"] - t0, 3) if ours else None,
        "completed": completed_at is not None,
        "set_status": {
            k: status.get(k)
            for k in ("phase", "total", "done", "inFlight", "failedCount", "progress", "message")
        },
        "children_phases": dict(phases),
        "reinstalls_accepted": len(ours),
        "servers_reinstalled_more_than_once": sum(1 for c in per_server.values() if c > 1),
        "servers_never_reinstalled": cfg.servers - len(per_server),
        "decoys_reinstalled": decoys_touched,
        "concurrency": {
            "peak": conc["peak"],
            "peak_within_max_in_flight": conc["peak"] <= cfg.max_in_flight,
            "mean_while_running": conc["mean_while_running"],
            "mean_over_wall": round(conc["busy_seconds"] / wall, 2) if wall else None,
            "busy_seconds": conc["busy_seconds"],
        },
        "slot_s": {name: summary(values) for name, values in segments.items()},
        "mean_slot_s": round(mean_slot, 3) if mean_slot else None,
        "cloud_calls": calls_per_operation(run["counters"], cfg.servers),
        "kube_calls": {
            "by_client": kube_calls,
            "operator_per_reinstall": {
                k: round(v / cfg.servers, 3) for k, v in sorted(operator_calls.items())
            },
            "set_passes": passes,  # each pass GETs the set once
            "set_passes_per_second": round(passes / wall, 2) if wall else None,
            "children_lists": own.get("list ecsreinstalls", 0),
            "set_status_patches": own.get("patch ecsreinstallsets/status", 0),
        },
        "processes": processes,
        "operator_exit_code": run["exit_code"],
        "set_watch": {"events": sets.events, "restarts": sets.restarts},
        "profile": profile_summary(run["profile_out"]) if cfg.profile else None,
        "timelines": {
            "set": set_timeline,
            "cloud_running": [(round(t - t0, 3), n) for t, n in conc["steps"]],
            "operator_cpu": [(round(t - t0, 2), round(c, 2)) for t, _, c in operator_samples],
            "operator_rss": [(round(t - t0, 2), round(r, 1)) for t, r, _ in operator_samples],
        },
    }
    print(
        f"  wall {result['wall_s']} s vs ideal {result['ideal_s']} s (x{result['ratio_to_ideal']}), first "
        f"admission {result['first_admission_s']} s, peak {conc['peak']} / {cfg.max_in_flight}, mean "
        f"{result['concurrency']['mean_over_wall']}, operator CPU {processes['operator']['cpu_s']} s, peak RSS "
        f"{processes['operator']['peak_rss_mb']} MiB, set passes {passes}",
        flush=True,
    )
    return result


# --- the report ---------------------------------------------------------------------------------------------------


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def plot_timeline(result: Mapping, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cfg = result["config"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    running = result["timelines"]["cloud_running"]
    if running:
        top.step([t for t, _ in running], [n for _, n in running], where="post", label="running in the cloud")
    timeline = result["timelines"]["set"]
    top.plot([row[0] for row in timeline], [row[4] for row in timeline], ".", ms=2, label="status.inFlight")
    top.axhline(cfg["max_in_flight"], color="red", ls="--", lw=1, label="maxInFlight")
    top.set_ylabel("reinstalls at once")
    top.legend(loc="lower center")
    bottom.plot([row[0] for row in timeline], [row[3] for row in timeline], label="status.done")
    ideal = result["ideal_s"]
    bottom.plot([0, ideal], [0, cfg["servers"]], "--", color="gray", label="ideal (N / M x D)")
    bottom.set_xlabel("seconds since the set was created")
    bottom.set_ylabel("servers done")
    bottom.legend(loc="upper left")
    fig.suptitle(
        f"EcsReinstallSet: {cfg['servers']} servers, maxInFlight {cfg['max_in_flight']}, D {cfg['job_seconds']} s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(result: Mapping, directory: Path, name: str) -> Path:
    run = result["run"]
    cfg = run["config"]
    conc = run["concurrency"]
    procs = run["processes"]
    lines = [
        f"# EcsReinstallSet rollout: {cfg['servers']} servers, maxInFlight {cfg['max_in_flight']}",
        "",
        f"Measured {result['measured_at']} at operator commit `{result['operator_commit']}` by "
        f"`bench/run_set_bench.py` ({result['environment']['cpu_count']} CPUs, Python "
        f"{result['environment']['python']}). Every job lasts D x U({1 - cfg['job_spread']:.2f}, "
        f"{1 + cfg['job_spread']:.2f}) with D = {cfg['job_seconds']:g} s (1 s INIT, the rest RUNNING); the "
        f"template polls every {cfg['poll_interval']} s (`pollIntervalSeconds`), stops the server first "
        f"(`stopServer`); the cloud does not throttle; {cfg['decoys']} servers tagged `role=other` are not selected.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| wall time, set created -> phase Completed | **{_fmt(run['wall_s'])} s** |",
        f"| ideal N / maxInFlight x D | {_fmt(run['ideal_s'])} s ({_fmt(run['ideal_from_each_jobs_duration_s'])} s "
        "from each job's own duration) |",
        f"| ratio wall / ideal | **{_fmt(run['ratio_to_ideal'], 2)}** |",
        f"| time to first admission (status.admitted) / first accepted reinstall (cloud) | "
        f"{_fmt(run['first_admission_s'], 2)} s / {_fmt(run['first_accept_s'], 2)} s |",
        f"| last job end -> Completed | {_fmt(_diff(run['wall_s'], run['last_job_end_s']), 2)} s |",
        f"| peak reinstalls running at once in the cloud (must be <= {cfg['max_in_flight']}) | "
        f"**{conc['peak']}** ({'within' if conc['peak_within_max_in_flight'] else 'ABOVE'} the cap) |",
        f"| mean running at once: over the wall time / from first accept to last end | "
        f"{_fmt(conc['mean_over_wall'])} / {_fmt(conc['mean_while_running'])} |",
        f"| mean slot time (admitted -> recorded done by the set) | {_fmt(run['mean_slot_s'], 2)} s "
        f"(D = {cfg['job_seconds']:g} s) |",
        f"| reinstalls accepted / servers twice / never / decoys touched | {run['reinstalls_accepted']} / "
        f"{run['servers_reinstalled_more_than_once']} / {run['servers_never_reinstalled']} / "
        f"{len(run['decoys_reinstalled'])} |",
        f"| final set status | {run['set_status'].get('phase')}, {run['set_status'].get('progress')}, "
        f"{run['set_status'].get('failedCount')} failed |",
        f"| operator CPU / peak RSS | {_fmt(procs['operator']['cpu_s'])} s / "
        f"{_fmt(procs['operator']['peak_rss_mb'])} MiB |",
        f"| kube_emulator CPU / ECS emulator CPU / bench process CPU | {_fmt(procs['kube-emulator']['cpu_s'])} s / "
        f"{_fmt(procs['ecs-emulator']['cpu_s'])} s / {_fmt(procs['bench']['cpu_s'])} s |",
        f"| set passes (GET set) / children LISTs / set status PATCHes | {run['kube_calls']['set_passes']} / "
        f"{run['kube_calls']['children_lists']} / {run['kube_calls']['set_status_patches']} "
        f"({_fmt(run['kube_calls']['set_passes_per_second'], 2)} passes/s) |",
        "",
        "## Where a slot's time goes (seconds, per server)",
        "",
        "| segment | p50 | p95 | max | mean |",
        "|---|---|---|---|---|",
    ]
    for segment, label in (
        ("admitted_to_child_seen", "admitted -> child seen (set creates the child)"),
        ("child_seen_to_accepted", "child seen -> reinstall accepted by the cloud"),
        ("accepted_to_job_end", "accepted -> job end (D)"),
        ("job_end_to_child_terminal", "job end -> child Succeeded (its polls)"),
        ("child_terminal_to_recorded", "child Succeeded -> recorded in the set's status (slot freed)"),
        ("slot_admitted_to_recorded", "**slot: admitted -> recorded**"),
    ):
        s = run["slot_s"].get(segment) or {}
        lines.append(
            f"| {label} | {_fmt(s.get('p50'), 2)} | {_fmt(s.get('p95'), 2)} | {_fmt(s.get('max'), 2)} | "
            f"{_fmt(s.get('mean'), 2)} |"
        )
    calls = run["cloud_calls"]
    lines += [
        "",
        f"## Cloud calls per reinstall (emulator counters; {calls['all_per_reinstall']} in all, "
        f"{calls['throttled_429']} answered 429)",
        "",
        "| operation | calls | per reinstall |",
        "|---|---|---|",
    ]
    lines += [f"| {op} | {n} | {calls['per_reinstall'][op]} |" for op, n in calls["total"].items()]
    lines += [
        "",
        "## Kubernetes calls of the operator per reinstall (kube_emulator request log; kopf and its own client)",
        "",
        "| call | per reinstall |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in run["kube_calls"]["operator_per_reinstall"].items()]
    profile = run.get("profile")
    if profile:
        lines += [
            "",
            f"## Operator profile (py-spy `--gil`, {profile['samples']} samples: shares of the GIL held)",
            "",
            *_profile_table(profile),
        ]
    extra = result.get("profiled_run")
    if extra:
        p = extra["profile"]
        lines += [
            "",
            f"## A second run with `--profile` ({extra['measured_at']}, same settings)",
            "",
            f"Wall {_fmt(extra['wall_s'])} s (x{_fmt(extra['ratio_to_ideal'], 2)} the ideal), operator CPU "
            f"{_fmt(extra['operator_cpu_s'])} s, {extra['set_passes']} set passes "
            f"({_fmt(extra['set_passes_per_second'], 2)}/s). py-spy `--gil`, {p['samples']} samples (shares of the "
            "GIL held, so of the operator's Python CPU):",
            "",
            *_profile_table(p),
        ]
    if result.get("plot"):
        lines += ["", f"![timeline]({result['plot']})"]
    lines += [
        "",
        "Command: `" + result["command"] + "`; raw figures and timelines in " + f"`{name}.json`.",
        "",
    ]
    path = directory / f"{name}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _profile_table(profile: Mapping) -> list[str]:
    lines = ["| inclusive (our code) | % | | self (top of stack) | % |", "|---|---|---|---|---|"]
    inc, own = profile["inclusive_percent"], profile["self_percent"]
    for i in range(max(len(inc), len(own))):
        a = inc[i] if i < len(inc) else ("", "")
        b = own[i] if i < len(own) else ("", "")
        lines.append(f"| `{a[0]}` | {a[1]} | | `{b[0]}` | {b[1]} |")
    return lines


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def git_commit() -> str | None:
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


def run(
    cfg: SetRunConfig, *, results_dir: Path = RESULTS, output: str = "set", keep_workdir: Path | None = None
) -> dict:
    """One set run, its results written to results_dir/<output>.json, .md and -timeline.png."""
    started = time.time()
    commit = git_commit()
    with tempfile.TemporaryDirectory(prefix="ecs-set-bench-") as tmp:
        workdir = keep_workdir or Path(tmp)
        outcome = set_run(workdir, cfg)
    argv = None
    if Path(sys.argv[0]).name == "run_set_bench.py":  # the options that change what is measured
        argv, skip = ["bench/run_set_bench.py"], False
        for arg in sys.argv[1:]:
            if skip or arg.split("=")[0] in ("--keep-workdir", "--results-dir", "--output"):
                skip = not skip and "=" not in arg
                continue
            argv.append(arg)
    result = {
        "benchmark": "ecs_reinstall_set",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "operator_commit": commit,
        "total_wall_s": round(time.time() - started, 1),
        "command": " ".join(argv) if argv else f"make bench (run_set_bench.run, {asdict(cfg)})",
        "environment": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "run": outcome,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    plot = results_dir / f"{output}-timeline.png"
    if plot_timeline(outcome, plot):
        result["plot"] = plot.name
    harness.json_dump(results_dir / f"{output}.json", result)
    write_report(result, results_dir, output)
    print(f"set bench: done in {result['total_wall_s']} s; results in {results_dir}/{output}.*", flush=True)
    return result


def add_arguments(parser: argparse._ActionsContainer, prefix: str = "") -> None:
    """The set run's options (with `prefix`, e.g. `set-`, when run_bench.py carries them)."""
    d = SetRunConfig()
    p = f"--{prefix}"
    parser.add_argument(f"{p}quick", action="store_true", help=f"sanity run: {QUICK}")
    parser.add_argument(f"{p}servers", type=int, default=None, help=f"N (default {d.servers})")
    parser.add_argument(f"{p}max-in-flight", type=int, default=None, help=f"M (default {d.max_in_flight})")
    parser.add_argument(f"{p}job-seconds", type=float, default=None, help=f"D (default {d.job_seconds:g})")
    parser.add_argument(
        f"{p}poll-interval", type=int, default=None, help=f"template pollIntervalSeconds ({d.poll_interval})"
    )
    parser.add_argument(f"{p}job-spread", type=float, default=d.job_spread, help="jobs last D * U(1-s, 1+s)")
    parser.add_argument(f"{p}decoys", type=int, default=d.decoys, help="unselected servers (role=other)")
    parser.add_argument(f"{p}timeout", type=float, default=d.timeout, help="longest wait for Completed")


def config_from(args: argparse.Namespace, prefix: str = "", **extra: Any) -> SetRunConfig:
    p = prefix.replace("-", "_")
    values = dict(QUICK) if getattr(args, f"{p}quick") else {}
    for key in ("servers", "max_in_flight", "job_seconds", "poll_interval"):
        given = getattr(args, f"{p}{key}")
        if given is not None:
            values[key] = given
    for key in ("job_spread", "decoys", "timeout"):
        values[key] = getattr(args, f"{p}{key}")
    return SetRunConfig(**values, **extra)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--profile", action="store_true", help="py-spy the operator (needs py-spy)")
    parser.add_argument("--keep-workdir", type=Path, default=None, help="keep logs and the profile here")
    parser.add_argument(
        "--output", default=None, help="results/<name>.json, .md (default: set, quick: set-quick)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    cfg = config_from(args, profile=args.profile)
    output = args.output or ("set-quick" if args.quick else "set")
    result = run(cfg, results_dir=args.results_dir, output=output, keep_workdir=args.keep_workdir)
    outcome = result["run"]
    ok = outcome["completed"] and outcome["concurrency"]["peak_within_max_in_flight"]
    print(json.dumps({k: outcome[k] for k in ("wall_s", "ideal_s", "ratio_to_ideal")}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
