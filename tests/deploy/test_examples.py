"""The samples in deploy/examples against the CRDs the chart ships, on an API server: real kubectl applies the
chart's two CRDs to kube_emulator (which validates objects with the CRDs' schemas, defaults and CEL rules, like
kube-apiserver 1.28+) and then every sample with a server-side dry run, as `make demo` applies them. Plus what the
EcsReinstallSet and the change-of-OS samples must show, and the README listing every file.

(tests/unit/test_crd.py checks each EcsReinstall sample with the operator's own parser and request builder.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import CHART_DIR, REPO_ROOT, load_yaml_documents, run_tool

from kube_emulator.app import ServerOptions
from kube_emulator.testing import kube_emulator_in_thread

EXAMPLES = REPO_ROOT / "deploy" / "examples"
UUID_LENGTH = 36


def examples() -> dict[str, list[dict[str, Any]]]:
    return {p.name: load_yaml_documents(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))}


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for docs in examples().values() for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module")
def kubectl_env(kubectl_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """kube_emulator with the chart's CRDs applied by kubectl: the environment for kubectl to reach it."""
    work = tmp_path_factory.mktemp("examples-on-kube")
    # token "": anonymous (kubectl sends no bearer token to a plain-http server)
    with kube_emulator_in_thread(work, options=ServerOptions(token="")) as kube:
        cache = work / "kube-cache"
        env = {
            **os.environ,
            "KUBECONFIG": str(kube.kubeconfig),
            "KUBECACHEDIR": str(cache),
            "HOME": str(cache),
        }
        crds = str(CHART_DIR / "crds")
        run_tool([kubectl_binary, "apply", "--server-side", "-f", crds], env=env)
        run_tool(
            [kubectl_binary, "wait", "--for=condition=Established", "--timeout=30s", "-f", crds], env=env
        )
        yield env


def dry_run(kubectl_binary: str, env: dict[str, str], path: Path) -> Any:
    args = ["apply", "--server-side", "--dry-run=server", "--field-manager=examples-test", "-f", str(path)]
    return run_tool([kubectl_binary, *args, "-o", "name"], env=env, check=False)


def test_the_api_server_accepts_every_sample(kubectl_binary: str, kubectl_env: dict[str, str]) -> None:
    result = dry_run(kubectl_binary, kubectl_env, EXAMPLES)
    assert result.returncode == 0, result.stderr
    expected = {
        f"{d['kind'].lower()}{'.ecs.reinstall.dev' if d['apiVersion'].startswith('ecs.') else ''}/"
        f"{d['metadata']['name']}"
        for docs in examples().values()
        for d in docs
    }
    assert set(result.stdout.split()) == expected


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            lambda s: s["selector"].update(serverIds=["0b6f3c52-1a7e-4c1d-9f0e-5d2a8b7c6e01"]),
            "exactly one of",
        ),
        (lambda s: s["template"].update(keyName="demo-keypair"), "cannot both be set"),
        (lambda s: s["strategy"].update(maxInFlight="150%"), "a count (1 or more) or a percentage"),
    ],
    ids=["selector-ids-and-tags", "template-password-and-key-pair", "max-in-flight-over-100-percent"],
)
def test_the_api_server_validates_the_set_sample(
    kubectl_binary: str, kubectl_env: dict[str, str], tmp_path: Path, change: Any, refusal: str
) -> None:
    """The set's CRD rules are in force on that server (so the acceptance above means something)."""
    body = objects("EcsReinstallSet")["fleet-web"]
    change(body["spec"])
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(body))
    result = dry_run(kubectl_binary, kubectl_env, broken)
    assert result.returncode != 0 and refusal in result.stderr, result.stderr


def test_the_set_sample_is_a_two_at_a_time_rollout_over_the_web_servers() -> None:
    fleet = objects("EcsReinstallSet")["fleet-web"]
    assert fleet["apiVersion"] == "ecs.reinstall.dev/v1alpha1"
    spec = fleet["spec"]
    assert spec["selector"] == {"tags": {"role": "web"}}
    assert spec["strategy"] == {"maxInFlight": 2, "maxFailures": 1}
    assert spec["revision"]
    template = spec["template"]
    assert template["stopServer"] is True
    assert "serverId" not in template
    password = template["adminPasswordSecretRef"]
    assert password["key"] in objects("Secret")[password["name"]]["stringData"]
    assert template["credentialsSecretRef"]["name"] in objects("Secret")


def test_the_change_of_os_sample() -> None:
    web_04 = objects("EcsReinstall")["web-04"]["spec"]
    assert web_04["imageId"] == "67f433d8-ed0e-4321-a8a2-a71838539e09"
    assert web_04["cloudInit"] is True
    password = web_04["adminPasswordSecretRef"]
    other_passwords = {
        d["spec"]["adminPasswordSecretRef"]["name"]
        for name, d in objects("EcsReinstall").items()
        if name != "web-04" and "adminPasswordSecretRef" in d["spec"]
    }
    assert password["name"] in other_passwords, "the same password Secret as another sample"
    assert password["key"] in objects("Secret")[password["name"]]["stringData"]


def test_every_reinstall_sample_has_a_server_of_its_own() -> None:
    servers = [d["spec"]["serverId"] for d in objects("EcsReinstall").values()]
    assert len(servers) == len(set(servers))
    assert all(len(server) == UUID_LENGTH for server in servers)


def test_the_readme_describes_every_sample() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for name in examples():
        assert f"`{name}`" in readme, f"deploy/examples/README.md does not describe {name}"
    for name in objects("EcsReinstall"):
        server = objects("EcsReinstall")[name]["spec"]["serverId"]
        assert f"| {name} | `{server}`" in readme, f"the README's server table lacks {name}"
