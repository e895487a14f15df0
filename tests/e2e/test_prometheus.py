"""The alerts on live data: a real Prometheus (Debian's, from .tools) scrapes the running operator on loopback
every second and evaluates the chart's PrometheusRule, rendered by helm with a stuck threshold of a few seconds.

A resource whose password Secret is missing sticks in Pending: EcsReinstallStuckPending fires; once the Secret
exists the resource goes on to Succeeded and the alert clears. No other alert is ever pending or firing, and every
query of the dashboard runs on the same live data.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import OPERATOR_NAMESPACE, spec

from monitoring_support import (
    CHART_DIR,
    Prometheus,
    as_promql,
    dashboard_queries,
    load_dashboard,
    running_prometheus,
    tool_or_skip,
)

SERVER = "7a3e0c1a-0000-4000-8000-0000000000f1"
RELEASE = "ecs-reinstall-operator"
JOB = f"{RELEASE}-metrics"  # as the release's ServiceMonitor names its job
STUCK_SECONDS = 3
ALERT = "EcsReinstallStuckPending"


def render_rule_groups(helm: str, workdir: Path) -> list[dict[str, Any]]:
    """The chart's PrometheusRule for a release in the operator's namespace, with a stuck threshold of seconds."""
    env = dict(os.environ)
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[name] = str(workdir / "helm-home" / name)
    # fmt: off
    argv = [
        helm, "template", RELEASE, str(CHART_DIR), "--namespace", OPERATOR_NAMESPACE,
        "--api-versions", "monitoring.coreos.com/v1", "--show-only", "templates/prometheusrule.yaml",
        "--set", "region=ap-southeast-1", "--set", "credentials.existingSecret=default-credentials",
        "--set", "monitoring.prometheusRule.enabled=true",
        "--set", f"monitoring.prometheusRule.thresholds.stuckPendingSeconds={STUCK_SECONDS}",
    ]
    # fmt: on
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["spec"]["groups"]


async def wait_until(
    prometheus: Prometheus, check: Callable[[list[dict]], bool], what: str, timeout: float = 20
) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        active = await prometheus.active_alerts()
        if check(active):
            return active
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout}s; active alerts: {active}\n{prometheus.log_tail}"
            )
        await asyncio.sleep(0.25)


def states(active: list[dict], name: str = ALERT) -> set[str]:
    return {a["state"] for a in active if a["labels"]["alertname"] == name}


# What it checks is Prometheus on the operator's metrics, not the API server: the emulator backend only.
@pytest.mark.parametrize("harness", ["emulator"], indirect=True)
async def test_stuck_pending_alert_fires_on_live_data_and_clears(harness, tmp_path: Path) -> None:
    prometheus_bin, helm = tool_or_skip("prometheus"), tool_or_skip("helm")
    groups = render_rule_groups(helm, tmp_path)
    await harness.ecs.admin.add_server(SERVER, status="SHUTOFF")
    await harness.start_operator()
    scrape = {
        "job_name": JOB,
        # As the ServiceMonitor should: the target's namespace label, and the operator's own `namespace` label
        # (the resources') kept on its series.
        "honor_labels": True,
        "static_configs": [
            {"targets": [f"127.0.0.1:{harness.metrics_port}"], "labels": {"namespace": OPERATOR_NAMESPACE}}
        ],
    }
    async with running_prometheus(
        prometheus_bin, tmp_path / "prometheus", scrape_configs=[scrape], rule_groups=groups
    ) as prometheus:
        # Until the first scrape, `up` is absent and EcsReinstallOperatorDown pending: wait for a quiet start.
        deadline = time.monotonic() + 20
        while not await prometheus.query(f'up{{job="{JOB}"}} == 1'):
            assert time.monotonic() < deadline, f"the operator is not scraped:\n{prometheus.log_tail}"
            await asyncio.sleep(0.2)
        await wait_until(prometheus, lambda active: not active, "a quiet start")
        prometheus.seen_alerts.clear()
        started = time.monotonic()
        await harness.create("stuck", spec(SERVER, adminPasswordSecretRef={"name": "late-password"}))
        await harness.wait_for(
            "stuck",
            lambda b: (b.get("status") or {}).get("waitingFor", "").startswith('Secret "late-password"'),
        )

        firing = await wait_until(prometheus, lambda a: states(a) == {"firing"}, f"{ALERT} firing")
        alert = next(a for a in firing if a["labels"]["alertname"] == ALERT)
        assert time.monotonic() - started >= STUCK_SECONDS
        assert float(alert["value"]) > STUCK_SECONDS
        assert alert["annotations"]["summary"].startswith("An EcsReinstall has been Pending for ")
        assert alert["labels"]["severity"] == "warning"

        await harness.create_secret("late-password", {"password": "Late!Passw0rd-2026"})
        await harness.wait_phase("stuck", "Succeeded")
        await wait_until(prometheus, lambda a: not states(a), f"{ALERT} cleared")
        assert prometheus.seen_alerts == {ALERT}, f"other alerts were active: {prometheus.seen_alerts}"

        # The dashboard's queries, as Grafana sends them, on the same live data.
        await asyncio.sleep(2)  # a few more scrapes after Succeeded
        results = {
            where: await prometheus.query(as_promql(expr, job=JOB))
            for where, expr in dashboard_queries(load_dashboard())
        }
        by_title = {where.split("'")[1]: result for where, result in results.items()}
        assert [float(s["value"][1]) for s in by_title["Succeeded"]] == [1.0]
        assert [float(s["value"][1]) for s in by_title["Leader"]] == [1.0]
        assert [float(s["value"][1]) for s in by_title["Instances"]] == [1.0]
        assert {s["metric"]["phase"] for s in by_title["Resources by phase"]} >= {"Succeeded"}
        assert by_title["Submissions per minute"] and by_title["API calls by outcome"]
