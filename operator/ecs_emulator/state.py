"""Everything the emulated cloud knows: servers, jobs, key pairs, credentials, configuration and counters.

A reinstall is accepted at ``t0`` and then, lazily against the clock (no background task):

- job ``INIT`` during ``init_seconds``, then ``RUNNING`` during ``job_seconds``, then ``SUCCESS`` or ``FAIL``;
  ``begin_time`` is ``t0``, ``end_time`` is ``""`` until the end; one sub job ``reinstallSingleServer``
  (``begin_time`` when RUNNING starts); on FAIL the job and sub job carry ``error_code`` / ``fail_reason``
  (and the sub job's ``entities.errorcode_message``);
- the server is ``REBUILD`` with task_state ``rebuilding`` until half way through RUNNING, then
  ``rebuild_spawning``; ``updated`` is ``t0``, then the time spawning started, then the end time;
- at the end, on SUCCESS the server is ``ACTIVE`` (a reinstalled ECS is started, whether it was running and
  stopped by ``mode: withStopServer`` or already stopped) and its ``OS-SRV-USG:launched_at`` becomes the end
  time, as Nova's rebuild sets ``launched_at`` when the new system boots; on FAIL it goes back to its previous
  status (``fail_status: "previous"``, the default) or to ``ERROR`` (``fail_status: "ERROR"``) and keeps its
  launch time.

Durations, outcome, failure code / reason and fail status come from the emulator configuration, overridden per
server. All times are the cloud's (`EmulatorState.now`: the injected `Clock` plus ``clock_offset_seconds``).

Each server keeps its action log (`actions`): ``create`` when it appears, ``rebuild`` when a reinstall is
accepted (its event finishes when `refresh` sees the job end), and the operations of someone else
(`operations`). A finished job's record answers 404 ``Common.0011`` ``job_retention_seconds`` after its end;
``self.jobs`` keeps it for in-process checks. ``X-Client-Token`` uses are kept in `client_tokens` (`tokens`).

A change of OS (``.../changeos``, `change_os`) is a reinstall with another image: the same checks of the
server (factored in `_check_server`), the same job, phases and ``rebuild`` action (`_start_job`), plus the
image checks against the catalogue (`images`, `_check_image`); the job's type is ``changeOS`` (sub job
``changeOSSingleServer``) and on SUCCESS the server's ``image_id`` (and ``os_type``) become the new image's.
With ``change_os_requires_stopped`` on, only a stopped ECS or one whose last reinstall / change of OS failed
may change its OS (`_check_server`).
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

from ecs_emulator.actions import API_USER_ID, Action, new_request_id
from ecs_emulator.clock import Clock, SystemClock, iso_action, iso_millis, iso_seconds, parse_iso
from ecs_emulator.errors import EcsError
from ecs_emulator.faults import FaultRegistry, RateLimit, RateLimiter
from ecs_emulator.tokens import ClientTokens, TokenUse
from ecs_emulator.validation import CHANGE_OS, REINSTALL, ReinstallRequest, check_password

DEFAULT_FAIL_CODE = "Ecs.0000"
DEFAULT_FAIL_REASON = "Reinstalling the OS failed: the system disk could not be rebuilt (emulated failure)."
CHANGE_OS_FAIL_REASON = "Changing the OS failed: the system disk could not be rebuilt (emulated failure)."
JOB_TYPE = "reinstallOS"
SUB_JOB_TYPE = "reinstallSingleServer"
# Not documented (neither are the reinstall ones): plausible names in the same style.
CHANGE_OS_JOB_TYPE = "changeOS"
CHANGE_OS_SUB_JOB_TYPE = "changeOSSingleServer"
JOB_TYPES = {REINSTALL: (JOB_TYPE, SUB_JOB_TYPE), CHANGE_OS: (CHANGE_OS_JOB_TYPE, CHANGE_OS_SUB_JOB_TYPE)}
DEFAULT_FLAVOR = "s6.small.1"
DEFAULT_IMAGE_ID = "emulated-image-0000"  # a server's image unless given (not in the catalogue)
IMAGE_STATUSES = ("queued", "saving", "active", "killed", "deleted", "deactivated")  # IMS / Glance


class ServerStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SHUTOFF = "SHUTOFF"
    REBUILD = "REBUILD"
    ERROR = "ERROR"


class Outcome(StrEnum):
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"


class FailStatus(StrEnum):
    PREVIOUS = "previous"
    ERROR = "ERROR"


_VM_STATE = {"ACTIVE": "active", "SHUTOFF": "stopped", "REBUILD": "stopped", "ERROR": "error"}
_POWER_STATE = {"ACTIVE": 1}  # running; anything else is 4 (shutdown)


@dataclass(frozen=True)
class JobBehaviour:
    """How reinstall jobs behave: the emulator default, overridable per server."""

    init_seconds: float = 0.5
    job_seconds: float = 2.0
    outcome: Outcome = Outcome.SUCCESS
    fail_code: str = DEFAULT_FAIL_CODE
    fail_reason: str = DEFAULT_FAIL_REASON
    fail_status: FailStatus = FailStatus.PREVIOUS


JOB_BEHAVIOUR_FIELDS = tuple(f.name for f in fields(JobBehaviour))


def parse_job_behaviour(data: dict, base: JobBehaviour | None = None) -> dict:
    """Validate the job-behaviour fields present in ``data``; return them typed (absent ones left out)."""
    typed: dict = {}
    for name in ("init_seconds", "job_seconds"):
        if name in data:
            value = data[name]
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
            typed[name] = float(value)
    if "outcome" in data:
        if data["outcome"] not in ("SUCCESS", "FAIL"):
            raise ValueError(f"outcome must be 'SUCCESS' or 'FAIL', not {data['outcome']!r}")
        typed["outcome"] = Outcome(data["outcome"])
    if "fail_status" in data:
        if data["fail_status"] not in ("previous", "ERROR"):
            raise ValueError(f"fail_status must be 'previous' or 'ERROR', not {data['fail_status']!r}")
        typed["fail_status"] = FailStatus(data["fail_status"])
    for name in ("fail_code", "fail_reason"):
        if name in data:
            if not isinstance(data[name], str) or not data[name]:
                raise ValueError(f"{name} must be a non-empty string")
            typed[name] = data[name]
    if base is not None:
        replace(base, **typed)  # type check of the combination
    return typed


@dataclass
class EmulatorConfig:
    job: JobBehaviour = field(default_factory=JobBehaviour)
    auto_create_servers: bool = False
    byol_supported: bool = True
    rate_limit: RateLimit | None = None
    operation_rate_limits: dict[str, RateLimit] = field(default_factory=dict)
    accept_any_security_token: bool = False
    max_clock_skew_seconds: float = 15 * 60
    # the cloud's records and clock (see README "Choices worth knowing": each is a guess, switchable)
    job_retention_seconds: float = 86400.0  # finished jobs answer 404 Common.0011 this long after their end
    clock_offset_seconds: float = 0.0  # the cloud's clock minus the machine's (stamps, Date, signature check)
    action_log: str = "enabled"  # "enabled" | "404" (API unpublished) | "403" (refused by policy)
    action_request_id: str = "response"  # rebuild's request_id: "response" (X-Request-Id) | "generated"
    action_time_resolution: str = "second"  # "second" (.000000) | "microsecond"
    reinstall_stop_action: bool = False  # a reinstall withStopServer of an ACTIVE server also logs "stop"
    # change OS: only a stopped ECS or one whose last reinstall / change of OS failed (older docs)
    change_os_requires_stopped: bool = False
    client_token: str = "honoured"  # noqa: S105 - X-Client-Token on the reinstall APIs: "honoured" | "ignored"
    client_token_ttl_seconds: float = 8 * 3600.0

    def to_json(self) -> dict:
        return {
            **{name: _jsonable(getattr(self.job, name)) for name in JOB_BEHAVIOUR_FIELDS},
            "auto_create_servers": self.auto_create_servers,
            "byol_supported": self.byol_supported,
            "rate_limit": _limit_json(self.rate_limit),
            "operation_rate_limits": {
                op: _limit_json(limit) for op, limit in self.operation_rate_limits.items()
            },
            "accept_any_security_token": self.accept_any_security_token,
            "max_clock_skew_seconds": self.max_clock_skew_seconds,
            **{name: getattr(self, name) for name in _RECORD_FIELDS},
        }


def _jsonable(value: object) -> object:
    return value.value if isinstance(value, StrEnum) else value


def _limit_json(limit: RateLimit | None) -> dict | None:
    return None if limit is None else {"qps": limit.qps, "burst": limit.burst}


_RECORD_FIELDS = (
    "job_retention_seconds",
    "clock_offset_seconds",
    "action_log",
    "action_request_id",
    "action_time_resolution",
    "reinstall_stop_action",
    "change_os_requires_stopped",
    "client_token",
    "client_token_ttl_seconds",
)
_CHOICES = {
    "action_log": ("enabled", "404", "403"),
    "action_request_id": ("response", "generated"),
    "action_time_resolution": ("second", "microsecond"),
    "client_token": ("honoured", "ignored"),
}

CONFIG_FIELDS = (
    *JOB_BEHAVIOUR_FIELDS,
    "auto_create_servers",
    "byol_supported",
    "rate_limit",
    "operation_rate_limits",
    "accept_any_security_token",
    "max_clock_skew_seconds",
    *_RECORD_FIELDS,
)


def _number(data: dict, name: str, *, minimum: float | None = None, positive: bool = False) -> float:
    value = data[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be a number of seconds >= {minimum:g}, not {value!r}")
    return float(value)


def apply_config(config: EmulatorConfig, data: object) -> EmulatorConfig:
    """A new configuration with the fields of ``data`` changed; `ValueError` on any bad field."""
    if not isinstance(data, dict):
        raise ValueError("the configuration must be a JSON object")
    unknown = sorted(set(data) - set(CONFIG_FIELDS))
    if unknown:
        raise ValueError(f"unknown configuration field(s) {unknown}; allowed: {list(CONFIG_FIELDS)}")
    changes: dict = {"job": replace(config.job, **parse_job_behaviour(data))}
    for name in (
        "auto_create_servers",
        "byol_supported",
        "accept_any_security_token",
        "reinstall_stop_action",
        "change_os_requires_stopped",
    ):
        if name in data:
            if not isinstance(data[name], bool):
                raise ValueError(f"{name} must be true or false")
            changes[name] = data[name]
    if "max_clock_skew_seconds" in data:
        skew = data["max_clock_skew_seconds"]
        if not isinstance(skew, int | float) or skew <= 0:
            raise ValueError("max_clock_skew_seconds must be a positive number")
        changes["max_clock_skew_seconds"] = float(skew)
    if "rate_limit" in data:
        changes["rate_limit"] = RateLimit.from_json(data["rate_limit"])
    if "operation_rate_limits" in data:
        limits = data["operation_rate_limits"] or {}
        if not isinstance(limits, dict):
            raise ValueError('operation_rate_limits must be an object {"<operation>": {"qps", "burst"}}')
        changes["operation_rate_limits"] = {op: RateLimit.from_json(limit) for op, limit in limits.items()}
    for name, choices in _CHOICES.items():
        if name in data:
            if data[name] not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, not {data[name]!r}")
            changes[name] = data[name]
    if "job_retention_seconds" in data:
        changes["job_retention_seconds"] = _number(data, "job_retention_seconds", minimum=0)
    if "client_token_ttl_seconds" in data:
        changes["client_token_ttl_seconds"] = _number(data, "client_token_ttl_seconds", positive=True)
    if "clock_offset_seconds" in data:
        changes["clock_offset_seconds"] = _number(data, "clock_offset_seconds")
    return replace(config, **changes)


@dataclass(frozen=True)
class Credential:
    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    project_id: str | None = None


@dataclass
class Image:
    """An image of the catalogue: what a change of OS may use (``imageid``)."""

    id: str
    name: str
    os_type: str = "Linux"  # "Linux" | "Windows"
    cloud_init: bool = True  # Cloud-Init / Cloudbase-Init installed: the v2 (with Cloud-Init) API needs it
    status: str = "active"

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "os_type": self.os_type,
            "cloud_init": self.cloud_init,
            "status": self.status,
        }


IMAGE_FIELDS = ("id", "name", "os_type", "cloud_init", "status")
_IMAGE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse_image(data: object, existing: Image | None = None) -> Image:
    """An image from admin JSON (a new one, or ``existing`` with the fields given changed); `ValueError`."""
    if not isinstance(data, dict):
        raise ValueError("an image must be a JSON object")
    allowed = IMAGE_FIELDS if existing is None else IMAGE_FIELDS[1:]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"unknown or read-only image field(s) {unknown}; allowed: {list(allowed)}")
    if existing is None:
        image_id = data.get("id")
        if not isinstance(image_id, str) or not _IMAGE_ID.match(image_id):
            raise ValueError("id is required: a lower-case UUID (8-4-4-4-12), as IMS image IDs are")
        existing = Image(id=image_id, name=f"image-{image_id[:8]}")
    changes: dict = {}
    if "name" in data:
        if not isinstance(data["name"], str) or not data["name"]:
            raise ValueError("name must be a non-empty string")
        changes["name"] = data["name"]
    if "os_type" in data:
        if data["os_type"] not in ("Linux", "Windows"):
            raise ValueError(f"os_type must be 'Linux' or 'Windows', not {data['os_type']!r}")
        changes["os_type"] = data["os_type"]
    if "cloud_init" in data:
        if not isinstance(data["cloud_init"], bool):
            raise ValueError("cloud_init must be true or false")
        changes["cloud_init"] = data["cloud_init"]
    if "status" in data:
        if data["status"] not in IMAGE_STATUSES:
            raise ValueError(f"status must be one of {list(IMAGE_STATUSES)}, not {data['status']!r}")
        changes["status"] = data["status"]
    return replace(existing, **changes)


@dataclass
class Job:
    job_id: str
    project_id: str
    server_id: str
    sub_job_id: str
    accepted_at: float
    running_at: float
    end_at: float
    behaviour: JobBehaviour
    previous_status: str
    action: Action | None = field(default=None, repr=False)  # the server's "rebuild" action
    kind: str = REINSTALL  # "reinstall" | "change_os"
    image: Image | None = None  # change OS: the new image (the server takes its ID and OS type on SUCCESS)

    def status_at(self, now: float) -> str:
        if now >= self.end_at:
            return self.behaviour.outcome.value
        return "RUNNING" if now >= self.running_at else "INIT"

    def expired(self, now: float, retention_seconds: float) -> bool:
        """Finished longer than the retention ago: the job record is gone (GET answers 404 Common.0011)."""
        return now >= self.end_at + retention_seconds

    @property
    def traceback(self) -> str:
        """What the failed rebuild event carries as ``traceback``: the job's error code and reason."""
        return f"{self.behaviour.fail_code}: {self.behaviour.fail_reason}"

    @property
    def spawning_at(self) -> float:
        return self.running_at + (self.end_at - self.running_at) / 2

    def to_json(self, now: float) -> dict:
        status = self.status_at(now)
        failed = status == "FAIL"
        finished = now >= self.end_at
        error_code = self.behaviour.fail_code if failed else None
        fail_reason = self.behaviour.fail_reason if failed else None
        job_type, sub_job_type = JOB_TYPES[self.kind]
        sub_job = {
            "status": status,
            "job_id": self.sub_job_id,
            "job_type": sub_job_type,
            "begin_time": iso_millis(self.running_at) if status != "INIT" else "",
            "end_time": iso_millis(self.end_at) if finished else "",
            "error_code": error_code,
            "fail_reason": fail_reason,
            "entities": {"server_id": self.server_id, "errorcode_message": fail_reason},
        }
        return {
            "status": status,
            "job_id": self.job_id,
            "job_type": job_type,
            "begin_time": iso_millis(self.accepted_at),
            "end_time": iso_millis(self.end_at) if finished else "",
            "error_code": error_code,
            "fail_reason": fail_reason,
            "entities": {"server_id": self.server_id, "sub_jobs_total": 1, "sub_jobs": [sub_job]},
        }


SERVER_ADMIN_FIELDS = (
    "id", "name", "project_id", "status", "locked", "has_system_disk", "task_state", "os_type", "created",
    "updated", "launched_at", "image_id", "availability_zone", *JOB_BEHAVIOUR_FIELDS,
)  # fmt: skip


@dataclass
class Server:
    id: str
    project_id: str
    name: str
    status: str = ServerStatus.ACTIVE.value
    locked: bool = False
    has_system_disk: bool = True
    task_state: str | None = None
    os_type: str = "Linux"
    created: float = 0.0
    updated: float = 0.0
    launched_at: float | None = None  # when the system last booted from a fresh disk; None: at `created`
    job_overrides: dict = field(default_factory=dict)
    job: Job | None = None  # the reinstall in progress
    key_name: str | None = None
    flavor: str = DEFAULT_FLAVOR
    tags: dict[str, str] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list, repr=False)  # the action log, oldest first
    image_id: str = DEFAULT_IMAGE_ID  # the image of its system disk (a change of OS replaces it)
    availability_zone: str = "emulated-az1"  # OS-EXT-AZ:availability_zone
    last_job_failed: bool = (
        False  # its last reinstall / change of OS ended in FAIL (change_os_requires_stopped)
    )

    @property
    def busy(self) -> bool:
        """Another operation runs (a reinstall, REBUILD, or any task_state): Nova refuses most operations."""
        return self.job is not None or self.status == ServerStatus.REBUILD or bool(self.task_state)

    @property
    def vm_state(self) -> str:
        """``OS-EXT-STS:vm_state``: what the ``status`` filters ACTIVE / SHUTOFF / ERROR of a list select on."""
        return _VM_STATE.get(self.status, "active")

    @property
    def launched(self) -> float:
        return self.created if self.launched_at is None else self.launched_at

    def admin_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "project_id": self.project_id,
            "status": self.status,
            "task_state": self.task_state,
            "locked": self.locked,
            "has_system_disk": self.has_system_disk,
            "os_type": self.os_type,
            "created": iso_seconds(self.created),
            "updated": iso_seconds(self.updated),
            "launched_at": iso_millis(self.launched),
            "job_overrides": {name: _jsonable(value) for name, value in self.job_overrides.items()},
            "current_job_id": self.job.job_id if self.job else None,
            "flavor": self.flavor,
            "tags": dict(self.tags),
            "image_id": self.image_id,
            "availability_zone": self.availability_zone,
            "last_job_failed": self.last_job_failed,
        }

    def api_json(self) -> dict:
        """The ``server`` object of ``GET /v1/{project_id}/cloudservers/{server_id}``."""
        volume_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ecs-emulator/volume/{self.id}"))
        volumes = (
            [{"id": volume_id, "delete_on_termination": "true", "bootIndex": "0", "device": "/dev/vda"}]
            if self.has_system_disk
            else []
        )
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created": iso_seconds(self.created),
            "updated": iso_seconds(self.updated),
            "tenant_id": self.project_id,
            "user_id": "emulated0user0id0000000000000000",
            "hostId": "emulated-host",
            "key_name": self.key_name,
            "image": {"id": self.image_id},
            "flavor": {"id": self.flavor, "name": self.flavor, "vcpus": "1", "ram": "1024", "disk": "0"},
            "addresses": {},
            "metadata": {"os_type": self.os_type, "charging_mode": "0"},
            "locked": self.locked,
            "progress": 0,
            "description": "",
            "tags": [f"{key}={value}" for key, value in sorted(self.tags.items())],
            "accessIPv4": "",
            "accessIPv6": "",
            "config_drive": "",
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": self.availability_zone,
            "OS-EXT-STS:task_state": self.task_state,
            "OS-EXT-STS:vm_state": self.vm_state,
            "OS-EXT-STS:power_state": _POWER_STATE.get(self.status, 4),
            "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda" if self.has_system_disk else "",
            # the real API writes microseconds and no zone: 2019-05-22T03:23:59.000000
            "OS-SRV-USG:launched_at": iso_millis(self.launched).replace("Z", "000"),
            "OS-SRV-USG:terminated_at": "",
            "os-extended-volumes:volumes_attached": volumes,
        }


@dataclass
class ReinstallRecord:
    """An accepted reinstall as the admin API shows it: secrets only as SHA-256 digests."""

    server_id: str
    project_id: str
    job_id: str
    api: str
    at: float
    access_key: str
    request_id: str
    request: ReinstallRequest
    job: Job = field(repr=False)
    client_token: str | None = None  # the X-Client-Token the accepted POST carried (honoured or not)
    action_request_id: str | None = None  # the request_id of its "rebuild" action
    replays: int = 0  # answers replayed for its client token (nothing new started)

    def to_json(self, now: float, retention_seconds: float) -> dict:
        r = self.request
        return {
            "kind": r.kind,
            "imageid": r.imageid,
            "server_id": self.server_id,
            "project_id": self.project_id,
            "job_id": self.job_id,
            "api": self.api,
            "at": iso_millis(self.at),
            "at_epoch": self.at,
            "end_at": iso_millis(self.job.end_at),
            "end_at_epoch": self.job.end_at,
            "outcome": self.job.behaviour.outcome.value,
            "job_status": self.job.status_at(now),
            "job_expired": self.job.expired(now, retention_seconds),
            "client_token": self.client_token,
            "replays": self.replays,
            "action_request_id": self.action_request_id,
            "access_key": self.access_key,
            "request_id": self.request_id,
            "fields": list(r.fields),
            "keyname": r.keyname,
            "userid": r.userid,
            "mode": r.mode,
            "metadata": {
                "BYOL": r.byol,
                "__system__encrypted": r.system_encrypted,
                "__system__cmkid": r.system_cmkid,
            },
            "adminpass_sha256": r.adminpass_sha256,
            "user_data_sha256": r.user_data_sha256,
            "user_data_size": r.user_data_size,
            "is_auto_pay": r.is_auto_pay,
        }


@dataclass
class Counters:
    requests: Counter = field(default_factory=Counter)  # "operation:status" -> n
    # both count reinstalls and changes of OS (each accepted rebuild); `requests` and records tell them apart
    accepted_reinstalls: Counter = field(default_factory=Counter)  # server_id -> n
    replayed_reinstalls: Counter = field(default_factory=Counter)  # server_id -> n (X-Client-Token replays)
    operations: Counter = field(default_factory=Counter)  # admin operations by someone else: action -> n
    expired_job_lookups: int = 0  # GET job answered 404 because the finished job's record expired
    throttled: int = 0
    faults_hit: int = 0

    def to_json(self) -> dict:
        return {
            "requests": dict(self.requests),
            "accepted_reinstalls": dict(self.accepted_reinstalls),
            "replayed_reinstalls": dict(self.replayed_reinstalls),
            "operations": dict(self.operations),
            "expired_job_lookups": self.expired_job_lookups,
            "throttled": self.throttled,
            "faults_hit": self.faults_hit,
            "total_requests": sum(self.requests.values()),
        }


class EmulatorState:
    def __init__(
        self,
        *,
        project_id: str,
        credentials: list[Credential],
        config: EmulatorConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.default_project_id = project_id
        self.clock = clock or SystemClock()
        self._startup_credentials = list(credentials)
        self._startup_config = config or EmulatorConfig()
        self.faults = FaultRegistry()
        self.client_tokens = ClientTokens()
        self.reset()

    # --- time ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        """The cloud's time: the emulator clock (moved by ``clock/advance``) plus ``clock_offset_seconds``."""
        return self.clock.now() + self.config.clock_offset_seconds

    def gateway_now(self) -> float:
        """What the gateway compares ``X-Sdk-Date`` with: the real time plus ``clock_offset_seconds`` (never
        the advanced clock, so moving time forward for jobs does not break signing)."""
        return time.time() + self.config.clock_offset_seconds

    def action_time(self, timestamp: float) -> str:
        return iso_action(timestamp, self.config.action_time_resolution)

    def reset(self) -> None:
        """Back to the startup state: startup credentials and configuration, nothing else."""
        self.credentials: dict[str, Credential] = {c.access_key: c for c in self._startup_credentials}
        self.config = self._startup_config
        self.rate_limiter = RateLimiter(self.config.rate_limit, self.config.operation_rate_limits)
        self.servers: dict[str, Server] = {}
        self.jobs: dict[str, Job] = {}
        self.keypairs: set[str] = set()
        self.images: dict[str, Image] = {}
        self.reinstalls: list[ReinstallRecord] = []
        self.counters = Counters()
        self.faults.clear()
        self.client_tokens.clear()

    # --- configuration ------------------------------------------------------------------------------------

    def set_config(self, data: object) -> EmulatorConfig:
        self.config = apply_config(self.config, data)
        self.rate_limiter = RateLimiter(self.config.rate_limit, self.config.operation_rate_limits)
        return self.config

    def add_credential(self, credential: Credential) -> None:
        self.credentials[credential.access_key] = credential

    @property
    def known_projects(self) -> set[str]:
        return {self.default_project_id} | {c.project_id for c in self.credentials.values() if c.project_id}

    # --- servers ------------------------------------------------------------------------------------------

    def add_server(self, data: object) -> Server:
        if not isinstance(data, dict):
            raise ValueError("a server must be a JSON object")
        unknown = sorted(set(data) - set(SERVER_ADMIN_FIELDS))
        if unknown:
            raise ValueError(f"unknown server field(s) {unknown}; allowed: {list(SERVER_ADMIN_FIELDS)}")
        server_id = data.get("id")
        if not isinstance(server_id, str) or not server_id or "/" in server_id:
            raise ValueError("id is required: a non-empty string without '/'")
        if server_id in self.servers:
            raise ValueError(f"server {server_id!r} already exists; PATCH it instead")
        now = self.now()
        server = Server(
            id=server_id,
            project_id=self.default_project_id,
            name=f"ecs-{server_id[:8]}",
            created=now,
            updated=now,
        )
        self._update_server(server, {k: v for k, v in data.items() if k != "id"}, touch=False)
        self._log_created(server)
        self.servers[server_id] = server
        return server

    def _log_created(self, server: Server) -> None:
        """Nova's ``create`` action, finished when the server was created."""
        self.log_action(server, "create", at=server.created).finish(server.created)

    def log_action(
        self,
        server: Server,
        name: str,
        *,
        at: float,
        request_id: str | None = None,
        user_id: str = API_USER_ID,
    ) -> Action:
        """Start an action on the server's log (its events started, not finished)."""
        action = Action.begin(
            name,
            server_id=server.id,
            project_id=server.project_id,
            request_id=request_id or new_request_id(),
            user_id=user_id,
            at=at,
        )
        server.actions.append(action)
        return action

    def find_action(self, server: Server, request_id: str) -> Action | None:
        return next((a for a in reversed(server.actions) if a.request_id == request_id), None)

    def patch_server(self, server_id: str, data: object) -> Server:
        server = self.servers.get(server_id)
        if server is None:
            raise KeyError(server_id)
        if not isinstance(data, dict):
            raise ValueError("the patch must be a JSON object")
        unknown = sorted(set(data) - set(SERVER_ADMIN_FIELDS) | ({"id"} & set(data)))
        if unknown:
            raise ValueError(
                f"field(s) {unknown} cannot be patched; allowed: {list(SERVER_ADMIN_FIELDS[1:])}"
            )
        self.refresh(server)
        self._update_server(server, data, touch=True)
        return server

    def _update_server(self, server: Server, data: dict, *, touch: bool) -> None:
        overrides = parse_job_behaviour(data, self.config.job)
        changes: dict = {}
        strings = ("name", "project_id", "os_type", "image_id", "availability_zone")
        for name, kind in ((field_name, str) for field_name in strings):
            if name in data:
                if not isinstance(data[name], kind) or not data[name]:
                    raise ValueError(f"{name} must be a non-empty string")
                changes[name] = data[name]
        if "os_type" in changes and changes["os_type"] not in ("Linux", "Windows"):
            raise ValueError("os_type must be 'Linux' or 'Windows'")
        if "status" in data:
            if data["status"] not in tuple(ServerStatus):
                raise ValueError(f"status must be one of {[s.value for s in ServerStatus]}")
            changes["status"] = data["status"]
        for name in ("locked", "has_system_disk"):
            if name in data:
                if not isinstance(data[name], bool):
                    raise ValueError(f"{name} must be true or false")
                changes[name] = data[name]
        if "task_state" in data:
            if data["task_state"] is not None and not isinstance(data["task_state"], str):
                raise ValueError("task_state must be a string or null")
            changes["task_state"] = data["task_state"] or None
        for name in ("created", "updated", "launched_at"):
            if name in data:
                try:
                    changes[name] = parse_iso(data[name])
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be an ISO-8601 time like 2024-05-01T12:00:00Z") from None
        for name, value in changes.items():
            setattr(server, name, value)
        server.job_overrides.update(overrides)
        if touch and "updated" not in changes and changes:
            server.updated = self.now()

    def find_server(self, project_id: str, server_id: str) -> Server:
        """The server (refreshed to now); auto-created when configured; else ``Ecs.0114``."""
        server = self.servers.get(server_id)
        if server is None and self.config.auto_create_servers:
            now = self.now()
            server = Server(
                id=server_id, project_id=project_id, name=f"ecs-{server_id[:8]}", created=now, updated=now
            )
            self._log_created(server)
            self.servers[server_id] = server
        if server is None or server.project_id != project_id:
            raise EcsError(404, "Ecs.0114", f"The ECS {server_id} does not exist in project {project_id}.")
        self.refresh(server)
        return server

    def refresh(self, server: Server) -> None:
        """Bring a server with a reinstall in progress up to the clock's time.

        ``updated`` moves to each phase's start unless something later touched it (a rename or tag edit during
        the rebuild): it never goes back."""
        job = server.job
        if job is None:
            return
        now = self.now()
        if now >= job.end_at:
            succeeded = job.behaviour.outcome is Outcome.SUCCESS
            server.last_job_failed = not succeeded
            if succeeded:
                server.status = ServerStatus.ACTIVE.value
                server.launched_at = job.end_at
                if job.image is not None:  # a change of OS: the new system disk is the new image's
                    server.image_id = job.image.id
                    server.os_type = job.image.os_type
            elif job.behaviour.fail_status is FailStatus.ERROR:
                server.status = ServerStatus.ERROR.value
            else:
                server.status = job.previous_status
            server.task_state = None
            server.updated = max(server.updated, job.end_at)
            server.job = None
            if job.action is not None:
                job.action.finish(job.end_at, failed=not succeeded, traceback=job.traceback)
        elif now >= job.spawning_at:
            server.task_state = "rebuild_spawning"
            server.updated = max(server.updated, job.spawning_at)
        else:
            server.task_state = "rebuilding"
            server.updated = max(server.updated, job.accepted_at)

    # --- images -------------------------------------------------------------------------------------------

    def add_image(self, data: object) -> Image:
        image = parse_image(data)
        if image.id in self.images:
            raise ValueError(f"image {image.id!r} already exists; PATCH it instead")
        self.images[image.id] = image
        return image

    def patch_image(self, image_id: str, data: object) -> Image:
        image = self.images.get(image_id)
        if image is None:
            raise KeyError(image_id)
        self.images[image_id] = parse_image(data, image)
        return self.images[image_id]

    # --- the reinstall and the change of OS ---------------------------------------------------------------

    def reinstall(
        self,
        project_id: str,
        server_id: str,
        request: ReinstallRequest,
        *,
        access_key: str,
        request_id: str,
        client_token: str | None = None,
    ) -> Job:
        """Check the server's state, then accept the reinstall: start a job, mark the server REBUILD, and
        write a ``rebuild`` action (its event unfinished until the job ends)."""
        server = self.find_server(project_id, server_id)
        if request.adminpass is not None:
            check_password(request.adminpass, server.os_type)
        self._check_server(server, "a reinstall", request.mode, stopped_rule=False)
        self._check_request(request)
        return self._start_job(server, request, access_key, request_id, client_token)

    def change_os(
        self,
        project_id: str,
        server_id: str,
        request: ReinstallRequest,
        *,
        access_key: str,
        request_id: str,
        client_token: str | None = None,
    ) -> Job:
        """Check the image, then the server as for a reinstall (with ``change_os_requires_stopped``: stopped,
        or its last reinstall / change failed), then accept: the reinstall's job with the new image."""
        server = self.find_server(project_id, server_id)
        image = self._check_image(request)
        if request.adminpass is not None:
            check_password(request.adminpass, image.os_type)  # the new system's administrator
        self._check_server(
            server, "a change of OS", request.mode, stopped_rule=self.config.change_os_requires_stopped
        )
        self._check_request(request)
        return self._start_job(server, request, access_key, request_id, client_token, image=image)

    def _check_image(self, request: ReinstallRequest) -> Image:
        """The change of OS's image: known, active, not Windows, with Cloud-Init on the v2 API.

        Codes: ``Ecs.0031`` "The image does not exist" / ``Ecs.0032`` "The image is not in Active state" from
        Huawei's ECS error code list ("Image [%s] does not exist." / "Image [%s] must be active."). For an
        image the API cannot use (Windows; no Cloud-Init on v2) no specific code is documented: ``Ecs.0007``
        "Invalid image attributes" (same list, 400) is the closest, a guess."""
        image_id = request.imageid or ""
        image = self.images.get(image_id)
        if image is None or image.status == "deleted":
            raise EcsError(400, "Ecs.0031", f"Image [{image_id}] does not exist.")
        if image.status != "active":
            raise EcsError(
                400, "Ecs.0032", f"Image [{image_id}] must be active (it is {image.status}).",
            )  # fmt: skip
        if image.os_type == "Windows":
            raise EcsError(
                400, "Ecs.0007",
                f"Image [{image_id}] is a Windows image: Huawei Cloud no longer provides Windows images, and "
                "this API cannot change an ECS OS to Windows.",
            )  # fmt: skip
        if request.api == "v2" and not image.cloud_init:
            raise EcsError(
                400, "Ecs.0007",
                f"Image [{image_id}] has no Cloud-Init or Cloudbase-Init installed: the v2 API only uses "
                "images with Cloud-Init; use POST /v1/{project_id}/cloudservers/{server_id}/changeos.",
            )  # fmt: skip
        return image

    def _check_server(self, server: Server, what: str, mode: str | None, *, stopped_rule: bool) -> None:
        """The server's state allows the reinstall / change of OS (``what``), else the reinstall's codes.

        ``stopped_rule`` (change OS with ``change_os_requires_stopped``): only SHUTOFF, or any status after a
        failed reinstall / change of OS (``last_job_failed``), as the older docs say; ``mode: withStopServer``
        does not lift it (those docs give no exception)."""
        server_id = server.id
        if server.locked:
            raise EcsError(409, "Ecs.0605", f"The ECS {server_id} is locked; unlock it first.")
        if server.status == ServerStatus.REBUILD or server.task_state:
            raise EcsError(
                501,
                "Ecs.0603",
                f"Another operation is running on the ECS {server_id}. Try again in a minute.",
            )
        if not server.has_system_disk:
            raise EcsError(400, "Ecs.0105", f"The ECS {server_id} has no system disk.")
        if stopped_rule:
            if server.status != ServerStatus.SHUTOFF and not server.last_job_failed:
                raise EcsError(
                    409, "Ecs.0100",
                    f"The ECS {server_id} is {server.status}: only a stopped ECS or one on which "
                    "reinstalling or changing the OS failed supports changing the OS; stop it first.",
                )  # fmt: skip
            return
        if server.status == ServerStatus.ACTIVE and mode != "withStopServer":
            raise EcsError(
                409, "Ecs.0100",
                f"The ECS {server_id} is running: stop it first or send mode 'withStopServer'.",
            )  # fmt: skip
        if server.status not in (ServerStatus.ACTIVE, ServerStatus.SHUTOFF):
            raise EcsError(
                409, "Ecs.0100", f"The ECS {server_id} status {server.status} does not allow {what}."
            )

    def _check_request(self, request: ReinstallRequest) -> None:
        if request.keyname is not None and request.keyname not in self.keypairs:
            raise EcsError(400, "Ecs.0314", f"The key pair {request.keyname!r} does not exist.")
        if request.byol == "true" and not self.config.byol_supported:
            raise EcsError(400, "Ecs.0090", "BYOL is not supported in this region.")

    def _start_job(
        self,
        server: Server,
        request: ReinstallRequest,
        access_key: str,
        request_id: str,
        client_token: str | None,
        *,
        image: Image | None = None,
    ) -> Job:
        """Accept: start the job, mark the server REBUILD, write the ``rebuild`` action, keep the record."""
        now = self.now()
        behaviour = replace(self.config.job, **server.job_overrides)
        if request.kind == CHANGE_OS and behaviour.fail_reason == DEFAULT_FAIL_REASON:
            behaviour = replace(behaviour, fail_reason=CHANGE_OS_FAIL_REASON)
        running_at = now + behaviour.init_seconds
        job = Job(
            job_id=uuid.uuid4().hex,
            project_id=server.project_id,
            server_id=server.id,
            sub_job_id=uuid.uuid4().hex,
            accepted_at=now,
            running_at=running_at,
            end_at=running_at + behaviour.job_seconds,
            behaviour=behaviour,
            previous_status=server.status,
            kind=request.kind,
            image=image,
        )
        if self.config.reinstall_stop_action and server.status == ServerStatus.ACTIVE:
            self.log_action(server, "stop", at=now).finish(now)
        action_request_id = request_id if self.config.action_request_id == "response" else new_request_id()
        job.action = self.log_action(server, "rebuild", at=now, request_id=action_request_id)
        self.jobs[job.job_id] = job
        server.job = job
        server.status = ServerStatus.REBUILD.value
        if request.keyname is not None:
            server.key_name = request.keyname
        self.refresh(server)
        self.counters.accepted_reinstalls[server.id] += 1
        self.reinstalls.append(
            ReinstallRecord(
                server.id, server.project_id, job.job_id, request.api, now, access_key, request_id, request,
                job=job, client_token=client_token, action_request_id=action_request_id,
            )
        )  # fmt: skip
        return job

    def replay_reinstall(self, use: TokenUse) -> str:
        """A reinstall or change-OS POST repeated with its X-Client-Token: nothing starts; its job ID."""
        record = next(r for r in self.reinstalls if r.job_id == use.job_id)
        record.replays += 1
        self.counters.replayed_reinstalls[record.server_id] += 1
        return use.job_id

    def find_job(self, project_id: str, job_id: str) -> Job:
        """The job; ``Common.0011`` if unknown, or finished more than ``job_retention_seconds`` ago (the record
        stays in ``self.jobs`` for in-process checks; the API no longer finds it)."""
        job = self.jobs.get(job_id)
        if job is None or job.project_id != project_id:
            raise EcsError(404, "Common.0011", f"The job {job_id} does not exist.")
        server = self.servers.get(job.server_id)
        if server is not None:
            self.refresh(server)
        if job.expired(self.now(), self.config.job_retention_seconds):
            self.counters.expired_job_lookups += 1
            raise EcsError(404, "Common.0011", f"The job {job_id} does not exist.")
        return job
