"""Command line: `python -m ecs_reinstall run` (the operator) and `python -m ecs_reinstall demo`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import kopf

from . import __version__
from . import settings as settings_module


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
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Runs the operator until stopped. Importing `handlers` registers the kopf handlers."""
    from . import handlers  # noqa: F401

    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    await kopf.operator(
        standalone=True,
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=settings, kubeconfig=kubeconfig),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


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
    except ValueError as exc:
        print(f"ecs-reinstall-operator: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        asyncio.run(run_operator(settings, kubeconfig=args.kubeconfig))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
