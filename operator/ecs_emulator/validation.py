"""Checking a reinstall or change-OS request body the way ECS does (the static part; the server's state and
the image are checked in `state`).

Rules (from the API reference; the change-OS body is the reinstall body under ``os-change`` plus ``imageid``):

- body root ``os-reinstall`` (an object); known fields only: adminpass, keyname, userid, mode, metadata;
  metadata fields: user_data (v2 only), __system__encrypted, __system__cmkid, BYOL. All values are strings.
- change OS: root ``os-change`` instead, the same fields plus ``imageid`` (required, a non-empty string;
  whether it names a usable image is checked against the image catalogue in `state`) and ``isAutoPay``
  (optional, "true" or "false": the SDK's ``is_auto_pay``, for yearly/monthly servers; recorded, no effect).
- v2 (with Cloud-Init): never both adminpass and keyname; with neither, metadata.user_data is required.
- v1 (without Cloud-Init): exactly one of adminpass and keyname; no user_data.
- userid: optional. Both APIs document it as required with keyname; that is not enforced (on either), so the
  two APIs keep the same rules.
- mode: only ``withStopServer``.
- user_data: base64; at most 32 KiB (32768 bytes) once decoded.
- __system__encrypted: "0" or "1"; __system__cmkid only with "1", and in UUID form (36 chars).
- adminpass (checked by `check_password` once the server's OS is known): 8-26 characters from
  ``A-Z a-z 0-9 !@$%^-_=+[{}]:,./?``, at least 3 of the 4 classes, not containing the administrator name or
  its reverse (``root``/``toor`` on Linux; ``Administrator`` on Windows, where no run of 3+ consecutive
  characters of it is allowed either).

Violations raise `EcsError`: ``Ecs.0005`` for the request shape, ``Ecs.0011`` for the password. Messages
name the field and never repeat a secret value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from ecs_emulator.errors import EcsError, invalid_request

MAX_USER_DATA_BYTES = 32 * 1024
PASSWORD_SPECIALS = "!@$%^-_=+[{}]:,./?"  # noqa: S105 (the allowed special characters)
_PASSWORD_ALLOWED = re.compile(r"^[A-Za-z0-9" + re.escape(PASSWORD_SPECIALS) + r"]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_OPTION_FIELDS = frozenset({"adminpass", "keyname", "userid", "mode", "metadata"})
_CHANGE_OS_FIELDS = _OPTION_FIELDS | {"imageid", "isAutoPay"}
REINSTALL = "reinstall"
CHANGE_OS = "change_os"
_ROOTS = {REINSTALL: "os-reinstall", CHANGE_OS: "os-change"}
_METADATA_FIELDS_V2 = frozenset({"user_data", "__system__encrypted", "__system__cmkid", "BYOL"})
_METADATA_FIELDS_V1 = _METADATA_FIELDS_V2 - {"user_data"}


@dataclass(frozen=True)
class ReinstallRequest:
    """A checked reinstall or change-OS body. ``adminpass`` and ``user_data`` stay out of the repr."""

    api: str  # "v1" | "v2"
    fields: tuple[str, ...]  # present fields, metadata ones as "metadata.<name>"
    keyname: str | None
    userid: str | None
    mode: str | None
    byol: str | None
    system_encrypted: str | None
    system_cmkid: str | None
    adminpass_sha256: str | None
    user_data_sha256: str | None  # of the decoded content
    user_data_size: int | None
    adminpass: str | None = None
    kind: str = REINSTALL  # "reinstall" | "change_os"
    imageid: str | None = None  # change OS: the new image
    is_auto_pay: str | None = None  # change OS: isAutoPay

    def __repr__(self) -> str:
        return (
            f"ReinstallRequest(kind={self.kind!r}, api={self.api!r}, fields={self.fields!r}, "
            f"keyname={self.keyname!r}, imageid={self.imageid!r})"
        )


def _optional_str(container: dict, name: str, where: str) -> str | None:
    value = container.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_request(f"{where}.{name} must be a string, not {type(value).__name__}")
    return value


def parse_reinstall_body(body: object, api: str) -> ReinstallRequest:
    """Check the body of a v1 or v2 reinstall request; raise ``Ecs.0005`` on the first problem."""
    return parse_os_body(body, api, REINSTALL)


def parse_change_os_body(body: object, api: str) -> ReinstallRequest:
    """Check the body of a v1 or v2 change-OS request (``os-change``, with ``imageid``); ``Ecs.0005``."""
    return parse_os_body(body, api, CHANGE_OS)


def parse_os_body(body: object, api: str, kind: str) -> ReinstallRequest:
    """The rules both bodies share (``kind`` "reinstall" or "change_os"); ``Ecs.0005`` on the first one."""
    root = _ROOTS[kind]
    if not isinstance(body, dict) or not isinstance(body.get(root), dict):
        raise invalid_request(f'the body must be a JSON object with an "{root}" object')
    if set(body) != {root}:
        extra = sorted(set(body) - {root})
        raise invalid_request(f"unexpected top-level field(s) {extra}; only {root} is allowed")
    option: dict = body[root]
    allowed = _CHANGE_OS_FIELDS if kind == CHANGE_OS else _OPTION_FIELDS
    unknown = sorted(set(option) - allowed)
    if unknown:
        raise invalid_request(f"{root} has unknown field(s) {unknown}; allowed: {sorted(allowed)}")

    imageid = is_auto_pay = None
    if kind == CHANGE_OS:
        imageid = _optional_str(option, "imageid", root)
        if not imageid:
            raise invalid_request(f"{root}.imageid is required: the ID of the new image")
        is_auto_pay = _optional_str(option, "isAutoPay", root)
        if is_auto_pay is not None and is_auto_pay not in ("true", "false"):
            raise invalid_request(f'{root}.isAutoPay must be "true" or "false", not {is_auto_pay!r}')
    adminpass = _optional_str(option, "adminpass", root)
    keyname = _optional_str(option, "keyname", root)
    userid = _optional_str(option, "userid", root)
    mode = _optional_str(option, "mode", root)
    metadata = option.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise invalid_request(f"{root}.metadata must be an object")
    allowed_metadata = _METADATA_FIELDS_V2 if api == "v2" else _METADATA_FIELDS_V1
    unknown = sorted(set(metadata) - allowed_metadata)
    if unknown:
        hint = " (user_data needs the v2 API, for images with Cloud-Init)" if "user_data" in unknown else ""
        raise invalid_request(f"{root}.metadata has unsupported field(s) {unknown}{hint}")
    where = f"{root}.metadata"
    user_data = _optional_str(metadata, "user_data", where)
    encrypted = _optional_str(metadata, "__system__encrypted", where)
    cmkid = _optional_str(metadata, "__system__cmkid", where)
    byol = _optional_str(metadata, "BYOL", where)

    if adminpass is not None and keyname is not None:
        raise invalid_request("adminpass and keyname cannot be used together; give one of them")
    if api == "v1" and adminpass is None and keyname is None:
        raise invalid_request("the API without Cloud-Init needs exactly one of adminpass and keyname")
    if api == "v2" and adminpass is None and keyname is None and user_data is None:
        raise invalid_request("give adminpass, keyname or metadata.user_data (one of them is required)")
    if mode is not None and mode != "withStopServer":
        raise invalid_request(f"{root}.mode must be 'withStopServer', not {mode!r}")

    user_data_sha256 = user_data_size = None
    if user_data is not None:
        decoded = _decode_user_data(user_data)
        user_data_sha256 = hashlib.sha256(decoded).hexdigest()
        user_data_size = len(decoded)
    if encrypted is not None and encrypted not in ("0", "1"):
        raise invalid_request(f'{where}.__system__encrypted must be "0" or "1", not {encrypted!r}')
    if cmkid is not None:
        if encrypted != "1":
            raise invalid_request(f'{where}.__system__cmkid requires __system__encrypted "1"')
        if not _UUID.match(cmkid):
            raise invalid_request(
                f"{where}.__system__cmkid must be a KMS key ID in UUID form (36 characters)"
            )

    fields = tuple(
        sorted(name for name in option if name != "metadata" and option[name] is not None)
    ) + tuple(f"metadata.{name}" for name in sorted(metadata) if metadata[name] is not None)
    return ReinstallRequest(
        api=api,
        fields=fields,
        keyname=keyname,
        userid=userid,
        mode=mode,
        byol=byol,
        system_encrypted=encrypted,
        system_cmkid=cmkid,
        adminpass_sha256=hashlib.sha256(adminpass.encode()).hexdigest() if adminpass is not None else None,
        user_data_sha256=user_data_sha256,
        user_data_size=user_data_size,
        adminpass=adminpass,
        kind=kind,
        imageid=imageid,
        is_auto_pay=is_auto_pay,
    )


def _decode_user_data(user_data: str) -> bytes:
    if not user_data:
        raise invalid_request("metadata.user_data must not be empty; leave it out instead")
    try:
        decoded = base64.b64decode(user_data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request("metadata.user_data must be base64-encoded") from None
    if len(decoded) > MAX_USER_DATA_BYTES:
        raise invalid_request(
            f"metadata.user_data is {len(decoded)} bytes once decoded; the limit is {MAX_USER_DATA_BYTES}"
        )
    return decoded


def password_problem(password: str, os_type: str = "Linux") -> str | None:
    """Why ``password`` breaks the ECS password rules, or None. Never includes the password itself."""
    if not 8 <= len(password) <= 26:
        return f"it must be 8 to 26 characters long (it has {len(password)})"
    if not _PASSWORD_ALLOWED.match(password):
        return f"it may only contain A-Z, a-z, 0-9 and {PASSWORD_SPECIALS}"
    classes = sum(
        (
            any(c.isupper() for c in password),
            any(c.islower() for c in password),
            any(c.isdigit() for c in password),
            any(c in PASSWORD_SPECIALS for c in password),
        )
    )
    if classes < 3:
        return "it needs at least 3 of: upper-case letters, lower-case letters, digits, special characters"
    lowered = password.lower()
    user = "administrator" if os_type.lower() == "windows" else "root"
    if user in lowered or user[::-1] in lowered:
        return f"it must not contain the user name {user!r} or its reverse"
    if user == "administrator":
        runs = {user[i : i + 3] for i in range(len(user) - 2)}
        if any(run in lowered for run in runs):
            return "it must not contain 3 or more consecutive characters of 'Administrator'"
    return None


def check_password(password: str, os_type: str) -> None:
    problem = password_problem(password, os_type)
    if problem is not None:
        raise EcsError(400, "Ecs.0011", f"Invalid password: {problem}.")
