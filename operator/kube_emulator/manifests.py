"""Reading YAML/JSON manifests (files or directories) and creating the CRDs they contain."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .cluster import Cluster, WriteOptions
from .errors import ApiError

CRD_API_VERSION = "apiextensions.k8s.io/v1"


class ManifestError(ValueError):
    """A manifest that cannot be loaded, naming the file and what is wrong."""


def manifest_files(path: str | Path) -> list[Path]:
    root = Path(path)
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
    if root.is_file():
        return [root]
    raise ManifestError(f"{root}: no such file or directory")


def load_documents(paths: Iterable[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in paths:
        for file in manifest_files(path):
            try:
                loaded = list(yaml.safe_load_all(file.read_text()))
            except yaml.YAMLError as error:
                raise ManifestError(f"{file}: not valid YAML: {error}") from error
            for document in loaded:
                if document is None:
                    continue
                if not isinstance(document, dict):
                    raise ManifestError(
                        f"{file}: each document must be a mapping, found {type(document).__name__}"
                    )
                if document.get("kind") == "List":
                    documents += [(file, item) for item in document.get("items") or []]
                else:
                    documents.append((file, document))
    return documents


def install_crds(cluster: Cluster, paths: Iterable[str | Path]) -> list[str]:
    """Create (or replace) every CRD in the given files or directories; other kinds are an error."""
    crd_type = cluster.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    names = []
    for file, document in load_documents(paths):
        if (
            document.get("apiVersion") != CRD_API_VERSION
            or document.get("kind") != "CustomResourceDefinition"
        ):
            raise ManifestError(
                f"{file}: expected only {CRD_API_VERSION} CustomResourceDefinition documents, found "
                f"{document.get('apiVersion')} {document.get('kind')}"
            )
        name = (document.get("metadata") or {}).get("name", "")
        options = WriteOptions(field_manager="kube-emulator")
        existing = cluster.store(crd_type).get("", name)
        try:
            if existing is None:
                cluster.create(crd_type, None, document, options)
            else:
                document.setdefault("metadata", {})["resourceVersion"] = existing.obj["metadata"][
                    "resourceVersion"
                ]
                cluster.update(crd_type, None, name, document, options)
        except ApiError as error:
            raise ManifestError(f"{file}: {error.message}") from None
        names.append(name)
    return names
