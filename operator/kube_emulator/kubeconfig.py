"""A kubeconfig that kubectl, kopf and the kubernetes client use as is: plain HTTP, a bearer token user."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONTEXT = "kube-emulator"


def kubeconfig_document(url: str, token: str | None, *, namespace: str = "default") -> dict:
    user: dict[str, str] = {"token": token} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": user}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: str | Path, url: str, token: str | None, *, namespace: str = "default") -> Path:
    """Write the kubeconfig readable by its owner only (it holds the token)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(kubeconfig_document(url, token, namespace=namespace), sort_keys=False)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return target
