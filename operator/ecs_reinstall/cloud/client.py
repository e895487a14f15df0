"""The async ECS API client: signed calls over one shared httpx connection pool, paced and retried safely.

Three calls, each returning typed models (`models.Job`, `models.Server`) or raising a classified `CloudError`:

- `reinstall` POSTs the reinstall and returns the job ID. It is sent again only when the first attempt
  provably did nothing: the connection could not be opened, or the cloud answered with a rate limit (429 /
  `APIGW.0308` / `Common.0024`). A 5xx, a read timeout or a connection lost after sending raise
  `AmbiguousError` at once: the POST has no idempotency token, so only the caller, looking at the server,
  can tell whether it was taken. `Ecs.0603` (another operation runs on the server) raises `ThrottledError`
  at once: it was refused, and the cloud asks to come back in about a minute, longer than a call should block.
- `get_job` and `get_server` are retried on throttling and transient failures with full-jitter exponential
  backoff, never sooner than the cloud's `Retry-After`, up to `max_get_attempts`; then the last error is
  raised.

Every attempt first takes a token from the bucket shared by all calls to the same endpoint and project, and is
signed afresh (a new `X-Sdk-Date`). A rate-limit answer pauses that bucket for everyone. Logs and errors name
the operation, path, status, cloud code and request ID, never headers, bodies or credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import orjson

from ecs_reinstall import __version__
from ecs_reinstall.cloud.clock import CloudClock
from ecs_reinstall.cloud.errors import (
    BUSY_CODES,
    AmbiguousError,
    CloudError,
    ErrorKind,
    Operation,
    TerminalError,
    ThrottledError,
    TransientError,
    clean_message,
    error_from_response,
    is_rate_limit,
    transport_error,
)
from ecs_reinstall.cloud.models import (
    ActionEvent,
    CloudTarget,
    InstanceAction,
    Job,
    JobStatus,
    Server,
    SubJob,
)
from ecs_reinstall.cloud.ratelimit import RateLimiterRegistry, TokenBucket, limiter_key
from ecs_reinstall.cloud.retry import Backoff
from ecs_reinstall.cloud.signing import sign_request

log = logging.getLogger("ecs_reinstall.cloud")
_READ = httpx.ByteStream(b"")  # what a response's stream becomes once its body is read (see _attempt)
_T = TypeVar("_T")

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
SUCCESS = "success"  # the observer's outcome for a 2xx; the other outcomes are the `ErrorKind` values


@dataclass(frozen=True)
class ClientConfig:
    qps: float = 10.0  # calls per second per (endpoint, project), shared by every caller
    burst: int = 20
    adaptive_rate: bool = True  # halve the rate on throttling, grow it back (see ratelimit)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    ca_bundle: str | None = None  # PEM file of CAs to trust instead of the system store
    verify_tls: bool = True
    max_get_attempts: int = 5
    max_post_attempts: int = 3  # attempts of the reinstall POST while it provably was not processed
    backoff_base: float = 0.5
    backoff_max: float = 30.0  # also the longest Retry-After waited out (or paused for) inside one call
    throttle_pause: float = 1.0  # how long a rate-limit answer without Retry-After pauses the shared bucket
    # Few connections on purpose: httpcore checks every pooled connection on each request, so a big idle pool
    # costs CPU on every call (profiled: 20% of the operator at 1000 reinstalls with 100); 16 is plenty at the
    # rates the shared limiter allows.
    max_connections: int = 16
    user_agent: str = f"ecs-reinstall-operator/{__version__}"

    def __post_init__(self) -> None:
        checks = [
            (self.connect_timeout > 0, "connect_timeout must be > 0 seconds"),
            (self.read_timeout > 0, "read_timeout must be > 0 seconds"),
            (self.max_get_attempts >= 1, "max_get_attempts must be >= 1"),
            (self.max_post_attempts >= 1, "max_post_attempts must be >= 1"),
            (self.throttle_pause >= 0, "throttle_pause must be >= 0 seconds"),
            (self.max_connections >= 1, "max_connections must be >= 1"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(f"invalid cloud client settings: {problem}")
        Backoff(self.backoff_base, self.backoff_max)  # raises with the reason when invalid
        TokenBucket(self.qps, self.burst)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.backoff_base, self.backoff_max)


class CloudObserver(Protocol):
    """Where metrics plug in (the operator's metrics module implements it; no prometheus needed here)."""

    def on_attempt(self, operation: str, outcome: str, seconds: float) -> None:
        """One HTTP attempt ended: "success", "throttled", "transient", "terminal" or "ambiguous"."""

    def on_throttled(self, operation: str) -> None:
        """The cloud throttled a call (rate limit or busy server)."""


class UnexpectedResponse(ValueError):
    """A 2xx answer whose content is not what the API documents."""


# --- the client ---------------------------------------------------------------------------------------------


class EcsClient:
    """The ECS calls the operator makes, for any target (endpoint, project, credentials); one per process.

    Use as `async with EcsClient(config) as ecs:` or call `aclose()`. Safe for concurrent use by many tasks.
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        limiters: RateLimiterRegistry | None = None,
        observer: CloudObserver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`http`: a client to share (it is not closed by `aclose`); by default one is made from `config`.
        `limiters`: a registry to share with other clients; by default one is made from `config.qps/burst`."""
        self.config = config if config is not None else ClientConfig()
        self.limiters = (
            limiters
            if limiters is not None
            else RateLimiterRegistry(self.config.qps, self.config.burst, adaptive=self.config.adaptive_rate)
        )
        self._owns_limiters = limiters is None
        self._http = http if http is not None else _make_http_client(self.config)
        self._owns_http = http is None
        self._slots = asyncio.Semaphore(self.config.max_connections)
        self._observer = observer
        self._sleep = sleep
        self._backoff = self.config.backoff
        self.clock = CloudClock()  # the cloud's clock, from the Date header of every answer

    async def __aenter__(self) -> EcsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        if self._owns_limiters:
            await self.limiters.aclose()

    def limiter(self, target: CloudTarget) -> TokenBucket:
        """The bucket shared by all calls to this target's endpoint and project."""
        return self.limiters.get(limiter_key(target.endpoint, target.project_id))

    # -- public calls --

    async def reinstall(
        self,
        target: CloudTarget,
        server_id: str,
        body: Mapping[str, Any],
        *,
        cloud_init: bool = True,
        client_token: str | None = None,
        slot_taken: bool = False,
    ) -> str:
        """Submit the reinstall; return the cloud job ID. `body` is the whole request: {"os-reinstall": {}}, or
        {"os-change": {... "imageid"}} to change the OS to another image (the sibling API, same answer).
        `client_token` goes out as `X-Client-Token` (a UUID): a cloud that honours it answers a repeat with the
        first answer; whether the reinstall API does is not documented, so nothing here relies on it."""
        secrets = _body_secrets(body) + _credential_secrets(target)
        change = "os-change" in body
        if change:
            operation = Operation.CHANGE_OS if cloud_init else Operation.CHANGE_OS_V1
        else:
            operation = Operation.REINSTALL if cloud_init else Operation.REINSTALL_V1
        version = "v2" if cloud_init else "v1"
        project, server = _segment(target.project_id, "project_id"), _segment(server_id, "server_id")
        path = f"/{version}/{project}/cloudservers/{server}/{'changeos' if change else 'reinstallos'}"
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

        # With the rate-limit slot taken by the caller (`acquire_send_slot`), the request leaves at once and is
        # sent only once: the caller timed its attempt just now, and a resend later would leave after that time.
        attempts = 1 if slot_taken else self.config.max_post_attempts
        for attempt in range(attempts):
            try:
                response = await self._attempt(
                    operation,
                    target,
                    "POST",
                    path,
                    content,
                    secrets,
                    client_token=client_token,
                    slot_taken=slot_taken and attempt == 0,
                )
                return _job_id(operation, response)
            except ThrottledError as error:
                if error.code in BUSY_CODES:
                    raise  # the server is busy for a while; the caller comes back later
                last_error: CloudError = error
            except TransientError as error:  # on the POST: only failures that sent nothing (see classify)
                last_error = error
            delay = self._retry_delay(attempt, attempts, last_error)
            if delay is None:
                raise last_error
            await self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def get_job(self, target: CloudTarget, job_id: str) -> Job:
        path = f"/v1/{_segment(target.project_id, 'project_id')}/jobs/{_segment(job_id, 'job_id')}"
        return await self._read(Operation.GET_JOB, target, path, parse_job)

    async def get_server(self, target: CloudTarget, server_id: str) -> Server:
        path = (
            f"/v1/{_segment(target.project_id, 'project_id')}/cloudservers/{_segment(server_id, 'server_id')}"
        )
        return await self._read(Operation.GET_SERVER, target, path, parse_server)

    async def list_servers(
        self, target: CloudTarget, *, tags: Mapping[str, str] | None = None
    ) -> list[Server]:
        """Every server of the project (with all of `tags`), full details, in pages of 1000: one call stands for
        up to a thousand single-server reads."""
        project = _segment(target.project_id, "project_id")
        found: list[Server] = []
        page = 1
        while True:
            query = [("limit", str(LIST_PAGE)), ("offset", str(page))]
            if tags:
                query.append(("tags", ",".join(f"{k}={v}" for k, v in sorted(tags.items()))))
            path = f"/v1/{project}/cloudservers/detail?" + urllib.parse.urlencode(query)
            count, servers = await self._read(Operation.LIST_SERVERS, target, path, parse_server_page)
            found.extend(servers)
            if not servers or len(servers) < LIST_PAGE or len(found) >= count:
                return found
            page += 1

    async def get_servers(
        self, target: CloudTarget, server_ids: Sequence[str], *, slot_taken: bool = False
    ) -> dict[str, Server | None]:
        """Several servers in one call: the list API's `server_id=id1,id2` filter (exact IDs; the SDK's docs
        advise at most 100 a call, `LIST_BY_ID`). Every ID asked for is in the answer: None for one the cloud
        does not know (its entry carries only `id` and `fault`). `slot_taken`: the caller holds the rate limit's
        token for the first attempt (see `acquire_send_slot`)."""
        if not server_ids or len(server_ids) > LIST_BY_ID:
            raise ValueError(f"get_servers takes 1 to {LIST_BY_ID} server IDs, not {len(server_ids)}")
        ids = ",".join(_segment(server_id, "server_id") for server_id in server_ids)
        query = urllib.parse.urlencode({"server_id": ids, "limit": str(len(server_ids))})
        path = f"/v1/{_segment(target.project_id, 'project_id')}/cloudservers/detail?{query}"
        found = await self._read(
            Operation.LIST_SERVERS, target, path, parse_servers_by_id, slot_taken=slot_taken
        )
        return {server_id: found.get(server_id) for server_id in server_ids}

    async def tag_server(self, target: CloudTarget, server_id: str, tags: Mapping[str, str]) -> None:
        """Adds (or overwrites) tags on the server. Creating a tag is idempotent, so it is retried like a read."""
        path = (
            f"/v1/{_segment(target.project_id, 'project_id')}/cloudservers/{_segment(server_id, 'server_id')}"
            "/tags/action"
        )
        body = {"action": "create", "tags": [{"key": k, "value": v} for k, v in sorted(tags.items())]}
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        secrets = _credential_secrets(target)
        for attempt in range(self.config.max_get_attempts):
            try:
                await self._attempt(Operation.TAG_SERVER, target, "POST", path, content, secrets)
                return
            except (ThrottledError, TransientError) as error:
                delay = self._retry_delay(attempt, self.config.max_get_attempts, error)
                if delay is None:
                    raise
                await self._sleep(delay)

    async def acquire_send_slot(self, target: CloudTarget) -> None:
        """Waits for the rate limit's token of a request to be sent next (`reinstall(..., slot_taken=True)`): a
        caller that records when it sends (the attempt's start) takes the token first, so that the wait in the
        rate limiter comes before that time, not after it."""
        await self.limiter(target).acquire()

    async def list_actions(self, target: CloudTarget, server_id: str) -> list[InstanceAction]:
        """The server's action log, newest first (without events)."""
        path = f"/v2.1/{_segment(target.project_id, 'project_id')}/servers/{_segment(server_id, 'server_id')}"
        return await self._read(Operation.LIST_ACTIONS, target, path + "/os-instance-actions", parse_actions)

    async def get_action(self, target: CloudTarget, server_id: str, request_id: str) -> InstanceAction:
        """One action of the server's log, with its events (their results tell how it went)."""
        path = (
            f"/v2.1/{_segment(target.project_id, 'project_id')}/servers/{_segment(server_id, 'server_id')}"
            f"/os-instance-actions/{_segment(request_id, 'request_id')}"
        )
        return await self._read(Operation.GET_ACTION, target, path, parse_action)

    # -- retries --

    async def _read(
        self,
        operation: Operation,
        target: CloudTarget,
        path: str,
        parse: Callable[[Any], _T],
        *,
        slot_taken: bool = False,
    ) -> _T:
        secrets = _credential_secrets(target)
        for attempt in range(self.config.max_get_attempts):
            try:
                response = await self._attempt(
                    operation, target, "GET", path, None, secrets, slot_taken=slot_taken and attempt == 0
                )
                return _parse_read(operation, response, parse)
            except (ThrottledError, TransientError) as error:
                delay = self._retry_delay(attempt, self.config.max_get_attempts, error)
                if delay is None:
                    raise
                await self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _retry_delay(self, attempt: int, max_attempts: int, error: CloudError) -> float | None:
        """Seconds before the next attempt, or None when the error should go to the caller now."""
        if attempt + 1 >= max_attempts:
            return None
        delay = self._backoff.delay(attempt, retry_after=error.retry_after)
        if delay is not None:
            log.debug(
                "retrying ECS %s in %.2fs after: %s",
                error.operation,
                delay,
                error,
                extra={"cloud_operation": error.operation, "retry_in_s": round(delay, 3)},
            )
        return delay

    # -- one attempt --

    async def _attempt(
        self,
        operation: Operation,
        target: CloudTarget,
        method: str,
        path: str,
        content: bytes | None,
        secrets: tuple[str, ...],
        *,
        client_token: str | None = None,
        slot_taken: bool = False,
    ) -> httpx.Response:
        """Take a token (unless the caller took it), sign, send once. Return a 2xx response or raise the
        classified error."""
        bucket = self.limiter(target)
        if not slot_taken:
            await bucket.acquire()
        headers = {"User-Agent": self.config.user_agent}
        if client_token:
            headers["X-Client-Token"] = client_token
        if content is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        credentials = target.credentials
        signed = sign_request(
            method,
            _base_url(target.endpoint) + path,
            headers=headers,
            body=content,
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            security_token=credentials.security_token or None,
            project_id=target.project_id,
        )
        request = self._http.build_request(method, signed.url, headers=signed.wire_headers(), content=content)
        started = time.monotonic()
        status: int | None = None
        request_id: str | None = None
        try:
            try:
                # Wait for a connection here, not inside httpcore's pool: its hand-over scans every waiting
                # request against every connection, quadratic in the waiters (profiled: most of the client's
                # CPU with 100 requests in flight).
                async with self._slots:
                    started = time.monotonic()
                    sent_at = time.time()
                    response = await self._http.send(request)
                    # The body is read and the stream closed; httpx's response and its bound stream refer to
                    # each other, so only the cycle collector would free them and the body (100 servers' worth,
                    # for a list call): unbound, they go when the caller drops the response.
                    response.stream = _READ
                    self.clock.observe(target.endpoint, response.headers.get("date"), sent_at, time.time())
            except httpx.HTTPError as exc:
                # from None: the library's exception may quote a header value (a credential); the classified
                # error carries a cleaned reason, and a traceback must not carry the original.
                raise _transport_error(operation, exc, secrets) from None
            status = response.status_code
            request_id = response.headers.get("x-request-id")
            if 200 <= status < 300:
                self._observe(operation, SUCCESS, time.monotonic() - started)
                return response
            error = error_from_response(
                operation, status, response.headers, response.content, secrets=secrets
            )
            request_id = error.request_id
            raise error
        except CloudError as error:
            self._observe(operation, error.kind.value, time.monotonic() - started)
            if error.kind is ErrorKind.THROTTLED:
                self._observe_throttled(operation)
            if is_rate_limit(error.http_status, error.code):
                bucket.refused(min(self.config.backoff_max, error.retry_after or self.config.throttle_pause))
            raise
        finally:
            log.debug(
                "ECS %s %s %s -> %s request_id=%s in %.3fs",
                operation.value,
                method,
                path,
                status if status is not None else "no response",
                request_id,
                time.monotonic() - started,
                extra={
                    "cloud_operation": operation.value,
                    "http_method": method,
                    "http_path": path,
                    "http_status": status,
                    "request_id": request_id,
                    "duration_s": round(time.monotonic() - started, 6),
                },
            )

    def _observe(self, operation: Operation, outcome: str, seconds: float) -> None:
        if self._observer is not None:
            try:
                self._observer.on_attempt(operation.value, outcome, seconds)
            except Exception:  # metrics must never break a cloud call
                log.exception("cloud observer failed in on_attempt")

    def _observe_throttled(self, operation: Operation) -> None:
        if self._observer is not None:
            try:
                self._observer.on_throttled(operation.value)
            except Exception:
                log.exception("cloud observer failed in on_throttled")


def _make_http_client(config: ClientConfig) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool
    if not config.verify_tls:
        verify = False
    elif config.ca_bundle:
        try:
            verify = ssl.create_default_context(cafile=config.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load the CA bundle {config.ca_bundle!r} ({exc}): give the path of a PEM file of CA "
                "certificates"
            ) from exc
    else:
        verify = True
    timeout = httpx.Timeout(
        connect=config.connect_timeout,
        read=config.read_timeout,
        write=config.read_timeout,
        pool=config.connect_timeout + config.read_timeout,  # waiting for a free connection sends nothing
    )
    limits = httpx.Limits(
        max_connections=config.max_connections, max_keepalive_connections=config.max_connections
    )
    return httpx.AsyncClient(timeout=timeout, verify=verify, limits=limits, follow_redirects=False)


# --- what httpx failures mean ------------------------------------------------------------------------------

# No byte of the request left: the connection (or the tunnel through a proxy, or a pool slot) never opened.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


def _transport_error(operation: Operation, exc: httpx.HTTPError, secrets: Iterable[str]) -> CloudError:
    if isinstance(exc, httpx.LocalProtocolError):
        # h11 quotes the offending header value, which may be a credential: never show it.
        return transport_error(
            operation,
            "the request could not be written (an invalid character in a header value?); check the endpoint "
            "and the credentials",
            request_sent=False,
            misconfigured=True,
        )
    if _certificate_rejected(exc):
        return transport_error(
            operation,
            f"TLS certificate verification failed: {_cause_text(exc)}; trust the endpoint's CA (CA bundle)",
            request_sent=False,
            misconfigured=True,
        )
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return transport_error(
            operation, f"invalid endpoint URL: {exc}", request_sent=False, misconfigured=True
        )
    sent = not isinstance(exc, _NOTHING_SENT)
    what = _describe(exc)
    reason = clean_message(f"{what}: {_cause_text(exc)}" if _cause_text(exc) else what, secrets) or what
    return transport_error(operation, reason, request_sent=sent)


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.PoolTimeout):
        return "no free connection in the pool"
    if isinstance(exc, httpx.ReadTimeout):
        return "read timeout after sending the request"
    if isinstance(exc, httpx.WriteTimeout | httpx.WriteError):
        return "sending the request failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection broke after sending the request"
    return type(exc).__name__


def _cause_text(exc: BaseException) -> str:
    text = str(exc)
    if not text and exc.__cause__ is not None:
        text = str(exc.__cause__)
    return text


def _certificate_rejected(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


# --- requests ---------------------------------------------------------------------------------------------


def _base_url(endpoint: str) -> str:
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"ECS endpoint {endpoint!r} is not a base URL: use https://host[:port][/prefix], "
            "e.g. https://ecs.ap-southeast-1.myhuaweicloud.com"
        )
    return endpoint.strip().rstrip("/")


def _segment(value: str, name: str) -> str:
    """One path segment from an ID, refused when it could change the path's meaning."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if value in (".", "..") or any(ch in value for ch in "/\\?#") or any(ch.isspace() for ch in value):
        raise ValueError(
            f"{name} {value!r} is not a valid ID: it must not contain '/', '\\', '?', '#' or spaces"
        )
    return quote(value, safe="")


def _body_secrets(body: Mapping[str, Any]) -> tuple[str, ...]:
    """Check the body's shape and collect the values no error may ever show (the password and user data)."""
    key = next(iter(body), None) if isinstance(body, Mapping) and len(body) == 1 else None
    if key not in ("os-reinstall", "os-change") or not isinstance(body[key], Mapping):
        keys = sorted(body) if isinstance(body, Mapping) else type(body).__name__
        raise ValueError(
            'the reinstall body must be {"os-reinstall": {...}} (or {"os-change": {...}}) and nothing else; got '
            f"keys {keys}"
        )
    fields = body[key]
    metadata = fields.get("metadata")
    user_data = metadata.get("user_data") if isinstance(metadata, Mapping) else None
    secrets = [fields.get("adminpass"), user_data]
    if isinstance(user_data, str):
        try:
            secrets.append(base64.b64decode(user_data, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            pass
    return tuple(s for s in secrets if isinstance(s, str) and s)


def _credential_secrets(target: CloudTarget) -> tuple[str, ...]:
    credentials = target.credentials
    return tuple(s for s in (credentials.secret_key, credentials.security_token) if s)


# --- responses ----------------------------------------------------------------------------------------------


def _job_id(operation: Operation, response: httpx.Response) -> str:
    """The job ID of an accepted POST. Without one the cloud took the request but we cannot follow it."""
    try:
        job_id = response.json().get("job_id")
    except (ValueError, AttributeError):
        job_id = None
    if not isinstance(job_id, str) or not job_id:
        raise AmbiguousError(
            operation=operation,
            http_status=response.status_code,
            request_id=response.headers.get("x-request-id"),
            reason="the cloud accepted the request but its answer carries no job_id",
        )
    return job_id


def _loads(content: bytes) -> Any:
    """orjson, and the standard library for what orjson is stricter about (a lone surrogate escape, 1e400)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


def _parse_read(operation: Operation, response: httpx.Response, parse: Callable[[Any], _T]) -> _T:
    try:
        return parse(_loads(response.content))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # A proxy's page or a truncated answer may not happen again: let the read be retried.
        raise TransientError(
            operation=operation,
            http_status=response.status_code,
            request_id=response.headers.get("x-request-id"),
            reason=f"unexpected answer: {clean_message(str(exc)) or type(exc).__name__}",
        ) from exc


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 as the API writes it (`2016-04-25T20:04:47.591Z`); empty or unreadable gives None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        log.debug("ignoring unreadable time %r in an ECS answer", value)
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _job_status(value: Any) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise UnexpectedResponse(f"job status {value!r} is not one of {known}") from None


def parse_actions(data: Mapping[str, Any]) -> list[InstanceAction]:
    """The entries of GET .../os-instance-actions (`instanceActions`), as the cloud lists them."""
    return [_action(item) for item in data["instanceActions"] or ()]


def parse_action(data: Mapping[str, Any]) -> InstanceAction:
    """One entry of GET .../os-instance-actions/{request_id} (`instanceAction`), with its events."""
    item = data["instanceAction"]
    events = tuple(
        ActionEvent(
            event=str(e.get("event") or ""),
            result=_text(e.get("result")),
            traceback=_text(e.get("traceback")),
            start_time=parse_time(e.get("start_time")),
            finish_time=parse_time(e.get("finish_time")),
        )
        for e in item.get("events") or ()
    )
    return _action(item, events)


def _action(item: Mapping[str, Any], events: tuple[ActionEvent, ...] | None = None) -> InstanceAction:
    return InstanceAction(
        action=str(item["action"]),
        request_id=str(item["request_id"]),
        start_time=parse_time(item.get("start_time")),
        message=_text(item.get("message")),
        events=events,
    )


def parse_job(data: Mapping[str, Any]) -> Job:
    """A `Job` from the body of GET /v1/{project}/jobs/{job}."""
    if not isinstance(data, Mapping) or not data.get("job_id"):
        raise UnexpectedResponse("the job answer has no job_id")
    entities = data.get("entities") or {}
    sub_jobs = tuple(
        SubJob(
            job_id=str(item.get("job_id") or ""),
            job_type=str(item.get("job_type") or ""),
            status=_job_status(item.get("status")),
            begin_time=parse_time(item.get("begin_time")),
            end_time=parse_time(item.get("end_time")),
            error_code=_text(item.get("error_code")),
            fail_reason=_text(item.get("fail_reason")),
            server_id=_text((item.get("entities") or {}).get("server_id")),
            errorcode_message=_text((item.get("entities") or {}).get("errorcode_message")),
        )
        for item in entities.get("sub_jobs") or ()
    )
    return Job(
        job_id=str(data["job_id"]),
        job_type=str(data.get("job_type") or ""),
        status=_job_status(data.get("status")),
        begin_time=parse_time(data.get("begin_time")),
        end_time=parse_time(data.get("end_time")),
        error_code=_text(data.get("error_code")),
        fail_reason=_text(data.get("fail_reason")),
        server_id=_text(entities.get("server_id")),
        sub_jobs=sub_jobs,
    )


def parse_server(data: Mapping[str, Any]) -> Server:
    """A `Server` from the body of GET /v1/{project}/cloudservers/{server}."""
    server = data.get("server") if isinstance(data, Mapping) else None
    if not isinstance(server, Mapping) or not server.get("id") or not server.get("status"):
        raise UnexpectedResponse("the server answer has no server.id or server.status")
    locked = server.get("locked")
    return Server(
        id=str(server["id"]),
        status=str(server["status"]),
        task_state=_text(server.get("OS-EXT-STS:task_state")),
        vm_state=_text(server.get("OS-EXT-STS:vm_state")),
        locked=locked is True or (isinstance(locked, str) and locked.lower() == "true"),
        updated=parse_time(server.get("updated")),
        launched_at=parse_time(server.get("OS-SRV-USG:launched_at")),
        has_system_disk=_has_system_disk(server),
        tags=_tags(server.get("tags")),
        image_id=_text(
            (server.get("image") or {}).get("id") if isinstance(server.get("image"), Mapping) else None
        ),
        zone=_text(server.get("OS-EXT-AZ:availability_zone")),
    )


LIST_PAGE = 1000  # the list API's largest page


def parse_server_page(data: Mapping[str, Any]) -> tuple[int, list[Server]]:
    """(count of all matching servers, this page's servers) from GET /v1/{project}/cloudservers/detail."""
    servers = data.get("servers") if isinstance(data, Mapping) else None
    if not isinstance(servers, list):
        raise UnexpectedResponse("the server list answer has no servers list")
    return int(data.get("count") or 0), [parse_server({"server": item}) for item in servers]


LIST_BY_ID = 100  # server IDs per list call: the SDK's docs advise no more, to keep the URI short


def parse_servers_by_id(data: Mapping[str, Any]) -> dict[str, Server]:
    """The servers of a `server_id=` list answer, by ID. An entry without a status (an ID the cloud does not
    know: only `id` and `fault` are set) is left out, and so is one that does not parse: one odd entry must not
    spoil the call for the others (the caller reads a server left out alone)."""
    servers = data.get("servers") if isinstance(data, Mapping) else None
    if not isinstance(servers, list):
        raise UnexpectedResponse("the server list answer has no servers list")
    found: dict[str, Server] = {}
    for item in servers:
        if isinstance(item, Mapping) and item.get("id") and item.get("status"):
            try:
                found[str(item["id"])] = parse_server({"server": item})
            except (ValueError, TypeError, KeyError, AttributeError):
                log.warning("server %s in a list answer does not parse; left out", str(item["id"])[:64])
    return found


def _tags(tags: Any) -> tuple[tuple[str, str], ...]:
    """Details list tags as "key=value" strings (a tag key never contains "="; a value may be empty)."""
    pairs = []
    for item in tags if isinstance(tags, list) else ():
        if isinstance(item, str):
            key, _, value = item.partition("=")
            pairs.append((key, value))
    return tuple(pairs)


def _has_system_disk(server: Mapping[str, Any]) -> bool:
    """A volume with bootIndex "0", or a root device name. When the answer shows neither field, assume a disk
    (the cloud itself refuses a disk-less reinstall with Ecs.0105)."""
    volumes_key, root_key = "os-extended-volumes:volumes_attached", "OS-EXT-SRV-ATTR:root_device_name"
    if volumes_key not in server and root_key not in server:
        return True
    if server.get(root_key):
        return True
    volumes = server.get(volumes_key) or ()
    return any(isinstance(v, Mapping) and str(v.get("bootIndex")) == "0" for v in volumes)


__all__ = [
    "AmbiguousError",
    "ClientConfig",
    "CloudError",
    "CloudObserver",
    "EcsClient",
    "TerminalError",
    "ThrottledError",
    "TransientError",
    "parse_job",
    "parse_server",
    "parse_time",
]
