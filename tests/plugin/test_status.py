"""`kubectl ecsr status`: the namespace's table, one set's progress, --watch, rich output, and the errors."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import yaml

from ecs_reinstall import plugin
from kube_emulator.faults import FaultRule
from kube_emulator.testing import kube_emulator_in_thread

from .conftest import CRDS, server

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_table_lists_the_namespace_sets_one_stable_line_each(sets, ecsr) -> None:
    sets.create("web", servers=200)
    sets.progress("web", total=200, done=120, in_flight=10, failed=1, phase="Progressing")
    sets.create("db", revision="golden-2")  # no status yet: the spec's revision, zeros and no phase
    result = ecsr("status")
    assert result.code == 0 and result.err == ""
    assert result.out.splitlines() == [
        "db  golden-2  0/0  in-flight=0  failed=0  -",
        "web  golden-1  120/200  in-flight=10  failed=1  Progressing",
    ]
    assert "\x1b[" not in result.out  # not a terminal: no escapes


def test_an_empty_namespace_says_so_on_stderr(ecsr, namespace) -> None:
    result = ecsr("status")
    assert result.code == 0 and result.out == ""
    assert result.err.strip() == f"No EcsReinstallSets found in namespace {namespace}."


def test_one_set_shows_its_counts_message_and_first_20_failed_servers(sets, ecsr, namespace) -> None:
    sets.create("api", servers=100)
    sets.progress(
        "api", total=100, done=40, in_flight=5, failed=25, phase="Stalled", message="Paused: budget"
    )
    result = ecsr("status", "api")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[:7] == [
        f"set: {namespace}/api",
        "revision: golden-1",
        "phase: Stalled",
        "progress: 40/100 (40%)",
        "done=40  in-flight=5  failed=25  waiting=30",
        "message: Paused: budget",
        "failed-servers: 25",
    ]
    assert lines[7] == f"  {server(1000)}  Ecs.9000"
    assert lines[26] == f"  {server(1019)}  Ecs.9019"
    assert lines[27:] == ["  ... 5 more"]


def test_one_set_shows_paused_acknowledged_and_a_pending_revision(sets, ecsr) -> None:
    sets.create("api", paused=True, revision="golden-2")
    sets.api.patch_namespaced_custom_object(
        "ecs.reinstall.dev",
        "v1alpha1",
        sets.namespace,
        "ecsreinstallsets",
        "api",
        {"metadata": {"annotations": {"ecs.reinstall.dev/failures-acknowledged": "2"}}},
    )
    sets.progress("api", total=5, done=1, in_flight=0, failed=2, phase="Paused")
    lines = ecsr("status", "api").out.splitlines()
    assert "revision: golden-1" in lines and "pending-revision: golden-2" in lines
    assert "paused: true" in lines and "failures-acknowledged: 2" in lines
    assert "done=1  in-flight=0  failed=2  waiting=2" in lines


def test_the_namespace_defaults_to_the_current_context_and_context_selects_another(
    kube, sets, namespace, tmp_path: Path, capsys
) -> None:
    sets.create("web")
    document = yaml.safe_load(kube.kubeconfig.read_text())
    document["contexts"][0]["context"]["namespace"] = namespace
    other = {"name": "elsewhere", "context": {**document["contexts"][0]["context"], "namespace": "nowhere"}}
    document["contexts"].append(other)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(document))
    assert plugin.main(["status", "--kubeconfig", str(kubeconfig)]) == 0
    assert capsys.readouterr().out.startswith("web  golden-1  0/0")
    assert plugin.main(["status", "--kubeconfig", str(kubeconfig), "--context", "elsewhere"]) == 0
    assert capsys.readouterr().err == "No EcsReinstallSets found in namespace nowhere.\n"


def test_kubeconfig_comes_from_the_environment(kube, sets, namespace, capsys, monkeypatch) -> None:
    sets.create("web")
    monkeypatch.setenv("KUBECONFIG", f"/nonexistent/config:{kube.kubeconfig}")  # a list, as kubectl takes
    assert plugin.main(["-n", namespace, "status"]) == 0  # flags before the command work too
    assert capsys.readouterr().out.startswith("web  golden-1  ")


def test_a_missing_set_is_one_line_and_exit_1(ecsr, namespace) -> None:
    result = ecsr("status", "nope")
    assert result.code == 1 and result.out == ""
    assert result.err == f"error: EcsReinstallSet {namespace}/nope not found\n"


def test_a_missing_crd_says_to_apply_crds(tmp_path: Path, capsys) -> None:
    with kube_emulator_in_thread(tmp_path, crds=[CRDS[0]]) as bare:  # only the EcsReinstall CRD
        for args in (["status"], ["status", "web"], ["pause", "web"]):
            assert plugin.main([*args, "--kubeconfig", str(bare.kubeconfig)]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1
            assert "CRD (ecsreinstallsets.ecs.reinstall.dev) is not installed" in err
            assert "kubectl apply -f crds/" in err


def test_an_unreachable_api_server_and_a_bad_kubeconfig_are_one_line_errors(
    kube, tmp_path: Path, capsys
) -> None:
    document = yaml.safe_load(kube.kubeconfig.read_text())
    document["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"  # discard port: refused
    dead = tmp_path / "dead"
    dead.write_text(yaml.safe_dump(document))
    started = time.monotonic()
    assert plugin.main(["status", "--kubeconfig", str(dead)]) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert (
        err.startswith("error: cannot reach the Kubernetes API at http://127.0.0.1:9")
        and err.count("\n") == 1
    )
    assert plugin.main(["status", "--kubeconfig", str(tmp_path / "missing")]) == 1
    assert (
        capsys.readouterr().err
        == f"error: no kubeconfig found at {tmp_path / 'missing'}: set KUBECONFIG or pass --kubeconfig\n"
    )
    assert plugin.main(["status", "--kubeconfig", str(kube.kubeconfig), "--context", "nope"]) == 1
    assert capsys.readouterr().err.startswith("error: invalid kubeconfig")


def _later(delay: float, *steps) -> threading.Thread:
    def run() -> None:
        for step in steps:
            time.sleep(delay)
            step()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_watch_until_done_prints_each_change_and_stops_at_completed(sets, ecsr) -> None:
    sets.create("web", servers=4)
    sets.progress("web", total=4, done=0, in_flight=2, failed=0, phase="Progressing")
    thread = _later(
        0.3,
        lambda: sets.progress("web", total=4, done=2, in_flight=2, failed=0, phase="Progressing"),
        lambda: sets.progress("web", total=4, done=4, in_flight=0, failed=0, phase="Completed"),
    )
    started = time.monotonic()
    result = ecsr("status", "web", "--watch", "--until-done", "--interval", "0.1")
    thread.join()
    assert result.code == 0 and time.monotonic() - started < 5
    progress = [line for line in result.out.splitlines() if line.startswith("progress:")]
    assert progress == ["progress: 0/4 (0%)", "progress: 2/4 (50%)", "progress: 4/4 (100%)"]
    assert result.out.rstrip().count("phase: Completed") == 1


def test_watch_until_done_of_the_table_waits_for_every_set(sets, ecsr) -> None:
    sets.create("a")
    sets.create("b")
    sets.progress("a", total=5, done=5, in_flight=0, failed=0, phase="Completed")
    sets.progress("b", total=5, done=3, in_flight=1, failed=0, phase="Progressing")
    thread = _later(0.3, lambda: sets.progress("b", total=5, done=0, in_flight=0, failed=0, phase="Aborted"))
    result = ecsr("status", "--watch", "--until-done", "--interval", "0.1")
    thread.join()
    assert result.code == 0
    assert result.out.splitlines()[-2:] == [
        "a  golden-1  5/5  in-flight=0  failed=0  Completed",
        "b  golden-1  0/5  in-flight=0  failed=0  Aborted",
    ]


def test_watch_refreshes_every_2_seconds_by_default(sets, ecsr, monkeypatch) -> None:
    sets.create("web")
    sets.progress("web", total=5, done=1, in_flight=1, failed=0, phase="Progressing")
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr("ecs_reinstall.plugin_render.time.sleep", fake_sleep)
    result = ecsr("status", "web", "--watch")
    assert sleeps == [2.0, 2.0]
    assert result.code == 130
    assert result.out.count("progress: 1/5") == 1  # unchanged: printed once


@pytest.mark.parametrize("how", ["option", "environment", "force_color"])
def test_rich_output_has_colors_and_a_progress_bar(sets, ecsr, monkeypatch, how: str) -> None:
    sets.create("web", servers=200)
    sets.progress("web", total=200, done=120, in_flight=10, failed=1, phase="Progressing")
    args = ["status", "web"]
    if how == "option":
        args += ["--format", "rich"]
    elif how == "environment":
        monkeypatch.setenv(plugin.FORMAT_ENV, "rich")
    else:
        monkeypatch.setenv("FORCE_COLOR", "1")  # rich's own switch: as a terminal would be
    result = ecsr(*args)
    assert result.code == 0
    assert "\x1b[" in result.out
    text = ANSI.sub("", result.out)
    assert "EcsReinstallSet" in text and "━" in text and " 60%  120/200" in text
    assert "done 120" in text and "in flight 10" in text and "failed 1" in text and "waiting 69" in text
    assert "Failed servers (1)" in text and f"{server(1000)}  Ecs.9000" in text
    table = ANSI.sub("", ecsr(*[a for a in args if a != "web"]).out)
    assert re.search(r"web\s+golden-1\s+━+─*\s+120/200\s+10\s+1\s+Progressing", table)


def test_rich_watch_until_done_renders_live_and_stops(sets, ecsr) -> None:
    sets.create("web", servers=2)
    sets.progress("web", total=2, done=1, in_flight=1, failed=0, phase="Progressing")
    thread = _later(
        0.3, lambda: sets.progress("web", total=2, done=2, in_flight=0, failed=0, phase="Completed")
    )
    result = ecsr("status", "web", "--watch", "--until-done", "--interval", "0.1", "--format", "rich")
    thread.join()
    assert result.code == 0
    text = ANSI.sub("", result.out)
    assert "Completed" in text and "100%  2/2" in text and "Ctrl-C to stop" in text


def test_watch_rides_out_an_api_outage_and_stops_on_a_deleted_set(kube, sets, ecsr, namespace) -> None:
    sets.create("web")
    sets.progress("web", total=5, done=1, in_flight=1, failed=0, phase="Progressing")
    path = f"/apis/ecs.reinstall.dev/v1alpha1/namespaces/{namespace}/ecsreinstallsets/web"

    def outage() -> None:
        kube.call(kube.faults.add, FaultRule(verbs={"get"}, path_prefix=path, error_code=503, times=2))

    def delete() -> None:
        sets.api.delete_namespaced_custom_object(
            "ecs.reinstall.dev", "v1alpha1", namespace, "ecsreinstallsets", "web"
        )

    thread = _later(
        0.3,
        outage,
        lambda: sets.progress("web", total=5, done=2, in_flight=1, failed=0, phase="Progressing"),
        delete,
    )
    result = ecsr("status", "web", "--watch", "--interval", "0.05")
    thread.join()
    assert result.code == 1
    assert "progress: 2/5 (40%)" in result.out  # went on after the outage
    lines = result.err.splitlines()
    assert lines[0].startswith(f"warning: EcsReinstallSet {namespace}/web: 503") and lines[0].endswith(
        "(retrying)"
    )
    assert lines[-1] == f"error: EcsReinstallSet {namespace}/web not found"
