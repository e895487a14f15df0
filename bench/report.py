"""Markdown summaries and PNG plots of the benchmark and chaos results (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# --- helpers ------------------------------------------------------------------------------------------------------


def _fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    else:
        text = str(value)
    return text + unit


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return [*lines, ""]


def _cdf(ax: plt.Axes, values: list[float], label: str) -> None:
    if not values:
        return
    ordered = sorted(values)
    ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
    ax.step(ordered, ys, where="post", label=f"{label} (n={len(ordered)})")


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def _scenarios(entry: Mapping) -> list[tuple[str, dict]]:
    """The operator's runs of one N."""
    names = ("operator", "limited-qps-matched", "limited-qps-above")
    return [(name, entry[name]) for name in names if name in entry]


def _peers(entry: Mapping) -> list[tuple[str, dict]]:
    names = (("peer", "SDK peer"), ("limited-peer", "SDK peer, limited"))
    return [(label, entry[name]) for name, label in names if name in entry]


# --- plots --------------------------------------------------------------------------------------------------------


def plot_latencies(entry: Mapping, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, run in [*_scenarios(entry), *_peers(entry)]:
        _cdf(left, run["samples"]["create_to_submitted"], name)
        _cdf(right, run["samples"]["job_end_to_ready"], name)
    poll = entry["operator"]["config"]["poll_interval"]
    right.axvline(poll + 1, color="red", linestyle="--", linewidth=1, label=f"target {poll + 1} s")
    left.set(title=f"N={entry['n']}: create -> Submitted", xlabel="seconds", ylabel="fraction of resources")
    right.set(
        title=f"N={entry['n']}: job end -> Ready (seen)", xlabel="seconds", ylabel="fraction of resources"
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_submissions(entry: Mapping, path: Path) -> None:
    """Left: reinstalls the cloud accepted per second. Right: every cloud call per second (what a limit counts)
    and the 429 answers, against the limit."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    limit = None
    for name, run in [*_scenarios(entry), *_peers(entry)]:
        rate = run["submission_rate"]
        left.plot(range(len(rate["per_second"])), rate["per_second"], drawstyle="steps-post", label=name)
        calls = rate.get("cloud_calls_per_second") or {}
        if calls.get("all"):
            (line,) = right.plot(
                range(len(calls["all"])), calls["all"], drawstyle="steps-post", label=f"{name}: calls"
            )
            if any(calls["throttled"]):
                right.plot(
                    range(len(calls["throttled"])),
                    calls["throttled"],
                    drawstyle="steps-post",
                    linestyle=":",
                    color=line.get_color(),
                    label=f"{name}: 429 answers",
                )
        limit = limit or run["config"].get("cloud_limit")
    if limit:
        for ax in (left, right):
            ax.axhline(
                limit, color="red", linestyle="--", linewidth=1, label=f"cloud limit {limit:g} calls/s"
            )
    left.set(
        title=f"N={entry['n']}: reinstalls accepted per second",
        xlabel="seconds since the resources were created",
        ylabel="accepted reinstalls / s",
    )
    right.set(
        title=f"N={entry['n']}: ECS API calls per second (all operations)",
        xlabel="seconds since the resources were created",
        ylabel="calls / s",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_rss(runs: list[Mapping], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for entry in runs:
        for name, run in _scenarios(entry):
            points = run["operator_rss_timeline"]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=f"operator N={entry['n']} {name}")
        for label, run in _peers(entry):
            points = run["peer_rss_timeline"]
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], linestyle=":", label=f"{label} N={entry['n']}"
            )
    for target in (150, 300):
        ax.axhline(target, color="red", linestyle="--", linewidth=0.8)
    ax.set(
        title="Resident memory over time",
        xlabel="seconds since the resources were created",
        ylabel="RSS (MiB)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- targets ------------------------------------------------------------------------------------------------------


def _get(mapping: object, *keys: str) -> object:
    """mapping[k1][k2]..., or None when any level is missing (older result files lack some figures)."""
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _not_measured(target: str, what: str) -> dict:
    return {"target": target, "measured": f"not measured ({what} missing from the results)", "met": None}


def _calls_per_reinstall(run: Mapping, fallback: object) -> float | None:
    """Every cloud call (all operations) per reinstall: the sum of cloud_calls.per_reinstall."""
    per = _get(run, "cloud_calls", "per_reinstall")
    if isinstance(per, Mapping) and per:
        return round(sum(per.values()), 3)
    return fallback if isinstance(fallback, (int, float)) else None


def _by_operation(run: Mapping) -> str:
    per = _get(run, "cloud_calls", "per_reinstall") or {}
    return ", ".join(f"{name} {value:g}" for name, value in sorted(per.items())) or "n/a"


def _poll_stretch(run: Mapping) -> str:
    """The operator's own account of how it shared the budget between submissions and looks: its metric
    `ecs_reinstall_server_look_calls_total` by kind (due: looks at their poll interval, eager: rounds while
    budget was spare, skipped: eager rounds held back because calls queued for the rate limit)."""
    metrics = run.get("operator_metrics") or {}
    counts = {
        kind: metrics.get(f'ecs_reinstall_server_look_calls_total{{kind="{kind}"}}')
        for kind in ("due", "eager", "skipped")
    }
    if all(value is None for value in counts.values()):
        return ""
    due, eager, skipped = (int(counts[kind] or 0) for kind in ("due", "eager", "skipped"))
    return f"; server looks: {due} calls when due, {eager} in eager rounds, {skipped} eager rounds held back"


def _peer_targets(entry: Mapping) -> list[dict]:
    """Targets 1-3: the unthrottled operator against the SDK script of the same N."""
    n, op, peer = entry["n"], entry.get("operator"), entry.get("peer")
    if not op or not peer:
        return []
    rows = []
    target = f"N={n}: all Ready within 1.0x the SDK script's (unthrottled)"
    ours, theirs = op.get("all_ready_s"), peer.get("all_ready_s")
    if ours is None or not theirs:
        rows.append(_not_measured(target, "all_ready_s"))
    else:
        rows.append(
            {
                "target": target,
                "measured": f"{_fmt(ours)} s vs {_fmt(theirs)} s (x{ours / theirs:.2f})",
                "met": ours / theirs <= 1.0,
            }
        )
    target = f"N={n}: cloud calls per reinstall no more than the script's"
    per_reinstall = _get(entry, "ratios", "cloud_calls_per_reinstall") or {}
    ours = _calls_per_reinstall(op, per_reinstall.get("ours"))
    theirs = _calls_per_reinstall(peer, per_reinstall.get("peer"))
    if ours is None or theirs is None:
        rows.append(_not_measured(target, "cloud_calls.per_reinstall"))
    else:
        rows.append(
            {
                "target": target,
                "measured": f"{ours:g} vs {theirs:g}{f' (x{ours / theirs:.2f})' if theirs else ''}; "
                f"ours: {_by_operation(op)}; "
                f"the script's: {_by_operation(peer)}",
                "met": ours <= theirs,
            }
        )
    target = f"N={n}: operator CPU per reinstall at most 2x the script's"
    ours = _get(op, "processes", "operator", "cpu_s")
    theirs = _get(peer, "processes", "sdk-peer", "cpu_s")
    if ours is None or not theirs:
        rows.append(_not_measured(target, "processes.*.cpu_s"))
    else:
        rows.append(
            {
                "target": target,
                "measured": f"{1000 * ours / n:.2f} ms vs {1000 * theirs / n:.2f} ms "
                f"({_fmt(ours)} s vs {_fmt(theirs)} s for {n}; x{ours / theirs:.2f})",
                "met": ours / theirs <= 2,
            }
        )
    return rows


def _scenario_targets(entry: Mapping) -> list[dict]:
    """Target 4 (job end -> Ready p99) and the safety rows (one POST per reinstall, bounded job GETs) for every
    operator run of one N."""
    rows = []
    for name, run in _scenarios(entry):
        poll = run["config"]["poll_interval"]
        p99 = run["job_end_to_ready_s"].get("p99")
        rows.append(
            {
                "target": f"N={entry['n']} {name}: job end -> Ready p99 <= pollIntervalSeconds + 1 s ({poll + 1} s)",
                "measured": f"p99 {_fmt(p99)} s (p50 {_fmt(run['job_end_to_ready_s'].get('p50'))} s)",
                "met": p99 is not None and p99 <= poll + 1,
            }
        )
        posts = run["posts_per_reinstall"]
        gets = run["job_gets_per_reinstall"]
        rows.append(
            {
                "target": f"N={entry['n']} {name}: exactly one POST per reinstall, job GETs <= ceil(D/poll) + 2",
                "measured": f"POSTs per server max {posts['processed_max']} processed ({posts['sent_max']} sent, "
                f"429-refused ones included), accepted {posts['accepted_total']}/{entry['n']} "
                f"(max {posts['accepted_max']} per server); job GETs per job max {gets.get('max')} "
                f"(mean {gets.get('mean')}), {gets['over_budget']} jobs over their budget",
                "met": posts["processed_max"] == 1
                and posts["accepted_max"] == 1
                and posts["accepted_total"] == entry["n"]
                and gets["over_budget"] == 0,
            }
        )
    return rows


def _limited_targets(entry: Mapping) -> list[dict]:
    """Targets 5 and 6: every run under the emulator's cloud limit."""
    rows = []
    n, limited_peer = entry["n"], entry.get("limited-peer")
    for name in ("limited-qps-matched", "limited-qps-above"):
        run = entry.get(name)
        if not run:
            continue
        limit = run["config"].get("cloud_limit")
        where = f"N={n}, cloud limit {limit:g}/s ({name})" if limit else f"N={n} ({name})"
        stretch = _poll_stretch(run)
        target = f"{where}: all Submitted within 10% of N / L (the POSTs alone)"
        submitted = run.get("all_submitted_s")
        if not limit or submitted is None:
            rows.append(_not_measured(target, "cloud_limit or all_submitted_s"))
        else:
            ideal = n / limit
            rate = _get(run, "submission_rate", "accepted_per_second")
            rows.append(
                {
                    "target": target,
                    "measured": f"{_fmt(submitted)} s vs N / L = {ideal:.1f} s (x{submitted / ideal:.2f}; "
                    f"10% over is {1.1 * ideal:.1f} s); achieved {_fmt(rate)} accepted reinstalls/s from first "
                    f"to last; 429 answers: {_fmt(_get(run, 'cloud_calls', 'throttled_429'))}{stretch}",
                    "met": submitted <= 1.1 * ideal,
                }
            )
        if not limited_peer:
            continue
        target = f"{where}: all Ready no later than the script's under the same limit"
        ours, theirs = run.get("all_ready_s"), limited_peer.get("all_ready_s")
        if ours is None or theirs is None:
            rows.append(_not_measured(target, "all_ready_s"))
        else:
            rows.append(
                {
                    "target": target,
                    "measured": f"{_fmt(ours)} s vs {_fmt(theirs)} s (x{ours / theirs:.2f}); 429 answers "
                    f"{_fmt(_get(run, 'cloud_calls', 'throttled_429'))} vs "
                    f"{_fmt(_get(limited_peer, 'cloud_calls', 'throttled_429'))}{stretch}",
                    "met": ours <= theirs,
                }
            )
    return rows


def _rss_targets(entry: Mapping) -> list[dict]:
    """Target 7: the unthrottled operator's peak RSS at 1000 and 5000 in flight."""
    limits = {1000: 150, 5000: 300}
    n = entry["n"]
    if n not in limits or "operator" not in entry:
        return []
    target = f"N={n}: peak RSS <= {limits[n]} MB at {n} in flight"
    rss = _get(entry["operator"], "processes", "operator", "peak_rss_mb")  # MiB, as /proc reports it
    if rss is None:
        return [_not_measured(target, "processes.operator.peak_rss_mb")]
    megabytes = rss * 2**20 / 1e6  # the target's MB are 10^6 bytes: 150 MB is 143 MiB
    return [
        {
            "target": target,
            "measured": f"{_fmt(megabytes)} MB ({_fmt(rss)} MiB)",
            "met": megabytes <= limits[n],
        }
    ]


def evaluate_targets(result: Mapping) -> list[dict]:
    """The issue's targets, each with the measured figure and whether it is met (None: not measured)."""
    runs = sorted(result["runs"], key=lambda entry: entry["n"])
    return [
        row
        for evaluate in (_peer_targets, _scenario_targets, _limited_targets, _rss_targets)
        for entry in runs
        for row in evaluate(entry)
    ]


# --- the benchmark report -----------------------------------------------------------------------------------------


def _run_rows(entry: Mapping) -> list[list[object]]:
    runs = [*_scenarios(entry), *_peers(entry)]
    rows = []
    for name, run in runs:
        procs = run["processes"]
        own = procs.get("operator") or procs.get("sdk-peer") or {}
        c2s, e2r = run["create_to_submitted_s"], run["job_end_to_ready_s"]
        calls = run["cloud_calls"]["per_reinstall"]
        rows.append(
            [
                name,
                run["all_submitted_s"],
                run["all_ready_s"],
                f"{_fmt(c2s.get('p50'))} / {_fmt(c2s.get('p95'))} / {_fmt(c2s.get('p99'))}",
                f"{_fmt(e2r.get('p50'))} / {_fmt(e2r.get('p95'))} / {_fmt(e2r.get('p99'))}",
                ", ".join(f"{op} {v:g}" for op, v in sorted(calls.items())),
                run["cloud_calls"]["throttled_429"],
                own.get("cpu_s"),
                own.get("peak_rss_mb"),
            ]
        )
    return rows


def write_bench_report(result: Mapping, directory: Path, name: str) -> Path:
    args = result["arguments"]
    lines = [
        "# Operator fleet benchmark",
        "",
        f"Measured {result['measured_at']} on this machine ({result['environment']['cpu_count']} CPUs, Python "
        f"{result['environment']['python']}), operator at commit {result.get('operator_commit')}, total "
        f"{result['total_wall_s']} s. Command: "
        f"`python bench/run_bench.py --sizes {args['sizes']} --job-seconds {args['job_seconds']:g} "
        f"--poll-interval {args['poll_interval']}` (see bench/README.md for what each run does).",
        "",
        f"Jobs last D = {args['job_seconds']:g} s on average (each D x U({1 - args['job_spread']:g}, "
        f"{1 + args['job_spread']:g}), INIT 1 s then RUNNING), pollIntervalSeconds = {args['poll_interval']} "
        f"(the SDK peer polls every {args['poll_interval']} s too, with {args['peer_threads']} threads). "
        f"Unthrottled runs: operator `--qps {args['qps']:g} --burst {args['burst']}`, `--max-concurrency "
        f"{args['max_concurrency']}`. Limited runs: emulator limit {args['cloud_limit']:g} calls/s (burst "
        f"{args['cloud_burst']}) over all operations.",
        "",
        "## Targets",
        "",
    ]
    targets = evaluate_targets(result)
    lines += _table(
        ["target", "measured", "status"], [[t["target"], t["measured"], _mark(t["met"])] for t in targets]
    )
    for entry in result["runs"]:
        n = entry["n"]
        lines += [f"## N = {n}", ""]
        lines += _table(
            [
                "run",
                "all Submitted (s)",
                "all Ready (s)",
                "create->Submitted p50/p95/p99 (s)",
                "job end->Ready p50/p95/p99 (s)",
                "cloud calls per reinstall",
                "429s",
                "CPU (s)",
                "peak RSS (MiB)",
            ],
            _run_rows(entry),
        )
        if "ratios" in entry:
            r = entry["ratios"]
            lines += [
                "Operator / SDK peer: "
                f"all Submitted x{_fmt(r['all_submitted'])}, all Ready x{_fmt(r['all_ready'])}, "
                f"cloud calls x{_fmt(r['cloud_calls'])}, CPU x{_fmt(r['cpu'])}, peak RSS x{_fmt(r['peak_rss'])}.",
                "",
            ]
        op = entry["operator"]
        kube = ", ".join(f"{k} {v:g}" for k, v in op["kube_calls"]["per_reinstall"].items())
        procs = ", ".join(f"{k} {v['cpu_s']} s / {v['peak_rss_mb']} MiB" for k, v in op["processes"].items())
        lines += [
            f"Kubernetes API calls per reinstall (operator run, by verb): {kube}.",
            "",
            f"CPU seconds / peak RSS of every process in the operator run: {procs}.",
            "",
        ]
        latency_png = f"{name}-n{n}-latency.png"
        submissions_png = f"{name}-n{n}-submissions.png"
        plot_latencies(entry, directory / latency_png)
        plot_submissions(entry, directory / submissions_png)
        lines += [f"![latency N={n}]({latency_png})", "", f"![submissions N={n}]({submissions_png})", ""]
    rss_png = f"{name}-rss.png"
    plot_rss(result["runs"], directory / rss_png)
    lines += ["## Memory", "", f"![RSS]({rss_png})", ""]
    path = directory / f"{name}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# --- the chaos report ---------------------------------------------------------------------------------------------


def plot_chaos_timeline(result: Mapping, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(11, 4.5))
    n = sum(result["expected"].values())
    for key, label in (("submitted", "Submitted (first seen)"), ("terminal", "terminal (first seen)")):
        times = result["timeline"][key]
        ax.step(times, range(1, len(times) + 1), where="post", label=label)
    for i, window in enumerate(result.get("second_operator_windows", [])):
        ax.axvspan(
            window["from_s"], window["to_s"], color="orange", alpha=0.15,
            label="second operator running" if i == 0 else None,
        )  # fmt: skip
    kills = result["kills"]
    for i, kill in enumerate(k for k in kills if k.get("stage", "writers") == "writers"):
        ax.axvline(kill["at_s"], color="red", linewidth=0.7, alpha=0.6, label="SIGKILL" if i == 0 else None)
    for i, kill in enumerate(k for k in kills if k.get("stage") == "election"):
        ax.axvline(
            kill["at_s"], color="purple", linewidth=1.2, alpha=0.8, label="leader SIGKILL" if i == 0 else None
        )
    for i, window in enumerate(w for w in result.get("job_expiry_windows", []) if "to_s" in w):
        ax.axvspan(
            window["from_s"], window["to_s"], color="green", alpha=0.2,
            label=f"job records expire {window['retention_s']:g} s after their end" if i == 0 else None,
        )  # fmt: skip
    operations = (result.get("other_operations") or {}).get("all", [])
    for targeted, marker, label in (
        (False, ".", "someone else's operation"),
        (True, "*", "... on a server whose outcome is unknown"),
    ):
        at = [op["at_s"] for op in operations if (op["target"] != "any server") == targeted]
        if at:
            ax.plot(at, [n * 0.08] * len(at), linestyle="none", marker=marker, color="grey", label=label)
    marks = [("regressions", "v", "status set back to Pending"), ("recreates", "x", "deleted and re-created")]
    for key, marker, label in marks:
        at = [e["at_s"] for e in result.get(key, []) if "resource" in e]
        if at:
            ax.plot(at, [n * 0.03] * len(at), linestyle="none", marker=marker, color="black", label=label)
    ax.axhline(n, color="grey", linestyle=":", linewidth=0.8)
    ax.set(title=f"Chaos run: {n} resources, {len(kills)} kills", xlabel="seconds", ylabel="resources")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_chaos_report(result: Mapping, directory: Path, name: str) -> Path:
    cfg = result["config"]
    violations = result["violations"]
    timeline_png = f"{name}-timeline.png"
    plot_chaos_timeline(result, directory / timeline_png)
    kills = result["kills"]
    writer_kills = [k for k in kills if k.get("stage", "writers") == "writers"]
    windows = result.get("second_operator_windows", [])
    regressions = [r for r in result.get("regressions", []) if "resource" in r]
    recreates = [r for r in result.get("recreates", []) if "resource" in r]
    takeovers = result.get("takeovers") or {}
    exits = result.get("exits") or {}
    operations = result.get("other_operations") or {}
    expiry = result.get("job_expiry_windows") or []
    lines = [
        "# Chaos run",
        "",
        f"Measured {result.get('measured_at', '?')} on this machine, {result['wall_s']} s in all. Seed {cfg['seed']}.",
        "",
        f"**Writers stage**: {cfg['n']} EcsReinstall resources ({cfg['shared_servers']} of them on a server that "
        f"another resource also reinstalls) created in {cfg['waves']} waves; the primary operator SIGKILLed "
        f"{len(writer_kills)} times (after {cfg['run_between_kills'][0]:g}-{cfg['run_between_kills'][1]:g} s of "
        f"life, dead for {cfg['down_between'][0]:g}-{cfg['down_between'][1]:g} s); "
        + (
            f"a second operator process (leader election off in both) ran in {len(windows)} windows of "
            f"{cfg['second_alive'][0]:g}-{cfg['second_alive'][1]:g} s "
            f"({sum(1 for w in windows if w['ended_by'] == 'SIGKILL')} ended by SIGKILL, the others by SIGTERM); "
            if cfg.get("second_operator")
            else "no second operator process; "
        )
        + f"a user set {len(regressions)} statuses back to Pending "
        f"({sum(1 for r in regressions if r['nulled_message'])} also nulling the message) and deleted and "
        f"re-created {len(recreates)} resources under the same name; "
        + (
            f"someone else operated on servers {operations.get('total', 0)} times (stop, start, stop+start, "
            f"reboot, resize, migrate, rename, tag; {operations.get('refused', 0)} refused by a busy server), "
            f"{sum(v for k, v in operations.get('by_target', {}).items() if k != 'any server')} of them on a "
            f"server whose resource's outcome was unknown; "
            if cfg.get("other_operations")
            else "nobody else operated on the servers; "
        )
        + (
            f"during {len(expiry)} of the kills job records expired {cfg['expiry_retention']:g} s after their end "
            f"(the primary dead for {cfg['expiry_down'][0]:g}-{cfg['expiry_down'][1]:g} s, the short retention "
            f"kept {cfg['expiry_hold']:g}-{cfg.get('expiry_hold_max', cfg['expiry_hold']):g} s after its restart, "
            "until no resource followed a job whose record was gone). "
            if expiry
            else "no job record expired. "
        )
        + f"{round(cfg['fail_fraction'] * 100)}% of the servers' jobs end in FAIL; jobs last {cfg['job_seconds']:g} s "
        f"+-{round(cfg['job_spread'] * 100)}%, pollIntervalSeconds {cfg['poll_interval']}.",
        "",
    ]
    if cfg.get("election"):
        lines += [
            f"**Election stage**: {cfg['election_n']} resources, two processes with leader election "
            f"{'on' if result.get('leader_election_supported') else '**not supported by this operator** (both worked)'} "
            f"({', '.join(f'{k} {v}' for k, v in cfg['election_args'].items())}); the leader SIGKILLed "
            f"{len(takeovers.get('kills', []))} times and kept dead until the standby took over.",
            "",
        ]
    lines += [
        f"**Result: {'all invariants hold' if not violations else f'{len(violations)} invariant violation(s)'}.** "
        f"Every resource terminal after {result['to_all_terminal_s']} s; operator starts {result['operator_starts']}.",
        "",
        "## Invariants",
        "",
    ]
    by_invariant: dict[str, int] = {}
    for violation in violations:
        by_invariant[violation["invariant"]] = by_invariant.get(violation["invariant"], 0) + 1
    scan = result["secret_scan"]

    def row(invariant: str, description: str, measured: str) -> list[object]:
        count = by_invariant.get(invariant, 0)
        return [description, measured, _mark(not count) + (f" ({count})" if count else "")]

    writes = takeovers.get("first_status_write_s")
    leases = takeovers.get("lease_taken_s")
    rows = [
        row(
            "every resource terminal, its phase matching what the cloud did for it",
            "every surviving resource terminal; Succeeded iff its job succeeded, Failed with the cloud's code iff "
            "it failed (JobFailed: the job's code; FailedFromActionLog: that code in failure.reason); a reinstall "
            "accepted after the object was created; its jobId one of its server's, accepted after the object was "
            "created, credited to no other resource",
            f"phases {result['phases']} (expected {result['expected']}); {result['how']}",
        ),
        row(
            "accepted reinstalls per server: one per resource object, none doubled",
            "accepted reinstalls per server <= resource objects (uids) created for it, >= its surviving "
            "resources, and exactly one per object where none was deleted",
            f"servers by kind and accepted reinstalls: {result['accepted_reinstalls']}",
        ),
        row(
            "no two accepted reinstalls of a server overlap in time",
            "no server's accepted reinstalls overlap (accept time to the job's end)",
            "checked on every server with more than one",
        ),
        row(
            "a status set back by hand never causes a second POST",
            "every resource whose status was set back by hand ends in the phase its job implies, with no "
            "second accepted reinstall",
            f"{result.get('regressed_resources', 0)} regressed resources (of {len(regressions)} regressions)",
        ),
        row(
            "no secret in logs, Events, status or metrics",
            "no secret in logs, Events, status or metrics",
            f"scanned {scan['operator_log_lines']} operator log lines, {scan['events']} Events, "
            f"{scan['statuses']} statuses, {scan['metrics_pages']} metrics pages: {scan['findings']} findings",
        ),
        row(
            "the operator never exits by itself",
            "no operator process exits by itself (exits after losing the leadership counted apart)",
            f"{len(exits.get('unexpected', []))} unexpected exits; "
            f"{len(exits.get('leadership_lost', []))} exits after losing the leadership",
        ),
    ]
    witnesses = result.get("witnesses") or {}
    tokens = result.get("tokens") or {}
    rows += (
        []
        if not witnesses
        else [  # (a run before these checks has neither)
            row(
                "decided by the right witness",
                "the Ready reason names the witness: Succeeded/JobFailed only with the job's ID; "
                "…FromActionLog only when the job ID was lost or its record expired in a window, naming the rebuild "
                "its own attempt made (the reinstall carrying its attempt's token; credited to no other resource); "
                "never …FromServerState (the action log is on), Timeout or OutcomeUnknown; the reason's outcome is "
                "the accepted reinstall's",
                f"decided by the job {witnesses.get('job', 0)}, the action log {witnesses.get('action log', 0)}, "
                f"the server's state {witnesses.get('server state', 0)}, nothing of the cloud's "
                f"{witnesses.get('other', 0)}; reasons {result.get('reasons', {})}",
            ),
            row(
                "every accepted reinstall's X-Client-Token is the attempt ID of the resource that made it",
                "every accepted reinstall carries an X-Client-Token (a UUID, used once) that is the status.attempt.id "
                "of the resource that made it (its jobId's, its rebuild's); a token no surviving resource names only "
                "on a server whose resource was deleted",
                f"{tokens.get('accepted_matched', 0)} of {tokens.get('accepted', 0)} accepted reinstalls carry a "
                f"surviving resource's attempt ID, {tokens.get('accepted_of_deleted_objects', 0)} that of a deleted "
                f"object; {tokens.get('resources_matched', 0)} terminal resources' attempt IDs are their reinstall's "
                f"token ({tokens.get('resources_without_attempt', 0)} without an attempt recorded)",
            ),
        ]
    )
    if cfg.get("election"):
        rows.append(
            row(
                "a standby takes over when the leader is killed",
                "after each leader kill the other process takes the Lease and writes",
                f"kill -> Lease taken {leases}; kill -> first status write {writes}; target lease + 5 s = "
                f"{takeovers.get('target_s')} s, met by {takeovers.get('within_target')} of "
                f"{len(takeovers.get('kills', []))}",
            )
        )
    lines += _table(["invariant", "measured", "status"], rows)
    if witnesses:
        lines += ["## Outcomes by witness", ""]
        lines += _table(
            ["phase, decided by", "resources"],
            [[how, count] for how, count in sorted(result["how"].items(), key=lambda kv: -kv[1])],
        )
    if violations:
        kinds: dict[tuple, int] = {}
        for v in violations:
            problems = "; ".join(
                sorted(
                    {
                        p.split(":")[0].split(" but ")[0] + (" but ..." if " but " in p else "")
                        for p in v.get("problems", [v.get("problem", v["invariant"])])
                    }
                )
            )
            key = (
                v["invariant"],
                problems,
                v.get("cloud_outcome", ""),
                str(v.get("job_id_lost", "")),
                str(v.get("ready_reason", "")),
            )
            kinds[key] = kinds.get(key, 0) + 1
        lines += ["## Violations", ""]
        lines += _table(
            ["invariant", "problem", "cloud job", "job ID lost", "Ready reason", "count"],
            [[*key, count] for key, count in sorted(kinds.items(), key=lambda kv: -kv[1])],
        )
        for violation in violations[:30]:
            lines.append(f"- `{violation}`")
        lines.append("")
    if cfg.get("election") and takeovers.get("kills"):
        lines += ["## Leader kills and takeovers", ""]
        lines += _table(
            [
                "#", "at (s)", "killed", "leader known from", "in flight", "Lease taken (s)",
                "first status write (s)", "first accepted reinstall (s)",
            ],
            [
                [
                    t["kill"], t["at_s"], t["killed"], t["leader_from"], t["resources_in_flight"],
                    t["lease_taken_s"], t["first_status_write_s"], t["first_accepted_reinstall_s"],
                ]
                for t in takeovers["kills"]
            ],
        )  # fmt: skip
    if regressions or recreates:
        lines += ["## The user's edits", ""]
        lines += [
            f"Statuses set back to Pending: {len(regressions)}, from "
            f"{dict(sorted(_count(r['from_phase'] for r in regressions).items()))}, "
            f"{sum(1 for r in regressions if r['had_job_id'])} of them with a jobId already written.",
            "",
            f"Deleted and re-created: {len(recreates)}, deleted while "
            f"{dict(sorted(_count(str(r['phase_when_deleted']) for r in recreates).items()))}, "
            f"{sum(1 for r in recreates if r['had_job_id'])} of them with a jobId already written.",
            "",
        ]
    if operations.get("total"):
        lines += ["## Operations by someone else", ""]
        lines += [
            f"{operations['total']} operations through `POST /_emulator/servers/{{id}}/operations`, by target: "
            f"{operations.get('by_target')}; {operations.get('changed_a_server_with_unknown_outcome', 0)} changed "
            f"a server whose resource's outcome was unknown (not refused); {operations.get('refused', 0)} refused "
            "(409: the server was busy), ignored.",
            "",
        ]
        lines += _table(
            ["action", "results"],
            [
                [action, ", ".join(f"{k} {v}" for k, v in sorted(results.items()))]
                for action, results in operations["by_action"].items()
            ],
        )
    if expiry:
        lines += ["## Job records expiring while the primary was dead", ""]
        lines += _table(
            [
                "#", "from (s)", "to (s)", "retention (s)", "job records expired", "... with a resource in flight",
                "resources following a job by its ID at the start", "... of them terminal at the end",
                "still following a gone record at the end",
            ],
            [
                [
                    i + 1, w["from_s"], w.get("to_s"), w["retention_s"], w.get("expired_records"),
                    w.get("expired_in_flight"), w.get("following_a_job_at_start"), w.get("of_them_terminal_at_end"),
                    w.get("unread_at_end"),
                ]
                for i, w in enumerate(expiry)
            ],
        )  # fmt: skip
        lines += [
            "A job whose record expired before anyone read its end is decided from the action log (see *Outcomes "
            "by witness*, `job record expired`); the records come back once the retention is set back.",
            "",
        ]
    for kind in ("unexpected", "leadership_lost"):
        if exits.get(kind):
            lines += [f"## Exits: {kind.replace('_', ' ')}", ""]
            lines += [f"- `{e}`" for e in exits[kind][:20]]
            lines.append("")
    ecs = result["ecs"]
    lines += [
        "## Faults injected",
        "",
        f"ECS emulator: {ecs['faults_hit']} faults hit, {ecs['throttled']} rate-limit answers; requests by "
        f"operation and status: {ecs['requests']}.",
        "",
    ]
    lines += _table(
        ["ECS fault (operation, effect)", "probability", "hits"],
        [
            [
                f"{f['operation']}: "
                + (f"status {f['status']}" if f.get("status") else "")
                + (f"drop connection {f['drop_connection']}" if f.get("drop_connection") else "")
                + (f"latency {f['latency_ms']:g} ms" if f.get("latency_ms") else ""),
                f["probability"],
                f["hits"],
            ]
            for f in ecs["fault_rules"]
        ],
    )
    lines += _table(
        ["kube_emulator fault", "probability", "hits"],
        [
            [
                ", ".join(
                    f"{k}={v}" for k, v in rule.items() if k not in ("id", "hits", "probability")
                ).replace("|", "\\|"),
                rule["probability"],
                rule["hits"],
            ]
            for rule in result["kube_fault_rules"]
        ],
    )
    log = result["operator_log"]
    lines += [
        f"Operator log lines (all processes) by level: {log['lines_by_level']}. Most frequent warnings and errors:",
        "",
    ]
    lines += [f"- {count} x `{message}`" for message, count in log["top_warnings_and_errors"]]
    lines += ["", "## Kills of the primary (writers stage)", ""]
    lines += _table(
        ["#", "at (s)", "alive for (s)", "down for (s)", "job records expiring", "phases seen when killed"],
        [
            [
                i + 1,
                k["at_s"],
                k["after_s"],
                k["down_s"],
                "yes" if k.get("job_expiry") else "",
                str(k["phases"]),
            ]
            for i, k in enumerate(writer_kills)
        ],
    )
    if windows:
        lines += ["## Second operator windows", ""]
        lines += _table(
            ["#", "from (s)", "to (s)", "ended by"],
            [[i + 1, w["from_s"], w["to_s"], w["ended_by"]] for i, w in enumerate(windows)],
        )
    lines += [f"![timeline]({timeline_png})", ""]
    path = directory / f"{name}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _count(values: object) -> dict:
    counts: dict = {}
    for value in values:  # type: ignore[attr-defined]
        counts[value] = counts.get(value, 0) + 1
    return counts
