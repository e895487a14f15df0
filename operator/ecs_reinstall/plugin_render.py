"""What `kubectl ecsr` prints: rich renderables for a terminal, stable plain lines otherwise.

Plain lines are meant for scripts and stay stable: one set per line in the table
(`web  golden-1  120/200  in-flight=10  failed=1  Progressing`), `key: value` lines for one set and its plan.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .rollout import ACKNOWLEDGED_ANNOTATION, Phase

FAILED_SHOWN = 20
BAR_WIDTH = 40
PHASE_STYLES = {
    Phase.RESOLVING: "blue",
    Phase.PROGRESSING: "cyan",
    Phase.PAUSED: "yellow",
    Phase.STALLED: "bold red",
    Phase.ABORTED: "magenta",
    Phase.COMPLETED: "green",
    Phase.PLANNED: "blue",
}


@dataclass(frozen=True)
class Counts:
    total: int
    done: int
    in_flight: int
    failed: int
    acknowledged: int

    @property
    def waiting(self) -> int:
        return max(0, self.total - self.done - self.failed - self.in_flight)

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    @classmethod
    def of(cls, body: Mapping) -> Counts:
        status = body.get("status") or {}
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        try:
            acknowledged = max(0, int(annotations.get(ACKNOWLEDGED_ANNOTATION) or 0))
        except ValueError:
            acknowledged = 0
        return cls(
            total=_int(status.get("total")),
            done=_int(status.get("done")),
            in_flight=_int(status.get("inFlight")),
            failed=_int(status.get("failedCount", len(status.get("failed") or ()))),
            acknowledged=acknowledged,
        )


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _name(body: Mapping) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _revision(body: Mapping) -> str:
    """The revision the status describes; the spec's until the operator started it."""
    return str((body.get("status") or {}).get("revision") or (body.get("spec") or {}).get("revision") or "-")


def _pending_revision(body: Mapping) -> str | None:
    wanted = (body.get("spec") or {}).get("revision")
    current = (body.get("status") or {}).get("revision")
    return wanted if current and wanted and wanted != current else None


def _phase(body: Mapping) -> str:
    return str((body.get("status") or {}).get("phase") or "-")


def duration(seconds: int) -> str:
    """900 -> 15m, 3900 -> 1h05m, 45 -> 45s."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    return f"{secs}s"


@dataclass(frozen=True)
class Plain:
    """Plain output: lines for stdout, and a note for stderr (like kubectl's "No resources found")."""

    text: str
    note: str = ""


class Output:
    """Renders for a terminal (rich) or for scripts (plain), and prints."""

    def __init__(self, console: Console, rich: bool) -> None:
        self.console = console
        self.rich = rich

    @classmethod
    def create(cls, mode: str) -> Output:
        if mode == "rich":
            return cls(Console(force_terminal=True, highlight=False), True)
        if mode == "plain":
            return cls(Console(highlight=False), False)
        console = Console(highlight=False)  # honours FORCE_COLOR, TTY_COMPATIBLE and NO_COLOR
        return cls(console, console.is_terminal)

    # --- printing ---

    def show(self, view: Any) -> None:
        if isinstance(view, Plain):
            if view.text:
                print(view.text, flush=True)
            if view.note:
                print(view.note, file=sys.stderr, flush=True)
        else:
            self.console.print(view)

    def info(self, message: str) -> None:
        if self.rich:
            self.console.print(message, markup=False, soft_wrap=True)
        else:
            print(message, flush=True)

    def error(self, message: str) -> None:
        if self.rich:
            Console(stderr=True, highlight=False).print(
                Text.assemble(("error: ", "bold red"), message), soft_wrap=True
            )
        else:
            print(f"error: {message}", file=sys.stderr, flush=True)

    def watch(
        self,
        fetch: Callable[[], Any],
        view: Callable[[Any], Any],
        stop: Callable[[Any], bool],
        interval: float,
        transient: tuple[type[BaseException], ...] = (),
    ) -> int:
        """Show `view(fetch())` every `interval` seconds until Ctrl-C or `stop(data)`; plain output prints a
        view again only when it changed. A `transient` error of a later fetch keeps the last view and a warning
        (the first fetch must succeed)."""
        data = fetch()
        warning = ""

        def refresh() -> None:
            nonlocal data, warning
            time.sleep(interval)
            try:
                data, warning = fetch(), ""
            except transient as error:
                warning = f"{error} (retrying)"

        if not self.rich:
            last, warned = None, ""
            while True:
                shown = view(data)
                if shown != last:
                    if last is not None:
                        print(flush=True)
                    self.show(shown)
                    last = shown
                if warning and warning != warned:
                    print(f"warning: {warning}", file=sys.stderr, flush=True)
                warned = warning
                if stop(data):
                    return 0
                refresh()
        footer = f"every {interval:g}s · Ctrl-C to stop"

        def frame() -> RenderableType:
            stamp = datetime.now().strftime("%H:%M:%S")
            lines: list[RenderableType] = [view(data), Text(f"{stamp} · {footer}", style="dim")]
            if warning:
                lines.append(Text(f"warning: {warning}", style="red"))
            return Group(*lines)

        with Live(frame(), console=self.console, auto_refresh=False) as live:
            while not stop(data):
                refresh()
                live.update(frame(), refresh=True)
        return 0

    # --- views ---

    def set_table(self, sets: Sequence[Mapping], namespace: str) -> Any:
        if not sets:
            note = f"No EcsReinstallSets found in namespace {namespace}."
            return Plain("", note) if not self.rich else Text(note, style="dim")
        if not self.rich:
            lines = []
            for body in sets:
                c = Counts.of(body)
                lines.append(
                    "  ".join(
                        (
                            body["metadata"]["name"],
                            _revision(body),
                            f"{c.done}/{c.total}",
                            f"in-flight={c.in_flight}",
                            f"failed={c.failed}",
                            _phase(body),
                        )
                    )
                )
            return Plain("\n".join(lines))
        table = Table(
            title=f"EcsReinstallSets in {namespace}", title_justify="left", box=None, pad_edge=False
        )
        for column, justify in (
            ("NAME", "left"),
            ("REVISION", "left"),
            ("PROGRESS", "left"),
            ("DONE", "right"),
            ("IN FLIGHT", "right"),
            ("FAILED", "right"),
            ("PHASE", "left"),
        ):
            table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for body in sets:
            c = Counts.of(body)
            table.add_row(
                Text(body["metadata"]["name"], style="bold"),
                _revision(body),
                bar(c, 20),
                f"{c.done}/{c.total}",
                str(c.in_flight),
                Text(str(c.failed), style="red" if c.failed else ""),
                phase_text(_phase(body), c),
            )
        return table

    def set_detail(self, body: Mapping) -> Any:
        c = Counts.of(body)
        status = body.get("status") or {}
        spec = body.get("spec") or {}
        failed = list(status.get("failed") or ())
        message = str(status.get("message") or "")
        pending = _pending_revision(body)
        if not self.rich:
            lines = [
                f"set: {_name(body)}",
                f"revision: {_revision(body)}",
                f"phase: {_phase(body)}",
                f"progress: {c.done}/{c.total} ({c.percent}%)",
                f"done={c.done}  in-flight={c.in_flight}  failed={c.failed}  waiting={c.waiting}",
            ]
            if pending:
                lines.append(f"pending-revision: {pending}")
            if spec.get("paused"):
                lines.append("paused: true")
            if spec.get("abort"):
                lines.append("abort: true")
            if c.acknowledged:
                lines.append(f"failures-acknowledged: {c.acknowledged}")
            lines.append(f"message: {message}")
            if failed:
                lines.append(f"failed-servers: {len(failed)}")
                lines += [
                    f"  {f.get('serverId', '?')}  {f.get('code') or '-'}" for f in failed[:FAILED_SHOWN]
                ]
                if len(failed) > FAILED_SHOWN:
                    lines.append(f"  ... {len(failed) - FAILED_SHOWN} more")
            return Plain("\n".join(lines))

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        revision = Text(_revision(body), style="bold")
        if pending:
            revision.append(f"  (spec.revision {pending} not started yet)", style="yellow")
        grid.add_row("Revision", revision)
        phase = phase_text(_phase(body), c)
        for flag in ("paused", "abort"):
            if spec.get(flag):
                phase.append(f"  spec.{flag}=true", style="yellow")
        grid.add_row("Phase", phase)
        progress = bar(c, BAR_WIDTH)
        progress.append(f"  {c.percent:3d}%  {c.done}/{c.total}", style="bold")
        grid.add_row("Progress", progress)
        counts = Text.assemble(
            ("■ ", "green"),
            f"done {c.done}   ",
            ("■ ", "yellow"),
            f"in flight {c.in_flight}   ",
            ("■ ", "red"),
            f"failed {c.failed}   ",
            ("■ ", "grey50"),
            f"waiting {c.waiting}",
        )
        if c.acknowledged:
            counts.append(f"   ({c.acknowledged} failures acknowledged)", style="dim")
        grid.add_row("Servers", counts)
        if message:
            grid.add_row("Message", Text(message))
        parts: list[RenderableType] = [
            Panel(grid, title=f"EcsReinstallSet [bold]{_name(body)}[/]", title_align="left", expand=False)
        ]
        if failed:
            table = Table(
                title=f"Failed servers ({len(failed)})",
                title_justify="left",
                title_style="bold red",
                box=None,
                pad_edge=False,
            )
            table.add_column("SERVER", no_wrap=True)
            table.add_column("CODE", style="red", no_wrap=True)
            for f in failed[:FAILED_SHOWN]:
                table.add_row(str(f.get("serverId", "?")), str(f.get("code") or "-"))
            if len(failed) > FAILED_SHOWN:
                table.add_row(Text(f"… {len(failed) - FAILED_SHOWN} more", style="dim"), "")
            parts.append(table)
        return Group(*parts)

    def plan(self, body: Mapping) -> Any:
        plan = (body.get("status") or {}).get("plan") or {}
        blockers = list(plan.get("blockers") or ())
        seconds = _int(plan.get("estimatedSeconds"))
        rows = [
            ("servers", "Servers", str(_int(plan.get("servers")))),
            ("ready", "Ready", str(_int(plan.get("ready")))),
            ("already-at-revision", "Already at revision", str(_int(plan.get("alreadyAtRevision")))),
            ("blocked", "Blocked", str(len(blockers))),
            ("waves", "Waves", str(_int(plan.get("waves")))),
            ("estimated-cloud-calls", "Estimated cloud calls", str(_int(plan.get("estimatedCloudCalls")))),
        ]
        if not self.rich:
            lines = [f"plan: {_name(body)} (revision {_revision(body)})"]
            lines += [f"{key}: {value}" for key, _, value in rows]
            lines.append(f"estimated-duration: {duration(seconds)} ({seconds} s)")
            lines.append(f"blockers: {len(blockers)}")
            lines += [f"  {b.get('serverId', '?')}  {b.get('reason') or '-'}" for b in blockers]
            return Plain("\n".join(lines))
        heading = Text.assemble(
            "Plan of EcsReinstallSet ", (_name(body), "bold"), f" (revision {_revision(body)})"
        )
        table = Table(show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for _, label, value in rows:
            style = "red" if label == "Blocked" and blockers else ("green" if label == "Ready" else "")
            table.add_row(label, Text(value, style=style))
        table.add_row("Estimated duration", f"{duration(seconds)} ({seconds} s)")
        parts: list[RenderableType] = [heading, table]
        if blockers:
            listing = Table(title=f"Blockers ({len(blockers)})", title_justify="left", title_style="bold red")
            listing.add_column("SERVER", no_wrap=True)
            listing.add_column("REASON", style="red")
            for b in blockers:
                listing.add_row(str(b.get("serverId", "?")), str(b.get("reason") or "-"))
            parts.append(listing)
        else:
            parts.append(Text("No blockers: every selected server can go.", style="green"))
        return Group(*parts)


def phase_text(phase: str, counts: Counts) -> Text:
    style = PHASE_STYLES.get(phase, "")
    if phase == Phase.COMPLETED and counts.failed:
        style = "yellow"
    return Text(phase, style=style)


def bar(c: Counts, width: int) -> Text:
    """A bar in four segments: done (green), failed (red), in flight (yellow), waiting (grey)."""
    text = Text()
    if c.total <= 0:
        text.append("─" * width, style="grey50")
        return text
    bounds, cumulative = [], 0
    for value in (c.done, c.failed, c.in_flight):
        cumulative += value
        bounds.append(min(width, round(width * cumulative / c.total)))
    start = 0
    for end, (char, style) in zip(
        [*bounds, width], (("━", "green"), ("━", "red"), ("━", "yellow"), ("─", "grey50")), strict=True
    ):
        if end > start:
            text.append(char * (end - start), style=style)
            start = end
    return text
