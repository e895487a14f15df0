"""Resolving what a spec points to: the credentials, the target endpoint and project, the password and user data.

Secret references are namespace-local: a resource reads only Secrets and ConfigMaps of its own namespace; the
operator's default credentials Secret lives in the operator's namespace. A missing object or key is something to
wait for (`MissingInput`); a setup that can never work (no credentials at all, no region) is `InvalidSpec`.

Reads may come from the Kubernetes client's short-lived cache (see `kube.ReadCache`): an object found without a
key we need is forgotten there, so that the retry reads it again rather than a cached copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .cloud.models import CloudTarget, Credentials, endpoint_for_region
from .kube import Kube, NotFound
from .settings import Settings
from .spec import InvalidSpec, ReinstallSpec, ResolvedInputs, decode_password

PROJECT_ID = re.compile(r"[0-9a-f]{32}")


class MissingInput(Exception):
    """Something the spec refers to does not exist (yet). `what` names it, never its content."""

    def __init__(self, what: str, hint: str = ""):
        super().__init__(f"waiting for {what}")
        self.what = what
        self.hint = hint  # what would help find it (the keys the object has: names only)


@dataclass(frozen=True)
class Resolved:
    target: CloudTarget
    inputs: ResolvedInputs


async def _read(kube: Kube, kind: str, namespace: str, name: str) -> dict[str, bytes]:
    reader = kube.read_secret if kind == "Secret" else kube.read_config_map
    try:
        return await reader(namespace, name)
    except NotFound:
        raise MissingInput(f'{kind} "{name}" in namespace "{namespace}"') from None


def _key(kube: Kube, data: dict[str, bytes], kind: str, namespace: str, name: str, key: str) -> bytes:
    if key not in data:
        kube.forget(kind, namespace, name)
        present = ", ".join(f'"{k}"' for k in sorted(data)[:20]) or "none"
        raise MissingInput(
            f'key "{key}" in {kind} "{name}" in namespace "{namespace}"', f"; the keys it has: {present}"
        )
    return data[key]


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidSpec("spec", f"{where} is not UTF-8 text") from None


def _credentials_ref(settings: Settings, namespace: str, spec: ReinstallSpec) -> tuple[str, str, str] | None:
    """(namespace, name, the field to name in errors) of the credentials Secret, None if there is none."""
    if spec.credentials_secret:
        return namespace, spec.credentials_secret, "spec.credentialsSecretRef"
    if settings.credentials_secret:
        return settings.operator_namespace, settings.credentials_secret, "spec"
    return None


def credentials_source(settings: Settings, namespace: str, spec: ReinstallSpec) -> str:
    """Names the credentials Secret a resource uses, for messages and the audit log (never its content)."""
    ref = _credentials_ref(settings, namespace, spec)
    return f'Secret "{ref[1]}" in namespace "{ref[0]}"' if ref else "no credentials Secret"


def forget_credentials(kube: Kube, settings: Settings, namespace: str, spec: ReinstallSpec) -> None:
    """The credentials Secret is read from the API next time: the cloud refused what was read (rotated keys,
    an expired security token)."""
    ref = _credentials_ref(settings, namespace, spec)
    if ref is not None:
        kube.forget("Secret", ref[0], ref[1])


def forget(kube: Kube, settings: Settings, namespace: str, spec: ReinstallSpec) -> None:
    """Every Secret and ConfigMap the spec refers to is read from the API next time: called when what was read
    failed the resource (refused by the cloud or by the checks), as the objects may be fixed since they were
    cached and another resource may refer to them."""
    ref = _credentials_ref(settings, namespace, spec)
    if ref is not None:
        kube.forget("Secret", ref[0], ref[1])
    if spec.admin_password_ref is not None:
        kube.forget("Secret", namespace, spec.admin_password_ref.name)
    source = spec.user_data
    if source is not None and source.secret_ref is not None:
        kube.forget("Secret", namespace, source.secret_ref.name)
    if source is not None and source.config_map_ref is not None:
        kube.forget("ConfigMap", namespace, source.config_map_ref.name)


async def resolve_target(kube: Kube, settings: Settings, namespace: str, spec: ReinstallSpec) -> CloudTarget:
    ref = _credentials_ref(settings, namespace, spec)
    if ref is None:
        raise InvalidSpec(
            "spec.credentialsSecretRef",
            "no credentials: set spec.credentialsSecretRef to a Secret with accessKey and secretKey, "
            "or give the operator a default credentials Secret (--credentials-secret)",
        )
    secret_ns, secret_name, field = ref
    data = await _read(kube, "Secret", secret_ns, secret_name)
    where = f'Secret "{secret_name}" in namespace "{secret_ns}"'
    access_key = _text(
        _key(kube, data, "Secret", secret_ns, secret_name, "accessKey"), f"accessKey of {where}"
    )
    secret_key = _text(
        _key(kube, data, "Secret", secret_ns, secret_name, "secretKey"), f"secretKey of {where}"
    )
    token = _text(data["securityToken"], f"securityToken of {where}") if data.get("securityToken") else None
    secret_project = _text(data["projectId"], f"projectId of {where}") if data.get("projectId") else None
    if secret_project is not None and not PROJECT_ID.fullmatch(secret_project):
        raise InvalidSpec(
            field,
            f'key "projectId" of {where} is not a project ID (32 lowercase hex characters): fix the Secret, '
            "or remove the key to use spec.projectId or the operator's default",
        )
    project_id = spec.project_id or secret_project or settings.project_id
    if not project_id:
        raise InvalidSpec(
            field,
            f"no project ID: set spec.projectId, a projectId key in {where}, or the operator's --project-id",
        )
    # What the resource says wins over the operator's defaults: its endpoint, else its region's; then the
    # operator's endpoint, else its region's.
    endpoint = (
        spec.endpoint
        or (endpoint_for_region(spec.region) if spec.region else None)
        or settings.endpoint
        or (endpoint_for_region(settings.region) if settings.region else None)
    )
    if not endpoint:
        raise InvalidSpec(
            "spec.region", "no region: set spec.region, spec.endpoint or the operator's --region"
        )
    return CloudTarget(
        endpoint=endpoint.rstrip("/"),
        project_id=project_id,
        credentials=Credentials(access_key, secret_key, token),
    )


async def resolve_inputs(kube: Kube, namespace: str, spec: ReinstallSpec) -> ResolvedInputs:
    password = None
    if spec.admin_password_ref is not None:
        ref = spec.admin_password_ref
        data = await _read(kube, "Secret", namespace, ref.name)
        raw = _key(kube, data, "Secret", namespace, ref.name, ref.key)
        # A trailing newline (`echo pw > file`) is never part of a password: the API allows no whitespace.
        password = decode_password(raw, f'key "{ref.key}" of Secret "{ref.name}"').rstrip("\r\n")
    user_data = None
    source = spec.user_data
    if source is not None:
        if source.value is not None:
            user_data = source.value.encode("utf-8")
        elif source.secret_ref is not None:
            ref = source.secret_ref
            data = await _read(kube, "Secret", namespace, ref.name)
            user_data = _key(kube, data, "Secret", namespace, ref.name, ref.key)
        elif source.config_map_ref is not None:
            ref = source.config_map_ref
            data = await _read(kube, "ConfigMap", namespace, ref.name)
            user_data = _key(kube, data, "ConfigMap", namespace, ref.name, ref.key)
    return ResolvedInputs(admin_password=password, user_data=user_data)


async def resolve(kube: Kube, settings: Settings, namespace: str, spec: ReinstallSpec) -> Resolved:
    target = await resolve_target(kube, settings, namespace, spec)
    return Resolved(target=target, inputs=await resolve_inputs(kube, namespace, spec))
