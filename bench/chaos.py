"""The chaos scenario: many reinstalls while the operator is SIGKILLed and restarted at random moments and both
APIs misbehave; then the invariants are checked against what the cloud really did.

Faults (all at random, per request):
- ECS emulator: 500 / 502 / 503 and 429 (with Retry-After) answers; reinstall POSTs processed and then their
  connection dropped (the job ID never reaches the operator) or answered after the operator's read timeout;
  POSTs whose connection drops before they are processed;
- kube_emulator: watch streams ended early (cleanly or by dropping the connection), 409 Conflict on status
  writes, 500 on reads and writes;
- the operator: SIGKILL at random moments (any step, mid-request), restarted after a random pause;
- some servers' jobs end in FAIL with a known cloud code.

Invariants checked at the end (any breach is reported and makes the run fail):
1. every resource reached a terminal phase;
2. the phase matches what the cloud did: Succeeded iff its job succeeded, Failed with the cloud's code iff it
   failed (when the job ID was lost, the code cannot be known: then Failed with `FailedFromServerState`);
3. the cloud accepted exactly one reinstall per resource (emulator counters);
4. no secret (secret key, password, user data, also base64-encoded) in the operator's logs (every run), the
   Kubernetes Events, any status, or the metrics pages scraped during the run;
5. the operator never exited by itself.

Used by bench/run_chaos.py (`make chaos`) and, small, by tests/chaos/test_chaos_smoke.py.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness

USER_DATA_SECRET = "first-boot"  # noqa: S105 (a name)
USER_DATA = "#cloud-config\nruncmd:\n  - echo chaos-user-data-marker-7f3a9c\n"
FAIL_CODE = "Ecs.0013"
LOST_JOB_FAILURE_CODE = "FailedFromServerState"
FAIL_REASON = "the image could not be written to the system disk (injected by the chaos run)"


@dataclass(frozen=True)
class ChaosConfig:
    n: int = 300
    kills: int = 20
    waves: int = 3  # the resources are created in this many waves spread over the kill period
    job_seconds: float = 10.0
    job_spread: float = 0.5  # each job lasts job_seconds * U(1 - spread, 1 + spread)
    poll_interval: int = 2
    fail_fraction: float = 0.2  # servers whose job ends in FAIL
    user_data_fraction: float = 0.3  # resources whose user data comes from a Secret
    run_between_kills: tuple[float, float] = (0.5, 4.0)  # seconds the operator lives after a (re)start
    down_between: tuple[float, float] = (0.0, 1.5)  # seconds it stays dead
    ecs_faults: bool = True
    # Among the ECS faults, the two that lose a job ID: a POST processed and then its connection dropped, or
    # answered after the operator's read timeout. The operator then reads the outcome from the server alone.
    lose_job_ids: bool = True
    kube_faults: bool = True
    seed: int = 20261126
    timeout: float = 600.0  # longest wait for every resource to be terminal after the last kill
    operator_args: dict[str, Any] = field(
        default_factory=lambda: {
            "qps": 100,
            "burst": 50,
            "request-timeout": 5,
            # Longer than any delay the emulator processes a request with (latency 6.5 s, below): the operator
            # may only judge a request not taken once the cloud can no longer take it (twice the timeout, as
            # the operator's start-up warning asks). With 4 s, a request delayed 6.5 s was now and then
            # processed after a resubmission had gone out, and both were accepted.
            "outcome-settle-seconds": 10,
            "retry-base-seconds": 0.5,
            "retry-max-seconds": 4,
        }
    )


def ecs_fault_rules(cfg: ChaosConfig) -> list[dict]:
    """First match wins, each rolled with its own probability (see ecs_emulator.faults)."""
    losing = [
        # The POST is processed, then the connection drops: the cloud reinstalls, the job ID is lost.
        {"operation": "reinstall", "drop_connection": "after", "probability": 0.08},
        # Processed, but answered after the operator's read timeout (5 s).
        {"operation": "reinstall", "latency_ms": 6500, "probability": 0.03},
    ]
    return [
        *(losing if cfg.lose_job_ids else []),
        # Not processed, but the operator cannot know: 5xx or a connection dropped before processing.
        {"operation": "reinstall", "status": 500, "probability": 0.05},
        {"operation": "reinstall", "drop_connection": "before", "probability": 0.03},
        # Throttling and errors on every operation.
        {"operation": "*", "status": 429, "retry_after": 1, "probability": 0.05},
        {"operation": "*", "status": 503, "probability": 0.03},
        {"operation": "*", "status": 502, "probability": 0.02},
        {"operation": "get_job", "status": 500, "probability": 0.04},
        {"operation": "get_server", "status": 500, "probability": 0.04},
    ]


def kube_fault_rules(cfg: ChaosConfig) -> list[dict]:
    return [
        {"verbs": ["watch"], "watch": {"closeAfterSeconds": 4}, "probability": 0.5},
        {"verbs": ["watch"], "watch": {"closeAfterSeconds": 2, "abort": True}, "probability": 0.3},
        {
            "verbs": ["patch"],
            "pathRegex": "/ecsreinstalls/[^/]+/status$",
            "error": {"code": 409},
            "probability": 0.05,
        },
        {"verbs": ["get", "list", "patch", "create"], "error": {"code": 500}, "probability": 0.03},
    ]


def server_id(index: int) -> str:
    return f"00000000-0000-4000-9000-{index:012d}"


@dataclass
class Plan:
    """What each server will do in the cloud, and which resources read their user data from a Secret."""

    fails: set[int]
    user_data: set[int]
    durations: dict[int, float]


def make_plan(cfg: ChaosConfig, rng: random.Random) -> Plan:
    indexes = list(range(cfg.n))
    fails = set(rng.sample(indexes, round(cfg.n * cfg.fail_fraction)))
    user_data = set(rng.sample(indexes, round(cfg.n * cfg.user_data_fraction)))
    durations = {
        i: round(cfg.job_seconds * (1 - cfg.job_spread + 2 * cfg.job_spread * rng.random()), 3)
        for i in indexes
    }
    return Plan(fails, user_data, durations)


class MetricsScraper:
    """Scrapes the operator's /metrics every second while it runs and scans each page for secrets at once."""

    def __init__(self, operator: harness.Operator, secrets: list[str]):
        self.operator, self.secrets = operator, secrets
        self.pages = 0
        self.findings: list[str] = []
        self.last = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics", daemon=True)

    def start(self) -> MetricsScraper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            if not self.operator.daemon.alive():
                continue
            text = self.operator.metrics_text()
            if text:
                self.pages += 1
                self.last = text
                self.findings += scan_for_secrets(text, self.secrets, "metrics")


def secret_values() -> list[str]:
    values = [harness.SECRET_KEY, harness.PASSWORD, USER_DATA, USER_DATA.strip().splitlines()[-1].strip()]
    values += [base64.b64encode(v.encode()).decode() for v in list(values)]
    return values


def scan_for_secrets(text: str, secrets: list[str], where: str) -> list[str]:
    findings = []
    for line in text.splitlines():
        for secret in secrets:
            if secret in line:
                findings.append(f"{where}: {line[:200]}")
                break
    return findings


def run_chaos(cfg: ChaosConfig, workdir: Path, log: Any = print) -> dict:
    """Runs the scenario in `workdir` (logs stay there) and returns the result, `violations` included."""
    rng = random.Random(cfg.seed)
    plan = make_plan(cfg, rng)
    secrets = secret_values()
    started = time.time()
    ecs = harness.EcsEmulator(workdir)
    kube = harness.KubeEmulator(workdir)
    operator: harness.Operator | None = None
    watch: harness.ResourceWatch | None = None
    scraper: MetricsScraper | None = None
    kills: list[dict] = []
    unexpected_exits: list[dict] = []
    try:
        ecs.start()
        kube.start()
        kube.wait_crd_served()
        kube.setup_namespaces_and_secrets()
        kube._secret(harness.NAMESPACE, USER_DATA_SECRET, {"user-data": USER_DATA})
        ecs.reset(init_seconds=0.5, job_seconds=cfg.job_seconds)
        ecs.add_servers(
            {
                "id": server_id(i),
                "status": "ACTIVE",
                "init_seconds": 0.5,
                "job_seconds": max(0.5, plan.durations[i] - 0.5),
                **(
                    {"outcome": "FAIL", "fail_code": FAIL_CODE, "fail_reason": FAIL_REASON}
                    if i in plan.fails
                    else {}
                ),
            }
            for i in range(cfg.n)
        )
        if cfg.ecs_faults:
            for rule in ecs_fault_rules(cfg):
                ecs.add_fault(**rule)
        operator = harness.Operator(
            workdir, kube, ecs.url, args={**cfg.operator_args, "max-concurrency": 100, "log-level": "INFO"}
        )
        operator.start(wait=True)
        watch = harness.ResourceWatch(kube).start()
        scraper = MetricsScraper(operator, secrets).start()
        if cfg.kube_faults:
            for rule in kube_fault_rules(cfg):
                kube.add_fault(rule)

        bodies = [body_for(i, cfg, plan) for i in range(cfg.n)]
        waves = [bodies[w :: cfg.waves] for w in range(cfg.waves)]
        mean_cycle = sum(cfg.run_between_kills) / 2 + sum(cfg.down_between) / 2 + 1.5
        wave_every = cfg.kills * mean_cycle / cfg.waves
        t0 = time.time()
        next_wave, wave_index = t0, 0
        log(
            f"chaos: {cfg.n} resources in {cfg.waves} waves, {cfg.kills} kills, faults ecs={cfg.ecs_faults} kube={cfg.kube_faults}"
        )
        for kill in range(cfg.kills):
            run_for = rng.uniform(*cfg.run_between_kills)
            until = time.time() + run_for
            while time.time() < until:
                if wave_index < len(waves) and time.time() >= next_wave:
                    threading.Thread(
                        target=harness.create_all, args=(kube, waves[wave_index]), daemon=True
                    ).start()
                    wave_index += 1
                    next_wave += wave_every
                if not operator.daemon.alive():
                    unexpected_exits.append(
                        {"at_s": round(time.time() - t0, 2), "code": operator.daemon.proc.returncode}
                    )  # type: ignore[union-attr]
                    operator.start(wait=False)
                time.sleep(0.05)
            phases = Counter(t.phase for t in watch.snapshot().values())
            operator.kill()
            down = rng.uniform(*cfg.down_between)
            kills.append(
                {
                    "at_s": round(time.time() - t0, 2),
                    "after_s": round(run_for, 2),
                    "down_s": round(down, 2),
                    "phases": dict(phases),
                }
            )
            log(f"  kill {kill + 1}/{cfg.kills} at t={time.time() - t0:.1f}s phases {dict(phases)}")
            time.sleep(down)
            operator.start(wait=False)
        while wave_index < len(waves):  # fewer kills than planned waves: create the rest now
            harness.create_all(kube, waves[wave_index])
            wave_index += 1

        log("chaos: kills done; waiting for every resource to finish")
        deadline = time.monotonic() + cfg.timeout
        last_print = 0.0
        while time.monotonic() < deadline:
            if not operator.daemon.alive():
                unexpected_exits.append(
                    {"at_s": round(time.time() - t0, 2), "code": operator.daemon.proc.returncode}
                )  # type: ignore[union-attr]
                operator.start(wait=False)
            terminal = watch.count(lambda t: t.terminal is not None)
            if terminal >= cfg.n:
                break
            if time.monotonic() - last_print > 10:
                log(f"  t={time.time() - t0:.1f}s terminal {terminal}/{cfg.n}")
                last_print = time.monotonic()
            time.sleep(0.2)
        finished_at = time.time()
        time.sleep(1.5)  # one more metrics scrape of the final state
        scraper.stop()
        kube_fault_stats = kube.faults() if cfg.kube_faults else []
        kube.clear_faults()
        ecs_fault_stats = [
            {
                k: f.get(k)
                for k in ("operation", "status", "drop_connection", "latency_ms", "probability", "hits")
            }
            for f in ecs._call("GET", "/faults")
        ]
        ecs.clear_faults()
        items = kube.list_reinstalls()
        events = kube.events()
        counters = ecs.counters()
        records = ecs.reinstalls()
        operator.stop()
    finally:
        if scraper is not None:
            scraper.stop()
        if watch is not None:
            watch.stop()
        if operator is not None:
            operator.stop()
        kube.stop()
        ecs.stop()

    result = verify(cfg, plan, items, counters, records)
    findings = list(scraper.findings)
    operator_log = operator.log.read_text(errors="replace")
    findings += scan_for_secrets(operator_log, secrets, "operator log")
    findings += scan_for_secrets(json.dumps(events), secrets, "events")
    findings += scan_for_secrets(json.dumps([i.get("status") for i in items]), secrets, "statuses")
    if findings:
        result["violations"].append(
            {"invariant": "no secret in logs, Events, status or metrics", "found": findings[:20]}
        )
    if unexpected_exits:
        result["violations"].append(
            {"invariant": "the operator never exits by itself", "exits": unexpected_exits}
        )
    times = watch.snapshot()
    result.update(
        {
            "config": asdict(cfg),
            "wall_s": round(time.time() - started, 1),
            "to_all_terminal_s": round(finished_at - t0, 1),
            "kills": kills,
            "operator_starts": operator.starts,
            "secret_scan": {
                "metrics_pages": scraper.pages,
                "operator_log_lines": operator_log.count("\n"),
                "events": len(events),
                "statuses": len(items),
                "findings": len(findings),
            },
            "operator_log": log_summary(operator_log),
            "ecs": {
                "requests": counters["requests"],
                "faults_hit": counters["faults_hit"],
                "throttled": counters["throttled"],
                "fault_rules": ecs_fault_stats,
            },
            "kube_fault_rules": kube_fault_stats,
            "watch": {"events": watch.events, "restarts": watch.restarts},
            "timeline": {
                "submitted": sorted(round(t.submitted - t0, 2) for t in times.values() if t.submitted),
                "terminal": sorted(round(t.terminal - t0, 2) for t in times.values() if t.terminal),
            },
        }
    )
    return result


def body_for(i: int, cfg: ChaosConfig, plan: Plan) -> dict:
    extra: dict[str, Any] = {"timeoutSeconds": 600}
    if i in plan.user_data:
        extra["userData"] = {"valueFrom": {"secretKeyRef": {"name": USER_DATA_SECRET, "key": "user-data"}}}
    return harness.reinstall_body(f"r-{i:05d}", server_id(i), cfg.poll_interval, **extra)


def verify(cfg: ChaosConfig, plan: Plan, items: list[dict], counters: dict, records: list[dict]) -> dict:
    """The invariants 1-3 for every resource; the classes of how each one went."""
    by_name = {item["metadata"]["name"]: item for item in items}
    jobs = {r["server_id"]: r["job_id"] for r in records}
    violations: list[dict] = []
    classes: Counter = Counter()
    phases: Counter = Counter()
    for i in range(cfg.n):
        name, server = f"r-{i:05d}", server_id(i)
        item = by_name.get(name)
        status = (item or {}).get("status") or {}
        phase = status.get("phase")
        phases[phase or "(none)"] += 1
        accepted = counters["accepted_reinstalls"].get(server, 0)
        problems = []
        if item is None:
            problems.append("resource missing")
        if phase not in ("Succeeded", "Failed"):
            problems.append(f"not terminal: phase {phase}")
        if accepted != 1:
            problems.append(f"the cloud accepted {accepted} reinstalls")
        expected = "Failed" if i in plan.fails else "Succeeded"
        if phase in ("Succeeded", "Failed") and accepted >= 1 and phase != expected:
            problems.append(f"phase {phase} but the cloud job {'failed' if i in plan.fails else 'succeeded'}")
        job_id = status.get("jobId")
        code = (status.get("failure") or {}).get("code")
        # without the job ID nobody can read the cloud's code: the operator must say it failed, and how it knows
        expected_code = LOST_JOB_FAILURE_CODE if job_id == "" else FAIL_CODE
        if phase == "Failed" and i in plan.fails and code != expected_code:
            problems.append(
                f"failure code {code!r}, expected {expected_code!r} (the cloud's is {FAIL_CODE!r})"
            )
        if job_id and server in jobs and job_id != jobs[server]:
            problems.append(f"jobId {job_id} is not the accepted job {jobs[server]}")
        lost = job_id == "" and accepted == 1
        how = "job followed by its ID"
        if lost:
            how = f"job ID lost, {phase or 'no phase'} read from the server"
        classes[how] += 1
        if problems:
            violations.append(
                {
                    "invariant": "terminal phase matching the cloud, exactly one accepted reinstall",
                    "resource": name,
                    "server": server,
                    "cloud_outcome": "FAIL" if i in plan.fails else "SUCCESS",
                    "job_id_lost": lost,
                    "ready_reason": next(
                        (c.get("reason") for c in status.get("conditions") or () if c.get("type") == "Ready"),
                        None,
                    ),
                    "problems": problems,
                    "message": status.get("message"),
                }
            )
    return {
        "violations": violations,
        "phases": dict(phases),
        "how": dict(classes),
        "accepted_reinstalls": dict(
            Counter(counters["accepted_reinstalls"].get(server_id(i), 0) for i in range(cfg.n))
        ),
        "expected": {"Succeeded": cfg.n - len(plan.fails), "Failed": len(plan.fails)},
    }


def log_summary(text: str) -> dict:
    levels: Counter = Counter()
    messages: Counter = Counter()
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            levels["(not JSON)"] += 1
            continue
        level = record.get("severity") or record.get("levelname") or "?"
        levels[level] += 1
        if str(level).lower() in ("warn", "warning", "error", "critical"):
            messages[str(record.get("message", ""))[:90]] += 1
    return {"lines_by_level": dict(levels), "top_warnings_and_errors": messages.most_common(15)}
