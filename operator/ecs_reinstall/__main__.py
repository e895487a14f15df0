"""Command line: `python -m ecs_reinstall run` (the operator) and `python -m ecs_reinstall demo`."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import logging
import sys
from collections.abc import Sequence

import kopf
from kopf._cogs.aiokits import aioadapters

from . import __version__, preflight
from . import settings as settings_module
from .leader import LeadershipLost

log = logging.getLogger("ecs_reinstall")


def configure_logging(settings: settings_module.Settings) -> None:
    json_logs = settings.log_format == "json"
    kopf.configure(
        log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.FULL,
        log_prefix=not json_logs,
        log_refkey="object",
    )
    set_log_levels(settings.log_level)


def set_log_levels(level: str) -> None:
    """Our level for the operator; libraries that would log request or response bodies stay at WARNING,
    whatever the level (the kubernetes client logs whole Secret bodies at DEBUG)."""
    logging.getLogger().setLevel(level.upper())
    for noisy in ("kubernetes", "urllib3", "httpx", "httpcore", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if level.upper() != "DEBUG":
        # kopf reports every watch-event handler call ("Handler 'track' succeeded"): noise at fleet scale.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


async def run_operator(
    settings: settings_module.Settings,
    *,
    kubeconfig: str | None = None,
    stop_flag: aioadapters.Flag | None = None,
    ready_flag: aioadapters.Flag | None = None,
) -> None:
    """Runs the operator until stopped (by `stop_flag`, or a signal). Importing `handlers` registers the kopf
    handlers. Raises LeadershipLost, once kopf has stopped, if the operator stopped because it lost the leader
    Lease (its runners were stopped at the moment it was lost)."""
    from . import handlers  # noqa: F401

    loop = asyncio.get_running_loop()
    # kopf takes one stop flag: ours, raised by the caller's flag or by losing the leader Lease.
    stop: asyncio.Future[None] = loop.create_future()
    lost: asyncio.Future[str] = loop.create_future()

    def on_leadership_lost(why: str) -> None:
        if not lost.done():
            lost.set_result(why)
        if not stop.done():
            stop.set_result(None)

    relay = asyncio.create_task(_relay_flag(stop_flag, stop), name="stop-flag relay")
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    try:
        await kopf.operator(
            standalone=True,
            clusterwide=settings.clusterwide,
            namespaces=settings.namespaces,
            liveness_endpoint=liveness,
            memo=kopf.Memo(
                config=settings,
                kubeconfig=kubeconfig,
                on_leadership_lost=on_leadership_lost,
                on_stopped=lambda: stop.done() or stop.set_result(None),
            ),
            stop_flag=stop,
            ready_flag=ready_flag,
        )
    finally:
        relay.cancel()
        await asyncio.wait({relay})
    if lost.done():
        raise LeadershipLost(lost.result())


async def _relay_flag(flag: aioadapters.Flag | None, stop: asyncio.Future[None]) -> None:
    """Sets `stop` once the caller's flag is raised: asyncio flags are awaited (kopf's `wait_flag`), a
    concurrent.futures.Future through its callback, a threading.Event polled. kopf's own `wait_flag` waits for
    those two in an executor thread, which keeps the event loop from closing until the flag is raised: it may
    never be, when the operator stops on its own (leader lease lost)."""
    if flag is None:
        return
    if isinstance(flag, asyncio.Future | asyncio.Event):
        await aioadapters.wait_flag(flag)
    elif isinstance(flag, concurrent.futures.Future):
        await asyncio.wait({asyncio.wrap_future(flag)})
    else:
        while not aioadapters.check_flag(flag):  # noqa: ASYNC110 (a threading.Event cannot be awaited)
            await asyncio.sleep(0.1)
    if not stop.done():
        stop.set_result(None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecs-reinstall-operator",
        description="Reinstalls the OS of Huawei Cloud ECS servers from EcsReinstall resources.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator on the current kubeconfig or in-cluster config")
    settings_module.add_arguments(run)
    run.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else KUBECONFIG)"
    )
    demo = commands.add_parser("demo", help="run the operator end to end on local emulators")
    demo.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for every sample to be Ready"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(timeout=args.timeout)
    try:
        settings = settings_module.load(args)
        preflight.check(settings, args.kubeconfig)
    except (ValueError, preflight.StartupError) as exc:
        print(f"ecs-reinstall-operator: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    log.info("starting ecs-reinstall-operator %s: %s", __version__, preflight.describe(settings))
    _tune_gc()
    try:
        asyncio.run(run_operator(settings, kubeconfig=args.kubeconfig))
    except KeyboardInterrupt:
        pass
    except LeadershipLost as exc:
        log.error("%s; exiting so that the Pod restarts as a standby", exc)
        return 1
    return 0


def _tune_gc() -> None:
    """What the imports made (modules, classes, the kubernetes client's models: some 77,000 objects) lives as long
    as the process: moved out of the collector's sight, full collections stop walking it again and again (they were
    1.2 s of the operator's CPU in a 1000-server rollout, 0.8 s after this).

    A fleet in flight churns through short-lived objects (watch events, answers, bodies): with the default young
    threshold (700 allocations) many of them are still alive when it runs, reach the old generation, and set off
    full collections, each walking every resource's objects (0.3 s at 5000 in flight). At 5000 allocations they
    mostly die young: GC 13.7 -> 5.1 s of CPU at N=5000 (full collections 30 -> 3), 1.35 -> 0.57 s at N=1000, for
    no RSS we could measure (young garbage is bounded by the threshold)."""
    from . import app, handlers  # noqa: F401  (everything the operator imports, before it starts)

    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 10, 10)


if __name__ == "__main__":
    sys.exit(main())
