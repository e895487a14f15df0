"""The EcsReinstall spec as a typed model: parsing, the checks a CRD schema cannot express, the request body.

Pure (no I/O). `parse_spec` turns the resource's spec into a `ReinstallSpec`, re-checking every format and
combination rule of the CRD as well (the cluster may run an older or looser CRD). Once the operator has read
the Secrets and ConfigMaps (`ResolvedInputs`), `check_resolved` applies the rules that need their values
(password rules, user data size) and `build_reinstall_body` returns the exact body of the reinstall request.

Every error is an `InvalidSpec` naming the field (`spec.keyName`) and saying how to fix it. Secret values
(passwords, user data) never appear in errors or reprs.

Decisions (where the API pages are silent):
- The user names in passwords are checked case-insensitively (`Root`, `TOOR`, `ADMINISTRATOR` are refused
  too). The image's OS is unknown here, so both the Linux rule (`root` / `toor`) and the whole-word Windows
  rule (`Administrator` / its reverse) apply; the Windows rule about runs of 3+ consecutive characters of
  `Administrator` is left to the cloud (it answers `Ecs.0011`).
- User data may be binary (the API accepts gzip): it is measured in bytes, never decoded.
- `adminPasswordSecretRef.key` defaults to `password`; the user data references need an explicit key.
- `userId` is required with `keyName` and allowed (sent as `userid`) with the other login modes, as in the
  API's own password example.
"""

from __future__ import annotations

import base64
import difflib
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .cloud import tags

# --- formats: the same patterns as the CRD (tests/unit/test_crd.py keeps them equal) ---

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
HEX32_PATTERN = r"^[0-9a-f]{32}$"
REGION_PATTERN = r"^[a-z]{2,}(-[a-z0-9]+)+$"
ENDPOINT_PATTERN = (
    r"^https?://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[^\s?#]*)?$"
)
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
KEY_PAIR_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"

REGION_MAX_LENGTH = 63
ENDPOINT_MAX_LENGTH = 512
NAME_MAX_LENGTH = 253
KEY_PAIR_NAME_MAX_LENGTH = 64
USER_DATA_MAX_BYTES = 32768  # before base64 encoding (the API's 32 KiB)

DEFAULT_PASSWORD_KEY = "password"  # noqa: S105 (a key name, not a password)
DEFAULT_POLL_INTERVAL_SECONDS = 10
DEFAULT_TIMEOUT_SECONDS = 1800
POLL_INTERVAL_RANGE = (2, 600)
TIMEOUT_RANGE = (60, 86400)
PENDING_TIMEOUT_RANGE = (60, 30 * 86400)
TTL_RANGE = (0, 365 * 86400)

# --- password rules (the API's adminpass) ---

PASSWORD_LENGTH_RANGE = (8, 26)
PASSWORD_SPECIALS = "!@$%^-_=+[{}]:,./?"  # noqa: S105 (the allowed special characters)
PASSWORD_MIN_CLASSES = 3
_PASSWORD_CLASSES = (
    ("upper-case letters", frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")),
    ("lower-case letters", frozenset("abcdefghijklmnopqrstuvwxyz")),
    ("digits", frozenset("0123456789")),
    ("special characters", frozenset(PASSWORD_SPECIALS)),
)
_PASSWORD_ALLOWED = frozenset().union(*(chars for _, chars in _PASSWORD_CLASSES))
# (user name, system): a password contains neither the name nor its reverse, in any letter case.
_PASSWORD_USER_NAMES = (("root", "Linux"), ("Administrator", "Windows"))

# Where each attribute of ReinstallSpec comes from: its field path in the resource.
FIELD_PATHS: Mapping[str, str] = {
    "server_id": "spec.serverId",
    "project_id": "spec.projectId",
    "region": "spec.region",
    "endpoint": "spec.endpoint",
    "credentials_secret": "spec.credentialsSecretRef.name",
    "admin_password_ref": "spec.adminPasswordSecretRef",
    "key_name": "spec.keyName",
    "user_id": "spec.userId",
    "stop_server": "spec.stopServer",
    "user_data": "spec.userData",
    "byol": "spec.byol",
    "kms_key_id": "spec.systemDiskEncryption.kmsKeyId",
    "image_id": "spec.imageId",
    "revision_tag": "spec.revisionTag",
    "cloud_init": "spec.cloudInit",
    "poll_interval_seconds": "spec.pollIntervalSeconds",
    "timeout_seconds": "spec.timeoutSeconds",
    "pending_timeout_seconds": "spec.pendingTimeoutSeconds",
    "ttl_seconds_after_finished": "spec.ttlSecondsAfterFinished",
}


# --- errors ---


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: the field path and what to do about it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidSpec(Exception):
    """The spec cannot be reinstalled as written; retrying will not help, a new resource will.

    `field` and `message` describe the first problem; `problems` holds all of them (the spec is immutable,
    so telling every problem at once spares the user rounds of delete and re-create). Never a secret value.
    """

    def __init__(self, field: str, message: str, *, more: tuple[Problem, ...] = ()) -> None:
        self.field = field
        self.message = message
        self.problems: tuple[Problem, ...] = (Problem(field, message), *more)
        super().__init__(str(self))

    @classmethod
    def of(cls, problems: list[Problem] | tuple[Problem, ...]) -> InvalidSpec:
        first, *rest = problems
        return cls(first.field, first.message, more=tuple(rest))

    def __str__(self) -> str:
        return "; ".join(str(problem) for problem in self.problems)

    def __repr__(self) -> str:
        return f"InvalidSpec({str(self)!r})"


# --- the model ---


class ApiVersion(enum.StrEnum):
    V2 = "v2"  # images with Cloud-Init: user data allowed
    V1 = "v1"  # images without Cloud-Init


class AuthMode(enum.StrEnum):
    """How the reinstalled system is logged in to."""

    PASSWORD = "password"  # noqa: S105 (a mode name)
    KEYPAIR = "keypair"
    USER_DATA = "user-data"


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str

    def describe(self, namespace: str | None = None) -> str:
        return f"Secret {_qualified(namespace, self.name)} key {self.key}"


@dataclass(frozen=True)
class ConfigMapKeyRef:
    name: str
    key: str

    def describe(self, namespace: str | None = None) -> str:
        return f"ConfigMap {_qualified(namespace, self.name)} key {self.key}"


@dataclass(frozen=True)
class UserDataSource:
    """Exactly one of: inline `value`, a Secret key, a ConfigMap key. The inline value is never shown."""

    value: str | None = field(default=None, repr=False)
    secret_ref: SecretKeyRef | None = None
    config_map_ref: ConfigMapKeyRef | None = None

    def __post_init__(self) -> None:
        sources = (self.value is not None, self.secret_ref is not None, self.config_map_ref is not None)
        if sum(sources) != 1:
            raise ValueError("UserDataSource needs exactly one of value, secret_ref, config_map_ref")

    @property
    def inline(self) -> bool:
        return self.value is not None

    @property
    def reference(self) -> SecretKeyRef | ConfigMapKeyRef | None:
        """The Secret or ConfigMap key to read, None for inline user data."""
        return self.secret_ref or self.config_map_ref

    def describe(self, namespace: str | None = None) -> str:
        reference = self.reference
        return "spec.userData.value" if reference is None else reference.describe(namespace)

    def __repr__(self) -> str:
        if self.inline:
            return "UserDataSource(value=<hidden>)"
        return f"UserDataSource(reference={self.reference!r})"


@dataclass(frozen=True)
class ReinstallSpec:
    """A checked spec. None means "not set" (the operator's defaults apply for project, region, endpoint,
    credentials)."""

    server_id: str
    project_id: str | None = None
    region: str | None = None
    endpoint: str | None = None
    credentials_secret: str | None = None
    admin_password_ref: SecretKeyRef | None = None
    key_name: str | None = None
    user_id: str | None = None
    stop_server: bool = False
    user_data: UserDataSource | None = None
    byol: bool = False
    kms_key_id: str | None = None
    image_id: str | None = (
        None  # set: change the OS to this image (the change-OS API) instead of reinstalling
    )
    cloud_init: bool = True
    poll_interval_seconds: int = DEFAULT_POLL_INTERVAL_SECONDS
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    pending_timeout_seconds: int | None = None  # never submitted for this long: fail (off by default)
    ttl_seconds_after_finished: int | None = None  # finished for this long: deleted (off by default)
    # (key, value) of the server tag that records this reinstall (an EcsReinstallSet's revision): a server that
    # carries it is not reinstalled again (AlreadyAtRevision), and it is written once the reinstall succeeded
    revision_tag: tuple[str, str] | None = None

    @property
    def api_version(self) -> ApiVersion:
        return ApiVersion.V2 if self.cloud_init else ApiVersion.V1

    @property
    def auth_mode(self) -> AuthMode:
        if self.admin_password_ref is not None:
            return AuthMode.PASSWORD
        if self.key_name is not None:
            return AuthMode.KEYPAIR
        return AuthMode.USER_DATA


@dataclass(frozen=True)
class ResolvedInputs:
    """The values the operator read from Secrets and ConfigMaps for one spec. Never shown in reprs.

    `user_data` is None when the spec has none; for inline user data it may be None (taken from the spec) or
    the UTF-8 bytes of the inline value.
    """

    admin_password: str | None = field(default=None, repr=False)
    user_data: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        password = "None" if self.admin_password is None else "<hidden>"
        user_data = "None" if self.user_data is None else "<hidden>"
        return f"ResolvedInputs(admin_password={password}, user_data={user_data})"


def api_version(spec: ReinstallSpec) -> ApiVersion:
    """v2 (with Cloud-Init) or v1 (cloudInit false). ApiVersion is a str: it equals "v2" / "v1"."""
    return spec.api_version


# --- parsing ---

_SPEC_KEYS = (
    "serverId",
    "projectId",
    "region",
    "endpoint",
    "credentialsSecretRef",
    "adminPasswordSecretRef",
    "keyName",
    "userId",
    "stopServer",
    "userData",
    "byol",
    "systemDiskEncryption",
    "imageId",
    "cloudInit",
    "pollIntervalSeconds",
    "timeoutSeconds",
    "pendingTimeoutSeconds",
    "ttlSecondsAfterFinished",
    "revisionTag",
)


class _Reader:
    """Reads typed values out of the raw spec and collects every problem, so that all are reported at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def mapping(self, raw: Any, path: str, known: tuple[str, ...]) -> Mapping[str, Any] | None:
        if not isinstance(raw, Mapping):
            self.fail(path, f"must be an object, not {_kind(raw)}")
            return None
        for key in raw:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                suggestion = f"did you mean {hint[0]}?" if hint else f"known fields are {', '.join(known)}"
                self.fail(f"{path}.{key}", f"unknown field; {suggestion}")
        return raw

    def string(
        self,
        raw: Mapping[str, Any],
        name: str,
        path: str,
        *,
        pattern: str | None = None,
        max_length: int | None = None,
        expected: str = "",
        echo: bool = True,
        required: str | None = None,
    ) -> str | None:
        """A string field, or None when absent. `expected` says what a valid value looks like (the fix);
        `required`, when given, makes a missing value a problem and says what to put there."""
        value = raw.get(name)
        if value is None:
            if required:
                self.fail(path, f"is required: {required}")
            return None
        if not isinstance(value, str):
            self.fail(path, f"must be a string, not {_kind(value)}")
            return None
        shown = f"{_shorten(value)!r} " if echo else ""
        if value == "":
            self.fail(path, f"is empty; {expected or 'set a value or leave the field out'}")
        elif max_length is not None and len(value) > max_length:
            self.fail(path, f"is {len(value)} characters long; at most {max_length} are allowed")
        elif pattern is not None and not re.match(pattern, value):
            self.fail(path, f"{shown}is not valid; expected {expected or f'a value matching {pattern}'}")
        return value

    def boolean(self, raw: Mapping[str, Any], name: str, path: str, default: bool) -> bool:
        value = raw.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, not {_kind(value)}")
            return default
        return value

    def integer(
        self, raw: Mapping[str, Any], name: str, path: str, default: int, bounds: tuple[int, int]
    ) -> int:
        value = raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be a whole number of seconds, not {_kind(value)}")
            return default
        low, high = bounds
        if not low <= value <= high:
            self.fail(path, f"is {value}; it must be between {low} and {high} seconds")
        return value

    def optional_integer(
        self, raw: Mapping[str, Any], name: str, path: str, bounds: tuple[int, int]
    ) -> int | None:
        if raw.get(name) is None:
            return None
        return self.integer(raw, name, path, bounds[0], bounds)

    def object_name(self, raw: Mapping[str, Any], path: str, what: str) -> str | None:
        return self.string(
            raw,
            "name",
            f"{path}.name",
            pattern=DNS_SUBDOMAIN_PATTERN,
            max_length=NAME_MAX_LENGTH,
            expected=f"the name of a {what}: lower-case letters, digits, '-' and '.', at most 253 characters",
            required=f"the name of a {what} in the namespace of this resource",
        )

    def key_ref(
        self, raw: Any, path: str, what: str, default_key: str | None = None
    ) -> tuple[str, str] | None:
        """A {name, key} reference; None when it is malformed (the problem is recorded)."""
        ref = self.mapping(raw, path, ("name", "key"))
        if ref is None:
            return None
        name = self.object_name(ref, path, what)
        key = self.string(
            ref,
            "key",
            f"{path}.key",
            pattern=DATA_KEY_PATTERN,
            max_length=NAME_MAX_LENGTH,
            expected=f"a key of the {what}'s data: letters, digits, '-', '_' and '.'",
            required=None if default_key else f"the key of the {what}'s data to read",
        )
        if ref.get("key") is None:
            key = default_key
        return (name, key) if name and key else None


def parse_spec(raw: Mapping[str, Any]) -> ReinstallSpec:
    """Check a resource's spec and return it typed; raise InvalidSpec listing every problem with a fix."""
    reader = _Reader()
    spec = reader.mapping(raw, "spec", _SPEC_KEYS)
    if spec is None:
        raise InvalidSpec.of(reader.problems)

    server_id = reader.string(
        spec,
        "serverId",
        "spec.serverId",
        pattern=UUID_PATTERN,
        expected="the ECS server ID: a lowercase UUID of 36 characters "
        "like 6e2f41a5-b61e-4d32-9a1c-0f3b6e2c1d7a",
        required="the ID of the ECS server to reinstall (a lowercase UUID)",
    )
    project_id = reader.string(
        spec,
        "projectId",
        "spec.projectId",
        pattern=HEX32_PATTERN,
        expected="a project ID: 32 lowercase hex characters, or leave it out to use the credentials' project",
    )
    region = reader.string(
        spec,
        "region",
        "spec.region",
        pattern=REGION_PATTERN,
        max_length=REGION_MAX_LENGTH,
        expected="a region name such as cn-north-4, ap-southeast-1 or eu-west-101",
    )
    endpoint = reader.string(
        spec,
        "endpoint",
        "spec.endpoint",
        pattern=ENDPOINT_PATTERN,
        max_length=ENDPOINT_MAX_LENGTH,
        expected="an http:// or https:// URL with a host, such as https://ecs.eu-west-101.myhuaweicloud.eu, "
        "without user name, password, query or fragment",
        echo=False,  # a malformed URL may carry credentials
    )

    credentials_secret = None
    if spec.get("credentialsSecretRef") is not None:
        ref = reader.mapping(spec["credentialsSecretRef"], "spec.credentialsSecretRef", ("name",))
        if ref is not None:
            credentials_secret = reader.object_name(ref, "spec.credentialsSecretRef", "Secret")

    admin_password_ref = None
    if spec.get("adminPasswordSecretRef") is not None:
        pair = reader.key_ref(
            spec["adminPasswordSecretRef"], "spec.adminPasswordSecretRef", "Secret", DEFAULT_PASSWORD_KEY
        )
        admin_password_ref = SecretKeyRef(*pair) if pair else None

    key_name = reader.string(
        spec,
        "keyName",
        "spec.keyName",
        pattern=KEY_PAIR_NAME_PATTERN,
        max_length=KEY_PAIR_NAME_MAX_LENGTH,
        expected="the name of an SSH key pair: letters, digits, '_' and '-', at most 64 characters",
    )
    user_id = reader.string(
        spec,
        "userId",
        "spec.userId",
        pattern=HEX32_PATTERN,
        expected="an IAM user ID: 32 lowercase hex characters",
    )
    user_data = _read_user_data(reader, spec.get("userData"))

    kms_key_id = None
    if spec.get("systemDiskEncryption") is not None:
        encryption = reader.mapping(spec["systemDiskEncryption"], "spec.systemDiskEncryption", ("kmsKeyId",))
        if encryption is not None:
            kms_key_id = reader.string(
                encryption,
                "kmsKeyId",
                "spec.systemDiskEncryption.kmsKeyId",
                pattern=UUID_PATTERN,
                expected="a KMS key ID: a lowercase UUID of 36 characters such as "
                "83cdb52d-9ebf-4469-9cfa-e7b5b80da846 (the key ID, not its alias)",
                required="the ID of the KMS key that encrypts the system disk",
            )

    image_id = reader.string(
        spec,
        "imageId",
        "spec.imageId",
        pattern=UUID_PATTERN,
        expected="an image ID: a lowercase UUID of 36 characters such as 67f433d8-ed0e-4321-a8a2-a71838539e09 (the "
        "image's ID, not its name)",
    )
    stop_server = reader.boolean(spec, "stopServer", "spec.stopServer", False)
    byol = reader.boolean(spec, "byol", "spec.byol", False)
    cloud_init = reader.boolean(spec, "cloudInit", "spec.cloudInit", True)
    poll_interval = reader.integer(
        spec,
        "pollIntervalSeconds",
        "spec.pollIntervalSeconds",
        DEFAULT_POLL_INTERVAL_SECONDS,
        POLL_INTERVAL_RANGE,
    )
    timeout = reader.integer(
        spec, "timeoutSeconds", "spec.timeoutSeconds", DEFAULT_TIMEOUT_SECONDS, TIMEOUT_RANGE
    )
    pending_timeout = reader.optional_integer(
        spec, "pendingTimeoutSeconds", "spec.pendingTimeoutSeconds", PENDING_TIMEOUT_RANGE
    )
    ttl = reader.optional_integer(spec, "ttlSecondsAfterFinished", "spec.ttlSecondsAfterFinished", TTL_RANGE)
    revision_tag = _read_revision_tag(reader, spec.get("revisionTag"))

    has_password, has_key, has_user_data = (
        "adminPasswordSecretRef" in spec and spec["adminPasswordSecretRef"] is not None,
        "keyName" in spec and spec["keyName"] is not None,
        "userData" in spec and spec["userData"] is not None,
    )
    reader.problems.extend(
        combination_problems(
            has_password=has_password,
            has_key=has_key,
            has_user_id="userId" in spec and spec["userId"] is not None,
            has_user_data=has_user_data,
            cloud_init=cloud_init,
        )
    )

    if reader.problems:
        raise InvalidSpec.of(reader.problems)
    assert server_id is not None
    return ReinstallSpec(
        server_id=server_id,
        project_id=project_id,
        region=region,
        endpoint=endpoint.rstrip("/") if endpoint else None,
        credentials_secret=credentials_secret,
        admin_password_ref=admin_password_ref,
        key_name=key_name,
        user_id=user_id,
        stop_server=stop_server,
        user_data=user_data,
        byol=byol,
        kms_key_id=kms_key_id,
        image_id=image_id,
        cloud_init=cloud_init,
        poll_interval_seconds=poll_interval,
        timeout_seconds=timeout,
        pending_timeout_seconds=pending_timeout,
        ttl_seconds_after_finished=ttl,
        revision_tag=revision_tag,
    )


def _read_revision_tag(reader: _Reader, raw: Any) -> tuple[str, str] | None:
    if raw is None:
        return None
    tag = reader.mapping(raw, "spec.revisionTag", ("key", "value"))
    if tag is None:
        return None
    found = []
    for name in ("key", "value"):
        value = reader.string(tag, name, f"spec.revisionTag.{name}", required=f"the server tag's {name}")
        problem = tags.problem(value, key=name == "key") if isinstance(value, str) and value else None
        if problem:
            reader.fail(
                f"spec.revisionTag.{name}", f"{problem}: Huawei tag keys hold 1-36 characters, values 1-43"
            )
        found.append(value)
    key, value = found
    return (key, value) if key and value else None


def _read_user_data(reader: _Reader, raw: Any) -> UserDataSource | None:
    if raw is None:
        return None
    path = "spec.userData"
    user_data = reader.mapping(raw, path, ("value", "valueFrom"))
    if user_data is None:
        return None
    has_value, has_value_from = user_data.get("value") is not None, user_data.get("valueFrom") is not None
    if has_value == has_value_from:
        reader.fail(
            path,
            "needs exactly one of value (the user data itself) or valueFrom (a Secret or ConfigMap key)",
        )
        return None
    if has_value:
        value = reader.string(
            user_data, "value", f"{path}.value", echo=False, expected="put the user data here"
        )
        if value is not None and (size := len(value.encode())) > USER_DATA_MAX_BYTES:
            reader.fail(f"{path}.value", _user_data_size_message("the inline user data", size))
            return None
        return UserDataSource(value=value) if value else None

    value_from = reader.mapping(
        user_data["valueFrom"], f"{path}.valueFrom", ("secretKeyRef", "configMapKeyRef")
    )
    if value_from is None:
        return None
    secret, config_map = value_from.get("secretKeyRef"), value_from.get("configMapKeyRef")
    if (secret is None) == (config_map is None):
        reader.fail(f"{path}.valueFrom", "needs exactly one of secretKeyRef or configMapKeyRef")
        return None
    if secret is not None:
        pair = reader.key_ref(secret, f"{path}.valueFrom.secretKeyRef", "Secret")
        return UserDataSource(secret_ref=SecretKeyRef(*pair)) if pair else None
    pair = reader.key_ref(config_map, f"{path}.valueFrom.configMapKeyRef", "ConfigMap")
    return UserDataSource(config_map_ref=ConfigMapKeyRef(*pair)) if pair else None


def combination_problems(
    *, has_password: bool, has_key: bool, has_user_id: bool, has_user_data: bool, cloud_init: bool
) -> list[Problem]:
    """The rules that tie fields together (the same as the CRD's CEL rules, with the same wording)."""
    problems = []
    if has_password and has_key:
        problems.append(
            Problem(
                "spec.keyName",
                "adminPasswordSecretRef and keyName cannot both be set: the new system is logged in to "
                "either with a password or with a key pair; remove one of them",
            )
        )
    if has_key and not has_user_id:
        problems.append(
            Problem(
                "spec.userId",
                "userId is required with keyName: set it to the ID of the IAM user (32 hex characters)",
            )
        )
    if not cloud_init and has_user_data:
        problems.append(
            Problem(
                "spec.userData",
                "userData needs Cloud-Init, but cloudInit is false (the v1 API for images without Cloud-Init "
                "takes no user data): remove userData or set cloudInit to true",
            )
        )
    if not cloud_init and has_password == has_key:
        problems.append(
            Problem(
                "spec.cloudInit",
                "cloudInit false (the v1 API for images without Cloud-Init) needs exactly one of "
                "adminPasswordSecretRef or keyName",
            )
        )
    if not (has_password or has_key or has_user_data):
        problems.append(
            Problem(
                "spec",
                "set one of adminPasswordSecretRef, keyName or userData: the API needs a password, a key "
                "pair, or user data that sets the login itself",
            )
        )
    return problems


# --- checks on the resolved values ---

_PASSWORD_FIELD = "spec.adminPasswordSecretRef"  # noqa: S105 (a field path)


def check_password(password: str, source: str = "the password") -> None:
    """Raise InvalidSpec (field spec.adminPasswordSecretRef) with one problem per rule the password breaks.

    `source` names where the password comes from ("the password from Secret ns/name key password"); the
    messages say which rule is broken, never the password.
    """
    problems = [Problem(_PASSWORD_FIELD, message) for message in _password_violations(password, source)]
    if problems:
        raise InvalidSpec.of(problems)


def _password_violations(password: str, source: str) -> list[str]:
    messages = []
    low, high = PASSWORD_LENGTH_RANGE
    if not low <= len(password) <= high:
        messages.append(f"{source} is {len(password)} characters long; it needs {low} to {high}")

    disallowed = [char for char in password if char not in _PASSWORD_ALLOWED]
    if disallowed:
        message = (
            f"{source} contains {len(disallowed)} character(s) that are not allowed; use only A-Z, a-z, 0-9 "
            f"and {PASSWORD_SPECIALS}"
        )
        if any(char.isspace() for char in disallowed):
            message += (
                " (it contains white space or a line break; a trailing newline often comes from `echo`: "
                "create the Secret with `kubectl create secret generic NAME --from-literal=password=...` "
                "or `echo -n`)"
            )
        messages.append(message)

    classes_used = [name for name, chars in _PASSWORD_CLASSES if any(char in chars for char in password)]
    if len(classes_used) < PASSWORD_MIN_CLASSES:
        messages.append(
            f"{source} uses {len(classes_used)} of the 4 character classes (upper-case letters, "
            f"lower-case letters, digits, special characters {PASSWORD_SPECIALS}); "
            f"it needs at least {PASSWORD_MIN_CLASSES}"
        )

    folded = password.casefold()
    for user_name, system in _PASSWORD_USER_NAMES:
        if user_name.casefold() in folded or user_name[::-1].casefold() in folded:
            messages.append(
                f"{source} contains the {system} administrator name {user_name!r} or its reverse "
                f"{user_name[::-1]!r} (in any letter case), which the cloud refuses; choose another password"
            )
    return messages


def decode_password(raw: bytes, source: str) -> str:
    """The text of a password read from a Secret; InvalidSpec when it is not UTF-8 (never shows the bytes)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpec(
            _PASSWORD_FIELD, f"{source} is not UTF-8 text; store the password itself in the Secret"
        ) from None


def user_data_bytes(spec: ReinstallSpec, resolved: ResolvedInputs) -> bytes | None:
    """The user data to send (inline from the spec, else as read); None when the spec has none."""
    source = spec.user_data
    if source is None:
        return None
    if source.inline:
        assert source.value is not None
        inline = source.value.encode("utf-8")
        if resolved.user_data is not None and resolved.user_data != inline:
            raise ValueError("ResolvedInputs.user_data differs from the inline spec.userData.value")
        return inline
    if resolved.user_data is None:
        raise ValueError(f"user data from {source.describe()} was not resolved")
    return resolved.user_data


def check_resolved(spec: ReinstallSpec, resolved: ResolvedInputs, *, namespace: str | None = None) -> None:
    """Check what needs the values from Secrets and ConfigMaps: password rules, user data size, and that the
    request carries a password, a key pair or non-empty user data. Raise InvalidSpec listing every problem.

    `namespace` only makes the messages precise ("Secret ns/name key password"). A reference of the spec
    without its value in `resolved` is the caller's bug (ValueError), not a spec problem.
    """
    problems: list[Problem] = []
    if spec.admin_password_ref is not None:
        if resolved.admin_password is None:
            raise ValueError(
                f"the password from {spec.admin_password_ref.describe(namespace)} was not resolved"
            )
        source = f"the password from {spec.admin_password_ref.describe(namespace)}"
        problems += [
            Problem(_PASSWORD_FIELD, m) for m in _password_violations(resolved.admin_password, source)
        ]
    elif resolved.admin_password is not None:
        raise ValueError("a password was resolved but the spec has no adminPasswordSecretRef")

    if spec.user_data is None and resolved.user_data is not None:
        raise ValueError("user data was resolved but the spec has no userData")
    data = user_data_bytes(spec, resolved)
    if spec.user_data is not None and data is not None:
        where = f"the user data from {spec.user_data.describe(namespace)}"
        if len(data) > USER_DATA_MAX_BYTES:
            problems.append(Problem("spec.userData", _user_data_size_message(where, len(data))))
        elif not data and spec.admin_password_ref is None and spec.key_name is None:
            problems.append(
                Problem(
                    "spec.userData",
                    f"{where} is empty; with neither adminPasswordSecretRef nor keyName the API needs user "
                    "data that sets the login (for example a #cloud-config with a password hash)",
                )
            )
    if problems:
        raise InvalidSpec.of(problems)


def _user_data_size_message(where: str, size: int) -> str:
    return (
        f"{where} is {size} bytes; the API accepts at most {USER_DATA_MAX_BYTES} bytes (32 KiB) before "
        "base64 encoding: shorten it or compress it with gzip"
    )


# --- the request ---


def build_reinstall_body(
    spec: ReinstallSpec, resolved: ResolvedInputs, *, namespace: str | None = None
) -> dict[str, Any]:
    """The body of POST /{v2|v1}/{project_id}/cloudservers/{server_id}/reinstallos, empty fields left out; with
    spec.imageId, of .../changeos instead: the same fields plus `imageid`, under "os-change".

    Checks the resolved values first (check_resolved), so an invalid body is never built. The result holds the
    password and user data: it goes to the HTTP client and nowhere else (never log it).
    """
    check_resolved(spec, resolved, namespace=namespace)
    option: dict[str, Any] = {}
    if resolved.admin_password:
        option["adminpass"] = resolved.admin_password
    if spec.key_name:
        option["keyname"] = spec.key_name
    if spec.user_id:
        option["userid"] = spec.user_id
    if spec.stop_server:
        option["mode"] = "withStopServer"

    metadata: dict[str, str] = {}
    data = user_data_bytes(spec, resolved)
    if data and spec.api_version is ApiVersion.V2:
        metadata["user_data"] = base64.b64encode(data).decode("ascii")
    if spec.byol:
        metadata["BYOL"] = "true"
    if spec.kms_key_id:
        metadata["__system__encrypted"] = "1"
        metadata["__system__cmkid"] = spec.kms_key_id
    if metadata:
        option["metadata"] = metadata
    if spec.image_id:
        return {"os-change": {**option, "imageid": spec.image_id}}
    return {"os-reinstall": option}


def describe(spec: ReinstallSpec) -> dict[str, Any]:
    """Non-secret facts about a spec for logs and Events (never a secret value; Secret names are not secret).

    Fields left to the operator's defaults (project, region, endpoint, credentials) are left out.
    """
    facts: dict[str, Any] = {
        "server": spec.server_id,
        "project": spec.project_id,
        "region": spec.region,
        "endpoint": spec.endpoint,
        "credentialsSecret": spec.credentials_secret,
        "api": str(spec.api_version),
        "auth": str(spec.auth_mode),
        "keyName": spec.key_name,
        "stopServer": spec.stop_server,
        "userData": _user_data_fact(spec.user_data),
        "byol": spec.byol,
        "systemDiskEncrypted": spec.kms_key_id is not None,
        "image": spec.image_id,
    }
    return {name: value for name, value in facts.items() if value is not None}


# --- helpers ---


def _user_data_fact(source: UserDataSource | None) -> str | None:
    if source is None:
        return None
    return "inline" if source.inline else source.describe()


def _qualified(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."
