"""The chaos scenario: many reinstalls while operator processes are SIGKILLed, doubled and restarted at random
moments, a "user" edits statuses and re-creates resources, and both APIs misbehave; then the invariants are checked
against what the cloud really did. "Assume two of everything" (DESIGN.md, "Exactly once, by construction").

Two stages, each with its own resources and servers, on the same two emulators:

1. **writers**: the primary operator (`--leader-election false`) SIGKILLed and restarted at random moments, as
   before; meanwhile
   - a second operator process (also `--leader-election false`) runs for random windows, each ended by SIGKILL
     (or now and then SIGTERM), so that two writers really race on the same resources;
   - a "user" sets `status.phase` back to `Pending` (a blind merge patch on /status, sometimes also nulling
     `message`) on resources that are Submitting or Reinstalling, as a person with `kubectl patch
     --subresource=status` might;
   - the same user deletes a few resources mid-rollout and re-creates them under the same name (same spec);
   - a few servers carry two resources (one reinstall at a time per server, both must happen);
   - **someone else** operates on servers at random moments through the emulator's admin API (stop, start,
     a console stop/start, reboot, resize, migrate, rename, tag edits: what moves `updated` and the launch
     time), mostly on servers whose resource is Submitting with an unknown outcome or follows a reinstall whose
     job ID was lost (the server's state then lies: only the action log names a rebuild); the cloud refuses the
     power operations with 409 while a reinstall runs, and those are ignored;
   - **job records expire while the primary is dead**: during a few of its kills (dead 4-8 s then) the
     emulator's `job_retention_seconds` is made short (2 s instead of a day), kept so after the primary is back
     until no resource follows a job whose record is gone (3-15 s), then set back: jobs that ended meanwhile
     answer 404 (`Common.0011`), as every job does a day after its end in the cloud, and whoever reads them
     must decide from the action log (the records come back with the retention: it is read at lookup time).
2. **election** (smaller): two processes with leader election on (`--leader-election true`, distinct
   `--pod-name`); the leader (the Lease's holder) is SIGKILLed and kept dead until the standby takes over, then
   restarted as the new standby. Takeover times are measured: kill -> the Lease names the other process, and
   kill -> the first status write (or accepted reinstall) after it, which only the other process can have made.

Faults in both stages (at random, per request):
- ECS emulator: 500 / 502 / 503 and 429 (with Retry-After) answers; reinstall POSTs processed and then their
  connection dropped (the job ID never reaches the operator) or answered after the operator's read timeout;
  POSTs whose connection drops before they are processed;
- kube_emulator: watch streams ended early (cleanly or by dropping the connection), 409 Conflict on status
  writes, 500 on reads and writes;
- some servers' jobs end in FAIL with a known cloud code.

Invariants checked at the end (any breach is reported and makes the run fail):
1. every (surviving) resource reached a terminal phase, and its phase matches what the cloud did for it: Succeeded
   iff its server's job succeeded, Failed with the cloud's code iff it failed (`JobFailed`: the job's code;
   `FailedFromActionLog`: that code, with the cloud's code in `failure.reason`, the rebuild's traceback); the
   cloud accepted a reinstall for it after the object was created; its `jobId`, when set, is an accepted job of
   its server, accepted after the object was created, and credited to no other resource;
2. accepted reinstalls per server: at most the number of resource objects (uids) created for it (a re-created
   object legitimately reinstalls again; one deleted mid-flight may or may not have been accepted), at least the
   number of its surviving resources, and exactly one per resource object on every server whose resources were
   never deleted (exactly one for a server with one resource, two for a shared one);
3. no two accepted reinstalls of a server overlap in time (accept time to the end of the job);
4. a status set back by hand never causes a second POST: every resource whose status the user regressed ends in
   the phase its server's job implies, and its server has no extra accepted reinstall (1 and 2, reported apart);
5. no secret (secret key, password, user data, also base64-encoded) in any operator process's log, the
   Kubernetes Events, any status, or the metrics pages scraped during the run;
6. no operator process exited by itself (in the election stage, a process that says in its log that it lost the
   leadership and then exits is counted apart, not as a breach);
7. in the election stage, after every kill of the leader the other process took over (the Lease, or a first
   status write) within `takeover_timeout`; the target, lease duration + 5 s, is reported;
8. decided by the right witness (the Ready condition's reason; the action log is on in this run): a resource
   ended by its job (`Succeeded` / `JobFailed`) has the job's ID; one decided from the action log
   (`SucceededFromActionLog` / `FailedFromActionLog`) never learnt its job ID (`jobId` `""` or absent) or its
   job's record expired in an expiry window (a job ID whose record never expired must be read, not guessed), and
   the rebuild it names (`attempt.requestId`) is the `rebuild` action of the reinstall its own attempt made (the
   one carrying its attempt's ID as X-Client-Token), credited to no other resource;
   never `…FromServerState`, `Timeout`, `OutcomeUnknown` or any other reason; and the reason's outcome is the
   cloud's (the accepted reinstall's `outcome`);
9. every accepted reinstall carried an `X-Client-Token` (a UUID, each used once) equal to the `status.attempt.id`
   of the resource that made it: per resource whose attempt is recorded, exactly one accepted reinstall of its
   server carries its attempt's ID, and it is the job it names; per accepted reinstall, a resource's attempt
   carries its token (except on servers with a deleted resource object, whose attempt went with it).

Used by bench/run_chaos.py (`make chaos`) and, small, by tests/chaos/test_chaos_smoke.py.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

import harness
from ecs_reinstall.kube import FINALIZER

USER_DATA_SECRET = "first-boot"  # noqa: S105 (a name)
USER_DATA = "#cloud-config\nruncmd:\n  - echo chaos-user-data-marker-7f3a9c\n"
FAIL_CODE = "Ecs.0013"
LOST_JOB_FAILURE_CODE = "FailedFromServerState"  # the failure code when the server's state decided
ACTION_LOG_FAILURE_CODE = "FailedFromActionLog"  # the failure code when the action log decided
# The Ready condition's reason of a terminal resource -> the witness that decided it (README, "Behaviour").
WITNESSES = {
    "Succeeded": "job",
    "JobFailed": "job",
    "SucceededFromActionLog": "action log",
    "FailedFromActionLog": "action log",
    "SucceededFromServerState": "server state",
    "FailedFromServerState": "server state",
}
SUCCESS_REASONS = ("Succeeded", "SucceededFromActionLog", "SucceededFromServerState")
# The failure code each failing reason carries (anything else, Timeout included, should have been JobFailed).
FAILURE_CODES = {
    "JobFailed": FAIL_CODE,
    "FailedFromActionLog": ACTION_LOG_FAILURE_CODE,
    "FailedFromServerState": LOST_JOB_FAILURE_CODE,
}
FLAVORS = ("s6.large.2", "s6.xlarge.2", "c7.large.2")  # what someone else resizes servers to
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# What someone else does to a server, by its status (a busy server refuses the power operations with 409).
OTHER_OPERATIONS = {
    "ACTIVE": ("stop", "stop+start", "reboot", "resize", "migrate", "rename", "tag"),
    "SHUTOFF": ("start", "reboot", "resize", "migrate", "rename", "tag"),
    "busy": ("stop", "start", "reboot", "resize", "migrate", "rename", "tag"),
}
FAIL_REASON = "the image could not be written to the system disk (injected by the chaos run)"
INIT_SECONDS = 0.5  # every job's INIT stage in the emulator

WRITERS, ELECTION = "writers", "election"
# Status changes seen this soon after a kill may still be the killed process's own (a write in flight, or one
# the bench's watch learns late after its stream was cut): the takeover is measured from the first one after it.
TAKEOVER_GRACE = 1.0
TERMINAL = ("Succeeded", "Failed")

# The invariants, as the violations name them (the report groups by these).
INV_RESOURCE = "every resource terminal, its phase matching what the cloud did for it"
INV_COUNT = "accepted reinstalls per server: one per resource object, none doubled"
INV_OVERLAP = "no two accepted reinstalls of a server overlap in time"
INV_REGRESSION = "a status set back by hand never causes a second POST"
INV_SECRETS = "no secret in logs, Events, status or metrics"
INV_EXITS = "the operator never exits by itself"
INV_TAKEOVER = "a standby takes over when the leader is killed"
INV_WITNESS = "decided by the right witness"
INV_TOKEN = "every accepted reinstall's X-Client-Token is the attempt ID of the resource that made it"  # noqa: S105
INVARIANTS = (
    INV_RESOURCE, INV_COUNT, INV_OVERLAP, INV_REGRESSION, INV_SECRETS, INV_EXITS, INV_TAKEOVER, INV_WITNESS,
    INV_TOKEN,
)  # fmt: skip

# A line in which a process says it lost (or could not renew) the leadership: its exit then is on purpose.
LEADERSHIP_LOST = re.compile(
    r"(?=.*\b(leader|leadership|lease)\b)(?=.*\b(lost|lose|losing|renew\w*|step\w* down|relinquish\w*)\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ChaosConfig:
    n: int = 1000  # resources of the writers stage (shared-server ones included)
    kills: int = 50  # SIGKILLs of the primary in the writers stage
    waves: int = 5  # the writers-stage resources are created in this many waves spread over the kill period
    job_seconds: float = 10.0
    job_spread: float = 0.5  # each job lasts job_seconds * U(1 - spread, 1 + spread)
    poll_interval: int = 2
    fail_fraction: float = 0.2  # servers whose job ends in FAIL
    user_data_fraction: float = 0.3  # resources whose user data comes from a Secret
    run_between_kills: tuple[float, float] = (0.5, 4.0)  # seconds the primary lives after a (re)start
    down_between: tuple[float, float] = (0.0, 1.5)  # seconds it stays dead
    ecs_faults: bool = True
    # Among the ECS faults, the two that lose a job ID: a POST processed and then its connection dropped, or
    # answered after the operator's read timeout. The operator then reads the outcome from the server alone.
    lose_job_ids: bool = True
    kube_faults: bool = True
    seed: int = 20261126
    timeout: float = 900.0  # longest wait, per stage, for every resource to be terminal after the last kill
    operator_args: dict[str, Any] = field(
        default_factory=lambda: {
            "qps": 100,
            "burst": 50,
            "request-timeout": 5,
            # Longer than any delay the emulator processes a request with (6.5 s, see ecs_fault_rules): the operator
            # may only judge a request not taken once the cloud can no longer take it (twice the timeout, as
            # the operator's start-up warning asks). With 4 s, a request delayed 6.5 s was now and then
            # processed after a resubmission had gone out, and both were accepted.
            "outcome-settle-seconds": 10,
            "retry-base-seconds": 0.5,
            "retry-max-seconds": 4,
        }
    )
    # --- "two of everything" (issue 10) ---
    shared_servers: int = 20  # writers-stage resources placed on the server of another one (two per server)
    second_operator: bool = True  # a second process (leader election off) running for random windows
    second_alive: tuple[float, float] = (2.0, 10.0)  # seconds a window lasts
    second_down: tuple[float, float] = (2.0, 10.0)  # seconds between windows
    second_sigkill_fraction: float = 0.8  # windows ended by SIGKILL; the others by SIGTERM
    regressions: int = 40  # status set back to Pending by the "user"
    regression_null_message: float = 0.5  # fraction of the regressions that also null status.message
    recreates: int = 15  # resources deleted mid-rollout and re-created under the same name
    recreate_pause: tuple[float, float] = (0.0, 2.0)  # seconds between the delete and the create
    # --- the election stage ---
    election: bool = True
    election_n: int = 100
    election_kills: int = 6
    election_run_between_kills: tuple[float, float] = (
        3.0,
        8.0,
    )  # seconds between a takeover and the next kill
    election_args: dict[str, Any] = field(
        default_factory=lambda: {
            "leader-election-lease-seconds": 6,
            "leader-election-renew-deadline-seconds": 4,
            "leader-election-retry-period-seconds": 1,
        }
    )
    takeover_timeout: float = 45.0  # longest wait for the standby to take over after a kill
    # --- the cloud's own records (issue 11): someone else on the servers, job records expiring ---
    other_operations: bool = True  # someone else operates on the writers stage's servers (admin API)
    other_gap: tuple[float, float] = (0.1, 0.8)  # seconds between two of their operations
    # of their operations, the fraction aimed at a server whose resource's outcome is unknown (Submitting with
    # OutcomeUnknown, or Reinstalling with its job ID lost), when there is one; the others at any server
    other_unknown_fraction: float = 0.7
    other_fail_fraction: float = 0.1  # power operations that fail (their action ends in error)
    expiry_windows: int = 5  # kills of the primary during which finished jobs expire (0: never)
    expiry_retention: float = 2.0  # job_retention_seconds in such a window (the cloud's: 86400)
    expiry_down: tuple[float, float] = (4.0, 8.0)  # seconds the primary stays dead in such a window
    # the short retention lasts at least `expiry_hold` s once the primary is back (healthy), then until no resource
    # follows a job whose record is gone (each has read it: 404, and decided from the action log), at most
    # `expiry_hold_max` s: the records come back when the retention is set back, so they must be read before
    expiry_hold: float = 3.0
    expiry_hold_max: float = 15.0


def ecs_fault_rules(cfg: ChaosConfig) -> list[dict]:
    """First match wins, each rolled with its own probability (see ecs_emulator.faults)."""
    read_timeout = float(cfg.operator_args.get("request-timeout", 5))
    losing = [
        # The POST is processed, then the connection drops: the cloud reinstalls, the job ID is lost.
        {"operation": "reinstall", "drop_connection": "after", "probability": 0.08},
        # Processed, but answered 1.5 s after the operator's read timeout (6.5 s with the default 5 s).
        {"operation": "reinstall", "latency_ms": round((read_timeout + 1.5) * 1000), "probability": 0.03},
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


def spread(kills: int, windows: int) -> set[int]:
    """`windows` kill indices spread evenly over `kills` (the middle one of each equal share)."""
    windows = max(0, min(windows, kills))
    return {min(kills - 1, int((i + 0.5) * kills / windows)) for i in range(windows)}


# --- the plan ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    name: str
    server: int  # server index
    stage: str
    user_data: bool


@dataclass
class Plan:
    """Which resources go on which server, what each server's jobs do in the cloud."""

    resources: list[Resource]
    fails: set[int]  # servers whose jobs end in FAIL
    job_seconds: dict[int, float]  # server -> the emulator's job_seconds (RUNNING), after INIT_SECONDS

    def stage(self, stage: str) -> list[Resource]:
        return [r for r in self.resources if r.stage == stage]

    def outcome(self, server: int) -> str:
        return "FAIL" if server in self.fails else "SUCCESS"

    def expected_phase(self, server: int) -> str:
        return "Failed" if server in self.fails else "Succeeded"

    def run_seconds(self, server: int) -> float:
        """From acceptance to the job's end."""
        return INIT_SECONDS + self.job_seconds[server]

    @property
    def servers(self) -> list[int]:
        return sorted({r.server for r in self.resources})


def make_plan(cfg: ChaosConfig, rng: random.Random) -> Plan:
    shared = min(cfg.shared_servers, cfg.n // 2)
    own = cfg.n - shared  # writers-stage servers, one resource each, `shared` of them get a second one
    resources = [Resource(f"r-{i:05d}", i, WRITERS, False) for i in range(own)]
    resources += [
        Resource(f"r-{own + j:05d}", server, WRITERS, False)
        for j, server in enumerate(sorted(rng.sample(range(own), shared)))
    ]
    if cfg.election:
        resources += [Resource(f"e-{i:05d}", own + i, ELECTION, False) for i in range(cfg.election_n)]
    with_user_data = set(rng.sample(range(len(resources)), round(len(resources) * cfg.user_data_fraction)))
    resources = [Resource(r.name, r.server, r.stage, i in with_user_data) for i, r in enumerate(resources)]
    servers = sorted({r.server for r in resources})
    fails = set(rng.sample(servers, round(len(servers) * cfg.fail_fraction)))
    job_seconds = {}
    for s in servers:
        duration = cfg.job_seconds * (1 - cfg.job_spread + 2 * cfg.job_spread * rng.random())
        job_seconds[s] = round(max(0.5, duration - INIT_SECONDS), 3)
    return Plan(resources, fails, job_seconds)


def body_for(resource: Resource, cfg: ChaosConfig) -> dict:
    extra: dict[str, Any] = {"timeoutSeconds": 600}
    if resource.user_data:
        extra["userData"] = {"valueFrom": {"secretKeyRef": {"name": USER_DATA_SECRET, "key": "user-data"}}}
    return harness.reinstall_body(resource.name, server_id(resource.server), cfg.poll_interval, **extra)


# --- secrets -----------------------------------------------------------------------------------------------------


class MetricsScraper:
    """Scrapes every live operator process's /metrics every second and scans each page for secrets at once."""

    def __init__(self, operators: Callable[[], Iterable[harness.Operator]], secrets: list[str]):
        self.operators, self.secrets = operators, secrets
        self.pages = 0
        self.findings: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics", daemon=True)

    def start(self) -> MetricsScraper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            for operator in list(self.operators()):
                if not operator.alive():
                    continue
                text = operator.metrics_text()
                if text:
                    self.pages += 1
                    self.findings += scan_for_secrets(text, self.secrets, f"metrics of {operator.name}")


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


# --- processes ---------------------------------------------------------------------------------------------------


@dataclass
class Managed:
    """An operator process the scenario keeps running (`up`) until it stops or kills it on purpose."""

    op: harness.Operator
    role: str
    stage: str
    pod_name: str | None = None
    election: bool = False
    up: bool = False


def _retrying(call: Callable[[], Any], attempts: int = 10) -> Any:
    """The bench's own API calls, through the injected 409 / 429 / 5xx faults."""
    for attempt in range(attempts):
        try:
            return call()
        except ApiException as exc:
            if exc.status not in (409, 429, 500, 503) or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Scenario:
    def __init__(self, cfg: ChaosConfig, workdir: Path, log: Callable[[str], None]):
        self.cfg, self.workdir, self.log = cfg, workdir, log
        self.rng = random.Random(cfg.seed)
        self.plan = make_plan(cfg, self.rng)
        self.ecs = harness.EcsEmulator(workdir)
        self.kube = harness.KubeEmulator(workdir)
        self.watch: harness.ResourceWatch | None = None
        self.flags: set[str] = set()
        self.processes: list[Managed] = []
        self.t0 = 0.0
        self._lock = threading.Lock()
        self.uids: dict[str, str] = {}  # name -> uid of the current object
        self.created_at: dict[str, float] = {}  # name -> when the current object's create request began
        self.objects: Counter = Counter()  # server -> resource objects created for it
        self.recreated_servers: set[int] = set()
        self.errors: list[str] = []  # the bench's own failures (a thread that died): the run is invalid
        self.kills: list[dict] = []
        self.exits: list[dict] = []  # processes that exited by themselves
        self.leadership_exits: list[dict] = []
        self.windows: list[dict] = []
        self.regressions: list[dict] = []
        self.recreates: list[dict] = []
        self.takeovers: list[dict] = []
        self.lease_seen = False
        self.stage_times: dict[str, dict] = {}
        self.operations: list[dict] = []  # someone else's operations on servers
        self.expiry: list[dict] = []  # windows of short job retention while the primary was dead
        self.normal_retention = 86400.0  # the emulator's job_retention_seconds outside those windows
        self._open_window: dict | None = None

    def now_s(self) -> float:
        return round(time.time() - self.t0, 2)

    # --- resources ---

    def create(self, resource: Resource) -> None:
        began = time.time()
        uid = harness.create_one(self.kube, body_for(resource, self.cfg))
        with self._lock:
            self.uids[resource.name] = uid
            self.created_at[resource.name] = began
            self.objects[resource.server] += 1

    def create_in_background(self, resources: list[Resource]) -> threading.Thread:
        def run() -> None:
            try:
                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(self.create, resources))
            except Exception as exc:  # reported: the run cannot be judged without every resource
                self.errors.append(f"creating resources: {exc!r}")

        thread = threading.Thread(target=run, name="create", daemon=True)
        thread.start()
        return thread

    def terminal_count(self, resources: list[Resource]) -> int:
        assert self.watch is not None
        times = self.watch.snapshot()
        with self._lock:
            uids = dict(self.uids)
        count = 0
        for r in resources:
            t = times.get(r.name)
            if t is not None and t.terminal is not None and t.uid == uids.get(r.name):
                count += 1
        return count

    # --- processes ---

    def operator_args(self, *, election: bool, pod_name: str | None = None) -> dict:
        args: dict[str, Any] = {**self.cfg.operator_args, "max-concurrency": 100, "log-level": "INFO"}
        if "--leader-election" in self.flags:
            args["leader-election"] = "true" if election else "false"
            if election:
                args.update({k: v for k, v in self.cfg.election_args.items() if f"--{k}" in self.flags})
        if pod_name and "--pod-name" in self.flags:
            args["pod-name"] = pod_name
        return args

    def process(
        self, name: str, role: str, stage: str, *, election: bool, pod_name: str | None = None
    ) -> Managed:
        op = harness.Operator(
            self.workdir,
            self.kube,
            self.ecs.url,
            args=self.operator_args(election=election, pod_name=pod_name),
            name=name,
        )
        managed = Managed(op, role, stage, pod_name, election)
        self.processes.append(managed)
        return managed

    def start(self, m: Managed, *, wait: bool = False) -> None:
        m.op.start(wait=False)
        m.up = True
        if wait:
            try:
                m.op.wait_healthy(60)
            except (RuntimeError, TimeoutError) as exc:  # an exit is `reap`'s to record
                self.log(f"  {m.op.name} not healthy after its start: {exc}")

    def kill(self, m: Managed) -> None:
        m.up = False
        m.op.kill()

    def terminate(self, m: Managed) -> None:
        m.up = False
        m.op.stop()

    def reap(self, processes: Iterable[Managed]) -> None:
        """A process that should run but exited: recorded (on purpose or not), then started again."""
        for m in processes:
            if m.up and not m.op.alive():
                text = m.op.last_run_log()
                # on purpose when one of its last words says so
                lost = m.election and any(LEADERSHIP_LOST.search(line) for line in text.splitlines()[-5:])
                entry = {
                    "process": m.op.name,
                    "role": m.role,
                    "stage": m.stage,
                    "at_s": self.now_s(),
                    "code": m.op.returncode,
                    "last_log_lines": [line[:300] for line in text.splitlines()[-3:]],
                }
                (self.leadership_exits if lost else self.exits).append(entry)
                self.start(m)

    # --- stage 1: writers ---

    def stage_writers(self) -> None:
        cfg = self.cfg
        resources = self.plan.stage(WRITERS)
        order = list(resources)
        self.rng.shuffle(order)  # the shared servers' second resources spread over the waves
        waves = [order[w :: cfg.waves] for w in range(cfg.waves)]
        primary = self.process("operator", "primary", WRITERS, election=False)
        second = (
            self.process("operator-second", "second", WRITERS, election=False)
            if cfg.second_operator
            else None
        )
        self.start(primary, wait=True)
        expiry_kills = spread(cfg.kills, cfg.expiry_windows)
        expiry_rng = random.Random(cfg.seed + 3)
        mean_cycle = sum(cfg.run_between_kills) / 2 + sum(cfg.down_between) / 2 + 0.1
        kill_period = cfg.kills * mean_cycle + len(expiry_kills) * (
            sum(cfg.expiry_down) / 2 - sum(cfg.down_between) / 2 + cfg.expiry_hold + 1.5
        )
        wave_every = kill_period / cfg.waves
        stop = threading.Event()
        helpers = []
        if second is not None:
            helpers.append(threading.Thread(target=self.second_loop, args=(second, stop), daemon=True))
        if cfg.other_operations:
            others = threading.Thread(target=self.others_loop, args=(resources, stop), daemon=True)
            helpers.append(others)
        if cfg.regressions or cfg.recreates:
            user = threading.Thread(target=self.user_loop, args=(resources, kill_period, stop), daemon=True)
            helpers.append(user)
        for thread in helpers:
            thread.start()
        creators: list[threading.Thread] = []
        started = time.time()
        next_wave, wave_index = started, 0
        self.log(
            f"chaos/writers: {len(resources)} resources ({cfg.shared_servers} on shared servers) in {cfg.waves} "
            f"waves, {cfg.kills} kills ({len(expiry_kills)} with job records expiring), second operator "
            f"{cfg.second_operator}, {cfg.regressions} status regressions, {cfg.recreates} re-creates, "
            f"someone else's operations {cfg.other_operations}; faults ecs={cfg.ecs_faults} kube={cfg.kube_faults}"
        )

        def live(seconds: float) -> None:
            """The primary runs: waves created on time, an exit recorded and restarted."""
            nonlocal next_wave, wave_index
            until = time.time() + seconds
            while time.time() < until:
                if wave_index < len(waves) and time.time() >= next_wave:
                    creators.append(self.create_in_background(waves[wave_index]))
                    wave_index += 1
                    next_wave += wave_every
                self.reap([primary])
                time.sleep(0.05)

        try:
            for kill in range(cfg.kills):
                run_for = self.rng.uniform(*cfg.run_between_kills)
                live(run_for)
                phases = self.phases(resources)
                self.kill(primary)
                down = self.rng.uniform(*cfg.down_between)
                window = None
                if kill in expiry_kills:
                    window = self.expiry_on(resources)
                    down = expiry_rng.uniform(*cfg.expiry_down)
                self.kills.append(
                    {
                        "stage": WRITERS,
                        "process": primary.op.name,
                        "at_s": self.now_s(),
                        "after_s": round(run_for, 2),
                        "down_s": round(down, 2),
                        "phases": phases,
                        "job_expiry": window is not None,
                    }
                )
                self.log(
                    f"  kill {kill + 1}/{cfg.kills} at t={self.now_s():.1f}s phases {phases}"
                    + (f"; job records expire {cfg.expiry_retention:g} s after their end" if window else "")
                )
                time.sleep(down)
                self.start(primary, wait=window is not None)
                if window is not None:  # the operators read the jobs that ended meanwhile, records gone
                    live(cfg.expiry_hold)
                    deadline = time.time() + max(0.0, cfg.expiry_hold_max - cfg.expiry_hold)
                    while self.unread_expired(resources) and time.time() < deadline:
                        live(0.5)
                    window["unread_at_end"] = len(self.unread_expired(resources))
                    self.expiry_off(resources)
        finally:
            if self._open_window is not None:
                self.expiry_off(resources)
        while wave_index < len(waves):  # fewer kills than planned waves: create the rest now
            creators.append(self.create_in_background(waves[wave_index]))
            wave_index += 1
        for thread in creators:
            thread.join()
        self.log("chaos/writers: kills done; waiting for the user and every resource to finish")
        if cfg.regressions or cfg.recreates:
            helpers[-1].join()  # the user's last edits land before the wait
        self.drain(resources, [primary], WRITERS)
        stop.set()
        for thread in helpers:
            thread.join(30)
        if second is not None and second.up:
            self.kill(second)
        self.kill(primary)  # every resource is terminal; a SIGKILL ends it at once (a SIGTERM takes seconds)

    # --- job records expiring ---

    def expiry_on(self, resources: list[Resource]) -> dict:
        """Finished jobs answer 404 `expiry_retention` s after their end, from now until `expiry_off`."""
        self.ecs.set_config(job_retention_seconds=self.cfg.expiry_retention)
        window = {"from_s": self.now_s(), "from": time.time(), "retention_s": self.cfg.expiry_retention}
        self._open_window = window
        window["_following_jobs"] = self.following_jobs(resources)
        return window

    def unread_expired(self, resources: list[Resource]) -> set[str]:
        """Resources that follow a job by its ID (Reinstalling, in the watch) whose record is gone now."""
        gone = {r["job_id"] for r in self.ecs.reinstalls() if r.get("job_expired")}
        assert self.watch is not None
        times = self.watch.snapshot()
        return {
            r.name
            for r in resources
            if r.name in times and times[r.name].phase == "Reinstalling" and times[r.name].job_id_now in gone
        }

    def following_jobs(self, resources: list[Resource]) -> set[str]:
        """Resources that follow a job by its ID (Reinstalling with a jobId) now, in the watch."""
        assert self.watch is not None
        times = self.watch.snapshot()
        return {
            r.name
            for r in resources
            if r.name in times and times[r.name].job_id_now and times[r.name].phase == "Reinstalling"
        }

    def expiry_off(self, resources: list[Resource]) -> None:
        """Back to the normal retention; what had expired by then is recorded (the job records come back:
        retention is read at lookup time)."""
        window = self._open_window
        assert window is not None
        self._open_window = None
        records = self.ecs.reinstalls()
        self.ecs.set_config(job_retention_seconds=self.normal_retention)
        window.update({"to_s": self.now_s(), "to": time.time()})
        expired = [r for r in records if r.get("job_expired")]
        assert self.watch is not None
        times = self.watch.snapshot()
        in_flight = {
            server_id(r.server) for r in resources if r.name in times and times[r.name].phase not in TERMINAL
        }
        window["expired_records"] = len(expired)
        following = window.pop("_following_jobs")
        # resources that followed a job by its ID when the window opened, and of them those terminal when it closed
        window["following_a_job_at_start"] = len(following)
        window["of_them_terminal_at_end"] = sum(
            1 for name in following if name in times and times[name].phase in TERMINAL
        )
        # expired while a resource of its server was not terminal yet: the operator may have to do without it
        window["expired_in_flight"] = sum(1 for r in expired if r["server_id"] in in_flight)
        self.expiry.append(window)
        self.log(
            f"  job expiry window {len(self.expiry)}: {window['to_s'] - window['from_s']:.1f}s, "
            f"{len(expired)} job records expired ({window['expired_in_flight']} with a resource in flight); "
            f"{window['following_a_job_at_start']} resources followed a job by its ID when it opened, "
            f"{window['of_them_terminal_at_end']} of them terminal when it closed; "
            f"{window.get('unread_at_end', 0)} still following a gone record when it closed"
        )

    # --- someone else on the servers ---

    def unknown_outcomes(self, resources: list[Resource]) -> list[tuple[Resource, str]]:
        """Resources whose outcome the operator does not know: Submitting with OutcomeUnknown, or Reinstalling
        without a job ID (only the action log names a rebuild; the server's state can lie)."""
        assert self.watch is not None
        times = self.watch.snapshot()
        with self._lock:
            uids = dict(self.uids)
        found = []
        for r in resources:
            t = times.get(r.name)
            if t is None or t.uid != uids.get(r.name):
                continue
            if t.phase == "Submitting" and t.reason == "OutcomeUnknown":
                found.append((r, "Submitting, outcome unknown"))
            elif t.phase == "Reinstalling" and t.job_id_now == "":
                found.append((r, "Reinstalling, job ID lost"))
        return found

    def others_loop(self, resources: list[Resource], stop: threading.Event) -> None:
        """Someone else at the console: an operation every `other_gap` seconds until the stage is over, mostly on
        servers whose resource's outcome is unknown."""
        cfg = self.cfg
        rng = random.Random(cfg.seed + 4)
        servers = sorted({r.server for r in resources})
        try:
            while not stop.wait(rng.uniform(*cfg.other_gap)):
                unknown = self.unknown_outcomes(resources)
                if unknown and rng.random() < cfg.other_unknown_fraction:
                    resource, target = rng.choice(unknown)
                    self.operate(rng, resource.server, target)
                else:
                    self.operate(rng, rng.choice(servers), "any server")
        except Exception as exc:
            self.errors.append(f"someone else's operations: {exc!r}")

    def operate(self, rng: random.Random, server: int, target: str) -> None:
        """One operation on `server`, chosen among those its status allows (a busy server: any, and the power
        ones are refused with 409, which is ignored)."""
        sid = server_id(server)
        view = self.ecs.server(sid)
        busy = bool(view.get("task_state") or view.get("current_job_id")) or view["status"] == "REBUILD"
        kind = "busy" if busy or view["status"] not in OTHER_OPERATIONS else view["status"]  # ERROR: any
        action = rng.choice(OTHER_OPERATIONS[kind])
        fail = rng.random() < self.cfg.other_fail_fraction
        n = len(self.operations)
        steps: list[tuple[str, dict]]
        if action == "stop+start":  # a console stop, then start a moment later
            steps = [("stop", {"fail": fail}), ("start", {})]
        elif action == "reboot":
            steps = [("reboot", {"type": "SOFT" if view["status"] == "ACTIVE" else "HARD", "fail": fail})]
        elif action == "resize":
            steps = [("resize", {"flavor": rng.choice(FLAVORS), "fail": fail})]
        elif action in ("stop", "start", "migrate"):
            steps = [(action, {"fail": fail})]
        elif action == "rename":
            steps = [("rename", {"name": f"renamed-by-someone-else-{n}"})]
        elif rng.random() < 0.7:
            steps = [("tag", {"set": {"owner": f"someone-else-{n}"}})]
        else:
            steps = [("tag", {"remove": ["owner"]})]
        results = []
        for i, (name, fields) in enumerate(steps):
            if i:
                time.sleep(rng.uniform(0.2, 1.0))
            answer = self.ecs.operate(sid, name, **fields)
            results.append(
                "refused (409)" if answer is None else ("failed" if fields.get("fail") else "done")
            )
            if answer is None:
                break
        self.operations.append(
            {
                "at_s": self.now_s(),
                "server": sid,
                "action": action,
                "target": target,
                "server_status": "busy" if busy else view["status"],
                "result": results[0] if len(set(results)) == 1 else " then ".join(results),
            }
        )

    def phases(self, resources: list[Resource]) -> dict:
        assert self.watch is not None
        times = self.watch.snapshot()
        return dict(Counter(times[r.name].phase if r.name in times else "(not created)" for r in resources))

    def drain(self, resources: list[Resource], processes: list[Managed], stage: str) -> None:
        began = time.monotonic()
        deadline = began + self.cfg.timeout
        last_print = 0.0
        terminal = 0
        while time.monotonic() < deadline:
            self.reap(processes)
            terminal = self.terminal_count(resources)
            if terminal >= len(resources):
                break
            if time.monotonic() - last_print > 10:
                self.log(f"  t={self.now_s():.1f}s terminal {terminal}/{len(resources)}")
                last_print = time.monotonic()
            time.sleep(0.2)
        self.stage_times[stage] = {
            "all_terminal_at_s": self.now_s() if terminal >= len(resources) else None,
            "drain_s": round(time.monotonic() - began, 1),
        }

    def second_loop(self, m: Managed, stop: threading.Event) -> None:
        """The second writer: down for a random while, up for a random window, over and over."""
        rng = random.Random(self.cfg.seed + 2)
        try:
            while not stop.wait(rng.uniform(*self.cfg.second_down)):
                began = self.now_s()
                self.start(m)
                until = time.time() + rng.uniform(*self.cfg.second_alive)
                while time.time() < until and not stop.is_set():
                    self.reap([m])
                    time.sleep(0.1)
                ended_by = "SIGKILL" if rng.random() < self.cfg.second_sigkill_fraction else "SIGTERM"
                if ended_by == "SIGKILL":
                    self.kill(m)
                else:
                    self.terminate(m)
                self.windows.append({"from_s": began, "to_s": self.now_s(), "ended_by": ended_by})
        except Exception as exc:
            self.errors.append(f"second operator loop: {exc!r}")

    # --- the user ---

    def user_loop(self, resources: list[Resource], period: float, stop: threading.Event) -> None:
        """At random moments of the kill period: a status set back to Pending, or a delete and re-create."""
        rng = random.Random(self.cfg.seed + 1)
        actions = ["regress"] * self.cfg.regressions + ["recreate"] * self.cfg.recreates
        moments = sorted(rng.uniform(0.1 * period, 0.9 * period) for _ in actions)
        rng.shuffle(actions)
        recreated: set[str] = set()
        begin = time.time()
        try:
            for moment, action in zip(moments, actions, strict=True):
                if stop.wait(max(0.0, begin + moment - time.time())):
                    return
                if action == "regress":
                    self.regress(rng, resources)
                else:
                    self.recreate(rng, resources, recreated)
        except Exception as exc:
            self.errors.append(f"user loop: {exc!r}")

    def candidates(self, resources: list[Resource], phases: tuple[str | None, ...]) -> list[Resource]:
        assert self.watch is not None
        times = self.watch.snapshot()
        with self._lock:
            uids = dict(self.uids)
        return [
            r
            for r in resources
            if r.name in uids
            and r.name in times
            and times[r.name].uid == uids[r.name]
            and times[r.name].phase in phases
        ]

    def pick(
        self,
        rng: random.Random,
        resources: list[Resource],
        phases: tuple[str | None, ...],
        patience: float = 10.0,
    ) -> Resource | None:
        deadline = time.time() + patience
        while True:
            found = self.candidates(resources, phases)
            if found:
                return rng.choice(found)
            if time.time() > deadline:
                return None
            time.sleep(0.3)

    def regress(self, rng: random.Random, resources: list[Resource]) -> None:
        """`kubectl patch ecsr NAME --subresource=status --type=merge -p '{"status":{"phase":"Pending"}}'`."""
        for _ in range(5):
            resource = self.pick(rng, resources, ("Submitting", "Reinstalling"))
            if resource is None:
                self.regressions.append(
                    {"at_s": self.now_s(), "skipped": "nothing Submitting or Reinstalling"}
                )
                return
            try:
                current = _retrying(lambda r=resource: self.kube.get_reinstall(r.name))
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            status = current.get("status") or {}
            if status.get("phase") not in ("Submitting", "Reinstalling"):
                continue  # moved on since the watch saw it: look again, as a person would
            patch: dict[str, Any] = {"phase": "Pending"}
            if rng.random() < self.cfg.regression_null_message:
                patch["message"] = None
            try:
                _retrying(lambda r=resource, p=patch: self.kube.patch_reinstall_status(r.name, {"status": p}))
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            self.regressions.append(
                {
                    "at_s": self.now_s(),
                    "resource": resource.name,
                    "server": resource.server,
                    "uid": current["metadata"]["uid"],
                    "from_phase": status.get("phase"),
                    "had_job_id": bool(status.get("jobId")),
                    "had_attempt": bool(status.get("attempt")),
                    "nulled_message": "message" in patch,
                }
            )
            return

    def wait_gone(self, name: str, uid: str, timeout: float = 300.0) -> float:
        """Seconds until the object `uid` is gone (its finalizer removed by the operator)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            try:
                body = _retrying(lambda: self.kube.get_reinstall(name))
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if body["metadata"]["uid"] != uid:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"{name} ({uid}) still there {timeout:.0f}s after its deletion")
        return round(time.monotonic() - began, 2)

    def recreate(self, rng: random.Random, resources: list[Resource], recreated: set[str]) -> None:
        """`kubectl delete ecsr NAME` mid-rollout, then `kubectl create` of the same manifest."""
        eligible = [r for r in resources if r.name not in recreated]
        resource = self.pick(rng, eligible, ("Submitting", "Reinstalling"), patience=5.0)
        if resource is None:
            resource = self.pick(rng, eligible, (None, "Pending", "Submitting", "Reinstalling"), patience=5.0)
        if resource is None:
            self.recreates.append({"at_s": self.now_s(), "skipped": "nothing in flight"})
            return
        recreated.add(resource.name)
        current = _retrying(lambda: self.kube.get_reinstall(resource.name))
        status = current.get("status") or {}
        with self._lock:
            self.recreated_servers.add(resource.server)
            self.uids.pop(resource.name, None)
        deleted_at = self.now_s()
        try:
            _retrying(lambda: self.kube.delete_reinstall(resource.name))
        except ApiException as exc:
            if exc.status != 404:
                raise
        # like `kubectl delete` (--wait): the finalizer keeps it while its request is on its way to the cloud
        gone_after = self.wait_gone(resource.name, str(current["metadata"]["uid"]))
        pause = rng.uniform(*self.cfg.recreate_pause)
        time.sleep(pause)
        self.create(resource)
        self.recreates.append(
            {
                "at_s": deleted_at,
                "resource": resource.name,
                "server": resource.server,
                "phase_when_deleted": status.get("phase"),
                "had_job_id": bool(status.get("jobId")),
                "deletion_waited_s": gone_after,
                "paused_s": round(pause, 2),
                "old_uid": current["metadata"]["uid"],
                "new_uid": self.uids.get(resource.name),
            }
        )

    # --- stage 2: leader election ---

    def lease_holder(self) -> str | None:
        try:
            holders = self.kube.lease_holders()
        except ApiException:
            return None
        pods = [m.pod_name for m in self.processes if m.election and m.pod_name]
        for holder in holders.values():
            for pod in pods:
                if holder == pod or holder.startswith(pod + "_") or holder.startswith(pod + "-"):
                    self.lease_seen = True
                    return pod
        return None

    def stage_election(self) -> None:
        cfg = self.cfg
        resources = self.plan.stage(ELECTION)
        a = self.process("election-a", "election", ELECTION, election=True, pod_name="chaos-a")
        b = self.process("election-b", "election", ELECTION, election=True, pod_name="chaos-b")
        pair = [a, b]
        self.start(a, wait=True)  # the first to start takes the Lease
        self.start(b, wait=True)
        waves = [resources[w :: cfg.election_kills + 1] for w in range(cfg.election_kills + 1)]
        creators = [self.create_in_background(waves[0])]
        lease = float(cfg.election_args.get("leader-election-lease-seconds", 15))
        self.log(
            f"chaos/election: {len(resources)} resources, {cfg.election_kills} leader kills, leader election "
            f"{'on' if '--leader-election' in self.flags else 'NOT SUPPORTED by this operator (both run)'}"
        )
        for kill in range(cfg.election_kills):
            until = time.time() + self.rng.uniform(*cfg.election_run_between_kills)
            while time.time() < until:
                self.reap(pair)
                time.sleep(0.1)
            holder = self.lease_holder()
            leader = next((m for m in pair if m.pod_name == holder), None)
            source = "lease"
            if leader is None:  # no lease (yet, or not supported): the longest-running process
                leader, source = min(pair, key=lambda m: m.op.started_at), "oldest process (no lease holder)"
            other = b if leader is a else a
            pending = len(resources) - self.terminal_count(resources)
            killed_at = time.time()
            self.kill(leader)
            lease_at = write_at = None
            while time.time() < killed_at + cfg.takeover_timeout:
                self.reap([other])
                if lease_at is None and self.lease_holder() == other.pod_name:
                    lease_at = time.time()
                assert self.watch is not None
                write_at = self.watch.first_status_change_after(killed_at + TAKEOVER_GRACE)
                if write_at is not None and (lease_at is not None or not self.lease_seen):
                    break
                if lease_at is not None and self.terminal_count(resources) >= len(resources):
                    break  # nothing left to write
                time.sleep(0.1)
            self.takeovers.append(
                {
                    "kill": kill + 1,
                    "at_s": round(killed_at - self.t0, 2),
                    "at": killed_at,
                    "killed": leader.pod_name,
                    "leader_from": source,
                    "resources_in_flight": pending,
                    "lease_taken_s": None if lease_at is None else round(lease_at - killed_at, 2),
                    "first_status_write_s": None if write_at is None else round(write_at - killed_at, 2),
                    "target_s": lease + 5,
                }
            )
            self.kills.append(
                {"stage": ELECTION, "process": leader.op.name, "at_s": round(killed_at - self.t0, 2)}
            )
            self.log(f"  leader kill {kill + 1}/{cfg.election_kills}: {self.takeovers[-1]}")
            self.start(leader, wait=True)  # back as the standby, up before the next kill
            creators.append(self.create_in_background(waves[kill + 1]))
        for thread in creators:
            thread.join()
        self.log("chaos/election: kills done; waiting for every resource to finish")
        self.drain(resources, pair, ELECTION)  # both stay up for the last metrics scrape; `run` stops them

    # --- the whole run ---

    def run(self) -> dict:
        cfg = self.cfg
        secrets = secret_values()
        started = time.time()
        scraper: MetricsScraper | None = None
        # What the operator accepts (its --help, an import of a second or two), learnt while the emulators start.
        flags = threading.Thread(target=harness.operator_run_flags, daemon=True)
        flags.start()
        try:
            self.ecs.start()
            self.kube.start()
            self.kube.wait_crd_served()
            self.kube.setup_namespaces_and_secrets()
            self.kube._secret(harness.NAMESPACE, USER_DATA_SECRET, {"user-data": USER_DATA})
            self.ecs.reset(init_seconds=INIT_SECONDS, job_seconds=cfg.job_seconds)
            self.normal_retention = float(self.ecs.config()["job_retention_seconds"])
            self.ecs.add_servers(
                {
                    "id": server_id(s),
                    "status": "ACTIVE",
                    "init_seconds": INIT_SECONDS,
                    "job_seconds": self.plan.job_seconds[s],
                    **(
                        {"outcome": "FAIL", "fail_code": FAIL_CODE, "fail_reason": FAIL_REASON}
                        if s in self.plan.fails
                        else {}
                    ),
                }
                for s in self.plan.servers
            )
            if cfg.ecs_faults:
                for rule in ecs_fault_rules(cfg):
                    self.ecs.add_fault(**rule)
            flags.join()
            self.flags = harness.operator_run_flags()
            self.watch = harness.ResourceWatch(self.kube).start()
            scraper = MetricsScraper(lambda: [m.op for m in self.processes], secrets).start()
            if cfg.kube_faults:
                for rule in kube_fault_rules(cfg):
                    self.kube.add_fault(rule)
            self.t0 = time.time()
            self.stage_writers()
            if cfg.election:
                self.stage_election()
            finished_at = time.time()
            time.sleep(1.2)  # one more metrics scrape of the final state
            scraper.stop()
            kube_fault_stats = self.kube.faults() if cfg.kube_faults else []
            self.kube.clear_faults()
            ecs_fault_stats = [
                {
                    k: f.get(k)
                    for k in ("operation", "status", "drop_connection", "latency_ms", "probability", "hits")
                }
                for f in self.ecs._call("GET", "/faults")
            ]
            self.ecs.clear_faults()
            items = self.kube.list_reinstalls()
            events = self.kube.events()
            counters = self.ecs.counters()
            records = self.ecs.reinstalls()
        finally:
            if scraper is not None:
                scraper.stop()
            if self.watch is not None:
                self.watch.stop()
            for m in self.processes:  # SIGTERM to all at once, then wait for each
                m.up = False
                if m.op.alive():
                    m.op.daemon.proc.terminate()  # type: ignore[union-attr]
            for m in self.processes:
                m.op.stop()
            self.kube.stop()
            self.ecs.stop()

        regressed = {r["resource"]: r["uid"] for r in self.regressions if "resource" in r}
        observed = Observed(
            items=items,
            records=records,
            created_at=dict(self.created_at),
            objects=dict(self.objects),
            recreated_servers=set(self.recreated_servers),
            regressed=regressed,
            expiry_windows=[(w["from"], w["to"], w["retention_s"]) for w in self.expiry if "to" in w],
        )
        result = verify(self.plan, observed)
        # what the verdict was made from, beside the logs (to re-run `verify` on it when a check needs a look)
        harness.json_dump(
            self.workdir / "observed.json",
            {**asdict(observed), "recreated_servers": sorted(observed.recreated_servers)},
        )
        findings = list(scraper.findings)
        log_lines = 0
        for m in self.processes:
            if m.op.log.exists():
                text = m.op.log.read_text(errors="replace")
                log_lines += text.count("\n")
                findings += scan_for_secrets(text, secrets, f"log of {m.op.name}")
        findings += scan_for_secrets(json.dumps(events), secrets, "events")
        findings += scan_for_secrets(json.dumps([i.get("status") for i in items]), secrets, "statuses")
        if findings:
            result["violations"].append({"invariant": INV_SECRETS, "found": findings[:20]})
        for exit_ in self.exits:
            result["violations"].append({"invariant": INV_EXITS, **exit_})
        for takeover in self.takeovers:
            if takeover["first_status_write_s"] is None and takeover["resources_in_flight"]:
                result["violations"].append(
                    {"invariant": INV_TAKEOVER, "problem": "no status write", **takeover}
                )
            elif self.lease_seen and takeover["lease_taken_s"] is None:
                result["violations"].append(
                    {"invariant": INV_TAKEOVER, "problem": "lease not taken", **takeover}
                )
        for error in self.errors:
            result["violations"].append({"invariant": "the chaos run itself worked", "error": error})
        times = self.watch.snapshot() if self.watch is not None else {}
        result.update(
            {
                "config": asdict(cfg),
                "wall_s": round(time.time() - started, 1),
                "to_all_terminal_s": round(finished_at - self.t0, 1),
                "stages": self.stage_times,
                "leader_election_supported": "--leader-election" in self.flags,
                "kills": self.kills,
                "operator_starts": {m.op.name: m.op.starts for m in self.processes},
                "exits": {"unexpected": self.exits, "leadership_lost": self.leadership_exits},
                "second_operator_windows": self.windows,
                "regressions": self.regressions,
                "recreates": self.recreates,
                "other_operations": operations_summary(self.operations),
                "job_expiry_windows": [
                    {k: v for k, v in w.items() if k not in ("from", "to")} for w in self.expiry
                ],
                "takeovers": self.takeovers_summary(records),
                "secret_scan": {
                    "metrics_pages": scraper.pages,
                    "operator_log_lines": log_lines,
                    "events": len(events),
                    "statuses": len(items),
                    "findings": len(findings),
                },
                "operator_log": log_summary(
                    "\n".join(
                        m.op.log.read_text(errors="replace") for m in self.processes if m.op.log.exists()
                    )
                ),
                "ecs": {
                    "requests": counters["requests"],
                    "faults_hit": counters["faults_hit"],
                    "throttled": counters["throttled"],
                    "fault_rules": ecs_fault_stats,
                },
                "kube_fault_rules": kube_fault_stats,
                "watch": {"events": self.watch.events, "restarts": self.watch.restarts} if self.watch else {},
                "slowest": sorted(
                    ([name, round(t.terminal - self.t0, 2)] for name, t in times.items() if t.terminal),
                    key=lambda row: -row[1],
                )[:10],
                "timeline": {
                    "submitted": sorted(
                        round(t.submitted - self.t0, 2) for t in times.values() if t.submitted
                    ),
                    "terminal": sorted(round(t.terminal - self.t0, 2) for t in times.values() if t.terminal),
                },
            }
        )
        return result

    def takeovers_summary(self, records: list[dict]) -> dict:
        """Per leader kill, also the first reinstall the cloud accepted after it (only the other process can
        have sent it, unless a request of the killed one was still on its way)."""
        accepted = sorted(_epoch(r["at"]) for r in records)
        rows = []
        for t in self.takeovers:
            after = next((a for a in accepted if a > t["at"]), None)
            row = {k: v for k, v in t.items() if k != "at"}
            row["first_accepted_reinstall_s"] = None if after is None else round(after - t["at"], 2)
            rows.append(row)
        writes = [r["first_status_write_s"] for r in rows if r["first_status_write_s"] is not None]
        leases = [r["lease_taken_s"] for r in rows if r["lease_taken_s"] is not None]
        target = rows[0]["target_s"] if rows else None
        return {
            "kills": rows,
            "first_status_write_s": _spread(writes),
            "lease_taken_s": _spread(leases),
            "target_s": target,
            "within_target": sum(1 for w in writes if target is not None and w <= target),
        }


def operations_summary(operations: list[dict]) -> dict:
    """Someone else's operations: counts by action and result, by target, and each one (for the timeline)."""
    by_action: dict[str, Counter] = defaultdict(Counter)
    for op in operations:
        by_action[op["action"]][op["result"]] += 1
    return {
        "total": len(operations),
        "by_action": {action: dict(results) for action, results in sorted(by_action.items())},
        "by_target": dict(Counter(op["target"] for op in operations)),
        "changed_a_server_with_unknown_outcome": sum(
            1 for op in operations if op["target"] != "any server" and op["result"] != "refused (409)"
        ),
        "refused": sum(1 for op in operations if op["result"] == "refused (409)"),
        "all": operations,
    }


def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"n": len(values), "min": min(values), "median": statistics.median(values), "max": max(values)}


# --- the invariants ---------------------------------------------------------------------------------------------


@dataclass
class Observed:
    """What the run saw, for `verify` (a pure function of the plan and these)."""

    items: list[dict]  # every EcsReinstall at the end
    # the ECS emulator's accepted reinstalls: server_id, job_id, at (ISO, ms), end_at_epoch, outcome, client_token,
    # action_request_id, job_expired (now)
    records: list[dict]
    created_at: dict[str, float]  # name -> when the create request of the current object began
    objects: dict[int, int]  # server -> resource objects (uids) created for it
    recreated_servers: set[int] = field(default_factory=set)  # a resource of it was deleted and re-created
    regressed: dict[str, str] = field(default_factory=dict)  # name -> uid whose status the user set back
    # (from, to, retention) of every window of short job retention, wall clock = the emulator's (no offset)
    expiry_windows: list[tuple[float, float, float]] = field(default_factory=list)


def ready_reason(status: dict) -> str | None:
    """The Ready condition's reason (for a terminal resource: the witness that decided it), else Stalled's."""
    for kind in ("Ready", "Stalled"):
        for c in status.get("conditions") or ():
            if c.get("type") == kind and c.get("reason"):
                return c["reason"]
    return None


def expired_in_a_window(record: dict, windows: Iterable[tuple[float, float, float]]) -> bool:
    """Did the job's record answer 404 at some moment (its end + the short retention before a window closed)?"""
    end = record.get("end_at_epoch")
    if end is None and record.get("end_at"):
        end = _epoch(record["end_at"])
    return end is not None and any(end + retention <= to for _from, to, retention in windows)


TOKEN_COUNTS = (
    "accepted",  # accepted reinstalls
    "accepted_matched",  # ... whose X-Client-Token is a surviving resource's attempt ID
    "accepted_of_deleted_objects",  # ... whose token no surviving resource names (its server had a deleted one)
    "resources_matched",  # terminal resources whose attempt ID is the token of the one reinstall they made
    "resources_without_attempt",  # terminal resources with no attempt recorded (not checked)
)


def verify(plan: Plan, seen: Observed) -> dict:
    """The invariants 1-4, 8 and 9; the classes of how each resource went and which witness decided it."""
    by_name = {item["metadata"]["name"]: item for item in seen.items}
    by_server_id = {server_id(s): s for s in plan.servers}
    accepted: dict[int, list[tuple[float, str]]] = defaultdict(list)  # server -> [(accepted at, job ID)]
    for record in seen.records:
        server = by_server_id.get(record["server_id"])
        if server is not None:
            accepted[server].append((_epoch(record["at"]), record["job_id"]))
    for runs in accepted.values():
        runs.sort()
    record_of_job = {record["job_id"]: record for record in seen.records}
    record_of_request = {r["action_request_id"]: r for r in seen.records if r.get("action_request_id")}
    records_of_token: dict[str, list[dict]] = defaultdict(list)
    for record in seen.records:
        if record.get("client_token"):
            records_of_token[record["client_token"]].append(record)
    regressed = {
        name
        for name, uid in seen.regressed.items()
        if name in by_name and by_name[name]["metadata"].get("uid") == uid
    }
    violations: list[dict] = []
    classes: Counter = Counter()
    phases: Counter = Counter()
    witnesses: Counter = Counter()
    reasons: Counter = Counter()
    tokens: Counter = Counter()
    credited: dict[str, list[str]] = defaultdict(list)  # job ID -> resources whose status names it
    credited_rebuilds: dict[str, list[str]] = defaultdict(list)  # rebuild request ID -> resources naming it
    attempt_ids: dict[str, str] = {}  # attempt ID -> resource, of every surviving resource
    for r in plan.resources:
        item = by_name.get(r.name)
        status = (item or {}).get("status") or {}
        phase = status.get("phase")
        phases[phase or "(none)"] += 1
        runs = accepted.get(r.server, [])
        created = seen.created_at.get(r.name, 0.0)
        jobs = {job: at for at, job in runs}
        own = [job for at, job in runs if at >= created - 0.002]
        problems = []
        if item is None:
            problems.append("resource missing")
        if phase not in TERMINAL:
            problems.append(f"not terminal: phase {phase}")
        else:
            if phase != plan.expected_phase(r.server):
                problems.append(
                    f"phase {phase} but the cloud job {'failed' if r.server in plan.fails else 'succeeded'}"
                )
            if not own:
                problems.append(
                    f"phase {phase} but the cloud accepted no reinstall after this object was created"
                )
        if FINALIZER in (((item or {}).get("metadata") or {}).get("finalizers") or ()):
            problems.append(f"phase {phase}, and the finalizer {FINALIZER} is still on it")
        job_id = status.get("jobId")
        failure = status.get("failure") or {}
        code = failure.get("code")
        reason = ready_reason(status)
        # the code names the witness; from the action log, the cloud's code is in the rebuild's words
        expected_code = FAILURE_CODES.get(reason or "", FAIL_CODE)
        if phase == "Failed" and r.server in plan.fails:
            if code != expected_code:
                problems.append(
                    f"failure code {code!r}, expected {expected_code!r} for reason {reason!r} "
                    f"(the cloud's is {FAIL_CODE!r})"
                )
            elif reason == "FailedFromActionLog" and FAIL_CODE not in str(failure.get("reason")):
                problems.append(
                    f"failure reason {failure.get('reason')!r} lacks the cloud's code {FAIL_CODE!r}"
                )
        if job_id:
            credited[job_id].append(r.name)
            if job_id not in jobs:
                problems.append(f"jobId {job_id} is not a reinstall the cloud accepted for its server")
            elif jobs[job_id] < created - 0.002:
                problems.append(f"jobId {job_id} was accepted before this object was created")
        lost = not job_id and bool(own)  # never learnt ("" or absent), yet the cloud took it
        if problems:
            violations.append(
                {
                    "invariant": INV_REGRESSION if r.name in regressed else INV_RESOURCE,
                    "resource": r.name,
                    "server": server_id(r.server),
                    "cloud_outcome": plan.outcome(r.server),
                    "accepted_for_server": len(runs),
                    "job_id_lost": lost,
                    "ready_reason": reason,
                    "problems": problems,
                    "message": status.get("message"),
                }
            )
        if item is None:
            continue
        attempt = status.get("attempt") or {}
        attempt_id = attempt.get("id")
        if attempt_id:
            attempt_ids[str(attempt_id)] = r.name
        if phase not in TERMINAL:
            continue
        # --- 8: decided by the right witness ---
        witness = WITNESSES.get(reason or "", "other")
        witnesses[witness] += 1
        reasons[reason or "(none)"] += 1
        record_of_own_job = record_of_job.get(job_id) if job_id else None
        request_id = attempt.get("requestId")
        rebuild = record_of_request.get(request_id) if request_id else None
        mine = records_of_token.get(str(attempt_id), []) if attempt_id else []
        made = mine[0] if len(mine) == 1 else (record_of_own_job or rebuild)  # the reinstall it made
        expired = record_of_own_job is not None and expired_in_a_window(
            record_of_own_job, seen.expiry_windows
        )
        why = ""
        wrong = []
        if witness == "job":
            why = " (its job ID)"
            if not job_id:
                wrong.append(f"reason {reason} without a job ID")
            elif record_of_own_job is not None and record_of_own_job.get("job_expired"):
                wrong.append(f"reason {reason} but job {job_id}'s record is gone")
        elif witness == "action log":
            why = (
                " (job ID lost)"
                if not job_id
                else (" (job record expired)" if expired else " (job readable)")
            )
            if job_id and not expired:
                wrong.append(
                    f"decided from the action log although job {job_id}'s record never expired "
                    "(the job could be read)"
                )
            if not request_id:
                wrong.append(f"reason {reason} but no rebuild named (attempt.requestId)")
            elif rebuild is None or rebuild["server_id"] != server_id(r.server):
                wrong.append(f"rebuild {request_id} is no reinstall the cloud accepted for its server")
            else:
                credited_rebuilds[request_id].append(r.name)
                if attempt_id and rebuild.get("client_token") != attempt_id:
                    wrong.append(
                        f"rebuild {request_id} (job {rebuild['job_id']}) was made by another request (token "
                        f"{rebuild.get('client_token')}), not by its attempt {attempt_id}"
                    )
                elif made is not None and rebuild is not made:
                    wrong.append(
                        f"rebuild {request_id} (job {rebuild['job_id']}) is not the one its own request made "
                        f"(job {made['job_id']}, rebuild {made.get('action_request_id')})"
                    )
        elif witness == "server state":
            wrong.append(f"decided from the server's state ({reason}) although the action log is on")
        else:
            wrong.append(f"reason {reason}: decided by no record of the cloud's")
        if made is not None and witness != "other":
            cloud = made.get("outcome")
            if cloud and (reason in SUCCESS_REASONS) != (cloud == "SUCCESS"):
                wrong.append(f"reason {reason} but its reinstall (job {made['job_id']}) ended {cloud}")
        classes[f"{phase} by the {witness}{why}"] += 1
        if wrong:
            violations.append(
                {
                    "invariant": INV_WITNESS,
                    "resource": r.name,
                    "server": server_id(r.server),
                    "cloud_outcome": (made or {}).get("outcome", plan.outcome(r.server)),
                    "job_id": job_id,
                    "job_id_lost": not job_id,
                    "job_expired_in_a_window": expired,
                    "ready_reason": reason,
                    "attempt": {
                        k: attempt.get(k) for k in ("id", "requestId", "cloudStartedAt", "startedAt")
                    },
                    "problems": wrong,
                    "message": status.get("message"),
                }
            )
        # --- 9: its attempt's ID is the token of the reinstall it made ---
        if witness not in ("job", "action log"):
            continue
        if not attempt_id:
            tokens["resources_without_attempt"] += 1
            continue
        bad = []
        if not mine:
            bad.append(f"no accepted reinstall carries its attempt's ID {attempt_id} as X-Client-Token")
        elif len(mine) > 1:
            bad.append(f"{len(mine)} accepted reinstalls carry its attempt's ID {attempt_id}")
        elif mine[0]["server_id"] != server_id(r.server):
            bad.append(f"the reinstall with its attempt's token is of server {mine[0]['server_id']}")
        if record_of_own_job is not None and record_of_own_job.get("client_token") != attempt_id:
            bad.append(
                f"its job {job_id} was accepted with token {record_of_own_job.get('client_token')!r}, "
                f"not its attempt's {attempt_id}"
            )
        if bad:
            violations.append(
                {"invariant": INV_TOKEN, "resource": r.name, "server": server_id(r.server), "problems": bad}
            )
        else:
            tokens["resources_matched"] += 1
    for job_id, names in credited.items():
        if len(names) > 1:
            violations.append(
                {
                    "invariant": INV_RESOURCE,
                    "job_id": job_id,
                    "problems": [f"one job credited to {len(names)} resources: {', '.join(sorted(names))}"],
                }
            )
    for request_id, names in credited_rebuilds.items():
        if len(names) > 1:
            violations.append(
                {
                    "invariant": INV_WITNESS,
                    "rebuild": request_id,
                    "problems": [
                        f"one rebuild credited to {len(names)} resources: {', '.join(sorted(names))}"
                    ],
                }
            )
    # --- 9, per accepted reinstall ---
    for record in seen.records:
        server = by_server_id.get(record["server_id"])
        token = record.get("client_token")
        bad = []
        tokens["accepted"] += 1
        if not token or not UUID.match(str(token)):
            bad.append(f"accepted with X-Client-Token {token!r}, not an attempt's UUID")
        elif len(records_of_token[token]) > 1:
            bad.append(f"its token {token} was accepted {len(records_of_token[token])} times")
        elif token in attempt_ids:
            tokens["accepted_matched"] += 1
        elif server in seen.recreated_servers:
            tokens["accepted_of_deleted_objects"] += 1
        else:
            bad.append(f"its token {token} is the attempt ID of no resource (none of its server was deleted)")
        if bad:
            violations.append(
                {
                    "invariant": INV_TOKEN,
                    "server": record["server_id"],
                    "job_id": record["job_id"],
                    "problems": bad,
                }
            )
    per_server: Counter = Counter()
    resources_of: dict[int, list[str]] = defaultdict(list)
    for r in plan.resources:
        resources_of[r.server].append(r.name)
    for server in plan.servers:
        runs = accepted.get(server, [])
        n, objects = len(runs), seen.objects.get(server, 0)
        surviving = sum(1 for name in resources_of[server] if name in by_name)
        kind = (
            "re-created"
            if server in seen.recreated_servers
            else ("shared" if len(resources_of[server]) > 1 else "single")
        )
        per_server[f"{kind}: {n}"] += 1
        problems = []
        if n > objects:
            problems.append(f"the cloud accepted {n} reinstalls for {objects} resource object(s)")
        elif server not in seen.recreated_servers and n != objects:
            problems.append(
                f"the cloud accepted {n} reinstalls for {objects} resource object(s), none deleted"
            )
        elif n < surviving:
            problems.append(f"the cloud accepted {n} reinstalls for {surviving} resource(s)")
        if problems:
            hand_edited = any(name in regressed for name in resources_of[server])
            violations.append(
                {
                    "invariant": INV_REGRESSION if hand_edited else INV_COUNT,
                    "server": server_id(server),
                    "resources": resources_of[server],
                    "kind": kind,
                    "cloud_outcome": plan.outcome(server),
                    "problems": problems,
                    "accepted_at": [
                        datetime.fromtimestamp(at).isoformat(timespec="milliseconds") for at, _ in runs
                    ],
                }
            )
        for (at, job), (next_at, next_job) in itertools.pairwise(runs):
            ends = at + plan.run_seconds(server)
            if next_at < ends - 0.002:
                violations.append(
                    {
                        "invariant": INV_OVERLAP,
                        "server": server_id(server),
                        "problems": [
                            f"job {next_job} accepted {next_at - at:.3f}s after job {job}, which ran "
                            f"{plan.run_seconds(server):.3f}s"
                        ],
                    }
                )
    expected = Counter(plan.expected_phase(r.server) for r in plan.resources)
    return {
        "violations": violations,
        "phases": dict(phases),
        "how": dict(sorted(classes.items())),
        "witnesses": {w: witnesses.get(w, 0) for w in ("job", "action log", "server state", "other")},
        "reasons": dict(sorted(reasons.items())),
        "tokens": {k: tokens.get(k, 0) for k in TOKEN_COUNTS},
        "accepted_reinstalls": dict(sorted(per_server.items())),
        "regressed_resources": len(regressed),
        "expected": dict(expected),
    }


def run_chaos(cfg: ChaosConfig, workdir: Path, log: Callable[[str], None] = print) -> dict:
    """Runs the scenario in `workdir` (logs stay there) and returns the result, `violations` included."""
    return Scenario(cfg, workdir, log).run()


def log_summary(text: str) -> dict:
    levels: Counter = Counter()
    messages: Counter = Counter()
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            levels["(not JSON)"] += 1
            continue
        if not isinstance(record, dict):
            levels["(not JSON)"] += 1
            continue
        level = record.get("severity") or record.get("levelname") or "?"
        levels[level] += 1
        if str(level).lower() in ("warn", "warning", "error", "critical"):
            messages[str(record.get("message", ""))[:90]] += 1
    return {"lines_by_level": dict(levels), "top_warnings_and_errors": messages.most_common(15)}
