"""Typed views of what the ECS API returns, and the credentials used to sign calls.

These are the narrow interface between the cloud client and the rest of the operator: the state machine reasons
about `Job` and `Server`, never about raw JSON.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class JobStatus(enum.StrEnum):
    INIT = "INIT"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"
    PENDING_PAYMENT = "PENDING_PAYMENT"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCESS, JobStatus.FAIL)


@dataclass(frozen=True)
class SubJob:
    job_id: str
    job_type: str
    status: JobStatus
    begin_time: datetime | None = None
    end_time: datetime | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    server_id: str | None = None
    errorcode_message: str | None = None


@dataclass(frozen=True)
class Job:
    job_id: str
    job_type: str
    status: JobStatus
    begin_time: datetime | None = None
    end_time: datetime | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    server_id: str | None = None
    sub_jobs: tuple[SubJob, ...] = ()


# task_state values the ECS API reports while a reinstall (rebuild) runs.
REBUILD_TASK_STATES = frozenset({"rebuilding", "rebuild_block_device_mapping", "rebuild_spawning"})


@dataclass(frozen=True)
class Server:
    id: str
    status: str  # ACTIVE, SHUTOFF, REBUILD, ERROR, ...
    task_state: str | None = None
    vm_state: str | None = None
    locked: bool = False
    updated: datetime | None = None
    # OS-SRV-USG:launched_at: when the system last booted from a fresh disk. A rebuild sets it when it succeeds
    # (Nova's behaviour), so it tells a finished reinstall from a failed one when the job ID is lost.
    launched_at: datetime | None = None
    has_system_disk: bool = True
    # The server's tags (details' `tags`, "key=value" strings), as (key, value) pairs: read for the owner check.
    tags: tuple[tuple[str, str], ...] = ()
    image_id: str | None = None  # the image its system disk was made from (details' image.id)
    zone: str | None = None  # OS-EXT-AZ:availability_zone

    def tag(self, key: str) -> str | None:
        return next((value for k, value in self.tags if k == key), None)

    @property
    def busy(self) -> bool:
        """Busy means some operation runs on the server: status REBUILD or any task state."""
        return self.status == "REBUILD" or bool(self.task_state)

    @property
    def rebuilding(self) -> bool:
        return self.status == "REBUILD" or (self.task_state or "") in REBUILD_TASK_STATES


@dataclass(frozen=True)
class Credentials:
    """AK/SK credentials, optionally temporary (with a security token). Never printed."""

    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # the AK is an identifier, not a secret; the rest never shows
        return f"Credentials(access_key={self.access_key!r}, secret_key=***, security_token=***)"


@dataclass(frozen=True)
class CloudTarget:
    """Where and as whom a call goes: endpoint base URL, project and credentials."""

    endpoint: str
    project_id: str
    credentials: Credentials = field(repr=False)


def endpoint_for_region(region: str) -> str:
    return f"https://ecs.{region}.myhuaweicloud.com"


@dataclass(frozen=True)
class ActionEvent:
    """One step of a server action (`events[]` of GET .../os-instance-actions/{request_id})."""

    event: str
    result: str | None = None  # "Success" | "Error"; None while it runs
    traceback: str | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None


@dataclass(frozen=True)
class InstanceAction:
    """An entry of the server's action log (os-instance-actions): which operation, when, and how it went.
    `events` is filled only by the per-action call; times are the cloud's, in UTC."""

    action: str  # create, stop, start, reboot, rebuild (a reinstall or change of OS), resize, ...
    request_id: str
    start_time: datetime | None = None
    message: str | None = None  # "Error" when it failed; empty or None otherwise
    events: tuple[ActionEvent, ...] | None = None
