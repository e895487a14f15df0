"""The alerts and the Grafana dashboard of deploy/monitoring, and how the chart ships them.

The rule file passes `promtool check rules`, and `promtool test rules` runs unit tests in which every alert fires
and does not fire; the rules and the dashboard read only metrics the operator exports (its `Metrics()` registry),
always on the operator's own scrape job; the chart renders the PrometheusRule (with its thresholds from values) and
the dashboard ConfigMap only when asked, from identical copies of deploy/monitoring's files.
promtool comes from Debian's `prometheus` package, which `make tools` unpacks into .tools/bin.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEFAULT_NAMESPACE, DEFAULT_RELEASE, REPO_ROOT, Helm, by_kind, only

from monitoring_support import (
    CHART_FILES,
    DASHBOARD_FILE,
    RULES_FILE,
    RULES_JOB,
    RULES_TEST_FILE,
    alerts,
    as_promql,
    dashboard_queries,
    exported_metric_names,
    load_dashboard,
    load_rules,
    promql_metric_names,
    selectors,
    thresholds_in,
    tool_or_skip,
)

RULE_API = "monitoring.coreos.com/v1"
SYNC_HINT = "run deploy/monitoring/sync.sh to copy deploy/monitoring into the chart's files/"
# What the issue asks for: failures rising, resources stuck Pending/Submitting, throttling, no leader, operator down.
EXPECTED_ALERTS = {
    "EcsReinstallFailuresRising",
    "EcsReinstallStuckPending",
    "EcsReinstallStuckSubmitting",
    "EcsReinstallThrottled",
    "EcsReinstallNoLeader",
    "EcsReinstallOperatorDown",
}
# Series that Prometheus makes itself for every target, which the rules may read besides the operator's.
PROMETHEUS_SERIES = {"up"}
# Every render needs these (the chart refuses to install without a default region and credentials).
BASE_VALUES: dict[str, Any] = {"region": "ap-southeast-1", "credentials": {"existingSecret": "hwc"}}
DEFAULT_SELECTOR = f'job="{DEFAULT_RELEASE}-metrics", namespace="{DEFAULT_NAMESPACE}"'


@pytest.fixture(scope="module")
def promtool() -> str:
    return tool_or_skip("promtool")


def values(**monitoring: Any) -> dict[str, Any]:
    return {**BASE_VALUES, "monitoring": monitoring}


def promtool_run(promtool: str, *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert proc.returncode == 0, (
        f"promtool {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout + proc.stderr


def check_rules(
    promtool: str, groups: list[dict[str, Any]], tmp_path: Path, name: str = "rules.yaml"
) -> None:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    promtool_run(promtool, "check", "rules", str(path))


# --- one source, two places --------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [RULES_FILE, DASHBOARD_FILE], ids=lambda p: p.name)
def test_the_chart_ships_identical_copies(source: Path) -> None:
    copy = CHART_FILES / source.name
    assert copy.is_file(), f"{copy.relative_to(REPO_ROOT)} is missing: {SYNC_HINT}"
    assert copy.read_bytes() == source.read_bytes(), f"{copy.relative_to(REPO_ROOT)} differs: {SYNC_HINT}"


# --- the PromQL name reader the checks below rest on -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y"}[5m])))', {"a_bucket"}),
        ("sum(a) / on(instance) group_left(pod) b", {"a", "b"}),
        ('absent(up{job="j"} == 1)', {"up"}),
        ('sum(rate(a_total{job=~"$job"}[$__rate_interval])) * 60', {"a_total"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("a offset 5m > bool 1e+06", {"a"}),
        ("max without (pod) (a) unless ignoring (x) b  # a comment naming c", {"a", "b"}),
        ('count_values("v", a) and topk(3, b)', {"a", "b"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


# --- the rules ------------------------------------------------------------------------------------------------------


def test_the_rule_file_is_valid(promtool: str) -> None:
    output = promtool_run(promtool, "check", "rules", str(RULES_FILE))
    assert f"SUCCESS: {len(load_rules())} rules found" in output


def test_the_alerts_are_the_ones_asked_for_and_say_what_to_do() -> None:
    found = alerts(load_rules())
    assert set(found) == EXPECTED_ALERTS
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80, name


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULES_TEST_FILE.read_text())["tests"]:
        for check in test.get("alert_rule_test") or ():
            cases.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    untested = {name: {True, False} - cases.get(name, set()) for name in alerts(load_rules())}
    assert not {name: missing for name, missing in untested.items() if missing}, (
        "alerts without a case where they fire (True) or stay silent (False)"
    )


def test_the_unit_tests_pass(promtool: str) -> None:
    # rule_files in the test file are relative to the working directory: run it from deploy/monitoring.
    output = promtool_run(promtool, "test", "rules", RULES_TEST_FILE.name, cwd=RULES_TEST_FILE.parent)
    assert "SUCCESS" in output


def test_the_rules_read_only_exported_metrics_of_the_operators_job() -> None:
    exported = exported_metric_names()
    for name, rule in alerts(load_rules()).items():
        names = promql_metric_names(rule["expr"])
        assert names, f"{name}: no metric read from {rule['expr']!r}"
        assert names <= exported | PROMETHEUS_SERIES, f"{name} reads unknown metrics {names - exported}"
        for metric in names:
            for matchers in selectors(rule["expr"], metric):
                assert f'job="{RULES_JOB}"' in matchers, f"{name}: {metric}{matchers} misses the job"


def test_thresholds_are_marked_and_are_the_charts_defaults() -> None:
    text = RULES_FILE.read_text()
    defaults = yaml.safe_load((REPO_ROOT / "deploy/helm/ecs-reinstall-operator/values.yaml").read_text())
    thresholds = defaults["monitoring"]["prometheusRule"]["thresholds"]
    marked = thresholds_in(text)
    assert set(marked) == set(thresholds)
    for name, literal in marked.items():
        assert literal == str(thresholds[name]), (
            f"{name}: the rule file says {literal}, values.yaml {thresholds[name]}"
        )
        # every place that marks it says the same
        assert set(re.findall(rf"([0-9][0-9a-z.]*)[^0-9#\n]*# threshold: {name}$", text, re.M)) == {literal}


# --- the dashboard --------------------------------------------------------------------------------------------


def test_the_dashboard_reads_only_exported_metrics() -> None:
    exported = exported_metric_names()
    queries = dashboard_queries(load_dashboard())
    assert len(queries) >= 20
    for where, expr in queries:
        assert "__name__" not in expr, f"{where}: selects by __name__, which this check cannot read"
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric read from {expr!r}"
        assert names <= exported, f"{where} reads metrics the operator does not export: {names - exported}"
    # and every exported family is shown somewhere (the _created timestamps aside)
    shown = set().union(*(promql_metric_names(expr) for _, expr in queries))
    families = {n for n in exported if not n.endswith("_created")}
    families -= {
        "ecs_reinstall_cloud_request_duration_seconds_sum",
        "ecs_reinstall_cloud_request_duration_seconds_count",
    }
    assert families <= shown, f"not on the dashboard: {sorted(families - shown)}"


def test_the_dashboards_queries_filter_on_the_job_variable() -> None:
    for where, expr in dashboard_queries(load_dashboard()):
        if where == "variable 'job'":
            continue
        for metric in promql_metric_names(expr):
            for matchers in selectors(expr, metric):
                assert 'job=~"$job"' in matchers, f"{where}: {metric}{matchers} ignores the job variable"


def test_the_dashboards_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each query, with Grafana's variables as Grafana fills them in, parsed by promtool (as a recording rule)."""
    queries = dashboard_queries(load_dashboard())
    rules = [
        {"record": f"dashboard:query_{i}", "expr": as_promql(expr)} for i, (_, expr) in enumerate(queries)
    ]
    check_rules(promtool, [{"name": "dashboard", "rules": rules}], tmp_path)


def test_the_dashboard_is_importable_as_is() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "ecs-reinstall-operator" and dashboard["title"]
    assert dashboard["id"] is None, "a fixed id would clash with other dashboards on import"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


# --- the chart ------------------------------------------------------------------------------------------------


def rendered_rule(helm: Helm, tmp_path: Path, api: bool = True, **monitoring: Any) -> list[dict[str, Any]]:
    docs = helm.render(values(**monitoring), tmp_path=tmp_path, api_versions=(RULE_API,) if api else ())
    return by_kind(docs, "PrometheusRule")


def test_nothing_by_default(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(BASE_VALUES, tmp_path=tmp_path, api_versions=(RULE_API,))
    assert not by_kind(docs, "PrometheusRule")
    assert not [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


@pytest.mark.parametrize(
    ("enabled", "api", "expected"), [(True, True, 1), (True, False, 0), (False, True, 0)]
)
def test_the_prometheus_rule_only_when_asked_and_served(
    helm: Helm, tmp_path: Path, enabled: bool, api: bool, expected: int
) -> None:
    assert len(rendered_rule(helm, tmp_path, api, prometheusRule={"enabled": enabled})) == expected


def test_the_prometheus_rule_is_the_rule_file_on_the_releases_job(
    helm: Helm, tmp_path: Path, promtool: str
) -> None:
    (rule,) = rendered_rule(helm, tmp_path, prometheusRule={"enabled": True})
    assert rule["metadata"]["namespace"] == DEFAULT_NAMESPACE
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == DEFAULT_RELEASE
    source = yaml.safe_load(RULES_FILE.read_text().replace(f'job="{RULES_JOB}"', DEFAULT_SELECTOR))
    assert rule["spec"]["groups"] == source["groups"]
    check_rules(promtool, rule["spec"]["groups"], tmp_path, "rendered.yaml")


def test_the_prometheus_rule_with_the_plain_files_selector_is_the_plain_file(
    helm: Helm, tmp_path: Path
) -> None:
    (rule,) = rendered_rule(
        helm, tmp_path, prometheusRule={"enabled": True, "selector": f'job="{RULES_JOB}"'}
    )
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


def test_thresholds_selector_and_labels_come_from_values(helm: Helm, tmp_path: Path, promtool: str) -> None:
    thresholds = {
        "stuckPendingSeconds": 1_000_000,
        "stuckSubmittingSeconds": 90,
        "failures": 7,
        "failuresWindow": "6h",
        "throttledRatio": 0.05,
    }
    (rule,) = rendered_rule(
        helm,
        tmp_path,
        prometheusRule={
            "enabled": True,
            "thresholds": thresholds,
            "selector": 'job="ops", cluster="eu"',
            "labels": {"release": "kube-prometheus-stack"},
            "alertLabels": {"team": "platform", "severity": "overridden?"},
        },
    )
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = rule["spec"]["groups"]
    check_rules(promtool, groups, tmp_path, "custom.yaml")
    exprs = "\n".join(r["expr"] for g in groups for r in g["rules"])
    assert {name: thresholds_in_rendered(groups, name) for name in thresholds} == {
        name: str(value) for name, value in thresholds.items()
    }
    found = alerts(r for g in groups for r in g["rules"])
    assert "in the last 6h" in found["EcsReinstallFailuresRising"]["annotations"]["summary"]
    assert RULES_JOB not in exprs and exprs.count('job="ops", cluster="eu"') == 7
    for name, alert in found.items():
        # extra labels are added; an alert's own labels win
        assert alert["labels"]["team"] == "platform", name
        assert alert["labels"]["severity"] in ("warning", "critical"), name


def thresholds_in_rendered(groups: list[dict[str, Any]], name: str) -> str:
    marked = thresholds_in("\n".join(r["expr"] for g in groups for r in g["rules"]))
    return marked[name]


@pytest.mark.parametrize(
    "bad",
    [
        {"thresholds": {"failuresWindow": "1 hour"}},
        {"thresholds": {"throttledRatio": 2}},
        {"thresholds": {"stuckPendingSeconds": 0}},
        {"thresholds": {"unknown": 1}},
        {"alertLabels": {"team": 1}},
    ],
    ids=lambda v: json.dumps(v),
)
def test_the_schema_refuses_bad_rule_values(helm: Helm, tmp_path: Path, bad: dict[str, Any]) -> None:
    rule_values = {"enabled": True, **bad}
    result = helm.template(
        values(prometheusRule=rule_values), tmp_path=tmp_path, api_versions=(RULE_API,), check=False
    )
    assert result.returncode != 0 and "monitoring" in result.stderr, result.stderr


def dashboards(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


def test_the_dashboard_config_map_for_the_grafana_sidecar(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(values(dashboard={"enabled": True}), tmp_path=tmp_path)
    config_map = only(dashboards(docs), "ConfigMap")
    assert config_map["metadata"]["name"] == f"{DEFAULT_RELEASE}-dashboard"
    assert config_map["metadata"]["namespace"] == DEFAULT_NAMESPACE
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {"ecs-reinstall-operator.json": DASHBOARD_FILE.read_text().rstrip("\n")}


def test_the_dashboards_label_namespace_and_annotations_come_from_values(helm: Helm, tmp_path: Path) -> None:
    dashboard = {
        "enabled": True,
        "label": "grafana.example.com/dashboard",
        "labelValue": "ops",
        "labels": {"team": "platform"},
        "annotations": {"grafana_folder": "Operators"},
        "namespace": "monitoring",
    }
    config_map = only(dashboards(helm.render(values(dashboard=dashboard), tmp_path=tmp_path)), "ConfigMap")
    metadata = config_map["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert (
        metadata["labels"]["grafana.example.com/dashboard"] == "ops"
        and metadata["labels"]["team"] == "platform"
    )
    assert "grafana_dashboard" not in metadata["labels"]
    assert metadata["annotations"] == {"grafana_folder": "Operators"}
    assert json.loads(config_map["data"]["ecs-reinstall-operator.json"]) == load_dashboard()


@pytest.mark.parametrize(
    "bad", [{"labelValue": 1}, {"label": "not a label"}, {"namespace": "Not_A_Namespace"}], ids=json.dumps
)
def test_the_schema_refuses_bad_dashboard_values(helm: Helm, tmp_path: Path, bad: dict[str, Any]) -> None:
    result = helm.template(values(dashboard={"enabled": True, **bad}), tmp_path=tmp_path, check=False)
    assert result.returncode != 0 and "monitoring" in result.stderr, result.stderr


def test_lint_with_everything_on(helm: Helm, tmp_path: Path) -> None:
    helm.lint(values(prometheusRule={"enabled": True}, dashboard={"enabled": True}), tmp_path=tmp_path)
