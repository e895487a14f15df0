"""Start-up checks: a setting that cannot work stops `run` at once with one line naming it (exit 2)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ecs_reinstall import __main__ as cli
from ecs_reinstall import preflight
from ecs_reinstall.settings import Settings

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


def test_no_kubernetes_configuration_stops_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code = cli.main(
        ["run", "--kubeconfig", str(tmp_path / "missing"), "--metrics-port", "0", "--health-port", "0"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no Kubernetes configuration" in err[0] and "--kubeconfig" in err[0]


def test_a_taken_port_is_named(kubeconfig):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            preflight.StartupError, match=rf"--health-port {port}: cannot listen there \(it is taken\)"
        ):
            preflight.check(Settings(metrics_port=0, health_port=port), kubeconfig)


def test_free_ports_and_a_kubeconfig_pass(kubeconfig):
    preflight.check(Settings(metrics_port=0, health_port=0), kubeconfig)


def test_the_effective_settings_in_one_line():
    line = preflight.describe(
        Settings(
            region="ap-southeast-1", namespaces=("team-a",), credentials_secret="hwc", leader_election=False
        )
    )
    assert "https://ecs.ap-southeast-1.myhuaweicloud.com" in line and "watching team-a" in line
    assert "leader election off" in line and "default credentials hwc in default" in line


def test_the_namespace_selector_is_checked_by_the_api_server_at_start(tmp_path):
    """A selector the API server refuses, or a list it forbids, stops `run` with the fix; a good one passes."""
    from kube_emulator.faults import FaultRule
    from kube_emulator.testing import kube_emulator_in_thread

    with kube_emulator_in_thread(tmp_path) as kube:
        kubeconfig = str(kube.kubeconfig)

        def check(selector: str) -> None:
            settings = Settings(
                metrics_port=0, health_port=0, default_credentials_namespace_selector=selector
            )
            preflight.check(settings, kubeconfig)

        check("tenancy/default-credentials in (allowed, yes)")
        with pytest.raises(preflight.StartupError, match=r"'tier=in=x' is not a label selector \(.+\)"):
            check("tier=in=x")
        kube.faults.add(
            FaultRule(verbs=frozenset({"list"}), path_prefix="/api/v1/namespaces", error_code=403)
        )
        with pytest.raises(
            preflight.StartupError, match="needs list on namespaces, which the operator's service"
        ):
            check("tier=shared")
